# The simulator's channel to a person at a terminal (`deskpulse sim --interactive`): the
# host's key presses come in, every new picture on the simulated glass and the kiosk's
# status go out. The console stays the serial sync's, so the channel is two FIFOs that the
# host made (and holds open for reading and writing, so opening them here never blocks):
#
#   DIR/keys    host -> kiosk, one action a line:
#                 press I    hold button index I until the debouncer takes it, let go
#                 tap N      a finger on the middle of touch target N of the screen shown
#                 tap N K    the same, only while the screen shown is of kind K
#                 wifi       switch the simulated network off / back on
#   DIR/frames  kiosk -> host, one message a line:
#                 F W H B64  the glass (W x H logical pixels, MONO_HLSB rows, 1 = ink)
#                 S JSON     status: state, screen, targets, stored, unsynced, clock, wifi,
#                            push
#
# The host decides which key means which button (it knows the board); this side only acts
# like a finger, so every press still goes through the real debouncer and flow.
import asyncio
import binascii
import json
import select

from kiosk import flow
from micropython import const

_POLL_MS = const(50)  # how often the glass is compared with what was last sent
_STATUS_EVERY = const(5)  # polls between status checks: the clock line moves each second
_PIPE_BUF = const(4096)  # POSIX: once poll says a pipe is writable, this much never blocks


class Channel:
    def __init__(self, folder, hal, kiosk):
        self.hal = hal
        self.kiosk = kiosk
        # FileIO on a FIFO: readable through asyncio's poll, so waiting for a key never
        # holds up the kiosk's own tasks.
        self._keys = asyncio.StreamReader(open(folder + "/keys", "rb"))
        self._frames = open(folder + "/frames", "wb")
        self._writable = select.poll()
        self._writable.register(self._frames, select.POLLOUT)
        self._glass = None  # crc32 of the glass last sent
        self._status = None  # the status message last sent
        self.actions = 0

    # -- key presses ----------------------------------------------------------------
    async def serve_keys(self):
        """Act on each line from the host, one after the other (a fast typist's keys
        queue in the FIFO, like taps a customer makes in a row)."""
        while True:
            line = await self._keys.readline()
            if not line:
                return  # the host closed its end: nobody is at the keys any more
            await self.act(line)

    async def act(self, line):
        words = line.split()
        # The host is our own `deskpulse sim`: a line it does not send is ignored
        # rather than allowed to crash the simulated kiosk.
        if len(words) == 2 and words[0] == b"press" and words[1].isdigit():
            index = int(words[1])
            if index < len(self.hal.levels):
                await self._ready()
                await self._press(index)
        elif 2 <= len(words) <= 3 and words[0] == b"tap" and words[1].isdigit():
            await self._ready()
            await self._tap(int(words[1]), words[2].decode() if len(words) == 3 else None)
        elif words == [b"wifi"]:
            self.hal.set_network(not self.hal.network_up)
        else:
            return
        self.actions += 1

    async def _ready(self):
        # A person presses for the screen they see: a key typed ahead waits until the
        # glass shows the current view and the kiosk takes input (input_guard_ms), or it
        # would be an early press for a screen nobody has seen yet (docs/flow.md).
        kiosk = self.kiosk
        while not kiosk.flow.ready_for_input():
            await asyncio.sleep_ms(kiosk.poll_ms)

    async def _press(self, index):
        # Like a finger: hold until the click registers, then let go until it is released.
        kiosk = self.kiosk
        debouncer = kiosk.debouncer
        before = debouncer.presses
        self.hal.set_pressed(index, True)
        while debouncer.presses == before:
            await asyncio.sleep_ms(kiosk.poll_ms)
        self.hal.set_pressed(index, False)
        while debouncer.held() & (1 << index):
            await asyncio.sleep_ms(kiosk.poll_ms)

    async def _tap(self, option, kind=None):
        # A person taps what the glass shows: a target the current screen does not have
        # is empty paper, where a tap does nothing.
        kiosk = self.kiosk
        screens = kiosk.screens
        taps = kiosk.touch_taps
        if screens is None or taps is None:
            return
        if kind is None and kiosk.flow.closed_shown():
            # The closed screen has no targets: a tap anywhere brings up the question.
            x, y = screens.width // 2, screens.height // 2
        elif option >= len(screens.boxes) or (kind is not None and screens.kind != kind):
            return
        else:
            x, y = screens.boxes[option].centre()
        before = taps.taps
        self.hal.touch_at(x, y)
        while taps.taps == before:
            await asyncio.sleep_ms(kiosk.poll_ms)
        self.hal.release()
        while taps.touching():
            await asyncio.sleep_ms(kiosk.poll_ms)

    # -- the glass and the status -----------------------------------------------------
    async def publish(self):
        """Send the glass whenever it changed and the status whenever it changed."""
        panel = self.hal.sim_panel
        display = self.hal.board.get("display") or {}
        rotation = display.get("rotation", 0)
        polls = 0
        while True:
            # The glass itself, not the refresh counters: it changes when the controller
            # refreshes, which is what a person in front of the kiosk would see.
            if panel is not None:
                crc = binascii.crc32(panel.shown)
                if crc != self._glass:
                    self._glass = crc
                    width, height, bits = panel.image(rotation)
                    await self._send(b"F %d %d " % (width, height) + binascii.b2a_base64(bits))
                    polls = 0  # a new picture usually comes with a new state
            if polls % _STATUS_EVERY == 0:
                message = json.dumps(self.status())
                if message != self._status:
                    self._status = message
                    await self._send(b"S " + message.encode() + b"\n")
            polls += 1
            await asyncio.sleep_ms(_POLL_MS)

    def status(self):
        kiosk = self.kiosk
        stored, unsynced = kiosk.log.counts()
        screens = kiosk.screens
        push = kiosk.push
        return {
            "state": flow.STATE_NAMES[kiosk.flow.state],
            "screen": screens.kind if screens is not None else None,
            "targets": len(screens.boxes) if screens is not None else 0,
            "stored": stored,
            "unsynced": unsynced,
            "clock": kiosk.clock.state(),
            "wifi": self.hal.network_up,
            "push": push.status()["state"] if push is not None else None,
            "actions": self.actions,
        }

    async def _send(self, data):
        # A blocking write into a full pipe would freeze every kiosk task: write at most
        # PIPE_BUF bytes at a time, and only once poll says the pipe has room.
        view = memoryview(data)
        start = 0
        while start < len(data):
            if not self._writable.poll(0):
                await asyncio.sleep_ms(_POLL_MS)
                continue
            start += self._frames.write(view[start:start + _PIPE_BUF]) or 0


async def serve(folder, hal, kiosk):
    """Run the channel until the simulator is stopped."""
    channel = Channel(folder, hal, kiosk)
    await asyncio.gather(channel.serve_keys(), channel.publish())
