"""Board files against the ESP32 pin rules: the shipped boards pass, broken copies fail."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import BOARDS
from deskpulse.boards import (
    Problem,
    errors_only,
    list_boards,
    load_board,
    validate_board,
)
from deskpulse.errors import DeskPulseError

REFERENCE = "esp32-devkitc-ssd1680"


def board() -> dict[str, Any]:
    return copy.deepcopy(load_board(REFERENCE))


def problems(board: dict[str, Any], severity: str) -> list[Problem]:
    return [p for p in validate_board(board) if p.severity == severity]


def assert_one(found: list[Problem], where: str, *words: str) -> None:
    """Exactly one problem at `where`, and its message mentions every word."""
    at = [p for p in found if p.where == where]
    assert len(at) == 1, f"expected one problem at {where}, got {[str(p) for p in found]}"
    for word in words:
        assert word in at[0].message, str(at[0])


def test_boards_folder_is_listed() -> None:
    names = list_boards()
    assert REFERENCE in names
    assert names == sorted(p.stem for p in BOARDS.glob("*.json"))


@pytest.mark.parametrize("name", list_boards())
def test_every_shipped_board_has_no_errors(name: str) -> None:
    found = validate_board(load_board(name))
    assert errors_only(found) == [], "\n".join(map(str, found))


def test_load_by_name_and_by_path_agree() -> None:
    assert load_board(REFERENCE) == load_board(BOARDS / f"{REFERENCE}.json")
    assert load_board(REFERENCE) == load_board(str(BOARDS / f"{REFERENCE}.json"))


def test_reference_board_warns_about_its_strapping_pin() -> None:
    # cs on GPIO 5 is fine electrically (cs idles high, as GPIO 5 wants at reset) but worth
    # a warning, never an error.
    assert_one(problems(board(), "warning"), "display.spi.cs", "GPIO 5", "strapping")


def test_flash_pin_is_an_error() -> None:
    b = board()
    b["buttons"][0]["pin"] = 6
    assert_one(problems(b, "error"), "buttons[0].pin", "GPIO 6", "flash")


@pytest.mark.parametrize("role", ["cs", "dc", "rst", "sck", "mosi"])
def test_input_only_pin_as_output_is_an_error(role: str) -> None:
    b = board()
    b["display"]["spi"][role] = 34
    assert_one(problems(b, "error"), f"display.spi.{role}", "GPIO 34", "input-only")


def test_input_only_pin_for_busy_is_fine() -> None:
    b = board()
    b["display"]["spi"]["busy"] = 36
    assert errors_only(validate_board(b)) == []


@pytest.mark.parametrize("pull", ["up", "down"])
def test_internal_pull_on_gpio35_is_an_error(pull: str) -> None:
    b = board()
    b["buttons"][1].update(pin=35, pull=pull)
    assert_one(problems(b, "error"), "buttons[1].pin", "GPIO 35", f"pull-{pull}")


def test_gpio35_with_an_external_resistor_is_fine() -> None:
    b = board()
    b["buttons"][1].update(pin=35, pull=None)
    assert errors_only(validate_board(b)) == []


def test_pin_used_twice_is_an_error() -> None:
    b = board()
    b["buttons"][2]["pin"] = b["display"]["spi"]["sck"]
    # Reported at the second use, naming the first.
    assert_one(problems(b, "error"), "display.spi.sck", "GPIO 18", "buttons[2].pin")


def test_two_buttons_on_one_pin_is_an_error() -> None:
    b = board()
    b["buttons"][3]["pin"] = b["buttons"][0]["pin"]
    assert_one(problems(b, "error"), "buttons[3].pin", "already used by buttons[0].pin")


def test_missing_yes_button_is_an_error() -> None:
    b = board()
    b["buttons"][3]["answer"] = None
    assert_one(problems(b, "error"), "buttons", '"yes"')


def test_touch_controller_replaces_answer_buttons() -> None:
    b = board()
    for button in b["buttons"]:
        button["answer"] = None
    b["touch"] = {"controller": "ft6336", "i2c": {"id": 0, "sda": 21, "scl": 22}, "int": 39}
    assert errors_only(validate_board(b)) == []


def test_two_yes_buttons_is_an_error() -> None:
    b = board()
    b["buttons"][1]["answer"] = "yes"
    assert_one(problems(b, "error"), "buttons", 'more than one "yes"')


def test_strapping_pin_is_a_warning_not_an_error() -> None:
    b = board()
    b["buttons"][0]["pin"] = 15
    assert errors_only(validate_board(b)) == []
    assert_one(problems(b, "warning"), "buttons[0].pin", "GPIO 15", "strapping")


def test_gpio12_warning_explains_the_flash_voltage() -> None:
    b = board()
    b["buttons"][0]["pin"] = 12
    assert_one(problems(b, "warning"), "buttons[0].pin", "flash voltage")


@pytest.mark.parametrize("pin", [20, 24, 40, -1])
def test_nonexistent_gpio_is_an_error(pin: int) -> None:
    b = board()
    b["buttons"][0]["pin"] = pin
    assert_one(problems(b, "error"), "buttons[0].pin", "does not exist")


def test_console_uart_pin_is_an_error() -> None:
    b = board()
    b["buttons"][0]["pin"] = 1
    assert_one(problems(b, "error"), "buttons[0].pin", "console UART")


def test_faces_must_start_at_one_without_gaps() -> None:
    b = board()
    b["buttons"][2]["face"] = 5
    assert_one(problems(b, "error"), "buttons", "without gaps")


def test_at_least_three_faces() -> None:
    b = board()
    b["buttons"] = b["buttons"][:2] + [b["buttons"][3]]
    b["buttons"][2]["face"] = None
    assert_one(problems(b, "error"), "buttons", "at least 3")


@pytest.mark.parametrize(
    ("path", "where"),
    [
        (("name",), "name"),
        (("flash_size",), "flash_size"),
        (("vfs", "block_size"), "vfs.block_size"),
        (("display", "width"), "display.width"),
        (("display", "rotation"), "display.rotation"),
        (("buttons",), "buttons"),
    ],
)
def test_required_key_missing_is_an_error(path: tuple[str, ...], where: str) -> None:
    b = board()
    parent = b
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    assert_one(problems(b, "error"), where, "missing")


def test_wrong_types_are_errors_not_crashes() -> None:
    b = board()
    b["display"]["width"] = "250"
    b["vfs"] = [1, 2]
    b["buttons"][0] = "pin 32"
    found = problems(b, "error")
    assert_one(found, "display.width", "integer")
    assert_one(found, "vfs", "object")
    assert_one(found, "buttons[0]", "object")


def test_vfs_beyond_flash_is_an_error() -> None:
    b = board()
    b["flash_size"] = 2 * 1024 * 1024
    assert_one(problems(b, "error"), "vfs", "beyond")


def test_shared_i2c_bus_is_not_a_duplicate_but_addresses_must_differ() -> None:
    b = board()
    bus = {"id": 0, "sda": 21, "scl": 22}
    b["touch"] = {"controller": "ft6336", "i2c": dict(bus), "address": 56, "int": 39}
    b["rtc"] = {"chip": "bm8563", "i2c": dict(bus), "address": 81}
    assert errors_only(validate_board(b)) == []
    b["rtc"]["address"] = 56
    assert_one(problems(b, "error"), "rtc.address", "56", "touch")


def test_unknown_rtc_chip_is_an_error() -> None:
    b = board()
    b["rtc"] = {"chip": "ds3231", "i2c": {"id": 0, "sda": 21, "scl": 22}, "address": 104}
    assert_one(problems(b, "error"), "rtc.chip", "ds3231")


def test_bad_json_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "name": "broken",\n  "chip": "esp32",,\n}\n')
    with pytest.raises(DeskPulseError) as caught:
        load_board(path)
    message = str(caught.value)
    assert str(path) in message
    assert "not valid JSON" in message
    assert "line 3" in message


def test_json_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text(json.dumps([1, 2]))
    with pytest.raises(DeskPulseError, match="must hold a JSON object"):
        load_board(path)


def test_unknown_board_lists_the_known_ones() -> None:
    with pytest.raises(DeskPulseError) as caught:
        load_board("no-such-board")
    assert REFERENCE in str(caught.value)
