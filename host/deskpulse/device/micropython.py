"""Finding the MicroPython unix port that runs the firmware here (the `sim` extra)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from deskpulse.errors import DeskPulseError

# Room for the simulated chips and for compiling the firmware's .py sources at import
# (a device runs precompiled .mpy); tests/sim/test_sim.py checks the ESP32-sized figure.
DEFAULT_HEAP = "512k"
"""MicroPython heap for the simulated kiosk (``-X heapsize=``); see TOOLCHAIN.md on word
size."""

def default_micropython() -> Path | None:
    """The `micropython` installed beside this interpreter (the venv's), else one on PATH."""
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return beside
    found = shutil.which("micropython")
    return Path(found) if found else None


def require_micropython(command: str) -> Path:
    """The `micropython` that `command` runs the firmware on, or one sentence on the extra
    that installs it (the unix port has no Windows wheel, so it is not a dependency)."""
    found = default_micropython()
    if found is None:
        raise DeskPulseError(
            f"{command} needs the MicroPython unix port: pip install 'deskpulse[sim]'")
    return found
