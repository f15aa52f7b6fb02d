"""The touch controller from power-up to the face a customer taps, on the real MicroPython
interpreter: a model of a Goodix GT1151/GT911 on simulated wires takes its I2C address
from INT as RST rises and reports touches in its own sensor axes (on Waveshare's 2.13"
Touch e-Paper HAT both run against the panel's RAM, as the vendor's demos show: they draw
each touch point through a both-axes mirror). The driver's start-up must pick and find the
address; the board file's axis flags must bring each tap to the face under the finger."""

from __future__ import annotations

import json
from typing import Any

from conftest import BOARDS, mpy_json

TOUCH_BOARD = BOARDS / "esp32-touch-epd213.json"
FONTS_DIR = BOARDS.parent / "firmware" / "kiosk" / "ui" / "fonts"

# MicroPython: stand-ins for machine.Pin / I2C / SPI on shared wires, and the chip.
GOODIX_MODEL = r'''
import sys, json, time
from harness import emit

ADDRESS_INT_HIGH = 0x14
ADDRESS_INT_LOW = 0x5D
RESET_MIN_MS = 1   # the guide: RST low > 100 us (1 ms is this clock's smallest step)
SETUP_MIN_MS = 1   # INT settled > 100 us before RST rises
HOLD_MIN_MS = 5    # INT held > 5 ms after RST rises; the chip answers only after that
ENODEV = 19


class FakeClock:
    """Milliseconds that move only when the driver sleeps."""
    def __init__(self):
        self.now = 0
    def __call__(self):
        return self.now
    def sleep(self, ms):
        self.now += ms


class Wires:
    """The lines between the ESP32 and the module: who drives each, at which level."""
    def __init__(self, clock):
        self.clock = clock
        self.driven = {}        # pin -> the ESP32 drives it
        self.level = {}         # pin -> the level the ESP32 drives (or would drive)
        self.idle = {}          # pin -> the level of an undriven line (a pull resistor)
        self.input_only = set() # GPIOs 34-39 on an ESP32
        self.watchers = {}
        self.log = []           # [what, level, ms] as the module saw it

    def line(self, pin):
        if self.driven.get(pin):
            return self.level.get(pin, 0)
        return self.idle.get(pin, 0)

    def set(self, pin, driven, level):
        before = (self.driven.get(pin, False), self.line(pin))
        self.driven[pin] = driven
        self.level[pin] = level
        after = (driven, self.line(pin))
        if after != before:
            self.log.append([pin, "out" if driven else "in", after[1], self.clock()])
            watcher = self.watchers.get(pin)
            if watcher is not None:
                watcher(after[1])


class Pin:
    """machine.Pin as the ESP32 port has it: init(mode, pull, value=...) sets the level
    before the direction, and refuses an output on an input-only GPIO."""
    IN = 1
    OUT = 3
    PULL_UP = 2
    PULL_DOWN = 1
    wires = None

    def __init__(self, number, mode=-1, pull=-1, value=None):
        self.number = number
        if mode != -1 or value is not None:
            self.init(mode, pull, value=value)

    def init(self, mode=-1, pull=-1, value=None):
        wires = Pin.wires
        if mode == Pin.OUT and self.number in wires.input_only:
            raise ValueError("pin can only be input")
        driven = wires.driven.get(self.number, False) if mode == -1 else mode == Pin.OUT
        level = wires.level.get(self.number, 0) if value is None else value
        wires.set(self.number, driven, level)

    def value(self, level=None):
        wires = Pin.wires
        if level is None:
            return wires.line(self.number)
        wires.set(self.number, wires.driven.get(self.number, False), level)


class I2C:
    devices = []
    def __init__(self, id=0, scl=None, sda=None, freq=400000):
        self.attempts = 0
    def _device(self, address, addrsize):
        self.attempts += 1
        for device in I2C.devices:
            if device.answers(address, addrsize):
                return device
        raise OSError(ENODEV)
    def readfrom_mem_into(self, address, memaddr, buf, addrsize=8):
        self._device(address, addrsize).read(memaddr, buf)
    def writeto_mem(self, address, memaddr, buf, addrsize=8):
        self._device(address, addrsize).write(memaddr, buf)


class SPI:
    def __init__(self, *args, **kwargs):
        pass
    def write(self, data):
        pass


class machine:
    Pin = Pin
    I2C = I2C
    SPI = SPI


def waveshare_hat(width, height):
    """The HAT's sensor axes against the panel's RAM: both reversed."""
    return lambda px, py: (width - 1 - px, height - 1 - py)


def same_axes(px, py):
    return px, py


class Goodix:
    """A GT1151 (or GT911) on the wires: latches 0x14 or 0x5D from INT when RST rises,
    answers only then, and reports the point under a finger in its sensor's axes."""
    PRODUCT = {"gt1151": b"1158", "gt911": b"911\x00"}
    BASE = 0x8140
    STATUS = 0x814E

    def __init__(self, wires, rst, int_pin, chip="gt1151", sensor=same_axes,
                 powered_at=None):
        self.wires = wires
        self.clock = wires.clock
        self.rst = rst
        self.int_pin = int_pin
        self.sensor = sensor
        self.address = powered_at  # the address picked at power-on (None: not known)
        self.in_reset = False
        self.low_at = self.rose_at = self.int_at = None
        self.resets = 0
        self.violations = []
        self.regs = bytearray(0x40)
        self.regs[0:4] = Goodix.PRODUCT[chip]
        self.touching = False
        self.x = self.y = 0
        if rst is not None:
            wires.watchers[rst] = self._rst_changed
        if int_pin is not None:
            wires.watchers[int_pin] = self._int_changed

    def _since(self, at):
        return time.ticks_diff(self.clock(), at)

    def _rst_changed(self, level):
        if level == 0:
            self.in_reset = True
            self.address = None
            self.low_at = self.clock()
            return
        if not self.in_reset:
            return
        self.in_reset = False
        self.resets += 1
        if self._since(self.low_at) < RESET_MIN_MS:
            self.violations.append("RST low under 100 us")
        if self.int_at is not None and self._since(self.int_at) < SETUP_MIN_MS:
            self.violations.append("INT changed under 100 us before RST rose")
        self.address = ADDRESS_INT_HIGH if self.wires.line(self.int_pin) else ADDRESS_INT_LOW
        self.rose_at = self.clock()

    def _int_changed(self, level):
        self.int_at = self.clock()
        if self.in_reset or self.rose_at is None:
            return
        held = self._since(self.rose_at)
        if held < HOLD_MIN_MS:
            self.violations.append("INT changed %d ms after RST rose" % held)

    def answers(self, address, addrsize):
        if self.in_reset or address != self.address:
            return False
        if self.rose_at is not None and self._since(self.rose_at) < HOLD_MIN_MS:
            return False
        if addrsize != 16:
            self.violations.append("8-bit register address")
            return False
        return True

    def read(self, memaddr, buf):
        offset = memaddr - Goodix.BASE
        for i in range(len(buf)):
            buf[i] = self.regs[offset + i]

    def write(self, memaddr, buf):
        offset = memaddr - Goodix.BASE
        for i in range(len(buf)):
            self.regs[offset + i] = buf[i]
        if memaddr == Goodix.STATUS and buf[0] == 0 and self.touching:
            self._report()  # a held finger: the next scan reports again

    def touch(self, px, py):
        """A finger on the panel at native (RAM) coordinates (px, py)."""
        self.touching = True
        self.x, self.y = self.sensor(px, py)
        self._report()

    def release(self):
        self.touching = False
        self._report()

    def _report(self):
        r = self.regs
        s = Goodix.STATUS - Goodix.BASE
        if self.touching:
            r[s:s + 8] = bytes((0x81, 0, self.x & 0xFF, self.x >> 8, self.y & 0xFF,
                                self.y >> 8, 24, 0))
        else:
            r[s] = 0x80


def goodix_board(wires, rst=26, int_pin=27, **chip_options):
    Pin.wires = wires
    I2C.devices[:] = []
    chip = Goodix(wires, rst, int_pin, **chip_options)
    I2C.devices.append(chip)
    return chip
'''


def model_run(body: str) -> list[Any]:
    return mpy_json(GOODIX_MODEL + body)


# -- start-up: reset, address select, probe ---------------------------------------------------
START = """
from kiosk.drivers.gt911 import Gt1151

def started(wanted, input_only=(), idle=1, rst=26, int_pin=27, powered_at=None, chip=True):
    clock = FakeClock()
    wires = Wires(clock)
    wires.idle[27] = idle           # the module pulls INT up (or down)
    wires.idle[26] = 1
    wires.input_only.update(input_only)
    model = goodix_board(wires, powered_at=powered_at)
    if not chip:
        I2C.devices[:] = []
    bus = I2C(0)
    rst_pin = None if rst is None else Pin(rst, Pin.OUT, value=1)
    int_in = None if int_pin is None else Pin(int_pin, Pin.IN)
    wires.log[:] = []
    touch = Gt1151(bus, wanted, 122, 250, rotation=90, int_pin=int_in, rst_pin=rst_pin,
                   sleep_ms=clock.sleep)
    product = touch.start()
    emit({"product": product, "driver_address": touch.address, "chip_address": model.address,
          "selected": touch.address_selected, "error": touch.error,
          "violations": model.violations, "resets": model.resets,
          "int_driven_after": wires.driven.get(27, False), "log": wires.log,
          "status": touch.status()})
    return touch, model, bus
"""


def start(call: str) -> dict[str, Any]:
    rows = model_run(START + call)
    assert len(rows) == 1
    return rows[0]


def test_start_selects_0x14_with_int_high_as_reset_rises() -> None:
    got = start("started(0x14, idle=0)")  # a line pulled low would pick 0x5D by itself
    assert got["product"] == "1158"
    assert got["chip_address"] == 0x14 and got["driver_address"] == 0x14
    assert got["selected"] is True and got["error"] is None
    assert got["violations"] == [] and got["resets"] == 1
    # RST low, INT driven high, RST high, INT low (the synchronisation), INT released.
    assert [[pin, how, level] for pin, how, level, _ in got["log"]] == [
        [26, "out", 0], [27, "out", 1], [26, "out", 1], [27, "out", 0], [27, "in", 0]]
    assert got["int_driven_after"] is False  # floating input again, as Goodix asks


def test_start_selects_0x5d_with_int_low_as_reset_rises() -> None:
    got = start("started(0x5D, idle=1)")  # the drive wins over the HAT's pull-up
    assert got["chip_address"] == 0x5D and got["driver_address"] == 0x5D
    assert got["selected"] is True and got["violations"] == [] and got["error"] is None


def test_int_on_an_input_only_pin_falls_back_to_probing_both_addresses() -> None:
    # INT on GPIO 27 made input-only: the driver cannot drive it, the pull-up picks 0x14,
    # the configured 0x5D does not answer, 0x14 does.
    got = start("started(0x5D, input_only=[27], idle=1)")
    assert got["selected"] is False
    assert got["chip_address"] == 0x14 and got["driver_address"] == 0x14
    assert got["product"] == "1158" and got["error"] is None and got["violations"] == []


def test_without_a_reset_pin_the_power_on_address_is_found() -> None:
    got = start("started(0x14, rst=None, powered_at=0x5D)")
    assert got["resets"] == 0 and got["selected"] is False
    assert got["driver_address"] == 0x5D and got["product"] == "1158"


def test_no_controller_is_a_recorded_error_and_no_touches() -> None:
    out = model_run(START + """
touch, model, bus = started(0x14, chip=False)
attempts = bus.attempts
points = [touch.read_xy() for _ in range(5)]
emit([points, bus.attempts - attempts, touch.read()])
""")
    got, (points, traffic, read) = out[0], out[1]
    assert got["product"] is None
    assert "0x14" in got["error"] and "0x5d" in got["error"]
    assert got["status"]["error"] == got["error"]
    assert points == [-1] * 5 and read is None
    assert traffic == 0  # a missing controller is not polled at 50 Hz


def test_start_again_after_a_reset_finds_the_chip_again() -> None:
    out = model_run(START + """
touch, model, bus = started(0x14)
again = touch.start()
emit([again, touch.address, model.resets, model.violations])
""")
    assert out[1] == ["1158", 0x14, 2, []]


# -- orientation: the face under the finger ---------------------------------------------------
TAPS = """
from kiosk import screen
from kiosk.hal.simpanel import to_native
from kiosk.touch import TouchTaps
from kiosk.ui.screens import Screens

sys.modules["machine"] = machine
from kiosk.hal.esp32 import Esp32Hal

def chosen_options(board, views):
    display = board["display"]
    w, h, rotation = display["width"], display["height"], display.get("rotation", 0)
    wires = Wires(time.ticks_ms)
    wires.idle[27] = 1
    chip = goodix_board(wires, sensor=waveshare_hat(w, h))
    hal = Esp32Hal(board)
    touch = hal.touch
    touch.start()
    panel = hal.panel
    screens = Screens(panel.framebuf, panel.width, panel.height, panel.INK, panel.PAPER,
                      board, FONTS, lambda: None)
    taps = TouchTaps(touch.read_xy, 2, 3)
    found = []
    for kind, options in views:
        screens.show(kind, "How was your visit?", options)
        got = []
        for box in screens.boxes:
            x, y = box.centre()
            chip.touch(*to_native(x, y, w, h, rotation))  # the finger, on the glass
            for _ in range(3):
                taps.poll()
            chip.release()
            for _ in range(4):
                taps.poll()
            point = taps.pop()
            got.append(-1 if point < 0 else screens.target_at(point >> 16, point & 0xFFFF))
        found.append(got)
    emit([touch.address, touch.error, chip.violations, found])

views = [(screen.VIEW_IDLE, ["1", "2", "3", "4", "5"]),
         (screen.VIEW_IDLE, ["1", "2", "3"]),
         (screen.VIEW_FOLLOW_UP, ["No", "Yes"])]
"""


def tapped(board: dict[str, Any]) -> list[Any]:
    out = model_run(TAPS + f"FONTS = {str(FONTS_DIR)!r}\n"
                    f"chosen_options(json.loads({json.dumps(board)!r}), views)\n")
    assert len(out) == 1
    return out[0]


def touch_board() -> dict[str, Any]:
    return json.loads(TOUCH_BOARD.read_text(encoding="utf-8"))


def test_each_face_and_answer_of_the_touch_hat_is_chosen_where_it_is_tapped() -> None:
    address, error, violations, found = tapped(touch_board())
    assert address == 0x14 and error is None and violations == []
    # Option index under each tapped target: faces 1..5, faces 1..3, then no and yes.
    assert found == [[0, 1, 2, 3, 4], [0, 1, 2], [0, 1]]


def test_without_the_mirror_flags_no_tap_reaches_its_own_target() -> None:
    """What the board file's flags prevent, without any error to show for it: a tap on a
    face lands on the point turned half round, above the targets (lost) or on another."""
    board = touch_board()
    for key in ("mirror_x", "mirror_y", "swap_xy"):
        board["touch"].pop(key, None)
    _, error, _, found = tapped(board)
    assert error is None
    assert [len(got) for got in found] == [5, 3, 2]
    for got in found:
        assert all(option != index for index, option in enumerate(got)), found


def test_the_touch_hat_board_declares_the_vendor_orientation() -> None:
    touch = touch_board()["touch"]
    assert touch.get("mirror_x") is True and touch.get("mirror_y") is True
    assert not touch.get("swap_xy")
