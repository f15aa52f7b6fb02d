"""Accounts in PostgreSQL: the twin of store/sqlite/accounts.py: the users table, the server
secret, and the reads and writes, each inside the caller's transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deskpulse.store.accounts import User

if TYPE_CHECKING:
    import psycopg

SCHEMA: tuple[str, ...] = (
    # As on SQLite: a site's users follow it when it moves and go when it is removed.
    """CREATE TABLE users (
        name          TEXT COLLATE "C" PRIMARY KEY,
        role          TEXT NOT NULL CHECK (role IN ('admin', 'manager', 'viewer')),
        site          TEXT COLLATE "C"
                      REFERENCES sites(path) ON UPDATE CASCADE ON DELETE CASCADE,
        email         TEXT,
        password_hash TEXT NOT NULL,
        created       BIGINT NOT NULL,
        generation    BIGINT NOT NULL,
        CHECK (site IS NOT NULL OR role = 'admin')
    )""",
    "CREATE INDEX users_by_site ON users(site)",  # the cascades find a site's users
    """CREATE TABLE server_secret (
        id     SMALLINT PRIMARY KEY CHECK (id = 1),  -- one row
        secret BYTEA NOT NULL
    )""",
)

_COLUMNS = "name, role, site, email, password_hash, created, generation"


def users(conn: psycopg.Connection[Any]) -> list[User]:
    return [User(*row) for row in conn.execute(f"SELECT {_COLUMNS} FROM users ORDER BY name")]


def user(conn: psycopg.Connection[Any], name: str) -> User | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM users WHERE name = %s", (name,)).fetchone()
    return None if row is None else User(*row)


def insert(conn: psycopg.Connection[Any], user: User) -> bool:
    return conn.execute(
        f"INSERT INTO users ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (name) DO NOTHING",
        (user.name, user.role, user.site, user.email, user.password_hash, user.created,
         user.generation)).rowcount > 0


def update(conn: psycopg.Connection[Any], user: User) -> None:
    conn.execute(
        "UPDATE users SET role = %s, site = %s, email = %s, password_hash = %s, generation = %s "
        "WHERE name = %s",
        (user.role, user.site, user.email, user.password_hash, user.generation, user.name))


def delete(conn: psycopg.Connection[Any], name: str) -> bool:
    return conn.execute("DELETE FROM users WHERE name = %s", (name,)).rowcount > 0


def secret(conn: psycopg.Connection[Any]) -> bytes | None:
    row = conn.execute("SELECT secret FROM server_secret WHERE id = 1").fetchone()
    return None if row is None else bytes(row[0])


def insert_secret(conn: psycopg.Connection[Any], secret: bytes) -> None:
    conn.execute("INSERT INTO server_secret (id, secret) VALUES (1, %s) "
                 "ON CONFLICT (id) DO NOTHING", (secret,))
