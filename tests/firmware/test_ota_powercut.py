"""A config applied over the air survives a power cut at every flash operation: a fresh
mount finds the old config or the new one, whole, never a mix or a broken file.
tests/firmware/mp/ota_powercut.py sweeps the cut points in one micropython process."""

from __future__ import annotations

import pytest

from conftest import BOARDS, FW_TESTS, mpy_json

MIN_CUT_POINTS = 10  # a workload that stopped touching the flash cannot pass as "fine"


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_every_cut_point_leaves_the_old_config_or_the_new_one(fraction: float) -> None:
    source = (FW_TESTS / "ota_powercut.py").read_text()
    (summary,) = mpy_json(source, str(fraction), str(BOARDS / "esp32-devkitc-ssd1680.json"),
                          heap="8M")
    assert summary["failures"] == []
    assert summary["cut_points"] >= MIN_CUT_POINTS
    # Both outcomes happen: cuts before the rename keep the old, after it the new.
    assert summary["old"] >= 1 and summary["new"] >= 1
    assert summary["old"] + summary["new"] == summary["cut_points"] + 1
