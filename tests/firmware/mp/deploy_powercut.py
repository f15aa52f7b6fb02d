# Power cuts through an app update (tests/device/test_deploy.py), on the unix port with
# firmware/ on MICROPYPATH for kiosk.hal.simflash: a NOR flash that loses power at a
# given program or erase (that one torn, half written; every later one fails).
#   micropython deploy_powercut.py PLAN.json
# PLAN.json: {"image": LittleFS image file, "helpers": deploy.DEVICE_HELPERS,
#   "settle": deploy.SETTLE, "steps": [["run", code] | ["send", path, hex]],
#   "cuts": [flash operation index, ...] (-1: none), "recovery_cuts": [n, ...]}
# For each cut, on a fresh copy of the image: the steps run as the deploy runs them on a
# kiosk (the helpers' code; mpremote's writes, 256-byte chunks) until the power fails.
# Then the power comes back and /main.py from the image runs as at boot (kiosk.boot
# stood in: the app is not started) or, on another copy, the deploy's own SETTLE; with
# recovery_cuts, main.py also loses power after that many flash operations and then
# runs again. Each outcome: a digest of every file under /kiosk (path and SHA-256), the
# SHA-256 of /main.py and /config.json, a digest of /log, and the names at the root.
# Prints one "@" + JSON line per cut ("marks": the flash operations done after each step).
import binascii
import hashlib
import json
import sys

import vfs
from kiosk.hal.simflash import BLOCK_SIZE, SimFlash


class Image:
    """RamImage's interface over a copy of the image."""

    def __init__(self, data):
        self.data = bytearray(data)

    def read(self, offset, buf):
        buf[:] = memoryview(self.data)[offset : offset + len(buf)]

    def write(self, offset, data):
        self.data[offset : offset + len(data)] = data


class _Boot:
    runs = 0

    @staticmethod
    def run():
        _Boot.runs += 1


class _Kiosk:
    boot = _Boot


with open(sys.argv[1]) as f:
    plan = json.loads(f.read())
with open(plan["image"], "rb") as f:
    pristine = f.read()
blocks = len(pristine) // BLOCK_SIZE
vfs.umount("/")  # the image is the root from here on, as on the kiosk
import os  # noqa: E402


def _sha(path):
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            h.update(f.read())
    except OSError:
        return None
    return binascii.hexlify(h.digest()).decode()


def _files(folder, found):
    try:
        entries = list(os.ilistdir(folder))
    except OSError:
        return found
    for entry in entries:
        path = folder + "/" + entry[0]
        if entry[1] == 0x4000:
            _files(path, found)
        else:
            found.append("%s %s" % (path, _sha(path)))
    return found


def _tree(folder):
    try:
        os.stat(folder)
    except OSError:
        return None
    lines = _files(folder, [])
    lines.sort()
    return binascii.hexlify(hashlib.sha256("\n".join(
        [line[len(folder):] for line in lines]).encode()).digest()).decode()


def _mount(image, cut_at=-1):
    flash = SimFlash(image, blocks)
    flash.cut_at = cut_at
    vfs.mount(vfs.VfsLfs2(flash), "/")
    os.chdir("/")
    return flash


def _outcome():
    return {"kiosk": _tree("/kiosk"), "main": _sha("/main.py"),
            "config": _sha("/config.json"), "log": _tree("/log"),
            "root": sorted(os.listdir("/"))}


def _deploy(image, cut_at):
    """The steps until the power fails: (steps done, flash operations after each)."""
    flash = _mount(image, cut_at)
    space = {}
    exec(plan["helpers"], space)
    done = 0
    marks = []
    try:
        for step in plan["steps"]:
            if step[0] == "run":
                exec(step[1], space)
            else:
                data = binascii.unhexlify(step[2])
                f = open(step[1], "wb")
                for i in range(0, len(data), 256):
                    f.write(data[i : i + 256])
                f.close()
            done += 1
            marks.append(flash.ops)
    except OSError:
        pass  # the power failed: nothing more reaches the flash
    vfs.umount("/")
    return done, marks


def _boot():
    """/main.py from the image, as the board runs it at power-on."""
    with open("/main.py") as f:
        source = f.read()
    sys.modules["kiosk"] = _Kiosk
    sys.modules["kiosk.boot"] = _Boot
    try:
        exec(source, {"__name__": "__main__"})
    finally:
        del sys.modules["kiosk"]
        del sys.modules["kiosk.boot"]


def _after(image, recover):
    copy = Image(image.data)
    _mount(copy)
    recover()
    found = _outcome()
    vfs.umount("/")
    return found


def _settle():
    space = {}
    exec(plan["helpers"], space)
    exec(plan["settle"], space)


for cut in plan["cuts"]:
    image = Image(pristine)
    done, marks = _deploy(image, cut)
    result = {"cut": cut, "done": done, "marks": marks}
    result["boot"] = _after(image, _boot)
    result["settle"] = _after(image, _settle)
    recovery = {}
    for n in plan.get("recovery_cuts", []):
        # The power fails again during main.py's own recovery, then comes back.
        twice = Image(image.data)
        _mount(twice, n)
        try:
            _boot()
        except OSError:
            pass
        vfs.umount("/")
        recovery[str(n)] = _after(twice, _boot)
    result["recovery"] = recovery
    print("@" + json.dumps(result))
