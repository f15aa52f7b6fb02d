"""The e-ink screens, drawn by the firmware in micropython: reviewed snapshots of every view
on every board (docs/screens), text that fits, Latin-1 coverage, faces, touch targets and
faces above their buttons."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from conftest import BOARDS, FIRMWARE, REPO, mpy_json

sys.path.insert(0, str(REPO / "tools"))
import make_fonts  # noqa: E402
import render_screens  # noqa: E402

FONTS = FIRMWARE / "kiosk" / "ui" / "fonts"
FONT_FILES = sorted(FONTS.glob("*.bin"))
RERUN = (
    "The screens changed: run `.venv/bin/python tools/render_screens.py`, review the diff "
    "(git diff docs/screens, or open the PNGs) and commit the PNGs if the change is wanted."
)
GERMAN = "Wie würden Sie Ihren Besuch heute bei uns bewerten?"
LONG_GERMAN = (
    "Wie zufrieden waren Sie heute mit der Beratung und der Wartezeit an unserem Schalter?"
)

BUTTON_BOARD_X = [40, 95, 160, 210]


def board(width: int, height: int, touch: bool = False, xs: list[int] | None = None,
          rotation: int = 0) -> dict[str, Any]:
    """A board definition as the screens see it (only display, buttons and touch matter)."""
    answers = {0: "no", 3: "yes"}
    buttons: list[dict[str, Any]] = []
    if not touch:
        for i in range(4):
            button: dict[str, Any] = {"pin": 32 + i, "active": "low", "face": i + 1,
                                      "answer": answers.get(i)}
            if xs is not None:
                button["x"] = xs[i]
            buttons.append(button)
    return {
        "name": f"test-{width}x{height}{'-touch' if touch else ''}",
        "buttons": buttons,
        "display": {"controller": "ssd1680", "width": width, "height": height,
                    "rotation": rotation},
        "touch": {"controller": "gt1151"} if touch else None,
    }


def fw(body: str, *args: str) -> list[Any]:
    """Run body in micropython with the render helpers imported; return its '@' lines."""
    prelude = (
        "import json, gc\nimport framebuf\nimport render\n"
        "from kiosk.ui import faces, font, layout\nfrom kiosk.ui.screens import Screens\n"
        f"FONTS = {str(FONTS)!r}\n"
        "def out(x):\n    print('@' + json.dumps(x))\n"
    )
    return mpy_json(prelude + body, *args)


# -- snapshots ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rendered() -> list[render_screens.View]:
    return render_screens.run_renders(render_screens.board_files(BOARDS))


def panel_region(image: Image.Image, view: render_screens.View) -> bytes:
    border = render_screens.BEZEL
    scale = render_screens.SCALE
    box = (border, border, border + view.width * scale, border + view.height * scale)
    return image.crop(box).tobytes()


@pytest.mark.parametrize("board_name", [path.stem for path in sorted(BOARDS.glob("*.json"))])
def test_renders_match_reviewed_snapshots(rendered: list[render_screens.View],
                                          board_name: str) -> None:
    views = [view for view in rendered if view.board == board_name]
    assert views, f"nothing rendered for {board_name}"
    problems = []
    for view in views:
        path = render_screens.SCREENS_DIR / view.path
        if not path.exists():
            problems.append(f"docs/screens/{view.path}: no snapshot yet")
            continue
        with Image.open(path) as png:
            have = png.convert("L")
        want = render_screens.review_image(view)
        if have.size != want.size:
            problems.append(f"docs/screens/{view.path}: {have.size[0]}x{have.size[1]} "
                            f"pixels, the render is {want.size[0]}x{want.size[1]}")
            continue
        old, new = panel_region(have, view), panel_region(want, view)
        if old != new:
            changed = sum(a != b for a, b in zip(old, new, strict=True))
            scale = render_screens.SCALE
            problems.append(f"docs/screens/{view.path}: {changed // (scale * scale)} panel "
                            "pixels differ")
    produced = {view.path for view in views}
    for path in sorted((render_screens.SCREENS_DIR / board_name).glob("*.png")):
        if path.relative_to(render_screens.SCREENS_DIR) not in produced:
            problems.append(f"docs/screens/{board_name}/{path.name}: no such view any more")
    assert not problems, "\n".join(problems) + "\n" + RERUN


def test_snapshots_only_for_boards_that_exist() -> None:
    boards = {path.stem for path in BOARDS.glob("*.json")}
    folders = {path.name for path in render_screens.SCREENS_DIR.iterdir() if path.is_dir()}
    assert folders <= boards, f"snapshots of removed boards {sorted(folders - boards)}: {RERUN}"


def test_every_board_shows_every_view(rendered: list[render_screens.View]) -> None:
    for path in sorted(BOARDS.glob("*.json")):
        names = {view.name for view in rendered if view.board == path.stem}
        for view in ("idle-3", "follow_up", "thanks", "thanks-no", "closed", "service",
                     "idle-de", "idle-note"):
            assert view in names, f"{path.stem} lacks {view}"
        definition = json.loads(path.read_text(encoding="utf-8"))
        faces = len([b for b in definition["buttons"] if b.get("face")])
        if definition.get("touch") or faces >= 5:
            assert {"idle-4", "idle-5"} <= names


# -- text -----------------------------------------------------------------------------------
EXTREME_TEXTS = [
    ("idle", LONG_GERMAN, ["1", "2", "3", "4"], ""),
    ("idle", "Donaudampfschifffahrtsgesellschaftskapitänsmützenabzeichen?",
     ["1", "2", "3", "4", "5"], "service: 123456 responses could not be stored"),
    ("follow_up", "Le personnel vous a-t-il expliqué clairement les prochaines étapes de "
     "votre démarche ?", ["Non, pas vraiment", "Oui, tout à fait"], ""),
    ("thanks", "¡Muchas gracias por su opinión! Nos ayuda a mejorar cada día.", [], ""),
    ("closed", "Fermé pour la journée, à demain", ["1", "2", "3"],
     "Comment s'est passée votre visite ?"),
    ("service", "Storage nearly full: 97% of the log partition is used",
     [], "sync now: deskpulse sync --port /dev/ttyUSB0\n" * 12),
]


@pytest.mark.parametrize(
    "definition",
    [board(250, 122), board(200, 200), board(250, 122, touch=True), board(200, 200, touch=True),
     board(122, 250, rotation=90), board(250, 122, xs=[2, 8, 240, 248])],
    ids=["250x122", "200x200", "250x122-touch", "200x200-touch", "rotated", "edge-buttons"],
)
@pytest.mark.slow
def test_nothing_is_drawn_outside_the_panel(definition: dict[str, Any]) -> None:
    found = fw(
        "b = json.loads(ARG_BOARD)\n"
        "w, h = render.logical_size(b)\n"
        "canvas = render.OffsetCanvas(w, h, 24, render.PAPER)\n"
        "s = Screens(canvas, w, h, render.INK, render.PAPER, b, FONTS, lambda: None)\n"
        "for kind, title, options, note in json.loads(ARG_VIEWS):\n"
        "    canvas.big.fill(render.PAPER)\n"
        "    s.show(kind, title, options, note)\n"
        "    out([kind, title, canvas.ink_outside(render.INK)])\n"
        "for name, kind, title, options, note, chosen, mark in render.views(b):\n"
        "    canvas.big.fill(render.PAPER)\n"
        "    s.show(kind, title, options, note, chosen, mark)\n"
        "    out([name, title, canvas.ink_outside(render.INK)])\n"
        .replace("ARG_BOARD", repr(json.dumps(definition)))
        .replace("ARG_VIEWS", repr(json.dumps(EXTREME_TEXTS)))
    )
    assert len(found) > len(EXTREME_TEXTS)
    outside = [(kind, title, count) for kind, title, count in found if count]
    assert not outside, f"ink outside the panel: {outside}"


def test_long_german_question_wraps_within_the_width() -> None:
    [result] = fw(
        "fonts = [font.Font(FONTS + '/' + n + '.bin') for n in layout.FONT_NAMES]\n"
        "r = {}\n"
        "for width, height in ((246, 54), (194, 90)):\n"
        "    used, lines = font.fit(fonts, ARG_TEXT, width, 6, height)\n"
        "    r[str(width)] = [fonts.index(used), lines, [used.width(x) for x in lines],\n"
        "                     len(lines) * used.height]\n"
        "used, lines = font.fit(fonts, ARG_MEDIUM, 246, 6, 61)\n"
        "r['two'] = [fonts.index(used), lines, [used.width(x) for x in lines]]\n"
        "word = 'Donaudampfschifffahrtsgesellschaftskapitänsmütze'\n"
        "pieces = font.wrap(fonts[1], word, 120)\n"
        "r['word'] = [pieces, [fonts[1].width(x) for x in pieces]]\n"
        "used, lines = font.fit(fonts, ARG_TEXT * 4, 246, 2)\n"
        "r['cut'] = [lines, [used.width(x) for x in lines]]\n"
        "used, lines = font.fit(fonts, ARG_TEXT * 4, 246, 6, 61)\n"
        "r['tall'] = [lines, len(lines) * used.height]\n"
        "out(r)\n".replace("ARG_TEXT", repr(LONG_GERMAN)).replace("ARG_MEDIUM", repr(GERMAN))
    )
    for width, height in (("246", 54), ("194", 90)):
        _, lines, widths, stacked = result[width]
        assert " ".join(lines) == LONG_GERMAN
        assert max(widths) <= int(width)
        assert stacked <= height
    used, lines, widths = result["two"]
    assert len(lines) <= 3 and max(widths) <= 246 and " ".join(lines) == GERMAN
    assert used < 4, "a question of this length is not left to the note size"
    pieces, widths = result["word"]
    assert "".join(pieces) == "Donaudampfschifffahrtsgesellschaftskapitänsmütze"
    assert len(pieces) > 1 and max(widths) <= 120
    lines, widths = result["cut"]
    assert len(lines) == 2 and lines[-1].endswith("...") and max(widths) <= 246
    lines, stacked = result["tall"]
    assert stacked <= 61 and lines[-1].endswith("..."), "cut to the height it may take"


def test_a_question_that_fits_keeps_a_large_font() -> None:
    [result] = fw(
        "fonts = [font.Font(FONTS + '/' + n + '.bin') for n in layout.FONT_NAMES]\n"
        "used, lines = font.fit(fonts, 'Did we tell you what happens next?', 246, 3, 54)\n"
        "out([used.height - used.baseline, used.baseline - used.cap_top, lines])\n"
    )
    _, cap_height, lines = result
    assert cap_height >= 16, "questions need glyphs of at least 16 px"
    assert lines == ["Did we tell you", "what happens next?"]  # balanced, not greedy


@pytest.mark.parametrize("path", FONT_FILES, ids=[path.stem for path in FONT_FILES])
def test_every_latin1_character_renders(path: Path) -> None:
    [result] = fw(
        "f = font.Font(ARG_PATH)\n"
        "w = 2 * f.height\n"
        "buf = bytearray(((w + 7) // 8) * f.height)\n"
        "fb = framebuf.FrameBuffer(buf, w, f.height, framebuf.MONO_HLSB)\n"
        "def ink(text):\n"
        "    fb.fill(0)\n"
        "    f.draw(fb, text, 4, 0, 1)\n"
        "    return bytes(buf)\n"
        "blank = []\n"
        "narrow = []\n"
        "for code in list(range(0x20, 0x7F)) + list(range(0xA0, 0x100)):\n"
        "    if ink(chr(code)) == bytes(len(buf)):\n"
        "        blank.append(code)\n"
        "    if f.width(chr(code)) <= 0 and code not in (0x20, 0xA0):\n"
        "        narrow.append(code)\n"
        "q = ink('?')\n"
        "out({'blank': blank, 'narrow': narrow, 'unknown': [ink(c) == q for c in\n"
        "     ('\\u03a9', '\\u4e2d', '\\x07', '\\x85')], 'quote': ink('\\u2019') == ink(\"'\"),\n"
        "     'height': f.height, 'ram': f.ram_bytes()})\n".replace("ARG_PATH", repr(str(path)))
    )
    assert result["blank"] == [0x20, 0xA0], "only the two spaces may be blank"
    assert result["narrow"] == []
    assert all(result["unknown"]), "characters outside Latin-1 draw as '?'"
    assert result["quote"], "a typographic apostrophe draws as '\"'\"'"
    # Only the index (191 glyphs x 5 bytes) and one glyph's buffer stay in RAM.
    assert result["ram"] < 191 * 5 + 4 * result["height"] + 16


def test_text_drawing_allocation_does_not_grow_with_length() -> None:
    [result] = fw(
        "import micropython\n"
        "f = font.Font(FONTS + '/sansb22.bin')\n"
        "fb = framebuf.FrameBuffer(bytearray(32 * 122), 250, 122, framebuf.MONO_HLSB)\n"
        "def cost(call, text):\n"
        "    gc.collect()\n"
        "    before = gc.mem_alloc()\n"
        "    call(text)\n"
        "    return gc.mem_alloc() - before\n"
        "draw = lambda text: f.draw(fb, text, 0, 0, 1)\n"
        "long_text = 'Wie würden Sie Ihren Besuch bewerten? Größe! ' * 6\n"
        "cost(f.width, 'Ab')\n"
        "widths = [cost(f.width, text) for text in ('Ab', long_text)]\n"
        "cost(draw, 'Ab')\n"
        "draws = [cost(draw, text) for text in ('Ab', long_text)]\n"
        "out(draws + widths + [f.width(long_text)])\n"
    )
    short, long, width_short, width_long, width = result
    assert long - short < 64, f"drawing allocates per glyph: {short} vs {long} bytes"
    # Measuring walks the text's bytes: one memoryview, no str (qstr) per character.
    assert width_long == width_short <= 64, (width_short, width_long)
    assert width > 0


def test_ink_and_paper_either_way_round() -> None:
    # 256 pixels wide: no padding bits at the row ends, which drawing never touches.
    [result] = fw(
        "b = json.loads(ARG_BOARD)\n"
        "pictures = []\n"
        "for ink in (0, 1):\n"
        "    buf = bytearray(32 * 122)\n"
        "    fb = framebuf.FrameBuffer(buf, 256, 122, framebuf.MONO_HLSB)\n"
        "    s = Screens(fb, 256, 122, ink, 1 - ink, b, FONTS, lambda: None)\n"
        "    s.show('follow_up', 'Did we tell you what happens next?', ('No', 'Yes'), 'a note')\n"
        "    pictures.append(buf)\n"
        "out([all((a ^ b) == 0xFF for a, b in zip(pictures[0], pictures[1])),\n"
        "     sum(bin(x).count('1') for x in pictures[1])])\n"
        .replace("ARG_BOARD", repr(json.dumps(board(256, 122))))
    )
    complementary, inked = result
    assert complementary
    assert inked > 500


def test_screens_draw_alike_in_the_panel_driver_s_buffer_at_every_rotation() -> None:
    # The SSD1680 driver's frame buffer is MONO_HLSB, MONO_VLSB or MONO_HMSB by rotation;
    # blits with a palette and every primitive must give the same picture in each.
    found = fw(
        "from kiosk.drivers.ssd1680 import Ssd1680\n"
        "b = json.loads(ARG_BOARD)\n"
        "for rotation in (0, 90, 180, 270):\n"
        "    drv = Ssd1680(None, None, None, None, None, 122, 250, rotation)\n"
        "    w, h = drv.width, drv.height\n"
        "    plain = bytearray(((w + 7) // 8) * h)\n"
        "    ref = framebuf.FrameBuffer(plain, w, h, framebuf.MONO_HLSB)\n"
        "    mine = Screens(drv.framebuf, w, h, drv.INK, drv.PAPER, b, FONTS, lambda: None)\n"
        "    other = Screens(ref, w, h, drv.INK, drv.PAPER, b, FONTS, lambda: None)\n"
        "    bad = 0\n"
        "    for s in (mine, other):\n"
        "        s.show('idle', 'Wie würden Sie Ihren Besuch bewerten?', ['1', '2', '3', '4'],\n"
        "               'a note')\n"
        "    for y in range(h):\n"
        "        for x in range(w):\n"
        "            if drv.framebuf.pixel(x, y) != ref.pixel(x, y):\n"
        "                bad += 1\n"
        "    out([rotation, w, h, bad])\n"
        .replace("ARG_BOARD", repr(json.dumps(board(250, 122))))
    )
    assert [(r, w, h) for r, w, h, _ in found] == [
        (0, 122, 250), (90, 250, 122), (180, 122, 250), (270, 250, 122)]
    assert [bad for *_, bad in found] == [0, 0, 0, 0]


# -- faces ----------------------------------------------------------------------------------
def test_faces_differ_per_rating() -> None:
    [result] = fw(
        "r = {}\n"
        "for count in (3, 4, 5):\n"
        "    for size in (30, 48, 64):\n"
        "        pictures = []\n"
        "        for position in range(1, count + 1):\n"
        "            buf = bytearray(9 * 72)\n"
        "            fb = framebuf.FrameBuffer(buf, 72, 72, framebuf.MONO_HLSB)\n"
        "            fb.fill(0)\n"
        "            faces.draw(fb, 36, 36, size, position, count, 1, 0)\n"
        "            pictures.append(bytes(buf))\n"
        "        r['%d/%d' % (count, size)] = [len(set(pictures)),\n"
        "            [sum(bin(x).count('1') for x in p) for p in pictures],\n"
        "            [faces.mood(p, count) for p in range(1, count + 1)]]\n"
        "out(r)\n"
    )
    for key, (distinct, inked, moods) in result.items():
        count = int(key.split("/")[0])
        assert distinct == count, f"{key}: faces look alike"
        assert min(inked) > 0
        assert moods[0] == -1000 and moods[-1] == 1000 and moods == sorted(moods)


# -- placement and touch --------------------------------------------------------------------
def show_all(definition: dict[str, Any]) -> list[dict[str, Any]]:
    """Each view of a board with its option boxes, centres, face size and hit tests."""
    return fw(
        "b = json.loads(ARG_BOARD)\n"
        "w, h = render.logical_size(b)\n"
        "buf, s, requests = render.make(b, FONTS)\n"
        "fb = framebuf.FrameBuffer(buf, w, h, framebuf.MONO_HLSB)\n"
        "cases = [('idle', 'How was your visit?', [str(i + 1) for i in range(n)], '')\n"
        "         for n in (3, 4, 5)]\n"
        "cases.append(('follow_up', 'Did we tell you what happens next?', ('No', 'Yes'), ''))\n"
        "cases.append(('thanks', 'Thank you!', (), ''))\n"
        "for kind, title, options, note in cases:\n"
        "    before = len(requests)\n"
        "    s.show(kind, title, options, note)\n"
        "    boxes = [[x.x0, x.y0, x.x1, x.y1] for x in s.boxes]\n"
        "    hits = [s.target_at(*x.centre()) for x in s.boxes]\n"
        "    at_centres = [s.target_at(x, y) for x, y in s.option_centres]\n"
        "    misses = [s.target_at(x, y) for x, y in ((w // 2, 1), (-1, -1), (w, h), (0, h))]\n"
        "    row = []\n"
        "    if s.face_size:\n"
        "        cy = s.option_centres[0][1]\n"
        "        row = [fb.pixel(x, cy) for x in range(w)]\n"
        "    out({'kind': kind, 'count': len(options), 'boxes': boxes, 'hits': hits,\n"
        "         'at_centres': at_centres, 'misses': misses, 'requests': len(requests) - before,\n"
        "         'centres': s.option_centres, 'size': s.face_size, 'row': row,\n"
        "         'buttons': s.layout.button_xs(), 'shown': s.kind})\n"
        .replace("ARG_BOARD", repr(json.dumps(definition)))
    )


@pytest.mark.parametrize("size", [(250, 122), (200, 200)], ids=["250x122", "200x200"])
def test_touch_targets_are_the_faces_and_answers(size: tuple[int, int]) -> None:
    width, height = size
    for view in show_all(board(width, height, touch=True)):
        assert view["requests"] == 1 and view["shown"] == view["kind"]
        if view["kind"] == "thanks":
            assert view["boxes"] == [] and view["misses"] == [-1] * 4
            continue
        count = len(view["boxes"])
        assert count == (2 if view["kind"] == "follow_up" else view["count"])
        assert view["hits"] == list(range(count)), view
        assert view["at_centres"] == list(range(count)), view
        assert view["misses"] == [-1] * 4, "the title and points off the panel hit nothing"
        for (x0, y0, x1, y1), (cx, cy) in zip(view["boxes"], view["centres"], strict=True):
            assert x0 <= cx < x1 and y0 <= cy < y1
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        if view["kind"] == "idle":
            # Faces spread evenly over the width: equal steps between centres.
            xs = [cx for cx, _ in view["centres"]]
            steps = {b - a for a, b in zip(xs, xs[1:], strict=False)}
            assert max(steps) - min(steps) <= 1


def test_a_board_without_touch_has_no_targets() -> None:
    for view in show_all(board(250, 122, xs=BUTTON_BOARD_X)):
        assert set(view["hits"]) <= {-1} and set(view["at_centres"]) <= {-1}


def test_faces_stand_above_the_buttons_given_by_x() -> None:
    views = show_all(board(250, 122, xs=BUTTON_BOARD_X))
    for view in views:
        if view["kind"] == "idle" and view["count"] <= len(BUTTON_BOARD_X):
            xs = [cx for cx, _ in view["centres"]]
            # Three faces on four buttons: the middle face between the two middle buttons.
            want = BUTTON_BOARD_X if view["count"] == 4 else [40, (95 + 160) // 2, 210]
            assert xs == want, "each face above the buttons that select it"
            # The outline's outermost pixels on the middle row: the face is centred on x.
            radius = view["size"] // 2
            row = view["row"]
            for cx in xs:
                assert row[cx - radius] == 0 and row[cx + radius] == 0, cx
                assert row[cx - radius - 1] == 1 and row[cx + radius + 1] == 1, cx
        elif view["kind"] == "follow_up":
            # "no" is the first button, "yes" the fourth.
            assert [cx for cx, _ in view["centres"]] == [BUTTON_BOARD_X[0], BUTTON_BOARD_X[3]]


def test_faces_spread_evenly_without_x() -> None:
    views = show_all(board(250, 122))
    idle = [view for view in views if view["kind"] == "idle"]
    assert [view["buttons"] for view in idle][0] == [31, 93, 156, 218]
    for view in idle:
        if view["count"] > 4:
            # More faces than buttons (a config the board cannot serve): spread evenly.
            assert [cx for cx, _ in view["centres"]] == [25, 75, 125, 175, 225]
            continue
        # Three faces are larger: the ends move in just enough to stay on the panel.
        want = [31, 93, 156, 218] if view["count"] == 4 else [34, (93 + 156) // 2, 215]
        assert [cx for cx, _ in view["centres"]] == want
        assert view["size"] >= 44, "faces must stay large on a 250x122 panel"


def test_rotated_panels_lay_out_on_their_logical_size() -> None:
    views = show_all(board(122, 250, rotation=90))
    for view in views:
        for x0, y0, x1, y1 in view["boxes"]:
            assert 0 <= x0 < x1 <= 250 and 0 <= y0 < y1 <= 122


# -- the font generator ---------------------------------------------------------------------
def test_generated_font_loads_in_the_firmware(tmp_path: Path) -> None:
    spec = make_fonts.FontSpec("probe", "DejaVuSans.ttf", 16)
    [path] = make_fonts.write_fonts(tmp_path, (spec,))
    [result] = fw(
        "f = font.Font(ARG_PATH)\n"
        "out([f.height, f.baseline, f.cap_top, f.width('Hamburg'), f.width('ÄÖÜ äöü ß')])\n"
        .replace("ARG_PATH", repr(str(path)))
    )
    height, baseline, cap_top, wide, umlauts = result
    assert 0 < cap_top < baseline < height
    assert baseline - cap_top >= 11  # a 16 px em has caps of about 12 px
    assert wide > 50 and umlauts > 40
    committed = {p.stem for p in FONT_FILES}
    assert committed == {spec.name for spec in make_fonts.SPECS}


# -- controls that match the board; the closed screen asks nothing ---------------------------
def test_coreink_screens_show_which_control_picks_each_face() -> None:
    definition = json.loads((BOARDS / "m5stack-coreink.json").read_text())
    [result] = fw(
        "b = json.loads(ARG_BOARD)\n"
        "buf, s, requests = render.make(b, FONTS)\n"
        "out({'hints': [s.layout.hints(n) for n in (3, 4)], 'under': s.layout.button_xs(),\n"
        "     'edges': s.layout.edge_marks})\n".replace("ARG_BOARD", repr(json.dumps(definition)))
    )
    assert result["hints"][1] == [[["dial_down", "right"]], [["dial_press", "right"]],
                                  [["dial_up", "right"]], [["button", "top"]]]
    # Three faces: the middle one is the dial's press and its roll up.
    assert result["hints"][0][1] == [["dial_press", "right"], ["dial_up", "right"]]
    assert result["under"] == [], "no buttons are drawn under the CoreInk's panel"
    assert result["edges"] == [["right", 100], ["top", 100]]


def test_three_faces_on_four_buttons_are_balanced_over_all_of_them() -> None:
    views = show_all(board(250, 122, xs=BUTTON_BOARD_X))
    [three] = [v for v in views if v["kind"] == "idle" and v["count"] == 3]
    # The middle face stands between the two middle buttons, which both select it.
    assert [cx for cx, _ in three["centres"]] == [40, (95 + 160) // 2, 210]


@pytest.mark.parametrize("touch", [False, True], ids=["buttons", "touch"])
def test_the_closed_screen_has_no_faces_and_no_targets(touch: bool) -> None:
    [result] = fw(
        "b = json.loads(ARG_BOARD)\n"
        "buf, s, requests = render.make(b, FONTS)\n"
        "s.show('closed', 'We are closed', ['1', '2', '3', '4'], '')\n"
        "out([len(s.boxes), s.face_size, s.target_at(125, 100)])\n"
        .replace("ARG_BOARD", repr(json.dumps(board(250, 122, touch=touch))))
    )
    assert result == [0, 0, -1]
