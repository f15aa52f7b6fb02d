"""`make demo`: a simulated kiosk through a scripted day of customers, a power cut, and a
USB serial sync into the host database.

Runs the real firmware in `micropython` with the simulated hardware; `deskpulse sync` then
talks to it over its console pty exactly as it would over a USB cable.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

from deskpulse import boards, db, simulator
from deskpulse.cli import firmware_failure, format_response, format_status
from deskpulse.errors import DeskPulseError
from deskpulse.inspect import read_state
from deskpulse.sync import sync
from deskpulse.sync_cli import format_devices, format_summary

STATE = Path("state/demo")
DATABASE = STATE / "deskpulse.db"
BOARD = "esp32-devkitc-ssd1680"
CONFIG = {
    "version": 1,
    "device_id": "demo-desk-1",
    "opening_hours": {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
    "utc_offset_min": 60,
}


def day_script(customers: int, seed: int, start: str | None) -> str:
    """A day at the counter: mostly content customers, some who were not told what happens
    next, one who walks off without answering, a child pressing twice, an after-hours tap."""
    rng = random.Random(seed)
    lines = [f"# demo day, seed {seed}"]
    if start:
        lines.append(f"clock {start}  # a host sync set the clock")
    for _ in range(customers):
        told = rng.random() < 0.7
        rating = rng.choices([1, 2, 3, 4], weights=[1, 2, 4, 5] if told else [3, 4, 3, 1])[0]
        lines.append(f"rate {rating}")
        if rng.random() < 0.08:
            lines.append("wait 11  # walked away: the follow-up times out")
        else:
            lines += [f"wait {rng.randint(1, 6)}", "yes" if told else "no"]
        lines.append(f"wait {rng.randint(60, 900)}")
    lines += ["rate 4", "yes", "wait 1", "rate 4", "yes  # pressed again at once: rapid",
              "wait 40000  # into the evening", "rate 1", "no  # after hours: closed", "exit"]
    return "\n".join(lines) + "\n"


def run_day(board: Path, script: str, name: str, config: Path | None) -> None:
    script_path = STATE / f"{name}.txt"
    script_path.write_text(script)
    print(f"\n== {name}: {sum(1 for x in script.splitlines() if x.startswith('rate'))} "
          f"customers (script {script_path}) ==", flush=True)
    code = simulator.run(board, STATE, script=script_path, config=config)
    if code != 0:
        raise DeskPulseError(firmware_failure(STATE, code))


def main() -> int:
    try:
        board = boards.board_path(BOARD)
        if STATE.exists():
            shutil.rmtree(STATE)
        STATE.mkdir(parents=True)
        config = STATE / "config.json"
        config.write_text(json.dumps(CONFIG, indent=2))
        run_day(board, day_script(24, seed=1, start="2026-11-23T08:05:00Z"), "monday", config)
        # Power off and on: the clock is lost, the log and sequence numbers are not.
        run_day(board, day_script(6, seed=2, start=None), "after-a-power-cut", None)
        state = read_state(board, STATE)
        print("\n== what the device stored ==")
        for r in state.responses:
            print(format_response(r))
        print("\n== device status ==")
        print(format_status(state.status))
        print(f"time anchors (boot, uptime s, unix time, source): {state.anchors}")
        sync_over_usb(board)
    except DeskPulseError as e:
        print(f"deskpulse: {e}", file=sys.stderr)
        return 2
    print(f"\nconsole log: {STATE / simulator.CONSOLE_LOG_NAME}; database: {DATABASE}; "
          f"state kept in {STATE}/ (run `deskpulse inspect --state {STATE}`)")
    return 0


def sync_over_usb(board: Path) -> None:
    """A manager plugs in the cable: the kiosk keeps running while `deskpulse sync` pulls
    every response into the database and only then lets the device free its flash."""
    script = STATE / "plugged-in.txt"
    script.write_text("# the kiosk stays on while the manager syncs\n")
    print("\n== deskpulse sync over the kiosk's console (USB serial) ==", flush=True)
    with simulator.Simulator(board, STATE, script=script) as kiosk:
        summary = sync(kiosk.console_path, DATABASE)
    print(format_summary(summary))
    print("\n== deskpulse devices ==")
    conn = db.connect(DATABASE)
    try:
        print(format_devices(db.devices(conn)))
    finally:
        conn.close()
    after = read_state(board, STATE)
    print(f"\non the device after the sync: {after.status['log']['unacked']} unacknowledged, "
          f"flash {100 * after.status['log']['fs_fill']:.1f}% full; next seq "
          f"{after.status['log']['next_seq']}")


if __name__ == "__main__":
    sys.exit(main())
