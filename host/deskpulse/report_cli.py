"""`deskpulse report`: a thin command over deskpulse.report (and, for HTML, report_html and
alerts). cli.build_parser() calls `add_report_command(sub)`."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from deskpulse import db
from deskpulse.errors import DeskPulseError

if TYPE_CHECKING:
    from rich.table import Table

# deskpulse.report (numpy) and rich are imported by the functions that use them: building
# the parser for every command must not load them.

FORMATS = ("table", "json", "csv", "html")
TABLE_WIDTH = 110


def add_report_command(sub: Any) -> None:
    rep = sub.add_parser(
        "report", help="satisfaction, told-next and device figures over a time range",
        description=(
            "Figures over the stored responses (docs/report.md): CSAT, ratings, whether "
            "customers were told what happens next and what that changes, per device and "
            "location, by local weekday and hour and by day. Flagged responses (rapid, "
            "closed) are left out unless --include-flagged."))
    rep.add_argument("--db", help=db.db_option_help())
    rep.add_argument("--since", help="from this ISO date or date-time (host local time "
                                     "unless it has an offset), inclusive")
    rep.add_argument("--until", help="up to this ISO date or date-time, exclusive")
    rep.add_argument("--device", metavar="ID", help="only this device")
    rep.add_argument("--location", help="only devices at this location")
    rep.add_argument("--format", choices=FORMATS, default="table",
                     help="table (terminal summary), json (docs/report.md), csv (one row per "
                          "response) or html (one offline page with charts); "
                          "default %(default)s")
    rep.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    rep.add_argument("--include-flagged", action="store_true",
                     help="count rapid and closed responses in the figures too")
    rep.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    selection = {"since": args.since, "until": args.until, "device": args.device,
                 "location": args.location, "include_flagged": args.include_flagged}
    conn = db.connect(args.db, create=False)
    try:
        from deskpulse import report  # numpy: only once there is something to report on

        with _output(args.output) as out:
            if args.format == "csv":
                report.write_csv(conn, out, **selection)
            elif args.format == "json":
                json.dump(report.build_report(conn, **selection), out, indent=2)
                out.write("\n")
            elif args.format == "html":
                from deskpulse import alerts, report_html

                figures = report.build_report(conn, **selection)
                found = alerts.find_alerts(conn, **selection)
                out.write(report_html.render(figures, found))
            else:
                figures = report.build_report(conn, **selection)
                colour = args.output is None and out.isatty()
                out.write(format_table(figures, terminal=colour))
    finally:
        conn.close()
    return 0


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    """stdout, or a file written beside its final name and renamed into place, so that a
    failed report never leaves half a file."""
    if path is None:
        yield sys.stdout
        return
    target = Path(path)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    except OSError as exc:
        raise DeskPulseError(f"cannot write {target}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            yield out
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)  # mkstemp's 0600 would hide the report from others
        os.replace(temp, target)
    except OSError as exc:
        raise DeskPulseError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


# -- the terminal summary -------------------------------------------------------------------


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
    parts.append("flagged responses included" if filters["include_flagged"]
                 else "flagged responses left out")
    return "; ".join(parts)


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

    from deskpulse import report

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

    for title, rows, label in (("Devices", rep["devices"], "device_id"),
                               ("Locations", rep["locations"], "location")):
        table = _table(title, label.replace("_id", ""), "responses", "CSAT", "mean (0-1)",
                       "told next", "CSAT told", "CSAT not told", "time unknown")
        for row in rows:
            name = str(row[label] if row[label] is not None else "(none)")
            if label == "device_id" and row.get("name"):
                name += f" ({row['name']})"
            table.add_row(name, str(row["responses"]), _pct(row["csat"]),
                          _num(row["mean_rating"], 3), _pct(row["told_next_rate"]),
                          _pct(row["csat_told"]), _pct(row["csat_not_told"]),
                          str(row["time_unknown"]))
        console.print(table)
    return buffer.getvalue()
