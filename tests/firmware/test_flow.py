"""The survey flow on the real MicroPython interpreter, with a fake clock that wraps."""

from __future__ import annotations

import pytest

from conftest import mpy_json

SETUP = """
from harness import Rig, emit, FakeTicks
from kiosk import config as cfg, record
def make(**overrides):
    c, problems = cfg.validate(overrides)
    assert not problems, problems
    return c
def fields(rec):
    return {"seq": rec[record.SEQ], "rating": rec[record.RATING], "scale": rec[record.SCALE],
            "told": record.TOLD_NAMES[rec[record.TOLD]], "latency_ds": rec[record.LATENCY_DS],
            "rapid": bool(rec[record.FLAGS] & record.FLAG_RAPID),
            "closed": bool(rec[record.FLAGS] & record.FLAG_CLOSED),
            "boot": rec[record.BOOT], "uptime_s": rec[record.UPTIME_S], "wall": rec[record.WALL],
            "config_version": rec[record.CONFIG_VERSION]}
"""


def run(body: str) -> dict:
    out = mpy_json(SETUP + body)
    assert out, "the MicroPython script printed no result"
    return out[-1]


def test_rate_then_yes_is_one_record_and_screens_follow_the_flow() -> None:
    r = run("""
rig = Rig(make(version=7))
rig.wait(1000)
rig.survey.face(3)
rig.wait(2400)
rig.survey.answer(True)
views_at_answer = list(rig.views)
rig.wait(2900)
state_before = rig.survey.state
rig.wait(200)
emit({"records": [fields(x) for x in rig.records()], "views": views_at_answer,
      "state_before": state_before, "state_after": rig.survey.state, "last": rig.views[-1]})
""")
    assert r["records"] == [{
        "seq": 1, "rating": 3, "scale": 4, "told": "yes", "latency_ds": 24, "rapid": False,
        "closed": False, "boot": 1, "uptime_s": 3, "wall": 0, "config_version": 7,
    }]
    kinds = [v.split(":")[0] for v in r["views"]]
    assert kinds == ["[screen] idle", "[screen] follow_up", "[screen] thanks"]
    assert "Thank you!" in r["views"][-1]
    assert r["state_before"] == 2 and r["state_after"] == 0  # thanks lasts thank_you_s = 3 s
    assert r["last"].startswith("[screen] idle")


def test_no_answer_shows_the_apology_line() -> None:
    r = run("""
rig = Rig(make())
rig.survey.face(1)
rig.wait(500)
rig.survey.answer(False)
emit({"records": [fields(x) for x in rig.records()], "last": rig.views[-1]})
""")
    assert [(x["rating"], x["told"]) for x in r["records"]] == [(1, "no")]
    assert "Sorry" in r["last"]


def test_follow_up_timeout_records_no_answer_exactly_at_the_timeout() -> None:
    r = run("""
rig = Rig(make(follow_up_timeout_s=10))
rig.survey.face(4)
rig.wait(9950)
before = len(rig.records())
rig.wait(50)
emit({"before": before, "records": [fields(x) for x in rig.records()], "state": rig.survey.state})
""")
    assert r["before"] == 0
    assert [(x["told"], x["latency_ds"]) for x in r["records"]] == [("no_answer", 100)]
    assert r["state"] == 2


def test_taps_that_do_not_fit_the_state_are_ignored() -> None:
    r = run("""
rig = Rig(make(scale=3))
out = [rig.survey.answer(True), rig.survey.face(4), rig.survey.face(0), rig.survey.face(2)]
rig.survey.answer(False)
out.append(rig.survey.answer(True))
emit({"out": out, "records": [fields(x) for x in rig.records()]})
""")
    # an answer at idle, faces outside the scale, an answer on the thank-you screen
    assert r["out"] == [False, False, False, True, False]
    assert [(x["rating"], x["scale"], x["told"]) for x in r["records"]] == [(2, 3, "no")]


# -- a press counts for the screen the customer saw ----------------------------------------

def test_a_double_press_of_the_best_face_does_not_answer_its_own_question() -> None:
    """On button boards the best face is also "yes": the second press of a double press
    arrives while the follow-up is still being drawn, and must not answer it."""
    r = run("""
rig = Rig(make(), refresh_ms=400)
rig.wait(1000)
first = rig.press_face(4)
rig.wait(150)                  # the panel is still drawing the question
second = rig.press_answer(True)
rig.wait(20000)
emit({"first": first, "second": second, "early": rig.survey.early_presses,
      "records": [fields(x) for x in rig.records()]})
""")
    assert r["first"] is True and r["second"] is False and r["early"] == 1
    assert [(x["rating"], x["told"]) for x in r["records"]] == [(4, "no_answer")]


@pytest.mark.parametrize(("after_ms", "taken"), [(650, False), (699, False), (700, True)])
def test_input_waits_until_the_screen_shows_and_the_guard_passes(after_ms: int,
                                                                 taken: bool) -> None:
    # The follow-up is on the glass 400 ms after the face; the guard is 300 ms more.
    r = run(f"""
rig = Rig(make(input_guard_ms=300), refresh_ms=400)
rig.wait(1000)
rig.press_face(3)
rig.wait({after_ms}, step=1)
emit({{"taken": rig.press_answer(True), "records": len(rig.records())}})
""")
    assert r["taken"] is taken and r["records"] == int(taken)


def test_a_failed_panel_does_not_lock_customers_out() -> None:
    r = run("""
rig = Rig(make(input_guard_ms=300), refresh_ms=400)
rig.panel.error = "BUSY stuck"
rig.panel.refresh_ms = 10 ** 9   # nothing ever reaches the glass
rig.survey.show_idle()
rig.wait(300)
taken = rig.press_face(2)
rig.wait(300)
emit({"taken": [taken, rig.press_answer(False)], "records": len(rig.records())})
""")
    assert r["taken"] == [True, True] and r["records"] == 1


def test_a_face_during_the_follow_up_is_the_next_customer() -> None:
    """The previous customer walked away: their rating is stored with no answer, and the
    new press is a new customer's rating, not lost and not an answer."""
    r = run("""
rig = Rig(make(follow_up_timeout_s=10))
rig.wait(1000)
rig.press_face(2)
rig.wait(4000)
taken = rig.press_face(3)
views = list(rig.views)
rig.wait(2000)
rig.press_answer(True)
emit({"taken": taken, "views": views, "records": [fields(x) for x in rig.records()]})
""")
    assert r["taken"] is True
    assert [(x["rating"], x["told"], x["latency_ds"]) for x in r["records"]] == [
        (2, "no_answer", 40), (3, "yes", 20)]
    # Each follow-up shows the face its own customer chose.
    follow_ups = [v for v in r["views"] if v.startswith("[screen] follow_up")]
    assert ["{face 2/4}" in follow_ups[0], "{face 3/4}" in follow_ups[1]] == [True, True]


# -- misuse: a queue is kept, hammering is flagged -------------------------------------------

def test_a_queue_at_a_busy_counter_is_not_flagged() -> None:
    # Each customer reads before tapping (1.5 s, 2 s); the next one taps 1.2 s after the
    # thank-you screen clears: well within rapid_interval_s of the previous one.
    r = run("""
rig = Rig(make(rapid_interval_s=10, min_read_ms=600), refresh_ms=400)
rig.wait(1500)
for rating in (4, 2, 3, 1):
    rig.press_face(rating)
    rig.wait(2000)
    rig.press_answer(rating > 2)
    rig.wait(3000 + 400 + 1200)
emit({"records": [fields(x) for x in rig.records()]})
""")
    assert [(x["rating"], x["rapid"]) for x in r["records"]] == [
        (4, False), (2, False), (3, False), (1, False)]


def test_hammering_is_flagged_not_dropped() -> None:
    # A child presses as soon as each screen takes input: every session after the first
    # starts within rapid_interval_s of the previous one and its taps beat reading.
    r = run("""
rig = Rig(make(rapid_interval_s=10, min_read_ms=600, input_guard_ms=300), refresh_ms=400)
rig.wait(5000)
for i in range(4):
    while not rig.press_face(4):
        rig.wait(50)
    while not rig.press_answer(True):
        rig.wait(50)
emit({"records": [fields(x) for x in rig.records()], "early": rig.survey.early_presses})
""")
    assert len(r["records"]) == 4 and r["early"] > 0
    assert [x["rapid"] for x in r["records"]] == [False, True, True, True]


def test_one_quick_customer_after_a_quiet_spell_is_not_flagged() -> None:
    r = run("""
rig = Rig(make(rapid_interval_s=10, min_read_ms=600), refresh_ms=400)
rig.wait(1000); rig.press_face(4); rig.wait(2000); rig.press_answer(True)
rig.wait(60000)
while not rig.press_face(1):
    rig.wait(50)
while not rig.press_answer(False):
    rig.wait(50)
emit({"records": [fields(x) for x in rig.records()]})
""")
    assert [x["rapid"] for x in r["records"]] == [False, False]


@pytest.mark.parametrize(
    ("local_time", "closed"),
    [
        ("2026-11-23T08:59:00Z", True),   # Monday, before opening
        ("2026-11-23T09:00:00Z", False),
        ("2026-11-23T16:59:00Z", False),
        ("2026-11-23T17:00:00Z", True),
        ("2026-11-22T12:00:00Z", True),   # Sunday: no hours at all
    ],
)
def test_opening_hours_in_local_time(local_time: str, closed: bool) -> None:
    # Store clock is UTC+1: local 09:00 is 08:00 UTC.
    r = run(f"""
from kiosk.hal.simscript import _parse_time
rig = Rig(make(utc_offset_min=60, opening_hours={{"mon": ["09:00-17:00"], "sat": ["10:00-12:00"]}}))
rig.clock.set_wall(_parse_time("{local_time}") - 3600, 1)
rig.survey.show_idle()
idle = rig.views[-1]
woke = not rig.survey.face(3)   # on the closed screen a press only brings up the question
if woke:
    rig.survey.face(3)
rig.survey.answer(True)
emit({{"records": [fields(x) for x in rig.records()], "idle": idle, "woke": woke}})
""")
    assert r["records"][0]["closed"] is closed
    assert r["woke"] is closed
    assert r["idle"].startswith("[screen] closed" if closed else "[screen] idle")


def test_hours_are_not_judged_while_the_clock_is_unknown() -> None:
    r = run("""
rig = Rig(make(opening_hours={}))   # never open
rig.survey.face(3); rig.survey.answer(True)
rig.clock.set_wall(1795424400, 1)
rig.wait(5000)
rig.survey.face(3)   # the closed screen: brings up the question
rig.survey.face(3); rig.survey.answer(True)
emit({"records": [fields(x) for x in rig.records()]})
""")
    assert [x["closed"] for x in r["records"]] == [False, True]
    assert r["records"][0]["wall"] == 0
    assert r["records"][1]["wall"] == 1795424405


def test_idle_screen_switches_to_closed_when_hours_end() -> None:
    r = run("""
from kiosk.hal.simscript import _parse_time
rig = Rig(make(opening_hours={"mon": ["09:00-17:00"]}))
rig.clock.set_wall(_parse_time("2026-11-23T16:59:00Z"), 1)
rig.survey.show_idle()
rig.wait(90000, step=1000)
emit({"views": rig.views})
""")
    assert r["views"][-2].startswith("[screen] idle")
    assert r["views"][-1].startswith("[screen] closed")


def test_reboot_mid_session_loses_only_the_unfinished_session() -> None:
    r = run("""
rig = Rig(make())
rig.survey.face(4); rig.survey.answer(True)
rig.wait(6000)
rig.survey.face(2)                     # power goes before the follow-up is answered
image, blocks = rig.image, rig.blocks
rig.close()
rig = Rig(make(), image=image, blocks=blocks, boot=2)
state = rig.survey.state
rig.survey.face(1); rig.survey.answer(False)
emit({"state": state, "records": [fields(x) for x in rig.records()]})
""")
    assert r["state"] == 0
    assert [(x["seq"], x["rating"], x["boot"]) for x in r["records"]] == [(1, 4, 1), (2, 1, 2)]


def test_a_new_config_applies_after_the_session_in_progress() -> None:
    r = run("""
rig = Rig(make(scale=4, version=1))
rig.survey.face(4)
rig.survey.apply_config(make(scale=3, version=2))
rig.survey.answer(True)
rig.wait(4000)
rig.survey.face(3); rig.survey.answer(True)
emit({"records": [fields(x) for x in rig.records()]})
""")
    assert [(x["rating"], x["scale"], x["config_version"]) for x in r["records"]] == [
        (4, 4, 1), (3, 3, 2)]


# -- the closed screen asks nothing; customer screens carry no technician text ------------

def test_the_closed_screen_invites_no_tap_and_a_press_only_brings_up_the_question() -> None:
    r = run("""
rig = Rig(make(opening_hours={}, follow_up_timeout_s=10))   # never open
rig.clock.set_wall(1795424400, 1)
rig.survey.show_idle()
closed = [rig.screen.kind, list(rig.screen.options), rig.screen.note]
started = rig.survey.face(2)
after_press = [rig.screen.kind, len(rig.screen.options), len(rig.records())]
rig.wait(10000)                   # nobody rates: back to the closed screen
back = rig.screen.kind
rig.survey.face(4)                # wakes it again
rig.survey.face(4); rig.survey.answer(True)
rig.wait(3000)
emit({"closed": closed, "started": started, "after_press": after_press, "back": back,
      "records": [fields(x) for x in rig.records()], "last": rig.screen.kind})
""")
    # No faces, no question: nothing on the closed screen asks for a press.
    assert r["closed"] == ["closed", [], ""]
    assert r["started"] is False and r["after_press"] == ["idle", 4, 0]
    assert r["back"] == "closed"
    assert [(x["rating"], x["closed"]) for x in r["records"]] == [(4, True)]
    assert r["last"] == "closed"


def test_customer_screens_carry_no_technician_text_only_a_neutral_mark() -> None:
    r = run("""
rig = Rig(make())
plain = [rig.screen.note, rig.screen.mark]
rig.survey.config_problem = True
rig.survey.show_idle()
problem = [rig.screen.note, rig.screen.mark]
rig.survey.config_problem = False
rig.log.dropped_total = 12
rig.survey.show_idle()
emit({"plain": plain, "problem": problem, "dropped": [rig.screen.note, rig.screen.mark],
      "views": rig.views})
""")
    assert r["plain"] == ["", False]
    assert r["problem"] == ["", True] and r["dropped"] == ["", True]
    assert not any("service:" in v or "flash full" in v for v in r["views"])


def test_the_service_screen_waits_for_the_session_in_progress_and_times_out() -> None:
    r = run("""
rig = Rig(make(thank_you_s=3))
rig.survey.service_text = lambda: ("Service: all well", "id desk-7")
rig.wait(1000)
rig.press_face(2)
rig.survey.request_service()          # the technician, while a customer answers
during = rig.screen.kind
rig.wait(1000)
rig.press_answer(True)
rig.wait(3000)                        # the thank-you, then the service screen
opened = [rig.screen.kind, rig.screen.title, rig.survey.state]
ignored = rig.survey.face(3)          # a customer press on the service screen
rig.wait(59000)
still = rig.screen.kind
rig.wait(1000)
timed_out = rig.screen.kind
rig.survey.request_service()
again = rig.screen.kind
rig.survey.request_service()
emit({"during": during, "opened": opened, "ignored": ignored, "still": still,
      "timed_out": timed_out, "again": again, "closed_by_button": rig.screen.kind,
      "records": [fields(x) for x in rig.records()]})
""")
    assert r["during"] == "follow_up"
    assert [(x["rating"], x["told"]) for x in r["records"]] == [(2, "yes")]
    assert r["opened"] == ["service", "Service: all well", 3]
    assert r["ignored"] is False
    assert r["still"] == "service" and r["timed_out"] == "idle"
    assert r["again"] == "service" and r["closed_by_button"] == "idle"
