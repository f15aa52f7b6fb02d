"""`deskpulse users`: the accounts of the dashboard that `deskpulse serve` serves, their
roles and the site each one sees (the Store's account methods; rules and password hashing
in deskpulse.store.accounts; docs/dashboard.md "Accounts")."""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from deskpulse.cli.groups import database_group
from deskpulse.errors import DeskPulseError
from deskpulse.store import accounts as rules
from deskpulse.store import open_store
from deskpulse.store.accounts import User
from deskpulse.store.base import Store


def register(subparsers: Any) -> None:
    """Add `users` and its subcommands to the `deskpulse` subcommands."""
    command = database_group(
        subparsers, "users", default=do_list,
        help_text="accounts of the web dashboard: roles and the site each one sees",
        description="Without a subcommand: the list of users. An admin sees the whole "
                    "chain (or one site with --site) and may manage; a manager or a viewer "
                    "sees one site and everything below it (docs/dashboard.md).")

    def password_source(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--password-stdin", action="store_true",
            help="read the password from the first line of standard input (for scripts); "
                 "otherwise it is asked twice on the terminal")

    command("list", do_list, "the users, their roles and sites")
    add = command("add", do_add, "add a user of the dashboard",
                  f"Add a user. The password ({rules.MIN_PASSWORD} characters at least) is "
                  "asked twice on the terminal, or read with --password-stdin.")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, metavar="ROLE",
                     help="admin, manager or viewer")
    add.add_argument("--site", metavar="PATH",
                     help="the site they see, with everything below it (a manager or a "
                          "viewer must have one; an admin without one sees the whole chain)")
    add.add_argument("--email", metavar="ADDR", help="where their weekly digest goes")
    password_source(add)
    rm = command("remove", do_remove, "remove a user; their sessions end at once")
    rm.add_argument("name", metavar="NAME")
    pw = command("passwd", do_passwd, "set a user's password; their sessions end at once")
    pw.add_argument("name", metavar="NAME")
    password_source(pw)
    st = command("set", do_set, "change a user's role, site or email")
    st.add_argument("name", metavar="NAME")
    st.add_argument("--role", metavar="ROLE", help="admin, manager or viewer")
    st.add_argument("--site", metavar="PATH", help="the site they see ('' : the whole chain, "
                                                   "for an admin)")
    st.add_argument("--email", metavar="ADDR", help="their email address ('' : none)")


# -- reading a new password ----------------------------------------------------------------


def read_new_password(from_stdin: bool, *, stdin: TextIO | None = None,
                      ask: Callable[[str], str] = getpass.getpass) -> str:
    """A new password, checked (rules.check_password): the first line of stdin, or asked
    twice on the terminal; never from the command line, where `ps` and shell histories
    would show it."""
    source = sys.stdin if stdin is None else stdin
    if from_stdin:
        return rules.check_password(source.readline().removesuffix("\n").removesuffix("\r"))
    if not source.isatty():
        raise DeskPulseError("no terminal to ask the password on: give --password-stdin and "
                             "the password on standard input")
    first = rules.check_password(ask("New password: "))
    if ask("The same again: ") != first:
        raise DeskPulseError("the two passwords differ: nothing was changed")
    return first


# -- the commands --------------------------------------------------------------------------


def _open(args: argparse.Namespace, *, create: bool = False) -> Store:
    return open_store(getattr(args, "db", None), create=create)


def format_users(users: Sequence[User]) -> str:
    if not users:
        return "no users: add one with `deskpulse users add NAME --role admin`"
    rows = [("NAME", "ROLE", "SEES", "EMAIL", "ADDED")] + [
        (user.name, user.role, user.site or "(the whole chain)", user.email or "-",
         time.strftime("%Y-%m-%d", time.gmtime(user.created))) for user in users]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths,
                                                                           strict=False)),
                                row[-1]]) for row in rows)


def _describe(user: User) -> str:
    sees = user.site or "the whole chain"
    return (f"{user.name}: {user.role}, sees {sees}"
            + (f", email {user.email}" if user.email else ""))


def do_list(args: argparse.Namespace) -> int:
    with _open(args) as store:
        print(format_users(store.users()))
    return 0


def do_add(args: argparse.Namespace) -> int:
    with _open(args, create=True) as store:  # the first admin may come before any kiosk
        tree = {site.path: site for site in store.sites()}
        # Everything but the password first: nobody types it twice to learn of a typo.
        rules.check_new_user(tree, store.user(args.name), args.name, args.role, args.site,
                             args.email)
        password_hash = rules.hash_password(read_new_password(args.password_stdin))
        user = store.add_user(args.name, args.role, site=args.site, email=args.email,
                              password_hash=password_hash)
    print(f"added {_describe(user)}")
    return 0


def do_remove(args: argparse.Namespace) -> int:
    with _open(args) as store:
        store.remove_user(args.name)
    print(f"removed {args.name}; their sessions have ended")
    return 0


def do_passwd(args: argparse.Namespace) -> int:
    with _open(args) as store:
        if store.user(args.name) is None:
            raise rules.no_user(args.name)
        password_hash = rules.hash_password(read_new_password(args.password_stdin))
        store.set_password(args.name, password_hash)
    print(f"changed the password of {args.name}; their sessions have ended")
    return 0


def do_set(args: argparse.Namespace) -> int:
    if args.role is None and args.site is None and args.email is None:
        raise DeskPulseError("nothing to set: give --role, --site or --email")
    with _open(args) as store:
        user = store.set_user(args.name, role=args.role, site=args.site, email=args.email)
    print(_describe(user))
    return 0
