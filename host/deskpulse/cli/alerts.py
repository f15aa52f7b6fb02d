"""`deskpulse alerts`: bursts of unhappy customers per kiosk (deskpulse.reports.alerts)."""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from typing import Any

from deskpulse.reports.alerts import (
    DEFAULT_MINIMUM,
    DEFAULT_NEGATIVE,
    find_alerts,
    format_alerts,
    format_ranking,
    parse_bound,
    parse_window,
    rank_below,
)
from deskpulse.reports.health import format_health_alerts, health_alerts
from deskpulse.store import open_store
from deskpulse.store.base import db_option_help


def register(subparsers: Any) -> None:
    """Add `alerts` to the `deskpulse` subcommands."""
    cmd = subparsers.add_parser(
        "alerts", help="find bursts of unhappy customers per kiosk",
        description=(
            "List the periods where, within WINDOW, the share of the two lowest faces reached "
            "NEGATIVE with at least MIN responses, per device. Responses with an unknown time "
            "are left out, and rapid or closed ones unless --include-flagged."))
    cmd.add_argument("--db", help=db_option_help())
    cmd.add_argument("--window", default="15m",
                     help="window length: 90s, 15m, 2h (default: %(default)s)")
    cmd.add_argument("--negative", type=float, default=DEFAULT_NEGATIVE,
                     help="share of the two lowest faces that raises an alert "
                          "(default: %(default)s)")
    cmd.add_argument("--min", type=int, default=DEFAULT_MINIMUM,
                     help="fewest responses in a window for an alert (default: %(default)s)")
    cmd.add_argument("--since", help="from this ISO date or date-time (host local time "
                                     "without an offset)")
    cmd.add_argument("--until", help="before this ISO date or date-time")
    cmd.add_argument("--device", metavar="ID", help="only this device")
    cmd.add_argument("--location", help="only devices at this location")
    cmd.add_argument("--site", metavar="PATH",
                     help="only the kiosks in this site (an organisation, region or store: "
                          "`deskpulse sites`), with the level below it ranked by its alerts")
    cmd.add_argument("--include-flagged", action="store_true",
                     help="also count rapid and closed-hours responses")
    cmd.add_argument("--health", action="store_true",
                     help="also the kiosks' health alerts as of now: silent in opening hours "
                          "against their usual rate, flash filling up, pushes refused "
                          "(docs/dashboard.md, \"Device health\"); --site applies to them")
    cmd.add_argument("--format", choices=("table", "json"), default="table")
    cmd.set_defaults(func=do_alerts)


def do_alerts(args: argparse.Namespace) -> int:
    window_s = parse_window(args.window)
    since = parse_bound(args.since or None, "--since")
    until = parse_bound(args.until or None, "--until")
    store = open_store(args.db, create=False)
    try:
        alerts = find_alerts(
            store, window_s=window_s, negative=args.negative, minimum=args.min, since=since,
            until=until, device=args.device, location=args.location,
            include_flagged=args.include_flagged, site=args.site)
        ranking = rank_below(store, alerts, args.site) if args.site is not None else None
        health = (health_alerts(store, now=time.time(), site=args.site) if args.health
                  else None)
    finally:
        store.close()
    if args.format == "json":
        print(json.dumps({
            "window_s": window_s, "negative": args.negative, "minimum": args.min,
            "filters": {"since": _utc_iso(since), "until": _utc_iso(until),
                        "device": args.device,
                        "location": args.location, "site": args.site,
                        "include_flagged": args.include_flagged},
            **({"ranking": ranking} if ranking is not None else {}),
            "alerts": alerts, **({"health": health} if health is not None else {})},
            indent=2))
    else:
        if ranking:
            print(f"below {args.site}, most alerts first:\n{format_ranking(ranking)}\n")
        print(format_alerts(alerts))
        if health is not None:
            print(f"\ndevice health:\n{format_health_alerts(health)}")
    return 0


def _utc_iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()
