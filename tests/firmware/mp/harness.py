# Test helpers that run inside MicroPython: a fake wrapping clock and a RAM flash.
import json

import vfs
from kiosk import ticks
from kiosk.clock import Clock
from kiosk.flow import Survey
from kiosk.hal.simflash import RamImage, SimFlash
from kiosk.log import ResponseLog
from kiosk.screen import TextScreen

MOUNT = "/flash"


class FakeTicks:
    """Milliseconds that wrap like the ESP32's ticks_ms(); starts just before the wrap."""

    def __init__(self, before_wrap_ms=1500):
        self.now = ticks.PERIOD - before_wrap_ms

    def __call__(self):
        return self.now

    def advance(self, ms):
        self.now = ticks.add(self.now, ms)


def ram_flash(blocks=64):
    image = RamImage(blocks * 4096)
    dev = SimFlash(image, blocks)
    vfs.VfsLfs2.mkfs(dev)
    return image, blocks


def mount(image, blocks):
    dev = SimFlash(image, blocks)
    vfs.mount(vfs.VfsLfs2(dev), MOUNT)
    return dev


def unmount():
    vfs.umount(MOUNT)


class Rig:
    """A survey over a real LittleFS log, with a fake clock and a text screen."""

    def __init__(self, config, image=None, blocks=64, boot=1, ticks_fn=None):
        if image is None:
            image, blocks = ram_flash(blocks)
        self.image, self.blocks = image, blocks
        self.dev = mount(image, blocks)
        self.ticks = ticks_fn or FakeTicks()
        self.log = ResponseLog(MOUNT)
        self.log.open()
        self.clock = Clock(self.ticks, boot, MOUNT)
        self.clock.start()
        self.views = []
        self.screen = TextScreen(self._record_view)
        self.survey = Survey(config, self.log, self.clock, self.screen)
        self.survey.show_idle()

    def _record_view(self, line):
        self.views.append(line.strip())

    def wait(self, ms, step=50):
        """Let time pass, ticking the flow as the app's timer task would."""
        while ms > 0:
            d = min(step, ms)
            self.ticks.advance(d)
            self.clock.uptime_ms()
            self.survey.tick()
            ms -= d

    def records(self):
        return self.log.read(1, 100000)

    def close(self):
        self.log.close()
        self.clock.close()
        unmount()


def emit(obj):
    print("@" + json.dumps(obj))
