# The heap harness's entry on the unix port (tools/bench_heap.py): boots the app the way
# an ESP32 does and plays customers against it.
#   micropython -X heapsize=N esp32_boot.py --board BOARD.json --state DIR
# DIR/plan.json: {"image": LittleFS image file, "sessions": N, "ntp_port": port or null,
#                 "config_version": version a host upload must leave, or null,
#                 "timeout_s": real seconds to wait for the host after the sessions,
#                 "inspect": also record the live heap and the largest buffers}
# Steps: stand-in machine/network/esp32 and the virtual `time`; the image mounted at "/"
# in place of the host's filesystem (DIR stays reachable at /host for the result only);
# sys.path as on an ESP32; then `import main`, exactly the device's main.py (from the
# image, or frozen), which runs kiosk.boot -> Esp32Hal -> kiosk.app.run. The only hook:
# kiosk.app.run is wrapped so that the customer task runs beside the app (app.run's own
# `until` and `on_ready`) and, with WiFi, NTP asks a server on 127.0.0.1.
# Heap the harness holds before the app is imported is written as "harness_bytes": a
# device has none of it. The result goes to DIR/result.json.
import gc
import json
import sys

import vfs


def _args(argv):
    opts = {}
    for i in range(1, len(argv) - 1, 2):
        opts[argv[i]] = argv[i + 1]
    return opts


opts = _args(sys.argv)
state = opts["--state"]
with open(state + "/plan.json") as f:
    plan = json.loads(f.read())
with open(opts["--board"]) as f:
    board = json.loads(f.read())

# Frozen into the 32-bit builds (found first); elsewhere they come from this script's folder.
sys.path.insert(0, ".frozen")
import esp32_standins  # noqa: E402
import esp32_time  # noqa: E402

esp32_standins.install(board)
esp32_standins.set_ticks(esp32_time.ticks_ms)
sys.modules["time"] = esp32_time
import asyncio  # noqa: E402  (frozen on the ESP32 too)

clock = esp32_time.clock
clock.install(asyncio.core)

image = open(plan["image"], "r+b")
flash = esp32_standins.FileFlash(image,
                                 board["vfs"]["size"] // esp32_standins.FLASH_BLOCK)
host = vfs.VfsPosix(state)
vfs.umount("/")
vfs.mount(host, "/host")
sys.path[:] = ["", ".frozen", "/lib"]  # the ESP32's (ports/esp32/mpconfigport.h)
# A firmware with ROMFS (MICROPY_VFS_ROM) mounts its romfs partition at /rom as it starts
# and then appends these two (extmod/vfs.c mp_vfs_mount_romfs_protected); the 32-bit
# build of tools/mp32-romfs.patch mounts the image it is given the same way.
if any(point == "/rom" for _, point in vfs.mount()):
    sys.path += ["/rom", "/rom/lib"]
result = {"sessions": 0}


def _write_result():
    gc.collect()
    # Streamed: no one large string at the end of a run that may be short of memory (a
    # file cut short by a MemoryError is read as no result).
    with open("/host/result.json", "w") as out:
        json.dump(result, out)


async def _read(kiosk):
    # A customer: waits until the screen is on the glass, then reads it.
    flow = kiosk.flow
    reading = max(flow.config["input_guard_ms"], flow.config["min_read_ms"])
    while True:
        seen = flow.seen_since()
        if seen is not None and esp32_time.ticks_diff(kiosk.clock.ticks_ms(), seen) >= reading:
            return
        await asyncio.sleep_ms(kiosk.poll_ms)


async def _tap(kiosk, index):
    # Like a finger: hold until the click registers, let go until the release does, then
    # look whether the press counted (it was early if the screen changed under it).
    button = kiosk.buttons[index]
    pin = button["pin"]
    low = button.get("active", "low") == "low"
    debouncer = kiosk.debouncer
    for _ in range(3):
        await _read(kiosk)
        early = kiosk.flow.early_presses
        before = debouncer.presses
        esp32_standins.press(pin, low)
        while debouncer.presses == before:
            await asyncio.sleep_ms(kiosk.poll_ms)
        esp32_standins.release(pin, low)
        while debouncer.held() & (1 << index):
            await asyncio.sleep_ms(kiosk.poll_ms)
        await asyncio.sleep_ms(kiosk.poll_ms)
        if kiosk.flow.early_presses == early:
            return
    raise RuntimeError("three presses in a row were early")


def _settled(kiosk):
    log = kiosk.log
    if log.acked_upto < log.next_seq - 1:
        return False
    wanted = plan.get("config_version")
    return wanted is None or kiosk.config["version"] == wanted


async def _customers(holder):
    while not holder:
        await asyncio.sleep_ms(1)
    kiosk = holder[0]
    faces = {}
    answers = {}
    for index, button in enumerate(board["buttons"]):
        if button.get("face"):
            faces[button["face"]] = index
        if button.get("answer"):
            answers[button["answer"]] = index
    for i in range(plan["sessions"]):
        await _tap(kiosk, faces[1 + i % 4])
        await _tap(kiosk, answers["yes" if i % 3 else "no"])
        result["sessions"] = i + 1
        # The thank-you screen, back to the question; now and then a quiet spell in
        # which the push interval passes.
        await asyncio.sleep_ms(40000 if i % 20 == 19 else 4000)
    # Everything stored must reach a host (sync or push) before the run counts.
    clock.realtime = True
    waited = 0
    while not _settled(kiosk) and waited < plan.get("timeout_s", 120) * 1000:
        await asyncio.sleep_ms(200)
        waited += 200


class _Done(BaseException):
    """The customers are served and the host has everything: the run is over. Not an
    Exception, so kiosk.boot's failure handling lets it through."""


def _hook_app():
    from kiosk import app

    result["app_file"] = app.__file__  # where the app was imported from
    real_run = app.run

    def run(hal, until=None, on_ready=None):
        ntp_port = plan.get("ntp_port")
        if ntp_port:
            hal.ntp_host = "127.0.0.1"
            hal.ntp_port = ntp_port
        holder = []

        def ready(kiosk):
            holder.append(kiosk)
            if plan.get("inspect"):
                gc.collect()
                result["alloc_at_start"] = gc.mem_alloc()
            if kiosk.sync is not None:
                clock.peer_activity = lambda: kiosk.sync.lines
            if on_ready is not None:
                on_ready(kiosk)

        kiosk = real_run(hal, _customers(holder), on_ready=ready)
        result["status"] = kiosk.status()
        if plan.get("inspect"):
            gc.collect()
            result["alloc_at_end"] = gc.mem_alloc()
            result["buffers"] = _buffers(kiosk)
        raise _Done()

    app.run = run


def _buffers(root, smallest=256):
    """(path, bytes) of the buffers reachable from the kiosk through instance attributes,
    lists, tuples and dicts, largest first (each object once): what stays on the heap."""
    found = []
    seen = set()
    todo = [("kiosk", root, 0)]
    while todo and len(seen) < 4000:
        path, obj, depth = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (bytearray, bytes, str, memoryview)) or type(obj).__name__ == "array":
            size = len(obj) * (obj.itemsize if hasattr(obj, "itemsize") else 1)
            if size >= smallest and not isinstance(obj, memoryview):
                found.append((path, size))
            continue
        if depth >= 6:
            continue
        if isinstance(obj, dict):
            for key, value in obj.items():
                todo.append(("%s[%r]" % (path, key), value, depth + 1))
        elif isinstance(obj, (list, tuple)):
            for i, value in enumerate(obj):
                todo.append(("%s[%d]" % (path, i), value, depth + 1))
        elif hasattr(obj, "__dict__"):
            for key, value in obj.__dict__.items():
                todo.append(("%s.%s" % (path, key), value, depth + 1))
    found.sort(key=lambda item: -item[1])
    return found[:25]


def _last_failure():
    # kiosk.boot keeps what the app did not survive in /last_failure before it restarts.
    try:
        with open("/last_failure") as f:
            return f.read()
    except OSError:
        return None


# The port's frozen flashbdev (ports/esp32/modules/flashbdev.py) names the vfs partition;
# its _boot.py mounts it with the defaults, and kiosk/boot.py mounts it again.
esp32_standins.bdev = flash
sys.modules["flashbdev"] = esp32_standins
gc.collect()
result["harness_bytes"] = gc.mem_alloc()
vfs.mount(vfs.VfsLfs2(flash), "/")
import os  # noqa: E402

os.chdir("/")
try:
    _hook_app()
    import main  # noqa: E402, F401
    result["error"] = "main.py returned"
except _Done:
    result["heap_free"] = gc.mem_free()
except BaseException as error:  # noqa: B036  (MemoryError included: reported, then raised)
    result.pop("status", None)
    result["error"] = "%s: %s" % (type(error).__name__, error)
    result["last_failure"] = _last_failure()
    _write_result()
    raise
result["skipped_ms"] = clock.skipped_ms
_write_result()
