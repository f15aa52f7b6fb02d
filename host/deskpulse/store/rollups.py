"""Rollups: per-device counts kept up to date at ingest, so reports need not scan responses.
This module is their layout and arithmetic, the same for every engine; the SQLite store
keeps them in tables (store/sqlite/rollup_tables.py).

Two tables, both keyed by (device, local period, scale, flag kind), where the kind is
`rapid | closed << 1` (0 = an ordinary response) and each row holds a vector of counters
stored as little-endian uint32 in a BLOB:

- `rollup_days`, one row per local day (days since 1970-01-01 in the device's zone):
  counts per (told_next, rating), then per local hour the responses and the top-half
  ones (`DAY_*` offsets).
- `rollup_months`, one row per local month (`year * 12 + month - 1`): the same counts,
  per day of the month the trend figures (responses, top half, told yes, told no, sum of
  rating - 1), and per local weekday x hour the responses and top-half ones
  (`MONTH_*`). Month `TIME_UNKNOWN` holds the responses that have no time (counts only).
  Beside its counters a month row keeps their sum, its `responses` (each engine's
  MONTH_RESPONSES migration): a report sums that for the kinds it does not count instead
  of reading 2 KB per row.

A report over whole months reads one row per device and month (about 24,000 rows for
500 devices over two years) instead of one per device and day; partial months come from
the day rows, partial days from the raw responses.

A response without an exact time may still have an interval (store/intervals.py): it
counts in a day row, and in its month's counts and trend, when the whole interval lies in
one local day, and in that day's hour columns and the heat map only when it lies in one
local hour; otherwise it counts in month `TIME_UNKNOWN`, as one with no interval.

Local time follows the device's zone (timezones.device_zone); `rollup_zones` records the
zone each device's rows were built with, and the store rebuilds a device's rows from
its responses when that zone no longer holds (set on the device, or a new host zone).
Deltas are computed with numpy for a whole batch at once: +1 for each new response, and
-1/+1 for each stored response an anchor moves (a boot's first anchor, or one that
corrects the boot's clock, also for responses the device had stamped: docs/time.md).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from deskpulse.timezones import zone_clock

TOLD_ORDER = ("yes", "no", "no_answer")
TOLD_CODE = {name: code for code, name in enumerate(TOLD_ORDER)}
RATINGS = 5  # counts are laid out for 5 faces whatever the scale
COUNTS = len(TOLD_ORDER) * RATINGS  # index: told code * 5 + rating - 1

DAY_HOURS = COUNTS  # 24 per-hour response counts
DAY_HOURS_TOP = DAY_HOURS + 24  # 24 per-hour top-half counts
DAY_WIDTH = DAY_HOURS_TOP + 24

TREND_FIELDS = ("responses", "top", "yes", "no", "rating_sum")  # rating_sum: of rating - 1
MONTH_TREND = COUNTS  # 31 days x TREND_FIELDS
MONTH_HEAT = MONTH_TREND + 31 * len(TREND_FIELDS)  # 7 x 24 responses, Monday first
MONTH_HEAT_TOP = MONTH_HEAT + 7 * 24  # 7 x 24 top-half responses
MONTH_WIDTH = MONTH_HEAT_TOP + 7 * 24

TIME_UNKNOWN = 0
"""The month key of responses without a time; real months are year * 12 + month - 1."""
EPOCH_MONTH = 1970 * 12
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday; Monday is 0
_DAY_SHIFT = 1 << 20  # keeps day codes positive when packing keys
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

BLOB = "<u4"
"""The numpy dtype of a counter in the BLOBs. numpy is imported by the functions that use
it, not here: the store imports this module when it opens, and commands that never compute a
rollup (`deskpulse devices`, `--help`) should not pay for loading numpy."""
BLOB_ITEMSIZE = 4


def counts_byte_weights() -> list[int]:
    """What each byte of a row's first COUNTS counters weighs in their sum, the row's
    number of responses (little-endian uint32): how SQL without a way to read integers
    from bytes adds them up (the engines' `responses` columns of the month rows)."""
    return [256 ** (byte % BLOB_ITEMSIZE) for byte in range(COUNTS * BLOB_ITEMSIZE)]


if TYPE_CHECKING:
    import numpy as np

    Deltas = dict[tuple[int, int, int], np.ndarray]


def top_from(scale: int | np.ndarray) -> Any:
    """The lowest rating in the top half of a scale: 3 of 3, 3 of 4, 4 of 5."""
    return (scale + 1) // 2 + 1


@dataclass(slots=True)
class Changes:
    """Responses entering (+1) or leaving (-1) buckets, as parallel arrays."""

    walls: np.ndarray  # int64 UTC seconds (an interval's earliest), 0 = time unknown
    highs: np.ndarray  # the interval's latest; equal to walls for an exact time
    ratings: np.ndarray
    scales: np.ndarray
    tolds: np.ndarray  # TOLD_CODE
    kinds: np.ndarray
    weights: np.ndarray

    @classmethod
    def empty(cls) -> Changes:
        import numpy as np

        z = np.zeros(0, np.int64)
        return cls(z, z, z, z, z, z, z)

    @classmethod
    def from_columns(cls, walls: Sequence[int | None], ratings: Sequence[int],
                     scales: Sequence[int], tolds: Sequence[str], rapid: Sequence[int],
                     closed: Sequence[int], weight: int = 1,
                     highs: Sequence[int | None] | None = None) -> Changes:
        """`walls` the exact times (None: unknown), or with `highs` the intervals'
        earliest and latest times."""
        import numpy as np

        n = len(ratings)
        low = np.fromiter((w or 0 for w in walls), np.int64, n)
        return cls(
            walls=low,
            highs=low if highs is None else np.fromiter((h or 0 for h in highs), np.int64, n),
            ratings=np.array(ratings, dtype=np.int64),
            scales=np.array(scales, dtype=np.int64),
            tolds=np.fromiter(map(TOLD_CODE.__getitem__, tolds), np.int64, n),
            kinds=(np.array(rapid, dtype=bool).astype(np.int64)
                   + 2 * np.array(closed, dtype=bool)),
            weights=np.full(n, weight, np.int64),
        )

    @classmethod
    def join(cls, parts: Iterable[Changes]) -> Changes:
        import numpy as np

        parts = list(parts)
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts]).astype(np.int64)
                     for f in ("walls", "highs", "ratings", "scales", "tolds", "kinds",
                               "weights")))

    def __len__(self) -> int:
        return len(self.ratings)


def _group(periods: np.ndarray, scales: np.ndarray, kinds: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (period, scale, kind) of the changes as ascending codes, and the index
    of each change's code among them."""
    import numpy as np

    codes = ((periods + _DAY_SHIFT) * 8 + scales) * 4 + kinds
    low = int(codes.min())
    span = int(codes.max()) - low + 1
    if span > 4 * len(codes) + 1024:  # far apart (a clock years off): sort them
        unique, where = np.unique(codes, return_inverse=True)
        return unique, where
    # A batch's days lie close together: counting them is cheaper than a sort.
    present = np.bincount(codes - low, minlength=span) > 0
    return np.flatnonzero(present) + low, (np.cumsum(present) - 1)[codes - low]


def _keys(codes: np.ndarray) -> list[tuple[int, int, int]]:
    return [(c // 32 - _DAY_SHIFT, c // 4 % 8, c % 4) for c in codes.tolist()]


def _sum_matrix(rows: int, width: int, index: list[np.ndarray], weight: list[np.ndarray]
                ) -> np.ndarray:
    """A rows x width int64 matrix: each weight added at its flat index."""
    import numpy as np

    flat = np.bincount(np.concatenate(index), weights=np.concatenate(weight),
                       minlength=rows * width)
    return np.rint(flat).astype(np.int64).reshape(rows, width)


def _months_of_days(codes: np.ndarray, days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Month rows from day rows (`codes` as `_group` gives them): every month counter is a
    sum of day counters, so the months cost one pass over the days, not over the changes.
    Returns the month codes and their rows."""
    import numpy as np

    day = codes // 32 - _DAY_SHIFT
    scale = codes // 4 % 8
    month_start = day.astype("datetime64[D]").astype("datetime64[M]")
    month = month_start.astype(np.int64) + EPOCH_MONTH
    dom = day - month_start.astype("datetime64[D]").astype(np.int64)
    weekday = (day + _EPOCH_WEEKDAY) % 7
    month_codes, row = _group(month, scale, codes % 4)
    counts = days[:, :COUNTS]
    rating_less_one = np.tile(np.arange(RATINGS), len(TOLD_ORDER))  # of each count column
    top = rating_less_one[None, :] + 1 >= top_from(scale)[:, None]
    told = np.repeat(np.arange(len(TOLD_ORDER)), RATINGS)
    trend = np.stack([  # TREND_FIELDS of each day
        counts.sum(axis=1), (counts * top).sum(axis=1),
        counts[:, told == TOLD_CODE["yes"]].sum(axis=1),
        counts[:, told == TOLD_CODE["no"]].sum(axis=1), counts @ rating_less_one,
    ], axis=1)
    base = (row * MONTH_WIDTH)[:, None]
    heat = base + weekday[:, None] * 24 + np.arange(24)
    index = [base + np.arange(COUNTS),
             base + MONTH_TREND + dom[:, None] * len(TREND_FIELDS) + np.arange(len(TREND_FIELDS)),
             heat + MONTH_HEAT, heat + MONTH_HEAT_TOP]
    weight = [counts, trend, days[:, DAY_HOURS:DAY_HOURS + 24],
              days[:, DAY_HOURS_TOP:DAY_HOURS_TOP + 24]]
    return month_codes, _sum_matrix(len(month_codes), MONTH_WIDTH,
                                    [i.ravel() for i in index], [w.ravel() for w in weight])


SMALL = 200
"""Up to this many changes a plain loop beats numpy's fixed cost per call (a WiFi push
carries about 50 responses)."""


def deltas(zone: str, ch: Changes) -> tuple[Deltas, Deltas]:
    """The changes to day rows and to month rows that `ch` makes, in `zone`."""
    if not len(ch):
        return {}, {}
    if len(ch) <= SMALL:
        return deltas_by_loop(zone, ch)
    return deltas_by_arrays(zone, ch)


@functools.lru_cache(maxsize=4096)
def _month_and_day(day: int) -> tuple[int, int]:
    d = date.fromordinal(day + _EPOCH_ORDINAL)
    return d.year * 12 + d.month - 1, d.day - 1


def deltas_by_loop(zone: str, ch: Changes) -> tuple[Deltas, Deltas]:
    """`deltas` one change at a time."""
    import numpy as np

    clock = zone_clock(zone)
    days: dict[tuple[int, int, int], list[int]] = {}
    months: dict[tuple[int, int, int], list[int]] = {}
    for wall, high, rating, scale, told, kind, weight in zip(
            ch.walls.tolist(), ch.highs.tolist(), ch.ratings.tolist(), ch.scales.tolist(),
            ch.tolds.tolist(), ch.kinds.tolist(), ch.weights.tolist(), strict=True):
        col = told * RATINGS + rating - 1
        top = rating >= top_from(scale)
        local = clock.local_one(wall) if wall > 0 else 0
        local_high = local if high == wall else clock.local_one(high) if high > 0 else 0
        if wall <= 0 or local // 86400 != local_high // 86400:
            month_row = months.setdefault((TIME_UNKNOWN, scale, kind), [0] * MONTH_WIDTH)
            month_row[col] += weight
            continue
        day, hour = local // 86400, local % 86400 // 3600
        hour_known = local // 3600 == local_high // 3600
        day_row = days.setdefault((day, scale, kind), [0] * DAY_WIDTH)
        day_row[col] += weight
        if hour_known:
            day_row[DAY_HOURS + hour] += weight
        month, dom = _month_and_day(day)
        month_row = months.setdefault((month, scale, kind), [0] * MONTH_WIDTH)
        month_row[col] += weight
        trend = MONTH_TREND + dom * len(TREND_FIELDS)
        month_row[trend] += weight
        month_row[trend + 4] += weight * (rating - 1)
        if told == TOLD_CODE["yes"]:
            month_row[trend + 2] += weight
        elif told == TOLD_CODE["no"]:
            month_row[trend + 3] += weight
        weekday_hour = (day + _EPOCH_WEEKDAY) % 7 * 24 + hour
        if hour_known:
            month_row[MONTH_HEAT + weekday_hour] += weight
        if top:
            month_row[trend + 1] += weight
            if hour_known:
                day_row[DAY_HOURS_TOP + hour] += weight
                month_row[MONTH_HEAT_TOP + weekday_hour] += weight
    return ({k: np.array(v, np.int64) for k, v in days.items()},
            {k: np.array(v, np.int64) for k, v in months.items()})


def deltas_by_arrays(zone: str, ch: Changes) -> tuple[Deltas, Deltas]:
    """`deltas` for a whole batch at once with numpy: the day rows from the changes, then
    the month rows from the day rows."""
    import numpy as np

    count_col = ch.tolds * RATINGS + ch.ratings - 1
    known = ch.walls > 0
    clock = zone_clock(zone)
    local_all = np.zeros(len(ch), np.int64)
    local_high = np.zeros(len(ch), np.int64)
    if known.any():
        local_all[known] = clock.local(ch.walls[known])
        spans = known & (ch.highs != ch.walls)
        local_high[known] = local_all[known]
        if spans.any():
            local_high[spans] = clock.local(ch.highs[spans])
        known &= local_all // 86400 == local_high // 86400  # an interval within one day
    days: Deltas = {}
    months: Deltas = {}
    if known.any():
        w = ch.weights[known]
        local = local_all[known]
        hour = local % 86400 // 3600
        timed = local // 3600 == local_high[known] // 3600  # the hour is known too
        top_timed = (ch.ratings >= top_from(ch.scales))[known] & timed
        codes, row = _group(local // 86400, ch.scales[known], ch.kinds[known])
        base = row * DAY_WIDTH
        day_rows = _sum_matrix(len(codes), DAY_WIDTH, [
            base + count_col[known], (base + DAY_HOURS + hour)[timed],
            (base + DAY_HOURS_TOP + hour)[top_timed],
        ], [w, w[timed], w[top_timed]])
        days = dict(zip(_keys(codes), day_rows, strict=True))
        month_codes, month_rows = _months_of_days(codes, day_rows)
        months = dict(zip(_keys(month_codes), month_rows, strict=True))
    unknown = ~known
    if unknown.any():
        codes, row = _group(np.full(int(unknown.sum()), TIME_UNKNOWN, np.int64),
                            ch.scales[unknown], ch.kinds[unknown])
        unknown_rows = _sum_matrix(len(codes), MONTH_WIDTH,
                                   [row * MONTH_WIDTH + count_col[unknown]],
                                   [ch.weights[unknown]])
        months.update(zip(_keys(codes), unknown_rows, strict=True))
    return days, months
