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
out = [rig.survey.answer(True), rig.survey.face(4), rig.survey.face(0), rig.survey.face(2),
       rig.survey.face(1)]
rig.survey.answer(False)
out.append(rig.survey.answer(True))
emit({"out": out, "records": [fields(x) for x in rig.records()]})
""")
    # an answer at idle, faces outside the scale, and a face during the follow-up do nothing
    assert r["out"] == [False, False, False, True, False, False]
    assert [(x["rating"], x["scale"], x["told"]) for x in r["records"]] == [(2, 3, "no")]


def test_rapid_sessions_are_flagged_not_dropped() -> None:
    r = run("""
rig = Rig(make(rapid_interval_s=5))
rig.survey.face(4); rig.survey.answer(True)      # ends at t0
rig.wait(4950)
rig.survey.face(4); rig.survey.answer(True)      # 4.95 s later: rapid
rig.wait(5000)
rig.survey.face(2); rig.survey.answer(False)     # exactly 5 s later: not rapid
rig.wait(100)
rig.survey.face(1); rig.wait(10000)              # tapped on the thank-you screen: rapid
emit({"records": [fields(x) for x in rig.records()]})
""")
    assert [x["rapid"] for x in r["records"]] == [False, True, False, True]
    assert [x["seq"] for x in r["records"]] == [1, 2, 3, 4]


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
rig.survey.face(3); rig.survey.answer(True)
emit({{"records": [fields(x) for x in rig.records()], "idle": idle}})
""")
    assert r["records"][0]["closed"] is closed
    assert r["idle"].startswith("[screen] closed" if closed else "[screen] idle")


def test_hours_are_not_judged_while_the_clock_is_unknown() -> None:
    r = run("""
rig = Rig(make(opening_hours={}))   # never open
rig.survey.face(3); rig.survey.answer(True)
rig.clock.set_wall(1795424400, 1)
rig.wait(5000)
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
