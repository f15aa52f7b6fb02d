"""Benchmark `deskpulse report` end to end: the command a manager types, in a terminal.

Run from the repository root:
    .venv/bin/python tools/bench_report_cli.py [--responses 1000000 10000000] [--devices 500]

For each size, a database of the synthetic kiosks of tools/bench_report.py (500 kiosks,
two years, nine zones) is built once through `store_batch` and kept in
.cache/bench/report-<N>x<D>-s<seed>.db; later runs reuse it (building 10M takes several
minutes here). Then, each timed as a fresh process, the median of --repeats runs taking
turns:

- `deskpulse report` (table format) on a pseudo-terminal of --columns x 40, its output
  read as a terminal would (the goal: under 1 s);
- the anchors of the same run: `deskpulse report --format json` into a pipe on the same
  database, and `python -c 'import deskpulse.cli'` (the start-up every command pays).

It also checks that the table's lines fit the terminal and that matplotlib was not loaded
(`python -X importtime` of the table command). The host's zone is UTC for building and
reporting alike, so that no report rebuilds the rollups of the kiosks on the host's zone.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import resource
import select
import statistics
import struct
import subprocess
import sys
import termios
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import bench_report

from deskpulse.store import open_store

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
PYTHON = sys.executable
DESKPULSE = [str(Path(PYTHON).with_name("deskpulse"))]  # the installed command
ENV = {**os.environ, "TZ": "UTC"}


def cached_database(total: int, devices: int, seed: int) -> Path:
    """The benchmark's database of `total` responses, built on first use."""
    path = CACHE / f"report-{total}x{devices}-s{seed}.db"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    building = path.with_suffix(".building")
    for stale in CACHE.glob(building.name + "*"):
        stale.unlink()  # an interrupted build: start again
    os.environ["TZ"] = "UTC"
    time.tzset()
    start = time.perf_counter()
    with open_store(str(building)) as conn:
        stored, calls, _, _ = bench_report.ingest(conn, total, devices, seed)
        conn.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[attr-defined]
    print(f"built {path.name}: {stored:,} responses in {calls:,} syncs, "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    building.rename(path)
    return path


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def on_terminal(argv: list[str], columns: int, rows: int = 40,
                env: dict[str, str] = ENV) -> tuple[float, float, str]:
    """Wall and CPU seconds of `argv` with its stdout on a pseudo-terminal of that size,
    drained as it writes (as a terminal does), and what it wrote."""
    cpu = _children_cpu()
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave,
                             stderr=subprocess.PIPE, env=env, cwd=ROOT)
    os.close(slave)
    out = bytearray()
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            child.kill()
            raise SystemExit(f"{' '.join(argv)}: no output for 30 s")
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    _, err = child.communicate()
    elapsed = time.perf_counter() - start
    os.close(master)
    if child.returncode:
        raise SystemExit(f"{' '.join(argv)} failed: {err.decode(errors='replace')}")
    return elapsed, _children_cpu() - cpu, out.decode(errors="replace")


def into_pipe(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of `argv` writing into a pipe."""
    cpu = _children_cpu()
    start = time.perf_counter()
    subprocess.run(argv, capture_output=True, env=ENV, cwd=ROOT, check=True)
    return time.perf_counter() - start, _children_cpu() - cpu


def visible_width(line: str) -> int:
    """The columns a line of terminal output takes, its colour escapes left out."""
    import re

    return len(re.sub(r"\x1b\[[0-9;]*m", "", line).rstrip("\r"))


def loaded_modules(argv: list[str]) -> set[str]:
    done = subprocess.run([PYTHON, "-X", "importtime", *argv], capture_output=True,
                          env=ENV, cwd=ROOT, check=True, text=True)
    return {line.rpartition("|")[2].strip() for line in done.stderr.splitlines()
            if line.startswith("import time:")}


def measure(db: Path, columns: int, repeats: int,
            before: Path | None) -> dict[str, float | int | bool]:
    table = [*DESKPULSE, "report", "--db", str(db)]
    as_json = [*table, "--format", "json"]
    bare = [PYTHON, "-c", "import deskpulse.cli"]
    on_terminal(table, columns)  # warm the page cache and the rollups' refresh
    times: dict[str, list[float]] = defaultdict(list)
    text = ""
    for _ in range(repeats):
        elapsed, cpu, text = on_terminal(table, columns)
        times["table"].append(elapsed)
        times["table_cpu"].append(cpu)
        for name, argv in (("json", as_json), ("import", bare)):
            elapsed, cpu = into_pipe(argv)
            times[name].append(elapsed)
            times[name + "_cpu"].append(cpu)
        if before is not None:  # the same command from the other checkout, in turn
            elapsed, cpu, _ = on_terminal(table, columns,
                                          env={**ENV, "PYTHONPATH": str(before / "host")})
            times["before"].append(elapsed)
            times["before_cpu"].append(cpu)
    widest = max(visible_width(line) for line in text.split("\n"))
    modules = loaded_modules(table)
    return {**{name: statistics.median(values) for name, values in times.items()},
            "widest_line": widest, "lines": text.count("\n"),
            "matplotlib_loaded": "matplotlib" in modules, "rich_loaded": "rich" in modules,
            "numpy_loaded": "numpy" in modules, "load": os.getloadavg()[0]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--columns", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--before", type=Path, metavar="CHECKOUT",
                        help="also time the table command of another checkout (e.g. a git "
                             "worktree of the commit before), in turns with this one's")
    parser.add_argument("--build-only", action="store_true",
                        help="build the cached databases and stop")
    args = parser.parse_args(argv)
    met = True
    for total in args.responses:
        db = cached_database(total, args.devices, args.seed)
        if args.build_only:
            continue
        f = measure(db, args.columns, args.repeats, args.before)
        met = met and float(f["table"]) < 1.0
        print(f"{total:,} responses, {args.devices} kiosks, two years "
              f"({db.stat().st_size / 2**20:,.0f} MiB), median of {args.repeats}:")
        print(f"  deskpulse report (table, pty {args.columns} columns): {f['table']:.3f} s "
              f"= {f['table'] / f['json']:.2f} x report --format json "
              f"({f['json']:.3f} s), {f['table'] / f['import']:.2f} x "
              f"import deskpulse.cli ({f['import']:.3f} s)")
        print(f"  CPU time: table {f['table_cpu']:.3f} s = {f['table_cpu'] / f['json_cpu']:.2f}"
              f" x json ({f['json_cpu']:.3f} s), {f['table_cpu'] / f['import_cpu']:.2f} x "
              f"import ({f['import_cpu']:.3f} s); load average {f['load']:.1f} on "
              f"{os.cpu_count()} CPUs")
        if "before" in f:
            print(f"  the same command at {args.before}: {f['before']:.3f} s "
                  f"(CPU {f['before_cpu']:.3f} s); now / before: "
                  f"{f['table'] / f['before']:.2f} (CPU {f['table_cpu'] / f['before_cpu']:.2f})")
        print(f"  table: {f['lines']} lines, widest {f['widest_line']} columns; loaded "
              f"matplotlib {f['matplotlib_loaded']}, rich {f['rich_loaded']}, "
              f"numpy {f['numpy_loaded']}")
    if not args.build_only:
        print("goal (under 1 s):", "met" if met else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
