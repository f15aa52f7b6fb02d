"""The `deskpulse` command: thin layers over the library functions.

Each command group is one module here exposing `register(subparsers)`, which adds its
commands with their options and sets `func` to the function that runs one. COMMAND_GROUPS
lists them in the order `deskpulse --help` shows them. A command parses and prints; the work
stays in the library, and a module whose imports are slow (numpy, rich, FastAPI) imports
them only when its command runs, so that building the parser stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from deskpulse import installed_version
from deskpulse.cli import (
    alerts,
    boards,
    config,
    db,
    deploy,
    devices,
    flash,
    image,
    notify,
    provision,
    report,
    serve,
    sim,
    sites,
    sync,
    users,
)
from deskpulse.errors import DeskPulseError

COMMAND_GROUPS = (sim, boards, image, flash, provision, deploy, sync, config, devices, sites,
                  serve, users, alerts, notify, report, db)


class _VersionAction(argparse.Action):
    """argparse's "version" action wants the text when the parser is built; this one looks
    the version up only when --version is given."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        version = installed_version() or "unknown (not installed: run from a source tree)"
        print(f"deskpulse {version}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deskpulse", description="DeskPulse service-desk feedback kiosks: host tools.")
    parser.add_argument("--version", action=_VersionAction)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. A reader that stops early (`deskpulse devices | head -1`) ends it
    quietly with status 0, as if the output had all been read: the reader chose to stop,
    which is no failure of ours, and a status of 141 (the SIGPIPE convention) would fail a
    `set -o pipefail` script over a harmless `| head`. A command that failed keeps its
    status."""
    code = 0
    try:
        try:
            code = _run(argv)
        finally:
            # Now, not at exit: there a closed pipe could only be reported as
            # "Exception ignored ... BrokenPipeError".
            sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit: let that go nowhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return code


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except DeskPulseError as e:
        print(f"deskpulse: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
