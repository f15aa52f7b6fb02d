"""Reading the PostgreSQL store: the same questions, rows and order as
store/sqlite/queries.py asks of SQLite."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from deskpulse.errors import DeskPulseError
from deskpulse.store.base import EARLIEST, LATEST, DeviceFacts, DeviceHealth, SyncRecord
from deskpulse.store.postgres.schema import CLOCK_CORRECTED
from deskpulse.store.rollups import TIME_UNKNOWN

if TYPE_CHECKING:
    import psycopg

Query = tuple[str, tuple[Any, ...] | dict[str, Any]]
"""A statement and its parameters, for the store to run (the iterators run theirs on a
server-side cursor)."""


def devices(conn: psycopg.Connection[Any]) -> list[DeviceHealth]:
    rows = conn.execute(
        """SELECT d.device_id, d.name, d.location, d.time_zone, d.board, d.firmware,
                  d.last_sync,
                  (SELECT count(*) FROM syncs WHERE device_id = d.device_id),
                  coalesce(r.responses, 0), coalesce(r.time_unknown, 0), r.last_seq,
                  s.fill, s.unacked, s.dropped, s.corrupt, s.boot, s.reset_cause, s.crashes,
                  s.clock_known, s.transport
           FROM devices d
           LEFT JOIN LATERAL (
               SELECT count(*) AS responses, count(*) FILTER (WHERE wall IS NULL)
                      AS time_unknown, max(seq) AS last_seq
               FROM responses WHERE device_id = d.device_id) r ON true
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


def last_seq(conn: psycopg.Connection[Any], device_id: str) -> int | None:
    row = conn.execute("SELECT max(seq) FROM responses WHERE device_id = %s",
                       (device_id,)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def latest_sync(conn: psycopg.Connection[Any], device_id: str) -> SyncRecord | None:
    row = conn.execute(
        """SELECT sync_id, at, transport, received, new, duplicates, time_unknown, dropped,
                  fill, status
           FROM syncs WHERE device_id = %s ORDER BY sync_id DESC LIMIT 1""",
        (device_id,)).fetchone()
    if row is None:
        return None
    return SyncRecord(*row[:9], status=json.loads(row[9]))


def count_time_unknown(conn: psycopg.Connection[Any], device_id: str | None = None) -> int:
    if device_id is None:
        row = conn.execute("SELECT count(*) FROM responses_unknown").fetchone()
    else:
        row = conn.execute("SELECT count(*) FROM responses_unknown WHERE device_id = %s",
                           (device_id,)).fetchone()
    return int(row[0]) if row is not None else 0


def responses_of(conn: psycopg.Connection[Any], device_id: str) -> list[dict[str, Any]]:
    cur = conn.execute("SELECT * FROM responses WHERE device_id = %s ORDER BY seq",
                       (device_id,))
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def response_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return dict(conn.execute(
        "SELECT device_id, count(*) FROM responses GROUP BY device_id").fetchall())


def device_facts(conn: psycopg.Connection[Any]) -> list[DeviceFacts]:
    return [DeviceFacts(*row) for row in conn.execute(
        "SELECT device_id, name, location, time_zone FROM devices ORDER BY device_id")]


# -- devices and keys ---------------------------------------------------------------------


def registered_ids(conn: psycopg.Connection[Any]) -> set[str]:
    return {row[0] for row in conn.execute("SELECT device_id FROM device_keys")}


def device_key(conn: psycopg.Connection[Any], device_id: str, *,
               lock: bool = False) -> bytes | None:
    """The device's key; with `lock`, its row stays locked until the transaction ends."""
    row = conn.execute("SELECT key FROM device_keys WHERE device_id = %s"
                       + (" FOR UPDATE" if lock else ""), (device_id,)).fetchone()
    return None if row is None else bytes(row[0])


def describe(conn: psycopg.Connection[Any], device_id: str, name: str | None,
             location: str | None, time_zone: str | None, *, create: bool, now: int) -> None:
    """Set what people gave (None leaves a field, "" clears it), locking the device's
    row; a device never seen is created with `create`, else refused."""
    if create:
        conn.execute("INSERT INTO devices (device_id, first_seen) VALUES (%s, %s) "
                     "ON CONFLICT (device_id) DO NOTHING", (device_id, now))
    if conn.execute("SELECT 1 FROM devices WHERE device_id = %s FOR UPDATE",
                    (device_id,)).fetchone() is None:
        raise DeskPulseError(
            f"no device {device_id} in the database: `deskpulse devices add` it first")
    for column, value in (("name", name), ("location", location), ("time_zone", time_zone)):
        if value is not None:
            conn.execute(f"UPDATE devices SET {column} = %s "  # type: ignore[arg-type]
                         "WHERE device_id = %s", (value or None, device_id))


def set_key(conn: psycopg.Connection[Any], device_id: str, key: bytes, now: int) -> None:
    conn.execute(
        """INSERT INTO device_keys (device_id, key, created, nonce_boot, nonce_count)
           VALUES (%s, %s, %s, 0, 0)
           ON CONFLICT (device_id) DO UPDATE SET key = excluded.key,
               created = excluded.created, nonce_boot = 0, nonce_count = 0""",
        (device_id, key, now))


def remove_key(conn: psycopg.Connection[Any], device_id: str) -> bool:
    return conn.execute("DELETE FROM device_keys WHERE device_id = %s",
                        (device_id,)).rowcount > 0


# -- what the reports read ----------------------------------------------------------------

_RAW_COLUMNS = ("device_id, coalesce(wall, wall_low), coalesce(wall, wall_high), rating, "
                "scale, told_next, rapid, closed")


def _unflagged(include_flagged: bool) -> str:
    return "" if include_flagged else " AND rapid = 0 AND closed = 0"


def month_rollups(device_ids: Sequence[str], first: int, last: int,
                  kinds: Sequence[int] | None) -> Query:
    of_kinds = "" if kinds is None else " AND kind = ANY(%s)"
    params: tuple[Any, ...] = (list(device_ids), _clamp(first), _clamp(last))
    if kinds is not None:
        params += ([int(k) for k in kinds],)
    return (f"""SELECT device_id, month, scale, kind, counts FROM rollup_months
                WHERE device_id = ANY(%s) AND month BETWEEN %s AND %s{of_kinds}""", params)


def month_responses(conn: psycopg.Connection[Any], device_ids: Sequence[str], first: int,
                    last: int, kinds: Sequence[int]) -> list[tuple[str, int, int, bool, int]]:
    return [(device_id, scale, kind, unknown, int(responses))
            for device_id, scale, kind, unknown, responses in conn.execute(
                f"""SELECT device_id, scale, kind, month = {TIME_UNKNOWN}, sum(responses)
                    FROM rollup_months
                    WHERE device_id = ANY(%s) AND month BETWEEN %s AND %s
                      AND kind = ANY(%s)
                    GROUP BY device_id, scale, kind, month = {TIME_UNKNOWN}""",  # type: ignore[arg-type]
                (list(device_ids), _clamp(first), _clamp(last), [int(k) for k in kinds]))]


def day_rollups(device_ids: Sequence[str], first: int, last: int) -> Query:
    return ("""SELECT device_id, day, scale, kind, counts FROM rollup_days
               WHERE device_id = ANY(%s) AND day BETWEEN %s AND %s""",
            (list(device_ids), _clamp(first), _clamp(last)))


def _whole(bound: float | None) -> int | None:
    """A bound on integer times, as the least integer that compares the same way."""
    return None if bound is None else math.ceil(bound)


def _clamp(period: int) -> int:
    """A period bound within the INTEGER columns (EARLIEST and LATEST are 62-bit)."""
    return max(-(1 << 31), min(period, (1 << 31) - 1))


def timed_responses(device_id: str | None, since: int, until: int) -> Query:
    """The timed ones (their months' partitions only), then those without a time whose
    interval lies inside the range; of one device, or with None of every device."""
    # Every device as an array: the (device_id, wall) index is then probed once per device
    # in the range's months, where a range alone would read them whole.
    device = ("device_id = %(device)s AND" if device_id is not None
              else "device_id = ANY(ARRAY(SELECT device_id FROM devices)) AND")
    return (f"""SELECT {_RAW_COLUMNS} FROM responses
                WHERE {device} wall >= %(since)s AND wall < %(until)s
                UNION ALL
                SELECT {_RAW_COLUMNS} FROM responses_unknown
                WHERE {device} wall_low >= %(since)s AND wall_high < %(until)s""",
            {"device": device_id, "since": since, "until": until})


def response_groups(since: int, until: int, device_id: str | None) -> Query:
    where = "(wall IS NULL OR (wall >= %s AND wall < %s))"
    params: tuple[Any, ...] = (since, until)
    if device_id is not None:
        where += " AND device_id = %s"
        params += (device_id,)
    return (f"""SELECT {_RAW_COLUMNS}, count(*) FROM responses WHERE {where}
                GROUP BY device_id, wall, wall_low, wall_high, rating, scale, told_next, rapid,
                         closed""", params)


def clock_corrected(conn: psycopg.Connection[Any], device_ids: Sequence[str], since: int,
                    until: int, include_flagged: bool) -> list[tuple[str, int, int]]:
    """One query, on the partial index of those rows."""
    return conn.execute(
        f"""SELECT device_id, count(*)::int, max(abs(wall - device_wall))
            FROM responses
            WHERE device_id = ANY(%s) AND wall >= %s AND wall < %s
              {_unflagged(include_flagged)} AND {CLOCK_CORRECTED}
            GROUP BY device_id ORDER BY device_id""",  # type: ignore[arg-type]
        (list(device_ids), since, until)).fetchall()


def anchored_stamps() -> Query:
    return ("""SELECT device_id, wall, device_wall, rapid, closed FROM responses
               WHERE time_source = 'anchor' AND device_wall IS NOT NULL
               ORDER BY device_id, seq""", ())


def export_rows(device_id: str, since: int | None, until: int | None,
                include_flagged: bool) -> Query:
    if since is None and until is None:
        when, bounds = "TRUE", ()
    else:
        when = ("((wall >= %s AND wall < %s) "
                "OR (wall IS NULL AND wall_low >= %s AND wall_high < %s))")
        low = since if since is not None else EARLIEST
        high = until if until is not None else LATEST
        bounds = (low, high, low, high)
    return (f"""SELECT wall, wall_low, wall_high, rating, scale, told_next, rapid, closed, seq
                FROM responses
                WHERE device_id = %s AND {when}{_unflagged(include_flagged)}
                ORDER BY coalesce(wall, wall_low) NULLS FIRST, seq""", (device_id, *bounds))


def negative_marks(since: float | None, until: float | None, device_id: str | None,
                   location: str | None, include_flagged: bool,
                   negative_ratings: Sequence[int], device_ids: Sequence[str] | None
                   ) -> Query:
    where = ["r.wall IS NOT NULL"]
    params: list[Any] = []
    # Whole seconds, so that the bounds are bigints (an index range, the months' partitions).
    # `device_ids` as an array: an index condition, each kiosk's range of (device_id, wall)
    # in every month's partition, merged in the order asked for.
    for clause, value in (("r.wall >= %s", _whole(since)), ("r.wall < %s", _whole(until)),
                          ("r.device_id = %s", device_id),
                          ("r.device_id = ANY(%s)",
                           None if device_ids is None else sorted(set(device_ids))),
                          ("r.device_id IN (SELECT device_id FROM devices WHERE location = %s)",
                           location)):
        if value is not None:
            where.append(clause)
            params.append(value)
    if not include_flagged:
        where.append("r.rapid = 0 AND r.closed = 0")
    return (f"""SELECT r.device_id, r.wall, (r.rating = ANY(%s))::int
                FROM responses r WHERE {' AND '.join(where)}
                ORDER BY r.device_id, r.wall, r.seq""",
            (list(negative_ratings), *params))


def sync_marks(conn: psycopg.Connection[Any], after: int | None, limit: int,
               among: Sequence[int]) -> list[tuple[int, str]]:
    if after is None:
        rows = conn.execute(
            "SELECT sync_id, device_id FROM syncs ORDER BY sync_id DESC LIMIT 1").fetchall()
    else:
        rows = conn.execute(
            "SELECT sync_id, device_id FROM syncs WHERE sync_id > %s ORDER BY sync_id "
            "LIMIT %s", (after, limit)).fetchall()
    if among:
        rows = conn.execute(
            "SELECT sync_id, device_id FROM syncs WHERE sync_id = ANY(%s) ORDER BY sync_id",
            ([int(i) for i in among],)).fetchall() + rows
    return [(int(sync_id), device_id) for sync_id, device_id in rows]


def last_syncs(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return {device_id: int(at) for device_id, at in conn.execute(
        "SELECT device_id, last_sync FROM devices WHERE last_sync IS NOT NULL").fetchall()}
