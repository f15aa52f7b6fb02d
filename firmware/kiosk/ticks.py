# Millisecond tick arithmetic with the ESP32's period (2**30), on every port.
# The unix port's time.ticks_* wrap at 2**62, which would hide wrap bugs in tests, so the
# logic always uses these and the hardware layer hands out ticks already reduced mod 2**30.
# Written so that no intermediate leaves the ESP32 small-int range (no heap allocation).
from micropython import const

PERIOD = const(0x40000000)
MASK = const(0x3FFFFFFF)
_HALF = const(0x20000000)


def diff(end, start):
    """Signed milliseconds from start to end, like time.ticks_diff."""
    d = end - start
    if d >= _HALF:
        d -= PERIOD
    elif d < -_HALF:
        d += PERIOD
    return d


def add(ticks, delta):
    """ticks + delta, wrapped like time.ticks_add."""
    return (ticks + delta) & MASK
