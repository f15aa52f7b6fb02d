"""`deskpulse sync` and `deskpulse devices`: thin commands over deskpulse.sync and .db.

cli.build_parser() calls `add_sync_commands(sub)` with its subparsers object.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from deskpulse import db
from deskpulse.sync import PROTOCOL, SyncSummary, sync


def _db_help() -> str:
    return (f"database file (default: $DESKPULSE_DB if set, else {db.default_db_path()}; "
            "the default follows $XDG_DATA_HOME)")


def add_sync_commands(sub: Any) -> None:
    """Add `sync` and `devices` to the `deskpulse` subcommands."""
    syn = sub.add_parser(
        "sync", help="pull a kiosk's responses over USB serial into the database",
        description=(
            "Pull every response the kiosk holds into the database, set its clock, and only "
            "then let it free its flash. Safe to interrupt and run again: nothing is lost or "
            f"stored twice. Speaks sync protocol {PROTOCOL}."))
    syn.add_argument("--port", default="auto",
                     help="the kiosk's serial port, or 'auto' to find the single ESP32 USB "
                          "port (default: %(default)s)")
    syn.add_argument("--db", help=_db_help())
    syn.add_argument("--config", metavar="FILE",
                     help="also send this device config (JSON); it is checked first with "
                          "the firmware's own validator, so a bad file never reaches the kiosk")
    syn.set_defaults(func=_cmd_sync)

    dev = sub.add_parser("devices", help="list known kiosks with their last sync and health")
    dev.add_argument("--db", help=_db_help())
    dev.set_defaults(func=_cmd_devices)


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


def _cmd_sync(args: argparse.Namespace) -> int:
    bar = _ProgressBar(sys.stderr)
    try:
        summary = sync(args.port, args.db, config_file=args.config, progress=bar)
    finally:
        bar.close()
    print(format_summary(summary))
    return 0


def _cmd_devices(args: argparse.Namespace) -> int:
    conn = db.connect(args.db)
    try:
        print(format_devices(db.devices(conn)))
    finally:
        conn.close()
    return 0


def _when(unix: int | None) -> str:
    if unix is None:
        return "never"
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _fill(fill: float | None) -> str:
    return "flash fill unknown" if fill is None else f"flash {100 * fill:.1f}% full"


def format_summary(s: SyncSummary) -> str:
    about = ", ".join(x for x in (s.board, f"firmware {s.firmware}" if s.firmware else "") if x)
    lines = [f"synced {s.device_id}{f' ({about})' if about else ''} on {s.port}"]
    lines.append(f"  new responses: {s.new}; duplicates ignored: {s.duplicates}")
    lines.append(f"  time unknown: {s.time_unknown} of the new "
                 f"({s.time_unknown_total} in all for this kiosk)")
    if s.dropped is None:
        lines.append("  drops reported by the device: unknown")
    else:
        since = "" if s.dropped_since_last is None else f" ({s.dropped_since_last} since last sync)"
        lines.append(f"  drops reported by the device: {s.dropped}{since}")
    corrupt = "" if s.corrupt is None else f", {s.corrupt} corrupt records"
    lines.append(f"  device: {_fill(s.fill)}{corrupt}")
    if s.config_version is not None:
        lines.append(f"  config version {s.config_version} sent and applied")
    lines += [f"  warning: {w}" for w in s.warnings]
    return "\n".join(lines)


def format_devices(devices: list[db.DeviceHealth]) -> str:
    if not devices:
        return "no kiosks in the database yet: run `deskpulse sync`"
    lines = []
    for d in devices:
        label = d.device_id + (f" ({d.name})" if d.name else "")
        if d.location:
            label += f" at {d.location}"
        lines.append(label)
        via = f" over {d.transport}" if d.transport else ""
        lines.append(f"  last sync {_when(d.last_sync)}{via} ({d.syncs} in all); "
                     f"{d.responses} responses stored, {d.time_unknown} with time unknown")
        clock = {None: "clock unknown", True: "clock set", False: "clock not set"}[d.clock_known]
        health = [_fill(d.fill)]
        health.append(f"{d.dropped if d.dropped is not None else '?'} dropped")
        health.append(f"{d.corrupt if d.corrupt is not None else '?'} corrupt")
        boot = f"boot {d.boot}" if d.boot is not None else "boot ?"
        if d.reset_cause:
            boot += f" ({d.reset_cause})"
        health += [boot, f"{d.crashes} crashes" if d.crashes is not None else "crashes ?", clock]
        lines.append("  health at last sync: " + ", ".join(health))
        if d.board or d.firmware:
            lines.append(f"  {d.board or '?'}, firmware {d.firmware or '?'}")
    return "\n".join(lines)
