"""The report of docs/report.md, computed from the rollups (`build_report`) or, as a
reference for tests and the benchmark's anchor, by a plain scan of the responses
(`build_report_raw`). Both fill the same `Tally` and share `figures()`.

The rollup path takes, per device zone, the month rows for whole local months inside the
range, day rows for the other whole local days, and the raw responses (by the
(device_id, wall) index) for the partial days at the edges. The responses whose device
stamp the anchors contradicted (`clock_corrected`) come from their own small index.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TextIO

import numpy as np

from deskpulse.errors import DeskPulseError
from deskpulse.reports import trend as trend_periods
from deskpulse.store import rollups as ru
from deskpulse.store import sites as site_rules
from deskpulse.store.base import CLOCK_TOLERANCE_S, EARLIEST, LATEST, Store
from deskpulse.timezones import (
    ZoneClock,
    device_zone,
    host_time_zone,
    require_zone,
    zone_clock,
    zone_of,
)

WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
Z95 = 1.959963984540054  # the normal quantile for a two-sided 95% interval
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_FIRST_DAY = date.min.toordinal() - _EPOCH_ORDINAL  # stands for "no lower bound"
_LAST_DAY = date.max.toordinal() - _EPOCH_ORDINAL - 1
_YES = slice(0, ru.RATINGS)
_NO = slice(ru.RATINGS, 2 * ru.RATINGS)


# -- the selection ------------------------------------------------------------------------


def parse_when(text: str, what: str) -> int:
    """An ISO date or date-time as UTC unix seconds; no offset means the host's local
    time, a bare date its local midnight."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise DeskPulseError(
            f"{what} {text!r} is not an ISO date or date-time (2026-11-01, "
            "2026-11-01T09:00, 2026-11-01T09:00+01:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone_of(host_time_zone()))
    return int(moment.timestamp())


def _bound(value: str | int | datetime | None, what: str) -> int | None:
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone_of(host_time_zone()))
        return int(value.timestamp())
    return parse_when(value, what)


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    name: str | None
    location: str | None
    zone: str
    site: str | None = None  # the path of its store


@dataclass(frozen=True, slots=True)
class Selection:
    since: int | None
    until: int | None
    devices: list[Device]
    device: str | None
    location: str | None
    include_flagged: bool
    site: str | None = None
    below: tuple[tuple[str, str], ...] = ()
    """The sites one level below `site` as (path, kind), ranked by the report; none below
    a store, whose kiosks the devices ranking ranks."""

    @property
    def ranged(self) -> bool:
        return self.since is not None or self.until is not None

    @property
    def kinds(self) -> tuple[int, ...]:
        return (0, 1, 2, 3) if self.include_flagged else (0,)


def select(store: Store, *, since: str | int | datetime | None = None,
           until: str | int | datetime | None = None, device: str | None = None,
           location: str | None = None, include_flagged: bool = False,
           site: str | None = None) -> Selection:
    """Check the filters against the database; raises DeskPulseError on bad input. A
    device's zone is its own, else the one its sites give it (store/sites.py), else the
    host's."""
    low, high = _bound(since, "--since"), _bound(until, "--until")
    if low is not None and high is not None and low >= high:
        raise DeskPulseError(
            f"--since ({_iso(low)}) must come before --until ({_iso(high)})")
    rows = store.device_facts()
    if device is not None and device not in {r.device_id for r in rows}:
        raise DeskPulseError(f"no device {device!r} in the database; `deskpulse devices` "
                             "lists the known ones")
    if location is not None and location not in {r.location for r in rows}:
        known = sorted({r.location for r in rows if r.location is not None})
        raise DeskPulseError(f"no device is at location {location!r}; known locations: "
                             f"{', '.join(known) if known else 'none yet'}")
    tree = {s.path: s for s in store.sites()}
    placed = store.kiosk_sites()
    below: tuple[tuple[str, str], ...] = ()
    if site is not None:
        if site not in tree:
            raise site_rules.no_site(site)
        below = tuple((s.path, s.kind) for s in site_rules.children(tree, site))
    zones = site_rules.kiosk_zones(((r.device_id, r.time_zone) for r in rows), placed, tree)
    host = host_time_zone()
    chosen = []
    for r in rows:
        where = placed.get(r.device_id)
        if ((device is None or r.device_id == device)
                and (location is None or r.location == location)
                and (site is None or (where is not None and site_rules.is_under(where, site)))):
            configured = zones[r.device_id]
            require_zone(r.device_id, configured)
            chosen.append(Device(r.device_id, r.name, r.location,
                                 device_zone(configured, host), where))
    return Selection(low, high, chosen, device, location, include_flagged, site, below)


# -- the tally ------------------------------------------------------------------------------


@dataclass
class Tally:
    """Counts of a selection before they become figures. Per device: counts per
    (scale, kind) of the timed responses and of the time-unknown ones, all kinds kept (the
    flagged figures need them); the heatmap and the trend only of the counted kinds."""

    kinds: tuple[int, ...]
    timed: dict[str, dict[tuple[int, int], np.ndarray]] = field(
        default_factory=lambda: defaultdict(dict))
    unknown: dict[str, dict[tuple[int, int], np.ndarray]] = field(
        default_factory=lambda: defaultdict(dict))
    heat: np.ndarray = field(default_factory=lambda: np.zeros((2, 7, 24), np.int64))
    trend: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # (day, scale)
    # The rollups' trend rows as read, (local days, scale, TREND_FIELDS per day), summed
    # with `trend` only in `trend_days`: one numpy pass rather than a dict entry per day.
    trend_rows: list[tuple[np.ndarray, int, np.ndarray]] = field(default_factory=list)
    # Per device: [responses placed more than CLOCK_TOLERANCE_S away from their device
    # stamp, the largest such difference in seconds], counted kinds only.
    clock: dict[str, list[int]] = field(default_factory=dict)
    # Per device and (kind, time unknown): responses of the kinds not counted, from the
    # month rows' totals (the flagged figures count them; nothing else reads them).
    uncounted: dict[str, dict[tuple[int, bool], int]] = field(
        default_factory=lambda: defaultdict(dict))

    def add_uncounted(self, device_id: str, kind: int, unknown: bool, responses: int) -> None:
        table = self.uncounted[device_id]
        table[kind, unknown] = table.get((kind, unknown), 0) + responses

    def add_clock(self, device_id: str, responses: int, largest: int) -> None:
        entry = self.clock.setdefault(device_id, [0, 0])
        entry[0] += responses
        entry[1] = max(entry[1], largest)

    def add_counts(self, device_id: str, scale: int, kind: int, counts: np.ndarray,
                   unknown: bool = False) -> None:
        table = (self.unknown if unknown else self.timed)[device_id]
        key = (scale, kind)
        table[key] = table[key] + counts if key in table else counts.astype(np.int64)

    def add_trend(self, day: int, scale: int, values: np.ndarray) -> None:
        key = (day, scale)
        self.trend[key] = self.trend[key] + values if key in self.trend else values.copy()

    def trend_days(self) -> list[tuple[date, trend_periods.TrendSums]]:
        """The trend's sums per local day with responses, oldest first."""
        parts = [(days, np.full(len(days), scale, np.int64), values)
                 for days, scale, values in self.trend_rows]
        if self.trend:
            keys = list(self.trend)
            parts.append((np.array([day for day, _ in keys], np.int64),
                          np.array([scale for _, scale in keys], np.int64),
                          np.stack([self.trend[key] for key in keys])))
        if not parts:
            return []
        days, scales, values = (np.concatenate(column) for column in zip(*parts, strict=True))
        # Sum per (day, scale) first, in that order: a dense count per pair (a few thousand
        # over years), exact in float64 far beyond any number of responses.
        first = int(days.min())
        codes = (days - first) * 8 + scales
        sums = np.rint(np.stack([np.bincount(codes, weights=values[:, f])
                                 for f in range(len(ru.TREND_FIELDS))], axis=1)
                       ).astype(np.int64)
        pairs = np.flatnonzero(sums[:, 0])  # the (day, scale) pairs with responses
        sums = sums[pairs]
        pair_days, pair_scales = pairs // 8 + first, pairs % 8
        starts = np.flatnonzero(np.r_[True, pair_days[1:] != pair_days[:-1]])
        counts = np.add.reduceat(sums[:, :4], starts, axis=0).tolist()
        # Each day's normalised sum adds its scales' shares in ascending order, as
        # 0.0 + first + second..., one scale of every day at a time: the same float as
        # a loop over the days (a pairwise sum could round differently).
        shares = sums[:, 4] / (pair_scales - 1)
        day_of_pair = np.cumsum(np.r_[False, pair_days[1:] != pair_days[:-1]])
        rank = np.arange(len(pairs)) - starts[day_of_pair]
        normalised = np.zeros(len(starts))
        for place in range(int(rank.max()) + 1):
            at = rank == place
            normalised[day_of_pair[at]] += shares[at]
        return [(_date_of(day), trend_periods.TrendSums(n, top, yes, no, share))
                for day, (n, top, yes, no), share in zip(
                    pair_days[starts].tolist(), counts, normalised.tolist(), strict=True)]

    def add_response(self, device_id: str, rating: int, scale: int, told: int, kind: int,
                     local: int | None, weight: int = 1, hour_known: bool = True) -> None:
        """One response (or `weight` alike) at local seconds `local` (None: time
        unknown); one known to the day only (`hour_known` False) stays out of the heat map."""
        counts = np.zeros(ru.COUNTS, np.int64)
        counts[told * ru.RATINGS + rating - 1] = weight
        self.add_counts(device_id, scale, kind, counts, unknown=local is None)
        if local is None or kind not in self.kinds:
            return
        day, hour = local // 86400, local % 86400 // 3600
        weekday = (day + 3) % 7
        top = rating >= ru.top_from(scale)
        if hour_known:
            self.heat[0, weekday, hour] += weight
            self.heat[1, weekday, hour] += weight * top
        self.add_trend(day, scale, np.array(
            [weight, weight * top, weight * (told == 0), weight * (told == 1),
             weight * (rating - 1)], np.int64))


def _trend_of_counts(counts: np.ndarray, scale: int) -> np.ndarray:
    """TREND_FIELDS from rows of 15 counts (told x rating)."""
    by_rating = counts.reshape(-1, len(ru.TOLD_ORDER), ru.RATINGS)
    per_rating = by_rating.sum(axis=1)
    return np.stack([
        per_rating.sum(axis=1),
        per_rating[:, ru.top_from(scale) - 1:].sum(axis=1),
        by_rating[:, 0].sum(axis=1),
        by_rating[:, 1].sum(axis=1),
        per_rating @ np.arange(ru.RATINGS),
    ], axis=1)


# -- from the rollups -----------------------------------------------------------------------


def _day_number(d: date) -> int:
    return d.toordinal() - _EPOCH_ORDINAL


def _date_of(day: int) -> date:
    return date.fromordinal(day + _EPOCH_ORDINAL)


def _day_start(zone: ZoneClock, day: int) -> int:
    """The first instant of a local day (a midnight that a clock change skips starts
    the day at the change)."""
    return int(datetime.combine(_date_of(day), time(), zone.zone).timestamp())


def _local_day(zone: ZoneClock, wall: int) -> int:
    return zone.local_one(wall) // 86400


def _month_of(day: int) -> int:
    d = _date_of(day)
    return d.year * 12 + d.month - 1


def _month_first_day(month: int) -> int:
    return _day_number(date(month // 12, month % 12 + 1, 1))


@dataclass(frozen=True, slots=True)
class _Plan:
    """What to read for one zone: month rows, day-row ranges and raw wall ranges."""

    months: tuple[int, int] | None
    days: list[tuple[int, int]]
    raw: list[tuple[int | None, int | None]]


def _plan(zone: ZoneClock, since: int | None, until: int | None) -> _Plan:
    first = _FIRST_DAY
    if since is not None:
        first = _local_day(zone, since)
        if _day_start(zone, first) != since:
            first += 1
    last = _LAST_DAY if until is None else _local_day(zone, until) - 1
    if first > last:  # not one whole local day: all from the raw rows
        return _Plan(None, [], [(since, until)])
    raw = []
    if since is not None:
        raw.append((since, _day_start(zone, first)))
    if until is not None:
        raw.append((_day_start(zone, last + 1), until))
    first_month = _month_of(first) + (_date_of(first).day != 1)
    last_month = _month_of(last) - (_date_of(last + 1).day != 1)
    if first_month > last_month:
        return _Plan(None, [(first, last)], raw)
    days = [(first, _month_first_day(first_month) - 1),
            (_month_first_day(last_month + 1), last)]
    return _Plan((first_month, last_month), [d for d in days if d[0] <= d[1]], raw)


def _blobs(rows: list[tuple[Any, ...]], width: int) -> np.ndarray:
    data = np.frombuffer(b"".join(r[-1] for r in rows), ru.BLOB)
    return data.reshape(len(rows), width).astype(np.int64)


def _columns(rows: list[tuple[Any, ...]]) -> tuple[list[str], np.ndarray, np.ndarray,
                                                   np.ndarray]:
    devices, periods, scales, kinds, _ = zip(*rows, strict=True)
    return (list(devices), np.array(periods, np.int64), np.array(scales, np.int64),
            np.array(kinds, np.int64))


def _runs(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct codes ascending, the order that sorts `codes`, and where each code's
    run starts in that order: rows taken in `order` are summed per code by
    `np.add.reduceat(rows, starts, axis=0)`."""
    order = np.argsort(codes, kind="stable")
    ordered = codes[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return ordered[starts], order, starts


def _add_count_rows(tally: Tally, devices: list[str], scales: np.ndarray, kinds: np.ndarray,
                    counts: np.ndarray, unknown: np.ndarray | None = None) -> None:
    """Sum rows of 15 counts per (device, scale, kind, time unknown) into the tally: one
    sort and one `add.reduceat` however many rows (tens of thousands for a chain's two
    years). `unknown`: the rows of time-unknown counts, none when not given."""
    if not len(devices):
        return
    names = sorted(set(devices))
    index = {name: i for i, name in enumerate(names)}
    codes = ((np.fromiter(map(index.__getitem__, devices), np.int64, len(devices)) * 8
              + scales) * 4 + kinds) * 2
    if unknown is not None:
        codes += unknown
    keys, order, starts = _runs(codes)
    sums = np.add.reduceat(counts[order], starts, axis=0, dtype=np.int64)
    for key, vec in zip(keys.tolist(), sums, strict=True):
        tally.add_counts(names[key // 64], key // 8 % 8, key // 2 % 4, vec,
                         unknown=bool(key % 2))


def _add_trend_rows(tally: Tally, days: np.ndarray, scale: int, values: np.ndarray) -> None:
    """Rows of TREND_FIELDS per local day (one scale), summed by `Tally.trend_days`."""
    if not len(days):
        return
    tally.trend_rows.append((days, scale, values))


def _month_first_days(months: np.ndarray) -> np.ndarray:
    """The day numbers of the first days of month codes (`_month_first_day`, vectorised)."""
    return (months - ru.EPOCH_MONTH).astype("datetime64[M]").astype(
        "datetime64[D]").astype(np.int64)


def _add_month_rows(tally: Tally, rows: list[tuple[Any, ...]]) -> None:
    """Whole month rows of the counted kinds into the tally (those of month TIME_UNKNOWN
    give their counts only)."""
    if not rows:
        return
    devices, months, scales, kinds = _columns(rows)
    # uint32 as stored: the sums below widen to int64, not the whole matrix.
    matrix = np.frombuffer(b"".join(r[-1] for r in rows), ru.BLOB).reshape(
        len(rows), ru.MONTH_WIDTH)
    unknown = months == ru.TIME_UNKNOWN
    _add_count_rows(tally, devices, scales, kinds, matrix[:, :ru.COUNTS], unknown)
    # The time-unknown rows hold counts only (rollups.py): summed with the others here,
    # left out of the trend, whose days they have none of.
    tally.heat[0] += matrix[:, ru.MONTH_HEAT:ru.MONTH_HEAT_TOP].sum(
        axis=0, dtype=np.int64).reshape(7, 24)
    tally.heat[1] += matrix[:, ru.MONTH_HEAT_TOP:].sum(axis=0, dtype=np.int64).reshape(7, 24)
    # The trend sums every kiosk's month alike: one row per (month, scale) before the
    # days are spread out (a chain's 12,550 rows become 72).
    timed = np.flatnonzero(~unknown)
    if not len(timed):
        return
    keys, order, starts = _runs(months[timed] * 8 + scales[timed])
    trend = np.add.reduceat(matrix[timed[order], ru.MONTH_TREND:ru.MONTH_HEAT], starts,
                            axis=0, dtype=np.int64)
    month_of, scale_of = keys // 8, keys % 8
    days_in_row = np.arange(31)
    for scale in np.unique(scale_of).tolist():
        pick = scale_of == scale
        _add_trend_rows(tally, (_month_first_days(month_of[pick])[:, None]
                                + days_in_row).reshape(-1), scale,
                        trend[pick].reshape(-1, len(ru.TREND_FIELDS)))


def _add_day_rows(tally: Tally, rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    matrix = _blobs(rows, ru.DAY_WIDTH)
    devices, days, scales, kinds = _columns(rows)
    _add_count_rows(tally, devices, scales, kinds, matrix[:, :ru.COUNTS])
    counted = np.isin(kinds, tally.kinds)
    weekday = (days[counted] + 3) % 7
    np.add.at(tally.heat[0], weekday, matrix[counted, ru.DAY_HOURS:ru.DAY_HOURS_TOP])
    np.add.at(tally.heat[1], weekday, matrix[counted, ru.DAY_HOURS_TOP:])
    for scale in np.unique(scales[counted]).tolist():
        pick = counted & (scales == scale)
        _add_trend_rows(tally, days[pick], scale,
                        _trend_of_counts(matrix[pick, :ru.COUNTS], scale))


def placed(low: int | None, high: int | None, local_of: Any) -> tuple[int, bool] | None:
    """(local seconds, hour known) of a response with an exact time (low == high) or one
    whose interval lies within one local day (docs/time.md); None for the rest, which
    reports count as time unknown. `local_of` turns UTC seconds into local ones."""
    if low is None or high is None:
        return None
    local = local_of(low)
    if high == low:
        return local, True
    local_high = local_of(high)
    if local // 86400 != local_high // 86400:
        return None
    return local, local // 3600 == local_high // 3600


def _add_raw(tally: Tally, zone: ZoneClock, rows: Iterator[tuple[Any, ...]]) -> None:
    """Responses of a partial day: those not within one local day are counted with the
    time-unknown month row already."""
    for device_id, low, high, rating, scale, told_next, rapid, closed in rows:
        where = placed(low, high, zone.local_one)
        if where is not None:
            tally.add_response(device_id, rating, scale, ru.TOLD_CODE[told_next],
                               (rapid != 0) + 2 * (closed != 0), where[0],
                               hour_known=where[1])


def add_clock_corrected(store: Store, sel: Selection, tally: Tally) -> None:
    """The selected responses whose device stamp the anchors contradicted."""
    for device_id, responses, largest in store.clock_corrected(
            [d.device_id for d in sel.devices], _low(sel.since), _high(sel.until),
            include_flagged=sel.include_flagged):
        tally.add_clock(device_id, responses, largest)


def _low(since: int | None) -> int:
    return since if since is not None else EARLIEST


def _high(until: int | None) -> int:
    return until if until is not None else LATEST


def _add_months(store: Store, tally: Tally, ids: list[str], first: int, last: int) -> None:
    """The month rows from `first` to `last`: whole for the counted kinds; of the others
    (flagged responses, which are only counted) their stored totals."""
    _add_month_rows(tally, store.month_rollups(ids, first, last, kinds=tally.kinds))
    others = [kind for kind in range(4) if kind not in tally.kinds]
    if others:
        for device_id, _, kind, unknown, n in store.month_responses(ids, first, last,
                                                                     kinds=others):
            tally.add_uncounted(device_id, kind, unknown, n)


def _tally_from_rollups(store: Store, sel: Selection) -> Tally:
    tally = Tally(sel.kinds)
    by_zone: dict[str, list[str]] = defaultdict(list)
    for d in sel.devices:
        by_zone[d.zone].append(d.device_id)
    # Month TIME_UNKNOWN (how many had no time) is the same in every zone, and without a
    # range so is every month: one read for every device.
    _add_months(store, tally, [d.device_id for d in sel.devices], ru.TIME_UNKNOWN,
                LATEST if not sel.ranged else ru.TIME_UNKNOWN)
    if not sel.ranged:
        return tally
    for zone_key, ids in sorted(by_zone.items()):
        zone = zone_clock(zone_key)
        plan = _plan(zone, sel.since, sel.until)
        if plan.months is not None:
            _add_months(store, tally, ids, max(plan.months[0], ru.TIME_UNKNOWN + 1),
                        plan.months[1])
        for first, last in plan.days:
            _add_day_rows(tally, store.day_rollups(ids, first, last))
        for low, high in plan.raw:
            for device_id in ids:
                _add_raw(tally, zone, store.timed_responses(device_id, _low(low), _high(high)))
    return tally


def build_report(store: Store, *, since: str | int | datetime | None = None,
                 until: str | int | datetime | None = None, device: str | None = None,
                 location: str | None = None, include_flagged: bool = False,
                 site: str | None = None, generated_at: int | None = None) -> dict[str, Any]:
    """The report dict of docs/report.md, from the rollups; `generated_at` as in
    `figures`."""
    sel = select(store, since=since, until=until, device=device, location=location,
                 include_flagged=include_flagged, site=site)
    store.refresh_rollups(d.device_id for d in sel.devices)
    with store.snapshot():
        tally = _tally_from_rollups(store, sel)
        add_clock_corrected(store, sel, tally)
    return figures(sel, tally, generated_at)


# -- the current day or week, in each kiosk's own zone (the dashboard's overview) ----------


def build_period_report(store: Store, now: float, period: str, *, site: str | None = None,
                        include_flagged: bool = False) -> dict[str, Any]:
    """The report of the local day ("day") or week from Monday ("week") that `now` falls
    in, each kiosk's in its own zone, from the day rollups alone (no partial days: a
    whole local day is one row). For kiosks of one zone it equals build_report from that
    day's local midnight to the next one's. Its "filters" give the UTC span of the days
    that any kiosk counted. Without `site`, the organisations are ranked under "sites"."""
    if period not in ("day", "week"):
        raise DeskPulseError(f"a period is 'day' or 'week', not {period!r}")
    sel = select(store, include_flagged=include_flagged, site=site)
    if site is None:
        sel = dataclasses.replace(sel, below=tuple(
            (s.path, s.kind) for s in sorted(store.sites(), key=lambda s: s.path)
            if s.parent is None))
    by_zone: dict[str, list[str]] = defaultdict(list)
    for d in sel.devices:
        by_zone[d.zone].append(d.device_id)
    store.refresh_rollups(d.device_id for d in sel.devices)
    tally = Tally(sel.kinds)
    starts, ends = [], []
    with store.snapshot():
        for zone_key, ids in sorted(by_zone.items()):
            zone = zone_of(zone_key)
            today = datetime.fromtimestamp(now, zone).date()
            first = today - timedelta(days=today.weekday() if period == "week" else 0)
            _add_day_rows(tally, store.day_rollups(ids, _day_number(first),
                                                   _day_number(today)))
            starts.append(int(datetime.combine(first, time(), zone).timestamp()))
            ends.append(int(datetime.combine(today + timedelta(days=1), time(),
                                             zone).timestamp()))
    if not starts:  # no kiosk: the host's day
        starts = ends = [int(now)]
    return figures(dataclasses.replace(sel, since=min(starts), until=max(ends)), tally)


# -- the reference: a plain scan ------------------------------------------------------------


def _local_by_zoneinfo(zone: Any, wall: int) -> int:
    offset = datetime.fromtimestamp(wall, zone).utcoffset() or timedelta()
    return wall + int(offset.total_seconds())


def build_report_raw(store: Store, *, since: str | int | datetime | None = None,
                     until: str | int | datetime | None = None, device: str | None = None,
                     location: str | None = None, include_flagged: bool = False,
                     site: str | None = None, generated_at: int | None = None
                     ) -> dict[str, Any]:
    """The same report by one GROUP BY over the responses, each distinct instant placed
    in its device's zone by zoneinfo. Slow; the reference for tests and benchmarks."""
    sel = select(store, since=since, until=until, device=device, location=location,
                 include_flagged=include_flagged, site=site)
    tally = Tally(sel.kinds)
    zones = {d.device_id: zone_of(d.zone) for d in sel.devices}
    low, high = _low(sel.since), _high(sel.until)
    rows = store.response_groups(low, high, device)
    for device_id, earliest, latest, rating, scale, told_next, rapid, closed, count in rows:
        zone = zones.get(device_id)
        if zone is None:
            continue
        where = placed(earliest, latest, functools.partial(_local_by_zoneinfo, zone))
        if where is not None and earliest != latest and not (
                earliest is not None and latest is not None and low <= earliest
                and latest < high):
            continue  # placed in a day outside the range
        tally.add_response(device_id, rating, scale, ru.TOLD_CODE[told_next],
                           (rapid != 0) + 2 * (closed != 0),
                           None if where is None else where[0], count,
                           hour_known=where is None or where[1])
    # Every response the anchors placed, judged here in Python, not by the store's query.
    for device_id, wall, device_wall, rapid, closed in store.anchored_stamps():
        off = abs(wall - device_wall)
        if (device_id in zones and low <= wall < high and off > CLOCK_TOLERANCE_S
                and (rapid != 0) + 2 * (closed != 0) in sel.kinds):
            tally.add_clock(device_id, 1, off)
    return figures(sel, tally, generated_at)


# -- figures --------------------------------------------------------------------------------


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion; None without observations."""
    if n == 0:
        return None
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return (max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale))


def newcombe(s1: int, n1: int, s2: int, n2: int, z: float = Z95
             ) -> tuple[float, float] | None:
    """Newcombe's hybrid score interval for p1 - p2, from the two Wilson intervals."""
    w1, w2 = wilson(s1, n1, z), wilson(s2, n2, z)
    if w1 is None or w2 is None:
        return None
    p1, p2 = s1 / n1, s2 / n2
    d = p1 - p2
    low = d - math.sqrt((p1 - w1[0]) ** 2 + (w2[1] - p2) ** 2)
    high = d + math.sqrt((w1[1] - p1) ** 2 + (p2 - w2[0]) ** 2)
    return (max(-1.0, low), min(1.0, high))


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


class _Counts:
    """Counts per scale (15 each: told x rating) and the figures made from them."""

    def __init__(self) -> None:
        self.by_scale: dict[int, np.ndarray] = {}
        self._per_told: tuple[list[int], list[int]] | None = None

    def add(self, scale: int, counts: np.ndarray) -> None:
        self._per_told = None
        if scale in self.by_scale:
            self.by_scale[scale] = self.by_scale[scale] + counts
        else:
            self.by_scale[scale] = counts.astype(np.int64)

    def _sum(self, pick: int | None, top_only: bool = False) -> int:
        """The responses of one told code (None: all), or only those in the top half of
        their scale. Summed once in Python over the counts as lists, per told code: a
        report asks this a dozen times per device, where numpy's cost per call on 15
        numbers would dominate."""
        if self._per_told is None:
            every, top = [0] * len(ru.TOLD_ORDER), [0] * len(ru.TOLD_ORDER)
            for scale, counts in self.by_scale.items():
                start = ru.top_from(scale) - 1
                for code, row in enumerate(
                        counts.reshape(len(ru.TOLD_ORDER), ru.RATINGS).tolist()):
                    every[code] += sum(row)
                    top[code] += sum(row[start:])
            self._per_told = every, top
        sums = self._per_told[top_only]
        return sum(sums) if pick is None else sums[pick]

    @property
    def responses(self) -> int:
        return self._sum(None)

    def csat(self) -> float | None:
        return _ratio(self._sum(None, True), self.responses)

    def mean_normalised(self) -> float | None:
        numerator = 0.0
        for scale in sorted(self.by_scale):
            per_rating = self.by_scale[scale].reshape(len(ru.TOLD_ORDER), ru.RATINGS).sum(0)
            numerator += int(per_rating @ np.arange(ru.RATINGS)) / (scale - 1)
        return _ratio(numerator, self.responses)

    def told(self) -> dict[str, int]:
        return {name: self._sum(code) for code, name in enumerate(ru.TOLD_ORDER)}

    def told_rate(self) -> float | None:
        told = self.told()
        return _ratio(told["yes"], told["yes"] + told["no"])

    def group(self, code: int) -> dict[str, Any]:
        n, top = self._sum(code), self._sum(code, True)
        interval = wilson(top, n)
        return {"responses": n, "csat": _ratio(top, n),
                "ci95": list(interval) if interval is not None else None}

    def difference(self) -> dict[str, Any]:
        yes, no = ru.TOLD_CODE["yes"], ru.TOLD_CODE["no"]
        n1, s1 = self._sum(yes), self._sum(yes, True)
        n2, s2 = self._sum(no), self._sum(no, True)
        interval = newcombe(s1, n1, s2, n2)
        return {"value": s1 / n1 - s2 / n2 if n1 and n2 else None,
                "ci95": list(interval) if interval is not None else None}

    def ratings(self) -> dict[str, dict[str, int]]:
        out = {}
        for scale in sorted(self.by_scale):
            per_rating = self.by_scale[scale].reshape(len(ru.TOLD_ORDER), ru.RATINGS).sum(0)
            if per_rating.sum():
                out[str(scale)] = {str(r): int(per_rating[r - 1]) for r in range(1, scale + 1)}
        return out

    def raw_means(self) -> dict[str, float]:
        out = {}
        for scale in sorted(self.by_scale):
            per_rating = self.by_scale[scale].reshape(len(ru.TOLD_ORDER), ru.RATINGS).sum(0)
            n = int(per_rating.sum())
            if n:
                out[str(scale)] = int(per_rating @ np.arange(1, ru.RATINGS + 1)) / n
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "responses": self.responses, "csat": self.csat(),
            "mean_rating": self.mean_normalised(), "told_next_rate": self.told_rate(),
            "csat_told": self.group(ru.TOLD_CODE["yes"])["csat"],
            "csat_not_told": self.group(ru.TOLD_CODE["no"])["csat"],
        }


def _rank(entries: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return sorted(entries, key=lambda e: (e["csat"] is None, -(e["csat"] or 0.0),
                                          -e["responses"], str(e[key])))


def _iso(unix: int | None) -> str | None:
    if unix is None:
        return None
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def figures(sel: Selection, tally: Tally, generated_at: int | None = None) -> dict[str, Any]:
    """The report dict from a tally; `generated_at` (unix seconds) is the moment it says it
    was made, null when not given (so that two reports of the same data are equal)."""
    total = _Counts()
    unknown_total = 0
    rapid = closed = 0
    per_device = []
    per_location: dict[str | None, tuple[_Counts, list[int]]] = {}
    per_site = {path: (_Counts(), [0]) for path, _ in sel.below}
    for d in sel.devices:
        counts = _Counts()
        unknown_here = 0
        sources = [tally.timed.get(d.device_id, {})]
        if not sel.ranged:
            sources.append(tally.unknown.get(d.device_id, {}))
        for source in sources:
            for (scale, kind), vec in source.items():
                n = int(vec.sum())
                rapid += n if kind & 1 else 0
                closed += n if kind & 2 else 0
                if kind in sel.kinds:
                    counts.add(scale, vec)
        for (kind, unknown), n in tally.uncounted.get(d.device_id, {}).items():
            if not unknown or not sel.ranged:
                rapid += n if kind & 1 else 0
                closed += n if kind & 2 else 0
        for (_, kind), vec in tally.unknown.get(d.device_id, {}).items():
            if kind in sel.kinds:
                unknown_here += int(vec.sum())
        for scale, vec in counts.by_scale.items():
            total.add(scale, vec)
        unknown_total += unknown_here
        per_device.append({"device_id": d.device_id, "name": d.name, "location": d.location,
                           "time_zone": d.zone, "site": d.site, **counts.summary(),
                           "time_unknown": unknown_here})
        groups = [per_location.setdefault(d.location, (_Counts(), [0]))]
        if sel.below and d.site is not None:
            groups.append(per_site[site_rules.child_towards(sel.site, d.site)])
        for place, unknown_there in groups:
            for scale, vec in counts.by_scale.items():
                place.add(scale, vec)
            unknown_there[0] += unknown_here
    locations = [{"location": place, **c.summary(), "time_unknown": u[0]}
                 for place, (c, u) in per_location.items()]
    kinds = dict(sel.below)
    sites = [{"site": path, "kind": kinds[path], **c.summary(), "time_unknown": u[0]}
             for path, (c, u) in per_site.items()]
    heat_n, heat_top = tally.heat[0], tally.heat[1]
    days = tally.trend_days()
    trend_by = trend_periods.granularity(days[0][0], days[-1][0]) if days else "day"
    return {
        "filters": {"since": _iso(sel.since), "until": _iso(sel.until), "device": sel.device,
                    "location": sel.location, "site": sel.site,
                    "include_flagged": sel.include_flagged},
        "responses": total.responses,
        "ratings": total.ratings(),
        "mean_rating": {"normalised": total.mean_normalised(), "raw": total.raw_means()},
        "csat": total.csat(),
        "told_next": total.told(),
        "told_next_rate": total.told_rate(),
        "csat_told": total.group(ru.TOLD_CODE["yes"]),
        "csat_not_told": total.group(ru.TOLD_CODE["no"]),
        "csat_difference": total.difference(),
        "devices": _rank(per_device, "device_id"),
        "locations": _rank(locations, "location"),
        "sites": _rank(sites, "site"),
        "heatmap": {
            "weekdays": WEEKDAYS, "hours": list(range(24)),
            "responses": heat_n.tolist(),
            "csat": [[_ratio(int(t), int(n)) for t, n in zip(trow, nrow, strict=True)]
                     for trow, nrow in zip(heat_top, heat_n, strict=True)],
        },
        "trend": [{"date": d.isoformat(), **sums.figures()} for d, sums in days],
        "flagged": {"rapid": rapid, "closed": closed, "included": sel.include_flagged},
        "time_unknown": unknown_total,
        "clock_corrected": _clock_corrected(sel, tally),
        "generated_at": _iso(generated_at),
        "covered": {"first_day": days[0][0].isoformat() if days else None,
                    "last_day": days[-1][0].isoformat() if days else None,
                    "days": len(days)},
        "trend_by": trend_by,
        "trend_periods": trend_periods.periods(days, trend_by),
    }


def _clock_corrected(sel: Selection, tally: Tally) -> dict[str, Any]:
    devices = [{"device_id": d.device_id, "name": d.name,
                "responses": tally.clock[d.device_id][0],
                "largest_s": tally.clock[d.device_id][1]}
               for d in sel.devices if tally.clock.get(d.device_id, [0])[0]]
    devices.sort(key=lambda e: (-e["responses"], e["device_id"]))
    return {"tolerance_s": CLOCK_TOLERANCE_S,
            "responses": sum(e["responses"] for e in devices),
            "largest_s": max((e["largest_s"] for e in devices), default=None),
            "devices": devices}


def _span(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = round(seconds / size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


def clock_corrected_line(rep: dict[str, Any]) -> str | None:
    """The one line the table and the HTML show when anchors contradicted device stamps;
    None when they never did in the selection."""
    clock = rep.get("clock_corrected") or {}
    n, devices = clock.get("responses", 0), clock.get("devices") or []
    if not n or not devices:
        return None
    what = f"{n:,} response{'s' if n != 1 else ''}"
    off = ("" if n == 1 else "up to ") + _span(clock["largest_s"])
    if len(devices) == 1:
        whose, clocks = f"of {devices[0]['device_id']}", "the device clock"
    else:
        named = ", ".join(f"{e['device_id']} {e['responses']:,}" for e in devices[:3])
        more = f" and {len(devices) - 3} more" if len(devices) > 3 else ""
        whose, clocks = f"of {len(devices)} devices ({named}{more})", "their device clocks"
    return (f"clock corrected: {what} {whose} {'was' if n == 1 else 'were'} stamped {off} "
            f"off by {clocks}; placed by the host's time anchors")


def ranking_titles(rep: dict[str, Any]) -> tuple[str, str]:
    """(the devices' title, the sites' title): under --site, what the level below is."""
    site = rep["filters"].get("site")
    if site is None:
        return "Devices", "Sites"
    kinds = frozenset(row["kind"] for row in rep.get("sites", []))
    level = {frozenset({"region"}): "Regions", frozenset({"store"}): "Stores"}.get(kinds,
                                                                                  "Sites")
    return f"Kiosks in {site}", f"{level} of {site}"


# -- one row per response -------------------------------------------------------------------

CSV_COLUMNS = ("local_time", "device_id", "location", "rating", "scale", "told_next",
               "flags", "seq", "earliest", "latest", "site")


def write_csv(store: Store, out: TextIO, *,
              since: str | int | datetime | None = None,
              until: str | int | datetime | None = None, device: str | None = None,
              location: str | None = None, include_flagged: bool = False,
              site: str | None = None) -> int:
    """Stream the selected responses as CSV (local time ISO with offset; empty when the
    time is unknown, and then `earliest` and `latest` give the interval its boot's
    neighbours allow, when there is one); returns the number of rows. With a range, a
    response without a time is in it when it is placed in a day (as in the report) and its
    whole interval lies inside the range."""
    import csv

    sel = select(store, since=since, until=until, device=device, location=location,
                 include_flagged=include_flagged, site=site)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    written = 0
    for d in sel.devices:
        zone = zone_of(d.zone)
        rows = store.export_rows(d.device_id, sel.since, sel.until,
                                 include_flagged=sel.include_flagged)
        clock = zone_clock(d.zone)
        for wall, earliest, latest, rating, scale, told_next, rapid, closed, seq in rows:
            if (sel.ranged and wall is None
                    and placed(earliest, latest, clock.local_one) is None):
                continue  # not placed in a day: outside every range, as in the report
            local, low, high = (
                "" if value is None else datetime.fromtimestamp(value, zone).isoformat()
                for value in (wall, earliest, latest))
            flags = ";".join(name for name, on in (("rapid", rapid), ("closed", closed))
                             if on)
            writer.writerow((local, d.device_id, d.location or "", rating, scale, told_next,
                             flags, seq, low, high, d.site or ""))
            written += 1
    return written
