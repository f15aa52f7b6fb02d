"""The simulator's virtual clock (firmware/kiosk/hal/simclock.py): timers at their own
simulated moments, also inside a long `wait`; bounded simulated chips and an honest exit;
a host sync against a kiosk on the virtual clock loses nothing."""

from __future__ import annotations

import json
import random
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import BOARDS, FIRMWARE, micropython_binary
from deskpulse import cli
from deskpulse.device.inspect import read_state
from deskpulse.device.sync import sync
from deskpulse.sim.simulator import CONSOLE_LOG_NAME, Simulator
from deskpulse.store import open_store

BOARD = BOARDS / "esp32-devkitc-ssd1680.json"
FOLLOW_UP_TIMEOUT_S = 10  # the firmware's default follow_up_timeout_s
RAPID_INTERVAL_S = 5  # and rapid_interval_s


@dataclass(frozen=True)
class Session:
    rating: int
    told: str  # "yes", "no" or "no_answer"
    rate_at: float  # script seconds when the face is tapped (presses take no script time)
    end_at: float  # script seconds when the session is due to be stored


def day(sessions: int, seed: int) -> tuple[str, list[Session]]:
    """A script and its own timeline: customers who answer after 2-6 s, some who walk
    away (the follow-up times out at 10 s, and the next customer comes 15-60 s after the
    tap), the next customer 8-15 s after a session ends (never rapid)."""
    rng = random.Random(seed)
    lines = ["wait 5  # the first full refresh of the panel"]
    timeline: list[Session] = []
    now = 5.0
    for _ in range(sessions):
        rating = rng.randint(1, 4)
        lines.append(f"rate {rating}")
        if rng.random() < 0.1:
            walk_away = rng.randint(15, 60)
            lines.append(f"wait {walk_away}  # no answer: stored at the timeout")
            timeline.append(Session(rating, "no_answer", now, now + FOLLOW_UP_TIMEOUT_S))
            now += walk_away
            continue
        answer_after = rng.randint(2, 6)
        told = rng.choice(["yes", "yes", "no"])
        gap = rng.randint(8, 15)
        lines += [f"wait {answer_after}", told, f"wait {gap}"]
        timeline.append(Session(rating, told, now, now + answer_after))
        now += answer_after + gap
    lines.append("exit")
    return "\n".join(lines) + "\n", timeline


def run_sim(tmp_path: Path, script: str, *extra: str) -> int:
    path = tmp_path / "script.txt"
    path.write_text(script)
    return cli.main(["sim", "--state", str(tmp_path / "state"), "--script", str(path), *extra])


def final_status(tmp_path: Path) -> dict:
    """The status the kiosk printed when its script said exit."""
    log = (tmp_path / "state" / CONSOLE_LOG_NAME).read_text(errors="replace")
    last = [line for line in log.splitlines() if line.startswith('@{"status"')][-1]
    return json.loads(last[1:])["status"]


@pytest.mark.slow
def test_1000_sessions_keep_the_scripts_timeline(tmp_path: Path) -> None:
    """Every stored response against the script's own timeline: a walked-away session is
    stored at its timeout (not at the end of the wait), answers carry their script
    latency, nobody is flagged rapid, and the panel keeps refreshing to the end (the
    default heap, about 3000 refreshes)."""
    script, timeline = day(1000, seed=7)
    assert run_sim(tmp_path, script) == 0
    state = read_state(BOARD, tmp_path / "state")
    got = state.responses
    assert [(r["seq"], r["rating"], r["told_next"]) for r in got] == [
        (i + 1, s.rating, s.told) for i, s in enumerate(timeline)]
    assert not [r["seq"] for r in got if r["rapid"]]
    for r, s in zip(got, timeline, strict=True):
        expected = FOLLOW_UP_TIMEOUT_S if s.told == "no_answer" else s.end_at - s.rate_at
        # The answer's press takes a few 10 ms polls on top of the scripted wait.
        assert expected <= r["latency_s"] <= expected + 0.3, (r, s)
    # Presses and the CPU's own time add a little to each step of the timeline: uptimes
    # are whole seconds, so a step may also round by one. Between its jumps the virtual
    # clock runs on the host's ticks, so a host too busy to schedule the simulator for a
    # moment (make test on two cores) stretches a rare step by a second or two; a step
    # that comes early, one late by more than 5 s, or lateness in more than one step in a
    # hundred is the clock's fault.
    steps = [(b["uptime_s"] - a["uptime_s"], t.end_at - s.end_at)
             for a, b, s, t in zip(got, got[1:], timeline, timeline[1:], strict=False)]
    off = [(i + 2, seen, due) for i, (seen, due) in enumerate(steps)
           if not due - 1 <= seen <= due + 5]
    assert not off, off[:5]
    late = [(i + 2, seen, due) for i, (seen, due) in enumerate(steps) if seen > due + 1.5]
    assert len(late) <= len(steps) // 100, late[:5]
    display = final_status(tmp_path)["display"]
    assert display["error"] is None and display["failures"] == 0
    assert display["full"] + display["partial"] >= 2 * len(timeline)


@pytest.mark.slow
def test_a_timer_fires_inside_a_long_wait(tmp_path: Path) -> None:
    """The issue's case: a walked-away customer is stored at the timeout, so the next
    customer a minute later is not flagged rapid; an hour's wait is also timed, on the
    clock the record is stamped with."""
    script = ("clock 2026-11-23T10:00:00Z\nwait 5\nrate 2\nwait 60\nrate 3\nwait 3\nyes\n"
              "wait 3600\nrate 4\nwait 2\nno\nexit\n")
    assert run_sim(tmp_path, script) == 0
    got = read_state(BOARD, tmp_path / "state").responses
    assert [(r["rating"], r["told_next"], r["rapid"]) for r in got] == [
        (2, "no_answer", False), (3, "yes", False), (4, "no", False)]
    start = 1795428000
    assert got[0]["wall"] - start == pytest.approx(15, abs=1)  # 5 + the 10 s timeout
    assert got[1]["wall"] - start == pytest.approx(68, abs=1)
    assert got[2]["wall"] - start == pytest.approx(3670, abs=1)
    assert got[2]["uptime_s"] - got[0]["uptime_s"] == pytest.approx(3655, abs=1)


def test_realtime_pacing_keeps_the_same_timeline(tmp_path: Path) -> None:
    script = "wait 5\nrate 1\nwait 30\nrate 4\nwait 2\nyes\nexit\n"
    assert run_sim(tmp_path, script, "--realtime") == 0
    got = read_state(BOARD, tmp_path / "state").responses
    assert [(r["rating"], r["told_next"], r["rapid"]) for r in got] == [
        (1, "no_answer", False), (4, "yes", False)]
    assert got[1]["uptime_s"] - got[0]["uptime_s"] == pytest.approx(22, abs=1)


DEAD_PANEL_ENTRY = """\
import sys
sys.path.insert(0, {firmware!r})
from kiosk.hal import simpanel

_make_pair = simpanel.make_pair


def dead_pair(*args, **options):
    panel, driver = _make_pair(*args, **options)
    panel.dead = True  # BUSY never clears: the driver gives up and the display task fails
    return panel, driver


simpanel.make_pair = dead_pair
import sim_main  # noqa: E402,F401  (runs the simulator on the arguments)
"""


def test_a_run_whose_display_failed_exits_non_zero_saying_so(tmp_path: Path) -> None:
    entry = tmp_path / "dead_panel_main.py"
    entry.write_text(DEAD_PANEL_ENTRY.format(firmware=str(FIRMWARE)))
    script = tmp_path / "s.txt"
    script.write_text("wait 5\nrate 3\nwait 2\nyes\nwait 60\nexit\n")
    state = tmp_path / "state"
    proc = subprocess.run(
        [micropython_binary(), "-X", "heapsize=1M", str(entry), "--board", str(BOARD),
         "--state", str(state), "--script", str(script)],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "deskpulse: the simulated kiosk failed: display failed" in proc.stderr
    # The kiosk itself kept collecting without a screen.
    assert [r["rating"] for r in read_state(BOARD, state).responses] == [3]


@pytest.mark.slow
def test_a_sync_against_a_kiosk_on_the_virtual_clock_loses_nothing(tmp_path: Path) -> None:
    """`deskpulse sync` over the console, again and again while the script plays on the
    virtual clock (the kiosk keeps real time while the host talks, and races on between
    syncs), then after the script: every scripted response is in the database once."""
    script_text, timeline = day(60, seed=3)
    script = tmp_path / "day.txt"
    script.write_text(script_text.replace("exit\n", "# no exit: it waits for the host\n"))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"version": 1, "device_id": "virtual-1"}))
    database = tmp_path / "db.sqlite"
    pulled = duplicates = syncs = 0
    deadline = time.monotonic() + 300  # a bound for a stuck run, not an expectation
    with Simulator(BOARD, tmp_path / "state", script=script, config=config) as kiosk:
        while pulled < len(timeline):
            assert kiosk.wait(0) is None, "the kiosk stopped"
            assert time.monotonic() < deadline, f"{pulled} of {len(timeline)} synced"
            summary = sync(kiosk.console_path, database)
            pulled += summary.new
            duplicates += summary.duplicates
            syncs += 1
            time.sleep(1.5)  # past the kiosk's real-time hold: it races on between syncs
        with open_store(database) as store:
            stored = store.responses_of("virtual-1")
    assert syncs >= 2
    assert duplicates == 0
    assert [(r["seq"], r["rating"]) for r in stored] == [
        (i + 1, s.rating) for i, s in enumerate(timeline)]
