"""`deskpulse sync`: pull a kiosk's responses over its USB serial console, exactly once.

HELLO → (CONFIG READ, CONFIG) → TIME → PULL … until the device has no more → store
everything in one SQLite transaction and commit → ACK → (CONFIG). The device frees flash
only after the ACK.
If the ACK (or its answer) is lost, the next sync pulls the same records again and the
database ignores them as duplicates, so an interruption anywhere loses and doubles nothing.

Duplicates are recognised by (device_id, seq), so that holds only while the kiosk keeps its
id: a config that renames a kiosk is sent only once a fresh HELLO shows that the kiosk
holds no record it has not had acknowledged (`_settle_before_rename`); otherwise its old
records would come back under the new id and be stored a second time.

Every command carries a fresh tag; frames with any other tag (left over from an
interrupted exchange) are ignored. A command that gets no valid answer in time, or an
error frame (a line damaged on the way), is sent again with a new tag.

A config file is merged into the kiosk's own config (read back with CONFIG READ) unless
it replaces it whole: a WiFi file or a store template changes only what it names. What
changes is listed, secrets hidden; a config that changes nothing is not sent.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from deskpulse.device.config_check import (
    CheckedConfig,
    check_config,
    check_config_value,
    check_overlay,
    config_changes,
    merge_config,
    read_config_json,
)
from deskpulse.device.link import DEFAULT_ATTEMPTS, DEFAULT_TIMEOUT, Link, SyncError
from deskpulse.device.ports import SerialPort, open_port, resolve_port
from deskpulse.device.session import ConfigRefused, Hello, Progress, Session
from deskpulse.errors import DeskPulseError
from deskpulse.protocol.batch import Anchor, Response, clock_is_plausible
from deskpulse.protocol.wire import CONFIG_PIECE_HEAD
from deskpulse.store import open_store
from deskpulse.store.base import Store, StoreError

RENAME_ROUNDS = 3
"""Pull-store-ACK rounds to empty a kiosk (customers may keep tapping) before a config
that renames it is sent; after that the sync stops and a second run finishes."""


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
    # What the config sent changes, one line per key path (secrets hidden); empty with
    # config_unchanged when it changed nothing and was not sent.
    config_changes: list[str] = field(default_factory=list)
    config_unchanged: bool = False
    config_was_missing: bool = False  # the kiosk had no config file (ran on its defaults)
    batches: int = 0
    retries: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ConfigRequest:
    """A config file to install: merged into the kiosk's own (overlay), or, for
    --replace, as the whole config, then already checked by the firmware's validator
    (checked)."""

    path: str
    overlay: dict[str, Any]
    checked: CheckedConfig | None = None


def config_request(config_file: str | os.PathLike[str], replace: bool = False
                   ) -> ConfigRequest:
    """Read and check a config file before any kiosk is asked: whole (replace) with the
    firmware's validator, or as what it sets (a merge: the merged whole is checked once
    the kiosk's own config is known)."""
    path = str(config_file)
    if replace:
        checked = check_config(config_file)
        return ConfigRequest(path, json.loads(checked.data), checked)
    overlay = read_config_json(config_file)
    check_overlay(overlay, f"config {path}")
    return ConfigRequest(path, overlay)


def sync(
    port_or_serial: str | SerialPort,
    db_path: str | os.PathLike[str] | None,
    config_file: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    *,
    replace: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    attempts: int = DEFAULT_ATTEMPTS,
) -> SyncSummary:
    """Sync one kiosk into the database (db_path None: the default database), installing
    config_file when given: merged into the kiosk's config, or whole with replace.

    `port_or_serial` is a port path, "auto", or an already open port (left open)."""
    config = config_request(config_file, replace) if config_file is not None else None
    store = open_store(db_path)
    try:
        if isinstance(port_or_serial, str):
            name = resolve_port(port_or_serial)
            port = open_port(name)
            try:
                return _sync(Link(port, timeout=timeout, attempts=attempts, name=name),
                             store, config, progress)
            finally:
                port.close()
        link = Link(port_or_serial, timeout=timeout, attempts=attempts,
                    name=str(getattr(port_or_serial, "port", None) or "the port"))
        port_or_serial.reset_input_buffer()
        return _sync(link, store, config, progress)
    except StoreError as exc:
        # The kiosk frees only what an ACK after a commit covers: it still holds the rest.
        raise DeskPulseError(
            f"{exc}. Nothing is lost: the kiosk keeps every response not stored yet; "
            "run sync again once this is fixed") from exc
    finally:
        store.close()


def host_time() -> int:
    """This PC's clock in unix seconds (a seam for tests)."""
    return int(time.time())


def _sync(link: Link, store: Store, request: ConfigRequest | None,
          progress: Progress | None) -> SyncSummary:
    session = Session(link)
    try:
        hello = session.hello()
    except SyncError as exc:
        raise SyncError(
            f"no DeskPulse kiosk answers on {link.name} ({exc}); is the kiosk running "
            "(not held at the REPL) and is this its USB port?") from exc
    summary = SyncSummary(link.name, hello.device_id, hello.board, hello.firmware)
    config, named = (_prepare_config(link, request, summary) if request is not None
                     else (None, True))
    # Responses belong to the id they were recorded under: a kiosk with an id is emptied
    # first and gets its new config after; one without an id needs the config first.
    if config is not None and not hello.device_id:
        hello = _configure(session, config, summary)
    if not hello.device_id:
        raise DeskPulseError(
            "this kiosk has no device_id yet (its app predates ids from the MAC, or its "
            "board reports no MAC): give it one with --config FILE "
            '(a config with "device_id": "front-desk-1", say)')
    summary.device_id = hello.device_id
    before = store.last_seq(hello.device_id)
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
    previous_dropped = _previous_dropped(store, hello.device_id)
    responses = _pull_and_store(session, store, hello, anchors, summary, progress)
    record = store.latest_sync(hello.device_id)
    summary.time_unknown = record.time_unknown if record is not None else 0
    summary.time_unknown_total = store.count_time_unknown(hello.device_id)
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
        if _renames(config, hello, named):
            _settle_before_rename(session, store, hello, config, summary)
        try:
            _configure(session, config, summary)
        except ConfigRefused as exc:
            raise ConfigRefused(f"{exc}. Its responses were all stored; it keeps its old "
                                "config") from exc
    summary.retries = link.retries
    summary.bytes_sent, summary.bytes_received = link.bytes_sent, link.bytes_received
    return summary


def _pull_and_store(session: Session, store: Store, hello: Hello, anchors: list[Anchor],
                    summary: SyncSummary, progress: Progress | None = None
                    ) -> list[Response]:
    """Pull every record from hello.first_seq and store it in one commit (not ACKed)."""
    responses, batches = session.pull_all(
        hello.first_seq, int(_log_number(hello.status, "unacked") or 0), progress)
    new, duplicates = store.store_batch(hello.device_id, responses, anchors, hello.status,
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


def _settle_before_rename(session: Session, store: Store, hello: Hello, config: CheckedConfig,
                          summary: SyncSummary) -> None:
    """Return once a fresh HELLO shows the kiosk holds nothing unacknowledged, pulling,
    storing and ACKing what came meanwhile (or what a lost ACK left) a few times; else
    raise with the config unsent. The kiosk's records are keyed by its id in the
    database: under a new id, any record it still held would be stored a second time."""
    old, new = hello.device_id, config.device_id or "the id of its MAC (or none)"
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
            responses = _pull_and_store(session, store, now, [], summary)
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


def _previous_dropped(store: Store, device_id: str) -> int | None:
    record = store.latest_sync(device_id)
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


# -- the kiosk's own config ------------------------------------------------------------------


def read_kiosk_config(link: Link) -> bytes | None:
    """The bytes of the kiosk's config file, read piece by piece with CONFIG READ (a
    frame holds half of the largest config); None when it has none (it runs on its
    defaults). Raises SyncError when the kiosk does not answer as the protocol says, e.g.
    a firmware from before CONFIG READ."""
    data = bytearray()
    size: int | None = None
    while size is None or len(data) < size:
        payload = link.request(f"CONFIG READ {len(data)}", "R").payload
        if len(payload) < CONFIG_PIECE_HEAD:
            raise SyncError("the kiosk answered CONFIG READ without the config's size")
        total = int.from_bytes(payload[0:2], "little")
        offset = int.from_bytes(payload[2:4], "little")
        piece = payload[CONFIG_PIECE_HEAD:]
        if offset != len(data) or (size is not None and total != size):
            raise SyncError("the kiosk's config changed while it was read: run it again")
        if not piece and len(data) < total:
            raise SyncError(f"the kiosk sent no bytes of its config at {offset} of {total}")
        size = total
        data += piece
    if len(data) != size:
        raise SyncError(f"the kiosk sent {len(data)} bytes of a {size}-byte config")
    return bytes(data) if size else None


def parse_kiosk_config(data: bytes | None) -> dict[str, Any]:
    """The kiosk's config file as JSON ({} without a file: every default)."""
    if data is None:
        return {}
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeError, ValueError) as exc:
        raise DeskPulseError(f"the kiosk's config file is not valid JSON ({exc}): it runs "
                             "on its defaults") from exc
    if not isinstance(value, dict):
        raise DeskPulseError("the kiosk's config file is not a JSON object: it runs on its "
                             "defaults")
    return value


def _prepare_config(link: Link, request: ConfigRequest, summary: SyncSummary
                    ) -> tuple[CheckedConfig | None, bool]:
    """(the config to send, None when it changes nothing; whether the kiosk's config names
    its id, True when unknown): request merged into the kiosk's config (or replacing it),
    checked by the firmware's validator, its changes listed in summary."""
    checked = request.checked  # set for --replace: checked whole before the kiosk was asked
    try:
        current_bytes = read_kiosk_config(link)
    except SyncError as exc:
        if checked is None:
            raise DeskPulseError(
                f"cannot read the kiosk's config to merge {request.path} into it ({exc}); a "
                "kiosk whose app predates CONFIG READ needs a newer app (deskpulse deploy), "
                "or --replace to send the file as its whole config") from exc
        summary.warnings.append(f"the kiosk's config could not be read ({exc}): what "
                                "--replace changed is not listed")
        return checked, True
    if checked is None:
        try:
            current = parse_kiosk_config(current_bytes)
        except DeskPulseError as exc:
            raise DeskPulseError(f"{exc}; there is nothing to merge {request.path} into: "
                                 "send a whole config with --replace") from exc
        checked = check_config_value(merge_config(current, request.overlay),
                                     f"the kiosk's config with {request.path} merged in")
    else:
        try:
            current = parse_kiosk_config(current_bytes)
        except DeskPulseError:
            summary.config_changes = ["the kiosk's config file was damaged: replaced whole"]
            return checked, True
    summary.config_was_missing = current_bytes is None
    summary.config_changes = config_changes(current, json.loads(checked.data))
    named = bool(current.get("device_id"))
    if not summary.config_changes and current_bytes is not None:
        summary.config_unchanged = True
        return None, named
    return checked, named


def _renames(config: CheckedConfig, hello: Hello, named: bool) -> bool:
    """Whether config changes the id the kiosk goes by. A config naming none gives the
    kiosk its MAC id: no change for a kiosk whose own config names none either (it goes by
    that id now), a rename for one that has a name (unless that name is its MAC id, which
    the host cannot tell: settling first is then only cautious)."""
    if config.device_id:
        return config.device_id != hello.device_id
    return named


@dataclass(frozen=True)
class KioskConfig:
    """A kiosk's config as `deskpulse config show` reads it back."""

    device_id: str  # the id it goes by (its MAC id when the file names none)
    board: str | None
    config: dict[str, Any] | None  # its config file (None: none, it runs on its defaults)
    problems: list[str]  # what the kiosk says is wrong with its config


def fetch_config(port_or_serial: str | SerialPort, *, timeout: float = DEFAULT_TIMEOUT,
                 attempts: int = DEFAULT_ATTEMPTS) -> KioskConfig:
    """Read a kiosk's config back over the sync protocol (HELLO, then CONFIG READ);
    changes nothing on it. The file comes as it is, secrets included: redact before
    showing it (config_check.redacted_config)."""
    if isinstance(port_or_serial, str):
        name = resolve_port(port_or_serial)
        port = open_port(name)
        try:
            return _fetch_config(Link(port, timeout=timeout, attempts=attempts, name=name))
        finally:
            port.close()
    port_or_serial.reset_input_buffer()
    return _fetch_config(Link(port_or_serial, timeout=timeout, attempts=attempts,
                              name=str(getattr(port_or_serial, "port", None) or "the port")))


def _fetch_config(link: Link) -> KioskConfig:
    try:
        hello = Session(link).hello()
    except SyncError as exc:
        raise SyncError(
            f"no DeskPulse kiosk answers on {link.name} ({exc}); is the kiosk running "
            "(not held at the REPL) and is this its USB port?") from exc
    try:
        data = read_kiosk_config(link)
    except SyncError as exc:
        raise DeskPulseError(f"the kiosk on {link.name} cannot send its config back ({exc}): "
                             "its app predates CONFIG READ; update it with deskpulse "
                             "deploy") from exc
    problems = hello.status.get("config_problems")
    return KioskConfig(hello.device_id, hello.board, parse_kiosk_config(data) if data else None,
                       [str(p) for p in problems] if isinstance(problems, list) else [])
