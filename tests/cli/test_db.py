"""`deskpulse db copy` and `db info` as a person runs them: killed mid-copy and run again,
a progress bar on a terminal and plain lines elsewhere, one-line refusals."""

from __future__ import annotations

import os
import pty
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli_manners import _env

from deskpulse import cli
from deskpulse.protocol.batch import Response
from deskpulse.reports.figures import build_report
from deskpulse.store import open_store
from deskpulse.store.copy import COPY_COLUMNS, COPY_TABLES
from deskpulse.store.sqlite.schema import SCHEMA_VERSION

T0 = 1_780_000_000
SYNC_ID = COPY_COLUMNS["responses"].index("sync_id")
RENUMBERED = ("syncs", "desired_configs")  # their first column, an id a copy renumbers


def fill(path: Path, devices: int, responses: int) -> None:
    with open_store(path) as store:
        for device in range(devices):
            for start in range(1, responses + 1, 500):
                batch = [Response(seq=seq, rating=1 + seq % 5, scale=5, told_next="yes",
                                  latency_s=1.5, rapid=False, closed=False, boot=1,
                                  uptime_s=60 * seq, wall=T0 + 60 * seq, config_version=1)
                         for seq in range(start, min(start + 500, responses + 1))]
                store.store_batch(f"kiosk-{device:03}", batch, [], {"board": "b"}, "serial",
                                  now=T0 + start)
        # Every kiosk managed over the air, a few with a history of their own.
        store.save_config({f"kiosk-{device:03}": {"idle_timeout_s": 30}
                           for device in range(devices)},
                          layer=("site", "acme", {"idle_timeout_s": 30}), now=T0)
        store.save_config({f"kiosk-{device:03}": {"idle_timeout_s": 40 + device}
                           for device in range(0, devices, 7)}, now=T0 + 60)


def command(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "deskpulse.cli", *args]


def contents(path: Path | str) -> tuple[object, ...]:
    """Rows of every table (sync ids aside, which a copy renumbers) and the report."""
    with open_store(path, create=False) as store:
        rows = sorted((table, device.device_id, row[1:] if table in RENUMBERED else
                       (*row[:SYNC_ID], *row[SYNC_ID + 1:]) if table == "responses" else row)
                      for device in store.device_facts() for table in COPY_TABLES
                      for row in store.copy_rows(table, device.device_id, None, 1 << 30))
        return rows, store.config_layers(), store.desired_versions(), build_report(store)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_copy_killed_twice_and_run_again_ends_exact(tmp_path: Path, engine: str,
                                                      request: pytest.FixtureRequest) -> None:
    """A store's SQLite file moving up, to another file or to the chain's PostgreSQL."""
    source = tmp_path / "store.db"
    copy = (str(request.getfixturevalue("pg_url")) if engine == "postgresql"
            else f"sqlite://{tmp_path / 'chain.db'}")
    fill(source, devices=40, responses=5000)
    env = _env(tmp_path)
    # At its very start (the first kiosk's rows, sync records), then twice in the middle.
    for stop_at in ("(0%)", "(10%)", "(60%)"):
        child = subprocess.Popen(command(tmp_path, "db", "copy", "--from", str(source),
                                         "--to", copy),
                                 env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                 text=True)
        assert child.stderr is not None
        for line in child.stderr:
            if stop_at in line:
                child.send_signal(signal.SIGKILL)
                break
        assert child.wait(timeout=120) == -signal.SIGKILL
        with open_store(copy, create=False) as partial:
            copied = sum(partial.response_counts().values())
            assert copied < 200_000 and (copied > 0 or stop_at == "(0%)")
    done = subprocess.run(command(tmp_path, "db", "copy", "--from", str(source), "--to",
                                  copy), env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("copied 40 devices (")  # some were there: merged
    assert " and 200000 responses to " in done.stdout
    assert contents(copy) == contents(source)


def test_the_bar_is_drawn_on_a_terminal_and_lines_are_written_elsewhere(
        tmp_path: Path) -> None:
    source = tmp_path / "store.db"
    fill(source, devices=3, responses=200)
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run(command(tmp_path, "db", "copy", "--from", str(source), "--to",
                                      str(tmp_path / "a.db")),
                              env=_env(tmp_path), stderr=terminal, stdout=subprocess.PIPE,
                              timeout=120, check=False)
        os.close(terminal)
        drawn = b""
        while chunk := _read(controller):
            drawn += chunk
    finally:
        os.close(controller)
    assert done.returncode == 0
    assert b"\rcopying [" in drawn and b"600/600 responses" in drawn
    assert b"copying: " not in drawn
    piped = subprocess.run(command(tmp_path, "db", "copy", "--from", str(source), "--to",
                                   str(tmp_path / "b.db")),
                           env=_env(tmp_path), capture_output=True, text=True, timeout=120,
                           check=False)
    assert piped.returncode == 0
    lines = piped.stderr.splitlines()
    assert lines[0] == "copying: 0/600 responses (0%)"
    assert lines[-1] == "copying: 600/600 responses (100%)"
    assert "\r" not in piped.stderr and len(lines) <= 11
    assert piped.stdout == f"copied 3 devices and 600 responses to {tmp_path / 'b.db'}\n"


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # the terminal's other end is closed: all was read
        return b""


def _newer(path: Path) -> Path:
    open_store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    return path


@pytest.mark.parametrize("case", ["itself", "through a link", "newer destination",
                                  "missing source"])
def test_a_copy_it_cannot_do_is_one_line_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    source = tmp_path / "store.db"
    fill(source, devices=1, responses=10)
    destination = str(tmp_path / "chain.db")
    expected = "is the source itself: nothing to copy"
    if case == "itself":
        destination = f"sqlite://{source}"
    elif case == "through a link":
        (tmp_path / "link.db").symlink_to(source)
        destination = str(tmp_path / "link.db")
    elif case == "newer destination":
        _newer(Path(destination))
        expected = "schema version 99, newer than this deskpulse"
    else:
        source = tmp_path / "nowhere.db"
        expected = f"no database at {source}"
    before = contents(tmp_path / "store.db")
    assert cli.main(["db", "copy", "--from", str(source), "--to", destination]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deskpulse: ") and expected in err and err.count("\n") == 1
    assert contents(tmp_path / "store.db") == before
    if case == "newer destination":
        with sqlite3.connect(destination) as conn:
            assert conn.execute("SELECT count(*) FROM responses").fetchone() == (0,)


def test_info_counts_what_the_database_holds(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    fill(tmp_path / "store.db", devices=2, responses=30)
    assert cli.main(["db", "info", "--db", f"sqlite://{tmp_path / 'store.db'}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"database: {tmp_path / 'store.db'} (SQLite)"
    assert out[1:] == [
        f"schema version: {SCHEMA_VERSION}", "devices: 2 (0 registered for the WiFi push)",
        "responses: 60"]


def test_a_postgresql_database_is_its_own_source_by_any_url(
        pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with open_store(pg_url) as store:
        store.store_batch("kiosk-1", [], [], {"board": "b"}, "serial")
    other_url = pg_url + "&application_name=another"  # the same database, another URL
    assert cli.main(["db", "copy", "--from", pg_url, "--to", other_url]) == 2
    err = capsys.readouterr().err
    assert "is the source itself: nothing to copy" in err and err.count("\n") == 1
    assert "application_name" in err  # the destination as given, without a password
