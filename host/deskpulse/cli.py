"""The `deskpulse` command: thin layers over the library functions."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from deskpulse import boards, db, installed_version, simulator
from deskpulse.alerts import add_alerts_command
from deskpulse.errors import DeskPulseError
from deskpulse.inspect import read_state
from deskpulse.report_cli import add_report_command
from deskpulse.serve_cli import add_serve_command
from deskpulse.sync import read_config_json
from deskpulse.sync_cli import add_sync_commands


def _cmd_sim(args: argparse.Namespace) -> int:
    simulator.require_micropython("deskpulse sim")
    board = boards.board_path(args.board)
    problems = boards.errors_only(boards.validate_board(boards.load_board(board)))
    if problems:
        raise DeskPulseError(f"board {board}: {problems[0].message}")
    # The kiosk checks them too, but a file that could exhaust its heap is better refused
    # here, as `deskpulse sync --config` does.
    if args.config:
        read_config_json(args.config)
    if args.device_config:
        read_config_json(args.device_config, "device config")
    log = Path(args.state) / simulator.CONSOLE_LOG_NAME
    logged_before = log.stat().st_size if log.is_file() else 0
    code = simulator.run(
        board, args.state, script=args.script, serial_link=args.serial_link, heap=args.heap,
        config=args.config, device_config=args.device_config,
    )
    if code not in (0, *simulator.STOPPED_BY_SIGNAL):
        raise DeskPulseError(firmware_failure(Path(args.state), code, logged_before))
    return code


def firmware_failure(state_dir: Path, code: int, since: int = 0) -> str:
    """The firmware reports bad input on its console: fetch its `deskpulse:` line, else
    its last line, from what this run logged (the log from byte `since` on)."""
    log = state_dir / simulator.CONSOLE_LOG_NAME
    try:
        with log.open("rb") as f:
            if f.seek(0, 2) >= since:  # else it rotated during the run: read it all
                f.seek(since)
            else:
                f.seek(0)
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        if line.startswith("deskpulse: "):
            return line.removeprefix("deskpulse: ").strip()
    last = next((line.strip() for line in reversed(lines) if line.strip()), "")
    said = f" after: {last[:200]}" if last else ""
    return f"the simulated kiosk exited with status {code}{said} (see {log})"


def _cmd_inspect(args: argparse.Namespace) -> int:
    state = read_state(boards.board_path(args.board), Path(args.state))
    if args.json:
        print(json.dumps({"status": state.status, "anchors": state.anchors,
                          "responses": state.responses}, indent=2))
        return 0
    print(format_status(state.status))
    print(f"{len(state.responses)} unacknowledged responses on the device")
    for r in state.responses[-args.last:] if args.last else state.responses:
        print(format_response(r))
    return 0


def _cmd_boards(args: argparse.Namespace) -> int:
    failed = False
    for name in boards.list_boards():
        problems = boards.validate_board(boards.load_board(name))
        errors = boards.errors_only(problems)
        failed = failed or bool(errors)
        print(f"{name}: {'INVALID' if errors else 'ok'}")
        for p in problems:
            print(f"  {p.severity}: {p.message}")
    return 1 if failed else 0


def format_status(status: dict) -> str:
    log = status.get("log", {})
    clock = status.get("clock", {})
    clock_text = f"set by {clock['source']}" if clock.get("known") else "unknown"
    lines = [
        f"device {status.get('device_id') or '(no id)'} on {status.get('board')}, "
        f"firmware {status.get('firmware')}, boot {status.get('boot')} "
        f"({status.get('reset_cause')}), crashes {status.get('crashes')}",
        f"log: {log.get('stored')} stored, {log.get('unacked')} unacknowledged, "
        f"{log.get('dropped')} dropped, {log.get('corrupt')} corrupt; next seq "
        f"{log.get('next_seq')}; flash {100 * log.get('fs_fill', 0):.1f}% full",
        f"clock: {clock_text}; config version {status.get('config_version')}",
    ]
    for problem in status.get("config_problems", []):
        lines.append(f"config problem: {problem}")
    return "\n".join(lines)


def format_response(r: dict) -> str:
    flags = ",".join(name for name in ("rapid", "closed") if r.get(name)) or "-"
    when = (datetime.fromtimestamp(r["wall"], UTC).strftime("%Y-%m-%d %H:%M:%SZ")
            if r.get("wall") else f"time unknown (boot {r['boot']} +{r['uptime_s']}s)")
    return (f"  #{r['seq']:<5} face {r['rating']}/{r['scale']}  told next: "
            f"{r['told_next']:<9}  after {r['latency_s']:>4}s  flags {flags:<12} {when}")


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
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("sim", help="run a simulated kiosk (the real firmware in micropython)")
    sim.add_argument("--board", default="esp32-devkitc-ssd1680",
                     help="board name from boards/ or a path to a board file")
    sim.add_argument("--state", required=True,
                     help="folder holding the simulated flash image; reuse it to keep the log")
    sim.add_argument("--script", help="customer events: rate N, yes, no, wait S, clock T, exit")
    sim.add_argument("--serial-link", help="make a symlink to the console pty here")
    sim.add_argument("--config", help="install this device config (validated) before booting")
    sim.add_argument("--device-config", help="the file `deskpulse devices add -o` wrote: merged "
                     "over --config (or the device's config) before booting; the kiosk "
                     "then pushes to that server over the host's network")
    sim.add_argument("--heap", default=simulator.DEFAULT_HEAP,
                     help="MicroPython heap size (default %(default)s)")
    sim.set_defaults(func=_cmd_sim)

    insp = sub.add_parser("inspect", help="show a simulated device's status and stored log")
    insp.add_argument("--board", default="esp32-devkitc-ssd1680")
    insp.add_argument("--state", required=True)
    insp.add_argument("--json", action="store_true", help="print JSON")
    insp.add_argument("--last", type=int, default=0, help="show only the last N responses")
    insp.set_defaults(func=_cmd_inspect)

    brd = sub.add_parser("boards", help="list the board definitions and check their pins")
    brd.set_defaults(func=_cmd_boards)

    add_sync_commands(sub)
    add_serve_command(sub)
    add_alerts_command(sub)
    add_report_command(sub)
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
    except sqlite3.Error as e:  # one that no command turned into a sentence itself
        path = (args.db or db.default_db_path()) if hasattr(args, "db") else None
        print(f"deskpulse: {db.failure(e, path)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
