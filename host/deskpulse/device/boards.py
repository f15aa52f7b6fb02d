"""Board definitions (boards/<name>.json): loading, listing and checking ESP32 pin rules.

A board file holds pins, active levels, the panel, touch and clock chips, nothing else.
validate_board() returns every problem found instead of stopping at the first, so that
one run shows everything wrong with a new board file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from deskpulse import resources
from deskpulse.errors import DeskPulseError

Severity = Literal["error", "warning"]

# GPIO numbers of the ESP32 (not -S2/-S3/-C3): 20, 24 and 28-31 are not bonded out.
ESP32_GPIOS = frozenset([*range(0, 20), 21, 22, 23, 25, 26, 27, *range(32, 40)])
INPUT_ONLY_PINS = frozenset(range(34, 40))
CONSOLE_PINS = {1: "TX", 3: "RX"}
STRAPPING_PINS = {
    0: "selects download mode when low at reset",
    2: "must be low or floating at reset for serial download",
    5: "sets the SDIO slave timing at reset",
    12: "selects the flash voltage at reset (high = 1.8 V: a 3.3 V module will not boot)",
    15: "silences the boot log when low at reset",
}


@dataclass(frozen=True)
class Module:
    """Which GPIOs an ESP32 module or package keeps for its own flash (and PSRAM)."""

    reserved: frozenset[int]
    why: str


# The module key of a board file; without one, a WROOM-style module is assumed.
DEFAULT_MODULE = "esp32-wroom"
MODULES = {
    "esp32-wroom": Module(frozenset(range(6, 12)), "wired to the SPI flash on ESP32-WROOM "
                          "modules and DevKitC boards (GPIO 6-11 are never free)"),
    "esp32-wrover": Module(frozenset([*range(6, 12), 16, 17]), "wired to the SPI flash "
                           "(GPIO 6-11) or the PSRAM (GPIO 16, 17) on ESP32-WROVER modules"),
    "esp32-pico-d4": Module(frozenset([6, 7, 8, 11, 16, 17]), "wired to the flash inside "
                            "the ESP32-PICO-D4 (GPIO 6, 7, 8, 11, 16, 17; 9 and 10 are free)"),
}
# MicroPython's ESP32 partition block device works in 4 KiB flash sectors.
FLASH_SECTOR = 4096
# Bootloader (0x1000), partition table (0x8000) and the application start at 0x10000.
FIRST_DATA_OFFSET = 0x10000

SUPPORTED_RTC_CHIPS = frozenset(["bm8563"])
# Largest native panel (source lines x gate lines) each panel driver handles.
PANEL_CONTROLLERS = {"ssd1680": (176, 296), "ssd1681": (200, 200), "jd79653a": (200, 200)}
# Glass whose partial refresh needs its own waveform (display.panel; the driver's
# PARTIAL_LUTS, which tests/device/test_boards.py reads to keep the two lists equal).
PANEL_GLASSES = {"ssd1680": ("depg0213bn",)}
TOUCH_CONTROLLERS = frozenset(["gt911", "gt1151"])
# Corrections for a touch sensor whose axes differ from the panel's (false when left out).
TOUCH_AXIS_OPTIONS = ("mirror_x", "mirror_y", "swap_xy")
# Goodix controllers take one of two addresses, chosen by the INT level during reset.
GOODIX_ADDRESSES = (0x14, 0x5D)
# What a button looks like to the customer and where it is (the screens show controls that
# are not push buttons under the panel, e.g. the CoreInk's side dial and top button).
CONTROLS = ("button", "dial_up", "dial_press", "dial_down")
EDGES = ("bottom", "top", "left", "right")
SPI_IDS = (1, 2)  # HSPI and VSPI; SPI 0 drives the flash
I2C_IDS = (0, 1)
KNOWN_KEYS = frozenset(
    ["name", "description", "chip", "module", "flash_size", "vfs", "power_hold", "buttons",
     "display", "touch", "rtc", "watchdog_ms"]
)

# Pin roles in peripheral definitions, by signal direction as seen from the ESP32.
OUTPUT_ROLES = frozenset(["sck", "mosi", "cs", "dc", "rst"])
INPUT_ROLES = frozenset(["miso", "busy", "int", "irq"])
OPEN_DRAIN_ROLES = frozenset(["sda", "scl"])  # I2C drives these low: not input-only pins


@dataclass(frozen=True)
class Problem:
    severity: Severity
    where: str  # the key path in the board file, e.g. "buttons[2].pin"
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.where}: {self.message}"


@dataclass(frozen=True)
class PinUse:
    where: str
    pin: int
    direction: Literal["in", "out", "open_drain"]
    pull: str | None = None


def list_boards() -> list[str]:
    """Names of the boards that ship with deskpulse (package data)."""
    return sorted(path.stem for path in resources.boards_dir().glob("*.json"))


def board_path(name_or_path: str | Path) -> Path:
    """A board name (one that ships with deskpulse), or a path to a board file."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith(".json") or "/" in text or "\\" in text:
        return Path(name_or_path)
    return resources.boards_dir() / f"{text}.json"


def load_board(name_or_path: str | Path) -> dict[str, Any]:
    """Read a board definition. Raises DeskPulseError if it cannot be read or parsed;
    call validate_board() to check its contents."""
    path = board_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        known = ", ".join(list_boards()) or "none"
        raise DeskPulseError(f"no board file {path} (known boards: {known})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DeskPulseError(f"cannot read board file {path}: {error}") from None
    try:
        board = json.loads(text)
    except json.JSONDecodeError as error:
        raise DeskPulseError(
            f"board file {path} is not valid JSON: {error.msg} at line {error.lineno} "
            f"column {error.colno}"
        ) from None
    if not isinstance(board, dict):
        raise DeskPulseError(
            f"board file {path} must hold a JSON object, not {type(board).__name__}"
        )
    return cast(dict[str, Any], board)


def validate_board(board: object) -> list[Problem]:
    """Every problem with a board definition, errors and warnings, in file order."""
    checked = _mapping(board)
    if checked is None:
        return [Problem("error", "board", "must be a JSON object")]
    checker = _Checker()
    checker.check(checked)
    return checker.problems


def errors_only(problems: list[Problem]) -> list[Problem]:
    return [problem for problem in problems if problem.severity == "error"]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _mapping(value: object) -> Mapping[str, Any] | None:
    """value if it is a JSON object, else None."""
    return cast(Mapping[str, Any], value) if isinstance(value, Mapping) else None


def _list(value: object) -> list[Any] | None:
    """value if it is a JSON array, else None."""
    return cast(list[Any], value) if isinstance(value, list) else None


class _Checker:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.module = MODULES[DEFAULT_MODULE]

    def error(self, where: str, message: str) -> None:
        self.problems.append(Problem("error", where, message))

    def warning(self, where: str, message: str) -> None:
        self.problems.append(Problem("warning", where, message))

    # -- structure ----------------------------------------------------------------------
    def check(self, board: Mapping[str, Any]) -> None:
        for key in board:
            if key not in KNOWN_KEYS:
                self.warning(str(key), "unknown key (a typo?)")
        self.require_str(board, "name", "board")
        chip = self.require_str(board, "chip", "board")
        if chip is not None and chip != "esp32":
            self.error("chip", f"only the esp32 pin rules are known, not {chip!r}")
        self.check_module(board)
        self.check_flash(board)
        if "watchdog_ms" in board:
            timeout = board["watchdog_ms"]
            if not _is_int(timeout) or timeout < 1000:
                self.error("watchdog_ms", "must be an integer of at least 1000 (the ESP32 "
                           "watchdog's minimum)")

        uses: list[PinUse] = []
        if board.get("power_hold") is not None:
            uses.extend(self.check_power_hold(board["power_hold"]))

        display = _mapping(board.get("display"))
        has_touch = bool(board.get("touch"))
        buttons = _list(board.get("buttons"))
        if board.get("buttons") is None:
            self.error("buttons", "missing")
        elif buttons is None:
            self.error("buttons", "must be a list")
        elif not buttons and not has_touch:
            self.error("buttons", "must be a non-empty list (or the board needs a touch "
                       "controller)")
        else:
            uses.extend(self.check_buttons(buttons, has_touch, _logical_width(display)))

        if board.get("display") is None:
            self.error("display", "missing")
        elif display is None:
            self.error("display", "must be an object")
        else:
            uses.extend(self.check_display(display))

        buses: dict[tuple[object, ...], list[tuple[str, object]]] = {}
        for key in ("touch", "rtc"):
            if board.get(key) is None:
                continue
            part = _mapping(board[key])
            if part is None:
                self.error(key, "must be an object or null")
                continue
            if key == "rtc":
                self.check_rtc(part)
            else:
                self.check_touch(part)
            uses.extend(self.peripheral_pins(part, key, buses))
        for users in buses.values():
            self.check_shared_bus(users)

        for use in uses:
            self.check_pin(use)
        self.check_duplicates(uses)

    def require(self, parent: Mapping[str, Any], key: str, where: str) -> Any:
        """parent[key], or None after reporting it missing (absent or null)."""
        value = parent.get(key)
        if value is None:
            self.error(self.join(where, key), "missing")
        return value

    def require_str(self, parent: Mapping[str, Any], key: str, where: str) -> str | None:
        value = self.require(parent, key, where)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.error(self.join(where, key), "must be a non-empty string")
            return None
        return value

    def require_int(
        self, parent: Mapping[str, Any], key: str, where: str, minimum: int = 0
    ) -> int | None:
        value = self.require(parent, key, where)
        if value is None:
            return None
        if not _is_int(value) or value < minimum:
            self.error(self.join(where, key), f"must be an integer of at least {minimum}")
            return None
        return value

    def require_level(self, parent: Mapping[str, Any], key: str, where: str) -> str | None:
        value = self.require(parent, key, where)
        if value is None:
            return None
        if value not in ("low", "high"):
            self.error(self.join(where, key), 'must be "low" or "high"')
            return None
        return value

    @staticmethod
    def join(where: str, key: str) -> str:
        return key if where == "board" else f"{where}.{key}"

    # -- module and flash -------------------------------------------------------------------
    def check_module(self, board: Mapping[str, Any]) -> None:
        name = board.get("module")
        if name is None:
            return
        if name not in MODULES:
            self.error("module", f"unknown module {name!r} (known: {', '.join(MODULES)}); "
                       f"leave it out for a WROOM-style module")
            return
        self.module = MODULES[name]

    def check_flash(self, board: Mapping[str, Any]) -> None:
        flash_size = self.require_int(board, "flash_size", "board", minimum=1)
        if self.require(board, "vfs", "board") is None:
            return
        vfs = _mapping(board["vfs"])
        if vfs is None:
            self.error("vfs", "must be an object with offset, size and block_size")
            return
        offset = self.require_int(vfs, "offset", "vfs")
        size = self.require_int(vfs, "size", "vfs", minimum=1)
        block_size = self.require_int(vfs, "block_size", "vfs", minimum=1)
        if block_size is not None and block_size != FLASH_SECTOR:
            self.error("vfs.block_size", f"must be {FLASH_SECTOR}: MicroPython's ESP32 "
                       "partitions are LittleFS in 4 KiB flash sectors")
        if offset is not None:
            if offset % FLASH_SECTOR:
                self.error("vfs.offset", f"must be a multiple of {FLASH_SECTOR}")
            if offset < FIRST_DATA_OFFSET:
                self.error("vfs.offset", f"{offset:#x} overlaps the bootloader, partition "
                           f"table or application (below {FIRST_DATA_OFFSET:#x})")
        if size is not None and size % FLASH_SECTOR:
            self.error("vfs.size", f"must be a multiple of {FLASH_SECTOR}")
        if (
            offset is not None
            and size is not None
            and flash_size is not None
            and offset + size > flash_size
        ):
            self.error("vfs", f"ends at {offset + size:#x}, beyond the {flash_size:#x}-byte flash")

    def check_power_hold(self, value: object) -> list[PinUse]:
        hold = _mapping(value)
        if hold is None:
            self.error("power_hold", "must be an object with pin and active, or null")
            return []
        self.require_level(hold, "active", "power_hold")
        pin = self.require(hold, "pin", "power_hold")
        return [] if pin is None else [PinUse("power_hold.pin", pin, "out")]

    # -- buttons --------------------------------------------------------------------------
    def check_buttons(
        self, buttons: list[Any], has_touch: bool, logical_width: int | None
    ) -> list[PinUse]:
        uses: list[PinUse] = []
        faces: dict[int, str] = {}
        answers: dict[str, list[str]] = {"yes": [], "no": []}
        for index, item in enumerate(buttons):
            where = f"buttons[{index}]"
            button = _mapping(item)
            if button is None:
                self.error(where, "must be an object")
                continue
            pin = self.require(button, "pin", where)
            active = self.require(button, "active", where)
            if active is not None and active not in ("low", "high"):
                self.error(f"{where}.active", 'must be "low" or "high"')
            pull = button.get("pull")
            if pull not in (None, "up", "down"):
                self.error(f"{where}.pull", 'must be "up", "down" or null')
                pull = None
            if (active, pull) in (("low", "down"), ("high", "up")):
                self.warning(f"{where}.pull", f"an active-{active} button with a pull-{pull} "
                             "reads as pressed at rest unless an external resistor wins")
            face = button.get("face")
            answer = button.get("answer")
            service = button.get("service", False)
            if face is not None:
                if not _is_int(face) or face < 1:
                    self.error(f"{where}.face", "must be an integer from 1, or null")
                elif face in faces:
                    self.error(f"{where}.face", f"face {face} is also {faces[face]}")
                else:
                    faces[face] = where
            if answer is not None:
                if answer not in answers:
                    self.error(f"{where}.answer", 'must be "yes", "no" or null')
                else:
                    answers[answer].append(where)
            if not isinstance(service, bool):
                self.error(f"{where}.service", "must be true or false")
                service = False
            if face is None and answer is None and not service:
                self.warning(where, "has neither a face nor an answer: the flow never uses it")
            self.check_button_x(button, where, logical_width)
            self.check_control(button, where)
            if pin is not None:
                uses.append(PinUse(f"{where}.pin", pin, "in", pull))

        count = len(faces)
        if count < 3 and not has_touch:
            self.error("buttons", f"the survey needs at least 3 face buttons, found {count} "
                       "(or the board needs a touch controller)")
        elif count and sorted(faces) != list(range(1, count + 1)):
            self.error("buttons", f"faces must be numbered 1..{count} without gaps, "
                       f"found {sorted(faces)}")
        for answer, holders in answers.items():
            if len(holders) > 1:
                self.error("buttons", f'more than one "{answer}" button: {", ".join(holders)}')
            elif not holders and not has_touch:
                self.error("buttons", f'no "{answer}" answer button (needed without a '
                           "touch controller)")
        return uses

    def check_control(self, button: Mapping[str, Any], where: str) -> None:
        """control and edge: what the customer sees and where; x runs along the top or
        bottom edge, y along the left or right one."""
        control = button.get("control", "button")
        edge = button.get("edge", "bottom")
        if control not in CONTROLS:
            self.error(f"{where}.control", f"must be one of {', '.join(CONTROLS)}")
        if edge not in EDGES:
            self.error(f"{where}.edge", f"must be one of {', '.join(EDGES)}")
            return
        y = button.get("y")
        if edge in ("left", "right"):
            if button.get("x") is not None:
                self.error(f"{where}.x", f"a control on the {edge} edge is placed by y, not x")
            if y is not None and (not _is_int(y) or y < 0):
                self.error(f"{where}.y", "must be a pixel row (an integer from 0), or null")
        elif y is not None:
            self.error(f"{where}.y", f"a control on the {edge} edge is placed by x, not y")

    def check_button_x(
        self, button: Mapping[str, Any], where: str, logical_width: int | None
    ) -> None:
        """x: the button's centre along the bottom edge, in logical panel pixels, so the
        screens can draw each option above the button that selects it."""
        x = button.get("x")
        if x is None:
            return
        if not _is_int(x) or x < 0:
            self.error(f"{where}.x", "must be a pixel column (an integer from 0), or null")
        elif logical_width is not None and x >= logical_width:
            self.error(f"{where}.x", f"{x} is beyond the panel, which is {logical_width} "
                       "pixels wide after rotation")

    # -- display, touch, clock chip ---------------------------------------------------------
    def check_display(self, display: Mapping[str, Any]) -> list[PinUse]:
        controller = self.require_str(display, "controller", "display")
        if controller is not None and controller not in PANEL_CONTROLLERS:
            self.error("display.controller", f"the firmware has no driver for {controller!r} "
                       f"(supported: {', '.join(sorted(PANEL_CONTROLLERS))})")
            controller = None
        width = self.require_int(display, "width", "display", minimum=1)
        height = self.require_int(display, "height", "display", minimum=1)
        if controller is not None and width is not None and height is not None:
            most_wide, most_high = PANEL_CONTROLLERS[controller]
            if width > most_wide or height > most_high:
                self.error("display", f"{width}x{height} is more than the {controller.upper()}'s "
                           f"{most_wide}x{most_high}: give the panel's native size (a 2.13\" "
                           "panel is 122 wide, 250 high) and turn it with rotation")
        rotation = self.require(display, "rotation", "display")
        if rotation is not None and (not _is_int(rotation) or rotation not in (0, 90, 180, 270)):
            self.error("display.rotation", "must be 0, 90, 180 or 270")
        self.require_level(display, "busy_active", "display")
        glass = display.get("panel")
        if glass is not None and controller is not None \
                and glass not in PANEL_GLASSES.get(controller, ()):
            known = ", ".join(PANEL_GLASSES.get(controller, ())) or "none"
            self.error("display.panel", f"the {controller.upper()} driver has no waveform for "
                       f"{glass!r} (known: {known}); leave it out for the controller's own")
        partial = self.require_int(display, "partial_refresh_ms", "display", minimum=1)
        full = self.require_int(display, "full_refresh_ms", "display", minimum=1)
        if partial is not None and full is not None and partial > full:
            self.warning("display.partial_refresh_ms", f"{partial} ms is slower than the full "
                         f"refresh ({full} ms): are the two swapped?")
        spi = _mapping(display.get("spi"))
        if spi is None:
            self.error("display.spi", "missing: the panel's SPI bus and control pins")
            return []
        for role in ("sck", "mosi", "cs", "dc", "busy"):
            self.require(spi, role, "display.spi")
        if "id" in spi and spi["id"] not in SPI_IDS:
            self.error("display.spi.id", "must be 1 (HSPI) or 2 (VSPI): SPI 0 drives the flash")
        baudrate = spi.get("baudrate")
        if baudrate is not None and (not _is_int(baudrate) or baudrate < 1):
            self.error("display.spi.baudrate", "must be a positive integer (Hz), or left out")
        return self.peripheral_pins(display, "display", {})

    def check_touch(self, touch: Mapping[str, Any]) -> None:
        controller = touch.get("controller")
        if not isinstance(controller, str):
            self.error("touch.controller", "missing: name the touch controller chip")
        elif controller not in TOUCH_CONTROLLERS:
            self.error("touch.controller", f"the firmware has no driver for {controller!r} "
                       f"(supported: {', '.join(sorted(TOUCH_CONTROLLERS))})")
        if touch.get("i2c") is None:
            self.error("touch.i2c", "missing: the touch controller's I2C bus (id, sda, scl)")
        for key in TOUCH_AXIS_OPTIONS:
            if key in touch and not isinstance(touch[key], bool):
                self.error(f"touch.{key}", "must be true or false, or left out")
        # At start-up the driver drives INT while it releases RST: that level picks the
        # Goodix address. An input-only INT still works (both addresses are probed), but
        # the chip then answers wherever the line's idle level sent it.
        interrupt = touch.get("int")
        if interrupt in INPUT_ONLY_PINS and touch.get("rst") is not None:
            self.warning("touch.int", f"GPIO {interrupt} is input-only: the driver cannot "
                         "drive INT to pick the I2C address at reset; the controller answers "
                         "at the address its INT line's idle level selects")
        address = self.require(touch, "address", "touch")
        if address is None:
            return
        if not _is_int(address) or not 0 <= address <= 0x7F:
            self.error("touch.address", "must be a 7-bit I2C address (0..127)")
        elif address not in GOODIX_ADDRESSES:
            self.warning("touch.address", f"GT911/GT1151 controllers answer at "
                         f"{GOODIX_ADDRESSES[0]} (0x14) or {GOODIX_ADDRESSES[1]} (0x5D), "
                         f"not {address}")

    def check_rtc(self, rtc: Mapping[str, Any]) -> None:
        chip = self.require_str(rtc, "chip", "rtc")
        if chip is not None and chip not in SUPPORTED_RTC_CHIPS:
            self.error("rtc.chip", f"the firmware has no driver for {chip!r} "
                       f"(supported: {', '.join(sorted(SUPPORTED_RTC_CHIPS))})")
        if _mapping(rtc.get("i2c")) is None:
            self.error("rtc.i2c", "missing: the clock chip's I2C bus (id, sda, scl)")
        address = rtc.get("address")
        if address is not None and (not _is_int(address) or not 0 <= address <= 0x7F):
            self.error("rtc.address", "must be a 7-bit I2C address (0..127)")

    def peripheral_pins(
        self,
        part: Mapping[str, Any],
        where: str,
        buses: dict[tuple[object, ...], list[tuple[str, object]]],
    ) -> list[PinUse]:
        """Pins of a display, touch or clock chip: its own control pins and its bus."""
        uses = self.role_pins(part, where)
        spi = _mapping(part.get("spi"))
        if spi is not None:
            uses += self.role_pins(spi, f"{where}.spi")
        if part.get("i2c") is None:
            return uses
        i2c = _mapping(part["i2c"])
        if i2c is None:
            self.error(f"{where}.i2c", "must be an object with id, sda and scl")
            return uses
        for role in ("sda", "scl"):
            self.require(i2c, role, f"{where}.i2c")
        if i2c.get("id", 0) not in I2C_IDS:
            self.error(f"{where}.i2c.id", "must be 0 or 1 (the ESP32 has two I2C controllers)")
        # Chips may share one I2C bus: the same (id, sda, scl) counts as one use of the pins.
        key = (i2c.get("id", 0), i2c.get("sda"), i2c.get("scl"))
        users = buses.setdefault(key, [])
        users.append((where, part.get("address")))
        if len(users) == 1:
            uses += self.role_pins(i2c, f"{where}.i2c")
        return uses

    @staticmethod
    def role_pins(part: Mapping[str, Any], where: str) -> list[PinUse]:
        uses: list[PinUse] = []
        for role, value in part.items():
            if value is None:
                continue
            if role in OUTPUT_ROLES:
                uses.append(PinUse(f"{where}.{role}", value, "out"))
            elif role in INPUT_ROLES:
                uses.append(PinUse(f"{where}.{role}", value, "in"))
            elif role in OPEN_DRAIN_ROLES:
                uses.append(PinUse(f"{where}.{role}", value, "open_drain"))
        return uses

    def check_shared_bus(self, users: list[tuple[str, object]]) -> None:
        seen: dict[object, str] = {}
        for where, address in users:
            if address is None:
                continue
            if address in seen:
                self.error(f"{where}.address", f"I2C address {address} is also {seen[address]} "
                           "on the same bus")
            else:
                seen[address] = where

    # -- pins ----------------------------------------------------------------------------
    def check_pin(self, use: PinUse) -> None:
        pin, where = use.pin, use.where
        if not _is_int(pin):
            self.error(where, f"must be a GPIO number, not {pin!r}")
            return
        if pin not in ESP32_GPIOS:
            self.error(where, f"GPIO {pin} does not exist on the ESP32")
            return
        if pin in self.module.reserved:
            self.error(where, f"GPIO {pin} is {self.module.why}")
            return
        if pin in CONSOLE_PINS:
            self.error(where, f"GPIO {pin} is the console UART {CONSOLE_PINS[pin]}, which "
                       "carries the REPL and the sync protocol")
        if pin in INPUT_ONLY_PINS:
            if use.direction != "in":
                self.error(where, f"GPIO {pin} is input-only (34-39) and cannot drive "
                           f"{where.rsplit('.', 1)[-1]}")
            elif use.pull is not None:
                self.error(where, f"GPIO {pin} has no internal pull-{use.pull} (34-39): "
                           'fit an external resistor and set "pull": null')
        if pin in STRAPPING_PINS:
            self.warning(where, f"GPIO {pin} is a strapping pin: it {STRAPPING_PINS[pin]}; "
                         "make sure the circuit leaves it at its boot level")

    def check_duplicates(self, uses: list[PinUse]) -> None:
        first: dict[int, str] = {}
        for use in uses:
            if not _is_int(use.pin):
                continue
            if use.pin in first:
                self.error(use.where, f"GPIO {use.pin} is already used by {first[use.pin]}")
            else:
                first[use.pin] = use.where


def _logical_width(display: Mapping[str, Any] | None) -> int | None:
    """The panel's width after rotation, or None while the display entry is unusable."""
    if display is None:
        return None
    width, height, rotation = display.get("width"), display.get("height"), display.get("rotation")
    if not (_is_int(width) and _is_int(height)) or rotation not in (0, 90, 180, 270):
        return None
    return height if rotation in (90, 270) else width
