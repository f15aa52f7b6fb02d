"""Copying one store into another (`deskpulse db copy`): a store's SQLite file moving up to
the chain's PostgreSQL, or joining a database that already holds other kiosks.

Exact: every device (facts, health), key with its nonce counters, anchor, sync record and
response column is copied; the rollups are rebuilt from the copied responses, so the
reports of the copy equal the source's. Engine-neutral: it reads and writes through the
Store copy block (copy_rows, copy_in, settle_copied), device by device, in chunks of one
transaction each, parents first.

Resumable without a record of its own: every step merges, so doing it again changes
nothing. Rows whose key is already there stay; a sync record equal in every column but its
id is the one copied before. A copy killed at any point and run again continues to the
same result.

Sites: the source's site tree joins the destination's (a site in both keeps the
destination's zone and hours, and must be the same kind of site), and each kiosk goes into
its store unless the destination has put it in one already.

Config over the air: the source's config layers join the destination's (a layer in both
must set the same keys), and each kiosk's desired-config history comes along with its
versions, so that a kiosk's next push is answered with the version it already runs (or
was told to fetch). Two stores agree about a kiosk's history when one continues the other.

Accounts of the dashboard: the source's users join the destination's (a name in both keeps
the destination's user), with their password hashes. The server secret that signs session
cookies is not copied: the destination keeps its own (drawn when it is first served), so a
cookie of the source's server does not open the destination's dashboard, and the serve
instances already sharing the destination's secret do not lose their sessions.

Refused pushes (device health): every row of the source's table joins the destination's;
a row of the same (id, reason, hour) in both keeps the larger count, so that a copy done
again changes nothing (store/health.py).

Notifications: the source's alert rules join the destination's (a rule in both must be the
same) with their log, so the copy does not announce ongoing problems again; the lease is
not copied (it belongs to the processes running on each database).

Merging: a device in both stores is merged when they agree: the same key (or only one has
one; the higher nonce stays), no anchor at the same (boot, uptime) with another time, no
response number holding another record, one history of desired configs. Otherwise the
copy is refused before anything is written, naming the device. Its responses are then
placed by the anchors of both, as if every batch had come to one store.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any, Literal

from deskpulse.errors import DeskPulseError
from deskpulse.store import notify
from deskpulse.store.base import EARLIEST, Store

CopyTable = Literal["devices", "device_keys", "anchors", "syncs", "responses",
                    "desired_configs"]
COPY_TABLES: tuple[CopyTable, ...] = ("devices", "device_keys", "anchors", "syncs", "responses",
                                      "desired_configs")
"""What a copy moves, per device, in this order (parents first)."""
COPY_COLUMNS: dict[CopyTable, tuple[str, ...]] = {
    "devices": ("device_id", "name", "location", "time_zone", "board", "firmware", "proto",
                "first_seen", "last_sync", "last_status"),
    "device_keys": ("device_id", "key", "created", "nonce_boot", "nonce_count"),
    "anchors": ("device_id", "boot", "uptime_s", "wall", "source"),
    "syncs": ("sync_id", "device_id", "at", "transport", "received", "new", "duplicates",
              "time_unknown", "stored", "unacked", "dropped", "corrupt", "fill", "boot",
              "reset_cause", "crashes", "clock_known", "status"),
    "responses": ("device_id", "seq", "rating", "scale", "told_next", "latency_ds", "rapid",
                  "closed", "boot", "uptime_s", "device_wall", "wall", "time_source",
                  "config_version", "sync_id", "wall_low", "wall_high"),
    # row_id: the history's order in its store; a copy appends without it (copy_in).
    "desired_configs": ("row_id", "device_id", "version", "config", "created"),
}
COPY_KEYS: dict[CopyTable, tuple[str, ...]] = {
    "devices": (), "device_keys": (), "anchors": ("boot", "uptime_s"),
    # (at, sync_id): the order of the (device_id, at) index, which SQLite ends with the id.
    "syncs": ("at", "sync_id"), "responses": ("seq",), "desired_configs": ("row_id",),
}
"""The order copy_rows reads a device's rows in (within the device)."""

# -- what both engines' copy.py share: the statements' text, the matching of syncs ---------


def read_statement(table: CopyTable, *, after: bool, mark: str) -> str:
    """SELECT a device's rows of `table` in key order (after a key when `after`), LIMIT the
    last parameter; `mark` is the engine's placeholder (? or %s)."""
    keys = COPY_KEYS[table]
    where = f"device_id = {mark}"
    if after:  # a row value: both engines seek their (device_id, *keys) index to it
        where += f" AND ({', '.join(keys)}) > ({', '.join([mark] * len(keys))})"
    return (f"SELECT {', '.join(COPY_COLUMNS[table])} FROM {table} WHERE {where} "
            f"ORDER BY {', '.join(keys) or 'device_id'} LIMIT {mark}")


def insert_statement(table: CopyTable, columns: Sequence[str], mark: str) -> str:
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
            f"({', '.join([mark] * len(columns))})")


_LATER_SYNC = ("excluded.last_sync IS NOT NULL AND (devices.last_sync IS NULL "
               "OR excluded.last_sync > devices.last_sync)")
_HIGHER_NONCE = ("(excluded.nonce_boot, excluded.nonce_count) > "
                 "(device_keys.nonce_boot, device_keys.nonce_count)")


def _synced(column: str) -> str:
    return (f"{column} = CASE WHEN {_LATER_SYNC} THEN coalesce(excluded.{column}, "
            f"devices.{column}) ELSE coalesce(devices.{column}, excluded.{column}) END")


def _lower(table: str, column: str) -> str:
    return (f"{column} = CASE WHEN excluded.{column} < {table}.{column} "
            f"THEN excluded.{column} ELSE {table}.{column} END")


MERGES: dict[CopyTable, str] = {
    "devices": f"""ON CONFLICT (device_id) DO UPDATE SET
        name = coalesce(devices.name, excluded.name),
        location = coalesce(devices.location, excluded.location),
        time_zone = coalesce(devices.time_zone, excluded.time_zone),
        {_lower("devices", "first_seen")},
        {_synced("board")}, {_synced("firmware")}, {_synced("proto")},
        {_synced("last_status")},
        last_sync = CASE WHEN {_LATER_SYNC} THEN excluded.last_sync
                         ELSE devices.last_sync END""",
    # Every SET expression reads the row as it was: both nonce halves see the old pair.
    "device_keys": f"""ON CONFLICT (device_id) DO UPDATE SET
        {_lower("device_keys", "created")},
        nonce_boot = CASE WHEN {_HIGHER_NONCE} THEN excluded.nonce_boot
                          ELSE device_keys.nonce_boot END,
        nonce_count = CASE WHEN {_HIGHER_NONCE} THEN excluded.nonce_count
                           ELSE device_keys.nonce_count END
        WHERE device_keys.key = excluded.key""",
    "anchors": "ON CONFLICT (device_id, boot, uptime_s) DO NOTHING",
}
"""How copy_in merges a row whose key is already there (Store.copy_in's rules), in the
ON CONFLICT dialect both engines speak. A key row left alone (another key) is refused."""


def match_syncs(rows: Sequence[tuple[Any, ...]], here: Iterable[tuple[Any, ...]],
                taken: Collection[int]) -> list[int | None]:
    """For each copied sync row, the id of the equal one already here (`here`: the
    device's syncs in (at, sync_id) order, over the rows' range of `at`), never one in
    `taken` nor twice; None where it must be inserted."""
    waiting: dict[tuple[Any, ...], list[int]] = {}
    for sync_id, *content in here:
        if sync_id not in taken:
            waiting.setdefault(tuple(content), []).append(sync_id)
    return [(waiting.get(tuple(content)) or [None]).pop(0) for _, *content in rows]


CHUNK_ROWS = 5000
"""Rows per read and per transaction: a killed copy loses at most this much work."""

_SYNC_ID = COPY_COLUMNS["responses"].index("sync_id")
_RECORD = tuple(COPY_COLUMNS["responses"].index(name) for name in (
    "rating", "scale", "told_next", "latency_ds", "rapid", "closed", "boot", "uptime_s",
    "device_wall", "config_version"))
"""What a kiosk sent for a response; where it was placed may differ between two stores."""

_CREATED = COPY_COLUMNS["desired_configs"].index("created") - 2  # in a row's content

Progress = Callable[[int, int, str], None]
"""(responses copied, of all, device being copied)."""


@dataclass(frozen=True, slots=True)
class CopySummary:
    devices: int
    merged: int  # of them, already in the destination before (by another way than a copy)
    responses: int


def copy_store(source: Store, destination: Store, *, chunk_rows: int = CHUNK_ROWS,
               progress: Progress | None = None) -> CopySummary:
    """Copy (merge) every device of `source` into `destination`; see the module's rules."""
    if source.copy_identity() == destination.copy_identity():
        raise DeskPulseError(f"{destination.location} is the source itself: nothing to copy")
    if source.schema_version() != destination.schema_version():
        raise DeskPulseError(
            f"{source.location} has schema version {source.schema_version()} and "
            f"{destination.location} {destination.schema_version()}: open both with this "
            "deskpulse first")
    devices = sorted(facts.device_id for facts in source.device_facts())
    present = {facts.device_id for facts in destination.device_facts()}
    both = [device for device in devices if device in present]
    _refuse_site_conflicts(source, destination)
    _refuse_layer_conflicts(source, destination)
    notify.refuse_rule_conflicts(source, destination)
    _refuse_conflicts(source, destination, both, chunk_rows)
    _copy_sites(source, destination)
    _copy_layers(source, destination)
    for user in source.users():  # after the sites they see
        destination.copy_user(user)
    notify.copy_rules(source, destination)
    notify.copy_sent_digests(source, destination)
    placed, placed_here = source.kiosk_sites(), destination.kiosk_sites()
    total = sum(source.response_counts().values())
    done = 0
    for device in devices:
        if progress is not None:
            progress(done, total, device)
        for table in COPY_TABLES[:3]:  # each a parent of what follows
            for rows in _chunks(source, table, device, chunk_rows):
                destination.copy_in(table, rows)
        if device in placed and device not in placed_here:  # before its rollups' zone
            destination.assign_kiosk(device, placed[device])
        destination.copy_in("desired_configs", _history_to_append(
            list(_rows(source, "desired_configs", device, chunk_rows)),
            list(_rows(destination, "desired_configs", device, chunk_rows))) or [])
        sync_ids: dict[int, int] = {}
        taken: set[int] = set()  # sync_ids' values, for a quick `in`
        for rows in _chunks(source, "syncs", device, chunk_rows):
            ids = destination.copy_in("syncs", rows, taken=taken)
            sync_ids.update(zip((row[0] for row in rows), ids, strict=True))
            taken.update(ids)
        for rows in _chunks(source, "responses", device, chunk_rows):
            destination.copy_in("responses", [
                (*row[:_SYNC_ID], sync_ids[row[_SYNC_ID]], *row[_SYNC_ID + 1:])
                for row in rows])
            done += len(rows)
            if progress is not None:
                progress(done, total, device)
        destination.settle_copied(device)
    destination.record_refusals(source.push_refusals(EARLIEST), copied=True)
    if progress is not None:
        progress(done, total, "")
    return CopySummary(len(devices), len(both), done)


def _copy_sites(source: Store, destination: Store) -> None:
    """The source's sites the destination lacks, parents first (paths sort so); a site in
    both keeps the destination's zone and hours."""
    here = {site.path for site in destination.sites()}
    for site in sorted(source.sites(), key=lambda site: site.path):
        if site.path not in here:
            destination.add_site(site.path, site.kind, time_zone=site.time_zone,
                                 opening_hours=site.opening_hours)


def _refuse_site_conflicts(source: Store, destination: Store) -> None:
    """A site of both trees must be the same kind of site (a kiosk's store stays a store)."""
    here = {site.path: site.kind for site in destination.sites()}
    for site in source.sites():
        if here.get(site.path, site.kind) != site.kind:
            raise DeskPulseError(
                f"site {site.path} is a {site.kind} in {source.location} and a "
                f"{here[site.path]} in {destination.location}: nothing was copied")


def _refuse_layer_conflicts(source: Store, destination: Store) -> None:
    """A config layer of both stores must set the same keys (when it was set aside)."""
    here = {(layer.scope, layer.name): layer.overlay for layer in destination.config_layers()}
    for layer in source.config_layers():
        if here.get((layer.scope, layer.name), layer.overlay) != layer.overlay:
            raise DeskPulseError(
                f"the config layer of {layer.scope} {layer.name} differs in "
                f"{source.location} and {destination.location}: nothing was copied")


def _copy_layers(source: Store, destination: Store) -> None:
    """The source's config layers the destination lacks, as they were set (and when)."""
    here = {(layer.scope, layer.name) for layer in destination.config_layers()}
    for layer in source.config_layers():
        if (layer.scope, layer.name) not in here:
            destination.save_config({}, layer=(layer.scope, layer.name, layer.overlay),
                                    now=layer.updated)


def _history_to_append(ours: Sequence[tuple[Any, ...]], theirs: Sequence[tuple[Any, ...]]
                       ) -> list[tuple[Any, ...]] | None:
    """The rows of the source's desired-config history (`ours`, oldest first) that the
    destination's (`theirs`) lacks at its end; None when the two are not one history (seen
    at different times: either may have dropped its oldest rows, desired.HISTORY, even
    all of those the other holds)."""
    mine, kept = [row[2:] for row in ours], [row[2:] for row in theirs]  # not row_id, device

    def continues(old: list[Any], new: list[Any]) -> int | None:
        """Where `old`'s newest row is in `new`, when `old` ends as `new` runs up to it."""
        for at in range(len(new) - 1, -1, -1):
            overlap = min(len(old), at + 1)
            if new[at] == old[-1] and new[at + 1 - overlap:at + 1] == old[-overlap:]:
                return at
        return None

    if not kept:
        return list(ours)
    if not mine:
        return []
    at = continues(kept, mine)
    if at is not None:
        return list(ours[at + 1:])
    if continues(mine, kept) is not None:
        return []
    # No row in common: one ended before the other began (its oldest were dropped since).
    if kept[-1][_CREATED] < mine[0][_CREATED]:
        return list(ours)
    return [] if mine[-1][_CREATED] < kept[0][_CREATED] else None


def _chunks(store: Store, table: CopyTable, device_id: str, chunk_rows: int
            ) -> Iterator[list[tuple[Any, ...]]]:
    key = [COPY_COLUMNS[table].index(name) for name in COPY_KEYS[table]]
    after: tuple[Any, ...] | None = None
    while True:
        rows = store.copy_rows(table, device_id, after, chunk_rows)
        if not rows:
            return
        yield rows
        if len(rows) < chunk_rows or not key:
            return
        after = tuple(rows[-1][i] for i in key)


def _rows(store: Store, table: CopyTable, device_id: str, chunk_rows: int
          ) -> Iterator[tuple[Any, ...]]:
    for rows in _chunks(store, table, device_id, chunk_rows):
        yield from rows


def _refuse_conflicts(source: Store, destination: Store, devices: Sequence[str],
                      chunk_rows: int) -> None:
    """Raise, naming the first device the two stores disagree about, before any write."""
    clashes = [(device, problem) for device in devices
               if (problem := _disagreement(source, destination, device, chunk_rows))]
    if clashes:
        device, problem = clashes[0]
        more = f" (and {len(clashes) - 1} more devices)" if len(clashes) > 1 else ""
        raise DeskPulseError(
            f"device {device} {problem} in {source.location} and {destination.location}"
            f"{more}: nothing was copied")


def _disagreement(source: Store, destination: Store, device: str, chunk_rows: int
                  ) -> str | None:
    key, other_key = source.device_key(device), destination.device_key(device)
    if key is not None and other_key is not None and key != other_key:
        return "has a different key"
    anchors = _clashing(_rows(source, "anchors", device, chunk_rows),
                        _rows(destination, "anchors", device, chunk_rows), (1, 2), (3, 4))
    if anchors:
        return f"has {len(anchors)} anchors at the same boot and uptime with other times"
    seqs = _clashing(_rows(source, "responses", device, chunk_rows),
                     _rows(destination, "responses", device, chunk_rows), (1,), _RECORD)
    if seqs:
        return (f"has {len(seqs)} different responses under the same numbers (seq "
                f"{seqs[0][0]}...{seqs[-1][0]})")
    if _history_to_append(list(_rows(source, "desired_configs", device, chunk_rows)),
                          list(_rows(destination, "desired_configs", device, chunk_rows))
                          ) is None:
        return "has another history of desired configs (config over the air)"
    return None


def _clashing(ours: Iterator[tuple[Any, ...]], theirs: Iterator[tuple[Any, ...]],
              key: Sequence[int], compared: Sequence[int]) -> list[tuple[Any, ...]]:
    """Keys of the rows present in both sorted streams whose compared columns differ."""
    def tagged(rows: Iterator[tuple[Any, ...]], side: int
               ) -> Iterator[tuple[tuple[Any, ...], int, tuple[Any, ...]]]:
        for row in rows:
            yield tuple(row[i] for i in key), side, tuple(row[i] for i in compared)

    out = []
    for row_key, group in groupby(heapq.merge(tagged(ours, 0), tagged(theirs, 1)),
                                  key=lambda item: item[0]):
        values = [item[2] for item in group]
        if len(values) == 2 and values[0] != values[1]:
            out.append(row_key)
    return out
