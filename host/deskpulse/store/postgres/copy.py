"""`deskpulse db copy` in PostgreSQL: a device's rows read in key order, and rows of another
store merged in (store/base.py's copy block says the rules; store/copy.py drives them).

Every write first locks the device's row, as a batch does (ingest.py): a `deskpulse serve`
storing the same kiosk meanwhile waits, and the responses already there (which no unique
key spans across the month partitions) are read under that lock and left out."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from deskpulse.errors import DeskPulseError
from deskpulse.store.copy import COPY_COLUMNS, COPY_KEYS, CopyTable
from deskpulse.store.postgres import ingest, rollup_tables
from deskpulse.store.postgres.schema import Partitions

if TYPE_CHECKING:
    import psycopg


def identity(conn: psycopg.Connection[Any], location: str) -> str:
    """The cluster's system identifier and the database's name: the same database
    whatever URL reached it."""
    import psycopg

    try:
        row = conn.execute("SELECT (SELECT system_identifier FROM pg_control_system()), "
                           "current_database()").fetchone()
    except psycopg.Error:  # not allowed to read it: the URL must do
        return f"postgresql:{location}"
    return f"postgresql:{row[0]}:{row[1]}" if row is not None else f"postgresql:{location}"


def rows(conn: psycopg.Connection[Any], table: CopyTable, device_id: str,
         after: tuple[Any, ...] | None, limit: int) -> list[tuple[Any, ...]]:
    keys = COPY_KEYS[table]
    if after is not None and not keys:  # one row per device, already read
        return []
    where, params = "device_id = %s", [device_id]
    if after is not None:
        where += f" AND ({', '.join(keys)}) > ({', '.join(['%s'] * len(keys))})"
        params += after
    order = ", ".join(keys) or "device_id"
    return [tuple(row) for row in conn.execute(
        f"SELECT {', '.join(COPY_COLUMNS[table])} FROM {table} "  # type: ignore[arg-type]
        f"WHERE {where} ORDER BY {order} LIMIT %s", (*params, limit))]


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
        first_seen = least(devices.first_seen, excluded.first_seen),
        {_synced("board")}, {_synced("firmware")}, {_synced("proto")},
        {_synced("last_status")},
        last_sync = CASE WHEN {_LATER_SYNC} THEN excluded.last_sync
                         ELSE devices.last_sync END""",
    # Every SET expression reads the row as it was: both nonce halves see the old pair.
    "device_keys": f"""ON CONFLICT (device_id) DO UPDATE SET
        created = least(device_keys.created, excluded.created),
        nonce_boot = CASE WHEN {_HIGHER_NONCE} THEN excluded.nonce_boot
                          ELSE device_keys.nonce_boot END,
        nonce_count = CASE WHEN {_HIGHER_NONCE} THEN excluded.nonce_count
                           ELSE device_keys.nonce_count END
        WHERE device_keys.key = excluded.key""",
    "anchors": "ON CONFLICT (device_id, boot, uptime_s) DO NOTHING",
}


def _insert(table: CopyTable, columns: Sequence[str]) -> str:
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
            f"({', '.join(['%s'] * len(columns))})")


def copy_in(conn: psycopg.Connection[Any], partitions: Partitions, table: CopyTable,
            rows: Sequence[tuple[Any, ...]], taken: Collection[int]) -> list[int]:
    if not rows:
        return []
    device_id = rows[0][COPY_COLUMNS[table].index("device_id")]
    columns = COPY_COLUMNS[table]
    with conn.transaction():
        if table != "devices":
            conn.execute("SELECT 1 FROM devices WHERE device_id = %s FOR UPDATE", (device_id,))
        if table == "syncs":
            return _syncs_in(conn, device_id, rows, taken)
        if table == "responses":
            _responses_in(conn, partitions, device_id, rows)
            return []
        with conn.cursor() as cur:
            for row in rows:
                cur.execute(f"{_insert(table, columns)} {_MERGES[table]}",  # type: ignore[arg-type]
                            row)
                if table == "device_keys" and cur.rowcount == 0:
                    raise DeskPulseError(f"{device_id} has another key in the destination")
    return []


def _responses_in(conn: psycopg.Connection[Any], partitions: Partitions, device_id: str,
                  rows: Sequence[tuple[Any, ...]]) -> None:
    seq = COPY_COLUMNS["responses"].index("seq")
    seqs = [row[seq] for row in rows]
    here = {found for (found,) in conn.execute(
        "SELECT seq FROM responses WHERE device_id = %s AND seq BETWEEN %s AND %s",
        (device_id, min(seqs), max(seqs)))}
    fresh = [row for row in rows if row[seq] not in here]
    if fresh:
        partitions.ensure(conn, (row[COPY_COLUMNS["responses"].index("wall")]
                                 for row in fresh))
        with conn.cursor().copy(
                f"COPY responses ({', '.join(COPY_COLUMNS['responses'])}) "  # type: ignore[arg-type]
                "FROM STDIN") as copy:
            for row in fresh:
                copy.write_row(row)
    # Its rollups no longer count every response: rebuilt on first use if the copy stops
    # before settle_copied.
    conn.execute("DELETE FROM rollup_zones WHERE device_id = %s", (device_id,))


def _syncs_in(conn: psycopg.Connection[Any], device_id: str, rows: Sequence[tuple[Any, ...]],
              taken: Collection[int]) -> list[int]:
    ats = [row[2] for row in rows]
    columns = COPY_COLUMNS["syncs"]
    here: dict[tuple[Any, ...], list[int]] = {}
    for sync_id, *content in conn.execute(
            f"SELECT {', '.join(columns)} FROM syncs WHERE device_id = %s "  # type: ignore[arg-type]
            "AND at BETWEEN %s AND %s ORDER BY at, sync_id", (device_id, min(ats), max(ats))):
        if sync_id not in taken:
            here.setdefault(tuple(content), []).append(sync_id)
    ids = []
    for _, *content in rows:
        equal = here.get(tuple(content))
        if equal:
            ids.append(equal.pop(0))
            continue
        row = conn.execute(
            f"{_insert('syncs', columns[1:])} RETURNING sync_id",  # type: ignore[arg-type]
            content).fetchone()
        assert row is not None  # RETURNING of an INSERT always gives its row
        ids.append(int(row[0]))
    return ids


def settle(conn: psycopg.Connection[Any], partitions: Partitions, device_id: str) -> None:
    with conn.transaction():
        conn.execute("SELECT 1 FROM devices WHERE device_id = %s FOR UPDATE", (device_id,))
        ingest.place_device(conn, partitions, device_id)
        conn.execute("DELETE FROM rollup_zones WHERE device_id = %s", (device_id,))
        rollup_tables.ensure_zone(conn, device_id)
