"""docs/config.md and the firmware's config validator agree: the page is what
tools/config_doc.py makes from the validator now, and every limit it states is the one the
validator applies (probed at the limit and one past it)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO
from deskpulse.device import config_doc
from deskpulse.device.config_check import firmware_module

sys.path.insert(0, str(REPO / "tools"))
import config_doc as tool  # noqa: E402

DOC = REPO / "docs" / "config.md"


def test_the_page_is_what_the_validator_makes() -> None:
    assert DOC.read_text(encoding="utf-8") == config_doc.render(), (
        "docs/config.md and firmware/kiosk/config.py disagree: run "
        ".venv/bin/python tools/config_doc.py and review the diff")
    assert tool.main(["--check"]) == 0


def test_a_changed_limit_or_a_new_key_shows_in_the_page(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    """The comparison can fail: the validator taking 6 faces, or a key nobody described."""
    fw = firmware_module("kiosk.config")
    monkeypatch.setitem(fw._INTS, "scale", (3, 6))
    assert "| `scale` | integer | `4` | 3 to 6 |" in config_doc.render()
    assert config_doc.render() != DOC.read_text(encoding="utf-8")
    assert tool.main(["--check"]) == 1
    real = fw.defaults
    monkeypatch.setattr(fw, "defaults", lambda: {**real(), "volume": 3})
    with pytest.raises(Exception, match=r"undescribed \['volume'\]"):
        config_doc.config_keys()


def nested(path: str, value: Any) -> dict[str, Any]:
    """A config that sets path to value, with what that value needs beside it."""
    parts = path.replace("<language>", "xx").split(".")
    config: dict[str, Any] = {}
    node = config
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    if path == "language":
        config["texts"] = {value: {}}
    if path == "time_zone":
        config["tz_rule"] = "UTC0"
    if path == "sync.server_cert":  # PEM of the same length, for an https server
        begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
        node["server_cert"] = begin + value[len(begin) + len(end):] + end
        node["server_url"] = "https://pushes.example:8443"
    return config


def problems(config: dict[str, Any]) -> list[str]:
    return firmware_module("kiosk.config").validate(config)[1]


ROWS = config_doc.config_keys()


@pytest.mark.parametrize("row", [r for r in ROWS if r.low is not None], ids=lambda r: r.path)
def test_every_number_range_stated_is_the_validator_s(row: config_doc.KeyDoc) -> None:
    assert row.low is not None and row.high is not None
    assert problems(nested(row.path, row.low)) == []
    assert problems(nested(row.path, row.high)) == []
    for outside in (row.low - 1, row.high + 1):
        assert any(p.startswith(f"{row.path} must be between {row.low} and {row.high}")
                   for p in problems(nested(row.path, outside))), outside


@pytest.mark.parametrize("row", [r for r in ROWS if r.max_length is not None],
                         ids=lambda r: r.path)
def test_every_length_stated_is_the_validator_s(row: config_doc.KeyDoc) -> None:
    assert row.max_length is not None
    longest = "a" * row.max_length
    assert problems(nested(row.path, longest)) == []
    over = problems(nested(row.path, longest + "a"))
    assert over and all("longer than" in p or "2-8 letters" in p or "has no texts" in p
                        for p in over), over


def test_every_default_stated_is_the_validator_s() -> None:
    config, found = firmware_module("kiosk.config").validate({})
    assert found == []
    for row in ROWS:
        parts = row.path.replace("<language>", "en").split(".")
        value: Any = config
        for part in parts:
            value = value[part]
        if not (isinstance(row.default, str) and row.default.startswith("(")):
            assert value == row.default, row.path


def test_the_page_names_every_key_the_validator_takes() -> None:
    text = DOC.read_text(encoding="utf-8")
    fw = firmware_module("kiosk.config")
    for key, value in fw.defaults().items():
        assert f"| `{key}` |" in text
        if isinstance(value, dict) and key == "sync":
            for inner in value:
                assert f"| `sync.{inner}` |" in text
    for text_key in fw.TEXT_KEYS:
        assert f"| `texts.<language>.{text_key}` |" in text
    assert all(f"`{day}`" in text for day in fw.DAYS)


def test_the_tool_writes_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "config.md"
    monkeypatch.setattr(tool, "DOC", out)
    assert tool.main([]) == 0
    assert out.read_text(encoding="utf-8") == DOC.read_text(encoding="utf-8")
