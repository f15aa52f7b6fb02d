"""kiosk/tzrule.py on the real MicroPython interpreter: POSIX TZ rules parsed and turned
into UTC offsets, compared with CPython's zoneinfo for every zone of the host's tzdata and
with glibc for hand-written rules."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import zoneinfo
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import mpy_json
from deskpulse.device.zone_rule import footer, tzif_bytes

PARIS = "CET-1CEST,M3.5.0,M10.5.0/3"
SYDNEY = "AEST-10AEDT,M10.1.0,M4.1.0/3"

OFFSETS = """
import json, sys
from kiosk import tzrule
from harness import emit
cases = json.load(open(sys.argv[1]))
out = []
for rule, walls in cases:
    parsed = tzrule.parse(rule)
    out.append([tzrule.offset(parsed, w) for w in walls])
emit(out)
"""


def device_offsets(tmp_path: Path, cases: list[tuple[str, list[int]]]) -> list[list[int]]:
    """The firmware's offsets (seconds east) for each rule at each instant."""
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases))
    return mpy_json(OFFSETS, str(path))[0]


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def test_paris_changes_at_one_utc_on_the_last_sundays_of_march_and_october(
        tmp_path: Path) -> None:
    walls = [
        utc("2026-03-29T00:00:00"), utc("2026-03-29T00:59:59"),  # the hour before: CET
        utc("2026-03-29T01:00:00"), utc("2026-03-29T02:00:00"),  # the hour after: CEST
        utc("2026-07-06T07:30:00"),                              # summer
        utc("2026-10-25T00:00:00"), utc("2026-10-25T00:59:59"),  # the hour before: CEST
        utc("2026-10-25T01:00:00"), utc("2026-10-25T02:00:00"),  # the hour after: CET
        utc("2026-12-31T23:59:59"), utc("2027-01-01T00:00:00"),
    ]
    (got,) = device_offsets(tmp_path, [(PARIS, walls)])
    h = 3600
    assert got == [h, h, 2 * h, 2 * h, 2 * h, 2 * h, 2 * h, h, h, h, h]


def test_a_southern_zone_keeps_daylight_time_across_the_new_year(tmp_path: Path) -> None:
    walls = [
        utc("2026-04-04T15:59:59"),  # Sydney 02:59:59 AEDT, Sunday 5 April
        utc("2026-04-04T16:00:00"),  # back to 02:00 AEST
        utc("2026-07-01T00:00:00"),  # winter: standard time
        utc("2026-10-03T15:59:59"),  # 01:59:59 AEST, Sunday 4 October
        utc("2026-10-03T16:00:00"),  # forward to 03:00 AEDT
        utc("2026-12-31T23:59:59"), utc("2027-01-01T00:00:00"),  # summer, either side
    ]
    (got,) = device_offsets(tmp_path, [(SYDNEY, walls)])
    assert got == [39600, 36000, 36000, 36000, 39600, 39600, 39600]


def test_zones_without_daylight_time(tmp_path: Path) -> None:
    walls = [utc("2026-01-15T12:00:00"), utc("2026-07-15T12:00:00")]
    got = device_offsets(tmp_path, [("<+0530>-5:30", walls), ("UTC0", walls),
                                    ("<-0330>3:30", walls), ("<+1245>-12:45", walls)])
    assert got == [[19800] * 2, [0] * 2, [-12600] * 2, [45900] * 2]


def test_a_daylight_time_that_lasts_all_year(tmp_path: Path) -> None:
    # RFC 8536 3.3.1: starting on 1 January at 00:00 and ending on 31 December at 24:00
    # plus the daylight shift means daylight time all year, the new year included.
    walls = [utc("2030-01-01T04:30:00"), utc("2030-01-01T05:30:00"), utc("2030-07-01T00:00:00"),
             utc("2030-12-31T23:00:00")]
    (got,) = device_offsets(tmp_path, [("EST5EDT,0/0,J365/25", walls)])
    assert got == [-14400] * 4


def zone_rules() -> dict[str, str]:
    """Every zone of the host's tzdata with its footer rule."""
    rules = {}
    for name in sorted(zoneinfo.available_timezones()):
        try:
            rule = footer(tzif_bytes(name))
        except Exception:  # noqa: BLE001 - a name zoneinfo lists but cannot read
            continue
        if rule:
            rules[name] = rule
    return rules


# Their TZif files list changes around Ramadan, up to the 2080s, that no rule expresses:
# Morocco's from next year on (the host refuses these zones), Palestine's in some later
# years (the host checks the coming year whenever it installs a config; both in
# tests/device/test_zone_rule.py).
LISTED_BEYOND_THE_RULE = {"Africa/Casablanca", "Africa/El_Aaiun", "Asia/Gaza", "Asia/Hebron"}


def transitions(zone: zoneinfo.ZoneInfo, year: int) -> list[int]:
    """The instants in `year` at which the zone's offset changes, to the second."""
    def offset(t: int) -> float:
        value = datetime.fromtimestamp(t, zone).utcoffset()
        return value.total_seconds() if value is not None else 0.0

    found = []
    t = utc(f"{year}-01-01T00:00:00")
    end = utc(f"{year + 1}-01-01T00:00:00")
    while t < end:
        step = min(86400, end - t)
        if offset(t) != offset(t + step):
            low, high = t, t + step  # offset(low) differs from offset(high)
            while high - low > 1:
                mid = (low + high) // 2
                if offset(mid) == offset(low):
                    low = mid
                else:
                    high = mid
            found.append(high)
        t += step
    return found


def test_the_device_agrees_with_zoneinfo_for_every_zone(tmp_path: Path) -> None:
    """Property: for each zone, random instants from 2027 to 2099 and the second before,
    at and after each change of two years give the offset CPython's zoneinfo gives."""
    rng = random.Random(13)
    rules = zone_rules()
    assert len(rules) > 300 and rules["Europe/Paris"] == PARIS
    cases: list[tuple[str, list[int]]] = []
    names = []
    low, high = utc("2027-01-01T00:00:00"), utc("2099-12-31T00:00:00")
    for name, rule in rules.items():
        if name in LISTED_BEYOND_THE_RULE:
            continue
        zone = zoneinfo.ZoneInfo(name)
        walls = [rng.randrange(low, high) for _ in range(25)]
        if "," in rule:  # daylight time: its edges are where a rule goes wrong
            for change in transitions(zone, rng.choice((2031, 2044))) + transitions(zone, 2097):
                walls += [change - 3600, change - 1, change, change + 3599]
        names.append(name)
        cases.append((rule, walls))
    got = device_offsets(tmp_path, cases)
    wrong = []
    checked = 0
    for name, (rule, walls), offsets in zip(names, cases, got, strict=True):
        zone = zoneinfo.ZoneInfo(name)
        for wall, offset in zip(walls, offsets, strict=True):
            expected = datetime.fromtimestamp(wall, zone).utcoffset()
            checked += 1
            if expected is None or offset != expected.total_seconds():
                wrong.append((name, rule, wall, offset, expected))
    assert checked > 15000
    assert wrong == [], sorted({w[0] for w in wrong})


GLIBC = """
import json, sys, time
print(json.dumps([time.localtime(w).tm_gmtoff for w in json.loads(sys.argv[1])]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="compares with glibc's TZ")
@pytest.mark.parametrize("rule", [
    "XXX3YYY,J60/0,J300/1:30",           # Jn: 29 February never counted
    "AAA-10BBB,300/3,60/-1",             # n: zero-based, 29 February counted; southern
    "<-03>3<-02>,M3.5.0/-2,M10.5.0/-1",  # negative times (America/Nuuk's kind)
    "AAA5BBB,J59/167,J100/-167",         # the RFC 8536 limits
    "IST-2IDT,M3.4.4/26,M10.5.0",        # past midnight (Asia/Jerusalem)
    "ABC+3:30DEF+2:30:15,M4.5.6/23:59:59,M9.1.0/0:0:1",
    "IST-1GMT0,M10.5.0,M3.5.0/1",        # "daylight" time behind standard (Europe/Dublin)
    "<+13>-13<+14>,M9.5.0/3,M4.1.0/4",
])
def test_hand_written_rules_agree_with_glibc(tmp_path: Path, rule: str) -> None:
    rng = random.Random(rule)
    walls = [rng.randrange(utc("2000-01-01T00:00:00"), utc("2099-12-01T00:00:00"))
             for _ in range(3000)]
    env = dict(os.environ, TZ=rule)
    proc = subprocess.run([sys.executable, "-c", GLIBC, json.dumps(walls)], env=env,
                          capture_output=True, text=True, check=True)
    expected = json.loads(proc.stdout)
    (got,) = device_offsets(tmp_path, [(rule, walls)])
    assert [w for w, g, e in zip(walls, got, expected, strict=True) if g != e] == []


BAD = """
from kiosk import tzrule
from harness import emit
out = []
for text in %r:
    try:
        tzrule.parse(text)
        out.append(None)
    except ValueError as e:
        out.append(str(e))
emit(out)
"""


@pytest.mark.parametrize(("rule", "problem"), [
    ("", "a rule has 1..64 characters"),
    ("CET-1CEST,M3.5.0,M10.5.0/3" + "x" * 40, "a rule has 1..64 characters"),
    ("Europe/Paris", "expected hours at character 7"),
    ("CE-1", "expected a zone name (3 or more letters, or <+0530>) at character 1"),
    ("<+05>-5:30:", "expected seconds"),  # a colon with nothing after it
    ("CET", "expected hours at character 4"),
    ("CET-25", "hours must be 0..24 at character 5"),
    ("CET-1:60", "minutes must be 0..59"),
    ("CET-1CEST", "daylight time needs its dates (,start,end) at character 10"),
    ("CET-1CEST,M3.5.0", "expected ','"),
    ("CET-1CEST,M13.5.0,M10.5.0/3", "month must be 1..12"),
    ("CET-1CEST,M3.6.0,M10.5.0/3", "week must be 1..5"),
    ("CET-1CEST,M3.5.7,M10.5.0/3", "weekday must be 0..6"),
    ("CET-1CEST,J0,J365", "day must be 1..365"),
    ("CET-1CEST,366,J365", "day must be 0..365"),
    ("CET-1CEST,M3.5.0/168,M10.5.0/3", "hours must be 0..167"),
    ("CET-1CEST,M3.5.0,M10.5.0/3x", "unexpected 'x'"),
    ("CET-1CEST,X3,M10.5.0", "expected a date: Jn, n or Mm.w.d"),
    ("<+0 5>-5", "a quoted zone name may hold only letters, digits, + and -"),
    ("<+5>-5", "a zone name needs 3 or more characters"),
])
def test_bad_rules_are_refused_saying_why(rule: str, problem: str) -> None:
    (got,) = mpy_json(BAD % ([rule],))
    assert got[0] is not None and got[0].startswith(problem), got
