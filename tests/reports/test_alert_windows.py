"""The alert windows (`alerts._periods`, a loop over deques) against their definition,
computed the slow way: for every second that holds a response, the responses in
(second - window, second]; qualifying windows merged while each starts at or before the
period's last."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from deskpulse.reports.alerts import _Period, _periods


def by_definition(walls: list[int], negatives: list[int], window_s: float, negative: float,
                  minimum: int) -> list[_Period]:
    periods: list[_Period] = []
    for second in sorted(set(walls)):
        inside = [i for i, wall in enumerate(walls) if second - window_s < wall <= second]
        count = len(inside)
        if count < minimum:
            continue
        share = sum(negatives[i] for i in inside) / count
        if share < negative:
            continue
        first, last = inside[0], inside[-1]
        if periods and first <= periods[-1].last:
            period = periods[-1]
            period.last, period.last_wall = last, second
            period.negatives_through_last = sum(negatives[:last + 1])
            period.peak_share = max(period.peak_share, share)
        else:
            periods.append(_Period(first, walls[first], sum(negatives[:first]), last, second,
                                   sum(negatives[:last + 1]), share))
    return periods


# Gaps of exactly a window (and one second either side) put a response on a window's
# open edge, which it must not hold.
EDGES = [0, 1, 59, 60, 61, 299, 300, 301, 900, 901, 3599, 3600]


@settings(max_examples=300, deadline=None)
@given(gaps=st.lists(st.one_of(st.sampled_from(EDGES), st.integers(0, 400)), max_size=60),
       negatives=st.lists(st.integers(0, 1), min_size=60, max_size=60),
       window_s=st.sampled_from([60, 300, 900, 900.5, 3600]),
       negative=st.sampled_from([0.0, 0.25, 0.5, 2 / 3, 1.0]),
       minimum=st.integers(1, 6))
def test_the_periods_are_those_of_the_definition(
        gaps: list[int], negatives: list[int], window_s: float, negative: float,
        minimum: int) -> None:
    walls = [1_780_000_000 + sum(gaps[:i + 1]) for i in range(len(gaps))]  # 0: same second
    marks = negatives[:len(walls)]
    rows = [("k1", wall, mark) for wall, mark in zip(walls, marks, strict=True)]
    assert list(_periods(iter(rows), window_s, negative, minimum)) == by_definition(
        walls, marks, window_s, negative, minimum)


def test_a_burst_within_one_second_closes_only_with_its_last_response() -> None:
    rows = [("k1", 100, 0), ("k1", 200, 1), ("k1", 200, 1), ("k1", 200, 1)]
    [period] = _periods(iter(rows), 60, 0.5, 3)
    assert (period.first, period.last, period.peak_share) == (1, 3, 1.0)
    assert (period.negatives_before, period.negatives_through_last) == (0, 3)
