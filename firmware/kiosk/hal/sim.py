# The simulated hardware layer for the MicroPython unix port.
#
# Flash: a LittleFS image file in the state folder, mounted at /flash through SimFlash
# (NOR rules, op counters), with the geometry of the board's vfs partition, so a restart
# keeps the log like a real device. Buttons: electrical levels that the script player or a
# test sets; the active level is applied here, at the edge. Clock: ticks reduced to the
# ESP32's 2**30 period and started a minute before they wrap, so every simulated run
# crosses a wrap; they follow a VirtualClock (simclock.py), which sim_main installs as
# asyncio's time source so that idle time jumps to the next deadline; jump_ms() moves
# simulated time forward at once (tests).
import asyncio
import binascii
import os
import sys
import time

import vfs
from kiosk import resets, ticks
from kiosk.hal.base import Hal
from kiosk.hal.simclock import VirtualClock
from kiosk.hal.simflash import FileImage, SimFlash
from kiosk.screen import TextScreen

MOUNT = "/flash"


def _code_root():
    # kiosk/hal/sim.py -> the folder holding kiosk/ (firmware/ in the repository)
    path = __file__
    for _ in range(3):
        path = path[: path.rfind("/")]
    return path or "."
_START_BEFORE_WRAP_MS = 60000
_EPOCH_2000 = 946684800  # unix seconds of 2000-01-01
_EHOSTUNREACH = 113  # the unix port's errno lacks ENETUNREACH; lwIP reports this one too


class SimHal(Hal):
    def __init__(self, board, state_dir, reset_cause="power_on", screen=None,
                 code_root=None, refresh_scale=1.0, clock=None, mac=None):
        self.board = board
        self.state_dir = state_dir
        self.mac = self._stand_in_mac(mac)
        self._reset_cause = reset_cause
        self.fs_root = MOUNT
        # A pty takes whole frames at once: no need to slice them as for a real UART (and
        # a screen line printed between slices would break a frame).
        self.console_write_chunk = 0
        buttons = board["buttons"]
        self._active_low = [b.get("active", "low") == "low" for b in buttons]
        # Electrical levels, idle level to start with (released).
        self.levels = bytearray(1 if low else 0 for low in self._active_low)
        self._released = bytes(self.levels)
        # Without a clock installed as asyncio's, virtual time is the host's (plus jumps).
        self.virtual_clock = clock or VirtualClock(realtime=True)
        self._offset = ticks.diff(ticks.PERIOD - _START_BEFORE_WRAP_MS, self._raw_ticks())
        # The RTC chip runs on simulated time from the host's time at power-on.
        self._rtc_base = int(time.time())
        self._rtc_since = self.virtual_clock.now()
        self._kept_base, self._kept_since = self._kept_at_boot(), self._rtc_since
        self.network_up = True  # the script's `wifi off` / `wifi on`
        self.connections = 0  # connection attempts, failed ones included
        self.flash = self._mount()
        self.screen = screen or TextScreen(self.console_write)
        self.watchdog_feeds = 0
        self.fonts_dir = (code_root or _code_root()) + "/kiosk/ui/fonts"
        self.sim_panel = self.panel = self.sim_touch = self.touch = None
        if board.get("display"):
            self._make_panel(board["display"], refresh_scale)
        if board.get("touch"):
            self._make_touch(board["touch"], board["display"])

    def _make_panel(self, display, refresh_scale):
        # The real driver over a simulated controller whose BUSY stays active for the
        # panel's datasheet refresh time (scaled: tests may want it shorter).
        from kiosk.hal.simpanel import make_pair

        self.sim_panel, self.panel = make_pair(
            display["controller"], display["width"], display["height"], self.ticks_ms,
            rotation=display.get("rotation", 0),
            full_ms=int(display.get("full_refresh_ms", 2000) * refresh_scale),
            partial_ms=int(display.get("partial_refresh_ms", 500) * refresh_scale),
            panel=display.get("panel"),
            record=False)  # a transcript of every byte is for driver tests, not a device

    def _make_touch(self, touch, display):
        from kiosk.drivers.gt911 import Gt911, Gt1151
        from kiosk.hal.simpanel import SimTouch

        chip = touch["controller"]
        self.sim_touch = SimTouch(chip, touch["address"])
        driver = Gt1151 if chip == "gt1151" else Gt911
        # The board's axis flags, as on a device: the simulated sensor reports in the axes
        # they describe (touch_at), and the driver turns them back.
        self._touch_axes = {k: True for k in ("mirror_x", "mirror_y", "swap_xy")
                            if touch.get(k)}
        self.touch = driver(self.sim_touch, touch["address"], display["width"],
                            display["height"], rotation=display.get("rotation", 0),
                            **self._touch_axes)
        self.touch.start()  # no pins here: it only finds the simulated chip

    def touch_at(self, x, y):
        """A finger on the panel at logical (x, y); release() lifts it."""
        from kiosk.hal.simpanel import to_native

        d = self.board["display"]
        w, h = d["width"], d["height"]
        px, py = to_native(x, y, w, h, d.get("rotation", 0))
        # Native panel point to the sensor's own axes: the inverse of the driver's flags.
        axes = self._touch_axes
        if axes.get("mirror_x"):
            px = w - 1 - px
        if axes.get("mirror_y"):
            py = h - 1 - py
        if axes.get("swap_xy"):
            px, py = py, px
        self._finger().touch(px, py)

    def release(self):
        self._finger().release()

    def _finger(self):
        if self.sim_touch is None:
            raise ValueError("board %s has no touch panel" % self.board["name"])
        return self.sim_touch

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
        # As kiosk.hal.early.remount_root_lean mounts the ESP32's partition: no mtime.
        vfs.mount(vfs.VfsLfs2(flash, mtime=False), MOUNT)  # pyright: ignore[reportArgumentType]
        return flash

    def unmount(self):
        vfs.umount(MOUNT)

    def _raw_ticks(self):
        # ticks_diff(t, 0) turns the stubs' opaque tick type into an int (the unix port's
        # ticks are far below its 2**62 period).
        return time.ticks_diff(self.virtual_clock.now(), 0) & ticks.MASK

    def ticks_ms(self):
        # ticks.add(self._raw_ticks(), self._offset) in one step: the logic reads the
        # clock many times a simulated second.
        return (time.ticks_diff(self.virtual_clock.now(), 0) + self._offset) & ticks.MASK

    def jump_ms(self, ms):
        """Move simulated time forward at once; the RTC, if any, moves too."""
        self.virtual_clock.jump(ms)

    # -- buttons ---------------------------------------------------------------
    def set_pressed(self, index, pressed):
        """Drive button index's pin electrically, as a finger on the button would."""
        self.levels[index] = (0 if pressed else 1) if self._active_low[index] else (
            1 if pressed else 0)

    def read_buttons(self):
        levels = self.levels
        if levels == self._released:
            return 0  # the usual case, checked in C: polled a hundred times a second
        mask = 0
        active_low = self._active_low
        for i in range(len(levels)):
            if (levels[i] == 0) == active_low[i]:
                mask |= 1 << i
        return mask

    # -- network -------------------------------------------------------------------
    def set_network(self, up):
        """Switch the simulated WiFi: while it is down, connection attempts fail at once
        with OSError, as on an ESP32 whose WLAN is not connected."""
        self.network_up = bool(up)

    async def open_connection(self, host, port):
        """The host's own sockets (the unix port's asyncio streams) while the network is
        up. kiosk.push passes an IPv4 address (names go through kiosk/resolve.py)."""
        self.connections += 1
        if not self.network_up:
            raise OSError(_EHOSTUNREACH, "network down")
        return await asyncio.open_connection(host, port)

    def network_status(self):
        return {"up": self.network_up, "address": "127.0.0.1" if self.network_up else "",
                "connects": self.connections}

    # -- the chip's MAC ---------------------------------------------------------------
    def _stand_in_mac(self, given):
        """The simulated chip's base MAC: `given` (6 bytes, e.g. the MAC a provisioning
        test flashed), else the one this state folder's board was given at its first
        start: a random locally administered address, kept in the folder, so each
        simulated kiosk keeps its own MAC (and so its MAC id) through restarts and
        never shares one with a real ESP32. A given MAC is kept as the folder's."""
        path = self.state_dir + "/mac"
        if given is None:
            try:
                with open(path) as f:
                    given = binascii.unhexlify(f.read().strip())
            except (OSError, ValueError):
                given = None
            if given is not None and len(given) == 6:
                return given
            given = bytes([0x02]) + os.urandom(5)  # locally administered, unicast
        with open(path, "w") as f:
            f.write(binascii.hexlify(given).decode())
        return given

    def unique_id(self):
        return self.mac

    # -- clock chip, resets, watchdog, console -------------------------------------
    def rtc_read(self):
        if not self.board.get("rtc"):
            return None
        # The host's ticks period (2**62 on unix), not the ESP32's: a scripted `wait` may
        # span years.
        return self._rtc_base + time.ticks_diff(self.virtual_clock.now(), self._rtc_since) // 1000

    def rtc_write(self, seconds):
        pass  # the simulated RTC follows the host clock

    # The ESP32's own RTC (kiosk/hal/esp32.py): what the last boot left in it carries
    # over a reset, while a power-on restarts it at the firmware's epoch (2000 here).
    def _kept_path(self):
        return self.state_dir + "/kept-clock"

    def _kept_at_boot(self):
        # Every reset but a power-on leaves the RTC counting: a brownout too, which the
        # ESP32 recovers from with a software restart (kiosk/resets.py).
        if self._reset_cause != "power_on":
            try:
                with open(self._kept_path()) as f:
                    return int(f.read())
            except (OSError, ValueError):
                pass
        return _EPOCH_2000

    def kept_time_read(self):
        return self._kept_base + time.ticks_diff(self.virtual_clock.now(), self._kept_since) // 1000

    def kept_time_write(self, seconds):
        self._kept_base, self._kept_since = seconds, self.virtual_clock.now()

    def shut_down(self):
        """The simulated board resets (the run is over): its RTC holds the time it has now."""
        with open(self._kept_path(), "w") as f:
            f.write(str(self.kept_time_read()))

    # What the ESP32 port reports after the reset named by --reset-cause (any of
    # kiosk.resets.CAUSES but "unknown"): its folded cause and the RTC memory, so the
    # app's classification runs as on a board.
    def reset_cause(self):
        return resets.port_facts(self._reset_cause)[0]

    def reset_memory(self):
        return resets.port_facts(self._reset_cause)[1]

    def feed_watchdog(self):
        self.watchdog_feeds += 1

    def console_write(self, data):
        sys.stdout.write(data)

    def reset(self):
        raise SystemExit(0)
