"""Local time for reports and rollups: which zone a device lives in, and fast conversion.

A device's zone is `devices.time_zone` (an IANA name) when set, else the host's. The
host's zone is named too (from $TZ or the /etc/localtime link), so that rollups can record
the zone they were built with and be rebuilt when it changes.

Converting millions of instants one by one through zoneinfo is slow, so `ZoneClock`
caches the UTC offset per UTC hour. An hour in which the offset changes (a transition at
a half hour, as in St John's) is marked and its instants are converted one by one.
"""

from __future__ import annotations

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
_MIXED = -(1 << 40)  # an offset no zone has: the hour holds a transition


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


class ZoneClock:
    """UTC instants to local seconds (`wall + utcoffset`) in one zone, with the offset
    cached per UTC hour."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.zone = zone_of(key)
        self._offsets: dict[int, int] = {}

    def offset(self, wall: int) -> int:
        offset = datetime.fromtimestamp(wall, self.zone).utcoffset()
        return int(offset.total_seconds()) if offset is not None else 0

    def _hour_offset(self, hour: int) -> int:
        found = self._offsets.get(hour)
        if found is None:
            start = self.offset(hour * 3600)
            found = start if self.offset(hour * 3600 + 3599) == start else _MIXED
            self._offsets[hour] = found
        return found

    def local_one(self, wall: int) -> int:
        offset = self._hour_offset(wall // 3600)
        return wall + (offset if offset != _MIXED else self.offset(wall))

    def local(self, walls: np.ndarray) -> np.ndarray:
        """Local seconds since the epoch for an int64 array of UTC instants."""
        if not len(walls):
            return walls.copy()
        import numpy as np  # here: commands that convert no arrays never load it

        hours, where = np.unique(walls // 3600, return_inverse=True)
        offsets = np.fromiter((self._hour_offset(h) for h in hours.tolist()), np.int64,
                              len(hours))
        mixed = offsets == _MIXED
        local = walls + offsets[where]
        if mixed.any():
            for i in np.nonzero(mixed[where])[0].tolist():
                local[i] = walls[i] + self.offset(int(walls[i]))
        return local


@functools.lru_cache(maxsize=64)
def zone_clock(key: str) -> ZoneClock:
    return ZoneClock(key)
