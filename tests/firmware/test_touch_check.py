"""The service screen's touch check (kiosk/ui/touchcheck.py) on the real MicroPython
interpreter, fed by the Goodix model of test_touch_goodix.py through the real driver and
the touch HAT's board file: a tap on each face is marked where it landed and named."""

from __future__ import annotations

import json
from typing import Any

from test_touch_goodix import FONTS_DIR, GOODIX_MODEL, TOUCH_BOARD

from conftest import mpy_json

CHECK = """
import framebuf
from kiosk.drivers.gt911 import Gt1151
from kiosk.hal.simpanel import to_native
from kiosk.touch import TouchTaps
from kiosk.ui.screens import Screens
from kiosk.ui.touchcheck import TouchCheck

board = json.loads(BOARD)
display, wiring = board["display"], board["touch"]
W, H, ROT = display["width"], display["height"], display["rotation"]
LW, LH = (H, W) if ROT in (90, 270) else (W, H)
clock = FakeClock()
wires = Wires(clock)
wires.idle[wiring["int"]] = 1
chip = goodix_board(wires, rst=wiring["rst"], int_pin=wiring["int"],
                    sensor=waveshare_hat(W, H))
axes = {k: True for k in ("mirror_x", "mirror_y", "swap_xy") if wiring.get(k)}
touch = Gt1151(I2C(0), wiring["address"], W, H, rotation=ROT,
               int_pin=Pin(wiring["int"], Pin.IN), rst_pin=Pin(wiring["rst"], Pin.OUT, value=1),
               sleep_ms=clock.sleep, **axes)
touch.start()
buf = bytearray(((LW + 7) // 8) * LH)
fb = framebuf.FrameBuffer(buf, LW, LH, framebuf.MONO_HLSB)
requests = []
screens = Screens(fb, LW, LH, 0, 1, board, FONTS, lambda: requests.append(1))
check = TouchCheck(screens, touch)
taps = TouchTaps(touch.read_xy, 2, 3)

def ink(x, y):
    return 0 <= x < LW and 0 <= y < LH and fb.pixel(x, y) == 0

check.open()
emit(["open", check.note(), len(screens.boxes), len(requests)])
for box in list(screens.boxes):
    x, y = box.centre()
    chip.touch(*to_native(x, y, W, H, ROT))
    for _ in range(3):
        taps.poll()
    chip.release()
    for _ in range(4):
        taps.poll()
    point = taps.pop()
    hit = check.tap(point)
    px, py = point >> 16, point & 0xFFFF
    marked = screens.boxes[hit] if hit >= 0 else None
    emit(["tap", [x, y], [px, py], hit, check.note(),
          # the cross-hair's centre and arm ends are ink; beside the arms is paper
          [ink(px, py), ink(px - 9, py), ink(px + 9, py), ink(px, py - 9), ink(px, py + 9)],
          [ink(px - 11, py - 1), ink(px + 1, py + 1)],
          # the chosen target is outlined: its top-left corner is ink
          None if marked is None else ink(marked.x0, marked.y0)])
check.tap((3 << 16) | 2)   # the title's corner: no target
emit(["miss", check.hit, check.note()])
"""


def run_check(board: dict[str, Any]) -> list[Any]:
    return mpy_json(GOODIX_MODEL + f"FONTS = {str(FONTS_DIR)!r}\n"
                    f"BOARD = {json.dumps(board)!r}\n" + CHECK)


def board_file() -> dict[str, Any]:
    return json.loads(TOUCH_BOARD.read_text(encoding="utf-8"))


def test_touch_check_marks_each_tap_and_names_the_face() -> None:
    rows = run_check(board_file())
    opened = rows[0]
    assert opened[0] == "open"
    assert opened[1] == "no tap yet\nGT1158 at 0x14"
    assert opened[2] == 5 and opened[3] == 1
    tapped = [row for row in rows if row[0] == "tap"]
    assert len(tapped) == 5
    for face, (_, centre, point, hit, note, cross, beside, outlined) in enumerate(tapped):
        assert hit == face
        assert point == centre  # the HAT's flags bring the point back under the finger
        assert note == f"tap {face + 1} at {point[0]},{point[1]}: face {face + 1}\nGT1158 at 0x14"
        assert cross == [True, True, True, True, True]
        assert beside == [False, False]
        assert outlined is True
    assert rows[-1] == ["miss", -1, "tap 6 at 3,2: no target\nGT1158 at 0x14"]


def test_touch_check_shows_a_mirrored_sensor_at_the_first_tap() -> None:
    board = board_file()
    board["touch"].pop("mirror_x")
    board["touch"].pop("mirror_y")
    tapped = [row for row in run_check(board) if row[0] == "tap"]
    _, centre, point, hit, note, *_ = tapped[0]
    assert point != centre and hit != 0  # the mark is elsewhere, the note says so
    assert f"at {point[0]},{point[1]}:" in note and "face 1\n" not in note


def test_touch_check_says_when_no_controller_answers() -> None:
    rows = mpy_json(GOODIX_MODEL + f"FONTS = {str(FONTS_DIR)!r}\n" + """
import framebuf
from kiosk.drivers.gt911 import Gt1151
from kiosk.ui.screens import Screens
from kiosk.ui.touchcheck import TouchCheck
clock = FakeClock()
goodix_board(Wires(clock))
I2C.devices[:] = []
touch = Gt1151(I2C(0), 0x14, 122, 250, rotation=90, sleep_ms=clock.sleep)
touch.start()
fb = framebuf.FrameBuffer(bytearray(32 * 122), 250, 122, framebuf.MONO_HLSB)
board = {"buttons": [], "display": {"width": 122, "height": 250, "rotation": 90},
         "touch": {"controller": "gt1151"}}
check = TouchCheck(Screens(fb, 250, 122, 0, 1, board, FONTS, lambda: None), touch)
check.open()
emit(check.note())
""")
    assert rows == ["no tap yet\nno touch controller answers at 0x14 or 0x5d"]
