"""Sites in SQLite: the table, the migration from free-text locations, and the writes that
store/sites.py checked first. Every function runs inside the caller's transaction."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Mapping
from typing import Any

from deskpulse.store.base import Site
from deskpulse.store.sites import MIGRATED_ORGANISATION, inherited
from deskpulse.store.sqlite import desired_config

# A free-text location becomes the name of a store: trimmed, and a '/' would split it.
_LOCATION_STORE = (f"'{MIGRATED_ORGANISATION}/' || replace(trim(location), '/', '-')")
_HAS_LOCATION = "trim(coalesce(location, '')) <> ''"

SCHEMA: tuple[str, ...] = (
    """CREATE TABLE sites (
        path          TEXT PRIMARY KEY,  -- 'acme/north/lyon-1': its ancestors are prefixes
        kind          TEXT NOT NULL
                      CHECK (kind = 'organisation' OR kind = 'region' OR kind = 'store'),
        time_zone     TEXT,              -- IANA name; NULL: the one above it, else the host's
        opening_hours TEXT               -- 'mon-fri 09:00-18:00, sat 10:00-13:00'; NULL: inherited
    )""",
    # A renamed or moved store takes its kiosks along.
    "ALTER TABLE devices ADD COLUMN site TEXT REFERENCES sites(path) ON UPDATE CASCADE",
    # The zone its store follows (the nearest set on it or above), kept by every change of
    # the tree (`follow_zones`): each stored batch needs its kiosk's zone, and reads it
    # with the kiosk's row instead of walking the tree.
    "ALTER TABLE devices ADD COLUMN site_zone TEXT",
    "CREATE INDEX devices_by_site ON devices(site)",
    f"""INSERT INTO sites (path, kind)
        SELECT '{MIGRATED_ORGANISATION}', 'organisation'
        WHERE EXISTS (SELECT 1 FROM devices WHERE {_HAS_LOCATION})""",
    f"""INSERT OR IGNORE INTO sites (path, kind)
        SELECT DISTINCT {_LOCATION_STORE}, 'store' FROM devices WHERE {_HAS_LOCATION}""",
    f"UPDATE devices SET site = {_LOCATION_STORE} WHERE {_HAS_LOCATION}",
)

_UNDER = "(path = :path OR substr(path, 1, length(:path) + 1) = :path || '/')"

def tree(conn: sqlite3.Connection) -> list[Site]:
    return [Site(*row) for row in conn.execute(
        "SELECT path, kind, time_zone, opening_hours FROM sites ORDER BY path")]


def write(conn: sqlite3.Connection, site: Site) -> None:
    conn.execute(
        """INSERT INTO sites (path, kind, time_zone, opening_hours) VALUES (?, ?, ?, ?)
           ON CONFLICT (path) DO UPDATE SET time_zone = excluded.time_zone,
               opening_hours = excluded.opening_hours""",
        (site.path, site.kind, site.time_zone, site.opening_hours))


def repath(conn: sqlite3.Connection, old: str, new: str) -> None:
    """The site `old` and every site below it now start with `new`; their kiosks follow
    by the foreign key's ON UPDATE CASCADE, their templates (config over the air) here."""
    conn.execute(f"UPDATE sites SET path = :new || substr(path, length(:path) + 1) "
                 f"WHERE {_UNDER}", {"new": new, "path": old})
    conn.execute("""UPDATE config_layers SET name = :new || substr(name, length(:path) + 1)
                    WHERE scope = 'site' AND (name = :path
                        OR substr(name, 1, length(:path) + 1) = :path || '/')""",
                 {"new": new, "path": old})


def remove(conn: sqlite3.Connection, paths: Iterable[str]) -> list[str]:
    """Remove the sites and their templates; the sites whose template went."""
    chosen = [(p,) for p in paths]
    conn.executemany("UPDATE devices SET site = NULL WHERE site = ?", chosen)
    conn.executemany("DELETE FROM sites WHERE path = ?", chosen)
    return [name for (name,) in chosen if conn.execute(
        "DELETE FROM config_layers WHERE scope = 'site' AND name = ?", (name,)).rowcount]


def save_desired(conn: sqlite3.Connection,
                 configs: Mapping[str, Mapping[str, Any] | None]) -> None:
    desired_config.save_config(conn, configs, None, int(time.time()))


def assign(conn: sqlite3.Connection, device_id: str, store: str | None) -> bool:
    """Whether the device was known."""
    return conn.execute("UPDATE devices SET site = ? WHERE device_id = ?",
                        (store, device_id)).rowcount > 0


def device_site(conn: sqlite3.Connection, device_id: str) -> str | None:
    row = conn.execute("SELECT site FROM devices WHERE device_id = ?",
                       (device_id,)).fetchone()
    return None if row is None else row[0]


def placed(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute(
        "SELECT device_id, site FROM devices WHERE site IS NOT NULL ORDER BY device_id"))


CONFIGURED_ZONE = "coalesce(d.time_zone, d.site_zone)"
"""The zone a device `d` is configured with: its own, else its store's (store/sites.py
`kiosk_zones` says the same from the tree)."""


def follow_zones(conn: sqlite3.Connection) -> None:
    """Set each kiosk's `site_zone` to the zone its store now follows; after any change of
    the tree or of an assignment, in its transaction."""
    by_path = {site.path: site for site in tree(conn)}
    conn.executemany(
        "UPDATE devices SET site_zone = ? WHERE site = ? AND site_zone IS NOT ?",
        [(zone, path, zone) for path, zone in (
            (path, inherited(by_path, path)[0]) for path, site in by_path.items()
            if site.kind == "store")])
    conn.execute("UPDATE devices SET site_zone = NULL "
                 "WHERE site IS NULL AND site_zone IS NOT NULL")
