"""`deskpulse db`: the database itself: `copy` one into another (a store's SQLite file to
the chain's PostgreSQL, resumable; deskpulse.store.copy) and `info`."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from deskpulse.store.base import db_option_help


def register(subparsers: Any) -> None:
    """Add `db` and its subcommands to the `deskpulse` subcommands."""
    db = subparsers.add_parser(
        "db", help="copy a database into another (moving up to PostgreSQL); show one",
        description="Work on whole databases. A database is a path, sqlite:///PATH "
                    "or postgresql://USER@HOST/NAME.")
    cmds = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    copy = cmds.add_parser(
        "copy", help="copy every device, key, sync and response into another database",
        description="Copy every device (facts and health), key with its replay counter, "
                    "anchor, sync record and response of --from into --to, with the site "
                    "tree, config templates and overrides and each kiosk's desired configs "
                    "(their versions kept), and rebuild the report counts there: the "
                    "reports of both agree. Interrupted, run "
                    "it again: it continues and the result is the same. Into a database "
                    "that holds other kiosks it merges; a kiosk in both must agree (the "
                    "same key, no response number holding two different answers, one "
                    "history of desired configs) and a config layer in both must set the "
                    "same keys, else nothing is copied. --from is only read.")
    copy.add_argument("--from", dest="source", required=True, metavar="DB",
                      help="the database to copy")
    copy.add_argument("--to", dest="destination", required=True, metavar="DB",
                      help="where to copy it (created if it is a new SQLite file)")
    copy.set_defaults(func=do_copy)
    info = cmds.add_parser("info", help="the database's engine, schema and counts")
    info.add_argument("--db", help=db_option_help())
    info.set_defaults(func=do_info)


class CopyProgress:
    """A bar redrawn in place on a terminal; elsewhere (a log, a pipe) a plain line every
    tenth of the way, so a log says how far a copy got without a line per chunk."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.terminal = out.isatty()
        self.tenths_said = -1

    def __call__(self, done: int, total: int, device: str) -> None:
        share = done / total if total else 1.0
        if self.terminal:
            width = 30
            filled = int(width * share)
            self.out.write(f"\rcopying [{'#' * filled}{'.' * (width - filled)}] "
                           f"{done}/{total} responses {device:<24.24}")
        elif int(share * 10) > self.tenths_said:
            self.tenths_said = int(share * 10)
            self.out.write(f"copying: {done}/{total} responses ({share:.0%})\n")
        self.out.flush()

    def close(self) -> None:
        if self.terminal:
            self.out.write("\n")
            self.out.flush()


def do_copy(args: argparse.Namespace) -> int:
    from deskpulse.store import open_store
    from deskpulse.store.copy import copy_store

    with open_store(args.source, create=False) as source, \
            open_store(args.destination, create=True) as destination:
        bar = CopyProgress(sys.stderr)
        try:
            summary = copy_store(source, destination, progress=bar)
        finally:
            bar.close()
        merged = f" ({summary.merged} already there: merged)" if summary.merged else ""
        print(f"copied {summary.devices} devices{merged} and {summary.responses} responses "
              f"to {destination.location}")  # never a URL's password
    return 0


def do_info(args: argparse.Namespace) -> int:
    from deskpulse.store import open_store
    from deskpulse.store.base import parse_db_target

    engine = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[parse_db_target(args.db)[0]]
    with open_store(args.db, create=False) as store:
        counts = store.response_counts()
        print(f"database: {store.location} ({engine})")
        print(f"schema version: {store.schema_version()}")
        print(f"devices: {len(store.device_facts())} ({len(store.registered_ids())} "
              "registered for the WiFi push)")
        print(f"responses: {sum(counts.values())}")
    return 0
