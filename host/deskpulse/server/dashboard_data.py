"""What the dashboard shows, computed from the store (docs/dashboard.md, "Dashboard").

Every function here runs in the reader process (server/reader.py) as fn(store, ...) and
returns plain data (dicts, lists, text), so it crosses back to the server pickled. The
figures are deskpulse.reports' own: the report page and /api/report are
`figures.build_report` of the same selection as `deskpulse report`, the CSV is
`figures.write_csv`'s, the alerts `alerts.find_alerts`'.

`scope` is the viewer's site path (None: everything). A site or kiosk outside it is
answered as one that does not exist (OutOfScope, a 404), never saying whether it does.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass
from typing import Any

from deskpulse.errors import DeskPulseError
from deskpulse.reports import alerts as report_alerts
from deskpulse.reports import figures
from deskpulse.reports import health as report_health
from deskpulse.store import health as store_health
from deskpulse.store import sites as site_rules
from deskpulse.store.base import Store
from deskpulse.store.health import KioskHealth

ALERT_DAYS = 7
"""The alerts page's range when none is given: the last week."""


NOT_FOUND = "not found"
"""All that is said of a site or kiosk outside the viewer's subtree, or of no kiosk at
all: the same words (accounts.not_found's), never echoing what was asked."""


class OutOfScope(DeskPulseError):
    """A site or kiosk the viewer may not see, or that does not exist (the same 404)."""


@dataclass(frozen=True, slots=True)
class Selection:
    """The filters of `deskpulse report` that the dashboard takes, as query parameters."""

    since: str | None = None
    until: str | None = None
    site: str | None = None
    device: str | None = None
    include_flagged: bool = False

    def report_args(self) -> dict[str, Any]:
        """Keyword arguments of figures.build_report / write_csv (what `deskpulse report`
        passes for the same options)."""
        return {"since": self.since, "until": self.until, "device": self.device,
                "location": None, "include_flagged": self.include_flagged,
                "site": self.site}


def in_scope(scope: str | None, path: str | None) -> bool:
    return scope is None or (path is not None and site_rules.is_under(path, scope))


def scoped(store: Store, scope: str | None, selection: Selection) -> Selection:
    """The selection a viewer of `scope` may make: the site within the scope (the scope's
    own when none is asked for), the device a kiosk within it; OutOfScope otherwise."""
    site = selection.site if selection.site is not None else scope
    if site is not None and not in_scope(scope, site):
        raise OutOfScope(NOT_FOUND)
    if selection.device is not None:
        place = store.device_site_path(selection.device)
        known = place is not None or selection.device in {
            f.device_id for f in store.device_facts()}
        if not known or not in_scope(scope, place):
            raise OutOfScope(NOT_FOUND)
    return dataclasses.replace(selection, site=site)


# -- the report --------------------------------------------------------------------------


def report(store: Store, scope: str | None, selection: Selection, generated_at: int
           ) -> dict[str, Any]:
    """`deskpulse report --format json` for the selection, within the scope, made at
    `generated_at` (unix seconds: the server's clock, as the command's is its own)."""
    return figures.build_report(store, **scoped(store, scope, selection).report_args(),
                                generated_at=generated_at)


def choices(store: Store, scope: str | None) -> dict[str, list[dict[str, Any]]]:
    """The sites and kiosks a viewer may filter by."""
    placed = store.kiosk_sites()
    sites = [{"path": s.path, "kind": s.kind} for s in sorted(store.sites(),
                                                               key=lambda s: s.path)
             if in_scope(scope, s.path)]
    devices = [{"device_id": f.device_id, "name": f.name, "site": placed.get(f.device_id)}
               for f in store.device_facts() if in_scope(scope, placed.get(f.device_id))]
    return {"sites": sites, "devices": devices}


def csv_devices(store: Store, scope: str | None, selection: Selection) -> list[str]:
    """The kiosks of the CSV download, in the order `write_csv` writes them."""
    scoped_selection = scoped(store, scope, selection)
    chosen = figures.select(store, **scoped_selection.report_args())
    return [d.device_id for d in chosen.devices]


def csv_header() -> str:
    """The CSV's first line, as write_csv writes it."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(figures.CSV_COLUMNS)
    return out.getvalue()


def csv_part(store: Store, scope: str | None, selection: Selection, device_id: str) -> str:
    """The CSV rows (no header) of one kiosk of the selection, so that a download of
    millions of rows is streamed kiosk by kiosk."""
    one = scoped(store, scope, dataclasses.replace(selection, device=device_id))
    out = io.StringIO()
    figures.write_csv(store, out, **one.report_args())
    return out.getvalue().partition("\n")[2]


# -- the overview ----------------------------------------------------------------------------


def _figures_of(entry: dict[str, Any]) -> dict[str, Any]:
    return {"responses": entry["responses"], "csat": entry["csat"],
            "told_next_rate": entry["told_next_rate"]}


def overview(store: Store, scope: str | None, now: float) -> dict[str, Any]:
    """Today and this week (from Monday) for each site one level below `scope` (a
    store's: its kiosks; None: the organisations), and for the whole scope: local days,
    each kiosk's in its own zone (figures.build_period_report), and the last push."""
    tree = {s.path: s for s in store.sites()}
    if scope is not None and scope not in tree:
        raise OutOfScope(NOT_FOUND)
    is_store = scope is not None and tree[scope].kind == "store"
    placed = store.kiosk_sites()
    last = store.last_syncs()
    reports = {period: figures.build_period_report(store, now, period, site=scope)
               for period in ("day", "week")}
    rows: dict[str, dict[str, Any]] = {}
    for period, name in (("day", "today"), ("week", "week")):
        rep = reports[period]
        for entry in rep["devices"] if is_store else rep["sites"]:
            key = entry["device_id"] if is_store else entry["site"]
            row = rows.setdefault(key, {"key": key, "name": entry["name"] if is_store else
                                        site_rules.name_of(key)})
            row["device_id" if is_store else "site"] = key
            if not is_store:
                row["kind"] = entry["kind"]
            row[name] = _figures_of(entry)
    troubled = _kinds_by_kiosk(report_health.health_alerts(store, now=now, site=scope))
    for key, row in rows.items():
        def here(device_id: str, key: str = key) -> bool:
            return device_id == key if is_store else in_scope(key, placed.get(device_id))

        row["last_push"] = max((at for d, at in last.items() if here(d)), default=None)
        row.update(_health_of([kinds for d, kinds in troubled.items() if here(d)]))
    total: dict[str, Any] = {
        "today": _figures_of(reports["day"]), "week": _figures_of(reports["week"]),
        "last_push": max((at for d, at in last.items()
                          if scope is None or in_scope(scope, placed.get(d))), default=None),
        **_health_of(list(troubled.values()))}
    return {"scope": scope, "kind": tree[scope].kind if scope is not None else None,
            "level": "kiosks" if is_store else "sites", "now": int(now),
            "days": {"today": reports["day"]["filters"], "week": reports["week"]["filters"]},
            "total": total, "rows": sorted(rows.values(), key=lambda r: r["key"])}


def _kinds_by_kiosk(found: list[dict[str, Any]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for alert in found:
        out.setdefault(alert["device_id"], set()).add(alert["kind"])
    return out


def _health_of(kinds: list[set[str]]) -> dict[str, Any]:
    """How many of some kiosks have a health alert, and of which kinds (worst first)."""
    return {"health_alerts": len(kinds),
            "health_kinds": sorted(set().union(*kinds), key=report_health.KIND_ORDER.__getitem__)}


# -- devices and alerts ----------------------------------------------------------------------

CLOCK_OFF_S = 120
"""A kiosk clock further off than this is worth a look (its responses are placed by it)."""


def _health_rows(store: Store, scope: str | None, now: float
                 ) -> tuple[list[KioskHealth], list[dict[str, Any]]]:
    """The kiosks within the scope (store.health.kiosk_health: a few index probes each)
    and their health alerts (reports.health.health_alerts), read once for both."""
    every = store_health.kiosk_health(store, now=now,
                                      refused_window_s=report_health.REFUSED_WINDOW_S)
    return ([k for k in every if in_scope(scope, k.site)],
            report_health.health_alerts(store, now=now, site=scope, health=every))


def _notes(kiosk: KioskHealth) -> list[str]:
    """What is worth a look about a kiosk that raises no alert, in a few words each."""
    notes = []
    if kiosk.config_behind:
        notes.append(f"config {kiosk.config_running if kiosk.config_running is not None else '?'}"
                     f", wanted {kiosk.config_desired}")
    if kiosk.clock_known is False:
        notes.append("clock not set")
    elif kiosk.clock_offset_s is not None and abs(kiosk.clock_offset_s) > CLOCK_OFF_S:
        notes.append(f"clock {kiosk.clock_offset_s:+,d} s off")
    if kiosk.last_contact is None:
        notes.append("never heard from")
    return notes


def devices(store: Store, scope: str | None, now: float) -> dict[str, Any]:
    """Every kiosk within the scope with its health (store.health.kiosk_health), its
    health alerts and its responses this week (from the day rollups), the kiosks that
    need attention first; and, for a viewer of everything only, the pushes refused in
    the last day under ids that are no kiosk's (they belong to no store)."""
    kiosks, found = _health_rows(store, scope, now)
    alerts_of: dict[str, list[dict[str, Any]]] = {}
    for alert in found:
        alerts_of.setdefault(alert["device_id"], []).append(
            {k: alert[k] for k in ("kind", "since", "message", "key")})
    week = {entry["device_id"]: entry["responses"] for entry in
            figures.build_period_report(store, now, "week", site=scope)["devices"]}
    rows = []
    for kiosk in kiosks:
        row = dataclasses.asdict(kiosk)
        own = alerts_of.get(kiosk.device_id, [])
        row.update(last_contact=kiosk.last_contact, config_behind=kiosk.config_behind,
                   refused_total=sum(kiosk.refused.values()),
                   responses_week=week.get(kiosk.device_id, 0), alerts=own,
                   notes=_notes(kiosk))
        rows.append(row)
    rows.sort(key=lambda r: (min((report_health.KIND_ORDER[a["kind"]] for a in r["alerts"]),
                                 default=len(report_health.KIND_ORDER) + (0 if r["notes"] else 1)),
                             r["device_id"]))
    known = {k.device_id for k in store.device_facts()}
    return {"now": int(now), "kiosks": rows,
            "unknown_refused": unknown_refusals(store, now, known) if scope is None else []}


def unknown_refusals(store: Store, now: float, known: set[str]) -> list[dict[str, Any]]:
    """The pushes refused in the last day under ids that no kiosk has (a made-up id, a
    kiosk removed, or store_health.UNKNOWN_OTHERS for the many), by id and reason."""
    since = int(now) - report_health.REFUSED_WINDOW_S
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for row in store.push_refusals(since):
        if row.device_id in known or row.last < since:
            continue
        entry = out.setdefault((row.device_id, row.reason), {
            "device_id": row.device_id, "reason": row.reason, "count": 0, "last": row.last,
            "message": row.message})
        entry["count"] += row.count
        if row.last >= entry["last"]:
            entry.update(last=row.last, message=row.message)
    return sorted(out.values(), key=lambda e: (-e["count"], e["device_id"], e["reason"]))


def alerts(store: Store, scope: str | None, selection: Selection, now: float
           ) -> dict[str, Any]:
    """find_alerts over the selection within the scope (without dates: the last week) as
    "alerts", and the health alerts of its kiosks now (reports.health.health_alerts) as
    "health": the keys of `deskpulse alerts --health --format json`."""
    chosen = scoped(store, scope, selection)
    health = report_health.health_alerts(store, now=now, site=chosen.site)
    if chosen.device is not None:
        health = [a for a in health if a["device_id"] == chosen.device]
    return {"alerts": customer_alerts(store, chosen, now), "health": health}


def customer_alerts(store: Store, chosen: Selection, now: float) -> list[dict[str, Any]]:
    """find_alerts over a selection already within the viewer's scope."""
    args = chosen.report_args()
    if chosen.since is None and chosen.until is None:
        args["since"] = int(now) - ALERT_DAYS * 86400
    if chosen.site is not None or chosen.device is not None:
        return report_alerts.find_alerts(store, **args)
    # Everything (an admin): find_alerts without a site or kiosk reads the whole responses
    # table in kiosk order to keep a week (19 s over 10M responses); by organisation, and
    # the kiosks in none one by one, it reads each kiosk's week from its index.
    found = []
    for root in sorted(s.path for s in store.sites() if s.parent is None):
        found += report_alerts.find_alerts(store, **{**args, "site": root})
    placed = store.kiosk_sites()
    for fact in store.device_facts():
        if fact.device_id not in placed:
            found += report_alerts.find_alerts(store, **{**args, "device": fact.device_id})
    return sorted(found, key=lambda a: (a["device_id"], a["start_utc"]))
