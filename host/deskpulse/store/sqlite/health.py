"""Device health in SQLite: the refused pushes' rows, and each kiosk's contacts read in one
statement (store/health.py has the rules)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from deskpulse.store import health
from deskpulse.store.health import KioskContact, RefusalCount

SCHEMA = (
    # Keyed by hour first: the reads and the removal of old rows are ranges of hours.
    """CREATE TABLE push_refusals (
        hour      INTEGER NOT NULL,  -- unix seconds of the hour's first second (host clock)
        device_id TEXT NOT NULL,     -- as the request claimed it: maybe no kiosk's, or '*'
        reason    TEXT NOT NULL,     -- health.REASONS
        count     INTEGER NOT NULL,
        last      INTEGER NOT NULL,  -- unix seconds of the latest of them
        message   TEXT NOT NULL,     -- the latest one's sentence
        PRIMARY KEY (hour, device_id, reason)
    ) WITHOUT ROWID""",
    # A kiosk's latest serial sync is one probe; serial syncs are rare, so the pushes
    # that fill the syncs table pay nothing for this index.
    "CREATE INDEX syncs_serial ON syncs(device_id, at) WHERE transport = 'serial'",
)

_MERGE = """INSERT INTO push_refusals (hour, device_id, reason, count, last, message)
    VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (hour, device_id, reason) DO UPDATE SET
        count = {count},
        message = CASE WHEN excluded.last >= push_refusals.last THEN excluded.message
                       ELSE push_refusals.message END,
        last = max(excluded.last, push_refusals.last)"""
ADDED = _MERGE.format(count="push_refusals.count + excluded.count")
LARGER = _MERGE.format(count="max(push_refusals.count, excluded.count)")


def record_refusals(conn: sqlite3.Connection, counts: Sequence[RefusalCount], copied: bool,
                    now: int) -> None:
    """In the caller's transaction."""
    if counts:
        ids = sorted({row.device_id for row in counts})
        known = {device for (device,) in conn.execute(
            f"SELECT device_id FROM devices WHERE device_id IN ({','.join('?' * len(ids))})",
            ids)}
        kept: dict[int, set[str]] = {}
        for hour in {row.hour for row in counts}:
            kept[hour] = {device for (device,) in conn.execute(
                """SELECT device_id FROM push_refusals WHERE hour = ? AND device_id != ?
                   AND device_id NOT IN (SELECT device_id FROM devices)""",
                (hour, health.UNKNOWN_OTHERS))}
        conn.executemany(LARGER if copied else ADDED, health.rows_to_write(counts, known, kept))
    conn.execute("DELETE FROM push_refusals WHERE hour < ?",
                 (health.hour_of(now - health.RETENTION_S),))


def push_refusals(conn: sqlite3.Connection, since: int) -> list[RefusalCount]:
    return [RefusalCount(device, reason, hour, count, last, message)
            for hour, device, reason, count, last, message in conn.execute(
                """SELECT hour, device_id, reason, count, last, message FROM push_refusals
                   WHERE hour >= ? ORDER BY hour, device_id, reason""",
                (health.hour_of(since),))]


def kiosk_contacts(conn: sqlite3.Connection, since: int) -> list[KioskContact]:
    rows = conn.execute(
        f"""SELECT d.device_id, d.name, {health.CONTACT_SUBQUERIES},
                  d.last_sync, d.last_status,
                  s.fill, s.unacked, s.dropped, s.clock_known,
                  e.at, e.fill, e.dropped
           FROM devices d
           LEFT JOIN syncs s ON s.sync_id = (
               SELECT sync_id FROM syncs WHERE device_id = d.device_id
               ORDER BY at DESC, sync_id DESC LIMIT 1)
           LEFT JOIN syncs e ON e.sync_id = (
               SELECT sync_id FROM syncs WHERE device_id = d.device_id AND at >= ?
               ORDER BY at, sync_id LIMIT 1)
           ORDER BY d.device_id""", (since,))
    return [health.contact_from_row(row) for row in rows]
