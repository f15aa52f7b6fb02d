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

import os
import time
from dataclasses import dataclass, field
from typing import Any

from deskpulse.device.config_check import CheckedConfig, check_config
from deskpulse.device.link import DEFAULT_ATTEMPTS, DEFAULT_TIMEOUT, Link, SyncError
from deskpulse.device.ports import SerialPort, open_port, resolve_port
from deskpulse.device.session import ConfigRefused, Hello, Progress, Session
from deskpulse.errors import DeskPulseError
from deskpulse.protocol.batch import Anchor, Response, clock_is_plausible
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
    batches: int = 0
    retries: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    warnings: list[str] = field(default_factory=list)


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


def _sync(link: Link, store: Store, config: CheckedConfig | None,
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
        if config.device_id != hello.device_id:
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
