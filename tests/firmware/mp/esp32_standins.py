# Stand-ins for the ESP32 port's own modules, so that the real boot path (main.py ->
# kiosk.boot -> kiosk.hal.esp32.Esp32Hal -> kiosk.app.run) runs on the unix port for
# tools/bench_heap.py and tests/firmware/test_heap32.py. On a device `machine`, `network`
# and `esp32` are C modules that cost the Python heap (almost) nothing, so this module is
# frozen into the 32-bit builds and the harness counts what it holds as overhead.
#
# install(board) registers this one module as `machine`, `network` and `esp32`, and
# wires the board's pins to what stands behind them:
#   - buttons: levels a customer sets (press/release), idle at the inactive level;
#   - the panel: an SPI bus and CS/DC/RST/BUSY pins in front of a controller model that
#     only keeps BUSY active as long as the real chip would (reset, refresh, power on/off);
#     no picture is kept, so it takes a few dozen bytes, not the panel's RAM;
#   - I2C: a BM8563 clock chip at its address when the board has one (its power-loss flag
#     set, as after a first power-up); every other address does not acknowledge;
#   - WDT, RTC (the chip's own clock: epoch 2000-01-01 at power-on, then ticking),
#     reset_cause() = power-on, WLAN that "associates" at once (the push then talks to a
#     server on 127.0.0.1).
# Nothing here imports the kiosk package: the app must come from the device's filesystem
# (or be frozen), never from the host folder this module was loaded from.
import sys
import time

# The vfs partition (esp32.Partition, "vfs") over a LittleFS image file: the entry
# scripts mount it at "/".
FLASH_BLOCK = 4096


class FileFlash:
    """The vfs partition as a block device over an image file (extended interface)."""

    def __init__(self, f, blocks):
        self.f = f
        self.blocks = blocks

    def readblocks(self, block, buf, offset=0):
        self.f.seek(block * FLASH_BLOCK + offset)
        self.f.readinto(buf)

    def writeblocks(self, block, buf, offset=None):
        self.f.seek(block * FLASH_BLOCK + (offset or 0))
        self.f.write(buf)

    def info(self):
        # esp32.Partition.info(): (type, subtype, address, size, label, encrypted)
        return (1, 0x81, 0x200000, self.blocks * FLASH_BLOCK, "vfs", False)

    def ioctl(self, op, arg):
        if op == 4:
            return self.blocks
        if op == 5:
            return FLASH_BLOCK
        if op == 3:
            self.f.flush()
        return 0


# ESP32 constants (ports/esp32/modmachine.c, machine_pin.c, network_wlan.c).
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
STA_IF = 0
AP_IF = 1

_EPOCH_2000 = 946684800
_ENODEV = 19
_ticks = time.ticks_ms  # replaced by the harness's virtual clock (set_ticks)
_levels = bytearray(40)  # GPIO levels
_roles = {}  # pin number -> "busy" | "rst" | "dc" | "cs"
_panel = None
_bm8563 = None


def set_ticks(ticks_ms):
    global _ticks
    _ticks = ticks_ms


# -- the e-paper controller ------------------------------------------------------------
class PanelModel:
    """BUSY timing of an SSD1680/SSD1681 or a JD79653A, from the command bytes alone."""

    def __init__(self, controller, busy_active, full_ms, partial_ms):
        self.jd = controller == "jd79653a"
        self.busy_active = busy_active
        self.full_ms = full_ms
        self.partial_ms = partial_ms
        self.sequence = 0  # SSD168x 0x22: bit 0x08 selects display mode 2 (partial)
        self.partial = False  # JD79653A: between 0x91 (partial in) and 0x92 (out)
        self.busy_until = None
        self.refreshes = 0
        self._command = -1

    def _busy_for(self, ms):
        self.busy_until = time.ticks_add(_ticks(), ms)

    def busy(self):
        until = self.busy_until
        if until is None:
            return False
        if time.ticks_diff(_ticks(), until) < 0:
            return True
        self.busy_until = None
        return False

    def reset(self):
        self._busy_for(20)

    def write(self, buf, data):
        if data:
            if self._command == 0x22 and not self.jd and len(buf):
                self.sequence = buf[0]
            return
        for command in buf:
            self._command = command
            if self.jd:
                if command in (0x04, 0x02):  # power on / off
                    self._busy_for(40)
                elif command == 0x91:
                    self.partial = True
                elif command == 0x92:
                    self.partial = False
                elif command == 0x12:  # display refresh
                    self.refreshes += 1
                    self._busy_for(self.partial_ms if self.partial else self.full_ms)
            elif command == 0x12:  # software reset
                self._busy_for(20)
            elif command == 0x20:  # master activation: run the 0x22 sequence
                self.refreshes += 1
                self._busy_for(self.partial_ms if self.sequence & 0x08 else self.full_ms)


# -- machine -------------------------------------------------------------------------
class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 2
    IRQ_RISING = 1

    def __init__(self, number, mode=-1, pull=-1, value=None):
        self.number = number
        self._role = _roles.get(number)
        if value is not None:
            self.value(value)

    def init(self, mode=-1, pull=-1, value=None):
        if value is not None:
            self.value(value)

    def value(self, level=None):
        role = self._role
        if level is None:
            if role == "busy":
                panel = _panel
                active = panel.busy_active
                return active if panel.busy() else 1 - active
            return _levels[self.number]
        level = 1 if level else 0
        if role == "rst" and level and not _levels[self.number]:
            _panel.reset()
        _levels[self.number] = level
        return None

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def __call__(self, level=None):
        return self.value(level)


class SPI:
    def __init__(self, id, baudrate=1000000, polarity=0, phase=0, sck=None, mosi=None,
                 miso=None, **_):
        self.bytes_written = 0
        self._dc = self._cs = -1
        for number, role in _roles.items():
            if role == "dc":
                self._dc = number
            elif role == "cs":
                self._cs = number

    def write(self, buf):
        self.bytes_written += len(buf)
        if _panel is not None and not _levels[self._cs]:
            _panel.write(buf, _levels[self._dc])


class _Bm8563:
    def __init__(self, address):
        self.address = address
        self.regs = bytearray(16)
        self.regs[2] = 0x80  # VL: the oscillator stopped (a first power-up)


class I2C:
    def __init__(self, id=0, scl=None, sda=None, freq=400000, **_):
        pass

    def _chip(self, address):
        chip = _bm8563
        if chip is None or chip.address != address:
            raise OSError(_ENODEV)
        return chip

    def readfrom_mem_into(self, address, register, buf, addrsize=8):
        regs = self._chip(address).regs
        for i in range(len(buf)):
            buf[i] = regs[(register + i) & 15]

    def writeto_mem(self, address, register, buf, addrsize=8):
        regs = self._chip(address).regs
        for i in range(len(buf)):
            regs[(register + i) & 15] = buf[i]

    def readfrom_mem(self, address, register, n, addrsize=8):
        buf = bytearray(n)
        self.readfrom_mem_into(address, register, buf, addrsize)
        return buf

    def writeto(self, address, buf, stop=True):
        self._chip(address)
        return len(buf)

    def readfrom_into(self, address, buf, stop=True):
        self._chip(address)

    def scan(self):
        return [] if _bm8563 is None else [_bm8563.address]


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.feeds = 0

    def feed(self):
        self.feeds += 1


class RTC:
    # One clock for every RTC() object, as the chip has one.
    _base = _EPOCH_2000
    _since = None

    def datetime(self, when=None):
        now = _ticks()
        if RTC._since is None:
            RTC._since = now
        if when is None:
            seconds = RTC._base + time.ticks_diff(now, RTC._since) // 1000
            t = time.gmtime(seconds)  # (year, month, day, hour, minute, second, weekday, ...)
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)
        y, mo, d, wd, h, mi, s = when[:7]
        RTC._base = time.mktime((y, mo, d, h, mi, s, 0, 0))
        RTC._since = now
        return None


def reset_cause():
    return PWRON_RESET


def reset():
    raise SystemExit("machine.reset()")


def unique_id():
    # An ESP32's base MAC (Espressif's OUI 24:0a:c4): a bare kiosk's id is kiosk-240ac4123456.
    return b"\x24\x0a\xc4\x12\x34\x56"


def idle():
    pass


def freq(hz=None):
    return 240000000


# -- network ---------------------------------------------------------------------------
class WLAN:
    def __init__(self, interface=STA_IF):
        self._active = False
        self._ssid = None
        self.connects = 0

    def active(self, on=None):
        if on is None:
            return self._active
        self._active = bool(on)
        return None

    def connect(self, ssid=None, key=None, **_):
        if not self._active:
            raise OSError("WiFi Not Started")
        self._ssid = ssid
        self.connects += 1

    def disconnect(self):
        self._ssid = None

    def isconnected(self):
        return self._active and self._ssid is not None

    def status(self, *_):
        return 1010 if self.isconnected() else 1000  # STAT_GOT_IP / STAT_IDLE

    def ifconfig(self, *_):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def config(self, *_, **__):
        return None


# -- esp32 -----------------------------------------------------------------------------
class NVS:
    def __init__(self, namespace):
        self._values = {}

    def set_i32(self, key, value):
        self._values[key] = value

    def get_i32(self, key):
        if key not in self._values:
            raise OSError(-4354)  # ESP_ERR_NVS_NOT_FOUND
        return self._values[key]

    def set_blob(self, key, value):
        self._values[key] = bytes(value)

    def get_blob(self, key, buf):
        value = self._values.get(key)
        if value is None:
            raise OSError(-4354)
        buf[: len(value)] = value
        return len(value)

    def erase_key(self, key):
        self._values.pop(key, None)

    def commit(self):
        pass


# -- the customer's fingers --------------------------------------------------------------
def press(number, active_low=True):
    _levels[number] = 0 if active_low else 1


def release(number, active_low=True):
    _levels[number] = 1 if active_low else 0


def panel():
    return _panel


def install(board):
    """Register this module as machine, network and esp32 and wire the board: call before
    anything imports them."""
    global _panel, _bm8563
    module = sys.modules[__name__]
    for name in ("machine", "network", "esp32"):
        sys.modules[name] = module
    for button in board["buttons"]:
        release(button["pin"], button.get("active", "low") == "low")
    display = board.get("display")
    if display:
        bus = display["spi"]
        _roles[bus["busy"]] = "busy"
        _roles[bus["dc"]] = "dc"
        _roles[bus["cs"]] = "cs"
        if bus.get("rst") is not None:
            _roles[bus["rst"]] = "rst"
        _levels[bus["cs"]] = 1
        _panel = PanelModel(display["controller"],
                            0 if display.get("busy_active", "high") == "low" else 1,
                            display.get("full_refresh_ms", 2000),
                            display.get("partial_refresh_ms", 500))
    rtc = board.get("rtc")
    if rtc:
        _bm8563 = _Bm8563(rtc.get("address", 0x51))
