# Power-cut sweep of a config applied over the air, on the MicroPython unix port.
#
# The workload is what kiosk/ota.py does once a fetch's answer arrives: the body written
# in pieces to config.json.new through the JSON check, then kiosk.config.install (parse,
# the kiosk's own identity and network put in, validate, write the file again, rename
# over config.json). It runs once to count its flash operations N, then again from the
# same starting image with the power cut at every operation k < N. A fresh mount must
# then load config.json without a problem, and it must be the old config or the new one.
#
# Usage: micropython ota_powercut.py FRACTION   (firmware/ on MICROPYPATH)
# Prints one line: "@" + JSON {"cut_points": n, "old": n, "new": n, "failures": [...]}.
import json
import sys

import vfs
from kiosk import config as cfg
from kiosk import jsoncheck
from kiosk.hal.simflash import RamImage, SimFlash

BLOCKS = 32
MOUNT = "/flash"
PATH = MOUNT + "/config.json"
PIECE = 96  # bytes per network read, smaller than the answer buffer to cut in between
OLD = {"version": 3, "device_id": "front-1", "texts": {"en": {"question": "Old?"}},
       "sync": {"server_url": "http://10.0.0.2:8080", "device_key": "ab" * 32,
                "wifi_ssid": "store", "wifi_password": "pw"}}
NEW = {"version": 7, "texts": {"en": {"question": "New?" + " padding" * 12},
                               "fr": {"question": "Nouveau ?"}},
       "opening_hours": {"mon": ["09:00-18:00"]}, "sync": {"push_interval_s": 60}}


class Log:
    def counts(self):
        return (0, 0)


class Kiosk:
    """What kiosk.config.install reads of an app.Kiosk."""

    def __init__(self, board):
        self.config, self.config_problems = cfg.load(PATH)
        self.config_path = PATH
        self.mac = b"\x01\x02\x03\x04\x05\x06"
        self.hal = self
        self.board = board
        self.log = Log()


def apply(board):
    kiosk = Kiosk(board)
    body = json.dumps(NEW).encode()
    incoming = PATH + ".new"
    checker = jsoncheck.Checker()
    with open(incoming, "wb") as f:
        for at in range(0, len(body), PIECE):
            piece = body[at:at + PIECE]
            f.write(piece)
            checker.feed(piece)
    config, problems = cfg.install(kiosk, incoming, checker, over_the_air=True)
    if problems:
        raise ValueError("; ".join(problems))
    return config


def run(base, board, cut_at, fraction):
    image = RamImage(len(base))
    image.data[:] = base
    dev = SimFlash(image, BLOCKS)
    dev.cut_at = cut_at
    dev.cut_fraction = fraction
    try:
        vfs.mount(vfs.VfsLfs2(dev, mtime=False), MOUNT)
        apply(board)
        vfs.umount(MOUNT)
    except (OSError, ValueError):  # the cut: install reports a failed write as a problem
        if cut_at < 0:
            raise
        try:
            vfs.umount(MOUNT)
        except OSError:
            pass
    return image, dev.ops


def main(fraction, board_path):
    with open(board_path) as f:
        board = json.loads(f.read())
    image = RamImage(BLOCKS * 4096)
    vfs.VfsLfs2.mkfs(SimFlash(image, BLOCKS))
    vfs.mount(vfs.VfsLfs2(SimFlash(image, BLOCKS), mtime=False), MOUNT)
    cfg.save(PATH, OLD)
    vfs.umount(MOUNT)
    base = bytes(image.data)
    _, total = run(base, board, -1, fraction)
    summary = {"cut_points": total, "old": 0, "new": 0, "failures": []}
    for cut_at in range(total + 1):  # the last one: no cut at all
        after, _ = run(base, board, cut_at if cut_at < total else -1, fraction)
        vfs.mount(vfs.VfsLfs2(SimFlash(after, BLOCKS), mtime=False), MOUNT)
        try:
            config, problems = cfg.load(PATH)
        finally:
            vfs.umount(MOUNT)
        question = cfg.texts(config)["question"]
        if problems:
            summary["failures"].append([cut_at, problems])
        elif config["version"] == 3 and question == "Old?":
            summary["old"] += 1
        elif (config["version"] == 7 and question.startswith("New?")
              and config["sync"]["device_key"] == "ab" * 32 and config["device_id"] == "front-1"
              and config["sync"]["push_interval_s"] == 60):
            summary["new"] += 1
        else:
            summary["failures"].append([cut_at, "a mix: %r" % config])
    print("@" + json.dumps(summary))


main(float(sys.argv[-2]), sys.argv[-1])
