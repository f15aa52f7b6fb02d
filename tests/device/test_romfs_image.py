"""The app as a ROMFS image (issue 14, item 1), for a firmware built with MicroPython's
ROMFS: `deskpulse image --romfs app.romfs` writes the app's .mpy in MicroPython's ROMFS
format (mpremote's own writer) and leaves them off the LittleFS image, where a /kiosk folder
would come before /rom on sys.path. MicroPython's own VfsRom reads the image back and
imports the app from it. Deploying it over a port (`mpremote romfs deploy`) needs a board
with such a firmware: the unix port's ROMFS segment is read-only, so it is not tried here
(docs/hardware.md)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from conftest import MP_WALK, mpy_json
from deskpulse import cli
from deskpulse.device import image
from deskpulse.errors import DeskPulseError

BOARD = "esp32-devkitc-ssd1680"

# Mounts a ROMFS image with MicroPython's own reader at /rom, as a firmware with ROMFS
# does at start, lists it (size and SHA-256 of each file), and imports from it.
READ_BACK = MP_WALK + """
import vfs, sys, json
with open(%(path)r, "rb") as f:
    data = f.read()
vfs.mount(vfs.VfsRom(data), "/rom")
found = walk("/rom", {})
imported = None
if %(module)r:
    sys.path[:] = ["/rom"]
    imported = __import__(%(module)r, None, None, ["x"]).__file__
print("@" + json.dumps({"files": found, "imported": imported}))
"""


def read_back(path: Path, module: str = "") -> dict[str, object]:
    return mpy_json(READ_BACK % {"path": str(path), "module": module})[0]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_app_goes_in_the_rom_and_main_and_data_stay_on_the_filesystem() -> None:
    files = image.device_files("mpy")
    rom, rest = image.romfs_split(files)
    assert set(rom) | set(rest) == set(files) and not set(rom) & set(rest)
    assert set(rom) == {path for path in files if path.startswith("/kiosk/")}
    assert all(path.endswith(".mpy") for path in rom)
    # The ESP32 runs /main.py from the filesystem only; the HAL reads /fonts.
    assert set(rest) == {"/main.py", *image.device_data().values()}


def test_micropython_reads_the_image_back_and_imports_the_app_from_it(tmp_path: Path) -> None:
    # x64: the app's portable modules import on the 64-bit unix port from PyPI.
    rom, _ = image.romfs_split(image.device_files("mpy", "x64"))
    path = tmp_path / "app.romfs"
    path.write_bytes(image.romfs_image(rom))
    seen = read_back(path, "kiosk.crc")
    assert seen["files"] == {where: [len(data), digest(data)] for where, data in rom.items()}
    assert seen["imported"] == "/rom/kiosk/crc.mpy"


def test_the_same_inputs_give_the_same_bytes_and_the_order_does_not_matter() -> None:
    rom, _ = image.romfs_split(image.device_files("mpy"))
    backwards = dict(reversed(list(rom.items())))
    first = image.romfs_image(rom)
    assert first == image.romfs_image(backwards)
    assert first.startswith(b"\xd2\xcd\x31")  # MicroPython's ROMFS header
    assert len(first) > sum(len(data) for data in rom.values())


def test_an_image_over_the_partition_is_refused() -> None:
    files = {"/kiosk/a.mpy": bytes(600), "/kiosk/b.mpy": bytes(600)}
    assert len(image.romfs_image(files, size=4096)) < 4096
    with pytest.raises(DeskPulseError, match=r"ROMFS image is \d+ bytes: more than the "
                                             r"romfs partition's 1024"):
        image.romfs_image(files, size=1024)
    with pytest.raises(DeskPulseError, match="ASCII file paths only"):
        image.romfs_image({"/kiosk/é.mpy": b"M"})


def test_the_image_command_writes_both_images(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    fs, rom = tmp_path / "fs.img", tmp_path / "app.romfs"
    code = cli.main(["image", "--board", BOARD, "-o", str(fs), "--romfs", str(rom)])
    out, err = capsys.readouterr()
    assert code == 0 and err == "", err
    built = image.build_image(BOARD, romfs=True)
    assert fs.read_bytes() == built.data and rom.read_bytes() == built.romfs
    assert not any(path.startswith("/kiosk") for path in built.files)
    assert set(read_back(rom)["files"]) == set(image.romfs_split(
        image.device_files("mpy"))[0])
    assert f"romfs deploy {rom}" in out
    assert built.mpy_version == "6.3"  # the ESP32's native code is in the ROMFS image


def test_a_romfs_name_mpremote_would_not_take_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fs = tmp_path / "fs.img"
    code = cli.main(["image", "--board", BOARD, "-o", str(fs), "--romfs",
                     str(tmp_path / "app")])
    _, err = capsys.readouterr()
    assert code != 0
    assert err.startswith("deskpulse: --romfs ") and "name it FILE.romfs" in err
    assert not fs.exists() and not (tmp_path / "app").exists()
