"""Accounts in SQLite (store/accounts.py has the rules): the users table, the server
secret, and the reads and writes, each inside the caller's transaction."""

from __future__ import annotations

import sqlite3

from deskpulse.store.accounts import User

SCHEMA: tuple[str, ...] = (
    # A renamed or moved site takes its users along; a removed one takes them away (a
    # manager of a store that is gone must not become a manager of nothing, nor of all).
    """CREATE TABLE users (
        name          TEXT PRIMARY KEY,
        role          TEXT NOT NULL CHECK (role IN ('admin', 'manager', 'viewer')),
        site          TEXT REFERENCES sites(path) ON UPDATE CASCADE ON DELETE CASCADE,
        email         TEXT,
        password_hash TEXT NOT NULL,
        created       INTEGER NOT NULL,
        generation    INTEGER NOT NULL,
        CHECK (site IS NOT NULL OR role = 'admin')
    )""",
    "CREATE INDEX users_by_site ON users(site)",  # the cascades find a site's users
    """CREATE TABLE server_secret (
        id     INTEGER PRIMARY KEY CHECK (id = 1),  -- one row
        secret BLOB NOT NULL
    )""",
)

_COLUMNS = "name, role, site, email, password_hash, created, generation"


def users(conn: sqlite3.Connection) -> list[User]:
    return [User(*row) for row in conn.execute(f"SELECT {_COLUMNS} FROM users ORDER BY name")]


def user(conn: sqlite3.Connection, name: str) -> User | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM users WHERE name = ?", (name,)).fetchone()
    return None if row is None else User(*row)


def insert(conn: sqlite3.Connection, user: User) -> bool:
    return conn.execute(
        f"INSERT INTO users ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (name) DO NOTHING",
        (user.name, user.role, user.site, user.email, user.password_hash, user.created,
         user.generation)).rowcount > 0


def update(conn: sqlite3.Connection, user: User) -> None:
    conn.execute(
        "UPDATE users SET role = ?, site = ?, email = ?, password_hash = ?, generation = ? "
        "WHERE name = ?",
        (user.role, user.site, user.email, user.password_hash, user.generation, user.name))


def delete(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0


def secret(conn: sqlite3.Connection) -> bytes | None:
    row = conn.execute("SELECT secret FROM server_secret WHERE id = 1").fetchone()
    return None if row is None else bytes(row[0])


def insert_secret(conn: sqlite3.Connection, secret: bytes) -> None:
    conn.execute("INSERT INTO server_secret (id, secret) VALUES (1, ?) "
                 "ON CONFLICT (id) DO NOTHING", (secret,))
