# Tap-to-screen on the MicroPython unix port: the firmware's own cost from a debounced
# press to the start of the panel update, through the real flow, screens, refresh task and
# driver over the simulated controller. Run by tools/bench_screens.py:
#   micropython bench_screens_fw.py BOARD.json STATE_DIR ROUNDS
import asyncio
import gc
import json
import sys
import time

from kiosk import app
from kiosk.hal.sim import SimHal


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def used():
    gc.collect()
    return gc.mem_alloc()


async def measure(kiosk, rounds):
    driver = kiosk.display.driver
    marks = []
    writes = []
    real_update = driver.update
    kiosk.display.on_write = lambda full: writes.append(time.ticks_us())

    async def update(full):
        marks.append(time.ticks_us())  # the panel update starts: BUSY is about to rise
        await real_update(full)

    driver.update = update
    task = asyncio.create_task(kiosk.display.run())
    face = _button(kiosk, "face", 3)
    yes = _button(kiosk, "answer", "yes")
    to_follow_up = []
    to_thanks = []
    drawn = []  # tap to the start of write(): flow, drawing and the task switch
    while kiosk.display.busy():
        await asyncio.sleep_ms(1)
    for _ in range(rounds):
        for samples, act in ((to_follow_up, lambda: kiosk.press(face) if face >= 0
                              else kiosk.tap(_centre(kiosk, 2))),
                             (to_thanks, lambda: kiosk.press(yes) if yes >= 0
                              else kiosk.tap(_centre(kiosk, 1)))):
            before = len(marks)
            start = time.ticks_us()
            act()
            while len(marks) == before:
                await asyncio.sleep_ms(0)
            samples.append(time.ticks_diff(marks[-1], start))
            drawn.append(time.ticks_diff(writes[-1], start))
            while kiosk.display.busy():
                await asyncio.sleep_ms(1)
        kiosk.flow.state = 0  # back to idle without waiting out the thank-you screen
        kiosk.flow.show_idle()
        while kiosk.display.busy():
            await asyncio.sleep_ms(1)
    task.cancel()
    return to_follow_up, to_thanks, drawn


def _button(kiosk, key, value):
    # Index of the board button with that role, or -1 (touch boards: the faces are touched)
    for i, button in enumerate(kiosk.buttons):
        if button.get(key) == value:
            return i
    return -1


def _centre(kiosk, option):
    x, y = kiosk.screens.boxes[option].centre()
    return (x << 16) | y


def main(board_path, state_dir, rounds):
    with open(board_path) as f:
        board = json.loads(f.read())
    hal = SimHal(board, state_dir, refresh_scale=0.002)  # panel time is not measured
    before = used()
    kiosk = app.Kiosk(hal)
    ui_bytes = used() - before
    kiosk.start()
    a, b, drawn = asyncio.run(measure(kiosk, rounds))
    panel = hal.panel
    print("@" + json.dumps({
        "board": board["name"],
        "tap_to_update_us": {"face": median(a), "answer": median(b)},
        "max_us": {"face": max(a), "answer": max(b)},
        "tap_to_write_us": median(drawn),
        "framebuffer_bytes": len(panel.buffer),
        "font_index_bytes": kiosk.screens.font_ram_bytes(),
        "kiosk_heap_bytes": ui_bytes,
        "partial_refresh_ms": board["display"].get("partial_refresh_ms"),
        "full_refresh_ms": board["display"].get("full_refresh_ms"),
    }))
    kiosk.close()
    hal.unmount()


main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
