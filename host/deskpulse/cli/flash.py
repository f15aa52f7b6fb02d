"""`deskpulse flash`: MicroPython and a kiosk's filesystem onto a blank ESP32, checked,
written in one pass, verified and reset into the app (deskpulse.device.flash)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add `flash` to the `deskpulse` subcommands."""
    fl = subparsers.add_parser(
        "flash", help="flash MicroPython and the kiosk app onto an ESP32 over USB",
        description="Check the MicroPython firmware file (its chip, its version against the "
                    "app's .mpy format, where its partition table keeps the filesystem), "
                    "build the kiosk's filesystem image for the board, read the chip and "
                    "its flash size, then write firmware and filesystem in one pass with "
                    "esptool, verify both and reset the board into the app. Nothing is "
                    "written before every check passed. docs/technicians.md, \"Flash a "
                    "blank ESP32\".")
    fl.add_argument("--port", required=True,
                    help="the board's serial port (/dev/ttyUSB0, COM3), or 'auto' for the "
                         "single ESP32 USB port")
    fl.add_argument("--board", required=True,
                    help="board name (deskpulse boards lists them) or a path to a board file")
    fl.add_argument("--firmware", required=True, metavar="MICROPYTHON.bin",
                    help="MicroPython's firmware download for the board's chip: the .bin "
                         "with bootloader, partition table and app (e.g. "
                         "ESP32_GENERIC-20241129-v1.24.1.bin)")
    fl.add_argument("--config", metavar="FILE",
                    help="the device config to install (checked first by the firmware's own "
                         "validator); without it the kiosk starts with its defaults")
    fl.add_argument("--erase", action="store_true",
                    help="erase the whole flash first (also what earlier firmware or "
                         "another app left outside the written regions)")
    fl.add_argument("--dry-run", action="store_true",
                    help="check everything, read the chip, print the plan, write nothing")
    fl.add_argument("--baud", type=int,
                    help="serial speed while writing (default: 460800; 115200 for a long or "
                         "poor cable)")
    fl.add_argument("--verbose", action="store_true", help="also show esptool's own output")
    fl.set_defaults(func=do_flash)


def do_flash(args: argparse.Namespace) -> int:
    from deskpulse.device import flash

    def say(line: str) -> None:
        print(line, flush=True)

    done = flash.flash_kiosk(args.port, args.board, args.firmware, args.config,
                             erase=args.erase, dry_run=args.dry_run,
                             baud=args.baud or flash.FLASH_BAUD,
                             report=say, verbose=args.verbose)
    config = (f"config of {done.image.config.device_id}" if done.image.config
              else "no config (the kiosk starts with its defaults)")
    if not done.written:
        print(f"dry run done in {done.seconds:.1f} s: {done.chip.port} would get MicroPython "
              f"{done.firmware.version} and {done.image.board_name}'s app, {config}")
        return 0
    print(f"done in {done.seconds:.1f} s: the {done.chip.name} {done.chip.mac} on "
          f"{done.chip.port} has MicroPython {done.firmware.version} and "
          f"{done.image.board_name}'s app, {config}, and was reset to start them")
    return 0
