"""The kiosk's heap with its .mpy in ROMFS (issue 14, item 1): a firmware built with
MicroPython's ROMFS maps a romfs partition at /rom and runs the .mpy there in place (the
bytecode and constant strings stay in flash, as frozen code's do), so an app update needs
no firmware build. tools/bench_heap.py's case romfs+push runs it on the 32-bit unix port
patched by tools/mp32-romfs.patch: the image (the .mpy case's mpy-cross output, written by
mpremote's ROMFS writer) is mapped read-only outside the GC heap, as flash is; main.py, the
fonts, board and config stay on LittleFS. docs/benchmarks.md has the figures ("The app's
.mpy in ROMFS": 128 KB, against 96 KB frozen and 200 KB as .mpy files).

Here, so that `make test` stays short, fewer sessions: the app must run from /rom, a /kiosk
folder on LittleFS must be seen to shadow it (the reason a ROMFS kiosk keeps none), and the
case must fit its recorded figure plus a margin and run out of memory well below it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import bench_heap  # noqa: E402

pytestmark = pytest.mark.slow

SESSIONS = 60
# bench_heap.py --sessions 60 --cases romfs+push --ports 32 --step 4, 5 December 2026
# (docs/benchmarks.md, "The app's .mpy in ROMFS": 128 KB, 124 fails), with test_heap32.py's
# margin over it.
RECORDED_KB = 128
MARGIN_KB = 12
SHORT_KB = 40  # this far below the figure plus margin it runs out of memory


@pytest.fixture(scope="module")
def binary() -> Path:
    try:
        return bench_heap.build_port32(False, romfs=True)
    except (bench_heap.BuildError, OSError, TimeoutError) as error:
        pytest.skip(f"no 32-bit MicroPython port with ROMFS: {error}")


def test_the_app_runs_from_the_rom(binary: Path, tmp_path: Path) -> None:
    case = bench_heap.prepare("romfs+push", "32", binary, 5)
    assert case.romfs is not None
    assert not any(name.startswith("/kiosk") for name in case.files)
    outcome = bench_heap.run_once(case, 256 * 1024, tmp_path)
    assert outcome.ok, outcome.why
    assert outcome.result["app_file"] == "/rom/kiosk/app.mpy"
    assert outcome.status["push"]["pushes"] > 0


def test_a_kiosk_folder_on_the_filesystem_shadows_the_rom(binary: Path,
                                                          tmp_path: Path) -> None:
    """'' (the filesystem's root) comes before /rom on sys.path: an app left on LittleFS by
    an .mpy install runs instead of the ROMFS one, so a ROMFS kiosk must have no /kiosk."""
    case = bench_heap.prepare("romfs+push", "32", binary, 5)
    left = bench_heap.device_files("mpy", "x86")
    case.files.update({name: data for name, data in left.items() if name.startswith("/kiosk/")})
    outcome = bench_heap.run_once(case, 256 * 1024, tmp_path)
    assert outcome.ok, outcome.why
    assert outcome.result["app_file"] == "kiosk/app.mpy"  # found through '', i.e. "/"


def test_it_fits_its_recorded_heap_and_not_much_less(binary: Path, tmp_path: Path) -> None:
    case = bench_heap.prepare("romfs+push", "32", binary, SESSIONS)
    budget = (RECORDED_KB + MARGIN_KB) * 1024
    fits = bench_heap.run_once(case, budget, tmp_path)
    if not fits.ok and "MemoryError" not in fits.why:
        fits = bench_heap.run_once(case, budget, tmp_path)  # a host sync timed out
    assert fits.ok, f"romfs+push no longer fits {budget // 1024} KB: {fits.why}"
    short = bench_heap.run_once(case, budget - (MARGIN_KB + SHORT_KB) * 1024, tmp_path)
    assert not short.ok and "MemoryError" in short.why, short.why
