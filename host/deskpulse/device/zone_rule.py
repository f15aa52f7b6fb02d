"""A kiosk's time zone as the rule its firmware evaluates (kiosk/tzrule.py, docs/time.md).

The kiosk cannot hold the IANA database; it gets a POSIX TZ rule such as
`CET-1CEST,M3.5.0,M10.5.0/3`. That string is the footer every TZif file of version 2 or
later ends with (RFC 8536, section 3.3): it is read here from the same file zoneinfo
loads, so the rule follows the host's tzdata and no table is kept by hand.

A footer describes the zone after the file's last listed transition. For a few zones
(Africa/Casablanca's Ramadan changes) the coming months are listed transitions that no
rule expresses; the derived rule is therefore checked against zoneinfo for the coming
year, with the firmware's own evaluator, and refused when they disagree.

Every config the host writes or checks that names a zone gets its rule here
(`with_zone_rule`): `deskpulse devices add --time-zone` and `deskpulse sync --config`.
"""

from __future__ import annotations

import importlib.resources
import struct
import time
import zoneinfo
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deskpulse.errors import DeskPulseError
from deskpulse.timezones import zone_info

_HEADER = struct.Struct(">4sc15x6l")  # magic, version, 15 unused bytes, six counts
CHECK_DAYS = 400
"""How far ahead the rule is compared with zoneinfo: beyond the next config install."""
_CHECK_STEP_S = 3 * 3600  # finer than any stretch a listed transition changes


def _unknown(name: str) -> DeskPulseError:
    return DeskPulseError(f"unknown time zone {name!r}: use an IANA name such as "
                          "Europe/Paris or America/New_York")


def tzif_bytes(name: str) -> bytes:
    """The TZif file zoneinfo reads for `name`: the first hit on zoneinfo.TZPATH, else
    the tzdata package's copy."""
    if zone_info(name) is None:  # also refuses names that are paths (../, absolute)
        raise _unknown(name)
    for root in zoneinfo.TZPATH:
        candidate = Path(root) / name
        if candidate.is_file():
            return candidate.read_bytes()
    try:
        found = importlib.resources.files("tzdata").joinpath("zoneinfo", *name.split("/"))
        return found.read_bytes()
    except (ModuleNotFoundError, OSError) as exc:
        raise _unknown(name) from exc


def footer(data: bytes) -> str:
    """The POSIX TZ string at the end of a TZif file ("" when it has none)."""
    if len(data) < _HEADER.size or data[:4] != b"TZif":
        raise ValueError("not a TZif file")
    if data[4:5] < b"2":
        return ""  # version 1 files end with their data
    # The version 1 block (4-byte times) comes first, then a second header and the same
    # data with 8-byte times, then the footer.
    isut, isstd, leap, times, types, chars = _HEADER.unpack_from(data, 0)[2:]
    at = _HEADER.size + times * 5 + types * 6 + chars + leap * 8 + isstd + isut
    magic, _, isut, isstd, leap, times, types, chars = _HEADER.unpack_from(data, at)
    if magic != b"TZif":
        raise ValueError("no second TZif header")
    at += _HEADER.size + times * 9 + types * 6 + chars + leap * 12 + isstd + isut
    end = data.find(b"\n", at + 1)
    if data[at:at + 1] != b"\n" or end < 0:
        raise ValueError("no footer")
    return data[at + 1:end].decode("ascii")


def posix_rule(name: str, now: float | None = None) -> str:
    """The POSIX TZ rule the kiosk follows for the IANA zone `name`, checked against
    zoneinfo for the coming CHECK_DAYS days from `now`."""
    try:
        rule = footer(tzif_bytes(name))
    except (ValueError, UnicodeError) as exc:
        raise DeskPulseError(f"time zone {name!r}: this host's tzdata file for it cannot "
                             f"be read ({exc})") from exc
    if not rule:
        raise DeskPulseError(f"time zone {name!r} has no POSIX rule in this host's tzdata "
                             "(a version 1 file): update the tzdata package")
    from deskpulse.device.config_check import firmware_module  # imports this module

    tzrule = firmware_module("kiosk.tzrule")
    try:
        parsed = tzrule.parse(rule)
    except ValueError as exc:
        raise DeskPulseError(f"time zone {name!r}: its rule {rule!r} is beyond what the "
                             f"kiosk takes ({exc})") from exc
    zone = zone_info(name)
    start = int(time.time() if now is None else now)
    for wall in range(start, start + CHECK_DAYS * 86400, _CHECK_STEP_S):
        local = datetime.fromtimestamp(wall, zone)
        expected = local.utcoffset()
        if expected is not None and tzrule.offset(parsed, wall) != expected.total_seconds():
            when = datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%d %H:%M UTC")
            raise DeskPulseError(
                f"time zone {name!r} changes its clocks on dates no POSIX rule can "
                f"express (from {when} the kiosk would be off); leave time_zone out and "
                "set utc_offset_min, or write a tz_rule by hand")
    return rule


def with_zone_rule(raw: Any, now: float | None = None) -> Any:
    """The config `raw` with `tz_rule` set from its `time_zone`, when it names one.

    The name is the truth: a rule already in the config is replaced, so a kiosk gets the
    rules of the host's current tzdata whenever its config is installed. A config without
    a zone (or with a wrong type there, which the firmware's validator names) is returned
    unchanged, its own tz_rule if any taken as written."""
    if not isinstance(raw, dict):
        return raw
    name = raw.get("time_zone")
    if not isinstance(name, str) or not name:
        return raw
    return {**raw, "tz_rule": posix_rule(name, now)}
