# The clock model for boards that lose the time at power-off.
#
# Uptime is counted from wrapping ticks (kiosk.ticks) and is always known. Wall time is
# known only once something sets it in this boot: the host (sync), NTP, an RTC chip, or
# the ESP32's own RTC carrying the previous boot's time across a reset that keeps it.
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
# 4 is the host's: the server's receipt of a push (host protocol/batch.py RECEIPT_SOURCE).
SOURCE_KEPT = const(5)
SOURCE_NAMES = {SOURCE_HOST: "host", SOURCE_NTP: "ntp", SOURCE_RTC: "rtc", SOURCE_KEPT: "kept"}

_ANCHOR = const(1)
_KEEP_BOOTS = const(64)  # anchors of older boots are dropped when the journal compacts


class Clock:
    def __init__(self, ticks_ms, boot, root, rtc_read=None, rtc_write=None,
                 kept_read=None, kept_write=None):
        self._ticks_ms = ticks_ms
        self.boot = boot
        self._rtc_read = rtc_read
        self._rtc_write = rtc_write
        # The chip's own RTC (hal.kept_time_read/write): it counts on through every reset
        # but a power-on, so a time set before a watchdog or soft reset is still there.
        self._kept_read = kept_read
        self._kept_write = kept_write
        self._journal = Journal(root + "/time")
        self._last_ticks = ticks_ms()
        self._uptime_ms = 0
        # [(boot, uptime_s, wall, source)], oldest first, the latest of each boot only:
        # what the journal keeps when it compacts and all a host is sent (kiosk/outbox.py).
        # A host syncing every few minutes sets the clock each time, and every anchor in
        # RAM would cost about 64 bytes on an ESP32 (the wall is a long int there).
        self.anchors = []
        self._wall_base = 0  # wall - uptime_s of the latest anchor in this boot
        self.source = 0

    def start(self, carry=True):
        """Read the anchors; set the clock from an RTC chip, else (with `carry`, at a
        boot) from the time the chip's own RTC kept across the reset."""
        for kind, values in self._journal.scan():
            if kind == _ANCHOR and len(values) == 4:
                self._keep(tuple(values))
        if self._rtc_read is not None:
            wall = self._rtc_read()
            # A chip that lost its time can hold any date: outside the bounds the clock
            # stays unknown (and the host's next TIME sets it and the chip), never a
            # failed boot.
            if wall and EARLIEST_WALL <= wall <= LATEST_WALL:
                self.set_wall(wall, SOURCE_RTC)
        if carry and not self.source:
            wall = self.kept_time()
            if wall:
                self.set_wall(wall, SOURCE_KEPT)

    def kept_time(self):
        """The time the chip's RTC kept across the reset into this boot, or 0 when it
        cannot be trusted. It is trusted only when the previous boot knew the time (its
        anchor is in the journal: every setting there was written to the RTC too) and the
        RTC reads no earlier than that anchor. A power-on restarts the RTC at its epoch
        (1970 or 2000), so a cut power never passes; nor does a boot after one whose clock
        was never set, whatever the RTC says."""
        read = self._kept_read
        if read is None:
            return 0
        previous = None
        for anchor in self.anchors:
            if anchor[0] == self.boot - 1:
                previous = anchor  # the journal is in order: the last one is the latest
        if previous is None:
            return 0
        wall = read()
        if not wall or wall < previous[2] or wall > LATEST_WALL:
            return 0
        return wall

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
        self._keep(anchor)
        if self._journal.append(_ANCHOR, anchor):
            self._compact()
        self._wall_base = wall - uptime_s
        self.source = source
        if source == SOURCE_KEPT:
            return  # the RTC already holds it; a clock chip keeps its own
        if self._kept_write is not None:
            self._kept_write(wall)
        if source != SOURCE_RTC and self._rtc_write is not None:
            self._rtc_write(wall)

    def _keep(self, anchor):
        anchors = self.anchors
        if anchors and anchors[-1][0] == anchor[0]:
            anchors[-1] = anchor
        else:
            anchors.append(anchor)

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
