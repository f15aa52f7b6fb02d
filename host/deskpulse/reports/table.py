"""`deskpulse report --format table`: a readable terminal summary of a report (the HTML
page is report_html's job). rich and deskpulse.reports.figures (numpy) are imported only when a
table is drawn.

It fits the width it is given (the terminal's): a ranking keeps the columns that fit, most
useful first, and its names give way before its figures. A long ranking shows its top and
bottom ENDS rows and says how many are left out: the full list is in the JSON and the CSV
(drawing 500 rows was most of the command's time, and no one reads them on a terminal)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console
    from rich.table import Table

TABLE_WIDTH = 110  # for a file or a pipe, and a terminal whose width is unknown
ENDS = 5  # rows shown at each end of a long ranking
NAME_MIN = 12  # the narrowest a ranking's name column gets before figures are dropped


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


def _count(n: int) -> str:
    return f"{n:,}"


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


def _covered_line(rep: dict[str, Any]) -> str | None:
    covered = rep.get("covered") or {}
    if not covered.get("first_day"):
        return None
    days = covered["days"]
    return (f"dated {covered['first_day']} to {covered['last_day']} (local dates; "
            f"{days:,} day{'s' if days != 1 else ''} with responses)")


def _table(title: str, *columns: str, caption: str | None = None, names: int = 0,
           rank_width: int = 0) -> Table:
    """A table whose column `names` is the one that gives way (cut with an ellipsis) when
    the width is short; before it, when `rank_width`, a column of ranks that wide."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False,
                  caption=caption, caption_justify="left")
    for i, name in enumerate(columns):
        if i == names:
            table.add_column(name, justify="left", no_wrap=True, overflow="ellipsis",
                             min_width=min(NAME_MIN, len(name)))
        elif i < names:
            table.add_column(name, justify="right", no_wrap=True, min_width=rank_width)
        else:
            table.add_column(name, justify="right", no_wrap=True)
    return table


# A ranking's figure columns, most useful first: (heading, cell of a row).
_RANKING_COLUMNS: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("responses", lambda row: _count(row["responses"])),
    ("CSAT", lambda row: _pct(row["csat"])),
    ("told next", lambda row: _pct(row["told_next_rate"])),
    ("CSAT told", lambda row: _pct(row["csat_told"])),
    ("CSAT not told", lambda row: _pct(row["csat_not_told"])),
    ("mean (0-1)", lambda row: _num(row["mean_rating"], 3)),
    ("time unknown", lambda row: _count(row["time_unknown"])),
)


def _row_name(rep: dict[str, Any], row: dict[str, Any], label: str) -> str:
    name = str(row[label] if row[label] is not None else "(none)")
    if label == "device_id" and row.get("name"):
        name += f" ({row['name']})"
    if label == "device_id" and rep["filters"].get("site") and row.get("site"):
        # Which store, when a tree is reported on: its name, as its path would
        # wrap the column.
        name += f" in {row['site'].rpartition('/')[2]}"
    return name


def _ranking(console: Console, rep: dict[str, Any], title: str, rows: list[dict[str, Any]],
             label: str) -> Table:
    """The ranking with as many figure columns as fit the console, and only its ENDS
    first and last rows when it is long."""
    what = {"device_id": "devices", "location": "locations", "site": "sites"}[label]
    left_out = len(rows) - 2 * ENDS
    cut = left_out > 2  # leaving out one or two rows would save no room
    shown = list(enumerate(rows, 1))
    caption = None
    if cut:
        shown = shown[:ENDS] + shown[-ENDS:]
        formats = "--format csv or json" if label == "device_id" else "--format json"
        caption = f"… {left_out:,} more {what}: {formats} for all"
    from rich.cells import cell_len
    from rich.measure import Measurement

    head = label.replace("_id", "")
    names = [_row_name(rep, row, label) for _, row in shown]
    name_width = max(cell_len(text) for text in [head, *names])
    unbounded = console.options.update_width(10 * console.width)
    for keep in range(len(_RANKING_COLUMNS), 2, -1):
        columns = _RANKING_COLUMNS[:keep]
        table = _table(title, *(("#",) if cut else ()), head,
                       *(heading for heading, _ in columns), caption=caption,
                       names=int(cut), rank_width=len(str(len(rows))))
        for (rank, row), name in zip(shown, names, strict=True):
            table.add_row(*((str(rank),) if cut else ()), name,
                          *(cell(row) for _, cell in columns),
                          end_section=cut and rank == ENDS)
        # Measured without the console's bound, which would clip the answer to it.
        excess = Measurement.get(console, unbounded, table).maximum - console.width
        if excess > 0 and (name_width - excess >= NAME_MIN or keep == 3):
            # The names give way (cut with an ellipsis) rather than the figures.
            table.columns[int(cut)].max_width = max(NAME_MIN, name_width - excess)
            excess = 0
        if excess <= 0:
            return table
    raise AssertionError("unreachable: the narrowest ranking is returned above")


def format_table(rep: dict[str, Any], terminal: bool = False,
                 width: int = TABLE_WIDTH) -> str:
    """A readable summary of a report, no line wider than `width`; plain text unless
    `terminal`."""
    from rich.console import Console

    from deskpulse.reports import figures as report

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=terminal,
                      no_color=not terminal, highlight=False, emoji=False)
    console.print("[bold]DeskPulse report[/bold]")
    console.print(_filters_line(rep["filters"]), markup=False)
    covered = _covered_line(rep)
    if covered is not None:
        console.print(covered, markup=False)
    told = rep["told_next"]
    raw = ", ".join(f"{mean:.2f} of {scale}" for scale, mean in rep["mean_rating"]["raw"].items())
    key = _table("Key figures", "figure", "value")
    key.add_row("responses", _count(rep["responses"]))
    key.add_row("CSAT (top half of the scale)", _pct(rep["csat"]))
    key.add_row("mean rating (0-1)", _num(rep["mean_rating"]["normalised"], 3))
    key.add_row("mean rating (faces)", raw or "-")
    key.add_row("told what happens next", _pct(rep["told_next_rate"]))
    key.add_row("answers yes / no / none",
                " / ".join(_count(told[answer]) for answer in ("yes", "no", "no_answer")))
    flagged = rep["flagged"]
    key.add_row("flagged rapid / closed",
                f"{_count(flagged['rapid'])} / {_count(flagged['closed'])} "
                f"({'included' if flagged['included'] else 'left out'})")
    key.add_row("time unknown", _count(rep["time_unknown"]))
    console.print(key)
    clock_line = report.clock_corrected_line(rep)
    if clock_line is not None:
        console.print(clock_line, markup=False)

    told_table = _table("Told what happens next?", "answer", "responses", "CSAT", "95% CI")
    for label, group in (("yes", rep["csat_told"]), ("no", rep["csat_not_told"])):
        told_table.add_row(label, _count(group["responses"]), _pct(group["csat"]),
                           _ci(group["ci95"]))
    diff = rep["csat_difference"]
    value = "-" if diff["value"] is None else f"{100 * diff['value']:+.1f} pts"
    told_table.add_row("difference", "", value, _ci(diff["ci95"], signed=True))
    console.print(told_table)

    if rep["ratings"]:
        ratings = _table("Ratings (1 = worst face)", "scale", *map(str, range(1, 6)))
        for scale, counts in rep["ratings"].items():
            ratings.add_row(f"{scale} faces", *(
                _count(counts[str(r)]) if str(r) in counts else "" for r in range(1, 6)))
        console.print(ratings)

    for title, rows, label in _rankings(rep):
        console.print(_ranking(console, rep, title, rows, label))
    return buffer.getvalue()
