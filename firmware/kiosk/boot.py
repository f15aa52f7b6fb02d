# Starts the kiosk on a real ESP32 (called from main.py). The board definition is the
# file /board.json that the technician's flashing tool copies from boards/.
import json
import sys

from kiosk import app
from kiosk.screen import TextScreen

BOARD_FILE = "/board.json"


def run():
    from kiosk.hal.esp32 import Esp32Hal

    try:
        with open(BOARD_FILE) as f:
            board = json.loads(f.read())
    except (OSError, ValueError) as e:
        # Without pins there is nothing safe to drive: stay at the REPL and say why.
        sys.stdout.write("deskpulse: cannot read %s (%s); staying at the REPL\n" % (BOARD_FILE, e))
        return
    # The app draws on the board's panel; a board without one shows views on the console.
    hal = Esp32Hal(board)
    if hal.panel is None:
        hal.screen = TextScreen(hal.console_write)
    app.run(hal)
