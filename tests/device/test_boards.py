"""Board files against the ESP32 pin rules: the shipped boards pass, broken copies fail."""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import BOARDS, FIRMWARE
from deskpulse.device.boards import (
    PANEL_GLASSES,
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


def test_a_named_panel_glass_must_have_a_waveform_in_its_driver() -> None:
    b = board()
    b["display"]["panel"] = "depg0213bn"
    assert not problems(b, "error")
    b["display"]["panel"] = "gdey0213b74"
    assert_one(problems(b, "error"), "display.panel", "'gdey0213b74'", "depg0213bn")
    # The host's list is the driver's: the keys of PARTIAL_LUTS in drivers/ssd1680.py.
    tree = ast.parse((FIRMWARE / "kiosk" / "drivers" / "ssd1680.py").read_text())
    (table,) = [node.value for node in tree.body if isinstance(node, ast.Assign)
                and any(getattr(t, "id", None) == "PARTIAL_LUTS" for t in node.targets)]
    assert isinstance(table, ast.Dict)
    assert tuple(ast.literal_eval(k) for k in table.keys if k is not None) == \
        PANEL_GLASSES["ssd1680"]


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


def touch(**changes: Any) -> dict[str, Any]:
    part = {"controller": "gt911", "i2c": {"id": 0, "sda": 21, "scl": 22}, "address": 0x5D,
            "int": 39, "rst": 27}
    part.update(changes)
    return part


def test_touch_controller_replaces_answer_buttons() -> None:
    b = board()
    for button in b["buttons"]:
        button["answer"] = None
    b["touch"] = touch()
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
    b["touch"] = touch(i2c=dict(bus))
    b["rtc"] = {"chip": "bm8563", "i2c": dict(bus), "address": 81}
    assert problems(b, "error") == []
    b["rtc"]["address"] = 0x5D
    assert_one(problems(b, "error"), "rtc.address", "93", "touch")


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


# -- the shipped boards ---------------------------------------------------------------------
# Every warning a shipped board carries, by where: strapping pins that the board's own
# circuit (or the technician's wiring, for cs) leaves at their boot level.
EXPECTED_WARNINGS = {
    "esp32-devkitc-ssd1680": {"display.spi.cs"},
    "lilygo-t5-v2.3": {"display.spi.cs"},
    "lilygo-t5-v2.3-depg0213bn": {"display.spi.cs"},
    "lilygo-t5-v2.4": {"display.spi.cs"},
    "lilygo-t5-v2.4-depg0213bn": {"display.spi.cs"},
    "esp32-touch-epd213": {"buttons[0].pin", "display.spi.cs"},
    "m5stack-coreink": {"power_hold.pin", "buttons[3].pin", "display.spi.dc", "display.spi.rst"},
}


def test_every_shipped_board_is_expected() -> None:
    assert sorted(EXPECTED_WARNINGS) == list_boards()


@pytest.mark.parametrize("name", sorted(EXPECTED_WARNINGS))
def test_shipped_boards_warn_only_about_known_strapping_pins(name: str) -> None:
    found = validate_board(load_board(name))
    assert {p.where for p in found} == EXPECTED_WARNINGS[name], "\n".join(map(str, found))
    assert all("strapping" in p.message for p in found)


@pytest.mark.parametrize("name", list_boards())
def test_shipped_button_positions_run_left_to_right_by_face(name: str) -> None:
    placed = [b for b in load_board(name)["buttons"] if b.get("x") is not None]
    by_face = sorted(placed, key=lambda b: b["face"])
    assert [b["x"] for b in by_face] == sorted(b["x"] for b in placed)


def test_coreink_chip_select_on_gpio9_is_fine_only_on_the_pico_d4() -> None:
    # GPIO 9 and 10 are free on the ESP32-PICO-D4, whose flash uses 16 and 17 instead.
    b = load_board("m5stack-coreink")
    assert b["display"]["spi"]["cs"] == 9
    del b["module"]
    assert_one(problems(b, "error"), "display.spi.cs", "GPIO 9", "flash")


# The LilyGo T5 2.13" variants (docs/hardware.md, "LilyGO T5 variants"): LilyGO's
# lib/GxEPD/src/boards.h and schematics of the V2.3.1 and V2.4.
T5_REVISIONS = ("lilygo-t5-v2.3", "lilygo-t5-v2.4")
T5_PANEL_PINS = {"id": 2, "sck": 18, "mosi": 23, "cs": 5, "dc": 17, "rst": 16, "busy": 4}
# V2.4: speaker power (SPK_POWER_EN), speaker, LED; both revisions: the SD card slot.
T5_V24_TAKEN = {19: "speaker power", 25: "speaker", 26: "LED"}
T5_SD_CARD = (2, 13, 14, 15)


@pytest.mark.parametrize("name", [n for n in list_boards() if n.startswith("lilygo-t5-")])
def test_every_t5_has_lilygos_panel_wiring_and_its_button_for_service(name: str) -> None:
    b = load_board(name)
    assert b["display"]["spi"] == T5_PANEL_PINS
    assert (b["display"]["controller"], b["display"]["width"], b["display"]["height"]) == \
        ("ssd1680", 122, 250)
    assert [x["pin"] for x in b["buttons"] if x.get("service")] == [39]
    assert not {x["pin"] for x in b["buttons"]} & set(T5_SD_CARD)


@pytest.mark.parametrize("revision", T5_REVISIONS)
def test_each_t5_revision_comes_with_either_panel_and_only_the_glass_differs(
        revision: str) -> None:
    b74 = load_board(revision)
    depg = load_board(f"{revision}-depg0213bn")
    assert "panel" not in b74["display"]  # the GDEM/GDEY0213B74 keep their OTP waveforms
    assert depg["display"]["panel"] == "depg0213bn"
    glass_keys = {"panel", "partial_refresh_ms", "full_refresh_ms"}
    for key in set(b74) | set(depg):
        if key not in ("name", "description", "display"):
            assert b74[key] == depg[key], key
    assert {k: v for k, v in b74["display"].items() if k not in glass_keys} == \
        {k: v for k, v in depg["display"].items() if k not in glass_keys}


@pytest.mark.parametrize("name", ["lilygo-t5-v2.4", "lilygo-t5-v2.4-depg0213bn"])
def test_the_t5_v24_faces_keep_off_its_speaker_and_led(name: str) -> None:
    pins = {x["pin"] for x in load_board(name)["buttons"]}
    assert not pins & set(T5_V24_TAKEN), {p: T5_V24_TAKEN[p] for p in pins & set(T5_V24_TAKEN)}
    assert "power_hold" not in load_board(name)  # GPIO 19 feeds the speaker, not the panel


def test_pico_d4_flash_pins_are_errors() -> None:
    b = board()
    b["module"] = "esp32-pico-d4"
    b["buttons"][0]["pin"] = 16
    assert_one(problems(b, "error"), "buttons[0].pin", "GPIO 16", "PICO-D4")


def test_wrover_psram_pins_are_errors() -> None:
    b = board()
    b["module"] = "esp32-wrover"
    assert_one(problems(b, "error"), "display.spi.dc", "GPIO 17", "PSRAM")


def test_unknown_module_is_an_error() -> None:
    b = board()
    b["module"] = "esp32-solo"
    assert_one(problems(b, "error"), "module", "esp32-solo")


# -- display --------------------------------------------------------------------------------
def test_unknown_panel_controller_is_an_error() -> None:
    b = board()
    b["display"]["controller"] = "il0373"
    assert_one(problems(b, "error"), "display.controller", "il0373", "ssd1680")


@pytest.mark.parametrize("rotation", [45, -90, 360, "90", 90.0, True])
def test_rotation_must_be_a_right_angle(rotation: object) -> None:
    b = board()
    b["display"]["rotation"] = rotation
    assert_one(problems(b, "error"), "display.rotation", "0, 90, 180 or 270")


def test_panel_given_in_landscape_is_an_error() -> None:
    # 250 wide is more than the SSD1680's 176 source lines: the logical, not the native size.
    b = board()
    b["display"].update(width=250, height=122, rotation=0)
    assert_one(problems(b, "error"), "display", "native size", "rotation")


def test_square_controller_rejects_a_wider_panel() -> None:
    b = load_board("m5stack-coreink")
    b["display"]["width"] = 250
    assert_one(problems(b, "error"), "display", "JD79653A", "200x200")


@pytest.mark.parametrize("value", ["busy", 1, None])
def test_busy_level_is_required_as_low_or_high(value: object) -> None:
    b = board()
    b["display"]["busy_active"] = value
    assert_one(problems(b, "error"), "display.busy_active")


@pytest.mark.parametrize("key", ["partial_refresh_ms", "full_refresh_ms"])
@pytest.mark.parametrize("value", [0, -500, 3.5, "500", None])
def test_refresh_figures_are_positive_integers(key: str, value: object) -> None:
    b = board()
    b["display"][key] = value
    assert_one(problems(b, "error"), f"display.{key}")


def test_partial_refresh_slower_than_full_is_a_warning() -> None:
    b = board()
    b["display"].update(partial_refresh_ms=4000, full_refresh_ms=3500)
    assert problems(b, "error") == []
    assert_one(problems(b, "warning"), "display.partial_refresh_ms", "swapped")


@pytest.mark.parametrize("spi_id", [0, 3, "2"])
def test_spi_id_must_be_hspi_or_vspi(spi_id: object) -> None:
    b = board()
    b["display"]["spi"]["id"] = spi_id
    assert_one(problems(b, "error"), "display.spi.id", "flash")


def test_spi_baudrate_must_be_positive() -> None:
    b = board()
    b["display"]["spi"]["baudrate"] = 0
    assert_one(problems(b, "error"), "display.spi.baudrate")
    b["display"]["spi"]["baudrate"] = 10_000_000
    assert problems(b, "error") == []


# -- buttons: positions, service, touch-only boards -----------------------------------------
def test_button_x_beyond_the_rotated_panel_is_an_error() -> None:
    b = board()
    b["buttons"][3]["x"] = 250  # the panel is 250 wide at rotation 90: columns 0..249
    assert_one(problems(b, "error"), "buttons[3].x", "250", "after rotation")
    b["buttons"][3]["x"] = 249
    assert problems(b, "error") == []


def test_button_x_follows_the_rotation() -> None:
    # Upright (rotation 0) the same panel is only 122 wide: the two right buttons fall off.
    b = board()
    b["display"]["rotation"] = 0
    found = problems(b, "error")
    assert [p.where for p in found] == ["buttons[2].x", "buttons[3].x"]
    assert "122" in found[0].message


@pytest.mark.parametrize("x", [-1, 12.5, "31"])
def test_button_x_must_be_a_pixel_column(x: object) -> None:
    b = board()
    b["buttons"][0]["x"] = x
    assert_one(problems(b, "error"), "buttons[0].x", "integer")


def test_service_button_needs_no_face_or_answer() -> None:
    b = board()
    b["buttons"].append({"pin": 27, "active": "low", "pull": "up", "service": True})
    assert validate_board(b) == validate_board(board())
    b["buttons"][4]["service"] = "yes"
    assert_one(problems(b, "error"), "buttons[4].service", "true or false")


def test_button_without_a_role_is_a_warning() -> None:
    b = board()
    b["buttons"].append({"pin": 27, "active": "low", "pull": "up"})
    assert_one(problems(b, "warning"), "buttons[4]", "neither")


def test_touch_board_needs_no_buttons_at_all() -> None:
    b = board()
    b["buttons"] = []
    assert_one(problems(b, "error"), "buttons", "non-empty", "touch")
    b["touch"] = touch()
    assert problems(b, "error") == []


def test_touch_board_with_a_single_service_button() -> None:
    b = load_board("esp32-touch-epd213")
    assert [button.get("service") for button in b["buttons"]] == [True]
    b["touch"] = None
    found = problems(b, "error")
    assert any("at least 3 face buttons" in p.message for p in found)
    assert any('"yes"' in p.message for p in found)


def test_touch_faces_still_numbered_without_gaps() -> None:
    b = load_board("esp32-touch-epd213")
    b["buttons"].append({"pin": 32, "active": "low", "pull": "up", "face": 2})
    assert_one(problems(b, "error"), "buttons", "without gaps")


# -- touch controller -----------------------------------------------------------------------
def test_unknown_touch_controller_is_an_error() -> None:
    b = board()
    b["touch"] = touch(controller="ft6336")
    assert_one(problems(b, "error"), "touch.controller", "ft6336", "gt1151")


def test_touch_needs_its_bus_and_address() -> None:
    b = board()
    b["touch"] = touch(i2c=None, address=None)
    found = problems(b, "error")
    assert_one(found, "touch.i2c", "missing")
    assert_one(found, "touch.address", "missing")


def test_unusual_goodix_address_is_a_warning() -> None:
    b = board()
    b["touch"] = touch(address=0x38)
    assert problems(b, "error") == []
    assert_one(problems(b, "warning"), "touch.address", "0x14", "0x5D")


def test_touch_interrupt_is_an_input_and_reset_an_output() -> None:
    b = board()
    b["touch"] = touch(int=36, rst=35)  # INT may sit on an input-only pin, RST may not
    assert_one(problems(b, "error"), "touch.rst", "GPIO 35", "input-only")


def test_an_input_only_touch_interrupt_cannot_pick_the_address() -> None:
    b = board()
    b["touch"] = touch(int=36)
    assert problems(b, "error") == []
    assert_one(problems(b, "warning"), "touch.int", "GPIO 36", "address")
    b["touch"] = touch(int=32)
    assert [p for p in problems(b, "warning") if p.where == "touch.int"] == []


def test_the_touch_hat_board_mirrors_both_axes_without_complaint() -> None:
    b = load_board("esp32-touch-epd213")
    assert b["touch"]["mirror_x"] is True and b["touch"]["mirror_y"] is True
    assert problems(b, "error") == []


def test_touch_pins_are_checked_against_the_rest() -> None:
    b = board()
    b["touch"] = touch(int=b["buttons"][0]["pin"])
    assert_one(problems(b, "error"), "touch.int", "already used by buttons[0].pin")
    b["touch"] = touch(rst=7)
    assert_one(problems(b, "error"), "touch.rst", "GPIO 7", "flash")


def test_touch_and_clock_on_different_buses_with_the_same_pins_is_an_error() -> None:
    b = board()
    b["touch"] = touch(i2c={"id": 1, "sda": 21, "scl": 22})
    b["rtc"] = {"chip": "bm8563", "i2c": {"id": 0, "sda": 21, "scl": 22}, "address": 81}
    found = problems(b, "error")
    assert [p.where for p in found] == ["rtc.i2c.sda", "rtc.i2c.scl"]


def test_i2c_id_must_be_0_or_1() -> None:
    b = board()
    b["touch"] = touch(i2c={"id": 2, "sda": 21, "scl": 22})
    assert_one(problems(b, "error"), "touch.i2c.id", "0 or 1")


# -- power hold -----------------------------------------------------------------------------
def test_power_hold_is_an_output_pin() -> None:
    b = board()
    b["power_hold"] = {"pin": 36, "active": "high"}
    assert_one(problems(b, "error"), "power_hold.pin", "GPIO 36", "input-only")


def test_power_hold_needs_its_level() -> None:
    b = board()
    b["power_hold"] = {"pin": 27}
    assert_one(problems(b, "error"), "power_hold.active", "missing")
    b["power_hold"] = {"pin": 27, "active": "on"}
    assert_one(problems(b, "error"), "power_hold.active", '"low" or "high"')


@pytest.mark.parametrize("key", ["mirror_x", "mirror_y", "swap_xy"])
def test_touch_axis_corrections_are_booleans(key: str) -> None:
    b = board()
    b["touch"] = touch(**{key: True})
    assert problems(b, "error") == []
    b["touch"] = touch(**{key: 1})
    assert_one(problems(b, "error"), f"touch.{key}", "true or false")


# -- what each control looks like and where it is -------------------------------------------
def test_coreink_describes_its_dial_and_top_button() -> None:
    buttons = load_board("m5stack-coreink")["buttons"]
    controls = {b["pin"]: (b.get("control"), b.get("edge")) for b in buttons if b.get("face")}
    assert controls == {39: ("dial_down", "right"), 38: ("dial_press", "right"),
                        37: ("dial_up", "right"), 5: ("button", "top")}
    assert [b["pin"] for b in buttons if b.get("service")] == [27]  # the power button


@pytest.mark.parametrize(("key", "value", "words"), [
    ("control", "knob", ("dial_up",)),
    ("edge", "back", ("bottom", "right")),
])
def test_unknown_control_or_edge_is_an_error(key: str, value: str,
                                             words: tuple[str, ...]) -> None:
    b = board()
    b["buttons"][1][key] = value
    assert_one(problems(b, "error"), f"buttons[1].{key}", *words)


def test_a_side_control_is_placed_by_y_not_x() -> None:
    b = board()
    b["buttons"][1]["edge"] = "right"
    assert_one(problems(b, "error"), "buttons[1].x", "right", "y")
    b = board()
    b["buttons"][1]["y"] = 40
    assert_one(problems(b, "error"), "buttons[1].y", "bottom", "x")
