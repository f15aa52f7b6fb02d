"""The rollup tables in PostgreSQL: store/rollups.py's rows (the same BYTEA vectors as
SQLite's BLOBs), read, added to and written back under the device's lock (ingest.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deskpulse.store.postgres import sites
from deskpulse.store.rollups import BLOB, BLOB_ITEMSIZE, DAY_WIDTH, MONTH_WIDTH, Changes, deltas
from deskpulse.timezones import device_zone, host_time_zone

if TYPE_CHECKING:
    import psycopg

    from deskpulse.store.rollups import Deltas


_TABLES = (("rollup_days", "day", DAY_WIDTH), ("rollup_months", "month", MONTH_WIDTH))


def _read(conn: psycopg.Connection[Any], device_id: str, table: str, period: str,
          changes: Deltas) -> psycopg.Cursor[Any] | None:
    """Send the read of the stored rows `changes` touches; the rows arrive with the
    cursor's first fetch (in pipeline mode together with every other statement queued)."""
    if not changes:
        return None
    low, high = min(changes)[0], max(changes)[0]
    return conn.cursor(binary=True).execute(
        f"SELECT {period}, scale, kind, counts FROM {table} "  # type: ignore[arg-type]
        f"WHERE device_id = %s AND {period} BETWEEN %s AND %s", (device_id, low, high))


def _write(conn: psycopg.Connection[Any], device_id: str, table: str, period: str,
           width: int, changes: Deltas, read: psycopg.Cursor[Any] | None) -> None:
    """Add `changes` to the rows `read` found and write them back (nothing waits for the
    result: in pipeline mode they travel with the next statement that is read)."""
    if read is None:
        return
    import numpy as np

    keys = sorted(changes)
    stored = {(p, s, k): bytes(blob) for p, s, k, blob in read.fetchall()}
    zero = bytes(width * BLOB_ITEMSIZE)
    before = np.frombuffer(b"".join(stored.get(k, zero) for k in keys), BLOB)
    after = before.reshape(len(keys), width).astype(np.int64) + np.stack(
        [changes[k] for k in keys])
    if (after < 0).any():
        raise RuntimeError(f"rollups of {device_id} went negative: they no longer match "
                           "the responses")
    out = after.astype(BLOB)
    kept = [i for i, row in enumerate(out) if row.any()]
    emptied = [keys[i] for i, row in enumerate(out) if not row.any() and keys[i] in stored]
    if kept:
        conn.execute(  # %b: the counts go as bytes, not as escaped text
            f"""INSERT INTO {table} (device_id, {period}, scale, kind, counts)
                SELECT %s, * FROM unnest(%b::integer[], %b::smallint[], %b::smallint[],
                                         %b::bytea[])
                ON CONFLICT (device_id, {period}, scale, kind)
                DO UPDATE SET counts = excluded.counts""",  # type: ignore[arg-type]
            (device_id, [keys[i][0] for i in kept], [keys[i][1] for i in kept],
             [keys[i][2] for i in kept], [out[i].tobytes() for i in kept]))
    if emptied:
        conn.execute(
            f"""DELETE FROM {table} t USING unnest(%s::integer[], %s::smallint[],
                                                   %s::smallint[]) AS e(period, scale, kind)
                WHERE t.device_id = %s AND t.{period} = e.period AND t.scale = e.scale
                  AND t.kind = e.kind""",  # type: ignore[arg-type]
            ([k[0] for k in emptied], [k[1] for k in emptied], [k[2] for k in emptied],
             device_id))


def apply(conn: psycopg.Connection[Any], device_id: str, zone: str, ch: Changes) -> None:
    """Add `ch` to the device's rollups (inside the caller's transaction). Both tables'
    rows are asked for before either is read: in pipeline mode one round trip."""
    per_table = deltas(zone, ch)
    reads = [_read(conn, device_id, table, period, changes)
             for (table, period, _), changes in zip(_TABLES, per_table, strict=True)]
    for (table, period, width), changes, read in zip(_TABLES, per_table, reads, strict=True):
        _write(conn, device_id, table, period, width, changes, read)


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
    return zone_of(conn, device_id, ask_zone(conn, device_id), host_zone)


def ask_zone(conn: psycopg.Connection[Any], device_id: str) -> psycopg.Cursor[Any]:
    """Send ensure_zone's read (in pipeline mode it waits for the next round trip)."""
    return conn.execute(
        f"""SELECT {sites.CONFIGURED_ZONE}, z.zone FROM devices d
           LEFT JOIN rollup_zones z ON z.device_id = d.device_id
           WHERE d.device_id = %s""", (device_id,))


def zone_of(conn: psycopg.Connection[Any], device_id: str, asked: psycopg.Cursor[Any],
            host_zone: str | None = None) -> str:
    """ensure_zone, given the cursor of ask_zone."""
    row = asked.fetchone()
    configured, built = (row[0], row[1]) if row is not None else (None, None)
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
