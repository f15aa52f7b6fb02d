"""ZoneClock's table of offset changes against zoneinfo asked instant by instant."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import numpy as np
import pytest

from deskpulse.timezones import TABLE_END, TABLE_FIRST, ZoneClock


def utc(*fields: int) -> int:
    return int(datetime(*fields, tzinfo=UTC).timestamp())


def reference(clock: ZoneClock, walls: list[int]) -> list[int]:
    return [w + clock.offset(w) for w in walls]


def change_hours(clock: ZoneClock, first: int, end: int) -> list[int]:
    """The UTC hours in [first, end) in which the offset changes, found by asking
    zoneinfo at every whole hour (not the way the table is built)."""
    hours = range(first // 3600, end // 3600)
    offsets = [clock.offset(h * 3600) for h in hours]
    return [h for h, a, b in zip(hours, offsets, offsets[1:], strict=False) if a != b]


def check(clock: ZoneClock, walls: list[int]) -> None:
    expected = reference(clock, walls)
    assert clock.local(np.array(walls, np.int64)).tolist() == expected
    assert [clock.local_one(w) for w in walls] == expected


@pytest.mark.parametrize(("key", "first", "end", "changes"), [
    # Both directions of daylight saving time, at whole UTC hours.
    ("Europe/Berlin", utc(2024, 1, 1), utc(2027, 1, 1), 6),
    ("America/New_York", utc(2025, 1, 1), utc(2027, 1, 1), 4),
    # Southern hemisphere: forward in October, back in April.
    ("Australia/Sydney", utc(2025, 1, 1), utc(2027, 1, 1), 4),
    # Half-hour offsets, one with its changes half way through a UTC hour.
    ("America/St_Johns", utc(2025, 1, 1), utc(2027, 1, 1), 4),
    ("Australia/Adelaide", utc(2025, 1, 1), utc(2027, 1, 1), 4),
    # A half-hour daylight saving shift (+10:30 / +11).
    ("Australia/Lord_Howe", utc(2025, 1, 1), utc(2027, 1, 1), 4),
    # 45-minute offsets: Chatham (+12:45 / +13:45), Kathmandu moving from +5:30 in 1986.
    ("Pacific/Chatham", utc(2025, 1, 1), utc(2027, 1, 1), 4),
    ("Asia/Kathmandu", utc(1985, 6, 1), utc(1986, 6, 1), 1),
    # No change at all; and a whole day skipped (Samoa, 30 December 2011).
    ("Asia/Kolkata", utc(2025, 1, 1), utc(2026, 1, 1), 0),
    ("Pacific/Apia", utc(2011, 6, 1), utc(2012, 6, 1), 3),
    # Negative daylight saving in tzdata (winter is the "DST" of Dublin).
    ("Europe/Dublin", utc(2025, 1, 1), utc(2026, 1, 1), 2),
])
def test_every_second_around_each_change_matches_zoneinfo(key: str, first: int, end: int,
                                                           changes: int) -> None:
    clock = ZoneClock(key)
    hours = change_hours(clock, first, end)
    assert len(hours) == changes
    for hour in hours:  # every second of the hour that holds the change, and around it
        check(clock, list(range(hour * 3600 - 600, hour * 3600 + 4200)))
    rng = random.Random(key)
    check(clock, sorted(rng.randrange(first, end) for _ in range(2000)))


def test_arrays_over_many_years_and_zones_match_zoneinfo() -> None:
    rng = random.Random(7)
    for key in ("Europe/London", "America/Sao_Paulo", "Africa/Casablanca", "Asia/Tehran",
                "Australia/Eucla", "Antarctica/Troll"):
        clock = ZoneClock(key)
        walls = [rng.randrange(utc(1960, 1, 1), utc(2060, 1, 1)) for _ in range(3000)]
        check(clock, walls)  # unsorted, over about 95 of the table's chunks


def test_instants_outside_the_table_range_match_zoneinfo() -> None:
    outside = [utc(1800, 3, 1), utc(1850, 7, 1, 12), TABLE_FIRST - 1, TABLE_END,
               TABLE_END + 1, utc(2200, 7, 1), utc(2500, 1, 1)]
    inside = [TABLE_FIRST, utc(1916, 5, 1), utc(2026, 3, 29, 1), TABLE_END - 1]
    for key in ("Europe/Berlin", "Asia/Kathmandu", "America/New_York"):
        clock = ZoneClock(key)
        check(clock, outside + inside)  # one array mixing both sides
        check(clock, outside)
    # Local mean time before 1900: an offset in whole seconds, not minutes.
    berlin = ZoneClock("Europe/Berlin")
    assert berlin.local_one(utc(1850, 1, 1)) - utc(1850, 1, 1) == 3208


def test_an_empty_array_gives_an_empty_array() -> None:
    assert ZoneClock("UTC").local(np.zeros(0, np.int64)).tolist() == []
