"""The real esptool, in-process, against the ROM loader stand-in (tests/rom_loader.py) and
the synthetic MicroPython firmware (tests/fake_firmware.py): what `deskpulse flash` will
stand on. docs/hardware.md, "The ROM loader stand-in", says where each behaviour was read
and what only a board can confirm."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from pathlib import Path

import esptool
import pytest
from esptool.targets.esp32 import ESP32ROM
from esptool.util import FatalError

from fake_firmware import (
    APP,
    DATA,
    PARTITION_TABLE_OFFSET,
    FakeFirmware,
    partition_table,
    read_partition_table,
)
from rom_loader import (
    CHANGE_BAUDRATE,
    ERASE_FLASH,
    ERR_FLASH_WRITE,
    FLASH_BEGIN,
    FLASH_DATA,
    FLASH_DEFL_BEGIN,
    FLASH_DEFL_DATA,
    GET_SECURITY_INFO,
    MEM_BEGIN,
    MIB,
    READ_FLASH,
    READ_FLASH_SLOW,
    FlashChip,
    RomLoaderStandIn,
    SlipDecoder,
    checksum,
    slip_encode,
)

WRITES = {FLASH_BEGIN, FLASH_DATA, FLASH_DEFL_BEGIN, FLASH_DEFL_DATA, ERASE_FLASH}
OLD = b"\x5a"  # what the flash held before a test; an erase turns it into 0xFF


@pytest.fixture
def rom() -> Iterator[RomLoaderStandIn]:
    with RomLoaderStandIn() as stand_in:
        stand_in.load(0, OLD * (4 * MIB))
        yield stand_in


@pytest.fixture
def firmware(tmp_path: Path) -> tuple[FakeFirmware, Path]:
    fake = FakeFirmware()
    return fake, fake.write(tmp_path / "micropython.bin")


def run(rom: RomLoaderStandIn, *args: str, chip: str = "esp32", stub: bool = False,
        after: str = "no-reset") -> None:
    esptool.main(["--chip", chip, "-p", rom.url, "--before", "no-reset", "--after", after,
                  "--connect-attempts", "2", *([] if stub else ["--no-stub"]), *args])


# -- identity -----------------------------------------------------------------------------

def test_chip_id_and_read_mac_report_the_emulated_chip(
        capsys: pytest.CaptureFixture[str]) -> None:
    with RomLoaderStandIn(mac="30:ae:a4:01:02:03", revision=(1, 0)) as rom:
        run(rom, "chip-id")
        run(rom, "read-mac")
    captured = capsys.readouterr()
    out = captured.out
    assert "Chip type:          ESP32-D0WD (revision v1.0)" in out
    assert "Crystal frequency:  40MHz" in out
    assert out.count("MAC:                30:ae:a4:01:02:03") == 4  # banner and answer, twice
    assert "ESP32 has no chip ID" in captured.err  # its ROM has no GET_SECURITY_INFO


@pytest.mark.parametrize(("size", "shown"), [(2 * MIB, "2MB"), (4 * MIB, "4MB"),
                                             (16 * MIB, "16MB")])
def test_flash_id_reads_the_jedec_id_through_the_spi_registers(
        size: int, shown: str, capsys: pytest.CaptureFixture[str]) -> None:
    with RomLoaderStandIn(flash_size=size) as rom:
        run(rom, "flash-id")
    out = capsys.readouterr().out
    assert "Manufacturer: ef" in out
    assert f"Detected flash size: {shown}" in out
    assert "Failed to communicate with the flash chip" not in out  # SFDP signature seen


# -- writing, verifying, reading back -----------------------------------------------------

@pytest.mark.parametrize("mode", ["--no-compress", "--compress"])
def test_rom_write_flash_of_the_firmware_verifies_and_lands_byte_for_byte(
        rom: RomLoaderStandIn, firmware: tuple[FakeFirmware, Path], mode: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake, path = firmware
    image = path.read_bytes()
    run(rom, "write-flash", "--no-progress", mode, hex(fake.offset), str(path))
    assert "Hash of data verified." in capsys.readouterr().out
    flash = rom.flash
    end = fake.offset + len(image)
    assert flash[fake.offset:end] == image
    # The ROM erased whole sectors: before the image nothing, after it up to the sector's
    # end, then nothing again.
    assert flash[:fake.offset] == OLD * fake.offset
    sector_end = -(-end // 0x1000) * 0x1000
    assert flash[end:sector_end] == b"\xff" * (sector_end - end)
    assert flash[sector_end:sector_end + 16] == OLD * 16
    sent = set(rom.commands)
    assert (FLASH_DEFL_DATA in sent) == (mode == "--compress")
    assert MEM_BEGIN not in sent  # no stub was uploaded
    assert rom.exits == []  # --after no-reset: still in the loader


def test_the_stub_path_writes_and_verifies_too(
        rom: RomLoaderStandIn, firmware: tuple[FakeFirmware, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    fake, path = firmware
    run(rom, "--baud", "460800", "write-flash", "--no-progress", hex(fake.offset), str(path),
        stub=True)
    out = capsys.readouterr().out
    assert "Stub flasher running." in out
    assert "Hash of data verified." in out
    assert rom.flash[fake.offset:fake.offset + path.stat().st_size] == path.read_bytes()
    assert {MEM_BEGIN, CHANGE_BAUDRATE, FLASH_DEFL_DATA} <= set(rom.commands)


@pytest.mark.parametrize("stub", [False, True], ids=["rom", "stub"])
def test_read_flash_returns_the_written_bytes(
        rom: RomLoaderStandIn, firmware: tuple[FakeFirmware, Path], tmp_path: Path,
        stub: bool) -> None:
    fake, path = firmware
    run(rom, "write-flash", "--no-progress", hex(fake.offset), str(path))
    back = tmp_path / "back.bin"
    # The partition table and the app's first bytes: 0x7000 to 0x11000 of the file.
    start, size = PARTITION_TABLE_OFFSET, 0x9000
    run(rom, "read-flash", "--no-progress", hex(start), hex(size), str(back), stub=stub)
    assert back.read_bytes() == path.read_bytes()[start - fake.offset:start - fake.offset + size]
    assert (READ_FLASH in rom.commands) == stub
    assert (READ_FLASH_SLOW in rom.commands) != stub


def test_erase_region_in_the_rom_and_erase_flash_with_the_stub(rom: RomLoaderStandIn) -> None:
    run(rom, "erase-region", "0x9000", "0x6000")  # MicroPython's nvs partition
    flash = rom.flash
    assert flash[0x9000:0xF000] == b"\xff" * 0x6000
    assert flash[0x8000:0x9000] + flash[0xF000:0x10000] == OLD * 0x2000
    run(rom, "erase-flash", stub=True)
    assert rom.flash == b"\xff" * (4 * MIB)


def test_erase_flash_without_the_stub_is_refused_by_esptool_before_anything_is_sent(
        rom: RomLoaderStandIn) -> None:
    with pytest.raises(FatalError, match="ESP32 ROM does not support function erase_flash"):
        run(rom, "erase-flash")
    assert rom.flash == OLD * (4 * MIB)
    assert not WRITES & set(rom.commands)


def test_a_soft_reset_leaves_the_loader_and_a_new_connection_finds_it_again(
        rom: RomLoaderStandIn, capsys: pytest.CaptureFixture[str]) -> None:
    run(rom, "read-mac", after="soft-reset")
    assert rom.exits == ["run"]  # FLASH_END "run user code": the app starts
    run(rom, "read-mac")  # a technician holds BOOT and resets again
    assert capsys.readouterr().out.count("Connected to ESP32") == 2
    assert rom.sessions == 2


def test_a_failed_block_is_retried_by_esptool_and_three_fail_the_write(
        rom: RomLoaderStandIn, firmware: tuple[FakeFirmware, Path]) -> None:
    fake, path = firmware
    rom.fail_next(FLASH_DATA, ERR_FLASH_WRITE)
    run(rom, "write-flash", "--no-progress", "--no-compress", hex(fake.offset), str(path))
    assert rom.flash[fake.offset:fake.offset + path.stat().st_size] == path.read_bytes()
    for _ in range(3):
        rom.fail_next(FLASH_DATA, ERR_FLASH_WRITE)
    with pytest.raises(FatalError, match=r"result was 0108: Flash write error"):
        run(rom, "write-flash", "--no-progress", "--no-compress", hex(fake.offset), str(path))


def test_a_filesystem_image_at_micropythons_vfs_offset_lands_past_2_mib(
        rom: RomLoaderStandIn, tmp_path: Path) -> None:
    # The ROM takes 2 MiB for the flash size until SPI_SET_PARAMS; esptool sends the size
    # it read from the JEDEC id before writing.
    image = bytes(range(256)) * 256 + b"\0" * 0x10000
    (tmp_path / "fs.bin").write_bytes(image)
    run(rom, "write-flash", "--no-progress", "--compress", "0x200000", str(tmp_path / "fs.bin"))
    assert rom.flash[0x200000:0x200000 + len(image)] == image
    assert rom.flash[:0x200000] == OLD * 0x200000


def test_an_image_past_the_end_of_a_small_flash_is_refused_by_esptool(
        tmp_path: Path) -> None:
    (tmp_path / "fs.bin").write_bytes(b"\0" * 0x1000)
    with RomLoaderStandIn(flash_size=2 * MIB) as small:
        with pytest.raises(FatalError, match="will not fit in 2097152 bytes of flash"):
            run(small, "write-flash", "0x200000", str(tmp_path / "fs.bin"))
        assert not WRITES & set(small.commands)
        assert small.flash == b"\xff" * (2 * MIB)


def test_a_flash_ignores_the_address_bits_above_its_size() -> None:
    # What a wrong flash size would do: the 2 MiB part answers at 0x200000 from 0.
    with RomLoaderStandIn(flash_size=2 * MIB) as small:
        esp = connected(small)
        try:
            esp.flash_spi_attach(0)
            esp.flash_set_parameters(4 * MIB)
            esp.flash_begin(4, 0x200000)
            esp.flash_block(b"kiosk".ljust(1024, b"\xff"), 0)
        finally:
            esp._port.close()
        assert small.flash[:5] == b"kiosk"


def test_an_erase_takes_every_sector_it_touches() -> None:
    flash = FlashChip(2 * MIB)
    flash.memory[:] = OLD * (2 * MIB)
    flash.erase(0x1100, 0x1000)  # 0x1100-0x20ff: the sectors at 0x1000 and 0x2000
    assert flash.read(0x0, 0x1000) == OLD * 0x1000
    assert flash.read(0x1000, 0x2000) == b"\xff" * 0x2000
    assert flash.read(0x3000, 0x10) == OLD * 0x10


# -- the firmware file --------------------------------------------------------------------

def test_image_info_accepts_the_fake_bootloader_and_app(
        firmware: tuple[FakeFirmware, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake, path = firmware
    merged = path.read_bytes()
    app = merged[fake.app_offset - fake.offset:]
    (tmp_path / "app.bin").write_bytes(app)
    esptool.main(["image-info", str(path)])  # a merged file shows its first image
    esptool.main(["image-info", str(tmp_path / "app.bin")])
    out = capsys.readouterr().out
    assert "Bootloader Information" in out
    assert "Project name: micropython" in out
    assert "App version: v1.24.1" in out
    assert "Chip ID: 0 (ESP32)" in out
    assert out.count("Checksum: ") == out.count("(valid)") // 2 == 2  # checksum and hash
    assert fake.banner.encode() in app


def test_the_partition_table_is_micropythons_4mib_table(
        firmware: tuple[FakeFirmware, Path]) -> None:
    fake, path = firmware
    raw = path.read_bytes()[PARTITION_TABLE_OFFSET - fake.offset:][:0xC00]
    table = read_partition_table(raw)
    assert [(p.name, p.type, p.offset, p.size) for p in table] == [
        ("nvs", DATA, 0x9000, 0x6000), ("phy_init", DATA, 0xF000, 0x1000),
        ("factory", APP, 0x10000, 0x1F0000), ("vfs", DATA, 0x200000, 0x200000)]
    # ESP-IDF's binary form: the first entry as gen_esp32part.py writes it.
    assert raw[:32] == (b"\xaa\x50\x01\x02" + struct.pack("<II", 0x9000, 0x6000)
                        + b"nvs".ljust(16, b"\0") + bytes(4))
    assert raw[128:144] == b"\xeb\xeb" + b"\xff" * 14
    assert raw[144:160] == hashlib.md5(raw[:128]).digest()
    newer = FakeFirmware(version="v1.26.1", auto_vfs=True)
    assert [p.name for p in read_partition_table(newer.partition_table())] == [
        "nvs", "phy_init", "factory"]


def test_a_damaged_partition_table_is_told_apart(firmware: tuple[FakeFirmware, Path]) -> None:
    fake, _ = firmware
    raw = bytearray(partition_table(fake.partitions))
    raw[10] ^= 1
    with pytest.raises(ValueError, match="MD5"):
        read_partition_table(bytes(raw))
    with pytest.raises(ValueError, match="no partition table"):
        read_partition_table(b"\xff" * 0xC00)


# -- refusals and errors ------------------------------------------------------------------

def test_the_wrong_chip_is_refused_and_nothing_is_written(
        rom: RomLoaderStandIn, firmware: tuple[FakeFirmware, Path]) -> None:
    _, path = firmware
    with pytest.raises(FatalError, match="This chip is ESP32, not ESP32-S3"):
        run(rom, "write-flash", "0x0", str(path), chip="esp32s3")
    assert rom.flash == OLD * (4 * MIB)
    assert not WRITES & set(rom.commands)


def test_an_esp32_s3_is_detected_as_such_and_refused_as_an_esp32(
        capsys: pytest.CaptureFixture[str]) -> None:
    with RomLoaderStandIn(chip="esp32s3") as rom:
        run(rom, "read-mac", chip="auto")
        assert "Chip type:          ESP32-S3" in capsys.readouterr().out
        with pytest.raises(FatalError, match="This chip is ESP32-S3, not ESP32"):
            run(rom, "read-mac")
        assert GET_SECURITY_INFO in rom.commands


def test_a_chip_outside_download_mode_never_answers(rom: RomLoaderStandIn) -> None:
    rom.download_mode = False
    with pytest.raises(FatalError, match="Failed to connect to ESP32: No serial data received"):
        run(rom, "read-mac")
    assert rom.commands == []


def connected(rom: RomLoaderStandIn) -> ESP32ROM:
    esp = ESP32ROM(rom.url)
    esp.connect("no-reset", 2)
    return esp


@pytest.mark.parametrize("command", [0x55, GET_SECURITY_INFO, READ_FLASH, ERASE_FLASH])
def test_a_command_the_rom_lacks_gets_the_rom_error_at_once(
        rom: RomLoaderStandIn, command: int) -> None:
    esp = connected(rom)
    try:
        # A second's patience: a stand-in that stayed silent would fail with "No serial
        # data received", not with the ROM's status.
        with pytest.raises(FatalError, match=r"result was 0105: The format of the received"):
            esp.check_command("probe", command, b"\0" * 8, timeout=1)
    finally:
        esp._port.close()


def test_the_stub_has_its_own_error_codes(rom: RomLoaderStandIn) -> None:
    esp = connected(rom).run_stub()
    try:
        with pytest.raises(FatalError, match=r"result was C300: Invalid command"):
            esp.check_command("probe", 0x55, b"", timeout=1)
        with pytest.raises(FatalError, match=r"result was C100: Bad data checksum"):
            esp.flash_begin(0x1000, 0x10000)
            esp.check_command("write", FLASH_DATA, struct.pack("<4I", 4, 0, 0, 0) + b"abcd",
                              chk=checksum(b"abcd") ^ 1, timeout=1)
    finally:
        esp._port.close()


def test_a_bad_checksum_and_programming_without_an_erase_are_rom_errors(
        rom: RomLoaderStandIn) -> None:
    esp = connected(rom)
    try:
        esp.flash_spi_attach(0)
        esp.flash_set_parameters(4 * MIB)
        block = bytes(range(256)) * 4
        header = struct.pack("<4I", len(block), 0, 0, 0)
        esp.flash_begin(len(block), 0x10000)
        with pytest.raises(FatalError, match=r"result was 0107: Checksum error"):
            esp.check_command("write", FLASH_DATA, header + block, chk=checksum(block) ^ 0xFF)
        esp.flash_block(block, 0)
        # FLASH_BEGIN of nothing erases nothing: writing other bytes over programmed ones
        # cannot set their bits again, and the ROM's read-back says so.
        esp.flash_begin(0, 0x10000)
        esp.command(FLASH_BEGIN, struct.pack("<4I", 0, 1, len(block), 0x10000))
        with pytest.raises(FatalError, match=r"result was 0108: Flash write error"):
            esp.check_command("write", FLASH_DATA, header + b"\xff" * 1024,
                              chk=checksum(b"\xff" * 1024))
    finally:
        esp._port.close()
    assert rom.flash[0x10000:0x10400] == block


def test_slip_framing_round_trips_the_escaped_bytes() -> None:
    packet = bytes([0xC0, 0xDB, 0x01, 0xDB, 0xDC, 0xC0])
    decoder = SlipDecoder()
    wire = b"noise" + slip_encode(packet) + slip_encode(b"x")
    assert decoder.feed(wire[:7]) + decoder.feed(wire[7:]) == [packet, b"x"]
