"""`deskpulse db copy` in SQLite: a device's rows read in key order, and rows of another
store merged in (store/base.py's copy block says the rules; store/copy.py drives them and
holds the statements both engines share)."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from deskpulse.errors import DeskPulseError
from deskpulse.store.copy import (
    COPY_COLUMNS,
    COPY_KEYS,
    MERGES,
    CopyTable,
    insert_statement,
    match_syncs,
    read_statement,
)
from deskpulse.store.sqlite import desired_config, ingest, rollup_tables, schema


def rows(conn: sqlite3.Connection, table: CopyTable, device_id: str,
         after: tuple[Any, ...] | None, limit: int) -> list[tuple[Any, ...]]:
    if after is not None and not COPY_KEYS[table]:  # one row per device, already read
        return []
    statement = read_statement(table, after=after is not None, mark="?")
    return [tuple(row) for row in conn.execute(
        statement, (device_id, *(after or ()), limit))]


def copy_in(conn: sqlite3.Connection, table: CopyTable, rows: Sequence[tuple[Any, ...]],
            taken: Collection[int]) -> list[int]:
    if not rows:
        return []
    columns = COPY_COLUMNS[table]
    with schema.transaction(conn):
        if table == "syncs":
            return _syncs_in(conn, rows, taken)
        if table == "desired_configs":
            desired_config.append_history(conn, rows)
            return []
        if table == "responses":
            conn.executemany(f"{insert_statement(table, columns, '?')} "
                             "ON CONFLICT (device_id, seq) DO NOTHING", rows)
            # Every row, also those already there: a namesake is the same record (the
            # copy refuses others before writing), and widening is idempotent.
            ingest.widen_boots(conn, rows[0][0], *(
                [row[columns.index(name)] for row in rows]
                for name in ("seq", "boot", "uptime_s")))
            # Its rollups no longer count every response: rebuilt on first use if the
            # copy stops before settle_copied.
            conn.execute("DELETE FROM rollup_zones WHERE device_id = ?", (rows[0][0],))
            return []
        cur = conn.executemany(f"{insert_statement(table, columns, '?')} {MERGES[table]}",
                               rows)
        if table == "device_keys" and cur.rowcount < len(rows):
            raise DeskPulseError(f"{rows[0][0]} has another key in the destination")
    return []


def _syncs_in(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]],
              taken: Collection[int]) -> list[int]:
    columns = COPY_COLUMNS["syncs"]
    ats = [row[2] for row in rows]
    here = conn.execute(
        f"SELECT {', '.join(columns)} FROM syncs WHERE device_id = ? "
        "AND at BETWEEN ? AND ? ORDER BY at, sync_id", (rows[0][1], min(ats), max(ats)))
    ids = []
    for row, found in zip(rows, match_syncs(rows, here, taken), strict=True):
        if found is None:
            found = int(conn.execute(insert_statement("syncs", columns[1:], "?"),
                                     row[1:]).lastrowid or 0)
        ids.append(found)
    return ids


def settle(conn: sqlite3.Connection, device_id: str) -> None:
    with schema.transaction(conn):
        ingest.place_device(conn, device_id)
        conn.execute("DELETE FROM rollup_zones WHERE device_id = ?", (device_id,))
        rollup_tables.ensure_zone(conn, device_id)
