"""Tap-to-screen benchmark: the firmware's share of a screen change, per board.

Run from the repository root:  .venv/bin/python tools/bench_screens.py [--rounds N]

For each board in boards/ it runs tools/bench_screens_fw.py on the MicroPython unix port:
a debounced press (or touch) goes through the real flow, screens, refresh task and panel
driver over the simulated controller, and the time to the start of the panel update is
measured. The panel's own partial refresh time (datasheet figure in the board file) is
printed beside it: the firmware's share should be small against it.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
from pathlib import Path

from deskpulse.device.boards import board_path, list_boards
from deskpulse.device.micropython import default_micropython

FW_SCRIPT = Path(__file__).resolve().parent / "bench_screens_fw.py"
FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"


def run_board(name: str, rounds: int) -> dict:
    micropython = default_micropython()
    if micropython is None:
        raise SystemExit("micropython not found: run `make venv` first")
    with tempfile.TemporaryDirectory() as state:
        proc = subprocess.run(
            [str(micropython), "-X", "heapsize=2M", str(FW_SCRIPT), str(board_path(name)),
             state, str(rounds)],
            capture_output=True, text=True, check=False,
            env={"MICROPYPATH": f"{FIRMWARE}:.frozen"},
        )
    if proc.returncode != 0:
        raise SystemExit(f"{name}: micropython exited {proc.returncode}\n{proc.stderr[-2000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("@"))
    return json.loads(line[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    rows = [run_board(name, args.rounds) for name in list_boards()]
    print(f"Tap to start of panel update, median of {args.rounds} rounds (unix port, "
          f"{platform.machine()}); panel partial refresh from the datasheet beside it\n")
    print("| board | tap → update: face | tap → update: answer (flushes the response) "
          "| of which tap → write() | panel partial refresh | ratio | SPI at 4 MHz on the "
          "ESP32 | frame buffer | font index | screens + refresh task heap (64-bit) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        face = r["tap_to_update_us"]["face"] / 1000
        answer = r["tap_to_update_us"]["answer"] / 1000
        drawn = r["tap_to_write_us"] / 1000
        partial = r["partial_refresh_ms"]
        spi_ms = r["framebuffer_bytes"] * 8 / 4_000_000 * 1000
        print(f"| {r['board']} | {face:.1f} ms | {answer:.1f} ms | {drawn:.1f} ms | "
              f"{partial} ms | {max(face, answer) / partial:.3f} | {spi_ms:.0f} ms | "
              f"{r['framebuffer_bytes']:,} B | {r['font_index_bytes']:,} B | "
              f"{r['kiosk_heap_bytes']:,} B |")


if __name__ == "__main__":
    main()
