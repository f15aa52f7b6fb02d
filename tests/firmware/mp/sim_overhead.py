# How much of the unix port's heap the simulated hardware itself takes (module code and
# objects that stand in for chips: flash, panel controller RAM, touch chip). None of it
# exists on an ESP32, so the memory test adds it on top of the ESP32-sized heap it grants
# the firmware. Call measure() in a fresh process, before anything else is imported.
import gc
import json


def used():
    gc.collect()
    return gc.mem_alloc()


def measure(board_path, state_dir):
    start = used()
    from kiosk.hal import sim, simflash, simpanel, simscript  # noqa: F401

    with open(board_path) as f:
        board = json.loads(f.read())
    part = board["vfs"]
    image = simflash.FileImage(state_dir + "/probe.img", part["size"])
    parts = [simflash.SimFlash(image, part["size"] // 4096)]
    display = board.get("display")
    if display:
        parts.append(simpanel.make_panel(display["controller"], display["width"],
                                         display["height"], lambda: 0))
    if board.get("touch"):
        touch = board["touch"]
        parts.append(simpanel.SimTouch(touch["controller"], touch["address"]))
    return used() - start
