# Wires the kiosk together from a hardware layer and runs it as asyncio tasks.
import asyncio
import gc

from kiosk import FIRMWARE_VERSION, civil, record, resets, ticks
from kiosk import config as cfg
from kiosk import flow as flow_mod
from kiosk.buttons import Debouncer
from kiosk.clock import LATEST_WALL, Clock
from kiosk.journal import Journal
from kiosk.log import ResponseLog
from kiosk.screen import VIEW_SERVICE, ScreenTee
from micropython import const

_BOOT = const(1)
_CRASH = const(2)
_SAFE_MODE_CRASHES = const(3)
_TICK_MS = const(50)
_SUPERVISE_MS = const(100)
# Boards without a service button open the service screen when the two end face buttons
# are held together this long (docs/flow.md): a customer presses one face, not both ends
# for seconds. A press of an end button waits up to _CHORD_MS (or its release) to see
# whether it is the start of that hold, so the technician's hold is never a rating.
_SERVICE_HOLD_MS = const(3000)
_CHORD_MS = const(200)


class Kiosk:
    def __init__(self, hal):
        self.hal = hal
        board = hal.board
        self.root = hal.fs_root
        self.buttons = board["buttons"]
        self.poll_ms = board.get("poll_ms", 10)
        self.debouncer = Debouncer(board.get("stable_polls", 3))
        self.face_buttons = sum(1 for b in self.buttons if b.get("face"))
        self._chord = 0  # mask of the end face buttons whose long hold opens the service
        if not board.get("touch") and not any(b.get("service") for b in self.buttons):
            for i, b in enumerate(self.buttons):
                if b.get("face") in (1, self.face_buttons):
                    self._chord |= 1 << i
        self._pending = 0  # end-button presses waiting to be told from the start of a hold
        self._pending_at = 0
        self._chord_since = -1  # ticks since the ends are held together, -1 while not
        self.config_path = self.root + "/config.json"
        self.config, self.config_problems = cfg.load(self.config_path)
        # A kiosk nobody has named goes by its MAC (docs/protocol.md), so that it syncs
        # and pushes before it is provisioned.
        self.mac = hal.unique_id()
        cfg.name_bare(self.config, self.mac)
        problem = cfg.board_problem(self.config, board)
        if problem:
            faces = sum(1 for b in self.buttons if b.get("face"))
            self.config_problems.append("%s: using %d" % (problem, faces))
            self.config["scale"] = faces
        self._boots = Journal(self.root + "/boot")
        # How the last boot ended (kiosk/resets.py): the port's cause told apart by what
        # the RTC memory kept; start() adds the witness of the RTC time.
        self.reset_cause = resets.classify(hal.reset_cause(), hal.reset_memory())
        self.boot = self.crash_streak = self.crashes = 0
        self.log = ResponseLog(self.root)
        self.clock = Clock(hal.ticks_ms, 0, self.root, hal.rtc_read, hal.rtc_write,
                           hal.kept_time_read, hal.kept_time_write)
        self.display = self.screens = self.touch_taps = self.sync = None
        self.touch_check = None  # the service screen's, once a tap opened it
        self._checked_opening = 0  # the service screen opening it belongs to
        # The long-lived large buffers (frame, fonts, sync frames) come first, each after a
        # collection, while the heap still has room in one piece.
        gc.collect()
        screen = self._make_screens(hal)
        self.flow = flow_mod.Survey(self.config, self.log, self.clock, screen,
                                    panel=self.display, service_text=self.service_text)
        if hal.console_sync:
            # The console (the REPL UART) carries the serial sync while the app runs.
            from kiosk.serial_sync import ConsoleReader, SerialSync

            gc.collect()
            self.sync = SerialSync(self, ConsoleReader(),
                                   write_chunk=hal.console_write_chunk)
        self.push = None
        if push_configured(self.config):
            # WiFi push to the aggregator (docs/wifi.md): only with a server, a key and an
            # id at boot; settings changed later by a CONFIG upload apply at its next try.
            from kiosk.push import Push

            gc.collect()
            self.push = Push(self, hal.open_connection)
        self.running = False
        self.maintenance_s = 0  # set by stop_for_maintenance: main() returns
        self.last_failure = None  # what kiosk/boot.py last recorded when a start failed

    def stop_for_maintenance(self, seconds):
        """A technician's stop (a serial command): the app ends its tasks at once and
        kiosk/boot.py leaves the REPL free for `seconds`, the watchdog fed, then restarts.
        Nothing of it is a crash."""
        self.maintenance_s = seconds

    def _make_screens(self, hal):
        """The e-ink screens on the board's panel (plus the HAL's own screen, if it has
        one, e.g. the simulator's console echo); the HAL's screen alone without a panel."""
        panel = hal.panel
        if panel is None:
            return hal.screen
        from kiosk.touch import TouchTaps
        from kiosk.ui.display import Display
        from kiosk.ui.screens import Screens

        self.display = Display(panel, self.config["full_refresh_every"], ticks_ms=hal.ticks_ms)
        self.screens = Screens(panel.framebuf, panel.width, panel.height, panel.INK,
                               panel.PAPER, hal.board, hal.fonts_dir, self.display.request)
        if hal.touch is not None:
            self.touch_taps = TouchTaps(hal.touch.read_xy)
        if hal.screen is None:
            return self.screens
        return ScreenTee(self.screens, hal.screen)

    def _read_boots(self):
        """(last boot number, boots in a row that ended in a crash, crashes in all),
        counting this boot's cause: a watchdog reset or panic ended the last boot too."""
        last = (0, 0, 0)
        crashed = False
        for kind, values in self._boots.scan():
            if kind == _BOOT and len(values) == 3:
                last = values
                crashed = False
            elif kind == _CRASH:
                crashed = True
        boot, streak, crashes = last
        if crashed or self.reset_cause in resets.CRASHES:
            return boot, streak + 1, crashes + 1
        return boot, 0, crashes

    def _append_boot(self, boot, streak, crashes):
        # Each boot entry carries the streak and total so far, so compaction keeps one entry.
        if self._boots.append(_BOOT, (boot, streak, crashes)):
            self._boots.rewrite([(_BOOT, (boot, streak, crashes))])

    def record_crash(self):
        self._boots.append(_CRASH, ())

    def start(self):
        """Count this boot, scan the log and the clock journal, show the first screen."""
        last, self.crash_streak, self.crashes = self._read_boots()
        self.boot = self.clock.boot = last + 1
        self._append_boot(self.boot, self.crash_streak, self.crashes)
        self.log.open()
        rtc_at_boot = self.hal.kept_time_read()  # before the clock sets the RTC
        self.clock.start()
        # A power-on through which the RTC kept the previous boot's time was a brownout.
        self.reset_cause = resets.classify(
            self.hal.reset_cause(), self.hal.reset_memory(),
            resets.time_kept(rtc_at_boot, self.clock.anchors, self.boot, LATEST_WALL))
        self.last_failure = _read_text(self.root + LAST_FAILURE_NAME)
        if self.config_problems:
            self.hal.console_write("config: " + "; ".join(self.config_problems) + "\n")
            self.flow.config_problem = True
        self.flow.show_idle()

    def inspect(self):
        """Open the stored state without counting a boot (for dumps and tools)."""
        self.boot, self.crash_streak, self.crashes = self._read_boots()
        self.clock.boot = self.boot
        self.log.open()
        self.clock.start(carry=False)  # no boot here: nothing was reset

    def status(self):
        """Device health for the host: never holds a secret."""
        return {
            "firmware": FIRMWARE_VERSION,
            "device_id": self.config["device_id"],
            "board": self.hal.board["name"],
            "boot": self.boot,
            "reset_cause": self.reset_cause,
            "crashes": self.crashes,
            "last_failure": self.last_failure,
            "log": self.log.status(),
            "clock": self.clock.state(),
            "config_version": self.config["version"],
            "config_problems": self.config_problems,
            "store_errors": self.flow.store_errors,
            "state": flow_mod.STATE_NAMES[self.flow.state],
            "input": {"early": self.flow.early_presses},
            "display": self.display.status() if self.display else None,
            "touch": self._touch_status(),
            "push": self._push_status(),
        }

    def _touch_status(self):
        touch = self.hal.touch
        if touch is None:
            return None
        status = touch.status()
        check = self.touch_check
        if check is not None:
            # The last touch check's taps, and the face the last one chose (None: none).
            status["check"] = {"taps": check.taps,
                               "hit": check.hit + 1 if check.hit >= 0 else None}
        return status

    def service_text(self):
        """(title, details) of the technician's service screen: one fact a line."""
        import sys

        log = self.log.status()
        clock = self.clock.state()
        problems = list(self.config_problems)
        if self.flow.store_errors:
            problems.append("%d responses could not be stored" % self.flow.store_errors)
        if log["dropped"]:
            problems.append("flash full: %d oldest dropped, sync" % log["dropped"])
        if not clock["known"]:
            problems.append("clock not set: sync or WiFi")
        touch = self.hal.touch
        if touch is not None and touch.error:
            problems.append("touch: %s" % touch.error)
        lines = ["id %s  board %s" % (self.config["device_id"] or "(none)",
                                      self.hal.board["name"]),
                 "app %s  MicroPython %d.%d.%d" % ((FIRMWARE_VERSION,)
                                                   + tuple(sys.implementation.version[:3]))]
        push = self._push_status()
        if push is None:
            lines.append("wifi, push: not set up")
        else:
            network = push.get("network") or {}
            lines.append("wifi %s %s" % ("up" if network.get("up") else "down",
                                         network.get("address") or ""))
            lines.append("push %s, %d waiting, %s" % (
                push["state"], push["pending"],
                "last ok " + _when(push["last_ok_wall"]) if push["last_ok_wall"] else "never ok"))
            if push["last_error"]:
                problems.append("push: %s" % push["last_error"])
        lines.append("synced to #%d of #%d" % (log["acked_upto"], log["next_seq"] - 1))
        lines.append("flash %d%% full, %d kept, %d dropped" % (
            int(log["fs_fill"] * 100), log["stored"], log["dropped"]))
        lines.append("clock %s" % ("%s %s" % (clock["source"], _when(clock["wall"]))
                                   if clock["known"] else "not set"))
        lines.append("boot %d, crashes %d" % (self.boot, self.crashes))
        if self.last_failure:
            lines.append("last failure: %s" % self.last_failure)
        if touch is not None:
            lines.append("tap the screen to check the touch")
        title = "Service: %d to fix" % len(problems) if problems else "Service: all well"
        return title, "\n".join(problems + lines)

    def _push_status(self):
        if self.push is None:
            return None
        status = self.push.status()
        network = self.hal.network_status()
        if network is not None:
            status["network"] = network
        return status

    # -- input ---------------------------------------------------------------
    def press(self, index):
        """Act on a debounced press of button index, according to the flow's state."""
        if not 0 <= index < len(self.buttons):
            return
        button = self.buttons[index]
        if button.get("service"):
            # The technician's: not a customer's press, so no input guard.
            self.flow.request_service()
            return
        if not self.flow.accepts_input():
            return
        answer = button.get("answer")
        if self.flow.state == flow_mod.FOLLOW_UP and answer:
            # A button that is both a face and an answer answers the question on screen.
            self.flow.answer(answer == "yes")
        elif button.get("face"):
            # During the follow-up a face-only button is a new customer (docs/flow.md). A
            # scale smaller than the button count is laid over all the face buttons.
            rating = cfg.scale_rating(button["face"], self.face_buttons, self.config["scale"])
            if rating:
                self.flow.face(rating)

    def tap(self, point):
        """Act on a debounced touch at point ((x << 16) | y, logical screen coordinates)."""
        screens = self.screens
        if self.flow.state == flow_mod.SERVICE:
            self._check_touch(point)
            return
        if self.flow.closed_shown():
            # The closed screen has no targets: a tap anywhere only brings up the question.
            if self.flow.accepts_input():
                self.flow.wake()
            return
        option = screens.target_at(point >> 16, point & 0xFFFF) if screens else -1
        if option < 0 or not self.flow.accepts_input():
            return
        if self.flow.state == flow_mod.FOLLOW_UP:
            self.flow.answer(option == 1)  # the follow-up's options are (no, yes)
        else:
            self.flow.face(option + 1)

    def _check_touch(self, point):
        # On the service screen a tap opens the touch check (kiosk/ui/touchcheck.py), which
        # then marks where each tap lands; nothing of it is a response. The service button
        # (or the service screen's timeout) brings the customers back; each opening of the
        # service screen starts a fresh check.
        check = self.touch_check
        if check is None or self._checked_opening != self.flow.service_opens:
            from kiosk.ui.touchcheck import TouchCheck

            check = self.touch_check = TouchCheck(self.screens, self.hal.touch)
            self._checked_opening = self.flow.service_opens
            check.open()
        else:
            check.tap(point)
        self.flow.keep_service()

    def poll_inputs(self):
        """One poll of the buttons and the touch panel (every poll_ms from a task)."""
        debouncer = self.debouncer
        debouncer.poll(self.hal.read_buttons())
        index = debouncer.pop()
        while index >= 0:
            if self._chord & (1 << index):
                if not self._pending:
                    self._pending_at = self.clock.ticks_ms()
                self._pending |= 1 << index
            else:
                self.press(index)
            index = debouncer.pop()
        if self._chord:
            self._watch_chord(debouncer.held())
        taps = self.touch_taps
        if taps is not None:
            taps.poll()
            point = taps.pop()
            while point >= 0:
                self.tap(point)
                point = taps.pop()

    def _watch_chord(self, held):
        now = self.clock.ticks_ms()
        chord = self._chord
        if held & chord == chord:
            self._pending = 0  # both ends at once: the technician, never a rating
            since = self._chord_since
            if since == -1:
                self._chord_since = now
            elif since >= 0 and ticks.diff(now, since) >= _SERVICE_HOLD_MS:
                self._chord_since = -2  # done: once per hold, until both are let go
                self.flow.request_service()
            return
        if self._chord_since >= 0 or not held & chord:
            self._chord_since = -1
        pending = self._pending
        if pending and (not pending & held or ticks.diff(now, self._pending_at) >= _CHORD_MS):
            self._pending = 0
            for index in range(len(self.buttons)):
                if pending & (1 << index):
                    self.press(index)

    async def _poll_inputs(self):
        sleep_ms = asyncio.sleep_ms
        while self.running:
            self.poll_inputs()
            await sleep_ms(self.poll_ms)

    async def _timers(self):
        while self.running:
            self.clock.uptime_ms()
            self.flow.tick()
            self.hal.feed_watchdog()
            await asyncio.sleep_ms(_TICK_MS)

    async def _keep_alive(self):
        # Safe mode's only timer: the clock's ticks counted and the watchdog fed, so the
        # kiosk stays up for the technician (and the serial sync) until it is reset.
        while self.running:
            self.clock.uptime_ms()
            self.hal.feed_watchdog()
            await asyncio.sleep_ms(_TICK_MS)

    async def main(self, until=None, safe=False):
        """Run the kiosk's tasks until the awaitable `until` finishes, or forever. In safe
        mode only the display, the serial sync and the watchdog run: no customer input, no
        push, none of the board's optional tasks, so the data can still be pulled while
        whatever crashed three times stays off."""
        self.running = True
        if safe:
            background = [asyncio.create_task(self._keep_alive())]
        else:
            background = [asyncio.create_task(self._poll_inputs()),
                          asyncio.create_task(self._timers())]
        if self.display is not None:
            background.append(asyncio.create_task(self.display.run()))
        if self.sync is not None:
            background.append(asyncio.create_task(self.sync.run()))
        if not safe:
            if self.push is not None:
                background.append(asyncio.create_task(self.push.run()))
            for task in self.hal.tasks(self):
                background.append(asyncio.create_task(task))
        ending = asyncio.create_task(until) if until is not None else None
        try:
            while True:
                # A task that dies would leave a kiosk that looks alive but ignores taps
                # (and keeps feeding the watchdog): let its error end the app instead, so
                # it is recorded as a crash and the device restarts.
                for task in background:
                    if task.done():
                        await task
                        raise RuntimeError("a kiosk task stopped")
                if ending is not None and ending.done():
                    return await ending
                if self.maintenance_s:
                    return None
                await asyncio.sleep_ms(_SUPERVISE_MS)
        finally:
            self.running = False
            for task in background:
                task.cancel()

    def close(self):
        self.log.close()
        self.clock.close()
        self._boots.close()


LAST_FAILURE_NAME = "/last_failure"
"""Where kiosk/boot.py records the last failure to start or run (under the flash root)."""


def _read_text(path):
    try:
        with open(path) as f:
            return f.read(200)
    except OSError:
        return None


def _when(wall):
    """Unix seconds as YYYY-MM-DD HH:MM (UTC) for the service screen."""
    y, mo, d, h, mi = civil.civil_from_seconds(wall)[:5]
    return "%04d-%02d-%02d %02d:%02dZ" % (y, mo, d, h, mi)


def push_configured(config):
    sync = config["sync"]
    return bool(config["device_id"] and sync["server_url"] and sync["device_key"])


def describe(rec):
    """A response tuple as a dict, for consoles and dumps."""
    return {
        "seq": rec[record.SEQ],
        "rating": rec[record.RATING],
        "scale": rec[record.SCALE],
        "told_next": record.TOLD_NAMES[rec[record.TOLD]],
        "latency_s": rec[record.LATENCY_DS] / 10,
        "rapid": bool(rec[record.FLAGS] & record.FLAG_RAPID),
        "closed": bool(rec[record.FLAGS] & record.FLAG_CLOSED),
        "boot": rec[record.BOOT],
        "uptime_s": rec[record.UPTIME_S],
        "wall": rec[record.WALL] or None,
        "config_version": rec[record.CONFIG_VERSION],
    }


def run(hal, until=None, on_ready=None):
    """Boot the kiosk on a hardware layer and run it. After repeated crashes it stays in
    safe mode: the service screen shows on the panel (and the HAL's screen) and only the
    display and the serial sync run, until the technician resets the board."""
    kiosk = Kiosk(hal)
    try:
        kiosk.start()
        safe = kiosk.crash_streak >= _SAFE_MODE_CRASHES
        if safe:
            # Over the idle screen start() drew: the panel (and the HAL's screen) say so.
            kiosk.flow.display.show(VIEW_SERVICE,
                                    "Safe mode: %d crashes in a row" % kiosk.crash_streak, (),
                                    "connect USB: deskpulse sync still works")
        if on_ready is not None:
            on_ready(kiosk)
        asyncio.run(kiosk.main(until, safe))
    except Exception:
        kiosk.record_crash()
        raise
    finally:
        kiosk.close()
    return kiosk
