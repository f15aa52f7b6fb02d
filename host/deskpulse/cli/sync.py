"""`deskpulse sync`: pull a kiosk's responses over USB serial (deskpulse.device.sync)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, TextIO

from deskpulse.errors import DeskPulseError
from deskpulse.protocol.wire import PROTOCOL
from deskpulse.store.base import db_option_help

if TYPE_CHECKING:
    from deskpulse.device.sync import SyncSummary


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
                     help="also install this device config (JSON): merged into the kiosk's "
                          "own config (objects key by key: texts per language, sync, "
                          "opening hours; anything else replaced), checked with the "
                          "firmware's own validator, so a bad result never reaches the "
                          "kiosk; what changes is printed, and a file that changes nothing "
                          "is not sent. One that changes the kiosk's device_id is sent only "
                          "once the kiosk has confirmed that every response it holds is "
                          "stored")
    syn.add_argument("--replace", action="store_true",
                     help="with --config: the file replaces the kiosk's whole config "
                          "(anything it leaves out takes its default)")
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

    if args.replace and not args.config:
        raise DeskPulseError("--replace goes with --config FILE")
    bar = _ProgressBar(sys.stderr)
    try:
        summary = sync(args.port, args.db, config_file=args.config, progress=bar,
                       replace=args.replace)
    finally:
        bar.close()
    print(format_summary(summary))
    if args.config:
        print("\n".join(config_lines(summary)))
    return 0


def config_lines(summary: SyncSummary) -> list[str]:
    """What `--config` did to the kiosk's config: one line per key path that changed."""
    if summary.config_unchanged:
        return ["config: nothing changes; nothing was sent"]
    if summary.config_version is None:
        return []  # not sent (the sync said why)
    if not summary.config_changes:
        return ["config: no setting changes" + (" (the kiosk had no config file: now it has "
                                                 "one)" if summary.config_was_missing else "")]
    count = len(summary.config_changes)
    return [f"config: {count} change{'s' if count != 1 else ''}:",
            *(f"  {line}" for line in summary.config_changes)]
