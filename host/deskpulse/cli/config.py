"""`deskpulse config`: a kiosk's config, read back over USB (deskpulse.device.sync)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add `config` and its subcommands to the `deskpulse` subcommands."""
    cfg = subparsers.add_parser(
        "config", help="read a kiosk's config back over USB (secrets hidden)",
        description="A kiosk's device config as it is stored on the kiosk. Change it with "
                    "`deskpulse sync --config FILE` (merged in) or `--config FILE "
                    "--replace`; docs/config.md lists every key.")
    cmds = cfg.add_subparsers(dest="config_command", metavar="COMMAND", required=True)
    show = cmds.add_parser(
        "show", help="print the kiosk's config file as JSON, secrets as ***",
        description="Print the kiosk's config file as JSON, the WiFi password and the "
                    "device key as *** (when set); a key the file leaves out has its "
                    "default (docs/config.md). Notes on the kiosk's id and config "
                    "problems go to standard error. Changes nothing on the kiosk.")
    show.add_argument("--port", default="auto",
                      help="the kiosk's serial port, or 'auto' to find the single ESP32 USB "
                           "port (default: %(default)s)")
    show.set_defaults(func=do_config_show)


def do_config_show(args: argparse.Namespace) -> int:
    from deskpulse.device.config_check import redacted_config
    from deskpulse.device.sync import fetch_config  # pyserial: only for this command

    found = fetch_config(args.port)
    if found.config is None:
        print(f"{found.device_id or 'the kiosk'} has no config file: it runs on its "
              "defaults", file=sys.stderr)
    elif not found.config.get("device_id") and found.device_id:
        print(f"the file names no device_id: the kiosk goes by {found.device_id}, from its "
              "MAC", file=sys.stderr)
    for problem in found.problems:
        print(f"config problem on the kiosk: {problem}", file=sys.stderr)
    print(json.dumps(redacted_config(found.config or {}), indent=2, ensure_ascii=False))
    return 0
