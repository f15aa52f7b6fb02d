"""The PostgreSQL store: one database for a chain of stores, shared by several
`deskpulse serve` processes (schema.py has the tables, migrations and monthly partitions,
ingest.py how a batch is stored exactly once across processes, queries.py what is read,
rollup_tables.py the report counts kept at ingest).

psycopg is imported here and below only: `open_store` imports this package only for a
postgresql:// URL, so SQLite users never load it. Every method turns psycopg's errors
into StoreError sentences (`schema.failure`), also those raised while a returned iterator
is read.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import psycopg

from deskpulse.errors import DeskPulseError
from deskpulse.protocol.batch import Anchor, Response
from deskpulse.store import accounts as account_rules
from deskpulse.store import health as health_rules
from deskpulse.store import sites as site_rules
from deskpulse.store.base import (
    ConfigLayer,
    DesiredConfig,
    DeviceFacts,
    DeviceHealth,
    LayerChange,
    PushCheck,
    RawRow,
    RollupRow,
    Site,
    Store,
    StoreError,
    SyncRecord,
    already_registered,
)
from deskpulse.store.notify import NotifyMethods
from deskpulse.store.postgres import (
    accounts,
    copy,
    desired_config,
    health,
    ingest,
    notify,
    queries,
    rollup_tables,
    schema,
    sites,
)

if TYPE_CHECKING:
    from deskpulse.store.copy import CopyTable

P = ParamSpec("P")
R = TypeVar("R")

_IN_TRANSACTION = psycopg.pq.TransactionStatus.INTRANS
_IN_ERROR = psycopg.pq.TransactionStatus.INERROR

_CURSOR_ROWS = 10_000
"""Rows fetched at a time by the iterators (server-side cursors: a scan of millions of
responses never sits in memory whole)."""


def _translated(method: Callable[Concatenate[PostgresStore, P], R]
                ) -> Callable[Concatenate[PostgresStore, P], R]:
    @functools.wraps(method)
    def run(self: PostgresStore, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except psycopg.Error as exc:
            raise schema.failure(exc, self.url) from None
    return run


class PostgresStore(health_rules.HealthMethods, account_rules.AccountMethods,
                    site_rules.SiteMethods, NotifyMethods, Store):
    def __init__(self, connection: psycopg.Connection[Any], url: str) -> None:
        self.connection = connection
        """The engine's own handle: for this package and the PostgreSQL store's tests."""
        self.url = url
        self.location = schema.safe_location(url)
        self.partitions = schema.Partitions()
        self._cursor_names = itertools.count(1)
        self._ranges: dict[tuple[int, int], dict[str, list[Any]]] | None = None
        """Inside snapshot(): timed_responses' rows by range, then by device."""
        self._part_open = False
        """In part() before its first store_batch, which then needs no savepoint of its
        own."""
        self._functions_made = False
        """Whether ingest's server-side function exists in this session (a failed write
        may have rolled its making back: then it is made again)."""
        self._desired_read: tuple[str, int | None] | None = None
        """Inside part(): the device whose batch was stored in it and its desired config
        version, read by the batch's function: desired_versions() of that device then
        costs no statement."""

    @classmethod
    def open(cls, url: str, *, create: bool = True,
             busy_timeout_ms: int | None = None) -> PostgresStore:
        """Connect and migrate (with `create` False an empty database is an error)."""
        conn = schema.connect(url, lock_timeout_ms=busy_timeout_ms)
        try:
            with schema.translated(url):
                schema.migrate(conn, create=create, url=url)
        except BaseException:
            conn.close()
            raise
        return cls(conn, url)

    def _rows(self, query: queries.Query) -> Iterator[Any]:
        """The rows of a query, read from a server-side cursor when the iterator is first
        read (inside the snapshot or transaction open then, else a transaction of its
        own)."""
        statement, params = query
        try:
            with self.connection.transaction(), self.connection.cursor(
                    name=f"rows_{next(self._cursor_names)}") as cursor:
                cursor.itersize = _CURSOR_ROWS
                cursor.execute(statement, params)  # type: ignore[arg-type]
                yield from cursor
        except psycopg.Error as exc:
            raise schema.failure(exc, self.url) from None

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """Errors translated; partitions and functions made by a write that failed are
        forgotten (they were rolled back with it), and so are prepared statements."""
        try:
            yield
        except psycopg.Error as exc:
            self._forget_made()
            raise schema.failure(exc, self.url) from None
        except BaseException:
            self._forget_made()
            raise

    def _forget_made(self) -> None:
        self.partitions.forget()
        self._functions_made = False
        # psycopg (3.3) counts a statement as prepared once it has sent its PREPARE, even
        # when the server skipped it because an earlier statement of the pipeline failed:
        # its every later use then fails with "prepared statement ... does not exist"
        # (every push of the writer, seen after a deadlock). Forget them all; psycopg
        # deallocates them at the next statement and prepares them again after a few uses.
        prepared = getattr(self.connection, "_prepared", None)
        if prepared is not None:
            prepared.clear()

    # -- life ------------------------------------------------------------------------------

    def close(self) -> None:
        self.connection.close()

    @_translated
    def schema_version(self) -> int:
        return schema.schema_version(self.connection)

    # -- storing batches -------------------------------------------------------------------

    def store_batch(self, device_id: str, responses: Sequence[Response],
                    anchors: Iterable[Anchor], status: Mapping[str, Any], transport: str, *,
                    proto: int | None = None, now: float | None = None,
                    push: PushCheck | None = None) -> tuple[int, int]:
        with self._write():
            self._partitions_ahead()
            own_savepoint, self._part_open = not self._part_open, False
            if not self._functions_made:
                ingest.create_functions(self.connection)
                self._functions_made = True
            # In the server writer's part, a month not made yet is made between groups.
            self.partitions.deferring = self.retried_in_groups and not own_savepoint
            try:
                new, duplicates, desired = ingest.store_batch(
                    self.connection, self.partitions, device_id, responses, anchors,
                    status, transport, proto=proto, at=_now(now), push=push,
                    own_savepoint=own_savepoint)
            finally:
                self.partitions.deferring = False
            if not own_savepoint:  # in a part(), which forgets it at its end
                self._desired_read = (device_id, desired)
            return new, duplicates

    @contextlib.contextmanager
    def group_commit(self) -> Iterator[None]:
        with self._write():
            self._partitions_ahead()
            with self.connection.transaction():
                yield

    def _partitions_ahead(self) -> None:
        if self.connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            self.partitions.ensure_ahead(self.connection, time.time())
            self.partitions.make_wanted(self.connection)

    @contextlib.contextmanager
    def part(self) -> Iterator[None]:
        """A savepoint of the group, in pipeline mode: its SAVEPOINT and RELEASE travel
        with the job's own statements, and the job's first batch uses it as its own
        (one savepoint, not two, per push). Written out because psycopg's transaction()
        syncs the pipeline on entry and exit: four more round trips."""
        conn = self.connection
        with self._write():
            try:
                with conn.pipeline():
                    conn.execute("SAVEPOINT part")
                    self._part_open = True
                    yield
                    conn.execute("RELEASE SAVEPOINT part")
            except BaseException:
                # Out of pipeline mode again: undo this job alone (the group stays open).
                if conn.info.transaction_status in (_IN_TRANSACTION, _IN_ERROR):
                    conn.execute("ROLLBACK TO SAVEPOINT part")
                    conn.execute("RELEASE SAVEPOINT part")
                raise
            finally:
                self._part_open = False
                self._desired_read = None

    def group_intact(self) -> bool:
        return (self.connection.info.transaction_status
                == psycopg.pq.TransactionStatus.INTRANS)

    # -- devices and keys ------------------------------------------------------------------

    @_translated
    def devices(self) -> list[DeviceHealth]:
        return queries.devices(self.connection)

    @_translated
    def device_facts(self) -> list[DeviceFacts]:
        return queries.device_facts(self.connection)

    @_translated
    def describe_device(self, device_id: str, *, name: str | None = None,
                        location: str | None = None, time_zone: str | None = None,
                        create: bool = False, now: float | None = None) -> None:
        with self.connection.transaction():
            queries.describe(self.connection, device_id, name, location, time_zone,
                             create=create, now=_now(now))

    @_translated
    def registered_ids(self) -> set[str]:
        return queries.registered_ids(self.connection)

    @_translated
    def device_key(self, device_id: str) -> bytes | None:
        return queries.device_key(self.connection, device_id)

    @_translated
    def set_key(self, device_id: str, key: bytes, *, replace: bool,
                facts: DeviceFacts | None = None, now: float | None = None) -> bool:
        at = _now(now)
        with self.connection.transaction():
            # The device's row first, as a batch locks it: the same order everywhere.
            if facts is not None:
                queries.describe(self.connection, device_id, facts.name, facts.location,
                                 facts.time_zone, create=True, now=at)
            registered = queries.device_key(self.connection, device_id, lock=True) is not None
            if registered and not replace:
                raise already_registered(device_id)
            if not registered and facts is None:
                raise DeskPulseError(f"{device_id} is not registered")
            queries.set_key(self.connection, device_id, key, at)
        return registered

    @_translated
    def remove_key(self, device_id: str) -> None:
        with self.connection.transaction():
            if not queries.remove_key(self.connection, device_id):
                raise DeskPulseError(f"{device_id} is not registered")

    # -- what was synced -------------------------------------------------------------------

    @_translated
    def last_seq(self, device_id: str) -> int | None:
        return queries.last_seq(self.connection, device_id)

    @_translated
    def latest_sync(self, device_id: str) -> SyncRecord | None:
        return queries.latest_sync(self.connection, device_id)

    @_translated
    def count_time_unknown(self, device_id: str | None = None) -> int:
        return queries.count_time_unknown(self.connection, device_id)

    @_translated
    def responses_of(self, device_id: str) -> list[dict[str, Any]]:
        return queries.responses_of(self.connection, device_id)

    @_translated
    def response_counts(self) -> dict[str, int]:
        return queries.response_counts(self.connection)

    # -- what the reports read -------------------------------------------------------------

    def refresh_rollups(self, device_ids: Iterable[str]) -> None:
        wanted = set(device_ids)
        if not self._stale(wanted):
            return
        try:
            with self.connection.transaction():
                for device_id in self._stale(wanted):
                    self.connection.execute(
                        "SELECT 1 FROM devices WHERE device_id = %s FOR UPDATE", (device_id,))
                    rollup_tables.ensure_zone(self.connection, device_id)
        except (psycopg.errors.ReadOnlySqlTransaction,
                psycopg.errors.InsufficientPrivilege) as exc:
            stale = self._stale(wanted)
            more = " and others" if len(stale) > 3 else ""
            raise DeskPulseError(
                f"the figures of {', '.join(stale[:3])}{more} must be recounted first (a new "
                "time zone, or a database from before reports), which needs to write to "
                f"the database: {exc}") from None
        except psycopg.Error as exc:
            raise schema.failure(exc, self.url) from None

    @_translated
    def _stale(self, wanted: set[str]) -> list[str]:
        return sorted(wanted & set(rollup_tables.stale_devices(self.connection)))

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        conn = self.connection
        outermost = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        try:
            if outermost:  # one snapshot for every statement inside
                conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            try:
                with conn.transaction():
                    self._ranges = {} if outermost else self._ranges
                    yield
            finally:
                if outermost:
                    self._ranges = None
                if outermost and conn.info.transaction_status == \
                        psycopg.pq.TransactionStatus.IDLE:
                    conn.isolation_level = None
        except psycopg.Error as exc:
            raise schema.failure(exc, self.url) from None

    @_translated
    def month_rollups(self, device_ids: Sequence[str], first: int, last: int, *,
                      kinds: Sequence[int] | None = None) -> list[RollupRow]:
        return self._fetch(queries.month_rollups(device_ids, first, last, kinds))

    @_translated
    def month_responses(self, device_ids: Sequence[str], first: int, last: int, *,
                        kinds: Sequence[int]) -> list[tuple[str, int, int, bool, int]]:
        return queries.month_responses(self.connection, device_ids, first, last, kinds)

    @_translated
    def day_rollups(self, device_ids: Sequence[str], first: int, last: int
                    ) -> list[RollupRow]:
        return self._fetch(queries.day_rollups(device_ids, first, last))

    def _fetch(self, query: queries.Query) -> list[Any]:
        """Rollup rows, in binary: their counts arrive as bytes, not as hex text."""
        statement, params = query
        with self.connection.cursor(binary=True) as cursor:
            cursor.execute(statement, params)  # type: ignore[arg-type]
            return [(*row[:4], bytes(row[4])) for row in cursor.fetchall()]

    @_translated
    def timed_responses(self, device_id: str, since: int, until: int) -> Iterator[RawRow]:
        # A report asks for the partial days at its ends device by device, the same range
        # for every device of a zone. Inside a snapshot the first ask fetches the range for
        # every device at once (a few hours of responses): one round trip, not hundreds.
        if self._ranges is None:
            statement, params = queries.timed_responses(device_id, since, until)
            return iter(self.connection.execute(statement, params).fetchall())  # type: ignore[arg-type]
        by_device = self._ranges.get((since, until))
        if by_device is None:
            statement, params = queries.timed_responses(None, since, until)
            by_device = self._ranges[since, until] = {}
            for row in self.connection.execute(statement, params):  # type: ignore[arg-type]
                by_device.setdefault(row[0], []).append(row)
        return iter(by_device.get(device_id, ()))

    def response_groups(self, since: int, until: int, device_id: str | None = None
                        ) -> Iterator[tuple[str, int | None, int | None, int, int, str, int,
                                            int, int]]:
        return self._rows(queries.response_groups(since, until, device_id))

    @_translated
    def clock_corrected(self, device_ids: Sequence[str], since: int, until: int, *,
                        include_flagged: bool) -> list[tuple[str, int, int]]:
        return queries.clock_corrected(self.connection, device_ids, since, until,
                                       include_flagged)

    def anchored_stamps(self) -> Iterator[tuple[str, int, int, int, int]]:
        return self._rows(queries.anchored_stamps())

    def export_rows(self, device_id: str, since: int | None, until: int | None, *,
                    include_flagged: bool
                    ) -> Iterator[tuple[int | None, int | None, int | None, int, int, str,
                                        int, int, int]]:
        return self._rows(queries.export_rows(device_id, since, until, include_flagged))

    # -- copying between stores ------------------------------------------------------------

    @_translated
    def copy_identity(self) -> str:
        return copy.identity(self.connection, self.location)

    @_translated
    def copy_rows(self, table: CopyTable, device_id: str, after: tuple[Any, ...] | None,
                  limit: int) -> list[tuple[Any, ...]]:
        return copy.rows(self.connection, table, device_id, after, limit)

    def copy_in(self, table: CopyTable, rows: Sequence[tuple[Any, ...]], *,
                taken: Collection[int] = ()) -> list[int]:
        with self._write():
            return copy.copy_in(self.connection, self.partitions, table, rows, taken)

    def settle_copied(self, device_id: str) -> None:
        with self._write():
            copy.settle(self.connection, self.partitions, device_id)

    def negative_marks(self, *, since: float | None, until: float | None,
                       device_id: str | None, location: str | None, include_flagged: bool,
                       negative_ratings: Sequence[int],
                       device_ids: Sequence[str] | None = None
                       ) -> Iterator[tuple[str, int, int]]:
        return self._rows(queries.negative_marks(since, until, device_id, location,
                                                 include_flagged, negative_ratings,
                                                 device_ids))

    @_translated
    def sync_marks(self, after: int | None, limit: int, among: Sequence[int] = ()
                   ) -> list[tuple[int, str]]:
        return queries.sync_marks(self.connection, after, limit, among)

    @_translated
    def last_syncs(self) -> dict[str, int]:
        return queries.last_syncs(self.connection)

    # -- sites: the methods are site_rules.SiteMethods' -----------------------------------

    site_queries = sites

    def _site_read(self) -> contextlib.AbstractContextManager[None]:
        return schema.translated(self.url)

    @contextlib.contextmanager
    def _tree_change(self) -> Iterator[dict[str, Site]]:
        with schema.translated(self.url), self.connection.transaction():
            sites.lock(self.connection)  # one writer of the tree at a time, across processes
            yield {site.path: site for site in sites.tree(self.connection)}
            sites.follow_zones(self.connection)


    # -- accounts (issue 17): the methods are account_rules.AccountMethods' ----------------

    account_queries = accounts

    def _account_read(self) -> contextlib.AbstractContextManager[None]:
        return schema.translated(self.url)

    @contextlib.contextmanager
    def _account_change(self) -> Iterator[dict[str, Site]]:
        with schema.translated(self.url), self.connection.transaction():
            yield {site.path: site for site in sites.tree(self.connection)}

    # -- notifications: the methods are NotifyMethods' ------------------------------------

    notify_queries = notify

    def _notify_read(self) -> contextlib.AbstractContextManager[None]:
        return schema.translated(self.url)

    @contextlib.contextmanager
    def _notify_write(self) -> Iterator[None]:
        with schema.translated(self.url), self.connection.transaction():
            yield

    # -- config over the air ---------------------------------------------------------------

    @_translated
    def config_layers(self) -> list[ConfigLayer]:
        return desired_config.config_layers(self.connection)

    @_translated
    def save_config(self, desired: Mapping[str, Mapping[str, Any] | None], *,
                    layer: LayerChange | None = None, now: float | None = None
                    ) -> dict[str, int | None]:
        self._desired_read = None  # a push's read before this change is stale now
        with self.connection.transaction():
            return desired_config.save_config(self.connection, desired, layer, _now(now))

    @_translated
    def desired_config(self, device_id: str, version: int | None = None
                       ) -> DesiredConfig | None:
        return desired_config.desired_config(self.connection, device_id, version)

    @_translated
    def desired_versions(self, device_id: str | None = None) -> dict[str, int]:
        read = self._desired_read
        if read is not None and device_id is not None and read[0] == device_id:
            return {} if read[1] is None else {device_id: read[1]}
        return desired_config.desired_versions(self.connection, device_id)

    @_translated
    def accept_request(self, device_id: str, check: PushCheck) -> None:
        with self.connection.transaction():  # a savepoint inside the server's group
            ingest.check_push(self.connection, device_id, check)

    # -- device health (issue 17): the methods are health_rules.HealthMethods' ------------

    health_queries = health

    def _health_read(self) -> contextlib.AbstractContextManager[None]:
        return schema.translated(self.url)

    @contextlib.contextmanager
    def _health_write(self) -> Iterator[None]:
        with schema.translated(self.url), self.connection.transaction():  # a savepoint in a group
            yield


def _now(now: float | None) -> int:
    return int(now if now is not None else time.time())


__all__ = ["PostgresStore", "StoreError"]
