"""How the `deskpulse` command behaves around its work (issue 11): --version, a reader that
stops early, a database that does not exist, files it cannot write, and what it imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from conftest import REPO
from deskpulse import cli
from deskpulse.errors import DeskPulseError
from deskpulse.protocol.batch import Response
from deskpulse.store import open_store

HOST = REPO / "host"
T0 = 1_780_000_000  # 2026-05-28


def _env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "TZ": "UTC", "XDG_DATA_HOME": str(tmp_path / "xdg"),
           "PYTHONPATH": str(HOST)}
    env.pop("DESKPULSE_DB", None)
    return env


def deskpulse(tmp_path: Path, *args: str, **kwargs: object) -> subprocess.CompletedProcess:
    """The real command in a child process (the console script runs the same main)."""
    return subprocess.run([sys.executable, "-m", "deskpulse.cli", *args], env=_env(tmp_path),
                          capture_output=True, text=True, timeout=120, check=False,
                          **kwargs)  # type: ignore[call-overload]


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """Two kiosks, 400 responses: enough output to fill a pipe's buffer."""
    path = tmp_path / "deskpulse.db"
    conn = open_store(path)
    for device in ("desk-1", "desk-2"):
        responses = [Response(seq=i, rating=1 + i % 5, scale=5, told_next="yes",
                              latency_s=2.5, rapid=False, closed=False, boot=1,
                              uptime_s=i * 60, wall=T0 + i * 60, config_version=1)
                     for i in range(1, 201)]
        conn.store_batch(device, responses, [], {"board": "b", "firmware": "1"}, "serial")
    conn.close()
    return path


def _no_noise(err: str) -> None:
    assert "Traceback" not in err
    assert "Exception ignored" not in err
    assert "BrokenPipeError" not in err


# -- --version -----------------------------------------------------------------------------


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    done = deskpulse(tmp_path, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"deskpulse {metadata.version('deskpulse')}\n"
    assert done.stderr == ""


def test_version_without_an_installed_package(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("deskpulse unknown (not installed")


# -- a reader that stops early -------------------------------------------------------------


def _into_closed_pipe(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Run with stdout a pipe whose reading end is already closed: every write fails, as
    when `| head -1` has exited."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "deskpulse.cli", *args],
                              env=_env(tmp_path), stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=120, check=False)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("args", [
    ["--help"],
    ["--version"],
    ["boards"],
    ["devices"],
    ["report"],
    ["report", "--format", "csv"],
    ["report", "--format", "json"],
    ["alerts", "--min", "1", "--negative", "0.1"],
    ["sites"],
], ids=" ".join)
def test_a_closed_pipe_ends_quietly(tmp_path: Path, database: Path, args: list[str]) -> None:
    if args[0] in ("devices", "report", "alerts", "sites"):
        args = [*args, "--db", str(database)]
    done = _into_closed_pipe(tmp_path, *args)
    _no_noise(done.stderr)
    assert done.stderr == ""
    assert done.returncode == 0


@pytest.mark.parametrize("command", ["devices", "report --format csv", "boards"])
def test_piped_into_head(tmp_path: Path, database: Path, command: str) -> None:
    """The shell's own pipe, under pipefail: the first line, nothing on stderr, status 0."""
    script = (f"set -o pipefail; {sys.executable} -m deskpulse.cli {command} "
              f"$DB_OPTION | head -1")
    env = {**_env(tmp_path),
           "DB_OPTION": "" if command == "boards" else f"--db {database}"}
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    _no_noise(done.stderr)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1


# -- a database that does not exist --------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["report"],
    ["report", "--format", "html", "-o", "{out}"],
    ["alerts"],
    ["devices"],
    ["devices", "show-key", "desk-1"],
    ["devices", "set", "desk-1", "--name", "Front"],
    ["devices", "remove", "desk-1"],
    ["devices", "rotate-key", "desk-1", "-o", "{out}", "--server", "http://10.0.0.2:8080"],
    ["sites"],
    ["sites", "show", "acme"],
    ["sites", "set", "acme", "--time-zone", "UTC"],
    ["sites", "assign", "acme/lyon", "desk-1"],
    ["sites", "remove", "acme"],
], ids=" ".join)
def test_reading_commands_refuse_a_missing_database(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    missing = tmp_path / "nowhere" / "deskpulse.db"
    out = tmp_path / "written"
    args = [a.replace("{out}", str(out)) for a in args]
    assert cli.main([*args, "--db", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"deskpulse: no database at {missing}: run `deskpulse sync` or "
                          "`deskpulse serve` first")
    assert "--db" in err
    assert not missing.parent.exists()
    assert not out.exists()


def test_the_default_database_is_not_created_by_a_report(tmp_path: Path) -> None:
    done = deskpulse(tmp_path, "report")
    assert done.returncode == 2
    default = tmp_path / "xdg" / "deskpulse" / "deskpulse.db"
    assert done.stderr.startswith(f"deskpulse: no database at {default}")
    assert not (tmp_path / "xdg").exists()


def test_registration_creates_the_database(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "new" / "deskpulse.db"
    assert cli.main(["devices", "add", "desk-1", "--server", "http://10.0.0.2:8080",
                     "-o", str(tmp_path / "desk-1.json"), "--db", str(path)]) == 0
    assert path.is_file()
    assert cli.main(["devices", "--db", str(path)]) == 0
    assert "desk-1" in capsys.readouterr().out


# -- files a command cannot write ----------------------------------------------------------


def _unwritable_places(tmp_path: Path) -> list[Path]:
    """Paths whose folder cannot be made (a missing folder is made, except by report)."""
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder\n")
    places = [a_file / "out"]
    if Path("/proc/self").is_dir():  # a file system nobody may create files in, even root
        places.append(Path("/proc/deskpulse-test/out"))
    return places


def _one_line_error(capsys: pytest.CaptureFixture[str], code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("deskpulse: ") and err.count("\n") == 1, err
    return err


def test_report_output_that_cannot_be_written(tmp_path: Path, database: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    for place in [tmp_path / "missing" / "out", *_unwritable_places(tmp_path)]:
        for fmt in ("table", "csv"):
            code = cli.main(["report", "--db", str(database), "--format", fmt,
                             "-o", str(place)])
            assert f"cannot write {place}" in _one_line_error(capsys, code)


def test_device_configs_that_cannot_be_written(tmp_path: Path, database: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    server = "http://10.0.0.2:8080"
    assert cli.main(["devices", "--db", str(database), "add", "desk-1", "--server", server,
                     "-o", str(tmp_path / "desk-1.json")]) == 0
    capsys.readouterr()
    for place in _unwritable_places(tmp_path):
        code = cli.main(["devices", "--db", str(database), "add", "desk-2", "--server",
                         server, "-o", str(place)])
        assert f"cannot write {place}" in _one_line_error(capsys, code)
        code = cli.main(["devices", "--db", str(database), "rotate-key", "desk-1",
                         "--server", server, "-o", str(place)])
        assert f"cannot write {place}" in _one_line_error(capsys, code)


def test_a_database_that_cannot_be_created(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    for place in _unwritable_places(tmp_path):
        code = cli.main(["devices", "add", "desk-1", "--server", "http://10.0.0.2:8080",
                         "-o", str(tmp_path / "desk-1.json"), "--db", str(place)])
        assert f"cannot open the database {place}" in _one_line_error(capsys, code)


def test_simulator_state_that_cannot_be_written(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "script.txt"
    script.write_text("exit\n")
    for place in _unwritable_places(tmp_path):
        code = cli.main(["sim", "--state", str(place), "--script", str(script)])
        assert "not writable" in _one_line_error(capsys, code)
    code = cli.main(["sim", "--state", str(tmp_path / "state"), "--script", str(script),
                     "--serial-link", str(tmp_path / "missing" / "tty")])
    assert "--serial-link" in _one_line_error(capsys, code)


# -- imports -------------------------------------------------------------------------------

HEAVY = ("numpy", "matplotlib", "fastapi", "uvicorn", "rich")

_LOADED = """
import json, sys
from deskpulse.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit_:
    code = exit_.code
heavy = sorted({name.partition(".")[0] for name in sys.modules} & set(HEAVY))
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


def _heavy_modules(tmp_path: Path, *args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{_LOADED}", *args], env=_env(tmp_path),
        capture_output=True, text=True, timeout=120, check=False)
    return json.loads(done.stderr.strip().splitlines()[-1])["heavy"]


@pytest.mark.parametrize("args", [
    ["--help"],
    ["--version"],
    ["boards"],
    ["devices", "--db", "{db}"],
    ["devices", "--db", "{db}", "show-key", "desk-1"],
    ["devices", "--db", "{new}", "add", "desk-9", "--server", "http://10.0.0.2:8080",
     "-o", "{out}"],
    ["sync", "--port", "/nonexistent/tty", "--db", "{new}"],
    ["report", "--db", "{missing}"],
    ["sites", "--db", "{db}"],
    ["sites", "--db", "{new}", "add", "acme"],
], ids=" ".join)
def test_commands_load_no_heavy_library_they_do_not_need(
        tmp_path: Path, database: Path, args: list[str]) -> None:
    names = {"{db}": str(database), "{new}": str(tmp_path / "new.db"),
             "{out}": str(tmp_path / "desk-9.json"),
             "{missing}": str(tmp_path / "missing.db")}
    assert _heavy_modules(tmp_path, *(names.get(a, a) for a in args)) == []


def test_a_report_loads_numpy(tmp_path: Path, database: Path) -> None:
    """The check above can see an import: the report needs numpy, and loads it."""
    assert "numpy" in _heavy_modules(tmp_path, "report", "--db", str(database))


def test_a_reading_command_opens_an_odd_path_and_never_creates_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    odd = tmp_path / "a b#c?d%20.db"  # characters a file: URI must escape
    open_store(odd).close()
    open_store(odd, create=False).close()
    # The file goes away between the check and the open: an error, not an empty database.
    gone = tmp_path / "gone.db"
    monkeypatch.setattr(Path, "exists", lambda self: True)
    with pytest.raises(DeskPulseError):
        open_store(gone, create=False)
    monkeypatch.undo()
    assert not gone.exists()
