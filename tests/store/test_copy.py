"""`deskpulse db copy` (store/copy.py): exact, resumable, merging, refusing what it cannot
merge; through the Store interface, for every pair of engines in ENGINES."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_store import ENGINES, KEY, STATUS, T0

from deskpulse.errors import DeskPulseError
from deskpulse.protocol.batch import Anchor, Response
from deskpulse.protocol.signing import Nonce
from deskpulse.reports.figures import build_report, build_report_raw
from deskpulse.store import open_store
from deskpulse.store.base import DeviceFacts, PushCheck, Store
from deskpulse.store.copy import COPY_COLUMNS, COPY_TABLES, copy_store
from deskpulse.store.desired import HISTORY

PAIRS = [(a, b) for a in sorted(ENGINES) for b in sorted(ENGINES)]


def new_store(engine: str, request: pytest.FixtureRequest, where: Path) -> Store:
    """A new empty store; on PostgreSQL a database of its own (a pair may be on one
    cluster)."""
    where.mkdir(exist_ok=True)
    if engine == "postgresql":
        return open_store(request.getfixturevalue("pg_cluster").new_database())
    return ENGINES[engine](request, where)


@pytest.fixture(params=PAIRS, ids=["-to-".join(pair) for pair in PAIRS])
def two_stores(request: pytest.FixtureRequest, tmp_path: Path
               ) -> Iterator[tuple[Store, Store]]:
    source_engine, destination_engine = request.param
    source = new_store(source_engine, request, tmp_path / "a")
    destination = new_store(destination_engine, request, tmp_path / "b")
    try:
        yield source, destination
    finally:
        source.close()
        destination.close()


def response(seq: int, *, boot: int = 1, uptime: int | None = None, wall: int | None = None,
             rating: int = 4, told: str = "yes") -> Response:
    return Response(seq=seq, rating=rating, scale=5, told_next=told,  # type: ignore[arg-type]
                    latency_s=1.2 + seq % 7, rapid=seq % 11 == 0, closed=seq % 13 == 0,
                    boot=boot, uptime_s=uptime if uptime is not None else 60 * seq,
                    wall=wall, config_version=1 + seq % 3)


def busy_kiosk(store: Store, device_id: str = "desk-a", *, first: int = 1) -> None:
    """A registered kiosk's life: pushes with nonces, a boot placed by its anchor, a clock
    correction, responses without a time between anchored boots (intervals), a resent
    batch, and two identical empty pushes in the same second."""
    store.set_key(device_id, KEY, replace=False, now=T0 - 10,
                  facts=DeviceFacts(device_id, "Front", "Lyon", "Europe/Paris"))
    nonce = iter(range(1, 100))

    def push(batch: list[Response], anchors: list[Anchor], at: int) -> None:
        store.store_batch(device_id, batch, anchors, {**STATUS, "boot": batch[0].boot
                                                      if batch else 0}, "wifi", now=at,
                          push=PushCheck(KEY, Nonce(3, next(nonce))))

    s = first
    push([response(s + i, wall=T0 + 60 * i) for i in range(20)], [], T0 + 1300)
    push([response(s + 20 + i) for i in range(10)], [Anchor(1, 30, T0 - 10, 1)], T0 + 2000)
    push([response(s + 30 + i, boot=2, uptime=100 + i) for i in range(5)], [], T0 + 3000)
    push([response(s + 35 + i, boot=3, uptime=10 + i) for i in range(5)],
         [Anchor(3, 5, T0 + 9000, 2)], T0 + 9100)
    push([response(s + 40 + i, boot=3, uptime=40 + i) for i in range(5)],
         [Anchor(3, 30, T0 + 9600, 2)], T0 + 9700)  # a clock correction: boot 3 moves
    push([response(s + 40 + i, boot=3, uptime=40 + i) for i in range(5)], [], T0 + 9800)
    push([], [], T0 + 9900)
    push([], [], T0 + 9900)


def serial_kiosk(store: Store, device_id: str, count: int, *, first: int = 1) -> None:
    """A USB kiosk in the host's zone, stamping its own time, synced in batches of 97."""
    for start in range(first, first + count, 97):
        batch = [response(seq, wall=T0 + 30 * seq, rating=1 + seq % 5,
                          told=("yes", "no", "no_answer")[seq % 3])
                 for seq in range(start, min(start + 97, first + count))]
        store.store_batch(device_id, batch, [], STATUS, "serial", now=T0 + 40 * start)


def everything(store: Store) -> dict[str, Any]:
    """Every row of every device, sync ids replaced by the sync's place in its device's
    order (the ids differ between two stores), and the reports."""
    out: dict[str, Any] = {}
    for facts in store.device_facts():
        device = facts.device_id
        tables = {table: store.copy_rows(table, device, None, 1 << 30) for table in COPY_TABLES}
        place = {row[0]: i for i, row in enumerate(tables["syncs"])}
        tables["syncs"] = [row[1:] for row in tables["syncs"]]
        at = COPY_COLUMNS["responses"].index("sync_id")
        tables["responses"] = [(*row[:at], place[row[at]], *row[at + 1:])
                               for row in tables["responses"]]
        tables["desired_configs"] = [row[1:] for row in tables["desired_configs"]]
        out[device] = tables
        out[device, "desired"] = (store.desired_config(device),
                                  store.desired_versions(device))
    out["layers"] = store.config_layers()
    out["sites"] = store.sites()
    out["kiosk sites"] = store.kiosk_sites()
    out["report"] = build_report(store)
    out["reference report"] = build_report_raw(store)
    return out


def managed_over_the_air(store: Store) -> None:
    """Layers and desired-config histories with versions above 1: desk-c's store's
    template (changed twice), desk-a's overrides, then desk-a no longer managed."""
    for question, now in (("Ok?", T0), ("Good?", T0 + 60)):
        store.save_config({"desk-c": {"texts": {"en": {"question": question}}}},
                          layer=("site", "acme/east", {"texts": {"en": {"question": question}}}),
                          now=now)
    store.save_config({"desk-a": {"idle_timeout_s": 30}},
                      layer=("device", "desk-a", {"idle_timeout_s": 30}), now=T0 + 120)
    store.save_config({"desk-a": None}, layer=("device", "desk-a", None), now=T0 + 180)
    store.save_config({}, layer=("device", "desk-b", {"idle_timeout_s": 45}), now=T0 + 240)


def test_a_copy_is_exact_and_its_reports_equal_the_sources(
        two_stores: tuple[Store, Store]) -> None:
    source, destination = two_stores
    busy_kiosk(source)
    serial_kiosk(source, "desk-b", 300)
    serial_kiosk(source, "desk-c", 30)
    source.describe_device("desk-b", time_zone="America/New_York")
    # desk-c's zone comes from its store's region: the copy must keep it there.
    source.add_site("acme", "organisation", opening_hours="mon-sat 08:00-19:00")
    source.add_site("acme/east", "region", time_zone="Asia/Tokyo")
    source.add_site("acme/east/ginza", "store")
    source.assign_kiosk("desk-c", "acme/east/ginza")
    managed_over_the_air(source)
    before = everything(source)
    summary = copy_store(source, destination, chunk_rows=7)
    assert (summary.devices, summary.merged, summary.responses) == (3, 0, 375)
    assert before["kiosk sites"] == {"desk-c": "acme/east/ginza"}
    copied = everything(destination)
    assert copied == before
    # A kiosk is told the version it was told before the move up, no more, no less.
    assert destination.desired_versions() == source.desired_versions() == {"desk-c": 2}
    assert len(copied["desk-a"]["desired_configs"]) == 2
    assert copied["report"] == copied["reference report"]
    # Replay protection continues: the last nonce accepted in the source is refused here.
    with pytest.raises(DeskPulseError, match="replayed"):
        destination.store_batch("desk-a", [], [], STATUS, "wifi",
                                push=PushCheck(KEY, Nonce(3, 8)))
    assert everything(source) == before  # the source is only read


def test_copying_again_changes_nothing(two_stores: tuple[Store, Store]) -> None:
    source, destination = two_stores
    busy_kiosk(source)
    copy_store(source, destination, chunk_rows=5)
    once = everything(destination)
    summary = copy_store(source, destination, chunk_rows=3)
    assert summary.merged == 1  # the one device copied is in both now, and agrees
    assert everything(destination) == once


def test_a_destination_keeps_its_own_kiosks(two_stores: tuple[Store, Store]) -> None:
    source, destination = two_stores
    busy_kiosk(source)
    serial_kiosk(destination, "desk-z", 150)
    theirs = everything(destination)["desk-z"]
    copy_store(source, destination)
    merged = everything(destination)
    assert merged["desk-z"] == theirs
    assert merged["desk-a"] == everything(source)["desk-a"]
    assert merged["report"] == merged["reference report"]
    assert destination.response_counts() == {"desk-a": 45, "desk-z": 150}


def test_a_kiosk_that_synced_to_both_is_merged_as_if_one_store_had_it_all(
        two_stores: tuple[Store, Store], request: pytest.FixtureRequest,
        tmp_path: Path) -> None:
    """The store's PC kept the first 40 responses (boot 1 had no anchor there); the chain's
    server got 30..69 with boot 1's anchor, which places the store's records too."""
    source, destination = two_stores
    both = new_store("sqlite", request, tmp_path / "both")
    early = [response(seq, boot=1, uptime=10 * seq) for seq in range(1, 41)]
    late = [response(seq, boot=1, uptime=10 * seq) for seq in range(30, 70)]
    anchor = Anchor(1, 700, T0, 1)
    for store, batches in ((source, [(early, [])]), (destination, [(late, [anchor])]),
                           (both, [(early, []), (late, [anchor])])):
        for at, (batch, anchors) in enumerate(batches):
            store.store_batch("desk-m", batch, anchors, STATUS, "serial", now=T0 + at)
    copy_store(source, destination)
    merged, reference = everything(destination), everything(both)
    rows = [row[:COPY_COLUMNS["responses"].index("sync_id")]
            for row in merged["desk-m"]["responses"]]
    assert rows == [row[:len(rows[0])] for row in reference["desk-m"]["responses"]]
    assert merged["report"] == reference["report"] == merged["reference report"]
    assert destination.count_time_unknown("desk-m") == 0
    both.close()


def test_a_merged_key_keeps_the_higher_nonce(two_stores: tuple[Store, Store]) -> None:
    source, destination = two_stores
    for store, count in ((source, 9), (destination, 4)):
        store.set_key("desk-k", KEY, replace=False, facts=DeviceFacts("desk-k", None, None,
                                                                        None))
        store.store_batch("desk-k", [], [], STATUS, "wifi",
                          push=PushCheck(KEY, Nonce(1, count)))
    copy_store(source, destination)
    with pytest.raises(DeskPulseError, match="replayed"):
        destination.store_batch("desk-k", [], [], STATUS, "wifi",
                                push=PushCheck(KEY, Nonce(1, 9)))


def test_the_site_trees_join_and_the_destinations_settings_stay(
        two_stores: tuple[Store, Store]) -> None:
    source, destination = two_stores
    for store, zone in ((source, "Europe/Paris"), (destination, "Europe/Berlin")):
        store.add_site("acme", "organisation", time_zone=zone)
    source.add_site("acme/lyon", "store")
    serial_kiosk(source, "desk-l", 20)
    source.assign_kiosk("desk-l", "acme/lyon")
    destination.add_site("acme/berlin", "store")
    serial_kiosk(destination, "desk-b", 20)
    destination.assign_kiosk("desk-b", "acme/berlin")
    copy_store(source, destination)
    assert [(s.path, s.time_zone) for s in destination.sites()] == [
        ("acme", "Europe/Berlin"), ("acme/berlin", None), ("acme/lyon", None)]
    assert destination.kiosk_sites() == {"desk-b": "acme/berlin", "desk-l": "acme/lyon"}
    merged = everything(destination)
    assert merged["report"] == merged["reference report"]  # desk-l counted in Berlin's zone


def test_a_site_of_another_kind_is_refused_before_anything_is_written(
        two_stores: tuple[Store, Store]) -> None:
    source, destination = two_stores
    source.add_site("acme", "organisation")
    source.add_site("acme/lyon", "store")
    destination.add_site("acme", "organisation")
    destination.add_site("acme/lyon", "region")
    serial_kiosk(source, "desk-l", 5)
    before = everything(destination)
    with pytest.raises(DeskPulseError, match="site acme/lyon is a store in .* and a region"):
        copy_store(source, destination)
    assert everything(destination) == before


@pytest.mark.parametrize("disagreement", ["responses", "key", "anchor"])
def test_a_kiosk_the_stores_disagree_about_is_refused_before_anything_is_written(
        two_stores: tuple[Store, Store], disagreement: str) -> None:
    source, destination = two_stores
    serial_kiosk(source, "desk-a", 10)  # copied first, were anything copied
    serial_kiosk(destination, "desk-y", 10)
    source_says: Callable[[Store], None]
    if disagreement == "responses":
        def source_says(store: Store) -> None:
            store.store_batch("desk-x", [response(seq, rating=1 + (store is source))
                                         for seq in (3, 4)], [], STATUS, "serial")
    elif disagreement == "key":
        def source_says(store: Store) -> None:
            store.set_key("desk-x", bytes([store is source]) * 32, replace=False,
                          facts=DeviceFacts("desk-x", None, None, None))
    else:
        def source_says(store: Store) -> None:
            store.store_batch("desk-x", [response(1)], [Anchor(1, 5, T0 + (store is source),
                                                               1)], STATUS, "serial")
    source_says(source)
    source_says(destination)
    before = everything(destination)
    with pytest.raises(DeskPulseError) as refused:
        copy_store(source, destination)
    assert "device desk-x " in str(refused.value) and "nothing was copied" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert everything(destination) == before


def test_a_copy_into_its_source_is_refused(two_stores: tuple[Store, Store]) -> None:
    source, _ = two_stores
    with pytest.raises(DeskPulseError, match="is the source itself"):
        copy_store(source, source)


def test_a_kiosks_desired_configs_continue_where_the_destination_left_them(
        two_stores: tuple[Store, Store]) -> None:
    """Copied before, then given more configs in the source (more than the history
    keeps): copying again appends the new ones and ends as the source's history."""
    source, destination = two_stores
    serial_kiosk(source, "desk-h", 5)
    for version in range(3):
        source.save_config({"desk-h": {"idle_timeout_s": 30 + version}}, now=T0 + version)
    copy_store(source, destination)
    for more in (2, HISTORY):  # rows in common, then none left in common
        first = source.desired_versions()["desk-h"]
        for version in range(first, first + more):
            source.save_config({"desk-h": {"idle_timeout_s": 30 + version}}, now=T0 + version)
        copy_store(source, destination)
        assert everything(destination) == everything(source)
    assert destination.desired_versions() == {"desk-h": 5 + HISTORY}


@pytest.mark.parametrize("disagreement", ["layer", "history"])
def test_config_over_the_air_the_stores_disagree_about_is_refused_before_anything_is_written(
        two_stores: tuple[Store, Store], disagreement: str) -> None:
    source, destination = two_stores
    serial_kiosk(source, "desk-a", 10)  # copied first, were anything copied
    for store, timeout in ((source, 30), (destination, 40)):
        serial_kiosk(store, "desk-x", 3)
        if disagreement == "layer":
            store.save_config({}, layer=("device", "desk-x", {"idle_timeout_s": timeout}))
        else:
            store.save_config({"desk-x": {"idle_timeout_s": timeout}}, now=T0)
    before = everything(destination)
    with pytest.raises(DeskPulseError) as refused:
        copy_store(source, destination)
    named = "config layer of device desk-x" if disagreement == "layer" else "device desk-x "
    assert named in str(refused.value) and "nothing was copied" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert everything(destination) == before
