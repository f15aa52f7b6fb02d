# The hardware test's commands on the serial sync (docs/protocol.md): INPUT reports every
# press and tap instead of acting on it, PATTERN draws a test pattern. Loaded by
# kiosk/serial_sync.py at the first such command only: a kiosk that is never tested keeps
# the ~9 KB of this code off its heap.
import asyncio

from kiosk import flow as flow_mod
from kiosk import screen, ticks
from kiosk.serial_sync import _Reject, _args, _number
from micropython import const

MAX_INPUT_S = const(600)  # the longest INPUT: the kiosk is back for customers after it
PATTERN_S = const(120)  # a test pattern gives the screen back to the survey after this
PATTERNS = ("checker", "border", "ink", "paper")
_PATTERN_WAIT_MS = const(15000)  # PATTERN answers once the panel is done, or after this
_EVENTS = const(16)  # presses and taps waiting to be sent; more are counted as lost
_CHECKER = const(8)  # side of a checkerboard square, pixels
_CORNER = const(16)  # side of the square that marks the top-left corner
_SHOWN = const(48)  # characters of a bad pattern name quoted back
_I = const(0x49)
_P = const(0x50)


class HardwareTest:
    """The state of INPUT and PATTERN on one serial sync (kiosk.serial_sync.SerialSync):
    INPUT's tag while presses are reported (0: off), its deadline, the events waiting to
    be sent and their count; the pattern on the glass and its deadline."""

    def __init__(self, sync):
        self._sync = sync
        self.kiosk = sync.kiosk
        self._input_tag = 0
        self._input_until = 0
        self._events = []
        self._event_count = 0
        self._events_lost = 0
        self._touch_check = None
        self._pattern = None  # the name of the pattern on the glass, or None
        self._pattern_until = 0

    def active(self):
        return bool(self._input_tag) or self._pattern is not None

    def _now(self):
        return self.kiosk.clock.ticks_ms()

    async def input(self, tag, args):
        seconds = _number(_args(args, 1, "INPUT <seconds>")[0], 0, MAX_INPUT_S, "seconds")
        kiosk = self.kiosk
        if not seconds:
            events = self._event_count
            self._stop_input()
            await self._sync.send_json(_I, tag, {"input": False, "events": events})
            return
        self._sync.check_idle()
        if not self._input_tag:
            self._events = []
            self._event_count = self._events_lost = 0
            # The app's entry points for debounced input, for as long as INPUT lasts.
            kiosk.press = self._pressed
            kiosk.tap = self._tapped
        self._input_tag = tag  # a repeated INPUT (its answer lost) moves the events here
        self._input_until = ticks.add(self._now(), seconds * 1000)
        if self._pattern is None:
            self._show_input_screen()
        touch = kiosk.touch_taps is not None
        await self._sync.send_json(_I, tag, {"input": True, "seconds": seconds,
                                   "buttons": len(kiosk.buttons), "touch": touch,
                                   "targets": kiosk.config["scale"] if touch else 0})

    def _pressed(self, index):
        # Called from the input task: queue only; the frames go out from this task.
        self._event(("button", index), "button %d" % index)

    def _tapped(self, point):
        check = self._touch_check
        target = check.tap(point) if check is not None else -1
        self._event(("tap", point >> 16, point & 0xFFFF, target), None)

    def _event(self, event, seen):
        self._event_count += 1
        if len(self._events) < _EVENTS:
            self._events.append((self._event_count, event))
        else:
            self._events_lost += 1
        if seen is not None and self._pattern is None and self._touch_check is None:
            self._show_input_screen(seen)

    def _show_input_screen(self, seen=None):
        """Buttons: a service-style screen naming the last press. Touch: the touch check
        (kiosk.ui.touchcheck), which marks where each tap landed."""
        kiosk = self.kiosk
        if kiosk.touch_taps is not None and kiosk.screens is not None:
            if self._touch_check is None:
                from kiosk.ui.touchcheck import TouchCheck

                self._touch_check = TouchCheck(kiosk.screens, kiosk.hal.touch,
                                               kiosk.config["scale"])
            self._touch_check.open()
            return
        note = "pressed: %s (%d so far)" % (seen, self._event_count) if seen else "no press yet"
        kiosk.flow.display.show(screen.VIEW_SERVICE, "Input test: press each button", (),
                                note)

    def _stop_input(self):
        if not self._input_tag:
            return
        kiosk = self.kiosk
        del kiosk.press
        del kiosk.tap
        self._input_tag = 0
        self._events = []
        self._touch_check = None
        if self._pattern is None:
            self._back_to_customers()

    def _back_to_customers(self):
        flow = self.kiosk.flow
        if flow.state == flow_mod.IDLE:
            flow.show_idle()

    async def step(self):
        """Send the events waiting; end what has passed its deadline."""
        events = self._events
        while events:
            n, event = events.pop(0)
            if event[0] == "button":
                body = {"n": n, "button": event[1]}
            else:
                body = {"n": n, "tap": [event[1], event[2]], "target": event[3]}
            await self._sync.send_json(_I, self._input_tag, body)
        now = self._now()
        if self._input_tag and ticks.diff(now, self._input_until) >= 0:
            tag = self._input_tag
            answer = {"input": False, "events": self._event_count, "lost": self._events_lost,
                      "ended": "deadline"}
            self._stop_input()
            await self._sync.send_json(_I, tag, answer)
        if self._pattern is not None and ticks.diff(now, self._pattern_until) >= 0:
            self._end_pattern()

    def _end_pattern(self):
        self._pattern = None
        if self._input_tag:
            self._show_input_screen()
        else:
            self._back_to_customers()

    async def pattern(self, tag, args):
        name = _args(args, 1, "PATTERN %s|off" % "|".join(PATTERNS))[0]
        kiosk = self.kiosk
        if name == "off":
            if self._pattern is not None:
                self._end_pattern()
            await self._sync.send_json(_P, tag, {"pattern": None})
            return
        if name not in PATTERNS:
            raise _Reject("unknown pattern %r: %s or off" % (name[:_SHOWN], ", ".join(PATTERNS)))
        display = kiosk.display
        screens = kiosk.screens
        if display is None or screens is None:
            raise _Reject("this kiosk has no panel")
        self._sync.check_idle()
        _draw_pattern(screens.fb, screens.width, screens.height, screens.ink, screens.paper,
                      name)
        self._pattern = name
        self._pattern_until = ticks.add(self._now(), PATTERN_S * 1000)
        failures = display.failures
        full = display.full_refreshes
        display.request(True)  # a full refresh: every pixel driven, no ghost of the last view
        started = self._now()
        while display.busy() and display.failures == failures and ticks.diff(
                self._now(), started) < _PATTERN_WAIT_MS:
            await asyncio.sleep_ms(self._sync.poll_ms)
        shown = not display.busy() and display.failures == failures
        await self._sync.send_json(_P, tag, {"pattern": name, "width": screens.width,
                                   "height": screens.height, "shown": shown,
                                   "full_refreshes": display.full_refreshes - full,
                                   "refresh_ms": ticks.diff(self._now(), started),
                                   "error": display.error})

def _draw_pattern(fb, width, height, ink, paper, name):
    """A test pattern in logical coordinates (docs/protocol.md, PATTERN)."""
    if name == "ink":
        fb.fill(ink)
    elif name == "paper":
        fb.fill(paper)
    elif name == "checker":
        fb.fill(paper)
        for y in range(0, height, _CHECKER):
            for x in range(0, width, _CHECKER):
                if (x // _CHECKER + y // _CHECKER) % 2 == 0:
                    fb.fill_rect(x, y, _CHECKER, _CHECKER, ink)
    else:  # border: the outermost pixels, the top-left corner, a diagonal
        fb.fill(paper)
        fb.rect(0, 0, width, height, ink)
        fb.fill_rect(0, 0, _CORNER, _CORNER, ink)
        fb.line(0, 0, width - 1, height - 1, ink)
