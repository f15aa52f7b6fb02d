# What the ESP32 does before and around the app (kiosk/boot.py): the reset marker, the
# power hold, a restart, and a watchdog kept fed while the app is stopped for maintenance.
# Kept apart from hal/esp32.py so that it loads in a moment, before the app's imports.
import machine
import time

_timer = None  # the maintenance timer, while one runs
# kiosk/resets.py MARK_RUNNING and MARK_DELIBERATE, spelled out: this module loads before
# the app's imports (tests/firmware/test_resets.py keeps the two spellings equal).
_MARK_RUNNING = b"DeskPulse:run"
_MARK_DELIBERATE = b"DeskPulse:reset"
# What the RTC memory held when this boot marked itself running: how the last boot ended.
# Module state lives as long as the boot does (a soft reset clears it with the heap).
_armed = False
_memory_at_boot = None


def remount_root_lean():
    """Mount the vfs partition at / again without LittleFS's per-file mtime attribute.
    The stock _boot.py mounts it with the defaults (mtime on), and every flushed append of
    the response log then also rewrites the file's attribute in its folder's metadata:
    bursts of 2 erases and ~130 KB of reads per response near a full flash (docs/storage.md).
    Must run before any file is opened (umount does not close open files); modules
    already imported from / are closed. A FAT or missing partition keeps its mount, and a
    failed remount puts the stock one back. True when remounted."""
    import vfs
    from flashbdev import bdev

    if bdev is None or bdev.info()[4] != "vfs":
        return False
    vfs.umount("/")
    try:
        vfs.mount(vfs.VfsLfs2(bdev, mtime=False), "/")
    except OSError:
        vfs.mount(bdev, "/")  # as _boot.py did: auto-detected, default options
        return False
    return True


def hold_power(board):
    """Drive the board's power_hold pin to its active level (the Pin, or None without one).
    On a battery board (M5Stack CoreInk) the power button keeps the supply on only while
    it is pressed, and this pin must take over before it is let go: before the app's
    imports, which take seconds to compile from .py."""
    spec = board.get("power_hold")
    if not spec:
        return None
    return machine.Pin(spec["pin"], machine.Pin.OUT,
                       value=1 if spec.get("active", "high") == "high" else 0)


def arm_marker():
    """Mark this boot running in the RTC memory, first of all: a crash from then on (an
    import, the hardware layer's construction, the app) leaves the mark, and the next boot
    reads it as a panic, a brownout or a watchdog (kiosk/resets.py), never as the reset
    the last boot ended with. Returns what the memory held before: how the last boot
    ended. Once per boot; later calls return the same reading."""
    global _armed, _memory_at_boot
    if not _armed:
        _memory_at_boot = _rtc_memory()
        write_marker(_MARK_RUNNING)
        _armed = True
    return _memory_at_boot


def _rtc_memory():
    """The bytes the RTC slow memory holds (machine.RTC().memory(): RTC_NOINIT_ATTR in
    ports/esp32/machine_rtc.c, kept through every reset but a power-on), or None when
    the port was built without it (MICROPY_HW_RTC_USER_MEM_MAX 0)."""
    try:
        return machine.RTC().memory()
    except AttributeError:
        return None


def write_marker(data):
    try:
        machine.RTC().memory(data)
    except AttributeError:
        pass  # no RTC memory: kiosk/resets.py falls back on the RTC time


def restart():
    """The app's own reset: marked in the RTC memory first, so that the next boot does
    not take it for a panic (both read as HARD_RESET; kiosk/resets.py)."""
    write_marker(_MARK_DELIBERATE)
    machine.reset()


def restart_later(seconds, watchdog=None, feed_ms=1000):
    """Keep `watchdog` (a started machine.WDT, which nothing can stop) fed every feed_ms
    from a timer, so the REPL stays free, and restart the board after `seconds`: a
    technician's stop is neither a crash nor a kiosk left dead at the REPL."""
    global _timer
    deadline = time.ticks_add(time.ticks_ms(), seconds * 1000)
    feed = watchdog.feed if watchdog is not None else None

    def tick(timer):
        if time.ticks_diff(time.ticks_ms(), deadline) >= 0:
            timer.deinit()
            restart()
        elif feed is not None:
            feed()

    if _timer is not None:
        _timer.deinit()
    _timer = machine.Timer(0)
    _timer.init(mode=machine.Timer.PERIODIC, period=feed_ms, callback=tick)
    if feed is not None:
        feed()
