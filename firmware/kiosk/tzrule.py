# Local time from a POSIX TZ rule, e.g. "CET-1CEST,M3.5.0,M10.5.0/3" for Paris.
#
# The kiosk cannot hold the IANA database, but every zone's rule for the present day fits
# in one short string: the footer of its TZif file, which the host reads from its own
# tzdata and puts in the config (docs/time.md). This module checks such a string and turns
# unix time into the zone's UTC offset, daylight saving included, with no table at all.
#
# The rule is parsed once into a flat tuple of small ints. Evaluating it works in seconds
# counted from 1 January of the instant's UTC year, which stay far inside MicroPython's
# small-int range (31 bits on the ESP32), where unix seconds themselves do not.
# It runs on CPython too: the host validates configs with kiosk/config.py, and checks a
# derived rule against zoneinfo with this very module.
#
# Forms taken (POSIX, with the RFC 8536 extension of transition hours to -167..167):
#   std offset [dst [offset] ,start[/time],end[/time]]
#   names: 3+ letters, or <...> of letters, digits, + and - (e.g. <+0530>)
#   offset: [+-]hh[:mm[:ss]], hours west of UTC (so CET-1 is one hour east)
#   start/end: Jn (1..365, 29 February never counted), n (0..365, counted),
#              Mm.w.d (month, week 1..5 where 5 is the last, weekday 0 = Sunday)
#   time: local time of the change, default 02:00; the start is in standard time and
#         the end in daylight time, as POSIX says.
try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:
    # CPython only; MicroPython folds NAME = const(n) itself.
    def const(value):
        return value

from kiosk import civil

MAX_LENGTH = const(64)  # the longest real footer (Pacific/Chatham) has 44 characters
_DAY = const(86400)
_DEFAULT_TIME = const(7200)  # 02:00, when a rule gives no /time
_EARLIEST = const(-(1 << 29))  # before any transition of the previous year

_JULIAN = const(1)  # Jn
_ZERO_BASED = const(2)  # n
_MONTH_WEEK = const(3)  # Mm.w.d

# The parsed tuple: (std, dst, start kind, a, b, c, start time, end kind, a, b, c, end time)
# with offsets in seconds east of UTC; kind 0 means the zone has no daylight time.
_START = const(2)
_END = const(7)


class _Cursor:
    """The text being parsed and where parsing is, so every helper can say where it
    failed."""

    def __init__(self, text):
        self.text = text
        self.at = 0

    def more(self):
        return self.at < len(self.text)

    def peek(self):
        return self.text[self.at] if self.at < len(self.text) else ""

    def error(self, what):
        return ValueError("%s at character %d" % (what, self.at + 1))

    def number(self, what, digits, low, high):
        start = self.at
        value = 0
        while self.at - start < digits and "0" <= self.peek() <= "9":
            value = value * 10 + ord(self.text[self.at]) - 48
            self.at += 1
        if self.at == start:
            raise self.error("expected %s" % what)
        if not low <= value <= high:
            self.at = start
            raise self.error("%s must be %d..%d" % (what, low, high))
        return value

    def expect(self, char):
        if self.peek() != char:
            raise self.error("expected %r" % char)
        self.at += 1


def _name(c):
    if c.peek() == "<":
        c.at += 1
        start = c.at
        while c.more() and c.peek() != ">":
            ch = c.peek()
            if not ("a" <= ch <= "z" or "A" <= ch <= "Z" or "0" <= ch <= "9" or ch in "+-"):
                raise c.error("a quoted zone name may hold only letters, digits, + and -")
            c.at += 1
        if c.at - start < 3:
            raise c.error("a zone name needs 3 or more characters")
        c.expect(">")
        return
    start = c.at
    while c.more() and ("a" <= c.peek() <= "z" or "A" <= c.peek() <= "Z"):
        c.at += 1
    if c.at - start < 3:
        c.at = start
        raise c.error("expected a zone name (3 or more letters, or <+0530>)")


def _clock(c, hour_digits, max_hour):
    """[+-]h[h][:mm[:ss]] as seconds."""
    sign = 1
    if c.peek() in ("+", "-"):
        sign = -1 if c.peek() == "-" else 1
        c.at += 1
    seconds = c.number("hours", hour_digits, 0, max_hour) * 3600
    if c.peek() == ":":
        c.at += 1
        seconds += c.number("minutes", 2, 0, 59) * 60
        if c.peek() == ":":
            c.at += 1
            seconds += c.number("seconds", 2, 0, 59)
    return sign * seconds


def _offset(c):
    # POSIX: hours 0..24; and it counts west of UTC, where the kiosk adds seconds east.
    return -_clock(c, 2, 24)


def _change(c):
    """One ",date[/time]": (kind, a, b, c, seconds after local midnight)."""
    c.expect(",")
    ch = c.peek()
    if ch == "J":
        c.at += 1
        day = (_JULIAN, c.number("day", 3, 1, 365), 0, 0)
    elif ch == "M":
        c.at += 1
        month = c.number("month", 2, 1, 12)
        c.expect(".")
        week = c.number("week", 1, 1, 5)
        c.expect(".")
        day = (_MONTH_WEEK, month, week, c.number("weekday", 1, 0, 6))
    elif "0" <= ch <= "9":
        day = (_ZERO_BASED, c.number("day", 3, 0, 365), 0, 0)
    else:
        raise c.error("expected a date: Jn, n or Mm.w.d")
    time = _DEFAULT_TIME
    if c.peek() == "/":
        c.at += 1
        time = _clock(c, 3, 167)
    return day[0], day[1], day[2], day[3], time


def parse(text):
    """The rule in text as a tuple for offset(); raises ValueError saying what is wrong
    and where."""
    if not isinstance(text, str):
        raise ValueError("a rule must be text")
    if not 1 <= len(text) <= MAX_LENGTH:
        raise ValueError("a rule has 1..%d characters" % MAX_LENGTH)
    c = _Cursor(text)
    _name(c)
    std = _offset(c)
    if not c.more():
        return (std, std, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    _name(c)
    dst = std + 3600
    if c.more() and c.peek() != ",":
        dst = _offset(c)
    if not c.more():
        # POSIX leaves the dates to the implementation then; guessing them would put the
        # kiosk an hour off for part of the year, so the rule must say.
        raise c.error("daylight time needs its dates (,start,end)")
    start = _change(c)
    end = _change(c)
    if c.more():
        raise c.error("unexpected %r" % c.peek())
    return (std, dst) + start + end


def _leap(year):
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _change_day(rule, at, year):
    """The day number (days since 1970-01-01) of the change at rule[at:] in year."""
    kind = rule[at]
    if kind == _MONTH_WEEK:
        month = rule[at + 1]
        first = civil.days_from_civil(year, month, 1)
        # weekday 0 = Sunday; 1970-01-01 (day 0) was a Thursday, 4
        day = first + (rule[at + 3] - (first + 4)) % 7 + 7 * (rule[at + 2] - 1)
        if day >= first + civil.days_in_month(year, month):
            day -= 7  # week 5 means the last such weekday of the month
        return day
    jan1 = civil.days_from_civil(year, 1, 1)
    n = rule[at + 1]
    if kind == _JULIAN:
        return jan1 + n - (0 if n >= 60 and _leap(year) else 1)
    return jan1 + n


def offset(rule, wall):
    """Seconds east of UTC in force at unix time wall (an int) under a parsed rule."""
    std = rule[0]
    if not rule[_START]:
        return std
    dst = rule[1]
    days = wall // _DAY
    year = civil.civil_from_days(days)[0]
    base = civil.days_from_civil(year, 1, 1)
    now = (days - base) * _DAY + (wall - days * _DAY)  # seconds into the UTC year
    # The latest change at or before now decides. Looking at the years around it keeps
    # rules right whose changes fall near the new year or move across it by a time of
    # up to 167 hours, and southern rules whose daylight time spans the new year.
    latest = _EARLIEST
    daylight = False
    for y in range(year - 1, year + 2):
        # A change is given in the local time in force before it.
        start = (_change_day(rule, _START, y) - base) * _DAY + rule[_START + 4] - std
        end = (_change_day(rule, _END, y) - base) * _DAY + rule[_END + 4] - dst
        # On a tie the start wins: "J365/25" ending where "0/0" starts is all-year DST.
        if latest <= start <= now:
            latest = start
            daylight = True
        if latest < end <= now:
            latest = end
            daylight = False
    return dst if daylight else std


_text = None
_rule = None


def cached(text):
    """parse(text), remembered for the last text: the config asks for the same rule at
    every tap and every hours check, and a hit allocates nothing."""
    global _text, _rule
    if text != _text:
        _rule = parse(text)
        _text = text
    return _rule
