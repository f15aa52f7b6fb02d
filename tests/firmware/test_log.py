"""The response log, clock anchors and boot journal on real LittleFS in MicroPython."""

from __future__ import annotations

import pytest

from conftest import mpy_json

SETUP = """
import os
from harness import ram_flash, mount, unmount, emit, MOUNT, FakeTicks
from kiosk.log import ResponseLog, LogError
from kiosk import record
image, blocks = ram_flash(BLOCKS)
def boot(segment_bytes=1024):
    mount(image, blocks)
    log = ResponseLog(MOUNT, segment_bytes=segment_bytes)
    log.open()
    return log
def reboot(log, segment_bytes=1024):
    log.close()
    unmount()
    return boot(segment_bytes)
def add(log, n, rating=3):
    return [log.append(rating, 4, record.TOLD_YES, 12, 0, 1, 100 + i, 0, 1) for i in range(n)]
def seqs(log, start=1):
    return [r[record.SEQ] for r in log.read(start, 1 << 20)]
def log_files():
    # Finished segments and the journal in log/, the segment being written in log/open/.
    return sorted(os.listdir(MOUNT + "/log")) + sorted(
        "open/" + name for name in os.listdir(MOUNT + "/log/open"))
"""


def run(body: str, blocks: int = 64) -> dict:
    return mpy_json(SETUP.replace("BLOCKS", str(blocks)) + body)[-1]


def test_reads_come_in_bounded_chunks_from_any_sequence_number() -> None:
    r = run("""
log = boot()
add(log, 200)
chunk = log.read(50, 100)
emit({"first": [x[0] for x in chunk], "size": sum(1 for _ in chunk),
      "tiny": [x[0] for x in log.read(7, 1)], "past": log.read(500, 100),
      "all": seqs(log) == list(range(1, 201))})
""")
    assert r["first"][0] == 50
    assert r["first"] == list(range(50, 50 + r["size"]))
    assert 5 <= r["size"] <= 100 // 11  # records are 11+ bytes: at most 9 fit in 100
    assert r["tiny"] == [7]  # at least one record, even over budget
    assert r["past"] == []
    assert r["all"] is True


def test_ack_frees_whole_segments_and_the_number_survives_deleting_everything() -> None:
    r = run("""
log = boot()
add(log, 300)
def segment_files():
    return [n for n in log_files() if n not in ("acks", "open")]
files_before = len(segment_files())
log.ack(150)
after_partial = {"files": len(segment_files()), "read": seqs(log)[:2],
                 "status": log.status()}
try:
    log.ack(301)
    beyond = None
except LogError as e:
    beyond = str(e)
log.ack(100)  # an old ack again: harmless
log.ack(300)
left = log_files()
log = reboot(log)
emit({"files_before": files_before, "after_partial": after_partial, "beyond": beyond,
      "left": left, "next": log.next_seq, "new": add(log, 2), "status": log.status()})
""")
    assert r["files_before"] > 3
    assert r["after_partial"]["files"] < r["files_before"]
    assert r["after_partial"]["read"] == [151, 152]
    assert r["after_partial"]["status"]["unacked"] == 150
    assert r["beyond"] == "ack 301 beyond last record 300"
    assert r["left"] == ["acks", "open"]
    assert r["next"] == 301
    assert r["new"] == [301, 302]
    assert r["status"]["acked_upto"] == 300 and r["status"]["unacked"] == 2


@pytest.mark.slow
def test_storage_cap_drops_the_oldest_and_counts_them_durably() -> None:
    r = run("""
log = boot(segment_bytes=4096)
log.ack(0)
seq = 0
while log.dropped_total == 0:
    seq = add(log, 1)[0]
fill = log.status()["fs_fill"]
add(log, 400)
dropped = log.dropped_total
first = seqs(log)[0]
log = reboot(log, 4096)
emit({"fill": fill, "dropped": dropped, "after_reboot": log.dropped_total, "first": first,
      "first_after": seqs(log)[0], "next": log.next_seq, "last_before": seq + 400,
      "status": log.status()})
""", blocks=24)
    assert r["fill"] <= 0.9
    assert r["status"]["fs_fill"] <= 0.9
    assert r["dropped"] > 0 and r["after_reboot"] == r["dropped"]
    assert r["first"] == r["dropped"] + 1  # exactly the oldest records went
    assert r["first_after"] == r["first"]
    assert r["next"] == r["last_before"] + 1
    assert r["status"]["dropped"] == r["dropped"]


def test_a_corrupt_tail_is_cut_off_counted_once_and_later_records_stay_readable() -> None:
    r = run("""
log = boot(segment_bytes=1 << 20)
add(log, 20)
log.close()
path = MOUNT + "/log/open/00000001"  # the segment being written
data = bytearray(open(path, "rb").read())
data[-3] ^= 0x40                      # flip a bit in the last record
with open(path, "wb") as f:
    f.write(data)
unmount()
log = boot(1 << 20)
first = {"seqs": seqs(log), "corrupt": log.corrupt, "next": log.next_seq}
new = add(log, 3)
log = reboot(log, 1 << 20)
emit({"first": first, "new": new, "seqs": seqs(log), "corrupt": log.corrupt,
      "files": log_files()})
""")
    assert r["first"] == {"seqs": list(range(1, 20)), "corrupt": 1, "next": 20}
    assert r["new"] == [20, 21, 22]
    assert r["seqs"] == list(range(1, 23))
    assert r["corrupt"] == 1  # counted when found, not again at every boot
    # The repaired segment was sealed, so it moved out of open/ when the next one began.
    assert r["files"] == ["00000001", "acks", "open", "open/00000014"]


def test_clock_anchors_are_durable_and_resolve_earlier_records() -> None:
    r = run("""
from kiosk.clock import Clock, SOURCE_HOST
mount(image, blocks)
t = FakeTicks(before_wrap_ms=500)
c = Clock(t, 1, MOUNT)
c.start()
t.advance(90500); c.uptime_ms()            # crosses the tick wrap
unknown = c.wall()
c.set_wall(1795428000, SOURCE_HOST)
t.advance(30000); c.uptime_ms()
later = c.wall()
c.close()
c2 = Clock(t, 2, MOUNT)
c2.start()
emit({"unknown": unknown, "later": later, "uptime": c.uptime_s(), "anchors": c2.anchors,
      "known_after_reboot": c2.known()})
""")
    assert r["unknown"] == 0
    assert r["later"] == 1795428030
    assert r["uptime"] == 120
    assert r["anchors"] == [[1, 90, 1795428000, 1]]
    assert r["known_after_reboot"] is False  # a new boot does not know the time


def test_clock_journal_compacts_to_the_latest_anchor_per_boot() -> None:
    r = run("""
from kiosk.clock import Clock
mount(image, blocks)
t = FakeTicks()
for boot_no in range(1, 4):
    c = Clock(t, boot_no, MOUNT)
    c.start()
    for k in range(200):
        t.advance(1000); c.uptime_ms()
        c.set_wall(1795428000 + boot_no * 100000 + k, 2)
    c.close()
c = Clock(t, 4, MOUNT)
c.start()
emit({"count": len(c.anchors), "boots": sorted(set(a[0] for a in c.anchors)),
      "size": os.stat(MOUNT + "/time")[6], "last": c.anchors[-1]})
""")
    assert r["boots"] == [1, 2, 3]
    assert r["last"][0] == 3 and r["last"][2] == 1795428000 + 300000 + 199
    assert r["size"] < 4096 + 64  # compacted, not 600 entries long
    assert r["count"] < 600
