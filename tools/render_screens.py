"""Render every screen of every board through the real firmware code to PNGs for review.

Run from the repository root:  .venv/bin/python tools/render_screens.py

The drawing happens in `micropython` (tests/firmware/mp/render.py drives kiosk.ui.screens into a
plain frame buffer of the board's logical size); this side turns the pixels into
docs/screens/<board>/<view>.png: the panel black on white at 3x, in a grey bezel, with
the board's face and answer buttons marked below it (not on touch boards, where the
faces are the buttons) and its other controls (a side dial, a top button) marked dark on
the bezel's edge where they sit. tests/firmware/test_screens.py renders again and
compares with these files pixel for pixel, so a change to the screens shows up as a diff to review.
"""

from __future__ import annotations

import argparse
import binascii
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from deskpulse.device.micropython import default_micropython

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
FW_HELPERS = REPO / "tests" / "firmware" / "mp"
BOARDS_DIR = REPO / "boards"
FONTS_DIR = FIRMWARE / "kiosk" / "ui" / "fonts"
SCREENS_DIR = REPO / "docs" / "screens"

SCALE = 3
BEZEL = 6  # pixels of grey frame around the panel
STRIP = 16  # pixels below the bezel where the buttons are marked
BEZEL_GREY = 200
BUTTON_GREY = 90
BUTTON_WIDTH = 14 * SCALE
HEAP = "8M"


class RenderError(Exception):
    pass


@dataclass(frozen=True)
class View:
    board: str  # the board file's stem
    name: str
    width: int
    height: int
    touch: bool
    buttons: list[int]  # logical x of the face/answer buttons under the panel
    edges: list[tuple[str, int]]  # (edge, logical position) of the other controls
    pixels: bytes  # MONO_HLSB rows, 1 = white

    @property
    def path(self) -> Path:
        return Path(self.board) / f"{self.name}.png"


def board_files(boards_dir: Path = BOARDS_DIR) -> list[Path]:
    return sorted(boards_dir.glob("*.json"))


def run_renders(boards: list[Path], fonts_dir: Path = FONTS_DIR) -> list[View]:
    """Every view of every board, drawn by the firmware in micropython."""
    binary = default_micropython()
    if binary is None:
        raise RenderError("micropython not found: run `make venv` first")
    source = (
        "import sys\n"
        f"sys.path.insert(0, {str(FIRMWARE)!r})\n"
        f"sys.path.insert(0, {str(FW_HELPERS)!r})\n"
        "import render\n"
        "render.main(sys.argv[1], sys.argv[2:])\n"
    )
    cmd = [str(binary), "-X", f"heapsize={HEAP}", "-c", source, str(fonts_dir),
           *(str(path) for path in boards)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    if proc.returncode != 0:
        raise RenderError(f"the firmware failed to render (exit {proc.returncode}):\n"
                          f"{proc.stdout[-2000:]}{proc.stderr[-4000:]}")
    stems = {json.loads(path.read_text(encoding="utf-8"))["name"]: path.stem for path in boards}
    views = []
    for line in proc.stdout.splitlines():
        if not line.startswith("@"):
            continue
        raw: dict[str, Any] = json.loads(line[1:])
        views.append(View(
            board=stems.get(raw["board"]) or str(raw["board"]),
            name=raw["view"],
            width=raw["width"],
            height=raw["height"],
            touch=raw["touch"],
            buttons=raw["buttons"],
            edges=[(str(edge), int(at)) for edge, at in raw.get("edges", [])],
            pixels=binascii.unhexlify(raw["pixels"]),
        ))
    return views


def panel_image(view: View) -> Image.Image:
    """The panel's own pixels at 1x, mode "1"."""
    return Image.frombytes("1", (view.width, view.height), view.pixels)


def review_image(view: View) -> Image.Image:
    """The panel at SCALE x in its bezel, with the buttons marked below (mode "L")."""
    panel = panel_image(view).convert("L").resize(
        (view.width * SCALE, view.height * SCALE), Image.Resampling.NEAREST)
    strip = 0 if view.touch or not view.buttons else STRIP
    size = (panel.width + 2 * BEZEL, panel.height + 2 * BEZEL + strip)
    image = Image.new("L", size, BEZEL_GREY)
    image.paste(panel, (BEZEL, BEZEL))
    draw = ImageDraw.Draw(image)
    for edge, at in view.edges:
        # A control on the panel's edge: a dark bar in the bezel, centred where it sits.
        centre = BEZEL + at * SCALE + SCALE // 2
        half = BUTTON_WIDTH // 2
        if edge in ("left", "right"):
            x0 = 0 if edge == "left" else BEZEL + panel.width
            draw.rectangle((x0 + 1, centre - half, x0 + BEZEL - 2, centre + half),
                           fill=BUTTON_GREY)
        else:
            y0 = 0 if edge == "top" else BEZEL + panel.height
            draw.rectangle((centre - half, y0 + 1, centre + half, y0 + BEZEL - 2),
                           fill=BUTTON_GREY)
    if strip:
        top = panel.height + 2 * BEZEL
        draw.rectangle((0, top, size[0] - 1, size[1] - 1), fill=255)
        for x in view.buttons:
            centre = BEZEL + x * SCALE + SCALE // 2
            draw.rounded_rectangle(
                (centre - BUTTON_WIDTH // 2, top + 3, centre + BUTTON_WIDTH // 2, top + strip - 4),
                radius=4, fill=BUTTON_GREY)
    return image


def write_pngs(
    views: list[View], out_dir: Path = SCREENS_DIR, prune: bool = True
) -> tuple[list[Path], list[Path]]:
    """Write every view's PNG; with prune, remove the PNGs no view produced (a board or
    view that is gone). Returns (written, removed)."""
    written = []
    for view in views:
        path = out_dir / view.path
        path.parent.mkdir(parents=True, exist_ok=True)
        review_image(view).save(path, optimize=True)
        written.append(path)
    keep = set(written)
    removed = [path for path in out_dir.glob("*/*.png") if prune and path not in keep]
    for path in removed:
        path.unlink()
    for folder in out_dir.iterdir() if out_dir.exists() else ():
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return written, removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render every screen of every board to PNGs.")
    parser.add_argument("boards", nargs="*", type=Path,
                        help="board files (default: every file in boards/)")
    parser.add_argument("--out", type=Path, default=SCREENS_DIR, help="output folder")
    args = parser.parse_args(argv)
    try:
        views = run_renders(args.boards or board_files())
        # Only a run over every board knows which PNGs are stale.
        written, removed = write_pngs(views, args.out, prune=not args.boards)
    except RenderError as error:
        print(f"render_screens: {error}", file=sys.stderr)
        return 1
    for path in written:
        print(path.relative_to(REPO) if path.is_relative_to(REPO) else path)
    for path in removed:
        print(f"removed {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
