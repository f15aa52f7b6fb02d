"""Pixels and widths of text drawn by kiosk/ui/font.py must equal a character-by-character
reference drawing, for ASCII, Latin-1 (German umlauts), typographic look-alikes and
characters the fonts lack: the font walks a text's UTF-8 bytes since issue 14 item 10
(no str, so no qstr, made per character)."""

from __future__ import annotations

import json

import pytest

from conftest import FIRMWARE, mpy_json, run_mpy

FONTS = FIRMWARE / "kiosk" / "ui" / "fonts"
TEXTS = [
    "Wie war Ihr Besuch?",
    "Größe, Übung, Straße: ÄÖÜ äöü ß",
    "„Danke“ – très bien, ¿qué tal? ½ × ÷ ÿ",
    "€ ☺ 漢字 𝄞 x",  # beyond Latin-1: 3- and 4-byte sequences, drawn as '?'
    "",
]

# The drawing as it was before: one character at a time, looked up by ord(). It uses the
# font's own index and glyph file, so the comparison is about walking the text only.
REFERENCE = """
import framebuf
from kiosk.ui import font as fontmod

def reference_width(f, text):
    index = f._index
    pen = right = 0
    for ch in text:
        at = f._entry(ord(ch))
        ink = index[at + 2]
        if ink:
            offset = index[at + 3]
            if offset > 127:
                offset -= 256
            right = max(right, pen + offset + ink)
        pen += index[at + 4]
    return right

def reference_draw(f, fb, text, x, y, ink):
    index = f._index
    key = ink ^ 1
    f._palette.pixel(0, 0, key)
    f._palette.pixel(1, 0, ink)
    with open(f.path, "rb") as glyphs:
        for ch in text:
            at = f._entry(ord(ch))
            ink_width = index[at + 2]
            if ink_width:
                glyphs.seek(f._bitmaps + fontmod._u16(index, at))
                glyphs.readinto(f._buf)
                offset = index[at + 3]
                if offset > 127:
                    offset -= 256
                fb.blit(f._frames[(ink_width + 7) >> 3], x + offset, y, key, f._palette)
            x += index[at + 4]
    return x

def canvas():
    buf = bytearray(400 * 40 // 8)
    fb = framebuf.FrameBuffer(buf, 400, 40, framebuf.MONO_HLSB)
    fb.fill(1)
    return buf, fb
"""


@pytest.mark.parametrize("name", ["sans13", "sansb30"])
def test_utf8_walk_draws_and_measures_exactly_as_before(name: str) -> None:
    source = REFERENCE + f"""
import json
f = fontmod.Font({str(FONTS / (name + '.bin'))!r})
texts = json.loads({json.dumps(TEXTS)!r})
out = []
for text in texts:
    new_buf, new_fb = canvas()
    old_buf, old_fb = canvas()
    new_pen = f.draw(new_fb, text, 3, 2, 0)
    old_pen = reference_draw(f, old_fb, text, 3, 2, 0)
    out.append({{"same_pixels": new_buf == old_buf, "pen": [new_pen, old_pen],
                "width": [f.width(text), reference_width(f, text)],
                "ink": sum(8 - bin(b).count("1") for b in new_buf),
                "image": bytes(new_buf).hex()}})
print("@" + json.dumps(out))
"""
    (results,) = mpy_json(source)
    assert len(results) == len(TEXTS)
    for text, r in zip(TEXTS, results, strict=True):
        assert r["same_pixels"], text
        assert r["pen"][0] == r["pen"][1], text
        assert r["width"][0] == r["width"][1], text
    # The comparison means something: every non-empty text puts ink on the panel, and the
    # texts with umlauts and look-alikes look different from the plain ASCII one.
    assert all(r["ink"] > 0 for text, r in zip(TEXTS, results, strict=True) if text)
    assert results[-1]["ink"] == 0
    assert len({r["image"] for r in results}) == len(TEXTS)


def test_umlauts_get_their_own_glyphs_and_unknown_characters_the_question_mark() -> None:
    source = f"""
import json
from kiosk.ui import font as fontmod
f = fontmod.Font({str(FONTS / 'sans22.bin')!r})
print("@" + json.dumps({{"umlaut": f.width("ä"), "a": f.width("a"), "euro": f.width("€"),
    "clef": f.width("𝄞"), "question": f.width("?"), "quote": f.width("“"),
    "ascii_quote": f.width('"'), "mixed": f.width("ä€a")}}))
"""
    (r,) = mpy_json(source)
    assert r["euro"] == r["clef"] == r["question"] > 0  # not in the font: '?'
    assert r["quote"] == r["ascii_quote"] > 0  # a typographic look-alike
    assert r["umlaut"] > 0 and r["mixed"] > max(r["umlaut"], r["question"])


def test_measuring_and_drawing_make_no_string_per_character() -> None:
    """Issue 14 item 10: walking a text by character made a str of each character, which
    MicroPython interns as a qstr (a hash and a pool search every time, and a new entry
    for each character not seen before). The byte walk makes none: the qstr count stays."""
    source = f"""
import framebuf, micropython
from kiosk.ui import font as fontmod
f = fontmod.Font({str(FONTS / 'sans22.bin')!r})
fb = framebuf.FrameBuffer(bytearray(256 * 40 // 8), 256, 40, framebuf.MONO_HLSB)
micropython.qstr_info()
f.width("Größe ÄÖÜ ÿ½×÷ þð")
f.draw(fb, "Größe ÄÖÜ ÿ½×÷ þð", 0, 0, 0)
micropython.qstr_info()
"""
    proc = run_mpy(source)
    counts = [int(line.split("n_qstr=")[1].split(",")[0])
              for line in proc.stdout.splitlines() if "n_qstr=" in line]
    assert len(counts) == 2
    assert counts[1] == counts[0], counts
