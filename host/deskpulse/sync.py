"""`deskpulse sync`: pull a kiosk's responses over its USB serial console, exactly once.

HELLO → (CONFIG) → TIME → PULL … until the device has no more → store everything in one
SQLite transaction and commit → ACK → (CONFIG). The device frees flash only after the ACK.
If the ACK (or its answer) is lost, the next sync pulls the same records again and the
database ignores them as duplicates, so an interruption anywhere loses and doubles nothing.

Duplicates are recognised by (device_id, seq), so that holds only while the kiosk keeps its
id: a config that renames a kiosk is sent only once a fresh HELLO shows that the kiosk
holds no record it has not had acknowledged (`_settle_before_rename`); otherwise its old
records would come back under the new id and be stored a second time.

Every command carries a fresh tag; frames with any other tag (left over from an
interrupted exchange) are ignored. A command that gets no valid answer in time, or an
error frame (a line damaged on the way), is sent again with a new tag.
"""

from __future__ import annotations

import base64
import binascii
import errno
import functools
import importlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Protocol

import serial
from serial.tools import list_ports

from deskpulse import db, resources
from deskpulse.batch import (
    Anchor,
    BatchError,
    Response,
    clock_is_plausible,
    decode_batch,
    parse_anchor,
)
from deskpulse.errors import DeskPulseError
from deskpulse.frames import Frame, FrameParser, command_line
from deskpulse.simulator import default_micropython, require_micropython

PROTOCOL = 1
BAUDRATE = 115200
PULL_BYTES = 4096  # the device caps a batch at this anyway
CONFIG_CHUNK = 96  # decoded bytes per CONFIG DATA line (docs/protocol.md)
MAX_CONFIG_BYTES = 8192  # the firmware's config.MAX_FILE_BYTES
DEFAULT_TIMEOUT = 3.0
"""Seconds to wait for the answer to one command before sending it again. A full 4 KB
batch takes 0.4 s at 115200 baud; the rest is slack for a busy device."""
DEFAULT_ATTEMPTS = 4
_READ_SLICE = 0.05
RENAME_ROUNDS = 3
"""Pull-store-ACK rounds to empty a kiosk (customers may keep tapping) before a config
that renames it is sent; after that the sync stops and a second run finishes."""
MAX_CONFIG_DEPTH = 16
"""Nesting a config file may have (a real one nests 3 deep): deeper is refused before
parsing it could exhaust the stack (here) or the heap (on the kiosk)."""

USB_BRIDGES: dict[tuple[int, int], str] = {
    (0x10C4, 0xEA60): "CP210x",
    (0x1A86, 0x7523): "CH340",
    (0x1A86, 0x55D4): "CH9102",
    (0x0403, 0x6001): "FTDI FT232R",
    (0x0403, 0x6015): "FTDI FT231X",
    (0x303A, 0x1001): "Espressif USB serial/JTAG",
}
"""USB-to-serial bridges found on ESP32 boards, by (VID, PID)."""

DIALOUT_HINT = (
    "check that the cable carries data (some are power only) and that you may use serial "
    "ports: sudo usermod -aG dialout $USER, then log out and in again"
)


class SyncError(DeskPulseError):
    """The kiosk did not answer as the protocol says."""


class ConfigRefused(DeskPulseError):
    """The kiosk checked the config and kept its old one."""


class SerialPort(Protocol):
    """What sync needs of a port (a pyserial Serial, or a test's stand-in)."""

    def write(self, data: bytes, /) -> int | None: ...
    def read(self, size: int = 1, /) -> bytes: ...
    @property
    def in_waiting(self) -> int: ...
    def reset_input_buffer(self) -> None: ...


# -- finding and opening the port ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsbPort:
    device: str
    bridge: str
    description: str
    serial_number: str | None

    def __str__(self) -> str:
        serial_text = f", serial {self.serial_number}" if self.serial_number else ""
        return f"{self.device} ({self.bridge}: {self.description}{serial_text})"


def find_ports() -> list[UsbPort]:
    """Serial ports whose USB VID:PID is a bridge that ESP32 boards use."""
    found = []
    for info in list_ports.comports():
        bridge = USB_BRIDGES.get((info.vid or -1, info.pid or -1))
        if bridge is not None:
            found.append(UsbPort(info.device, bridge, info.description or "",
                                 info.serial_number))
    return sorted(found, key=lambda p: p.device)


def resolve_port(port: str) -> str:
    """`port` itself, or for "auto" the single ESP32 USB port (an error names them all
    when there are several, and gives the usual fixes when there is none)."""
    if port != "auto":
        return port
    ports = find_ports()
    if len(ports) == 1:
        return ports[0].device
    if not ports:
        raise DeskPulseError(
            "no ESP32 USB serial port found (CP210x, CH34x, FTDI or Espressif USB); "
            + DIALOUT_HINT)
    listing = "; ".join(str(p) for p in ports)
    raise DeskPulseError(f"{len(ports)} ESP32 USB ports found, pick one with --port: {listing}")


def open_port(path: str, baudrate: int = BAUDRATE) -> serial.Serial:
    """Open a kiosk's port without resetting it: on most ESP32 boards DTR and RTS drive
    GPIO0 and EN, so both are set inactive before the port opens (as esptool and mpremote
    do). Stale console output is flushed."""
    port = serial.Serial()
    port.port = path
    port.baudrate = baudrate
    port.timeout = _READ_SLICE
    port.write_timeout = 10
    port.exclusive = True  # two syncs on one kiosk would interleave their commands
    port.dtr = False
    port.rts = False
    try:
        port.open()
    except serial.SerialException as exc:
        code = exc.errno if isinstance(exc.errno, int) else None
        if code in (errno.EACCES, errno.EPERM):
            raise DeskPulseError(f"permission denied on {path}: {DIALOUT_HINT}") from exc
        if code == errno.ENOENT:
            raise DeskPulseError(
                f"no serial port {path}: is the kiosk plugged in? (try --port auto)") from exc
        if code in (errno.EAGAIN, errno.EWOULDBLOCK) or "lock" in str(exc).lower():
            raise DeskPulseError(f"{path} is in use by another program") from exc
        raise DeskPulseError(f"cannot open {path}: {exc}") from exc
    port.reset_input_buffer()
    return port


# -- config validation --------------------------------------------------------------------

_VALIDATE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from kiosk import config
cfg, problems = config.load(sys.argv[2])
print("@" + json.dumps({"problems": problems, "version": cfg["version"],
                        "device_id": cfg["device_id"]}))
"""


Runtime = Literal["micropython", "cpython"]


@dataclass(frozen=True, slots=True)
class CheckedConfig:
    data: bytes  # exactly what goes to the device
    version: int
    device_id: str


@dataclass(frozen=True, slots=True)
class FirmwareVerdict:
    """What the firmware's own `config.load()` says of a config file."""

    problems: list[str]  # in the order the validator found them
    version: int
    device_id: str


def check_config(path: str | os.PathLike[str], runtime: Runtime | None = None) -> CheckedConfig:
    """Read a config file and validate it with the firmware's own validator (kiosk/config.py),
    so that the host and the device cannot disagree about what is valid.

    It runs on MicroPython, the device's runtime, when the `sim` extra installed it, and
    on this CPython otherwise: the verdict is the same; a message can differ only in how
    it quotes non-ASCII names (MicroPython's repr escapes them). Problems are listed
    sorted, because their order follows each runtime's dict order."""
    raw = read_config_json(path)
    try:
        data = json.dumps(raw, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        raise DeskPulseError(f"config {path} holds a \\u escape of half a surrogate pair, "
                             "which is no character") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise DeskPulseError(f"config {path} is {len(data)} bytes compacted; the kiosk "
                             f"takes at most {MAX_CONFIG_BYTES}")
    if runtime is None:
        runtime = "micropython" if default_micropython() is not None else "cpython"
    with tempfile.TemporaryDirectory(prefix="deskpulse-config-") as tmp:
        candidate = Path(tmp) / "config.json"
        candidate.write_bytes(data)
        verdict = firmware_verdict(candidate, runtime)
    if verdict.problems:
        raise DeskPulseError(f"config {path} rejected: " + "; ".join(sorted(verdict.problems)))
    return CheckedConfig(data, verdict.version, verdict.device_id)


def firmware_verdict(path: Path, runtime: Runtime) -> FirmwareVerdict:
    """Run the firmware's `config.load(path)` on `runtime` (kiosk/config.py and the
    kiosk/jsoncheck.py it uses run on both)."""
    if runtime == "cpython":
        config, problems = _firmware_config().load(str(path))
        return FirmwareVerdict(list(problems), int(config["version"]), str(config["device_id"]))
    micropython = require_micropython("checking a config on MicroPython")
    try:
        proc = subprocess.run(
            [str(micropython), "-X", "heapsize=1M", "-c", _VALIDATE,
             str(resources.firmware_dir()), str(path)],
            capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeskPulseError(f"cannot run {micropython} to check the config: {exc}") from exc
    answer = [line for line in proc.stdout.splitlines() if line.startswith("@")]
    if proc.returncode != 0 or not answer:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise DeskPulseError(
            f"checking the config failed: {detail[-1] if detail else proc.returncode}")
    result = json.loads(answer[-1][1:])
    return FirmwareVerdict(list(result["problems"]), int(result["version"]),
                           str(result["device_id"]))


@functools.cache
def _firmware_config() -> ModuleType:
    """The firmware's kiosk/config.py, imported into this CPython."""
    firmware = resources.firmware_dir()
    sys.path.insert(0, str(firmware))
    try:
        module = importlib.import_module("kiosk.config")
    finally:
        sys.path.remove(str(firmware))
    # Another package named `kiosk` imported earlier would be used instead: refuse it.
    if Path(module.__file__ or "").resolve().parent != firmware / "kiosk":
        raise DeskPulseError(f"cannot check configs: the module kiosk.config at "
                             f"{module.__file__} is not the firmware's ({firmware})")
    return module


def read_config_json(path: str | os.PathLike[str], what: str = "config") -> Any:
    """A config file's JSON, or one sentence on why it cannot be read. A file far beyond
    what a kiosk takes, or nested deeper than MAX_CONFIG_DEPTH, is refused before it is
    parsed."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES * 8 + 1)
    except OSError as exc:
        raise DeskPulseError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_CONFIG_BYTES * 8:
        raise DeskPulseError(f"{what} {path} is far too big for a kiosk config (which takes "
                             f"at most {MAX_CONFIG_BYTES} bytes compacted)")
    try:
        text = data.decode("utf-8")
    except UnicodeError as exc:
        raise DeskPulseError(f"{what} {path} is not valid JSON: {exc}") from exc
    depth = _nesting(text)
    if depth > MAX_CONFIG_DEPTH:
        raise DeskPulseError(f"{what} {path} nests {depth} levels deep; a kiosk config "
                             f"takes at most {MAX_CONFIG_DEPTH}")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DeskPulseError(f"{what} {path} is not valid JSON: {exc}") from exc


def _nesting(text: str) -> int:
    """The deepest [ / { nesting outside JSON strings (an upper bound for malformed text)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
    return deepest


# -- the exchange -------------------------------------------------------------------------


class Link:
    """Tagged commands and their answer frames over one port."""

    def __init__(self, port: SerialPort, *, timeout: float = DEFAULT_TIMEOUT,
                 attempts: int = DEFAULT_ATTEMPTS, name: str = "the port") -> None:
        self.port = port
        self.timeout = timeout
        self.attempts = attempts
        self.name = name
        self.parser = FrameParser()
        self._tag = random.randrange(1, 0x10000)
        self.bytes_sent = 0
        self.bytes_received = 0
        self.retries = 0

    def _next_tag(self) -> int:
        # Tag 0 is left out: a device that cannot read a damaged line's tag may answer 0.
        self._tag = self._tag % 0xFFFF + 1
        return self._tag

    def _write(self, data: bytes) -> None:
        try:
            self.port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise DeskPulseError(f"lost the kiosk on {self.name}: {exc}") from exc
        self.bytes_sent += len(data)

    def _read(self) -> bytes:
        try:
            waiting = self.port.in_waiting
            return self.port.read(max(1, min(waiting, 65536)))
        except (serial.SerialException, OSError) as exc:
            raise DeskPulseError(f"lost the kiosk on {self.name}: {exc}") from exc

    def _await(self, tag: int, deadline: float) -> Frame | None:
        while time.monotonic() < deadline:
            data = self._read()
            if not data:
                continue
            self.bytes_received += len(data)
            for frame in self.parser.feed(data):
                if frame.tag == tag:
                    return frame
        return None

    def request(self, command: str, expect: str) -> Frame:
        """Send `command` until a frame of type `expect` answers it."""
        verb = command.split(" ", 1)[0]
        problem = "no answer"
        for attempt in range(self.attempts):
            if attempt:
                self.retries += 1
            tag = self._next_tag()
            self._write(command_line(tag, command))
            frame = self._await(tag, time.monotonic() + self.timeout)
            if frame is None:
                problem = "no answer"
            elif frame.type == expect:
                return frame
            elif frame.type == "E":
                problem = "the kiosk said: " + str(_json(frame).get("error", "?"))
            else:
                problem = f"a {frame.type} frame instead of {expect}"
        raise SyncError(f"{verb}: {problem} after {self.attempts} tries on {self.name}")


def _json(frame: Frame) -> dict[str, Any]:
    try:
        value = json.loads(frame.payload.decode("utf-8"))
    except (UnicodeError, ValueError) as exc:
        raise SyncError(f"the kiosk sent a {frame.type} frame that is not JSON") from exc
    if not isinstance(value, dict):
        raise SyncError(f"the kiosk sent a {frame.type} frame that is not a JSON object")
    return value


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise SyncError(f"the kiosk's {what} is not a number: {value!r}")
    return value


@dataclass
class Hello:
    proto: int
    device_id: str
    board: str | None
    firmware: str | None
    status: dict[str, Any]
    anchors: list[Anchor]
    first_seq: int
    next_seq: int


def parse_hello(frame: Frame) -> Hello:
    """Check the device's protocol version first, then the rest of its H frame."""
    body = _json(frame)
    proto = body.get("proto")
    if not isinstance(proto, int) or isinstance(proto, bool) or proto < 1:
        raise SyncError(f"the kiosk answered HELLO without a protocol version ({proto!r})")
    if proto > PROTOCOL:
        raise DeskPulseError(
            f"this kiosk speaks protocol {proto}; upgrade deskpulse "
            f"(this one speaks protocol {PROTOCOL})")
    status = body.get("status")
    anchors = body.get("anchors", [])
    if not isinstance(status, dict) or not isinstance(anchors, list):
        raise SyncError("the kiosk's HELLO answer lacks its status or anchors")
    device_id = body.get("device_id")
    try:
        parsed = [parse_anchor(a) for a in anchors]
    except BatchError as exc:
        raise SyncError(f"the kiosk's HELLO answer: {exc}") from exc
    return Hello(
        proto=proto,
        device_id=device_id if isinstance(device_id, str) else "",
        board=body.get("board") if isinstance(body.get("board"), str) else None,
        firmware=body.get("firmware") if isinstance(body.get("firmware"), str) else None,
        status=status,
        anchors=parsed,
        first_seq=_int(body.get("first_seq"), "first_seq"),
        next_seq=_int(body.get("next_seq"), "next_seq"),
    )


@dataclass
class SyncSummary:
    port: str
    device_id: str
    board: str | None
    firmware: str | None
    received: int = 0  # responses pulled
    new: int = 0
    duplicates: int = 0
    time_unknown: int = 0  # of the new ones
    time_unknown_total: int = 0  # of this device in the database
    dropped: int | None = None  # the device's total of responses dropped by its cap
    dropped_since_last: int | None = None
    corrupt: int | None = None
    fill: float | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    acked: int | None = None  # what the device confirmed freeing up to
    config_version: int | None = None  # set when a config was sent and applied
    batches: int = 0
    retries: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    warnings: list[str] = field(default_factory=list)


Progress = Callable[[int, int], None]
"""progress(responses pulled so far, responses the device said it holds)."""


class Session:
    """One sync with one kiosk over an open link."""

    def __init__(self, link: Link) -> None:
        self.link = link

    def hello(self) -> Hello:
        return parse_hello(self.link.request(f"HELLO {PROTOCOL}", "H"))

    def set_time(self, now: int) -> Anchor:
        body = _json(self.link.request(f"TIME {now}", "T"))
        try:
            return parse_anchor(body.get("anchor"))
        except BatchError as exc:
            raise SyncError(f"the kiosk's TIME answer: {exc}") from exc

    def pull_all(self, first_seq: int, expected: int,
                 progress: Progress | None = None) -> tuple[list[Response], int]:
        """Every record from first_seq until the device has no more: (records, batches)."""
        out: list[Response] = []
        batches = 0
        from_seq = max(1, first_seq)
        while True:
            frame = self.link.request(f"PULL {from_seq} {PULL_BYTES}", "B")
            try:
                batch = decode_batch(frame.payload)
            except BatchError as exc:
                raise SyncError(f"the kiosk sent a malformed batch ({exc}); nothing was "
                                "stored or acknowledged") from exc
            batches += 1
            if batch.responses and batch.responses[0].seq < from_seq:
                raise SyncError(f"the kiosk answered PULL {from_seq} with seq "
                                f"{batch.responses[0].seq}")
            out += batch.responses
            if progress is not None:
                progress(len(out), max(expected, len(out)))
            if not batch.more:
                return out, batches
            if not batch.responses:
                raise SyncError("the kiosk says more records wait but sent none")
            from_seq = batch.responses[-1].seq + 1

    def ack(self, upto: int) -> int:
        return _int(_json(self.link.request(f"ACK {upto}", "A")).get("acked"), "acked")

    def send_config(self, data: bytes) -> None:
        """Upload a (host-checked) config; the device checks, writes atomically, applies.
        Any doubt about what arrived restarts the upload from BEGIN."""
        crc = binascii.crc32(data)
        problem = ""
        for _ in range(self.link.attempts):
            reply = _json(self.link.request(f"CONFIG BEGIN {len(data)} {crc:08x}", "C"))
            if not reply.get("ok"):
                _refused(reply)
            sent = 0
            intact = True
            for start in range(0, len(data), CONFIG_CHUNK):
                chunk = data[start:start + CONFIG_CHUNK]
                reply = _json(self.link.request(
                    "CONFIG DATA " + base64.b64encode(chunk).decode("ascii"), "C"))
                sent += len(chunk)
                if not reply.get("ok") or reply.get("received") != sent:
                    intact = False
                    problem = f"the kiosk had {reply.get('received')} of {sent} bytes"
                    break
            if not intact:
                continue
            reply = _json(self.link.request("CONFIG END", "C"))
            if reply.get("ok"):
                return
            if reply.get("problems"):
                _refused(reply)
            problem = "the kiosk did not take the config"
        raise SyncError(f"CONFIG: {problem} after {self.link.attempts} uploads")


def _refused(reply: dict[str, Any]) -> None:
    problems = reply.get("problems") or [reply.get("error") or "no reason given"]
    if not isinstance(problems, list):
        problems = [str(problems)]
    raise ConfigRefused("the kiosk refused the config: " + "; ".join(map(str, problems)))


def sync(
    port_or_serial: str | SerialPort,
    db_path: str | os.PathLike[str] | None,
    config_file: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    attempts: int = DEFAULT_ATTEMPTS,
) -> SyncSummary:
    """Sync one kiosk into the database (db_path None: the default database).

    `port_or_serial` is a port path, "auto", or an already open port (left open)."""
    config = check_config(config_file) if config_file is not None else None
    conn = db.connect(db_path)
    try:
        if isinstance(port_or_serial, str):
            name = resolve_port(port_or_serial)
            port = open_port(name)
            try:
                return _sync(Link(port, timeout=timeout, attempts=attempts, name=name),
                             conn, config, progress)
            finally:
                port.close()
        link = Link(port_or_serial, timeout=timeout, attempts=attempts,
                    name=str(getattr(port_or_serial, "port", None) or "the port"))
        port_or_serial.reset_input_buffer()
        return _sync(link, conn, config, progress)
    except sqlite3.Error as exc:
        # The kiosk frees only what an ACK after a commit covers: it still holds the rest.
        problem = db.failure(exc, db_path if db_path is not None else db.default_db_path())
        raise DeskPulseError(
            f"{problem}. Nothing is lost: the kiosk keeps every response not stored yet; "
            "run sync again once this is fixed") from exc
    finally:
        conn.close()


def host_time() -> int:
    """This PC's clock in unix seconds (a seam for tests)."""
    return int(time.time())


def _sync(link: Link, conn: Any, config: CheckedConfig | None,
          progress: Progress | None) -> SyncSummary:
    session = Session(link)
    try:
        hello = session.hello()
    except SyncError as exc:
        raise SyncError(
            f"no DeskPulse kiosk answers on {link.name} ({exc}); is the kiosk running "
            "(not held at the REPL) and is this its USB port?") from exc
    summary = SyncSummary(link.name, hello.device_id, hello.board, hello.firmware)
    # Responses belong to the id they were recorded under: a kiosk with an id is emptied
    # first and gets its new config after; one without an id needs the config first.
    if config is not None and not hello.device_id:
        hello = _configure(session, config, summary)
    if not hello.device_id:
        raise DeskPulseError(
            "this kiosk has no device_id yet: give it one with --config FILE "
            '(a config with "device_id": "front-desk-1", say)')
    summary.device_id = hello.device_id
    before = db.last_seq(conn, hello.device_id)
    if before is not None and hello.next_seq <= before:
        summary.warnings.append(
            f"the kiosk numbers its next response {hello.next_seq}, but the database "
            f"already holds seq {before} for {hello.device_id}: was its flash erased?")
    anchors = list(hello.anchors)
    now = host_time()
    if clock_is_plausible(now):
        anchors.append(session.set_time(now))
    else:
        summary.warnings.append(
            f"this PC's clock says {_utc(now)}, which cannot be right: the kiosk's clock "
            "was not set; set this PC's clock and sync again")
    previous_dropped = _previous_dropped(conn, hello.device_id)
    responses = _pull_and_store(session, conn, hello, anchors, summary, progress)
    record = db.latest_sync(conn, hello.device_id)
    summary.time_unknown = record.time_unknown if record is not None else 0
    summary.time_unknown_total = db.count_time_unknown(conn, hello.device_id)
    dropped = _log_number(hello.status, "dropped")
    summary.dropped = int(dropped) if dropped is not None else None
    if summary.dropped is not None and previous_dropped is not None:
        summary.dropped_since_last = max(0, summary.dropped - previous_dropped)
    corrupt = _log_number(hello.status, "corrupt")
    summary.corrupt = int(corrupt) if corrupt is not None else None
    fill = _log_number(hello.status, "fs_fill")
    summary.fill = float(fill) if fill is not None else None
    if responses:
        _acknowledge(session, responses[-1].seq, summary)
    if config is not None and summary.config_version is None:
        if config.device_id != hello.device_id:
            _settle_before_rename(session, conn, hello, config, summary)
        try:
            _configure(session, config, summary)
        except ConfigRefused as exc:
            raise ConfigRefused(f"{exc}. Its responses were all stored; it keeps its old "
                                "config") from exc
    summary.retries = link.retries
    summary.bytes_sent, summary.bytes_received = link.bytes_sent, link.bytes_received
    return summary


def _pull_and_store(session: Session, conn: Any, hello: Hello, anchors: list[Anchor],
                    summary: SyncSummary, progress: Progress | None = None
                    ) -> list[Response]:
    """Pull every record from hello.first_seq and store it in one commit (not ACKed)."""
    responses, batches = session.pull_all(
        hello.first_seq, int(_log_number(hello.status, "unacked") or 0), progress)
    new, duplicates = db.store_batch(conn, hello.device_id, responses, anchors, hello.status,
                                     "serial", proto=hello.proto)
    summary.batches += batches
    summary.received += len(responses)
    summary.new += new
    summary.duplicates += duplicates
    if responses:
        if summary.first_seq is None:
            summary.first_seq = responses[0].seq
        summary.last_seq = responses[-1].seq
    return responses


def _settle_before_rename(session: Session, conn: Any, hello: Hello, config: CheckedConfig,
                          summary: SyncSummary) -> None:
    """Return once a fresh HELLO shows the kiosk holds nothing unacknowledged, pulling,
    storing and ACKing what came meanwhile (or what a lost ACK left) a few times; else
    raise with the config unsent. The kiosk's records are keyed by its id in the
    database: under a new id, any record it still held would be stored a second time."""
    old, new = hello.device_id, config.device_id or "(no id)"
    reason = "it was not checked"
    try:
        for _ in range(RENAME_ROUNDS):
            now = session.hello()
            if now.device_id != old:
                raise SyncError(f"the kiosk now calls itself {now.device_id or '(no id)'}")
            if now.first_seq >= now.next_seq:
                _confirmed(summary, now.first_seq - 1)
                return
            reason = (f"it still holds responses {now.first_seq}..{now.next_seq - 1} "
                      "unconfirmed (a lost ACK? customers still tapping?)")
            responses = _pull_and_store(session, conn, now, [], summary)
            if responses:
                _acknowledge(session, responses[-1].seq, summary)
    except SyncError as exc:
        reason = f"checking that failed: {exc}"
    raise DeskPulseError(
        f"the config was not sent and nothing on the kiosk was changed: it renames the "
        f"kiosk {old} to {new}, which is safe only once the kiosk has confirmed that every "
        f"response it holds is stored, and {reason}. Every response pulled is stored "
        f"({summary.new} new); run the same sync --config again to finish")


def _confirmed(summary: SyncSummary, acked: int) -> None:
    """A HELLO showed everything up to `acked` freed: warnings of lost ACKs are moot."""
    if summary.last_seq is not None and acked >= summary.last_seq:
        summary.acked = acked
        summary.warnings = [w for w in summary.warnings if not w.startswith(_NO_ACK)]


def _utc(wall: int) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(wall))
    except (OverflowError, OSError, ValueError):
        return f"{wall} (unix seconds)"


def _log_number(status: dict[str, Any], key: str) -> int | float | None:
    """A figure from the status's `log` section, None when absent or not a number."""
    log = status.get("log")
    value = log.get(key) if isinstance(log, dict) else None
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _previous_dropped(conn: Any, device_id: str) -> int | None:
    record = db.latest_sync(conn, device_id)
    return record.dropped if record is not None else None


_NO_ACK = "the kiosk did not confirm ACK"


def _acknowledge(session: Session, upto: int, summary: SyncSummary) -> None:
    """ACK after the commit. Losing it costs only a re-send next time."""
    try:
        acked = session.ack(upto)
    except SyncError:
        summary.warnings.append(
            f"{_NO_ACK} {upto}: its responses are stored, and if it "
            f"still holds them the next sync pulls them again and the database ignores them "
            f"as duplicates (by id and seq: only while the kiosk keeps the id "
            f"{summary.device_id})")
        return
    summary.acked = acked
    if acked > upto:
        summary.warnings.append(
            f"the kiosk acknowledged up to {acked}, beyond the {upto} stored: responses "
            f"{upto + 1}..{acked} may be lost (a damaged ACK line?)")
    elif acked < upto:
        summary.warnings.append(f"the kiosk kept its acknowledgement at {acked}, not {upto}")


def _configure(session: Session, config: CheckedConfig, summary: SyncSummary) -> Hello:
    session.send_config(config.data)
    summary.config_version = config.version
    hello = session.hello()
    summary.board, summary.firmware = hello.board, hello.firmware
    return hello
