"""Reading the SQLite store: device health, sync history, and what reports and alerts read."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import fields
from typing import Any

from deskpulse.errors import DeskPulseError
from deskpulse.store.base import (
    EARLIEST,
    LATEST,
    DeviceFacts,
    DeviceHealth,
    RawRow,
    RollupRow,
    SyncRecord,
)
from deskpulse.store.rollups import TIME_UNKNOWN
from deskpulse.store.sqlite.schema import CLOCK_CORRECTED


def devices(conn: sqlite3.Connection) -> list[DeviceHealth]:
    """Every known device with its latest sync's health, by id."""
    rows = conn.execute(
        """SELECT d.device_id, d.name, d.location, d.time_zone, d.board, d.firmware,
                  d.last_sync,
                  (SELECT count(*) FROM syncs WHERE device_id = d.device_id),
                  (SELECT count(*) FROM responses WHERE device_id = d.device_id),
                  (SELECT count(*) FROM responses WHERE device_id = d.device_id
                                                    AND wall IS NULL),
                  (SELECT max(seq) FROM responses WHERE device_id = d.device_id),
                  s.fill, s.unacked, s.dropped, s.corrupt, s.boot, s.reset_cause, s.crashes,
                  s.clock_known, s.transport
           FROM devices d
           LEFT JOIN syncs s ON s.sync_id = (
               SELECT max(sync_id) FROM syncs WHERE device_id = d.device_id)
           ORDER BY d.device_id""").fetchall()
    names = [f.name for f in fields(DeviceHealth)]
    out = []
    for row in rows:
        values = dict(zip(names, row, strict=True))
        if values["clock_known"] is not None:
            values["clock_known"] = bool(values["clock_known"])
        out.append(DeviceHealth(**values))
    return out


def last_seq(conn: sqlite3.Connection, device_id: str) -> int | None:
    row = conn.execute(
        "SELECT max(seq) FROM responses WHERE device_id = ?", (device_id,)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def latest_sync(conn: sqlite3.Connection, device_id: str) -> SyncRecord | None:
    """The device's most recent recorded sync."""
    row = conn.execute(
        """SELECT sync_id, at, transport, received, new, duplicates, time_unknown, dropped,
                  fill, status
           FROM syncs WHERE device_id = ? ORDER BY sync_id DESC LIMIT 1""",
        (device_id,)).fetchone()
    if row is None:
        return None
    return SyncRecord(*row[:9], status=json.loads(row[9]))


def count_time_unknown(conn: sqlite3.Connection, device_id: str | None = None) -> int:
    if device_id is None:
        row = conn.execute("SELECT count(*) FROM responses WHERE wall IS NULL").fetchone()
    else:
        row = conn.execute(
            "SELECT count(*) FROM responses WHERE device_id = ? AND wall IS NULL",
            (device_id,)).fetchone()
    return int(row[0])


def responses_of(conn: sqlite3.Connection, device_id: str) -> list[dict[str, Any]]:
    """A device's stored responses as dicts, in seq order (for tests and tools)."""
    cur = conn.execute(
        "SELECT * FROM responses WHERE device_id = ? ORDER BY seq", (device_id,))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]



def response_counts(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT device_id, count(*) FROM responses GROUP BY device_id"))


def device_facts(conn: sqlite3.Connection) -> list[DeviceFacts]:
    return [DeviceFacts(*row) for row in conn.execute(
        "SELECT device_id, name, location, time_zone FROM devices ORDER BY device_id")]


# -- devices and keys ---------------------------------------------------------------------


def registered_ids(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT device_id FROM device_keys")}


def device_key(conn: sqlite3.Connection, device_id: str) -> bytes | None:
    row = conn.execute("SELECT key FROM device_keys WHERE device_id = ?",
                       (device_id,)).fetchone()
    return None if row is None else bytes(row[0])


def describe(conn: sqlite3.Connection, device_id: str, name: str | None,
             location: str | None, time_zone: str | None, *, create: bool, now: int) -> None:
    """Set what people gave (None leaves a field as it is, "" clears it); a device never
    seen is created with `create`, else refused."""
    if create:
        conn.execute("INSERT INTO devices (device_id, first_seen) VALUES (?, ?) "
                     "ON CONFLICT (device_id) DO NOTHING", (device_id, now))
    elif conn.execute("SELECT 1 FROM devices WHERE device_id = ?",
                      (device_id,)).fetchone() is None:
        raise DeskPulseError(
            f"no device {device_id} in the database: `deskpulse devices add` it first")
    for column, value in (("name", name), ("location", location), ("time_zone", time_zone)):
        if value is not None:
            conn.execute(f"UPDATE devices SET {column} = ? WHERE device_id = ?",
                         (value or None, device_id))


def set_key(conn: sqlite3.Connection, device_id: str, key: bytes, now: int) -> None:
    """A new key, with the replay counter back at zero (docs/wifi.md)."""
    conn.execute(
        """INSERT INTO device_keys (device_id, key, created, nonce_boot, nonce_count)
           VALUES (?, ?, ?, 0, 0)
           ON CONFLICT (device_id) DO UPDATE SET key = excluded.key,
               created = excluded.created, nonce_boot = 0, nonce_count = 0""",
        (device_id, key, now))


def remove_key(conn: sqlite3.Connection, device_id: str) -> bool:
    return conn.execute("DELETE FROM device_keys WHERE device_id = ?",
                        (device_id,)).rowcount > 0


# -- what the reports read ----------------------------------------------------------------

_AMONG = "device_id IN (SELECT value FROM json_each(?))"
# An exact time is its own interval; a response without one gives its interval, if any.
_RAW_COLUMNS = ("device_id, coalesce(wall, wall_low), coalesce(wall, wall_high), rating, "
                "scale, told_next, rapid, closed")


def _among_rollups(conn: sqlite3.Connection, device_ids: Sequence[str]) -> str:
    """The device filter of a read of rollup rows: through the primary key for a few
    devices; for most of them a scan testing each row is cheaper (the 41,830 month rows
    of 500 kiosks: 0.02 s against 0.04 s for the 500 ranges of the key)."""
    known = conn.execute("SELECT count(*) FROM devices").fetchone()[0]
    return f"+{_AMONG}" if 2 * len(device_ids) > known else _AMONG


def _unflagged(include_flagged: bool) -> str:
    return "" if include_flagged else " AND rapid = 0 AND closed = 0"


def month_rollups(conn: sqlite3.Connection, device_ids: Sequence[str], first: int,
                  last: int, kinds: Sequence[int] | None) -> list[RollupRow]:
    of_kinds = "" if kinds is None else " AND kind IN (SELECT value FROM json_each(?))"
    params: tuple[Any, ...] = (json.dumps(list(device_ids)), first, last)
    if kinds is not None:
        params += (json.dumps([int(k) for k in kinds]),)
    return conn.execute(
        "SELECT device_id, month, scale, kind, counts FROM rollup_months "
        f"WHERE {_among_rollups(conn, device_ids)} AND month BETWEEN ? AND ?{of_kinds}",
        params).fetchall()


def month_responses(conn: sqlite3.Connection, device_ids: Sequence[str], first: int,
                    last: int, kinds: Sequence[int]) -> list[tuple[str, int, int, bool, int]]:
    return [(device_id, scale, kind, bool(unknown), responses)
            for device_id, scale, kind, unknown, responses in conn.execute(
                f"""SELECT device_id, scale, kind, month = {TIME_UNKNOWN}, sum(responses)
                    FROM rollup_months
                    WHERE {_among_rollups(conn, device_ids)} AND month BETWEEN ? AND ?
                      AND kind IN (SELECT value FROM json_each(?))
                    GROUP BY device_id, scale, kind, month = {TIME_UNKNOWN}""",
                (json.dumps(list(device_ids)), first, last,
                 json.dumps([int(k) for k in kinds])))]


def day_rollups(conn: sqlite3.Connection, device_ids: Sequence[str], first: int,
                last: int) -> list[RollupRow]:
    return conn.execute(
        f"SELECT device_id, day, scale, kind, counts FROM rollup_days "
        f"WHERE {_AMONG} AND day BETWEEN ? AND ?",
        (json.dumps(list(device_ids)), first, last)).fetchall()


def timed_responses(conn: sqlite3.Connection, device_id: str, since: int,
                    until: int) -> Iterator[RawRow]:
    # Two index ranges of (device_id, wall): the timed ones, and those without a time.
    timed = conn.execute(
        f"SELECT {_RAW_COLUMNS} FROM responses WHERE device_id = ? AND wall >= ? AND wall < ?",
        (device_id, since, until))
    bounded = conn.execute(
        f"""SELECT {_RAW_COLUMNS} FROM responses
            WHERE device_id = ? AND wall IS NULL AND wall_low >= ? AND wall_high < ?""",
        (device_id, since, until))
    return itertools.chain(timed, bounded)


def response_groups(conn: sqlite3.Connection, since: int, until: int,
                    device_id: str | None) -> Iterator[tuple[Any, ...]]:
    where = "(wall IS NULL OR (wall >= ? AND wall < ?))"
    params: list[Any] = [since, until]
    if device_id is not None:
        where += " AND device_id = ?"
        params.append(device_id)
    return conn.execute(
        f"""SELECT {_RAW_COLUMNS}, count(*) FROM responses WHERE {where}
            GROUP BY device_id, wall, wall_low, wall_high, rating, scale, told_next, rapid,
                     closed""", params)


def clock_corrected(conn: sqlite3.Connection, device_ids: Sequence[str], since: int,
                    until: int, include_flagged: bool) -> list[tuple[str, int, int]]:
    """One query on the partial index that holds only those rows (its WHERE must be
    repeated verbatim for SQLite to use it)."""
    return conn.execute(
        f"""SELECT device_id, count(*), max(abs(wall - device_wall))
            FROM responses INDEXED BY responses_clock_corrected
            WHERE {_AMONG} AND wall >= ? AND wall < ?
              {_unflagged(include_flagged)} AND {CLOCK_CORRECTED}
            GROUP BY device_id""",
        (json.dumps(list(device_ids)), since, until)).fetchall()


def anchored_stamps(conn: sqlite3.Connection) -> Iterator[tuple[str, int, int, int, int]]:
    return conn.execute(
        "SELECT device_id, wall, device_wall, rapid, closed FROM responses NOT INDEXED "
        "WHERE time_source = 'anchor' AND device_wall IS NOT NULL")


def export_rows(conn: sqlite3.Connection, device_id: str, since: int | None,
                until: int | None, include_flagged: bool) -> Iterator[tuple[Any, ...]]:
    if since is None and until is None:
        when, bounds = "1", ()
    else:
        when = ("((wall >= ? AND wall < ?) "
                "OR (wall IS NULL AND wall_low >= ? AND wall_high < ?))")
        low = since if since is not None else EARLIEST
        high = until if until is not None else LATEST
        bounds = (low, high, low, high)
    return conn.execute(
        f"""SELECT wall, wall_low, wall_high, rating, scale, told_next, rapid, closed, seq
            FROM responses
            WHERE device_id = ? AND {when}{_unflagged(include_flagged)}
            ORDER BY coalesce(wall, wall_low), seq""", (device_id, *bounds))


def negative_marks(conn: sqlite3.Connection, since: float | None, until: float | None,
                   device_id: str | None, location: str | None, include_flagged: bool,
                   negative_ratings: Sequence[int], device_ids: Sequence[str] | None
                   ) -> Iterator[tuple[str, int, int]]:
    where = ["r.wall IS NOT NULL"]
    params: list[Any] = []
    # The kiosks of `device_ids` as a list SQLite walks in order, a range of the (device_id,
    # wall) index for each: the index's order is then the order asked for, with no sort.
    among = None if device_ids is None else json.dumps(sorted(set(device_ids)))
    for clause, value in (("r.wall >= ?", since), ("r.wall < ?", until),
                          ("r.device_id = ?", device_id),
                          (f"r.{_AMONG}", among),
                          ("r.device_id IN (SELECT device_id FROM devices WHERE location = ?)",
                           location)):
        if value is not None:
            where.append(clause)
            params.append(value)
    if not include_flagged:
        where.append("r.rapid = 0 AND r.closed = 0")
    negative = ", ".join(str(int(r)) for r in negative_ratings)
    # Only what the alert windows need, in the order they need it (the index holds seq
    # after wall: the table's key).
    return conn.execute(f"""SELECT r.device_id, r.wall, r.rating IN ({negative})
                            FROM responses r WHERE {' AND '.join(where)}
                            ORDER BY r.device_id, r.wall, r.seq""", params)


def sync_marks(conn: sqlite3.Connection, after: int | None, limit: int,
               among: Sequence[int]) -> list[tuple[int, str]]:
    if after is None:
        rows = conn.execute(
            "SELECT sync_id, device_id FROM syncs ORDER BY sync_id DESC LIMIT 1").fetchall()
    else:
        rows = conn.execute(
            "SELECT sync_id, device_id FROM syncs WHERE sync_id > ? ORDER BY sync_id "
            "LIMIT ?", (after, limit)).fetchall()
    if among:
        rows = conn.execute(
            "SELECT sync_id, device_id FROM syncs WHERE sync_id IN "
            "(SELECT value FROM json_each(?)) ORDER BY sync_id",
            (json.dumps([int(i) for i in among]),)).fetchall() + rows
    return [(int(sync_id), device_id) for sync_id, device_id in rows]


def last_syncs(conn: sqlite3.Connection) -> dict[str, int]:
    return {device_id: int(at) for device_id, at in conn.execute(
        "SELECT device_id, last_sync FROM devices WHERE last_sync IS NOT NULL").fetchall()}
