"""Benchmark the start-up of `deskpulse` commands: wall time of a whole run, and the import
time Python reports (`-X importtime`), on a small database.

Run from the repository root:
    .venv/bin/python tools/bench_startup.py [--runs N] [--before HOST_DIR] [--json]

The database holds 300 responses from 3 kiosks (stored with this tree's `db.store_batch`).
Each command runs N times (default 21) as `python -m deskpulse.cli ...` with this
interpreter and PYTHONPATH set to the tree's `host` folder. With --before (e.g. the `host`
folder of a clone of an older commit) both trees run, interleaved run by run, so that
the other jobs on the machine weigh on both alike; the figures are medians.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from deskpulse.protocol.batch import Anchor, Response
from deskpulse.store import open_store

HERE = Path(__file__).resolve().parent.parent / "host"
T0 = 1_780_000_000  # 2026-05-28T20:26:40Z
COMMANDS = (("--help",), ("devices",), ("report",), ("report", "--format", "json"))
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|")


def small_database(path: Path) -> int:
    conn = open_store(path)
    stored = 0
    for k in range(3):
        responses = [Response(seq=i, rating=1 + (i * 7 + k) % 5, scale=5,
                              told_next=("yes", "no", "no_answer")[i % 3], latency_s=3.0,
                              rapid=False, closed=False, boot=1, uptime_s=600 + i * 900,
                              wall=None, config_version=1) for i in range(1, 101)]
        conn.store_batch(f"kiosk-{k}", responses, [Anchor(1, 0, T0, 1)],
                       {"board": "esp32-devkitc-ssd1680", "firmware": "0.1.0"}, "serial")
        stored += len(responses)
    conn.close()
    return stored


def _args(command: tuple[str, ...], database: Path) -> list[str]:
    return [*command, "--db", str(database)] if command[0] != "--help" else list(command)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(host: Path, args: list[str], importtime: bool = False
             ) -> tuple[float, float, int]:
    """Wall and CPU seconds of one whole run (CPU time suffers less from other jobs on
    the machine), and (with importtime) the microseconds Python spent importing (the sum
    of every module's own time)."""
    env = {**os.environ, "PYTHONPATH": str(host), "TZ": "UTC"}
    command = [sys.executable, *(["-X", "importtime"] if importtime else []),
               "-m", "deskpulse.cli", *args]
    cpu = _children_cpu()
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    cpu = _children_cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed in {host}: {done.stderr[-500:]}")
    spent = sum(int(m.group(1)) for m in _IMPORT_LINE.finditer(done.stderr))
    return seconds, cpu, spent


def measure(trees: dict[str, Path], runs: int, database: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for command in COMMANDS:
        args = _args(command, database)
        walls: dict[str, list[float]] = {name: [] for name in trees}
        cpus: dict[str, list[float]] = {name: [] for name in trees}
        imports: dict[str, list[int]] = {name: [] for name in trees}
        for host in trees.values():
            run_once(host, args)  # warm: compiled bytecode, the file cache
        for _ in range(runs):
            for name, host in trees.items():
                wall, cpu, _ = run_once(host, args)
                walls[name].append(wall)
                cpus[name].append(cpu)
                imports[name].append(run_once(host, args, importtime=True)[2])
        figures[" ".join(command)] = {
            name: {"wall_s": statistics.median(walls[name]),
                   "cpu_s": statistics.median(cpus[name]),
                   "imports_s": statistics.median(imports[name]) / 1e6}
            for name in trees}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--before", type=Path, help="the host folder of an older tree")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    trees = {"before": args.before} if args.before else {}
    trees["now"] = HERE
    with tempfile.TemporaryDirectory() as tmp:
        database = Path(tmp) / "small.db"
        stored = small_database(database)
        baseline = statistics.median(_bare_python() for _ in range(args.runs))
        figures = measure(trees, args.runs, database)
    if args.json:
        print(json.dumps({"responses": stored, "runs": args.runs, "python_s": baseline,
                          "figures": figures}, indent=2))
        return
    print(f"{stored} responses, median of {args.runs} runs; bare `python -c pass` "
          f"{baseline:.3f} s")
    for command, by_tree in figures.items():
        cells = [f"{name} {f['wall_s']:.3f} s, CPU {f['cpu_s']:.3f} s, imports "
                 f"{f['imports_s']:.3f} s" for name, f in by_tree.items()]
        if "before" in by_tree:
            before, now = by_tree["before"], by_tree["now"]
            cells.append(" / ".join(f"{before[k] / now[k]:.2f}"
                                    for k in ("wall_s", "cpu_s", "imports_s"))
                         + " before/now")
        print(f"deskpulse {command}: " + "; ".join(cells))


def _bare_python() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
