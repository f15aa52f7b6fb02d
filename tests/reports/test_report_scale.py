"""Reports that read well at scale (issue 17 item 5): over two years of kiosks the trend is
drawn by week or month and its sums are the days' sums, the report says the dates it covers
and when it was made, only recent alerts mark a device, the terminal table fits its width
and shows the ends of a long ranking, and big counts get thousands separators."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_report import resp, store, utc
from test_report_html import Page

from deskpulse import cli
from deskpulse.errors import DeskPulseError
from deskpulse.reports import figures as report
from deskpulse.reports import trend
from deskpulse.reports.alerts import RECENT_S, current_and_earlier, find_alerts, range_end
from deskpulse.reports.html import render
from deskpulse.reports.table import ENDS, format_table
from deskpulse.store import open_store

START = date(2024, 11, 4)  # a Monday
SINCE, UNTIL = "2024-11-01", "2026-11-01"  # two years, host time (UTC here)
MADE_AT = utc("2026-11-03T12:00")


@pytest.fixture(autouse=True)
def host_in_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("COLUMNS", "110")


@pytest.fixture(scope="module")
def two_years(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Two kiosks over two years, one in Berlin and one in New York, a response every
    few days at varied hours (so local dates differ from UTC dates near midnight); the
    Berlin kiosk had a burst of worst faces in its first month, the New York one in the
    last three days of the range."""
    path = str(tmp_path_factory.mktemp("scale") / "two-years.db")
    with open_store(path) as conn:
        for index, (device, zone) in enumerate((("berlin-1", "Europe/Berlin"),
                                                ("ny-1", "America/New_York"))):
            responses = []
            seq = 0
            for day in range(0, 727, 3):
                seq += 1
                hour = (day * 7 + index * 5) % 24  # some near local midnight
                wall = utc(f"{START + timedelta(days=day)}T{hour:02d}:17")
                responses.append(resp(seq, wall, 1 + (day + index) % 5, 5,
                                      ("yes", "no", "no_answer")[day % 3]))
            burst = utc("2024-11-20T10:00") if index == 0 else utc("2026-10-30T15:00")
            for minute in range(5):
                seq += 1
                responses.append(resp(seq, burst + minute * 60, 1, 5, "no"))
            store(conn, device, responses)
            conn.describe_device(device, time_zone=zone, location=f"store-{index}")
    return path


def _build(path: str, **options: Any) -> dict[str, Any]:
    with open_store(path) as conn:
        return report.build_report(conn, **options)


# -- the trend by day, week or month ------------------------------------------------------


def test_how_a_trend_is_drawn_follows_its_span() -> None:
    first = date(2026, 1, 1)
    assert trend.granularity(first, first) == "day"
    assert trend.granularity(first, first + timedelta(days=trend.DAY_SPAN_MAX - 1)) == "day"
    assert trend.granularity(first, first + timedelta(days=trend.DAY_SPAN_MAX)) == "week"
    assert trend.granularity(first, first + timedelta(days=trend.WEEK_SPAN_MAX - 1)) == "week"
    assert trend.granularity(first, first + timedelta(days=trend.WEEK_SPAN_MAX)) == "month"
    # No span drawn by week has more than 107 weeks, however it falls on the calendar.
    for shift in range(7):
        start = first + timedelta(days=shift)
        end = start + timedelta(days=trend.WEEK_SPAN_MAX - 1)
        weeks = {trend.period(start + timedelta(days=d), "week")[0]
                 for d in range((end - start).days + 1)}
        assert len(weeks) <= 107


def test_periods_are_iso_weeks_and_calendar_months() -> None:
    # 2026-01-01 is a Thursday of ISO week 2026-W01; 2024-12-30 (Monday) starts it.
    assert trend.period(date(2026, 1, 1), "week") == (
        "2026-W01", date(2025, 12, 29), date(2026, 1, 4))
    assert trend.period(date(2024, 12, 31), "week")[0] == "2025-W01"
    assert trend.period(date(2027, 1, 3), "week")[0] == "2026-W53"
    assert trend.period(date(2024, 2, 29), "month") == (
        "2024-02", date(2024, 2, 1), date(2024, 2, 29))
    assert trend.period(date(2026, 3, 9), "day") == ("2026-03-09", date(2026, 3, 9),
                                                     date(2026, 3, 9))


def _check_sums(rep: dict[str, Any]) -> None:
    """Every trend period is the sum of the trend days inside it, exactly for the counts
    (the CSAT and told-next rates give them back to the unit)."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0, 0.0, 0])
    for day in rep["trend"]:
        label, start, end = trend.period(date.fromisoformat(day["date"]), rep["trend_by"])
        n = day["responses"]
        entry = sums[label]
        entry[0] += n
        entry[1] += round(day["csat"] * n)
        told = day["told_next_rate"]
        entry[2] += 0 if told is None else 1
        entry[4] += day["mean_rating"] * n
        entry[5] += 1
    assert [p["period"] for p in rep["trend_periods"]] == sorted(sums)
    for p in rep["trend_periods"]:
        n, top, _, _, normalised, days = sums[p["period"]]
        assert p["responses"] == n and p["days"] == days
        assert round(p["csat"] * p["responses"]) == top
        assert p["mean_rating"] == pytest.approx(normalised / n)
    assert sum(p["responses"] for p in rep["trend_periods"]) == sum(
        d["responses"] for d in rep["trend"])


def test_two_years_are_drawn_by_iso_week_and_sum_to_the_days(two_years: str) -> None:
    rep = _build(two_years, since=SINCE, until=UNTIL)
    assert rep["trend_by"] == "week"
    assert 100 <= len(rep["trend_periods"]) <= 107
    _check_sums(rep)
    # Weeks of local dates: the New York kiosk's evenings (UTC's next day) stay in the
    # local day, hence in the local week.
    week = rep["trend_periods"][1]
    assert date.fromisoformat(week["start"]).isoweekday() == 1
    assert (date.fromisoformat(week["end"]) - date.fromisoformat(week["start"])).days == 6
    # told-next rate of a week from the days' yes and no counts
    days = [d for d in rep["trend"] if week["start"] <= d["date"] <= week["end"]]
    assert week["responses"] == sum(d["responses"] for d in days)


def test_longer_and_shorter_ranges_are_drawn_by_month_and_by_day(
        two_years: str, tmp_path: Path) -> None:
    assert _build(two_years)["trend_by"] == "week"  # the data span two years: by week
    short = _build(two_years, since="2026-01-01", until="2026-03-01")
    assert short["trend_by"] == "day"
    assert [p["period"] for p in short["trend_periods"]] == [d["date"] for d in short["trend"]]
    _check_sums(short)
    # Three years, a few responses a month, in Sydney: by month of the local dates.
    path = str(tmp_path / "three-years.db")
    with open_store(path) as conn:
        store(conn, "syd-1", [
            resp(seq, utc(f"{2024 + seq // 36}-{seq // 3 % 12 + 1:02d}-{1 + seq % 3 * 10:02d}"
                          "T13:30"), 1 + seq % 5, 5, "yes" if seq % 2 else "no")
            for seq in range(108)])
        conn.describe_device("syd-1", time_zone="Australia/Sydney")
    longer = _build(path)
    assert longer["trend_by"] == "month" and len(longer["trend_periods"]) == 36
    # 13:30 UTC is the next day in Sydney: the 1st's response is in its month still.
    assert longer["trend_periods"][0] == {**longer["trend_periods"][0], "period": "2024-01",
                                          "start": "2024-01-01", "end": "2024-01-31",
                                          "days": 3}
    _check_sums(longer)


# -- the dates covered and when the report was made -------------------------------------


def test_the_report_says_its_dates_and_when_it_was_made(two_years: str) -> None:
    rep = _build(two_years, since="2025-03-01", until="2025-04-01", generated_at=MADE_AT)
    assert rep["covered"] == {"first_day": rep["trend"][0]["date"],
                              "last_day": rep["trend"][-1]["date"],
                              "days": len(rep["trend"])}
    assert "2025-03-01" <= rep["covered"]["first_day"] <= "2025-03-04"
    assert "2025-03-28" <= rep["covered"]["last_day"] <= "2025-03-31"
    assert rep["generated_at"] == "2026-11-03T12:00:00Z"
    # Without a moment passed in, two reports of the same data are equal.
    assert _build(two_years)["generated_at"] is None
    empty = _build(two_years, since="2030-01-01", until="2030-02-01")
    assert empty["covered"] == {"first_day": None, "last_day": None, "days": 0}
    assert empty["trend_periods"] == [] and empty["trend_by"] == "day"


def test_the_command_stamps_its_report(two_years: str, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(MADE_AT))
    assert cli.main(["report", "--db", two_years, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["generated_at"] == "2026-11-03T12:00:00Z"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    assert cli.main(["report", "--db", two_years, "--format", "json"]) == 2
    assert "SOURCE_DATE_EPOCH 'yesterday'" in capsys.readouterr().err
    with pytest.raises(DeskPulseError):
        cli.report.generation_time()


def test_the_html_page_states_the_dates_and_the_moment(two_years: str) -> None:
    rep = _build(two_years, since=SINCE, until=UNTIL, generated_at=MADE_AT)
    page = Page(render(rep, []))
    stamp = page.text("covered")
    assert f"{date.fromisoformat(rep['covered']['first_day']):%a %Y-%m-%d}" in stamp
    assert f"{date.fromisoformat(rep['covered']['last_day']):%a %Y-%m-%d}" in stamp
    assert "Made Tue 2026-11-03 12:00 UTC" in stamp
    assert "Weekly trend" in page.text("chart-trend")
    assert "ISO week" in page.text("chart-trend")


# -- alerts over a long range -----------------------------------------------------------


def test_only_recent_alerts_mark_a_device_over_two_years(two_years: str) -> None:
    with open_store(two_years) as conn:
        alerts = find_alerts(conn, since=SINCE, until=UNTIL)
    assert sorted(a["device_id"] for a in alerts) == ["berlin-1", "ny-1"]
    rep = _build(two_years, since=SINCE, until=UNTIL, generated_at=MADE_AT)
    page = Page(render(rep, alerts))
    # The New York burst ended within the last 7 days of the range: current, marked.
    assert [r["data-device"] for r in page.find("tr", inside="alerts-table")
            if "data-device" in r] == ["ny-1"]
    assert [r["data-key"] for r in page.find("tr", cls="alerted", inside="devices-table")] \
        == ["ny-1"]
    # Berlin's, two years back, is history: listed, not marked.
    assert [r["data-device"] for r in page.find("tr", inside="alerts-earlier-table")
            if "data-device" in r] == ["berlin-1"]
    assert "1 earlier" in page.text("devices-table")
    # A range ending a month later: both are history, no device is marked.
    later = _build(two_years, since=SINCE, until="2026-12-01", generated_at=MADE_AT + 40 * 86400)
    page = Page(render(later, alerts))
    assert page.find("tr", cls="alerted") == [] and page.find("table", inside="alerts") != []
    assert "No alert in the last 7 days of the range" in page.text("alerts")


def test_the_end_of_a_range_and_what_is_current() -> None:
    assert range_end(None, None) is None
    assert range_end(100, None) == 100 and range_end(None, 50) == 50
    assert range_end(100, 50) == 50  # made before the range's end: the end is now
    end = 10 * RECENT_S
    alerts = [{"end_utc": end - RECENT_S}, {"end_utc": end - RECENT_S + 1}, {"end_utc": end}]
    current, earlier = current_and_earlier(alerts, end)
    assert current == alerts[1:] and earlier == alerts[:1]
    # No end known (a library caller's report): the last alert's end stands for it.
    assert current_and_earlier(alerts, None) == (alerts[1:], alerts[:1])


# -- the terminal table -----------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet() -> dict[str, Any]:
    """A report of 500 kiosks with long names, thousands of responses each."""
    devices = [report.Device(f"kiosk-{i:04d}", f"Customer desk on floor {i % 9}",
                             f"store-{i // 10:02d}", "UTC") for i in range(500)]
    sel = report.Selection(None, None, devices, None, None, False)
    tally = report.Tally(sel.kinds)
    for i, d in enumerate(devices):
        for rating in range(1, 6):
            tally.add_response(d.device_id, rating, 5, i % 3, 0, utc("2026-06-01T10:00"),
                               weight=1000 + (i * rating) % 977)
    return report.figures(sel, tally, generated_at=MADE_AT)


def _widest(text: str) -> int:
    return max(len(re.sub(r"\x1b\[[0-9;]*m", "", line)) for line in text.split("\n"))


@pytest.mark.parametrize("width", [60, 80, 200])
@pytest.mark.parametrize("terminal", [False, True])
def test_the_table_fits_the_width(fleet: dict[str, Any], width: int, terminal: bool) -> None:
    text = format_table(fleet, terminal=terminal, width=width)
    assert _widest(text) <= width
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    # The top and bottom kiosks, ranked, whatever the width.
    ranked = [(int(m.group(1)), m.group(2))
              for m in re.finditer(r"^\s*(\d+)\s+(kiosk-\S*)", plain, re.MULTILINE)]
    assert [rank for rank, _ in ranked] == [*range(1, ENDS + 1), *range(501 - ENDS, 501)]
    ids = [d["device_id"] for d in fleet["devices"]]
    # A name cut short to fit ends with an ellipsis.
    assert all(ids[rank - 1].startswith(name.rstrip("…")) for rank, name in ranked)
    assert "… 490 more devices: --format csv or json for all" in plain
    assert "… 40 more locations: --format json for all" in plain
    # The widest terminal shows every figure column; the narrowest keeps the first ones.
    header = next(line for line in plain.splitlines() if line.lstrip().startswith("#"))
    assert ("time unknown" in header) == (width == 200)
    assert "responses" in header and "CSAT" in header


def test_the_command_fits_the_terminal(two_years: str, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for width in (60, 80, 200):
        monkeypatch.setenv("COLUMNS", str(width))
        assert cli.main(["report", "--db", two_years]) == 0
        assert _widest(capsys.readouterr().out) <= width


def test_a_short_ranking_is_shown_whole() -> None:
    devices = [report.Device(f"k{i}", None, None, "UTC") for i in range(2 * ENDS + 2)]
    sel = report.Selection(None, None, devices, None, None, False)
    text = format_table(report.figures(sel, report.Tally(sel.kinds)))
    assert all(f"k{i} " in text for i in range(2 * ENDS + 2)) and "more devices" not in text


def test_thousands_separators_in_the_table_and_the_page_only(
        fleet: dict[str, Any], two_years: str, capsys: pytest.CaptureFixture[str]) -> None:
    total = fleet["responses"]
    assert total > 1_000_000
    assert f"{total:,}" in format_table(fleet)
    page = Page(render(fleet, []))
    assert f"{total:,}" in page.text("key-figures")
    first = fleet["devices"][0]
    assert f"{first['responses']:,}" in page.text("devices-table")
    # Not in the machine formats.
    assert cli.main(["report", "--db", two_years, "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert f'"responses": {json.loads(out)["responses"]},' in out
    assert cli.main(["report", "--db", two_years, "--format", "csv"]) == 0
    assert not re.search(r"\d,\d{3}", capsys.readouterr().out)


def test_the_table_does_not_load_matplotlib(two_years: str, tmp_path: Path) -> None:
    code = ("import sys\nfrom deskpulse.cli import main\n"
            f"assert main(['report', '--db', {two_years!r}]) == 0\n"
            "print(sorted(m for m in ('matplotlib', 'rich', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120, env={"TZ": "UTC", "PATH": "/usr/bin",
                                                        "HOME": str(tmp_path)})
    assert done.stdout.strip().splitlines()[-1] == "['numpy', 'rich']"
