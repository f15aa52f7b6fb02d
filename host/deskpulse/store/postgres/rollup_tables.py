"""The rollup tables in PostgreSQL: store/rollups.py's rows (the same BYTEA vectors as
SQLite's BLOBs), read, added to and written back under the device's lock (ingest.py)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from deskpulse.store.postgres import sites
from deskpulse.store.rollups import (
    BLOB,
    BLOB_ITEMSIZE,
    DAY_WIDTH,
    MONTH_WIDTH,
    Changes,
    counts_byte_weights,
    deltas,
)
from deskpulse.timezones import device_zone, host_time_zone

if TYPE_CHECKING:
    import psycopg

    from deskpulse.store.rollups import Deltas

MONTH_RESPONSES: tuple[str, ...] = (
    # Generated from the counters by the server at every write: ingest and rebuilds keep
    # it without a change, and filling it here rewrites the table once.
    "ALTER TABLE rollup_months ADD COLUMN responses BIGINT NOT NULL GENERATED ALWAYS AS ("
    + " + ".join(f"get_byte(counts, {byte})::bigint * {weight}"
                 for byte, weight in enumerate(counts_byte_weights()))
    + ") STORED",
)
"""A migration, as SQLite's: each month row's responses (the sum of its first COUNTS
counters) in a column, which a report sums for the kinds it does not count without
reading their counters."""

_TABLES = (("rollup_days", "day", DAY_WIDTH), ("rollup_months", "month", MONTH_WIDTH))

_READ = {
    "rollup_days": "SELECT 0, day, scale, kind, counts FROM rollup_days "
                   "WHERE device_id = %s AND day BETWEEN %s AND %s",
    "rollup_months": "SELECT 1, month, scale, kind, counts FROM rollup_months "
                     "WHERE device_id = %s AND month BETWEEN %s AND %s",
}
"""The stored rows a change touches (0 days, 1 months); both tables' in one statement."""

_UPSERT = """INSERT INTO {table} (device_id, {period}, scale, kind, counts)
             SELECT %s, * FROM unnest(%b::integer[], %b::smallint[], %b::smallint[],
                                      %b::bytea[])
             ON CONFLICT (device_id, {period}, scale, kind)
             DO UPDATE SET counts = excluded.counts"""
"""A table's changed rows written back (%b: the counts go as bytes, not escaped text)."""


def _added(device_id: str, table: str, width: int, changes: Deltas,
           stored: dict[tuple[int, int, int], bytes]
           ) -> tuple[list[tuple[int, int, int]], Any, list[tuple[int, int, int]]]:
    """(keys, the rows after `changes` as counts vectors, keys of stored rows now empty)."""
    import numpy as np

    keys = sorted(changes)
    zero = bytes(width * BLOB_ITEMSIZE)
    before = np.frombuffer(b"".join(stored.get(k, zero) for k in keys), BLOB)
    after = before.reshape(len(keys), width).astype(np.int64) + np.stack(
        [changes[k] for k in keys])
    if (after < 0).any():
        raise RuntimeError(f"rollups of {device_id} went negative in {table}: they no "
                           "longer match the responses")
    out = after.astype(BLOB)
    emptied = [keys[i] for i, row in enumerate(out) if not row.any() and keys[i] in stored]
    return keys, out, emptied


class Pending:
    """A batch's rollup changes, per table, and the statement that reads the stored rows
    they touch (`read`, None when there are none), which the caller may send joined to
    its own statement (ingest.py sends it with the new rows); `write` then adds them."""

    def __init__(self, device_id: str, zone: str, ch: Changes) -> None:
        self.device_id = device_id
        self.per_table = deltas(zone, ch)
        reads: list[str] = []
        self.params: list[Any] = []
        for (table, _, _), changes in zip(_TABLES, self.per_table, strict=True):
            if changes:  # a time not known touches a month row only
                reads.append(_READ[table])
                self.params += [device_id, min(changes)[0], max(changes)[0]]
        self.read = " UNION ALL ".join(reads) if reads else None

    def write(self, conn: psycopg.Connection[Any], read_rows: Iterable[Sequence[Any]]
              ) -> None:
        """Add the changes to the stored rows `read` returned, and send the writes (in
        pipeline mode they travel with whatever is read next)."""
        stored: list[dict[tuple[int, int, int], bytes]] = [{}, {}]
        for which, period, scale, kind, blob in read_rows:
            stored[which][(period, scale, kind)] = bytes(blob)
        upserts: list[str] = []
        params: list[Any] = []
        device_id = self.device_id
        for (table, period, width), changes, rows in zip(_TABLES, self.per_table, stored,
                                                         strict=True):
            if not changes:
                continue
            keys, out, emptied = _added(device_id, table, width, changes, rows)
            kept = [i for i, row in enumerate(out) if row.any()]
            if kept:
                upserts.append(_UPSERT.format(table=table, period=period))
                params += [device_id, [keys[i][0] for i in kept], [keys[i][1] for i in kept],
                           [keys[i][2] for i in kept], [out[i].tobytes() for i in kept]]
            if emptied:
                conn.execute(
                    f"""DELETE FROM {table} t USING unnest(%s::integer[], %s::smallint[],
                                                           %s::smallint[]) AS e(period, scale,
                                                                                kind)
                        WHERE t.device_id = %s AND t.{period} = e.period
                          AND t.scale = e.scale AND t.kind = e.kind""",  # type: ignore[arg-type]
                    ([k[0] for k in emptied], [k[1] for k in emptied],
                     [k[2] for k in emptied], device_id))
        if len(upserts) == 2:  # both tables in one statement: the days' upsert as a CTE
            conn.execute(f"WITH days AS ({upserts[0]}) {upserts[1]}",  # type: ignore[arg-type]
                         params)
        elif upserts:
            conn.execute(upserts[0], params)  # type: ignore[arg-type]


def apply(conn: psycopg.Connection[Any], device_id: str, zone: str, ch: Changes) -> None:
    """Add `ch` to the device's rollups (inside the caller's transaction): one statement
    reads both tables' rows, one writes them back."""
    pending = Pending(device_id, zone, ch)
    if pending.read is not None:
        pending.write(conn, conn.cursor(binary=True).execute(
            pending.read, pending.params))  # type: ignore[arg-type]


def changes_of_device(conn: psycopg.Connection[Any], device_id: str) -> Changes:
    rows = conn.execute(
        "SELECT coalesce(wall, wall_low), coalesce(wall, wall_high), rating, scale, "
        "told_next, rapid, closed FROM responses WHERE device_id = %s",
        (device_id,)).fetchall()
    if not rows:
        return Changes.empty()
    walls, highs, ratings, scales, tolds, rapid, closed = zip(*rows, strict=True)
    return Changes.from_columns(walls, ratings, scales, tolds, rapid, closed, highs=highs)


def rebuild(conn: psycopg.Connection[Any], device_id: str, zone: str) -> None:
    """Recompute a device's rollups from its responses in `zone` (inside a transaction)."""
    conn.execute("DELETE FROM rollup_days WHERE device_id = %s", (device_id,))
    conn.execute("DELETE FROM rollup_months WHERE device_id = %s", (device_id,))
    apply(conn, device_id, zone, changes_of_device(conn, device_id))
    conn.execute(
        """INSERT INTO rollup_zones VALUES (%s, %s)
           ON CONFLICT (device_id) DO UPDATE SET zone = excluded.zone""", (device_id, zone))


def ensure_zone(conn: psycopg.Connection[Any], device_id: str,
                host_zone: str | None = None) -> str:
    """The zone the device's rollups are in, rebuilding them first when the device's zone
    (its own, else its sites') changed or they were never built. Call inside a
    transaction holding the device's lock."""
    row = conn.execute(
        f"""SELECT {CONFIGURED_AND_BUILT} FROM devices d
           WHERE d.device_id = %s""", (device_id,)).fetchone()
    configured, built = (row[0], row[1]) if row is not None else (None, None)
    return zone_of(conn, device_id, configured, built, host_zone)


CONFIGURED_AND_BUILT = (f"{sites.CONFIGURED_ZONE}, (SELECT z.zone FROM rollup_zones z "
                        "WHERE z.device_id = d.device_id)")
"""Of a device `d`: its configured zone and the zone its rollups were built in (ingest.py
reads them in the upsert that locks the device)."""


def zone_of(conn: psycopg.Connection[Any], device_id: str, configured: str | None,
            built: str | None, host_zone: str | None = None) -> str:
    """ensure_zone, given what CONFIGURED_AND_BUILT read."""
    zone = device_zone(configured, host_zone or host_time_zone())
    if built != zone:
        rebuild(conn, device_id, zone)
    return zone


def stale_devices(conn: psycopg.Connection[Any], host_zone: str | None = None) -> list[str]:
    """Devices whose rollups are missing or were built in another zone than theirs (their
    own, else their sites')."""
    host = host_zone or host_time_zone()
    return [
        device_id for device_id, configured, built in conn.execute(
            f"""SELECT d.device_id, {sites.CONFIGURED_ZONE}, z.zone FROM devices d
               LEFT JOIN rollup_zones z ON z.device_id = d.device_id""")
        if built != device_zone(configured, host)
    ]
