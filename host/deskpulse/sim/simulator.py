"""Run the kiosk firmware on the MicroPython unix port, its console exposed on a pty.

The child `micropython` gets the slave of an *inner* pty (raw mode) as stdin, stdout and
stderr, so it sees a tty exactly as the REPL UART looks to firmware on an ESP32. The runner
owns an *outer* pty whose slave path (``/dev/pts/N``) is what host tools open: pyserial,
mpremote, a terminal. A relay thread copies bytes between the two masters.

A UART never stalls the chip because nobody listens, so neither does the relay: it always
drains the child's output, writes it to the outer master without blocking and counts what
does not fit as dropped. The runner keeps the outer slave open itself so clients may come and
go without the master ever reporting EIO. While nobody is attached the kernel still queues a
few tens of KB of console output for the next opener; clients that want a clean start flush
their input first (``serial.Serial.reset_input_buffer()``), as with a real board.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import tty
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import BinaryIO, Self, TextIO

from deskpulse import resources
from deskpulse.device.micropython import DEFAULT_HEAP, require_micropython
from deskpulse.device.registration import device_id_for_mac
from deskpulse.errors import DeskPulseError

CONSOLE_LOG_NAME = "console.log"
DEFAULT_LOG_LIMIT = 1 << 20
"""The console log rotates to ``console.log.1`` once it would grow past this many bytes."""

_READ_CHUNK = 65536
_STOP_GRACE = 5.0
_RELAY_SETTLE = 5.0
_RUN_POLL = 0.2
_PR_SET_PDEATHSIG = 1
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOPPED_BY_SIGNAL = tuple(128 + int(sig) for sig in _STOP_SIGNALS)  # run() exit codes


class Simulator:
    """One simulated kiosk: a `micropython` child whose console is a pty.

    Use as a context manager (``with Simulator(...) as sim:``), or call `start()` and
    `stop()`. The child is killed if the runner dies; that guard is tied to the thread that
    calls `start()` (Linux PR_SET_PDEATHSIG), so start it from a thread that outlives it.
    """

    def __init__(
        self,
        board: str | os.PathLike[str],
        state_dir: str | os.PathLike[str],
        *,
        script: str | os.PathLike[str] | None = None,
        serial_link: str | os.PathLike[str] | None = None,
        config: str | os.PathLike[str] | None = None,
        device_config: str | os.PathLike[str] | None = None,
        heap: str = DEFAULT_HEAP,
        micropython: str | os.PathLike[str] | None = None,
        firmware_entry: str | os.PathLike[str] | None = None,
        console_log: bool = True,
        log_limit: int = DEFAULT_LOG_LIMIT,
        realtime: bool = False,
        reset_cause: str = "power_on",
        mac: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.board = Path(board)
        self.state_dir = Path(state_dir)
        self.script = Path(script) if script is not None else None
        self.serial_link = Path(serial_link) if serial_link is not None else None
        self.config = Path(config) if config is not None else None
        self.device_config = Path(device_config) if device_config is not None else None
        self.heap = heap
        self.env = env
        """Variables added to the child's environment (e.g. the ROMFS image that
        tools/bench_heap.py's 32-bit build maps); None: this process's environment."""
        self.micropython = Path(micropython) if micropython is not None else None
        self.firmware_entry = (
            Path(firmware_entry) if firmware_entry is not None else resources.sim_entry()
        )
        self.log_path: Path | None = self.state_dir / CONSOLE_LOG_NAME if console_log else None
        self.log_limit = log_limit
        self.reset_cause = reset_cause
        """How the board came out of its last run (deskpulse.cli.sim.RESET_CAUSES): a
        power-on loses the time its own RTC kept, the other resets keep it (docs/time.md)."""
        self.realtime = realtime
        """Pace the script by the wall clock instead of the virtual clock (its `wait`s are
        still fast-forwarded); after the script the kiosk keeps wall-clock time anyway."""
        self.mac = mac
        """The simulated chip's base MAC ("24:0a:c4:12:34:56"), kept in the state folder;
        None: the folder's own, a random one made at its first start. A kiosk whose config
        names no device_id goes by kiosk- and its 12 hex digits."""

        self._proc: subprocess.Popen[bytes] | None = None
        self._console_path: str | None = None
        self._inner_master = -1
        self._inner_slave = -1
        self._outer_master = -1
        self._outer_slave = -1
        self._wake_read = -1
        self._wake_write = -1
        self._relay_thread: threading.Thread | None = None
        self._relay_error: BaseException | None = None
        self._link_made = False
        self._log: BinaryIO | None = None
        self._log_size = 0
        self._dropped = 0

    # -- public API -------------------------------------------------------------------------

    @property
    def console_path(self) -> str:
        """The outer pty slave (``/dev/pts/N``) that host tools open."""
        if self._console_path is None:
            raise DeskPulseError("simulator is not started")
        return self._console_path

    @property
    def pid(self) -> int:
        """Process id of the `micropython` child."""
        if self._proc is None:
            raise DeskPulseError("simulator is not started")
        return self._proc.pid

    @property
    def dropped_bytes(self) -> int:
        """Console output bytes lost because no reader kept up (as on an unattended UART)."""
        return self._dropped

    @property
    def returncode(self) -> int | None:
        """The child's exit status once it has exited (negative: killed by that signal)."""
        return self._proc.returncode if self._proc is not None else None

    def command(self, micropython: Path) -> list[str]:
        """The child's command line."""
        cmd = [
            str(micropython), "-X", f"heapsize={self.heap}", str(self.firmware_entry),
            "--board", str(self.board), "--state", str(self.state_dir),
        ]
        if self.script is not None:
            cmd += ["--script", str(self.script)]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        if self.device_config is not None:
            cmd += ["--device-config", str(self.device_config)]
        if self.realtime:
            cmd.append("--realtime")
        if self.reset_cause != "power_on":
            cmd += ["--reset-cause", self.reset_cause]
        if self.mac is not None:
            cmd += ["--mac", self.mac]
        return cmd

    def start(self) -> None:
        """Check the inputs, open both ptys, spawn the child and start the relay."""
        if self._proc is not None:
            raise DeskPulseError("simulator already started")
        micropython = self._check_inputs()
        try:
            if self.log_path is not None:
                self._open_log(self.log_path)
            self._open_ptys()
            self._spawn(micropython)
            # Only the child holds the inner slave now, so its exit shows as EIO on the master.
            os.close(self._inner_slave)
            self._inner_slave = -1
            if self.serial_link is not None:
                self._make_link(self.serial_link, self.console_path)
            self._relay_thread = threading.Thread(
                target=self._relay, name="deskpulse-sim-relay", daemon=True
            )
            self._relay_thread.start()
        except BaseException:
            self.stop()
            raise

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the child to exit and its last output to be relayed.

        Returns the exit status (negative if a signal killed it), or None on timeout.
        """
        if self._proc is None:
            raise DeskPulseError("simulator is not started")
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._raise_relay_error()
            return None
        if self._relay_thread is not None:
            # The relay ends by itself on EIO once the child's last output has been read.
            self._relay_thread.join(_RELAY_SETTLE)
        return code

    def _raise_relay_error(self) -> None:
        if self._relay_error is not None:
            raise DeskPulseError(f"console relay failed: {self._relay_error!r}")

    def stop(self, grace: float = _STOP_GRACE) -> int | None:
        """Terminate the child (SIGTERM, SIGKILL after `grace` s) and release everything.

        Safe to call more than once. Returns the child's exit status, if it was started.
        """
        proc = self._proc
        if proc is not None and proc.poll() is None:
            self._signal_child(proc, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal_child(proc, signal.SIGKILL)
                proc.wait()
        if self._relay_thread is not None:
            if self._relay_thread.is_alive():
                self._relay_thread.join(_RELAY_SETTLE)
            if self._relay_thread.is_alive():
                self._wake_relay()
                self._relay_thread.join()
            self._relay_thread = None
        if self._link_made and self.serial_link is not None:
            self._remove_link(self.serial_link)
            self._link_made = False
        for name in ("_inner_master", "_inner_slave", "_outer_master", "_outer_slave",
                     "_wake_read", "_wake_write"):
            fd = getattr(self, name)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, -1)
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None
        return proc.returncode if proc is not None else None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- setup ------------------------------------------------------------------------------

    def _check_inputs(self) -> Path:
        micropython = self.micropython or require_micropython("the simulator")
        if not micropython.exists():
            raise DeskPulseError(f"micropython not found at {micropython}")
        if not os.access(micropython, os.X_OK):
            raise DeskPulseError(f"{micropython} is not executable (run `make` to reinstall)")
        if not self.firmware_entry.is_file():
            raise DeskPulseError(f"firmware entry not found: {self.firmware_entry}")
        if not self.board.is_file():
            raise DeskPulseError(f"board file not found: {self.board}")
        if self.script is not None and not self.script.is_file():
            raise DeskPulseError(f"script not found: {self.script}")
        if self.device_config is not None and not self.device_config.is_file():
            raise DeskPulseError(f"device config not found: {self.device_config}")
        if self.mac is not None:
            device_id_for_mac(self.mac)  # says what a MAC looks like
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            # Probing beats os.access: it also catches read-only mounts and full disks.
            with tempfile.TemporaryFile(dir=self.state_dir):
                pass
        except OSError as exc:
            raise DeskPulseError(
                f"state dir {self.state_dir} is not writable: {exc.strerror or exc}"
            ) from exc
        link = self.serial_link
        if link is not None:
            if os.path.lexists(link) and not link.is_symlink():
                raise DeskPulseError(f"--serial-link {link} exists and is not a symlink")
            if not link.parent.is_dir():
                raise DeskPulseError(f"--serial-link directory not found: {link.parent}")
        return micropython

    def _open_ptys(self) -> None:
        self._inner_master, self._inner_slave = os.openpty()
        tty.setraw(self._inner_slave)
        self._outer_master, self._outer_slave = os.openpty()
        # Raw: no echo, no CR/LF translation, no signal characters; binary passes unchanged.
        tty.setraw(self._outer_slave)
        self._console_path = os.ttyname(self._outer_slave)
        os.set_blocking(self._inner_master, False)
        os.set_blocking(self._outer_master, False)
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)

    def _spawn(self, micropython: Path) -> None:
        inner_slave = self._inner_slave
        try:
            self._proc = subprocess.Popen(
                self.command(micropython),
                stdin=inner_slave,
                stdout=inner_slave,
                stderr=inner_slave,
                # Its own session: a Ctrl-C meant for the runner does not reach the child.
                start_new_session=True,
                preexec_fn=_die_with_parent_hook(),
                env=None if self.env is None else {**os.environ, **self.env},
            )
        except OSError as exc:
            raise DeskPulseError(f"cannot start {micropython}: {exc.strerror or exc}") from exc

    def _open_log(self, path: Path) -> None:
        try:
            self._log = path.open("ab", buffering=0)
            self._log_size = path.stat().st_size
        except OSError as exc:
            raise DeskPulseError(f"cannot open console log {path}: {exc.strerror}") from exc

    def _make_link(self, link: Path, target: str) -> None:
        temp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
        try:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            os.symlink(target, temp)
            os.replace(temp, link)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise DeskPulseError(f"cannot create --serial-link {link}: {exc.strerror}") from exc
        self._link_made = True

    def _remove_link(self, link: Path) -> None:
        # Leave the link alone if another simulator has since claimed the name.
        with contextlib.suppress(OSError):
            if os.readlink(link) == self._console_path:
                link.unlink()

    @staticmethod
    def _signal_child(proc: subprocess.Popen[bytes], sig: int) -> None:
        if proc.poll() is not None:
            return
        # The child leads its own process group; signal the group in case it ever forks.
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            proc.send_signal(sig)

    # -- relay ------------------------------------------------------------------------------

    def _wake_relay(self) -> None:
        if self._wake_write >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_write, b"x")

    def _relay(self) -> None:
        inner, outer = self._inner_master, self._outer_master
        pending = bytearray()
        reading_host = True
        sel = selectors.DefaultSelector()
        sel.register(inner, selectors.EVENT_READ)
        sel.register(outer, selectors.EVENT_READ)
        sel.register(self._wake_read, selectors.EVENT_READ)
        try:
            while True:
                for key, mask in sel.select():
                    if key.fd == self._wake_read:
                        return
                    if key.fd == inner and mask & selectors.EVENT_READ and not self._pump_output():
                        return
                    if key.fd == inner and mask & selectors.EVENT_WRITE:
                        self._push_input(pending)
                    if key.fd == outer:
                        data = self._read_host()
                        if data is None:
                            sel.unregister(outer)
                            reading_host = False
                        elif data:
                            pending += data
                            self._push_input(pending)
                # Back-pressure the host rather than the child: stop reading host input while
                # the child has not taken the last chunk, but never stop draining its output.
                want = selectors.EVENT_READ | (selectors.EVENT_WRITE if pending else 0)
                if sel.get_key(inner).events != want:
                    sel.modify(inner, want)
                if reading_host and pending and outer in sel.get_map():
                    sel.unregister(outer)
                elif reading_host and not pending and outer not in sel.get_map():
                    sel.register(outer, selectors.EVENT_READ)
        except Exception as exc:
            # Reported by wait(): a dead relay would otherwise stall the firmware silently.
            self._relay_error = exc
        finally:
            sel.close()

    def _pump_output(self) -> bool:
        """Move one chunk of child output onward; False once the child side has closed."""
        try:
            data = os.read(self._inner_master, _READ_CHUNK)
        except BlockingIOError:
            return True
        except OSError as exc:
            if exc.errno == errno.EIO:
                return False
            raise
        if not data:
            return False
        self._tee(data)
        try:
            sent = os.write(self._outer_master, data)
        except OSError:  # EAGAIN: the reader's queue is full, as on an unattended UART
            sent = 0
        self._dropped += len(data) - sent
        return True

    def _read_host(self) -> bytes | None:
        """Host input from the outer master: b"" if none yet, None if it cannot be read."""
        try:
            return os.read(self._outer_master, _READ_CHUNK)
        except BlockingIOError:
            return b""
        except OSError:
            return None

    def _push_input(self, pending: bytearray) -> None:
        """Write queued host input to the child without blocking; keep the unwritten tail."""
        try:
            sent = os.write(self._inner_master, pending)
        except BlockingIOError:
            return
        except OSError:
            # The child is gone; its exit ends the relay through the output side.
            pending.clear()
            return
        del pending[:sent]

    def _tee(self, data: bytes) -> None:
        log = self._log
        if log is None or self.log_path is None:
            return
        try:
            if self._log_size + len(data) > self.log_limit and self._log_size > 0:
                log.close()
                os.replace(self.log_path, self.log_path.with_name(CONSOLE_LOG_NAME + ".1"))
                log = self._log = self.log_path.open("ab", buffering=0)
                self._log_size = 0
            log.write(data)
            self._log_size += len(data)
        except OSError:
            # A full disk must not stop the console; the log is a convenience.
            self._log = None


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGKILL the child when the runner dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent:
            # The runner died between fork and prctl: nobody would ever stop us.
            os._exit(1)

    return hook



def run(
    board: str | os.PathLike[str],
    state_dir: str | os.PathLike[str],
    *,
    script: str | os.PathLike[str] | None = None,
    serial_link: str | os.PathLike[str] | None = None,
    config: str | os.PathLike[str] | None = None,
    device_config: str | os.PathLike[str] | None = None,
    heap: str = DEFAULT_HEAP,
    micropython: str | os.PathLike[str] | None = None,
    firmware_entry: str | os.PathLike[str] | None = None,
    out: TextIO | None = None,
    realtime: bool = False,
    reset_cause: str = "power_on",
    mac: str | None = None,
) -> int:
    """`deskpulse sim`: run until the firmware exits or SIGINT/SIGTERM/SIGHUP arrives.

    Prints the console path on `out` (default stdout). Returns the firmware's exit status,
    or 128 + the signal number when stopped by a signal (as a shell reports it).
    """
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in _STOP_SIGNALS:
            previous[sig] = signal.signal(sig, on_signal)
    try:
        with Simulator(
            board, state_dir, script=script, serial_link=serial_link, config=config,
            device_config=device_config, heap=heap, micropython=micropython,
            firmware_entry=firmware_entry, realtime=realtime, reset_cause=reset_cause,
            mac=mac,
        ) as sim:
            line = f"console on {sim.console_path}"
            if sim.serial_link is not None:
                line += f" (link: {sim.serial_link})"
            print(line, file=out or sys.stdout, flush=True)
            while not received:
                code = sim.wait(_RUN_POLL)
                if code is not None:
                    return code if code >= 0 else 128 - code
            return 128 + received[0]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def firmware_failure(state_dir: Path, code: int, since: int = 0) -> str:
    """The firmware reports bad input on its console: fetch its `deskpulse:` line, else
    its last line, from what this run logged (the log from byte `since` on)."""
    log = state_dir / CONSOLE_LOG_NAME
    try:
        with log.open("rb") as f:
            if f.seek(0, 2) >= since:  # else it rotated during the run: read it all
                f.seek(since)
            else:
                f.seek(0)
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        if line.startswith("deskpulse: "):
            return line.removeprefix("deskpulse: ").strip()
    last = next((line.strip() for line in reversed(lines) if line.strip()), "")
    said = f" after: {last[:200]}" if last else ""
    return f"the simulated kiosk exited with status {code}{said} (see {log})"
