"""`deskpulse serve`: the aggregator that kiosks push to (deskpulse.server.app).

The server's own imports (FastAPI, uvicorn) wait until the command runs, so that every
other deskpulse command starts fast.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from deskpulse.errors import DeskPulseError
from deskpulse.store.base import db_option_help

MAX_WRITERS = 16
"""--writers at most: each is a process and a database connection; a bound on typos."""


def register(subparsers: Any) -> None:
    """Add `serve` to the `deskpulse` subcommands."""
    srv = subparsers.add_parser(
        "serve", help="run the aggregator that kiosks push to over WiFi",
        formatter_class=_RawDescription,
        description=(
            "Receive the responses that kiosks push over the store WiFi (docs/wifi.md) and "
            "store them in the database, exactly once.\n\n"
            "It listens on 127.0.0.1 (this PC only) unless told otherwise. To let the "
            "kiosks reach it on the store LAN, run it with --host 0.0.0.0 (every network "
            "interface) or with this PC's LAN address (e.g. --host 192.168.1.20), open the "
            "port in the PC's firewall for the store network only (e.g. `sudo ufw allow "
            "from 192.168.1.0/24 to any port 8080 proto tcp`), give the PC a fixed "
            "address (a DHCP reservation), and register each kiosk with that address: "
            "deskpulse devices add ID --server http://192.168.1.20:8080 -o ID.json\n\n"
            "By default this is plain HTTP, meant for a trusted store network: every push "
            "and every answer is signed with the kiosk's own key (HMAC-SHA256), so nobody "
            "without the key can add, change or replay responses, but the traffic is not "
            "encrypted. With --certfile and --keyfile it serves HTTPS, for a server "
            "outside the store (a chain's central server): register the kiosks with "
            "--server https://NAME:PORT --server-cert CERT.pem, which they verify the "
            "server against (docs/wifi.md, \"HTTPS\").\n\n"
            "Clients that connect and then send slowly or nothing are cut off: a request "
            "must arrive within --request-timeout seconds (its body at 1 KiB/s or more on "
            "top), and over --max-connections the oldest idle or slow connections make "
            "room for new ones (docs/wifi.md, \"Server limits\")."))
    srv.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default %(default)s: this PC only)")
    srv.add_argument("--port", type=int, default=8080,
                     help="TCP port (default %(default)s; 0 picks a free one)")
    srv.add_argument("--db", help=db_option_help())
    srv.add_argument("--access-log", action="store_true",
                     help="log every request (method, path, status)")
    srv.add_argument("--api-docs", action="store_true",
                     help="also serve the API description at /docs, /redoc and "
                          "/openapi.json (the pages load scripts from a CDN)")
    srv.add_argument("--max-connections", type=int, metavar="N",
                     help="connections open at once (default: what the open-file limit "
                          "allows, at most 1024)")
    srv.add_argument("--request-timeout", type=float, default=10.0, metavar="SECONDS",
                     help="time a request head may take to arrive (default %(default)g)")
    srv.add_argument("--certfile", metavar="PEM",
                     help="serve HTTPS with this certificate (and any intermediate CAs "
                          "after it); needs --keyfile")
    srv.add_argument("--keyfile", metavar="PEM",
                     help="the certificate's private key, without a passphrase")
    srv.add_argument("--notify-every", metavar="DURATION",
                     help="also run a notification pass this often (5m, 1h): alert rules "
                          "of `deskpulse notify rules` are evaluated and sent, and with "
                          "$DESKPULSE_SMTP each manager's weekly digest on Monday from "
                          "07:00; with several servers on one database only one sends")
    srv.add_argument("--writers", type=int, metavar="N",
                     help="processes that store the pushes, each with its own database "
                          "connection, a kiosk's pushes always in the same one (default: 2 "
                          "on PostgreSQL, where one writer and its connection take turns; "
                          "1 on SQLite, which has one write lock)")
    srv.set_defaults(func=do_serve)


class _RawDescription(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's paragraphs, wrapped at the terminal's width."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n\n".join(textwrap.fill(p, width, initial_indent=indent,
                                         subsequent_indent=indent)
                           for p in text.split("\n\n"))


def _check_digest_sender() -> None:
    """A $DESKPULSE_SMTP that is no email URL fails at start, not at every pass."""
    import os

    from deskpulse.notify.delivery import is_email, safe_url
    from deskpulse.notify.weekly import SMTP_ENV

    sender = os.environ.get(SMTP_ENV)
    if sender and not is_email(sender):
        raise DeskPulseError(f"${SMTP_ENV} {safe_url(sender)}: the weekly digest goes by "
                             "email: give a mailto:// or mailtos:// URL")


def do_serve(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise DeskPulseError(f"--port {args.port}: use 1-65535 (or 0 for any free port)")
    if args.writers is not None and not 1 <= args.writers <= MAX_WRITERS:
        raise DeskPulseError(f"--writers {args.writers}: use 1-{MAX_WRITERS}")
    notify_every_s = None
    if args.notify_every is not None:  # before the server's imports: a typo fails at once
        from deskpulse.notify.rules import parse_duration

        notify_every_s = parse_duration(args.notify_every, "--notify-every")
        _check_digest_sender()
    from deskpulse.server.run import serve
    from deskpulse.server.tls import check_tls_files

    tls = check_tls_files(args.certfile, args.keyfile)
    serve(args.db, args.host, args.port, access_log=args.access_log,
          announce=lambda line: print(line, flush=True), api_docs=args.api_docs,
          max_connections=args.max_connections, request_timeout_s=args.request_timeout,
          tls=tls, notify_every_s=notify_every_s, writers=args.writers)
    return 0
