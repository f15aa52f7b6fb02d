"""`deskpulse report`: a thin command over deskpulse.reports.figures (and, for HTML, report_html and
alerts; for the terminal, report_table)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO, cast

from deskpulse import files
from deskpulse.errors import DeskPulseError
from deskpulse.store import open_store
from deskpulse.store.base import db_option_help

# deskpulse.reports.figures (numpy) and report_table (rich) are imported when the command runs:
# building the parser for every command must not load them.

FORMATS = ("table", "json", "csv", "html")


def register(subparsers: Any) -> None:
    """Add `report` to the `deskpulse` subcommands."""
    rep = subparsers.add_parser(
        "report", help="satisfaction, told-next and device figures over a time range",
        description=(
            "Figures over the stored responses (docs/report.md): CSAT, ratings, whether "
            "customers were told what happens next and what that changes, per device, "
            "location and site, by local weekday and hour and by day. Flagged responses (rapid, "
            "closed) are left out unless --include-flagged."))
    rep.add_argument("--db", help=db_option_help())
    rep.add_argument("--since", help="from this ISO date or date-time (host local time "
                                     "unless it has an offset), inclusive")
    rep.add_argument("--until", help="up to this ISO date or date-time, exclusive")
    rep.add_argument("--device", metavar="ID", help="only this device")
    rep.add_argument("--location", help="only devices at this location")
    rep.add_argument("--site", metavar="PATH",
                     help="only the kiosks in this site (an organisation, region or store: "
                          "`deskpulse sites`), with the sites one level below it ranked (a "
                          "store's: its kiosks)")
    rep.add_argument("--format", choices=FORMATS, default="table",
                     help="table (terminal summary), json (docs/report.md), csv (one row per "
                          "response) or html (one offline page with charts); "
                          "default %(default)s")
    rep.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    rep.add_argument("--include-flagged", action="store_true",
                     help="count rapid and closed responses in the figures too")
    rep.set_defaults(func=do_report)


def generation_time() -> int:
    """Now, as unix seconds, or SOURCE_DATE_EPOCH when it is set: the reproducible-builds
    convention, so that two runs over the same data can give the same bytes (the tests
    comparing the engines' JSON set it)."""
    fixed = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if fixed:
        try:
            return int(fixed)
        except ValueError:
            raise DeskPulseError(f"SOURCE_DATE_EPOCH {fixed!r} is not a whole number of "
                                 "seconds since 1970") from None
    return int(time.time())


def do_report(args: argparse.Namespace) -> int:
    selection = {"since": args.since, "until": args.until, "device": args.device,
                 "location": args.location, "include_flagged": args.include_flagged,
                 "site": args.site}
    made = generation_time()
    store = open_store(args.db, create=False)
    try:
        from deskpulse.reports import (
            figures as report,  # numpy: only once there is something to report on
        )

        with _output(args.output) as out:
            if args.format == "csv":
                report.write_csv(store, out, **selection)
            elif args.format == "json":
                json.dump(report.build_report(store, **selection, generated_at=made), out, indent=2)
                out.write("\n")
            elif args.format == "html":
                from deskpulse.reports import alerts
                from deskpulse.reports import html as report_html

                figures = report.build_report(store, **selection, generated_at=made)
                found = alerts.find_alerts(store, **selection)
                out.write(report_html.render(figures, found))
            else:
                from deskpulse.reports.table import TABLE_WIDTH, format_table

                figures = report.build_report(store, **selection, generated_at=made)
                colour = args.output is None and out.isatty()
                # The terminal's width on stdout (COLUMNS first, as shutil reads it); a file
                # or a pipe gets the width a mail or a wide terminal shows.
                width = (shutil.get_terminal_size((TABLE_WIDTH, 24)).columns
                         if args.output is None else TABLE_WIDTH)
                out.write(format_table(figures, terminal=colour, width=width))
    finally:
        store.close()
    return 0


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    """stdout, or a file written beside its final name and renamed into place, so that a
    failed report never leaves half a file."""
    if path is None:
        yield sys.stdout
        return
    with files.replacing(Path(path), text=True) as out:
        yield cast(TextIO, out)  # opened in text mode
