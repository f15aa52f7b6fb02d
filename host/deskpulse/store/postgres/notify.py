"""Notifications in PostgreSQL: the twin of store/sqlite/notify.py (alert rules, the log of
what each destination was told, the leases). Every function runs inside the caller's
transaction; a lease is taken with one upsert, which PostgreSQL serialises on its row."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from deskpulse.store.notify import AlertRule, LogEntry, SentDigest, rule_of, rule_row

if TYPE_CHECKING:
    import psycopg

SCHEMA: tuple[str, ...] = (
    """CREATE TABLE alert_rules (
        name         TEXT COLLATE "C" PRIMARY KEY,
        site         TEXT COLLATE "C" NOT NULL
                     REFERENCES sites(path) ON UPDATE CASCADE ON DELETE CASCADE,
        kind         TEXT NOT NULL,
        thresholds   TEXT NOT NULL,
        destinations TEXT NOT NULL,
        remind_s     BIGINT
    )""",
    """CREATE TABLE notify_log (
        rule        TEXT COLLATE "C" NOT NULL REFERENCES alert_rules(name) ON DELETE CASCADE,
        destination TEXT COLLATE "C" NOT NULL,
        alert_key   TEXT COLLATE "C" NOT NULL,
        opened      BIGINT NOT NULL,
        notified    BIGINT,
        resolved    BIGINT,
        summary     TEXT NOT NULL,
        PRIMARY KEY (rule, destination, alert_key)
    )""",
    """CREATE TABLE leases (
        name    TEXT COLLATE "C" PRIMARY KEY,
        owner   TEXT NOT NULL,
        expires BIGINT NOT NULL
    )""",
)

DIGEST_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE digests_sent (
        week      TEXT COLLATE "C" NOT NULL,
        recipient TEXT COLLATE "C" NOT NULL,
        site      TEXT COLLATE "C" NOT NULL
                  REFERENCES sites(path) ON UPDATE CASCADE ON DELETE CASCADE,
        sent      BIGINT NOT NULL,
        PRIMARY KEY (week, recipient, site)
    )""",
)

_LOG_COLUMNS = "rule, destination, alert_key, opened, notified, resolved, summary"


def rules(conn: psycopg.Connection[Any]) -> list[AlertRule]:
    return [rule_of(row) for row in conn.execute(
        "SELECT name, site, kind, thresholds, destinations, remind_s FROM alert_rules "
        "ORDER BY name")]


def site_exists(conn: psycopg.Connection[Any], path: str) -> bool:
    return conn.execute("SELECT 1 FROM sites WHERE path = %s", (path,)).fetchone() is not None


def add_rule(conn: psycopg.Connection[Any], rule: AlertRule) -> bool:
    return conn.execute(
        "INSERT INTO alert_rules (name, site, kind, thresholds, destinations, remind_s) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING",
        rule_row(rule)).rowcount > 0


def remove_rule(conn: psycopg.Connection[Any], name: str) -> bool:
    return conn.execute("DELETE FROM alert_rules WHERE name = %s", (name,)).rowcount > 0


def log(conn: psycopg.Connection[Any]) -> list[LogEntry]:
    return [LogEntry(*row) for row in conn.execute(
        f"SELECT {_LOG_COLUMNS} FROM notify_log ORDER BY rule, destination, alert_key")]


def write_log(conn: psycopg.Connection[Any], entries: Iterable[LogEntry]) -> None:
    with conn.cursor() as cursor:
        cursor.executemany(
            f"""INSERT INTO notify_log ({_LOG_COLUMNS})
                SELECT %s, %s, %s, %s, %s, %s, %s
                WHERE EXISTS (SELECT 1 FROM alert_rules WHERE name = %s)
                ON CONFLICT (rule, destination, alert_key) DO UPDATE SET
                    opened = excluded.opened, notified = excluded.notified,
                    resolved = excluded.resolved, summary = excluded.summary""",
            [(e.rule, e.destination, e.key, e.opened, e.notified, e.resolved, e.summary,
              e.rule) for e in entries])


def forget_log(conn: psycopg.Connection[Any], entries: Iterable[LogEntry]) -> None:
    with conn.cursor() as cursor:
        cursor.executemany(
            "DELETE FROM notify_log WHERE rule = %s AND destination = %s AND alert_key = %s",
            [(e.rule, e.destination, e.key) for e in entries])


def take_lease(conn: psycopg.Connection[Any], name: str, owner: str, now: int,
               until: int) -> bool:
    row = conn.execute(
        """INSERT INTO leases (name, owner, expires) VALUES (%s, %s, %s)
           ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires = excluded.expires
           WHERE leases.owner = excluded.owner OR leases.expires <= %s
           RETURNING owner""", (name, owner, until, now)).fetchone()
    return row is not None and row[0] == owner


def release_lease(conn: psycopg.Connection[Any], name: str, owner: str) -> None:
    conn.execute("DELETE FROM leases WHERE name = %s AND owner = %s", (name, owner))


def sent_digests(conn: psycopg.Connection[Any], weeks: Sequence[str] | None
                 ) -> list[SentDigest]:
    where = "" if weeks is None else "WHERE week = ANY(%s)"
    return [SentDigest(*row) for row in conn.execute(
        f"SELECT week, recipient, site, sent FROM digests_sent {where} "  # type: ignore[arg-type]
        "ORDER BY week, recipient, site", () if weeks is None else (list(weeks),))]


def record_digests(conn: psycopg.Connection[Any], entries: Iterable[SentDigest]) -> None:
    with conn.cursor() as cursor:
        cursor.executemany(
            """INSERT INTO digests_sent (week, recipient, site, sent) VALUES (%s, %s, %s, %s)
               ON CONFLICT (week, recipient, site) DO UPDATE SET sent = excluded.sent""",
            [(d.week, d.recipient, d.site, d.sent) for d in entries])
