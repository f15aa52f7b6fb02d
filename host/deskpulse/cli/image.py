"""`deskpulse image`: a kiosk's filesystem image for its board's vfs partition
(deskpulse.device.image)."""

from __future__ import annotations

import argparse
from typing import Any

from deskpulse.errors import DeskPulseError


def register(subparsers: Any) -> None:
    """Add `image` to the `deskpulse` subcommands."""
    img = subparsers.add_parser(
        "image", help="build a kiosk's filesystem image (LittleFS) to flash",
        description="Write the LittleFS image of the board's vfs partition: the app of "
                    "firmware/manifest.py compiled to .mpy for the ESP32, main.py, the "
                    "board file, the fonts and, with --config, the device config (checked "
                    "first by the firmware's own validator). The same inputs give the same "
                    "bytes. Flash it at the partition's offset, which it prints "
                    "(docs/technicians.md).")
    img.add_argument("--board", required=True,
                     help="board name (deskpulse boards lists them) or a path to a board file")
    img.add_argument("--config", metavar="FILE",
                     help="the device config to install as /config.json (e.g. the file "
                     "`deskpulse devices add -o` wrote); the image is then readable by "
                     "its owner only, as it holds the kiosk's key")
    img.add_argument("-o", "--output", required=True, metavar="FILE",
                     help="the image file to write (replaced whole, never half-written)")
    img.add_argument("--romfs", metavar="FILE.romfs",
                     help="for a firmware built with ROMFS (docs/hardware.md): write the "
                     "app's .mpy as a ROMFS image to this file, which runs in place from "
                     "flash, and leave them out of the LittleFS image; deploy it with "
                     "`mpremote connect PORT romfs deploy FILE.romfs`")
    img.set_defaults(func=do_image)


def do_image(args: argparse.Namespace) -> int:
    from deskpulse.device import image

    # mpremote's `romfs deploy` takes a file by these endings only; any other name it
    # reads as a folder to build an image from.
    if args.romfs is not None and not args.romfs.endswith((".romfs", ".img")):
        raise DeskPulseError(f"--romfs {args.romfs}: name it FILE.romfs (mpremote romfs "
                             "deploy takes an image by its .romfs or .img ending)")
    built = image.build_image(args.board, args.config, romfs=args.romfs is not None)
    image.write_image(args.output, built.data, private=built.config is not None)
    if args.romfs is not None and built.romfs is not None:
        image.write_image(args.romfs, built.romfs, private=False)
    config = (f"config of {built.config.device_id} (version {built.config.version})"
              if built.config else "no config (the kiosk starts with its defaults)")
    print(f"{args.output}: {built.board_name}'s vfs partition, {len(built.data)} bytes "
          f"({built.block_count} blocks of {built.block_size}, {built.used_blocks} used), "
          f"{len(built.files)} files, .mpy v{built.mpy_version}, {config}")
    print(f"flash it at {built.offset:#x}: esptool --chip esp32 --port PORT write-flash "
          f"{built.offset:#x} {args.output}")
    if built.romfs is not None:
        print(f"{args.romfs}: the app's ROMFS image, {len(built.romfs)} bytes of the "
              f"romfs partition's {image.ROMFS_PARTITION_SIZE}; deploy it: mpremote "
              f"connect PORT romfs deploy {args.romfs}")
    return 0
