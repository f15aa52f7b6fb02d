"""`deskpulse db copy` in SQLite: a device's rows read in key order, and rows of another
store merged in (store/base.py's copy block says the rules; store/copy.py drives them)."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from deskpulse.errors import DeskPulseError
from deskpulse.store.copy import COPY_COLUMNS, COPY_KEYS, CopyTable
from deskpulse.store.sqlite import ingest, rollup_tables, schema


def rows(conn: sqlite3.Connection, table: CopyTable, device_id: str,
         after: tuple[Any, ...] | None, limit: int) -> list[tuple[Any, ...]]:
    keys = COPY_KEYS[table]
    if after is not None and not keys:  # one row per device, already read
        return []
    where, params = "device_id = ?", [device_id]
    if after is not None:
        # A row value: SQLite seeks the (device_id, *keys) index to it.
        where += f" AND ({', '.join(keys)}) > ({', '.join('?' * len(keys))})"
        params += after
    order = ", ".join(keys) or "device_id"
    return [tuple(row) for row in conn.execute(
        f"SELECT {', '.join(COPY_COLUMNS[table])} FROM {table} WHERE {where} "
        f"ORDER BY {order} LIMIT ?", (*params, limit))]


_LATER_SYNC = ("excluded.last_sync IS NOT NULL AND (devices.last_sync IS NULL "
               "OR excluded.last_sync > devices.last_sync)")
_HIGHER_NONCE = ("(excluded.nonce_boot, excluded.nonce_count) > "
                 "(device_keys.nonce_boot, device_keys.nonce_count)")


def _synced(column: str) -> str:
    return (f"{column} = CASE WHEN {_LATER_SYNC} THEN coalesce(excluded.{column}, "
            f"devices.{column}) ELSE coalesce(devices.{column}, excluded.{column}) END")


_MERGES: dict[CopyTable, str] = {
    "devices": f"""ON CONFLICT (device_id) DO UPDATE SET
        name = coalesce(devices.name, excluded.name),
        location = coalesce(devices.location, excluded.location),
        time_zone = coalesce(devices.time_zone, excluded.time_zone),
        first_seen = min(devices.first_seen, excluded.first_seen),
        {_synced("board")}, {_synced("firmware")}, {_synced("proto")},
        {_synced("last_status")},
        last_sync = CASE WHEN {_LATER_SYNC} THEN excluded.last_sync
                         ELSE devices.last_sync END""",
    # Every SET expression reads the row as it was: both nonce halves see the old pair.
    "device_keys": f"""ON CONFLICT (device_id) DO UPDATE SET
        created = min(device_keys.created, excluded.created),
        nonce_boot = CASE WHEN {_HIGHER_NONCE} THEN excluded.nonce_boot
                          ELSE device_keys.nonce_boot END,
        nonce_count = CASE WHEN {_HIGHER_NONCE} THEN excluded.nonce_count
                           ELSE device_keys.nonce_count END
        WHERE device_keys.key = excluded.key""",
    "anchors": "ON CONFLICT (device_id, boot, uptime_s) DO NOTHING",
    "responses": "ON CONFLICT (device_id, seq) DO NOTHING",
}


def copy_in(conn: sqlite3.Connection, table: CopyTable, rows: Sequence[tuple[Any, ...]],
            taken: Collection[int]) -> list[int]:
    if not rows:
        return []
    with schema.transaction(conn):
        if table == "syncs":
            return _syncs_in(conn, rows, taken)
        columns = COPY_COLUMNS[table]
        cur = conn.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
            f"({', '.join('?' * len(columns))}) {_MERGES[table]}", rows)
        if table == "device_keys" and cur.rowcount < len(rows):
            raise DeskPulseError(f"{rows[0][0]} has another key in the destination")
        if table == "responses":
            # Its rollups no longer count every response: rebuilt on first use if the
            # copy stops before settle_copied.
            conn.execute("DELETE FROM rollup_zones WHERE device_id = ?", (rows[0][0],))
    return []


def _syncs_in(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]],
              taken: Collection[int]) -> list[int]:
    device_id = rows[0][1]
    ats = [row[2] for row in rows]
    columns = COPY_COLUMNS["syncs"]
    here: dict[tuple[Any, ...], list[int]] = {}
    for sync_id, *content in conn.execute(
            f"SELECT {', '.join(columns)} FROM syncs WHERE device_id = ? "
            "AND at BETWEEN ? AND ? ORDER BY at, sync_id", (device_id, min(ats), max(ats))):
        if sync_id not in taken:
            here.setdefault(tuple(content), []).append(sync_id)
    ids = []
    for _, *content in rows:
        equal = here.get(tuple(content))
        if equal:
            ids.append(equal.pop(0))
            continue
        cur = conn.execute(
            f"INSERT INTO syncs ({', '.join(columns[1:])}) VALUES "
            f"({', '.join('?' * (len(columns) - 1))})", content)
        ids.append(int(cur.lastrowid or 0))
    return ids


def settle(conn: sqlite3.Connection, device_id: str) -> None:
    with schema.transaction(conn):
        ingest.place_device(conn, device_id)
        conn.execute("DELETE FROM rollup_zones WHERE device_id = ?", (device_id,))
        rollup_tables.ensure_zone(conn, device_id)
