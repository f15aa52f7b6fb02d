"""A synthetic "MicroPython-like" ESP32 firmware, laid out as MicroPython's ESP32 downloads
are, for flashing tests that have no real firmware file.

Built from the formats' documentation, not with esptool (which then checks it):

- application images as ESP-IDF's "App Image Format" page describes them: a 24-byte
  header (magic 0xE9, segment count, SPI mode, size and frequency, entry point, then the
  extended header: WP pin, drive strengths, chip id, revisions, hash flag), segments
  (load address, length, data), a checksum byte (XOR seeded with 0xEF) closing a 16-byte
  block, then a SHA-256 of everything before it;
- the app's first (DROM) segment starts with esp_app_desc_t (magic 0xABCD5432, version,
  project name, time, date, IDF version, ELF SHA-256, eFuse revisions, MMU page size);
  the bootloader's DRAM segment with esp_bootloader_desc_t (magic byte 0x50);
- the partition table in ESP-IDF's binary form (gen_esp32part.py): 32-byte entries
  (0xAA 0x50, type, subtype, offset, size, 16-byte label, flags), an MD5 entry
  (0xEB 0xEB, 14 x 0xFF, the MD5 of the entries before it), 0xFF to 0xC00 bytes;
- the merged file as MicroPython's ports/esp32/makeimg.py writes it: bootloader,
  partition table and app at their flash offsets, 0xFF between them, starting at the
  bootloader's offset (0x1000 on the ESP32, 0 on the ESP32-S3), so it is flashed there.

The partition tables are MicroPython's: v1.24.1's partitions-4MiB.csv (ESP32) and
partitions-8MiB.csv (ESP32-S3), with a fixed "vfs" entry; from v1.26 (commit 6201e77999,
"Convert all boards to auto detect flash size") the table has no "vfs" and the firmware
creates it at boot from the end of the last partition to the end of the flash
(`auto_vfs=True`, partitions-4MiBplus.csv).
"""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import dataclass
from pathlib import Path

IMAGE_MAGIC = 0xE9
CHECKSUM_SEED = 0xEF
APP_DESC_MAGIC = 0xABCD5432
BOOTLOADER_DESC_MAGIC = 0x50
PARTITION_MAGIC = b"\xaa\x50"
PARTITION_MD5_MAGIC = b"\xeb\xeb" + b"\xff" * 14
PARTITION_TABLE_LENGTH = 0xC00
PARTITION_TABLE_OFFSET = 0x8000
WP_PIN_DISABLED = 0xEE
PADDING_ADDRESS = 0  # a segment loaded nowhere, only to align the next one in the file
FLASH_PAGE = 0x10000  # IROM/DROM segments sit at the same offset in a 64 KiB page

APP, DATA = 0x00, 0x01
SUBTYPES = {"factory": 0x00, "phy": 0x01, "nvs": 0x02, "fat": 0x81}
SPI_MODES = {"qio": 0, "qout": 1, "dio": 2, "dout": 3}
FLASH_SIZES = {"2MB": 0x10, "4MB": 0x20, "8MB": 0x30, "16MB": 0x40}
FLASH_FREQS = {"40m": 0x0, "80m": 0xF}


@dataclass(frozen=True)
class Partition:
    name: str
    type: int
    subtype: int
    offset: int
    size: int
    flags: int = 0


def _csv(*rows: tuple[str, int, str, int, int]) -> tuple[Partition, ...]:
    return tuple(Partition(name, kind, SUBTYPES[sub], offset, size)
                 for name, kind, sub, offset, size in rows)


# MicroPython v1.24.1 ports/esp32/partitions-4MiB.csv
PARTITIONS_4MIB = _csv(
    ("nvs", DATA, "nvs", 0x9000, 0x6000),
    ("phy_init", DATA, "phy", 0xF000, 0x1000),
    ("factory", APP, "factory", 0x10000, 0x1F0000),
    ("vfs", DATA, "fat", 0x200000, 0x200000),
)
# MicroPython v1.24.1 ports/esp32/partitions-8MiB.csv (ESP32_GENERIC_S3)
PARTITIONS_8MIB = (*PARTITIONS_4MIB[:3], Partition("vfs", DATA, SUBTYPES["fat"], 0x200000,
                                                   0x600000))
# MicroPython v1.26+ ports/esp32/partitions-4MiBplus.csv: no vfs, made at boot
PARTITIONS_4MIBPLUS = PARTITIONS_4MIB[:3]


@dataclass(frozen=True)
class ChipLayout:
    """Where one chip's images load and what their headers say."""

    chip_id: int  # the extended header's chip id (esptool IMAGE_CHIP_ID)
    mcu: str
    bootloader_offset: int
    spi_mode: str
    flash_size: str
    flash_freq: str
    partitions: tuple[Partition, ...]
    bootloader_dram: int
    bootloader_iram: int
    app_drom: int
    app_dram: int
    app_iram: int
    app_irom: int


LAYOUTS = {
    "esp32": ChipLayout(
        chip_id=0, mcu="ESP32", bootloader_offset=0x1000, spi_mode="dio",
        flash_size="4MB", flash_freq="40m", partitions=PARTITIONS_4MIB,
        bootloader_dram=0x3FFF0030, bootloader_iram=0x40078000,
        app_drom=0x3F400020, app_dram=0x3FFBDB60, app_iram=0x40080000, app_irom=0x400D0020,
    ),
    "esp32s3": ChipLayout(
        chip_id=9, mcu="ESP32S3", bootloader_offset=0x0, spi_mode="qio",
        flash_size="8MB", flash_freq="80m", partitions=PARTITIONS_8MIB,
        bootloader_dram=0x3FCEB000, bootloader_iram=0x403CE000,
        app_drom=0x3C000020, app_dram=0x3FC90000, app_iram=0x40374000, app_irom=0x42000020,
    ),
}


def _cstring(text: str, size: int) -> bytes:
    raw = text.encode("ascii")
    if len(raw) >= size:
        raise ValueError(f"{text!r} does not fit {size} bytes with its NUL")
    return raw.ljust(size, b"\0")


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def esp_image(segments: list[tuple[int, bytes]], entry: int, layout: ChipLayout,
              min_rev_full: int = 0, max_rev_full: int = 399) -> bytes:
    """An ESP32-family image with these (load address, data) segments, hash appended."""
    header = struct.pack(
        "<BBBBI", IMAGE_MAGIC, len(segments), SPI_MODES[layout.spi_mode],
        FLASH_SIZES[layout.flash_size] | FLASH_FREQS[layout.flash_freq], entry)
    extended = struct.pack(
        "<BBBBHBHH4xB", WP_PIN_DISABLED, 0, 0, 0, layout.chip_id, min_rev_full // 100,
        min_rev_full, max_rev_full, 1)
    body = bytearray(header + extended)
    check = CHECKSUM_SEED
    for address, data in segments:
        if len(data) % 4:
            raise ValueError(f"segment at {address:#x}: length {len(data)} is not a multiple of 4")
        body += struct.pack("<II", address, len(data)) + data
        for byte in data:
            check ^= byte
    body += b"\0" * (15 - len(body) % 16)
    body.append(check)
    return bytes(body + hashlib.sha256(body).digest())


def _padded_for(segments: list[tuple[int, bytes]], address: int) -> list[tuple[int, bytes]]:
    """`segments`, plus a padding segment if needed so that a flash-mapped segment for
    `address` put next lands where the bootloader's MMU can map it: at the same offset
    in a 64 KiB flash page as in the address space."""
    position = 24 + sum(8 + len(d) for _, d in segments)
    if (position + 8 - address) % FLASH_PAGE == 0:
        return segments
    # The padding segment's own 8-byte header counts, and so does the next one's.
    padding = (address - position - 16) % FLASH_PAGE
    return [*segments, (PADDING_ADDRESS, bytes(padding))]


def _filler(seed: str, size: int) -> bytes:
    """Bytes that compress about as well as machine code and strings (~60 %)."""
    rng = random.Random(seed)
    words = [rng.randbytes(rng.randrange(2, 9)) for _ in range(512)]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) if rng.random() < 0.7 else rng.randbytes(4)
    return bytes(out[:size])


@dataclass(frozen=True)
class FakeFirmware:
    """A MicroPython-like firmware: bootloader, partition table and app, merged."""

    version: str = "v1.24.1"
    chip: str = "esp32"
    # About the app's size, at least ~130 KiB (its code starts in the third 64 KiB page);
    # the real ESP32_GENERIC v1.24.1 app is about 1.6 MB.
    app_size: int = 160 * 1024
    auto_vfs: bool = False  # True: a v1.26+ table without "vfs"
    project: str = "micropython"
    idf_version: str = "v5.2.2"
    build_date: str = "Nov 29 2024"
    build_time: str = "12:00:00"
    board: str | None = None  # MicroPython's MICROPY_HW_BOARD_NAME; None: the generic one

    @property
    def layout(self) -> ChipLayout:
        return LAYOUTS[self.chip]

    @property
    def offset(self) -> int:
        """Where the merged file goes in flash (esptool write-flash OFFSET FILE)."""
        return self.layout.bootloader_offset

    @property
    def partitions(self) -> tuple[Partition, ...]:
        if self.auto_vfs:
            return tuple(p for p in self.layout.partitions if p.name != "vfs")
        return self.layout.partitions

    @property
    def app_offset(self) -> int:
        return next(p.offset for p in self.partitions if p.type == APP)

    @property
    def banner(self) -> str:
        board = self.board or f"Generic {self.layout.mcu} module"
        return f"MicroPython {self.version} on {self.build_date}; {board} with {self.layout.mcu}"

    def bootloader(self) -> bytes:
        layout = self.layout
        desc = struct.pack("<B3xI32s24s16x", BOOTLOADER_DESC_MAGIC, 1,
                           _cstring(self.idf_version, 32),
                           _cstring(f"{self.build_date} {self.build_time}", 24))
        dram = _pad4(desc + _filler(self.version + "bootloader-data", 0x2E0))
        iram = _filler(self.version + "bootloader-code", 0x3400)
        segments = [(layout.bootloader_dram, dram), (layout.bootloader_iram, iram),
                    (layout.bootloader_iram + 0x8400, _filler(self.version + "loader2", 0x1A00))]
        return esp_image(segments, layout.bootloader_iram + 0x8400 + 0x5C, layout)

    def app_description(self) -> bytes:
        elf_sha = hashlib.sha256(f"{self.project} {self.version} {self.chip}".encode()).digest()
        return struct.pack(
            "<II8x32s32s16s16s32s32sHHB3x72x", APP_DESC_MAGIC, 0,
            _cstring(self.version, 32), _cstring(self.project, 32),
            _cstring(self.build_time, 16), _cstring(self.build_date, 16),
            _cstring(self.idf_version, 32), elf_sha, 0, 99, 16)

    def app(self) -> bytes:
        layout = self.layout
        rodata = _pad4(self.app_description() + self.banner.encode() + b"\0")
        drom = _pad4(rodata + _filler(self.version + "rodata", self.app_size // 4))
        segments = [
            (layout.app_drom, drom),
            (layout.app_dram, _filler(self.version + "data", 0x4000)),
            (layout.app_iram, _filler(self.version + "iram", 0x8000)),
        ]
        segments = _padded_for(segments, layout.app_irom)
        irom_at = 24 + sum(8 + len(d) for _, d in segments) + 8
        irom = _filler(self.version + "text", max(self.app_size - irom_at, 1024) & ~3)
        segments.append((layout.app_irom, irom))
        return esp_image(segments, layout.app_iram + 0x1C4, layout)

    def partition_table(self) -> bytes:
        return partition_table(self.partitions)

    def merged(self) -> bytes:
        """The single .bin of a MicroPython download, to be flashed at `offset`."""
        parts = [(self.offset, self.bootloader()),
                 (PARTITION_TABLE_OFFSET, self.partition_table()),
                 (self.app_offset, self.app())]
        out = bytearray()
        for offset, data in parts:
            out += b"\xff" * (offset - self.offset - len(out))
            out += data
        return bytes(out)

    def write(self, path: Path) -> Path:
        path.write_bytes(self.merged())
        return path


def partition_table(partitions: tuple[Partition, ...]) -> bytes:
    entries = b"".join(
        PARTITION_MAGIC + struct.pack("<BBII16sI", p.type, p.subtype, p.offset, p.size,
                                      _cstring(p.name, 16), p.flags)
        for p in partitions)
    table = entries + PARTITION_MD5_MAGIC + hashlib.md5(entries).digest()
    return table.ljust(PARTITION_TABLE_LENGTH, b"\xff")


def read_partition_table(data: bytes) -> tuple[Partition, ...]:
    """The partitions of a binary table; ValueError when it is not one, or its MD5 fails."""
    found: list[Partition] = []
    for at in range(0, min(len(data), PARTITION_TABLE_LENGTH), 32):
        entry = data[at:at + 32]
        if entry[:2] == PARTITION_MAGIC:
            kind, subtype, offset, size, label, flags = struct.unpack("<BBII16sI", entry[2:])
            found.append(Partition(label.rstrip(b"\0").decode("ascii"), kind, subtype,
                                   offset, size, flags))
        elif entry[:2] == PARTITION_MD5_MAGIC[:2]:
            if entry[16:] != hashlib.md5(data[:at]).digest():
                raise ValueError("partition table MD5 does not match its entries")
        elif entry == b"\xff" * 32:
            break
        else:
            raise ValueError(f"no partition entry at {at:#x}")
    if not found:
        raise ValueError("no partition table")
    return tuple(found)
