"""Generate the firmware's bitmap fonts from DejaVu Sans (shipped inside matplotlib's wheel).

Run from the repository root:  .venv/bin/python tools/make_fonts.py

Each font becomes one file in firmware/kiosk/ui/fonts/ that the firmware reads glyph by
glyph (kiosk/ui/font.py), so only its index lives in RAM. The outlines are rendered by
FreeType in monochrome mode (hinted for 1-bit), not anti-aliased and thresholded, which
keeps stems even at small sizes.

File format, little-endian:
    header   4s magic b"DPF1", B height (rows of every glyph bitmap), B baseline (rows from
             the top to the baseline), B max_stride (bytes per row of the widest glyph),
             B range_count, H glyph_count, B cap_top (first row of a capital), B reserved
    ranges   range_count x (H first code point, H count); glyphs are numbered in order
    index    glyph_count x (H bitmap offset, B width, b x offset, B advance)
    bitmaps  per glyph: height rows of ceil(width / 8) bytes, MONO_HLSB (MSB is leftmost);
             offsets count from the start of this section
"""

from __future__ import annotations

import argparse
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parent.parent
FONTS_DIR = REPO / "firmware" / "kiosk" / "ui" / "fonts"

MAGIC = b"DPF1"
HEADER = struct.Struct("<4sBBBBHBB")
RANGE = struct.Struct("<HH")
ENTRY = struct.Struct("<HBbB")
_MARGIN = 4  # pixels around a glyph's reported box, in case hinting moves ink outside
# Latin-1 printable characters: ASCII and the upper half (no C1 controls).
RANGES = ((0x20, 0x7E - 0x20 + 1), (0xA0, 0xFF - 0xA0 + 1))


@dataclass(frozen=True)
class FontSpec:
    name: str  # file stem in the fonts folder
    ttf: str  # file in matplotlib's mpl-data/fonts/ttf
    pixels: int  # em size handed to FreeType


# The names carry the em size; the screens try them largest first until a text fits
# (FONT_NAMES in kiosk/ui/layout.py). Bold for the large sizes: its 3 px stems read from
# a step away. The regular 22 px keeps a question that is too wide in bold at the same
# height, and the 17 px takes a long translated question before the 13 px note size has to.
SPECS = (
    FontSpec("sans13", "DejaVuSans.ttf", 13),
    FontSpec("sansb22", "DejaVuSans-Bold.ttf", 22),
    FontSpec("sans22", "DejaVuSans.ttf", 22),
    FontSpec("sans17", "DejaVuSans.ttf", 17),
    FontSpec("sansb30", "DejaVuSans-Bold.ttf", 30),
)


class FontError(Exception):
    pass


def dejavu_dir() -> Path:
    try:
        import matplotlib
    except ImportError:
        raise FontError("matplotlib is needed for DejaVu Sans: pip install -e '.[dev]'") from None
    return Path(str(matplotlib.__file__)).parent / "mpl-data" / "fonts" / "ttf"


@dataclass(frozen=True)
class Glyph:
    code: int
    left: int  # x of the first bitmap column relative to the pen
    top: int  # y of the first row relative to the baseline (negative: above it)
    image: Image.Image  # mode "1", the glyph's ink box
    advance: int


def render_glyph(font: ImageFont.FreeTypeFont, code: int) -> Glyph:
    char = chr(code)
    # With the basic layout engine and mode "1" this is FreeType's hinted advance, which
    # matches the hinted (monochrome) outlines; the linear advance leaves uneven gaps.
    advance = round(font.getlength(char, mode="1"))
    left, top, right, bottom = (int(v) for v in font.getbbox(char, mode="1", anchor="ls"))
    if right <= left or bottom <= top:
        return Glyph(code, 0, 0, Image.new("1", (0, 0)), advance)
    # Cropped to the ink again below.
    left, top, right, bottom = left - _MARGIN, top - _MARGIN, right + _MARGIN, bottom + _MARGIN
    image = Image.new("1", (right - left, bottom - top), 0)
    ImageDraw.Draw(image).text((-left, -top), char, font=font, fill=1, anchor="ls")
    box = image.getbbox()
    if box is None:
        return Glyph(code, 0, 0, Image.new("1", (0, 0)), advance)
    return Glyph(code, left + box[0], top + box[1], image.crop(box), advance)


def pack_rows(image: Image.Image, height: int, y0: int) -> bytes:
    """The glyph as `height` MONO_HLSB rows, its ink starting at row y0."""
    width = image.width
    stride = (width + 7) // 8
    rows = bytearray(stride * height)
    for y in range(image.height):
        for x in range(width):
            if image.getpixel((x, y)):
                rows[(y0 + y) * stride + x // 8] |= 0x80 >> (x % 8)
    return bytes(rows)


def build_font(ttf: Path, pixels: int) -> bytes:
    """One font file's bytes (format in the module docstring)."""
    font = ImageFont.truetype(str(ttf), pixels, layout_engine=ImageFont.Layout.BASIC)
    glyphs = [render_glyph(font, first + i) for first, count in RANGES for i in range(count)]
    inked = [g for g in glyphs if g.image.width]
    top = min(g.top for g in inked)
    bottom = max(g.top + g.image.height for g in inked)
    height = bottom - top
    baseline = -top
    cap_top = render_glyph(font, ord("H")).top - top
    index = bytearray()
    bitmaps = bytearray()
    max_stride = 0
    for glyph in glyphs:
        width = glyph.image.width
        if glyph.advance > 255 or width > 255 or not -128 <= glyph.left <= 127:
            raise FontError(f"glyph {glyph.code:#x} too large for the format at {pixels} px")
        if len(bitmaps) > 0xFFFF:
            raise FontError(f"bitmaps exceed 64 KiB at {pixels} px")
        index += ENTRY.pack(len(bitmaps), width, glyph.left if width else 0, glyph.advance)
        if width:
            bitmaps += pack_rows(glyph.image, height, glyph.top - top)
            max_stride = max(max_stride, (width + 7) // 8)
    header = HEADER.pack(MAGIC, height, baseline, max_stride, len(RANGES), len(glyphs), cap_top, 0)
    ranges = b"".join(RANGE.pack(first, count) for first, count in RANGES)
    return header + ranges + bytes(index) + bytes(bitmaps)


def write_fonts(out_dir: Path = FONTS_DIR, specs: tuple[FontSpec, ...] = SPECS) -> list[Path]:
    source = dejavu_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in specs:
        ttf = source / spec.ttf
        if not ttf.exists():
            raise FontError(f"{ttf} is missing from matplotlib's wheel")
        path = out_dir / f"{spec.name}.bin"
        path.write_bytes(build_font(ttf, spec.pixels))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the firmware's bitmap fonts.")
    parser.add_argument("--out", type=Path, default=FONTS_DIR, help="output folder")
    args = parser.parse_args(argv)
    try:
        for path in write_fonts(args.out):
            print(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: "
                  f"{path.stat().st_size} bytes")
    except FontError as error:
        print(f"make_fonts: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
