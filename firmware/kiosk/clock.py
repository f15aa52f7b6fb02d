# The clock model for boards that lose the time at power-off.
#
# Uptime is counted from wrapping ticks (kiosk.ticks) and is always known. Wall time is
# known only once something sets it in this boot: the host (sync), NTP, or an RTC chip.
# Each setting is kept as a durable time anchor (boot, uptime_s, wall, source) in the
# journal <root>/time, so the host can later resolve any record of a boot that has an
# anchor, even records stored before the clock was set. See docs/time.md.
from kiosk import ticks
from kiosk.journal import Journal
from micropython import const

# What the wall clock may be set to, whatever sets it (host, push server, NTP, RTC chip):
# the one source of these bounds for the firmware and, mirrored, the host. Records keep
# wall time as u32, which ends at 2106-02-07; the latest setting is 2100-01-01 so that a
# kiosk set then can run for six years of uptime before its wall would pass u32 (and
# record.py stores the clock as unknown rather than wrap if it ever does). Before 2000
# is a host or server bug (an unset clock, a wrong unit), never a real time.
EARLIEST_WALL = const(946684800)  # 2000-01-01T00:00:00Z
LATEST_WALL = 4102444800  # 2100-01-01T00:00:00Z; over 2**30, so no const() on 32-bit

SOURCE_HOST = const(1)
SOURCE_NTP = const(2)
SOURCE_RTC = const(3)
SOURCE_NAMES = {SOURCE_HOST: "host", SOURCE_NTP: "ntp", SOURCE_RTC: "rtc"}

_ANCHOR = const(1)
_KEEP_BOOTS = const(64)  # anchors of older boots are dropped when the journal compacts


class Clock:
    def __init__(self, ticks_ms, boot, root, rtc_read=None, rtc_write=None):
        self._ticks_ms = ticks_ms
        self.boot = boot
        self._rtc_read = rtc_read
        self._rtc_write = rtc_write
        self._journal = Journal(root + "/time")
        self._last_ticks = ticks_ms()
        self._uptime_ms = 0
        self.anchors = []  # [(boot, uptime_s, wall, source)], oldest first
        self._wall_base = 0  # wall - uptime_s of the latest anchor in this boot
        self.source = 0

    def start(self):
        for kind, values in self._journal.scan():
            if kind == _ANCHOR and len(values) == 4:
                self.anchors.append(tuple(values))
        if self._rtc_read is not None:
            wall = self._rtc_read()
            # A chip that lost its time can hold any date: outside the bounds the clock
            # stays unknown (and the host's next TIME sets it and the chip), never a
            # failed boot.
            if wall and EARLIEST_WALL <= wall <= LATEST_WALL:
                self.set_wall(wall, SOURCE_RTC)

    def ticks_ms(self):
        return self._ticks_ms()

    def uptime_ms(self):
        """Milliseconds since boot; must be called at least every few days (the app's
        timer task calls it every tick) so that a wrap of the ticks is never missed."""
        now = self._ticks_ms()
        self._uptime_ms += ticks.diff(now, self._last_ticks)
        self._last_ticks = now
        return self._uptime_ms

    def uptime_s(self):
        return self.uptime_ms() // 1000

    def known(self):
        return self.source != 0

    def wall(self):
        """Unix seconds now, or 0 while the clock is unknown."""
        if not self.source:
            return 0
        return self._wall_base + self.uptime_s()

    def set_wall(self, wall, source):
        """Set the wall clock (unix seconds) and record a durable anchor; raises
        ValueError outside EARLIEST_WALL..LATEST_WALL and changes nothing then."""
        if not EARLIEST_WALL <= wall <= LATEST_WALL:
            raise ValueError("wall time %d is outside %d..%d (2000-2100)"
                             % (wall, EARLIEST_WALL, LATEST_WALL))
        uptime_s = self.uptime_s()
        anchor = (self.boot, uptime_s, wall, source)
        self.anchors.append(anchor)
        if self._journal.append(_ANCHOR, anchor):
            self._compact()
        self._wall_base = wall - uptime_s
        self.source = source
        if source != SOURCE_RTC and self._rtc_write is not None:
            self._rtc_write(wall)

    def _compact(self):
        oldest = self.boot - _KEEP_BOOTS
        latest = {}
        for anchor in self.anchors:
            if anchor[0] > oldest:
                latest[anchor[0]] = anchor  # the last anchor of each boot is enough
        self.anchors = sorted(latest.values())
        self._journal.rewrite([(_ANCHOR, a) for a in self.anchors])

    def state(self):
        if not self.source:
            return {"known": False}
        return {"known": True, "source": SOURCE_NAMES.get(self.source, "?"),
                "wall": self.wall()}

    def close(self):
        self._journal.close()
