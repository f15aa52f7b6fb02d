"""`deskpulse provision`: many blank ESP32 boards to registered, flashed and answering
kiosks at once, with a record and a label sheet (deskpulse.device.provision)."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from deskpulse.store.base import db_option_help


def register(subparsers: Any) -> None:
    """Add `provision` to the `deskpulse` subcommands."""
    pr = subparsers.add_parser(
        "provision", help="register, configure and flash many kiosks at once, with labels",
        description="For each board (one --port each), in parallel: read its chip and MAC, "
                    "choose its id (kiosk-MAC, or the next unused one of --ids), register "
                    "it (its key made in the database), merge the store template with its "
                    "own fields into its config (checked by the firmware's validator), "
                    "build its image, flash MicroPython and the image, and wait until it "
                    "answers over USB with its new id. A board that fails does not stop the "
                    "others. Exit status: 0 when every board is done, 1 when some failed, 2 "
                    "when nothing was done. docs/technicians.md, \"Twenty kiosks in an "
                    "afternoon\".")
    pr.add_argument("--port", action="append", required=True, dest="ports", metavar="PORT",
                    help="a board's serial port (/dev/ttyUSB0); once per board")
    pr.add_argument("--board", required=True,
                    help="board name (deskpulse boards lists them) or a path to a board file")
    pr.add_argument("--firmware", required=True, type=Path, metavar="MICROPYTHON.bin",
                    help="MicroPython's firmware download for the board's chip (as for "
                         "deskpulse flash)")
    pr.add_argument("--template", required=True, type=Path, metavar="STORE.json",
                    help="the store's config for all its kiosks (scale, language, texts, "
                         "opening hours, time zone, sync settings), without device_id or "
                         "device_key")
    pr.add_argument("--server", metavar="URL",
                    help="http://HOST:PORT (or https://) of `deskpulse serve` as the kiosks "
                         "reach it (else the template's sync.server_url, if any)")
    pr.add_argument("--server-cert", type=Path, metavar="CERT.pem",
                    help="for an https:// server: the certificate the kiosks verify it "
                         "against (the server's own, or its CA's; PEM), checked here (else "
                         "the template's sync.server_cert, if any)")
    pr.add_argument("--wifi-ssid", default="", help="the store WiFi network's name")
    pr.add_argument("--wifi-password", default="",
                    help="its password; '-' reads it from standard input")
    pr.add_argument("--ids", type=Path, metavar="FILE",
                    help="ids to give out, one a line: ID[,NAME[,LOCATION]] (CSV); each "
                         "board takes the next one neither registered nor given out before. "
                         "Default: kiosk- and the chip's MAC")
    pr.add_argument("--location", help="where the kiosks stand, for those the id list gives "
                                       "none (e.g. 'Store 12, Lyon')")
    pr.add_argument("--labels", type=Path, metavar="FILE.svg",
                    help="write a printable label sheet (A4, 2 x 7 labels of 99.1 x 38.1 mm; "
                         "FILE-2.svg and on for more than 14): id, name, location, key "
                         "fingerprint and a QR code of them")
    pr.add_argument("--record", type=Path, metavar="FILE",
                    help="the provisioning record, JSON lines appended (default: "
                         "provisioning.jsonl beside the database)")
    pr.add_argument("--db", help=db_option_help())
    pr.add_argument("--new-key", action="store_true",
                    help="give kiosks that are already registered a new key (their old one "
                         "stops working); without it they keep theirs")
    pr.add_argument("--wait-push", action="store_true",
                    help="also wait for each kiosk's first signed push to reach the server "
                         "(needs --server and `deskpulse serve` on this database; a kiosk "
                         "pushes answers: tap a face on each)")
    pr.add_argument("--push-timeout", type=float, default=None, metavar="SECONDS",
                    help="how long --wait-push waits for each kiosk (default 600)")
    pr.add_argument("--baud", type=int, help="serial speed while writing (default 460800)")
    pr.set_defaults(func=do_provision)


_SAME_FOR_ALL = ("firmware:", "app:", "port:", "plan:")
"""deskpulse flash's lines that say the same for every board."""


class _Lines:
    """Without a terminal (a log, CI, a pipe): one plain line per step and board."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.lock = threading.Lock()

    def __call__(self, port: str, text: str, done: float | None) -> None:
        if text.startswith(_SAME_FOR_ALL):
            return  # the summary names the firmware; the plan is every board's
        if text.startswith("writing ") and not text.endswith(("50%", "100%")):
            return  # a line per tenth of each region is too many for twenty boards
        with self.lock:
            print(f"{port}: {text}", file=self.out, flush=True)


class _Bars:
    """At a terminal: a progress bar per board, its latest step beside it."""

    def __init__(self, ports: list[str], out: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
        from rich.table import Column

        width = max(len(p) for p in ports)
        # The port is how a technician finds the board: never cut; the step may be.
        self.progress = Progress(
            TextColumn("{task.fields[port]}",
                       table_column=Column(no_wrap=True, min_width=width)),
            BarColumn(bar_width=20), TaskProgressColumn(),
            TextColumn("{task.description}",
                       table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
            console=Console(file=out), transient=False, expand=True)
        self.tasks = {p: self.progress.add_task("waiting", total=1.0, port=p) for p in ports}

    def __call__(self, port: str, text: str, done: float | None) -> None:
        task = self.tasks[port]
        if done is None:
            self.progress.update(task, description=text[:100])
        else:
            self.progress.update(task, description=text[:100], completed=done)

    def __enter__(self) -> _Bars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def do_provision(args: argparse.Namespace) -> int:
    from deskpulse.device import provision

    password = args.wifi_password
    if password == "-":
        password = sys.stdin.readline().rstrip("\r\n")
    extra: dict[str, Any] = {}
    if args.push_timeout is not None:
        extra["push_timeout"] = args.push_timeout
    if args.baud is not None:
        extra["baud"] = args.baud
    options = provision.Options(
        board=args.board, firmware=args.firmware, template=args.template,
        db=args.db or None, server=args.server, server_cert=args.server_cert,
        wifi_ssid=args.wifi_ssid, wifi_password=password, ids_file=args.ids,
        location=args.location, record=args.record, labels=args.labels,
        new_key=args.new_key, wait_push=args.wait_push, **extra)
    ports: list[str] = args.ports
    if sys.stdout.isatty():
        with _Bars(ports, sys.stdout) as bars:
            run = provision.provision(ports, options, on_event=bars)
    else:
        run = provision.provision(ports, options, on_event=_Lines(sys.stdout))
    done = [r for r in run.results if r.ok]
    print(f"provisioned {len(done)} of {len(run.results)} kiosks in {run.seconds:.1f} s "
          f"(MicroPython {run.firmware}, app {run.app_version}):")
    for r in run.results:
        if r.ok:
            push = ", pushed" if r.pushed else ""
            print(f"  {r.port}: {r.device_id} (MAC {r.mac}, key fingerprint {r.fingerprint}, "
                  f"{r.registration} registration{push})")
        else:
            who = f"{r.device_id}: " if r.device_id else ""
            print(f"  {r.port}: FAILED: {who}{r.error}")
    print(f"record: {run.record}")
    if run.label_files:
        print("labels (in port order): " + ", ".join(str(p) for p in run.label_files))
    if len(done) < len(run.results):
        print("deskpulse: some boards failed; fix what their lines say and run the same "
              "command again for them: a kiosk already done keeps its id and key",
              file=sys.stderr)
        return 1
    return 0
