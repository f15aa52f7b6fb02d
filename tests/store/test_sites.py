"""Sites: the rules every engine shares (store/sites.py), and SQLite's migration of the
free-text locations of a database from before sites. The operations themselves are in the
contract (test_store.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from deskpulse.errors import DeskPulseError
from deskpulse.store import open_store
from deskpulse.store import sites as rules
from deskpulse.store.base import Site
from deskpulse.store.sqlite import schema


def test_hours_read_as_written_and_become_the_kiosk_config() -> None:
    week = rules.parse_hours("mon-fri 09:00-12:00 14:00-18:00, sat 10:00-13:00, "
                             "sun 22:00-02:00")
    assert week == {**{d: ["09:00-12:00", "14:00-18:00"]
                       for d in ("mon", "tue", "wed", "thu", "fri")},
                    "sat": ["10:00-13:00"], "sun": ["22:00-02:00"]}
    assert rules.format_hours(week) == ("mon-fri 09:00-12:00 14:00-18:00, sat 10:00-13:00, "
                                        "sun 22:00-02:00")
    # One stored form: days in order, runs of equal days joined, spans sorted.
    assert rules.check_hours(" SAT 10:00-13:00,mon 14:00-18:00 09:00-12:00, tue "
                             "09:00-12:00 14:00-18:00") == (
        "mon-tue 09:00-12:00 14:00-18:00, sat 10:00-13:00")
    assert rules.check_hours("mon 00:00-24:00") == "mon 00:00-24:00"
    assert rules.check_hours("  ") == ""


@pytest.mark.parametrize(("text", "problem"), [
    ("mon-fri", "needs days and at least one span"),
    ("weekdays 09:00-18:00", "not a day"),
    ("fri-mon 09:00-18:00", "run backwards"),
    ("mon 9:00-18:00", "not a span"),
    ("mon 09:60-18:00", "not a time"),
    ("mon 24:30-18:00", "not a time"),
    ("mon 09:00-09:00", "empty"),
    ("mon 09:00-13:00 12:00-18:00", "overlap"),
    ("mon-fri 09:00-18:00, wed 19:00-20:00", "wed is given twice"),
])
def test_bad_hours_are_one_line_refusals(text: str, problem: str) -> None:
    with pytest.raises(DeskPulseError, match=problem) as refused:
        rules.check_hours(text)
    assert "\n" not in str(refused.value)


def test_a_kiosk_inherits_from_the_nearest_site_that_sets_each() -> None:
    tree = {s.path: s for s in (
        Site("acme", "organisation", "Europe/Paris", "mon-sat 09:00-19:00"),
        Site("acme/north", "region", None, "mon-fri 08:00-18:00"),
        Site("acme/north/lyon-1", "store", "Europe/Berlin", None),
        Site("acme/north/lille-1", "store"))}
    assert rules.inherited(tree, "acme/north/lyon-1") == ("Europe/Berlin",
                                                          "mon-fri 08:00-18:00")
    assert rules.inherited(tree, "acme/north/lille-1") == ("Europe/Paris",
                                                           "mon-fri 08:00-18:00")
    assert rules.inherited(tree, None) == (None, None)
    placed = {"k1": "acme/north/lyon-1", "k2": "acme/north/lille-1"}
    assert rules.kiosk_zones([("k1", None), ("k2", "Asia/Tokyo"), ("k3", None)], placed,
                             tree) == {"k1": "Europe/Berlin", "k2": "Asia/Tokyo", "k3": None}


def test_paths_and_the_level_below() -> None:
    assert rules.ancestors("a/b/c") == ["a/b/c", "a/b", "a"]
    assert rules.child_towards("a", "a/b/c") == "a/b"
    assert rules.child_towards(None, "a/b/c") == "a"
    assert rules.is_under("a/b", "a") and not rules.is_under("ab", "a")
    assert rules.moved_path("a/b/c", "x") == "x/c"
    assert rules.renamed_path("a/b", "z") == "a/z" and rules.renamed_path("a", "z") == "z"


OLD_DEVICES = [("a", "Lyon", None), ("b", " Lyon ", "Asia/Tokyo"), ("c", "Paris/Nord", None),
               ("d", None, None), ("e", "  ", None)]


def _sqlite_version_5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      request: pytest.FixtureRequest) -> str:
    path = tmp_path / "v5.db"
    old = sqlite3.connect(path, isolation_level=None)
    for statements in schema.MIGRATIONS[:5]:
        for statement in statements:
            old.execute(statement)
    old.execute("PRAGMA user_version = 5")
    old.executemany("INSERT INTO devices (device_id, location, time_zone, first_seen) "
                    "VALUES (?, ?, ?, 0)", OLD_DEVICES)
    old.close()
    return str(path)


def _postgres_version_5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        request: pytest.FixtureRequest) -> str:
    from deskpulse.store.postgres import PostgresStore
    from deskpulse.store.postgres import schema as pg_schema

    url = str(request.getfixturevalue("pg_url"))
    with monkeypatch.context() as before_sites:
        before_sites.setattr(pg_schema, "MIGRATIONS", pg_schema.MIGRATIONS[:1])
        with PostgresStore.open(url) as old:
            assert old.schema_version() == 5
            with old.connection.cursor() as cursor:
                cursor.executemany("INSERT INTO devices (device_id, location, time_zone, "
                                   "first_seen) VALUES (%s, %s, %s, 0)", OLD_DEVICES)
    return url


@pytest.mark.parametrize("version_5", [_sqlite_version_5, _postgres_version_5],
                         ids=["sqlite", "postgresql"])
def test_migration_6_turns_locations_into_stores(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
        version_5: Callable[..., str]) -> None:
    with open_store(version_5(tmp_path, monkeypatch, request)) as store:
        assert store.schema_version() == 6
        assert store.sites() == [Site("default", "organisation"),
                                 Site("default/Lyon", "store"),
                                 Site("default/Paris-Nord", "store")]
        assert store.kiosk_sites() == {"a": "default/Lyon", "b": "default/Lyon",
                                       "c": "default/Paris-Nord"}
        # The free text stays as it was: --location still selects by it.
        assert [(f.device_id, f.location) for f in store.device_facts()][:3] == [
            ("a", "Lyon"), ("b", " Lyon "), ("c", "Paris/Nord")]


def test_migration_6_of_a_database_without_locations_adds_no_site(tmp_path: Path) -> None:
    with open_store(tmp_path / "new.db") as store:
        store.describe_device("a", create=True, now=0)
        assert store.sites() == [] and store.kiosk_sites() == {}
