"""What `deskpulse sync` (and the commands beside it) must never do: count a customer
twice when a config renames a kiosk, send the kiosk a clock it would refuse, print a
traceback for a database or config problem, or leave the kiosks' keys readable by every
local account. The kiosk here is the stand-in of test_host_sync (the protocol in Python on
a real pty); tests/device/test_sync_e2e.py renames the real firmware.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_host_sync import FAST, PtyRelay, StandIn, day_of_responses, deskpulse, stand_in

from conftest import FIRMWARE
from deskpulse.device import config_check
from deskpulse.device import sync as sync_mod
from deskpulse.device.sync import sync
from deskpulse.errors import DeskPulseError
from deskpulse.protocol import batch
from deskpulse.store import open_store
from deskpulse.store.sqlite import schema

SERVER = "http://192.0.2.10:8321"


def rows_by_device(dbfile: Path) -> dict[str, list[int]]:
    with contextlib.closing(sqlite3.connect(dbfile)) as conn:
        found: dict[str, list[int]] = {}
        for device_id, seq in conn.execute(
                "SELECT device_id, seq FROM responses ORDER BY device_id, seq"):
            found.setdefault(device_id, []).append(seq)
    return found


def assert_each_customer_once(dbfile: Path, customers: int) -> None:
    """The stand-in numbers its customers 1.. whatever its id: every one is stored under
    exactly one id."""
    seqs = [seq for stored in rows_by_device(dbfile).values() for seq in stored]
    assert sorted(seqs) == list(range(1, customers + 1))


def rename_config(tmp_path: Path, device_id: str = "desk-2") -> Path:
    path = tmp_path / "rename.json"
    path.write_text(json.dumps({"device_id": device_id, "version": 2}))
    return path


def drop_acks(direction: str, data: bytes) -> bytes:
    """A flaky cable that loses every ACK line on its way to the kiosk."""
    return b"" if direction == "to_device" and b" ACK " in data else data


# -- 1. a rename never splits or doubles a kiosk's history -----------------------------------


@pytest.mark.slow
def test_a_rename_waits_until_the_kiosk_confirms_an_ack(tmp_path: Path) -> None:
    kiosk = StandIn(day_of_responses(30))
    dbfile = tmp_path / "d.db"
    config = rename_config(tmp_path)
    with (stand_in(kiosk) as device, PtyRelay(device, tamper=drop_acks) as relay,
          pytest.raises(DeskPulseError) as err):
        sync(relay.path, dbfile, config_file=config, **FAST)
    message = str(err.value)
    assert message.startswith("the config was not sent and nothing on the kiosk was changed")
    assert "desk-1 to desk-2" in message and "run the same sync --config again" in message
    assert "CONFIG BEGIN" not in kiosk.seen  # read (CONFIG READ), never sent
    assert (kiosk.device_id, kiosk.config, kiosk.acked) == ("desk-1", None, 0)
    assert rows_by_device(dbfile) == {"desk-1": list(range(1, 31))}

    # The cable works again: the same command stores nothing twice and renames the kiosk.
    with stand_in(kiosk) as device:
        summary = sync(device, dbfile, config_file=config, **FAST)
    assert (summary.new, summary.duplicates, summary.config_version) == (0, 30, 2)
    assert kiosk.device_id == "desk-2" and kiosk.acked == 30
    kiosk.records += day_of_responses(5, start_seq=31)
    with stand_in(kiosk) as device:
        later = sync(device, dbfile, **FAST)
    assert (later.device_id, later.new, later.duplicates) == ("desk-2", 5, 0)
    assert rows_by_device(dbfile) == {"desk-1": list(range(1, 31)),
                                      "desk-2": list(range(31, 36))}
    assert_each_customer_once(dbfile, 35)


@pytest.mark.slow
def test_a_lost_ack_answer_is_checked_by_a_fresh_hello(tmp_path: Path) -> None:
    kiosk = StandIn(day_of_responses(12), mute={"ACK": 99})  # it hears every ACK
    dbfile = tmp_path / "d.db"
    with stand_in(kiosk) as device:
        summary = sync(device, dbfile, config_file=rename_config(tmp_path), **FAST)
    assert summary.config_version == 2 and kiosk.device_id == "desk-2"
    assert kiosk.seen.count("HELLO") == 3  # before, to check, and after the config
    assert (summary.acked, summary.warnings) == (12, [])  # the check confirmed it
    kiosk.mute = {}
    with stand_in(kiosk) as device:
        assert sync(device, dbfile, **FAST).received == 0
    assert_each_customer_once(dbfile, 12)


class TappingKiosk(StandIn):
    """Customers keep tapping while the host syncs: a record more at each HELLO after the
    first, `taps` times."""

    taps = 0

    def _answer(self, line: str) -> tuple[str, int, dict[str, Any] | bytes] | None:
        if " HELLO " in f" {line} " and self.seen.count("HELLO") and self.taps:
            self.taps -= 1
            self.records.append(day_of_responses(1, start_seq=self.next_seq())[0])
        return super()._answer(line)


def test_taps_during_a_rename_are_stored_first_a_bounded_number_of_times(
    tmp_path: Path,
) -> None:
    dbfile = tmp_path / "d.db"
    kiosk = TappingKiosk(day_of_responses(10))
    kiosk.taps = sync_mod.RENAME_ROUNDS - 1
    with stand_in(kiosk) as device:
        summary = sync(device, dbfile, config_file=rename_config(tmp_path), **FAST)
    assert summary.config_version == 2 and kiosk.device_id == "desk-2"
    assert (summary.new, summary.acked) == (12, 12)
    assert rows_by_device(dbfile) == {"desk-1": list(range(1, 13))}

    kiosk = TappingKiosk(day_of_responses(10), device_id="desk-1")
    kiosk.taps = 99  # a queue that never ends
    other = tmp_path / "other.db"
    with stand_in(kiosk) as device, pytest.raises(DeskPulseError, match="config was not sent"):
        sync(device, other, config_file=rename_config(tmp_path), **FAST)
    assert kiosk.device_id == "desk-1" and "CONFIG BEGIN" not in kiosk.seen
    assert kiosk.seen.count("HELLO") == 1 + sync_mod.RENAME_ROUNDS
    assert rows_by_device(other)["desk-1"] == list(range(1, kiosk.acked + 1))


@pytest.mark.slow
def test_a_config_keeping_the_id_needs_no_check(tmp_path: Path) -> None:
    kiosk = StandIn(day_of_responses(3), mute={"ACK": 99})
    config = rename_config(tmp_path, "desk-1")
    with stand_in(kiosk) as device:
        summary = sync(device, tmp_path / "d.db", config_file=config, **FAST)
    assert summary.config_version == 2 and kiosk.seen.count("HELLO") == 2
    warning = summary.warnings[0]  # true, as the kiosk keeps its id
    assert warning.startswith("the kiosk did not confirm ACK 3: its responses are stored")
    assert "only while the kiosk keeps the id desk-1" in warning


def test_a_refused_rename_says_what_was_kept(tmp_path: Path) -> None:
    class Refusing(StandIn):
        def _answer(self, line: str) -> tuple[str, int, dict[str, Any] | bytes] | None:
            if " CONFIG END" in line:
                self.seen.append("CONFIG END")
                return "C", int(line.split(" ")[0]), {
                    "ok": False, "problems": ["it holds unconfirmed responses"]}
            return super()._answer(line)

    kiosk = Refusing(day_of_responses(3))
    with stand_in(kiosk) as device, pytest.raises(DeskPulseError) as err:
        sync(device, tmp_path / "d.db", config_file=rename_config(tmp_path), **FAST)
    assert str(err.value).startswith("the kiosk refused the config: it holds unconfirmed")
    assert "Its responses were all stored; it keeps its old config" in str(err.value)
    assert kiosk.device_id == "desk-1"


# -- 2. the host's clock ---------------------------------------------------------------------


def test_the_clock_bounds_mirror_the_firmware() -> None:
    source = (FIRMWARE / "kiosk" / "clock.py").read_text()

    def firmware_constant(name: str) -> int:
        found = re.search(rf"^{name}\s*=\s*(?:const\()?\s*(\d+)", source, re.MULTILINE)
        assert found, f"{name} not found in firmware/kiosk/clock.py"
        return int(found.group(1))

    assert batch.EARLIEST_WALL == firmware_constant("EARLIEST_WALL") == 946684800
    assert batch.LATEST_WALL == firmware_constant("LATEST_WALL") == 4102444800


@pytest.mark.parametrize("now, sent", [
    (0, False), (946684799, False), (946684800, True), (1795400000, True),
    (4102444800, True), (4102444801, False), (2**40, False)])
def test_a_wrong_pc_clock_is_never_sent_to_the_kiosk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    now: int, sent: bool,
) -> None:
    monkeypatch.setattr(sync_mod, "host_time", lambda: now)
    kiosk = StandIn(day_of_responses(7))
    with stand_in(kiosk) as device:
        assert deskpulse(["sync", "--port", device, "--db", str(tmp_path / "d.db")]) == 0
    out = capsys.readouterr().out
    assert "new responses: 7; duplicates ignored: 0" in out and kiosk.acked == 7
    assert ("TIME" in kiosk.seen) == sent
    assert out.count("this PC's clock says") == (0 if sent else 1)
    if sent:
        assert kiosk.anchors[-1][2] == now
    else:
        assert "the kiosk's clock was not set" in out and not kiosk.anchors


# -- 3. one sentence, never a traceback --------------------------------------------------------


def one_line_error(capsys: pytest.CaptureFixture[str], code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("deskpulse: ")
    return err


@contextlib.contextmanager
def held_database(dbfile: Path) -> Iterator[None]:
    """Another program in the middle of a write transaction."""
    other = sqlite3.connect(dbfile, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_a_locked_database_is_a_sentence_and_the_kiosk_keeps_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    dbfile = tmp_path / "d.db"
    open_store(dbfile).close()
    monkeypatch.setattr(schema, "BUSY_TIMEOUT_MS", 100)
    kiosk = StandIn(day_of_responses(9))
    with stand_in(kiosk) as device, held_database(dbfile):
        code = deskpulse(["sync", "--port", device, "--db", str(dbfile)])
    err = one_line_error(capsys, code)
    assert err.startswith(f"deskpulse: another program holds the database {dbfile}")
    assert "Nothing is lost: the kiosk keeps every response not stored yet" in err
    assert "ACK" not in kiosk.seen and kiosk.acked == 0
    with stand_in(kiosk) as device:
        assert deskpulse(["sync", "--port", device, "--db", str(dbfile)]) == 0
    assert kiosk.acked == 9 and rows_by_device(dbfile) == {"desk-1": list(range(1, 10))}


def test_a_database_being_created_by_another_program_is_a_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    dbfile = tmp_path / "d.db"
    with contextlib.closing(sqlite3.connect(dbfile)) as conn:
        conn.execute("CREATE TABLE t (x)")  # not migrated yet: opening it must write
    monkeypatch.setattr(schema, "BUSY_TIMEOUT_MS", 100)
    with held_database(dbfile):
        code = deskpulse(["devices", "--db", str(dbfile)])
    assert one_line_error(capsys, code).startswith("deskpulse: another program holds")


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A folder any account may write (the read-only test may run as another user)."""
    path = Path(tempfile.mkdtemp(prefix="deskpulse-ro-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        for child in path.iterdir():
            child.unlink()
        path.rmdir()


@contextlib.contextmanager
def without_root() -> Iterator[None]:
    """Root writes any file whatever its mode: act as `nobody` meanwhile."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


def test_a_read_only_database_is_a_sentence(
    world_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    dbfile = world_dir / "d.db"
    kiosk = StandIn(day_of_responses(4))
    with stand_in(kiosk) as device:
        assert deskpulse(["sync", "--port", device, "--db", str(dbfile)]) == 0
        capsys.readouterr()
        kiosk.records += day_of_responses(3, start_seq=5)
        dbfile.chmod(0o444)
        os.chmod(device, 0o666)  # our own pty: `nobody` may open it
        with without_root():
            code = deskpulse(["sync", "--port", device, "--db", str(dbfile)])
            err = one_line_error(capsys, code)
            assert deskpulse(["devices", "add", "desk-9", "--server", SERVER, "--db",
                              str(dbfile), "-o", str(world_dir / "k.json")]) == 2
            added = capsys.readouterr().err
    assert err.startswith(f"deskpulse: the database file is read-only: {dbfile}")
    assert "Nothing is lost" in err and kiosk.acked == 4
    assert added.startswith("deskpulse: the database file is read-only")
    assert "Traceback" not in added and not (world_dir / "k.json").exists()


def damage_responses(dbfile: Path) -> None:
    """Overwrite the first page of the responses table with garbage."""
    with contextlib.closing(sqlite3.connect(dbfile)) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'responses'").fetchone()[0]
    with dbfile.open("r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(bytes(range(256)) * (page_size // 256))


def test_a_damaged_database_is_a_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    dbfile = tmp_path / "d.db"
    kiosk = StandIn(day_of_responses(20))
    with stand_in(kiosk) as device:
        assert deskpulse(["sync", "--port", device, "--db", str(dbfile)]) == 0
        capsys.readouterr()
        damage_responses(dbfile)
        kiosk.records += day_of_responses(3, start_seq=21)
        err = one_line_error(capsys, deskpulse(["sync", "--port", device, "--db",
                                                str(dbfile)]))
    assert err.startswith(f"deskpulse: the database is damaged: {dbfile}")
    assert "restore a backup" in err and "Nothing is lost" in err and kiosk.acked == 20
    for command in (["devices"], ["report", "--format", "csv"]):
        err = one_line_error(capsys, deskpulse([*command, "--db", str(dbfile)]))
        assert err.startswith(f"deskpulse: the database is damaged: {dbfile} ("), command

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(8192))
    with stand_in(kiosk) as device:
        err = one_line_error(capsys, deskpulse(["sync", "--port", device, "--db",
                                                str(garbage)]))
    assert err.startswith(f"deskpulse: the database is damaged: {garbage}")
    assert kiosk.seen.count("HELLO") == 2  # the garbage stopped it before the port


@pytest.mark.parametrize("depth", [17, 5000, 200_000])
def test_a_deeply_nested_config_is_a_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], depth: int,
) -> None:
    config = tmp_path / "deep.json"
    config.write_text('{"device_id": "desk-1", "texts": ' + "[" * depth + "]" * depth + "}")
    code = deskpulse(["sync", "--port", str(tmp_path / "no-port"), "--db",
                      str(tmp_path / "d.db"), "--config", str(config)])
    err = one_line_error(capsys, code)
    assert err.startswith(f"deskpulse: config {config} ")
    assert ("nests" in err) if depth < 100_000 else ("far too big" in err)


def test_the_nesting_count_skips_strings() -> None:
    text = json.dumps({"a": "[[[[{{{{" * 40, "b": [[1], {"c": ["]]]"]}]})
    assert config_check._nesting(text) == 4
    assert json.loads(text)["b"][1]["c"] == ["]]]"]


# -- 4. the keys stay private --------------------------------------------------------------


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_database_and_its_default_folder_are_private(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    umask_022: None,
) -> None:
    monkeypatch.delenv("DESKPULSE_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert deskpulse(["devices", "add", "desk-1", "--server", SERVER,
                      "-o", str(tmp_path / "desk-1.json")]) == 0
    folder = tmp_path / "data" / "deskpulse"
    assert mode(folder) == 0o700 and mode(folder / "deskpulse.db") == 0o600
    assert mode(tmp_path / "data") == 0o755  # not ours to close
    with open_store() as conn:  # the -wal and -shm while it is open
        conn.connection.execute("UPDATE devices SET name = 'Front'")
        for suffix in ("-wal", "-shm"):
            assert mode(folder / f"deskpulse.db{suffix}") == 0o600, suffix


def test_sync_creates_a_private_file_in_a_folder_the_user_chose(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], umask_022: None,
) -> None:
    chosen = tmp_path / "shared"
    chosen.mkdir(mode=0o755)
    dbfile = chosen / "desk.db"
    with stand_in(StandIn(day_of_responses(3))) as device:
        assert deskpulse(["sync", "--port", device, "--db", str(dbfile)]) == 0
    assert mode(dbfile) == 0o600 and mode(chosen) == 0o755
    fresh = tmp_path / "new" / "sub" / "desk.db"
    assert deskpulse(["devices", "add", "desk-1", "--server", SERVER, "-o",
                      str(tmp_path / "desk-1.json"), "--db", str(fresh)]) == 0
    assert mode(fresh) == 0o600 and mode(fresh.parent) == 0o700


def test_an_existing_database_keeps_its_mode(tmp_path: Path, umask_022: None) -> None:
    dbfile = tmp_path / "d.db"
    open_store(dbfile).close()
    dbfile.chmod(0o640)  # the user's choice, e.g. a group that runs the reports
    open_store(dbfile).close()
    assert mode(dbfile) == 0o640
