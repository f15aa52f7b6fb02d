"""Exhaustive power-cut sweep of the response log on the real MicroPython interpreter.

tests/firmware/mp/powercut.py does the work inside one micropython process per torn fraction:
for each scenario it counts the flash operations of a workload, cuts the power at every
one of them in turn, and checks what a fresh mount reads back against what append() and
ack() had already promised. Here we only start it and judge its summary.
"""

from __future__ import annotations

import pytest

from conftest import FW_TESTS, mpy_json

# How much of the interrupted program or erase reaches the flash: nothing, or a torn
# part that may end inside a record, its CRC or a LittleFS commit.
FRACTIONS = [0.0, 0.25, 0.5, 0.75]
SCENARIOS = {"rotate", "cap", "big"}
# A floor on the cut points per scenario, so that a workload that silently stopped
# touching the flash (or a sweep that stopped early) cannot pass as "no failures".
MIN_CUT_POINTS = 80


def sweep(fraction: float, *names: str, prelude: str = "") -> dict:
    source = (
        f"sys.path.insert(0, {str(FW_TESTS)!r})\n{prelude}"
        f"import powercut\npowercut.main({fraction!r}, {list(names) or None!r})\n"
    )
    (summary,) = mpy_json(source, heap="8M")
    return summary


def report(scenario: dict) -> str:
    lines = [f"{scenario['scenario']}: {scenario['failure_count']} failing cut points"]
    for failure in scenario["failures"]:
        lines.append(f"  cut at op {failure['cut_at']} during {failure['step']}:")
        lines += [f"    {problem}" for problem in failure["problems"]]
    return "\n".join(lines)


@pytest.mark.parametrize("fraction", FRACTIONS)
@pytest.mark.slow
def test_every_cut_point_keeps_every_promise(fraction: float) -> None:
    summary = sweep(fraction)
    assert summary["fraction"] == fraction
    by_name = {s["scenario"]: s for s in summary["scenarios"]}
    assert set(by_name) == SCENARIOS
    for scenario in by_name.values():
        assert scenario["cut_points"] == scenario["ops"] >= MIN_CUT_POINTS, scenario["scenario"]
    # The cap scenario is only worth its time if the workload really hits the cap.
    assert by_name["cap"]["dropped_in_dry_run"] > 0
    broken = [report(s) for s in by_name.values() if s["failure_count"]]
    if broken:
        pytest.fail("\n".join(broken), pytrace=False)


# A log that returns from append() before the record is on flash: LittleFS keeps
# unflushed writes in RAM, so a cut loses them. The sweep must notice.
_NO_FLUSH = """
import kiosk.log


class _NoFlush:
    def __init__(self, f):
        self._f = f

    def flush(self):
        pass

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


kiosk.log.open = lambda path, mode="r": _NoFlush(open(path, mode))
"""


def test_sweep_catches_a_log_that_does_not_flush() -> None:
    summary = sweep(0.0, "rotate", prelude=_NO_FLUSH)
    (scenario,) = summary["scenarios"]
    assert scenario["failure_count"] > 0
    problems = [p for f in scenario["failures"] for p in f["problems"]]
    assert any("read 0 times" in p for p in problems), report(scenario)


# The firmware mounts LittleFS with mtime=False (docs/storage.md), and so does
# powercut.py; a kiosk whose remount failed keeps the stock mount, with mtime, whose
# commits carry more metadata and whose cut points fall elsewhere. powercut.py mounts
# through `vfs`, so a stand-in module in sys.modules gives it that mount.
_STOCK_MOUNT = """
import vfs as _vfs


class _StockLfs2:
    mkfs = _vfs.VfsLfs2.mkfs

    def __new__(cls, dev, **options):
        options["mtime"] = True
        return _vfs.VfsLfs2(dev, **options)


class _StockVfs:
    VfsLfs2 = _StockLfs2
    mount = _vfs.mount
    umount = _vfs.umount


sys.modules["vfs"] = _StockVfs
"""


@pytest.mark.parametrize("fraction", [0.0, 0.5])
@pytest.mark.slow
def test_every_cut_point_keeps_every_promise_on_the_stock_mount(fraction: float) -> None:
    summary = sweep(fraction, prelude=_STOCK_MOUNT)
    by_name = {s["scenario"]: s for s in summary["scenarios"]}
    assert set(by_name) == SCENARIOS
    for scenario in by_name.values():
        assert scenario["cut_points"] == scenario["ops"] >= MIN_CUT_POINTS, scenario["scenario"]
    broken = [report(s) for s in by_name.values() if s["failure_count"]]
    if broken:
        pytest.fail("\n".join(broken), pytrace=False)
