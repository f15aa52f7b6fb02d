"""Benchmark `deskpulse sim`: sessions per second and CPU per session on the virtual clock
against the real-time pacing (`--realtime`), with the firmware's own CPU as the anchor.

Run from the repository root:
    .venv/bin/python tools/bench_sim.py [--sessions N] [--anchor-sessions K]
                                        [--before HOST_DIR] [--json]

The script: a counter's busy hour repeated, N sessions (default 1000) of "rate r, wait 2,
yes|no, wait 8": a customer taps a face, answers two seconds later, the next one comes
eight seconds after that (not rapid). Each run is a whole `python -m deskpulse.cli sim`
process (the host's console relay and log included) on a fresh state folder; CPU is the
user + system time of that process and its `micropython` child. A run of the same command
on an `exit`-only script measures start-up, which is taken off before dividing by N.

- virtual: this tree's `deskpulse sim` (the virtual clock).
- realtime: the same with `--realtime` (taps paced by the wall clock, waits skipped).
- before: with --before (the `host` folder of a copy of the tree before the virtual
  clock), that tree's `deskpulse sim`, whose presses were paced by the wall clock and
  whose `wait` jumped the clock and slept 80 ms.
- anchor, the firmware itself: K sessions (default 6) of the same script played by the
  wall clock throughout (`sim_main.py --realtime --paced-waits`, straight on
  `micropython`, no host relay), so the kiosk's tasks run at a device's own pace and wait
  in the kernel between their deadlines; its CPU per session is what the firmware (with
  the simulated chips under it) needs for a session of that length.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BOARD = REPO / "boards" / "esp32-devkitc-ssd1680.json"
ANSWER_AFTER_S = 2
NEXT_AFTER_S = 8


def script(sessions: int) -> str:
    lines = ["wait 5  # the first full refresh"]
    for i in range(sessions):
        lines += [f"rate {1 + i % 4}", f"wait {ANSWER_AFTER_S}", "yes" if i % 3 else "no",
                  f"wait {NEXT_AFTER_S}"]
    return "\n".join([*lines, "exit"]) + "\n"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall s, CPU s) of one whole command, its children included."""
    cpu = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{command[:4]}... exited {proc.returncode}: {proc.stderr[-2000:]}")
    return wall, _children_cpu() - cpu


def sim_command(folder: Path, script_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "deskpulse.cli", "sim", "--board", str(BOARD),
            "--state", str(folder), "--script", str(script_path), *extra]


def measure(name: str, work: Path, sessions: int, run: Any) -> dict[str, Any]:
    """Start-up alone, then the N sessions; per-session figures net of start-up."""
    empty = work / f"{name}-empty.txt"
    empty.write_text("exit\n")
    day = work / f"{name}-day.txt"
    day.write_text(script(sessions))
    start_wall, start_cpu = run(work / f"{name}-start", empty)
    wall, cpu = run(work / f"{name}-day", day)
    net_wall = max(wall - start_wall, 1e-9)
    result = {"sessions": sessions, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
              "startup_wall_s": round(start_wall, 3), "startup_cpu_s": round(start_cpu, 3),
              "sessions_per_s": round(sessions / net_wall, 2),
              "cpu_ms_per_session": round(1000 * (cpu - start_cpu) / sessions, 3)}
    print(f"{name:>9}: {sessions} sessions in {wall:.1f} s ({result['sessions_per_s']} "
          f"sessions/s), {result['cpu_ms_per_session']} ms CPU per session "
          f"(start-up {start_wall:.2f} s, {start_cpu:.2f} s CPU)", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--anchor-sessions", type=int, default=6)
    parser.add_argument("--before", type=Path, help="host folder of the tree before")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from deskpulse.device.micropython import DEFAULT_HEAP, require_micropython

    micropython = str(require_micropython("the benchmark"))
    here_env = {**os.environ, "PYTHONPATH": str(REPO / "host")}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp:
        work = Path(tmp)
        results["virtual"] = measure(
            "virtual", work, args.sessions,
            lambda folder, path: timed(sim_command(folder, path), here_env))
        results["realtime"] = measure(
            "realtime", work, args.sessions,
            lambda folder, path: timed(sim_command(folder, path, "--realtime"), here_env))
        if args.before is not None:
            before_env = {**os.environ, "PYTHONPATH": str(args.before.resolve())}
            results["before"] = measure(
                "before", work, args.sessions,
                lambda folder, path: timed(sim_command(folder, path), before_env))
        results["anchor"] = measure(
            "anchor", work, args.anchor_sessions,
            lambda folder, path: timed([
                micropython, "-X", f"heapsize={DEFAULT_HEAP}", str(REPO / "firmware" /
                                                                    "sim_main.py"),
                "--board", str(BOARD), "--state", str(folder), "--script", str(path),
                "--realtime", "--paced-waits"]))
    virtual = results["virtual"]
    ratios = {
        "virtual / realtime, sessions/s":
            virtual["sessions_per_s"] / results["realtime"]["sessions_per_s"],
        "virtual / anchor, CPU per session":
            virtual["cpu_ms_per_session"] / results["anchor"]["cpu_ms_per_session"],
    }
    if "before" in results:
        ratios["virtual / before, sessions/s"] = (
            virtual["sessions_per_s"] / results["before"]["sessions_per_s"])
    results["ratios"] = {k: round(v, 2) for k, v in ratios.items()}
    for name, value in results["ratios"].items():
        print(f"{name}: {value}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
