"""The dashboard's HTML, rendered here from plain data (docs/dashboard.md, "Dashboard").

Every value from the store goes through `escape` (site and kiosk names are anyone's
text). The pages need no script to be read; static/dashboard.js adds the live updates of
the overview and local times. Elements a browser test reads carry a data-testid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

from deskpulse.reports.health import KIND_ORDER
from deskpulse.store.health import REASON_SHORT
from deskpulse.timezones import host_time_zone, zone_of

NAV = (("/", "Overview"), ("/report", "Report"), ("/devices", "Devices"), ("/alerts", "Alerts"))
DASH = "–"


def e(value: Any) -> str:
    return escape(str(value), quote=True)


def count(value: int | None) -> str:
    """Thousands separated, as everywhere in the dashboard."""
    return DASH if value is None else f"{value:,}"


def pct(value: float | None) -> str:
    return DASH if value is None else f"{100 * value:.1f}%"


def points(value: float | None) -> str:
    return DASH if value is None else f"{100 * value:+.1f} pts"


def when(unix: int | float | None) -> str:
    """A moment in the host's zone; the script shows it in the browser's."""
    if unix is None:
        return DASH
    moment = datetime.fromtimestamp(unix, zone_of(host_time_zone()))
    return (f'<time data-unix="{int(unix)}" datetime="{e(moment.isoformat())}">'
            f'{e(moment.strftime("%Y-%m-%d %H:%M"))}</time>')


def kinds(value: Sequence[str] | None) -> str:
    """Health alert kinds ("silent, refused"), or nothing."""
    return e(", ".join(value)) if value else ""


FORMATS: dict[str, Callable[[Any], str]] = {"count": count, "pct": pct, "time": when,
                                            "list": kinds}
"""The formats a live cell may have (data-format), which static/dashboard.js repeats."""


def layout(title: str, path: str, body: str, *, viewer: str | None = None,
           logout: str | None = None, live: bool = False) -> str:
    """A whole page. `logout`: the hidden CSRF field of the logout form, when logged in."""
    nav = "".join(
        f'<a href="{href}"{" aria-current=page" if href == path else ""}>{label}</a>'
        for href, label in NAV)
    who = ""
    if viewer is not None:
        who = f'<span class="viewer" data-testid="viewer">{e(viewer)}</span>'
    if logout is not None:
        who += (f'<form method="post" action="/logout" class="logout">{logout}'
                '<button type="submit">Log out</button></form>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · DeskPulse</title>
<link rel="stylesheet" href="/static/dashboard.css">
<script src="/static/dashboard.js" defer></script>
</head><body{' data-live="overview"' if live else ''}>
<header><strong class="brand">DeskPulse</strong><nav>{nav}</nav>{who}</header>
<main><h1>{e(title)}</h1>
{body}
</main></body></html>
"""


def error_page(message: str) -> str:
    return f'<p class="error" data-testid="error">{e(message)}</p>'


# -- the overview ----------------------------------------------------------------------------


def _live(value: Any, fmt: str, field: str, testid: str | None = None) -> str:
    test = f' data-testid="{testid}"' if testid else ""
    return (f'<span data-field="{field}" data-format="{fmt}"{test}>'
            f'{FORMATS[fmt](value)}</span>')


def _period(row: Mapping[str, Any], period: str) -> Mapping[str, Any]:
    return row.get(period) or {"responses": 0, "csat": None, "told_next_rate": None}


def overview(data: Mapping[str, Any]) -> str:
    total = data["total"]
    tiles = [("Responses today", _live(_period(total, "today")["responses"], "count",
                                      "today.responses", "responses-today")),
             ("Responses this week", _live(_period(total, "week")["responses"], "count",
                                           "week.responses", "responses-week")),
             ("CSAT this week", _live(_period(total, "week")["csat"], "pct", "week.csat",
                                      "csat-week")),
             ("Told next this week", _live(_period(total, "week")["told_next_rate"], "pct",
                                           "week.told_next_rate", "told-next-week")),
             ("Last push", _live(total["last_push"], "time", "last_push", "last-push")),
             ('<a href="/devices">Kiosks with a health alert</a>',
              _live(total["health_alerts"], "count", "health_alerts", "health-alerts")
              + f'<small>{_live(total["health_kinds"], "list", "health_kinds")}</small>')]
    tiles_html = "".join(f'<div class="tile"><span class="label">{label}</span>'
                         f'<span class="value">{value}</span></div>'
                         for label, value in tiles)
    kiosks = data["level"] == "kiosks"
    rows = []
    for row in data["rows"]:
        target = ({"device": row["device_id"]} if kiosks else {"site": row["site"]})
        name = row.get("name") or row["key"]
        cells = [(f'<a href="/report?{e(urlencode(target))}">{e(name)}</a>'
                  + (f'<small>{e(row["key"])}</small>' if name != row["key"] else ""))]
        for period in ("today", "week"):
            figures = _period(row, period)
            cells += [_live(figures["responses"], "count", f"{period}.responses"),
                      _live(figures["csat"], "pct", f"{period}.csat"),
                      _live(figures["told_next_rate"], "pct", f"{period}.told_next_rate")]
        cells.append(_live(row["last_push"], "time", "last_push"))
        cells.append("<div>" + _live(row["health_alerts"], "count", "health_alerts",
                                     "overview-health")
                     + f'<small>{_live(row["health_kinds"], "list", "health_kinds")}</small>'
                     "</div>")
        flagged = ' class="attention"' if row["health_alerts"] else ""
        rows.append(f'<tr data-testid="overview-row" data-row="{e(row["key"])}"{flagged}>'
                    + "".join(f'<td data-label="{label}">{cell}</td>'
                              for label, cell in zip(OVERVIEW_COLUMNS, cells, strict=True))
                    + "</tr>")
    what = "Kiosk" if kiosks else "Site"
    head = "".join(f"<th>{label if label != 'Site' else what}</th>"
                   for label in OVERVIEW_COLUMNS)
    empty = ('<p data-testid="overview-empty">No sites below yet.</p>'
             if not rows else "")
    return (f'<section class="tiles" data-row="" data-testid="overview-total">{tiles_html}'
            f'</section>\n<p class="note">Today and this week (from Monday) in each '
            f'site\'s local time; updated live.</p>\n'
            f'<table class="overview" data-testid="overview-table"><thead><tr>{head}</tr>'
            f'</thead><tbody>{"".join(rows)}</tbody></table>{empty}')


OVERVIEW_COLUMNS = ("Site", "Today", "CSAT today", "Told next today", "This week",
                    "CSAT this week", "Told next this week", "Last push",
                    "Kiosks with a health alert")


# -- the report ------------------------------------------------------------------------------


def filters_form(action: str, selection: Mapping[str, Any],
                 choices: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    def option(value: str, label: str, chosen: Any) -> str:
        selected = " selected" if value == chosen else ""
        return f'<option value="{e(value)}"{selected}>{e(label)}</option>'

    sites = option("", "all my sites", selection.get("site") or "") + "".join(
        option(s["path"], s["path"], selection.get("site")) for s in choices["sites"])
    devices = option("", "all kiosks", selection.get("device") or "") + "".join(
        option(d["device_id"], d["device_id"] + (f" ({d['name']})" if d["name"] else ""),
               selection.get("device")) for d in choices["devices"])
    flagged = " checked" if selection.get("include_flagged") else ""
    return f"""<form method="get" action="{action}" class="filters" data-testid="filters">
<label>Since <input name="since" value="{e(selection.get('since') or '')}"
 placeholder="2026-11-01" data-testid="filter-since"></label>
<label>Until <input name="until" value="{e(selection.get('until') or '')}"
 placeholder="2026-12-01" data-testid="filter-until"></label>
<label>Site <select name="site" data-testid="filter-site">{sites}</select></label>
<label>Kiosk <select name="device" data-testid="filter-device">{devices}</select></label>
<label class="check"><input type="checkbox" name="include_flagged" value="true"{flagged}
 data-testid="filter-flagged"> include flagged</label>
<button type="submit">Show</button>
</form>"""


def _ranking(title: str, entries: Sequence[Mapping[str, Any]], key: str, testid: str) -> str:
    if not entries:
        return ""
    rows = "".join(
        f'<tr data-testid="{testid}-row"><td data-label="{key.title()}">'
        f'{e(entry[key] if entry[key] is not None else "(none)")}</td>'
        f'<td data-label="Responses">{count(entry["responses"])}</td>'
        f'<td data-label="CSAT">{pct(entry["csat"])}</td>'
        f'<td data-label="Told next">{pct(entry["told_next_rate"])}</td>'
        f'<td data-label="CSAT told">{pct(entry["csat_told"])}</td>'
        f'<td data-label="CSAT not told">{pct(entry["csat_not_told"])}</td></tr>'
        for entry in entries)
    return (f'<h2>{e(title)}</h2><table data-testid="{testid}"><thead><tr>'
            f'<th>{e(key.title())}</th><th>Responses</th><th>CSAT</th><th>Told next</th>'
            f'<th>CSAT told</th><th>CSAT not told</th></tr></thead><tbody>{rows}'
            '</tbody></table>')


TREND_UNITS = {"day": "Day", "week": "Week", "month": "Month"}


def report(rep: Mapping[str, Any], query: str) -> str:
    """The figures of a build_report dict; `query` the selection's query string."""
    span = rep["covered"]
    covered = (f'{e(span["first_day"])} to {e(span["last_day"])} '
               f'({count(span["days"])} days with responses)' if span["days"]
               else "no day with responses")
    tiles = [("Responses", count(rep["responses"]), "report-responses"),
             ("CSAT", pct(rep["csat"]), "report-csat"),
             ("Told next", pct(rep["told_next_rate"]), "report-told-next"),
             ("CSAT when told", pct(rep["csat_told"]["csat"]), "report-csat-told"),
             ("CSAT when not told", pct(rep["csat_not_told"]["csat"]),
              "report-csat-not-told"),
             ("Difference", points(rep["csat_difference"]["value"]), "report-difference")]
    tiles_html = "".join(f'<div class="tile"><span class="label">{label}</span>'
                         f'<span class="value" data-testid="{testid}">{value}</span></div>'
                         for label, value, testid in tiles)
    flagged = rep["flagged"]
    made = rep["generated_at"]
    notes = (f'<p class="note" data-testid="report-covered">Covers {covered}'
             + (f'; made {e(made)}' if made else "") + '. Flagged: '
             f'{count(flagged["rapid"])} rapid, {count(flagged["closed"])} closed '
             f'({"included" if flagged["included"] else "left out"}); '
             f'{count(rep["time_unknown"])} without a time.</p>')
    downloads = (f'<p class="downloads"><a href="/report.csv?{e(query)}" '
                 f'data-testid="download-csv">CSV</a> · <a href="/api/report?{e(query)}">'
                 'JSON</a></p>')
    trend = rep["trend_periods"]
    trend_html = ""
    if trend:
        unit = TREND_UNITS.get(rep["trend_by"], "Period")
        rows = "".join(
            f'<tr><td data-label="{unit}">{e(entry["period"])}</td>'
            f'<td data-label="Responses">{count(entry["responses"])}</td>'
            f'<td data-label="CSAT">{pct(entry["csat"])}</td>'
            f'<td data-label="Told next">{pct(entry["told_next_rate"])}</td></tr>'
            for entry in reversed(trend))
        trend_html = (f'<h2>By {unit.lower()}, newest first</h2>'
                      f'<table data-testid="report-trend"><thead><tr><th>{unit}</th>'
                      '<th>Responses</th><th>CSAT</th><th>Told next</th></tr></thead>'
                      f'<tbody>{rows}</tbody></table>')
    return (f'<section class="tiles" data-testid="report-figures">{tiles_html}</section>'
            + notes + downloads
            + _ranking("Sites", rep["sites"], "site", "report-sites")
            + _ranking("Kiosks", rep["devices"], "device_id", "report-devices")
            + trend_html)


# -- devices and alerts ----------------------------------------------------------------------

def _kiosk_cell(row: Mapping[str, Any]) -> str:
    name = row.get("name")
    label = e(name) + f'<small>{e(row["device_id"])}</small>' if name else e(row["device_id"])
    return label + (f'<small>{e(row["site"])}</small>' if row.get("site") else "")


def _said(alert: Mapping[str, Any]) -> str:
    """A health alert's message without the kiosk it starts with ("Front (k1): ..."),
    where the kiosk is shown beside it."""
    named, colon, rest = alert["message"].partition(": ")
    return rest if colon and alert["device_id"] in named else alert["message"]


def _state_cell(row: Mapping[str, Any]) -> str:
    """Its health alerts, else what is worth a look, else ok."""
    if row["alerts"]:
        return "".join(f'<span class="flag" data-testid="device-alert">{e(a["kind"])}</span>'
                       f'<small>{e(_said({**a, "device_id": row["device_id"]}))}</small>'
                       for a in row["alerts"])
    if row["notes"]:
        return "".join(f'<small class="note-flag">{e(note)}</small>' for note in row["notes"])
    return "ok"


def _flash_cell(row: Mapping[str, Any]) -> str:
    if row["fill"] is None and row["unacked"] is None and row["dropped"] is None:
        return DASH
    return (f'{pct(row["fill"])} full<small>{count(row["unacked"])} unacked, '
            f'{count(row["dropped"])} dropped</small>')


def _clock_cell(row: Mapping[str, Any]) -> str:
    if row["clock_offset_s"] is not None:
        return f'{row["clock_offset_s"]:+,d} s'
    return {None: DASH, True: "set", False: "not set"}[row["clock_known"]]


def _config_cell(row: Mapping[str, Any]) -> str:
    running = DASH if row["config_running"] is None else str(row["config_running"])
    if row["config_desired"] is None:
        return running
    if not row["config_behind"]:
        return f"{running} (as wanted)"
    return f'{running} <span class="flag">wanted {row["config_desired"]}</span>'


def _refused_cell(row: Mapping[str, Any]) -> str:
    if not row["refused"]:
        return "none"
    return ", ".join(f"{count(n)} {e(REASON_SHORT.get(reason, reason))}"
                     for reason, n in sorted(row["refused"].items())) + (
        f'<small>last {when(row["last_refused"])}</small>' if row["last_refused"] else "")


DEVICE_COLUMNS: tuple[tuple[str, str, Callable[[Mapping[str, Any]], str]], ...] = (
    ("Kiosk", "kiosk", _kiosk_cell),
    ("State", "state", _state_cell),
    ("Last push", "last-push", lambda r: when(r["last_push"])),
    ("Last USB sync", "last-serial", lambda r: when(r["last_serial"])),
    ("This week", "responses-week", lambda r: count(r["responses_week"])),
    ("Flash", "flash", _flash_cell),
    ("Clock", "clock", _clock_cell),
    ("Config", "config", _config_cell),
    ("Refused in 24 h", "refused", _refused_cell),
)
"""The devices page's columns: (label, data-testid after "device-", the cell's HTML)."""


def devices(data: Mapping[str, Any]) -> str:
    """Each kiosk's health, those with a health alert first and marked; then, for a viewer
    of everything, the pushes refused under ids that are no kiosk's."""
    rows = data["kiosks"]
    out = ""
    if not rows:
        out = '<p data-testid="devices-empty">No kiosks here yet.</p>'
    else:
        flagged = sum(1 for r in rows if r["alerts"])
        out += (f'<p class="note" data-testid="devices-summary">{count(len(rows))} kiosks; '
                f'{count(flagged)} with a health alert (listed first).</p>')
        head = "".join(f"<th>{label}</th>" for label, _, _ in DEVICE_COLUMNS)
        body = "".join(
            f'<tr data-testid="device-row" data-device="{e(row["device_id"])}"'
            + (' class="attention"' if row["alerts"] else "") + ">"
            + "".join(f'<td data-label="{label}" data-testid="device-{testid}">'
                      f'<div>{cell(row)}</div></td>'
                      for label, testid, cell in DEVICE_COLUMNS) + "</tr>"
            for row in rows)
        out += (f'<table class="devices" data-testid="devices-table"><thead><tr>{head}</tr>'
                f'</thead><tbody>{body}</tbody></table>')
    unknown = data.get("unknown_refused") or []
    if unknown:
        body = "".join(
            f'<tr data-testid="unknown-refused-row"><td data-label="Claimed id">'
            f'{e(u["device_id"])}</td><td data-label="Reason">'
            f'{e(REASON_SHORT.get(u["reason"], u["reason"]))}</td>'
            f'<td data-label="Pushes">{count(u["count"])}</td>'
            f'<td data-label="Last">{when(u["last"])}<small>{e(u["message"])}</small></td></tr>'
            for u in unknown)
        out += ('<h2>Pushes refused under ids of no kiosk (24 h)</h2>'
                '<p class="note">They belong to no store ("*": the many ids beyond the '
                'first 20 of an hour).</p><table data-testid="unknown-refused"><thead><tr>'
                '<th>Claimed id</th><th>Reason</th><th>Pushes</th><th>Last</th></tr></thead>'
                f'<tbody>{body}</tbody></table>')
    return out


def _alert_table(found: Sequence[Mapping[str, Any]], testid: str) -> str:
    body = "".join(
        f'<tr data-testid="alert-row"><td data-label="Kiosk">{e(a["device_id"])}</td>'
        f'<td data-label="Site">{e(a["site"] or DASH)}</td>'
        f'<td data-label="From">{e(a["start"])}</td><td data-label="To">{e(a["end"])}</td>'
        f'<td data-label="Responses">{count(a["responses"])}</td>'
        f'<td data-label="Negative">{count(a["negative"])} ({pct(a["share"])})</td></tr>'
        for a in found)
    return (f'<table data-testid="{testid}"><thead><tr><th>Kiosk</th><th>Site</th>'
            '<th>From</th><th>To</th><th>Responses</th><th>Negative</th></tr></thead>'
            f'<tbody>{body}</tbody></table>')


def health_table(found: Sequence[Mapping[str, Any]]) -> str:
    """The health alerts (reports.health): a silent kiosk, a filling flash, refused pushes;
    silent ones first."""
    if not found:
        return '<p data-testid="health-alerts-none">No kiosk needs attention.</p>'
    ordered = sorted(found, key=lambda a: KIND_ORDER.get(a["kind"], len(KIND_ORDER)))
    body = "".join(
        f'<tr data-testid="health-alert-row" data-kind="{e(a["kind"])}" class="attention">'
        f'<td data-label="Kiosk"><div>{e(a["device_id"])}'
        f'<small>{e(a["site"] or "in no store")}</small></div></td>'
        f'<td data-label="What"><span class="flag">{e(a["kind"])}</span></td>'
        f'<td data-label="Since">{when(datetime.fromisoformat(a["since"]).timestamp())}</td>'
        f'<td data-label="Message"><div>{e(_said(a))}</div></td></tr>'
        for a in ordered)
    return ('<table data-testid="health-alerts"><thead><tr><th>Kiosk</th><th>What</th>'
            '<th>Since</th><th>Message</th></tr></thead>'
            f'<tbody>{body}</tbody></table>')


def alerts(current: Sequence[Mapping[str, Any]], earlier: Sequence[Mapping[str, Any]],
           since_note: str, health: Sequence[Mapping[str, Any]] = ()) -> str:
    """The kiosks' health alerts now, then the customer alerts still current at the
    range's end, then the earlier ones (history: they no longer mark a kiosk)."""
    out = ('<h2>Kiosk health now</h2><p class="note">A kiosk silent in its opening hours, '
           'a flash filling up, pushes refused in the last 24 h.</p>' + health_table(health))
    out += f'<h2>Customers</h2><p class="note">{e(since_note)}</p>'
    if not current and not earlier:
        return out + '<p data-testid="alerts-empty">No alerts in this selection.</p>'
    out += (_alert_table(current, "alerts-table") if current
            else '<p data-testid="alerts-none-current">None in the last 7 days of the range.</p>')
    if earlier:
        out += '<h3>Earlier in the range</h3>' + _alert_table(earlier, "alerts-earlier")
    return out
