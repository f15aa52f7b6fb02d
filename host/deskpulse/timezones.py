"""Local time for reports and rollups: which zone a device lives in, and fast conversion.

A device's zone is `devices.time_zone` (an IANA name) when set, else the host's. The
host's zone is named too (from $TZ or the /etc/localtime link), so that rollups can record
the zone they were built with and be rebuilt when it changes.

Converting millions of instants one by one through zoneinfo is slow, so `ZoneClock`
keeps, per zone, a table of the instants at which the UTC offset changes and the offset
from each on, and converts a whole array of instants with one `searchsorted`. The table is
built from zoneinfo itself, a chunk of about a year at a time when first needed: the offset
is sampled once a day and each change is narrowed to its exact second by bisection. That
finds every change as long as a zone never changes its offset twice within one day (the
closest two changes in tzdata between 1900 and 2100 are four days apart: Freetown, 1939).
Instants outside 1900-2100 are converted one by one by zoneinfo.
"""

from __future__ import annotations

import bisect
import functools
import os
import time
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from deskpulse.errors import DeskPulseError

if TYPE_CHECKING:
    import numpy as np

FALLBACK_ZONE = "UTC"


@functools.lru_cache(maxsize=256)
def zone_info(key: str) -> ZoneInfo | None:
    """The zone named `key`, or None when no IANA zone has that name."""
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def host_time_zone() -> str:
    """The IANA name of the host's zone: $TZ when it names one, else the zone the
    /etc/localtime link points into, else UTC."""
    explicit = os.environ.get("TZ", "").removeprefix(":")
    if explicit and zone_info(explicit) is not None:
        return explicit
    return _system_zone(int(time.monotonic() // _SYSTEM_ZONE_TTL_S))


_SYSTEM_ZONE_TTL_S = 60
"""Every sync asks for the host's zone; resolving the link costs a few system calls, and
an administrator's change of it may take a minute to be noticed."""


@functools.lru_cache(maxsize=1)
def _system_zone(period: int) -> str:
    target = os.path.realpath("/etc/localtime")
    if "/zoneinfo/" in target:
        key = target.split("/zoneinfo/", 1)[1]
        if zone_info(key) is not None:
            return key
    return FALLBACK_ZONE


def device_zone(configured: str | None, host_zone: str) -> str:
    """The zone a device's responses are placed in; a name that is no IANA zone falls
    back to the host's (ingest must never fail over it; reports refuse it, see
    `require_zone`)."""
    if configured and zone_info(configured) is not None:
        return configured
    return host_zone


def require_zone(device_id: str, configured: str | None) -> None:
    if configured and zone_info(configured) is None:
        raise DeskPulseError(
            f"device {device_id} has the time zone {configured!r}, which is not an IANA time "
            f"zone name: set one such as Europe/Berlin with `deskpulse devices set "
            f"{device_id} --time-zone ZONE`")


def zone_of(key: str) -> tzinfo:
    found = zone_info(key)
    if found is None:
        raise DeskPulseError(f"{key!r} is not an IANA time zone name")
    return found


TABLE_FIRST = -2_208_988_800
"""1900-01-01T00:00Z: instants before it are converted one by one (no table is built)."""
TABLE_END = 4_102_444_800
"""2100-01-01T00:00Z: instants from it on are converted one by one."""
_CHUNK_BITS = 25  # the table is built in chunks of 2**25 s (388 days) of UTC time
_SAMPLE_S = 86_400  # once a day: shorter than any gap between two changes of a zone


class ZoneClock:
    """UTC instants to local seconds (`wall + utcoffset`) in one zone, from a table of the
    zone's offset changes (built a chunk at a time, when first needed)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.zone = zone_of(key)
        # chunk index -> the chunk's first second and every change in it, and the offset
        # from each of those on: as lists for one instant (bisect) and as arrays for many
        # (searchsorted)
        self._chunks: dict[int, tuple[list[int], list[int], np.ndarray, np.ndarray]] = {}

    def offset(self, wall: int) -> int:
        """The UTC offset at `wall`, asked of zoneinfo."""
        offset = datetime.fromtimestamp(wall, self.zone).utcoffset()
        return int(offset.total_seconds()) if offset is not None else 0

    def _chunk(self, index: int) -> tuple[list[int], list[int], np.ndarray, np.ndarray]:
        found = self._chunks.get(index)
        if found is None:
            import numpy as np

            starts, offsets = self._changes(index << _CHUNK_BITS, (index + 1) << _CHUNK_BITS)
            found = (starts, offsets, np.array(starts, np.int64), np.array(offsets, np.int64))
            self._chunks[index] = found
        return found

    def _changes(self, first: int, end: int) -> tuple[list[int], list[int]]:
        """`first` and each second in [first, end) at which the offset changes, with the
        offset from each on."""
        starts, offsets = [first], [self.offset(first)]
        at = first
        while at < end - 1:
            probe = min(at + _SAMPLE_S, end - 1)
            if self.offset(probe) == offsets[-1]:
                at = probe
                continue
            low, high = at, probe  # the offset changes in (low, high]: find the second
            while high - low > 1:
                middle = (low + high) // 2
                if self.offset(middle) == offsets[-1]:
                    low = middle
                else:
                    high = middle
            starts.append(high)
            offsets.append(self.offset(high))
            at = high
        return starts, offsets

    def local_one(self, wall: int) -> int:
        if not TABLE_FIRST <= wall < TABLE_END:
            return wall + self.offset(wall)
        starts, offsets, _, _ = (self._chunks.get(wall >> _CHUNK_BITS)
                                 or self._chunk(wall >> _CHUNK_BITS))
        return wall + offsets[bisect.bisect_right(starts, wall) - 1]

    def local(self, walls: np.ndarray) -> np.ndarray:
        """Local seconds since the epoch for an int64 array of UTC instants."""
        if not len(walls):
            return walls.copy()
        import numpy as np  # here: commands that convert no arrays never load it

        chunks = walls >> _CHUNK_BITS
        inside = (walls >= TABLE_FIRST) & (walls < TABLE_END)
        local = walls.copy()
        if inside.all() and chunks.min() == chunks.max():  # a batch of one year: the usual
            _, _, starts, offsets = self._chunk(int(chunks[0]))
            return walls + offsets[np.searchsorted(starts, walls, side="right") - 1]
        for index in np.unique(chunks[inside]).tolist():
            _, _, starts, offsets = self._chunk(index)
            where = inside & (chunks == index)
            picked = walls[where]
            local[where] = picked + offsets[np.searchsorted(starts, picked, side="right") - 1]
        for i in np.flatnonzero(~inside).tolist():
            local[i] += self.offset(int(walls[i]))
        return local


@functools.lru_cache(maxsize=64)
def zone_clock(key: str) -> ZoneClock:
    return ZoneClock(key)
