"""Benchmark the serial sync against pulling the same responses as a CSV with mpremote.

Run from the repository root:  .venv/bin/python tools/bench_sync.py [--responses N] [--json]

Both contenders go through the same kind of relay: a pty pair this script owns, paced at
11,520 bytes/s in each direction (115200 baud, 8N1), as a real ESP32 UART would be. The
relay counts every byte in both directions, so the figures include all framing, commands,
acknowledgements, retries and console chatter.

- **deskpulse sync**: the real firmware (`deskpulse sim`'s Simulator) with N responses in
  its flash log, written beforehand by the firmware's own ResponseLog; `deskpulse.device.sync`
  pulls them into SQLite.
- **mpremote fs cp (anchor)**: the same N responses, as the CSV a naive firmware would keep,
  pulled from a plain MicroPython REPL with `mpremote connect <pty> resume fs cp :file .`.

The pty relay and the flash prefill also serve tests/device/test_sync_e2e.py.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import errno
import json
import os
import platform
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tty
from collections.abc import Callable, Sequence
from pathlib import Path

from deskpulse.device.micropython import default_micropython
from deskpulse.device.sync import sync
from deskpulse.protocol.batch import Response
from deskpulse.protocol.frames import CRC_SIZE, HEADER_SIZE, FrameParser
from deskpulse.sim.simulator import Simulator
from deskpulse.store import open_store

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
BOARD = REPO / "boards" / "esp32-devkitc-ssd1680.json"
UART_BYTES_PER_S = 115200 / 10  # 8N1: ten bits on the wire per byte
_SLICE = 64  # bytes paced out at a time: close to a UART's steady trickle
_POLL = 0.05

Tamper = Callable[[str, bytes], bytes]
"""tamper(direction, chunk) -> what the relay passes on; direction "to_device"/"to_host"."""


class BenchError(Exception):
    pass


# -- a pty relay between a host tool and a device console ---------------------------------


class PtyRelay:
    """Host tool ⇄ (a pty this relay owns) ⇄ relay ⇄ the device's console pty.

    `path` is what the host tool opens. Each direction is copied by its own thread,
    optionally paced at `rate` bytes/s and passed through `tamper` (drop, corrupt, cut).
    `retarget()` moves the device side to another console (a restarted simulator); while
    there is no device, bytes towards it are lost, as on a cable to a board that resets.
    """

    def __init__(self, target: str | None, *, rate: float | None = None,
                 tamper: Tamper | None = None) -> None:
        self.rate = rate
        self.tamper = tamper
        self.to_device = 0  # bytes delivered to the device
        self.to_host = 0  # bytes delivered to the host tool
        self.lost = 0  # bytes that found no device or no room at the host
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # the relay holds the slave: the master never sees EIO
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self._lock = threading.Lock()
        self._target = -1
        self._stop = threading.Event()
        if target is not None:
            self.retarget(target)
        self._threads = [
            threading.Thread(target=self._run, args=("to_device",), daemon=True),
            threading.Thread(target=self._run, args=("to_host",), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def retarget(self, target: str | None) -> None:
        """Attach the device side to another console path (None: detach)."""
        fd = -1
        if target is not None:
            fd = os.open(target, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            tty.setraw(fd)
        with self._lock:
            old, self._target = self._target, fd
        if old >= 0:
            with contextlib.suppress(OSError):
                os.close(old)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        self.retarget(None)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> PtyRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _source(self, direction: str) -> int:
        if direction == "to_device":
            return self._master
        with self._lock:
            return self._target

    def _run(self, direction: str) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            source = self._source(direction)
            if source < 0:
                time.sleep(_POLL)
                continue
            try:
                ready, _, _ = select.select([source], [], [], _POLL)
                if not ready:
                    continue
                data = os.read(source, 4096)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.EIO, errno.EBADF):
                    raise
                data = b""
            if not data:
                # The device console went away (simulator stopped): wait for retarget().
                if direction == "to_host":
                    with self._lock:
                        if self._target == source:
                            self._target = -1
                            with contextlib.suppress(OSError):
                                os.close(source)
                time.sleep(_POLL)
                continue
            if self.tamper is not None:
                data = self.tamper(direction, data)
            step = _SLICE if self.rate else max(1, len(data))
            for start in range(0, len(data), step):
                piece = data[start:start + step]
                if self.rate:
                    now = time.monotonic()
                    due = max(due, now)
                    if due > now:
                        time.sleep(due - now)
                    due += len(piece) / self.rate
                self._deliver(direction, piece)

    def _deliver(self, direction: str, data: bytes) -> None:
        while data:
            if direction == "to_host":
                sink = self._master
            else:
                with self._lock:
                    sink = self._target
            if sink < 0:
                self.lost += len(data)
                return
            try:
                sent = os.write(sink, data)
            except BlockingIOError:
                if direction == "to_host":
                    # Nobody reads the host side: a UART drops, it does not wait.
                    self.lost += len(data)
                    return
                select.select([], [sink], [], _POLL)
                continue
            except OSError:
                self.lost += len(data)
                return
            if direction == "to_host":
                self.to_host += sent
            else:
                self.to_device += sent
            data = data[sent:]


# -- filling a simulated device's flash with known responses ------------------------------

_PREFILL = """
import json, sys
sys.path.insert(0, sys.argv[1])
from kiosk.hal import simflash

def _write(self, offset, data):
    # One flush at the end instead of one per program: only the speed differs.
    self.file.seek(offset)
    self.file.write(data)

simflash.FileImage.write = _write
from kiosk import app
from kiosk import config as cfg
from kiosk.clock import SOURCE_HOST
from kiosk.hal.sim import SimHal

board = json.loads(open(sys.argv[2]).read())
hal = SimHal(board, sys.argv[3])
cfg.save(hal.fs_root + "/config.json", json.loads(sys.argv[4]))
kiosk = None
told = {"no_answer": 0, "yes": 1, "no": 2}
for line in sys.stdin:
    item = json.loads(line)
    if "boot" in item and "seq" not in item:
        if kiosk is not None:
            kiosk.close()
        kiosk = app.Kiosk(hal)
        kiosk.start()
        if kiosk.boot != item["boot"]:
            raise SystemExit("boot %d, expected %d" % (kiosk.boot, item["boot"]))
        if item.get("anchor"):
            kiosk.clock.set_wall(item["anchor"], SOURCE_HOST)
        continue
    seq = kiosk.log.append(item["rating"], item["scale"], told[item["told_next"]],
                           item["latency_ds"], (1 if item["rapid"] else 0) |
                           (2 if item["closed"] else 0), item["boot"], item["uptime_s"],
                           item["wall"] or 0, item["config_version"])
    if seq != item["seq"]:
        raise SystemExit("seq %d, expected %d" % (seq, item["seq"]))
kiosk.close()
hal.unmount()
hal.flash.image.file.close()
print("@done")
"""


def synthetic_responses(count: int, *, per_boot: int = 2500, anchored_every: int = 2,
                        seed: int = 1) -> tuple[list[Response], dict[int, int]]:
    """A realistic log: seq 1..count, a reboot every per_boot responses, the clock set
    (anchor at uptime 0) in every anchored_every-th boot, customers 30 s-10 min apart.
    Returns (responses, {boot: anchor wall})."""
    state = seed
    out: list[Response] = []
    anchors: dict[int, int] = {}
    boot, uptime = 0, 0
    base = 1_795_000_000
    for i in range(count):
        if i % per_boot == 0:
            boot += 1
            uptime = 20
            base += 86_400
            if boot % anchored_every == 1 or anchored_every == 1:
                anchors[boot] = base
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        uptime += 30 + state % 570
        rating = (4, 4, 3, 4, 2, 3, 1, 4)[state % 8]
        out.append(Response(
            seq=i + 1, rating=rating, scale=4,
            told_next=("yes", "yes", "no", "no_answer")[(state >> 8) % 4],
            latency_s=(15 + (state >> 4) % 80) / 10, rapid=(state >> 12) % 23 == 0,
            closed=False, boot=boot, uptime_s=uptime,
            wall=anchors[boot] + uptime if boot in anchors else None, config_version=1))
    return out, anchors


def prefill(state_dir: Path, responses: Sequence[Response], anchors: dict[int, int],
            device_id: str, board: Path = BOARD) -> None:
    """Write responses into a simulated device's flash with the firmware's own code:
    one Kiosk boot per boot number (boots must run 1, 2, ...), the clock set at the start
    of the boots in `anchors`."""
    micropython = default_micropython()
    if micropython is None:
        raise BenchError("micropython not found: run `make venv` first")
    state_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    boot = 0
    for r in responses:
        if r.boot != boot:
            boot = r.boot
            lines.append(json.dumps({"boot": boot, "anchor": anchors.get(boot)}))
        lines.append(json.dumps({
            "seq": r.seq, "rating": r.rating, "scale": r.scale, "told_next": r.told_next,
            "latency_ds": r.latency_ds, "rapid": r.rapid, "closed": r.closed, "boot": r.boot,
            "uptime_s": r.uptime_s, "wall": r.wall, "config_version": r.config_version}))
    config = json.dumps({"device_id": device_id, "version": 1})
    proc = subprocess.run(
        [str(micropython), "-X", "heapsize=8M", "-c", _PREFILL, str(FIRMWARE), str(board),
         str(state_dir), config],
        input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=600,
        check=False)
    if proc.returncode != 0 or "@done" not in proc.stdout:
        raise BenchError(f"prefill failed ({proc.returncode}): {proc.stderr[-2000:]}"
                         f"{proc.stdout[-2000:]}")


# -- the two contenders -------------------------------------------------------------------


def bench_sync(work: Path, responses: list[Response], anchors: dict[int, int]) -> dict:
    state = work / "kiosk"
    started = time.monotonic()
    prefill(state, responses, anchors, "bench-kiosk")
    prefill_s = time.monotonic() - started
    dbfile = work / "bench.db"
    tap = _Tap()
    with Simulator(BOARD, state, console_log=False) as sim, \
            PtyRelay(sim.console_path, rate=UART_BYTES_PER_S) as relay:
        time.sleep(1.0)  # let the firmware boot and print its banner before we start
        before = (relay.to_device, relay.to_host)
        relay.tamper = tap
        started = time.monotonic()
        summary = sync(relay.path, dbfile)
        seconds = time.monotonic() - started
        relay.tamper = None
        sent, received = relay.to_device - before[0], relay.to_host - before[1]
    with open_store(dbfile) as conn:
        stored = conn.responses_of("bench-kiosk")
    if summary.new != len(responses) or len(stored) != len(responses):
        raise BenchError(f"sync stored {summary.new} of {len(responses)}")
    return {"seconds": seconds, "to_device": sent, "to_host": received,
            "batches": summary.batches, "retries": summary.retries, "prefill_s": prefill_s,
            "by_kind": tap.breakdown(), "stored": stored}


class _Tap:
    """A relay tamper that changes nothing and keeps a copy, to say where bytes went."""

    def __init__(self) -> None:
        self.data: dict[str, bytearray] = {"to_device": bytearray(), "to_host": bytearray()}

    def __call__(self, direction: str, data: bytes) -> bytes:
        self.data[direction] += data
        return data

    def breakdown(self) -> dict[str, list[int]]:
        """{kind: [count, bytes]}: frames by type (whole frames, 11 bytes of framing
        each), command lines by verb, and whatever else the console carried."""
        out: dict[str, list[int]] = {}
        parser = FrameParser()
        for frame in parser.feed(bytes(self.data["to_host"])):
            entry = out.setdefault(f"{frame.type} frames", [0, 0])
            entry[0] += 1
            entry[1] += len(frame.payload) + HEADER_SIZE + CRC_SIZE
        out["other console bytes"] = [0, parser.skipped]
        for line in bytes(self.data["to_device"]).splitlines(keepends=True):
            words = line.split()
            entry = out.setdefault(f"{(words[1:2] or [b'?'])[0].decode()} lines", [0, 0])
            entry[0] += 1
            entry[1] += len(line)
        return out


def write_csv(path: Path, rows: list[dict]) -> None:
    names = ["seq", "rating", "scale", "told_next", "latency_ds", "rapid", "closed", "boot",
             "uptime_s", "wall", "config_version"]
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(names)
        for row in rows:
            writer.writerow(["" if row[n] is None else row[n] for n in names])


def bench_mpremote(work: Path, rows: list[dict]) -> dict:
    """Pull the CSV from a plain MicroPython REPL through the same paced relay."""
    micropython = default_micropython()
    mpremote = Path(sys.executable).parent / "mpremote"
    if micropython is None or not mpremote.exists():
        raise BenchError("micropython or mpremote missing: run `make venv` first")
    device_dir = work / "repl-fs"
    device_dir.mkdir()
    csv_path = device_dir / "responses.csv"
    write_csv(csv_path, rows)
    # The Simulator's pty plumbing, with the bare interpreter's REPL in place of the app.
    repl = work / "repl.sh"
    repl.write_text(f"#!/bin/sh\ncd {str(device_dir)!r} && exec {str(micropython)!r}\n")
    repl.chmod(0o755)
    local = work / "pulled.csv"
    with Simulator(BOARD, work / "repl-state", micropython=repl, firmware_entry=repl,
                   console_log=False) as sim, \
            PtyRelay(sim.console_path, rate=UART_BYTES_PER_S) as relay:
        time.sleep(1.0)
        before = (relay.to_device, relay.to_host)
        started = time.monotonic()
        done = subprocess.run(
            [str(mpremote), "connect", relay.path, "resume", "fs", "cp",
             ":responses.csv", str(local)],
            capture_output=True, text=True, timeout=3600, check=False)
        seconds = time.monotonic() - started
        sent, received = relay.to_device - before[0], relay.to_host - before[1]
    if done.returncode != 0 or local.read_bytes() != csv_path.read_bytes():
        raise BenchError(f"mpremote fs cp failed: {done.stderr[-2000:]}")
    return {"seconds": seconds, "to_device": sent, "to_host": received,
            "file_bytes": csv_path.stat().st_size}


def run_benchmark(count: int = 10_000) -> dict:
    responses, anchors = synthetic_responses(count)
    with tempfile.TemporaryDirectory(prefix="deskpulse-bench-") as tmp:
        work = Path(tmp)
        ours = bench_sync(work, responses, anchors)
        rows = ours.pop("stored")
        anchor = bench_mpremote(work, rows)
    for result in (ours, anchor):
        wire = result["to_device"] + result["to_host"]
        result["wire_bytes"] = wire
        result["bytes_per_response"] = wire / count
        result["responses_per_s"] = count / result["seconds"]
    return {"responses": count, "ours": ours, "anchor": anchor,
            "ratio": anchor["wire_bytes"] / ours["wire_bytes"]}


def report(result: dict) -> str:
    ours, anchor, n = result["ours"], result["anchor"], result["responses"]
    rows = [
        ("wire bytes, host → device", f"{ours['to_device']:,}", f"{anchor['to_device']:,}"),
        ("wire bytes, device → host", f"{ours['to_host']:,}", f"{anchor['to_host']:,}"),
        ("**wire bytes per response**", f"**{ours['bytes_per_response']:.2f}**",
         f"**{anchor['bytes_per_response']:.2f}**"),
        ("responses/s at 115200 baud", f"{ours['responses_per_s']:,.0f}",
         f"{anchor['responses_per_s']:,.0f}"),
        (f"seconds for {n:,} responses", f"{ours['seconds']:.1f}", f"{anchor['seconds']:.1f}"),
    ]
    lines = ["| metric | deskpulse sync | mpremote fs cp of a CSV (anchor) |",
             "|---|---:|---:|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines.append("")
    lines.append(f"anchor/ours wire bytes: {result['ratio']:.1f}x; sync used "
                 f"{ours['batches']} batches, {ours['retries']} retries; CSV file "
                 f"{anchor['file_bytes']:,} bytes")
    lines.append("")
    lines.append("| deskpulse sync traffic | count | bytes |")
    lines.append("|---|---:|---:|")
    for kind, (count, size) in sorted(ours["by_kind"].items()):
        lines.append(f"| {kind} | {count or ''} | {size:,} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=10_000)
    parser.add_argument("--json", action="store_true", help="print raw figures as JSON")
    args = parser.parse_args(argv)
    if shutil.which("sh") is None:
        raise BenchError("needs /bin/sh for the REPL wrapper")
    started = time.monotonic()
    result = run_benchmark(args.responses)
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
        print(f"bench_sync: {exc}", file=sys.stderr)
        sys.exit(1)
