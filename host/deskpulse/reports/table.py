"""`deskpulse report --format table`: a readable terminal summary of a report (the HTML
page is report_html's job). rich and deskpulse.reports.figures (numpy) are imported only when a
table is drawn."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table

TABLE_WIDTH = 110


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _ci(interval: list[float] | None, signed: bool = False) -> str:
    if interval is None:
        return "-"
    if signed:
        return f"{100 * interval[0]:+.1f} to {100 * interval[1]:+.1f} pts"
    return f"{100 * interval[0]:.1f}-{100 * interval[1]:.1f}%"


def _num(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _filters_line(filters: dict[str, Any]) -> str:
    parts = [f"from {filters['since'] or 'the first response'} "
             f"to {filters['until'] or 'the last'}"]
    if filters["device"]:
        parts.append(f"device {filters['device']}")
    if filters["location"]:
        parts.append(f"location {filters['location']}")
    if filters.get("site"):
        parts.append(f"site {filters['site']}")
    parts.append("flagged responses included" if filters["include_flagged"]
                 else "flagged responses left out")
    return "; ".join(parts)


def _rankings(rep: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]], str]]:
    from deskpulse.reports.figures import ranking_titles

    devices, sites = ranking_titles(rep)
    ranked = [(devices, rep["devices"], "device_id"),
              ("Locations", rep["locations"], "location")]
    if rep.get("sites"):
        ranked.insert(0, (sites, rep["sites"], "site"))
    return ranked


def _table(title: str, *columns: str) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right")
    return table


def format_table(rep: dict[str, Any], terminal: bool = False) -> str:
    """A readable summary of a report; plain text unless `terminal`."""
    from rich.console import Console

    from deskpulse.reports import figures as report

    buffer = io.StringIO()
    console = Console(file=buffer, width=TABLE_WIDTH, force_terminal=terminal,
                      no_color=not terminal, highlight=False, emoji=False)
    console.print("[bold]DeskPulse report[/bold]")
    console.print(_filters_line(rep["filters"]))
    told = rep["told_next"]
    raw = ", ".join(f"{mean:.2f} of {scale}" for scale, mean in rep["mean_rating"]["raw"].items())
    key = _table("Key figures", "figure", "value")
    key.add_row("responses", str(rep["responses"]))
    key.add_row("CSAT (top half of the scale)", _pct(rep["csat"]))
    key.add_row("mean rating (0-1)", _num(rep["mean_rating"]["normalised"], 3))
    key.add_row("mean rating (faces)", raw or "-")
    key.add_row("told what happens next", _pct(rep["told_next_rate"]))
    key.add_row("answers yes / no / none", f"{told['yes']} / {told['no']} / {told['no_answer']}")
    flagged = rep["flagged"]
    key.add_row("flagged rapid / closed", f"{flagged['rapid']} / {flagged['closed']} "
                f"({'included' if flagged['included'] else 'left out'})")
    key.add_row("time unknown", str(rep["time_unknown"]))
    console.print(key)
    clock_line = report.clock_corrected_line(rep)
    if clock_line is not None:
        console.print(clock_line, markup=False, soft_wrap=True)

    told_table = _table("Told what happens next?", "answer", "responses", "CSAT", "95% CI")
    for label, group in (("yes", rep["csat_told"]), ("no", rep["csat_not_told"])):
        told_table.add_row(label, str(group["responses"]), _pct(group["csat"]),
                           _ci(group["ci95"]))
    diff = rep["csat_difference"]
    value = "-" if diff["value"] is None else f"{100 * diff['value']:+.1f} pts"
    told_table.add_row("difference", "", value, _ci(diff["ci95"], signed=True))
    console.print(told_table)

    if rep["ratings"]:
        ratings = _table("Ratings (1 = worst face)", "scale", *map(str, range(1, 6)))
        for scale, counts in rep["ratings"].items():
            ratings.add_row(f"{scale} faces", *(str(counts.get(str(r), "")) for r in range(1, 6)))
        console.print(ratings)

    for title, rows, label in _rankings(rep):
        table = _table(title, label.replace("_id", ""), "responses", "CSAT", "mean (0-1)",
                       "told next", "CSAT told", "CSAT not told", "time unknown")
        for row in rows:
            name = str(row[label] if row[label] is not None else "(none)")
            if label == "device_id" and row.get("name"):
                name += f" ({row['name']})"
            if label == "device_id" and rep["filters"].get("site") and row.get("site"):
                # Which store, when a tree is reported on: its name, as its path would
                # wrap the column.
                name += f" in {row['site'].rpartition('/')[2]}"
            table.add_row(name, str(row["responses"]), _pct(row["csat"]),
                          _num(row["mean_rating"], 3), _pct(row["told_next_rate"]),
                          _pct(row["csat_told"]), _pct(row["csat_not_told"]),
                          str(row["time_unknown"]))
        console.print(table)
    return buffer.getvalue()
