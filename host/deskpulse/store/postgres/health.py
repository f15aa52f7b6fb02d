"""Device health in PostgreSQL: SQLite's tables and reads (store/sqlite/health.py says what
each holds; store/health.py has the rules)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from deskpulse.store import health
from deskpulse.store.health import KioskContact, RefusalCount

SCHEMA = (
    """CREATE TABLE push_refusals (
        hour      BIGINT NOT NULL,
        device_id TEXT COLLATE "C" NOT NULL,
        reason    TEXT NOT NULL,
        count     BIGINT NOT NULL,
        last      BIGINT NOT NULL,
        message   TEXT NOT NULL,
        PRIMARY KEY (hour, device_id, reason)
    )""",
    "CREATE INDEX syncs_serial ON syncs(device_id, at) WHERE transport = 'serial'",
)

_MERGE = """INSERT INTO push_refusals AS r (hour, device_id, reason, count, last, message)
    VALUES (%s, %s, %s, %s, %s, %s)
    ON CONFLICT (hour, device_id, reason) DO UPDATE SET
        count = {count},
        message = CASE WHEN excluded.last >= r.last THEN excluded.message ELSE r.message END,
        last = greatest(excluded.last, r.last)"""
ADDED = _MERGE.format(count="r.count + excluded.count")
LARGER = _MERGE.format(count="greatest(r.count, excluded.count)")


def record_refusals(conn: psycopg.Connection[Any], counts: Sequence[RefusalCount],
                    copied: bool, now: int) -> None:
    """In the caller's transaction."""
    if counts:
        ids = sorted({row.device_id for row in counts})
        known = {device for (device,) in conn.execute(
            "SELECT device_id FROM devices WHERE device_id = ANY(%s)", (ids,))}
        kept: dict[int, set[str]] = {}
        for hour, device in conn.execute(
                """SELECT hour, device_id FROM push_refusals r
                   WHERE hour = ANY(%s) AND device_id != %s AND NOT EXISTS (
                       SELECT 1 FROM devices d WHERE d.device_id = r.device_id)""",
                (sorted({row.hour for row in counts}), health.UNKNOWN_OTHERS)):
            kept.setdefault(int(hour), set()).add(device)
        with conn.cursor() as cursor:
            cursor.executemany(LARGER if copied else ADDED,
                               health.rows_to_write(counts, known, kept))
    conn.execute("DELETE FROM push_refusals WHERE hour < %s",
                 (health.hour_of(now - health.RETENTION_S),))


def push_refusals(conn: psycopg.Connection[Any], since: int) -> list[RefusalCount]:
    return [RefusalCount(device, reason, int(hour), int(count), int(last), message)
            for hour, device, reason, count, last, message in conn.execute(
                """SELECT hour, device_id, reason, count, last, message FROM push_refusals
                   WHERE hour >= %s ORDER BY hour, device_id, reason""",
                (health.hour_of(since),))]


def kiosk_contacts(conn: psycopg.Connection[Any], since: int) -> list[KioskContact]:
    rows = conn.execute(
        f"""SELECT d.device_id, d.name, {health.CONTACT_SUBQUERIES},
                  d.last_sync, d.last_status,
                  s.fill, s.unacked, s.dropped, s.clock_known,
                  e.at, e.fill, e.dropped
           FROM devices d
           LEFT JOIN LATERAL (
               SELECT fill, unacked, dropped, clock_known FROM syncs
               WHERE device_id = d.device_id ORDER BY at DESC, sync_id DESC LIMIT 1
           ) s ON true
           LEFT JOIN LATERAL (
               SELECT at, fill, dropped FROM syncs
               WHERE device_id = d.device_id AND at >= %s ORDER BY at, sync_id LIMIT 1
           ) e ON true
           ORDER BY d.device_id""", (since,)).fetchall()
    return [health.contact_from_row(row) for row in rows]
