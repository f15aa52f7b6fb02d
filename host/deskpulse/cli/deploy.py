"""`deskpulse deploy`: update the app on an installed kiosk over USB
(deskpulse.device.deploy)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add `deploy` to the `deskpulse` subcommands."""
    dep = subparsers.add_parser(
        "deploy", help="update the app on an installed kiosk over USB (mpremote)",
        description="Stop the kiosk's app for maintenance (between customers), send only "
                    "the app's files whose hash differs, check them on the kiosk and switch "
                    "the new app in by renames, so that a power cut at any moment leaves "
                    "the old app or the new one, whole; then restart the kiosk and wait "
                    "until it answers with the new app's version. Its responses, config and "
                    "board file are never touched (docs/technicians.md).")
    dep.add_argument("--port", default="auto",
                     help="the kiosk's serial port, or 'auto' to find the single ESP32 USB "
                          "port (default: %(default)s)")
    dep.add_argument("--dry-run", action="store_true",
                     help="read the kiosk's files and print what would be sent; writes "
                          "nothing (the app still stops for a moment and restarts)")
    dep.add_argument("--firmware", type=Path, metavar="DIR",
                     help="the firmware folder to deploy (with manifest.py; default: the "
                          "app this deskpulse ships)")
    dep.set_defaults(func=do_deploy)


def do_deploy(args: argparse.Namespace) -> int:
    from deskpulse.device import deploy

    report = deploy.deploy(args.port, firmware=args.firmware, dry_run=args.dry_run)
    was = report.old_version or "unknown"
    head = f"{report.device_id or 'the kiosk'} on {report.port}: app {was}"
    total = report.files
    if not report.sent:
        print(f"{head}; the {total} files of app {report.new_version} already match "
              f"(.mpy {report.mpy}): nothing sent")
    else:
        sent, copied = ("would send", "to copy") if report.dry_run else ("sent", "copied")
        print(f"{head} -> {report.new_version} (.mpy {report.mpy}): {sent} "
              f"{len(report.sent)} of {total} files ({report.bytes_sent} bytes), "
              f"{report.copied} unchanged {copied} on the kiosk")
        for path, size in report.sent.items():
            print(f"  {path} ({size} bytes)")
    for note in report.notes:
        print(f"note: {note}")
    if report.dry_run:
        print(f"dry run, nothing written: the kiosk restarted and runs {report.running}")
    else:
        print(f"the kiosk restarted and runs app {report.running} ({report.seconds:.0f} s)")
    return 0
