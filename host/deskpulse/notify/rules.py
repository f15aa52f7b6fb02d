"""Alert rules as people give them (`deskpulse notify rules add`): checked before they are
stored, and shown back without their destinations' secrets."""

from __future__ import annotations

from collections.abc import Sequence

from deskpulse.errors import DeskPulseError
from deskpulse.notify.delivery import check_destination, safe_url
from deskpulse.reports.alerts import (
    DEFAULT_MINIMUM,
    DEFAULT_NEGATIVE,
    DEFAULT_WINDOW_S,
    check_thresholds,
    parse_window,
)
from deskpulse.store.notify import NEGATIVE, AlertRule, check_kind, check_name


def parse_duration(text: str, option: str) -> int:
    """'90s', '15m', '24h' as seconds, the error naming `option`."""
    try:
        return parse_window(text)
    except DeskPulseError:
        raise DeskPulseError(
            f"{option} {text!r} is not a duration: give a whole number and a unit s, m or "
            "h, such as 90s, 15m or 24h") from None


def make_rule(name: str, site: str, kind: str, destinations: Sequence[str], *,
              window_s: int = DEFAULT_WINDOW_S, negative: float = DEFAULT_NEGATIVE,
              minimum: int = DEFAULT_MINIMUM, remind_s: int | None = None) -> AlertRule:
    """A rule checked in full: its name, kind, thresholds, and every destination a URL
    apprise can send to. The thresholds are the negative kind's (the health kinds use
    the health module's own)."""
    check_name(name)
    check_kind(kind)
    if not destinations:
        raise DeskPulseError("give at least one destination (--to URL)")
    for url in destinations:
        check_destination(url)
    if remind_s is not None and remind_s <= 0:
        raise DeskPulseError("--remind must be longer than 0 seconds")
    thresholds: dict[str, float | int] = {}
    if kind == NEGATIVE:
        check_thresholds(window_s, negative, minimum)
        thresholds = {"window_s": window_s, "negative": negative, "minimum": minimum}
    return AlertRule(name, site, kind, tuple(dict.fromkeys(destinations)), thresholds,
                     remind_s)


def describe_rule(rule: AlertRule) -> str:
    """One line per rule for `notify rules list`; destinations in their privacy form."""
    what = rule.kind
    if rule.kind == NEGATIVE:
        t = rule.thresholds
        what += (f" (>= {100 * t['negative']:.0f}% of at least {t['minimum']} responses in "
                 f"{_span(t['window_s'])})")
    remind = f", reminder every {_span(rule.remind_s)}" if rule.remind_s else ""
    to = ", ".join(safe_url(url) for url in rule.destinations)
    return f"{rule.name}: {what} at {rule.site}{remind} -> {to}"


def _span(seconds: int) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
