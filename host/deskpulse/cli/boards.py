"""`deskpulse boards`: the board definitions, each checked by deskpulse.boards."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add `boards` to the `deskpulse` subcommands."""
    brd = subparsers.add_parser(
        "boards", help="list the board definitions and check their pins")
    brd.set_defaults(func=do_boards)


def do_boards(args: argparse.Namespace) -> int:
    failed = False
    from deskpulse.device import boards

    for name in boards.list_boards():
        problems = boards.validate_board(boards.load_board(name))
        errors = boards.errors_only(problems)
        failed = failed or bool(errors)
        print(f"{name}: {'INVALID' if errors else 'ok'}")
        for p in problems:
            print(f"  {p.severity}: {p.message}")
    return 1 if failed else 0
