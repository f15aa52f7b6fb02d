"""Opening hours on the store's own clock, daylight saving included (issue 13, item 4), on
the real MicroPython interpreter: the closed flag of a record and the idle/closed screen
follow the zone's rule across both changes of the clocks, and spans may run past
midnight."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import mpy_json

PARIS = {"time_zone": "Europe/Paris", "tz_rule": "CET-1CEST,M3.5.0,M10.5.0/3"}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat")

SETUP = """
from harness import Rig, emit
from kiosk import config as cfg, record
def make(raw):
    c, problems = cfg.validate(raw)
    if problems:
        raise SystemExit("config refused: %r" % (problems,))
    return c
def tap(rig):
    # The closed screen asks nothing (docs/flow.md): a press there only brings up the
    # question, and the rating that follows is the session (flagged closed).
    closed_screen = rig.survey.closed_shown()
    if rig.survey.face(3) == closed_screen:
        raise SystemExit("a press on the %s screen was taken wrongly"
                         % ("closed" if closed_screen else "open"))
    if closed_screen and not rig.survey.face(3):
        raise SystemExit("the question brought up on the closed screen took no rating")
    rig.survey.answer(True)
    return bool(rig.records()[-1][record.FLAGS] & record.FLAG_CLOSED)
"""


def run(body: str, config: dict) -> dict:
    out = mpy_json(SETUP + f"config = make({config!r})\n" + body)
    assert out, "the MicroPython script printed no result"
    return out[-1]


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def kind(view: str) -> str:
    return view.split(":")[0].removeprefix("[screen] ")


@pytest.mark.parametrize(("wall", "closed"), [
    ("2026-07-06T07:30:00", False),  # Monday 09:30 in Paris (CEST): open
    ("2026-07-06T06:55:00", True),   # 08:55: not yet
    ("2026-07-06T15:59:00", False),  # 17:59
    ("2026-07-06T16:00:00", True),   # 18:00: closed
    ("2026-01-12T08:30:00", False),  # Monday 09:30 in winter (CET)
    ("2026-01-12T07:30:00", True),   # 08:30 in winter
])
def test_a_paris_customer_is_judged_on_paris_clocks(wall: str, closed: bool) -> None:
    config = {**PARIS, "opening_hours": {day: ["09:00-18:00"] for day in WEEKDAYS}}
    r = run(f"""
rig = Rig(config)
rig.clock.set_wall({utc(wall)}, 1)
rig.survey.show_idle()
idle = rig.views[-1]
emit({{"closed": tap(rig), "idle": idle}})
""", config)
    assert r["closed"] is closed
    assert kind(r["idle"]) == ("closed" if closed else "idle")


def watch(config: dict, start: str, seconds: int) -> dict:
    """The screens shown from `start` (UTC) over `seconds`, and whether a tap at the
    start and one at the end would be flagged closed."""
    return run(f"""
rig = Rig(config)
rig.clock.set_wall({utc(start)}, 1)
rig.survey.show_idle()
first = tap(rig)
rig.wait(4000)                         # past the thank-you screen
rig.views[:] = rig.views[-1:]
rig.wait({seconds * 1000}, step=1000)
shown = list(rig.views)
emit({{"first": first, "last": tap(rig), "shown": shown}})
""", config)


def test_opening_follows_the_spring_change_of_the_clocks() -> None:
    # Sunday 29 March 2026, Paris: 02:00 CET becomes 03:00 CEST at 01:00 UTC. A store
    # opening at 03:00 opens then, an hour earlier in UTC than the day before.
    config = {**PARIS, "opening_hours": {"sat": ["03:00-12:00"], "sun": ["03:00-12:00"]}}
    r = watch(config, "2026-03-29T00:00:00", 2 * 3600)  # the hour before and the hour after
    assert r["first"] is True and r["last"] is False
    assert [kind(v) for v in r["shown"]] == ["closed", "idle"]
    saturday = watch(config, "2026-03-28T01:30:00", 60)  # 02:30 CET: still closed
    assert saturday["first"] is True and saturday["last"] is True


def test_opening_follows_the_autumn_change_of_the_clocks() -> None:
    # Sunday 25 October 2026, Paris: 03:00 CEST becomes 02:00 CET at 01:00 UTC; 03:00
    # comes at 02:00 UTC, an hour later in UTC than the day before.
    config = {**PARIS, "opening_hours": {"sat": ["03:00-12:00"], "sun": ["03:00-12:00"]}}
    r = watch(config, "2026-10-25T00:30:00", 2 * 3600)  # 02:30 CEST .. 03:30 CET
    assert r["first"] is True and r["last"] is False
    assert [kind(v) for v in r["shown"]] == ["closed", "idle"]
    at_one = watch(config, "2026-10-25T01:30:00", 60)  # 02:30 CET, after the change
    assert at_one["first"] is True and at_one["last"] is True
    saturday = watch(config, "2026-10-24T01:30:00", 60)  # 03:30 CEST the day before
    assert saturday["first"] is False


def test_a_southern_store_in_its_summer() -> None:
    # Sydney is on daylight time (UTC+11) over the new year.
    config = {"time_zone": "Australia/Sydney", "tz_rule": "AEST-10AEDT,M10.1.0,M4.1.0/3",
              "opening_hours": {"mon": ["09:00-17:00"], "sun": ["09:00-17:00"]}}
    r = watch(config, "2026-12-31T21:59:00", 120)  # Friday 08:59 -> 09:01 AEDT (no hours)
    assert r["first"] is True and r["last"] is True
    r = watch(config, "2027-01-02T21:59:00", 120)  # Sunday 08:59 -> 09:01 AEDT
    assert r["first"] is True and r["last"] is False
    assert [kind(v) for v in r["shown"]] == ["closed", "idle"]
    r = watch(config, "2027-07-04T22:59:00", 120)  # Monday 08:59 -> 09:01 AEST (UTC+10)
    assert r["first"] is True and r["last"] is False


@pytest.mark.parametrize(("wall", "closed"), [
    ("2026-11-27T16:59:00", True),   # Friday 16:59 (UTC, no rule, no offset)
    ("2026-11-27T17:00:00", False),  # Friday's span starts
    ("2026-11-28T01:59:00", False),  # Saturday 01:59: still Friday's span
    ("2026-11-28T02:00:00", True),   # it ends
    ("2026-11-27T01:00:00", True),   # Friday 01:00: Thursday has no span
    ("2026-11-29T23:30:00", False),  # Sunday 23:30
    ("2026-11-30T00:30:00", False),  # Monday 00:30: Sunday's span past midnight
    ("2026-11-30T01:00:00", True),
])
def test_a_span_past_midnight_belongs_to_the_day_it_starts(wall: str, closed: bool) -> None:
    config = {"opening_hours": {"fri": ["17:00-02:00"], "sun": ["22:00-01:00"]}}
    r = run(f"""
rig = Rig(config)
rig.clock.set_wall({utc(wall)}, 1)
emit({{"closed": tap(rig)}})
""", config)
    assert r["closed"] is closed


def test_a_rule_wins_over_the_fixed_offset_of_old_configs() -> None:
    old = {"utc_offset_min": 60, "opening_hours": {"mon": ["09:00-18:00"]}}
    both = {**old, **PARIS}
    r = mpy_json(SETUP + f"""
old = make({old!r})
both = make({both!r})
wall = {utc("2026-07-06T07:30:00")}  # 09:30 in Paris, 08:30 at UTC+1
emit({{"old": cfg.is_open(old, wall), "both": cfg.is_open(both, wall),
      "offsets": [cfg.utc_offset_s(old, wall), cfg.utc_offset_s(both, wall)]}})
""")[0]
    assert r == {"old": False, "both": True, "offsets": [3600, 7200]}


def test_a_config_with_a_zone_is_loaded_and_bad_rules_are_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({**PARIS, "opening_hours": {"fri": ["17:00-02:00"]}}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"time_zone": "Europe/Paris", "tz_rule": "Europe/Paris",
                               "opening_hours": {"mon": ["09:00-18:00"]}}))
    r = mpy_json(f"""
from kiosk import config as cfg
from harness import emit
good, good_problems = cfg.load({str(good)!r})
bad, bad_problems = cfg.load({str(bad)!r})
emit({{"good": [good["tz_rule"], good["time_zone"], good_problems],
      "bad": [bad["tz_rule"], bad["opening_hours"], bad_problems]}})
""")[0]
    assert r["good"] == [PARIS["tz_rule"], "Europe/Paris", []]
    assert r["bad"] == ["", None, ["tz_rule 'Europe/Paris' is not a POSIX TZ rule: expected "
                                   "hours at character 7"]]
