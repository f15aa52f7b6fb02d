"""The weekly digest a store manager receives (`deskpulse notify digest`): the site's figures
for one ISO week, with the told-next coaching figures: the site's told rate beside the
chain's median site at the same level, and satisfaction when customers were told what
happens next against when they were not.

The figures are the report's (deskpulse.reports.figures.build_report for the site and the
week), so a digest never disagrees with `deskpulse report`. The week runs Monday 00:00 to
Monday 00:00 in the site's time zone (the nearest one set at or above it, else the host's);
the chain's sites are read over the same moments.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from statistics import median
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from deskpulse.errors import DeskPulseError
from deskpulse.notify.delivery import Deliver, Message, deliver, is_email, safe_url
from deskpulse.store import sites as site_rules
from deskpulse.store.base import Store
from deskpulse.timezones import host_time_zone, zone_of

_WEEK = re.compile(r"(\d{4})-W(\d{2})")


@dataclass(frozen=True, slots=True)
class Week:
    """An ISO week: Monday `first` to Sunday `last`."""

    year: int
    number: int

    @property
    def first(self) -> date:
        return date.fromisocalendar(self.year, self.number, 1)

    @property
    def last(self) -> date:
        return self.first + timedelta(days=6)

    @property
    def label(self) -> str:
        return f"{self.year}-W{self.number:02d}"

    def covered(self) -> str:
        """'Monday 23 November to Sunday 29 November 2026'."""
        first, last = self.first, self.last
        year = "" if first.year == last.year else f" {first.year}"
        return (f"Monday {first.day} {first:%B}{year} to Sunday {last.day} {last:%B} "
                f"{last.year}")


def parse_week(text: str | None, today: date) -> Week:
    """'2026-W48' as a week; None: the last whole week before `today`'s."""
    if text is None:
        year, number, _ = (today - timedelta(days=7)).isocalendar()
        return Week(year, number)
    match = _WEEK.fullmatch(text.strip())
    try:
        if match is None:
            raise ValueError
        week = Week(int(match.group(1)), int(match.group(2)))
        week.first  # noqa: B018 -- raises for a week the year does not have
    except ValueError:
        raise DeskPulseError(f"--week {text!r} is not an ISO week: give YEAR-Wnn, such as "
                             "2026-W48") from None
    return week


@dataclass(frozen=True, slots=True)
class Digest:
    email: str
    site: str
    week: Week
    zone: str
    figures: dict[str, Any]
    """responses, csat, told_next_rate, csat_told, csat_not_told (the report's), and
    chain_told_median with chain_sites (the sites at the site's level it is the median of)."""

    def message(self) -> Message:
        return Message(f"DeskPulse weekly digest: {self.site}, week {self.week.label}",
                       _text(self), _html(self))


def site_zone(tree: dict[str, Any], site: str) -> str:
    return site_rules.inherited(tree, site)[0] or host_time_zone()


def week_bounds(week: Week, zone: str) -> tuple[datetime, datetime]:
    """Monday 00:00 to the next Monday 00:00 in the zone."""
    tz = zone_of(zone)
    start = datetime.combine(week.first, datetime.min.time(), tz)
    return start, datetime.combine(week.first + timedelta(days=7), datetime.min.time(), tz)


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    return {"responses": report["responses"], "csat": report["csat"],
            "told_next_rate": report["told_next_rate"],
            "csat_told": report["csat_told"]["csat"],
            "told_responses": report["csat_told"]["responses"],
            "csat_not_told": report["csat_not_told"]["csat"],
            "not_told_responses": report["csat_not_told"]["responses"]}


def chain_told_rates(store: Store, tree: dict[str, Any], site: str,
                     bounds: tuple[datetime, datetime]) -> list[float]:
    """The told rate of every site at `site`'s level in its organisation (every
    organisation, for an organisation) that had customers asked."""
    from deskpulse.reports.figures import build_report

    depth = site.count("/")
    since, until = bounds
    if depth == 0:
        rates = [build_report(store, since=since, until=until, site=root)["told_next_rate"]
                 for root in sorted(p for p in tree if "/" not in p)]
    else:
        organisation = site.split("/")[0]
        parents = sorted(p for p in tree if p.count("/") == depth - 1
                         and site_rules.is_under(p, organisation))
        rates = [row["told_next_rate"] for parent in parents
                 if site_rules.children(tree, parent)
                 for row in build_report(store, since=since, until=until,
                                         site=parent)["sites"]]
    return [rate for rate in rates if rate is not None]


def build_digests(store: Store, recipients: Iterable[tuple[str, str]], week: Week
                  ) -> list[Digest]:
    """One digest per (email, site path); the chain's medians are read once per level."""
    from deskpulse.reports.figures import build_report

    tree = {s.path: s for s in store.sites()}
    medians: dict[tuple[str, int, str], tuple[float | None, int]] = {}
    digests = []
    for email, site in recipients:
        if site not in tree:
            raise site_rules.no_site(site)
        zone = site_zone(tree, site)
        bounds = week_bounds(week, zone)
        figures = _summary(build_report(store, since=bounds[0], until=bounds[1], site=site))
        level = (site.split("/")[0], site.count("/"), zone)
        if level not in medians:
            rates = chain_told_rates(store, tree, site, bounds)
            medians[level] = (median(rates) if rates else None, len(rates))
        figures["chain_told_median"], figures["chain_sites"] = medians[level]
        digests.append(Digest(email, site, week, zone, figures))
    return digests


def manager_recipients(store: Store) -> list[tuple[str, str]]:
    """(email, site) of every store manager with an address (`deskpulse users`), by name:
    the digest's recipients when none are given."""
    return [(user.email, user.site) for user in store.users()
            if user.role == "manager" and user.email and user.site]


def recipient_url(sender: str, email: str) -> str:
    """The sender's mailto(s):// URL sending to `email` (its own `to` replaced)."""
    parts = urlsplit(sender)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k.lower() != "to"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("to", email)])))


def send_digests(digests: Sequence[Digest], sender: str, *, deliver_to: Deliver = deliver
                 ) -> dict[str, str | None]:
    """Each digest by email through `sender` (a mailto:// or mailtos:// URL: the SMTP
    account); email -> None when delivered, else why not. One failure stops no other."""
    if not is_email(sender):
        raise DeskPulseError(f"the digest goes by email: give a mailto:// or mailtos:// URL, "
                             f"not {safe_url(sender)}")
    return {d.email: deliver_to(recipient_url(sender, d.email), d.message()) for d in digests}


# -- the message ---------------------------------------------------------------------------


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f}%"


def _lines(d: Digest) -> list[tuple[str, str]]:
    f = d.figures
    median_text = (f"chain median {_pct(f['chain_told_median'])} over {f['chain_sites']:,} "
                   "sites at this level" if f["chain_told_median"] is not None
                   else "no chain median: no other site asked")
    return [
        ("Responses", f"{f['responses']:,}"),
        ("CSAT", _pct(f["csat"])),
        ("Told what happens next", f"{_pct(f['told_next_rate'])} ({median_text})"),
        ("CSAT when told", f"{_pct(f['csat_told'])} of {f['told_responses']:,} responses"),
        ("CSAT when not told",
         f"{_pct(f['csat_not_told'])} of {f['not_told_responses']:,} responses"),
    ]


def _covered(d: Digest) -> str:
    return f"Week {d.week.label}: {d.week.covered()} ({d.zone} time)"


def _text(d: Digest) -> str:
    width = max(len(label) for label, _ in _lines(d))
    rows = [f"{label + ':':<{width + 1}} {value}" for label, value in _lines(d)]
    return "\n".join([f"DeskPulse weekly digest for {d.site}", _covered(d), "", *rows]) + "\n"


def _html(d: Digest) -> str:
    """A line per figure, not a table: apprise derives the email's plain-text part from
    this, and lines read there as `label: value`, as in the text."""
    rows = "".join(f"<p><b>{html.escape(label)}:</b> {html.escape(value)}</p>"
                   for label, value in _lines(d))
    return (f"<h2>DeskPulse weekly digest for {html.escape(d.site)}</h2>"
            f"<p><i>{html.escape(_covered(d))}</i></p>{rows}")
