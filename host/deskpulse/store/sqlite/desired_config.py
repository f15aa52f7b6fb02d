"""Config over the air, in SQLite: the layers people set (a site's template, a kiosk's
overrides) and each kiosk's desired config, merged from them, with its version.

A kiosk's desired configs are kept as a short history, newest last, so that `deskpulse
config diff` can show what a kiosk still running an older version will change. A row
whose config is NULL says the kiosk is no longer managed over the air.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from deskpulse.store import desired
from deskpulse.store.base import ConfigLayer, DesiredConfig, LayerChange, LayerScope

SCHEMA = (
    """CREATE TABLE config_layers (
        scope   TEXT NOT NULL CHECK (scope = 'site' OR scope = 'device'),
        name    TEXT NOT NULL,          -- a site path (acme/north) or a device id
        overlay TEXT NOT NULL,          -- a JSON object of config keys
        updated INTEGER NOT NULL,       -- unix seconds (host clock)
        PRIMARY KEY (scope, name)
    ) WITHOUT ROWID""",
    """CREATE TABLE desired_configs (
        row_id    INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL REFERENCES devices(device_id),
        version   INTEGER,              -- NULL with config: no longer managed
        config    TEXT,                 -- JSON, the merged layers with this version inside
        created   INTEGER NOT NULL
    )""",
    "CREATE INDEX desired_configs_by_device ON desired_configs(device_id, row_id)",
)


def config_layers(conn: sqlite3.Connection) -> list[ConfigLayer]:
    return [ConfigLayer(scope, name, json.loads(overlay), int(updated))
            for scope, name, overlay, updated in conn.execute(
                "SELECT scope, name, overlay, updated FROM config_layers ORDER BY scope, name")]


def _current_text(conn: sqlite3.Connection, device_id: str) -> str | None:
    row = conn.execute(
        """SELECT config FROM desired_configs WHERE device_id = ?
           ORDER BY row_id DESC LIMIT 1""", (device_id,)).fetchone()
    return None if row is None else row[0]


def _running_version(conn: sqlite3.Connection, device_id: str) -> int:
    row = conn.execute("SELECT last_status FROM devices WHERE device_id = ?",
                       (device_id,)).fetchone()
    return desired.running_version(row[0] if row else None)


def save_config(conn: sqlite3.Connection, configs: Mapping[str, Mapping[str, Any] | None],
                layer: LayerChange | None, now: int) -> dict[str, int | None]:
    """The layer set (overlay None: removed), if given, and each kiosk's new desired config
    (None: no longer managed), in the caller's transaction; the new versions of the
    kiosks whose config changed (desired.next_version)."""
    if layer is not None:
        _save_layer(conn, *layer, now)
    changed: dict[str, int | None] = {}
    for device_id, config in sorted(configs.items()):
        if desired.unchanged(_current_text(conn, device_id), config):
            continue
        if config is None:
            conn.execute("INSERT INTO desired_configs (device_id, version, config, created) "
                         "VALUES (?, NULL, NULL, ?)", (device_id, now))
            changed[device_id] = None
            continue
        version = desired.next_version(_last_version(conn, device_id),
                                       _running_version(conn, device_id))
        conn.execute("INSERT INTO desired_configs (device_id, version, config, created) "
                     "VALUES (?, ?, ?, ?)",
                     (device_id, version, desired.stored_config(config, version), now))
        _trim(conn, device_id)
        changed[device_id] = version
    return changed


def _trim(conn: sqlite3.Connection, device_id: str) -> None:
    """Keep the kiosk's newest desired.HISTORY desired configs."""
    conn.execute(
        """DELETE FROM desired_configs WHERE device_id = ? AND row_id NOT IN (
               SELECT row_id FROM desired_configs WHERE device_id = ?
               ORDER BY row_id DESC LIMIT ?)""", (device_id, device_id, desired.HISTORY))


def append_history(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Desired configs copied from another store (`deskpulse db copy`: row_id, device_id,
    version, config, created; one kiosk's, oldest first) after the kiosk's own."""
    conn.executemany("INSERT INTO desired_configs (device_id, version, config, created) "
                     "VALUES (?, ?, ?, ?)", [row[1:] for row in rows])
    _trim(conn, rows[0][1])


def _save_layer(conn: sqlite3.Connection, scope: LayerScope, name: str,
                overlay: Mapping[str, Any] | None, now: int) -> None:
    if overlay is None:
        conn.execute("DELETE FROM config_layers WHERE scope = ? AND name = ?", (scope, name))
    else:
        conn.execute(
            """INSERT INTO config_layers (scope, name, overlay, updated) VALUES (?, ?, ?, ?)
               ON CONFLICT (scope, name) DO UPDATE SET overlay = excluded.overlay,
                   updated = excluded.updated""", (scope, name, desired.dumps(overlay), now))


def _last_version(conn: sqlite3.Connection, device_id: str) -> int:
    """The newest version the kiosk was ever given (a removal row has none)."""
    row = conn.execute(
        """SELECT version FROM desired_configs WHERE device_id = ? AND version IS NOT NULL
           ORDER BY row_id DESC LIMIT 1""", (device_id,)).fetchone()
    return int(row[0]) if row else 0


def desired_config(conn: sqlite3.Connection, device_id: str,
                   version: int | None = None) -> DesiredConfig | None:
    """The kiosk's desired config (with version: that one, from the history), or None when
    it is not managed (or that version is no longer kept)."""
    if version is None:
        row = conn.execute(
            """SELECT version, config, created FROM desired_configs WHERE device_id = ?
               ORDER BY row_id DESC LIMIT 1""", (device_id,)).fetchone()
    else:
        row = conn.execute(
            """SELECT version, config, created FROM desired_configs
               WHERE device_id = ? AND version = ? ORDER BY row_id DESC LIMIT 1""",
            (device_id, version)).fetchone()
    if row is None or row[1] is None:
        return None
    return DesiredConfig(device_id, int(row[0]), json.loads(row[1]), int(row[2]))


def desired_versions(conn: sqlite3.Connection, device_id: str | None = None) -> dict[str, int]:
    """Every managed kiosk's desired version, or with device_id that kiosk's alone."""
    among = "" if device_id is None else "WHERE device_id = :device"
    rows = conn.execute(
        f"""SELECT device_id, version FROM desired_configs WHERE row_id IN (
                SELECT max(row_id) FROM desired_configs {among} GROUP BY device_id)""",
        {"device": device_id})
    return {device: int(version) for device, version in rows if version is not None}
