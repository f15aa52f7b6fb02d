"""`deskpulse sync` against the real firmware: `deskpulse sim`'s Simulator runs the kiosk in
micropython with its console on a pty; the host syncs over pyserial, directly or through a
relay pty that drops, corrupts, cuts and paces bytes (tools/bench_sync.py's PtyRelay).

Every scenario ends with the same check: the database holds exactly the device's responses,
once each and with the right content, and the device freed (acknowledged) only responses the
database holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import serial

from conftest import BOARDS, REPO
from deskpulse.device.inspect import read_state
from deskpulse.device.link import Link
from deskpulse.device.ports import open_port
from deskpulse.device.session import Hello, Session
from deskpulse.device.sync import SyncSummary, sync
from deskpulse.errors import DeskPulseError
from deskpulse.protocol.batch import Response
from deskpulse.protocol.frames import FrameParser
from deskpulse.sim.simulator import Simulator
from deskpulse.store import open_store

sys.path.insert(0, str(REPO / "tools"))
from bench_sync import PtyRelay, prefill, synthetic_responses  # noqa: E402

BOARD = BOARDS / "esp32-devkitc-ssd1680.json"
PATIENCE = 120.0  # an upper bound for anything to happen; never asserted as a duration
# Simulated seconds a script's customers may spend looking at screens before they press
# (a few per session): an upper bound for where a record's time falls, not a duration.
READING = 30
DEVICE_ID = "e2e-desk"
QUICK = {"timeout": 1.5, "attempts": 6}  # sync options where faults are injected on purpose

pytestmark = pytest.mark.slow  # every test here waits on a simulated kiosk over a pty


# -- plumbing -----------------------------------------------------------------------------


def write_config(tmp_path: Path, **extra: Any) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"device_id": DEVICE_ID, **extra}))
    return path


@contextlib.contextmanager
def kiosk(tmp_path: Path, script: str | None = None, *, name: str = "script.txt",
          config: Path | None = None) -> Iterator[Simulator]:
    """A running simulated kiosk on tmp_path/state; stopped (as by a power cut) at exit."""
    path = None
    if script is not None:
        path = tmp_path / name
        path.write_text(script)
    sim = Simulator(BOARD, tmp_path / "state", script=path, config=config)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def run_to_exit(tmp_path: Path, script: str, name: str, config: Path | None = None) -> None:
    """One boot of the kiosk that plays script (ending in `exit`) and stops."""
    with kiosk(tmp_path, script, name=name, config=config) as sim:
        assert sim.wait(PATIENCE) == 0


def hello(path: str) -> Hello:
    port = open_port(path)
    try:
        return Session(Link(port, name=path)).hello()
    finally:
        port.close()


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.2)


def wait_for_responses(path: str, count: int) -> Hello:
    """Until the kiosk has numbered `count` responses (its script has got that far)."""
    seen: list[Hello] = []

    def done() -> bool:
        seen.append(hello(path))
        return seen[-1].next_seq > count

    wait_for(done, f"{count} responses on the kiosk")
    return seen[-1]


def stored(dbfile: Path, device_id: str = DEVICE_ID) -> list[dict[str, Any]]:
    with open_store(dbfile) as conn:
        return conn.responses_of(device_id)


def content(r: Response) -> tuple[Any, ...]:
    return (r.seq, r.rating, r.scale, r.told_next, r.latency_ds, int(r.rapid),
            int(r.closed), r.boot, r.uptime_s, r.wall, r.config_version)


def row_content(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["seq"], row["rating"], row["scale"], row["told_next"], row["latency_ds"],
            row["rapid"], row["closed"], row["boot"], row["uptime_s"], row["device_wall"],
            row["config_version"])


def assert_exactly_once(tmp_path: Path, dbfile: Path, expected: Sequence[Response]) -> None:
    """The database holds exactly `expected` (all of them synced), and the stopped
    device freed only what the database holds."""
    rows = stored(dbfile)
    assert [row_content(r) for r in rows] == [content(r) for r in expected]
    device = read_state(BOARD, tmp_path / "state")
    acked = device.status["log"]["acked_upto"]
    in_db = {r["seq"] for r in rows}
    assert acked <= max(in_db, default=0)
    assert {r.seq for r in expected if r.seq <= acked} <= in_db
    # What the device still holds is unacknowledged and is, or will be, in the database.
    assert all(r["seq"] > acked for r in device.responses)


def cli_sync(*argv: str) -> tuple[int, str, str]:
    """`deskpulse sync ...` as a user runs it, in its own process."""
    code = ("import sys\nfrom test_host_sync import deskpulse\n"
            "sys.exit(deskpulse(sys.argv[1:]))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO / "tests" / "device"), str(REPO / "tests"), str(REPO / "host"),
         os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code, "sync", *argv], capture_output=True,
                          text=True, timeout=PATIENCE * 3, env=env, check=False)
    return done.returncode, done.stdout, done.stderr


# -- scripted days ------------------------------------------------------------------------

T = 1795165200  # 2026-11-20T09:00:00Z, a Friday; the store opens at 10:00
BOOT1 = """\
rate 4
yes
wait 30
rate 1
no
exit
"""
BOOT2 = """\
rate 3
yes
wait 100
clock 2026-11-20T09:00:00Z
wait 60
rate 2        # closed: before opening time
no
rate 4        # right after the previous customer, but reads first: not rapid; closed
wait 11       # no answer: the follow-up times out after 10 s
wait 3600
rate 4        # 10:02, open
yes
exit
"""
BOOT3 = """\
rate 3
yes
wait 600
rate 1
no
"""


def test_a_scripted_day_reaches_the_database_exactly(tmp_path: Path) -> None:
    config = write_config(tmp_path, opening_hours={"fri": ["10:00-18:00"]})
    dbfile = tmp_path / "d.db"
    run_to_exit(tmp_path, BOOT1, "boot1.txt", config)
    run_to_exit(tmp_path, BOOT2, "boot2.txt")
    with kiosk(tmp_path, BOOT3, name="boot3.txt") as sim:
        wait_for_responses(sim.console_path, 8)
        before = int(time.time())
        code, out, err = cli_sync("--port", sim.console_path, "--db", str(dbfile))
        after = int(time.time())
        assert code == 0, err
        assert "synced e2e-desk (esp32-devkitc-ssd1680, firmware " in out
        assert "new responses: 8; duplicates ignored: 0" in out
        assert "time unknown: 2 of the new (2 in all for this kiosk)" in out
        assert "drops reported by the device: 0" in out
        state = hello(sim.console_path)
        assert (state.first_seq, state.next_seq) == (9, 9)  # everything acknowledged
    rows = stored(dbfile)
    assert [(r["seq"], r["boot"], r["rating"], r["told_next"], r["rapid"], r["closed"])
            for r in rows] == [
        (1, 1, 4, "yes", 0, 0), (2, 1, 1, "no", 0, 0),
        (3, 2, 3, "yes", 0, 0), (4, 2, 2, "no", 0, 1), (5, 2, 4, "no_answer", 0, 1),
        (6, 2, 4, "yes", 0, 0),
        (7, 3, 3, "yes", 0, 0), (8, 3, 1, "no", 0, 0)]
    assert rows[4]["latency_ds"] == 100
    by_seq = {r["seq"]: r for r in rows}
    # Boot 1 never had its clock set: time unknown, never guessed.
    assert by_seq[1]["wall"] is None and by_seq[2]["wall"] is None
    # Boot 2: every response is placed by the boot's anchor, the one before the clock was
    # set too; those after it also carry the device's own time, which agrees.
    assert by_seq[3]["time_source"] == "anchor"
    assert by_seq[3]["wall"] == pytest.approx(T - 100, abs=2)
    # Script customers look at each screen before pressing (docs/flow.md: the glass, then
    # min_read_ms; on the closed screen a press first brings up the question), so a
    # session ends a little after its script time: at it or later, within READING.
    assert by_seq[4]["time_source"] == "anchor"
    assert T + 60 - 1 <= by_seq[4]["wall"] <= T + 60 + READING
    assert by_seq[4]["device_wall"] == pytest.approx(by_seq[4]["wall"], abs=1)
    assert by_seq[6]["wall"] - by_seq[4]["wall"] == by_seq[6]["uptime_s"] - by_seq[4]["uptime_s"]
    assert T + 60 + 11 + 3600 - 1 <= by_seq[6]["wall"] <= T + 60 + 11 + 3600 + READING
    # Boot 3 is placed by the anchor of the sync's own TIME command (host time).
    assert by_seq[7]["time_source"] == by_seq[8]["time_source"] == "anchor"
    assert by_seq[8]["wall"] - by_seq[7]["wall"] == by_seq[8]["uptime_s"] - by_seq[7]["uptime_s"]
    assert by_seq[8]["uptime_s"] - by_seq[7]["uptime_s"] >= 600
    assert before - PATIENCE <= by_seq[8]["wall"] <= after + 1

    # A restart: a new boot, numbering carries on, nothing comes twice.
    with kiosk(tmp_path, "rate 2\nno\n", name="boot4.txt") as sim:
        wait_for_responses(sim.console_path, 9)
        summary = sync(sim.console_path, dbfile)
    assert (summary.new, summary.duplicates, summary.first_seq, summary.last_seq) == (
        1, 0, 9, 9)
    assert [(r["seq"], r["boot"]) for r in stored(dbfile)][-2:] == [(8, 3), (9, 4)]
    device = read_state(BOARD, tmp_path / "state")
    assert device.responses == [] and device.status["log"]["acked_upto"] == 9


def test_a_config_is_sent_and_applied(tmp_path: Path) -> None:
    dbfile = tmp_path / "d.db"
    with kiosk(tmp_path, "rate 2\nyes\n", config=write_config(tmp_path)) as sim:
        wait_for_responses(sim.console_path, 1)
        new_config = tmp_path / "new.json"
        new_config.write_text(json.dumps({"device_id": DEVICE_ID, "version": 5, "scale": 3}))
        summary = sync(sim.console_path, dbfile, config_file=new_config)
        assert (summary.new, summary.config_version) == (1, 5)
        after = hello(sim.console_path)
        assert after.status["config_version"] == 5
    assert [r["config_version"] for r in stored(dbfile)] == [0]


def test_a_bare_kiosk_syncs_under_its_mac_id_and_a_config_merges_into_its_own(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A kiosk nobody has named syncs as kiosk- and its MAC; a WiFi-style file merged into
    its German config keeps the German texts; the config reads back with its secrets
    hidden; a new name waits for the kiosk to confirm its responses."""
    from deskpulse import cli

    dbfile = tmp_path / "d.db"
    german = tmp_path / "german.json"
    german.write_text(json.dumps({"version": 2, "language": "de", "scale": 3,
                                  "texts": {"de": {"question": "Wie war Ihr Besuch?"}}}))
    with kiosk(tmp_path, "rate 3\nno\n", config=german) as sim:
        wait_for_responses(sim.console_path, 1)
        mac = (tmp_path / "state" / "mac").read_text().strip()
        mac_id = f"kiosk-{mac}"
        assert hello(sim.console_path).device_id == mac_id
        summary = sync(sim.console_path, dbfile)
        assert (summary.device_id, summary.new) == (mac_id, 1)
        wifi = tmp_path / "wifi.json"
        wifi.write_text(json.dumps({"version": 3, "sync": {"wifi_ssid": "Store",
                                                           "wifi_password": "s3cret"}}))
        summary = sync(sim.console_path, dbfile, config_file=wifi)
        assert summary.config_version == 3 and summary.device_id == mac_id
        assert summary.config_changes == ["sync.wifi_password: \"\" -> ***",
                                          'sync.wifi_ssid: "" -> "Store"', "version: 2 -> 3"]
        capsys.readouterr()
        assert cli.main(["config", "show", "--port", sim.console_path]) == 0
        shown = capsys.readouterr()
        assert json.loads(shown.out) == {
            "version": 3, "language": "de", "scale": 3,
            "texts": {"de": {"question": "Wie war Ihr Besuch?"}},
            "sync": {"wifi_ssid": "Store", "wifi_password": "***"}}
        assert f"the kiosk goes by {mac_id}, from its MAC" in shown.err
        assert "s3cret" not in shown.out + shown.err
        after = hello(sim.console_path)
        assert after.status["config_version"] == 3 and after.device_id == mac_id
        summary = sync(sim.console_path, dbfile, config_file=write_config(tmp_path))
        assert summary.device_id == mac_id and hello(sim.console_path).device_id == DEVICE_ID
    assert [r["seq"] for r in stored(dbfile, mac_id)] == [1]
    assert stored(dbfile) == []


# -- interruptions ------------------------------------------------------------------------

PREFILLED = 2000


@pytest.fixture
def full_kiosk(tmp_path: Path) -> list[Response]:
    """A kiosk state whose flash holds PREFILLED responses over two boots (the first one
    anchored), written by the firmware's own log."""
    responses, anchors = synthetic_responses(PREFILLED, per_boot=1200)
    prefill(tmp_path / "state", responses, anchors, DEVICE_ID)
    return responses


def _sync_in_subprocess(port: str, dbfile: Path) -> subprocess.Popen[str]:
    code = ("import sys\nfrom deskpulse.device.sync import sync\n"
            "sync(sys.argv[1], sys.argv[2])\n")
    return subprocess.Popen([sys.executable, "-c", code, port, str(dbfile)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("kill_at", ["hello", "early pull", "late pull", "ack"])
def test_a_host_killed_mid_sync_loses_and_doubles_nothing(
    tmp_path: Path, full_kiosk: list[Response], kill_at: str
) -> None:
    dbfile = tmp_path / "d.db"
    victim: list[subprocess.Popen[str]] = []
    seen = {"to_host": 0}
    threshold = {"hello": 100, "early pull": 2500, "late pull": 7000}.get(kill_at)

    def tamper(direction: str, data: bytes) -> bytes:
        if not victim or victim[0].poll() is not None:
            return data
        if direction == "to_host":
            seen["to_host"] += len(data)
            if threshold is not None and seen["to_host"] >= threshold:
                victim[0].kill()
                return b""
        elif kill_at == "ack" and b" ACK " in data:
            victim[0].kill()  # the ACK goes on: the host dies after its commit
        return data

    with kiosk(tmp_path) as sim, PtyRelay(sim.console_path, tamper=tamper) as relay:
        victim.append(_sync_in_subprocess(relay.path, dbfile))
        victim[0].wait(PATIENCE)
        assert victim[0].returncode == -signal.SIGKILL, victim[0].stderr
        relay.tamper = None
        summary = sync(relay.path, dbfile)
    earlier = PREFILLED - summary.new
    if kill_at == "ack":
        assert earlier == PREFILLED and summary.received == 0
    else:
        assert earlier == 0 and summary.new == PREFILLED
    assert_exactly_once(tmp_path, dbfile, full_kiosk)


def test_dropped_and_corrupted_bytes_cost_only_retries(
    tmp_path: Path, full_kiosk: list[Response]
) -> None:
    dbfile = tmp_path / "d.db"
    offsets = {"to_host": 0, "to_device": 0}
    lines_to_device: list[bytes] = []

    def tamper(direction: str, data: bytes) -> bytes:
        start = offsets[direction]
        offsets[direction] += len(data)
        out = bytearray(data)
        if direction == "to_host":
            for at, action in ((900, "drop"), (3000, "flip"), (5200, "drop"), (7400, "flip")):
                if start <= at < start + len(out):
                    i = at - start
                    if action == "flip":
                        out[i] ^= 0x10
                    else:
                        del out[i:i + 3]
            return bytes(out)
        lines_to_device.append(data)
        if sum(b" PULL " in line for line in lines_to_device) == 3 and b" PULL " in data:
            return data.replace(b" PULL ", b" PU?L ")  # an E frame, then a retry
        return data

    with kiosk(tmp_path) as sim, PtyRelay(sim.console_path, tamper=tamper) as relay:
        summary = sync(relay.path, dbfile, **QUICK)
    assert summary.new == PREFILLED and summary.retries >= 2
    assert_exactly_once(tmp_path, dbfile, full_kiosk)


def test_a_device_restarted_mid_sync_loses_and_doubles_nothing(
    tmp_path: Path, full_kiosk: list[Response]
) -> None:
    dbfile = tmp_path / "d.db"
    seen = {"to_host": 0}
    cut = threading.Event()

    def tamper(direction: str, data: bytes) -> bytes:
        if direction == "to_host":
            seen["to_host"] += len(data)
            if seen["to_host"] >= 4000 and not cut.is_set():
                cut.set()
            if cut.is_set():
                return b""  # the board is resetting: nothing more from the old boot
        return data

    results: list[SyncSummary | BaseException] = []

    def host() -> None:
        try:
            results.append(sync(relay.path, dbfile, timeout=2.0, attempts=8))
        except BaseException as exc:  # reported below
            results.append(exc)

    sim = Simulator(BOARD, tmp_path / "state")
    sim.start()
    try:
        with PtyRelay(sim.console_path, tamper=tamper) as relay:
            thread = threading.Thread(target=host)
            thread.start()
            assert cut.wait(PATIENCE)
            sim.stop()  # SIGTERM kills micropython outright, like pressing reset
            sim = Simulator(BOARD, tmp_path / "state")
            sim.start()
            relay.tamper = None
            relay.retarget(sim.console_path)
            thread.join(PATIENCE * 2)
            assert not thread.is_alive()
            if not isinstance(results[0], SyncSummary):
                # Given up during the reset: a second run finishes the job.
                assert isinstance(results[0], DeskPulseError), results[0]
                results[0] = sync(relay.path, dbfile)
            final = results[0]
            assert isinstance(final, SyncSummary)
            state = hello(relay.path)
            assert state.status["boot"] == 4  # prefill made boots 1-2, then 3, now 4
    finally:
        sim.stop()
    assert_exactly_once(tmp_path, dbfile, full_kiosk)


@pytest.mark.parametrize("lose", ["command", "answer"])
def test_a_lost_ack_costs_only_duplicates(
    tmp_path: Path, full_kiosk: list[Response], lose: str
) -> None:
    dbfile = tmp_path / "d.db"
    acking = threading.Event()

    def tamper(direction: str, data: bytes) -> bytes:
        if direction == "to_device" and b" ACK " in data:
            acking.set()
            return b"" if lose == "command" else data
        if direction == "to_host" and acking.is_set() and lose == "answer":
            return b""
        return data

    with kiosk(tmp_path) as sim, PtyRelay(sim.console_path, tamper=tamper) as relay:
        first = sync(relay.path, dbfile, timeout=2.0, attempts=3)
        assert first.new == PREFILLED and first.acked is None
        assert "did not confirm ACK" in first.warnings[0]
        relay.tamper = None
        second = sync(relay.path, dbfile)
    if lose == "command":  # the device never heard it: everything comes again
        assert (second.new, second.duplicates, second.acked) == (0, PREFILLED, PREFILLED)
    else:  # the device did free its flash; only the answer was lost
        assert (second.received, second.acked) == (0, None)
    assert_exactly_once(tmp_path, dbfile, full_kiosk)


@pytest.mark.parametrize("lose", ["command", "answer"])
def test_a_rename_after_a_lost_ack_never_counts_a_customer_twice(
    tmp_path: Path, lose: str
) -> None:
    dbfile = tmp_path / "d.db"
    renamed = tmp_path / "renamed.json"
    renamed.write_text(json.dumps({"device_id": "e2e-desk-2", "version": 2}))
    to_device: list[bytes] = []
    acking = threading.Event()

    def tamper(direction: str, data: bytes) -> bytes:
        if direction == "to_device":
            to_device.append(data)
            if b" ACK " in data:
                acking.set()
                return b"" if lose == "command" else data
            acking.clear()  # the answers to anything else come through
        elif acking.is_set() and lose == "answer":
            return b""  # the A frame is lost on the way back
        return data

    def each_customer_once(count: int) -> dict[str, list[int]]:
        by_id = {name: [r["seq"] for r in stored(dbfile, name)]
                 for name in (DEVICE_ID, "e2e-desk-2")}
        assert sorted(by_id[DEVICE_ID] + by_id["e2e-desk-2"]) == list(range(1, count + 1))
        return by_id

    with kiosk(tmp_path, "rate 4\nyes\nrate 2\nno\nrate 3\nyes\n",
               config=write_config(tmp_path)) as sim:
        wait_for_responses(sim.console_path, 3)
        with PtyRelay(sim.console_path, tamper=tamper) as relay:
            if lose == "command":
                with pytest.raises(DeskPulseError) as err:
                    sync(relay.path, dbfile, config_file=renamed, timeout=2.0, attempts=3)
                assert "the config was not sent and nothing on the kiosk was changed" in str(
                    err.value)
                # Read (to merge into), never sent.
                assert not any(b"CONFIG BEGIN" in line for line in to_device)
                assert hello(relay.path).device_id == DEVICE_ID  # not beside the relay
                assert each_customer_once(3) == {DEVICE_ID: [1, 2, 3], "e2e-desk-2": []}
                relay.tamper = None  # a good cable: the same command finishes the job
            summary = sync(relay.path, dbfile, config_file=renamed, timeout=2.0, attempts=3)
        assert summary.config_version == 2
        after = hello(sim.console_path)
        assert after.device_id == "e2e-desk-2" and after.first_seq == after.next_seq == 4
    assert each_customer_once(3) == {DEVICE_ID: [1, 2, 3], "e2e-desk-2": []}
    # The next customers are the renamed kiosk's: stored under its new id, once.
    with kiosk(tmp_path, "rate 3\nyes\n", name="after.txt") as sim:
        wait_for_responses(sim.console_path, 4)
        later = sync(sim.console_path, dbfile)
    assert (later.device_id, later.new, later.duplicates) == ("e2e-desk-2", 1, 0)
    assert each_customer_once(4) == {DEVICE_ID: [1, 2, 3], "e2e-desk-2": [4]}


# -- abuse and busy counters --------------------------------------------------------------


def customers(count: int) -> tuple[str, list[tuple[int, str]]]:
    """A script of `count` customers, a few seconds apart (so none is rapid)."""
    lines, expected = [], []
    for i in range(count):
        rating, told = 1 + (i * 3) % 4, ("yes", "no")[i % 2]
        lines += [f"rate {rating}", told, "wait 20"]
        expected.append((rating, told))
    return "\n".join(lines) + "\n", expected


def test_garbage_and_floods_get_error_frames_while_taps_go_on(tmp_path: Path) -> None:
    script, expected = customers(25)
    dbfile = tmp_path / "d.db"
    bad_lines = {
        17: b"17 FROB 1 2\n",
        18: b"18 PULL x 4096\n",
        19: b"19 ACK\n",
        20: b"20 TIME soon\n",
    }
    with kiosk(tmp_path, script, config=write_config(tmp_path)) as sim:
        port = serial.Serial(sim.console_path, timeout=0.1)
        try:
            port.write(b"\x00\x01\xfe\xff garbage \x1b[2J\n")
            port.write(b"21 HELLO 1" + b" pad" * 100 + b"\n")  # overlong: over 200 bytes
            port.write(b"HELLO 1\n")  # no tag
            for line in bad_lines.values():
                port.write(line)
            flood = b"".join(b"%d NOPE %d\n" % (1000 + i, i) for i in range(300))
            port.write(flood)
            parser = FrameParser()
            frames = []
            deadline = time.monotonic() + PATIENCE

            def answered() -> set[int]:
                return {f.tag for f in frames if f.type == "E"}

            quiet_since = time.monotonic()
            # Until every tagged bad line is answered and the flood's answers have died down.
            while time.monotonic() < deadline and not (
                set(bad_lines) <= answered() and time.monotonic() - quiet_since > 3
            ):
                got = parser.feed(port.read(4096))
                if got:
                    frames += got
                    quiet_since = time.monotonic()
        finally:
            port.close()
        assert {f.type for f in frames} == {"E"}
        assert set(bad_lines) <= answered()
        assert len(answered() & set(range(1000, 1300))) >= 1
        for frame in frames:
            body = json.loads(frame.payload)
            assert body["error"] and isinstance(body.get("line", ""), str)
        wait_for_responses(sim.console_path, len(expected))
        summary = sync(sim.console_path, dbfile)
    assert summary.new == len(expected)
    assert [(r["rating"], r["told_next"]) for r in stored(dbfile)] == expected


def test_sync_while_customers_keep_tapping(tmp_path: Path) -> None:
    script, expected = customers(40)
    dbfile = tmp_path / "d.db"
    summaries: list[SyncSummary] = []
    # While a host talks on the console the simulated clock keeps real time, and script
    # customers wait for each screen on the glass before they press (issue 13): no reading
    # pause beyond that, so the taps come about as fast as the panel allows.
    config = write_config(tmp_path, input_guard_ms=0, min_read_ms=0)
    deadline = time.monotonic() + 3 * PATIENCE  # an upper bound, never asserted
    with kiosk(tmp_path, script, config=config) as sim:
        while True:
            taps_done = hello(sim.console_path).next_seq > len(expected)
            summaries.append(sync(sim.console_path, dbfile))
            if taps_done:
                break
            if time.monotonic() > deadline:
                pytest.fail("the script never finished")
        final = hello(sim.console_path)
        assert final.first_seq == final.next_seq == len(expected) + 1
    assert sum(s.new for s in summaries) == len(expected)
    assert sum(s.duplicates for s in summaries) == 0
    assert sum(1 for s in summaries if s.new) >= 2  # syncs really overlapped the taps
    rows = stored(dbfile)
    assert [r["seq"] for r in rows] == list(range(1, len(expected) + 1))
    assert [(r["rating"], r["told_next"]) for r in rows] == expected
