"""Benchmark installing kiosks (issue 15): flashing one kiosk, provisioning four at once
against one after another, and `deploy` of a one-file change against copying the whole
app with plain mpremote (the anchor), all in one run.

Run from the repository root:  .venv/bin/python tools/bench_install.py [--boards N] [--json]

- **flash**: `deskpulse.device.flash.flash_kiosk` (real esptool) writes the synthetic
  MicroPython of tests/fake_firmware.py and the kiosk's filesystem image into the ESP32 ROM
  loader stand-in of tests/rom_loader.py, paced: every byte takes its time at the session's
  baud (115200 until esptool switches to 460800). The stand-in counts every byte it paces,
  both directions: the bytes on the wire.
- **provision**: `deskpulse.device.provision.provision` on N paced stand-ins (default 4)
  in one call (its boards in parallel), against the same N boards, fresh stand-ins, one
  call each, one after another. Each board's check after the flash talks to a simulated
  ESP32 booted from the vfs partition the stand-in holds, as tests/device/test_provision.py
  does.
- **deploy**: a simulated kiosk (the real firmware as .mpy for this host, booted the ESP32
  way with the REPL after main.py: tests/firmware/mp/esp32_repl_boot.py) gets an app that
  differs in one module (kiosk/ticks.py) by `deskpulse.device.deploy.deploy`; the anchor,
  the same kiosk afresh, is stopped for maintenance and gets the whole new app with
  `mpremote connect PORT resume cp -r kiosk main.py :` (run in this process). Bytes are
  those pyserial writes to the port (host to kiosk), the kiosk's console being a pty.

Every figure is one run, on whatever else the machine is doing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import serial

from deskpulse.device import deploy, flash, image, provision
from deskpulse.device.micropython import default_micropython
from deskpulse.sim.simulator import Simulator

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tools"))
import bench_heap  # noqa: E402

from fake_firmware import FakeFirmware  # noqa: E402
from rom_loader import RomLoaderStandIn  # noqa: E402

FIRMWARE = REPO / "firmware"
BOARD = bench_heap.BOARD
ESP32_BOOT = REPO / "tests" / "firmware" / "mp" / "esp32_boot.py"
ESP32_REPL_BOOT = REPO / "tests" / "firmware" / "mp" / "esp32_repl_boot.py"
HOST_ARCH = "x64"  # the simulated kiosks run .mpy files on this machine's CPU
BOOT_TIMEOUT = 60.0


class BenchError(Exception):
    pass


# -- counting ----------------------------------------------------------------------------
class CountingStandIn(RomLoaderStandIn):
    """The paced stand-in, counting each byte it paces (both directions)."""

    def __init__(self, **kwargs: Any) -> None:
        self.wire_bytes = 0
        super().__init__(paced=True, **kwargs)

    def _pace(self, session: Any, count: int) -> None:
        self.wire_bytes += count
        super()._pace(session, count)


class PortWrites:
    """Bytes every pyserial port of this process writes, from the last reset()."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self._real = serial.Serial.write

    def __enter__(self) -> PortWrites:
        real = self._real

        def counting(port: serial.Serial, data: Any) -> int | None:
            with self._lock:
                self.count += len(data)
            return real(port, data)

        serial.Serial.write = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        serial.Serial.write = self._real  # type: ignore[method-assign]

    def reset(self) -> None:
        with self._lock:
            self.count = 0


# -- (1) flash -------------------------------------------------------------------------------
def bench_flash(work: Path, firmware: Path) -> dict[str, Any]:
    config = work / "flash-config.json"
    config.write_text(json.dumps(bench_heap.base_config(None)))
    built = image.build_image(BOARD, config)  # .mpy for the ESP32, as a technician flashes
    with CountingStandIn() as rom:
        done = flash.flash_kiosk(rom.url, BOARD, firmware, built=built)
        flashed = rom.flash
        wire = rom.wire_bytes
    fw_data = firmware.read_bytes()
    if flashed[done.firmware.offset:done.firmware.offset + len(fw_data)] != fw_data or \
            flashed[built.offset:built.offset + len(built.data)] != built.data:
        raise BenchError("the stand-in's flash does not hold what was written")
    return {"seconds": done.seconds, "wire_bytes": wire, "firmware_bytes": len(fw_data),
            "filesystem_bytes": len(built.data), "payload_bytes": len(fw_data) + len(built.data)}


# -- (2) provision -------------------------------------------------------------------------
class KioskBoots:
    """console_for: after its flash, each board boots its vfs partition as a simulated
    ESP32 (one customer taps, then it waits for a host) and answers on that console."""

    def __init__(self, folder: Path, roms: dict[str, RomLoaderStandIn], vfs: tuple[int, int]):
        self.folder = folder
        self.roms = roms
        self.vfs = vfs
        self.sims: list[Simulator] = []
        self._lock = threading.Lock()

    def __call__(self, port: str) -> str:
        offset, size = self.vfs
        state = self.folder / f"kiosk-{port.rsplit(':', 1)[-1]}"
        state.mkdir()
        (state / "flash.img").write_bytes(self.roms[port].flash[offset:offset + size])
        (state / "plan.json").write_text(json.dumps({
            "image": str(state / "flash.img"), "sessions": 1, "ntp_port": None,
            "config_version": None, "timeout_s": 120, "inspect": False}))
        sim = Simulator(BOARD, state, heap="1M", firmware_entry=ESP32_BOOT)
        with self._lock:
            self.sims.append(sim)
        sim.start()
        return sim.console_path

    def close(self) -> None:
        for sim in self.sims:
            sim.stop()


def _provision(work: Path, options: provision.Options, groups: list[list[str]],
               vfs: tuple[int, int]) -> tuple[float, list[float]]:
    """Provision each group of boards in one call, the groups one after another."""
    macs = [m for group in groups for m in group]
    roms = [CountingStandIn(mac=m) for m in macs]
    by_mac = dict(zip(macs, roms, strict=True))
    boots = KioskBoots(work, {r.url: r for r in roms}, vfs)
    per_board: list[float] = []
    started = time.monotonic()
    try:
        for group in groups:
            run = provision.provision([by_mac[m].url for m in group], options,
                                      console_for=boots)
            failed = [r for r in run.results if not r.ok]
            if failed:
                raise BenchError(f"provisioning failed on {failed[0].port}: {failed[0].error}")
            per_board.extend(r.seconds for r in run.results)
    finally:
        seconds = time.monotonic() - started
        boots.close()
        for rom in roms:
            rom.close()
    return seconds, per_board


def bench_provision(work: Path, firmware: Path, boards: int) -> dict[str, Any]:
    template = work / "store.json"
    template.write_text(json.dumps({"scale": 3}))
    vfs = next((p.offset, p.size) for p in FakeFirmware().partitions if p.name == "vfs")
    figures: dict[str, Any] = {"boards": boards}
    for label, first in (("parallel", 0x10), ("serial", 0x20)):
        folder = work / f"provision-{label}"
        folder.mkdir()
        options = provision.Options(board=BOARD, firmware=firmware, template=template,
                                    db=folder / "host.db", arch=HOST_ARCH)
        macs = [f"24:0a:c4:00:01:{first + i:02x}" for i in range(boards)]
        groups = [macs] if label == "parallel" else [[m] for m in macs]
        seconds, per_board = _provision(folder, options, groups, vfs)
        figures[label] = {"seconds": seconds, "per_board_seconds": per_board}
    figures["serial_over_parallel"] = figures["serial"]["seconds"] / figures["parallel"]["seconds"]
    return figures


# -- (3) deploy ------------------------------------------------------------------------------
class _ReplSimulator(Simulator):
    """The kiosk's process with -i: the REPL follows when main.py returns."""

    def command(self, micropython: Path) -> list[str]:
        cmd = super().command(micropython)
        return [cmd[0], "-i", *cmd[1:]]


@contextlib.contextmanager
def kiosk_board(state: Path, standin: Path, micropython: str) -> Iterator[Path]:
    """A simulated kiosk on state/flash.img, booted again whenever its process ends (a
    deploy resets it); yields the path of its console."""
    link = state.parent / f"{state.name}.tty"
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            sim = _ReplSimulator(standin, state, heap="1M", micropython=micropython,
                                 firmware_entry=ESP32_REPL_BOOT, serial_link=link)
            sim.start()
            while not stop.is_set() and sim.wait(0.1) is None:
                pass
            sim.stop()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        deploy.await_kiosk(str(link), BOOT_TIMEOUT)
        yield link
    finally:
        stop.set()
        thread.join(30)


def _apps(work: Path) -> tuple[Path, Path]:
    old = work / "old" / "firmware"
    new = work / "new" / "firmware"
    for folder in (old, new):
        shutil.copytree(FIRMWARE, folder, ignore=shutil.ignore_patterns("typings"))
    ticks = new / "kiosk" / "ticks.py"
    ticks.write_text(ticks.read_text() + "\n\nDEPLOYED_BY_BENCH = 1\n")
    return old, new


def _mpremote(args: list[str]) -> None:
    from mpremote.main import main as mpremote_main

    saved = sys.argv
    sys.argv = ["mpremote", *args]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = mpremote_main()
    except SystemExit as exit_:
        code = exit_.code
    finally:
        sys.argv = saved
    if code not in (0, None):
        raise BenchError(f"mpremote {' '.join(args)} ended with {code}: "
                         f"{out.getvalue().strip()[-300:]}")


def bench_deploy(work: Path) -> dict[str, Any]:
    old, new = _apps(work)
    old_files = image.device_files("mpy", HOST_ARCH, firmware=old)
    new_files = image.device_files("mpy", HOST_ARCH, firmware=new)
    changed = sorted(p for p in new_files if new_files[p] != old_files.get(p))
    board = json.loads(BOARD.read_text())
    # The stand-in panel's refreshes (its BUSY time) take a few ms, not seconds.
    standin = json.loads(BOARD.read_text())
    standin["display"]["full_refresh_ms"] = 30
    standin["display"]["partial_refresh_ms"] = 10
    standin_path = work / "standin.json"
    standin_path.write_text(json.dumps(standin))
    files = dict(old_files)
    files["/board.json"] = BOARD.read_bytes()
    files["/config.json"] = json.dumps(bench_heap.base_config(None)).encode()
    flash_image = image.filesystem_image(board, files)[0]
    micropython = str(default_micropython())
    app_files = {p: d for p, d in new_files.items() if p.startswith("/kiosk/") or p == "/main.py"}
    figures: dict[str, Any] = {"changed_files": changed, "app_files": len(app_files),
                               "app_bytes": sum(len(d) for d in app_files.values())}
    with PortWrites() as writes:
        state = work / "kiosk-deploy"
        state.mkdir()
        (state / "flash.img").write_bytes(flash_image)
        with kiosk_board(state, standin_path, micropython) as link:
            writes.reset()
            started = time.monotonic()
            report = deploy.deploy(str(link), firmware=new)
            figures["deploy"] = {"seconds": time.monotonic() - started,
                                 "port_bytes": writes.count,
                                 "file_bytes": report.bytes_sent,
                                 "files_sent": len(report.sent)}

        tree = work / "app-tree"
        for path, data in app_files.items():
            target = tree / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        # mpremote's cp skips a file whose sha256 the device already has; --force (-f)
        # copies every file, the whole app.
        for label, flags in (("mpremote", "-r"), ("mpremote_force", "-rf")):
            state = work / f"kiosk-{label}"
            state.mkdir()
            (state / "flash.img").write_bytes(flash_image)
            with kiosk_board(state, standin_path, micropython) as link:
                # The app stops for maintenance first (plain mpremote needs the REPL): not
                # counted, as the anchor is the copy itself.
                if deploy._stop_app(str(link), 600) is None:  # noqa: SLF001
                    raise BenchError("the simulated kiosk did not stop for maintenance")
                writes.reset()
                started = time.monotonic()
                _mpremote(["connect", str(link), "resume", "cp", flags,
                           str(tree / "kiosk"), str(tree / "main.py"), ":"])
                figures[label] = {"seconds": time.monotonic() - started,
                                  "port_bytes": writes.count}
    for label in ("mpremote", "mpremote_force"):
        row = figures[label]
        row["bytes_ratio"] = row["port_bytes"] / figures["deploy"]["port_bytes"]
        row["seconds_ratio"] = row["seconds"] / figures["deploy"]["seconds"]
    return figures


# -- the run -----------------------------------------------------------------------------
def run_benchmark(boards: int = 4) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-install-") as folder:
        work = Path(folder)
        firmware = FakeFirmware().write(work / "ESP32_GENERIC-v1.24.1.bin")
        quiet = io.StringIO()
        with contextlib.redirect_stdout(quiet):
            result = {"flash": bench_flash(work, firmware),
                      "provision": bench_provision(work, firmware, boards),
                      "deploy": bench_deploy(work)}
    return result


def report(result: dict[str, Any]) -> str:
    fl, pr, de = result["flash"], result["provision"], result["deploy"]
    parallel = ", ".join(f"{s:.1f}" for s in pr["parallel"]["per_board_seconds"])
    serial_each = ", ".join(f"{s:.1f}" for s in pr["serial"]["per_board_seconds"])
    lines = [
        f"flash one kiosk, paced stand-in at 460800 baud: {fl['seconds']:.1f} s, "
        f"{fl['wire_bytes']} bytes on the wire (firmware {fl['firmware_bytes']} + "
        f"filesystem {fl['filesystem_bytes']} bytes written)",
        f"provision {pr['boards']} kiosks: parallel {pr['parallel']['seconds']:.1f} s, "
        f"one after another {pr['serial']['seconds']:.1f} s, "
        f"ratio {pr['serial_over_parallel']:.2f}",
        f"  per board, parallel: {parallel} s; one after another: {serial_each} s",
        f"deploy of a one-file change ({', '.join(de['changed_files'])}) vs mpremote cp -r "
        f"of the whole app ({de['app_files']} files, {de['app_bytes']} bytes):",
        f"{'':<16}{'seconds':>9}{'port bytes':>12}{'x deploy':>10}{'s x deploy':>12}",
    ]
    dep = de["deploy"]
    lines.append(f"{'deploy':<16}{dep['seconds']:>9.1f}{dep['port_bytes']:>12}"
                 f"  ({dep['files_sent']} file, {dep['file_bytes']} bytes)")
    for label, name in (("mpremote", "cp -r"), ("mpremote_force", "cp -rf")):
        row = de[label]
        lines.append(f"{name:<16}{row['seconds']:>9.1f}{row['port_bytes']:>12}"
                     f"{row['bytes_ratio']:>10.1f}{row['seconds_ratio']:>12.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=4, help="kiosks provisioned")
    parser.add_argument("--json", action="store_true", help="print raw figures as JSON")
    args = parser.parse_args(argv)
    if args.boards < 1:
        raise BenchError("--boards must be at least 1")
    started = time.monotonic()
    result = run_benchmark(args.boards)
    result["total_seconds"] = time.monotonic() - started
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python " \
                        f"{platform.python_version()}"
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(report(result))
        print(f"(whole run {result['total_seconds']:.0f} s on {result['machine']})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench_install: {exc}", file=sys.stderr)
        sys.exit(1)
