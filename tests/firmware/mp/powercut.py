# Power-cut sweep for the response log, run on the MicroPython unix port.
#
# Each scenario is a fixed workload (appends, acks, journal compactions, segment
# rotations, clean reboots). It runs once to count its flash operations N. Then, for
# every k < N, it runs again from the same starting image with the power cut at
# operation k, noting which appends and acks returned: those are promises already made,
# to the customer ("thank you") and to the host (an ack it may act on). A new device
# over the same image must then mount, open the log and keep every promise.
#
# One process sweeps every k, because starting micropython per cut point would cost
# more than the cut runs themselves.
#
# Usage: micropython powercut.py FRACTION [SCENARIO...]   (firmware/ on MICROPYPATH)
# Prints one line: "@" + JSON {"fraction": f, "scenarios": [summary, ...]}.
import io
import json
import sys

import vfs
from kiosk import record
from kiosk.hal.simflash import RamImage, SimFlash
from kiosk.log import ResponseLog

BLOCKS = 48
BLOCK_SIZE = 4096
MOUNT = "/flash"
# The journal compacts (temp file + rename) once it grows past this; the default of
# 4 KB would take hundreds of acks, so shrink it to put compactions inside the sweep.
JOURNAL_COMPACT_AT = 12
RECOVERY_BOOT = 99
# read() reopens a segment from its start for every page, so small pages cost
# quadratic time in a big segment; 600 bytes still splits every segment into pages.
PAGE_BYTES = 600
# Keep the report readable when something breaks at many cut points at once.
MAX_DETAILS = 30


def a(n):
    """n appends, as plan steps."""
    return ("a",) * n


def ack(keep):
    """Ack everything but the newest `keep` acknowledged responses."""
    return (("ack", keep),)


class Scenario:
    """segment_bytes and cap_fraction configure the log; prefix is run once without a
    cut to reach an interesting starting image; plan is the part swept. Both are
    tuples of boots, each a tuple of steps; a clean close and remount separate boots."""

    def __init__(self, name, segment_bytes, plan, prefix=(), cap_fraction=0.9):
        self.name = name
        self.segment_bytes = segment_bytes
        self.cap_fraction = cap_fraction
        self.prefix = prefix
        self.plan = plan


SCENARIOS = (
    # Segments of 256 bytes hold about 11 responses, so 40 appends rotate through
    # several; files past 128 bytes leave the directory's inline storage for blocks
    # of their own; the acks delete whole segments and compact the journal.
    Scenario("rotate", 256, (
        a(9) + ack(3) + a(9) + ack(4) + a(4) + ack(0),
        a(10) + ack(6) + a(8) + ack(2),
    )),
    # The 90% cap scaled down to a few blocks: the oldest unacked segments are
    # dropped to make room, which journals the drop and deletes a segment.
    Scenario("cap", 256, (
        a(12) + ack(6) + a(24),
    ), prefix=(a(20),), cap_fraction=0.15),
    # A segment larger than a flash block, as with the default 32 KB segments: the
    # prefix fills it to 4033 bytes, then the appends cross the file's first block
    # boundary (at the 287th), the segment is sealed (at the 305th), a new one
    # begins and an ack deletes the big one.
    Scenario("big", 4400, (
        a(10) + ack(5) + a(16) + ack(3),
    ), prefix=(a(282),)),
)


class PowerCutRun:
    """What the workload promised before the power went, and what was in flight."""

    def __init__(self, other=None):
        self.acknowledged = dict(other.acknowledged) if other else {}  # seq -> tuple
        self.acked_done = other.acked_done if other else 0  # highest returned ack
        self.appends = other.appends if other else 0
        self.boots = other.boots if other else 0
        # ("append", seq, tuple) | ("ack", upto) | (other step,) | None between steps
        self.inflight = None
        self.step = "start"


def response_fields(i, boot):
    """Varied but reproducible fields for the i-th append of the workload."""
    scale = 3 + i % 3
    return (
        1 + (i * 7) % scale,  # rating
        scale,
        i % 3,  # told
        5 + (i * 37) % 96,  # latency_ds
        i % 4 & (record.FLAG_RAPID | record.FLAG_CLOSED),
        boot,
        30 + 211 * i,  # uptime_s: several varint bytes
        1700000000 + 97 * i if i % 2 else 0,  # wall time, known for half of them
        1 + i // 20,  # config_version
    )


def expected_tuple(seq, fields):
    """The tuple read() returns for fields: the clock flag follows the wall time."""
    rating, scale, told, latency, flags, boot, uptime, wall, config = fields
    if wall:
        flags |= record.FLAG_CLOCK_KNOWN
    else:
        flags &= ~record.FLAG_CLOCK_KNOWN
    return (seq, rating, scale, told, latency, flags, boot, uptime, wall, config)


def new_log(scn):
    log = ResponseLog(MOUNT, segment_bytes=scn.segment_bytes, cap_fraction=scn.cap_fraction)
    log._journal.compact_at = JOURNAL_COMPACT_AT
    return log


def mount(dev):
    vfs.mount(vfs.VfsLfs2(dev, mtime=False), MOUNT)  # as the device mounts it


def unmount_quietly():
    try:
        vfs.umount(MOUNT)
    except OSError:
        pass  # not mounted: the cut came before or during the mount


def workload(scn, boots, dev, run):
    """Run boots on dev, recording promises in run; raises OSError at the power cut."""
    for steps in boots:
        run.boots += 1
        boot = run.boots
        run.step = "mount, boot %d" % boot
        run.inflight = (run.step,)
        mount(dev)
        log = new_log(scn)
        run.step = "open, boot %d" % boot
        run.inflight = (run.step,)
        log.open()
        for step in steps:
            if step == "a":
                fields = response_fields(run.appends, boot)
                seq = log.next_seq
                want = expected_tuple(seq, fields)
                run.step = "append seq %d" % seq
                run.inflight = ("append", seq, want)
                got = log.append(*fields)
                if got != seq:
                    raise ValueError("append returned seq %d, expected %d" % (got, seq))
                run.acknowledged[seq] = want
                run.appends += 1
            else:
                upto = sorted(run.acknowledged)[-1 - step[1]]
                run.step = "ack %d" % upto
                run.inflight = ("ack", upto)
                log.ack(upto)
                run.acked_done = max(run.acked_done, upto)
            run.inflight = None
        run.step = "close, boot %d" % boot
        run.inflight = (run.step,)
        log.close()
        vfs.umount(MOUNT)
    run.inflight = None
    run.step = "done"


def read_all(log):
    return log.read(0, 1 << 20)


def read_paged(log, max_bytes):
    out = []
    nxt = 0
    while True:
        batch = log.read(nxt, max_bytes)
        if not batch:
            return out
        out.extend(batch)
        nxt = batch[-1][0] + 1


def log_state(log):
    return (read_all(log), log.next_seq, log.acked_upto, log.dropped_upto,
            log.dropped_total, log.corrupt, log.counts())


def check_promises(log, promised, inflight, acked_allowed, problems, when):
    """Check what log reads back against the promises; return the records read, or
    None when reading failed."""
    if log.acked_upto not in acked_allowed:
        problems.append("%s: acked_upto %d, expected one of %r"
                        % (when, log.acked_upto, acked_allowed))
    # Sequence numbers never go back, not even over what the host already acked.
    highest = max(list(promised) + [log.acked_upto])
    if log.next_seq <= highest:
        problems.append("%s: next_seq %d, but %d was already handed out"
                        % (when, log.next_seq, highest))
    # Checked apart from read(), so that a loss shows even when read() fails.
    floor = max(log.acked_upto, log.dropped_upto)
    kept = len([seq for seq in promised if seq > floor])
    if log.counts()[1] < kept:
        problems.append("%s: the log counts %d unacked records, %d were promised"
                        % (when, log.counts()[1], kept))
    try:
        got = read_all(log)
        if read_paged(log, PAGE_BYTES) != got:
            problems.append("%s: paged read differs from a single read" % when)
    except Exception as e:
        problems.append("%s: read raised %s" % (when, describe(e)))
        return None
    seqs = [r[0] for r in got]
    for x, y in zip(seqs, seqs[1:]):
        if y <= x:
            problems.append("%s: seq not strictly increasing: %d then %d" % (when, x, y))
    seen = {}
    for rec in got:
        seq = rec[0]
        seen[seq] = seen.get(seq, 0) + 1
        want = promised.get(seq)
        if want is None and inflight and inflight[0] == "append" and inflight[1] == seq:
            want = inflight[2]  # the append cut short may or may not have landed
        if want is None:
            problems.append("%s: phantom record %r" % (when, rec))
        elif rec != want:
            problems.append("%s: record %d reads %r, expected %r" % (when, seq, rec, want))
        if seq <= log.acked_upto or seq <= log.dropped_upto:
            problems.append("%s: read returned acked or dropped record %d" % (when, seq))
    missing = []
    for seq in sorted(promised):
        if seq <= log.acked_upto:
            continue  # the host has it, so it may be gone
        n = seen.get(seq, 0)
        if n == 0 and seq <= log.dropped_upto:
            missing.append(seq)  # dropped by the cap: allowed, but must be counted
        elif n != 1:
            problems.append("%s: acknowledged record %d read %d times" % (when, seq, n))
    if len(missing) > log.dropped_total:
        problems.append("%s: %d records dropped but dropped_total is %d"
                        % (when, len(missing), log.dropped_total))
    stored, unacked = log.counts()
    if unacked != len(got):
        problems.append("%s: counts() says %d unacked, read() gives %d"
                        % (when, unacked, len(got)))
    return got


def check_recovery(scn, img, run, expect_drops, stats):
    """Mount a new device over the image left by run and check every promise; return
    a list of problems (empty when all is well). Counts what it saw into stats."""
    problems = []
    try:
        mount(SimFlash(img, BLOCKS))
    except OSError as e:
        return ["mount failed: %r" % e]
    log = new_log(scn)
    try:
        log.open()
    except Exception as e:
        unmount_quietly()
        return ["open raised " + describe(e)]

    # An ack is durable once ack() returned, and never reaches beyond what was asked.
    acked_allowed = [run.acked_done]
    if run.inflight and run.inflight[0] == "ack":
        acked_allowed.append(run.inflight[1])
    if not expect_drops and log.dropped_total:
        problems.append("%d records dropped, though the workload never reaches the cap"
                        % log.dropped_total)
    got = check_promises(log, run.acknowledged, run.inflight, acked_allowed, problems,
                         "after the cut")
    highest = max(list(run.acknowledged) + [r[0] for r in got or ()] + [log.acked_upto])
    if log.corrupt:
        stats["repaired"] = stats.get("repaired", 0) + 1
    inflight = run.inflight
    if got and inflight and inflight[0] == "append" and inflight[1] in [r[0] for r in got]:
        stats["inflight_kept"] = stats.get("inflight_kept", 0) + 1

    # The log still takes responses, numbered after everything before the cut. Keep
    # going when the read failed: the next boot shows whether these are lost.
    promised = dict(run.acknowledged)
    for i in range(3):
        fields = response_fields(1000 + i, RECOVERY_BOOT)
        seq = log.append(*fields)
        if seq <= highest:
            problems.append("new append got seq %d, not above %d" % (seq, highest))
        highest = seq
        promised[seq] = expected_tuple(seq, fields)
    before = log_state(log) if got is not None else None
    log.close()

    # Reboot: the same state from flash, so recovery left nothing half done.
    vfs.umount(MOUNT)
    mount(SimFlash(img, BLOCKS))
    log = new_log(scn)
    log.open()
    if check_promises(log, promised, run.inflight, [log.acked_upto], problems,
                      "after recovery, appends and a reboot") is not None:
        after = log_state(log)
        if before is not None and after != before:
            problems.append("reboot changed the state from %r to %r" % (before, after))
        log.ack(log.next_seq - 1)
        if read_all(log):
            problems.append("records left after acking everything")
    log.close()
    vfs.umount(MOUNT)
    return problems


def describe(exc):
    """The exception and its traceback on one line, for the JSON report."""
    out = io.StringIO()
    sys.print_exception(exc, out)
    lines = [line.strip() for line in out.getvalue().splitlines()[1:]]
    return " / ".join(lines)


def sweep(scn, fraction, img):
    img.data[:] = b"\xff" * len(img.data)
    vfs.VfsLfs2.mkfs(SimFlash(img, BLOCKS))
    start = PowerCutRun()
    workload(scn, scn.prefix, SimFlash(img, BLOCKS), start)
    start_image = bytes(img.data)

    # Dry run: how many flash operations the swept part performs.
    dev = SimFlash(img, BLOCKS)
    dry = PowerCutRun(start)
    workload(scn, scn.plan, dev, dry)
    total_ops = dev.ops
    mount(SimFlash(img, BLOCKS))
    log = new_log(scn)
    log.open()
    dropped = log.dropped_total
    log.close()
    vfs.umount(MOUNT)
    expect_drops = dropped > 0
    problems = check_recovery(scn, img, dry, expect_drops, {})
    failures = []
    if problems:
        failures.append({"cut_at": None, "step": "dry run", "problems": problems})
    failure_count = len(failures)

    # For the report: cut appends whose record survived anyway, and cut points after
    # which the log found damage to repair.
    stats = {"inflight_kept": 0, "repaired": 0, "ran_past_cut": 0}
    cut_points = 0  # runs in which operation k was reached and torn
    for k in range(total_ops):
        img.data[:] = start_image
        dev = SimFlash(img, BLOCKS)
        dev.cut_at = k
        dev.cut_fraction = fraction
        run = PowerCutRun(start)
        problems = []
        try:
            workload(scn, scn.plan, dev, run)
            # Not a failure in itself: the log ignores a failed os.remove of a segment
            # it no longer needs (open() removes it again). Whether a promise made
            # after the cut holds is what check_recovery finds out.
            stats["ran_past_cut"] += 1
        except OSError:
            pass  # the power cut, as intended
        except Exception as e:
            problems.append("unexpected exception during the run: " + describe(e))
        unmount_quietly()
        if dev.dead:
            cut_points += 1
        else:
            problems.append("operation %d was never reached" % k)
        try:
            problems.extend(check_recovery(scn, img, run, expect_drops, stats))
        except Exception as e:
            problems.append("recovery raised: " + describe(e))
            unmount_quietly()
        if problems:
            failure_count += 1
            if len(failures) < MAX_DETAILS:
                failures.append({"cut_at": k, "step": run.step, "problems": problems})
    return {
        "scenario": scn.name,
        "ops": total_ops,
        "cut_points": cut_points,
        "appends": dry.appends - start.appends,
        "dropped_in_dry_run": dropped,
        "inflight_kept": stats["inflight_kept"],
        "repaired": stats["repaired"],
        "ran_past_cut": stats["ran_past_cut"],
        "failure_count": failure_count,
        "failures": failures,
    }


def main(fraction, names=None):
    img = RamImage(BLOCKS * BLOCK_SIZE)
    results = [sweep(scn, fraction, img) for scn in SCENARIOS
               if names is None or scn.name in names]
    print("@" + json.dumps({"fraction": fraction, "scenarios": results}))


if __name__ == "__main__":
    main(float(sys.argv[1]), sys.argv[2:] or None)
