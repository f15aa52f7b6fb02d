"""Benchmark the response log against an obvious JSON-lines log on a simulated flash.

Run from the repository root:  .venv/bin/python tools/bench_log.py [--responses N]
                               .venv/bin/python tools/bench_log.py --sweep

The measuring happens on the real MicroPython unix port (tools/bench_log_fw.py) over a
simulated 2 MiB NOR partition that counts erases and programs; this side starts it,
turns its figures into a side-by-side table and works out what they mean for wear.
--sweep fills the partition from empty to past the cap, 1000 responses at a time, and
compares the flash work per response of the log as the firmware mounts and lays it out
with the same log as it was before (LittleFS's default mtime attribute, every segment in
one directory), measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from deskpulse.device.micropython import default_micropython

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
FW_SCRIPT = Path(__file__).resolve().parent / "bench_log_fw.py"

# A 2 MiB image, a log of 100k+ responses and the anchor's JSON strings fit well in
# 32 MB of the unix port's heap (objects there are about twice their ESP32 size).
HEAP = "32M"
# Endurance of one sector of common ESP32 SPI NOR flash (datasheet minimum).
ERASE_CYCLES = 100_000
BLOCKS = 512


class BenchError(Exception):
    pass


def micropython_binary() -> str:
    found = default_micropython()
    if found is None:
        raise BenchError("micropython not found: run `make venv` first")
    return str(found)


def run_benchmark(responses: int = 10_000) -> dict:
    """Run both contenders on the unix port; return {"ours": ..., "anchor": ...,
    "seconds": wall time of the whole run}."""
    cmd = [micropython_binary(), "-X", f"heapsize={HEAP}", str(FW_SCRIPT), str(responses)]
    started = time.monotonic()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, cwd=REPO,
        env={**os.environ, "MICROPYPATH": str(FIRMWARE)},
    )
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise BenchError(f"micropython exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    result: dict = {"seconds": seconds, "responses": responses}
    for line in proc.stdout.splitlines():
        if line.startswith("@"):
            result.update(json.loads(line[1:]))
    if "ours" not in result or "anchor" not in result:
        raise BenchError(f"incomplete output from micropython:\n{proc.stdout[-2000:]}")
    return result


def run_sweep() -> dict:
    """The whole-fill sweep on the unix port: {"lean": ..., "before": ..., "seconds"}."""
    cmd = [micropython_binary(), "-X", f"heapsize={HEAP}", str(FW_SCRIPT), "sweep"]
    started = time.monotonic()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, cwd=REPO,
        env={**os.environ, "MICROPYPATH": str(FIRMWARE)},
    )
    if proc.returncode != 0:
        raise BenchError(f"micropython exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    for line in proc.stdout.splitlines():
        if line.startswith("@"):
            result = json.loads(line[1:])["sweep"]
            result["seconds"] = time.monotonic() - started
            return result
    raise BenchError(f"no sweep figures from micropython:\n{proc.stdout[-2000:]}")


def format_sweep(result: dict) -> str:
    lean, before = result["lean"], result["before"]
    window = lean["window"]
    rows = [
        ("worst window, erases/response", "worst_erases", ".3f"),
        ("mean, erases/response", "mean_erases", ".3f"),
        ("first window (empty fs), bytes read/response", "first_reads", ",.0f"),
        ("worst window, bytes read/response", "worst_reads", ",.0f"),
        ("mean, bytes read/response", "mean_reads", ",.0f"),
        ("last window (at the cap), bytes read/response", "last_reads", ",.0f"),
    ]
    lines = [
        f"Whole-fill sweep: simulated 2 MiB LittleFS ({BLOCKS} x 4096 B), windows of "
        f"{window:,} flushed responses from empty to {lean['appends'] - lean['cap_reached_at']:,} "
        "past the cap",
        "",
        "| per response | now (mtime=False, log/open) | before (mtime, one directory) "
        "| before/now |",
        "|---|---:|---:|---:|",
    ]
    for label, key, spec in rows:
        lines.append(f"| {label} | {lean[key]:{spec}} | {before[key]:{spec}} | "
                     f"{before[key] / lean[key]:.2f} |")
    for name, fig in (("now", lean), ("before", before)):
        lines.append(
            f"{name}: cap reached after {fig['cap_reached_at']:,} responses; worst reads "
            f"in the window ending at {fig['worst_reads_at']:,}, worst erases at "
            f"{fig['worst_erases_at']:,}; worst/first window reads "
            f"{fig['worst_reads'] / fig['first_reads']:.1f}x.")
    lines.append(f"Run time: {result['seconds']:.0f} s on the unix port.")
    return "\n".join(lines)


def lifetime_busiest(wear: dict) -> float:
    """Responses until the busiest block of the window reaches ERASE_CYCLES, if it
    kept that rate: a floor, as LittleFS moves hot metadata blocks on."""
    return ERASE_CYCLES * wear["responses"] / wear["hottest_block_erases"]


def lifetime_spread(wear: dict) -> float:
    """Responses until the blocks that took the window's erases reach ERASE_CYCLES,
    with the erases spread evenly over them."""
    return ERASE_CYCLES * wear["blocks_erased"] / wear["erases"]


def rows(result: dict) -> list[tuple[str, float, float]]:
    ours, anchor = result["ours"], result["anchor"]
    per10k = 10_000
    return [
        ("record payload, bytes/response", ours["payload_bytes_per_response"],
         anchor["payload_bytes_per_response"]),
        ("log files, bytes/response", ours["file_bytes_per_response"],
         anchor["file_bytes_per_response"]),
        ("flash blocks used, bytes/response", ours["flash_bytes_per_response"],
         anchor["flash_bytes_per_response"]),
        ("block erases/response", ours["first"]["erases"], anchor["first"]["erases"]),
        ("program operations/response", ours["first"]["programs"],
         anchor["first"]["programs"]),
        ("bytes programmed/response", ours["first"]["bytes_programmed"],
         anchor["first"]["bytes_programmed"]),
        ("blocks that took erases", ours["first"]["blocks_erased"],
         anchor["first"]["blocks_erased"]),
        ("median erased block, erases per 10k responses",
         ours["first"]["median_block_erases"] * per10k / ours["first"]["responses"],
         anchor["first"]["median_block_erases"] * per10k / anchor["first"]["responses"]),
        ("busiest block, erases per 10k responses",
         ours["first"]["hottest_block_erases"] * per10k / ours["first"]["responses"],
         anchor["first"]["hottest_block_erases"] * per10k / anchor["first"]["responses"]),
        ("responses held within 90% of 2 MiB", ours["capacity"], anchor["capacity"]),
    ]


def _fmt(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}" if value < 1000 else f"{value:,.0f}"


def format_report(result: dict) -> str:
    ours, anchor = result["ours"], result["anchor"]
    n = result["responses"]
    lines = [
        f"Response log vs JSON lines, {n:,} responses, simulated 2 MiB LittleFS "
        f"({BLOCKS} x 4096 B), every response flushed",
        "",
        "| metric | ResponseLog | JSON lines (anchor) | anchor/ours |",
        "|---|---:|---:|---:|",
    ]
    for name, mine, theirs in rows(result):
        lines.append(f"| {name} | {_fmt(mine)} | {_fmt(theirs)} | {theirs / mine:.2f} |")
    at_cap = ours["at_cap"]
    lines += [
        "",
        f"ResponseLog: {ours['segments']} segment(s) after {n:,} responses; the cap "
        f"first dropped a segment at fs fill {ours['fs_fill_at_cap']:.1%}; "
        f"anchor stopped at {anchor['fs_fill_at_cap']:.1%} of blocks.",
        f"Log held at its cap ({at_cap['responses']:,} more responses): "
        f"{at_cap['erases']:.3f} erases/response over {at_cap['blocks_erased']} blocks, "
        f"median block {at_cap['median_block_erases']}, "
        f"busiest {at_cap['hottest_block_erases']} erases.",
        "",
        f"Responses until blocks reach {ERASE_CYCLES:,} erase cycles "
        "(spread evenly over the blocks in use / at the busiest block's rate):",
    ]
    for label, wear in (("ResponseLog, synced, mostly free fs", ours["first"]),
                        ("ResponseLog, never synced, at its cap", at_cap),
                        ("JSON lines, fresh fs", anchor["first"])):
        lines.append(f"  {label}: {lifetime_spread(wear):,.0f} / "
                     f"{lifetime_busiest(wear):,.0f}")
    lines += [
        "",
        f"Run time: {result['seconds']:.0f} s in all; on the unix port, "
        f"ours {ours['ms_first'] / 1000:.1f} s for the first {n:,}, "
        f"{ours['ms_fill'] / 1000:.1f} s to fill to the cap, "
        f"{ours['ms_at_cap'] / 1000:.1f} s at the cap; "
        f"anchor {anchor['ms_first'] / 1000:.1f} s + {anchor['ms_fill'] / 1000:.1f} s.",
        f"Host: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--responses", type=int, default=10_000,
                        help="responses for the per-response figures (default 10000)")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    parser.add_argument("--sweep", action="store_true",
                        help="flash work per response over a whole fill, now and before")
    args = parser.parse_args(argv)
    try:
        if args.sweep:
            sweep = run_sweep()
            print(json.dumps(sweep, indent=2) if args.json else format_sweep(sweep))
            return 0
        result = run_benchmark(args.responses)
    except BenchError as e:
        print(f"bench_log: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
