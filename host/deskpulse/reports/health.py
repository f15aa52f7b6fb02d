"""Health alerts (issue 17): a kiosk gone silent in its opening hours, a flash filling up,
pushes refused. What a store manager needs to hear besides unhappy customers
(reports/alerts.py); the notifications send these, the dashboard shows them.

Silent kiosk: a kiosk that pushes over WiFi and has sent no response for a while is judged
against its OWN usual rate for each weekday and hour: the mean of its responses in that
local hour over the HISTORY_WEEKS weeks before its last response (from the day rollups).
The responses expected over the silent stretch, counting only its store's opening hours
(inherited from the sites above it; without any, every hour, so its own activity says
when it is busy), give the chance of such a silence by luck, exp(-expected) under a
Poisson law; below SILENCE_CHANCE it is an alert. A quiet kiosk silent for two hours is
not unusual; a busy one is. Closed hours add nothing, so a night or a closed day never
raises one. A kiosk with less than MIN_HISTORY_DAYS of history is not judged, nor one
synced over USB only (its responses arrive when someone syncs it).

Flash filling: the latest fill at or above FLASH_FULL, or rising at the last week's rate
to full within FLASH_DAYS days, or responses dropped (its log was full) in that week.

Pushes refused: a registered kiosk's pushes refused in the last REFUSED_WINDOW_S (a wrong
key is the usual case: a kiosk re-provisioned, or a key rotated without installing the
new config file).

Every alert is a dict with the keys kind ("silent", "flash", "refused"), device_id, site
(its store's path or None), since (ISO 8601, UTC), message (one line for a manager) and
key, the same string on every run while the same problem goes on (a new silence after
responses came back is a new key), for the notifications to group repeats by.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias

from deskpulse.store import health as store_health
from deskpulse.store import sites as site_rules
from deskpulse.store.base import RollupRow, Store
from deskpulse.store.health import KioskHealth
from deskpulse.store.rollups import BLOB, DAY_HOURS, DAY_WIDTH
from deskpulse.timezones import device_zone, host_time_zone, zone_clock

if TYPE_CHECKING:
    import numpy as np

SILENCE_CHANCE = 0.01
"""A silence less likely than this by luck (Poisson, at the kiosk's usual rate) alerts."""
HISTORY_WEEKS = 8
MIN_HISTORY_DAYS = 14
SILENT_GRACE_S = 600
"""The latest minutes are not judged: a kiosk holds its responses up to its push interval
(30 s by default) and retries a failed push after a backoff."""
SILENT_LOOKBACK_S = 7 * 86400
"""The stretch whose expected responses are summed at most (a longer silence is as sure)."""
FLASH_FULL = 0.8
FLASH_DAYS = 7
MIN_TREND_S = 86400
"""A fill trend needs two contacts at least this far apart."""
REFUSED_WINDOW_S = 86400
KIND_ORDER = {"silent": 0, "flash": 1, "refused": 2}
"""The kinds, the most pressing first: a silent kiosk loses customers' answers now."""

_WEEK_S = 7 * 86400
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday; Monday is 0

Rates: TypeAlias = "np.ndarray | Sequence[Sequence[float]]"
"""Usual responses per local hour: rates[weekday][hour], Monday first (7 x 24)."""
OpenWeek = tuple[tuple[int, int], ...]
"""Opening hours as [start, end) seconds of the local week (Monday 00:00 is 0)."""


# -- the judgements (pure) ----------------------------------------------------------------


def weekday(day: int) -> int:
    """The weekday (Monday 0) of a local day number (days since 1970-01-01)."""
    return (day + _EPOCH_WEEKDAY) % 7


def usual_rates(days: Mapping[int, Sequence[int]], end_day: int) -> np.ndarray | None:
    """The mean responses per weekday and hour (7 x 24) over the local days before
    `end_day`, from `days` (day number: 24 hourly counts), over at most HISTORY_WEEKS
    weeks from the first day that has any; None when that is less than MIN_HISTORY_DAYS
    (not judged)."""
    import numpy as np

    numbers = np.fromiter(days.keys(), np.int64, len(days))
    counts = np.array([list(hours) for hours in days.values()], np.float64).reshape(-1, 24)
    return rates_of(numbers, counts, end_day)


def rates_of(numbers: np.ndarray, counts: np.ndarray, end_day: int) -> np.ndarray | None:
    """`usual_rates` of day numbers and their hourly counts (one row each; a day may come
    in several rows, which add up)."""
    import numpy as np

    keep = ((numbers >= end_day - 7 * HISTORY_WEEKS) & (numbers < end_day)
            & (counts.sum(axis=1) > 0))
    if not keep.any():
        return None
    first = int(numbers[keep].min())
    if end_day - first < MIN_HISTORY_DAYS:
        return None
    weekdays = (numbers + _EPOCH_WEEKDAY) % 7
    sums = np.array([counts[keep & (weekdays == w)].sum(axis=0) for w in range(7)])
    span = end_day - first
    # Each weekday's days from the first active one on, those without responses included.
    seen = span // 7 + ((np.arange(7) - weekday(first)) % 7 < span % 7)
    return sums / seen[:, None]


@functools.lru_cache(maxsize=1024)  # a chain's stores share a few texts
def open_week(hours: str | None) -> OpenWeek | None:
    """A site's opening hours ("mon-fri 09:00-18:00, sat 10:00-13:00") as spans of the
    week; None when no hours are known (every hour counts). A span past midnight belongs
    to the day it starts; Sunday's runs on into Monday."""
    if not hours:
        return None
    out: list[tuple[int, int]] = []
    for day, spans in site_rules.parse_hours(hours).items():
        base = site_rules.DAYS.index(day) * 86400
        for span in spans:
            start_text, end_text = span.split("-")
            start, end = _seconds(start_text), _seconds(end_text)
            if end <= start:
                end += 86400
            first, last = base + start, base + end
            if last > _WEEK_S:  # Sunday night into Monday
                out.append((0, last - _WEEK_S))
                last = _WEEK_S
            out.append((first, last))
    return tuple(sorted(out))


def _seconds(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 3600 + int(minutes) * 60


def expected_responses(rates: Rates, start: int, end: int, zone: str,
                       week: OpenWeek | None) -> float:
    """The responses the kiosk usually gets in the open part of [start, end) (UTC
    seconds), quarter hour by quarter hour of UTC, each placed in its local weekday and
    hour (every zone's offset and its changes fall on quarter hours): a day that skips or
    repeats an hour (daylight saving time) counts the time that really passes. Opening
    hours count to the minute."""
    import numpy as np

    if end <= start:
        return 0.0
    quarters = np.arange(start // _QUARTER * _QUARTER, end, _QUARTER, dtype=np.int64)
    first = np.maximum(quarters, start)
    seconds = np.minimum(quarters + _QUARTER, end) - first
    local = zone_clock(zone).local(quarters)
    day_of_week = (local // 86400 + _EPOCH_WEEKDAY) % 7
    of_day = local % 86400
    per_hour = np.asarray(rates, np.float64)[day_of_week, of_day // 3600]
    if week is not None:
        of_week = day_of_week * 86400 + of_day
        open_s = _open_quarters(week)[of_week // _QUARTER] * (seconds / _QUARTER)
        for edge in {0, len(quarters) - 1}:  # a part of a quarter: minute by minute
            if seconds[edge] != _QUARTER:
                piece = int(of_week[edge] + first[edge] - quarters[edge])
                open_s[edge] = _open_seconds(week, piece, piece + int(seconds[edge]))
        seconds = open_s
    # A product and a sum, not `@`: the BLAS behind a dot product starts threads, which
    # on a busy machine cost milliseconds per call.
    return float((per_hour * seconds).sum()) / 3600


_QUARTER = 900


def _open_seconds(week: OpenWeek, start: int, end: int) -> int:
    """Seconds of [start, end) (seconds of the week, within one week) that are open."""
    return sum(max(0, min(end, last) - max(start, first)) for first, last in week)


@functools.lru_cache(maxsize=256)
def _open_quarters(week: OpenWeek) -> np.ndarray:
    """The open seconds of each quarter hour of the week (672, Monday 00:00 first)."""
    import numpy as np

    return np.array([_open_seconds(week, q * _QUARTER, (q + 1) * _QUARTER)
                     for q in range(_WEEK_S // _QUARTER)], np.float64)


def silence_expected(rates: Rates | None, last_response: int | None, now: float, zone: str,
                     week: OpenWeek | None) -> float:
    """The responses expected in the silence since `last_response` (0 when not judged)."""
    if rates is None or last_response is None:
        return 0.0
    start = max(last_response + 1, int(now) - SILENT_LOOKBACK_S)
    end = int(now) - SILENT_GRACE_S
    return expected_responses(rates, start, end, zone, week) if end > start else 0.0


def is_unlikely(expected: float) -> bool:
    """Whether no response at all, where `expected` were usual, is below SILENCE_CHANCE."""
    return math.exp(-expected) < SILENCE_CHANCE


def flash_problem(kiosk: KioskHealth) -> str | None:
    """What is wrong with the kiosk's flash, in a few words, or None."""
    fill = kiosk.fill
    problems = []
    if fill is not None and fill >= FLASH_FULL:
        problems.append(f"flash {fill:.0%} full")
    elif (fill is not None and kiosk.earlier_fill is not None and kiosk.earlier_at is not None
          and kiosk.last_contact is not None
          and kiosk.last_contact - kiosk.earlier_at >= MIN_TREND_S
          and fill > kiosk.earlier_fill):
        per_day = (fill - kiosk.earlier_fill) / (kiosk.last_contact - kiosk.earlier_at) * 86400
        days_left = (1 - fill) / per_day
        if days_left <= FLASH_DAYS:
            problems.append(f"flash {fill:.0%} full and filling: full in about "
                            f"{max(1, round(days_left))} days at this week's rate")
    if kiosk.dropped is not None and kiosk.earlier_dropped is not None \
            and kiosk.dropped > kiosk.earlier_dropped:
        lost = kiosk.dropped - kiosk.earlier_dropped
        problems.append(f"{lost} response{'s' if lost != 1 else ''} lost this week (its "
                        "log was full)")
    return "; ".join(problems) or None


# -- reading the store --------------------------------------------------------------------


def iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds")


def _hours_by_day(rows: Sequence[RollupRow]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Day rollup rows as device: (day numbers, their 24 hourly counts), a row per scale
    and kind (rates_of adds them up); the counts of all rows read in one go."""
    import numpy as np

    if not rows:
        return {}
    matrix = np.frombuffer(b"".join([row[4] for row in rows]), BLOB).reshape(
        len(rows), DAY_WIDTH)[:, DAY_HOURS:DAY_HOURS + 24].astype(np.float64)
    days = np.fromiter((row[1] for row in rows), np.int64, len(rows))
    codes: dict[str, int] = {}
    owner = np.fromiter((codes.setdefault(row[0], len(codes)) for row in rows), np.int64,
                        len(rows))
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(len(codes) + 1))
    return {device: (days[order[bounds[code]:bounds[code + 1]]],
                     matrix[order[bounds[code]:bounds[code + 1]]])
            for device, code in codes.items()}


def _label(kiosk: KioskHealth) -> str:
    return f"{kiosk.name} ({kiosk.device_id})" if kiosk.name else kiosk.device_id


def _alert(kind: str, kiosk: KioskHealth, since: float, message: str, key: str
           ) -> dict[str, Any]:
    return {"kind": kind, "device_id": kiosk.device_id, "site": kiosk.site,
            "since": iso(since), "message": message, "key": key}


def _local_text(unix: int, zone: str) -> str:
    return datetime.fromtimestamp(unix, zone_clock(zone).zone).strftime("%a %d %b %H:%M")


def health_alerts(store: Store, *, now: float, site: str | None = None,
                  health: Sequence[KioskHealth] | None = None) -> list[dict[str, Any]]:
    """The health alerts of every kiosk (in `site`'s subtree only, when given) at `now`,
    by site, kiosk and kind. A site that does not exist is an error. `health`: the
    store's kiosk_health at `now`, when the caller has read it already (the dashboard
    shows both)."""
    tree = {s.path: s for s in store.sites()}
    if site is not None and site not in tree:
        raise site_rules.no_site(site)
    if health is None:
        health = store_health.kiosk_health(store, now=now, refused_window_s=REFUSED_WINDOW_S)
    kiosks = [k for k in health
              if site is None or (k.site is not None and site_rules.is_under(k.site, site))]
    registered = store.registered_ids()
    own_zones = {f.device_id: f.time_zone for f in store.device_facts()}
    host_zone = host_time_zone()
    alerts: list[dict[str, Any]] = []
    alerts += _silent_alerts(store, kiosks, registered, tree, own_zones, host_zone, now)
    for kiosk in kiosks:
        problem = flash_problem(kiosk)
        recent = (kiosk.last_contact is not None
                  and kiosk.last_contact >= now - store_health.TREND_WINDOW_S)
        if problem and recent and kiosk.last_contact is not None:
            since = kiosk.earlier_at if kiosk.earlier_at is not None else kiosk.last_contact
            alerts.append(_alert("flash", kiosk, since, f"{_label(kiosk)}: {problem}",
                                 f"flash:{kiosk.device_id}"))
        if kiosk.device_id in registered:
            alerts += _refused_alerts(kiosk, now)
    return sorted(alerts, key=lambda a: (a["site"] or "", a["device_id"], KIND_ORDER[a["kind"]],
                                         a["key"]))


def _refused_alerts(kiosk: KioskHealth, now: float) -> list[dict[str, Any]]:
    out = []
    hours = REFUSED_WINDOW_S // 3600
    for reason, count in sorted(kiosk.refused.items()):
        text = store_health.REASON_TEXT.get(reason, reason)
        message = (f"{_label(kiosk)}: {count} push{'es' if count != 1 else ''} refused in "
                   f"the last {hours} h: {text}")
        since = kiosk.first_refused if kiosk.first_refused is not None else now
        out.append(_alert("refused", kiosk, since, message,
                          f"refused:{kiosk.device_id}:{reason}"))
    return out


def _silent_alerts(store: Store, kiosks: Sequence[KioskHealth], registered: set[str],
                   tree: Mapping[str, Any], own_zones: Mapping[str, str | None],
                   host_zone: str, now: float) -> list[dict[str, Any]]:
    """The silent kiosks: only those that push, have a response and have been silent
    past the grace are read from the rollups."""
    candidates = []
    for kiosk in kiosks:
        if (kiosk.device_id in registered and kiosk.last_push is not None
                and kiosk.last_response is not None
                and kiosk.last_response < now - SILENT_GRACE_S):
            zone_name, hours = site_rules.inherited(tree, kiosk.site)
            zone = device_zone(own_zones.get(kiosk.device_id) or zone_name, host_zone)
            last = kiosk.last_response
            end_day = zone_clock(zone).local_one(last) // 86400
            candidates.append((kiosk, last, zone, open_week(hours), end_day))
    if not candidates:
        return []
    first = min(end_day for *_, end_day in candidates) - 7 * HISTORY_WEEKS
    last_day = max(end_day for *_, end_day in candidates) - 1
    history = _hours_by_day(store.day_rollups(
        [kiosk.device_id for kiosk, *_ in candidates], first, last_day))
    out = []
    for kiosk, last, zone, week, end_day in candidates:
        found = history.get(kiosk.device_id)
        rates = rates_of(*found, end_day) if found is not None else None
        expected = silence_expected(rates, last, now, zone, week)
        if is_unlikely(expected):
            out.append(_alert(
                "silent", kiosk, last,
                f"{_label(kiosk)}: no response since {_local_text(last, zone)}, where about "
                f"{expected:.0f} are usual by now"
                + ("" if week is None else " in its opening hours"),
                f"silent:{kiosk.device_id}:{last}"))
    return out


def format_health_alerts(alerts: Sequence[Mapping[str, Any]]) -> str:
    """One line per alert for the terminal: its store, kind and message."""
    if not alerts:
        return "no kiosk needs attention"
    width = max(len(a["site"] or "-") for a in alerts)
    return "\n".join(f"{(a['site'] or '-').ljust(width)}  {a['kind']:<7}  {a['message']}"
                     for a in alerts)
