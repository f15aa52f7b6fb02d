"""Debouncing and the allocation-free input path, on the real MicroPython interpreter."""

from __future__ import annotations

import json

from conftest import BOARDS, mpy_json


def presses(masks: list[int], stable: int = 3) -> list[int]:
    out = mpy_json(f"""
from kiosk.buttons import Debouncer
from harness import emit
d = Debouncer({stable})
got = []
for m in {masks!r}:
    d.poll(m)
    i = d.pop()
    while i >= 0:
        got.append(i)
        i = d.pop()
emit(got)
""")
    return out[0]


def test_a_bouncing_press_counts_once() -> None:
    bouncy = [1, 0, 1, 0, 1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0]
    assert presses(bouncy) == [0]


def test_a_glitch_shorter_than_the_debounce_is_ignored() -> None:
    assert presses([0, 1, 1, 0, 0, 0, 0]) == []


def test_two_presses_and_a_second_button_while_the_first_is_held() -> None:
    masks = [1] * 4 + [0] * 4 + [1] * 4 + [0b101] * 4 + [0] * 4
    assert presses(masks) == [0, 0, 2]


def test_holding_a_button_does_not_repeat() -> None:
    assert presses([0b10] * 100) == [1]


def test_queue_keeps_the_oldest_taps_when_flooded() -> None:
    out = mpy_json("""
from kiosk.buttons import Debouncer
from harness import emit
d = Debouncer(1, queue_size=4)
for _ in range(10):
    d.poll(1); d.poll(1); d.poll(0); d.poll(0)
got = []
i = d.pop()
while i >= 0:
    got.append(i); i = d.pop()
emit({"got": got, "overflows": d.overflows})
""")[0]
    assert out == {"got": [0, 0, 0], "overflows": 7}


def test_input_hot_path_allocates_nothing(tmp_path) -> None:
    """Pin reading, debouncing and popping run under micropython.heap_lock(); and the
    same lock does catch an allocation, so this test can fail."""
    board = json.loads((BOARDS / "esp32-devkitc-ssd1680.json").read_text())
    out = mpy_json(f"""
import json, micropython
from kiosk.buttons import Debouncer
from kiosk.hal.sim import SimHal
from harness import emit
hal = SimHal(json.loads({json.dumps(json.dumps(board))}), {str(tmp_path)!r})
d = Debouncer(3)
read, poll, pop, press = hal.read_buttons, d.poll, d.pop, hal.set_pressed
counts = bytearray(4)
def cycle(n):
    for k in range(n):
        press(k & 3, (k >> 2) & 1 == 0)
        for _ in range(4):
            poll(read())
            i = pop()
            while i >= 0:
                counts[i] += 1
                i = pop()
cycle(8)   # warm up (first calls may intern or cache)
counts[:] = b"\\0\\0\\0\\0"
def locked(fn, arg):
    # Returns True if fn(arg) ran without allocating.
    micropython.heap_lock()
    try:
        fn(arg)
        ok = True
    except MemoryError:
        ok = False
    micropython.heap_unlock()
    return ok
clean = locked(cycle, 64)
caught = not locked(lambda n: [n, n], 1)
emit({{"clean": clean, "caught": caught, "counts": list(counts)}})
""")[0]
    assert out["caught"], "heap_lock did not catch an allocation: the proof would be void"
    assert out["clean"], "the input path allocated under heap_lock"
    assert sum(out["counts"]) == 8 * 4  # every press in the locked run was registered


def test_ticks_wrap_like_the_esp32() -> None:
    period = 1 << 30
    pairs = [(5, period - 5), (period - 5, 5), (0, period // 2 - 1), (period // 2 + 1, 0),
             (123, 123), (period - 1, 0)]
    out = mpy_json(f"""
from kiosk import ticks
from harness import emit
emit([[ticks.diff(a, b), ticks.add(a, b)] for a, b in {pairs!r}])
""")[0]
    for (a, b), (diff, add) in zip(pairs, out, strict=True):
        expected = (a - b) % period
        if expected >= period // 2:
            expected -= period
        assert diff == expected
        assert add == (a + b) % period
