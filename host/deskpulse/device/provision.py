"""Many kiosks at once (issue 15): `deskpulse provision` takes blank ESP32 boards, one per
USB port, to registered, configured, flashed and answering kiosks.

For each board: read its chip and MAC (esptool), choose its id, register it (a new key in
the database, or the key it already has), merge the store's template with its own fields
into its config, have the firmware's validator check it, build its filesystem image,
flash MicroPython and the image (deskpulse.device.flash), and count it done only when the
kiosk, restarted from its new flash, answers HELLO over USB with its new id and config
version; optionally also when the server stored its first signed push.

In three phases, so that the outcome does not depend on which board was quickest:

1. in parallel, one thread per port: the chip and MAC (a board with another chip than
   the firmware's is refused here, before it is registered);
2. in this thread, in the order the ports were given: the ids and the registrations
   (SQLite, one writer), so that the n-th port gets the n-th unused id of an --ids list
   and the n-th label on the sheet;
3. in parallel again: config, image, flash, HELLO (and the push).

A board that fails is reported with its one-line reason and stops nothing else.
Everything that is the same for all boards (the firmware file, the template merged with a
placeholder device and checked by the firmware's validator, the image against the
firmware's partition table) is checked first: a mistake there touches no board.

Ids. By default `kiosk-` and the 12 lowercase hex digits of the chip's base MAC, the id a
bare kiosk derives from machine.unique_id() (the same MAC on an ESP32); with --ids, the
next id of the list that is neither known to the database nor given out in the
provisioning record. A rerun on a kiosk already provisioned gets the id it has (the
record maps its MAC to it, and a MAC id is the same again) and keeps its registered key:
nothing is registered twice, and a new key comes only with new_key, said in its line.

The provisioning record is JSON lines appended, one per board that got an id: id, MAC,
board, port, the firmware file (name, MicroPython version, SHA-256), the app's
FIRMWARE_VERSION, the key's fingerprint (never the key), the time, and ok or the error.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deskpulse.device import boards, config_check, flash, image, labels, registration
from deskpulse.device.deploy import BOOT_TIMEOUT, await_kiosk, firmware_version
from deskpulse.device.server_cert import read_server_cert
from deskpulse.errors import DeskPulseError
from deskpulse.protocol import signing
from deskpulse.store import open_store
from deskpulse.store.base import DeviceFacts, Store, default_db_path, parse_db_target

MAC_ID_PREFIX = "kiosk-"
PLACEHOLDER_ID = MAC_ID_PREFIX + "0" * 12
"""The id the shared config check uses before any board is read."""
RECORD_NAME = "provisioning.jsonl"
PUSH_TIMEOUT = 600.0
"""Seconds --wait-push waits for a kiosk's first push: a kiosk pushes answers, so someone
taps a face on each kiosk meanwhile."""
PUSH_POLL = 1.0
DEFAULT_CONFIG_VERSION = 1
"""A template without a version installs as version 1: HELLO then tells the provisioned
config (1) from the defaults a bare kiosk runs on (0)."""

Event = Callable[[str, str, float | None], None]
"""on_event(port, what happens now, fraction of the board's work done or None)."""
ConsoleFor = Callable[[str], str]
"""The port on which the kiosk flashed through `port` answers after its reset: the same
USB port on a real board; a test hands over the simulated kiosk's console."""

# Fractions of a board's work, for progress bars: flashing is most of it.
_AT_CHIP, _AT_REGISTERED, _AT_IMAGE = 0.05, 0.1, 0.15
_FIRMWARE_SPAN = (0.2, 0.55)
_FILESYSTEM_SPAN = (0.55, 0.9)
_AT_FLASHED, _AT_ANSWERED = 0.92, 0.97
_WRITING = re.compile(r"writing (firmware|filesystem): (\d+)%")


@dataclass(frozen=True, slots=True)
class Options:
    """What `deskpulse provision` was asked, the same for every board."""

    board: str | Path
    firmware: Path
    template: Path
    db: str | Path | None = None  # None: the default database (a file or a URL: --db)
    server: str | None = None  # else the template's sync.server_url, if any
    server_cert: Path | None = None  # PEM file; else the template's sync.server_cert, if any
    wifi_ssid: str = ""
    wifi_password: str = ""
    ids_file: Path | None = None
    location: str | None = None
    record: Path | None = None  # None: provisioning.jsonl beside the database
    labels: Path | None = None
    new_key: bool = False
    wait_push: bool = False
    boot_timeout: float = BOOT_TIMEOUT
    push_timeout: float = PUSH_TIMEOUT
    baud: int = flash.FLASH_BAUD
    connect_attempts: int = flash.CONNECT_ATTEMPTS
    arch: str | None = image.ESP32_ARCH  # tests build for the simulator's CPU


@dataclass(frozen=True, slots=True)
class Wanted:
    """A line of the --ids file: `ID[,NAME[,LOCATION]]`."""

    device_id: str
    name: str | None = None
    location: str | None = None


@dataclass(frozen=True, slots=True)
class BoardResult:
    port: str
    ok: bool
    error: str | None = None
    mac: str | None = None
    chip: str | None = None  # "ESP32-D0WD-V3 (revision v3.1)"
    device_id: str | None = None
    name: str | None = None
    location: str | None = None
    fingerprint: str | None = None
    registration: str | None = None  # "new", "kept" or "replaced"
    app_version: str | None = None  # what the kiosk said in HELLO
    pushed: bool = False
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Run:
    results: tuple[BoardResult, ...]
    record: Path
    label_files: tuple[Path, ...]
    firmware: str  # "v1.24.1"
    app_version: str
    seconds: float

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


@dataclass
class _Board:
    """One board's state between the phases."""

    port: str
    started: float = field(default_factory=time.monotonic)
    chip: flash.Chip | None = None
    device_id: str | None = None
    wanted: Wanted | None = None
    key: bytes = b""
    registration: str | None = None
    hello_firmware: str | None = None
    pushed: bool = False
    error: str | None = None
    ended: float | None = None

    def fail(self, error: BaseException) -> None:
        self.error = _one_line(error)
        self.end()

    def end(self) -> None:
        self.ended = self.ended or time.monotonic()

    def result(self) -> BoardResult:
        chip, wanted = self.chip, self.wanted
        return BoardResult(
            self.port, self.error is None, self.error, chip.mac if chip else None,
            chip.description if chip else None, self.device_id,
            wanted.name if wanted else None, wanted.location if wanted else None,
            labels.key_fingerprint(self.key) if self.key else None,
            self.registration, self.hello_firmware, self.pushed,
            (self.ended or time.monotonic()) - self.started)


@dataclass(frozen=True, slots=True)
class _Shared:
    """What every board uses, read and checked once."""

    options: Options
    firmware: flash.Firmware
    firmware_sha256: str
    app_version: str
    template: dict[str, Any]
    server: str | None
    server_cert: str  # "" for none (an http:// server, or the template's own)
    time_zone: str | None
    wanted: tuple[Wanted, ...]
    record: Path


def _one_line(error: BaseException) -> str:
    # Anything else is a bug, still this board's alone: named by its type.
    text = (str(error) if isinstance(error, DeskPulseError)
            else f"{type(error).__name__}: {error}")
    return " ".join(text.split()) or type(error).__name__


def _quiet(_port: str, _text: str, _done: float | None) -> None:
    return None


# -- ids, templates, configs -----------------------------------------------------------------
def mac_id(mac: str) -> str:
    """The id of a kiosk whose base MAC is `mac` ("24:0a:c4:12:34:56")."""
    digits = mac.replace(":", "").replace("-", "").lower()
    if not re.fullmatch(r"[0-9a-f]{12}", digits):
        raise DeskPulseError(f"the board's MAC {mac!r} is not 6 bytes")
    return MAC_ID_PREFIX + digits


def read_ids(path: str | os.PathLike[str]) -> tuple[Wanted, ...]:
    """The --ids file: one kiosk a line, `ID[,NAME[,LOCATION]]` (a spreadsheet's CSV);
    blank lines and lines starting with # are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeError) as exc:
        raise DeskPulseError(f"cannot read the id list {path}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from exc
    found: list[Wanted] = []
    seen: set[str] = set()
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [cell.strip() for cell in row]
        if not cells or not cells[0] or cells[0].startswith("#"):
            continue
        if len(cells) > 3:
            raise DeskPulseError(f"{path} line {number}: use ID[,NAME[,LOCATION]], not "
                                 f"{len(cells)} fields")
        device_id = cells[0]
        try:
            registration.check_device_id(device_id)
        except DeskPulseError as exc:
            raise DeskPulseError(f"{path} line {number}: {exc}") from None
        if device_id in seen:
            raise DeskPulseError(f"{path} line {number}: {device_id} is listed twice")
        seen.add(device_id)
        name = cells[1] if len(cells) > 1 and cells[1] else None
        location = cells[2] if len(cells) > 2 and cells[2] else None
        found.append(Wanted(device_id, name, location))
    if not found:
        raise DeskPulseError(f"the id list {path} holds no id")
    return tuple(found)


def read_template(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A store template: a kiosk config without what is each kiosk's own."""
    raw = config_check.read_config_json(path, "store template")
    if not isinstance(raw, dict):
        raise DeskPulseError(f"store template {path} is not a JSON object of config keys")
    sync = raw.get("sync", {})
    if not isinstance(sync, dict):
        raise DeskPulseError(f"store template {path}: sync must be an object")
    if "device_id" in raw:
        raise DeskPulseError(f"store template {path} sets device_id: each kiosk gets its "
                             "own (from its MAC, or --ids); take it out")
    if sync.get("device_key"):
        raise DeskPulseError(f"store template {path} holds a device_key: each kiosk gets "
                             "its own key from the registry, never a shared one; take it out")
    return raw


def kiosk_config(template: Mapping[str, Any], device_id: str, key: bytes, *,
                 server: str | None = None, server_cert: str = "", wifi_ssid: str = "",
                 wifi_password: str = "") -> dict[str, Any]:
    """The template with the kiosk's own fields: its id, its key and, when given, the
    server, its certificate and the WiFi (which win over the template's)."""
    config = copy.deepcopy(dict(template))
    config.setdefault("version", DEFAULT_CONFIG_VERSION)
    config["device_id"] = device_id
    sync = dict(config.get("sync") or {})
    if server:
        sync["server_url"] = server
    if server_cert:
        sync["server_cert"] = server_cert
    if wifi_ssid:
        sync["wifi_ssid"] = wifi_ssid
    if wifi_password:
        sync["wifi_password"] = wifi_password
    sync["device_key"] = key.hex()
    config["sync"] = sync
    return config


def _build(board: str | Path, config: Mapping[str, Any],
           arch: str | None) -> image.KioskImage:
    """The kiosk's image, its config checked on the way by the firmware's validator. The
    config holds its key: it lives in a folder only this user can read, for the build."""
    with tempfile.TemporaryDirectory(prefix="deskpulse-provision-") as folder:
        path = Path(folder) / f"{config.get('device_id', 'kiosk')}.json"
        path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
        return image.build_image(board, path, arch=arch)


# -- the record ------------------------------------------------------------------------------
def default_record(db: str | os.PathLike[str] | None) -> Path:
    """Beside the SQLite file; for a PostgreSQL database, in the default file's folder."""
    engine, where = parse_db_target(db)
    file = Path(where) if engine == "sqlite" and where else default_db_path()
    return file.parent / RECORD_NAME


def recorded_ids(path: Path) -> dict[str, str]:
    """MAC -> id, the latest line of each MAC in the record (none yet: empty)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeError) as exc:
        raise DeskPulseError(f"cannot read the provisioning record {path}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from exc
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            raise DeskPulseError(f"the provisioning record {path} is damaged at line "
                                 f"{number}: not JSON (fix or move it)") from None
        if isinstance(entry, dict) and isinstance(entry.get("mac"), str) \
                and isinstance(entry.get("id"), str):
            found[entry["mac"].lower()] = entry["id"]
    return found


def _record_line(shared: _Shared, result: BoardResult, at: float) -> str:
    firmware = shared.firmware
    entry: dict[str, Any] = {
        "id": result.device_id, "mac": result.mac, "board": str(shared.options.board),
        "port": result.port, "chip": result.chip,
        "firmware": {"file": firmware.path.name, "version": firmware.version,
                     "sha256": shared.firmware_sha256},
        "app_version": shared.app_version, "key_fingerprint": result.fingerprint,
        "registration": result.registration,
        "time": datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds"),
        "ok": result.ok,
    }
    if result.error:
        entry["error"] = result.error
    return json.dumps(entry, ensure_ascii=False)


def append_record(path: Path, lines: Sequence[str]) -> None:
    """Lines appended and flushed to disk; earlier lines are never rewritten."""
    if not lines:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as out:
            out.write("".join(line + "\n" for line in lines))
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        raise DeskPulseError(f"cannot write the provisioning record {path}: "
                             f"{exc.strerror or exc}") from exc


# -- before any board ------------------------------------------------------------------------
def prepare(options: Options) -> _Shared:
    """Everything checked that is the same for all boards; no board is touched."""
    flash.require_esptool()
    firmware = flash.read_firmware(options.firmware)
    template = read_template(options.template)
    template_url = (template.get("sync") or {}).get("server_url")
    server = options.server or (template_url if isinstance(template_url, str) else None)
    if server:
        server = registration.check_server_url(server)
    elif options.wait_push:
        raise DeskPulseError("--wait-push needs a server: give --server URL (or "
                             "sync.server_url in the template)")
    server_cert = (read_server_cert(options.server_cert)
                   if options.server_cert is not None else "")
    template_cert = (template.get("sync") or {}).get("server_cert")
    if server:
        registration.check_server_cert_pairing(
            server, server_cert or (template_cert if isinstance(template_cert, str) else ""))
    elif server_cert:
        raise DeskPulseError("--server-cert needs an https:// server: give --server URL "
                             "(or sync.server_url in the template)")
    time_zone = template.get("time_zone")
    if isinstance(time_zone, str) and time_zone:
        registration.check_time_zone(time_zone)
    else:
        time_zone = None
    if options.labels is not None:
        labels.require_segno()
        labels.check_target(options.labels)
    wanted = read_ids(options.ids_file) if options.ids_file is not None else ()
    record = options.record or default_record(options.db)
    recorded_ids(record)  # a damaged record is refused before any board
    # Also loads the firmware's validator once, here, before the boards' threads use it.
    placeholder = kiosk_config(template, PLACEHOLDER_ID, bytes(32), server=server,
                               server_cert=server_cert, wifi_ssid=options.wifi_ssid,
                               wifi_password=options.wifi_password)
    try:
        built = _build(options.board, placeholder, options.arch)
    except DeskPulseError as exc:
        raise DeskPulseError(f"the store template {options.template} with a kiosk's own "
                             f"fields: {exc}") from None
    flash.check_firmware(firmware, boards.load_board(options.board), built)
    with open_store(options.db):  # created now if new; a broken one fails here
        pass
    return _Shared(options, firmware, hashlib.sha256(firmware.data).hexdigest(),
                   firmware_version(), template, server, server_cert, time_zone, wanted,
                   record)


# -- phase 1: the chip -----------------------------------------------------------------------


# -- phase 2: ids and keys ---------------------------------------------------------------------
def _choose_ids(boards_: Sequence[_Board], shared: _Shared, store: Store) -> None:
    recorded = recorded_ids(shared.record)
    known = store.registered_ids() | {d.device_id for d in store.device_facts()}
    given = set(recorded.values())
    listed = {w.device_id: w for w in shared.wanted}
    by_mac: dict[str, str] = {}
    for board in boards_:
        if board.error is not None or board.chip is None:
            continue
        mac = board.chip.mac.lower()
        if mac in by_mac:
            board.fail(DeskPulseError(f"{board.port} is the same board as {by_mac[mac]} "
                                      f"(MAC {board.chip.mac}): skipped"))
            continue
        by_mac[mac] = board.port
        if mac in recorded:
            board.device_id = recorded[mac]
            board.wanted = listed.get(board.device_id, Wanted(board.device_id))
        elif shared.wanted:
            free = next((w for w in shared.wanted
                         if w.device_id not in known and w.device_id not in given), None)
            if free is None:
                board.fail(DeskPulseError(
                    f"no unused id left in {shared.options.ids_file} (every one is "
                    "registered or given out in the provisioning record)"))
                continue
            board.device_id, board.wanted = free.device_id, free
        else:
            board.device_id = mac_id(mac)
            board.wanted = Wanted(board.device_id)
        given.add(board.device_id)
        if board.wanted.location is None and shared.options.location:
            board.wanted = replace(board.wanted, location=shared.options.location)


def _register(board: _Board, shared: _Shared, store: Store) -> None:
    """The kiosk's key: the one it is registered with, or a new one stored now."""
    device_id = board.device_id
    wanted = board.wanted
    if device_id is None or wanted is None:
        return
    facts = DeviceFacts(device_id, wanted.name, wanted.location, shared.time_zone)
    key = store.device_key(device_id)
    if key is not None and not shared.options.new_key:
        board.key, board.registration = key, "kept"
    else:
        board.key = signing.new_key()
        replaced = store.set_key(device_id, board.key, replace=key is not None, facts=facts)
        board.registration = "replaced" if replaced else "new"
    if wanted.name is not None or wanted.location is not None or shared.time_zone:
        store.describe_device(device_id, name=wanted.name, location=wanted.location,
                              time_zone=shared.time_zone)


_REGISTERED = {
    "new": "registered with a new key",
    "kept": "already registered: its key kept (no new entry)",
    "replaced": "registered again with a new key (its old key no longer works)",
}


# -- phase 3: config, image, flash, answer ---------------------------------------------------
def _flash_progress(port: str, on_event: Event) -> flash.Report:
    def report(line: str) -> None:
        text = line.strip()
        found = _WRITING.fullmatch(text)
        if found is None:
            on_event(port, text, None)
            return
        low, high = _FIRMWARE_SPAN if found.group(1) == "firmware" else _FILESYSTEM_SPAN
        on_event(port, text, low + (high - low) * int(found.group(2)) / 100)
    return report


def _finish(board: _Board, device_id: str, shared: _Shared, on_event: Event,
            console_for: ConsoleFor | None, started_at: float) -> None:
    options = shared.options
    config = kiosk_config(shared.template, device_id, board.key, server=shared.server,
                          server_cert=shared.server_cert, wifi_ssid=options.wifi_ssid,
                          wifi_password=options.wifi_password)
    built = _build(options.board, config, options.arch)
    version = built.config.version if built.config else None
    on_event(board.port, f"{device_id}: config (version {version}) passed the firmware's "
             f"validator; image of {len(built.files)} files built", _AT_IMAGE)
    flash.flash_kiosk(board.port, options.board, options.firmware, built=built,
                      baud=options.baud, connect_attempts=options.connect_attempts,
                      report=_flash_progress(board.port, on_event))
    console = console_for(board.port) if console_for is not None else board.port
    if "://" in console:
        raise DeskPulseError(f"flashed, but whether {device_id} starts cannot be checked "
                             f"on {console}: its answer is read from a local serial port")
    on_event(board.port, f"flashed; waiting for {device_id} to answer on {console}",
             _AT_FLASHED)
    hello = await_kiosk(console, options.boot_timeout)
    if hello.device_id != device_id:
        who = hello.device_id or "a kiosk without an id"
        raise DeskPulseError(f"the kiosk on {console} answers as {who}, not {device_id}: "
                             "its new config did not take (see its service screen)")
    answered_version = hello.status.get("config_version")
    if version is not None and answered_version != version:
        raise DeskPulseError(f"{device_id} on {console} runs config version "
                             f"{answered_version}, not the {version} just flashed: its "
                             "service screen says why")
    board.hello_firmware = hello.firmware
    on_event(board.port, f"{device_id} answers on {console} (app {hello.firmware})",
             _AT_ANSWERED)
    if options.wait_push:
        on_event(board.port, f"waiting for {device_id}'s first push to {shared.server}: "
                 "tap a face on it", _AT_ANSWERED)
        wait_for_push(options.db, device_id, started_at, options.push_timeout)
        board.pushed = True


def wait_for_push(db: str | Path | None, device_id: str, since: float, timeout: float) -> None:
    """Until the database holds a WiFi push of device_id stored at `since` (a time.time())
    or later, one the server took only after checking its signature with the key."""
    deadline = time.monotonic() + timeout
    while True:
        with open_store(db, create=False) as store:
            latest = store.latest_sync(device_id)
        if latest is not None and latest.transport == "wifi" and latest.at >= int(since):
            return
        if time.monotonic() >= deadline:
            raise DeskPulseError(
                f"no push from {device_id} reached the server within {timeout:.0f} s: a "
                "kiosk pushes answers, so tap a face on it; check its WiFi and that "
                "`deskpulse serve` runs on this database (the service screen shows the "
                "push's last error)")
        time.sleep(PUSH_POLL)


# -- all of it -------------------------------------------------------------------------------
def provision(ports: Sequence[str], options: Options, *, on_event: Event = _quiet,
              console_for: ConsoleFor | None = None) -> Run:
    """Provision the boards on `ports` as the module says. Raises DeskPulseError (nothing
    touched) only for what every board shares; a board's own failure is in its result."""
    started = time.monotonic()
    started_at = time.time()
    if not ports:
        raise DeskPulseError("no board: give --port once per board")
    doubles = sorted({p for p in ports if list(ports).count(p) > 1})
    if doubles:
        raise DeskPulseError(f"--port {doubles[0]} is given twice")
    shared = prepare(options)
    states = [_Board(port) for port in ports]
    for board in states:
        on_event(board.port, "reading the chip", 0.0)

    def phase_one(board: _Board) -> None:
        try:
            board.chip = flash.read_chip(board.port, shared.firmware,
                                   connect_attempts=options.connect_attempts)
            on_event(board.port, f"chip: {board.chip.description}, MAC {board.chip.mac}",
                     _AT_CHIP)
        except Exception as exc:  # any failure is this board's alone: reported, the others go on
            board.fail(exc)

    _each(states, phase_one)

    with open_store(options.db) as store:
        _choose_ids(states, shared, store)
        for board in states:
            if board.error is not None or board.device_id is None:
                continue
            try:
                _register(board, shared, store)
            except Exception as exc:
                board.fail(exc)
                continue
            on_event(board.port, f"{board.device_id}: {_REGISTERED[board.registration or 'new']}"
                     f", key fingerprint {labels.key_fingerprint(board.key)}", _AT_REGISTERED)

    def phase_three(board: _Board) -> None:
        if board.error is not None or board.device_id is None:
            return
        try:
            _finish(board, board.device_id, shared, on_event, console_for, started_at)
            board.end()
        except Exception as exc:
            board.fail(exc)

    _each(states, phase_three)
    results = tuple(board.result() for board in states)
    for result in results:
        on_event(result.port, f"done: {result.device_id}" if result.ok
                 else f"failed: {result.error}",
                 1.0 if result.ok else None)
    now = time.time()
    append_record(shared.record, [_record_line(shared, r, now) for r in results
                                  if r.device_id is not None and r.registration is not None])
    written: list[Path] = []
    if options.labels is not None:
        written = labels.write_sheets(options.labels, [
            labels.Label(r.device_id, r.name, r.location, r.fingerprint)
            for r in results if r.ok and r.device_id and r.fingerprint])
    return Run(results, shared.record, tuple(written), shared.firmware.version,
               shared.app_version, time.monotonic() - started)


def _each(states: Sequence[_Board], work: Callable[[_Board], None]) -> None:
    """work(board) for every board at once, one thread each (esptool's output is relayed
    per thread by deskpulse.device.flash)."""
    with ThreadPoolExecutor(max_workers=len(states),
                            thread_name_prefix="deskpulse-provision") as pool:
        for future in [pool.submit(work, board) for board in states]:
            future.result()
