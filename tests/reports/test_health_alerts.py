"""Health alerts (reports/health.py): a silent kiosk judged against its own usual rate
for the weekday and hour, within its store's opening hours; a filling flash; refused
pushes. The judgements are tested as pure functions (with hypothesis where a property
says more than examples), then end to end on a real store built from pushed batches."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deskpulse.errors import DeskPulseError
from deskpulse.protocol.batch import Response
from deskpulse.reports import health
from deskpulse.store import open_store
from deskpulse.store.base import DeviceFacts, Store
from deskpulse.store.health import KioskHealth, RefusalCount

PARIS = "Europe/Paris"
TUESDAY = datetime(2026, 11, 17, tzinfo=ZoneInfo(PARIS))  # a Tuesday in winter time


def at(day: datetime, hour: int, minute: int = 0) -> int:
    return int(day.replace(hour=hour, minute=minute).timestamp())


# -- pure: usual rates, opening hours, expected responses -----------------------------------


def test_usual_rates_are_the_mean_per_weekday_and_hour_since_the_first_active_day() -> None:
    end_day = 20_000
    days = {day: [0] * 14 + [4 if day % 2 else 2] + [0] * 9 for day in range(end_day - 21,
                                                                               end_day)}
    rates = health.usual_rates(days, end_day)
    assert rates is not None
    for weekday in range(7):
        counts = [days[d][14] for d in range(end_day - 21, end_day)
                  if health.weekday(d) == weekday]
        assert rates[weekday][14] == pytest.approx(sum(counts) / len(counts))
        assert rates[weekday][13] == 0


def test_a_kiosk_with_too_little_history_is_not_judged() -> None:
    end_day = 20_000
    short = {day: [5] * 24 for day in range(end_day - health.MIN_HISTORY_DAYS + 1, end_day)}
    assert health.usual_rates(short, end_day) is None
    assert health.usual_rates({}, end_day) is None
    assert health.silence_expected(None, at(TUESDAY, 9), at(TUESDAY, 18), PARIS, None) == 0


def test_opening_hours_become_spans_of_the_week_past_midnight_included() -> None:
    week = health.open_week("mon-fri 09:00-18:00, sat 22:00-02:00, sun 23:00-01:00")
    assert week is not None
    assert (9 * 3600, 18 * 3600) in week  # Monday
    assert (5 * 86400 + 22 * 3600, 6 * 86400 + 2 * 3600) in week  # Saturday into Sunday
    assert (0, 3600) in week and (6 * 86400 + 23 * 3600, 7 * 86400) in week  # Sun -> Mon
    assert health.open_week(None) is None and health.open_week("") is None


instants = st.integers(min_value=1_700_000_000, max_value=1_900_000_000)
zones = st.sampled_from(["Europe/Paris", "America/New_York", "Asia/Kolkata", "UTC",
                         "Australia/Lord_Howe"])


@settings(max_examples=60, deadline=None)
@given(start=instants, length=st.integers(0, 9 * 86400), zone=zones,
       rate=st.floats(0.1, 50))
def test_at_a_constant_rate_the_expected_count_is_rate_times_real_hours(
        start: int, length: int, zone: str, rate: float) -> None:
    """Whatever the zone and its daylight saving days (a day of 23 or 25 hours, a
    half-hour shift at Lord Howe): the hours that really pass are counted, once each."""
    rates = [[rate] * 24 for _ in range(7)]
    got = health.expected_responses(rates, start, start + length, zone, None)
    assert got == pytest.approx(rate * length / 3600, rel=1e-9, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(start=instants, cuts=st.lists(st.integers(0, 5 * 86400), min_size=1, max_size=4),
       zone=zones, seed=st.integers(0, 1 << 30))
def test_the_expected_count_adds_up_over_any_split_of_the_stretch(
        start: int, cuts: list[int], zone: str, seed: int) -> None:
    rates = [[(seed >> (w + h)) % 7 * 0.5 for h in range(24)] for w in range(7)]
    week = health.open_week("mon-fri 09:00-18:30, sat 10:00-13:00, sun 22:00-02:00")
    points = [start, *sorted(start + c for c in cuts)]
    whole = health.expected_responses(rates, points[0], points[-1], zone, week)
    parts = sum(health.expected_responses(rates, a, b, zone, week)
                for a, b in zip(points, points[1:], strict=False))
    assert whole == pytest.approx(parts, rel=1e-9, abs=1e-9)


def test_closed_hours_and_closed_days_add_nothing() -> None:
    rates = [[10.0] * 24 for _ in range(7)]
    week = health.open_week("mon 09:00-18:00, wed-sat 09:00-18:00")  # closed on Tuesday
    assert health.expected_responses(rates, at(TUESDAY, 8), at(TUESDAY, 20), PARIS,
                                     week) == 0
    monday = TUESDAY - timedelta(days=1)
    # 17:00 to 20:00 on Monday: one open hour.
    assert health.expected_responses(rates, at(monday, 17), at(monday, 20), PARIS,
                                     week) == pytest.approx(10)


def test_a_silence_is_unlikely_below_one_chance_in_a_hundred() -> None:
    assert health.is_unlikely(-math.log(0.01) + 0.01)
    assert not health.is_unlikely(-math.log(0.01) - 0.01)
    assert not health.is_unlikely(0)


# -- pure: flash -------------------------------------------------------------------------


def kiosk(**fields: object) -> KioskHealth:
    base: dict[str, object] = dict(
        device_id="k1", name=None, site=None, last_push=1_800_000_000, last_serial=None,
        last_response=None, fill=0.3, unacked=0, dropped=0, clock_known=True,
        clock_offset_s=0, config_running=None, config_desired=None)
    base.update(fields)
    return KioskHealth(**base)  # type: ignore[arg-type]


def test_flash_over_the_threshold_is_a_problem() -> None:
    assert health.flash_problem(kiosk(fill=0.85)) == "flash 85% full"
    assert health.flash_problem(kiosk(fill=0.5)) is None
    assert health.flash_problem(kiosk(fill=None)) is None


def test_flash_rising_toward_full_within_a_week_is_a_problem() -> None:
    now = 1_800_000_000
    # 50% to 70% in 4 days: 5 points a day, full in 6 days.
    rising = kiosk(fill=0.7, earlier_fill=0.5, earlier_at=now - 4 * 86400, last_push=now)
    assert "full in about 6 days" in (health.flash_problem(rising) or "")
    slow = kiosk(fill=0.7, earlier_fill=0.65, earlier_at=now - 4 * 86400, last_push=now)
    assert health.flash_problem(slow) is None  # 24 days away
    too_soon = kiosk(fill=0.7, earlier_fill=0.5, earlier_at=now - 3600, last_push=now)
    assert health.flash_problem(too_soon) is None  # a trend needs a day at least


def test_responses_dropped_this_week_are_a_problem() -> None:
    lost = kiosk(dropped=12, earlier_dropped=2, earlier_at=1_799_000_000)
    assert health.flash_problem(lost) == "10 responses lost this week (its log was full)"
    assert health.flash_problem(kiosk(dropped=12, earlier_dropped=12)) is None


# -- end to end on a store ------------------------------------------------------------------


def push_history(store: Store, device_id: str, zone: str, per_hour: dict[int, int],
                 first: datetime, last: datetime, *, days: tuple[int, ...] = tuple(range(7)),
                 ) -> int:
    """Responses as a kiosk pushes them: `per_hour[h]` in each local hour h of each day
    from `first` to `last` (both local dates) whose weekday is in `days`, one batch a
    day; returns the time of the last response."""
    tz = ZoneInfo(zone)
    seq = store.last_seq(device_id) or 0
    latest = 0
    day = first
    while day <= last:
        responses = []
        if day.weekday() in days:
            for hour, count in sorted(per_hour.items()):
                for n in range(count):
                    wall = int(datetime(day.year, day.month, day.day, hour,
                                        n * 60 // max(count, 1), tzinfo=tz).timestamp())
                    if wall > latest:
                        latest = wall
                    seq += 1
                    responses.append(Response(seq, 4, 5, "yes", 2.0, False, False, 1,
                                              seq * 10, wall, 0))
        if responses:
            store.store_batch(device_id, responses, [], {"boot": 1}, "wifi",
                              now=responses[-1].wall + 30)
        day += timedelta(days=1)
    return latest


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(tmp_path / "deskpulse.db") as opened:
        opened.add_site("acme")
        opened.add_site("acme/lyon", "store", time_zone=PARIS,
                        opening_hours="mon-sat 09:00-19:00, sun 10:00-18:00")
        yield opened


def kiosk_in(store: Store, device_id: str, site: str = "acme/lyon") -> None:
    store.set_key(device_id, bytes(32), replace=False,
                  facts=DeviceFacts(device_id, None, None, None))
    store.assign_kiosk(device_id, site)


BUSY = {hour: 6 for hour in range(9, 19)}  # 6 responses an hour while open
QUIET = {10: 1, 15: 1}  # two a day


def test_a_busy_kiosk_silent_two_hours_on_a_tuesday_afternoon_alerts(store: Store) -> None:
    kiosk_in(store, "busy")
    push_history(store, "busy", PARIS, BUSY, TUESDAY - timedelta(weeks=6),
                 TUESDAY - timedelta(days=1))
    # Today it answered until 14:00, then nothing.
    push_history(store, "busy", PARIS, {h: 6 for h in range(9, 14)}, TUESDAY, TUESDAY)
    last = at(TUESDAY, 13, 50)
    now = at(TUESDAY, 16, 10)
    (alert,) = health.health_alerts(store, now=now)
    assert alert["kind"] == "silent" and alert["device_id"] == "busy"
    assert alert["site"] == "acme/lyon"
    assert alert["since"] == health.iso(last)
    assert alert["key"] == f"silent:busy:{last}"
    assert "no response since Tue 17 Nov 13:50" in alert["message"]
    # The same silence later is the same problem: the same key.
    (later,) = health.health_alerts(store, now=now + 1800)
    assert later["key"] == alert["key"]
    # Within a few minutes, or on the last response's heels: nothing yet.
    assert health.health_alerts(store, now=at(TUESDAY, 14, 5)) == []
    # The subtree filter.
    store.add_site("acme/paris", "store")
    assert health.health_alerts(store, now=now, site="acme/paris") == []
    assert len(health.health_alerts(store, now=now, site="acme")) == 1
    with pytest.raises(DeskPulseError, match="no site 'acme/rome'"):
        health.health_alerts(store, now=now, site="acme/rome")


def test_a_quiet_kiosk_silent_two_hours_does_not_alert(store: Store) -> None:
    kiosk_in(store, "quiet")
    push_history(store, "quiet", PARIS, QUIET, TUESDAY - timedelta(weeks=6),
                 TUESDAY - timedelta(days=1))
    push_history(store, "quiet", PARIS, {10: 1}, TUESDAY, TUESDAY)
    assert health.health_alerts(store, now=at(TUESDAY, 16, 10)) == []


def test_closed_hours_do_not_alert_however_busy_the_kiosk_usually_is(store: Store) -> None:
    store.add_site("acme/morning", "store", time_zone=PARIS,
                   opening_hours="mon-sat 08:00-12:00")
    kiosk_in(store, "early", "acme/morning")
    # Busy all day in its history (staff use it after closing), but the store is closed
    # in the afternoon: an afternoon's silence is no alert.
    push_history(store, "early", PARIS, BUSY, TUESDAY - timedelta(weeks=6),
                 TUESDAY - timedelta(days=1))
    push_history(store, "early", PARIS, {9: 6, 10: 6, 11: 6}, TUESDAY, TUESDAY)
    assert health.health_alerts(store, now=at(TUESDAY, 18, 0)) == []
    # The next morning it is open again: two silent hours then are unusual.
    alerts = health.health_alerts(store, now=at(TUESDAY + timedelta(days=1), 10, 15))
    assert [a["kind"] for a in alerts] == ["silent"]


def test_a_store_closed_that_day_never_alerts(store: Store) -> None:
    store.add_site("acme/weekdays", "store", time_zone=PARIS,
                   opening_hours="mon-fri 09:00-19:00")
    kiosk_in(store, "shop", "acme/weekdays")
    push_history(store, "shop", PARIS, BUSY, TUESDAY - timedelta(weeks=6),
                 TUESDAY + timedelta(days=3), days=(0, 1, 2, 3, 4))  # to Friday
    saturday = TUESDAY + timedelta(days=4)
    assert health.health_alerts(store, now=at(saturday, 15)) == []
    assert health.health_alerts(store, now=at(saturday + timedelta(days=1), 15)) == []


def test_silence_on_the_day_clocks_go_back_is_judged_by_local_hours(store: Store) -> None:
    """Sunday 25 October 2026: Paris goes from UTC+2 to UTC+1 at 03:00. The kiosk is busy
    on Sunday afternoons from 14:00 to 16:00 local time only; silent from 13:59 to 16:20
    local that day it alerts (6 expected), which it would not if the day's hours were
    placed with the summer offset (15:00-17:20: 3 expected)."""
    sunday = datetime(2026, 10, 25, tzinfo=ZoneInfo(PARIS))
    kiosk_in(store, "sun")
    push_history(store, "sun", PARIS, {14: 3, 15: 3}, sunday - timedelta(weeks=8),
                 sunday - timedelta(days=1), days=(6,))
    push_history(store, "sun", PARIS, {13: 1}, sunday, sunday)
    last = int(datetime(2026, 10, 25, 13, 0, tzinfo=ZoneInfo(PARIS)).timestamp())
    now = int(datetime(2026, 10, 25, 16, 20, tzinfo=ZoneInfo(PARIS)).timestamp())
    (alert,) = health.health_alerts(store, now=now)
    assert alert["kind"] == "silent" and alert["since"] == health.iso(last)
    # One hour earlier the stretch holds hour 14 only: 3 expected, not yet unlikely.
    assert health.health_alerts(store, now=now - 3600) == []


def test_a_kiosk_synced_over_usb_only_is_not_judged_for_silence(store: Store) -> None:
    kiosk_in(store, "usb")
    tz = ZoneInfo(PARIS)
    responses = [Response(n + 1, 4, 5, "yes", 2.0, False, False, 1, n * 10,
                          int(datetime(2026, 11, 2, 10, n % 60, tzinfo=tz).timestamp())
                          + 86400 * (n // 60), 0) for n in range(60 * 14)]
    store.store_batch("usb", responses, [], {"boot": 1}, "serial", now=at(TUESDAY, 9))
    assert health.health_alerts(store, now=at(TUESDAY, 16)) == []


def test_refused_pushes_of_a_registered_kiosk_alert_once_per_reason(store: Store) -> None:
    kiosk_in(store, "k1")
    now = at(TUESDAY, 12)
    hour = now // 3600 * 3600
    store.record_refusals([
        RefusalCount("k1", "signature", hour - 3600, 7, hour - 10, "the signature ..."),
        RefusalCount("k1", "signature", hour, 5, now - 5, "the signature ..."),
        RefusalCount("ghost", "unknown_device", hour, 9, now - 5, "no device ghost"),
        RefusalCount("k1", "replayed", hour - 3 * 86400, 4, hour - 3 * 86400, "old"),
    ], now=now)
    (alert,) = health.health_alerts(store, now=now)
    assert alert["kind"] == "refused" and alert["device_id"] == "k1"
    assert alert["key"] == "refused:k1:signature"
    assert alert["since"] == health.iso(hour - 3600)
    assert alert["message"].startswith("k1: 12 pushes refused in the last 24 h: wrong key")
    assert set(alert) == {"kind", "device_id", "site", "since", "message", "key"}


def test_a_filling_flash_of_a_kiosk_in_touch_alerts(store: Store) -> None:
    kiosk_in(store, "full")
    now = at(TUESDAY, 12)
    status = {"boot": 1, "log": {"fs_fill": 0.91, "dropped": 0}}
    store.store_batch("full", [], [], status, "wifi", now=now - 60)
    (alert,) = health.health_alerts(store, now=now)
    assert alert["kind"] == "flash" and alert["key"] == "flash:full"
    assert "flash 91% full" in alert["message"]
    # Out of touch for longer than the trend window: its last status is old news.
    assert health.health_alerts(store, now=now + 8 * 86400) == []
