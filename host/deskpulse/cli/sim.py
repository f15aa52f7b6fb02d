"""`deskpulse sim` and `deskpulse inspect`: a simulated kiosk (deskpulse.sim.simulator) and a
look at what it stored (deskpulse.device.inspect)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from deskpulse.device.micropython import DEFAULT_HEAP, require_micropython
from deskpulse.errors import DeskPulseError

RESET_CAUSES = ("power_on", "brownout", "watchdog", "panic", "deliberate", "hard", "soft",
                "deep_sleep")
"""How a simulated board can come out of its previous run: the causes kiosk/resets.py
tells apart on an ESP32 (docs/reliability.md)."""

SCRIPT_HELP = """\
script events (--script FILE, one a line; README.md "Using the simulator"):
  rate N          tap face N (1 = worst)
  yes | no        answer the follow-up question
  wait SECONDS    simulated time passes; every timer fires at its own moment in it
  clock T         set the kiosk's clock as a host sync would (unix seconds or
                  2026-11-23T09:00:00Z)
  service         the technician's service button (or both end faces held 3 s)
  touch [N]       a touch board: a finger on target N of the screen shown, or on the
                  middle (the service screen: its touch check)
  wifi off | on   the simulated network goes down / comes back
  exit            stop the kiosk (without it, it runs until Ctrl-C)
  # ...           a comment, on its own line or after an event

time: the script plays on a virtual clock, as fast as the CPU allows (with --realtime,
by the wall clock). After the script, or without one, the kiosk keeps wall-clock time
for whoever talks to it (deskpulse sync, a person). A run that ends with a failed
display, log or sync task exits non-zero and says why.
"""


def register(subparsers: Any) -> None:
    """Add `sim` and `inspect` to the `deskpulse` subcommands."""
    sim = subparsers.add_parser(
        "sim", help="run a simulated kiosk (the real firmware in micropython)",
        epilog=SCRIPT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sim.add_argument("--board", default="esp32-devkitc-ssd1680",
                     help="board name from boards/ or a path to a board file")
    sim.add_argument("--state", required=True,
                     help="folder holding the simulated flash image; reuse it to keep the log")
    sim.add_argument("--script", help="a file of customer events, one a line (below)")
    sim.add_argument("--serial-link", help="make a symlink to the console pty here")
    sim.add_argument("--config", help="install this device config (validated) before booting")
    sim.add_argument("--device-config", help="the file `deskpulse devices add -o` wrote: merged "
                     "over --config (or the device's config) before booting; the kiosk "
                     "then pushes to that server over the host's network")
    sim.add_argument("--mac", metavar="MAC",
                     help="the simulated chip's base MAC, e.g. 24:0a:c4:12:34:56, kept in the "
                     "state folder (default: the folder's own, random, made at its first "
                     "start); a kiosk whose config names no device_id goes by kiosk- and its "
                     "12 hex digits")
    sim.add_argument("--heap", default=DEFAULT_HEAP,
                     help="MicroPython heap size (default %(default)s)")
    sim.add_argument("--realtime", action="store_true",
                     help="play the script by the wall clock (taps at a person's pace) "
                     "instead of the virtual clock; its waits are still fast-forwarded")
    sim.add_argument("--reset-cause", default="power_on", choices=RESET_CAUSES,
                     help="how the board comes out of its previous run (default "
                     "%(default)s): a power-on loses the time the ESP32's own RTC kept, the "
                     "others carry it into this boot")
    sim.add_argument("--interactive", action="store_true",
                     help="a terminal kiosk: keys press the board's buttons (digits the "
                     "faces, n / y the answers, on touch boards they tap the targets; w "
                     "switches the WiFi off/on, q or Ctrl-C quits), the e-ink screen is "
                     "drawn and redrawn on each refresh under a status line; runs on "
                     "wall-clock time; the console pty stays free for `deskpulse sync "
                     "--port`. Not with --script")
    sim.add_argument("--glyphs", choices=("braille", "blocks"), default="braille",
                     help="with --interactive: draw the screen with braille dots or half "
                     "blocks (default %(default)s)")
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
    if args.interactive and args.script:
        raise DeskPulseError("--interactive and --script do not mix: with --interactive, "
                             "the person at the keys is the customer")
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
    if args.interactive:
        from deskpulse.sim import interactive

        code = interactive.run(
            board, boards.load_board(board), args.state, serial_link=args.serial_link,
            heap=args.heap, config=args.config, device_config=args.device_config,
            glyphs=args.glyphs, simulator_options={"mac": args.mac},
        )
    else:
        code = simulator.run(
            board, args.state, script=args.script, serial_link=args.serial_link,
            heap=args.heap, config=args.config, device_config=args.device_config,
            realtime=args.realtime, reset_cause=args.reset_cause, mac=args.mac,
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
