"""Resets told apart (kiosk/resets.py) on the real MicroPython interpreter: the port's folded
cause, the marker in the RTC memory and the RTC time's witness give panic, brownout,
watchdog, power-on, soft, deep sleep and the app's own reset (docs/reliability.md)."""

from __future__ import annotations

from conftest import mpy_json

LATEST = 4102444800
T = 1780000000  # some time in 2026

SETUP = """
import json
from harness import emit
from kiosk import resets
"""


def run(body: str) -> dict:
    return {row[0]: row[1] for row in mpy_json(SETUP + body)}


def test_every_cause_the_port_folds_is_told_apart_again_by_its_marker() -> None:
    r = run("""
out = {}
for cause in resets.CAUSES:
    if cause == resets.UNKNOWN:
        continue
    raw, memory = resets.port_facts(cause)
    out[cause] = [raw, memory.decode(), resets.classify(raw, memory)]
emit(["table", out])
""")
    table = r["table"]
    # What the port itself reports (ports/esp32/modmachine.c): a brownout as a power-on,
    # a panic and the app's machine.reset() as a hard reset.
    assert {cause: row[0] for cause, row in table.items()} == {
        "power_on": "power_on", "brownout": "power_on", "watchdog": "watchdog",
        "panic": "hard", "deliberate": "hard", "hard": "hard", "soft": "soft",
        "deep_sleep": "deep_sleep"}
    # A power-on is the one reset that clears the RTC memory.
    assert table["power_on"][1] == "" and table["brownout"][1] != ""
    for cause, (_, _, told) in table.items():
        assert told == cause, cause


def test_a_hard_reset_is_a_panic_unless_the_app_marked_its_own() -> None:
    r = run("""
emit(["running", resets.classify("hard", resets.MARK_RUNNING)])
emit(["deliberate", resets.classify("hard", resets.MARK_DELIBERATE)])
emit(["empty", resets.classify("hard", b"")])
emit(["no rtc memory", resets.classify("hard", None, True)])
emit(["foreign bytes", resets.classify("hard", b"DeskPulse:runX")])
emit(["crashes", list(resets.CRASHES)])
""")
    assert r["running"] == "panic"
    assert r["deliberate"] == "deliberate"
    # Without a marker the two cannot be told apart, and the time does not help: the RTC
    # runs on through both.
    assert r["empty"] == r["no rtc memory"] == r["foreign bytes"] == "hard"
    assert "panic" in r["crashes"] and "watchdog" in r["crashes"]
    assert "deliberate" not in r["crashes"] and "brownout" not in r["crashes"]


def test_a_power_on_that_the_rtc_lived_through_is_a_brownout() -> None:
    r = run("""
emit(["marker", resets.classify("power_on", resets.MARK_RUNNING)])
emit(["marker, time lost", resets.classify("power_on", resets.MARK_DELIBERATE, False)])
emit(["lost", resets.classify("power_on", b"")])
emit(["lost, time kept", resets.classify("power_on", b"", True)])
emit(["no rtc memory, time kept", resets.classify("power_on", None, True)])
emit(["no rtc memory, time lost", resets.classify("power_on", None, False)])
emit(["no evidence", resets.classify("power_on", None, None)])
""")
    assert r["marker"] == r["marker, time lost"] == "brownout"
    assert r["lost"] == "power_on"
    # The time speaks where the memory says nothing (no marker was ever written).
    assert r["lost, time kept"] == r["no rtc memory, time kept"] == "brownout"
    assert r["no rtc memory, time lost"] == r["no evidence"] == "power_on"


def test_resets_that_need_no_witness_stay_as_the_port_says() -> None:
    r = run("""
out = []
for raw in ("watchdog", "soft", "deep_sleep"):
    for memory in (resets.MARK_RUNNING, resets.MARK_DELIBERATE, b"", None):
        out.append([raw, resets.classify(raw, memory, True)])
emit(["out", out])
emit(["odd", [resets.classify("sdio"), resets.classify(""), resets.classify("panic", b"")]])
""")
    assert all(raw == told for raw, told in r["out"])
    # A cause the port never reports is unknown; one the simulator knows in full passes.
    assert r["odd"] == ["unknown", "unknown", "panic"]


def test_port_facts_refuses_a_cause_it_does_not_know() -> None:
    r = run("""
try:
    resets.port_facts("meteor")
    emit(["raised", False])
except ValueError as e:
    emit(["raised", str(e)])
""")
    assert "meteor" in r["raised"]


def test_the_time_witness_needs_the_previous_boot_to_have_known_the_time() -> None:
    r = run(f"""
anchors = [(3, 10, {T - 5000}, 1), (4, 20, {T - 100}, 1), (4, 900, {T}, 2), (5, 0, {T + 50}, 5)]
emit(["kept", resets.time_kept({T + 30}, anchors, 5, {LATEST})])
emit(["earlier than the latest", resets.time_kept({T - 50}, anchors, 5, {LATEST})])
emit(["epoch", resets.time_kept(946684800 + 3, anchors, 5, {LATEST})])
emit(["past the bound", resets.time_kept({LATEST + 1}, anchors, 5, {LATEST})])
emit(["an older boot", resets.time_kept({T - 4000}, anchors, 4, {LATEST})])
emit(["no boot before", resets.time_kept({T + 30}, anchors, 3, {LATEST})])
emit(["no rtc", resets.time_kept(0, anchors, 5, {LATEST})])
""")
    assert r["kept"] is True
    # The latest anchor of the previous boot counts, not an earlier one of it.
    assert r["earlier than the latest"] is False
    assert r["epoch"] is False and r["past the bound"] is False
    # Each boot is judged by its own previous boot: boot 4 by boot 3's anchor.
    assert r["an older boot"] is True
    # Boot 2 left no anchor: no evidence either way.
    assert r["no boot before"] is None
    assert r["no rtc"] is None


def test_the_boot_writes_the_markers_this_module_reads() -> None:
    # kiosk/hal/early.py marks each boot before the app's imports, so it spells the two
    # markers out instead of importing this module; the spellings must stay the same.
    r = run("""
from kiosk.hal import early
emit(["running", early._MARK_RUNNING == resets.MARK_RUNNING])
emit(["deliberate", early._MARK_DELIBERATE == resets.MARK_DELIBERATE])
""")
    assert r == {"running": True, "deliberate": True}
