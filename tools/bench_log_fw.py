# Benchmark of the response log, run on the MicroPython unix port by tools/bench_log.py.
#
# Both contenders write to the same simulated 2 MiB LittleFS partition (512 blocks of
# 4096 bytes, as on a 4 MiB ESP32 board) and flush every response before returning,
# because a response is only safe once it is on flash:
#   ours:   kiosk.log.ResponseLog with its defaults (32 KB segments, 90% cap)
#   anchor: the obvious design, one JSON object per line appended to a single file
# The flash counts erases and programs, so wear is measured rather than estimated.
#
# Usage: micropython -X heapsize=32M bench_log_fw.py [RESPONSES]   (firmware/ on
# MICROPYPATH). Prints "@" + JSON lines: {"ours": {...}}, {"anchor": {...}}.
#
# micropython -X heapsize=32M bench_log_fw.py sweep: the flash work of every window of
# SWEEP_WINDOW appends over a whole fill (empty to the cap and SWEEP_AT_CAP beyond), for
# the log as the firmware mounts and lays it out ("lean": mtime=False, the segment being
# written alone in log/open) and as it was before ("before": LittleFS's default mtime
# attribute, every segment in log/). Prints "@" + JSON {"sweep": {"lean": ..., "before": ...}}.
import gc
import json
import os
import random
import sys
import time

import vfs
from kiosk import record
from kiosk.hal.simflash import BLOCK_SIZE, RamImage, SimFlash
from kiosk.log import ResponseLog

BLOCKS = 512
MOUNT = "/flash"
CAP = 0.9
SEED = 20240601
# After the log reaches its cap, keep appending this many responses to see how the
# erases spread once only the blocks under the cap's headroom are free.
AT_CAP_RESPONSES = 10000
SWEEP_WINDOW = 1000
SWEEP_AT_CAP = 5000


class WearFlash(SimFlash):
    """SimFlash that also counts erases per block: a total says nothing about how
    evenly LittleFS spreads them, and the busiest block is the one that wears out."""

    def __init__(self, image, block_count):
        super().__init__(image, block_count)
        self.block_erases = [0] * block_count

    def ioctl(self, op, arg):
        rc = super().ioctl(op, arg)
        if op == 6 and rc == 0:
            self.block_erases[arg] += 1
        return rc

    def snapshot(self):
        return (self.erases, self.programs, self.bytes_programmed, list(self.block_erases))


class Responses:
    """A reproducible stream of plausible responses: mostly good ratings, the told
    question often skipped, a reboot now and then, the clock known for about half."""

    def __init__(self):
        random.seed(SEED)
        self.boot = 1
        self.uptime = 20
        self.wall = 1750000000

    def next(self):
        if random.randint(1, 800) == 1:  # a reboot: uptime starts over
            self.boot += 1
            self.uptime = random.randint(5, 60)
        step = random.randint(30, 600)
        self.uptime += step
        self.wall += step
        r = random.randint(1, 100)
        rating = 1 if r <= 10 else 2 if r <= 25 else 3 if r <= 60 else 4
        t = random.randint(1, 10)
        told = record.TOLD_YES if t <= 5 else record.TOLD_NO if t <= 7 else record.TOLD_NO_ANSWER
        flags = record.FLAG_RAPID if random.randint(1, 20) == 1 else 0
        wall = self.wall if random.randint(0, 1) else 0
        return (rating, 4, told, random.randint(5, 100), flags, self.boot, self.uptime, wall,
                1 + self.boot // 5)


def fresh_flash(img, mtime=True):
    blank = b"\xff" * BLOCK_SIZE
    for offset in range(0, len(img.data), BLOCK_SIZE):
        img.data[offset : offset + BLOCK_SIZE] = blank
    vfs.VfsLfs2.mkfs(SimFlash(img, BLOCKS))
    dev = WearFlash(img, BLOCKS)
    vfs.mount(vfs.VfsLfs2(dev, mtime=mtime), MOUNT)
    return dev


def used_blocks():
    st = os.statvfs(MOUNT)
    return st[2] - st[3]


def wear(dev, before, n):
    """Per-response flash work since the snapshot `before`, over n responses."""
    erases, programs, programmed, blocks = before
    erased = sorted(e for e in
                    (now - then for now, then in zip(dev.block_erases, blocks)) if e)
    return {
        "responses": n,
        "erases": (dev.erases - erases) / n,
        "programs": (dev.programs - programs) / n,
        "bytes_programmed": (dev.bytes_programmed - programmed) / n,
        "blocks_erased": len(erased),
        # The busiest block is often a metadata block, which LittleFS moves elsewhere
        # after block_cycles (100) erases; the median shows the data blocks' lot.
        "hottest_block_erases": erased[-1],
        "median_block_erases": erased[len(erased) // 2],
    }


def ms_since(t0):
    return time.ticks_diff(time.ticks_ms(), t0)


def bench_ours(img, n):
    dev = fresh_flash(img)
    log = ResponseLog(MOUNT)
    log.open()
    responses = Responses()
    used0 = used_blocks()
    before = dev.snapshot()
    t0 = time.ticks_ms()
    for _ in range(n):
        log.append(*responses.next())
    out = {"ms_first": ms_since(t0), "first": wear(dev, before, n)}

    segments = log._segments
    file_bytes = sum(seg.size for seg in segments)
    sealed = len([seg for seg in segments if seg.sealed])
    out["segments"] = len(segments)
    out["file_bytes_per_response"] = file_bytes / n
    out["payload_bytes_per_response"] = (
        file_bytes - len(segments) * record.HEADER_SIZE - sealed * record.SEAL_SIZE) / n
    out["flash_bytes_per_response"] = (used_blocks() - used0) * BLOCK_SIZE / n

    # Capacity: append until the cap makes the log drop its oldest segment. No acks
    # arrive, so every response appended before the dropping one was still held.
    t0 = time.ticks_ms()
    appended = n
    while not log.dropped_total:
        log.append(*responses.next())
        appended += 1
    out["ms_fill"] = ms_since(t0)
    out["capacity"] = appended - 1
    status = log.status()
    out["fs_fill_at_cap"] = status["fs_fill"]
    out["stored_after_first_drop"] = status["stored"]

    # Wear while the log sits at its cap, as on a kiosk that never gets synced.
    before = dev.snapshot()
    t0 = time.ticks_ms()
    for _ in range(AT_CAP_RESPONSES):
        log.append(*responses.next())
    out["ms_at_cap"] = ms_since(t0)
    out["at_cap"] = wear(dev, before, AT_CAP_RESPONSES)
    log.close()
    vfs.umount(MOUNT)
    return out


def json_line(seq, fields):
    rating, scale, told, latency_ds, flags, boot, uptime_s, wall, config_version = fields
    return json.dumps({
        "seq": seq, "rating": rating, "scale": scale, "told": told,
        "latency_ds": latency_ds, "flags": flags, "boot": boot, "uptime_s": uptime_s,
        "wall": wall or None, "config_version": config_version,
    }) + "\n"


def bench_anchor(img, n):
    dev = fresh_flash(img)
    path = MOUNT + "/responses.jsonl"
    f = open(path, "ab")
    responses = Responses()
    used0 = used_blocks()
    before = dev.snapshot()
    t0 = time.ticks_ms()
    for seq in range(1, n + 1):
        f.write(json_line(seq, responses.next()))
        f.flush()
    out = {"ms_first": ms_since(t0), "first": wear(dev, before, n)}
    file_bytes = os.stat(path)[6]
    out["file_bytes_per_response"] = file_bytes / n
    out["payload_bytes_per_response"] = file_bytes / n
    out["flash_bytes_per_response"] = (used_blocks() - used0) * BLOCK_SIZE / n

    # Capacity: the same 90% rule, counted in used blocks. statvfs walks the whole
    # file, so look only every 64 responses until close to the line.
    t0 = time.ticks_ms()
    seq = n
    limit = BLOCKS * CAP
    while True:
        used = used_blocks()
        if used >= limit:
            break
        for _ in range(1 if used >= limit - 4 else 64):
            seq += 1
            f.write(json_line(seq, responses.next()))
            f.flush()
    out["ms_fill"] = ms_since(t0)
    out["capacity"] = seq
    out["fs_fill_at_cap"] = round(used_blocks() / BLOCKS, 3)
    f.close()
    vfs.umount(MOUNT)
    return out


def sweep(img, lean):
    """Erases and bytes read per append in each window of SWEEP_WINDOW appends, from an
    empty filesystem to SWEEP_AT_CAP appends past the first drop at the cap."""
    dev = fresh_flash(img, mtime=not lean)
    log = ResponseLog(MOUNT)
    if not lean:
        log.open_dir = log.dir  # the layout before log/open: every segment in log/
    log.open()
    responses = Responses()
    windows = []  # (appends so far, erases per append, bytes read per append)
    appended = 0
    full_at = 0
    while not full_at or appended < full_at + SWEEP_AT_CAP:
        erases, read = dev.erases, dev.bytes_read
        for _ in range(SWEEP_WINDOW):
            log.append(*responses.next())
        appended += SWEEP_WINDOW
        windows.append((appended, (dev.erases - erases) / SWEEP_WINDOW,
                        (dev.bytes_read - read) / SWEEP_WINDOW))
        if log.dropped_total and not full_at:
            full_at = appended
    log.close()
    vfs.umount(MOUNT)
    worst_erases = max(windows, key=lambda w: w[1])
    worst_reads = max(windows, key=lambda w: w[2])
    count = len(windows)
    return {
        "window": SWEEP_WINDOW, "appends": appended, "cap_reached_at": full_at,
        "worst_erases": worst_erases[1], "worst_erases_at": worst_erases[0],
        "worst_reads": worst_reads[2], "worst_reads_at": worst_reads[0],
        "mean_erases": sum(w[1] for w in windows) / count,
        "mean_reads": sum(w[2] for w in windows) / count,
        "first_reads": windows[0][2], "last_reads": windows[-1][2],
        "windows": [[w[0], round(w[1], 3), round(w[2])] for w in windows],
    }


def main_sweep():
    img = RamImage(BLOCKS * BLOCK_SIZE)
    lean = sweep(img, True)
    gc.collect()
    print("@" + json.dumps({"sweep": {"lean": lean, "before": sweep(img, False)}}))


def main(n):
    img = RamImage(BLOCKS * BLOCK_SIZE)
    print("@" + json.dumps({"ours": bench_ours(img, n)}))
    gc.collect()
    print("@" + json.dumps({"anchor": bench_anchor(img, n)}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["sweep"]:
        main_sweep()
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 10000)
