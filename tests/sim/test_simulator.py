"""The simulator runner: real MicroPython child, real ptys, real pyserial, real signals."""

from __future__ import annotations

import hashlib
import io
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import serial

from conftest import REPO
from deskpulse import cli
from deskpulse.device.inspect import read_state
from deskpulse.device.micropython import default_micropython
from deskpulse.errors import DeskPulseError
from deskpulse.sim.simulator import Simulator, run

BOARD = REPO / "boards" / "esp32-devkitc-ssd1680.json"
PATIENCE = 60.0  # generous upper bound for anything to happen; never asserted as a duration

ECHO_FIRMWARE = """\
import sys
print("ready")
while True:
    line = sys.stdin.buffer.readline()
    if not line:
        break
    if line.startswith(b"exit "):
        sys.exit(int(line[5:]))
    sys.stdout.buffer.write(b"echo:" + line)
"""

# Answers each line with its length and a digest: a few bytes per line, so that a reader slowed
# down by a busy machine never lets the console output overflow (the relay drops output it
# cannot deliver, as a UART would), and only lost or reordered input can fail the test.
DIGEST_FIRMWARE = """\
import sys, binascii, hashlib
print("ready")
while True:
    line = sys.stdin.buffer.readline()
    if not line:
        break
    digest = binascii.hexlify(hashlib.sha256(line).digest()[:4]).decode()
    sys.stdout.buffer.write(("%d %s\\n" % (len(line), digest)).encode())
"""

FLOOD_FIRMWARE = """\
import sys
chunk = b"x" * 1023 + b"\\n"
for _ in range(1024):
    sys.stdout.buffer.write(chunk)
print("FLOOD-DONE")
"""

ARGV_FIRMWARE = """\
import gc, sys
gc.collect()
print("argv", sys.argv[1:])
print("heap", gc.mem_free() + gc.mem_alloc())
sys.exit(5)
"""


def firmware(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    return path


def expected_echo(payload: bytes) -> bytes:
    lines = payload.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return b"".join(b"echo:" + line + b"\n" for line in lines)


def expected_digests(payload: bytes) -> bytes:
    lines = [line + b"\n" for line in payload.split(b"\n")[:-1]]  # what readline() returns
    return b"".join(b"%d %s\n" % (len(line), hashlib.sha256(line).hexdigest()[:8].encode())
                    for line in lines)


def read_exactly(port: serial.Serial, size: int) -> bytes:
    got = bytearray()
    deadline = time.monotonic() + PATIENCE
    while len(got) < size and time.monotonic() < deadline:
        got += port.read(size - len(got))
    return bytes(got)


def alive(pid: int) -> bool:
    """True while pid runs; a zombie waiting for a reaper counts as dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def test_pyserial_round_trips_binary_through_the_console(tmp_path: Path) -> None:
    entry = firmware(tmp_path, "echo", ECHO_FIRMWARE)
    link = tmp_path / "console"
    with Simulator(BOARD, tmp_path / "state", firmware_entry=entry, serial_link=link) as sim:
        assert sim.console_path.startswith("/dev/")
        assert os.readlink(link) == sim.console_path
        with serial.Serial(str(link), timeout=5) as port:
            # Sync first: "ready" may already sit in the pty queue from before we opened it.
            port.write(b"sync\n")
            assert port.read_until(b"echo:sync\n").endswith(b"echo:sync\n")
            # 0x03 and 0x04 are the console's interrupt and end-of-file keys.
            payload = bytes(b for b in range(256) if b not in (3, 4)) * 8 + b"\n"
            port.write(payload)
            expected = expected_echo(payload)
            assert read_exactly(port, len(expected)) == expected
            port.write(b"exit 0\n")
        assert sim.wait(PATIENCE) == 0
    assert not link.is_symlink()


def test_bulk_input_is_neither_lost_nor_reordered(tmp_path: Path) -> None:
    entry = firmware(tmp_path, "digest", DIGEST_FIRMWARE)
    with Simulator(BOARD, tmp_path / "state", firmware_entry=entry) as sim:
        with serial.Serial(sim.console_path, timeout=5) as port:
            port.write(b"sync\n")
            synced = expected_digests(b"sync\n")
            assert port.read_until(synced).endswith(synced)
            payload = b"".join(b"%06d:" % i + bytes(range(5, 250)) + b"\n" for i in range(1000))
            writer = threading.Thread(target=port.write, args=(payload,))
            writer.start()
            expected = expected_digests(payload)
            got = read_exactly(port, len(expected))
            writer.join(PATIENCE)
            assert got == expected
        assert sim.dropped_bytes == 0


def test_mpremote_drives_a_repl_through_the_console(tmp_path: Path) -> None:
    mpremote = Path(sys.executable).parent / "mpremote"
    micropython = default_micropython()
    assert mpremote.exists() and micropython is not None, "the dev extra installs both"
    # Until the firmware entry offers a REPL, stand in with the bare interpreter's own REPL.
    repl = tmp_path / "repl.sh"
    repl.write_text(f"#!/bin/sh\nexec {micropython}\n")
    repl.chmod(0o755)
    entry = firmware(tmp_path, "echo", ECHO_FIRMWARE)
    with Simulator(BOARD, tmp_path / "state", firmware_entry=entry, micropython=repl) as sim:
        for expression in ("6 * 7", "bytes(range(250, 256))"):
            done = subprocess.run(
                [str(mpremote), "connect", sim.console_path, "resume", "exec",
                 f"print(repr({expression}))"],
                capture_output=True, text=True, timeout=PATIENCE,
            )
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip() == repr(eval(expression))


def test_client_can_reattach(tmp_path: Path) -> None:
    entry = firmware(tmp_path, "echo", ECHO_FIRMWARE)
    with Simulator(BOARD, tmp_path / "state", firmware_entry=entry) as sim:
        for round_ in range(3):
            with serial.Serial(sim.console_path, timeout=5) as port:
                marker = f"round{round_}\n".encode()
                port.write(marker)
                assert port.read_until(b"echo:" + marker).endswith(b"echo:" + marker)
        assert sim.wait(0) is None


def test_unattended_console_never_blocks_the_firmware(tmp_path: Path) -> None:
    entry = firmware(tmp_path, "flood", FLOOD_FIRMWARE)
    state = tmp_path / "state"
    with Simulator(BOARD, state, firmware_entry=entry) as sim:
        assert sim.wait(PATIENCE) == 0
        assert sim.dropped_bytes > 0
    log = (state / "console.log").read_bytes()
    assert log.endswith(b"FLOOD-DONE\n")
    # The megabyte of output rotated the log instead of growing it without bound.
    assert (state / "console.log.1").exists()


def test_exit_code_propagates_from_the_console(tmp_path: Path) -> None:
    entry = firmware(tmp_path, "echo", ECHO_FIRMWARE)
    with Simulator(BOARD, tmp_path / "state", firmware_entry=entry) as sim:
        with serial.Serial(sim.console_path, timeout=5) as port:
            port.write(b"exit 7\n")
        assert sim.wait(PATIENCE) == 7
        assert sim.returncode == 7


def test_run_passes_arguments_and_returns_exit_code(tmp_path: Path) -> None:
    entry = firmware(tmp_path, "argv", ARGV_FIRMWARE)
    script = tmp_path / "script.txt"
    script.write_text("press 1\n")
    state = tmp_path / "new" / "state"
    out = io.StringIO()
    before = signal.getsignal(signal.SIGTERM)
    code = run(BOARD, state, script=script, firmware_entry=entry, heap="200k", out=out)
    assert code == 5
    assert signal.getsignal(signal.SIGTERM) is before
    assert out.getvalue().startswith("console on /dev/")
    log = (state / "console.log").read_text()
    expected = ["--board", str(BOARD), "--state", str(state), "--script", str(script)]
    assert f"argv {expected!r}" in log.replace("\r", "")
    heap = int(log.split("heap ")[1].split()[0])
    assert 0 < heap <= 200 * 1024


def start_runner(tmp_path: Path, entry: Path, link: Path) -> tuple[subprocess.Popen[str], int]:
    """Start `run()` in its own Python; return it and its micropython child's pid."""
    code = (
        "import sys\n"
        "from deskpulse.sim.simulator import run\n"
        f"sys.exit(run({str(BOARD)!r}, {str(tmp_path / 'state')!r}, "
        f"firmware_entry={str(entry)!r}, serial_link={str(link)!r}))\n"
    )
    runner = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
    )
    assert runner.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(runner.stdout, selectors.EVENT_READ)
        if not sel.select(PATIENCE):
            runner.kill()
            pytest.fail("runner printed no console line")
    line = runner.stdout.readline()
    assert line.startswith("console on /dev/")
    assert line.rstrip().endswith(f"(link: {link})")
    children = children_of(runner.pid)
    assert len(children) == 1
    return runner, children[0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_runner_and_child_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    entry = firmware(tmp_path, "echo", ECHO_FIRMWARE)
    link = tmp_path / "console"
    runner, child = start_runner(tmp_path, entry, link)
    try:
        assert alive(child)
        assert link.is_symlink()
        runner.send_signal(sig)
        assert runner.wait(PATIENCE) == 128 + sig
        assert not alive(child)
        assert not link.is_symlink()
    finally:
        runner.kill()
        runner.wait()


def test_child_dies_with_a_killed_runner(tmp_path: Path) -> None:
    entry = firmware(tmp_path, "echo", ECHO_FIRMWARE)
    runner, child = start_runner(tmp_path, entry, tmp_path / "console")
    try:
        runner.kill()
        runner.wait(PATIENCE)
        wait_until(lambda: not alive(child), "the orphaned micropython to die")
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)


def test_missing_micropython_is_a_domain_error(tmp_path: Path) -> None:
    entry = firmware(tmp_path, "echo", ECHO_FIRMWARE)
    sim = Simulator(
        BOARD, tmp_path / "state", firmware_entry=entry, micropython=tmp_path / "nope"
    )
    with pytest.raises(DeskPulseError, match="micropython not found at .*nope"):
        sim.start()


def test_missing_board_is_a_domain_error(tmp_path: Path) -> None:
    entry = firmware(tmp_path, "echo", ECHO_FIRMWARE)
    with pytest.raises(DeskPulseError, match="board file not found"):
        Simulator(tmp_path / "no-board.json", tmp_path / "state", firmware_entry=entry).start()


def test_unwritable_state_dir_is_a_domain_error(tmp_path: Path) -> None:
    entry = firmware(tmp_path, "echo", ECHO_FIRMWARE)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DeskPulseError, match="not writable"):
        Simulator(BOARD, blocker / "state", firmware_entry=entry).start()


def test_serial_link_never_replaces_a_regular_file(tmp_path: Path) -> None:
    entry = firmware(tmp_path, "echo", ECHO_FIRMWARE)
    precious = tmp_path / "precious"
    precious.write_text("keep me")
    with pytest.raises(DeskPulseError, match="not a symlink"):
        Simulator(BOARD, tmp_path / "state", firmware_entry=entry, serial_link=precious).start()
    assert precious.read_text() == "keep me"


# -- `deskpulse sim` reports bad input in one line -----------------------------------------


def sim_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """`deskpulse sim ...` in-process: (exit status, stderr)."""
    code = cli.main(["sim", *argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.mark.parametrize("option", ["--config", "--device-config"])
def test_a_deeply_nested_config_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"device_id": "desk-1", "sync": ' + "[" * 20000 + "]" * 20000 + "}")
    code, err = sim_cli(capsys, "--state", str(tmp_path / "state"), option, str(deep))
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("deskpulse: ") and f"{deep} nests 20001 levels deep" in err
    assert not (tmp_path / "state").exists()  # refused before the kiosk ran


def test_a_rename_of_a_kiosk_holding_responses_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    first, second, tap = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "tap.txt"
    first.write_text('{"device_id": "a-desk"}')
    second.write_text('{"device_id": "b-desk"}')
    tap.write_text("rate 3\nyes\nexit\n")
    assert sim_cli(capsys, "--state", str(state), "--config", str(first), "--script",
                   str(tap))[0] == 0
    for option in ("--config", "--device-config"):
        code, err = sim_cli(capsys, "--state", str(state), option, str(second), "--script",
                            str(tap))
        assert code == 2 and err.count("\n") == 1, err
        assert err.startswith(f"deskpulse: config {second} rejected: ")
        assert "a-desk" in err and "b-desk" in err
    status = read_state(BOARD, state).status
    assert status["device_id"] == "a-desk" and status["log"]["unacked"] == 1


def test_a_firmware_failure_is_told_from_this_run_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "console.log").write_text("deskpulse: a problem of an earlier run\n")
    code, err = sim_cli(capsys, "--state", str(state), "--heap", "40k")  # too small to boot
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("deskpulse: the simulated kiosk exited with status 1 after: ")
    assert "MemoryError" in err and "earlier run" not in err
