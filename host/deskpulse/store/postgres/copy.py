"""`deskpulse db copy` in PostgreSQL: a device's rows read in key order, and rows of another
store merged in (store/base.py's copy block says the rules; store/copy.py drives them).

Every write first locks the device's row, as a batch does (ingest.py): a `deskpulse serve`
storing the same kiosk meanwhile waits, and the responses already there (which no unique
key spans across the month partitions) are read under that lock and left out."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

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
from deskpulse.store.postgres import desired_config, ingest, rollup_tables
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
    if after is not None and not COPY_KEYS[table]:  # one row per device, already read
        return []
    statement = read_statement(table, after=after is not None, mark="%s")
    return [tuple(row) for row in conn.execute(
        statement, (device_id, *(after or ()), limit))]  # type: ignore[arg-type]


def copy_in(conn: psycopg.Connection[Any], partitions: Partitions, table: CopyTable,
            rows: Sequence[tuple[Any, ...]], taken: Collection[int]) -> list[int]:
    if not rows:
        return []
    device_id = rows[0][COPY_COLUMNS[table].index("device_id")]
    columns = COPY_COLUMNS[table]
    if table == "responses":
        # The months' partitions first, in a transaction of their own: attaching one
        # waits for every reader of the table, which must not wait for our device lock.
        with conn.transaction():
            partitions.ensure(conn, (row[columns.index("wall")] for row in rows))
    with conn.transaction():
        if table != "devices":
            conn.execute("SELECT 1 FROM devices WHERE device_id = %s FOR UPDATE", (device_id,))
        if table == "syncs":
            return _syncs_in(conn, device_id, rows, taken)
        if table == "desired_configs":
            desired_config.append_history(conn, rows)
            return []
        if table == "responses":
            _responses_in(conn, device_id, rows)
            return []
        with conn.cursor() as cur:
            for row in rows:
                cur.execute(f"{insert_statement(table, columns, '%s')} "  # type: ignore[arg-type]
                            f"{MERGES[table]}", row)
                if table == "device_keys" and cur.rowcount == 0:
                    raise DeskPulseError(f"{device_id} has another key in the destination")
    return []


def _responses_in(conn: psycopg.Connection[Any], device_id: str,
                  rows: Sequence[tuple[Any, ...]]) -> None:
    seq = COPY_COLUMNS["responses"].index("seq")
    seqs = [row[seq] for row in rows]
    here = {found for (found,) in conn.execute(
        "SELECT seq FROM responses WHERE device_id = %s AND seq BETWEEN %s AND %s",
        (device_id, min(seqs), max(seqs)))}
    fresh = [row for row in rows if row[seq] not in here]
    if fresh:
        with conn.cursor().copy(
                f"COPY responses ({', '.join(COPY_COLUMNS['responses'])}) "  # type: ignore[arg-type]
                "FROM STDIN") as copy:
            for row in fresh:
                copy.write_row(row)
    # Every row, also those already there: a namesake is the same record (the copy refuses
    # others before writing), and widening is idempotent.
    ingest.widen_boots(conn, device_id, *([row[COPY_COLUMNS["responses"].index(name)]
                                           for row in rows]
                                          for name in ("seq", "boot", "uptime_s")))
    # Its rollups no longer count every response: rebuilt on first use if the copy stops
    # before settle_copied.
    conn.execute("DELETE FROM rollup_zones WHERE device_id = %s", (device_id,))


def _syncs_in(conn: psycopg.Connection[Any], device_id: str, rows: Sequence[tuple[Any, ...]],
              taken: Collection[int]) -> list[int]:
    columns = COPY_COLUMNS["syncs"]
    ats = [row[2] for row in rows]
    here = conn.execute(
        f"SELECT {', '.join(columns)} FROM syncs WHERE device_id = %s "  # type: ignore[arg-type]
        "AND at BETWEEN %s AND %s ORDER BY at, sync_id", (device_id, min(ats), max(ats)))
    ids = []
    for row, found in zip(rows, match_syncs(rows, here.fetchall(), taken), strict=True):
        if found is None:
            inserted = conn.execute(
                f"{insert_statement('syncs', columns[1:], '%s')} "  # type: ignore[arg-type]
                "RETURNING sync_id", row[1:]).fetchone()
            assert inserted is not None  # RETURNING of an INSERT always gives its row
            found = int(inserted[0])
        ids.append(found)
    return ids


def settle(conn: psycopg.Connection[Any], partitions: Partitions, device_id: str) -> None:
    with conn.transaction():
        conn.execute("SELECT 1 FROM devices WHERE device_id = %s FOR UPDATE", (device_id,))
        ingest.place_device(conn, partitions, device_id)
        conn.execute("DELETE FROM rollup_zones WHERE device_id = %s", (device_id,))
        rollup_tables.ensure_zone(conn, device_id)
