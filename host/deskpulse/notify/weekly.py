"""When the weekly digest goes, and the record that sends each one once
(docs/dashboard.md, "The weekly digest").

Each store manager with an email has last week's digest due from Monday 07:00 in their
site's time zone (inherited: deskpulse.store.sites) to Sunday's end, so a server that was
down on Monday morning still sends it. A pass (`deskpulse serve --notify-every`, beside
the alert pass, under the same lease) sends every due digest the store has no record of,
and records each one as soon as it is delivered: a refused delivery has no record and goes
at the next pass, the others are not held up, and two servers or a restart never send one
twice. `deskpulse notify digest` uses the same record and lease, sending a recorded digest
again only when told to (`again`).
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from deskpulse.notify.delivery import Deliver, deliver
from deskpulse.notify.digest import (
    Digest,
    Week,
    build_digests,
    manager_recipients,
    send_digests,
    site_zone,
)
from deskpulse.notify.passes import LEASE_S
from deskpulse.store.base import Store
from deskpulse.store.notify import NOTIFY_LEASE, SentDigest
from deskpulse.timezones import zone_of

SMTP_ENV = "DESKPULSE_SMTP"
"""The sending account's mailto(s):// URL, in the environment: its password stays out of
the process list."""

DUE_HOUR = 7
"""A week's digest is due from this hour on the Monday after it, local time."""


def due_week(now: float, zone: str) -> Week | None:
    """The week whose digest is due at `now` in the zone: last week, from Monday 07:00 to
    Sunday's end; None on a Monday before 07:00 (last week's is not due yet, and the one
    before it has had its week)."""
    local = datetime.fromtimestamp(now, zone_of(zone))
    if local.weekday() == 0 and local.hour < DUE_HOUR:
        return None
    year, number, _ = (local.date() - timedelta(days=7)).isocalendar()
    return Week(year, number)


@dataclass(slots=True)
class DigestResult:
    """What a digest pass did: sent and failed (with why) digests; `skipped`, the records
    of digests already delivered (left alone); `held` False when another process held the
    notification lease (nothing was done)."""

    held: bool = True
    sent: list[Digest] = field(default_factory=list)
    failed: list[tuple[Digest, str]] = field(default_factory=list)
    skipped: list[SentDigest] = field(default_factory=list)


@contextlib.contextmanager
def notify_lease(store: Store, owner: str) -> Iterator[bool]:
    """Whether `owner` took the notification lease (the alert pass's, deskpulse.notify.
    passes); given up at the end when taken."""
    held = store.take_lease(NOTIFY_LEASE, owner, now=time.time(), seconds=LEASE_S)
    try:
        yield held
    finally:
        if held:
            store.release_lease(NOTIFY_LEASE, owner)


def pending_digests(store: Store, wanted: Iterable[tuple[str, str, Week]], again: bool
             ) -> tuple[dict[Week, list[tuple[str, str]]], list[SentDigest]]:
    """(recipients per week without a record, the records found) of (email, site, week)."""
    wanted = list(wanted)
    records = {(r.week, r.recipient, r.site): r
               for r in store.sent_digests({week.label for _, _, week in wanted})}
    pending: dict[Week, list[tuple[str, str]]] = defaultdict(list)
    skipped = []
    for email, site, week in wanted:
        record = records.get((week.label, email, site))
        if record is not None and not again:
            skipped.append(record)
        else:
            pending[week].append((email, site))
    return pending, skipped


def send_and_record(store: Store, wanted: Sequence[tuple[str, str, Week]], sender: str, *,
                    now: float, owner: str, again: bool = False,
                    deliver_to: Deliver = deliver) -> DigestResult:
    """Send the digests of (email, site, week) that have no record (all, with `again`),
    under the notification lease, recording each as it is delivered."""
    with notify_lease(store, owner) as held:
        if not held:
            return DigestResult(held=False)
        pending, skipped = pending_digests(store, wanted, again)
        result = DigestResult(skipped=skipped)
        for week, recipients in sorted(pending.items(), key=lambda item: item[0].label):
            for digest in build_digests(store, recipients, week):
                if not store.take_lease(NOTIFY_LEASE, owner, now=time.time(),
                                        seconds=LEASE_S):
                    result.failed.append((digest, "the lease went to another process"))
                    continue
                problem = send_digests([digest], sender, deliver_to=deliver_to)[digest.email]
                if problem is not None:
                    result.failed.append((digest, problem))
                    continue
                store.record_digests([SentDigest(week.label, digest.email, digest.site,
                                                 int(now))])
                result.sent.append(digest)
        return result


def due_digests(store: Store, now: float) -> list[tuple[str, str, Week]]:
    """(email, site, week due) of every store manager with an email whose digest is due."""
    tree = {site.path: site for site in store.sites()}
    due = [(email, site, due_week(now, site_zone(tree, site)))
           for email, site in manager_recipients(store)]
    return [(email, site, week) for email, site, week in due if week is not None]


def run_digest_pass(store: Store, *, now: float, sender: str, owner: str,
                    deliver_to: Deliver = deliver) -> DigestResult:
    """The serve pass: every due digest not yet delivered."""
    return send_and_record(store, due_digests(store, now), sender, now=now, owner=owner,
                           deliver_to=deliver_to)


def describe_digests(result: DigestResult) -> list[str]:
    """What a digest pass did, one line each."""
    if not result.held:
        return ["another process holds the notification lease: it sends; nothing done here"]
    return ([f"already sent to {r.recipient} ({r.site}) for {r.week} on "
             f"{datetime.fromtimestamp(r.sent, zone_of('UTC')):%Y-%m-%d %H:%M} UTC; "
             "--again sends it again" for r in result.skipped]
            + [f"sent to {d.email} ({d.site}) for {d.week.label}" for d in result.sent]
            + [f"not sent to {d.email} ({d.site}) for {d.week.label}: {why}"
               for d, why in result.failed])
