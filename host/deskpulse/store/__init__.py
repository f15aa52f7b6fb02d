"""The store: every response, device, key and count the host keeps, behind one interface
(base.Store). Nothing outside this package imports an engine or writes a query.

`open_store()` is how commands, the server and the tools get one: SQLite (store/sqlite/,
the default, a file) or PostgreSQL (store/postgres/, a postgresql:// URL).
"""

from __future__ import annotations

import os

from deskpulse.store import base
from deskpulse.store.base import Store


def open_store(path: str | os.PathLike[str] | None = None, *, create: bool = True,
               busy_timeout_ms: int | None = None) -> Store:
    """Open (creating and migrating if needed) the store at `path`, else the default
    database ($DESKPULSE_DB, else a file). `path` is a SQLite file (a plain path or
    sqlite:///PATH) or a PostgreSQL URL (postgresql:// or postgres://). With `create` False
    a missing store is an error and nothing is created: commands that only read would
    otherwise report on an empty one."""
    engine, where = base.parse_db_target(path)
    if engine == "postgresql" and where is not None:
        from deskpulse.store.postgres import PostgresStore

        return PostgresStore.open(where, create=create, busy_timeout_ms=busy_timeout_ms)
    from deskpulse.store.sqlite import SqliteStore

    return SqliteStore.open(where, create=create, busy_timeout_ms=busy_timeout_ms)
