# An ESP32 booting from its filesystem, with the REPL after main.py, on the unix port
# (tests/device/test_deploy.py):
#   micropython -i esp32_repl_boot.py --board STANDIN_BOARD.json --state DIR
# DIR/flash.img is the vfs partition (a LittleFS image), mounted at "/" as the device's
# filesystem; then `import main`, exactly the device's main.py from that image, which
# runs kiosk.boot -> Esp32Hal -> kiosk.app.run with no hook into the app. When the app
# stops for maintenance (MAINT) main.py returns and, with -i, the unix port's REPL takes
# the console as an ESP32's REPL does, for mpremote. A failure that main.py does not
# survive (no app to import) is printed and leaves that REPL too, as on a device.
# machine.reset() (the stand-in raises SystemExit) ends the process; the test starts the
# next boot on the same image, as the board restarts. The maintenance timer is recorded,
# not run: a deploy resets the board itself.
# Unlike esp32_boot.py (the heap bench) no customers play, and the clock runs at the
# host's pace once the app runs (the asyncio loop sleeps instead of spinning); blocking
# sleeps still pass at once (a failure's backoff), and the stand-in board's panel
# refreshes take a few ms (the panel model reads their length from --board).
import json
import sys

import vfs


def _args(argv):
    opts = {}
    for i in range(1, len(argv) - 1, 2):
        opts[argv[i]] = argv[i + 1]
    return opts


class Timer:
    """machine.Timer: kiosk/hal/early.py's maintenance timer is only recorded."""

    PERIODIC = 1
    ONE_SHOT = 0
    made = []

    def __init__(self, id):
        self.callback = None
        Timer.made.append(self)

    def init(self, mode=PERIODIC, period=1000, callback=None):
        self.callback = callback
        sys.stdout.write("esp32_repl_boot: maintenance timer armed\n")

    def deinit(self):
        self.callback = None


opts = _args(sys.argv)
state = opts["--state"]
with open(opts["--board"]) as f:
    board = json.loads(f.read())

sys.path.insert(0, ".frozen")
import esp32_standins  # noqa: E402
import esp32_time  # noqa: E402

esp32_standins.install(board)
esp32_standins.Timer = Timer
esp32_standins.set_ticks(esp32_time.ticks_ms)
sys.modules["time"] = esp32_time
import asyncio  # noqa: E402

esp32_time.clock.install(asyncio.core)
esp32_time.clock.realtime = True

image = open(state + "/flash.img", "r+b")
flash = esp32_standins.FileFlash(image,
                                 board["vfs"]["size"] // esp32_standins.FLASH_BLOCK)
esp32_standins.bdev = flash
sys.modules["flashbdev"] = esp32_standins
vfs.umount("/")
vfs.mount(vfs.VfsLfs2(flash), "/")
import os  # noqa: E402

os.chdir("/")
sys.path[:] = ["", ".frozen", "/lib"]  # the ESP32's (ports/esp32/mpconfigport.h)
try:
    import main  # noqa: E402, F401
except Exception as error:  # what an ESP32 prints before its REPL
    sys.print_exception(error)
