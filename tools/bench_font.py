"""Benchmark the font's text walk (issue 14 item 10): microseconds per `width()` and
`draw()` call, this tree's byte walk against the character walk of an earlier tree (the
anchor, by default fab84e8), both run in the same `micropython` process on the same font
file and texts.

Run from the repository root:
    .venv/bin/python tools/bench_font.py [--anchor REV] [--calls N]

Each figure is the median of 7 runs of N calls (default 200); on this shared machine the
medians move by a few percent from run to run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
MICROPYTHON = Path(sys.executable).parent / "micropython"
TEXTS = {"ascii": "How was your visit today?",
         "german": "Wie würden Sie Ihren Besuch heute bei uns bewerten? Größe ÄÖÜ"}

MEASURE = """
import sys, time, framebuf, json
sys.path.insert(0, %(old)r)
sys.path.insert(0, %(firmware)r)
from kiosk.ui import font as now_mod
import font_anchor as old_mod
texts = json.loads(%(texts)r)
fb = framebuf.FrameBuffer(bytearray(400 * 40 // 8), 400, 40, framebuf.MONO_HLSB)

def per_call(fn, calls):
    runs = []
    for _ in range(7):
        t0 = time.ticks_us()
        for _ in range(calls):
            fn()
        runs.append(time.ticks_diff(time.ticks_us(), t0) / calls)
    return sorted(runs)[3]

rows = []
for label, mod in (("anchor", old_mod), ("now", now_mod)):
    f = mod.Font(%(font)r)
    for name, text in texts.items():
        rows.append([label, name, per_call(lambda: f.width(text), %(calls)d),
                     per_call(lambda: f.draw(fb, text, 0, 0, 0), %(calls)d)])
print(json.dumps(rows))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchor", default="fab84e8", help="the tree to compare with")
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    old = subprocess.run(["git", "show", f"{args.anchor}:firmware/kiosk/ui/font.py"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "font_anchor.py").write_text(old)
        source = MEASURE % {"old": folder, "firmware": str(FIRMWARE),
                            "texts": json.dumps(TEXTS), "calls": args.calls,
                            "font": str(FIRMWARE / "kiosk" / "ui" / "fonts" / "sans22.bin")}
        done = subprocess.run([str(MICROPYTHON), "-c", source], capture_output=True,
                              text=True, check=True)
    rows = json.loads(done.stdout.splitlines()[-1])
    by = {(label, name): (width, draw) for label, name, width, draw in rows}
    print(f"font walk, sans22, median of 7 x {args.calls} calls (us per call); "
          f"anchor {args.anchor}")
    print(f"{'text':<8}{'call':<7}{'anchor':>9}{'now':>9}{'anchor/now':>12}")
    for name in TEXTS:
        for i, call in enumerate(("width", "draw")):
            before, now = by[("anchor", name)][i], by[("now", name)][i]
            print(f"{name:<8}{call:<7}{before:>9.1f}{now:>9.1f}{before / now:>12.2f}")


if __name__ == "__main__":
    main()
