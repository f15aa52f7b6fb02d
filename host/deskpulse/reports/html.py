"""The report as one self-contained HTML file (`deskpulse report --format html`).

`render(report, alerts)` takes the report dict of docs/report.md and the alert periods of
deskpulse.alerts. Only the alerts still current at the end of the range (alerts.RECENT_S)
mark a device; the earlier ones are listed as its history. Everything is inline so the
file works offline and can be mailed: CSS in a <style>, charts as SVG drawn by matplotlib
with text left as text (no font files), no scripts, no external reference of any kind.
Every text that comes from the database is escaped, in the HTML and in the charts.
"""

from __future__ import annotations

import html
import io
import math
import re
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import matplotlib
import matplotlib.dates as mdates
import numpy
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from deskpulse.reports.alerts import RECENT_S, current_and_earlier, range_end
from deskpulse.reports.figures import clock_corrected_line, ranking_titles
from deskpulse.store.sites import child_towards, is_under

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

# Chart colours, used nowhere else on the page (tests look for them in a screenshot).
COLOURS = {
    "csat_low": "#d7301f",
    "csat_mid": "#fee08b",
    "csat_high": "#1a9850",
    "no_data": "#e6e0d6",  # a warm grey: no neutral grey of text or borders comes near
    "trend_csat": "#1b6ca8",
    "trend_told": "#e07b00",
    "trend_responses": "#c9ced6",
    "ranking": "#3f7fbf",
    "ranking_alert": "#c62828",
    "told_yes": "#2e7d32",
    "told_no": "#8e44ad",
}
CHART_IDS = ("chart-heatmap", "chart-trend", "chart-ranking", "chart-told")
RANKING_SHOWN = 40  # beyond this many devices the chart keeps the ends and the alerted
LABEL_CHARS = 36

_CSAT_MAP = LinearSegmentedColormap.from_list(
    "deskpulse_csat", [COLOURS["csat_low"], COLOURS["csat_mid"], COLOURS["csat_high"]])

_RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",  # text stays text: the browser draws it with its own fonts
    "svg.hashsalt": "deskpulse",  # stable ids, so the same report gives the same file
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_NO_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}


# -- formatting ---------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.0f}%"


def _count(n: int) -> str:
    return f"{n:,}"


def _cell_count(n: int) -> str:
    """A count inside a heat map cell, which has room for about six characters."""
    return f"{n:,}" if n < 100_000 else f"{n / 1000:,.0f}k"


def _points(value: float) -> str:
    return f"{100 * value:+.0f}"


def _device_label(name: str | None, device_id: str) -> str:
    return f"{name} ({device_id})" if name and name != device_id else device_id


def _chart_text(text: str) -> str:
    """Database text for a chart label: short, and never read as mathtext ($...$)."""
    if len(text) > LABEL_CHARS:
        text = text[: LABEL_CHARS - 1] + "…"
    return text.replace("$", r"\$")


def _local_time(iso: str) -> str:
    try:
        moment = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return str(iso)
    offset = moment.strftime("%z")
    offset = f"{offset[:3]}:{offset[3:]}" if offset else ""
    return f"{moment:%a %Y-%m-%d %H:%M} {offset}".rstrip()


# -- charts -------------------------------------------------------------------------------


_ID = re.compile(r'\bid="([^"]+)"')
_REF = re.compile(r'(url\(#|href="#)([^)"]+)')


def _svg(figure: Figure, prefix: str) -> str:
    """The figure as an <svg> element for inline use: no XML prolog, no namespace URLs
    (the HTML parser supplies them), ids prefixed so that charts cannot collide."""
    out = io.StringIO()
    figure.savefig(out, format="svg", metadata=_NO_METADATA)
    svg = out.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg, count=2)
    # Width and height go to CSS (100% of the column); the viewBox keeps the proportions.
    svg = re.sub(r'<svg width="[^"]*" height="[^"]*"', '<svg class="chart-svg"', svg, count=1)
    svg = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', svg)
    return _REF.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", svg)


def _figure(width: float, height: float) -> Figure:
    # A bare Figure, not pyplot: no global backend switch, no figure manager to close.
    return Figure(figsize=(width, height), layout="constrained")


def _drawn(draw: Callable[[], Figure], prefix: str) -> str:
    # Artists read some settings when they are made, the SVG writer others when saving.
    with matplotlib.rc_context(_RC), warnings.catch_warnings():
        # matplotlib only measures the text with its own font; the browser draws it with
        # the system's, which have the glyphs (names in any script) that DejaVu lacks.
        warnings.filterwarnings("ignore", "Glyph .* missing from", UserWarning)
        return _svg(draw(), prefix)


def _heatmap_chart(heatmap: dict[str, Any]) -> str:
    counts = heatmap["responses"]
    csat = numpy.ma.masked_invalid(
        [[math.nan if v is None else v for v in row] for row in heatmap["csat"]])
    hours, weekdays = heatmap["hours"], heatmap["weekdays"]

    def draw() -> Figure:
        fig = _figure(10, 3.6)
        ax = fig.subplots()
        # pcolormesh, not imshow: cells stay vector shapes instead of an embedded bitmap.
        # Cells without responses are left out and show the axes' "no data" colour.
        mesh = ax.pcolormesh(csat, cmap=_CSAT_MAP, vmin=0, vmax=1, edgecolors="#ffffff",
                             linewidth=0.5)
        ax.set_facecolor(COLOURS["no_data"])
        ax.set_xticks([x + 0.5 for x in range(len(hours))], [str(h) for h in hours])
        ax.set_yticks([y + 0.5 for y in range(len(weekdays))], weekdays)
        ax.invert_yaxis()  # Monday on top
        ax.set_xlabel("hour of day (local time)")
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        for y, row in enumerate(counts):
            for x, n in enumerate(row):
                if n:
                    ax.text(x + 0.5, y + 0.5, _cell_count(n), ha="center", va="center",
                            fontsize=7)
        bar = fig.colorbar(mesh, ax=ax, fraction=0.03, pad=0.01,
                           format=PercentFormatter(1.0, decimals=0))
        bar.set_label("CSAT")
        bar.outline.set_visible(False)
        if bar.solids is not None:  # matplotlib embeds long colour bars as a bitmap
            bar.solids.set_rasterized(False)
        return fig

    return _drawn(draw, "heatmap")


TREND_TITLES = {"day": "Daily trend", "week": "Weekly trend", "month": "Monthly trend"}
TREND_CAPTIONS = {
    "day": "per local day",
    "week": "per ISO week (Monday to Sunday, local dates; the first and last may be partial)",
    "month": "per calendar month (local dates; the first and last may be partial)",
}


def _trend_points(report: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """(day, week or month; the points with `start` and `end` dates) as the report says;
    by day for a report made before it said."""
    by, periods = report.get("trend_by"), report.get("trend_periods")
    if by in TREND_TITLES and periods is not None:
        return by, periods
    return "day", [{**day, "start": day["date"], "end": day["date"]}
                   for day in report["trend"]]


def _trend_chart(points: list[dict[str, Any]]) -> str:
    starts = [date.fromisoformat(p["start"]) for p in points]
    lengths = [(date.fromisoformat(p["end"]) - s).days + 1
               for p, s in zip(points, starts, strict=True)]
    # Each point in the middle of its period, as matplotlib's day numbers.
    x = numpy.array([mdates.date2num(s) + (n - 1) / 2
                     for s, n in zip(starts, lengths, strict=True)])

    def series(key: str) -> list[float]:
        return [math.nan if p[key] is None else p[key] for p in points]

    def draw() -> Figure:
        fig = _figure(10, 3.2)
        counts_ax = fig.subplots()
        counts_ax.xaxis_date()
        counts_ax.bar(x, [p["responses"] for p in points], color=COLOURS["trend_responses"],
                      width=[0.8 * n for n in lengths], label="responses")
        counts_ax.set_ylabel("responses")
        ax = counts_ax.twinx()
        ax.spines["right"].set_visible(True)
        # The rates are what the reader follows: on the left, drawn above the counts.
        ax.yaxis.tick_left()
        ax.yaxis.set_label_position("left")
        counts_ax.yaxis.tick_right()
        counts_ax.yaxis.set_label_position("right")
        marker = "o" if len(points) <= 60 else None
        ax.plot(x, series("csat"), color=COLOURS["trend_csat"], marker=marker,
                linewidth=2, label="CSAT")
        ax.plot(x, series("told_next_rate"), color=COLOURS["trend_told"], marker=marker,
                linewidth=2, linestyle="--", label="told next")
        ax.set_ylim(0, 1.05)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_ylabel("share")
        handles = [*ax.get_legend_handles_labels()[0],
                   *counts_ax.get_legend_handles_labels()[0]]
        fig.legend(handles=handles, loc="outside upper left", ncols=3, frameon=False)
        span = (starts[-1] - starts[0]).days + lengths[-1]
        # Whole days only: the automatic ticks would mark noon on a short range.
        locator = (mdates.DayLocator(interval=max(1, span // 10)) if span <= 60
                   else mdates.AutoDateLocator(maxticks=12))
        counts_ax.xaxis.set_major_locator(locator)
        counts_ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        first = float(mdates.date2num(starts[0]))
        counts_ax.set_xlim(first - 0.7, first + span - 0.3)
        return fig

    return _drawn(draw, "trend")


def _ranked_devices(devices: list[dict[str, Any]], alerted: set[str]) -> list[dict[str, Any]]:
    if len(devices) <= RANKING_SHOWN:
        return devices
    ends = RANKING_SHOWN // 2
    return [d for rank, d in enumerate(devices)
            if rank < ends or rank >= len(devices) - ends or d["device_id"] in alerted]


def _ranking_chart(shown: list[dict[str, Any]], alerted: set[str]) -> str:
    labels = [_chart_text(_device_label(d.get("name"), d["device_id"])) for d in shown]
    values = [d["csat"] or 0.0 for d in shown]
    colours = [COLOURS["ranking_alert"] if d["device_id"] in alerted else COLOURS["ranking"]
               for d in shown]

    def draw() -> Figure:
        fig = _figure(10, 0.9 + 0.32 * len(shown))
        ax = fig.subplots()
        rows = range(len(shown))
        ax.barh(rows, values, color=colours, height=0.7)
        ax.set_yticks(rows, labels)
        ax.invert_yaxis()  # the best first, as in the table
        ax.set_xlim(0, 1.32)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1])
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_xlabel("CSAT")
        for row, device in enumerate(shown):
            note = (f"{_pct(device['csat'])}  n={_count(device['responses'])}"
                    if device["csat"] is not None else "no responses")
            if device["device_id"] in alerted:
                note += "  ALERT"
            ax.text((device["csat"] or 0) + 0.01, row, note, va="center", fontsize=8,
                    color=COLOURS["ranking_alert"] if device["device_id"] in alerted
                    else "#333333")
        return fig

    return _drawn(draw, "ranking")


def _told_chart(told: dict[str, Any], not_told: dict[str, Any]) -> str:
    groups = [("told what happens next", told, COLOURS["told_yes"]),
              ("not told", not_told, COLOURS["told_no"])]

    def draw() -> Figure:
        fig = _figure(10, 2.2)
        ax = fig.subplots()
        for row, (_, group, colour) in enumerate(groups):
            if group["csat"] is None:
                ax.text(0.02, row, "no answers", va="center", color="#555555")
                continue
            ax.barh(row, group["csat"], color=colour, height=0.6)
            ci = group.get("ci95")
            if ci:
                # max(): at a CSAT of 0 or 1 the interval's end may round past it.
                below, above = max(0.0, group["csat"] - ci[0]), max(0.0, ci[1] - group["csat"])
                ax.errorbar(group["csat"], row, xerr=[[below], [above]], fmt="none",
                            ecolor="#222222", capsize=6, linewidth=1.5)
            right = ci[1] if ci else group["csat"]
            ax.text(right + 0.015, row, f"{_pct(group['csat'])}  n={_count(group['responses'])}",
                    va="center", fontsize=9)
        ax.set_yticks([0, 1], [label for label, _, _ in groups])
        ax.set_ylim(1.6, -0.6)  # told on top; both rows in view even when one has no bar
        ax.set_xlim(0, 1.2)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1])
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_xlabel("CSAT, with its 95% interval")
        return fig

    return _drawn(draw, "told")


# -- page ---------------------------------------------------------------------------------


def _chart(chart_id: str, heading: str, caption: str, svg: str | None, empty: str) -> str:
    body = svg if svg is not None else f'<p class="chart-empty">{_e(empty)}</p>'
    kind = "chart" if svg is not None else "chart empty"
    return (f'<figure class="{kind}" id="{chart_id}"><h3>{_e(heading)}</h3>{body}'
            f"<figcaption>{caption}</figcaption></figure>")


def _difference_text(difference: dict[str, Any]) -> str:
    value, ci = difference.get("value"), difference.get("ci95")
    if value is None:
        return "Not enough yes and no answers to compare."
    text = f"Told minus not told: {_points(value)} points of CSAT"
    if ci:
        text += f" (95% CI {_points(ci[0])} to {_points(ci[1])})"
        if ci[0] <= 0 <= ci[1]:
            text += "; the interval includes 0, so these answers do not show a clear difference"
    return _e(text + ".")


def _charts(report: dict[str, Any], alerted: set[str]) -> str:
    heatmap = report["heatmap"]
    placed = sum(sum(row) for row in heatmap["responses"])
    devices = report["devices"]
    shown = _ranked_devices(devices, alerted)
    told, not_told = report["csat_told"], report["csat_not_told"]
    ranking_note = f"Devices in alert in the last {RECENT_S // 86400} days of the range in red."
    if len(shown) < len(devices):
        ranking_note += (f" Showing {len(shown)} of {len(devices):,} devices (the best, the "
                         "worst and those in alert); all are in the table below.")
    trend_by, trend_points = _trend_points(report)
    parts = [
        _chart("chart-heatmap", "When: weekday × hour",
               "CSAT by local weekday and hour; the number in a cell is its responses; grey "
               "cells had none.",
               _heatmap_chart(heatmap) if placed else None,
               "No responses with a known time in this selection."),
        _chart("chart-trend", TREND_TITLES[trend_by],
               f"CSAT and told-next rate {TREND_CAPTIONS[trend_by]} (lines, left axis) and "
               "responses (bars, right axis).",
               _trend_chart(trend_points) if trend_points else None,
               "No days with placed responses in this selection."),
        _chart("chart-ranking", "Devices ranked by CSAT", _e(ranking_note),
               _ranking_chart(shown, alerted) if devices else None,
               "No devices in this selection."),
        _chart("chart-told", "Told what happens next vs not told",
               _difference_text(report.get("csat_difference") or {}),
               _told_chart(told, not_told)
               if told["csat"] is not None or not_told["csat"] is not None else None,
               "No yes or no answers to compare."),
    ]
    return '<section id="charts"><h2>Charts</h2>' + "".join(parts) + "</section>"


def _figure_card(label: str, value: str, note: str = "", key: str = "") -> str:
    return (f'<div class="figure" data-key="{_e(key)}"><div class="label">{_e(label)}</div>'
            f'<div class="value">{_e(value)}</div><div class="note">{_e(note)}</div></div>')


def _key_figures(report: dict[str, Any]) -> str:
    mean = report.get("mean_rating") or {}
    raw = mean.get("raw") or {}
    raw_text = ", ".join(f"{value:.1f} of {scale}" for scale, value in sorted(raw.items())
                         if value is not None)
    normalised = mean.get("normalised")
    told = report.get("told_next") or {}
    flagged = report.get("flagged") or {}
    flag_note = "included in the figures" if flagged.get("included") else "left out"
    cards = [
        _figure_card("Responses", _count(report["responses"]), key="responses"),
        _figure_card("CSAT", _pct(report["csat"]), "top half of each scale", key="csat"),
        _figure_card("Mean rating", "–" if normalised is None else f"{normalised:.2f}",
                     "0 = worst face, 1 = best" + (f"; {raw_text}" if raw_text else ""),
                     key="mean_rating"),
        _figure_card("Told what happens next", _pct(report["told_next_rate"]),
                     f"yes {told.get('yes', 0):,}, no {told.get('no', 0):,}, "
                     f"no answer {told.get('no_answer', 0):,}", key="told_next_rate"),
        _figure_card("Flagged: rapid · closed",
                     f"{flagged.get('rapid', 0):,} · {flagged.get('closed', 0):,}",
                     f"{flag_note}; a response may be both", key="flagged"),
        _figure_card("Time unknown", _count(report["time_unknown"]),
                     "not placed in the heatmap or trend", key="time_unknown"),
    ]
    return '<section id="key-figures">' + "".join(cards) + "</section>"


def _clock_corrected(report: dict[str, Any]) -> str:
    line = clock_corrected_line(report)
    return "" if line is None else f'<p class="notice" id="clock-corrected">{_e(line)}</p>'


def _utc(iso: str | None) -> int | None:
    """Unix seconds of the report's ISO UTC times (`2026-11-01T00:00:00Z`)."""
    if not iso:
        return None
    try:
        return int(datetime.fromisoformat(iso).timestamp())
    except ValueError:
        return None


def _utc_text(unix: int) -> str:
    return f"{datetime.fromtimestamp(unix, UTC):%a %Y-%m-%d %H:%M} UTC"


def _day_text(iso: str) -> str:
    return f"{date.fromisoformat(iso):%a %Y-%m-%d}"


def _covered_text(report: dict[str, Any]) -> str:
    covered = report.get("covered") or {}
    if not covered.get("first_day"):
        return "no day with placed responses"
    days = covered.get("days", 0)
    return (f"{_day_text(covered['first_day'])} to {_day_text(covered['last_day'])} "
            f"(local dates; {days:,} day{'s' if days != 1 else ''} with responses)")


def _stamp(report: dict[str, Any]) -> str:
    """What the page covers and when it was made, under its title."""
    made = _utc(report.get("generated_at"))
    text = f"Responses dated {_covered_text(report)}."
    if made is not None:
        text += f" Made {_utc_text(made)}."
    return f'<p class="stamp" id="covered">{_e(text)}</p>'


def _filters(filters: dict[str, Any]) -> str:
    items = [("From", filters.get("since") or "the first response"),
             ("Before", filters.get("until") or "the last response"),
             ("Device", filters.get("device") or "all"),
             ("Location", filters.get("location") or "all"),
             ("Site", filters.get("site") or "all"),
             ("Flagged responses", "included" if filters.get("include_flagged")
              else "left out")]
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    return f'<section id="filters"><h2>Selection</h2><dl>{rows}</dl></section>'


def _alert_table(table_id: str, alerts: list[dict[str, Any]], row_class: str) -> str:
    rows = "".join(
        f'<tr class="{row_class}" data-device="{_e(a["device_id"])}">'
        f"<td>{_e(_device_label(a.get('name'), a['device_id']))}</td>"
        f"<td>{_e(a.get('location') or '–')}</td><td>{_e(_local_time(a['start']))}</td>"
        f"<td>{_e(_local_time(a['end']))}</td><td class=n>{_count(a['responses'])}</td>"
        f"<td class=n>{_count(a['negative'])}</td><td class=n>{_e(_pct(a['share']))}</td></tr>"
        for a in alerts)
    return (f'<table id="{table_id}"><thead><tr><th>Device</th><th>Location</th><th>From</th>'
            "<th>To</th><th>Responses</th><th>Negative</th><th>Share</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def _alerts(current: list[dict[str, Any]], earlier: list[dict[str, Any]],
            end: int | None) -> str:
    if not current and not earlier:
        return ('<section id="alerts"><h2>Alerts</h2><p class="none">No alerts in this '
                "selection.</p></section>")
    days = RECENT_S // 86400
    since = ("" if end is None else
             f" (after {_utc_text(end - RECENT_S)})")
    parts = [f'<section id="alerts"><h2>Alerts <span class="count">{len(current):,}</span>'
             "</h2><p>Periods where the two lowest faces made up a large share of a short "
             f"window at one device (deskpulse alerts). Current: those that ended in the "
             f"last {days} days of the range{_e(since)}; they mark their devices.</p>"]
    if current:
        parts.append(_alert_table("alerts-table", current, "alert"))
    else:
        parts.append(f'<p class="none">No alert in the last {days} days of the range.</p>')
    if earlier:
        parts.append(f'<details id="alerts-earlier"><summary>{len(earlier):,} earlier '
                     f"alert{'s' if len(earlier) != 1 else ''} (history)</summary>"
                     + _alert_table("alerts-earlier-table", earlier, "earlier-alert")
                     + "</details>")
    return "".join(parts) + "</section>"


_GROUP_COLUMNS = ("Responses", "CSAT", "Mean rating", "Told next", "CSAT told",
                  "CSAT not told", "Time unknown", "Alerts")


def _alerts_cell(alerts: tuple[int, int]) -> str:
    """(current, earlier) alerts: the current ones marked, the earlier ones counted."""
    current, earlier = alerts
    parts = ([f"⚠ {current:,}"] if current else []) + (
        [f"{earlier:,} earlier"] if earlier else [])
    return " · ".join(parts) or "–"


def _group_cells(group: dict[str, Any], alerts: tuple[int, int]) -> str:
    mean = group.get("mean_rating")
    cells = [_count(group["responses"]), _pct(group.get("csat")),
             "–" if mean is None else f"{mean:.2f}", _pct(group.get("told_next_rate")),
             _pct(group.get("csat_told")), _pct(group.get("csat_not_told")),
             _count(group.get("time_unknown", 0)), _alerts_cell(alerts)]
    return "".join(f"<td class=n>{_e(cell)}</td>" for cell in cells)


def _group_table(table_id: str, heading: str, first_columns: Sequence[str],
                 rows: list[tuple[list[str], dict[str, Any], tuple[int, int], str]]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in (*first_columns, *_GROUP_COLUMNS))
    body = "".join(
        f'<tr{" class=alerted" if alerts[0] else ""} data-key="{_e(key)}">'
        + "".join(f"<td>{_e(cell)}</td>" for cell in first) + _group_cells(group, alerts)
        + "</tr>"
        for first, group, alerts, key in rows)
    return (f'<section class="table" id="{table_id}-section"><h2>{_e(heading)}</h2>'
            f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            "</table></section>")


class _AlertCounts:
    """(current, earlier) alerts per key."""

    def __init__(self, current: list[dict[str, Any]], earlier: list[dict[str, Any]],
                 key: Callable[[dict[str, Any]], Any]) -> None:
        self.current = Counter(key(a) for a in current)
        self.earlier = Counter(key(a) for a in earlier)

    def __getitem__(self, key: Any) -> tuple[int, int]:
        return self.current[key], self.earlier[key]


def _tables(report: dict[str, Any], current: list[dict[str, Any]],
            earlier: list[dict[str, Any]]) -> str:
    per_device = _AlertCounts(current, earlier, lambda a: a["device_id"])
    per_location = _AlertCounts(current, earlier, lambda a: a.get("location"))
    devices_title, sites_title = ranking_titles(report)
    parts = []
    if report.get("sites"):
        site = report["filters"]["site"]
        per_site = _AlertCounts(
            [a for a in current if a.get("site") and is_under(a["site"], site)],
            [a for a in earlier if a.get("site") and is_under(a["site"], site)],
            lambda a: child_towards(site, a["site"]))
        parts.append(_group_table("sites-table", sites_title, ("Site", "Kind"), [
            ([row["site"], row["kind"]], row, per_site[row["site"]], row["site"])
            for row in report["sites"]]))
    if report["devices"]:
        # Which store each kiosk is in, when a tree is reported on.
        by_site = bool(report["filters"].get("site"))
        parts.append(_group_table(
            "devices-table", devices_title,
            ("Device", "Location", "Time zone", *(("Store",) if by_site else ())), [
                ([_device_label(d.get("name"), d["device_id"]), d.get("location") or "–",
                  d.get("time_zone") or "host's", *((d.get("site") or "–",) if by_site else ())],
                 d, per_device[d["device_id"]], d["device_id"])
                for d in report["devices"]]))
    if report["locations"]:
        parts.append(_group_table("locations-table", "Locations", ("Location",), [
            ([loc.get("location") or "(no location)"], loc, per_location[loc.get("location")],
             loc.get("location") or "")
            for loc in report["locations"]]))
    return "".join(parts)


_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d232b;
  background: #fafafa; margin: 0; }
main { max-width: 1100px; margin: 0 auto; padding: 24px; }
h1 { margin: 0 0 4px; font-size: 1.6rem; }
h2 { font-size: 1.15rem; margin: 28px 0 10px; border-bottom: 1px solid #d5d9de;
  padding-bottom: 4px; }
h3 { font-size: 1rem; margin: 0 0 8px; }
#filters dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
#filters dt { color: #5a6470; }
#filters dd { margin: 0; }
#key-figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr));
  gap: 12px; margin-top: 20px; }
.figure { background: #fff; border: 1px solid #d5d9de; border-radius: 6px; padding: 10px 12px; }
.figure .label { color: #5a6470; font-size: 0.85rem; }
.figure .value { font-size: 1.7rem; font-weight: 600; }
.figure .note { color: #5a6470; font-size: 0.78rem; }
.empty { font-size: 1.2rem; padding: 24px; background: #fff; border: 1px dashed #a8b0ba;
  text-align: center; }
figure.chart { background: #fff; border: 1px solid #d5d9de; border-radius: 6px; margin: 0 0 16px;
  padding: 12px; }
figure.chart.empty p { color: #5a6470; }
.chart-svg { width: 100%; height: auto; display: block; }
figcaption { color: #5a6470; font-size: 0.85rem; margin-top: 6px; }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #e3e6ea; padding: 5px 8px; text-align: left; }
th { background: #f0f2f4; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.alert td, tr.alerted td { background: #fff1f0; }
tr.alert td:first-child, tr.alerted td:first-child { border-left: 4px solid #b00020; }
#alerts .count { background: #b00020; color: #fff; border-radius: 10px; padding: 0 8px;
  font-size: 0.85rem; }
.notice { background: #fff8e1; border: 1px solid #e0c36a; border-radius: 6px;
  padding: 8px 12px; margin: 16px 0 0; }
footer { color: #5a6470; font-size: 0.8rem; margin-top: 28px; }
.stamp { color: #5a6470; margin: 0; }
#alerts details { margin-top: 12px; }
#alerts summary { cursor: pointer; color: #5a6470; }
"""


def render(report: dict[str, Any], alerts: list[dict[str, Any]], *,
           title: str = "DeskPulse report") -> str:
    """One self-contained HTML page: key figures, filters, alerts, charts and tables."""
    filters = report.get("filters") or {}
    end = range_end(_utc(filters.get("until")), _utc(report.get("generated_at")))
    current, earlier = current_and_earlier(alerts, end)
    alerted = {a["device_id"] for a in current}
    if report["responses"]:
        body = _charts(report, alerted) + _tables(report, current, earlier)
    else:
        body = ('<p class="empty" id="no-responses">No responses in this selection.</p>'
                + _tables(report, current, earlier))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>"
        f"<header><h1>{_e(title)}</h1>{_stamp(report)}</header>"
        + _key_figures(report) + _clock_corrected(report) + _filters(filters)
        + _alerts(current, earlier, end)
        + body
        + "<footer>Made by deskpulse report. Times are each device's local time.</footer>"
        "</main></body></html>\n")
