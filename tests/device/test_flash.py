"""`deskpulse flash` (issue 15): the real esptool, in-process, flashes a synthetic
MicroPython download (tests/fake_firmware.py) and the kiosk's filesystem image onto the
ROM loader stand-in (tests/rom_loader.py). The stand-in's flash is read back byte for byte,
its vfs partition boots the kiosk, and every refusal is one line with nothing written."""

from __future__ import annotations

import json
import logging
import os
import pwd
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import esptool
import pytest
import serial

from conftest import REPO
from deskpulse import cli
from deskpulse.device import flash, image
from deskpulse.errors import DeskPulseError
from fake_firmware import APP, DATA, SUBTYPES, FakeFirmware, Partition
from rom_loader import (
    ERASE_FLASH,
    ERR_FLASH_WRITE,
    FLASH_BEGIN,
    FLASH_DATA,
    FLASH_DEFL_BEGIN,
    FLASH_DEFL_DATA,
    MEM_BEGIN,
    MIB,
    RomLoaderStandIn,
)

BOARD = "esp32-devkitc-ssd1680"  # ESP32, 4 MiB, vfs 0x200000 + 2 MiB
WRITES = {FLASH_BEGIN, FLASH_DATA, FLASH_DEFL_BEGIN, FLASH_DEFL_DATA, ERASE_FLASH}
OLD = b"\x5a"  # what the flash held before; an erase turns it into 0xFF
CONFIG = {"version": 3, "device_id": "front-1", "scale": 3}


@pytest.fixture
def rom() -> Iterator[RomLoaderStandIn]:
    with RomLoaderStandIn() as stand_in:
        stand_in.load(0, OLD * (4 * MIB))
        yield stand_in


@pytest.fixture
def firmware(tmp_path: Path) -> Path:
    return FakeFirmware().write(tmp_path / "ESP32_GENERIC-v1.24.1.bin")


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "front-1.json"
    path.write_text(json.dumps(CONFIG))
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["flash", *args])
    out, err = capsys.readouterr()
    return code, out, err


def rts_changes(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The RTS levels esptool set, as pyserial's socket handler logs them (the URL's
    ?logging=info): the stand-in has no RTS line, the log is the logic analyser."""
    return [r.getMessage().split("(")[1].rstrip(")") for r in caplog.records
            if r.name == "pySerial.socket" and "_update_rts_state" in r.getMessage()]


# -- writing ------------------------------------------------------------------------------
def test_firmware_and_filesystem_land_byte_for_byte_and_the_board_is_reset(
        rom: RomLoaderStandIn, firmware: Path, config_file: Path,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pySerial.socket")
    code, out, err = run(capsys, "--port", rom.url + "?logging=info", "--board", BOARD,
                         "--firmware", str(firmware), "--config", str(config_file))
    assert (code, err) == (0, "")
    fake = FakeFirmware()
    data = firmware.read_bytes()
    flashed = rom.flash
    assert flashed[fake.offset:fake.offset + len(data)] == data
    # The filesystem is the image `deskpulse image` builds (the same inputs give the same
    # bytes), with the config in it.
    expected = image.build_image(BOARD, config_file)
    assert flashed[0x200000:] == expected.data
    assert expected.files["/config.json"] == json.dumps(CONFIG, separators=(",", ":")).encode()
    # No --erase: before the firmware and after its last sector the old bytes stay.
    end = -(-(fake.offset + len(data)) // 0x1000) * 0x1000
    assert flashed[:fake.offset] == OLD * fake.offset
    assert flashed[end:0x200000] == OLD * (0x200000 - end)
    assert MEM_BEGIN in rom.commands and ERASE_FLASH not in rom.commands  # the stub wrote
    # Opening the port leaves RTS asserted; the reset into the app is one more pulse.
    assert rts_changes(caplog) == ["True", "True", "False"]
    lines = out.splitlines()
    steps = [line.split(":")[0] for line in lines[:-1] if not line.startswith(" ")]
    assert steps == ["firmware", "app", "port", "chip", "plan", "plan", "plan", "verified",
                     "reset"]
    assert lines[0].startswith("firmware: ESP32_GENERIC-v1.24.1.bin: MicroPython v1.24.1 for "
                               "ESP32 (ESP-IDF v5.2.2), ")
    assert "as .mpy 6.3, which MicroPython v1.24.1 loads" in lines[1]
    assert "for its partition table's vfs at 0x200000" in lines[1]
    assert "chip: ESP32-D0WD-V3 (revision v3.1), MAC 24:0a:c4:12:34:56, 4 MiB flash" in out
    assert "plan: write the filesystem at 0x200000-0x3fffff (2097152 bytes)" in out
    assert "  writing firmware: 100%" in out and "  writing filesystem: 100%" in out
    assert lines[-1].startswith("done in ") and "config of front-1" in lines[-1]
    # esptool's own logger is back: its output goes to stdout again.
    esptool.main(["version"])
    assert esptool.__version__ in capsys.readouterr().out


def test_erase_erases_the_whole_flash_first(rom: RomLoaderStandIn, firmware: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--port", rom.url, "--board", BOARD,
                         "--firmware", str(firmware), "--erase")
    assert (code, err) == (0, "")
    data = firmware.read_bytes()
    flashed = rom.flash
    assert flashed[:0x1000] == b"\xff" * 0x1000
    assert flashed[0x1000:0x1000 + len(data)] == data
    assert flashed[0x1000 + len(data):0x200000] == b"\xff" * (0x200000 - 0x1000 - len(data))
    assert ERASE_FLASH in rom.commands
    assert rom.commands.index(ERASE_FLASH) < rom.commands.index(FLASH_DEFL_BEGIN)
    assert "plan: erase the whole flash first (--erase)" in out


def test_dry_run_reads_the_chip_prints_the_plan_and_writes_nothing(
        rom: RomLoaderStandIn, firmware: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pySerial.socket")
    code, out, err = run(capsys, "--port", rom.url + "?logging=info", "--board", BOARD,
                         "--firmware", str(firmware), "--erase", "--dry-run")
    assert (code, err) == (0, "")
    assert rom.flash == OLD * (4 * MIB)
    assert not WRITES & set(rom.commands)
    assert "chip: ESP32-D0WD-V3" in out
    assert "plan: erase the whole flash first (--erase)" in out
    assert "plan: write the firmware at 0x1000-" in out
    assert "dry run: nothing written" in out and "writing" not in out
    assert out.splitlines()[-1].startswith("dry run done in ")
    assert rts_changes(caplog) == ["True", "True", "False"]  # back into its app


def test_the_v1_26_layout_makes_its_vfs_from_the_end_of_the_table(
        rom: RomLoaderStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    newer = FakeFirmware(version="v1.26.1", auto_vfs=True).write(tmp_path / "v1.26.1.bin")
    code, out, err = run(capsys, "--port", rom.url, "--board", BOARD, "--firmware", str(newer))
    assert (code, err) == (0, "")
    assert "for the vfs it makes at boot from 0x200000 to the end of the flash" in out
    assert rom.flash[0x200000:] == image.build_image(BOARD).data


def test_two_boards_at_once_each_get_their_own_progress(tmp_path: Path) -> None:
    """esptool's logger is one per process: the relay hands each thread its own lines."""
    fw = FakeFirmware().write(tmp_path / "fw.bin")
    built = image.build_image(BOARD)
    reports: dict[str, list[str]] = {"a": [], "b": []}
    errors: list[BaseException] = []
    with RomLoaderStandIn(mac="24:0a:c4:00:00:0a") as one, \
            RomLoaderStandIn(mac="24:0a:c4:00:00:0b") as two:

        def flash_one(name: str, rom: RomLoaderStandIn) -> None:
            try:
                flash.flash_kiosk(rom.url, BOARD, fw, built=built, report=reports[name].append)
            except BaseException as error:  # handed to the test's thread
                errors.append(error)

        threads = [threading.Thread(target=flash_one, args=("a", one)),
                   threading.Thread(target=flash_one, args=("b", two))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        for rom in (one, two):
            assert rom.flash[0x200000:] == built.data
    assert any("MAC 24:0a:c4:00:00:0a" in line for line in reports["a"])
    assert not any("24:0a:c4:00:00:0b" in line for line in reports["a"])
    assert any("MAC 24:0a:c4:00:00:0b" in line for line in reports["b"])
    for lines in reports.values():
        assert lines.count("  writing filesystem: 100%") == 1


# -- the flashed partition boots ------------------------------------------------------------
@pytest.mark.slow
def test_the_kiosk_boots_from_the_vfs_partition_read_back_from_the_flash(
        tmp_path: Path) -> None:
    """The issue's test: flash a firmware and the image, take the vfs partition out of the
    stand-in's flash, and boot the simulated board from it (main.py -> kiosk.boot ->
    Esp32Hal -> kiosk.app.run): customers tap, then `deskpulse sync`'s own code pulls
    every answer. The image holds .mpy for this host's unix port (not the ESP32's CPU),
    nothing else changed; the firmware has the v1.26+ table without vfs."""
    sys.path.insert(0, str(REPO / "tools"))
    import bench_heap

    from deskpulse.device.micropython import default_micropython

    micropython = default_micropython()
    assert micropython is not None
    config = tmp_path / "config.json"
    config.write_text(json.dumps(bench_heap.base_config(None)))
    built = image.build_image(bench_heap.BOARD, config, arch="x64")
    fw = FakeFirmware(version="v1.27.0", auto_vfs=True).write(tmp_path / "fw.bin")
    with RomLoaderStandIn() as rom:
        done = flash.flash_kiosk(rom.url, bench_heap.BOARD, fw, built=built)
        flashed = rom.flash
    assert done.written and done.chip.flash_size == 4 * MIB
    partition = flashed[built.offset:built.offset + len(built.data)]
    assert partition == built.data

    why, result = bench_heap.boot_image(partition, built.files, Path(micropython), tmp_path)
    assert why == "", why
    assert result["status"]["device_id"] == "heap-1"  # the partition's /config.json


# -- refusals: one line, nothing written ----------------------------------------------------
def refused(capsys: pytest.CaptureFixture[str], rom: RomLoaderStandIn | None,
            *args: str) -> str:
    before = rom.flash if rom is not None else b""
    code, out, err = run(capsys, *args)
    assert code == 2, out
    assert err.startswith("deskpulse: ") and err.count("\n") == 1, err
    if rom is not None:
        assert rom.flash == before
        assert not WRITES & set(rom.commands)
    return err


def test_a_board_with_another_chip_is_refused_and_reset(
        firmware: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pySerial.socket")
    with RomLoaderStandIn(chip="esp32s3") as rom:
        err = refused(capsys, rom, "--port", rom.url + "?logging=info", "--board", BOARD,
                      "--firmware", str(firmware))
    assert "the board on socket://" in err and "is an ESP32-S3, not an ESP32" in err
    assert rts_changes(caplog) == ["True", "True", "False"]


def test_a_firmware_for_another_chip_is_refused_before_the_port(
        rom: RomLoaderStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s3 = FakeFirmware(chip="esp32s3").write(tmp_path / "ESP32_GENERIC_S3.bin")
    err = refused(capsys, rom, "--port", rom.url, "--board", BOARD, "--firmware", str(s3))
    assert "ESP32_GENERIC_S3.bin is MicroPython for an ESP32-S3, board " \
           "esp32-devkitc-ssd1680 has an ESP32" in err
    assert rom.sessions == 0


def test_a_flash_too_small_is_refused(firmware: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with RomLoaderStandIn(flash_size=2 * MIB) as rom:
        err = refused(capsys, rom, "--port", rom.url, "--board", BOARD,
                      "--firmware", str(firmware))
    assert "has 2 MiB of flash, firmware and filesystem need 4 MiB" in err


def test_a_made_at_boot_vfs_that_would_not_match_the_image_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """On 8 MiB MicroPython v1.26+ makes a 6 MiB vfs: the 2 MiB image would not mount."""
    newer = FakeFirmware(version="v1.26.1", auto_vfs=True).write(tmp_path / "v1.26.1.bin")
    with RomLoaderStandIn(flash_size=8 * MIB) as rom:
        err = refused(capsys, rom, "--port", rom.url, "--board", BOARD,
                      "--firmware", str(newer))
    assert "on this 8 MiB flash v1.26.1.bin makes a 6 MiB vfs partition at 0x200000" in err


@dataclass(frozen=True)
class OtherTable(FakeFirmware):
    """A MicroPython download with its own partition table."""

    table: tuple[Partition, ...] = ()

    @property
    def partitions(self) -> tuple[Partition, ...]:
        return self.table


@dataclass(frozen=True)
class NotMicroPython(FakeFirmware):
    project: str = "esphome"

    @property
    def banner(self) -> str:
        return "ESPHome 2024.11.0 compiled on Nov 29 2024"


@dataclass(frozen=True)
class RealDescription(FakeFirmware):
    """MicroPython's builds leave esp_app_desc_t's version and project name empty
    (CONFIG_APP_EXCLUDE_PROJECT_VER_VAR and _NAME_VAR in ports/esp32/boards/
    sdkconfig.base); the version is in the banner only."""

    def app_description(self) -> bytes:
        desc = bytearray(super().app_description())
        desc[16:80] = bytes(64)  # version[32], project_name[32]
        return bytes(desc)


def _table(*rows: tuple[str, int, str, int, int]) -> tuple[Partition, ...]:
    return tuple(Partition(name, kind, SUBTYPES[sub], offset, size)
                 for name, kind, sub, offset, size in rows)


BASE_TABLE = (("nvs", DATA, "nvs", 0x9000, 0x6000), ("phy_init", DATA, "phy", 0xF000, 0x1000),
              ("factory", APP, "factory", 0x10000, 0x1F0000))


def damaged(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x01
    return bytes(out)


def test_a_wrong_or_unreadable_firmware_file_is_refused_before_the_port(
        rom: RomLoaderStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = FakeFirmware()
    merged = good.merged()
    app_at = good.app_offset - good.offset
    cases: dict[str, tuple[bytes, str]] = {
        "notes.txt": (b"Firmware for the front desk\n" * 100,
                      "does not start with an ESP32 bootloader image"),
        "app-only.bin": (good.app(), "holds MicroPython's app alone"),
        "short.bin": (merged[:app_at + 40_000], "the app is cut short"),
        "no-app.bin": (merged[:app_at], "before the app partition at 0x10000"),
        "flipped.bin": (damaged(merged, app_at + 5000), "the app is damaged: its checksum"),
        "sha.bin": (damaged(merged, app_at + len(good.app()) - 3),
                    "the app is damaged: its SHA-256"),
        "bootloader.bin": (damaged(merged, 100), "the bootloader is damaged"),
        "table.bin": (damaged(merged, 0x8000 - good.offset + 40),
                      "the partition table at 0x8000 is damaged: its MD5"),
        "esphome.bin": (NotMicroPython().merged(),
                        "its app (esphome) has no \"MicroPython v…\" banner"),
        "v1.22.2.bin": (FakeFirmware(version="v1.22.2").merged(),
                        "MicroPython v1.22.2, which loads .mpy 6.2; the app is .mpy 6.3 "
                        "with native code: use MicroPython v1.23.0 or later"),
        "v1.23-preview.bin": (FakeFirmware(version="v1.23.0-preview.33.gabcdef0").merged(),
                              "whose .mpy format is not known here"),
        "v1.30.0.bin": (FakeFirmware(version="v1.30.0").merged(),
                        "MicroPython v1.30.0, whose .mpy format is not known here (known up "
                        "to v1.29.x)"),
        "elsewhere.bin": (OtherTable(table=_table(
            *BASE_TABLE[:2], ("factory", APP, "factory", 0x10000, 0x170000),
            ("vfs", DATA, "fat", 0x180000, 0x280000))).merged(),
            "partition table puts vfs at 0x180000 (2621440 bytes), board "
            "esp32-devkitc-ssd1680's image is for 0x200000 (2097152 bytes)"),
        "ffat.bin": (OtherTable(table=_table(*BASE_TABLE, ("ffat", DATA, "fat", 0x200000,
                                                           0x200000))).merged(),
                     "has an ffat partition (a FAT filesystem"),
        "small-app.bin": (OtherTable(table=_table(
            *BASE_TABLE[:2], ("factory", APP, "factory", 0x10000, 0x160000))).merged(),
            "makes its vfs partition at boot from the end of its last partition, 0x170000"),
    }
    for name, (data, why) in cases.items():
        (tmp_path / name).write_bytes(data)
        err = refused(capsys, rom, "--port", rom.url, "--board", BOARD,
                      "--firmware", str(tmp_path / name))
        assert why in err, (name, err)
        assert rom.sessions == 0, name
    err = refused(capsys, rom, "--port", rom.url, "--board", BOARD,
                  "--firmware", str(tmp_path / "missing.bin"))
    assert "cannot read the firmware" in err and "No such file" in err
    err = refused(capsys, rom, "--port", rom.url, "--board", BOARD,
                  "--firmware", str(tmp_path))
    assert "cannot read the firmware" in err


def test_what_is_read_from_the_firmware_file(tmp_path: Path) -> None:
    real = flash.read_firmware(RealDescription().write(tmp_path / "real.bin"))
    assert (real.version, real.release, real.preview) == ("v1.24.1", (1, 24, 1), False)
    assert (real.chip.name, real.offset, real.idf_version) == ("ESP32", 0x1000, "v5.2.2")
    assert [p.label for p in real.partitions] == ["nvs", "phy_init", "factory", "vfs"]
    assert real.app.offset == 0x10000 and real.mpy_version == "6.3"
    s3 = flash.read_firmware(FakeFirmware(chip="esp32s3").write(tmp_path / "s3.bin"))
    assert (s3.chip.name, s3.offset) == ("ESP32-S3", 0x0)
    # The same download merged from 0 (esptool merge-bin): 0xFF up to the bootloader.
    from_zero = tmp_path / "from-zero.bin"
    from_zero.write_bytes(b"\xff" * 0x1000 + FakeFirmware().merged())
    assert flash.read_firmware(from_zero).offset == 0
    preview = flash.read_firmware(FakeFirmware(version="v1.29.0-preview.5.g1c3c201149")
                                  .write(tmp_path / "preview.bin"))
    assert (preview.release, preview.preview, preview.mpy_version) == ((1, 29, 0), True, "6.3")


def test_the_mpy_rule() -> None:
    """MicroPython's docs/reference/mpyfiles.rst: v1.23.0 and up load 6.3, v1.22.x 6.2,
    v1.20-v1.21 6.1, v1.19 6; native code needs the sub-version too."""
    assert flash.mpy_version_of((1, 24, 1)) == "6.3"
    assert flash.mpy_version_of((1, 23, 0)) == "6.3"
    assert flash.mpy_version_of((1, 22, 2)) == "6.2"
    assert flash.mpy_version_of((1, 21, 0)) == "6.1"
    assert flash.mpy_version_of((1, 19, 1)) == "6"
    assert flash.mpy_version_of((1, 29, 3)) == "6.3"
    assert flash.mpy_version_of((1, 30, 0)) is None  # newer than the table read
    assert flash.mpy_version_of((1, 23, 0), preview=True) is None  # 6.2 or 6.3
    assert flash.mpy_version_of((1, 25, 0), preview=True) == "6.3"
    assert flash.runs_mpy("6.3", "6.3") and not flash.runs_mpy("6.2", "6.3")
    assert flash.runs_mpy("6.2", "6") and not flash.runs_mpy("5", "6")


def test_a_missing_port_is_refused(tmp_path: Path, firmware: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(capsys, None, "--port", str(tmp_path / "ttyUSB9"), "--board", BOARD,
                  "--firmware", str(firmware))
    assert f"no serial port {tmp_path / 'ttyUSB9'}: is the kiosk plugged in?" in err


@pytest.fixture
def pty_port() -> Iterator[str]:
    master, slave = os.openpty()
    try:
        yield os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def test_a_busy_port_is_refused(pty_port: str, firmware: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    holder = serial.Serial(pty_port, exclusive=True)  # another esptool, mpremote or sync
    try:
        err = refused(capsys, None, "--port", pty_port, "--board", BOARD,
                      "--firmware", str(firmware))
    finally:
        holder.close()
    assert f"{pty_port} is in use by another program" in err


def test_a_port_without_permission_gets_the_dialout_hint(pty_port: str, firmware: Path,
                                                         tmp_path: Path) -> None:
    """A user outside the port's group: here root without CAP_DAC_OVERRIDE, on a port
    owned by another user (setpriv drops the capability for the command alone)."""
    os.chown(pty_port, pwd.getpwnam("nobody").pw_uid, -1)
    os.chmod(pty_port, 0o600)
    done = subprocess.run(
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--",
         sys.executable, "-m", "deskpulse.cli", "flash", "--port", pty_port,
         "--board", BOARD, "--firmware", str(firmware)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (f"deskpulse: permission denied on {pty_port}: check that the "
                           "cable carries data (some are power only) and that you may use "
                           "serial ports: sudo usermod -aG dialout $USER, then log out and "
                           "in again\n")


def test_no_bootloader_is_refused_with_what_to_do(firmware: Path) -> None:
    """A board that is running its app (BOOT not held, no auto-reset circuit) never
    answers the loader's SYNC."""
    with RomLoaderStandIn(download_mode=False) as rom:
        rom.load(0, OLD * (4 * MIB))
        with pytest.raises(DeskPulseError) as refusal:
            flash.flash_kiosk(rom.url, BOARD, firmware, connect_attempts=1)
        assert rom.flash == OLD * (4 * MIB) and rom.commands == []
    message = str(refusal.value)
    assert "\n" not in message
    assert message.startswith(f"no ESP32 bootloader answered on {rom.url} (")
    assert "hold BOOT (IO0), press and release EN (RST), release BOOT" in message


def test_a_write_that_keeps_failing_is_one_line(rom: RomLoaderStandIn, firmware: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(3):
        rom.fail_next(FLASH_DEFL_DATA, ERR_FLASH_WRITE)
    code, _, err = run(capsys, "--port", rom.url, "--board", BOARD,
                       "--firmware", str(firmware))
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"deskpulse: writing the flash on {rom.url} failed: ")
    assert "run deskpulse flash again" in err


def test_without_esptool_it_says_what_to_install(
        firmware: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "esptool", None)  # as if not installed
    err = refused(capsys, None, "--port", "/dev/ttyUSB0", "--board", BOARD,
                  "--firmware", str(firmware))
    assert err == "deskpulse: flashing needs esptool: pip install 'esptool>=5.6,<6'\n"
