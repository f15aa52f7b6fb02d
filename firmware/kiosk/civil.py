# Proleptic Gregorian calendar arithmetic on day numbers, counted from 1970-01-01.
#
# time.mktime/time.gmtime are no help here: their epoch is 2000 on older ESP32 firmware
# and 1970 on newer, and the unix port differs again. These functions depend on nothing
# but integer arithmetic, so the host tests run the same code on the unix port and
# compare it with CPython's datetime.
#
# The method shifts the year to start on 1 March, so the leap day is the last day of a
# shifted year, and works in 400-year eras of exactly 146097 days. Floor division keeps
# it right for dates before 1970 too.
try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:
    # CPython (the host checks configs with kiosk/config.py, which reaches this module
    # through kiosk/tzrule.py). MicroPython folds NAME = const(n) itself.
    def const(value):
        return value

_DAYS_PER_ERA = const(146097)  # 400 Gregorian years
_EPOCH_SHIFT = const(719468)  # days from 0000-03-01 to 1970-01-01
_SECONDS_PER_DAY = const(86400)


def days_from_civil(year, month, day):
    """Day number of year-month-day (month 1..12, day 1..31); 1970-01-01 is 0."""
    if month <= 2:
        year -= 1
        shifted_month = month + 9  # January -> 10, February -> 11
    else:
        shifted_month = month - 3  # March -> 0
    era = year // 400
    year_of_era = year - era * 400  # 0..399
    # Month lengths from March repeat 31,30,31,30,31 (153 days per 5 months).
    day_of_year = (153 * shifted_month + 2) // 5 + day - 1  # 0..365
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * _DAYS_PER_ERA + day_of_era - _EPOCH_SHIFT


def civil_from_days(days):
    """(year, month, day) of a day number; the inverse of days_from_civil."""
    days += _EPOCH_SHIFT
    era = days // _DAYS_PER_ERA
    day_of_era = days - era * _DAYS_PER_ERA  # 0..146096
    # Remove the leap days counted so far in this era, then divide by a plain year.
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096
    ) // 365
    day_of_year = day_of_era - (year_of_era * 365 + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153  # 0..11, March first
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    if shifted_month < 10:
        month = shifted_month + 3
        year = year_of_era + era * 400
    else:
        month = shifted_month - 9
        year = year_of_era + era * 400 + 1
    return year, month, day


def weekday(days):
    """Day of the week of a day number: 0 = Monday .. 6 = Sunday (as datetime's)."""
    return (days + 3) % 7  # 1970-01-01 was a Thursday


def days_in_month(year, month):
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def seconds_from_civil(year, month, day, hour=0, minute=0, second=0):
    """Unix seconds (UTC) of a civil date and time."""
    days = days_from_civil(year, month, day)
    return days * _SECONDS_PER_DAY + hour * 3600 + minute * 60 + second


def civil_from_seconds(seconds):
    """(year, month, day, hour, minute, second, weekday) of unix seconds (UTC)."""
    days = seconds // _SECONDS_PER_DAY
    rest = seconds - days * _SECONDS_PER_DAY
    year, month, day = civil_from_days(days)
    return year, month, day, rest // 3600, rest // 60 % 60, rest % 60, weekday(days)
