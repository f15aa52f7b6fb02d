"""`deskpulse sim` and `deskpulse inspect`: a simulated kiosk (deskpulse.sim.simulator) and a
look at what it stored (deskpulse.device.inspect)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from deskpulse.device.micropython import DEFAULT_HEAP, require_micropython
from deskpulse.errors import DeskPulseError


def register(subparsers: Any) -> None:
    """Add `sim` and `inspect` to the `deskpulse` subcommands."""
    sim = subparsers.add_parser(
        "sim", help="run a simulated kiosk (the real firmware in micropython)")
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
    sim.add_argument("--heap", default=DEFAULT_HEAP,
                     help="MicroPython heap size (default %(default)s)")
    sim.set_defaults(func=do_sim)

    insp = subparsers.add_parser(
        "inspect", help="show a simulated device's status and stored log")
    insp.add_argument("--board", default="esp32-devkitc-ssd1680")
    insp.add_argument("--state", required=True)
    insp.add_argument("--json", action="store_true", help="print JSON")
    insp.add_argument("--last", type=int, default=0, help="show only the last N responses")
    insp.set_defaults(func=do_inspect)


def do_sim(args: argparse.Namespace) -> int:
    from deskpulse.device import boards
    from deskpulse.device.config_check import read_config_json
    from deskpulse.sim import simulator

    require_micropython("deskpulse sim")
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
        raise DeskPulseError(simulator.firmware_failure(Path(args.state), code, logged_before))
    return code


def do_inspect(args: argparse.Namespace) -> int:
    from deskpulse.cli.format import format_response, format_status
    from deskpulse.device import boards
    from deskpulse.device.inspect import read_state

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
