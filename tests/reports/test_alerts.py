"""Alert windows (deskpulse.reports.alerts) on a real database filled through store_batch,
on each store engine (SQLite, PostgreSQL: the `db_target` fixture).

Expected periods are worked out by hand in each test's comment; a property test checks
the streaming search against a plain all-pairs reading of the definition."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import STORE_ENGINES, examples_on, fresh_store
from deskpulse import cli
from deskpulse.errors import DeskPulseError
from deskpulse.protocol.batch import Response
from deskpulse.reports.alerts import find_alerts, format_alerts, parse_window
from deskpulse.reports.figures import parse_when
from deskpulse.store import open_store
from deskpulse.store.base import Store

T0 = int(datetime(2026, 11, 23, 9, 0, tzinfo=UTC).timestamp())
NEG, POS = 1, 5  # the worst and the best face of a 5-face scale


@pytest.fixture
def conn(db_target: str) -> Iterator[Store]:
    connection = open_store(db_target)
    yield connection
    connection.close()


def store(conn: Store, device_id: str, answers: Sequence[tuple], *,
          scale: int = 5) -> None:
    """answers: (seconds after T0 or None for an unknown time, rating[, 'rapid'|'closed'])."""
    first = (conn.last_seq(device_id) or 0) + 1
    responses = [
        Response(seq=first + i, rating=answer[1], scale=scale, told_next="yes",
                 latency_s=2.0, rapid="rapid" in answer[2:], closed="closed" in answer[2:],
                 boot=1, uptime_s=100 + i,
                 wall=None if answer[0] is None else T0 + answer[0], config_version=1)
        for i, answer in enumerate(answers)]
    conn.store_batch(device_id, responses, [], {}, "serial")


def describe(conn: Store, device_id: str, *, name: str | None = None,
             location: str | None = None, time_zone: str | None = None) -> None:
    """Set all three (None clears one), through the store's interface."""
    conn.describe_device(device_id, name=name or "", location=location or "",
                         time_zone=time_zone or "")


def spans(alerts: list[dict]) -> list[tuple]:
    """(device, start offset, end offset, responses, negative) per alert."""
    return [(a["device_id"], a["start_utc"] - T0, a["end_utc"] - T0, a["responses"],
             a["negative"]) for a in alerts]


# -- thresholds ---------------------------------------------------------------------------


def test_exactly_at_the_share_threshold_is_an_alert(conn: Store) -> None:
    # 4 responses in 5 minutes, 2 of them negative: 2/4 = 0.5 reaches 0.5.
    store(conn, "k1", [(0, NEG), (100, POS), (200, 2), (300, 4)])
    describe(conn, "k1", name="Front desk", location="Lobby", time_zone="UTC")
    [alert] = find_alerts(conn)
    assert alert == {
        "device_id": "k1", "name": "Front desk", "location": "Lobby", "site": None,
        "start": "2026-11-23T09:00:00+00:00", "end": "2026-11-23T09:05:00+00:00",
        "start_utc": T0, "end_utc": T0 + 300, "responses": 4, "negative": 2, "share": 0.5,
        "peak_share": 0.5,
    }
    # A hair above the share, nothing.
    assert find_alerts(conn, negative=0.51) == []


def test_share_just_below_the_threshold_is_no_alert(conn: Store) -> None:
    # 1 of 4 negative: 0.25.
    store(conn, "k1", [(0, NEG), (100, POS), (200, 3), (300, 4)])
    assert find_alerts(conn) == []
    assert spans(find_alerts(conn, negative=0.25)) == [("k1", 0, 300, 4, 1)]


def test_one_response_below_the_minimum_is_no_alert(conn: Store) -> None:
    store(conn, "k1", [(0, NEG), (60, NEG), (120, NEG)])
    assert find_alerts(conn) == []  # 3 < 4
    assert spans(find_alerts(conn, minimum=3)) == [("k1", 0, 120, 3, 3)]


def test_the_two_lowest_faces_on_every_scale(conn: Store) -> None:
    # On 3 faces, 2 is the middle face yet still one of the two lowest; 3 of 5 is not.
    store(conn, "three", [(0, 2), (10, 2), (20, 3), (30, 3)], scale=3)
    store(conn, "five", [(0, 3), (10, 3), (20, 2), (30, 5)], scale=5)
    store(conn, "four", [(0, 1), (10, 2), (20, 3), (30, 4)], scale=4)
    assert spans(find_alerts(conn)) == [("four", 0, 30, 4, 2), ("three", 0, 30, 4, 2)]


def test_a_share_like_three_fifths_compares_exactly(conn: Store) -> None:
    # 0.6 * 5 is 3.0000000000000004 in floating point; 3 of 5 must still reach 0.6.
    store(conn, "k1", [(0, NEG), (10, NEG), (20, NEG), (30, POS), (40, POS)])
    assert spans(find_alerts(conn, negative=0.6, minimum=5)) == [("k1", 0, 40, 5, 3)]


# -- windows ------------------------------------------------------------------------------


def test_a_response_exactly_one_window_later_is_outside_it(conn: Store) -> None:
    # Windows are (end - 900 s, end]. With the last answer at 900 s the first one (at 0) is
    # exactly one window earlier: no window holds 4 responses.
    store(conn, "k1", [(0, NEG), (300, NEG), (600, POS), (900, POS)])
    assert find_alerts(conn) == []
    # One second earlier, all four share a window: 2/4.
    store(conn, "k2", [(0, NEG), (300, NEG), (600, POS), (899, POS)])
    assert spans(find_alerts(conn)) == [("k2", 0, 899, 4, 2)]
    # A shorter window, parsed from text, cuts k2 too.
    assert find_alerts(conn, window_s=parse_window("14m")) == []


def test_overlapping_windows_merge_into_one_period(conn: Store) -> None:
    # Windows ending at 180 (4/4), 240 (4/5), 300 (4/6), 360 (4/7), 420 (4/8) qualify and
    # share responses; the one ending at 480 (4/9) does not. One period 0..420 with 8
    # responses, 4 negative; its peak window was all negative.
    store(conn, "k1", [(0, NEG), (60, NEG), (120, NEG), (180, NEG), (240, POS), (300, POS),
                       (360, POS), (420, POS), (480, POS)])
    [alert] = find_alerts(conn)
    assert spans([alert]) == [("k1", 0, 420, 8, 4)]
    assert alert["share"] == 0.5
    assert alert["peak_share"] == 1.0


def test_periods_that_share_no_response_stay_apart(conn: Store) -> None:
    # Burst one: the window ending at 30 is 4/4. Then four good answers from 1000 (1000 is
    # more than 900 s after 30, so no window holds both). Burst two: the window ending at
    # 1070 holds 1000..1070, 4 of 8 negative; it starts after burst one's last response.
    store(conn, "k1", [(0, NEG), (10, NEG), (20, NEG), (30, NEG),
                       (1000, POS), (1010, POS), (1020, POS), (1030, POS),
                       (1040, NEG), (1050, NEG), (1060, NEG), (1070, NEG)])
    assert spans(find_alerts(conn)) == [("k1", 0, 30, 4, 4), ("k1", 1000, 1070, 8, 4)]


def test_responses_of_one_second_are_one_step(conn: Store) -> None:
    # Four answers in the same second, two negative: the window ending at that second holds
    # all four, whatever their order in the table.
    store(conn, "k1", [(50, POS), (50, NEG), (50, POS), (50, NEG)])
    assert spans(find_alerts(conn)) == [("k1", 50, 50, 4, 2)]


def test_windows_are_per_device(conn: Store) -> None:
    # Together these would be 4 negatives within 90 s; each kiosk alone has 2.
    store(conn, "a", [(0, NEG), (60, NEG)])
    store(conn, "b", [(30, NEG), (90, NEG)])
    assert find_alerts(conn) == []
    store(conn, "b", [(120, NEG), (150, POS)])
    assert spans(find_alerts(conn)) == [("b", 30, 150, 4, 3)]
    store(conn, "a", [(61, NEG), (62, NEG), (5000, NEG)])
    assert spans(find_alerts(conn)) == [("a", 0, 62, 4, 4), ("b", 30, 150, 4, 3)]


# -- what counts --------------------------------------------------------------------------


def test_flagged_responses_only_with_include_flagged(conn: Store) -> None:
    store(conn, "k1", [(0, NEG), (60, NEG, "rapid"), (120, NEG), (180, POS, "closed"),
                       (240, NEG)])
    # Without flags: 0, 120, 240 negative: 3 < 4.
    assert find_alerts(conn) == []
    # With them: the window ending at 180 holds 4 (3 negative), then 240 makes 5 (4).
    assert spans(find_alerts(conn, include_flagged=True)) == [("k1", 0, 240, 5, 4)]


def test_unknown_times_are_left_out(conn: Store) -> None:
    store(conn, "k1", [(0, NEG), (None, NEG), (60, NEG), (None, NEG), (120, POS)])
    assert conn.count_time_unknown("k1") == 2
    assert find_alerts(conn) == []  # 3 placed responses
    store(conn, "k1", [(130, NEG)])
    assert spans(find_alerts(conn)) == [("k1", 0, 130, 4, 3)]


def test_since_and_until_select_a_half_open_range(conn: Store) -> None:
    store(conn, "k1", [(0, NEG), (60, NEG), (120, NEG), (180, NEG)])
    assert spans(find_alerts(conn, since=T0, until=T0 + 181)) == [("k1", 0, 180, 4, 4)]
    assert find_alerts(conn, since=T0 + 1) == []  # drops the first
    assert find_alerts(conn, until=T0 + 180) == []  # until is excluded
    # ISO text and datetimes name the same moments.
    assert len(find_alerts(conn, since="2026-11-23T09:00:00Z",
                           until="2026-11-23T10:03:01+01:00")) == 1
    assert find_alerts(conn, since="2026-11-23T09:00:01+00:00") == []
    assert len(find_alerts(conn, since=datetime(2026, 11, 23, 9, tzinfo=UTC))) == 1


def test_device_and_location_filters(conn: Store) -> None:
    burst = [(0, NEG), (60, NEG), (120, NEG), (180, NEG)]
    for device_id, place in (("a", "Lobby"), ("b", "Lobby"), ("c", "Annex")):
        store(conn, device_id, burst)
        describe(conn, device_id, location=place)
    assert [a["device_id"] for a in find_alerts(conn)] == ["a", "b", "c"]
    assert [a["device_id"] for a in find_alerts(conn, location="Lobby")] == ["a", "b"]
    assert [a["device_id"] for a in find_alerts(conn, device="c")] == ["c"]
    assert find_alerts(conn, device="c", location="Lobby") == []
    assert find_alerts(conn, device="nobody") == []


# -- local time ---------------------------------------------------------------------------


@pytest.fixture
def host_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_times_are_the_devices_local_time_else_the_hosts(conn: Store,
                                                         host_zone: None) -> None:
    burst = [(0, NEG), (60, NEG), (120, NEG), (180, NEG)]
    store(conn, "berlin", burst)
    describe(conn, "berlin", time_zone="Europe/Berlin")
    store(conn, "host", burst)
    starts = {a["device_id"]: (a["start"], a["end"]) for a in find_alerts(conn)}
    assert starts == {
        "berlin": ("2026-11-23T10:00:00+01:00", "2026-11-23T10:03:00+01:00"),
        "host": ("2026-11-23T04:00:00-05:00", "2026-11-23T04:03:00-05:00"),
    }
    # A date-time without an offset is the host's local time, for alerts as for reports.
    assert len(find_alerts(conn, since="2026-11-23T04:00", until="2026-11-23T04:03:01")) == 2
    assert find_alerts(conn, since="2026-11-23T04:00:01") == []
    assert parse_when("2026-11-23", "--since") == T0 - 4 * 3600  # 00:00-05:00


def test_a_period_across_the_end_of_summer_time(conn: Store) -> None:
    # Berlin leaves summer time at 01:00 UTC on 2026-10-25: 02:55+02:00 then 02:05+01:00.
    change = int(datetime(2026, 10, 25, 1, 0, tzinfo=UTC).timestamp())
    store(conn, "k1", [(change - T0 + offset, NEG) for offset in (-300, -120, 120, 300)])
    describe(conn, "k1", time_zone="Europe/Berlin")
    [alert] = find_alerts(conn)
    assert (alert["start"], alert["end"]) == ("2026-10-25T02:55:00+02:00",
                                              "2026-10-25T02:05:00+01:00")
    assert alert["end_utc"] - alert["start_utc"] == 600


def test_an_unknown_device_time_zone_is_reported(conn: Store) -> None:
    store(conn, "k1", [(0, NEG), (60, NEG), (120, NEG), (180, NEG)])
    describe(conn, "k1", time_zone="Mars/Olympus")
    with pytest.raises(DeskPulseError, match="k1 has the time zone 'Mars/Olympus'"):
        find_alerts(conn)


# -- settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("15m", 900), ("2h", 7200), (" 1H ", 3600), ("45S", 45)])
def test_window_lengths(text: str, seconds: int) -> None:
    assert parse_window(text) == seconds


@pytest.mark.parametrize("text", ["15", "m", "15 minutes", "1.5h", "-5m", "0m", "15m2", ""])
def test_bad_window_lengths_are_refused(text: str) -> None:
    with pytest.raises(DeskPulseError, match="--window"):
        parse_window(text)


@pytest.mark.parametrize(("settings_", "message"), [
    ({"negative": 0}, "--negative"), ({"negative": 1.5}, "--negative"),
    ({"minimum": 0}, "--min"), ({"window_s": 0}, "window"),
])
def test_bad_thresholds_are_refused(conn: Store, settings_: dict,
                                    message: str) -> None:
    with pytest.raises(DeskPulseError, match=message):
        find_alerts(conn, **settings_)


def test_bad_dates_are_refused(conn: Store) -> None:
    with pytest.raises(DeskPulseError, match="--since 'yesterday' is not an ISO date"):
        find_alerts(conn, since="yesterday")


# -- the command --------------------------------------------------------------------------


def test_the_command_prints_a_table_and_json(conn: Store, db_target: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    store(conn, "k1", [(0, NEG), (60, NEG), (120, NEG), (180, NEG), (240, POS, "rapid")])
    describe(conn, "k1", name="Front <desk>", time_zone="UTC")
    path = db_target

    assert cli.main(["alerts", "--db", path]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["device", "name", "location", "start", "end", "responses",
                                "negative", "share"]
    assert table[1].split() == ["k1", "Front", "<desk>", "-", "2026-11-23T09:00:00+00:00",
                                "2026-11-23T09:03:00+00:00", "4", "4", "100%"]

    assert cli.main(["alerts", "--db", path, "--format", "json", "--include-flagged",
                     "--window", "3m", "--min", "3", "--negative", "0.7",
                     "--since", "2026-11-23T09:00Z", "--device", "k1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["window_s"] == 180 and report["minimum"] == 3
    assert report["filters"]["since"] == "2026-11-23T09:00:00+00:00"
    assert report["filters"]["include_flagged"] is True
    # 3-minute windows hold 3 answers: those ending at 120 and 180 are 3/3 and share two;
    # the one ending at 240 (the rapid good answer) is 2/3 < 0.7. One period, 0..180.
    assert spans(report["alerts"]) == [("k1", 0, 180, 4, 4)]

    assert cli.main(["alerts", "--db", path, "--until", "2026-11-23T09:00Z"]) == 0
    assert capsys.readouterr().out.strip() == "no alerts in this selection"


def test_the_command_explains_bad_values(db_target: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = db_target
    open_store(path).close()
    assert cli.main(["alerts", "--db", path, "--window", "15 minutes"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deskpulse: --window '15 minutes' is not a duration")
    assert cli.main(["alerts", "--db", path, "--negative", "2"]) == 2
    assert capsys.readouterr().err.startswith("deskpulse: --negative 2.0 is not a share")
    assert cli.main(["alerts", "--db", path, "--since", "soon"]) == 2
    assert "deskpulse: --since 'soon' is not an ISO date" in capsys.readouterr().err


def test_format_alerts_aligns_columns() -> None:
    alerts = [{"device_id": "k1", "name": None, "location": "Lobby", "start": "s",
               "end": "e", "responses": 12, "negative": 6, "share": 0.5},
              {"device_id": "kiosk-22", "name": "Desk", "location": None, "start": "s",
               "end": "e", "responses": 4, "negative": 4, "share": 1.0}]
    lines = format_alerts(alerts).splitlines()
    start = lines[0].index("start")
    assert [line[start - 1:start + 1] for line in lines[1:]] == [" s", " s"]
    assert lines[1].endswith("12         6    50%")
    assert lines[2].endswith(" 4         4   100%")


# -- against the definition read literally ------------------------------------------------


def literal_periods(answers: list[tuple[int, int]], window_s: int, negative: float,
                    minimum: int) -> list[tuple[int, int, int, int]]:
    """For every response time, the window (t - window_s, t]; qualifying ones as sets of
    response indexes, merged while they share one. (first, last, count, negatives)."""
    ordered = sorted(range(len(answers)), key=lambda i: answers[i][0])
    walls = [answers[i][0] for i in ordered]
    bad = [answers[i][1] <= 2 for i in ordered]
    qualifying = []
    for end in sorted(set(walls)):
        members = [i for i, t in enumerate(walls) if end - window_s < t <= end]
        shares = sum(bad[i] for i in members) / len(members)
        if len(members) >= minimum and shares >= negative:
            qualifying.append(set(members))
    merged: list[set[int]] = []
    for members in qualifying:
        if merged and merged[-1] & members:
            merged[-1] |= members
        else:
            merged.append(members)
    # A merged run is contiguous: fill it, as the streaming search counts from first to last.
    runs = [range(min(m), max(m) + 1) for m in merged]
    return [(walls[r[0]], walls[r[-1]], len(r), sum(bad[i] for i in r)) for r in runs]


@pytest.mark.slow
@pytest.mark.parametrize("engine", STORE_ENGINES)
def test_streaming_search_matches_the_definition(request: pytest.FixtureRequest, engine: str,
                                                 tmp_path_factory: pytest.TempPathFactory
                                                 ) -> None:
    @settings(max_examples=examples_on(engine, 150), deadline=None)
    @given(answers=st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 5)), max_size=30),
           window_s=st.sampled_from([60, 300, 900]),
           negative=st.sampled_from([0.3, 0.5, 0.75, 1]), minimum=st.integers(1, 5))
    def matches(answers: list[tuple[int, int]], window_s: int, negative: float,
                minimum: int) -> None:
        with fresh_store(request, engine, tmp_path_factory.mktemp("prop")) as connection:
            if answers:
                store(connection, "k1", answers)
            found = [(a["start_utc"] - T0, a["end_utc"] - T0, a["responses"], a["negative"])
                     for a in find_alerts(connection, window_s=window_s, negative=negative,
                                          minimum=minimum)]
        assert found == literal_periods(answers, window_s, negative, minimum)

    matches()
