"""Alert windows: bursts of unhappy customers at one kiosk (issue 6, docs/report.md "Alerts").

Each response closes a window: itself and the device's responses of the `window_s` seconds
before it (`t_end - window_s < t <= t_end`). A window qualifies when it holds at least
`minimum` responses and the share of negative ones (the two lowest faces, ratings 1 and 2
on every scale) reached `negative`. Qualifying windows that share a response are merged
into one alert period, reported from its first response to its last.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo
from itertools import chain, groupby
from operator import itemgetter
from typing import Any

from deskpulse.errors import DeskPulseError
from deskpulse.store import sites as site_rules
from deskpulse.store.base import Store
from deskpulse.timezones import device_zone, host_time_zone, require_zone, zone_of

DEFAULT_WINDOW_S = 900
DEFAULT_NEGATIVE = 0.5
DEFAULT_MINIMUM = 4
NEGATIVE_RATINGS = (1, 2)  # the two lowest faces, whatever the scale

TimeBound = int | float | datetime | str | None


# -- parsing (shared by the command line and the library) ---------------------------------


_DURATION = re.compile(r"(\d+)\s*([smh])", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


def parse_window(text: str) -> int:
    """'90s', '15m' or '2h' as seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise DeskPulseError(
            f"--window {text!r} is not a duration: give a whole number and a unit s, m or h, "
            "such as 90s, 15m or 2h")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    if seconds <= 0:
        raise DeskPulseError(f"--window {text!r} is empty: give at least one second")
    return seconds


def parse_bound(value: TimeBound, option: str) -> float | None:
    """A --since/--until bound as unix seconds, read as the report reads it."""
    if value is None:
        return None
    if isinstance(value, str):
        from deskpulse.reports.figures import parse_when  # not at the top: report loads numpy

        return parse_when(value, option)
    if isinstance(value, datetime):
        # A naive datetime is the host's local time, like a date-time without an offset.
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone_of(host_time_zone()))
        return value.timestamp()
    return float(value)


def check_thresholds(window_s: float, negative: float, minimum: int) -> None:
    if not window_s > 0:
        raise DeskPulseError(f"the alert window must be longer than 0 seconds, not {window_s}")
    if not 0 < negative <= 1:
        raise DeskPulseError(
            f"--negative {negative} is not a share: give a number above 0 and at most 1, "
            "such as 0.5 for half of the responses")
    if minimum < 1:
        raise DeskPulseError(f"--min {minimum} must be at least 1 response")


# -- finding ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Period:
    """Responses first..last (positions in the device's time order) of merged windows."""

    first: int
    first_wall: int
    negatives_before: int  # negatives among the device's responses before `first`
    last: int
    last_wall: int
    negatives_through_last: int
    peak_share: float


_END = (None, None, 0)  # after a device's last response: closes its last window


def _periods(rows: Iterable[tuple[Any, int, int]], window_s: float, negative: float,
             minimum: int) -> Iterator[_Period]:
    """Alert periods of one device's (device_id, wall, is_negative) rows in time order.

    The window is kept as two deques (its walls, and the negatives before each of its
    responses) so a window's count and negatives cost no scan; this loop sees every row
    of the database."""
    # `seen`: the responses taken in so far, so `seen - 1` is the last one's position.
    walls: deque[int] = deque()
    negatives_before: deque[int] = deque()
    negatives = 0  # among the device's responses so far
    period: _Period | None = None
    pending_wall: int | None = None
    for seen, (_, wall, is_negative) in enumerate(chain(rows, (_END,))):
        # Responses of the same second belong to every window that holds one of them: a
        # window closes only once the last response of its second is in.
        if wall != pending_wall and pending_wall is not None:
            while walls[0] <= pending_wall - window_s:
                walls.popleft()
                negatives_before.popleft()
            count = len(walls)
            if count >= minimum:
                share = (negatives - negatives_before[0]) / count
                if share >= negative:
                    first = seen - count  # position of the window's first response
                    if period is not None and first <= period.last:
                        period.last, period.last_wall = seen - 1, pending_wall
                        period.negatives_through_last = negatives
                        period.peak_share = max(period.peak_share, share)
                    else:
                        if period is not None:
                            yield period
                        period = _Period(first, walls[0], negatives_before[0], seen - 1,
                                         pending_wall, negatives, share)
        if wall is None:
            break
        walls.append(wall)
        negatives_before.append(negatives)
        negatives += is_negative
        pending_wall = wall
    if period is not None:
        yield period


def local_iso(wall: int, zone: tzinfo) -> str:
    """Unix seconds as ISO local time with the zone's offset at that moment."""
    return datetime.fromtimestamp(wall, zone).isoformat()


def find_alerts(
    store: Store,
    *,
    window_s: float = DEFAULT_WINDOW_S,
    negative: float = DEFAULT_NEGATIVE,
    minimum: int = DEFAULT_MINIMUM,
    since: TimeBound = None,
    until: TimeBound = None,
    device: str | None = None,
    location: str | None = None,
    include_flagged: bool = False,
    site: str | None = None,
) -> list[dict[str, Any]]:
    """Alert periods per device (by device id, then time); see the module docstring.

    `since`/`until` select `since <= wall < until` and are unix seconds, datetimes (naive
    ones are host local time) or ISO text as the report reads it (`report.parse_when`).
    `site` keeps the kiosks in that site (any level). Times are placed in the device's
    zone, else its sites', else the host's, as in the report. Responses with an unknown
    time are left out, and flagged ones (rapid, closed) unless `include_flagged`."""
    check_thresholds(window_s, negative, minimum)
    low, high = parse_bound(since, "--since"), parse_bound(until, "--until")
    tree = {s.path: s for s in store.sites()}
    placed = store.kiosk_sites()
    if site is not None and site not in tree:
        raise site_rules.no_site(site)

    # With a site, its kiosks in one read, each kiosk's range from the (device, time)
    # index (a read of every response by time alone would scan them all).
    rows = store.negative_marks(
        since=low, until=high, device_id=device, location=location,
        include_flagged=include_flagged, negative_ratings=NEGATIVE_RATINGS,
        device_ids=None if site is None else [
            d for d, where in placed.items() if site_rules.is_under(where, site)])
    # The device's facts are read once per device, not joined to each of its responses.
    facts = {f.device_id: (f.name, f.location, f.time_zone) for f in store.device_facts()}
    zones = site_rules.kiosk_zones(((d, own) for d, (_, _, own) in facts.items()), placed,
                                   tree)

    host_zone = host_time_zone()
    alerts: list[dict[str, Any]] = []
    for device_id, rows_of_device in groupby(rows, key=itemgetter(0)):
        name, place, _ = facts[device_id]
        require_zone(device_id, zones[device_id])
        zone = zone_of(device_zone(zones[device_id], host_zone))
        for period in _periods(rows_of_device, window_s, negative, minimum):
            count = period.last - period.first + 1
            negatives = period.negatives_through_last - period.negatives_before
            alerts.append({
                "device_id": device_id,
                "name": name,
                "location": place,
                "site": placed.get(device_id),
                "start": local_iso(period.first_wall, zone),
                "end": local_iso(period.last_wall, zone),
                "start_utc": period.first_wall,
                "end_utc": period.last_wall,
                "responses": count,
                "negative": negatives,
                "share": negatives / count,
                "peak_share": period.peak_share,
            })
    return alerts


RECENT_S = 7 * 86400  # an alert is current when it ended this close to the range's end


def range_end(until: int | None, generated_at: int | None) -> int | None:
    """The end of a report's range as unix seconds: its --until, or the moment it was
    made when that is earlier (or there is no --until); None when neither is known."""
    known = [t for t in (until, generated_at) if t is not None]
    return min(known) if known else None


def current_and_earlier(alerts: list[dict[str, Any]], end: int | None,
                        recent_s: int = RECENT_S
                        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The alerts still current at `end` (their last response within `recent_s` before
    it), and the earlier ones: the history of a long range, which must not mark a kiosk
    in alert for ever. Without an end, the last alert's end stands for it."""
    last = max((a["end_utc"] for a in alerts), default=0) if end is None else end
    current = [a for a in alerts if a["end_utc"] > last - recent_s]
    return current, [a for a in alerts if a["end_utc"] <= last - recent_s]


def rank_below(store: Store, alerts: list[dict[str, Any]], site: str) -> list[dict[str, Any]]:
    """The level below `site` ranked by its alert periods, then the negative responses in
    them: its sites ({"site", "kind", ...}), or for a store its kiosks ({"device_id", ...}).
    Each row also counts the responses of its periods; rows without alerts stay, last."""
    tree = {s.path: s for s in store.sites()}
    if site not in tree:
        raise site_rules.no_site(site)
    below = site_rules.children(tree, site)
    rows: dict[str, dict[str, Any]]
    if below:
        rows = {s.path: {"site": s.path, "kind": s.kind} for s in below}
    else:
        rows = {d: {"device_id": d} for d, store_path in sorted(store.kiosk_sites().items())
                if store_path == site}
    for row in rows.values():
        row.update(alerts=0, responses=0, negative=0)
    for alert in alerts:
        where = alert.get("site")
        if where is None or not site_rules.is_under(where, site):
            continue
        row = rows[site_rules.child_towards(site, where) if below else alert["device_id"]]
        row["alerts"] += 1
        row["responses"] += alert["responses"]
        row["negative"] += alert["negative"]
    return sorted(rows.values(), key=lambda r: (-r["alerts"], -r["negative"],
                                                r.get("site") or r["device_id"]))


def format_ranking(ranking: list[dict[str, Any]]) -> str:
    """The rows of `rank_below`, one a line."""
    lines = []
    for row in ranking:
        what = "no alerts"
        if row["alerts"]:
            what = (f"{row['alerts']} alert{'s' if row['alerts'] != 1 else ''}, "
                    f"{row['negative']} negative of {row['responses']} responses in them")
        lines.append(f"{row.get('site') or row['device_id']}: {what}")
    return "\n".join(lines)


def format_alerts(alerts: list[dict[str, Any]]) -> str:
    """A plain table for the terminal, one line per alert period."""
    if not alerts:
        return "no alerts in this selection"
    header = ("device", "name", "location", "start", "end", "responses", "negative",
              "share")
    lines = [header] + [
        (a["device_id"], a["name"] or "-", a["location"] or "-", a["start"], a["end"],
         str(a["responses"]), str(a["negative"]), f"{100 * a['share']:.0f}%")
        for a in alerts]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    numeric = {5, 6, 7}
    return "\n".join(
        "  ".join(cell.rjust(w) if i in numeric else cell.ljust(w)
                  for i, (cell, w) in enumerate(zip(line, widths, strict=True))).rstrip()
        for line in lines)
