"""The SQLite store: one file for one store or a small chain (schema.py has the file's
rules, ingest.py how a batch is stored, queries.py what is read, rollup_tables.py the
report counts kept at ingest).

Every method turns SQLite's errors into StoreError sentences (`schema.failure`), also
those raised while a returned iterator is read.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

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
    SyncRecord,
    already_registered,
    default_db_path,
)
from deskpulse.store.notify import NotifyMethods
from deskpulse.store.sqlite import (
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


def _translated(method: Callable[Concatenate[SqliteStore, P], R]
                ) -> Callable[Concatenate[SqliteStore, P], R]:
    @functools.wraps(method)
    def run(self: SqliteStore, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise schema.failure(exc, self.location) from exc
    return run


class SqliteStore(health_rules.HealthMethods, account_rules.AccountMethods,
                  site_rules.SiteMethods, NotifyMethods, Store):
    def __init__(self, connection: sqlite3.Connection, location: str) -> None:
        self.connection = connection
        """The engine's own handle: for this package and the SQLite store's tests only."""
        self.location = location

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, *, create: bool = True,
             busy_timeout_ms: int | None = None) -> SqliteStore:
        db_path = Path(path) if path is not None else default_db_path()
        return cls(schema.connect(path, create=create, busy_timeout_ms=busy_timeout_ms),
                   str(db_path))

    def _rows(self, query: Callable[[], Iterable[R]]) -> Iterator[R]:
        """The rows of query(), run when the iterator is first read."""
        try:
            for row in query():  # noqa: UP028 -- closing this must not close the cursor
                yield row
        except sqlite3.Error as exc:
            raise schema.failure(exc, self.location) from exc

    @contextlib.contextmanager
    def _guarded(self, manager: contextlib.AbstractContextManager[Any]) -> Iterator[None]:
        try:
            with manager:
                yield
        except sqlite3.Error as exc:
            raise schema.failure(exc, self.location) from exc

    # -- life ------------------------------------------------------------------------------

    def close(self) -> None:
        self.connection.close()

    @_translated
    def schema_version(self) -> int:
        return schema.schema_version(self.connection)

    # -- storing batches -------------------------------------------------------------------

    @_translated
    def store_batch(self, device_id: str, responses: Sequence[Response],
                    anchors: Iterable[Anchor], status: Mapping[str, Any], transport: str, *,
                    proto: int | None = None, now: float | None = None,
                    push: PushCheck | None = None) -> tuple[int, int]:
        return ingest.store_batch(self.connection, device_id, responses, anchors, status,
                                  transport, proto=proto, now=now, push=push)

    def group_commit(self) -> contextlib.AbstractContextManager[None]:
        return self._guarded(schema.write_transaction(self.connection))

    def part(self) -> contextlib.AbstractContextManager[None]:
        return self._guarded(schema.savepoint(self.connection))

    def group_intact(self) -> bool:
        return self.connection.in_transaction

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
        with schema.transaction(self.connection):
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
        with schema.transaction(self.connection):
            registered = queries.device_key(self.connection, device_id) is not None
            if registered and not replace:
                raise already_registered(device_id)
            if not registered and facts is None:
                raise DeskPulseError(f"{device_id} is not registered")
            if facts is not None:
                queries.describe(self.connection, device_id, facts.name, facts.location,
                                 facts.time_zone, create=True, now=at)
            queries.set_key(self.connection, device_id, key, at)
        return registered

    @_translated
    def remove_key(self, device_id: str) -> None:
        with schema.transaction(self.connection):
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
            with schema.transaction(self.connection):
                for device_id in self._stale(wanted):  # again, now that it holds the lock
                    rollup_tables.ensure_zone(self.connection, device_id)
        except sqlite3.OperationalError as exc:
            stale = self._stale(wanted)
            more = " and others" if len(stale) > 3 else ""
            raise DeskPulseError(
                f"the figures of {', '.join(stale[:3])}{more} must be recounted first (a new "
                "time zone, or a database from before reports), which needs to write to "
                f"the database: {exc}") from exc
        except sqlite3.Error as exc:
            raise schema.failure(exc, self.location) from exc

    @_translated
    def _stale(self, wanted: set[str]) -> list[str]:
        return sorted(wanted & set(rollup_tables.stale_devices(self.connection)))

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        try:
            self.connection.execute("BEGIN")
            try:
                yield
            finally:
                self.connection.execute("COMMIT")
        except sqlite3.Error as exc:
            raise schema.failure(exc, self.location) from exc

    @_translated
    def month_rollups(self, device_ids: Sequence[str], first: int, last: int, *,
                      kinds: Sequence[int] | None = None) -> list[RollupRow]:
        return queries.month_rollups(self.connection, device_ids, first, last, kinds)

    @_translated
    def month_responses(self, device_ids: Sequence[str], first: int, last: int, *,
                        kinds: Sequence[int]) -> list[tuple[str, int, int, bool, int]]:
        return queries.month_responses(self.connection, device_ids, first, last, kinds)

    @_translated
    def day_rollups(self, device_ids: Sequence[str], first: int, last: int
                    ) -> list[RollupRow]:
        return queries.day_rollups(self.connection, device_ids, first, last)

    def timed_responses(self, device_id: str, since: int, until: int) -> Iterator[RawRow]:
        return self._rows(lambda: queries.timed_responses(self.connection, device_id, since, until))

    def response_groups(self, since: int, until: int, device_id: str | None = None
                        ) -> Iterator[tuple[str, int | None, int | None, int, int, str, int,
                                            int, int]]:
        return self._rows(lambda: queries.response_groups(self.connection, since, until, device_id))

    @_translated
    def clock_corrected(self, device_ids: Sequence[str], since: int, until: int, *,
                        include_flagged: bool) -> list[tuple[str, int, int]]:
        return queries.clock_corrected(self.connection, device_ids, since, until,
                                       include_flagged)

    def anchored_stamps(self) -> Iterator[tuple[str, int, int, int, int]]:
        return self._rows(lambda: queries.anchored_stamps(self.connection))

    def export_rows(self, device_id: str, since: int | None, until: int | None, *,
                    include_flagged: bool
                    ) -> Iterator[tuple[int | None, int | None, int | None, int, int, str,
                                        int, int, int]]:
        return self._rows(lambda: queries.export_rows(self.connection, device_id, since, until,
                                              include_flagged))

    # -- copying between stores ------------------------------------------------------------

    def copy_identity(self) -> str:
        try:
            found = os.stat(self.location)
        except OSError:
            return f"sqlite:{Path(self.location).resolve()}"
        return f"sqlite:{found.st_dev}:{found.st_ino}"  # also through links

    @_translated
    def copy_rows(self, table: CopyTable, device_id: str, after: tuple[Any, ...] | None,
                  limit: int) -> list[tuple[Any, ...]]:
        return copy.rows(self.connection, table, device_id, after, limit)

    @_translated
    def copy_in(self, table: CopyTable, rows: Sequence[tuple[Any, ...]], *,
                taken: Collection[int] = ()) -> list[int]:
        return copy.copy_in(self.connection, table, rows, taken)

    @_translated
    def settle_copied(self, device_id: str) -> None:
        copy.settle(self.connection, device_id)

    def negative_marks(self, *, since: float | None, until: float | None,
                       device_id: str | None, location: str | None, include_flagged: bool,
                       negative_ratings: Sequence[int],
                       device_ids: Sequence[str] | None = None
                       ) -> Iterator[tuple[str, int, int]]:
        return self._rows(lambda: queries.negative_marks(
            self.connection, since, until, device_id, location, include_flagged,
            negative_ratings, device_ids))

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
        return self._guarded(contextlib.nullcontext())

    @contextlib.contextmanager
    def _tree_change(self) -> Iterator[dict[str, Site]]:
        with self._guarded(schema.transaction(self.connection)):
            yield {site.path: site for site in sites.tree(self.connection)}
            sites.follow_zones(self.connection)


    # -- accounts (issue 17): the methods are account_rules.AccountMethods' ----------------

    account_queries = accounts

    def _account_read(self) -> contextlib.AbstractContextManager[None]:
        return self._guarded(contextlib.nullcontext())

    @contextlib.contextmanager
    def _account_change(self) -> Iterator[dict[str, Site]]:
        # Inside the server's writer a group transaction is open: a savepoint of it.
        with self._guarded(schema.savepoint(self.connection) if self.connection.in_transaction
                           else schema.transaction(self.connection)):
            yield {site.path: site for site in sites.tree(self.connection)}

    # -- notifications: the methods are NotifyMethods' ------------------------------------

    notify_queries = notify

    def _notify_read(self) -> contextlib.AbstractContextManager[None]:
        return self._guarded(contextlib.nullcontext())

    def _notify_write(self) -> contextlib.AbstractContextManager[None]:
        return self._guarded(schema.transaction(self.connection))

    # -- config over the air ---------------------------------------------------------------

    @_translated
    def config_layers(self) -> list[ConfigLayer]:
        return desired_config.config_layers(self.connection)

    @_translated
    def save_config(self, desired: Mapping[str, Mapping[str, Any] | None], *,
                    layer: LayerChange | None = None, now: float | None = None
                    ) -> dict[str, int | None]:
        with schema.transaction(self.connection):
            return desired_config.save_config(self.connection, desired, layer, _now(now))

    @_translated
    def desired_config(self, device_id: str, version: int | None = None
                       ) -> DesiredConfig | None:
        return desired_config.desired_config(self.connection, device_id, version)

    @_translated
    def desired_versions(self, device_id: str | None = None) -> dict[str, int]:
        return desired_config.desired_versions(self.connection, device_id)

    @_translated
    def accept_request(self, device_id: str, check: PushCheck) -> None:
        with schema.savepoint(self.connection) if self.connection.in_transaction \
                else schema.transaction(self.connection):
            ingest.check_push(self.connection, device_id, check)

    # -- device health (issue 17): the methods are health_rules.HealthMethods' ------------

    health_queries = health

    def _health_read(self) -> contextlib.AbstractContextManager[None]:
        return self._guarded(contextlib.nullcontext())

    def _health_write(self) -> contextlib.AbstractContextManager[None]:
        # Inside the server's writer a group transaction is open: a savepoint of it.
        return self._guarded(schema.savepoint(self.connection) if self.connection.in_transaction
                             else schema.transaction(self.connection))


def _now(now: float | None) -> int:
    return int(now if now is not None else time.time())

