"""`deskpulse deploy` (issue 15): update the app on an installed kiosk over USB.

1. HELLO over the sync protocol (which kiosk, which app), then MAINT: the app stops
   between customers, not counted as a crash; the REPL is free, the watchdog fed, and
   the board restarts by itself once the maintenance time is over.
2. mpremote's raw REPL: the device's MicroPython (its .mpy format and native arch), its
   free space, and the SHA-256 of every file of the app (/kiosk/**, /main.py, the data
   files firmware/manifest.py's DEVICE_DATA places).
3. Staging: the new app (deskpulse.device.image.device_files, compiled for that arch)
   goes to /kiosk.new, files that did not change copied on the device from /kiosk and
   only the others sent; a changed /main.py or data file goes beside itself as NAME.new.
   Every staged file's hash is then checked on the device.
4. The switch, by renames: NAME.new -> NAME, /kiosk -> /kiosk.old, /kiosk.new -> /kiosk,
   then /kiosk.old is removed. main.py finishes an interrupted switch at boot, with the
   rules of `SETTLE` here, so a power cut anywhere leaves the old app or the new one,
   whole. main.py goes first: the recovery must be in place before /kiosk is renamed
   (the stub of older kiosks has none), and its one call into the app,
   `kiosk.boot.run()`, is the same for every app version.
5. The board restarts (as the app's own reset, so no crash is counted) and the deploy
   waits for the kiosk to answer HELLO with the new app's FIRMWARE_VERSION.

Nothing else on the device is written: not the response log, /config.json or
/board.json. Any failure after MAINT restarts the kiosk into whichever app it has.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import io
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from deskpulse import resources
from deskpulse.device import image
from deskpulse.device.link import Link, SyncError
from deskpulse.device.ports import open_port, resolve_port
from deskpulse.device.session import Hello, Session, parse_hello
from deskpulse.errors import DeskPulseError
from deskpulse.protocol.wire import MAX_MAINTENANCE_S, PROTOCOL

APP = "/kiosk"
STAGED = "/kiosk.new"
RETIRED = "/kiosk.old"
MAIN = "/main.py"
NEW_SUFFIX = ".new"
KEPT = ("/config.json", "/board.json", "/log", "/boot", "/failures", "/last_failure")
"""What the kiosk itself keeps on its filesystem: a deploy never writes there."""

BOOT_TIMEOUT = 90.0
"""Seconds the kiosk may take after its restart to answer HELLO again: MicroPython's
start, the app's imports and a full e-paper refresh (4 s on the slowest panel)."""
PROMPT_TIMEOUT = 30.0
"""Seconds from MAINT's answer to the REPL's prompt: the app ends its tasks and draws
"Maintenance" on the panel with a full refresh first."""
BUSY_WAIT = 90.0
"""Seconds to wait for a customer at the kiosk to finish before giving up."""
UART_BYTES_PER_S = 11520  # 115200 baud
DEVICE_TIMEOUT = 60.0
"""Seconds one command on the device may run without printing (removing a folder)."""
FREE_BLOCKS_KEPT = 8
"""Blocks left free after staging: the filesystem's own metadata needs room to move."""

StepKind = Literal["remove", "mkdir", "copy", "send", "rename"]


@dataclass(frozen=True, slots=True)
class Step:
    """One file operation on the device. remove takes a file or a whole folder."""

    kind: StepKind
    path: str
    source: str = ""  # copy and rename: from where on the device
    data: bytes = b""  # send: what goes over the cable

    def describe(self) -> str:
        if self.kind in ("copy", "rename"):
            return f"{self.kind} {self.source} -> {self.path}"
        if self.kind == "send":
            return f"send {self.path} ({len(self.data)} bytes)"
        return f"{self.kind} {self.path}"


@dataclass(frozen=True, slots=True)
class Listing:
    """The device's files (path -> (size, sha256 hex)) and folders under the paths asked."""

    files: dict[str, tuple[int, str]]
    folders: frozenset[str]

    def exists(self, path: str) -> bool:
        return path in self.files or path in self.folders


@dataclass
class Plan:
    """What a deploy does: staging (then the hash check of `staged`), then the switch."""

    staging: list[Step]
    switch: list[Step]
    staged: dict[str, bytes]  # path on the device -> content, checked before the switch
    sent: dict[str, int]  # path in the app -> bytes sent
    copied: int  # app files copied on the device
    blocks_needed: int  # filesystem blocks the staging takes at most

    @property
    def steps(self) -> list[Step]:
        return self.staging + self.switch

    @property
    def bytes_sent(self) -> int:
        return sum(self.sent.values())


@dataclass
class DeployReport:
    port: str
    device_id: str
    old_version: str | None  # FIRMWARE_VERSION the kiosk ran (None: it did not answer)
    new_version: str
    mpy: str  # the device's .mpy format and arch, "6.3 xtensawin"
    files: int  # files of the new app
    sent: dict[str, int]
    copied: int
    dry_run: bool
    seconds: float = 0.0
    running: str | None = None  # FIRMWARE_VERSION the kiosk answered with afterwards
    notes: list[str] = field(default_factory=list)

    @property
    def bytes_sent(self) -> int:
        return sum(self.sent.values())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def firmware_version(firmware: Path | None = None) -> str:
    """FIRMWARE_VERSION of kiosk/__init__.py: what the kiosk reports in HELLO."""
    path = (firmware or resources.firmware_dir()) / "kiosk" / "__init__.py"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    except (OSError, SyntaxError, UnicodeError) as exc:
        raise DeskPulseError(f"cannot read the app's version from {path}: {exc}") from exc
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "FIRMWARE_VERSION" for t in node.targets) \
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return node.value.value
    raise DeskPulseError(f"{path} sets no FIRMWARE_VERSION string")


# -- the plan (no device needed) -------------------------------------------------------------
def _kept(path: str) -> bool:
    return any(path == kept or path.startswith(kept + "/") for kept in KEPT)


def _folders(paths: list[str], root: str) -> list[str]:
    """Every folder below root that paths (all under root) need, parents first."""
    found = {root}
    for path in paths:
        parts = path[len(root) + 1:].split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            found.add(root + "/" + "/".join(parts[:depth]))
    return sorted(found, key=lambda f: (f.count("/"), f))


def _blocks(size: int, block_size: int) -> int:
    return max(1, math.ceil(size / block_size))


def plan_update(device: Listing, new_files: Mapping[str, bytes],
                block_size: int = 4096) -> Plan:
    """The steps that turn the app on the device (listed under /kiosk, /main.py and the
    data paths) into new_files (path on the device -> content): /kiosk/** the app,
    /main.py, anything else a data file."""
    for path in new_files:
        if _kept(path) or not path.startswith("/") or path.endswith(NEW_SUFFIX) or \
                path.startswith((STAGED + "/", RETIRED + "/")):
            raise DeskPulseError(f"the app would write {path}, which a deploy leaves alone")
    app = sorted(p for p in new_files if p.startswith(APP + "/"))
    others = sorted(p for p in new_files if not p.startswith(APP + "/"))
    wanted = {p: sha256(new_files[p]) for p in new_files}
    on_device_app = {p: entry[1] for p, entry in device.files.items()
                     if p.startswith(APP + "/")}
    staging: list[Step] = []
    switch: list[Step] = []
    staged: dict[str, bytes] = {}
    sent: dict[str, int] = {}
    copied = 0
    blocks = 0
    # Leftovers of an earlier deploy that stopped before its switch.
    for leftover in [STAGED, RETIRED] + [p + NEW_SUFFIX for p in others]:
        if device.exists(leftover):
            staging.append(Step("remove", leftover))
    # main.py, then the data: replaced one by one, staged beside themselves.
    made: set[str] = set()
    for path in others:
        if device.files.get(path, (0, ""))[1] == wanted[path]:
            continue
        parts = path.split("/")[1:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/" + "/".join(parts[:depth])
            if not device.exists(folder) and folder not in made:
                staging.append(Step("mkdir", folder))
                made.add(folder)
        staging.append(Step("send", path + NEW_SUFFIX, data=new_files[path]))
        staged[path + NEW_SUFFIX] = new_files[path]
        sent[path] = len(new_files[path])
        blocks += _blocks(len(new_files[path]), block_size)
        switch.append(Step("rename", path, source=path + NEW_SUFFIX))
    # The app folder, whole, when any file in it differs (or is there too many).
    if on_device_app != {p: wanted[p] for p in app}:
        folders = _folders([STAGED + p[len(APP):] for p in app], STAGED)
        staging += [Step("mkdir", f) for f in folders]
        blocks += 2 * len(folders)  # a LittleFS folder is a metadata pair
        for path in app:
            target = STAGED + path[len(APP):]
            if on_device_app.get(path) == wanted[path]:
                staging.append(Step("copy", target, source=path))
                copied += 1
            else:
                staging.append(Step("send", target, data=new_files[path]))
                sent[path] = len(new_files[path])
            staged[target] = new_files[path]
            blocks += _blocks(len(new_files[path]), block_size)
        if device.exists(APP):
            switch.append(Step("rename", RETIRED, source=APP))
        switch.append(Step("rename", APP, source=STAGED))
        if device.exists(APP):
            switch.append(Step("remove", RETIRED))
    # main.py's rename before the app's: see the module's docstring.
    switch.sort(key=lambda s: (s.path != MAIN,))
    return Plan(staging, switch, staged, sent, copied, blocks)


# -- the device's side (run in its REPL, names prefixed: they live in its globals) ------------
DEVICE_HELPERS = """
import os, sys, hashlib, binascii
_dp_buf = bytearray(1024)
_dp_mv = memoryview(_dp_buf)
def _dp_kind(p):
    try:
        return "D" if os.stat(p)[0] & 0x4000 else "F"
    except OSError:
        return ""
def _dp_show(p):
    k = _dp_kind(p)
    if k == "D":
        print("D " + p)
        for n in [e[0] for e in os.ilistdir(p)]:
            _dp_show(p + "/" + n)
    elif k == "F":
        h = hashlib.sha256()
        s = 0
        with open(p, "rb") as f:
            while True:
                n = f.readinto(_dp_buf)
                if not n:
                    break
                h.update(_dp_mv[:n])
                s += n
        print("F %d %s %s" % (s, binascii.hexlify(h.digest()).decode(), p))
def _dp_copy(a, b):
    with open(a, "rb") as f:
        with open(b, "wb") as g:
            while True:
                n = f.readinto(_dp_buf)
                if not n:
                    break
                g.write(_dp_mv[:n])
def _dp_remove(p):
    k = _dp_kind(p)
    if k == "D":
        for n in [e[0] for e in os.ilistdir(p)]:
            _dp_remove(p + "/" + n)
        os.rmdir(p)
    elif k == "F":
        os.remove(p)
"""

# firmware/main.py's rules, for a switch that stopped while the kiosk stayed in
# maintenance (the host or the cable went away): the next deploy finishes it first.
SETTLE = """
if not _dp_kind("/kiosk"):
    for _dp_s in ("/kiosk.new", "/kiosk.old"):
        if _dp_kind(_dp_s):
            os.rename(_dp_s, "/kiosk")
            break
if _dp_kind("/kiosk"):
    for _dp_s in ("/kiosk.old", "/kiosk.new"):
        _dp_remove(_dp_s)
"""

# Where the running app came from: a frozen module's __file__ names no file on the
# filesystem ("kiosk/__init__.py" in the firmware's .frozen).
_PROBE = """
_dp_k = getattr(sys.modules.get("kiosk"), "__file__", "")
print(repr((getattr(sys.implementation, "_mpy", 0), tuple(os.statvfs("/")), _dp_k,
            bool(_dp_k) and _dp_kind(_dp_k) == "F")))
"""

# The app's own reset (kiosk/hal/early.py marks it deliberate in the RTC memory first,
# so the next boot does not count a crash); plain machine.reset() if that is not there.
_RESTART = """
try:
    from kiosk.hal import early
    early.restart()
except ImportError:
    import machine
    machine.reset()
"""

def step_code(step: Step) -> str:
    """What the device runs for a step (after DEVICE_HELPERS); a send is mpremote's."""
    if step.kind == "remove":
        return f"_dp_remove({step.path!r})"
    if step.kind == "mkdir":
        return f"os.mkdir({step.path!r})"
    if step.kind == "copy":
        return f"_dp_copy({step.source!r}, {step.path!r})"
    if step.kind == "rename":
        return f"os.rename({step.source!r}, {step.path!r})"
    raise ValueError(f"{step.kind} is sent by mpremote, not run")


def mpy_of_device(value: int) -> tuple[str, str | None]:
    """sys.implementation._mpy as a .mpy file's header would say it: ("6.3", "xtensawin");
    its two low bytes are the header's version and arch/sub-version bytes."""
    return image.mpy_header(b"M" + bytes([value & 0xFF, (value >> 8) & 0xFF, 0]))


def mpy_needed(files: Mapping[str, bytes]) -> str | None:
    """The .mpy format the device must load for files: version.sub-version with native
    code (the firmware checks both then), else the version alone; None without .mpy."""
    headers = {image.mpy_header(data) for path, data in files.items() if path.endswith(".mpy")}
    native = {version for version, arch in headers if arch}
    if len(native) > 1:
        raise DeskPulseError(f"the app's .mpy files mix formats {sorted(native)}")
    return next(iter(native), None) or next((v for v, _ in headers), None)


class DeviceRepl:
    """The kiosk's raw REPL through mpremote's serial transport."""

    def __init__(self, port: str) -> None:
        try:
            from mpremote.transport import TransportError
            from mpremote.transport_serial import SerialTransport
        except ImportError:
            raise DeskPulseError("deploy needs mpremote: pip install 'mpremote>=1.26'") \
                from None
        self.port = port
        self._errors: tuple[type[BaseException], ...] = (TransportError, OSError)
        try:
            # A read timeout: on a pty mpremote reads byte by byte and would otherwise wait
            # forever for a device that never answers.
            self.transport: Any = SerialTransport(port, exclusive=True, timeout=5)
        except self._errors as exc:
            raise DeskPulseError(f"mpremote cannot open {port}: {exc}") from exc
        self.raw = False

    def enter(self, attempts: int = 2) -> None:
        """Into the raw REPL without a soft reset (mpremote's `resume`): a soft reset
        would start main.py, the app, again."""
        problem = ""
        for _ in range(attempts):
            try:
                # mpremote prints what it read when it finds no REPL; the error says it.
                with contextlib.redirect_stdout(io.StringIO()):
                    self.transport.enter_raw_repl(soft_reset=False, timeout_overall=5)
                self.raw = True
                self.run(DEVICE_HELPERS)
                return
            except self._errors as exc:
                problem = str(exc) or type(exc).__name__
        raise DeskPulseError(f"no MicroPython REPL answers on {self.port} ({problem})")

    def run(self, code: str, what: str = "") -> str:
        """code's output; the device's exception as one line."""
        from mpremote.transport import TransportExecError

        try:
            out, err = self.transport.exec_raw(code, timeout=DEVICE_TIMEOUT)
        except self._errors as exc:
            raise DeskPulseError(f"lost the kiosk on {self.port}{' while ' + what if what else ''}"
                                 f": {exc or type(exc).__name__}") from exc
        if err:
            lines = err.decode("utf-8", "replace").strip().splitlines() or ["?"]
            raise DeskPulseError(f"the kiosk failed{' to ' + what if what else ''}: "
                                 f"{lines[-1]}") from TransportExecError(out, err)
        return out.decode("utf-8", "replace")

    def listing(self, paths: list[str]) -> Listing:
        files: dict[str, tuple[int, str]] = {}
        folders: set[str] = set()
        text = self.run("".join(f"_dp_show({p!r})\n" for p in paths), "list its files")
        for line in text.splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "D":
                folders.add(rest)
            elif kind == "F":
                size, digest, path = rest.split(" ", 2)
                files[path] = (int(size), digest)
        return Listing(files, frozenset(folders))

    def apply(self, step: Step) -> None:
        if step.kind != "send":
            self.run(step_code(step), step.describe())
            return
        try:
            self.transport.fs_writefile(step.path, step.data)
        except self._errors as exc:
            failed = getattr(exc, "error_output", "")  # the device's own exception
            if failed:
                raise DeskPulseError(f"the kiosk failed to write {step.path}: "
                                     f"{failed.strip().splitlines()[-1]}") from exc
            raise DeskPulseError(f"lost the kiosk on {self.port} while sending {step.path}: "
                                 f"{exc or type(exc).__name__}") from exc

    def restart(self) -> None:
        """Reset the board. It may take the port with it before mpremote has read the
        end of its command, so no error counts here: HELLO afterwards tells."""
        with contextlib.suppress(*self._errors):
            self.transport.exec_raw_no_follow(_RESTART)

    def close(self) -> None:
        # A board that just reset may have taken the port with it.
        with contextlib.suppress(*self._errors):
            self.transport.close()


# -- the deploy ------------------------------------------------------------------------------
StepHook = Callable[[int, Step], None]
"""on_step(index, step), called before each step: progress, or a test's power cut."""


def _maintenance_s(new_files: Mapping[str, bytes]) -> int:
    """Room for sending every file (mpremote writes 256-byte chunks as Python bytes
    literals, up to 4 characters a byte) with time to spare; the kiosk restarts into its
    app by itself afterwards, whatever happens to the host."""
    total = sum(len(data) for data in new_files.values())
    estimate = total * 4 / UART_BYTES_PER_S + len(new_files) * 2 + 60
    return int(min(MAX_MAINTENANCE_S, max(300, 2 * estimate)))


def _stop_app(name: str, seconds: int) -> Hello | None:
    """HELLO, then MAINT; waits for the REPL's prompt. None when the app does not answer
    (already stopped, or not running): the REPL is tried next."""
    port = open_port(name)
    try:
        session = Session(Link(port, timeout=2.0, attempts=2, name=name))
        try:
            hello = session.hello()
        except SyncError:
            return None
        deadline = time.monotonic() + BUSY_WAIT
        while True:
            try:
                session.stop_for_maintenance(seconds)
                break
            except SyncError as exc:
                # A customer mid-survey: the kiosk stops only between customers.
                if "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(2.0)
        seen = b""
        deadline = time.monotonic() + PROMPT_TIMEOUT
        while b">>> " not in seen and time.monotonic() < deadline:
            seen = (seen + port.read(256))[-64:]
        return hello
    finally:
        port.close()


def await_kiosk(name: str, timeout: float = BOOT_TIMEOUT) -> Hello:
    """HELLO's answer once the kiosk has started (the port may vanish meanwhile, as a USB
    device does when its board resets)."""
    deadline = time.monotonic() + timeout
    problem = "no answer"
    while time.monotonic() < deadline:
        try:
            port = open_port(name)
        except DeskPulseError as exc:
            problem = str(exc)
            time.sleep(0.5)
            continue
        try:
            frame = Link(port, timeout=1.0, attempts=1, name=name).request(
                f"HELLO {PROTOCOL}", "H")
        except DeskPulseError as exc:  # no answer yet, or the port went with the reset
            problem = str(exc)
            time.sleep(0.2)
            continue
        finally:
            port.close()
        return parse_hello(frame)
    raise DeskPulseError(f"the kiosk on {name} did not answer within {timeout:.0f} s of its "
                         f"restart ({problem}): see its console or panel; it may fail to "
                         "start (deskpulse sync shows its last failure once it answers)")


def deploy(port: str, *, firmware: Path | None = None, dry_run: bool = False,
           boot_timeout: float = BOOT_TIMEOUT, on_step: StepHook | None = None) -> DeployReport:
    """Update the app of the kiosk on `port` ("auto": the one ESP32 USB port) to the one in
    `firmware` (default: the shipped firmware). dry_run reads the kiosk's files and plans,
    writes nothing, and restarts the kiosk into its app."""
    started = time.monotonic()
    firmware = firmware or resources.firmware_dir()
    version = firmware_version(firmware)
    mpy_cross = image.require_mpy_cross()
    new_files = image.device_files("mpy", image.ESP32_ARCH, firmware=firmware,
                                   mpy_cross=mpy_cross)
    name = resolve_port(port)
    hello = _stop_app(name, _maintenance_s(new_files))
    repl = DeviceRepl(name)
    try:
        try:
            repl.enter()
        except DeskPulseError:
            if hello is None:
                raise DeskPulseError(
                    f"the kiosk on {name} does not answer, neither its sync protocol nor a "
                    "MicroPython REPL: is it powered, on this port, and running?") from None
            raise
        report = _update(repl, name, hello, version, firmware, new_files, mpy_cross,
                         dry_run, on_step)
        repl.restart()
    except BaseException:
        # Whatever failed, the kiosk goes back to serving with whichever app it has now.
        if repl.raw:
            repl.restart()
        raise
    finally:
        repl.close()
    running = await_kiosk(name, boot_timeout)
    report.running = running.firmware
    report.seconds = time.monotonic() - started
    if not dry_run and report.running != version:
        raise DeskPulseError(f"the kiosk restarted with app {report.running}, not {version}: "
                             "its files were checked, so its main.py may not start /kiosk")
    return report


def _update(repl: DeviceRepl, name: str, hello: Hello | None, version: str,
            firmware: Path, new_files: dict[str, bytes], mpy_cross: Path, dry_run: bool,
            on_step: StepHook | None) -> DeployReport:
    repl.run(SETTLE, "finish an earlier update")
    mpy_value, statvfs, loaded_from, from_filesystem = ast.literal_eval(repl.run(_PROBE).strip())
    mpy, arch = mpy_of_device(int(mpy_value))
    if arch is None:
        raise DeskPulseError(f"the kiosk's MicroPython (.mpy {mpy}) runs no native code, "
                             "which the app's e-paper driver has")
    if arch != image.ESP32_ARCH:
        new_files = image.device_files("mpy", arch, firmware=firmware, mpy_cross=mpy_cross)
    built = mpy_needed(new_files)
    if built is not None and built != mpy and built != mpy.split(".")[0]:
        raise DeskPulseError(f"the kiosk's MicroPython loads .mpy {mpy}, this deskpulse's "
                             f"mpy-cross writes {built}: flash the MicroPython that "
                             "docs/technicians.md names, then deploy")
    data_paths = sorted(p for p in new_files if not p.startswith(APP + "/") and p != MAIN)
    listed = repl.listing([APP, STAGED, RETIRED, MAIN, MAIN + NEW_SUFFIX, *data_paths,
                           *(p + NEW_SUFFIX for p in data_paths)])
    if not listed.exists(APP):
        where = str(loaded_from)
        if where and not from_filesystem:
            raise DeskPulseError("this kiosk's app is frozen into its MicroPython firmware "
                                 "(no /kiosk on its filesystem): update it by flashing a "
                                 "new firmware build, not by deploy")
        raise DeskPulseError("this kiosk has no /kiosk folder on its filesystem"
                             f"{' (its app runs from ' + where + ')' if where else ''}: "
                             "deploy updates only an app in /kiosk")
    block_size, free_blocks = int(statvfs[0]), int(statvfs[3])
    plan = plan_update(listed, new_files, block_size)
    report = DeployReport(name, hello.device_id if hello else "",
                          hello.firmware if hello else None, version,
                          f"{mpy} {arch}", len(new_files), plan.sent, plan.copied, dry_run)
    if hello is None:
        report.notes.append("its app did not answer; updated from its REPL")
    if dry_run or not plan.steps:
        return report
    if free_blocks - plan.blocks_needed < FREE_BLOCKS_KEPT:
        raise DeskPulseError(
            f"the kiosk has {free_blocks * block_size // 1024} KB free and staging the new "
            f"app needs {(plan.blocks_needed + FREE_BLOCKS_KEPT) * block_size // 1024} KB: "
            "sync it first (deskpulse sync frees the responses it stored), then deploy")
    index = 0
    for step in plan.staging:
        if on_step is not None:
            on_step(index, step)
        repl.apply(step)
        index += 1
    resent = _check(repl, plan.staged, STAGED, resend=True)
    if resent:
        report.notes.append(f"{resent} staged files did not match and were sent again")
    for step in plan.switch:
        if on_step is not None:
            on_step(index, step)
        repl.apply(step)
        index += 1
    _check(repl, new_files, APP, resend=False)
    return report


def _check(repl: DeviceRepl, wanted: Mapping[str, bytes], folder: str,
           resend: bool) -> int:
    """Every file in `wanted` on the device with its content's hash, and no other file in
    `folder`; with resend, files found wrong are sent once more. Returns how many were."""
    digests = {path: sha256(data) for path, data in wanted.items()}
    resent = 0
    for attempt in range(2):
        listed = repl.listing(sorted({folder} | {p for p in wanted
                                                 if not p.startswith(folder + "/")}))
        wrong = sorted(p for p, digest in digests.items()
                       if listed.files.get(p, (0, ""))[1] != digest)
        extra = sorted(p for p in listed.files
                       if p.startswith(folder + "/") and p not in wanted)
        if not wrong and not extra:
            return resent
        if attempt or not resend or extra:
            shown = ", ".join((wrong + extra)[:3]) + (" ..." if len(wrong + extra) > 3 else "")
            if resend:
                raise DeskPulseError(f"the files staged on the kiosk do not match ({shown}); "
                                     "it keeps the app it had: run deploy again")
            raise DeskPulseError(f"after the switch the kiosk's files do not match ({shown}): "
                                 "run deploy again")
        for path in wrong:
            repl.apply(Step("send", path, data=wanted[path]))
            resent += 1
    return resent
