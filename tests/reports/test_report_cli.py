"""`deskpulse report` in-process: every format on a small dataset worked out by hand, on
each store engine (`db_target`)."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import datetime
from pathlib import Path

import pytest
from test_report import STATUS, resp, utc

from deskpulse import cli
from deskpulse.protocol.batch import Anchor, Response
from deskpulse.reports import figures as report
from deskpulse.reports.table import format_table
from deskpulse.store import base, open_store

# desk-1 (Europe/Berlin, CEST +2, location Hall, 5 faces) and desk-2 (no zone: the host's,
# UTC here; no location; 3 faces).
#   desk-1 #1 2026-06-01 08:00Z = 10:00 local  5 yes
#   desk-1 #2 2026-06-01 09:00Z = 11:00 local  2 no
#   desk-1 #3 2026-06-01 09:01Z = 11:01 local  5 yes  rapid
#   desk-1 #4 time unknown                     4 no_answer
#   desk-2 #1 2026-06-02 15:00Z                3 no
#   desk-2 #2 2026-06-02 16:00Z                1 yes closed
# Default figures: desk-1 #1 #2 #4, desk-2 #1 -> 4 responses; top half: #1, #4 (4-5 of 5),
# desk-2 #1 (3 of 3) -> CSAT 3/4 = 75.0%; told yes 1, no 2, none 1 -> rate 1/3 = 33.3%.


@pytest.fixture(autouse=True)
def host_in_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    # The table fits the terminal's width, which COLUMNS gives first (pytest-xdist sets 80).
    monkeypatch.setenv("COLUMNS", "110")


@pytest.fixture
def path(db_target: str) -> str:
    """The --db of a store holding the data above, on each engine in turn."""
    file = db_target
    conn = open_store(file)
    conn.store_batch("desk-1", [
        resp(1, utc("2026-06-01T08:00"), 5, 5, "yes"),
        resp(2, utc("2026-06-01T09:00"), 2, 5, "no"),
        resp(3, utc("2026-06-01T09:01"), 5, 5, "yes", rapid=True),
        resp(4, None, 4, 5, "no_answer", boot=2),
    ], [], STATUS, "serial")
    conn.store_batch("desk-2", [
        resp(1, utc("2026-06-02T15:00"), 3, 3, "no"),
        resp(2, utc("2026-06-02T16:00"), 1, 3, "yes", closed=True),
    ], [], STATUS, "wifi")
    conn.describe_device("desk-1", time_zone="Europe/Berlin", location="Hall")
    conn.close()
    return file


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["report", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_is_the_report_dict(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--db", str(path), "--format", "json")
    assert code == 0
    rep = json.loads(out)
    assert rep["responses"] == 4
    assert rep["csat"] == pytest.approx(0.75)
    assert rep["told_next"] == {"yes": 1, "no": 2, "no_answer": 1}
    assert rep["told_next_rate"] == pytest.approx(1 / 3)
    assert rep["ratings"] == {"3": {"1": 0, "2": 0, "3": 1},
                              "5": {"1": 0, "2": 1, "3": 0, "4": 1, "5": 1}}
    assert rep["flagged"] == {"rapid": 1, "closed": 1, "included": False}
    assert rep["time_unknown"] == 1
    assert [d["device_id"] for d in rep["devices"]] == ["desk-2", "desk-1"]  # 100% vs 67%
    # When it was made: the CLI's clock, in the library's report the moment passed in.
    made = datetime.fromisoformat(rep["generated_at"]).timestamp()
    assert abs(made - time.time()) < 3600
    conn = open_store(path)
    assert rep == json.loads(json.dumps(report.build_report(conn, generated_at=int(made))))
    conn.close()


def test_json_with_a_range_and_flags(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--db", str(path), "--format", "json", "--since",
                       "2026-06-01T10:30+02:00", "--until", "2026-06-03",
                       "--include-flagged")
    rep = json.loads(out)
    # 08:30Z on: desk-1 #2 #3 and desk-2 #1 #2; #4 has no time.
    assert code == 0 and rep["responses"] == 4 and rep["time_unknown"] == 1
    assert rep["filters"] == {"since": "2026-06-01T08:30:00Z", "until": "2026-06-03T00:00:00Z",
                              "device": None, "location": None, "site": None,
                              "include_flagged": True}
    assert rep["csat"] == pytest.approx(2 / 4)  # #3 (5 of 5), desk-2 #1 (3 of 3)


def test_table_holds_the_key_numbers(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--db", str(path))
    assert code == 0
    assert "\x1b[" not in out  # not a terminal: plain text
    lines = out.splitlines()

    def line(start: str) -> str:
        return next(x for x in lines if x.strip().startswith(start))

    assert line("responses").split()[-1] == "4"
    assert line("CSAT (top half").split()[-1] == "75.0%"
    assert line("told what happens next").split()[-1] == "33.3%"
    assert line("answers yes / no / none").split()[-5:] == ["1", "/", "2", "/", "1"]
    assert "1 / 1 (left out)" in line("flagged rapid / closed")
    assert line("time unknown").split()[-1] == "1"
    # Told yes: desk-1 #1 (top) -> 100%; told no: desk-1 #2, desk-2 #1 (top) -> 50%.
    yes, no = line("yes ").split(), line("no ").split()
    assert yes[1:3] == ["1", "100.0%"] and no[1:3] == ["2", "50.0%"]
    assert line("difference").split()[1] == "+50.0"
    devices = [x.split() for x in lines if x.strip().startswith("desk-")]
    assert [d[0] for d in devices] == ["desk-2", "desk-1"]
    assert devices[0][1:3] == ["1", "100.0%"] and devices[1][1:3] == ["3", "66.7%"]
    assert line("Hall").split()[1:3] == ["3", "66.7%"]
    assert line("5 faces").split()[2:] == ["0", "1", "0", "1", "1"]


def test_a_corrected_device_clock_is_one_line_of_the_table_and_a_json_field(
        path: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # room for the line unwrapped
    code, out, _ = run(capsys, "--db", str(path))
    assert code == 0 and "clock corrected" not in out
    assert json.loads(run(capsys, "--db", str(path), "--format", "json")[1])[
        "clock_corrected"] == {"tolerance_s": base.CLOCK_TOLERANCE_S, "responses": 0,
                               "largest_s": None, "devices": []}
    # desk-3 stamped 2026-06-05 with a clock a year ahead; the sync's anchor says 2025.
    conn = open_store(path)
    year = 365 * 86400
    conn.store_batch("desk-3", [
        resp(seq, utc("2025-06-05T10:00") + year + seq * 60, 4, 5, "yes", boot=3,
             uptime=1000 + seq * 60) for seq in (1, 2)],
        [Anchor(3, 2000, utc("2025-06-05T10:00") + 1000, 1)], STATUS, "serial")
    conn.close()
    code, out, _ = run(capsys, "--db", str(path))
    assert code == 0
    assert [x for x in out.splitlines() if "clock corrected" in x] == [
        "clock corrected: 2 responses of desk-3 were stamped up to 365 days off by the device "
        "clock; placed by the host's time anchors"]
    rep = json.loads(run(capsys, "--db", str(path), "--format", "json")[1])
    assert rep["clock_corrected"] == {
        "tolerance_s": base.CLOCK_TOLERANCE_S, "responses": 2, "largest_s": year,
        "devices": [{"device_id": "desk-3", "name": None, "responses": 2,
                     "largest_s": year}]}
    assert rep["trend"][0] == {"date": "2025-06-05", "responses": 2, "csat": 1.0,
                               "told_next_rate": 1.0, "mean_rating": 0.75}
    # A range over the days the device claimed holds none of them.
    rep = json.loads(run(capsys, "--db", str(path), "--format", "json", "--since",
                         "2026-06-05", "--until", "2026-06-06")[1])
    assert rep["responses"] == 0 and rep["clock_corrected"]["responses"] == 0


def test_table_on_a_terminal_has_colour() -> None:
    empty = report.figures(report.Selection(None, None, [], None, None, False),
                           report.Tally((0,)))
    assert "\x1b[" in format_table(empty, terminal=True)
    plain = format_table(empty)
    assert "responses" in plain and "\x1b[" not in plain


def test_csv_has_one_row_per_response(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--db", str(path), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0
    assert [(r["device_id"], r["seq"]) for r in rows] == [
        ("desk-1", "4"), ("desk-1", "1"), ("desk-1", "2"), ("desk-2", "1")]
    first = rows[1]
    assert first == {"local_time": "2026-06-01T10:00:00+02:00", "device_id": "desk-1",
                     "location": "Hall", "rating": "5", "scale": "5", "told_next": "yes",
                     "flags": "", "seq": "1", "earliest": "", "latest": "",
                     "site": ""}
    assert rows[0]["local_time"] == ""  # time unknown
    assert rows[3]["local_time"] == "2026-06-02T15:00:00+00:00"


def test_csv_to_a_file_with_flags(path: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "out.csv"
    code, out, _ = run(capsys, "--db", str(path), "--format", "csv", "--include-flagged",
                       "--since", "2026-06-01", "-o", str(target))
    assert code == 0 and out == ""
    rows = list(csv.DictReader(target.open()))
    assert [r["flags"] for r in rows] == ["", "", "rapid", "", "closed"]
    assert len(rows) == 5  # the unknown time cannot be placed in a range


def test_html_uses_the_html_and_alert_modules(path: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "report.html"
    code, _, err = run(capsys, "--db", str(path), "--format", "html", "-o", str(target))
    assert code == 0, err
    page = target.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "desk-1" in page


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "last week"], "not an ISO date"),
    (["--since", "2026-06-02", "--until", "2026-06-01"], "must come before"),
    (["--device", "desk-9"], "no device 'desk-9'"),
    (["--location", "Roof"], "no device is at location 'Roof'"),
    (["-o", "/nonexistent-dir/out.txt"], "cannot write /nonexistent-dir/out.txt"),
])
def test_bad_input_is_one_clear_line(path: str, capsys: pytest.CaptureFixture[str],
                                     args: list[str], message: str) -> None:
    code, out, err = run(capsys, "--db", str(path), *args)
    assert code == 2 and out == ""
    assert err.startswith("deskpulse: ") and message in err and "Traceback" not in err


def test_an_unknown_zone_is_one_clear_line(path: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with open_store(path) as conn:
        conn.describe_device("desk-2", time_zone="Europe/Atlantis")
    code, _, err = run(capsys, "--db", str(path))
    assert code == 2 and "desk-2" in err and "Europe/Atlantis" in err


def test_an_empty_database(db_target: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = db_target
    open_store(path).close()  # as a sync that found no kiosk leaves it
    for fmt in ("table", "json", "csv"):
        code, out, _ = run(capsys, "--db", path, "--format", fmt)
        assert code == 0
    assert out == ("local_time,device_id,location,rating,scale,told_next,flags,seq,"
                   "earliest,latest,site\n")
    _, out, _ = run(capsys, "--db", path, "--format", "json")
    assert json.loads(out)["csat"] is None


def test_a_failed_report_leaves_no_file(path: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "never.json"
    code, _, _ = run(capsys, "--db", str(path), "--format", "json", "--device", "nope",
                     "-o", str(target))
    assert code == 2 and not target.exists() and list(tmp_path.glob(".never*")) == []


def test_responses_type_is_shared() -> None:
    # The helpers come from test_report; make sure they build real responses.
    assert isinstance(resp(1, None, 1, 3, "no"), Response)
