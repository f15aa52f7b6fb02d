"""Accounts of the dashboard in the store (store/accounts.py), on every engine: users with
their roles and sites, refusals as one-line sentences, session generations, the server
secret drawn once, what a site change does to its users, and `deskpulse db copy`."""

from __future__ import annotations

import pytest
from test_copy import two_stores  # noqa: F401 -- the fixture of every engine pair
from test_store import store  # noqa: F401 -- the fixture of every engine

from deskpulse.errors import DeskPulseError
from deskpulse.store import accounts as rules
from deskpulse.store.base import Store
from deskpulse.store.copy import copy_store

HASH = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g"  # a stand-in: never verified here


def chain(into: Store) -> Store:
    for path in ("acme", "acme/north", "acme/north/store-1", "acme/north/store-10"):
        into.add_site(path)
    return into


def test_users_are_added_listed_and_changed(store: Store) -> None:  # noqa: F811
    chain(store)
    root = store.add_user("root", "admin", site=None, email=None, password_hash=HASH, now=100)
    north = store.add_user("north", "manager", site="acme/north", email="n@example.com",
                           password_hash=HASH)
    assert [(u.name, u.role, u.site, u.email) for u in store.users()] == [
        ("north", "manager", "acme/north", "n@example.com"), ("root", "admin", None, None)]
    assert store.user("root") == root and root.created == 100
    assert store.user("nobody") is None
    moved = store.set_user("north", site="acme/north/store-1", email="")
    assert (moved.site, moved.email, moved.role) == ("acme/north/store-1", None, "manager")
    assert moved.generation == north.generation  # only a password change ends sessions
    assert store.user("north") == moved
    assert store.set_user("north", role="admin", site="").site is None
    store.remove_user("north")
    assert [u.name for u in store.users()] == ["root"]


@pytest.mark.parametrize(("change", "problem"), [
    (lambda s: s.add_user("root", "viewer", site="acme", email=None, password_hash=HASH),
     "there is a user 'root' already"),
    (lambda s: s.add_user("x", "owner", site="acme", email=None, password_hash=HASH),
     "no role 'owner': choose admin, manager or viewer"),
    (lambda s: s.add_user("x", "manager", site=None, email=None, password_hash=HASH),
     "a manager sees one site"),
    (lambda s: s.add_user("x", "viewer", site="acme/south", email=None, password_hash=HASH),
     "no site 'acme/south'"),
    (lambda s: s.add_user("x y", "admin", site=None, email=None, password_hash=HASH),
     "user name 'x y' is not one"),
    (lambda s: s.add_user("x", "admin", site=None, email="nobody", password_hash=HASH),
     "'nobody' is not an email address"),
    (lambda s: s.set_user("root", role="viewer"), "a viewer sees one site"),
    (lambda s: s.set_user("ghost", role="viewer"), "no user 'ghost'"),
    (lambda s: s.set_user("root", site="acme/nowhere"), "no site 'acme/nowhere'"),
    (lambda s: s.remove_user("ghost"), "no user 'ghost'"),
    (lambda s: s.set_password("ghost", HASH), "no user 'ghost'"),
])
def test_refusals_are_sentences_and_change_nothing(store: Store,  # noqa: F811
                                                   change: object, problem: str) -> None:
    chain(store)
    store.add_user("root", "admin", site=None, email=None, password_hash=HASH)
    before = store.users()
    with pytest.raises(DeskPulseError, match=problem) as refused:
        change(store)  # type: ignore[operator]
    assert "\n" not in str(refused.value)
    assert store.users() == before


def test_a_password_change_draws_a_new_generation_and_a_rehash_does_not(
        store: Store) -> None:  # noqa: F811
    store.add_user("root", "admin", site=None, email=None, password_hash=HASH)
    first = store.user("root")
    assert first is not None
    assert store.set_password("root", HASH + "x")
    changed = store.user("root")
    assert changed is not None and changed.generation != first.generation
    assert changed.password_hash == HASH + "x"
    # A rehash at login keeps the sessions, and never undoes a change made meanwhile.
    assert not store.set_password("root", "stale", end_sessions=False, replacing=HASH)
    assert store.set_password("root", HASH + "y", end_sessions=False, replacing=HASH + "x")
    rehashed = store.user("root")
    assert rehashed is not None and rehashed.generation == changed.generation
    assert rehashed.password_hash == HASH + "y"
    # Removed and added again: an old session's generation never comes back.
    store.remove_user("root")
    again = store.add_user("root", "admin", site=None, email=None, password_hash=HASH)
    assert again.generation not in (first.generation, changed.generation)


def test_users_follow_their_site_and_go_with_it(store: Store) -> None:  # noqa: F811
    chain(store)
    store.add_user("ten", "viewer", site="acme/north/store-10", email=None, password_hash=HASH)
    store.add_user("north", "manager", site="acme/north", email=None, password_hash=HASH)
    store.add_site("acme/south")
    store.move_site("acme/north/store-10", "acme/south")
    store.rename_site("acme/north", "nord")
    assert {u.name: u.site for u in store.users()} == {"ten": "acme/south/store-10",
                                                       "north": "acme/nord"}
    # A manager of a removed site is removed too: never a manager of all, nor of nothing.
    store.remove_site("acme/nord", force=True)
    assert [u.name for u in store.users()] == ["ten"]


def test_the_server_secret_is_drawn_once(store: Store) -> None:  # noqa: F811
    secret = store.server_secret()
    assert len(secret) == rules.SECRET_BYTES
    assert store.server_secret() == secret


def test_a_copy_brings_the_users_but_not_the_secret(
        two_stores: tuple[Store, Store]) -> None:  # noqa: F811
    source, destination = two_stores
    chain(source)
    destination.add_site("acme")
    source.add_user("north", "manager", site="acme/north", email="n@example.com",
                    password_hash=HASH)
    source.add_user("root", "admin", site=None, email=None, password_hash=HASH)
    destination.add_user("root", "viewer", site="acme", email=None, password_hash="theirs")
    source_secret, destination_secret = source.server_secret(), destination.server_secret()
    copy_store(source, destination)
    assert destination.user("north") == source.user("north")  # hash and generation too
    root = destination.user("root")
    assert root is not None and (root.role, root.password_hash) == ("viewer", "theirs")
    assert destination.server_secret() == destination_secret != source_secret
    copy_store(source, destination)  # again: nothing changes
    assert len(destination.users()) == 2


def test_passwords_are_argon2id_with_the_librarys_parameters() -> None:
    stored = rules.hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert rules.verify_password(stored, "correct horse battery")
    assert not rules.verify_password(stored, "correct horse batterY")
    assert not rules.verify_password("not a hash", "correct horse battery")
    assert not rules.needs_rehash(stored)
    from argon2 import PasswordHasher

    assert rules.needs_rehash(PasswordHasher(time_cost=1, memory_cost=1024).hash("x" * 10))
    with pytest.raises(DeskPulseError, match=f"{rules.MIN_PASSWORD} characters at least"):
        rules.hash_password("short")
