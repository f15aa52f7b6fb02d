"""Issue 13: a response from a boot that never got an anchor is placed in a report's day or
hour when the boots around it bound it there (store/intervals.py, docs/time.md)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from deskpulse.protocol.batch import RECEIPT_SOURCE, Anchor, Response
from deskpulse.reports import figures as report
from deskpulse.store import intervals, open_store
from deskpulse.store.base import Store

T0 = int(datetime(2026, 11, 23, 9, 0, tzinfo=UTC).timestamp())  # a Monday, 09:00 UTC
SYNCED = T0 + 6 * 3600  # when the host stored the batches


def answer(seq: int, boot: int, uptime: int, wall: int | None = None,
           rating: int = 4) -> Response:
    return Response(seq=seq, rating=rating, scale=4, told_next="yes", latency_s=1.0,
                    rapid=False, closed=False, boot=boot, uptime_s=uptime, wall=wall,
                    config_version=1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(tmp_path / "deskpulse.db")
    try:
        opened.describe_device("desk-1", time_zone="UTC", create=True)
        yield opened
    finally:
        opened.close()


def stored(store: Store, responses: list[Response], anchors: list[Anchor],
           at: int = SYNCED) -> None:
    store.store_batch("desk-1", responses, anchors, {}, "serial", now=at)


# Boot 1 set at 09:00 runs to uptime 1200 (09:20); the power is cut; boot 2 has no clock and
# answers at uptime 60 and 600; boot 3 is set by the next sync, 10:00 at its uptime 120.
MORNING = [answer(1, 1, 300, T0 + 300), answer(2, 1, 1200, T0 + 1200)]
BLIND = [answer(3, 2, 60), answer(4, 2, 600, rating=1)]
LATER = [answer(5, 3, 100)]
ANCHORS_1 = [Anchor(1, 0, T0, 1)]
ANCHORS_3 = [Anchor(3, 120, T0 + 3600, 1)]


def test_the_interval_is_what_the_neighbouring_boots_allow() -> None:
    shifts = {1: T0, 3: T0 + 3600 - 120}
    reach = {1: 1200, 2: 600, 3: 120}
    unplaced = [intervals.Unplaced(3, 2, 60, SYNCED), intervals.Unplaced(4, 2, 600, SYNCED)]
    found = intervals.intervals(shifts, reach, unplaced)
    # After boot 1's last known second plus the uptime; before boot 3's start less the
    # rest of boot 2.
    assert found == {3: (T0 + 1260, T0 + 3480 - 540), 4: (T0 + 1800, T0 + 3480)}
    # A boot between adds its own length on either side.
    found = intervals.intervals({1: T0, 5: T0 + 9000}, {1: 1200, 2: 600, 3: 300, 4: 100},
                                [intervals.Unplaced(9, 3, 100, SYNCED)])
    assert found == {9: (T0 + 1200 + 600 + 100, T0 + 9000 - 100 - 200)}
    assert intervals.neighbours({1, 5}, {3}) == {1, 2, 3, 4, 5}
    # No anchored boot before: no earliest time, no interval. Crossed ends: none either.
    assert intervals.intervals({3: T0}, {}, [intervals.Unplaced(1, 2, 5, SYNCED)]) == {1: None}
    assert intervals.intervals({1: T0, 3: T0 + 100}, {1: 500}, [
        intervals.Unplaced(1, 2, 5, SYNCED)]) == {1: None}
    # Without a later anchored boot, the receipt bounds it.
    assert intervals.intervals({1: T0}, {1: 10}, [intervals.Unplaced(1, 2, 5, T0 + 50)]) == {
        1: (T0 + 15, T0 + 50)}


def bounds(store: Store) -> dict[int, tuple[int | None, int | None]]:
    return {row[-1]: (row[1], row[2])
            for row in store.export_rows("desk-1", None, None, include_flagged=True)}


@pytest.mark.parametrize("order", ["together", "boot 3 later", "boot 3 first"])
def test_a_blind_boot_is_placed_in_its_hour(store: Store, order: str) -> None:
    if order == "together":
        stored(store, MORNING + BLIND + LATER, ANCHORS_1 + ANCHORS_3)
    elif order == "boot 3 later":
        stored(store, MORNING + BLIND, ANCHORS_1)
        # Only the receipt bounds boot 2 so far: six hours, no hour to place it in.
        assert bounds(store)[3] == (T0 + 1260, SYNCED)
        stored(store, LATER, ANCHORS_3, at=SYNCED + 60)
    else:
        stored(store, LATER + BLIND, ANCHORS_3)
        assert bounds(store)[3] == (None, None)  # nothing known before boot 2 yet
        stored(store, MORNING, ANCHORS_1, at=SYNCED + 60)
    assert bounds(store)[3] == (T0 + 1260, T0 + 2940)
    assert bounds(store)[4] == (T0 + 1800, T0 + 3480)
    for build in (report.build_report, report.build_report_raw):
        rep = build(store)
        assert rep["time_unknown"] == 0, build
        assert rep["responses"] == 5
        # The 09:00 hour holds all five on Monday; the trend has the day.
        assert rep["heatmap"]["responses"][0][9] == 5
        assert [d["responses"] for d in rep["trend"]] == [5]
        # From 09:20: seq 2, the blind boot's two and boot 3's (09:59:40).
        assert build(store, since=T0 + 1200, until=T0 + 3600)["responses"] == 4
        # From 09:25 the interval of seq 3 (from 09:21) no longer lies inside.
        assert build(store, since=T0 + 1500, until=T0 + 3600)["responses"] == 2


def test_an_interval_across_hours_counts_for_the_day_only(store: Store) -> None:
    late_anchor = [Anchor(3, 120, T0 + 3 * 3600, 1)]  # boot 3 starts at 11:58
    stored(store, MORNING + BLIND + LATER, ANCHORS_1 + late_anchor)
    for build in (report.build_report, report.build_report_raw):
        rep = build(store)
        assert rep["time_unknown"] == 0
        assert [d["responses"] for d in rep["trend"]] == [5]
        # In the heat map only the three whose hour is known.
        assert sum(map(sum, rep["heatmap"]["responses"])) == 3
        # A range that cuts the interval leaves it out, as one that misses it.
        assert build(store, since=T0, until=T0 + 2 * 3600)["responses"] == 2


def test_an_interval_across_midnight_stays_unknown_and_out_of_ranges(store: Store) -> None:
    next_day = [Anchor(3, 120, T0 + 86400, 1)]
    stored(store, MORNING + BLIND + LATER, ANCHORS_1 + next_day, at=T0 + 2 * 86400)
    for build in (report.build_report, report.build_report_raw):
        assert build(store)["time_unknown"] == 2
        assert build(store, since=T0 - 86400, until=T0 + 5 * 86400)["responses"] == 3
    out = io.StringIO()
    report.write_csv(store, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    blind = [r for r in rows if r["seq"] in ("3", "4")]
    assert [r["local_time"] for r in blind] == ["", ""]
    assert blind[0]["earliest"] == "2026-11-23T09:21:00+00:00"
    assert blind[0]["latest"] == "2026-11-24T08:49:00+00:00"
    ranged = io.StringIO()
    report.write_csv(store, ranged, since=T0 - 86400, until=T0 + 5 * 86400)
    assert "\n3," not in ranged.getvalue() and ranged.getvalue().count("\n") == 4


def test_a_later_anchor_of_the_blind_boot_itself_replaces_the_interval(store: Store) -> None:
    stored(store, MORNING + BLIND + LATER, ANCHORS_1 + ANCHORS_3)
    # A push receipt of boot 2 turns up (the kiosk's WiFi came back before boot 3).
    stored(store, [], [Anchor(2, 700, T0 + 3000, RECEIPT_SOURCE)], at=SYNCED + 60)
    assert bounds(store)[3] == (None, None)
    walls = {r["seq"]: r["wall"] for r in store.responses_of("desk-1")}
    assert walls[3] == T0 + 3000 - 640
    for build in (report.build_report, report.build_report_raw):
        rep = build(store)
        assert rep["time_unknown"] == 0 and rep["heatmap"]["responses"][0][9] == 5
