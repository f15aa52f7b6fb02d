"""Accounts of the dashboard (issue 17): the rules every store engine shares.

A user has a unique name, a role and the site subtree they see: an admin may see the whole
chain (no site); a manager or a viewer always names an existing site, and sees it and
everything below it. The password is kept as an argon2id hash only. Each user row carries
a session generation, a random number drawn again whenever the password changes: a
session cookie names the generation it was made under, so changing a password ends every
session made before; removing the user ends them too (and a user added again under the
same name draws a new generation, so an old cookie never comes back to life).

The database also keeps the server secret, drawn once, that signs session cookies, so that
every `deskpulse serve` on one database accepts the cookies of the others.

Everything here is plain Python; `AccountMethods` is the Store's account methods for both
engines over each engine's own queries (store/sqlite/accounts.py,
store/postgres/accounts.py), as sites.SiteMethods is for sites.
"""

from __future__ import annotations

import abc
import contextlib
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal, Protocol

from deskpulse.errors import DeskPulseError
from deskpulse.store.base import Site

Role = Literal["admin", "manager", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "manager", "viewer")
MIN_PASSWORD = 10
"""Characters at least: long enough that the login's rate limit makes guessing hopeless."""
MAX_PASSWORD = 1024
"""Characters at most: argon2 hashes any length, but a megabyte per login attempt is a
way to keep the server busy."""
SECRET_BYTES = 32

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    site: str | None  # the subtree they see; None: the whole chain (admins only)
    email: str | None  # where the weekly digest goes (notifications); None: nowhere
    password_hash: str  # argon2id, in its PHC string form ($argon2id$v=19$...)
    created: int  # Unix seconds
    generation: int  # drawn again at each password change: sessions name the one they had

    def __repr__(self) -> str:  # a hash has no place in a log or a traceback
        return (f"User(name={self.name!r}, role={self.role!r}, site={self.site!r}, "
                f"email={self.email!r}, created={self.created})")


# -- checks -------------------------------------------------------------------------------


def check_user_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise DeskPulseError(
            f"user name {name[:70]!r} is not one: 1 to 64 letters, digits and . _ @ - "
            "starting with a letter or digit")
    return name


def check_role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise DeskPulseError(f"no role {role!r}: choose admin, manager or viewer")


def check_scope(role: str, site: str | None) -> None:
    """Only an admin may see the whole chain."""
    if site is None and role != "admin":
        raise DeskPulseError(f"a {role} sees one site and what is below it: give --site "
                             "(only an admin may go without one)")


def check_email(email: str) -> str:
    if not _EMAIL.fullmatch(email):
        raise DeskPulseError(f"{email[:80]!r} is not an email address (name@example.com)")
    return email


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise DeskPulseError(f"the password is {'empty' if not password else 'too short'}:"
                             f" {MIN_PASSWORD} characters at least")
    if len(password) > MAX_PASSWORD:
        raise DeskPulseError(f"the password is longer than {MAX_PASSWORD} characters")
    return password


def no_user(name: str) -> DeskPulseError:
    return DeskPulseError(f"no user {name!r} (see `deskpulse users list`)")


def _known_site(tree: Mapping[str, Site], site: str | None) -> str | None:
    if site is not None and site not in tree:
        raise DeskPulseError(f"no site {site!r} (see `deskpulse sites list`)")
    return site


def check_new_user(tree: Mapping[str, Site], existing: User | None, name: str, role: str,
                   site: str | None, email: str | None) -> None:
    """Everything `add_user` refuses, checked on the tree and the user of that name (None:
    none): the command asks for a password only when the rest is right."""
    check_user_name(name)
    check_scope(check_role(role), site)
    if email:
        check_email(email)
    _known_site(tree, site)
    if existing is not None:
        raise DeskPulseError(f"there is a user {name!r} already (change it with "
                             "`deskpulse users set` or `users passwd`)")


def new_generation() -> int:
    """A fresh session generation: random, so that no two users nor two lives of one
    name share one (62 bits: a signed 64-bit column on both engines)."""
    return secrets.randbits(62)


# -- passwords (argon2id) -----------------------------------------------------------------


def _hasher() -> Any:
    from argon2 import PasswordHasher

    return PasswordHasher()  # argon2-cffi's defaults: RFC 9106's low-memory choice


def hash_password(password: str) -> str:
    """The stored form of a new password (checked for length first); CPU-heavy by
    design (tens of milliseconds)."""
    return fresh_hash(check_password(password))


def fresh_hash(password: str) -> str:
    """A new hash of a password accepted before (a login's rehash: the rules on length
    may have changed since, the password stays)."""
    return str(_hasher().hash(password))


def verify_password(password_hash: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    if len(password) > MAX_PASSWORD:
        return False
    try:
        return bool(_hasher().verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with other parameters than argon2-cffi's current ones
    (the login then stores a new hash of the password it just verified)."""
    return bool(_hasher().check_needs_rehash(password_hash))


# -- the Store's account methods, over an engine's queries ----------------------------------


class AccountQueries(Protocol):
    """What an engine's accounts module offers, each function inside the caller's
    transaction."""

    def users(self, conn: Any) -> list[User]: ...
    def user(self, conn: Any, name: str) -> User | None: ...
    def insert(self, conn: Any, user: User) -> bool: ...  # False: the name is taken
    def update(self, conn: Any, user: User) -> None: ...
    def delete(self, conn: Any, name: str) -> bool: ...
    def secret(self, conn: Any) -> bytes | None: ...
    def insert_secret(self, conn: Any, secret: bytes) -> None: ...  # kept if one exists


class AccountMethods(abc.ABC):
    """The account methods of base.Store, the same on every engine. An engine mixes this
    in before Store and says how it reads and how it changes accounts."""

    connection: Any
    account_queries: ClassVar[AccountQueries]

    @abc.abstractmethod
    def _account_read(self) -> contextlib.AbstractContextManager[None]:
        """Around a read: the engine's errors become StoreError sentences."""

    @abc.abstractmethod
    def _account_change(self) -> contextlib.AbstractContextManager[dict[str, Site]]:
        """Around a change: one transaction (a savepoint inside the server's writer), the
        site tree as it stands (path to site); errors as in `_account_read`."""

    def users(self) -> list[User]:
        with self._account_read():
            return self.account_queries.users(self.connection)

    def user(self, name: str) -> User | None:
        with self._account_read():
            return self.account_queries.user(self.connection, name)

    def add_user(self, name: str, role: str, *, site: str | None, email: str | None,
                 password_hash: str, now: float | None = None) -> User:
        with self._account_change() as tree:
            check_new_user(tree, self.account_queries.user(self.connection, name), name,
                           role, site, email)
            user = User(name, check_role(role), site, email or None, password_hash,
                        int(time.time() if now is None else now), new_generation())
            self.account_queries.insert(self.connection, user)
        return user

    def set_user(self, name: str, *, role: str | None = None, site: str | None = None,
                 email: str | None = None) -> User:
        """Change what is given: site "" is the whole chain (admins only), email "" none."""
        with self._account_change() as tree:
            user = self.account_queries.user(self.connection, name)
            if user is None:
                raise no_user(name)
            changed = replace(
                user, role=user.role if role is None else check_role(role),
                site=user.site if site is None else _known_site(tree, site or None),
                email=user.email if email is None else (check_email(email) if email
                                                        else None))
            check_scope(changed.role, changed.site)
            self.account_queries.update(self.connection, changed)
        return changed

    def set_password(self, name: str, password_hash: str, *, end_sessions: bool = True,
                     replacing: str | None = None) -> bool:
        """Store a new hash; end_sessions draws a new generation (every cookie made before
        dies). With `replacing`, only if the stored hash is still that one (a login's
        rehash never undoes a password change made meanwhile). Whether it was stored."""
        with self._account_change():
            user = self.account_queries.user(self.connection, name)
            if user is None:
                raise no_user(name)
            if replacing is not None and user.password_hash != replacing:
                return False
            self.account_queries.update(self.connection, replace(
                user, password_hash=password_hash,
                generation=new_generation() if end_sessions else user.generation))
        return True

    def remove_user(self, name: str) -> None:
        with self._account_change():
            if not self.account_queries.delete(self.connection, name):
                raise no_user(name)

    def copy_user(self, user: User) -> bool:
        """`deskpulse db copy`: the user as they are (hash and generation too: their
        sessions stay valid where the secret is the same), unless the name is taken
        (the destination's user stays). Whether it was copied."""
        with self._account_change() as tree:
            _known_site(tree, user.site)
            return self.account_queries.insert(self.connection, user)

    def server_secret(self) -> bytes:
        """The key that signs session cookies: drawn at the first call on this database,
        the same for every later call and every process."""
        with self._account_change():
            found = self.account_queries.secret(self.connection)
            if found is None:
                self.account_queries.insert_secret(self.connection,
                                                   secrets.token_bytes(SECRET_BYTES))
                found = self.account_queries.secret(self.connection)
        if found is None:  # not `assert`: it is compiled out
            raise DeskPulseError("the server secret could not be stored")
        return found
