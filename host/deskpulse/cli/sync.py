"""`deskpulse sync`: pull a kiosk's responses over USB serial (deskpulse.device.sync)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from deskpulse.protocol.wire import PROTOCOL
from deskpulse.store.base import db_option_help


def register(subparsers: Any) -> None:
    """Add `sync` to the `deskpulse` subcommands."""
    syn = subparsers.add_parser(
        "sync", help="pull a kiosk's responses over USB serial into the database",
        description=(
            "Pull every response the kiosk holds into the database, set its clock, and only "
            "then let it free its flash. Safe to interrupt and run again: nothing is lost or "
            f"stored twice. Speaks sync protocol {PROTOCOL}."))
    syn.add_argument("--port", default="auto",
                     help="the kiosk's serial port, or 'auto' to find the single ESP32 USB "
                          "port (default: %(default)s)")
    syn.add_argument("--db", help=db_option_help())
    syn.add_argument("--config", metavar="FILE",
                     help="also send this device config (JSON); it is checked first with "
                          "the firmware's own validator, so a bad file never reaches the "
                          "kiosk. One that changes the kiosk's device_id is sent only once "
                          "the kiosk has confirmed that every response it holds is stored")
    syn.set_defaults(func=do_sync)


class _ProgressBar:
    """A one-line bar on a terminal, only for batches big enough to wait for."""

    def __init__(self, out: TextIO, threshold: int = 1000) -> None:
        self.out = out
        self.threshold = threshold
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if total < self.threshold or not self.out.isatty():
            return
        width = 30
        filled = width * done // total if total else width
        self.out.write(f"\rpulling [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        self.out.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.out.write("\n")
            self.out.flush()


def do_sync(args: argparse.Namespace) -> int:
    from deskpulse.cli.format import format_summary
    from deskpulse.device.sync import sync  # pyserial: only for this command

    bar = _ProgressBar(sys.stderr)
    try:
        summary = sync(args.port, args.db, config_file=args.config, progress=bar)
    finally:
        bar.close()
    print(format_summary(summary))
    return 0
