"""Notifications in SQLite: alert rules, the log of what each destination was told, and the
leases (rules in store/notify.py). Every function runs inside the caller's transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from deskpulse.store.notify import AlertRule, LogEntry, SentDigest, rule_of, rule_row

SCHEMA: tuple[str, ...] = (
    # A rule follows its site when the site is renamed or moved, and goes with it.
    """CREATE TABLE alert_rules (
        name         TEXT PRIMARY KEY,
        site         TEXT NOT NULL REFERENCES sites(path) ON UPDATE CASCADE ON DELETE CASCADE,
        kind         TEXT NOT NULL,
        thresholds   TEXT NOT NULL,     -- JSON object
        destinations TEXT NOT NULL,     -- JSON list of apprise URLs
        remind_s     INTEGER            -- NULL: no reminders
    )""",
    """CREATE TABLE notify_log (
        rule        TEXT NOT NULL REFERENCES alert_rules(name) ON DELETE CASCADE,
        destination TEXT NOT NULL,      -- store/notify.py destination_id
        alert_key   TEXT NOT NULL,
        opened      INTEGER NOT NULL,   -- unix seconds
        notified    INTEGER,            -- NULL: the opening not yet delivered
        resolved    INTEGER,            -- NULL: still going on
        summary     TEXT NOT NULL,
        PRIMARY KEY (rule, destination, alert_key)
    ) WITHOUT ROWID""",
    """CREATE TABLE leases (
        name    TEXT PRIMARY KEY,
        owner   TEXT NOT NULL,
        expires INTEGER NOT NULL        -- unix seconds
    ) WITHOUT ROWID""",
)

DIGEST_SCHEMA: tuple[str, ...] = (
    # A record follows its site when the site is renamed or moved, and goes with it.
    """CREATE TABLE digests_sent (
        week      TEXT NOT NULL,        -- ISO week: 2026-W48
        recipient TEXT NOT NULL,        -- email address
        site      TEXT NOT NULL REFERENCES sites(path) ON UPDATE CASCADE ON DELETE CASCADE,
        sent      INTEGER NOT NULL,     -- unix seconds
        PRIMARY KEY (week, recipient, site)
    ) WITHOUT ROWID""",
)

_LOG_COLUMNS = "rule, destination, alert_key, opened, notified, resolved, summary"


def rules(conn: sqlite3.Connection) -> list[AlertRule]:
    return [rule_of(row) for row in conn.execute(
        "SELECT name, site, kind, thresholds, destinations, remind_s FROM alert_rules "
        "ORDER BY name")]


def site_exists(conn: sqlite3.Connection, path: str) -> bool:
    return conn.execute("SELECT 1 FROM sites WHERE path = ?", (path,)).fetchone() is not None


def add_rule(conn: sqlite3.Connection, rule: AlertRule) -> bool:
    """Whether the rule was new (a rule of that name is left as it was)."""
    return conn.execute(
        "INSERT OR IGNORE INTO alert_rules (name, site, kind, thresholds, destinations, "
        "remind_s) VALUES (?, ?, ?, ?, ?, ?)", rule_row(rule)).rowcount > 0


def remove_rule(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("DELETE FROM alert_rules WHERE name = ?", (name,)).rowcount > 0


def log(conn: sqlite3.Connection) -> list[LogEntry]:
    return [LogEntry(*row) for row in conn.execute(
        f"SELECT {_LOG_COLUMNS} FROM notify_log ORDER BY rule, destination, alert_key")]


def write_log(conn: sqlite3.Connection, entries: Iterable[LogEntry]) -> None:
    # Only rows whose rule still exists: a rule removed during a pass takes its log along.
    conn.executemany(
        f"""INSERT OR REPLACE INTO notify_log ({_LOG_COLUMNS})
            SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (
                SELECT 1 FROM alert_rules WHERE name = ?)""",
        [(e.rule, e.destination, e.key, e.opened, e.notified, e.resolved, e.summary, e.rule)
         for e in entries])


def forget_log(conn: sqlite3.Connection, entries: Iterable[LogEntry]) -> None:
    conn.executemany(
        "DELETE FROM notify_log WHERE rule = ? AND destination = ? AND alert_key = ?",
        [(e.rule, e.destination, e.key) for e in entries])


def take_lease(conn: sqlite3.Connection, name: str, owner: str, now: int, until: int) -> bool:
    conn.execute(
        """INSERT INTO leases (name, owner, expires) VALUES (?, ?, ?)
           ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires = excluded.expires
           WHERE leases.owner = excluded.owner OR leases.expires <= ?""",
        (name, owner, until, now))
    row = conn.execute("SELECT owner FROM leases WHERE name = ?", (name,)).fetchone()
    return row is not None and row[0] == owner


def release_lease(conn: sqlite3.Connection, name: str, owner: str) -> None:
    conn.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))


def sent_digests(conn: sqlite3.Connection, weeks: Sequence[str] | None) -> list[SentDigest]:
    where = "" if weeks is None else f"WHERE week IN ({', '.join('?' * len(weeks))})"
    return [SentDigest(*row) for row in conn.execute(
        f"SELECT week, recipient, site, sent FROM digests_sent {where} "
        "ORDER BY week, recipient, site", tuple(weeks or ()))]


def record_digests(conn: sqlite3.Connection, entries: Iterable[SentDigest]) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO digests_sent (week, recipient, site, sent) VALUES (?, ?, ?, ?)",
        [(d.week, d.recipient, d.site, d.sent) for d in entries])
