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

from deskpulse.errors import DeskPulseError

BOARDS_DIR = Path(__file__).resolve().parent.parent.parent / "boards"

Severity = Literal["error", "warning"]

# GPIO numbers of the ESP32 (not -S2/-S3/-C3): 20, 24 and 28-31 are not bonded out.
ESP32_GPIOS = frozenset([*range(0, 20), 21, 22, 23, 25, 26, 27, *range(32, 40)])
FLASH_PINS = frozenset(range(6, 12))
INPUT_ONLY_PINS = frozenset(range(34, 40))
CONSOLE_PINS = {1: "TX", 3: "RX"}
STRAPPING_PINS = {
    0: "selects download mode when low at reset",
    2: "must be low or floating at reset for serial download",
    5: "sets the SDIO slave timing at reset",
    12: "selects the flash voltage at reset (high = 1.8 V: a 3.3 V module will not boot)",
    15: "silences the boot log when low at reset",
}

# MicroPython's ESP32 partition block device works in 4 KiB flash sectors.
FLASH_SECTOR = 4096
# Bootloader (0x1000), partition table (0x8000) and the application start at 0x10000.
FIRST_DATA_OFFSET = 0x10000

SUPPORTED_RTC_CHIPS = frozenset(["bm8563"])
KNOWN_KEYS = frozenset(
    ["name", "description", "chip", "flash_size", "vfs", "buttons", "display", "touch", "rtc",
     "watchdog_ms"]
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
    """Names of the boards shipped in the repository's boards/ folder."""
    if not BOARDS_DIR.is_dir():
        return []
    return sorted(path.stem for path in BOARDS_DIR.glob("*.json"))


def board_path(name_or_path: str | Path) -> Path:
    """A board name from boards/, or a path to a board file."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith(".json") or "/" in text or "\\" in text:
        return Path(name_or_path)
    return BOARDS_DIR / f"{text}.json"


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
        self.check_flash(board)
        if "watchdog_ms" in board:
            timeout = board["watchdog_ms"]
            if not _is_int(timeout) or timeout < 1000:
                self.error("watchdog_ms", "must be an integer of at least 1000 (the ESP32 "
                           "watchdog's minimum)")

        uses: list[PinUse] = []
        buttons = _list(board.get("buttons"))
        if board.get("buttons") is None:
            self.error("buttons", "missing")
        elif not buttons:
            self.error("buttons", "must be a non-empty list")
        else:
            uses.extend(self.check_buttons(buttons, has_touch=bool(board.get("touch"))))

        display = _mapping(board.get("display"))
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
            elif not isinstance(part.get("controller"), str):
                self.error("touch.controller", "missing: name the touch controller chip")
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

    @staticmethod
    def join(where: str, key: str) -> str:
        return key if where == "board" else f"{where}.{key}"

    # -- flash ----------------------------------------------------------------------------
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

    # -- buttons --------------------------------------------------------------------------
    def check_buttons(self, buttons: list[Any], has_touch: bool) -> list[PinUse]:
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
            if face is None and answer is None:
                self.warning(where, "has neither a face nor an answer: the flow never uses it")
            if pin is not None:
                uses.append(PinUse(f"{where}.pin", pin, "in", pull))

        count = len(faces)
        if count < 3:
            self.error("buttons", f"the survey needs at least 3 face buttons, found {count}")
        elif sorted(faces) != list(range(1, count + 1)):
            self.error("buttons", f"faces must be numbered 1..{count} without gaps, "
                       f"found {sorted(faces)}")
        for answer, holders in answers.items():
            if len(holders) > 1:
                self.error("buttons", f'more than one "{answer}" button: {", ".join(holders)}')
            elif not holders and not has_touch:
                self.error("buttons", f'no "{answer}" answer button (needed without a '
                           "touch controller)")
        return uses

    # -- display, touch, clock chip ---------------------------------------------------------
    def check_display(self, display: Mapping[str, Any]) -> list[PinUse]:
        self.require_str(display, "controller", "display")
        self.require_int(display, "width", "display", minimum=1)
        self.require_int(display, "height", "display", minimum=1)
        rotation = self.require(display, "rotation", "display")
        if rotation is not None and rotation not in (0, 90, 180, 270):
            self.error("display.rotation", "must be 0, 90, 180 or 270")
        busy_active = display.get("busy_active")
        if busy_active is not None and busy_active not in ("low", "high"):
            self.error("display.busy_active", 'must be "low" or "high"')
        spi = _mapping(display.get("spi"))
        if spi is None:
            self.error("display.spi", "missing: the panel's SPI bus and control pins")
            return []
        for role in ("sck", "mosi", "cs", "dc", "busy"):
            self.require(spi, role, "display.spi")
        return self.peripheral_pins(display, "display", {})

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
        if pin in FLASH_PINS:
            self.error(where, f"GPIO {pin} is wired to the SPI flash on ESP32 modules "
                       "(GPIO 6-11 are never free)")
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
