"""A command group over the database (`deskpulse sites`, `deskpulse users`): the group's
own parser, whose default runs without a subcommand, and its subcommands, each taking
--db before or after its name."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from deskpulse.store.base import db_option_help

AddCommand = Callable[..., argparse.ArgumentParser]
"""add(name, func, help_text, description=None): a subcommand's parser, to add its
arguments to."""


def database_group(subparsers: Any, name: str, *, help_text: str, description: str,
                   default: Callable[[argparse.Namespace], int]) -> AddCommand:
    top = subparsers.add_parser(name, help=help_text, description=description)
    top.add_argument("--db", help=db_option_help())
    top.set_defaults(func=default)
    commands = top.add_subparsers(dest=f"{name}_command", metavar="COMMAND")

    def add(command: str, func: Callable[[argparse.Namespace], int], help_text: str,
            description: str | None = None) -> argparse.ArgumentParser:
        parser = commands.add_parser(command, help=help_text,
                                     description=description or help_text)
        # SUPPRESS: a subcommand's own --db must not reset one given before it.
        parser.add_argument("--db", default=argparse.SUPPRESS, help=db_option_help())
        parser.set_defaults(func=func)
        return parser

    return add
