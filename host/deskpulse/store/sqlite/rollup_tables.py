"""The rollup tables in SQLite: store/rollups.py's rows, applied and rebuilt in place."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, cast

from deskpulse.store.rollups import (
    BLOB,
    BLOB_ITEMSIZE,
    COUNTS,
    DAY_WIDTH,
    MONTH_WIDTH,
    Changes,
    counts_byte_weights,
    deltas,
)
from deskpulse.store.sqlite import sites
from deskpulse.timezones import device_zone, host_time_zone

if TYPE_CHECKING:
    from deskpulse.store.rollups import Deltas

SCHEMA: tuple[str, ...] = (
    """CREATE TABLE rollup_days (
        device_id TEXT NOT NULL,
        day       INTEGER NOT NULL,  -- local days since 1970-01-01
        scale     INTEGER NOT NULL,
        kind      INTEGER NOT NULL,  -- rapid | closed << 1
        counts    BLOB NOT NULL,     -- DAY_WIDTH little-endian uint32 (rollups.py)
        PRIMARY KEY (device_id, day, scale, kind)
    ) WITHOUT ROWID""",
    """CREATE TABLE rollup_months (
        device_id TEXT NOT NULL,
        month     INTEGER NOT NULL,  -- year * 12 + month - 1, local; 0 = time unknown
        scale     INTEGER NOT NULL,
        kind      INTEGER NOT NULL,
        counts    BLOB NOT NULL,     -- MONTH_WIDTH little-endian uint32 (rollups.py)
        PRIMARY KEY (device_id, month, scale, kind)
    ) WITHOUT ROWID""",
    """CREATE TABLE rollup_zones (
        device_id TEXT PRIMARY KEY,
        zone      TEXT NOT NULL      -- the IANA zone the device's rollups were built in
    )""",
)


def _sum_of_counts(blob: str) -> str:
    """SQL for the sum of a blob's first COUNTS counters, in plain SQLite (3.40 has no
    unhex): each hex digit of those 60 bytes times its weight."""
    digits = f"hex(substr({blob}, 1, {COUNTS * BLOB_ITEMSIZE}))"
    return " + ".join(
        f"(instr('0123456789ABCDEF', substr({digits}, {2 * byte + 1 + low}, 1)) - 1)"
        f" * {weight * (1 if low else 16)}"
        for byte, weight in enumerate(counts_byte_weights()) for low in (0, 1))


MONTH_RESPONSES: tuple[str, ...] = (
    # The rebuilt table puts the new column before the 2 KB counts, so reading it stays
    # on the row's first page (a column added at the end would lie past the overflow).
    """CREATE TABLE rollup_months_new (
        device_id TEXT NOT NULL,
        month     INTEGER NOT NULL,
        scale     INTEGER NOT NULL,
        kind      INTEGER NOT NULL,
        responses INTEGER NOT NULL,  -- the sum of the first COUNTS counters
        counts    BLOB NOT NULL,
        PRIMARY KEY (device_id, month, scale, kind)
    ) WITHOUT ROWID""",
    f"""INSERT INTO rollup_months_new
        SELECT device_id, month, scale, kind, {_sum_of_counts('counts')}, counts
        FROM rollup_months""",
    "DROP TABLE rollup_months",
    "ALTER TABLE rollup_months_new RENAME TO rollup_months",
)
"""A migration: each month row's responses in a column of its own, which a report sums
for the kinds it does not count (flagged responses are only counted) without reading
their counters."""


def _apply_table(conn: sqlite3.Connection, device_id: str, table: str, period: str,
                 width: int, changes: Deltas) -> None:
    if not changes:
        return
    import numpy as np

    keys = sorted(changes)
    stored = {
        (p, s, k): blob for p, s, k, blob in conn.execute(
            f"SELECT {period}, scale, kind, counts FROM {table} "
            f"WHERE device_id = ? AND {period} BETWEEN ? AND ?",
            (device_id, keys[0][0], keys[-1][0]))
    }
    zero = bytes(width * BLOB_ITEMSIZE)
    before = np.frombuffer(b"".join(stored.get(k, zero) for k in keys), BLOB)
    after = before.reshape(len(keys), width).astype(np.int64) + np.stack(
        [changes[k] for k in keys])
    if (after < 0).any():
        raise RuntimeError(f"rollups of {device_id} went negative: they no longer match "
                           "the responses")
    out = after.astype(BLOB)
    kept = cast("list[bool]", out.any(axis=1).tolist())
    rows = [(device_id, *k, out[i].tobytes()) for i, k in enumerate(keys) if kept[i]]
    columns = f"device_id, {period}, scale, kind, counts"
    if table == "rollup_months":  # and each row's responses (MONTH_RESPONSES)
        # Summed here rather than by a generated column as on PostgreSQL: SQLite has no
        # way to read integers from a blob, and the hex-digit sum over 60 bytes at every
        # month row written cost ingest 5-7% (measured); numpy's sum costs nothing.
        responses = after[:, :COUNTS].sum(axis=1)[kept].tolist()
        rows = [(*row, n) for row, n in zip(rows, responses, strict=True)]
        columns += ", responses"
    places = ", ".join("?" * (columns.count(",") + 1))
    conn.executemany(f"INSERT OR REPLACE INTO {table} ({columns}) VALUES ({places})", rows)
    if not all(kept):
        conn.executemany(
            f"DELETE FROM {table} WHERE device_id = ? AND {period} = ? AND scale = ? "
            "AND kind = ?", [(device_id, *k) for i, k in enumerate(keys) if not kept[i]])


def apply(conn: sqlite3.Connection, device_id: str, zone: str, ch: Changes) -> None:
    """Add `ch` to the device's rollups (inside the caller's transaction)."""
    days, months = deltas(zone, ch)
    _apply_table(conn, device_id, "rollup_days", "day", DAY_WIDTH, days)
    _apply_table(conn, device_id, "rollup_months", "month", MONTH_WIDTH, months)


def changes_of_device(conn: sqlite3.Connection, device_id: str) -> Changes:
    rows = conn.execute(
        "SELECT coalesce(wall, wall_low), coalesce(wall, wall_high), rating, scale, "
        "told_next, rapid, closed FROM responses WHERE device_id = ?", (device_id,)).fetchall()
    if not rows:
        return Changes.empty()
    walls, highs, ratings, scales, tolds, rapid, closed = zip(*rows, strict=True)
    return Changes.from_columns(walls, ratings, scales, tolds, rapid, closed, highs=highs)


def rebuild(conn: sqlite3.Connection, device_id: str, zone: str) -> None:
    """Recompute a device's rollups from its responses in `zone` (inside a transaction)."""
    conn.execute("DELETE FROM rollup_days WHERE device_id = ?", (device_id,))
    conn.execute("DELETE FROM rollup_months WHERE device_id = ?", (device_id,))
    apply(conn, device_id, zone, changes_of_device(conn, device_id))
    conn.execute("INSERT OR REPLACE INTO rollup_zones VALUES (?, ?)", (device_id, zone))


def ensure_zone(conn: sqlite3.Connection, device_id: str, host_zone: str | None = None) -> str:
    """The zone the device's rollups are in, rebuilding them first when the device's zone
    (its own, else its sites') changed or they were never built (a database from before
    rollups). Call inside a write transaction."""
    row = conn.execute(
        f"""SELECT {sites.CONFIGURED_ZONE}, z.zone FROM devices d
           LEFT JOIN rollup_zones z ON z.device_id = d.device_id
           WHERE d.device_id = ?""", (device_id,)).fetchone()
    configured, built = (row[0], row[1]) if row is not None else (None, None)
    zone = device_zone(configured, host_zone or host_time_zone())
    if built != zone:
        rebuild(conn, device_id, zone)
    return zone


def stale_devices(conn: sqlite3.Connection, host_zone: str | None = None) -> list[str]:
    """Devices whose rollups are missing or were built in another zone than theirs (their
    own, else their sites')."""
    host = host_zone or host_time_zone()
    return [
        device_id for device_id, configured, built in conn.execute(
            f"""SELECT d.device_id, {sites.CONFIGURED_ZONE}, z.zone FROM devices d
               LEFT JOIN rollup_zones z ON z.device_id = d.device_id""")
        if built != device_zone(configured, host)
    ]


def read_rows(conn: sqlite3.Connection, device_id: str) -> dict[str, dict[tuple[int, int, int],
                                                                          tuple[int, ...]]]:
    """A device's rollup rows as plain tuples (for tests and checks)."""
    import numpy as np

    out: dict[str, dict[tuple[int, int, int], tuple[int, ...]]] = {}
    for table, period in (("rollup_days", "day"), ("rollup_months", "month")):
        out[table] = {
            (p, s, k): tuple(np.frombuffer(blob, BLOB).tolist())
            for p, s, k, blob in conn.execute(
                f"SELECT {period}, scale, kind, counts FROM {table} WHERE device_id = ?",
                (device_id,))
        }
    return out
