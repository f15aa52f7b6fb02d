# The simulated hardware layer for the MicroPython unix port.
#
# Flash: a LittleFS image file in the state folder, mounted at /flash through SimFlash
# (NOR rules, op counters), with the geometry of the board's vfs partition, so a restart
# keeps the log like a real device. Buttons: electrical levels that the script player or a
# test sets; the active level is applied here, at the edge. Clock: ticks reduced to the
# ESP32's 2**30 period and started a minute before they wrap, so every simulated run
# crosses a wrap; jump() moves simulated time forward without sleeping.
import os
import sys
import time

import vfs
from kiosk import ticks
from kiosk.hal.simflash import FileImage, SimFlash
from kiosk.screen import TextScreen

MOUNT = "/flash"
_START_BEFORE_WRAP_MS = 60000


class SimHal:
    def __init__(self, board, state_dir, reset_cause="power_on", screen=None):
        self.board = board
        self.state_dir = state_dir
        self._reset_cause = reset_cause
        self.fs_root = MOUNT
        buttons = board["buttons"]
        self._active_low = [b.get("active", "low") == "low" for b in buttons]
        # Electrical levels, idle level to start with (released).
        self.levels = bytearray(1 if low else 0 for low in self._active_low)
        self._offset = ticks.diff(ticks.PERIOD - _START_BEFORE_WRAP_MS, self._raw_ticks())
        self.jumped_ms = 0
        self.flash = self._mount()
        self.screen = screen or TextScreen(self.console_write)
        self.watchdog_feeds = 0

    def _mount(self):
        part = self.board["vfs"]
        block_size = part.get("block_size", 4096)
        count = part["size"] // block_size
        path = self.state_dir + "/flash.img"
        try:
            os.stat(path)
            fresh = False
        except OSError:
            fresh = True
        flash = SimFlash(FileImage(path, part["size"]), count, block_size)
        # The stubs type block devices as a nominal class that does not exist at run time;
        # VfsLfs2 only needs the readblocks/writeblocks/ioctl protocol SimFlash has.
        if fresh:
            vfs.VfsLfs2.mkfs(flash)  # pyright: ignore[reportArgumentType]
        # A damaged image is reported, never silently reformatted: it holds responses.
        vfs.mount(vfs.VfsLfs2(flash), MOUNT)  # pyright: ignore[reportArgumentType]
        return flash

    def unmount(self):
        vfs.umount(MOUNT)

    @staticmethod
    def _raw_ticks():
        # ticks_diff(t, 0) turns the stubs' opaque tick type into an int (the unix port's
        # ticks are far below its 2**62 period).
        return time.ticks_diff(time.ticks_ms(), 0) & ticks.MASK

    def ticks_ms(self):
        return ticks.add(self._raw_ticks(), self._offset)

    def jump_ms(self, ms):
        """Move simulated time forward (script `wait`); the RTC, if any, moves too."""
        self._offset = ticks.add(self._offset, ms)
        self.jumped_ms += ms

    # -- buttons ---------------------------------------------------------------
    def set_pressed(self, index, pressed):
        """Drive button index's pin electrically, as a finger on the button would."""
        self.levels[index] = (0 if pressed else 1) if self._active_low[index] else (
            1 if pressed else 0)

    def read_buttons(self):
        mask = 0
        levels = self.levels
        active_low = self._active_low
        for i in range(len(levels)):
            if (levels[i] == 0) == active_low[i]:
                mask |= 1 << i
        return mask

    # -- clock chip, resets, watchdog, console -------------------------------------
    def rtc_read(self):
        if not self.board.get("rtc"):
            return None
        return int(time.time()) + self.jumped_ms // 1000

    def rtc_write(self, seconds):
        pass  # the simulated RTC follows the host clock

    def reset_cause(self):
        return self._reset_cause

    def feed_watchdog(self):
        self.watchdog_feeds += 1

    def console_write(self, data):
        sys.stdout.write(data)

    def reset(self):
        raise SystemExit(0)
