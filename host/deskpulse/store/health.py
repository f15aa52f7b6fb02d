"""Device health (issue 17): each kiosk's contacts, flash, clock and config as the store
knows them, and the pushes the server refused. The rules every store engine shares; the
engines keep the rows (store/<engine>/health.py).

Refused pushes are counted, not listed: one row per (device id as the request claimed it,
reason, hour) with a count, the last time and the last refusal's sentence. A flood of bad
pushes is a few rows, and the server writes them at most once every few seconds
(server/refusals.py). Ids that no kiosk has (404, or any refusal under an id the store does
not know) are bounded: at most MAX_UNKNOWN_IDS distinct ones per hour keep their own
rows, the rest of that hour is counted under UNKNOWN_OTHERS, and rows older than
RETENTION_S are removed when new ones are written. However long an attack on made-up ids
lasts, the table holds at most RETENTION_S / 3600 x (MAX_UNKNOWN_IDS + 1) x len(REASONS)
rows of them.
"""

from __future__ import annotations

import abc
import contextlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from deskpulse.store import desired

if TYPE_CHECKING:
    from deskpulse.store.base import Store

REASONS: dict[int, str] = {
    400: "malformed", 411: "malformed", 413: "malformed", 415: "malformed",
    401: "signature", 404: "unknown_device", 409: "replayed", 422: "clash",
}
"""The reason recorded for each refusal status. A 503 is the server's state, not the
kiosk's fault, and is not recorded (nor could it be: the store is what is missing)."""

REASON_TEXT = {
    "signature": "wrong key (a re-provisioned kiosk? `deskpulse devices rotate-key`)",
    "unknown_device": "no such kiosk registered",
    "replayed": "replayed request (nonce not higher than the last)",
    "clash": "records that clash with stored ones (its log was renumbered)",
    "malformed": "malformed request",
}
"""Each reason as a manager reads it."""
REASON_SHORT = {"signature": "wrong key", "unknown_device": "unknown id",
                "replayed": "replayed", "clash": "clashing records", "malformed": "malformed"}
"""Each reason in a word or two (`deskpulse devices`)."""

MAX_UNKNOWN_IDS = 20
"""Ids the store does not know that keep rows of their own, per hour."""
UNKNOWN_OTHERS = "*"
"""The id the refusals of further unknown ids in an hour are counted under (no kiosk id
holds a '*': protocol.signing.DEVICE_ID)."""
RETENTION_S = 30 * 86400
"""Refusal rows older than this are removed when new ones are written."""
MAX_MESSAGE = 200
"""Characters of a refusal's sentence kept."""
TREND_WINDOW_S = 7 * 86400
"""How far back the flash trend looks (the fill at the first contact in it)."""


def hour_of(at: float) -> int:
    return int(at) // 3600 * 3600


@dataclass(frozen=True, slots=True)
class RefusalCount:
    """Refused pushes of one claimed device id for one reason in one hour (`hour`: its
    first second, unix time), the last of them at `last`, saying `message`."""

    device_id: str
    reason: str
    hour: int
    count: int
    last: int
    message: str


def merged(counts: Iterable[RefusalCount]) -> list[RefusalCount]:
    """Counts of the same (device, reason, hour) added up, the latest sentence kept."""
    out: dict[tuple[str, str, int], RefusalCount] = {}
    for row in counts:
        key = (row.device_id, row.reason, row.hour)
        old = out.get(key)
        if old is not None:
            latest = row if row.last >= old.last else old
            row = RefusalCount(*key, old.count + row.count, latest.last, latest.message)
        out[key] = row
    return sorted(out.values(), key=lambda r: (r.hour, r.device_id, r.reason))


def bounded(counts: Sequence[RefusalCount], known: set[str],
            unknown_kept: Mapping[int, set[str]]) -> list[RefusalCount]:
    """The rows to write: a refusal under an id in `known` (the store's kiosks) as it is;
    under another id, as it is while that id already has a row in its hour
    (`unknown_kept`: hour to such ids) or fewer than MAX_UNKNOWN_IDS ids have, else counted
    under UNKNOWN_OTHERS."""
    kept = {hour: set(ids) for hour, ids in unknown_kept.items()}
    out = []
    for row in merged(counts):
        if row.device_id not in known and row.device_id != UNKNOWN_OTHERS:
            ids = kept.setdefault(row.hour, set())
            if row.device_id not in ids and len(ids) >= MAX_UNKNOWN_IDS:
                row = RefusalCount(UNKNOWN_OTHERS, row.reason, row.hour, row.count,
                                   row.last, row.message)
            else:
                ids.add(row.device_id)
        out.append(row)
    return merged(out)


def clipped(message: str) -> str:
    return message[:MAX_MESSAGE]


def rows_to_write(counts: Sequence[RefusalCount], known: set[str],
                  unknown_kept: Mapping[int, set[str]]) -> list[tuple[Any, ...]]:
    """The (hour, device_id, reason, count, last, message) rows an engine merges in:
    `bounded`, each sentence clipped."""
    return [(row.hour, row.device_id, row.reason, row.count, row.last, clipped(row.message))
            for row in bounded(counts, known, unknown_kept)]


# -- a kiosk's health ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KioskContact:
    """What an engine reads of one device for its health (`Store.kiosk_contacts`)."""

    device_id: str
    name: str | None
    last_push: int | None  # the latest WiFi push stored (unix seconds, host clock)
    last_serial: int | None  # the latest serial sync
    last_response: int | None  # the latest placed response's time
    last_sync: int | None  # the latest of both, whose status is `status`
    status: dict[str, Any]  # the device's status at its latest contact
    fill: float | None
    unacked: int | None
    dropped: int | None
    clock_known: bool | None
    earlier_at: int | None  # the first contact at or after `since` (the flash trend)
    earlier_fill: float | None
    earlier_dropped: int | None


def status_of(text: str | None) -> dict[str, Any]:
    """A stored status (JSON text) as a dict; {} when there is none or it is not one."""
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def contact_from_row(row: Sequence[object]) -> KioskContact:
    """A KioskContact from an engine's row: its fields in order, as the engine's types."""
    (device_id, name, last_push, last_serial, last_response, last_sync, status, fill,
     unacked, dropped, clock_known, earlier_at, earlier_fill, earlier_dropped) = row
    return KioskContact(
        str(device_id), _text(name), _int(last_push), _int(last_serial),
        _int(last_response), _int(last_sync), status_of(_text(status)),
        _float(fill), _int(unacked), _int(dropped),
        None if clock_known is None else bool(clock_known), _int(earlier_at),
        _float(earlier_fill), _int(earlier_dropped))


def _int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def _float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _text(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class KioskHealth:
    """One kiosk's health for the dashboard and the alerts. Times are unix seconds (host
    clock); None where the store does not know."""

    device_id: str
    name: str | None
    site: str | None  # its store's path
    last_push: int | None
    last_serial: int | None
    last_response: int | None
    fill: float | None  # flash filesystem fill, 0..1, at the last contact
    unacked: int | None
    dropped: int | None  # responses the kiosk ever dropped (its log full)
    clock_known: bool | None
    clock_offset_s: int | None  # kiosk clock minus the host's, at the last contact
    config_running: int | None  # the config version the kiosk last said it runs
    config_desired: int | None  # the one config over the air wants (None: not managed)
    refused: dict[str, int] = field(default_factory=dict)  # reason: pushes refused lately
    first_refused: int | None = None  # the hour the first of them fell in
    last_refused: int | None = None
    refused_message: str | None = None  # the latest refusal's sentence
    earlier_at: int | None = None  # the flash trend's first point (TREND_WINDOW_S back)
    earlier_fill: float | None = None
    earlier_dropped: int | None = None

    @property
    def last_contact(self) -> int | None:
        times = [t for t in (self.last_push, self.last_serial) if t is not None]
        return max(times) if times else None

    @property
    def config_behind(self) -> bool:
        """Whether config over the air wants another version than the kiosk runs."""
        return self.config_desired is not None and self.config_running != self.config_desired


def clock_offset(contact: KioskContact) -> int | None:
    """The kiosk's clock minus the host's when its last status arrived: the status's
    `clock.wall` (made moments before it was sent) against the host time the batch was
    stored; None while the kiosk's clock is not set or the status says no time."""
    clock = contact.status.get("clock")
    if not isinstance(clock, dict) or not clock.get("known") or contact.last_sync is None:
        return None
    wall = clock.get("wall")
    if not isinstance(wall, int) or isinstance(wall, bool):
        return None
    return wall - contact.last_sync


def running_config(status: Mapping[str, Any]) -> int | None:
    version = status.get("config_version")
    if isinstance(version, int) and not isinstance(version, bool) \
            and 0 <= version <= desired.MAX_VERSION:
        return version
    return None


def kiosk_health(store: Store, *, now: float, refused_window_s: int = 86400
                 ) -> list[KioskHealth]:
    """Every known kiosk's health, by id: its contacts and status, its config versions,
    and its pushes refused in the last `refused_window_s` seconds."""
    since = int(now) - refused_window_s
    refused: dict[str, dict[str, int]] = {}
    latest: dict[str, RefusalCount] = {}
    first: dict[str, int] = {}
    for row in store.push_refusals(since):
        if row.last < since:
            continue
        first.setdefault(row.device_id, row.hour)  # rows come by hour
        refused.setdefault(row.device_id, {}).setdefault(row.reason, 0)
        refused[row.device_id][row.reason] += row.count
        if row.device_id not in latest or row.last >= latest[row.device_id].last:
            latest[row.device_id] = row
    wanted = store.desired_versions()
    sites = store.kiosk_sites()
    out = []
    for c in store.kiosk_contacts(int(now) - TREND_WINDOW_S):
        last = latest.get(c.device_id)
        out.append(KioskHealth(
            c.device_id, c.name, sites.get(c.device_id), c.last_push, c.last_serial,
            c.last_response, c.fill, c.unacked, c.dropped, c.clock_known, clock_offset(c),
            running_config(c.status), wanted.get(c.device_id),
            refused.get(c.device_id, {}), first.get(c.device_id), last.last if last else None,
            last.message if last else None, c.earlier_at, c.earlier_fill,
            c.earlier_dropped))
    return out


# -- the Store's health methods, over an engine's queries -----------------------------------

CONTACT_SUBQUERIES = """
    (SELECT at FROM syncs WHERE device_id = d.device_id
         AND transport = 'wifi' ORDER BY at DESC LIMIT 1),
    (SELECT max(at) FROM syncs WHERE device_id = d.device_id AND transport = 'serial'),
    (SELECT max(wall) FROM responses WHERE device_id = d.device_id)"""
"""A kiosk's last push, last serial sync and last response time in both engines' SQL:
each one probe of an index ((device_id, at) of syncs from its newest end, as a kiosk's
latest contact is nearly always a push; the partial index of serial syncs; (device_id,
wall) of responses)."""


class HealthQueries(Protocol):
    """What an engine's health module offers (store/<engine>/health.py), each function
    inside the caller's transaction."""

    def record_refusals(self, conn: Any, counts: Sequence[RefusalCount], copied: bool,
                        now: int) -> None: ...
    def push_refusals(self, conn: Any, since: int) -> list[RefusalCount]: ...
    def kiosk_contacts(self, conn: Any, since: int) -> list[KioskContact]: ...


class HealthMethods(abc.ABC):
    """The device health methods of base.Store, the same on every engine; an engine mixes
    this in before Store and says how it reads and how it writes."""

    connection: Any
    health_queries: ClassVar[HealthQueries]

    @abc.abstractmethod
    def _health_read(self) -> contextlib.AbstractContextManager[None]:
        """Around a read: the engine's errors become StoreError sentences."""

    @abc.abstractmethod
    def _health_write(self) -> contextlib.AbstractContextManager[None]:
        """Around a write: one transaction (a savepoint inside the server's writer)."""

    def record_refusals(self, counts: Sequence[RefusalCount], *, copied: bool = False,
                        now: float | None = None) -> None:
        with self._health_write():
            self.health_queries.record_refusals(
                self.connection, counts, copied, int(time.time() if now is None else now))

    def push_refusals(self, since: int) -> list[RefusalCount]:
        with self._health_read():
            return self.health_queries.push_refusals(self.connection, since)

    def kiosk_contacts(self, since: int) -> list[KioskContact]:
        with self._health_read():
            return self.health_queries.kiosk_contacts(self.connection, since)
