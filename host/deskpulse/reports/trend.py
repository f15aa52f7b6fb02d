"""The report's trend by local day, and the same sums by ISO week or calendar month when
the range is too long for one point a day (docs/report.md, "Trend").

A chart 10 inches wide (the HTML page's) shows about a hundred bars legibly, 8 pixels or
more each; so a trend is drawn by day up to a quarter's span, by week up to two years and
a bit (at most 107 weeks), and by month beyond. The span is that of the days with data,
first to last, so that a long selection with a few weeks of data is still drawn by day.
Weeks are ISO weeks (Monday first) of the local dates: each response is in its device's
zone already when it reaches a day.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from typing import Any

DAY_SPAN_MAX = 92  # days: a quarter, drawn a bar a day
WEEK_SPAN_MAX = 742  # days: two years and a partial week at each end, at most 107 weeks
GRANULARITIES = ("day", "week", "month")


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


class TrendSums:
    """A day's, week's or month's counts of the counted responses: integer counts, and the
    sum of normalised ratings (each rating's (rating - 1) / (scale - 1))."""

    def __init__(self, responses: int = 0, top: int = 0, yes: int = 0, no: int = 0,
                 normalised: float = 0.0) -> None:
        self.responses, self.top, self.yes, self.no = responses, top, yes, no
        self.normalised = normalised

    def merge(self, other: TrendSums) -> None:
        self.responses += other.responses
        self.top += other.top
        self.yes += other.yes
        self.no += other.no
        self.normalised += other.normalised

    def figures(self) -> dict[str, Any]:
        return {"responses": self.responses, "csat": _ratio(self.top, self.responses),
                "told_next_rate": _ratio(self.yes, self.yes + self.no),
                "mean_rating": _ratio(self.normalised, self.responses)}


def granularity(first: date, last: date) -> str:
    """'day', 'week' or 'month': how a trend from `first` to `last` is drawn."""
    span = (last - first).days + 1
    if span <= DAY_SPAN_MAX:
        return "day"
    return "week" if span <= WEEK_SPAN_MAX else "month"


def period(day: date, by: str) -> tuple[str, date, date]:
    """(label, first day, last day) of the period of `by` that holds `day`: '2026-W03'
    (ISO week, its Monday to its Sunday), '2026-01' (calendar month) or the day itself."""
    if by == "week":
        year, week, weekday = day.isocalendar()
        monday = day - timedelta(days=weekday - 1)
        return f"{year}-W{week:02d}", monday, monday + timedelta(days=6)
    if by == "month":
        last = calendar.monthrange(day.year, day.month)[1]
        return (f"{day.year}-{day.month:02d}", day.replace(day=1), day.replace(day=last))
    return day.isoformat(), day, day


def periods(days: list[tuple[date, TrendSums]], by: str) -> list[dict[str, Any]]:
    """The days' sums (oldest first, days with responses only) by period, oldest first:
    `period`, `start` and `end` (the whole period's first and last day, which at the
    range's ends may hold days outside it), `days` (days with responses), then the
    figures of a trend day."""
    grouped: dict[str, tuple[date, date, TrendSums, list[date]]] = {}
    for day, sums in days:
        label, start, end = period(day, by)
        if label not in grouped:
            grouped[label] = (start, end, TrendSums(), [])
        grouped[label][2].merge(sums)
        grouped[label][3].append(day)
    return [{"period": label, "start": start.isoformat(), "end": end.isoformat(),
             "days": len(with_data), **sums.figures()}
            for label, (start, end, sums, with_data) in grouped.items()]
