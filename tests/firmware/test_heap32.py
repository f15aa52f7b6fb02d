"""The kiosk's heap on ESP32-sized objects (issue 14, items 1 and 2).

The real boot path (main.py -> kiosk.boot -> Esp32Hal -> kiosk.app.run) runs on a 32-bit
MicroPython unix port built from /work/shared/micropython (cached in .cache/mp32), over
stand-in machine/network/esp32 modules, from a LittleFS image laid out as firmware/
manifest.py says, for customer sessions with serial syncs, a config upload and the WiFi
push (tools/bench_heap.py does the work; it prints the figures for docs/benchmarks.md).

`tools/bench_heap.py` (make bench) finds the smallest -X heapsize= each case needs by
bisection; the figures are in docs/benchmarks.md (frozen with the push fits the issue's
96 KB; as .mpy the code kept in RAM puts it far over). Here, so that `make test`
stays short, each case runs twice with fewer sessions: at its recorded figure plus a
margin, where it must pass (a guard against growth), and well below, where it must run
out of memory and say so (the meter sees a shortage as one). Set
DESKPULSE_HEAP32_FIRMWARE to measure a copy of firmware/ with a change under trial.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import bench_heap  # noqa: E402

pytestmark = pytest.mark.slow

SESSIONS = 60
# The minimum heaps of docs/benchmarks.md for 60 sessions (32-bit, `bench_heap.py
# --sessions 60 --step 4`, 5 December 2026, after the streamed config upload), with 12 KB
# over them: near a minimum the heap is cut into pieces and one run passes where the next
# fails by a few KB. The push cases are a WiFi kiosk's; the bench measures the others too.
# mpy+push measured 192-200 KB after config over the air and TLS (issue 16; 220 KB on the
# tree before them, measured the same hour: the serial upload's install moved to
# kiosk.config and the heap's layout with it), so the run 64 KB below its old 260 no
# longer ran out.
RECORDED_KB = {"mpy+push": 200, "frozen+push": 92,
               # The ~7.7 KB config fetched over the air instead of uploaded over serial
               # (kiosk/ota.py): the same minimum as frozen+push (88-89 KB at 60 sessions).
               "frozen+ota": 92}
MARGIN_KB = 12
SHORT_KB = 64  # this far below the figure every case runs out of memory
if os.environ.get("DESKPULSE_HEAP32_FIRMWARE"):
    bench_heap.use_firmware(Path(os.environ["DESKPULSE_HEAP32_FIRMWARE"]))


@pytest.fixture(scope="module")
def ports() -> dict[bool, Path]:
    """The 32-bit port with the stand-ins frozen (False) and with the app frozen too
    (True); skipped when it cannot be built here."""
    try:
        return {frozen: bench_heap.build_port32(frozen) for frozen in (False, True)}
    except bench_heap.BuildError as error:
        pytest.skip(f"no 32-bit MicroPython port: {error}")
    except (OSError, TimeoutError) as error:  # no bash, a build that hangs
        pytest.skip(f"no 32-bit MicroPython port: {error}")


def test_the_frozen_app_runs_with_its_fonts_on_littlefs(ports: dict[bool, Path],
                                                        tmp_path: Path) -> None:
    """Item 2: the frozen build runs the app, reading the fonts from /fonts on the
    device's filesystem (DEVICE_DATA), with syncs, upload and push."""
    case = bench_heap.prepare("frozen+push", "32", ports[True], SESSIONS)
    assert not any(name.startswith("/kiosk") for name in case.files), "the app is frozen"
    assert {name for name in case.files if name.endswith(".bin")} == set(
        bench_heap.device_data().values())
    assert all(name.startswith("/fonts/") for name in bench_heap.device_data().values())
    outcome = bench_heap.run_once(case, 256 * 1024, tmp_path)
    assert outcome.ok, outcome.why
    assert outcome.status["display"]["partial"] > 0 and outcome.status["push"]["pushes"] > 0


def test_a_kiosk_folder_on_the_filesystem_hides_the_frozen_app(ports: dict[bool, Path],
                                                               tmp_path: Path) -> None:
    """Why the data moved out of the package folder: with the fonts at their old place,
    /kiosk/ui/fonts, the folder /kiosk comes before .frozen on sys.path and the frozen
    package's modules are not found."""
    case = bench_heap.prepare("frozen+push", "32", ports[True], 5)
    case.files = {name.replace("/fonts/", "/kiosk/ui/fonts/"): data
                  for name, data in case.files.items()}
    outcome = bench_heap.run_once(case, 256 * 1024, tmp_path)
    assert not outcome.ok
    assert "ImportError" in outcome.why and "kiosk." in outcome.why, outcome.why


@pytest.mark.parametrize("case_name", sorted(RECORDED_KB))
def test_each_case_fits_its_recorded_heap_and_not_much_less(
        ports: dict[bool, Path], tmp_path: Path, case_name: str) -> None:
    frozen = case_name.startswith("frozen")
    case = bench_heap.prepare(case_name, "32", ports[frozen], SESSIONS)
    budget = (RECORDED_KB[case_name] + MARGIN_KB) * 1024
    fits = bench_heap.run_once(case, budget, tmp_path)
    if not fits.ok and "MemoryError" not in fits.why:
        # Not the heap: on a loaded machine the host's syncs can time out in real time
        # while the kiosk runs on its virtual clock. Once more, then it counts.
        fits = bench_heap.run_once(case, budget, tmp_path)
    assert fits.ok, f"{case_name} no longer fits {budget // 1024} KB: {fits.why}"
    short = bench_heap.run_once(case, budget - (MARGIN_KB + SHORT_KB) * 1024, tmp_path)
    assert not short.ok and "MemoryError" in short.why, short.why
