"""The store: every response, device, key and count the host keeps, behind one interface
(base.Store). Nothing outside this package imports an engine or writes a query.

`open_store()` is how commands, the server and the tools get one; SQLite is the engine
today (store/sqlite/).
"""

from __future__ import annotations

import os

from deskpulse.store.base import Store


def open_store(path: str | os.PathLike[str] | None = None, *, create: bool = True,
               busy_timeout_ms: int | None = None) -> Store:
    """Open (creating and migrating if needed) the store at `path`, else the default
    database. With `create` False a missing store is an error and nothing is created:
    commands that only read would otherwise report on an empty one."""
    from deskpulse.store.sqlite import SqliteStore

    return SqliteStore.open(path, create=create, busy_timeout_ms=busy_timeout_ms)
