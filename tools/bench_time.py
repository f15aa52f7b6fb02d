"""Benchmark the share of responses left without a time on the demo's USB kiosk (issue 13).

Run from the repository root:
    .venv/bin/python tools/bench_time.py [--before HOST_DIR] [--json]

The story is `deskpulse.sim.demo.usb_story()` of this tree: a morning with the clock set,
a power cut (customers answer while the clock is unknown), the kiosk unplugged for a
quarter of an hour and its clock set again by the manager's laptop, a watchdog reset; then
`deskpulse sync` over the console pty. Each case plays the same scripts on a fresh state
folder and database with the firmware and host package of the tree named, in a child
process, and reads the report (flagged responses included):

- now: this tree (the ESP32 RTC carries the time across the watchdog reset; the host
  bounds the power cut's responses by the boots around them).
- intervals only: this tree with the last run started by a power-on instead, so nothing
  is carried: what the host's intervals do alone.
- before (with --before, the `host` folder of a copy of the tree before issue 13 item 7;
  its simulator has no reset causes and its firmware no carry): the anchor.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "host" / "deskpulse" / "sim" / "demo.py"


def play(power_on_only: bool) -> dict[str, Any]:
    """Play the story with whatever `deskpulse` is first on sys.path; the scripts come
    from this tree's demo.py whatever that package is."""
    from deskpulse.device import boards
    from deskpulse.device.sync import sync
    from deskpulse.reports import figures as report
    from deskpulse.sim import simulator
    from deskpulse.store import open_store

    spec = importlib.util.spec_from_file_location("story", DEMO)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {DEMO}")
    story = importlib.util.module_from_spec(spec)
    sys.modules["story"] = story
    spec.loader.exec_module(story)
    takes_cause = "reset_cause" in inspect.signature(simulator.run).parameters
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as quiet:
        state, database = Path(tmp) / "kiosk", Path(tmp) / "deskpulse.db"
        state.mkdir()
        board = boards.board_path(story.BOARD)
        config = state / "config.json"
        config.write_text(json.dumps(story.CONFIG))
        for name, text, cause in story.usb_story():
            path = state / name
            path.write_text(text)
            options = {"reset_cause": "power_on" if power_on_only else cause} \
                if takes_cause else {}
            code = simulator.run(board, state, script=path, out=quiet,
                                 config=config if name == story.USB_SCRIPTS[0] else None,
                                 **options)
            if code != 0:
                raise SystemExit(f"{name}: the simulated kiosk exited {code}")
        plugged = state / "plugged-in.txt"
        plugged.write_text("# the manager syncs\n")
        with simulator.Simulator(board, state, script=plugged) as kiosk:
            sync(kiosk.console_path, database)
        with open_store(database) as store:
            store.describe_device(story.USB_DEVICE, time_zone=story.USB_ZONE)
            rep = report.build_report(store, include_flagged=True)
    return {"responses": rep["responses"], "time_unknown": rep["time_unknown"]}


def case(host: Path, power_on_only: bool = False) -> dict[str, Any]:
    command = [sys.executable, __file__, "--play"] + (["--power-on"] if power_on_only else [])
    env = {**os.environ, "PYTHONPATH": str(host)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the case on {host} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="the host folder of the tree before")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--play", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--power-on", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.play:
        print(json.dumps(play(args.power_on)))
        return
    results = {"now": case(REPO / "host"),
               "intervals only": case(REPO / "host", power_on_only=True)}
    if args.before:
        results["before"] = case(args.before.resolve())
    if args.json:
        print(json.dumps(results))
        return
    print(f"{'case':<16}{'responses':>10}{'time unknown':>14}{'share':>8}")
    for name, r in results.items():
        share = r["time_unknown"] / r["responses"] if r["responses"] else 0.0
        print(f"{name:<16}{r['responses']:>10}{r['time_unknown']:>14}{share:>8.1%}")


if __name__ == "__main__":
    main()
