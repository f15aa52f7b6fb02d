"""What the tool ships with it: the board definitions and the kiosk firmware.

Both are package data, found with importlib.resources, so an installed `deskpulse` needs no
repository. In a wheel `deskpulse/shipped/boards` and `deskpulse/shipped/firmware` are real
folders; in the repository they are symlinks to the top-level `boards/` and `firmware/`, so
a checkout and an editable install see the live files (pyproject.toml says which files a
wheel takes).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from deskpulse.errors import DeskPulseError


def boards_dir() -> Path:
    """The shipped board definitions, one `<name>.json` each."""
    return _shipped("boards")


def firmware_dir() -> Path:
    """The shipped firmware: `main.py` and `kiosk/` (what a device gets, as
    `manifest.py` lists it) and the simulator's `sim_main.py`."""
    return _shipped("firmware")


def sim_entry() -> Path:
    """The firmware's entry point on the MicroPython unix port."""
    return firmware_dir() / "sim_main.py"


def _shipped(name: str) -> Path:
    found = resources.files(__package__ or "deskpulse") / "shipped" / name
    # micropython is given these files by path, so they must be real files on disk.
    if not isinstance(found, Path) or not found.is_dir():
        raise DeskPulseError(f"this deskpulse has no {name} folder (looked for {found}): "
                             "reinstall it with pip")
    return found.resolve()


def manifest_files(manifest: Path | None = None) -> list[str]:
    """The files a device gets, as paths relative to the firmware folder, in the order
    `firmware/manifest.py` names them: its `module()` and `package()` calls (MicroPython's
    manifest functions, which take .py files only) and then its `DATA_FILES`."""
    path = manifest or firmware_dir() / "manifest.py"
    base = path.parent
    named: list[str] = []

    def relative(base_path: str, inner: str) -> str:
        full = (base / base_path / inner).resolve()
        try:
            return full.relative_to(base.resolve()).as_posix()
        except ValueError:
            raise DeskPulseError(f"{path} names {full}, outside {base}") from None

    def module(module_path: str, base_path: str = ".", opt: int | None = None) -> None:
        named.append(relative(base_path, module_path))

    def package(package_path: str, files: list[str] | None = None, base_path: str = ".",
                opt: int | None = None) -> None:
        if files is None:
            root = base / base_path
            files = sorted(p.relative_to(root / package_path).as_posix()
                           for p in (root / package_path).rglob("*.py"))
        named.extend(relative(base_path, f"{package_path}/{f}") for f in files)

    def metadata(**fields: object) -> None:
        pass

    namespace: dict[str, object] = {"metadata": metadata, "module": module, "package": package}
    try:
        exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)
    except OSError as exc:
        raise DeskPulseError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except NameError as exc:  # include(), require(): not needed by this manifest yet
        raise DeskPulseError(f"{path}: deskpulse reads only module() and package() ({exc})") \
            from exc
    data = namespace.get("DATA_FILES", ())
    if not isinstance(data, list | tuple):
        raise DeskPulseError(f"{path}: DATA_FILES must be a list of paths")
    named.extend(relative(".", str(name)) for name in data)
    return named
