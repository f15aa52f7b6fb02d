# What both sync paths (serial_sync.py on the console, push.py over WiFi) send: the
# unacknowledged records as one compact batch (batch.py), and the device's status with the
# time anchors a host needs to place those records in time. One implementation, so that
# the two paths can never disagree about what is pending.
import asyncio

from kiosk import record
from micropython import const

READ_BYTES = const(1024)  # flash bytes of records fetched per log.read while filling
MAX_ANCHORS = const(64)
MAX_PROBLEMS = const(8)


def capped(problems):
    """At most MAX_PROBLEMS problems of at most 120 characters, and how many were left."""
    out = [p[:120] for p in problems[:MAX_PROBLEMS]]
    if len(problems) > MAX_PROBLEMS:
        out.append("and %d more problems" % (len(problems) - MAX_PROBLEMS))
    return out


def first_seq(log):
    """The oldest unacknowledged record's sequence number and boot, (next_seq, None)
    when nothing waits."""
    first = log.read(log.acked_upto + 1, 1)
    if first:
        return first[0][record.SEQ], first[0][record.BOOT]
    return log.next_seq, None


def status_and_anchors(kiosk):
    """(status, anchors, first seq): the status with its problems capped, and the latest
    anchor of each boot from the boot of the oldest unacknowledged record on (the host
    places a record in time with the latest anchor of its boot), oldest first, at most
    MAX_ANCHORS, each as a list [boot, uptime_s, wall, source]."""
    status = kiosk.status()
    if status.get("config_problems"):
        status["config_problems"] = capped(status["config_problems"])
    first, first_boot = first_seq(kiosk.log)
    clock = kiosk.clock
    from_boot = clock.boot if first_boot is None else min(first_boot, clock.boot)
    latest = {}
    for anchor in clock.anchors:
        if anchor[0] >= from_boot:
            latest[anchor[0]] = anchor
    anchors = [list(latest[b]) for b in sorted(latest)][-MAX_ANCHORS:]
    return status, anchors, first


async def fill(log, enc, from_seq, budget):
    """Encode the unacknowledged records from from_seq into the BatchEncoder enc, within
    budget bytes; return (offset, length, more, last seq in the batch or 0). Yields to
    the loop after each log read: a read rescans its segment from the start, and the
    survey must run in between."""
    seq = max(from_seq, log.acked_upto + 1)
    enc.begin(seq, budget)
    more = False
    last = 0
    while not more:
        chunk = log.read(seq, READ_BYTES)
        if not chunk:
            break
        for rec in chunk:
            if not enc.add(rec):
                more = True
                break
            last = rec[record.SEQ]
        seq = chunk[-1][record.SEQ] + 1
        chunk = None
        await asyncio.sleep_ms(0)
    offset, length = enc.finish(more)
    return offset, length, more, last
