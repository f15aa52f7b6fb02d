# Starts the kiosk on a real ESP32 (called from main.py). The board definition is the
# file /board.json that the technician's flashing tool copies from boards/.
#
# Nothing may leave a kiosk that looks alive but is dead at the REPL (issue 14):
#   - the reset marker comes first of all (a crash in the imports or while the hardware
#     layer is built is then told apart as one, docs/reliability.md), then the power
#     hold, before the app's imports (a battery board switches off otherwise), right
#     after the flash is mounted as the log needs it (early.py);
#   - any failure to start or run (a MemoryError while importing, a bad board file, a
#     driver's constructor, the app's crash) is printed, kept in /last_failure, drawn on
#     the panel when there is one, and the board restarts after a backoff (10 s, doubling
#     to 10 min) counted in /failures, which a start that works clears; the app's own
#     crash streak (safe mode) is kept by the app;
#   - a technician's stop (Ctrl-C, mpremote, or the serial command that stops the app for
#     maintenance) is not a crash: the REPL is free for a while with the watchdog fed,
#     then the board restarts into the app.
import json
import sys
import time

from micropython import const

BOARD_FILE = "/board.json"
FAILURES_FILE = "/failures"
LAST_FAILURE_FILE = "/last_failure"  # kiosk/app.py LAST_FAILURE_NAME, shown in its status
_BACKOFF_FIRST_S = const(10)
_BACKOFF_MOST_S = const(600)
MAINTENANCE_S = const(600)  # a Ctrl-C's maintenance time; the serial command sets its own

_power = None  # the power-hold Pin, kept for as long as the board runs


def run():
    global _power
    hal = None
    try:
        from kiosk.hal import early

        early.arm_marker()
        early.remount_root_lean()  # before any file is opened
        board = _read_board()
        _power = early.hold_power(board)
        from kiosk import app
        from kiosk.hal.esp32 import Esp32Hal

        hal = Esp32Hal(board)
        if hal.panel is None:
            from kiosk.screen import TextScreen

            hal.screen = TextScreen(hal.console_write)
        kiosk = app.run(hal, on_ready=_started)
        if kiosk.maintenance_s:
            _maintenance(hal, kiosk.maintenance_s)
            return
        raise RuntimeError("the app stopped")
    except KeyboardInterrupt:
        _maintenance(hal, MAINTENANCE_S)
    except Exception as error:  # everything the app did not survive
        _failed(hal, error)


def _read_board():
    try:
        with open(BOARD_FILE) as f:
            return json.loads(f.read())
    except (OSError, ValueError) as error:
        raise ValueError("cannot read %s (%s)" % (BOARD_FILE, error))


def _started(kiosk):
    _write(FAILURES_FILE, "0")


def _failures():
    try:
        with open(FAILURES_FILE) as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def _write(path, text):
    # Written whole and renamed over the old one: a power cut leaves one or the other.
    try:
        with open(path + ".new", "w") as f:
            f.write(text)
        import os

        os.rename(path + ".new", path)
    except OSError:
        pass  # a full or failing flash: the console has said it all already


def backoff_s(failures):
    """The wait before restart number `failures` (1 = the first failure in a row)."""
    return min(_BACKOFF_FIRST_S << min(failures - 1, 10), _BACKOFF_MOST_S)


def _failed(hal, error):
    failures = _failures() + 1
    _write(FAILURES_FILE, str(failures))
    what = "%s: %s" % (type(error).__name__, error)
    _write(LAST_FAILURE_FILE, what)
    wait = backoff_s(failures)
    sys.stdout.write("deskpulse: the kiosk failed (%s); restart %d in a row, in %d s\n"
                     % (what, failures, wait))
    sys.print_exception(error)
    if hal is not None and hal.panel is not None:
        from kiosk import fatal

        fatal.show(hal.panel, "Out of order", "%s\nrestarting in %d s" % (what, wait))
    try:
        for _ in range(wait):
            if hal is not None:
                hal.feed_watchdog()  # the app may have started it; it cannot be stopped
            time.sleep(1)
    except KeyboardInterrupt:
        _maintenance(hal, MAINTENANCE_S)
        return
    from kiosk.hal import early

    early.restart()


def _maintenance(hal, seconds):
    sys.stdout.write("deskpulse: stopped for maintenance: the REPL is free for %d s, then "
                     "the kiosk restarts (machine.reset() restarts it sooner)\n" % seconds)
    if hal is None:
        from kiosk.hal import early

        early.restart_later(seconds)
        return
    hal.stop_for_maintenance(seconds)
    if hal.panel is not None:
        from kiosk import fatal

        fatal.show(hal.panel, "Maintenance", "a technician is at work\nback in %d min"
                   % ((seconds + 59) // 60))
