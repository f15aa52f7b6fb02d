"""One notification pass: evaluate every alert rule, send what changed, update the log.

What each destination hears about an ongoing problem (docs/dashboard.md "Notifications"):
once when it opens, a reminder after the rule's `remind_s` if it still goes on, and once
when it resolves; nothing in between, however many passes see it. Everything one pass has
for one destination goes as one message listing it.

The log changes in two steps around the sending: what was seen (a new problem, one gone)
is saved first, then what was delivered. A destination that failed keeps its rows
undelivered, so the next pass sends them again, and the others are not held up. The pass
holds the lease NOTIFY_LEASE, renewed before each destination, so two processes never both
send; one that finds it held sends nothing.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from deskpulse.notify.delivery import Deliver, Message, deliver, safe_url
from deskpulse.reports.alerts import find_alerts
from deskpulse.reports.health import health_alerts as health_alerts_now
from deskpulse.store import sites as site_rules
from deskpulse.store.base import Store
from deskpulse.store.notify import (
    NEGATIVE,
    NOTIFY_LEASE,
    AlertRule,
    LogEntry,
    destination_id,
)

HealthAlerts = Callable[..., list[dict[str, Any]]]
"""deskpulse.reports.health.health_alerts(store, *, now, site=None): dicts with kind,
device_id, site, since, message, key."""

LEASE_S = 600
"""How long a pass may hold the lease between renewals: longer than one destination can
take (apprise's SMTP and HTTP time-outs), so it never lapses while a pass is sending."""

Change = Literal["opened", "reminder", "resolved"]
_HEADINGS: dict[Change, str] = {"opened": "New", "reminder": "Still going on",
                                 "resolved": "Resolved"}


@dataclass(frozen=True, slots=True)
class Notice:
    """One line of a message: a change of one problem of one rule."""

    change: Change
    rule: str
    site: str
    summary: str
    entry: LogEntry  # the destination's log row, as it is once the notice is delivered


@dataclass(slots=True)
class PassResult:
    """What a pass did: sent[safe url] = its message; failed[safe url] = why not;
    `held` is False when another process held the lease (nothing was done)."""

    held: bool = True
    open_problems: int = 0
    sent: dict[str, Message] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def lease_owner() -> str:
    """Who takes the lease: this host and process, and a random part for each runner."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def current_problems(store: Store, rule: AlertRule, *, now: float,
                     health_alerts: HealthAlerts = health_alerts_now,
                     cache: dict[tuple[Any, ...], list[dict[str, Any]]] | None = None,
                     ) -> dict[str, str]:
    """The rule's problems going on now: alert key -> one line saying it.

    A negative alert goes on while the kiosk's last window that reached the threshold
    closed less than one window ago (another response could still extend it); it is one
    problem per kiosk, so a burst that grows stays one notice.

    The alerts are read for the rule's whole organisation, once per pass for the rules
    that share it and their thresholds (`cache`), and each rule keeps those of its
    subtree: one read of the recent responses, not one per rule and level."""
    cache = cache if cache is not None else {}
    if rule.kind == NEGATIVE:
        window_s = rule.thresholds["window_s"]
        organisation = rule.site.split("/")[0]
        thresholds = (window_s, rule.thresholds["negative"], rule.thresholds["minimum"])
        key = (NEGATIVE, organisation, *thresholds)
        if key not in cache:
            # Two windows back: every window that ends within the last one is complete.
            # By organisation, whose kiosks find_alerts reads in one statement, each
            # through the (device, time) index; the whole database at once would be a
            # scan by time.
            cache[key] = [
                alert for alert in find_alerts(
                    store, window_s=window_s, negative=thresholds[1], minimum=thresholds[2],
                    since=now - 2 * window_s, site=organisation)
                if alert["end_utc"] > now - window_s]
        return {f"negative:{alert['device_id']}": _negative_line(alert)
                for alert in cache[key] if _within(alert, rule)}
    if ("health",) not in cache:
        cache[("health",)] = health_alerts(store, now=now, site=None)
    return {alert["key"]: str(alert["message"]) for alert in cache[("health",)]
            if alert["kind"] == rule.kind and _within(alert, rule)}


def _within(alert: Mapping[str, Any], rule: AlertRule) -> bool:
    return alert["site"] is not None and site_rules.is_under(alert["site"], rule.site)


def _negative_line(alert: Mapping[str, Any]) -> str:
    name = f" ({alert['name']})" if alert.get("name") else ""
    start, end = alert["start"][11:16], alert["end"][11:16]
    return (f"kiosk {alert['device_id']}{name} at {alert['site'] or 'no site'}: "
            f"{alert['negative']:,} of {alert['responses']:,} responses unhappy "
            f"({100 * alert['share']:.0f}%), {alert['start'][:10]} {start}-{end}")


def plan_notices(rules: list[AlertRule], log: list[LogEntry],
                 problems: Mapping[str, Mapping[str, str]], now: int
                 ) -> tuple[list[LogEntry], list[LogEntry], dict[str, list[Notice]]]:
    """From the log and the problems of each rule now: (log rows to save before sending,
    rows to forget, notices per destination URL). Pure: the pass's decisions alone."""
    known = {(e.rule, e.destination, e.key): e for e in log}
    seen: list[LogEntry] = []
    forget: list[LogEntry] = []
    notices: dict[str, list[Notice]] = defaultdict(list)
    for rule in rules:
        if rule.name not in problems:
            continue  # not evaluated in this pass: its log stays as it is
        now_open = problems[rule.name]
        for url in rule.destinations:
            destination = destination_id(url)
            out = notices[url]

            for key, summary in sorted(now_open.items()):
                entry = known.get((rule.name, destination, key))
                if entry is None:
                    entry = LogEntry(rule.name, destination, key, now, None, None, summary)
                    seen.append(entry)
                elif entry.resolved is not None or entry.summary != summary:
                    # Its latest words; and one back before its resolution went out never
                    # stopped, for the reader: no resolution, no new opening.
                    entry = replace(entry, resolved=None, summary=summary)
                    seen.append(entry)
                if entry.notified is None:
                    out.append(Notice("opened", rule.name, rule.site, summary,
                                      replace(entry, notified=now)))
                elif rule.remind_s and now - entry.notified >= rule.remind_s:
                    out.append(Notice("reminder", rule.name, rule.site, summary,
                                      replace(entry, notified=now)))
            for (name, where, key), entry in known.items():
                if name != rule.name or where != destination or key in now_open:
                    continue
                if entry.notified is None:
                    forget.append(entry)  # it went before anyone was told
                    continue
                if entry.resolved is None:
                    entry = replace(entry, resolved=now)
                    seen.append(entry)
                out.append(Notice("resolved", rule.name, rule.site, entry.summary, entry))
    return seen, forget, {url: chosen for url, chosen in notices.items() if chosen}


def compose(notices: list[Notice]) -> Message:
    """One message listing a destination's notices, grouped by change."""
    counts: dict[Change, int] = {change: sum(n.change == change for n in notices)
                                 for change in _HEADINGS}
    parts = [f"{count} {_title_word(change, count)}" for change, count in counts.items()
             if count]
    lines: list[str] = []
    for change, heading in _HEADINGS.items():
        chosen = [n for n in notices if n.change == change]
        if chosen:
            lines.append(f"{heading} ({len(chosen):,}):")
            lines += [f"- [{n.rule}, {n.site}] {n.summary}" for n in chosen]
            lines.append("")
    return Message("DeskPulse: " + ", ".join(parts), "\n".join(lines).rstrip() + "\n")


def _title_word(change: Change, count: int) -> str:
    plural = "s" if count != 1 else ""
    return {"opened": f"new alert{plural}", "reminder": f"ongoing alert{plural}",
            "resolved": "resolved"}[change]


def run_pass(store: Store, *, now: float, dry_run: bool = False,
             health_alerts: HealthAlerts = health_alerts_now, deliver_to: Deliver = deliver,
             owner: str | None = None) -> PassResult:
    """One pass over every rule (see the module docstring). `health_alerts` reads the
    device-health kinds (deskpulse.reports.health's; a test may give others); with
    `dry_run` the messages are composed but neither sent nor logged, and no lease is
    taken."""
    owner = owner or lease_owner()
    at = int(now)
    if not dry_run and not _renew(store, owner):
        return PassResult(held=False)
    try:
        return _pass(store, at, dry_run, health_alerts, deliver_to, owner)
    finally:
        if not dry_run:
            store.release_lease(NOTIFY_LEASE, owner)


def _renew(store: Store, owner: str) -> bool:
    """Take or renew the lease, by the real clock (`now` of a pass may be another moment:
    the lease is between processes running now)."""
    return store.take_lease(NOTIFY_LEASE, owner, now=time.time(), seconds=LEASE_S)


def _pass(store: Store, now: int, dry_run: bool, health_alerts: HealthAlerts,
          deliver_to: Deliver, owner: str) -> PassResult:
    result = PassResult()
    rules = store.alert_rules()
    problems: dict[str, dict[str, str]] = {}
    cache: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for rule in rules:
        found = current_problems(store, rule, now=now, health_alerts=health_alerts,
                                 cache=cache)
        problems[rule.name] = found
        result.open_problems += len(found)
    seen, forget, notices = plan_notices(rules, store.notify_log(), problems, now)
    if dry_run:
        result.sent = {safe_url(url): compose(chosen) for url, chosen in notices.items()}
        return result
    store.save_notify_log(seen, forget=forget)
    for url, chosen in sorted(notices.items()):
        shown = safe_url(url)
        if not _renew(store, owner):
            result.failed[shown] = "the lease went to another process: left to it"
            break
        message = compose(chosen)
        problem = deliver_to(url, message)
        if problem is not None:
            result.failed[shown] = problem
            continue
        result.sent[shown] = message
        store.save_notify_log([n.entry for n in chosen if n.change != "resolved"],
                              forget=[n.entry for n in chosen if n.change == "resolved"])
    return result

