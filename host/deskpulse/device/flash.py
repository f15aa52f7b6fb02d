"""From a blank ESP32 to a kiosk (issue 15): MicroPython and the kiosk's filesystem,
checked, written in one pass with esptool, verified, and the board reset into the app.

Everything that can be checked without the board is checked first, and nothing is sent to
it before: the firmware file (its images, the partition table, the MicroPython version in
it) against the board file and the app's .mpy format; then the port. On the board, the
chip and the flash size are read, and only then written. Every refusal is one
DeskPulseError line and writes nothing.

The firmware file is MicroPython's ESP32 download: one .bin holding the bootloader, the
partition table at 0x8000 and the app, written from the bootloader's offset (0x1000 on
the ESP32). It is read here from Espressif's documented formats, not through esptool:

- an image (ESP-IDF "App Image Format"; esptool bin_image.py, ESP32FirmwareImage): a
  24-byte header (magic 0xE9, segment count, SPI mode, flash size and frequency, entry
  point; then the extended header: WP pin, three bytes of drive strengths, the chip id,
  the old minimum revision, the minimum and maximum full revisions, four reserved bytes,
  the hash flag), at most 16 segments (load address, length, data), a checksum byte (XOR
  of all segment data, seeded with 0xEF) ending a 16-byte block, then a SHA-256 of all of
  that when the hash flag is 1;
- the app's first segment begins with esp_app_desc_t (magic 0xABCD5432; esptool
  cmds._parse_app_info): its version and project name are empty in MicroPython's builds
  (ports/esp32/boards/sdkconfig.base sets CONFIG_APP_EXCLUDE_PROJECT_VER_VAR and
  _NAME_VAR), so the MicroPython version is read from the banner the firmware prints,
  "MicroPython v1.24.1 on 2024-11-29" (py/mpconfig.h MICROPY_BANNER_NAME_AND_VERSION);
- the partition table (ESP-IDF gen_esp32part.py): 32-byte entries (0xAA 0x50, type,
  subtype, offset, size, a 16-byte label, flags), an optional MD5 entry (0xEB 0xEB, 14 x
  0xFF, the MD5 of the entries before it), then 0xFF, at most 0xC00 bytes;
- the app sits in the first app partition (MicroPython's ports/esp32/makeimg.py).

Where the filesystem goes: a table with a "vfs" entry puts it there. Without one
(MicroPython v1.26 and later) the firmware registers "vfs" at boot from the end of the
last partition to the end of the physical flash (ports/esp32/main.c,
boardctrl_startup), so its size depends on the chip's flash, read before writing. A
table with only "ffat" (TinyUF2 layouts) gets a FAT filesystem, which a LittleFS image is
not. MicroPython that cannot mount its vfs formats it when it reads as erased and
otherwise loops on "The filesystem appears to be corrupted" (ports/esp32/modules/
_boot.py, inisetup.py): a geometry that differs from the image's is refused here.

esptool runs in-process through its public API (esptool.cmds: detect_chip, run_stub,
attach_flash, detect_flash_size, write_flash, reset_chip; docs/en/esptool/scripting.rst),
plus ESPLoader's change_baud, get_chip_description and read_mac, which it documents as
the lower level. Its output goes through a custom logger (the documented TemplateLogger)
into the step reports and progress of the call that runs it, thread by thread.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from deskpulse.device import boards, ports
from deskpulse.device import image as kiosk_image
from deskpulse.errors import DeskPulseError

Report = Callable[[str], None]

FLASH_BAUD = 460800
"""The stub talks this fast after connecting at 115200 (esptool's usual write speed; a
CP210x or CH340 bridge on a short cable keeps up)."""
CONNECT_ATTEMPTS = 7  # esptool's own default: each tries its reset sequences
ROM_BAUD = 115200

# -- the image format (ESP-IDF "App Image Format") ----------------------------------------
IMAGE_MAGIC = 0xE9
CHECKSUM_SEED = 0xEF
IMAGE_HEADER = struct.Struct("<BBBBI")  # magic, segments, SPI mode, size|freq, entry point
# WP pin, 3 x drive strengths, chip id, minimum revision (old), minimum and maximum full
# revision, 4 reserved bytes, hash appended
EXTENDED_HEADER = struct.Struct("<BBBBHBHH4xB")
SEGMENT_HEADER = struct.Struct("<II")  # load address, length
MAX_SEGMENTS = 16
SHA256_SIZE = 32
APP_DESC = struct.Struct("<II8x32s32s16s16s32s32sHHB3x72x")  # esp_app_desc_t, 256 bytes
APP_DESC_MAGIC = 0xABCD5432

# -- the partition table (ESP-IDF gen_esp32part.py) ---------------------------------------
PARTITION_TABLE_OFFSET = 0x8000
PARTITION_TABLE_SIZE = 0xC00
PARTITION_ENTRY = struct.Struct("<2sBBII16sI")
PARTITION_MAGIC = b"\xaa\x50"
PARTITION_MD5_MAGIC = b"\xeb\xeb" + b"\xff" * 14
APP_TYPE, DATA_TYPE = 0x00, 0x01
VFS_LABEL = "vfs"
FFAT_LABEL = "ffat"

_BANNER = re.compile(
    rb"MicroPython (?:\(with v2\.0 preview\) )?v(\d+)\.(\d+)\.(\d+)(-preview[0-9A-Za-z.]*)? on ")


@dataclass(frozen=True, slots=True)
class ChipModel:
    name: str  # as Espressif and esptool write it: "ESP32-S3"
    image_id: int  # the chip id in an image's extended header
    bootloader_offset: int

    @property
    def key(self) -> str:
        """The board file's spelling: "esp32s3"."""
        return chip_key(self.name)


# ESP-IDF esp_app_format.h esp_chip_id_t; the bootloader offsets are ESP-IDF's
# CONFIG_BOOTLOADER_OFFSET_IN_FLASH defaults, as esptool's targets/*.py have them
# (BOOTLOADER_FLASH_OFFSET). The chips MicroPython's esp32 port builds for.
CHIP_MODELS = (
    ChipModel("ESP32", 0, 0x1000),
    ChipModel("ESP32-S2", 2, 0x1000),
    ChipModel("ESP32-C3", 5, 0x0),
    ChipModel("ESP32-S3", 9, 0x0),
    ChipModel("ESP32-C2", 12, 0x0),
    ChipModel("ESP32-C6", 13, 0x0),
    ChipModel("ESP32-H2", 16, 0x0),
    ChipModel("ESP32-P4", 18, 0x2000),
    ChipModel("ESP32-C61", 20, 0x0),
    ChipModel("ESP32-C5", 23, 0x2000),
)


def chip_key(name: str) -> str:
    return name.lower().replace("-", "")


# -- which MicroPython runs the app's .mpy files -------------------------------------------
# MicroPython's docs/reference/mpyfiles.rst, "Versioning and compatibility of .mpy files",
# read at micropython/micropython 1c3c201 (a v1.29.0 preview, August 2026): the release
# from which each .mpy version is loaded, newest first. A .mpy file loads when its version
# matches the firmware's, and, when it holds native code (the app's e-paper driver does),
# its sub-version too.
MPY_FROM_RELEASE: tuple[tuple[tuple[int, int, int], str], ...] = (
    ((1, 23, 0), "6.3"),
    ((1, 22, 0), "6.2"),
    ((1, 20, 0), "6.1"),
    ((1, 19, 0), "6"),
    ((1, 12, 0), "5"),
    ((1, 11, 0), "4"),
    ((1, 9, 3), "3"),
    ((1, 9, 0), "2"),
    ((1, 5, 1), "0"),
)
MPY_KNOWN_THROUGH = (1, 29)
"""The newest release series the table was read for; a later one may have moved on."""


def mpy_version_of(release: tuple[int, int, int], preview: bool = False) -> str | None:
    """The .mpy version MicroPython `release` loads, None when unknown. A preview build
    ("v1.23.0-preview.12.g...") lies between the previous release and this one: known
    only when both load the same."""
    if release[:2] > MPY_KNOWN_THROUGH:
        return None
    this = next((mpy for first, mpy in MPY_FROM_RELEASE if release >= first), None)
    if not preview:
        return this
    before = next((mpy for first, mpy in MPY_FROM_RELEASE if release > first), None)
    return this if this == before else None


def runs_mpy(firmware_mpy: str, app_mpy: str) -> bool:
    """Whether a firmware loading .mpy `firmware_mpy` ("6.3") loads the app's `app_mpy`
    ("6.3" with native code: both parts must match; "6" without: the version alone)."""
    if "." in app_mpy:
        return firmware_mpy == app_mpy
    return firmware_mpy.split(".")[0] == app_mpy


# -- the firmware file ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Partition:
    label: str
    type: int
    subtype: int
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True, slots=True)
class EspImage:
    """One image in the file: where it starts and ends, its chip and first segment."""

    start: int  # in the file
    end: int  # past its checksum and hash
    chip_id: int
    first_segment: bytes


@dataclass(frozen=True, slots=True)
class Firmware:
    """A MicroPython firmware file, read and checked."""

    path: Path
    data: bytes
    chip: ChipModel
    offset: int  # the flash address of the file's first byte
    version: str  # "v1.24.1"
    release: tuple[int, int, int]
    preview: bool
    idf_version: str
    partitions: tuple[Partition, ...]
    app: Partition
    app_size: int

    @property
    def end(self) -> int:
        return self.offset + len(self.data)

    @property
    def mpy_version(self) -> str | None:
        return mpy_version_of(self.release, self.preview)

    def partition(self, label: str) -> Partition | None:
        return next((p for p in self.partitions if p.label == label and p.type == DATA_TYPE),
                    None)

    @property
    def partitions_end(self) -> int:
        return max(p.end for p in self.partitions)


def _xor(data: bytes) -> int:
    """The XOR of all bytes. Folding them as one integer takes milliseconds where a loop
    over a 1.6 MB app takes a tenth of a second."""
    value, width = int.from_bytes(data, "little"), len(data)
    while width > 1:
        half = (width + 1) // 2
        value = (value & ((1 << 8 * half) - 1)) ^ (value >> 8 * half)
        width = half
    return value & 0xFF


def read_image(data: bytes, start: int, what: str) -> EspImage:
    """The image at `start` of `data`, checked: header, segments inside the file, checksum
    and (when appended) SHA-256. `what` names it in errors."""
    if len(data) < start + IMAGE_HEADER.size + EXTENDED_HEADER.size:
        raise DeskPulseError(f"{what} is cut short (the file ends at its header)")
    magic, count, _mode, _size_freq, _entry = IMAGE_HEADER.unpack_from(data, start)
    if magic != IMAGE_MAGIC:
        raise DeskPulseError(f"no {what} where it belongs (its first byte is {magic:#04x}, "
                             f"not the image magic {IMAGE_MAGIC:#04x})")
    extended = EXTENDED_HEADER.unpack_from(data, start + IMAGE_HEADER.size)
    chip_id, hash_appended = extended[4], extended[-1]
    if not 0 < count <= MAX_SEGMENTS or hash_appended not in (0, 1):
        raise DeskPulseError(f"{what}'s header is damaged ({count} segments, hash flag "
                             f"{hash_appended})")
    at = start + IMAGE_HEADER.size + EXTENDED_HEADER.size
    checksum = CHECKSUM_SEED
    first = b""
    for n in range(count):
        if at + SEGMENT_HEADER.size > len(data):
            raise DeskPulseError(f"{what} is cut short (the file ends in segment {n + 1} of "
                                 f"{count}): a partial download?")
        _address, length = SEGMENT_HEADER.unpack_from(data, at)
        at += SEGMENT_HEADER.size
        if at + length > len(data):
            raise DeskPulseError(f"{what} is cut short (segment {n + 1} of {count} needs "
                                 f"{length} bytes, the file ends first): a partial download?")
        segment = data[at:at + length]
        first = first or segment
        checksum ^= _xor(segment)
        at += length
    at += 15 - (at - start) % 16  # the checksum ends a 16-byte block
    if at >= len(data):
        raise DeskPulseError(f"{what} is cut short (the file ends before its checksum)")
    if data[at] != checksum:
        raise DeskPulseError(f"{what} is damaged: its checksum is {data[at]:#04x}, its "
                             f"segments give {checksum:#04x}")
    end = at + 1
    if hash_appended:
        stored = data[end:end + SHA256_SIZE]
        if len(stored) < SHA256_SIZE:
            raise DeskPulseError(f"{what} is cut short (the file ends in its SHA-256)")
        if hashlib.sha256(data[start:end]).digest() != stored:
            raise DeskPulseError(f"{what} is damaged: its SHA-256 does not match its bytes")
        end += SHA256_SIZE
    return EspImage(start, end, chip_id, first)


def read_partition_table(raw: bytes) -> tuple[Partition, ...]:
    """The entries of a binary partition table, its MD5 entry checked when it has one."""
    found: list[Partition] = []
    for at in range(0, min(len(raw), PARTITION_TABLE_SIZE) - PARTITION_ENTRY.size + 1,
                    PARTITION_ENTRY.size):
        entry = raw[at:at + PARTITION_ENTRY.size]
        if entry[:2] == PARTITION_MAGIC:
            _, kind, subtype, offset, size, label, _flags = PARTITION_ENTRY.unpack(entry)
            name = label.split(b"\0", 1)[0].decode("ascii", "replace")
            found.append(Partition(name, kind, subtype, offset, size))
        elif entry[:16] == PARTITION_MD5_MAGIC:
            if entry[16:] != hashlib.md5(raw[:at]).digest():
                raise DeskPulseError("the partition table at 0x8000 is damaged: its MD5 "
                                     "does not match its entries")
        elif entry == b"\xff" * PARTITION_ENTRY.size:
            break
        else:
            raise DeskPulseError(f"the partition table at 0x8000 is damaged (entry "
                                 f"{at // PARTITION_ENTRY.size + 1} is none)")
    if not found:
        raise DeskPulseError("there is no partition table at 0x8000")
    return tuple(found)


def _cstring(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def _model(chip_id: int) -> ChipModel | None:
    return next((m for m in CHIP_MODELS if m.image_id == chip_id), None)


def _app_description(segment: bytes) -> tuple[str, str, str] | None:
    """(project name, version, ESP-IDF version) of an app's esp_app_desc_t, None when
    the segment does not begin with one."""
    if len(segment) < APP_DESC.size:
        return None
    magic, _secure, version, project, _time, _date, idf, *_ = APP_DESC.unpack_from(segment)
    if magic != APP_DESC_MAGIC:
        return None
    return _cstring(project), _cstring(version), _cstring(idf)


def read_firmware(path: str | os.PathLike[str]) -> Firmware:
    """The MicroPython firmware file at path, read and checked as the module says."""
    path = Path(path)
    name = path.name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DeskPulseError(f"cannot read the firmware {path}: {exc.strerror or exc}") from exc
    try:
        return _parse_firmware(path, data)
    except DeskPulseError as exc:
        raise DeskPulseError(f"{name} is no MicroPython firmware to flash: {exc}") from None


def _parse_firmware(path: Path, data: bytes) -> Firmware:
    # The file starts at the bootloader, or at 0 with 0xFF up to it (esptool merge-bin).
    starts = [at for at in sorted({m.bootloader_offset for m in CHIP_MODELS})
              if len(data) > at and data[at] == IMAGE_MAGIC and not data[:at].strip(b"\xff")]
    if not starts:
        raise DeskPulseError("it does not start with an ESP32 bootloader image")
    bootloader = read_image(data, starts[0], "the bootloader")
    chip = _model(bootloader.chip_id)
    if chip is None:
        raise DeskPulseError(f"its bootloader is for chip id {bootloader.chip_id}, none "
                             "MicroPython builds for")
    if _app_description(bootloader.first_segment) is not None:
        raise DeskPulseError("it holds MicroPython's app alone (the file for OTA updates, "
                             "written at 0x10000), without the bootloader and partition "
                             "table: download the firmware .bin for a full flash")
    base = chip.bootloader_offset - starts[0]
    if base < 0:
        raise DeskPulseError(f"its bootloader is at {starts[0]:#x} of the file, but an "
                             f"{chip.name} boots from {chip.bootloader_offset:#x}")
    table_at = PARTITION_TABLE_OFFSET - base
    if bootloader.end > table_at:
        raise DeskPulseError(f"its bootloader runs into the partition table at "
                             f"{PARTITION_TABLE_OFFSET:#x}")
    partitions = read_partition_table(data[table_at:table_at + PARTITION_TABLE_SIZE])
    app = next((p for p in partitions if p.type == APP_TYPE), None)
    if app is None:
        raise DeskPulseError("its partition table has no app partition")
    if app.offset - base >= len(data):
        raise DeskPulseError(f"it ends at {base + len(data):#x}, before the app partition at "
                             f"{app.offset:#x}: a partial download?")
    app_image = read_image(data, app.offset - base, "the app")
    if app_image.chip_id != bootloader.chip_id:
        raise DeskPulseError(f"its app is for chip id {app_image.chip_id}, its bootloader "
                             f"for {chip.name}")
    app_size = app_image.end - app_image.start
    if app_size > app.size:
        raise DeskPulseError(f"its app ({app_size} bytes) does not fit its partition "
                             f"({app.size} bytes)")
    described = _app_description(app_image.first_segment)
    if described is None:
        raise DeskPulseError("its app has no ESP-IDF app description")
    banners = {m.groups() for m in _BANNER.finditer(data, app_image.start, app_image.end)}
    if not banners:
        project = f" ({described[0]})" if described[0] else ""
        raise DeskPulseError(f"its app{project} has no \"MicroPython v…\" banner")
    if len(banners) > 1:
        raise DeskPulseError("its app names more than one MicroPython version")
    major, minor, micro, preview = (part.decode("ascii") if part else ""
                                    for part in banners.pop())
    release = (int(major), int(minor), int(micro))
    version = f"v{major}.{minor}.{micro}{preview}"
    return Firmware(path, data, chip, base, version, release, bool(preview), described[2],
                    partitions, app, app_size)


# -- checks against the board and the app --------------------------------------------------
@dataclass(frozen=True, slots=True)
class FilesystemPlace:
    """Where MicroPython will look for its filesystem."""

    offset: int
    size: int | None  # None: to the end of the flash, known once the flash is read
    in_table: bool

    def size_on(self, flash_size: int) -> int:
        return self.size if self.size is not None else flash_size - self.offset


def check_firmware(firmware: Firmware, board: dict[str, Any],
                   built: kiosk_image.KioskImage) -> FilesystemPlace:
    """The checks that need no board: the firmware is for the board's chip, loads the
    app's .mpy files, and keeps its filesystem where the image goes. Returns where."""
    board_chip = str(board.get("chip", ""))
    if chip_key(board_chip) != firmware.chip.key:
        raise DeskPulseError(f"{firmware.path.name} is MicroPython for an {firmware.chip.name}"
                             f", board {built.board_name} has an {board_chip.upper()}")
    if built.mpy_version is not None:
        loads = firmware.mpy_version
        native = "." in built.mpy_version
        if loads is None:
            raise DeskPulseError(
                f"{firmware.path.name} is MicroPython {firmware.version}, whose .mpy format "
                f"is not known here (known up to v{MPY_KNOWN_THROUGH[0]}.{MPY_KNOWN_THROUGH[1]}"
                f".x); the app is .mpy {built.mpy_version}: use a release from v1.23.0 to "
                f"v{MPY_KNOWN_THROUGH[0]}.{MPY_KNOWN_THROUGH[1]}.x")
        if not runs_mpy(loads, built.mpy_version):
            raise DeskPulseError(
                f"{firmware.path.name} is MicroPython {firmware.version}, which loads .mpy "
                f"{loads}; the app is .mpy {built.mpy_version}"
                f"{' with native code' if native else ''}: use MicroPython v1.23.0 or later "
                f"(up to v{MPY_KNOWN_THROUGH[0]}.{MPY_KNOWN_THROUGH[1]}.x)")
    image_size = len(built.data)
    vfs = firmware.partition(VFS_LABEL)
    if vfs is not None:
        place = FilesystemPlace(vfs.offset, vfs.size, True)
        if (vfs.offset, vfs.size) != (built.offset, image_size):
            raise DeskPulseError(
                f"{firmware.path.name}'s partition table puts vfs at {vfs.offset:#x} "
                f"({vfs.size} bytes), board {built.board_name}'s image is for "
                f"{built.offset:#x} ({image_size} bytes): MicroPython could not mount it")
    elif firmware.partition(FFAT_LABEL) is not None:
        raise DeskPulseError(f"{firmware.path.name}'s partition table has an ffat "
                             "partition (a FAT filesystem, TinyUF2 layouts), no vfs: the "
                             "kiosk's filesystem is LittleFS")
    else:
        place = FilesystemPlace(firmware.partitions_end, None, False)
        if place.offset != built.offset:
            raise DeskPulseError(
                f"{firmware.path.name} makes its vfs partition at boot from the end of its "
                f"last partition, {place.offset:#x}; board {built.board_name}'s image is "
                f"for {built.offset:#x}: MicroPython could not mount it")
    if firmware.end > built.offset:
        raise DeskPulseError(f"{firmware.path.name} runs from {firmware.offset:#x} to "
                             f"{firmware.end:#x}, into the filesystem at {built.offset:#x}")
    return place


def check_flash(firmware: Firmware, place: FilesystemPlace, built: kiosk_image.KioskImage,
                chip: Chip) -> None:
    """The checks on what the board said: its chip and its flash."""
    if chip_key(chip.name) != firmware.chip.key:
        raise DeskPulseError(f"the board on {chip.port} is an {chip.name}, not an "
                             f"{firmware.chip.name} (board {built.board_name} and "
                             f"{firmware.path.name}): nothing written")
    needed = max(firmware.end, built.offset + len(built.data))
    if chip.flash_size < needed:
        raise DeskPulseError(f"the {chip.name} on {chip.port} has {_size(chip.flash_size)} of "
                             f"flash, firmware and filesystem need {_size(needed)}: nothing "
                             "written")
    made = place.size_on(chip.flash_size)
    if made != len(built.data):
        raise DeskPulseError(
            f"on this {_size(chip.flash_size)} flash {firmware.path.name} makes a "
            f"{_size(made)} vfs partition at {place.offset:#x}, board {built.board_name}'s "
            f"image is {_size(len(built.data))}: MicroPython could not mount it (use a board "
            "file whose vfs matches the flash): nothing written")


def _bytes_of(size_name: str | None) -> int:
    """esptool's name of a flash size ("4MB", "512KB") in bytes; 0 for none."""
    found = re.fullmatch(r"(\d+)([MK])B", size_name or "")
    if not found:
        return 0
    return int(found.group(1)) * (1024 * 1024 if found.group(2) == "M" else 1024)


def _size(count: int) -> str:
    if count % (1024 * 1024) == 0:
        return f"{count // (1024 * 1024)} MiB"
    if count % 1024 == 0:
        return f"{count // 1024} KiB"
    return f"{count} bytes"


# -- esptool's output ---------------------------------------------------------------------
class _Sink:
    """Where esptool's output goes while one call here runs it."""

    def __init__(self, on_progress: Callable[[int, int, str], None], verbose: Report | None):
        self.on_progress = on_progress
        self.verbose = verbose
        self.warnings: list[str] = []

    def line(self, text: str) -> None:
        if self.verbose is not None and text.strip():
            self.verbose(f"  esptool: {text.strip()}")


_relay_lock = threading.Lock()
_sinks: dict[int, _Sink] = {}
_relay_state: dict[str, Any] = {"previous": None, "users": 0}


def _make_relay() -> Any:
    """esptool's documented custom logger, handing each thread's output to its sink, and
    anything from a thread not flashing here to the logger that was there before."""
    from esptool.logger import TemplateLogger

    class Relay(TemplateLogger):
        def _sink(self) -> _Sink | None:
            return _sinks.get(threading.get_ident())

        def _previous(self) -> Any:
            return _relay_state["previous"]

        def print(self, *args: Any, **kwargs: Any) -> None:
            sink = self._sink()
            if sink is None:
                self._previous().print(*args, **kwargs)
            else:
                sink.line(" ".join(str(a) for a in args))

        def note(self, message: str) -> None:
            sink = self._sink()
            if sink is None:
                self._previous().note(message)
            else:
                sink.line(f"note: {message}")

        def warning(self, message: str) -> None:
            sink = self._sink()
            if sink is None:
                self._previous().warn(message)
            else:
                sink.warnings.append(" ".join(str(message).split()))
                sink.line(f"warning: {message}")

        def error(self, message: str) -> None:
            sink = self._sink()
            if sink is None:
                self._previous().err(message)
            else:
                sink.line(f"error: {message}")

        def stage(self, finish: bool = False) -> None:
            if self._sink() is None:
                self._previous().stage(finish=finish)

        def progress_bar(self, cur_iter: int, total_iters: int, prefix: str = "",
                         suffix: str = "", bar_length: int = 30) -> None:
            sink = self._sink()
            if sink is None:
                self._previous().progress_bar(cur_iter, total_iters, prefix, suffix,
                                              bar_length)
            else:
                sink.on_progress(cur_iter, total_iters, prefix)

        def set_verbosity(self, verbosity: str) -> None:
            self._previous().set_verbosity(verbosity)

    return Relay()


@contextmanager
def _esptool_output(sink: _Sink) -> Iterator[None]:
    """Route esptool's output in this thread to `sink` while the block runs. The logger is
    one per process: the relay goes in with the first user and the previous logger (what
    esptool's own `log` proxy reads, esp_pylib's EspLog.instance) comes back with the
    last."""
    from esp_pylib.logger import EspLog
    from esptool.logger import log

    with _relay_lock:
        if _relay_state["users"] == 0:
            _relay_state["previous"] = EspLog.instance
            cast(Any, log).set_logger(_make_relay())
        _relay_state["users"] += 1
        _sinks[threading.get_ident()] = sink
    try:
        yield
    finally:
        with _relay_lock:
            _sinks.pop(threading.get_ident(), None)
            _relay_state["users"] -= 1
            if _relay_state["users"] == 0:
                previous, _relay_state["previous"] = _relay_state["previous"], None
                if previous is not None:
                    EspLog.set_logger(previous)


# -- the board -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Chip:
    """What the board's loader said."""

    port: str
    name: str  # "ESP32"
    description: str  # "ESP32-D0WD-V3 (revision v3.1)"
    mac: str
    flash_size: int


@dataclass(frozen=True, slots=True)
class Region:
    offset: int
    data: bytes
    what: str

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


@dataclass(frozen=True, slots=True)
class FlashResult:
    firmware: Firmware
    image: kiosk_image.KioskImage
    chip: Chip
    regions: tuple[Region, ...]
    erased: bool
    written: bool  # False after a dry run
    seconds: float


def _quiet(_: str) -> None:
    return None


def require_esptool() -> None:
    try:
        import esptool
    except ImportError:
        raise DeskPulseError("flashing needs esptool: pip install 'esptool>=5.6,<6'") from None
    major_minor = tuple(int(part) for part in re.findall(r"\d+", esptool.__version__)[:2])
    if not (5, 6) <= major_minor < (6, 0):
        raise DeskPulseError(f"flashing needs esptool 5.6 or a later 5.x, not "
                             f"{esptool.__version__}: pip install 'esptool>=5.6,<6'")


def check_port(port: str) -> str:
    """The port's device, after it opened as esptool will open it (exclusively): a
    missing, busy or forbidden port is told apart here, with its hint. A pyserial URL
    (socket://, rfc2217://) has no local device to try."""
    device = ports.resolve_port(port)
    if "://" not in device:
        ports.open_port(device).close()
    return device


def _chip_of(esp: Any, device: str, size_name: str | None) -> Chip:
    """What the loader said, through ESPLoader methods the target classes define (the
    base class declares read_mac without a body, get_chip_description not at all)."""
    mac = ":".join(f"{b:02x}" for b in esp.read_mac("BASE_MAC") or ())
    return Chip(device, esp.CHIP_NAME, esp.get_chip_description(), mac, _bytes_of(size_name))


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _no_bootloader(port: str, error: BaseException) -> DeskPulseError:
    return DeskPulseError(
        f"no ESP32 bootloader answered on {port} ({_first_line(error)}): hold BOOT (IO0), "
        "press and release EN (RST), release BOOT and run this again; nothing written")


class _WriteProgress:
    """esptool's progress bars as one line per tenth of each region."""

    def __init__(self, regions: tuple[Region, ...], report: Report) -> None:
        self.regions = regions
        self.report = report
        self.shown: dict[str, int] = {}

    def __call__(self, done: int, total: int, prefix: str) -> None:
        found = re.search(r"0x([0-9a-fA-F]+)", prefix)
        if not found or total <= 0:
            return
        address = int(found.group(1), 16)
        region = next((r for r in self.regions if r.offset <= address <= r.end), None)
        if region is None:
            return
        tenth = done * 10 // total
        if tenth > self.shown.get(region.what, 0):
            self.shown[region.what] = tenth
            self.report(f"  writing {region.what}: {tenth * 10}%")


def read_chip(port: str, firmware: Firmware, *,
              connect_attempts: int = CONNECT_ATTEMPTS) -> Chip:
    """The chip and MAC of the board on `port`, from its ROM loader; a chip other than the
    firmware's is refused (and the board reset) before anything else happens to it. The
    board stays in its loader otherwise: flashing comes next (deskpulse provision reads
    every board first, then registers and flashes them)."""
    import serial
    from esptool.cmds import detect_chip, reset_chip
    from esptool.util import FatalError

    failures = (FatalError, serial.SerialException, OSError, struct.error)
    device = check_port(port)
    with _esptool_output(_Sink(lambda *_: None, None)):
        try:
            connected = detect_chip(device, ROM_BAUD, "default-reset",
                                    connect_attempts=connect_attempts)
        except failures as exc:
            raise _no_bootloader(device, exc) from None
        with connected as esp:
            try:
                chip = _chip_of(esp, device, None)
            except failures as exc:
                raise DeskPulseError(f"the bootloader on {device} answered, then failed: "
                                     f"{_first_line(exc)}; nothing written") from None
            if chip_key(chip.name) != firmware.chip.key:
                with suppress(*failures):
                    reset_chip(esp, "hard-reset")
                raise DeskPulseError(f"the board on {device} is an {chip.name}, not an "
                                     f"{firmware.chip.name} ({firmware.path.name}): not "
                                     "registered, nothing written")
    return chip


def flash_kiosk(port: str, board: str | Path, firmware_file: str | os.PathLike[str],
                config: str | os.PathLike[str] | None = None, *, erase: bool = False,
                dry_run: bool = False, built: kiosk_image.KioskImage | None = None,
                baud: int = FLASH_BAUD, connect_attempts: int = CONNECT_ATTEMPTS,
                report: Report = _quiet, verbose: bool = False) -> FlashResult:
    """Flash MicroPython and the kiosk's filesystem onto the ESP32 on `port`.

    `built` is the filesystem image to write (tests pass one built for the host's arch);
    by default the board's, with `config`, built here. `report` gets one line per step.
    Everything is checked before the first byte is written; the board is reset into its
    app at the end, also after a refusal on the board's side or a dry run."""
    started = time.monotonic()
    require_esptool()
    firmware = read_firmware(firmware_file)
    report(f"firmware: {firmware.path.name}: MicroPython {firmware.version} for "
           f"{firmware.chip.name} (ESP-IDF {firmware.idf_version or 'unknown'}), "
           f"{len(firmware.data)} bytes from {firmware.offset:#x}, app {firmware.app_size} "
           f"bytes in {firmware.app.label} at {firmware.app.offset:#x}")
    if built is None:
        built = kiosk_image.build_image(board, config)
    definition = boards.load_board(board)
    place = check_firmware(firmware, definition, built)
    where = (f"its partition table's vfs at {place.offset:#x}" if place.in_table else
             f"the vfs it makes at boot from {place.offset:#x} to the end of the flash")
    mpy = (f"as .mpy {built.mpy_version}, which MicroPython {firmware.version} loads"
           if built.mpy_version else "as sources")
    report(f"app: {len(built.files)} files {mpy}; filesystem image of {built.board_name}, "
           f"{len(built.data)} bytes ({built.used_blocks} of {built.block_count} blocks used) "
           f"for {where}")
    device = check_port(port)
    regions = (Region(firmware.offset, firmware.data, "firmware"),
               Region(built.offset, built.data, "filesystem"))
    report(f"port: {device}: connecting to the ESP32's bootloader")
    sink = _Sink(_WriteProgress(regions, report), report if verbose else None)
    with _esptool_output(sink):
        chip = _flash(device, firmware, place, built, regions, sink, report,
                      erase=erase, dry_run=dry_run, baud=baud,
                      connect_attempts=connect_attempts)
    seconds = time.monotonic() - started
    return FlashResult(firmware, built, chip, regions, erase and not dry_run, not dry_run,
                       seconds)


def _flash(device: str, firmware: Firmware, place: FilesystemPlace,
           built: kiosk_image.KioskImage, regions: tuple[Region, ...], sink: _Sink,
           report: Report, *, erase: bool, dry_run: bool, baud: int,
           connect_attempts: int) -> Chip:
    import serial
    from esptool.cmds import (
        attach_flash,
        detect_chip,
        detect_flash_size,
        reset_chip,
        run_stub,
        write_flash,
    )
    from esptool.util import FatalError

    failures = (FatalError, serial.SerialException, OSError, struct.error)
    try:
        connected = detect_chip(device, ROM_BAUD, "default-reset",
                                connect_attempts=connect_attempts)
    except failures as exc:
        raise _no_bootloader(device, exc) from None
    with connected as esp:
        try:
            try:
                esp = run_stub(esp)
                if baud != ROM_BAUD:
                    esp.change_baud(baud)
                attach_flash(esp)
                size_name = detect_flash_size(esp)
                chip = _chip_of(esp, device, size_name)
            except failures as exc:
                raise DeskPulseError(f"the bootloader on {device} answered, then failed: "
                                     f"{_first_line(exc)}; nothing written") from None
            report(f"chip: {chip.description}, MAC {chip.mac}, "
                   f"{_size(chip.flash_size) if chip.flash_size else 'unknown'} flash")
            if not chip.flash_size:
                raise DeskPulseError(f"cannot tell the flash size of the {chip.name} on "
                                     f"{device} (its JEDEC id is unknown): nothing written")
            check_flash(firmware, place, built, chip)
            if erase:
                report("plan: erase the whole flash first (--erase)")
            for region in regions:
                report(f"plan: write the {region.what} at {region.offset:#x}-"
                       f"{region.end - 1:#x} ({len(region.data)} bytes)")
            report("plan: verify each by its MD5 on the chip, then reset into the app")
            if dry_run:
                report("dry run: nothing written")
                return chip
            if erase:
                report("erasing the whole flash (up to a minute), then writing")
            try:
                write_flash(esp, [(r.offset, r.data) for r in regions], erase_all=erase)
            except failures as exc:
                raise DeskPulseError(f"writing the flash on {device} failed: "
                                     f"{_first_line(exc)}; run deskpulse flash again "
                                     "(with --erase if it fails again)") from None
            for warning in sink.warnings:
                report(f"esptool warning: {warning}")
            report(f"verified: {' and '.join(r.what for r in regions)} read back with the "
                   "MD5 of what was sent")
            return chip
        finally:
            # Back into the app: a refusal or a dry run leaves the board as it was, not
            # waiting in its bootloader. A failure to reset must not hide why it stopped.
            with suppress(*failures):
                reset_chip(esp, "hard-reset")
                report("reset: the board restarts from its flash")
