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
    vfs.mount(vfs.VfsLfs2(dev, mtime=False), MOUNT)  # as the device mounts it
    return dev


def unmount():
    vfs.umount(MOUNT)


class LaggingPanel:
    """The parts of kiosk.ui.display.Display the flow reads, for a panel that takes
    refresh_ms to show each picture (the text screen counts requests through it)."""

    def __init__(self, ticks_fn, refresh_ms):
        self.ticks = ticks_fn
        self.refresh_ms = refresh_ms
        self.requests = 0
        self.shown = 0
        self.shown_ms = 0
        self.error = None
        self._started = None

    def request(self):
        self.requests += 1
        if self._started is None:
            self._started = self.ticks()

    def step(self):
        """Finish the refresh in progress once refresh_ms have passed (one merged refresh
        covers every request made while it ran)."""
        if self._started is not None and ticks.diff(self.ticks(), self._started) >= (
                self.refresh_ms):
            self.shown = self.requests
            self.shown_ms = self.ticks()
            self._started = None if self.shown == self.requests else self.ticks()


class Rig:
    """A survey over a real LittleFS log, with a fake clock and a text screen (optionally
    behind a panel that takes refresh_ms to show each view)."""

    def __init__(self, config, image=None, blocks=64, boot=1, ticks_fn=None, refresh_ms=None):
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
        self.panel = None if refresh_ms is None else LaggingPanel(self.ticks, refresh_ms)
        self.survey = Survey(config, self.log, self.clock, self.screen, panel=self.panel)
        self.survey.show_idle()

    def _record_view(self, line):
        self.views.append(line.strip())
        if self.panel is not None:
            self.panel.request()

    def press_face(self, rating):
        """A face pressed through the input guard, as Kiosk.press does."""
        return self.survey.accepts_input() and self.survey.face(rating)

    def press_answer(self, yes):
        return self.survey.accepts_input() and self.survey.answer(yes)

    def wait(self, ms, step=50):
        """Let time pass, ticking the flow as the app's timer task would."""
        while ms > 0:
            d = min(step, ms)
            self.ticks.advance(d)
            self.clock.uptime_ms()
            if self.panel is not None:
                self.panel.step()
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


def kiosk_from_plan(path):
    """(plan, kiosk): the kiosk a test's plan file (JSON) describes, started on the
    simulated hardware of plan["board"] in plan["state"] with plan["config"] saved, its
    clock set to plan["wall"] when given (as a host sync or NTP would; https needs it)."""
    from kiosk import app
    from kiosk import config as cfg
    from kiosk.hal.sim import SimHal

    with open(path) as f:
        plan = json.loads(f.read())
    with open(plan["board"]) as f:
        board = json.loads(f.read())
    hal = SimHal(board, plan["state"])
    cfg.save(hal.fs_root + "/config.json", plan["config"])
    k = app.Kiosk(hal)
    k.start()
    if plan.get("wall"):
        k.clock.set_wall(plan["wall"], 1)
    return plan, k
