"""`deskpulse deploy` (issue 15): the app of an installed kiosk updated over USB with real
mpremote, against the real firmware booted the ESP32 way on the unix port.

The kiosk: an image built by deskpulse.device.image (.mpy for this host's port) with a
config, customers' responses in its log (tests/firmware/mp/esp32_boot.py played them),
booted by tests/firmware/mp/esp32_repl_boot.py: the image mounted at "/", the image's own
main.py, and the REPL after it (`micropython -i`) as an ESP32 leaves it when main.py
returns, for mpremote. `Board` restarts that process whenever it ends, as a board comes
back from machine.reset() or a power cut, on the same image file; `link` always points
at its console.

Power cuts: at step boundaries of a real deploy (the board process killed), then the
board boots and a second deploy finishes; and at every flash operation of the switch
(tests/firmware/mp/deploy_powercut.py on kiosk.hal.simflash), with main.py's recovery
cut again. The kiosk always boots the old app or the new one, whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from littlefs import LittleFS

from conftest import FIRMWARE, FW_TESTS, REPO, micropython_binary
from deskpulse import cli
from deskpulse.device import deploy, image
from deskpulse.device.link import Link
from deskpulse.device.ports import open_port
from deskpulse.device.session import Hello, Session
from deskpulse.device.sync import sync
from deskpulse.errors import DeskPulseError
from deskpulse.sim.simulator import Simulator
from deskpulse.store import open_store

sys.path.insert(0, str(REPO / "tools"))
import bench_heap  # noqa: E402

OLD_MAIN = b"# The ESP32 entry point: no work at import time beyond starting the app.\n" \
           b"import kiosk.boot\n\nkiosk.boot.run()\n"
"""main.py of the kiosks flashed before deploy existed: no recovery of a switch."""
NEW_VERSION = "0.1.1-deploy-test"
CHANGED = {"/main.py", "/kiosk/__init__.mpy", "/kiosk/ticks.mpy"}
"""What differs between the old app and the new one (see firmwares())."""
SESSIONS = 3
HEAP = "1M"
ARCH = "x64"  # the .mpy arch of the PyPI unix port (sys.implementation._mpy says so)


# -- the two apps ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Apps:
    old: Path  # firmware folders
    new: Path
    old_files: dict[str, bytes]  # what the device gets, as compiled for this port
    new_files: dict[str, bytes]
    old_version: str


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Apps:
    """The shipped firmware with the old main.py stub, and a new app: another version, a
    changed module, this main.py."""
    base = tmp_path_factory.mktemp("apps")
    old = base / "old" / "firmware"
    new = base / "new" / "firmware"
    for folder in (old, new):
        shutil.copytree(FIRMWARE, folder, ignore=shutil.ignore_patterns("typings"))
    (old / "main.py").write_bytes(OLD_MAIN)
    init = new / "kiosk" / "__init__.py"
    version = deploy.firmware_version(FIRMWARE)
    init.write_text(init.read_text().replace(f'"{version}"', f'"{NEW_VERSION}"'))
    ticks = new / "kiosk" / "ticks.py"
    ticks.write_text(ticks.read_text() + "\n\nDEPLOYED_BY_TEST = 1\n")
    old_files = image.device_files("mpy", ARCH, firmware=old)
    new_files = image.device_files("mpy", ARCH, firmware=new)
    assert {p for p in new_files if new_files[p] != old_files.get(p)} == CHANGED
    return Apps(old, new, old_files, new_files, version)


# -- a simulated board ----------------------------------------------------------------------
class _ReplSimulator(Simulator):
    """The kiosk's process with -i: the REPL follows when main.py returns."""

    def command(self, micropython: Path) -> list[str]:
        cmd = super().command(micropython)
        return [cmd[0], "-i", *cmd[1:]]


class Board:
    """A simulated ESP32 on the image state/flash.img, restarted whenever its process
    ends: after machine.reset(), a failure's backoff or a power cut (power_cut())."""

    def __init__(self, state: Path, *, micropython: str | None = None) -> None:
        self.state = state
        self.link = state.parent / f"{state.name}.tty"
        self.micropython = micropython or micropython_binary()
        board = json.loads(bench_heap.BOARD.read_text())
        # The stand-in panel's refreshes (its BUSY time) take a few ms, not seconds.
        board["display"]["full_refresh_ms"] = 30
        board["display"]["partial_refresh_ms"] = 10
        self.standin = state.parent / f"{state.name}-standin.json"
        self.standin.write_text(json.dumps(board))
        self.boots = 0
        self._sim: Simulator | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Board:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        # Plugged in: its port exists before anyone opens it (the thread starts the kiosk).
        deadline = time.monotonic() + 30
        while not self.link.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            sim = _ReplSimulator(self.standin, self.state, heap=HEAP,
                                 micropython=self.micropython,
                                 firmware_entry=FW_TESTS / "esp32_repl_boot.py",
                                 serial_link=self.link)
            sim.start()
            self._sim = sim
            self.boots += 1
            while not self._stop.is_set() and sim.wait(0.1) is None:
                pass
            sim.stop()

    def power_cut(self) -> None:
        """The power fails: the process dies at once (what it wrote is on the flash),
        and the board starts again."""
        sim = self._sim
        assert sim is not None
        os.kill(sim.pid, signal.SIGKILL)
        sim.wait(10)

    def hello(self) -> Hello:
        return deploy.await_kiosk(str(self.link), 60)

    def console(self) -> str:
        return (self.state / "console.log").read_bytes().decode(errors="replace")


def read_image(path: Path) -> dict[str, bytes]:
    """Every file of a LittleFS image (littlefs-python, independently of the device)."""
    data = path.read_bytes()
    fs = LittleFS(block_size=4096, block_count=len(data) // 4096, mount=False)
    fs.context.buffer = bytearray(data)
    fs.mount()
    found: dict[str, bytes] = {}
    for root, _, names in fs.walk("/"):
        for name in names:
            where = root.rstrip("/") + "/" + name
            with fs.open(where, "rb") as f:
                found[where] = f.read()
    return found


def app_of(files: dict[str, bytes]) -> dict[str, bytes]:
    return {p: d for p, d in files.items() if p.startswith("/kiosk/")}


def log_of(files: dict[str, bytes]) -> dict[str, bytes]:
    return {p: d for p, d in files.items() if p.startswith("/log/")}


CONFIG = {"version": 1, "device_id": "deploy-1", "scale": 4}


def make_kiosk(tmp_path: Path, files: dict[str, bytes], *, customers: int = SESSIONS,
               extra: dict[str, bytes] | None = None) -> Path:
    """A kiosk's state folder: its flash image with files, the board file and a config,
    and `customers` responses stored by the real app."""
    state = tmp_path / "state"
    state.mkdir()
    all_files = dict(files)
    all_files["/board.json"] = bench_heap.BOARD.read_bytes()
    all_files["/config.json"] = json.dumps(CONFIG).encode()
    all_files.update(extra or {})
    board = json.loads(bench_heap.BOARD.read_text())
    (state / "flash.img").write_bytes(image.filesystem_image(board, all_files)[0])
    if customers:
        (state / "plan.json").write_text(json.dumps({
            "image": str(state / "flash.img"), "sessions": customers, "ntp_port": None,
            "config_version": None, "timeout_s": 1, "inspect": False}))
        with Simulator(bench_heap.BOARD, state, heap=HEAP, micropython=micropython_binary(),
                       firmware_entry=FW_TESTS / "esp32_boot.py") as sim:
            assert sim.wait(120) == 0, (state / "console.log").read_text(errors="replace")
        status = json.loads((state / "result.json").read_text())["status"]
        assert status["log"]["stored"] == customers
    return state


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file mpremote writes on the device, as it goes over the cable."""
    from mpremote.transport_serial import SerialTransport

    written: list[str] = []
    real = SerialTransport.fs_writefile

    def spy(self: Any, dest: str, data: bytes, *args: Any, **kwargs: Any) -> None:
        written.append(dest)
        real(self, dest, data, *args, **kwargs)

    monkeypatch.setattr(SerialTransport, "fs_writefile", spy)
    return written


def sync_all(board: Board, db: Path) -> list[dict[str, Any]]:
    sync(str(board.link), db)
    store = open_store(db)
    try:
        return store.responses_of(CONFIG["device_id"])
    finally:
        store.close()


# -- the whole deploy --------------------------------------------------------------------------
@pytest.mark.slow
def test_only_the_changed_files_go_and_every_response_stays(
        tmp_path: Path, apps: Apps, sent: list[str],
        capsys: pytest.CaptureFixture[str]) -> None:
    state = make_kiosk(tmp_path, apps.old_files)
    before = read_image(state / "flash.img")
    assert len(log_of(before)) >= 1
    with Board(state) as board:
        assert board.hello().firmware == apps.old_version
        code = cli.main(["deploy", "--port", str(board.link), "--firmware", str(apps.new)])
        out, err = capsys.readouterr()
        assert code == 0 and err == "", err
    # Only the three changed files crossed the cable, each once, into their staging place.
    assert sorted(sent) == ["/kiosk.new/__init__.mpy", "/kiosk.new/ticks.mpy", "/main.py.new"]
    lines = out.splitlines()
    app_files = len(apps.new_files)
    assert lines[0] == (f"deploy-1 on {board.link}: app {apps.old_version} -> {NEW_VERSION} "
                        f"(.mpy 6.3 x64): sent 3 of {app_files} files "
                        f"({sum(len(apps.new_files[p]) for p in CHANGED)} bytes), "
                        f"{len(app_of(apps.new_files)) - 2} unchanged copied on the kiosk")
    assert lines[-1].startswith(f"the kiosk restarted and runs app {NEW_VERSION} (")

    after = read_image(state / "flash.img")
    assert app_of(after) == app_of(apps.new_files)
    assert after["/main.py"] == apps.new_files["/main.py"] == (FIRMWARE / "main.py").read_bytes()
    assert after["/config.json"] == before["/config.json"]
    assert after["/board.json"] == before["/board.json"]
    assert log_of(after) == log_of(before)  # booting the new app appended nothing either
    assert not [p for p in after if p.startswith(("/kiosk.new", "/kiosk.old"))
                or p.endswith(".new")]

    with Board(state) as board:
        rows = sync_all(board, tmp_path / "host.db")
        assert [r["seq"] for r in rows] == list(range(1, SESSIONS + 1))
        assert [r["rating"] for r in rows] == [1 + i % 4 for i in range(SESSIONS)]
        # Up to date: the second deploy sends nothing and the kiosk runs the same app.
        sent.clear()
        report = deploy.deploy(str(board.link), firmware=apps.new)
        assert report.sent == {} and sent == [] and report.running == NEW_VERSION
        assert report.old_version == NEW_VERSION
    console = board.console()
    assert "Traceback" not in console and "failed" not in console


@pytest.mark.slow
def test_a_dry_run_prints_the_plan_and_writes_nothing(
        tmp_path: Path, apps: Apps, sent: list[str],
        capsys: pytest.CaptureFixture[str]) -> None:
    state = make_kiosk(tmp_path, apps.old_files, customers=0)
    before = read_image(state / "flash.img")
    with Board(state) as board:
        code = cli.main(["deploy", "--port", str(board.link), "--firmware", str(apps.new),
                         "--dry-run"])
        out, err = capsys.readouterr()
        assert code == 0 and err == "", err
        assert board.hello().firmware == apps.old_version
    assert sent == []
    lines = out.splitlines()
    assert " would send 3 of " in lines[0]
    assert sorted(line.split()[0] for line in lines[1:4]) == sorted(CHANGED)
    assert lines[-1] == f"dry run, nothing written: the kiosk restarted and runs " \
                        f"{apps.old_version}"
    after = read_image(state / "flash.img")
    assert app_of(after) == app_of(before) and after["/main.py"] == OLD_MAIN
    assert not [p for p in after if p.startswith(("/kiosk.new", "/kiosk.old"))]


# -- power cuts ------------------------------------------------------------------------------
CUTS = {
    # The step (its start) before which the power fails -> the app the kiosk boots then.
    "copy /kiosk/boot.mpy -> /kiosk.new/boot.mpy": "old",  # staging half done
    "send /kiosk.new/ticks.mpy": "old",  # before a changed file crosses the cable
    "rename /kiosk -> /kiosk.old": "old",  # main.py already the new one
    "rename /kiosk.new -> /kiosk": "new",  # no /kiosk at all: main.py finishes the switch
    "remove /kiosk.old": "new",  # switched, the old app still beside it
}


@pytest.mark.slow
@pytest.mark.parametrize("before_step", list(CUTS))
def test_a_power_cut_during_a_deploy_leaves_a_whole_app(
        tmp_path: Path, apps: Apps, before_step: str) -> None:
    """The board dies before a step of a real deploy; it boots the old or the new app,
    whole, with every response; a second deploy then finishes the update."""
    state = make_kiosk(tmp_path, apps.old_files)
    before = read_image(state / "flash.img")
    with Board(state) as board:
        assert board.hello().firmware == apps.old_version
        boots = board.boots

        def cut(index: int, step: deploy.Step) -> None:
            if step.describe().startswith(before_step):
                board.power_cut()

        with pytest.raises(DeskPulseError, match="lost the kiosk"):
            deploy.deploy(str(board.link), firmware=apps.new, on_step=cut)
        hello = board.hello()
        assert board.boots == boots + 1
        wanted = apps.old_files if CUTS[before_step] == "old" else apps.new_files
        assert hello.firmware == (apps.old_version if CUTS[before_step] == "old"
                                  else NEW_VERSION)
        assert hello.next_seq == SESSIONS + 1 and hello.first_seq == 1
    booted = read_image(state / "flash.img")
    assert app_of(booted) == app_of(wanted)
    assert booted["/config.json"] == before["/config.json"]
    assert log_of(booted) == log_of(before)
    if booted["/main.py"] != OLD_MAIN:  # the new main.py cleans up what staging left
        assert not [p for p in booted if p.startswith(("/kiosk.new/", "/kiosk.old/"))]

    with Board(state) as board:
        report = deploy.deploy(str(board.link), firmware=apps.new)
        assert report.running == NEW_VERSION
        assert len(sync_all(board, tmp_path / "host.db")) == SESSIONS
    finished = read_image(state / "flash.img")
    assert app_of(finished) == app_of(apps.new_files)
    assert finished["/main.py"] == apps.new_files["/main.py"]


@pytest.mark.slow
def test_a_switch_the_host_left_half_done_is_finished_by_the_next_deploy(
        tmp_path: Path, apps: Apps, monkeypatch: pytest.MonkeyPatch) -> None:
    """The host goes away between the two renames (no /kiosk on the device) and the kiosk
    stays in maintenance, its app stopped: the next deploy finds no app answering, goes
    in through the REPL, finishes the switch as main.py would, and restarts the kiosk."""
    state = make_kiosk(tmp_path, apps.old_files, customers=0)
    with Board(state) as board:
        def host_gone(index: int, step: deploy.Step) -> None:
            if step.describe() == "rename /kiosk.new -> /kiosk":
                raise KeyboardInterrupt

        with monkeypatch.context() as m:
            m.setattr(deploy.DeviceRepl, "restart", lambda self: None)
            with pytest.raises(KeyboardInterrupt):
                deploy.deploy(str(board.link), firmware=apps.new, on_step=host_gone)
        boots = board.boots
        report = deploy.deploy(str(board.link), firmware=apps.new)
        assert report.old_version is None and report.sent == {}
        assert report.notes == ["its app did not answer; updated from its REPL"]
        assert report.running == NEW_VERSION and board.boots == boots + 1
    files = read_image(state / "flash.img")
    assert app_of(files) == app_of(apps.new_files)
    assert not [p for p in files if p.startswith(("/kiosk.new/", "/kiosk.old/"))]


def _tree_digest(files: dict[str, bytes], folder: str = "/kiosk") -> str:
    """deploy_powercut.py's digest of a folder: its files' paths and SHA-256."""
    lines = sorted(f"{p[len(folder):]} {hashlib.sha256(d).hexdigest()}"
                   for p, d in files.items() if p.startswith(folder + "/"))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@pytest.mark.slow
def test_every_flash_operation_of_the_switch_can_lose_power(tmp_path: Path, apps: Apps) -> None:
    """The deploy's own steps and device code on MicroPython's LittleFS over a simulated
    NOR flash: the power fails at every program or erase from the last staged file to
    the end of the switch (and at a sample of the staging), the torn one half written;
    then main.py runs as at boot, or the deploy's SETTLE. /kiosk is always the old app or
    the new one, whole, main.py one of the two (the new one before the new app), the
    config and the log untouched; main.py's recovery survives losing power itself."""
    data_file = "/fonts/sans13.bin"
    new_files = dict(apps.new_files)
    new_files[data_file] = new_files[data_file] + b"\0"  # a data file changes too
    files = dict(apps.old_files)
    files["/config.json"] = json.dumps(CONFIG).encode()
    files["/log/seg/00000001"] = bytes(range(256)) * 12
    board = {"vfs": {"size": 192 * 4096, "block_size": 4096}}
    img = tmp_path / "before.img"
    img.write_bytes(image.filesystem_image(board, files)[0])
    folders = {p.rsplit("/", 1)[0] for p in files}
    listing = deploy.Listing({p: (len(d), hashlib.sha256(d).hexdigest())
                              for p, d in files.items()}, frozenset(folders | {"/kiosk"}))
    plan = deploy.plan_update(listing, new_files)
    steps = [["send", s.path, s.data.hex()] if s.kind == "send" else ["run", deploy.step_code(s)]
             for s in plan.steps]

    def run(cuts: list[int], recovery_cuts: list[int]) -> list[dict[str, Any]]:
        spec = tmp_path / "plan.json"
        spec.write_text(json.dumps({"image": str(img), "helpers": deploy.DEVICE_HELPERS,
                                    "settle": deploy.SETTLE, "steps": steps, "cuts": cuts,
                                    "recovery_cuts": recovery_cuts}))
        done = subprocess.run([micropython_binary(), "-X", "heapsize=16M",
                               str(FW_TESTS / "deploy_powercut.py"), str(spec)],
                              capture_output=True, text=True, timeout=600,
                              env=dict(os.environ, MICROPYPATH=f"{FIRMWARE}:.frozen"))
        assert done.returncode == 0, done.stderr[-3000:]
        return [json.loads(line[1:]) for line in done.stdout.splitlines()
                if line.startswith("@")]

    whole = run([-1], [])[0]
    marks = whole["marks"]
    assert whole["done"] == len(steps) == len(marks)
    switch_from = marks[len(plan.staging) - 2]  # from the last staged file on
    cuts = list(range(switch_from, marks[-1] + 1)) + list(range(0, switch_from, 37))
    assert len(cuts) > 60
    old, new = _tree_digest(apps.old_files), _tree_digest(new_files)
    old_main, new_main = (hashlib.sha256(f["/main.py"]).hexdigest()
                          for f in (apps.old_files, new_files))
    config = hashlib.sha256(files["/config.json"]).hexdigest()
    log = _tree_digest(files, "/log")
    seen = []
    for result in run(sorted(cuts), [1, 4, 12, 40]):
        outcomes = {"boot": result["boot"], "settle": result["settle"],
                    **{f"boot cut after {n}": o for n, o in result["recovery"].items()}}
        for how, found in outcomes.items():
            where = f"power cut at flash operation {result['cut']}, then {how}"
            assert found["kiosk"] in (old, new), where
            assert found["main"] in (old_main, new_main), where
            if found["kiosk"] == new:
                assert found["main"] == new_main, where
            assert (found["config"], found["log"]) == (config, log), where
            if found["main"] == new_main or how == "settle":
                assert not {"kiosk.new", "kiosk.old"} & set(found["root"]), where
        seen.append((result["cut"], result["boot"]["kiosk"] == new))
    # Old until the second rename, new from then on, and both seen.
    flips = [cut for (cut, is_new), (_, was_new) in zip(seen[1:], seen, strict=False)
             if is_new != was_new]
    assert len(flips) == 1, seen
    rename = next(i for i, s in enumerate(plan.steps) if s.describe() ==
                  "rename /kiosk.new -> /kiosk")
    assert marks[rename - 1] <= flips[0] <= marks[rename]


# -- refusals --------------------------------------------------------------------------------
def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = cli.main(["deploy", *args])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("deskpulse: ") and err.count("\n") == 1, err
    return err


def test_a_missing_port_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(capsys, "--port", str(tmp_path / "ttyUSB9"))
    assert "no serial port" in err and "plugged in" in err


def test_without_mpy_cross_nothing_is_touched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(image, "find_mpy_cross", lambda: None)
    err = refused(capsys, "--port", str(tmp_path / "ttyUSB9"))
    assert "needs mpy-cross" in err  # before the port is even looked at


@pytest.mark.slow
def test_a_busy_port_and_a_silent_one(tmp_path: Path, apps: Apps,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    master, slave = os.openpty()
    try:
        err = refused(capsys, "--port", os.ttyname(slave))
        assert "does not answer, neither its sync protocol nor a MicroPython REPL" in err
    finally:
        os.close(master)
        os.close(slave)
    state = make_kiosk(tmp_path, apps.old_files, customers=0)
    with Board(state) as board:
        board.hello()
        holder = open_port(str(board.link))
        try:
            err = refused(capsys, "--port", str(board.link))
            assert "is in use by another program" in err
        finally:
            holder.close()
        hello = Session(Link(open_port(str(board.link)))).hello()
        assert hello.firmware == apps.old_version  # still serving, never stopped


@pytest.mark.slow
def test_an_app_outside_kiosk_is_refused_and_the_kiosk_comes_back(
        tmp_path: Path, apps: Apps, capsys: pytest.CaptureFixture[str]) -> None:
    """An app that runs from /lib/kiosk (no /kiosk folder): refused after reading the
    filesystem, nothing written, and the kiosk restarted into its app."""
    files = {("/lib" + p if p.startswith("/kiosk/") else p): d
             for p, d in apps.old_files.items()}
    state = make_kiosk(tmp_path, files, customers=0)
    before = read_image(state / "flash.img")
    with Board(state) as board:
        board.hello()
        err = refused(capsys, "--port", str(board.link), "--firmware", str(apps.new))
        assert "has no /kiosk folder on its filesystem (its app runs from " \
               "/lib/kiosk/__init__.mpy)" in err
        assert board.hello().firmware == apps.old_version
    after = read_image(state / "flash.img")
    assert {p: d for p, d in after.items() if p.startswith(("/lib/", "/main"))} == \
           {p: d for p, d in before.items() if p.startswith(("/lib/", "/main"))}


@pytest.mark.slow
def test_a_frozen_app_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The app frozen into the firmware (the 32-bit port built with firmware/manifest.py,
    as a custom ESP32 build would have it): no /kiosk, refused, the kiosk comes back."""
    try:
        binary = bench_heap.build_port32(True)
    except bench_heap.BuildError as error:
        pytest.skip(f"no 32-bit MicroPython port with the app frozen: {error}")
    state = make_kiosk(tmp_path, image.device_files("frozen"), customers=0)
    with Board(state, micropython=str(binary)) as board:
        board.hello()
        err = refused(capsys, "--port", str(board.link))
        assert "frozen into its MicroPython firmware" in err and "flashing" in err
        assert board.hello().firmware == deploy.firmware_version()
    assert "/kiosk" not in {p.rsplit("/", 1)[0] for p in read_image(state / "flash.img")}


@pytest.mark.slow
def test_too_little_free_space_is_refused_before_anything_is_written(
        tmp_path: Path, apps: Apps, capsys: pytest.CaptureFixture[str]) -> None:
    # About 40 blocks left, as on a kiosk full of responses: staging needs about 70.
    filler = {"/filler.bin": bytes(1550 * 1024)}
    state = make_kiosk(tmp_path, apps.old_files, customers=0, extra=filler)
    before = read_image(state / "flash.img")
    with Board(state) as board:
        err = refused(capsys, "--port", str(board.link), "--firmware", str(apps.new))
        assert "KB free and staging the new app needs" in err and "deskpulse sync" in err
        assert board.hello().firmware == apps.old_version
    after = read_image(state / "flash.img")
    assert app_of(after) == app_of(before) and after["/main.py"] == before["/main.py"]
    assert not [p for p in after if p.endswith(".new") or p.startswith("/kiosk.")]


# -- the plan, without a device ---------------------------------------------------------------
def listing_of(files: dict[str, bytes]) -> deploy.Listing:
    folders = {"/".join(p.split("/")[:i]) for p in files for i in range(2, p.count("/") + 1)}
    return deploy.Listing({p: (len(d), hashlib.sha256(d).hexdigest()) for p, d in files.items()},
                          frozenset(folders))


def kinds(steps: list[deploy.Step]) -> list[str]:
    return [s.describe() for s in steps]


def test_the_plan_of_an_app_that_did_not_change_is_empty() -> None:
    files = {"/main.py": b"m", "/kiosk/__init__.mpy": b"a", "/fonts/f.bin": b"f"}
    plan = deploy.plan_update(listing_of(files), files)
    assert plan.steps == [] and plan.sent == {}


def test_the_plan_stages_the_whole_folder_and_sends_only_the_changes() -> None:
    device = {"/main.py": b"m", "/kiosk/__init__.mpy": b"a", "/kiosk/ui/x.mpy": b"x",
              "/kiosk/stale.py": b"s", "/fonts/f.bin": b"f", "/config.json": b"{}"}
    new = {"/main.py": b"m", "/kiosk/__init__.mpy": b"A", "/kiosk/ui/x.mpy": b"x",
           "/fonts/f.bin": b"F"}
    plan = deploy.plan_update(listing_of(device), new)
    assert kinds(plan.staging) == [
        "send /fonts/f.bin.new (1 bytes)", "mkdir /kiosk.new", "mkdir /kiosk.new/ui",
        "send /kiosk.new/__init__.mpy (1 bytes)", "copy /kiosk/ui/x.mpy -> /kiosk.new/ui/x.mpy"]
    assert kinds(plan.switch) == [
        "rename /fonts/f.bin.new -> /fonts/f.bin", "rename /kiosk -> /kiosk.old",
        "rename /kiosk.new -> /kiosk", "remove /kiosk.old"]
    assert plan.sent == {"/fonts/f.bin": 1, "/kiosk/__init__.mpy": 1} and plan.copied == 1
    assert set(plan.staged) == {"/fonts/f.bin.new", "/kiosk.new/__init__.mpy",
                                "/kiosk.new/ui/x.mpy"}
    # A stale file alone (not in the new app) still switches the folder: it goes.
    del device["/kiosk/__init__.mpy"]
    device["/kiosk/__init__.mpy"] = b"A"
    device["/fonts/f.bin"] = b"F"
    plan = deploy.plan_update(listing_of(device), new)
    assert plan.sent == {} and plan.copied == 2 and "rename /kiosk.new -> /kiosk" in \
        kinds(plan.switch)


def test_main_py_goes_first_and_leftovers_are_cleared() -> None:
    device = {"/main.py": b"old", "/main.py.new": b"half", "/kiosk/a.mpy": b"a",
              "/kiosk.new/a.mpy": b"?"}
    new = {"/main.py": b"new", "/kiosk/a.mpy": b"b"}
    plan = deploy.plan_update(listing_of(device), new)
    assert kinds(plan.staging)[:2] == ["remove /kiosk.new", "remove /main.py.new"]
    assert kinds(plan.switch)[0] == "rename /main.py.new -> /main.py"


def test_a_missing_data_folder_is_made_once() -> None:
    device = {"/main.py": b"m", "/kiosk/a.mpy": b"a"}
    new = {**device, "/fonts/big/a.bin": b"1", "/fonts/big/b.bin": b"2"}
    plan = deploy.plan_update(listing_of(device), new)
    assert kinds(plan.staging) == ["mkdir /fonts", "mkdir /fonts/big",
                                   "send /fonts/big/a.bin.new (1 bytes)",
                                   "send /fonts/big/b.bin.new (1 bytes)"]


@pytest.mark.parametrize("path", ["/config.json", "/log/x", "/board.json", "/kiosk.new/a"])
def test_a_plan_never_writes_what_the_kiosk_keeps(path: str) -> None:
    with pytest.raises(DeskPulseError, match="which a deploy leaves alone"):
        deploy.plan_update(listing_of({}), {"/kiosk/a.mpy": b"a", path: b"x"})


def test_the_devices_mpy_format_and_the_apps_version() -> None:
    assert deploy.mpy_of_device(0x2B06) == ("6.3", "xtensawin")  # an ESP32
    assert deploy.mpy_of_device(2822) == ("6.3", "x64")  # this host's unix port
    assert deploy.mpy_of_device(6) == ("6", None)
    text = (FIRMWARE / "kiosk" / "__init__.py").read_text()
    assert f'FIRMWARE_VERSION = "{deploy.firmware_version()}"' in text


def test_the_command_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "deploy" in capsys.readouterr().out

