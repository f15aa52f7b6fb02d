"""Notifications (issue 17): the alert rules people set per site, the log of what was sent
for each ongoing problem, and the lease that lets one process at a time send. The rules
every engine shares are here; each engine keeps the rows (store/<engine>/notify.py).

A rule applies to the kiosks of its site's subtree. Its kind is "negative" (a burst of
unhappy customers, deskpulse.reports.alerts) or a device-health kind ("silent", "flash",
"refused"; deskpulse.reports.health). It sends to one or more apprise URLs.

The log is keyed by (rule, destination, alert key): a destination that failed is retried
at the next pass without repeating what the others already received. A row says when the
problem was first seen, when its opening (or last reminder) reached the destination (None:
not yet) and when it was seen gone (None: still going on); it goes once its resolution has
been delivered.

The digest record says which weekly digest (ISO week, recipient, site) was delivered when,
so that neither a second run nor a second server sends it again (deskpulse.notify.weekly).
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from deskpulse.errors import DeskPulseError

if TYPE_CHECKING:
    from deskpulse.store.base import Store

NEGATIVE = "negative"
HEALTH_KINDS = ("silent", "flash", "refused")
KINDS = (NEGATIVE, *HEALTH_KINDS)
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
NOTIFY_LEASE = "notify"
"""The lease every notification pass takes (serve --notify-every, notify run)."""


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One rule. `thresholds` holds the kind's settings (negative: window_s, negative,
    minimum); `remind_s` repeats an ongoing problem after that long (None: never)."""

    name: str
    site: str
    kind: str
    destinations: tuple[str, ...]
    thresholds: Mapping[str, Any] = field(default_factory=dict)
    remind_s: int | None = None


@dataclass(slots=True)
class LogEntry:
    """What one destination was told about one problem of one rule."""

    rule: str
    destination: str  # destination_id() of the URL
    key: str
    opened: int  # unix seconds it was first seen
    notified: int | None  # when its opening (or last reminder) was delivered
    resolved: int | None  # when it was seen gone
    summary: str  # the alert as the last message told it


@dataclass(frozen=True, slots=True)
class SentDigest:
    """A weekly digest delivered: its ISO week ("2026-W48"), recipient's email, site, and
    when (unix seconds)."""

    week: str
    recipient: str
    site: str
    sent: int


def destination_id(url: str) -> str:
    """A short stable name of a destination URL for the log: the URL's secrets (an SMTP
    password) are never stored twice, and a rule's URLs stay apart."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise DeskPulseError(
            f"rule name {name!r}: use 1-63 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit")
    return name


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise DeskPulseError(f"alert kind {kind!r}: choose one of {', '.join(KINDS)}")
    return kind


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def rule_row(rule: AlertRule) -> tuple[str, str, str, str, str, int | None]:
    """(name, site, kind, thresholds JSON, destinations JSON, remind_s) as stored."""
    return (rule.name, rule.site, rule.kind, dumps(dict(rule.thresholds)),
            dumps(list(rule.destinations)), rule.remind_s)


def rule_of(row: Iterable[Any]) -> AlertRule:
    name, site, kind, thresholds, destinations, remind_s = row
    return AlertRule(name, site, kind, tuple(_json(destinations)), _json(thresholds),
                     None if remind_s is None else int(remind_s))


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def duplicate_rule(name: str) -> DeskPulseError:
    return DeskPulseError(f"an alert rule named {name} exists already: remove it first, or "
                          "choose another name")


def no_rule(name: str) -> DeskPulseError:
    return DeskPulseError(f"no alert rule named {name}: `deskpulse notify rules list` shows "
                          "them")


class NotifyQueries(Protocol):
    """What an engine's notify module offers (store/sqlite/notify.py,
    store/postgres/notify.py), each function inside the caller's transaction."""

    def rules(self, conn: Any) -> list[AlertRule]: ...
    def site_exists(self, conn: Any, path: str) -> bool: ...
    def add_rule(self, conn: Any, rule: AlertRule) -> bool: ...
    def remove_rule(self, conn: Any, name: str) -> bool: ...
    def log(self, conn: Any) -> list[LogEntry]: ...
    def write_log(self, conn: Any, entries: Iterable[LogEntry]) -> None: ...
    def forget_log(self, conn: Any, entries: Iterable[LogEntry]) -> None: ...
    def take_lease(self, conn: Any, name: str, owner: str, now: int, until: int) -> bool: ...
    def release_lease(self, conn: Any, name: str, owner: str) -> None: ...
    def sent_digests(self, conn: Any, weeks: Sequence[str] | None) -> list[SentDigest]: ...
    def record_digests(self, conn: Any, entries: Iterable[SentDigest]) -> None: ...


class NotifyMethods(abc.ABC):
    """The notification methods of a Store, the same on every engine. An engine mixes
    this in before Store and says how it reads and how it writes in one transaction."""

    connection: Any
    notify_queries: ClassVar[NotifyQueries]

    @abc.abstractmethod
    def _notify_read(self) -> contextlib.AbstractContextManager[None]:
        """Around a read: the engine's errors become StoreError sentences."""

    @abc.abstractmethod
    def _notify_write(self) -> contextlib.AbstractContextManager[None]:
        """Around a change: one transaction that holds the write lock from its start (so a
        lease is taken by one process only); errors as in `_notify_read`."""

    def alert_rules(self) -> list[AlertRule]:
        """Every alert rule, by name."""
        with self._notify_read():
            return self.notify_queries.rules(self.connection)

    def add_alert_rule(self, rule: AlertRule) -> None:
        """Store a new rule (checked by the caller: deskpulse.notify.rules); its site must
        exist and its name be new."""
        check_name(rule.name)
        check_kind(rule.kind)
        with self._notify_write():
            if not self.notify_queries.site_exists(self.connection, rule.site):
                from deskpulse.store.sites import no_site

                raise no_site(rule.site)
            if not self.notify_queries.add_rule(self.connection, rule):
                raise duplicate_rule(rule.name)

    def remove_alert_rule(self, name: str) -> None:
        """Remove a rule and what its log remembers."""
        with self._notify_write():
            if not self.notify_queries.remove_rule(self.connection, name):
                raise no_rule(name)

    def notify_log(self) -> list[LogEntry]:
        """Every log row, by rule, destination and key."""
        with self._notify_read():
            return self.notify_queries.log(self.connection)

    def save_notify_log(self, entries: Iterable[LogEntry], *,
                        forget: Iterable[LogEntry] = ()) -> None:
        """Write (insert or replace) these log rows and remove those of `forget`, at once."""
        with self._notify_write():
            self.notify_queries.write_log(self.connection, entries)
            self.notify_queries.forget_log(self.connection, forget)

    def take_lease(self, name: str, owner: str, *, now: float, seconds: float) -> bool:
        """Hold the lease `name` for `seconds` unless another owner holds it unexpired;
        whether `owner` holds it now (a holder renews it by taking it again)."""
        with self._notify_write():
            return self.notify_queries.take_lease(self.connection, name, owner, int(now),
                                                  int(now + seconds))

    def release_lease(self, name: str, owner: str) -> None:
        """Give the lease up if `owner` holds it, so the next pass need not wait."""
        with self._notify_write():
            self.notify_queries.release_lease(self.connection, name, owner)

    def sent_digests(self, weeks: Iterable[str] | None = None) -> list[SentDigest]:
        """The digests delivered (of these ISO weeks; None: all), by week, recipient, site."""
        with self._notify_read():
            return self.notify_queries.sent_digests(
                self.connection, None if weeks is None else sorted(set(weeks)))

    def record_digests(self, entries: Iterable[SentDigest]) -> None:
        """Record these digests as delivered (a digest sent again gets its new time)."""
        with self._notify_write():
            self.notify_queries.record_digests(self.connection, entries)


# -- `deskpulse db copy` (store/copy.py) ----------------------------------------------------


def refuse_rule_conflicts(source: Store, destination: Store) -> None:
    """A rule of both stores must be the same rule (checked before anything is copied)."""
    here = {rule.name: rule for rule in destination.alert_rules()}
    for rule in source.alert_rules():
        if here.get(rule.name, rule) != rule:
            raise DeskPulseError(
                f"the alert rule {rule.name} differs in {source.location} and "
                f"{destination.location}: remove one of them first; nothing was copied")


def copy_rules(source: Store, destination: Store) -> None:
    """The source's rules the destination lacks, with their log, so that the copy goes on
    from what was already sent instead of announcing every ongoing problem again. Sites
    first: a rule names its site."""
    here = {rule.name for rule in destination.alert_rules()}
    new = [rule for rule in source.alert_rules() if rule.name not in here]
    for rule in new:
        destination.add_alert_rule(rule)
    names = {rule.name for rule in new}
    destination.save_notify_log([e for e in source.notify_log() if e.rule in names])


def copy_sent_digests(source: Store, destination: Store) -> None:
    """The digests the source delivered that the destination has no record of, so that a
    chain moving to another database does not send last week's digest again. Sites first:
    a record names its site."""
    here = {(d.week, d.recipient, d.site) for d in destination.sent_digests()}
    destination.record_digests(d for d in source.sent_digests()
                               if (d.week, d.recipient, d.site) not in here)
