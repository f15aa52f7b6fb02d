"""`deskpulse notify`: alert rules per site, a notification pass, the weekly digest
(deskpulse.notify; docs/dashboard.md "Notifications")."""

from __future__ import annotations

import argparse
import os
import time
from datetime import date
from typing import Any

from deskpulse.cli.groups import database_group
from deskpulse.errors import DeskPulseError
from deskpulse.reports.alerts import DEFAULT_MINIMUM, DEFAULT_NEGATIVE
from deskpulse.store import open_store
from deskpulse.store.base import db_option_help
from deskpulse.store.notify import KINDS

SMTP_ENV = "DESKPULSE_SMTP"  # deskpulse.notify.weekly.SMTP_ENV, without importing it here


def register(subparsers: Any) -> None:
    """Add `notify` and its subcommands to the `deskpulse` subcommands."""
    top = subparsers.add_parser(
        "notify", help="alerts and weekly digests sent to store managers (email, webhooks)",
        description="Alert rules per site, sent by email or webhook through apprise: a "
                    "problem is sent when it opens, optionally as a reminder, and when it "
                    "resolves (docs/dashboard.md, \"Notifications\").")
    # No --db here: each command takes its own (the rules group's before or after its
    # subcommand), which a default of this level's would only overwrite.
    cmds = top.add_subparsers(dest="notify_command", metavar="COMMAND", required=True)
    rule = database_group(cmds, "rules", default=do_rule_list,
                          help_text="add, list or remove alert rules",
                          description="Without a subcommand: the list of alert rules.")

    def command(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        parser = cmds.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("--db", help=db_option_help())
        parser.set_defaults(func=func)
        return parser

    add = rule("add", do_rule_add, "add an alert rule for a site's subtree")
    add.add_argument("name", help="the rule's name (lower case, digits, . _ -)")
    add.add_argument("--site", required=True, metavar="PATH",
                     help="the site whose kiosks it watches, with everything below it")
    add.add_argument("--kind", choices=KINDS, default="negative",
                     help="negative: unhappy customers in a window; silent, flash, refused: "
                          "device health (default %(default)s)")
    add.add_argument("--to", action="append", required=True, metavar="URL", dest="to",
                     help="an apprise URL to send to (repeat for more): mailtos://USER:"
                          "PASSWORD@smtp.example.com?to=manager@example.com, json://HOST/"
                          "PATH, slack://..., msteams://...")
    add.add_argument("--window", default="15m", help="negative: window length "
                                                     "(default %(default)s)")
    add.add_argument("--negative", type=float, default=DEFAULT_NEGATIVE,
                     help="negative: share of the two lowest faces (default %(default)s)")
    add.add_argument("--min", type=int, default=DEFAULT_MINIMUM,
                     help="negative: fewest responses in a window (default %(default)s)")
    add.add_argument("--remind", metavar="DURATION",
                     help="send a problem again after this long while it goes on (24h); "
                          "default: only when it opens and when it resolves")
    rule("list", do_rule_list, "list the alert rules (secrets masked)")
    remove = rule("remove", do_rule_remove, "remove an alert rule")
    remove.add_argument("name")

    run = command("run", do_run,
                  "one pass: evaluate every rule, send what changed, update the log")
    run.add_argument("--dry-run", action="store_true",
                     help="show what would be sent; send and record nothing")

    digest = command("digest", do_digest,
                     "send each store manager the weekly digest of their site")
    digest.add_argument("--week", metavar="YYYY-Www",
                        help="the ISO week (default: last week)")
    digest.add_argument("--to", action="append", metavar="EMAIL=SITE", dest="to",
                        help="a recipient and the site path of their digest (repeat; "
                             "default: every manager of `deskpulse users` with an email)")
    digest.add_argument("--smtp", metavar="URL",
                        help=f"the sending account as a mailto:// or mailtos:// URL (default: "
                             f"${SMTP_ENV}, which keeps the password out of the process list)")
    digest.add_argument("--dry-run", action="store_true",
                        help="print the digests; send nothing")
    digest.add_argument("--again", action="store_true",
                        help="send digests already sent for that week too (each is recorded; "
                             "by default a recorded one is skipped)")


def do_rule_add(args: argparse.Namespace) -> int:
    from deskpulse.notify.rules import describe_rule, make_rule, parse_duration

    window_s = parse_duration(args.window, "--window")
    remind_s = parse_duration(args.remind, "--remind") if args.remind else None
    rule = make_rule(args.name, args.site, args.kind, args.to, window_s=window_s,
                     negative=args.negative, minimum=args.min, remind_s=remind_s)
    with open_store(args.db, create=False) as store:
        store.add_alert_rule(rule)
    print(f"added {describe_rule(rule)}")
    return 0


def do_rule_list(args: argparse.Namespace) -> int:
    from deskpulse.notify.rules import describe_rule

    with open_store(args.db, create=False) as store:
        rules = store.alert_rules()
    print("\n".join(describe_rule(rule) for rule in rules) if rules else "no alert rules")
    return 0


def do_rule_remove(args: argparse.Namespace) -> int:
    with open_store(args.db, create=False) as store:
        store.remove_alert_rule(args.name)
    print(f"removed the alert rule {args.name}")
    return 0


def do_run(args: argparse.Namespace) -> int:
    from deskpulse.notify.background import describe_pass
    from deskpulse.notify.passes import run_pass

    with open_store(args.db, create=False) as store:
        result = run_pass(store, now=time.time(), dry_run=args.dry_run)
    for line in describe_pass(result):
        print(line)
    if args.dry_run:
        for url, message in result.sent.items():
            print(f"\nwould send to {url}: {message.title}\n{message.text}", end="")
    return 1 if result.failed else 0


def do_digest(args: argparse.Namespace) -> int:
    from deskpulse.notify.digest import build_digests, manager_recipients, parse_week
    from deskpulse.notify.passes import lease_owner
    from deskpulse.notify.weekly import (
        DigestResult,
        describe_digests,
        pending_digests,
        send_and_record,
    )

    week = parse_week(args.week, date.today())
    given = [_recipient(text) for text in args.to or ()]
    sender = args.smtp or os.environ.get(SMTP_ENV)
    if not args.dry_run and not sender:
        raise DeskPulseError(f"give the sending account: --smtp mailtos://USER:PASSWORD@HOST "
                             f"or ${SMTP_ENV}")
    with open_store(args.db, create=False) as store:
        recipients = given or manager_recipients(store)
        if not recipients:
            raise DeskPulseError("no store manager has an email address: set one with "
                                 "`deskpulse users set NAME --email ADDRESS`, or give --to "
                                 "EMAIL=SITE")
        wanted = [(email, site, week) for email, site in recipients]
        if args.dry_run or sender is None:
            pending, skipped = pending_digests(store, wanted, args.again)
            digests = build_digests(store, pending.get(week, []), week)
            for line in describe_digests(DigestResult(skipped=skipped)):
                print(line)
            for digest in digests:
                print(f"to {digest.email}: {digest.message().title}\n{digest.message().text}")
            return 0
        result = send_and_record(store, wanted, sender, now=time.time(), owner=lease_owner(),
                                 again=args.again)
    if not result.held:
        raise DeskPulseError("another process is sending notifications (it holds the "
                             "notification lease): try again in a minute; nothing was sent")
    for line in describe_digests(result):
        print(line)
    return 1 if result.failed else 0


def _recipient(text: str) -> tuple[str, str]:
    email, _, site = text.partition("=")
    if "@" not in email or not site:
        raise DeskPulseError(f"--to {text!r}: give EMAIL=SITE, such as "
                             "manager@example.com=acme/north/lyon-1")
    return email.strip(), site.strip()
