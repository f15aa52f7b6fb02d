"""Sites in PostgreSQL: the twin of store/sqlite/sites.py (the table, migration 6 from
free-text locations, and the writes that store/sites.py checked first). Every function runs
inside the caller's transaction."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from deskpulse.store.base import Site
from deskpulse.store.postgres import desired_config
from deskpulse.store.sites import MIGRATED_ORGANISATION, inherited

if TYPE_CHECKING:
    import psycopg

_LOCATION_STORE = f"'{MIGRATED_ORGANISATION}/' || replace(trim(location), '/', '-')"
_HAS_LOCATION = "trim(coalesce(location, '')) <> ''"

SCHEMA: tuple[str, ...] = (
    """CREATE TABLE sites (
        path          TEXT COLLATE "C" PRIMARY KEY,
        kind          TEXT NOT NULL CHECK (kind IN ('organisation', 'region', 'store')),
        time_zone     TEXT,
        opening_hours TEXT
    )""",
    """ALTER TABLE devices ADD COLUMN site TEXT COLLATE "C"
        REFERENCES sites(path) ON UPDATE CASCADE""",
    "ALTER TABLE devices ADD COLUMN site_zone TEXT",  # as on SQLite: `follow_zones`
    "CREATE INDEX devices_by_site ON devices(site)",
    f"""INSERT INTO sites (path, kind)
        SELECT '{MIGRATED_ORGANISATION}', 'organisation'
        WHERE EXISTS (SELECT 1 FROM devices WHERE {_HAS_LOCATION})""",
    f"""INSERT INTO sites (path, kind)
        SELECT DISTINCT {_LOCATION_STORE}, 'store' FROM devices WHERE {_HAS_LOCATION}
        ON CONFLICT (path) DO NOTHING""",
    f"UPDATE devices SET site = {_LOCATION_STORE} WHERE {_HAS_LOCATION}",
)

def lock(conn: psycopg.Connection[Any]) -> None:
    """One writer of the tree at a time, across processes: each change is checked on the
    tree as it stands; readers are not held up."""
    conn.execute("LOCK TABLE sites IN SHARE ROW EXCLUSIVE MODE")


def tree(conn: psycopg.Connection[Any]) -> list[Site]:
    return [Site(*row) for row in conn.execute(
        "SELECT path, kind, time_zone, opening_hours FROM sites ORDER BY path")]


def write(conn: psycopg.Connection[Any], site: Site) -> None:
    conn.execute(
        """INSERT INTO sites (path, kind, time_zone, opening_hours) VALUES (%s, %s, %s, %s)
           ON CONFLICT (path) DO UPDATE SET time_zone = excluded.time_zone,
               opening_hours = excluded.opening_hours""",
        (site.path, site.kind, site.time_zone, site.opening_hours))


def repath(conn: psycopg.Connection[Any], old: str, new: str) -> None:
    """The site `old` and every site below it now start with `new`; their kiosks follow by
    the foreign key's ON UPDATE CASCADE, their templates (config over the air) here."""
    conn.execute(
        """UPDATE sites SET path = %(new)s || substr(path, length(%(old)s) + 1)
           WHERE path = %(old)s OR left(path, length(%(old)s) + 1) = %(old)s || '/'""",
        {"new": new, "old": old})
    conn.execute(
        """UPDATE config_layers SET name = %(new)s || substr(name, length(%(old)s) + 1)
           WHERE scope = 'site'
             AND (name = %(old)s OR left(name, length(%(old)s) + 1) = %(old)s || '/')""",
        {"new": new, "old": old})


def remove(conn: psycopg.Connection[Any], paths: Iterable[str]) -> list[str]:
    """Remove the sites and their templates; the sites whose template went."""
    chosen = list(paths)
    conn.execute("UPDATE devices SET site = NULL WHERE site = ANY(%s)", (chosen,))
    conn.execute("DELETE FROM sites WHERE path = ANY(%s)", (chosen,))
    gone = {name for (name,) in conn.execute(
        "DELETE FROM config_layers WHERE scope = 'site' AND name = ANY(%s) RETURNING name",
        (chosen,))}
    return [path for path in chosen if path in gone]


def save_desired(conn: psycopg.Connection[Any],
                 configs: Mapping[str, Mapping[str, Any] | None]) -> None:
    desired_config.save_config(conn, configs, None, int(time.time()))


def assign(conn: psycopg.Connection[Any], device_id: str, store: str | None) -> bool:
    """Whether the device was known."""
    return conn.execute("UPDATE devices SET site = %s WHERE device_id = %s",
                        (store, device_id)).rowcount > 0


def device_site(conn: psycopg.Connection[Any], device_id: str) -> str | None:
    row = conn.execute("SELECT site FROM devices WHERE device_id = %s",
                       (device_id,)).fetchone()
    return None if row is None else row[0]


def placed(conn: psycopg.Connection[Any]) -> dict[str, str]:
    return dict(conn.execute(
        "SELECT device_id, site FROM devices WHERE site IS NOT NULL ORDER BY device_id"
    ).fetchall())


CONFIGURED_ZONE = "coalesce(d.time_zone, d.site_zone)"
"""The zone a device `d` is configured with: its own, else its store's (store/sites.py
`kiosk_zones` says the same from the tree)."""


def follow_zones(conn: psycopg.Connection[Any]) -> None:
    """Set each kiosk's `site_zone` to the zone its store now follows; after any change of
    the tree or of an assignment, in its transaction."""
    by_path = {site.path: site for site in tree(conn)}
    with conn.cursor() as cursor:
        cursor.executemany(
            "UPDATE devices SET site_zone = %s "
            "WHERE site = %s AND site_zone IS DISTINCT FROM %s",
            [(zone, path, zone) for path, zone in (
                (path, inherited(by_path, path)[0]) for path, site in by_path.items()
                if site.kind == "store")])
    conn.execute("UPDATE devices SET site_zone = NULL "
                 "WHERE site IS NULL AND site_zone IS NOT NULL")
