"""The store's contract: every operation of store.base.Store, through the interface only.

Each test runs against every engine in ENGINES (SQLite, and PostgreSQL on a throwaway
cluster: tests/pg_cluster.py); a new engine joins the list and must pass the same tests
unchanged. No SQL here: engine-specific
checks (the schema, migrations, the files on disk) live beside this file."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import another_writer_holding
from deskpulse.errors import DeskPulseError
from deskpulse.protocol.batch import Anchor, Response
from deskpulse.protocol.signing import Nonce
from deskpulse.store import open_store
from deskpulse.store.base import (
    CLOCK_TOLERANCE_S,
    EARLIEST,
    LATEST,
    ConflictError,
    DeviceFacts,
    PushCheck,
    PushRefused,
    Site,
    SiteRemoval,
    Store,
    StoreError,
)

T0 = 1_780_000_000  # 2026-05-28T20:26:40Z
STATUS = {"board": "esp32-devkitc-ssd1680", "firmware": "test", "log": {"dropped": 0}}
KEY = bytes(range(32))


def sqlite_store(request: pytest.FixtureRequest, where: Path) -> Store:
    return open_store(where / "store.db")


def postgres_store(request: pytest.FixtureRequest, where: Path) -> Store:
    return open_store(request.getfixturevalue("pg_url"))


ENGINES: dict[str, Callable[[pytest.FixtureRequest, Path], Store]] = {
    "sqlite": sqlite_store, "postgresql": postgres_store}


@pytest.fixture(params=sorted(ENGINES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = ENGINES[request.param](request, tmp_path)
    try:
        yield opened
    finally:
        opened.close()


def answer(seq: int, *, rating: int = 4, wall: int | None = None, boot: int = 1,
           uptime: int | None = None, rapid: bool = False, told: str = "yes") -> Response:
    return Response(seq=seq, rating=rating, scale=4, told_next=told,  # type: ignore[arg-type]
                    latency_s=1.5, rapid=rapid, closed=False, boot=boot,
                    uptime_s=uptime if uptime is not None else 100 * seq, wall=wall,
                    config_version=1)


# -- storing batches ----------------------------------------------------------------------


def test_a_batch_is_stored_once(store: Store) -> None:
    batch = [answer(1, wall=T0 + 100), answer(2, wall=T0 + 200)]
    assert store.store_batch("desk-1", batch, [], STATUS, "serial", now=T0) == (2, 0)
    assert store.store_batch("desk-1", batch, [], STATUS, "serial", now=T0 + 1) == (0, 2)
    assert [r["seq"] for r in store.responses_of("desk-1")] == [1, 2]
    assert store.last_seq("desk-1") == 2 and store.last_seq("nobody") is None
    assert store.response_counts() == {"desk-1": 2}
    record = store.latest_sync("desk-1")
    assert record is not None and (record.new, record.duplicates) == (0, 2)
    assert record.transport == "serial" and record.status == STATUS


def test_a_different_record_under_a_stored_seq_is_refused_whole(store: Store) -> None:
    store.store_batch("desk-1", [answer(1, rating=4)], [], STATUS, "serial")
    with pytest.raises(ConflictError):
        store.store_batch("desk-1", [answer(2), answer(1, rating=1)], [], STATUS, "serial")
    assert [r["seq"] for r in store.responses_of("desk-1")] == [1]


def test_a_large_batch_is_stored_whole_or_not_at_all(store: Store) -> None:
    # 300 responses: more than one multi-row statement on SQLite (store/sqlite/bulk.py).
    bad = [answer(seq, wall=T0 + seq, rating=9 if seq == 290 else 4) for seq in range(1, 301)]
    with pytest.raises(DeskPulseError) as refused:
        store.store_batch("desk-1", bad, [], STATUS, "serial", now=T0)
    assert "desk-1" in str(refused.value) and "\n" not in str(refused.value)
    assert store.responses_of("desk-1") == [] and store.response_counts() == {}
    good = [answer(seq, wall=T0 + seq, rating=1 + seq % 4) for seq in range(1, 301)]
    assert store.store_batch("desk-1", good, [], STATUS, "serial", now=T0) == (300, 0)
    stored = [(r["seq"], r["rating"], r["wall"]) for r in store.responses_of("desk-1")]
    assert stored == [(r.seq, r.rating, r.wall) for r in good]


def test_time_comes_from_the_boot_anchor(store: Store) -> None:
    # Stamped 10 minutes wrong by the device; the host's anchor of the same boot places it.
    stamped = answer(1, wall=T0 + 600, uptime=100)
    store.store_batch("desk-1", [stamped, answer(2, uptime=200)],
                      [Anchor(1, 50, T0 - 50, 1)], STATUS, "serial")
    walls = [(r["seq"], r["wall"], r["device_wall"]) for r in store.responses_of("desk-1")]
    assert walls == [(1, T0, T0 + 600), (2, T0 + 100, None)]
    assert store.count_time_unknown("desk-1") == 0
    store.store_batch("desk-1", [answer(3, boot=2, uptime=5)], [], STATUS, "serial")
    assert store.count_time_unknown("desk-1") == 1 and store.count_time_unknown() == 1


def test_a_push_check_guards_the_batch(store: Store) -> None:
    store.set_key("desk-1", KEY, replace=False, facts=DeviceFacts("desk-1", None, None, None))
    check = PushCheck(KEY, Nonce(1, 5))
    assert store.store_batch("desk-1", [answer(1)], [], STATUS, "wifi", push=check) == (1, 0)
    with pytest.raises(PushRefused) as replay:
        store.store_batch("desk-1", [answer(2)], [], STATUS, "wifi", push=check)
    assert replay.value.problem == "replayed"
    with pytest.raises(PushRefused) as wrong:
        store.store_batch("desk-1", [answer(2)], [], STATUS, "wifi",
                          push=PushCheck(bytes(32), Nonce(1, 6)))
    assert wrong.value.problem == "key_replaced"
    with pytest.raises(PushRefused) as unknown:
        store.store_batch("desk-2", [answer(1)], [], STATUS, "wifi",
                          push=PushCheck(KEY, Nonce(1, 1)))
    assert unknown.value.problem == "unknown_device"
    assert store.response_counts() == {"desk-1": 1}


def test_a_group_commits_its_parts_and_undoes_a_failed_one_alone(store: Store) -> None:
    with store.group_commit():
        with store.part():
            store.store_batch("desk-1", [answer(1)], [], STATUS, "wifi")
        with pytest.raises(ConflictError), store.part():
            store.store_batch("desk-1", [answer(2), answer(1, rating=1)], [], STATUS, "wifi")
        assert store.group_intact()
        with store.part():
            store.store_batch("desk-2", [answer(1)], [], STATUS, "wifi")
    assert store.response_counts() == {"desk-1": 1, "desk-2": 1}


# -- devices and keys ---------------------------------------------------------------------


def test_keys_are_set_replaced_and_removed(store: Store) -> None:
    facts = DeviceFacts("desk-1", "Front desk", "Lyon", "Europe/Paris")
    assert store.set_key("desk-1", KEY, replace=False, facts=facts, now=T0) is False
    assert store.registered_ids() == {"desk-1"} and store.device_key("desk-1") == KEY
    with pytest.raises(DeskPulseError, match="already registered"):
        store.set_key("desk-1", bytes(32), replace=False, facts=facts)
    assert store.set_key("desk-1", bytes(32), replace=True) is True
    assert store.device_key("desk-1") == bytes(32)
    store.remove_key("desk-1")
    assert store.registered_ids() == set() and store.device_key("desk-1") is None
    with pytest.raises(DeskPulseError, match="not registered"):
        store.remove_key("desk-1")
    with pytest.raises(DeskPulseError, match="not registered"):
        store.set_key("desk-1", KEY, replace=True)  # a rotation needs a registration
    assert store.device_facts() == [facts]  # its description outlives its key


def test_describing_a_device(store: Store) -> None:
    with pytest.raises(DeskPulseError, match="no device"):
        store.describe_device("desk-1", name="Front")
    store.describe_device("desk-1", name="Front", create=True, now=T0)
    store.describe_device("desk-1", location="Lyon")
    store.describe_device("desk-1", name="")
    assert store.device_facts() == [DeviceFacts("desk-1", None, "Lyon", None)]
    (health,) = store.devices()
    assert (health.device_id, health.location, health.responses, health.syncs) == (
        "desk-1", "Lyon", 0, 0)


# -- what reports read --------------------------------------------------------------------


@pytest.fixture
def filled(store: Store) -> Store:
    store.describe_device("desk-1", time_zone="UTC", create=True)
    store.store_batch("desk-1", [
        answer(1, rating=1, wall=T0 + 100, uptime=100),
        answer(2, rating=2, wall=T0 + 200, uptime=200, rapid=True),
        answer(3, rating=4, wall=None, boot=2, uptime=10),
        answer(4, rating=4, wall=T0 + 2 * CLOCK_TOLERANCE_S + 400, uptime=400),
    ], [Anchor(1, 0, T0, 1)], STATUS, "serial")
    return store


def test_rollups_hold_every_response(filled: Store) -> None:
    filled.refresh_rollups(["desk-1"])
    months = filled.month_rollups(["desk-1"], 0, LATEST)
    assert {row[0] for row in months} == {"desk-1"}
    assert {row[1] for row in months} == {0, 2026 * 12 + 4}  # time unknown, May 2026
    days = filled.day_rollups(["desk-1"], EARLIEST, LATEST)
    assert [row[1] for row in days] == [T0 // 86400] * len(days)
    assert filled.month_rollups(["desk-2"], 0, LATEST) == []


def test_reads_for_the_tally_and_the_export(filled: Store) -> None:
    with filled.snapshot():
        timed = sorted(filled.timed_responses("desk-1", T0, T0 + 300))
    assert [(row[1], row[2], row[3]) for row in timed] == [
        (T0 + 100, T0 + 100, 1), (T0 + 200, T0 + 200, 2)]
    # Record 3 (boot 2) has no time; boot 1 ran until uptime 400 before it, and the
    # sync that brought it is its latest moment: far from one day, it stays unknown.
    groups = sorted(filled.response_groups(T0, T0 + 150), key=lambda g: g[1] or 0)
    assert [(g[1], g[3], g[-1]) for g in groups] == [(T0 + 100, 1, 1), (T0 + 410, 4, 1)]
    assert groups[1][2] is not None and groups[1][2] > T0 + 86400
    exported = list(filled.export_rows("desk-1", None, None, include_flagged=True))
    assert [row[-1] for row in exported] == [1, 2, 4, 3]  # by time, an interval by its start
    unflagged = list(filled.export_rows("desk-1", T0, LATEST, include_flagged=False))
    # Record 3's interval lies inside the range too (the CSV then keeps only those placed
    # in a day: tests/reports).
    assert [row[-1] for row in unflagged] == [1, 4, 3]


def test_clock_corrections_and_negative_marks(filled: Store) -> None:
    # Record 4 was stamped T0 + 640 but its anchor places it at T0 + 400.
    corrected = filled.clock_corrected(["desk-1"], EARLIEST, LATEST, include_flagged=True)
    assert corrected == [("desk-1", 1, 2 * CLOCK_TOLERANCE_S)]
    assert [row[:3] for row in filled.anchored_stamps()] == [
        ("desk-1", T0 + 100, T0 + 100), ("desk-1", T0 + 200, T0 + 200),
        ("desk-1", T0 + 400, T0 + 640)]
    marks = list(filled.negative_marks(since=None, until=None, device_id=None, location=None,
                                       include_flagged=False, negative_ratings=(1, 2)))
    assert marks == [("desk-1", T0 + 100, 1), ("desk-1", T0 + 400, 0)]


def test_negative_marks_of_many_kiosks_are_each_kiosks_own(store: Store) -> None:
    """One read of a list of kiosks gives exactly the per-kiosk reads one after the other,
    in device order: whatever order or repetition the list has, kiosks without responses
    or unknown, flagged and untimed rows, several at one second, bounds at whole seconds
    and between them."""
    rng = random.Random(3)
    for device_id in ("k-b", "k-a", "k-c", "k-empty", "k-other"):
        store.describe_device(device_id, time_zone="UTC", create=True)
        if device_id == "k-empty":
            continue
        walls = sorted([T0 + 600, T0 + 1800] +  # on the bounds below
                       [T0 + rng.randrange(0, 3600, 60) for _ in range(40)])
        store.store_batch(device_id, [
            answer(seq, rating=rng.randint(1, 4), wall=wall if seq % 9 else None,
                   rapid=seq % 7 == 0, boot=1 if seq % 9 else 2, uptime=seq)
            for seq, wall in enumerate(walls, start=1)], [], STATUS, "serial")
    asked = ["k-c", "k-empty", "k-a", "nobody", "k-b", "k-a"]

    def read(**choice: Any) -> list[tuple[str, int, int]]:
        return list(store.negative_marks(negative_ratings=(1, 2), location=None, **choice))

    one_second = T0 + 1200
    for since, until in ((None, None), (T0 + 600, T0 + 1800), (T0 + 599.5, T0 + 1800.5),
                         (one_second, one_second + 1), (T0 + 7200, None)):
        for flagged in (False, True):
            bounds = {"since": since, "until": until, "include_flagged": flagged}
            each = [mark for device_id in sorted(set(asked))
                    for mark in read(device_id=device_id, **bounds)]
            assert read(device_id=None, device_ids=asked, **bounds) == each, bounds
            # The other reads keep their meaning beside it.
            assert read(device_id="k-a", device_ids=asked, **bounds) == read(
                device_id="k-a", **bounds)
            assert read(device_id="k-other", device_ids=asked, **bounds) == []
    # The data exercised what it should: both kinds of marks, a flag, a shared second.
    every = read(device_id=None, device_ids=asked, since=None, until=None,
                 include_flagged=True)
    assert {m[2] for m in every} == {0, 1}
    assert len(every) > len(read(device_id=None, device_ids=asked, since=None, until=None,
                                 include_flagged=False))
    assert len(set(every)) < len(every)
    assert {T0 + 600, T0 + 1800} <= {m[1] for m in every}
    assert {m[0] for m in every} == {"k-a", "k-b", "k-c"}
    assert read(device_id=None, device_ids=[], since=None, until=None,
                include_flagged=True) == []


# -- sites --------------------------------------------------------------------------------


@pytest.fixture
def chain(store: Store) -> Store:
    """acme > north > lyon-1 (desk-1, desk-2) and paris-1 (desk-3); acme > outlet (a store
    without a region); desk-4 in none."""
    store.add_site("acme")
    store.add_site("acme/north")
    for path in ("acme/north/lyon-1", "acme/north/paris-1"):
        store.add_site(path)
    store.add_site("acme/outlet", "store")
    for device_id, path in (("desk-1", "acme/north/lyon-1"), ("desk-2", "acme/north/lyon-1"),
                            ("desk-3", "acme/north/paris-1"), ("desk-4", None)):
        store.describe_device(device_id, create=True, now=T0)
        store.assign_kiosk(device_id, path)
    return store


def test_sites_form_a_tree_whose_kinds_nest(chain: Store) -> None:
    assert [(s.path, s.kind) for s in chain.sites()] == [
        ("acme", "organisation"), ("acme/north", "region"), ("acme/north/lyon-1", "store"),
        ("acme/north/paris-1", "store"), ("acme/outlet", "store")]
    refusals = [
        (("acme",), "exists already"),
        (("north", "region"), "stands in an organisation"),
        (("acme/south/nice-1",), "no site 'acme/south'"),
        (("acme/north/lyon-1/till",), "cannot stand in|stands in"),
        (("acme/east", "kiosk"), "not a kind of site"),
        (("acme//east",), "empty part"),
        (("acme/ east",), "space"),
        (("acme/north/west", "organisation"), "at the top"),
    ]
    for args, problem in refusals:
        with pytest.raises(DeskPulseError, match=problem):
            chain.add_site(*args)
    assert len(chain.sites()) == 5  # nothing half-added


def test_a_kiosk_is_in_one_store(chain: Store) -> None:
    assert chain.device_site_path("desk-1") == "acme/north/lyon-1"
    assert chain.device_site_path("desk-4") is None
    assert chain.device_site_path("nobody") is None
    assert chain.kiosk_sites() == {"desk-1": "acme/north/lyon-1", "desk-2": "acme/north/lyon-1",
                                   "desk-3": "acme/north/paris-1"}
    with pytest.raises(DeskPulseError, match="is a region"):
        chain.assign_kiosk("desk-4", "acme/north")
    with pytest.raises(DeskPulseError, match="no site"):
        chain.assign_kiosk("desk-4", "acme/south/x")
    with pytest.raises(DeskPulseError, match="no device"):
        chain.assign_kiosk("desk-9", "acme/outlet")
    chain.assign_kiosk("desk-2", "acme/outlet")
    chain.assign_kiosk("desk-3", None)
    assert chain.kiosk_sites() == {"desk-1": "acme/north/lyon-1", "desk-2": "acme/outlet"}


def test_renaming_and_moving_take_sites_and_kiosks_along(chain: Store) -> None:
    assert chain.rename_site("acme/north", "nord") == "acme/nord"
    assert chain.device_site_path("desk-3") == "acme/nord/paris-1"
    chain.add_site("acme/south")
    assert chain.move_site("acme/nord/paris-1", "acme/south") == "acme/south/paris-1"
    assert chain.device_site_path("desk-3") == "acme/south/paris-1"
    assert chain.device_site_path("desk-1") == "acme/nord/lyon-1"
    chain.add_site("globex")
    assert chain.move_site("acme/nord", "globex") == "globex/nord"
    assert chain.device_site_path("desk-1") == "globex/nord/lyon-1"
    for args, problem in ((("globex/nord", "globex/nord/lyon-1"), "stands in|inside it"),
                          (("globex/nord", "globex/nord"), "inside it"),
                          (("acme/south/paris-1", "globex/nord/lyon-1"), "stands in"),
                          (("acme", "globex"), "at the top"),
                          (("acme/south", "nowhere"), "no site 'nowhere'")):
        with pytest.raises(DeskPulseError, match=problem):
            chain.move_site(*args)
    with pytest.raises(DeskPulseError, match="exists already"):
        chain.rename_site("acme/south", "outlet")
    with pytest.raises(DeskPulseError, match="no '/'"):
        chain.rename_site("acme/south", "a/b")
    assert [s.path for s in chain.sites()] == [
        "acme", "acme/outlet", "acme/south", "acme/south/paris-1", "globex", "globex/nord",
        "globex/nord/lyon-1"]


def test_a_site_that_holds_anything_goes_only_by_force(chain: Store) -> None:
    with pytest.raises(DeskPulseError, match="holds 2 sites and 3 kiosks.*--force"):
        chain.remove_site("acme/north")
    with pytest.raises(DeskPulseError, match="holds 2 kiosks"):
        chain.remove_site("acme/north/lyon-1")
    assert chain.remove_site("acme/outlet") == SiteRemoval(["acme/outlet"], [])
    assert chain.remove_site("acme/north", force=True) == SiteRemoval(
        ["acme/north", "acme/north/lyon-1", "acme/north/paris-1"],
        ["desk-1", "desk-2", "desk-3"])
    assert chain.kiosk_sites() == {}
    assert [s.path for s in chain.sites()] == ["acme"]
    assert [f.device_id for f in chain.device_facts()] == ["desk-1", "desk-2", "desk-3",
                                                           "desk-4"]
    with pytest.raises(DeskPulseError, match="no site"):
        chain.remove_site("acme/north")


def test_zones_and_hours_are_checked_set_and_cleared(chain: Store) -> None:
    site = chain.set_site("acme/north", time_zone="Europe/Paris",
                          opening_hours="Mon-Fri 09:00-12:00 14:00-18:00,sat 10:00-13:00")
    assert site == Site("acme/north", "region", "Europe/Paris",
                        "mon-fri 09:00-12:00 14:00-18:00, sat 10:00-13:00")
    for kwargs, problem in (({"time_zone": "Mars/Olympus"}, "unknown time zone"),
                            ({"opening_hours": "mon 09:00-25:00"}, "not a time"),
                            ({"opening_hours": "mon-fri 09:00-18:00, fri 19:00-20:00"},
                             "fri is given twice")):
        with pytest.raises(DeskPulseError, match=problem):
            chain.set_site("acme/north", **kwargs)  # type: ignore[arg-type]
    assert chain.set_site("acme/north", opening_hours="") == Site(
        "acme/north", "region", "Europe/Paris", None)
    with pytest.raises(DeskPulseError, match="no site"):
        chain.set_site("acme/west", time_zone="UTC")
    added = chain.add_site("acme/west", time_zone="Asia/Tokyo", opening_hours="sun 10:00-12:00")
    assert added in chain.sites() and added.opening_hours == "sun 10:00-12:00"


def test_rollups_follow_the_zone_a_kiosk_inherits(chain: Store,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    chain.store_batch("desk-1", [answer(1, wall=T0 + 100)], [], STATUS, "serial")  # 20:28Z
    utc_day = (T0 + 100) // 86400

    def day() -> int:
        chain.refresh_rollups(["desk-1"])
        (row,) = chain.day_rollups(["desk-1"], EARLIEST, LATEST)
        return row[1]

    assert day() == utc_day  # no zone anywhere: the host's
    chain.set_site("acme", time_zone="Asia/Tokyo")  # 05:28 the next day
    assert day() == utc_day + 1
    chain.set_site("acme/north", time_zone="UTC")  # the nearest zone wins
    assert day() == utc_day
    chain.describe_device("desk-1", time_zone="Asia/Tokyo")  # the kiosk's own wins
    assert day() == utc_day + 1
    chain.describe_device("desk-1", time_zone="")
    chain.move_site("acme/north/lyon-1", "acme")  # now below Tokyo only
    assert day() == utc_day + 1
    chain.remove_site("acme/lyon-1", force=True)
    assert day() == utc_day
    chain.assign_kiosk("desk-1", "acme/outlet")  # assigned again, below Tokyo
    assert day() == utc_day + 1
    chain.rename_site("acme", "globex")  # a rename changes no zone
    assert day() == utc_day + 1


# -- failures -----------------------------------------------------------------------------


def test_a_missing_store_is_not_created_for_a_reader(tmp_path: Path) -> None:
    with pytest.raises(DeskPulseError, match="no database"):
        open_store(tmp_path / "none.db", create=False)
    assert not (tmp_path / "none.db").exists()


def test_a_store_held_by_another_writer_is_a_busy_store_error(tmp_path: Path) -> None:
    open_store(tmp_path / "store.db").close()
    waiter = open_store(tmp_path / "store.db", busy_timeout_ms=50)
    with another_writer_holding(tmp_path / "store.db", lambda holder: holder.store_batch(
            "desk-1", [answer(1)], [], STATUS, "serial")):
        with pytest.raises(StoreError) as held:
            waiter.store_batch("desk-2", [answer(1)], [], STATUS, "serial")
        assert held.value.busy and "another program holds" in str(held.value)
    waiter.close()
    with open_store(tmp_path / "store.db") as after:
        assert after.response_counts() == {"desk-1": 1}
