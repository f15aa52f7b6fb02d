"""What the host keeps, as operations: the one interface every store engine implements.

Commands, the server and the reports see only this class and the records below; the
SQL behind them lives in the engine's own package (`store/sqlite/` today). A second engine
(PostgreSQL, for a chain) implements the same methods, and tests/store/test_store.py is
the contract it must pass.

Every method either completes or raises a DeskPulseError sentence (`StoreError` for the
engine's own failures: locked, read-only, damaged, full); nothing of an engine's
exception types escapes.
"""

from __future__ import annotations

import abc
import contextlib
import os
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

from deskpulse.errors import DeskPulseError

if TYPE_CHECKING:  # commands that never store a batch need not load the wire format
    from deskpulse.protocol.batch import Anchor, Response
    from deskpulse.protocol.signing import Nonce
    from deskpulse.store.accounts import User
    from deskpulse.store.copy import CopyTable
    from deskpulse.store.health import KioskContact, RefusalCount
    from deskpulse.store.notify import AlertRule, LogEntry, SentDigest

CLOCK_TOLERANCE_S = 120
"""A record placed by an anchor whose device stamp differs from that by more than this many
seconds counts as clock-corrected (docs/time.md, docs/report.md). Within it the two agree:
the device's clock counts whole seconds and a sync sets it a moment late."""

EARLIEST = -(1 << 62)
LATEST = 1 << 62
"""Time bounds that select everything (a range's missing end)."""


class StoreError(DeskPulseError):
    """The engine failed (locked, read-only, damaged, full, cannot open), as a sentence
    saying what to do. `busy` is set when another program held the store too long."""

    def __init__(self, message: str, *, busy: bool = False) -> None:
        super().__init__(message)
        self.busy = busy

    def __reduce__(self) -> tuple[Any, ...]:  # crosses from the server's writer process
        return (_store_error, (str(self), self.busy))


def _store_error(message: str, busy: bool) -> StoreError:
    return StoreError(message, busy=busy)


class ConflictError(DeskPulseError):
    """A record reuses the (device, seq) of a different stored record."""


def already_registered(device_id: str) -> DeskPulseError:
    return DeskPulseError(
        f"{device_id} is already registered; pass --force to give it a new key "
        "(its current config file then stops working), or use rotate-key")


PushProblem = Literal["unknown_device", "key_replaced", "replayed"]


class PushRefused(DeskPulseError):
    """A push whose key or nonce no longer holds when it is stored; nothing was stored."""

    def __init__(self, problem: PushProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem

    def __reduce__(self) -> tuple[Any, ...]:
        return (PushRefused, (self.problem, str(self)))


@dataclass(frozen=True, slots=True)
class PushCheck:
    """What must still hold, inside the transaction that stores a push: the device has this
    key, and this nonce is higher than the last one accepted (which then moves up to it)."""

    key: bytes
    nonce: Nonce


LayerScope = Literal["site", "device"]
LayerChange = tuple[LayerScope, str, "Mapping[str, Any] | None"]
"""A layer to save (scope, name, overlay), or to remove (overlay None)."""


@dataclass(frozen=True, slots=True)
class ConfigLayer:
    """Config keys people set for a site (its template: every kiosk below it) or for one
    kiosk (its overrides), merged into the kiosks' desired configs (config over the air)."""

    scope: LayerScope
    name: str  # the site path ("acme/north") or the device id
    overlay: dict[str, Any]
    updated: int  # unix seconds


@dataclass(frozen=True, slots=True)
class DesiredConfig:
    """The config a kiosk should run: its layers merged, with its version inside."""

    device_id: str
    version: int
    config: dict[str, Any]
    created: int  # unix seconds


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What people said about a kiosk (`deskpulse devices add/describe`)."""

    device_id: str
    name: str | None
    location: str | None
    time_zone: str | None


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    device_id: str
    name: str | None
    location: str | None
    time_zone: str | None
    board: str | None
    firmware: str | None
    last_sync: int | None
    syncs: int
    responses: int
    time_unknown: int
    last_seq: int | None
    fill: float | None
    unacked: int | None
    dropped: int | None
    corrupt: int | None
    boot: int | None
    reset_cause: str | None
    crashes: int | None
    clock_known: bool | None
    transport: str | None


@dataclass(frozen=True, slots=True)
class SyncRecord:
    sync_id: int
    at: int
    transport: str
    received: int
    new: int
    duplicates: int
    time_unknown: int  # of the new responses, still unplaced right after this sync
    dropped: int | None
    fill: float | None
    status: dict[str, Any]


RollupRow = tuple[str, int, int, int, bytes]
"""(device_id, period, scale, kind, counts): a rollup row as store/rollups.py lays it out."""
RawRow = tuple[str, int | None, int | None, int, int, str, int, int]
"""(device_id, earliest, latest, rating, scale, told_next, rapid, closed): a response for
the tally. An exact time is both earliest and latest; a response without one has its
interval (store/intervals.py), or None twice."""


def default_db_path() -> Path:
    """The default SQLite file: $DESKPULSE_DB (unless a PostgreSQL URL), else
    deskpulse/deskpulse.db in $XDG_DATA_HOME (~/.local/share)."""
    explicit = os.environ.get("DESKPULSE_DB")
    if explicit and not explicit.startswith(POSTGRES_SCHEMES):  # else: the file there'd be
        return Path(explicit.removeprefix(SQLITE_SCHEME)).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or ""
    base = Path(data_home) if Path(data_home).is_absolute() else Path.home() / ".local/share"
    return base / "deskpulse" / "deskpulse.db"


def db_option_help() -> str:
    """The --db help line every command shares."""
    return (f"database: a SQLite file, or postgresql://USER:PASSWORD@HOST:PORT/DATABASE "
            f"(default: $DESKPULSE_DB if set, else {default_db_path()}; the default "
            "follows $XDG_DATA_HOME)")


POSTGRES_SCHEMES = ("postgresql://", "postgres://")
SQLITE_SCHEME = "sqlite://"


def parse_db_target(target: str | os.PathLike[str] | None
                    ) -> tuple[Literal["sqlite", "postgresql"], str | None]:
    """Which engine a --db value (or $DESKPULSE_DB, when None) selects, and where: a
    PostgreSQL URL as given; a SQLite file from sqlite:///PATH or a plain path, or None
    for the default file. Any other URL is a StoreError."""
    if target is None:
        target = os.environ.get("DESKPULSE_DB")
        if not target:
            return "sqlite", None
    text = os.fspath(target)
    if text.startswith(POSTGRES_SCHEMES):
        return "postgresql", text
    if text.startswith(SQLITE_SCHEME):
        return "sqlite", text.removeprefix(SQLITE_SCHEME)
    scheme, found, _ = text.partition("://")
    if found and scheme.isalpha():
        raise StoreError(
            f"unknown kind of database {scheme}://...: give a SQLite file (a path or "
            "sqlite:///PATH) or a PostgreSQL URL (postgresql://USER@HOST/DATABASE)")
    return "sqlite", text


def describe_db_target(target: str | os.PathLike[str] | None) -> str:
    """A --db value as messages show it: never with the password of a URL."""
    import re

    text = os.fspath(target) if target is not None else (
        os.environ.get("DESKPULSE_DB") or str(default_db_path()))
    return re.sub(r"(://[^:/@?#]*:)[^@/?#]*@", r"\1***@", text)


class Store(abc.ABC):
    """One open store. Not shared between threads; each process opens its own."""

    location: str
    """Where the store is (a path), for messages."""
    retried_in_groups = False
    """Set by the server's writer, which runs a job that failed as `busy` once more after
    committing the jobs before it (server/writer.py): in its part() an engine may then
    refuse a batch as busy rather than wait for what only another group's end frees."""

    # -- life --------------------------------------------------------------------------------

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def schema_version(self) -> int: ...

    # -- storing batches ---------------------------------------------------------------------

    @abc.abstractmethod
    def store_batch(self, device_id: str, responses: Sequence[Response],
                    anchors: Iterable[Anchor], status: Mapping[str, Any], transport: str, *,
                    proto: int | None = None, now: float | None = None,
                    push: PushCheck | None = None) -> tuple[int, int]:
        """Store one sync's or push's responses, anchors and device status at once, and
        return (new, duplicates). A record already stored under its (device, seq) is a
        duplicate; a different record under the same pair raises ConflictError; with
        `push`, a key or nonce that no longer holds raises PushRefused. Either way nothing
        of the batch is stored. Outside `group_commit()` the batch is committed before
        this returns."""

    @abc.abstractmethod
    def group_commit(self) -> contextlib.AbstractContextManager[None]:
        """One commit for every batch stored inside (the server's group commit): the
        commit, not the work, is most of a small push's cost."""

    @abc.abstractmethod
    def part(self) -> contextlib.AbstractContextManager[None]:
        """Inside group_commit(): a part undone alone if it raises."""

    @abc.abstractmethod
    def group_intact(self) -> bool:
        """Inside group_commit(), after a part failed: whether the group still stands
        (False when the engine rolled all of it back: a full disk, an I/O error)."""

    # -- devices and keys --------------------------------------------------------------------

    @abc.abstractmethod
    def devices(self) -> list[DeviceHealth]:
        """Every known device with its latest sync's health, by id."""

    @abc.abstractmethod
    def device_facts(self) -> list[DeviceFacts]:
        """Every known device's name, location and time zone, by id."""

    @abc.abstractmethod
    def describe_device(self, device_id: str, *, name: str | None = None,
                        location: str | None = None, time_zone: str | None = None,
                        create: bool = False, now: float | None = None) -> None:
        """Set what people say about a kiosk; None leaves a field, "" clears it. A kiosk
        never seen is an error, or with `create` is added."""

    @abc.abstractmethod
    def registered_ids(self) -> set[str]: ...

    @abc.abstractmethod
    def device_key(self, device_id: str) -> bytes | None: ...

    @abc.abstractmethod
    def set_key(self, device_id: str, key: bytes, *, replace: bool,
                facts: DeviceFacts | None = None, now: float | None = None) -> bool:
        """Give the kiosk this key and a fresh replay counter, creating its device row (with
        `facts`) if needed; return whether a key was replaced. A registered kiosk is
        refused unless `replace`; with `replace` and no registration, refused too when
        `facts` is None (rotating the key of a kiosk that is not registered)."""

    @abc.abstractmethod
    def remove_key(self, device_id: str) -> None:
        """The kiosk can no longer push; its responses stay."""

    # -- what was synced ---------------------------------------------------------------------

    @abc.abstractmethod
    def last_seq(self, device_id: str) -> int | None: ...

    @abc.abstractmethod
    def latest_sync(self, device_id: str) -> SyncRecord | None: ...

    @abc.abstractmethod
    def count_time_unknown(self, device_id: str | None = None) -> int: ...

    @abc.abstractmethod
    def responses_of(self, device_id: str) -> list[dict[str, Any]]:
        """A device's stored responses as dicts, in seq order (for checks and tools)."""

    @abc.abstractmethod
    def response_counts(self) -> dict[str, int]:
        """Stored responses per device."""

    # -- what the reports read ---------------------------------------------------------------

    @abc.abstractmethod
    def refresh_rollups(self, device_ids: Iterable[str]) -> None:
        """Rebuild the rollups of these devices where their time zone changed (or they have
        none yet), so that they are in each device's zone."""

    @abc.abstractmethod
    def snapshot(self) -> contextlib.AbstractContextManager[None]:
        """Reads inside see one moment, while a sync may be committing."""

    @abc.abstractmethod
    def month_rollups(self, device_ids: Sequence[str], first: int, last: int, *,
                      kinds: Sequence[int] | None = None) -> list[RollupRow]:
        """Month rows with first <= month <= last (month 0: the time-unknown counts), of
        `kinds` only when given."""

    @abc.abstractmethod
    def month_responses(self, device_ids: Sequence[str], first: int, last: int, *,
                        kinds: Sequence[int]) -> list[tuple[str, int, int, bool, int]]:
        """(device, scale, kind, time unknown, responses) of the month rows that
        `month_rollups` gives, summed per device, scale, kind and whether the month is
        TIME_UNKNOWN, from each row's stored total: what a report needs of the kinds it
        does not count (flagged responses are only counted), without their 2 KB
        counters."""

    @abc.abstractmethod
    def day_rollups(self, device_ids: Sequence[str], first: int, last: int
                    ) -> list[RollupRow]: ...

    @abc.abstractmethod
    def timed_responses(self, device_id: str, since: int, until: int) -> Iterator[RawRow]:
        """The device's responses with since <= wall < until, and those without a time
        whose interval lies inside [since, until), in no particular order."""

    @abc.abstractmethod
    def response_groups(self, since: int, until: int, device_id: str | None = None
                        ) -> Iterator[tuple[str, int | None, int | None, int, int, str, int,
                                            int, int]]:
        """RawRow plus a count, per distinct (device, time or interval, answer): the
        responses timed in [since, until) and every one without a time. The plain scan
        reports are checked by."""

    @abc.abstractmethod
    def clock_corrected(self, device_ids: Sequence[str], since: int, until: int, *,
                        include_flagged: bool) -> list[tuple[str, int, int]]:
        """(device_id, responses, largest |wall - device_wall|) of the responses in range
        whose device stamp the anchors contradicted by over CLOCK_TOLERANCE_S."""

    @abc.abstractmethod
    def anchored_stamps(self) -> Iterator[tuple[str, int, int, int, int]]:
        """(device_id, wall, device_wall, rapid, closed) of every response an anchor placed
        that the device had stamped: the plain check of `clock_corrected`."""

    @abc.abstractmethod
    def export_rows(self, device_id: str, since: int | None, until: int | None, *,
                    include_flagged: bool
                    ) -> Iterator[tuple[int | None, int | None, int | None, int, int, str,
                                        int, int, int]]:
        """(wall, earliest, latest, rating, scale, told_next, rapid, closed, seq) by time
        (an interval by its earliest) then seq: those timed in [since, until) and those
        whose interval lies inside it, or with neither bound every response, the ones
        without a time or an interval first."""

    # -- copying between stores (`deskpulse db copy`, store/copy.py) ---------------------------

    # COPY_TABLES, COPY_COLUMNS and COPY_KEYS (store/copy.py) say what each table's rows are.

    def copy_identity(self) -> str:
        """What tells two handles on the same database apart from two databases (a copy
        into its own source is refused). Engines refine the location."""
        return self.location

    @abc.abstractmethod
    def copy_rows(self, table: CopyTable, device_id: str, after: tuple[Any, ...] | None,
                  limit: int) -> list[tuple[Any, ...]]:
        """Up to `limit` of the device's rows of `table`, as the columns COPY_COLUMNS names,
        in key order (COPY_KEYS) after the key `after` (None: from the first). Plain
        values only (int, float, str, bytes, None), whichever the engine."""

    @abc.abstractmethod
    def copy_in(self, table: CopyTable, rows: Sequence[tuple[Any, ...]], *,
                taken: Collection[int] = ()) -> list[int]:
        """Merge rows another store's copy_rows gave (one device's) into this one, in one
        transaction, so that doing it again changes nothing (a resumed copy):
        - devices: a new one as it is; a known one keeps its name, location and time zone
          where set, its earliest first_seen, and board, firmware, proto, last_sync and
          status from whichever synced last;
        - device_keys: a new key as it is; the same key keeps the higher nonce (replay
          protection continues) and the earlier `created`; another key is the caller's
          refusal (copy.py checks first);
        - anchors and responses: those whose key is here already are left (copy.py checked
          they agree); responses carry this store's sync ids, and the device's rollups are
          marked for a rebuild (settle_copied);
        - syncs: returns each row's id here: a sync of the device equal in every column
          but its id, and not in `taken` (ids earlier rows of this copy got), is that row
          already copied; any other gets a new id;
        - desired_configs: appended to the kiosk's history (new row ids), oldest first,
          the history then cut to its newest desired.HISTORY (copy.py picks the rows)."""

    @abc.abstractmethod
    def settle_copied(self, device_id: str) -> None:
        """After copy_in: place the device's responses by its anchors here, bound those
        without a time, and rebuild its rollups, as if every batch had been stored here (a
        device merged from two stores may have gained anchors)."""

    @abc.abstractmethod
    def negative_marks(self, *, since: float | None, until: float | None,
                       device_id: str | None, location: str | None, include_flagged: bool,
                       negative_ratings: Sequence[int],
                       device_ids: Sequence[str] | None = None
                       ) -> Iterator[tuple[str, int, int]]:
        """(device_id, wall, 1 if negative else 0) of the timed responses, by device then
        time (then seq). `device_ids` keeps those kiosks only, read in one statement that
        takes each kiosk's time range from the (device_id, wall) index: many kiosks for the
        round trip of one."""

    # -- what the dashboard watches (docs/dashboard.md) ----------------------------------------

    @abc.abstractmethod
    def sync_marks(self, after: int | None, limit: int, among: Sequence[int] = ()
                   ) -> list[tuple[int, str]]:
        """(sync_id, device_id) of the syncs and pushes recorded after sync `after`, and of
        those of the ids `among` that exist (ids the poll saw skipped, which a transaction
        still open may yet commit), oldest first, at most `limit` after `after`; with
        `after` None only the newest one (none in an empty store): a cheap "what is new"
        that every `serve` process can poll."""

    @abc.abstractmethod
    def last_syncs(self) -> dict[str, int]:
        """Each device's last sync or push (unix seconds, host clock), of those that had one."""

    # -- config over the air (docs/wifi.md, "Config over the air") ---------------------------

    @abc.abstractmethod
    def config_layers(self) -> list[ConfigLayer]:
        """Every site template and device override, by scope then name."""

    @abc.abstractmethod
    def save_config(self, desired: Mapping[str, Mapping[str, Any] | None], *,
                    layer: LayerChange | None = None, now: float | None = None
                    ) -> dict[str, int | None]:
        """In one transaction: the layer (scope, name, overlay) set, or removed with overlay
        None, and the desired config of each kiosk in `desired` (None: no longer managed).
        A kiosk whose config (apart from its version) changed gets a new version, higher
        than any it was given and than the one it last reported running (wrapping after
        65535); returns those kiosks' versions."""

    @abc.abstractmethod
    def desired_config(self, device_id: str, version: int | None = None
                       ) -> DesiredConfig | None:
        """The kiosk's desired config, or an earlier version of it while still kept; None
        for a kiosk not managed over the air."""

    @abc.abstractmethod
    def desired_versions(self, device_id: str | None = None) -> dict[str, int]:
        """The desired version of every kiosk managed over the air (or of this one only:
        each push answer carries it)."""

    @abc.abstractmethod
    def accept_request(self, device_id: str, check: PushCheck) -> None:
        """A signed request that stores nothing (a config fetch) is checked as a push is
        (PushRefused) and its nonce becomes the last one accepted."""
    # -- sites: organisation > region > store > kiosk (rules in store/sites.py) --------------

    @abc.abstractmethod
    def sites(self) -> list[Site]:
        """Every site, each after its parent (by path): the tree."""

    @abc.abstractmethod
    def add_site(self, path: str, kind: str | None = None, *, time_zone: str | None = None,
                 opening_hours: str | None = None) -> Site:
        """Create a site under its existing parent; without `kind`, the level below the
        parent's (sites.default_kind). Zone and hours are checked (sites.check_zone,
        sites.check_hours); without them they are inherited."""

    @abc.abstractmethod
    def set_site(self, path: str, *, time_zone: str | None = None,
                 opening_hours: str | None = None, desired: DesiredFor | None = None) -> Site:
        """Set a site's time zone or opening hours; None leaves one, "" clears it (it is
        then inherited). The kiosks whose zone this changes get their rollups rebuilt by
        `refresh_rollups` (or their next batch); with `desired`, the desired configs of
        the kiosks below it (which carry zone and hours) follow in the same transaction."""

    @abc.abstractmethod
    def rename_site(self, path: str, name: str) -> str:
        """Give a site a new last name; the sites below it, their kiosks and their
        templates (config over the air) follow. Returns the new path."""

    @abc.abstractmethod
    def move_site(self, path: str, parent: str, *, desired: DesiredFor | None = None) -> str:
        """Move a site with everything below it (templates too) into `parent`, whose kind
        must take it; with `desired`, its kiosks' desired configs follow in the same
        transaction. Returns the new path."""

    @abc.abstractmethod
    def remove_site(self, path: str, *, force: bool = False,
                    desired: DesiredFor | None = None) -> SiteRemoval:
        """Remove a site that holds no site and no kiosk; with `force`, also every site
        below it, and its kiosks are left without a site (their responses stay). The
        sites' templates go with them; with `desired`, the kiosks' desired configs follow
        in the same transaction."""

    @abc.abstractmethod
    def assign_kiosk(self, device_id: str, store_path: str | None, *,
                     desired: DesiredFor | None = None) -> None:
        """Put a known kiosk in a store site (None: in none); with `desired`, its desired
        config follows in the same transaction."""

    @abc.abstractmethod
    def device_site_path(self, device_id: str) -> str | None:
        """The path of the store site the kiosk is in ("acme/north/lyon-1"), None when it
        is in none or unknown."""

    @abc.abstractmethod
    def kiosk_sites(self) -> dict[str, str]:
        """Every kiosk that is in a store site: its store's path."""

    # -- accounts of the dashboard (issue 17; the rules: store/accounts.py) ---------------

    @abc.abstractmethod
    def users(self) -> list[User]: ...

    @abc.abstractmethod
    def user(self, name: str) -> User | None: ...

    @abc.abstractmethod
    def add_user(self, name: str, role: str, *, site: str | None, email: str | None,
                 password_hash: str, now: float | None = None) -> User:
        """Refused: a taken name, an unknown site, a manager or viewer without a site."""

    @abc.abstractmethod
    def set_user(self, name: str, *, role: str | None = None, site: str | None = None,
                 email: str | None = None) -> User:
        """None leaves a field as it is; site "" is the whole chain, email "" none."""

    @abc.abstractmethod
    def set_password(self, name: str, password_hash: str, *, end_sessions: bool = True,
                     replacing: str | None = None) -> bool: ...

    @abc.abstractmethod
    def remove_user(self, name: str) -> None: ...

    @abc.abstractmethod
    def copy_user(self, user: User) -> bool:
        """A user of another store, unless the name is taken here; whether copied."""

    @abc.abstractmethod
    def server_secret(self) -> bytes:
        """The database's key for session cookies, drawn once."""

    # -- device health (issue 17; rules in store/health.py) ---------------------------------

    @abc.abstractmethod
    def record_refusals(self, counts: Sequence[RefusalCount], *, copied: bool = False,
                        now: float | None = None) -> None:
        """Add refused pushes to their (device, reason, hour) rows, unknown ids bounded
        (health.bounded) and rows older than health.RETENTION_S removed. With `copied`
        (`deskpulse db copy`) a row already there keeps the larger count, so that a copy
        done again changes nothing."""

    @abc.abstractmethod
    def push_refusals(self, since: int) -> list[RefusalCount]:
        """The refusal rows of the hours from the one holding `since` on, by hour, id and
        reason."""

    @abc.abstractmethod
    def kiosk_contacts(self, since: int) -> list[KioskContact]:
        """Every known device's contacts and latest status, by id; `since` picks the
        first contact of the flash trend (health.KioskContact)."""

    # -- notifications (issue 17; store/notify.py NotifyMethods on every engine) -----------

    @abc.abstractmethod
    def alert_rules(self) -> list[AlertRule]:
        """Every alert rule, by name."""

    @abc.abstractmethod
    def add_alert_rule(self, rule: AlertRule) -> None:
        """A new rule on an existing site; a name taken already is an error."""

    @abc.abstractmethod
    def remove_alert_rule(self, name: str) -> None:
        """Remove the rule and its log."""

    @abc.abstractmethod
    def notify_log(self) -> list[LogEntry]:
        """What each destination of each rule was told about each problem."""

    @abc.abstractmethod
    def save_notify_log(self, entries: Iterable[LogEntry], *,
                        forget: Iterable[LogEntry] = ()) -> None:
        """Write these log rows and remove those of `forget`, in one transaction."""

    @abc.abstractmethod
    def take_lease(self, name: str, owner: str, *, now: float, seconds: float) -> bool:
        """Hold the lease `name` until now + seconds unless another owner holds it
        unexpired: whether `owner` holds it (two processes never both do)."""

    @abc.abstractmethod
    def release_lease(self, name: str, owner: str) -> None: ...

    @abc.abstractmethod
    def sent_digests(self, weeks: Iterable[str] | None = None) -> list[SentDigest]:
        """The weekly digests delivered (of these ISO weeks; None: all)."""

    @abc.abstractmethod
    def record_digests(self, entries: Iterable[SentDigest]) -> None:
        """Record weekly digests as delivered, replacing the time of one sent again."""


@dataclass(frozen=True, slots=True)
class Site:
    """A node of the tree; `time_zone` and `opening_hours` are its own (None when it
    inherits them). Hours read as "mon-fri 09:00-18:00, sat 10:00-13:00"."""

    path: str
    kind: str
    time_zone: str | None = None
    opening_hours: str | None = None

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]

    @property
    def parent(self) -> str | None:
        return self.path.rpartition("/")[0] or None


DesiredFor = Callable[[Any, list[str]], Mapping[str, Mapping[str, Any] | None]]
"""Given the store and the kiosks a change of the site tree moved, inside its transaction
and after the change: their desired configs, saved in that transaction (save_config's
rules; device/ota.py `Recompute`). Without one a kiosk's desired config stays as it was
(`deskpulse config status` then says its layers changed)."""


@dataclass(frozen=True, slots=True)
class SiteRemoval:
    """What `remove_site` removed: the sites (the given one first), the kiosks it left
    without a site, and the sites whose template (config over the air) went with them."""

    sites: list[str]
    kiosks: list[str]
    layers: tuple[str, ...] = ()
