"""The report dict (docs/report.md) on datasets whose answers are worked out by hand below,
and the rollup-based report against the plain raw scan on generated datasets."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import STORE_ENGINES, examples_on, fresh_store
from deskpulse.errors import DeskPulseError
from deskpulse.protocol.batch import Anchor, Response
from deskpulse.reports import figures as report
from deskpulse.store import open_store
from deskpulse.store.base import Store
from deskpulse.store.sqlite import SqliteStore

STATUS: dict[str, Any] = {"board": "esp32-devkitc-ssd1680", "firmware": "0.1.0"}


def approx_tree(expected: Any) -> Any:
    """`expected` with every float compared approximately, at any depth."""
    if isinstance(expected, dict):
        return {k: approx_tree(v) for k, v in expected.items()}
    if isinstance(expected, list):
        return [approx_tree(v) for v in expected]
    if isinstance(expected, float):
        return pytest.approx(expected)
    return expected


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def resp(seq: int, wall: int | None, rating: int, scale: int, told: str, *,
         rapid: bool = False, closed: bool = False, boot: int = 1,
         uptime: int | None = None) -> Response:
    return Response(seq=seq, rating=rating, scale=scale, told_next=told,  # type: ignore[arg-type]
                    latency_s=2.5, rapid=rapid, closed=closed, boot=boot,
                    uptime_s=uptime if uptime is not None else seq * 10, wall=wall,
                    config_version=1)


def store(conn: Store, device_id: str, responses: list[Response],
          anchors: list[Anchor] | None = None) -> None:
    conn.store_batch(device_id, responses, anchors or [], STATUS, "serial", now=1795428000)


def place(conn: Store, device_id: str, *, zone: str | None = None,
          location: str | None = None, name: str | None = None) -> None:
    """Set all three (None clears one), through the store's interface."""
    conn.describe_device(device_id, time_zone=zone or "", location=location or "",
                         name=name or "")


@pytest.fixture(autouse=True)
def host_in_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")


@pytest.fixture
def conn(db_target: str) -> Iterator[Store]:
    """A new store on each engine in turn (SQLite, PostgreSQL)."""
    c = open_store(db_target)
    yield c
    c.close()


# -- the interval formulas against published examples ----------------------------------------


def test_wilson_matches_newcombes_published_example() -> None:
    # Newcombe (1998), single proportions: 81/263 gives 0.2553 to 0.3662.
    low, high = report.wilson(81, 263)  # type: ignore[misc]
    assert low == pytest.approx(0.2553, abs=5e-5) and high == pytest.approx(0.3662, abs=5e-5)
    # 0 of 10 still has an upper bound (0.2775), which the simple interval lacks.
    low, high = report.wilson(0, 10)  # type: ignore[misc]
    assert low == 0 and high == pytest.approx(0.2775, abs=5e-5)
    assert report.wilson(0, 0) is None


def test_newcombe_matches_the_published_example() -> None:
    # Newcombe (1998), differences: 56/70 - 48/80 = 0.2000, hybrid score 0.0524 to 0.3339.
    low, high = report.newcombe(56, 70, 48, 80)  # type: ignore[misc]
    assert low == pytest.approx(0.0524, abs=5e-5) and high == pytest.approx(0.3339, abs=5e-5)
    assert report.newcombe(1, 2, 0, 0) is None


# -- three devices, three scales, a DST change -----------------------------------------------
#
# front: Europe/Berlin, location Mitte, 5 faces. CET (+1) until 2026-03-29 01:00 UTC, then
#   CEST (+2).
#   f1 2026-03-28 23:30Z = Sun 29th 00:30 CET     5 yes
#   f2 2026-03-29 00:59Z = Sun 29th 01:59 CET     4 no
#   f3 2026-03-29 01:00Z = Sun 29th 03:00 CEST    2 yes
#   f4 2026-03-29 22:30Z = Mon 30th 00:30 CEST    1 no_answer
#   f5 2026-03-30 08:00Z = Mon 30th 10:00 CEST    5 yes, rapid
#   f6 time unknown (boot 2, never anchored)      3 no
# back: America/New_York (EDT, -4), location Mitte, 3 faces.
#   b1 2026-03-29 12:00Z = Sun 29th 08:00         3 yes
#   b2 2026-03-29 13:15Z = Sun 29th 09:15         1 no
#   b3 2026-03-30 01:00Z = Sun 29th 21:00         3 no, closed
# side: no zone, so the host's (UTC here), no location, 4 faces.
#   s1 2026-03-30 09:00Z Mon 09h                  3 yes
#   s2 2026-03-30 09:30Z Mon 09h                  2 yes
#   s3 2026-03-31 17:45Z Tue 17h                  4 no


@pytest.fixture
def three(conn: Store) -> Store:
    store(conn, "front", [
        resp(1, utc("2026-03-28T23:30"), 5, 5, "yes"),
        resp(2, utc("2026-03-29T00:59"), 4, 5, "no"),
        resp(3, utc("2026-03-29T01:00"), 2, 5, "yes"),
        resp(4, utc("2026-03-29T22:30"), 1, 5, "no_answer"),
        resp(5, utc("2026-03-30T08:00"), 5, 5, "yes", rapid=True),
        resp(6, None, 3, 5, "no", boot=2, uptime=40),
    ])
    store(conn, "back", [
        resp(1, utc("2026-03-29T12:00"), 3, 3, "yes"),
        resp(2, utc("2026-03-29T13:15"), 1, 3, "no"),
        resp(3, utc("2026-03-30T01:00"), 3, 3, "no", closed=True),
    ])
    store(conn, "side", [
        resp(1, utc("2026-03-30T09:00"), 3, 4, "yes"),
        resp(2, utc("2026-03-30T09:30"), 2, 4, "yes"),
        resp(3, utc("2026-03-31T17:45"), 4, 4, "no"),
    ])
    place(conn, "front", zone="Europe/Berlin", location="Mitte", name="Front desk")
    place(conn, "back", zone="America/New_York", location="Mitte")
    return conn


def heat_cells(rep: dict[str, Any]) -> dict[tuple[str, int], tuple[int, float | None]]:
    h = rep["heatmap"]
    return {(h["weekdays"][d], hour): (h["responses"][d][hour], h["csat"][d][hour])
            for d in range(7) for hour in range(24) if h["responses"][d][hour]}


def test_whole_range_by_hand(three: Store) -> None:
    rep = report.build_report(three)
    # Counted: f1-f4, f6 (time unknown counts without a range), b1, b2, s1-s3; f5 rapid
    # and b3 closed are left out.
    assert rep["responses"] == 10
    assert rep["ratings"] == {"3": {"1": 1, "2": 0, "3": 1},
                              "4": {"1": 0, "2": 1, "3": 1, "4": 1},
                              "5": {"1": 1, "2": 1, "3": 1, "4": 1, "5": 1}}
    # Top half: f1, f2 (4-5 of 5), b1 (3 of 3), s1, s3 (3-4 of 4).
    assert rep["csat"] == pytest.approx(5 / 10)
    # (r-1)/(s-1): front 1+.75+.25+0+.5, back 1+0, side 2/3+1/3+1.
    assert rep["mean_rating"]["normalised"] == pytest.approx(5.5 / 10)
    assert rep["mean_rating"]["raw"] == pytest.approx({"5": 3.0, "3": 2.0, "4": 3.0})
    assert rep["told_next"] == {"yes": 5, "no": 4, "no_answer": 1}
    assert rep["told_next_rate"] == pytest.approx(5 / 9)
    # Told yes: f1 top, f3, b1 top, s1 top, s2. Told no: f2 top, f6, b2, s3 top.
    assert rep["csat_told"]["responses"] == 5
    assert rep["csat_told"]["csat"] == pytest.approx(0.6)
    assert rep["csat_told"]["ci95"] == pytest.approx(list(report.wilson(3, 5) or []))
    assert rep["csat_not_told"]["responses"] == 4
    assert rep["csat_not_told"]["csat"] == pytest.approx(0.5)
    assert rep["csat_difference"]["value"] == pytest.approx(0.1)
    assert rep["csat_difference"]["ci95"] == pytest.approx(
        list(report.newcombe(3, 5, 2, 4) or []))
    assert rep["flagged"] == {"rapid": 1, "closed": 1, "included": False}
    assert rep["time_unknown"] == 1
    assert rep["filters"] == {"since": None, "until": None, "device": None, "location": None,
                              "site": None, "include_flagged": False}

    devices = {d["device_id"]: d for d in rep["devices"]}
    assert [d["device_id"] for d in rep["devices"]] == ["side", "back", "front"]
    assert devices["front"] == approx_tree({
        "device_id": "front", "name": "Front desk", "location": "Mitte",
        "time_zone": "Europe/Berlin", "site": None, "responses": 5, "csat": 0.4, "mean_rating": 0.5,
        "told_next_rate": 0.5, "csat_told": 0.5, "csat_not_told": 0.5, "time_unknown": 1})
    assert devices["back"] == approx_tree({
        "device_id": "back", "name": None, "location": "Mitte",
        "time_zone": "America/New_York", "site": None, "responses": 2, "csat": 0.5,
        "mean_rating": 0.5,
        "told_next_rate": 0.5, "csat_told": 1.0, "csat_not_told": 0.0, "time_unknown": 0})
    assert devices["side"] == approx_tree({
        "device_id": "side", "name": None, "location": None, "time_zone": "UTC",
        "site": None, "responses": 3, "csat": 2 / 3, "mean_rating": 2 / 3, "told_next_rate": 2 / 3,
        "csat_told": 0.5, "csat_not_told": 1.0, "time_unknown": 0})
    assert rep["locations"] == approx_tree([
        {"location": None, "responses": 3, "csat": 2 / 3, "mean_rating": 2 / 3,
         "told_next_rate": 2 / 3, "csat_told": 0.5, "csat_not_told": 1.0, "time_unknown": 0},
        {"location": "Mitte", "responses": 7, "csat": 3 / 7, "mean_rating": 3.5 / 7,
         "told_next_rate": 0.5, "csat_told": 2 / 3, "csat_not_told": 1 / 3,
         "time_unknown": 1},
    ])

    # Local weekday x hour, each in its own zone; f6 has no time and is not drawn.
    assert heat_cells(rep) == {
        ("Sun", 0): (1, 1.0), ("Sun", 1): (1, 1.0), ("Sun", 3): (1, 0.0),
        ("Mon", 0): (1, 0.0), ("Sun", 8): (1, 1.0), ("Sun", 9): (1, 0.0),
        ("Mon", 9): (2, 0.5), ("Tue", 17): (1, 1.0)}
    assert rep["heatmap"]["weekdays"] == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    assert rep["heatmap"]["hours"] == list(range(24))
    assert rep["trend"] == approx_tree([
        # f1 f2 f3 (Berlin) and b1 b2 (New York) fall on local Sunday the 29th.
        {"date": "2026-03-29", "responses": 5, "csat": 0.6, "told_next_rate": 0.6,
         "mean_rating": 0.6},
        {"date": "2026-03-30", "responses": 3, "csat": 1 / 3, "told_next_rate": 1.0,
         "mean_rating": 1 / 3},
        {"date": "2026-03-31", "responses": 1, "csat": 1.0, "told_next_rate": 0.0,
         "mean_rating": 1.0},
    ])


def test_flagged_included_by_hand(three: Store) -> None:
    rep = report.build_report(three, include_flagged=True)
    # + f5 (5 of 5, yes, Mon 10h Berlin) and b3 (3 of 3, no, Sun 21h New York): both top.
    assert rep["responses"] == 12
    assert rep["csat"] == pytest.approx(7 / 12)
    assert rep["told_next"] == {"yes": 6, "no": 5, "no_answer": 1}
    assert rep["flagged"] == {"rapid": 1, "closed": 1, "included": True}
    cells = heat_cells(rep)
    assert cells[("Mon", 10)] == (1, 1.0) and cells[("Sun", 21)] == (1, 1.0)
    assert [t["responses"] for t in rep["trend"]] == [6, 4, 1]


def test_a_range_leaves_unknown_times_out(three: Store) -> None:
    # The UTC day of the 29th (the host is in UTC): f2 f3 f4 b1 b2 only; f1 is the 28th in
    # UTC although Sunday in Berlin. Neither flagged response falls inside.
    rep = report.build_report(three, since="2026-03-29", until="2026-03-30")
    assert rep["responses"] == 5
    assert rep["filters"]["since"] == "2026-03-29T00:00:00Z"
    assert rep["filters"]["until"] == "2026-03-30T00:00:00Z"
    assert rep["ratings"] == {"3": {"1": 1, "2": 0, "3": 1},
                              "5": {"1": 1, "2": 1, "3": 0, "4": 1, "5": 0}}
    assert rep["csat"] == pytest.approx(2 / 5)  # f2, b1
    assert rep["time_unknown"] == 1  # f6: counted here only
    assert rep["flagged"] == {"rapid": 0, "closed": 0, "included": False}
    assert {d["device_id"]: d["time_unknown"] for d in rep["devices"]} == {
        "front": 1, "back": 0, "side": 0}
    assert {d["device_id"]: d["responses"] for d in rep["devices"]} == {
        "front": 3, "back": 2, "side": 0}
    # side sent nothing in the range: listed last, with nulls.
    assert rep["devices"][-1]["device_id"] == "side"
    assert rep["devices"][-1]["csat"] is None


def test_device_and_location_filters(three: Store) -> None:
    rep = report.build_report(three, device="back")
    assert rep["responses"] == 2 and [d["device_id"] for d in rep["devices"]] == ["back"]
    assert rep["flagged"] == {"rapid": 0, "closed": 1, "included": False}
    rep = report.build_report(three, location="Mitte")
    assert rep["responses"] == 7
    assert rep["csat"] == pytest.approx(3 / 7)
    assert [loc["location"] for loc in rep["locations"]] == ["Mitte"]


def test_offsets_and_local_defaults_in_the_bounds(three: Store,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # 2026-03-29T02:00+02:00 is 00:00Z: the same range as the UTC dates.
    by_offset = report.build_report(three, since="2026-03-29T02:00+02:00",
                                    until="2026-03-30T00:00:00Z")
    assert by_offset["responses"] == 5
    # Without an offset a bound is host local time: in New York (EDT) midnight of the 29th
    # is 04:00Z, which drops f2 and f3.
    monkeypatch.setenv("TZ", "America/New_York")
    rep = report.build_report(three, since="2026-03-29", until="2026-03-30T04:00Z")
    assert rep["filters"]["since"] == "2026-03-29T04:00:00Z"
    assert rep["responses"] == 3


# -- the fall-back night in Berlin -------------------------------------------------------------


def test_fall_back_night_counts_both_half_past_twos(conn: Store) -> None:
    # 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00Z, so 02:30 happens twice. The local
    # Sunday runs from 24th 22:00Z to 25th 23:00Z: 25 hours.
    store(conn, "berlin", [
        resp(1, utc("2026-10-24T21:59"), 4, 4, "yes"),  # Sat 23:59 CEST
        resp(2, utc("2026-10-24T22:00"), 4, 4, "yes"),  # Sun 00:00 CEST
        resp(3, utc("2026-10-25T00:30"), 1, 4, "no"),   # Sun 02:30 CEST
        resp(4, utc("2026-10-25T01:30"), 3, 4, "no"),   # Sun 02:30 CET
        resp(5, utc("2026-10-25T22:59"), 2, 4, "yes"),  # Sun 23:59 CET
        resp(6, utc("2026-10-25T23:00"), 4, 4, "yes"),  # Mon 00:00 CET
    ])
    place(conn, "berlin", zone="Europe/Berlin")
    sunday = {"since": "2026-10-25T00:00+02:00", "until": "2026-10-26T00:00+01:00"}
    for build in (report.build_report, report.build_report_raw):
        rep = build(conn, **sunday)
        assert rep["responses"] == 4
        assert [(t["date"], t["responses"]) for t in rep["trend"]] == [("2026-10-25", 4)]
        assert heat_cells(rep) == {("Sun", 0): (1, 1.0), ("Sun", 2): (2, 0.5),
                                   ("Sun", 23): (1, 0.0)}
        everything = build(conn)
        assert [(t["date"], t["responses"]) for t in everything["trend"]] == [
            ("2026-10-24", 1), ("2026-10-25", 4), ("2026-10-26", 1)]


def test_spring_forward_day_is_23_hours(conn: Store) -> None:
    store(conn, "berlin", [
        resp(1, utc("2026-03-28T22:59"), 3, 3, "yes"),  # Sat 23:59 CET
        resp(2, utc("2026-03-28T23:00"), 3, 3, "yes"),  # Sun 00:00 CET
        resp(3, utc("2026-03-29T21:59"), 1, 3, "no"),   # Sun 23:59 CEST
        resp(4, utc("2026-03-29T22:00"), 3, 3, "no"),   # Mon 00:00 CEST
    ])
    place(conn, "berlin", zone="Europe/Berlin")
    rep = report.build_report(conn, since="2026-03-29T00:00+01:00",
                              until="2026-03-30T00:00+02:00")
    assert rep["responses"] == 2
    assert rep["csat"] == pytest.approx(0.5)
    assert heat_cells(rep) == {("Sun", 0): (1, 1.0), ("Sun", 23): (1, 0.0)}


# -- small and degenerate selections -----------------------------------------------------------


def test_an_empty_database_gives_zeros_and_nulls(conn: Store) -> None:
    rep = report.build_report(conn)
    assert rep["responses"] == 0 and rep["ratings"] == {}
    assert rep["csat"] is None and rep["told_next_rate"] is None
    assert rep["mean_rating"] == {"normalised": None, "raw": {}}
    assert rep["csat_told"] == {"responses": 0, "csat": None, "ci95": None}
    assert rep["csat_difference"] == {"value": None, "ci95": None}
    assert rep["devices"] == [] and rep["locations"] == [] and rep["trend"] == []
    assert rep["heatmap"]["responses"] == [[0] * 24 for _ in range(7)]
    assert rep["heatmap"]["csat"] == [[None] * 24 for _ in range(7)]
    assert rep["time_unknown"] == 0


def test_a_range_with_nothing_in_it(three: Store) -> None:
    rep = report.build_report(three, since="2025-01-01", until="2025-02-01")
    assert rep["responses"] == 0 and rep["csat"] is None and rep["trend"] == []
    assert rep["time_unknown"] == 1
    assert all(d["responses"] == 0 and d["csat"] is None for d in rep["devices"])


def test_a_single_response(conn: Store) -> None:
    store(conn, "solo", [resp(1, utc("2026-06-03T10:20"), 2, 5, "yes")])  # a Wednesday
    rep = report.build_report(conn)
    assert rep["responses"] == 1 and rep["csat"] == 0.0
    assert rep["mean_rating"] == {"normalised": 0.25, "raw": {"5": 2.0}}
    assert rep["told_next_rate"] == 1.0
    assert rep["csat_told"]["csat"] == 0.0
    assert rep["csat_told"]["ci95"][0] == 0.0 and 0.5 < rep["csat_told"]["ci95"][1] < 1
    assert rep["csat_not_told"] == {"responses": 0, "csat": None, "ci95": None}
    assert rep["csat_difference"] == {"value": None, "ci95": None}
    assert heat_cells(rep) == {("Wed", 10): (1, 0.0)}
    assert rep["trend"] == [{"date": "2026-06-03", "responses": 1, "csat": 0.0,
                             "told_next_rate": 1.0, "mean_rating": 0.25}]


def test_all_flagged(conn: Store) -> None:
    store(conn, "busy", [
        resp(1, utc("2026-06-03T10:00"), 5, 5, "yes", rapid=True),
        resp(2, utc("2026-06-03T10:01"), 1, 5, "no", rapid=True, closed=True),
        resp(3, utc("2026-06-03T23:00"), 4, 5, "no", closed=True),
    ])
    rep = report.build_report(conn)
    assert rep["responses"] == 0 and rep["csat"] is None and rep["trend"] == []
    assert rep["flagged"] == {"rapid": 2, "closed": 2, "included": False}
    rep = report.build_report(conn, include_flagged=True)
    assert rep["responses"] == 3 and rep["csat"] == pytest.approx(2 / 3)
    assert rep["flagged"] == {"rapid": 2, "closed": 2, "included": True}


def test_unknown_times_placed_later_by_an_anchor(conn: Store) -> None:
    store(conn, "late", [resp(1, None, 4, 4, "yes", boot=3, uptime=100)])
    assert report.build_report(conn)["time_unknown"] == 1
    assert report.build_report(conn, since="2026-01-01")["responses"] == 0
    # The next sync brings the anchor of boot 3: uptime 600 was 2026-06-01 12:00Z.
    store(conn, "late", [], [Anchor(3, 600, utc("2026-06-01T12:00"), 1)])
    rep = report.build_report(conn, since="2026-06-01", until="2026-06-02")
    assert rep["responses"] == 1 and rep["time_unknown"] == 0
    assert heat_cells(rep) == {("Mon", 11): (1, 1.0)}


def test_a_new_zone_moves_the_figures(three: Store) -> None:
    before = report.build_report(three, device="side")
    assert heat_cells(before)[("Mon", 9)] == (2, 0.5)
    place(three, "side", zone="Asia/Tokyo")  # +9: 09:00Z is 18:00
    after = report.build_report(three, device="side")
    assert heat_cells(after) == {("Mon", 18): (2, 0.5), ("Wed", 2): (1, 1.0)}
    assert [t["date"] for t in after["trend"]] == ["2026-03-30", "2026-04-01"]


def test_the_host_zone_is_the_default(three: Store,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # +5:30: 09:00Z is 14:30, 17:45Z is 23:15
    rep = report.build_report(three, device="side")
    assert rep["devices"][0]["time_zone"] == "Asia/Kolkata"
    assert heat_cells(rep) == {("Mon", 14): (1, 1.0), ("Mon", 15): (1, 0.0),
                               ("Tue", 23): (1, 1.0)}


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "message"), [
    ({"since": "yesterday"}, "not an ISO date"),
    ({"until": "2026-13-01"}, "not an ISO date"),
    ({"since": "2026-03-02", "until": "2026-03-01"}, "must come before"),
    ({"since": "2026-03-01", "until": "2026-03-01"}, "must come before"),
    ({"device": "nobody"}, "no device 'nobody'"),
    ({"location": "Atlantis"}, "no device is at location 'Atlantis'"),
])
def test_bad_selections_are_domain_errors(three: Store, options: dict[str, Any],
                                          message: str) -> None:
    with pytest.raises(DeskPulseError, match=message):
        report.build_report(three, **options)


def test_an_unknown_zone_is_a_domain_error(three: Store) -> None:
    place(three, "back", zone="Mars/Olympus_Mons")
    with pytest.raises(DeskPulseError, match="Mars/Olympus_Mons.*not an IANA"):
        report.build_report(three)
    # Storing never fails over it: the device's rollups use the host's zone meanwhile.
    store(three, "back", [resp(4, utc("2026-04-01T10:00"), 2, 3, "no")])


# -- rollups against the raw scan --------------------------------------------------------------

ZONES = [None, "Europe/Berlin", "America/St_Johns", "Asia/Kolkata", "Australia/Lord_Howe",
         "Pacific/Kiritimati"]


def random_dataset(conn: Store, rng: random.Random, devices: int,
                   per_device: int) -> None:
    start = utc("2025-09-20T00:00")
    for i in range(devices):
        wall, boot, uptime = start + rng.randrange(86400), 1, 0
        scale = rng.choice((3, 4, 5))
        batch: list[Response] = []
        anchors: list[Anchor] = []
        blind = 0
        skew = 0  # how wrong the device's clock is until a sync sets it
        for seq in range(1, per_device + 1):
            step = rng.choice((60, 600, 3600, 5 * 3600, 86400 * 3))
            wall += step
            uptime += step
            if rng.random() < 0.03:
                boot, uptime = boot + 1, 5
                blind = rng.randint(1, 4)
                skew = rng.choice((0, 0, 90, 365 * 86400, -3 * 86400))
            known = not blind
            if blind:
                blind -= 1
                if not blind and rng.random() < 0.7:
                    anchors.append(Anchor(boot, uptime, wall, 1))
            batch.append(Response(
                seq=seq, rating=rng.randint(1, scale), scale=scale,
                told_next=rng.choice(("yes", "no", "no_answer")), latency_s=1.0,
                rapid=rng.random() < 0.1, closed=rng.random() < 0.1, boot=boot,
                uptime_s=uptime, wall=wall + skew if known else None, config_version=1))
            if len(batch) >= rng.randint(1, 40):
                if rng.random() < 0.4:  # the sync set the clock: later stamps are right
                    anchors.append(Anchor(boot, uptime, wall, 1))
                    skew = 0
                store(conn, f"d{i}", batch, anchors)
                # A retry of part of the last batch: duplicates must not count.
                store(conn, f"d{i}", batch[-3:])
                batch, anchors = [], []
        store(conn, f"d{i}", batch, anchors)
        place(conn, f"d{i}", zone=rng.choice(ZONES), location=rng.choice(("A", "B", None)))


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.mark.slow
def test_rollups_agree_with_the_raw_scan(conn: Store) -> None:
    rng = random.Random(6)
    random_dataset(conn, rng, devices=5, per_device=400)
    instants = [r["wall"] for i in range(5) for r in conn.responses_of(f"d{i}")
                if r["wall"] is not None]
    low, high = min(instants), max(instants)
    cases: list[dict[str, Any]] = [{}, {"include_flagged": True}, {"location": "A"},
                                   {"device": "d1", "include_flagged": True}]
    for _ in range(25):
        a = rng.randrange(low - 86400, high)
        b = a + rng.choice((1, 3600, 86400, 86400 * 40, 86400 * 400))
        case: dict[str, Any] = {"since": a, "until": b,
                                "include_flagged": rng.random() < 0.5}
        if rng.random() < 0.3:
            case = {"since": a} if rng.random() < 0.5 else {"until": b}
        cases.append(case)
    for case in cases:
        fast, slow = report.build_report(conn, **case), report.build_report_raw(conn, **case)
        assert same(fast, slow), case
    assert report.build_report(conn)["responses"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("engine", STORE_ENGINES)
def test_rollups_agree_with_the_raw_scan_on_any_dataset(
        request: pytest.FixtureRequest, engine: str,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    @settings(max_examples=examples_on(engine, 25), deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(seed=st.integers(0, 2**32 - 1), since=st.integers(0, 150),
           length=st.integers(1, 150), flagged=st.booleans())
    def agree(seed: int, since: int, length: int, flagged: bool) -> None:
        with fresh_store(request, engine, tmp_path_factory.mktemp("db")) as conn:
            random_dataset(conn, random.Random(seed), devices=2, per_device=60)
            start = utc("2025-09-20T00:00") + since * 3 * 3600
            case = {"since": start, "until": start + length * 5 * 3600,
                    "include_flagged": flagged}
            for c in (case, {}):
                assert same(report.build_report(conn, **c), report.build_report_raw(conn, **c))

    agree()


def test_a_recount_on_a_read_only_database_is_a_domain_error(three: Store,
                                                             db_target: str) -> None:
    place(three, "side", zone="Asia/Tokyo")  # the rollups of side must be rebuilt
    if isinstance(three, SqliteStore):
        reader: Store = SqliteStore(sqlite3.connect(
            f"file:{db_target}?mode=ro", uri=True, isolation_level=None), db_target)
    else:  # a PostgreSQL session that may not write (as on a replica)
        reader = open_store(db_target)
        reader.connection.execute(  # type: ignore[attr-defined]
            "SET default_transaction_read_only = on")
    try:
        with pytest.raises(DeskPulseError, match="side.*recounted"):
            report.build_report(reader)
    finally:
        reader.close()
