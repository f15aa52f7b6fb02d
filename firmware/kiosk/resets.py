# How the last boot ended, told apart from what the ESP32 port reports (docs/reliability.md,
# "Resets told apart"). Hardware-free: the HAL gathers the raw facts at boot and this module
# judges them, so the unix port tests every case.
#
# MicroPython's ESP32 port folds ESP-IDF's reset reasons into five causes
# (ports/esp32/modmachine.c, mp_machine_reset_cause): a brownout reads as a power-on, a
# panic and machine.reset() both as a hard reset. Two witnesses separate them again:
#
# - A marker in the RTC slow memory (machine.RTC().memory()). The port keeps that memory
#   in an RTC_NOINIT_ATTR section (ports/esp32/machine_rtc.c), which no reset but a
#   power-on clears; on ESP32 ESP-IDF answers a brownout with a software restart
#   (esp_system/port/brownout.c), so the memory lives through it. Every boot arms the
#   marker (MARK_RUNNING) first of all, before the app's imports (kiosk/boot.py calls
#   kiosk/hal/early.py arm_marker), so a crash while the app compiles or the hardware
#   layer is built counts too; the app's own reset (hal.reset()) changes it to
#   MARK_DELIBERATE just before it calls machine.reset(). So a hard reset that finds
#   MARK_RUNNING was not asked for by the app (a panic), and a "power-on" that finds any
#   marker was a brownout: the RTC domain kept its power.
# - The ESP32's RTC time, which counts on through every reset but a power-on and which the
#   firmware sets at every clock setting (docs/time.md, "Time kept across a reset"): when
#   the previous boot knew the time and the RTC reads no earlier, the RTC domain kept its
#   power. It speaks only where the marker says nothing (a port built without RTC memory,
#   or the first boot after a firmware that wrote no marker).
from micropython import const

# What the HAL reads from the port (kiosk/hal/esp32.py reset_cause).
POWER_ON = "power_on"  # ESP_RST_POWERON or ESP_RST_BROWNOUT
HARD = "hard"  # ESP_RST_SW (machine.reset()) or ESP_RST_PANIC
WATCHDOG = "watchdog"  # the task, interrupt or RTC watchdog
DEEP_SLEEP = "deep_sleep"
SOFT = "soft"  # MicroPython's soft reset: the chip itself was not reset
UNKNOWN = "unknown"
# What the witnesses add.
BROWNOUT = "brownout"  # the supply dipped; the RTC domain kept its memory
PANIC = "panic"  # a hard reset the app did not ask for
DELIBERATE = "deliberate"  # the app's own machine.reset() (hal.reset())

# Boots that ended this way ended in a crash (the app counts them; a streak means safe mode).
CRASHES = (WATCHDOG, PANIC)
# Every cause classify() may answer. A hard reset without a marker stays HARD: the
# software reset and the panic cannot be told apart then.
CAUSES = (POWER_ON, BROWNOUT, WATCHDOG, PANIC, DELIBERATE, HARD, SOFT, DEEP_SLEEP, UNKNOWN)

# The markers: short, and unlike anything the RTC memory holds after a power-on (the port
# answers b"" then: its own magic word did not survive).
MARK_RUNNING = b"DeskPulse:run"
MARK_DELIBERATE = b"DeskPulse:reset"

_RAW = (POWER_ON, HARD, WATCHDOG, DEEP_SLEEP, SOFT)
_NO_MARKER = const(0)
_RUNNING = const(1)
_RESETTING = const(2)


def _marker(memory):
    if memory == MARK_RUNNING:
        return _RUNNING
    if memory == MARK_DELIBERATE:
        return _RESETTING
    return _NO_MARKER  # empty, someone else's bytes, or no RTC memory (None)


def classify(raw, memory=None, time_kept=None):
    """The cause of this boot from the port's raw cause, the bytes the RTC memory held at
    boot (None: the port has no RTC memory) and the time witness (True: the RTC kept the
    previous boot's time, False: it lost it, None: no evidence; see time_kept()).

    A cause the HAL already knows in full (the simulator reports "panic", "brownout", ...)
    is kept as it is."""
    if raw not in _RAW:
        return raw if raw in CAUSES else UNKNOWN
    marker = _marker(memory)
    if raw == HARD:
        if marker == _RESETTING:
            return DELIBERATE
        if marker == _RUNNING:
            return PANIC
        return HARD
    if raw == POWER_ON and (marker != _NO_MARKER or time_kept):
        return BROWNOUT
    return raw


def time_kept(rtc_seconds, anchors, boot, latest_wall):
    """The RTC time's witness: True when the RTC, read at boot before anything set it,
    is no earlier than the previous boot's latest anchor (so it counted on through the
    reset), False when it reads earlier (it restarted at its epoch), None when the
    previous boot never knew the time. anchors: (boot, uptime_s, wall, source) tuples."""
    previous = None
    for anchor in anchors:
        if anchor[0] == boot - 1:
            previous = anchor[2]
    if previous is None or not rtc_seconds:
        return None
    return previous <= rtc_seconds <= latest_wall


def port_facts(cause):
    """(raw cause, RTC memory at boot) that the ESP32 port gives after a reset of this
    kind, for a board that armed its marker: what the simulator reports for
    `--reset-cause CAUSE`. HARD is the ambiguous one: a reset with no marker in the RTC
    memory (the first boot after a firmware that wrote none)."""
    if cause == BROWNOUT:
        return POWER_ON, MARK_RUNNING
    if cause == PANIC:
        return HARD, MARK_RUNNING
    if cause == DELIBERATE:
        return HARD, MARK_DELIBERATE
    if cause == POWER_ON or cause == HARD:
        return cause, b""
    if cause in _RAW:
        return cause, MARK_RUNNING
    raise ValueError("unknown reset cause %r" % cause)
