"""When a response without a time can only have happened: the interval its neighbours give.

A response of a boot that never got an anchor (docs/time.md) has no time of its own, but
its boot lies between others: it began after the last moment known of an earlier boot
whose time is known, and it ended before a later such boot began. Boots run one after
another, each at least as long as the highest uptime seen in it, and uptime counts
seconds from the start of its boot, so for a response at `uptime_s` of boot `b`:

    earliest = shift(p) + reach(p) + reach of the boots between p and b + uptime_s
    latest   = shift(n) - reach of the boots between b and n - (reach(b) - uptime_s)

where `p` is the nearest earlier boot with an anchor and `n` the nearest later one,
`shift` is a boot's `wall - uptime_s` (its start) and `reach` the highest uptime known of
a boot (from its responses and anchors). The host also received the response: `latest`
is never after the commit of the sync that brought it. Without an earlier anchored boot
there is no earliest time and no interval. An interval whose ends cross (a PC clock that
was wrong at one of the settings) says nothing trustworthy either: none is kept.

The reports then place a response in a local day (or hour) only when its whole interval
lies inside it (store/rollups.py); this module computes the intervals, for any engine.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple


class Unplaced(NamedTuple):
    """A response without a time: its key, boot, uptime and when the host received it."""

    seq: int
    boot: int
    uptime_s: int
    received_at: int


def neighbours(anchored: Iterable[int], boots: Iterable[int]) -> set[int]:
    """The boots whose reach the intervals of `boots` need: each one's nearest anchored
    boots on either side and every boot from the one to the other."""
    order = sorted(anchored)
    needed: set[int] = set()
    for boot in set(boots):
        at = bisect.bisect_left(order, boot)
        low = order[at - 1] if at > 0 else boot
        high = order[at] if at < len(order) else boot
        needed.update(range(low, high + 1))
    return needed


def intervals(shifts: Mapping[int, int], reach: Mapping[int, int],
              unplaced: Iterable[Unplaced]) -> dict[int, tuple[int, int] | None]:
    """(earliest, latest) UTC seconds for each response by seq, or None without one.

    `shifts`: the start (`wall - uptime_s` of the latest anchor) of every anchored boot;
    `reach`: the highest known uptime of the boots that `neighbours` named (a boot not in
    it counts as lasting at least 0 s)."""
    order = sorted(shifts)
    out: dict[int, tuple[int, int] | None] = {}
    for r in unplaced:
        at = bisect.bisect_left(order, r.boot)
        if at > 0:
            before = order[at - 1]
            earliest = (shifts[before] + reach.get(before, 0)
                        + sum(reach.get(k, 0) for k in range(before + 1, r.boot)) + r.uptime_s)
        else:
            earliest = None
        latest = r.received_at
        if at < len(order):
            after = order[at]
            latest = min(latest, shifts[after]
                         - sum(reach.get(k, 0) for k in range(r.boot + 1, after))
                         - (max(reach.get(r.boot, 0), r.uptime_s) - r.uptime_s))
        out[r.seq] = (earliest, latest) if earliest is not None and earliest <= latest else None
    return out


def changed_bounds(shifts: Mapping[int, int], reach: Mapping[int, int],
                   rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The stored unplaced responses whose interval changes, as (seq, old low, old high,
    new low, new high, *rest) from rows of (seq, boot, uptime_s, device_wall, low, high,
    *rest): what each engine rewrites, and takes out of and into the rollups."""
    rows = list(rows)
    found = intervals(shifts, reach, [Unplaced(*row[:4]) for row in rows])
    moved = []
    for seq, _, _, _, low, high, *rest in rows:
        now = found[seq] or (None, None)
        if now != (low, high):
            moved.append((seq, low, high, *now, *rest))
    return moved
