# The hardware layer on a real ESP32 running MicroPython 1.2x: buttons on GPIOs, the
# millisecond clock, an optional BM8563 clock chip on I2C, the watchdog, the REPL UART,
# and the board's e-paper panel and touch controller as drivers (hal.panel, hal.touch).
# It extends the interface of kiosk/hal/base.py; the app builds the
# screens on hal.panel (`screen` is an optional extra, e.g. a console echo).
#
# Only construction and the methods touch `machine`, never the import, so the unix port
# can import this module (with a stand-in `machine` in sys.modules) to test it.
import asyncio
import sys
import time

import machine
from kiosk import civil, resets, ticks
from kiosk.hal import early
from kiosk.hal.base import Hal
from micropython import const

_DEFAULT_WATCHDOG_MS = const(30000)

# WiFi: the link is checked every few seconds from a task, never waited for in a loop.
# connect() returns at once (the driver associates in the background); one that has not
# come up after _WIFI_RETRY_MS is started again. When NTP is asked, how often and after
# which failures is kiosk/sntp.py's Keeper (config sync.ntp_server).
_WIFI_CHECK_MS = const(2000)
_WIFI_RETRY_MS = const(20000)
_EHOSTUNREACH = const(113)

# BM8563 (register-compatible with the PCF8563): seven date-time registers from 0x02,
# in BCD: seconds, minutes, hours, day, weekday, century|month, year.
_BM8563_ADDRESS = const(0x51)
_REG_CONTROL1 = const(0x00)
_REG_SECONDS = const(0x02)
_VOLTAGE_LOW = const(0x80)  # seconds register: the oscillator stopped since the last set
_CENTURY = const(0x80)  # month register: toggled by the chip when the year wraps 99 -> 00
_BASE_YEAR = const(2000)  # year register 00 with the century bit clear

# Reading all seven registers costs a few hundred microseconds at 400 kHz. The GT911 and
# GT1151 touch controllers run at 400 kHz too, so a shared bus keeps that speed.
_I2C_FREQ = const(400000)

# A 250x122 frame (about 4 KB) takes ~8 ms at 4 MHz, well inside every supported
# controller's SPI limit; a board may ask for more with display.spi.baudrate.
_SPI_BAUDRATE = const(4000000)
_VSPI = const(2)

# Driver modules by controller name, imported only for the board's own controllers so
# that the others cost no RAM. Each entry: module, then class names to try in order
# (a controller that differs only in name may reuse its sibling's class).
_PANEL_DRIVERS = {
    "ssd1680": ("kiosk.drivers.ssd1680", ("Ssd1680",)),
    "ssd1681": ("kiosk.drivers.ssd1680", ("Ssd1681", "Ssd1680")),
    "jd79653a": ("kiosk.drivers.jd79653a", ("Jd79653a",)),
}
_TOUCH_DRIVERS = {
    "gt911": ("kiosk.drivers.gt911", ("Gt911",)),
    "gt1151": ("kiosk.drivers.gt911", ("Gt1151", "Gt911")),
}
_GT911_ADDRESS = const(0x5D)
_TOUCH_AXIS_OPTIONS = ("mirror_x", "mirror_y", "swap_xy")


class Esp32Hal(Hal):
    def __init__(self, board, screen=None):
        # First of all (kiosk/boot.py did it already; a HAL built elsewhere does it here).
        self._power_hold = early.hold_power(board)
        # How the last boot ended: what the RTC memory kept before this boot marked
        # itself running (kiosk/boot.py does that first of all; a HAL built elsewhere does
        # it here), so that a reset nobody asked for is told from the app's own
        # (kiosk/resets.py judges it with the port's cause, reset_cause()).
        self._reset_memory = early.arm_marker()
        self.board = board
        self.screen = screen
        # Outside the code's folders (firmware/manifest.py's DEVICE_DATA): a /kiosk folder
        # on the filesystem would hide a frozen kiosk package.
        self.fonts_dir = "/fonts"
        self.fs_root = ""
        # time.ticks_ms already wraps at 2**30 on the ESP32 (its small-int range), so the
        # builtin itself is the HAL's clock: no Python frame per tick read.
        self.ticks_ms = time.ticks_ms

        buttons = board["buttons"]
        reads = []
        idle = bytearray(len(buttons))
        masks = []
        for index in range(len(buttons)):
            button = buttons[index]
            pin = _input_pin(button["pin"], button.get("pull"))
            reads.append(pin.value)  # bound once: read_buttons must not allocate
            idle[index] = 1 if button.get("active", "low") == "low" else 0
            masks.append(1 << index)
        self._reads = tuple(reads)
        self._idle = bytes(idle)
        self._masks = tuple(masks)

        self._watchdog_ms = board.get("watchdog_ms") or _DEFAULT_WATCHDOG_MS
        self._watchdog = None

        # The last I2C failure talking to the clock chip (None after a success), kept for
        # diagnostics: rtc_read() then answers None, as it does for a board without one.
        self.rtc_error = None
        self._rtc_regs = bytearray(7)
        self._rtc_address = _BM8563_ADDRESS
        self._i2c = None
        self._i2c_buses = {}
        rtc = board.get("rtc")
        if rtc:
            if rtc.get("chip") != "bm8563":
                raise ValueError("unsupported RTC chip: %s" % rtc.get("chip"))
            self._i2c = self._i2c_bus(rtc["i2c"])
            self._rtc_address = rtc.get("address", _BM8563_ADDRESS)

        # The panel driver only takes its bus and pins here; talking to the panel (reset,
        # init) is its async work, started by the app. The touch controller is reset and
        # found here, once, before anything polls it (see _make_touch).
        # WiFi (network_run), for the push; no radio is touched until the app asks.
        self._wlan = None
        self._wifi_up = False
        self.wifi_connects = 0  # connect() calls
        self.wifi_losses = 0  # times a connected link went down
        self.ntp = None  # the sntp.Keeper network_run makes
        self.ntp_port = 123

        display = board.get("display")
        self.panel = _make_panel(display) if display else None
        touch = board.get("touch")
        self.touch = self._make_touch(touch, display) if touch else None

    def _i2c_bus(self, spec):
        """One machine.I2C per (id, sda, scl): the touch controller and the clock chip may
        share a bus, and a second I2C object on the same pins would reconfigure it."""
        key = (spec.get("id", 0), spec["sda"], spec["scl"])
        bus = self._i2c_buses.get(key)
        if bus is None:
            bus = machine.I2C(
                key[0],
                scl=machine.Pin(spec["scl"]),
                sda=machine.Pin(spec["sda"]),
                freq=spec.get("freq", _I2C_FREQ),
            )
            self._i2c_buses[key] = bus
        return bus

    def _make_touch(self, touch, display):
        cls = _driver_class(_TOUCH_DRIVERS, touch.get("controller"), "touch controller")
        int_pin = touch.get("int")
        rst_pin = touch.get("rst")
        # A sensor whose axes differ from the panel's is corrected by the board file.
        options = {}
        for key in _TOUCH_AXIS_OPTIONS:
            if touch.get(key):
                options[key] = True
        # The touch panel lies over the e-paper panel: same native size and rotation, so
        # the driver reports taps in the screens' logical coordinates.
        driver = cls(
            self._i2c_bus(touch["i2c"]),
            touch.get("address", _GT911_ADDRESS),
            display["width"],
            display["height"],
            rotation=display.get("rotation", 0),
            int_pin=None if int_pin is None else machine.Pin(int_pin, machine.Pin.IN),
            rst_pin=None if rst_pin is None else machine.Pin(rst_pin, machine.Pin.OUT, value=1),
            **options,
        )
        # Reset with the address select (INT's level as RST rises picks 0x14 or 0x5D),
        # then find the chip at either address: about 80 ms, blocking, once per boot. A
        # controller that answers at neither is recorded in driver.error (shown by the
        # service screen's touch check), never raised: the kiosk still runs its buttons.
        driver.start()
        return driver

    # -- buttons ---------------------------------------------------------------------
    def read_buttons(self):
        """Bit i set while button i is pressed, whatever its active level. Allocates
        nothing: called every poll from the button task."""
        reads = self._reads
        idle = self._idle
        masks = self._masks
        pressed = 0
        for index in range(len(reads)):
            if reads[index]() != idle[index]:
                pressed |= masks[index]
        return pressed

    # -- clock chip ------------------------------------------------------------------
    def rtc_read(self):
        """Unix seconds from the clock chip, or None without one, after it lost power,
        or when it does not answer (see rtc_error)."""
        i2c = self._i2c
        if i2c is None:
            return None
        regs = self._rtc_regs
        try:
            i2c.readfrom_mem_into(self._rtc_address, _REG_SECONDS, regs)
        except OSError as error:
            self.rtc_error = error
            return None
        self.rtc_error = None
        return bm8563_decode(regs)

    def rtc_write(self, seconds):
        """Set the clock chip to unix seconds; a no-op without one. I2C failures are kept
        in rtc_error, not raised: a clock chip is never worth stopping the kiosk for."""
        i2c = self._i2c
        if i2c is None:
            return
        regs = self._rtc_regs
        bm8563_encode(seconds, regs)
        try:
            # Control 1 = 0: oscillator running, test modes off (another firmware may have
            # left STOP set). Control 2 holds alarm/timer settings and is left alone.
            i2c.writeto_mem(self._rtc_address, _REG_CONTROL1, b"\x00")
            i2c.writeto_mem(self._rtc_address, _REG_SECONDS, regs)
        except OSError as error:
            self.rtc_error = error
            return
        self.rtc_error = None

    # -- the chip's own RTC ------------------------------------------------------------
    # ESP-IDF keeps the system time in the RTC timer, which runs on through every reset
    # but a power-on (software, panic, watchdog, deep sleep; a MicroPython soft reset
    # resets nothing). machine.RTC().datetime() reads and sets that time as a calendar
    # tuple, which is the same whether the firmware counts from 1970 or from 2000.
    def kept_time_read(self):
        """Unix seconds from the ESP32's RTC: after a power-on, its epoch plus uptime
        (kiosk.clock.Clock.kept_time decides whether to trust it)."""
        year, month, day, _, hour, minute, second, _ = machine.RTC().datetime()
        return civil.seconds_from_civil(year, month, day, hour, minute, second)

    def kept_time_write(self, seconds):
        year, month, day, hour, minute, second, weekday = civil.civil_from_seconds(seconds)
        machine.RTC().datetime((year, month, day, weekday, hour, minute, second, 0))

    # -- WiFi ------------------------------------------------------------------------
    def tasks(self, kiosk):
        if kiosk.push is None:
            return ()
        # The WiFi kept up (and the clock set by NTP) for the push.
        return (self.network_run(kiosk.config["sync"], kiosk.clock),)

    async def network_run(self, sync, clock):
        """Keep the station connected to sync["wifi_ssid"] and the clock set by NTP (each
        setting recorded as a time anchor, source NTP). Runs as an app task: it checks the
        link every _WIFI_CHECK_MS and never waits in a loop for the radio. The NTP
        server's name is looked up here only, rarely (kiosk/resolve.py): the one call in
        this task that can block the loop, while DNS does not answer."""
        import network
        from kiosk import sntp

        ntp = self.ntp = sntp.Keeper(clock, sync.get("ntp_server", sntp.DEFAULT_SERVER),
                                     self.ntp_port)
        wlan = network.WLAN(network.STA_IF)
        wlan.active(True)
        self._wlan = wlan
        ssid = sync.get("wifi_ssid") or ""
        password = sync.get("wifi_password") or ""
        started = None  # clock ticks of the last connect() call
        while True:
            now = clock.ticks_ms()
            if wlan.isconnected():
                if not self._wifi_up:
                    self._wifi_up = True
                    ntp.link_up()  # a fresh link: set the clock at once, if it is due
                await ntp.step()
            else:
                if self._wifi_up:
                    self._wifi_up = False
                    self.wifi_losses += 1
                if ssid and (started is None or ticks.diff(now, started) >= _WIFI_RETRY_MS):
                    started = now
                    self.wifi_connects += 1
                    try:
                        wlan.connect(ssid, password)
                    except OSError:
                        # "Wifi Internal Error" while the driver is still busy with the
                        # last attempt: the next round tries again.
                        pass
            await asyncio.sleep_ms(_WIFI_CHECK_MS)

    async def open_connection(self, host, port):
        """asyncio streams to host:port, or OSError at once while WiFi is down. kiosk.push
        passes an IPv4 address (it looks names up through kiosk/resolve.py, rarely), so
        the getaddrinfo inside open_connection only parses it and asks no DNS server."""
        wlan = self._wlan
        if wlan is None or not wlan.isconnected():
            raise OSError(_EHOSTUNREACH, "WiFi not connected")
        return await asyncio.open_connection(host, port)

    def network_status(self):
        """For the status: link state and counters (never the SSID's password)."""
        address = ""
        if self._wifi_up and self._wlan is not None:
            try:
                address = self._wlan.ifconfig()[0]  # for the service screen
            except OSError:
                pass  # the link went down since the check: no address
        ntp = self.ntp
        return {"up": self._wifi_up, "address": address, "connects": self.wifi_connects,
                "losses": self.wifi_losses, "ntp_error": None if ntp is None else ntp.error,
                "ntp": None if ntp is None else ntp.status()}

    # -- resets, watchdog, console ---------------------------------------------------
    def reset_cause(self):
        # MicroPython folds the ESP-IDF reasons into five causes (ports/esp32/modmachine.c,
        # mp_machine_reset_cause): a brownout reads as power_on, a panic and
        # machine.reset() both as hard. kiosk/resets.py tells them apart again.
        return _raw_cause()

    def reset_memory(self):
        # What the RTC slow memory held at boot (b"" after a power-on), or None when
        # the port has no machine.RTC().memory().
        return self._reset_memory

    def unique_id(self):
        # The base MAC from the eFuses (ports/esp32/modmachine.c: esp_efuse_mac_get_default),
        # the one esptool's read-mac prints: a bare kiosk's id is known before it boots.
        return machine.unique_id()

    def feed_watchdog(self):
        # Started by the first feed, so that importing or constructing the HAL at the REPL
        # does not arm it. Once started it cannot be stopped, not even by a soft reset.
        watchdog = self._watchdog
        if watchdog is None:
            watchdog = machine.WDT(timeout=self._watchdog_ms)
            self._watchdog = watchdog
        watchdog.feed()

    def stop_for_maintenance(self, seconds):
        """The app has stopped for a technician: the REPL is free, the watchdog (if the
        app started it) stays fed, and the board restarts after `seconds`."""
        early.restart_later(seconds, self._watchdog, self._watchdog_ms // 2)

    def console_write(self, data):
        # str or bytes: a MicroPython str exposes its UTF-8 bytes as a buffer. The ESP32
        # UART driver queues the bytes in its TX buffer, so this returns quickly.
        sys.stdout.buffer.write(data)

    def reset(self):
        early.restart()  # marks the reset as the app's own first


def _raw_cause():
    """machine.reset_cause() as kiosk/resets.py names it; 0 (ESP_RST_SDIO, or a reason
    ESP-IDF does not know) is unknown."""
    cause = machine.reset_cause()
    if cause == machine.PWRON_RESET:
        return resets.POWER_ON
    if cause == machine.HARD_RESET:
        return resets.HARD
    if cause == machine.WDT_RESET:
        return resets.WATCHDOG
    if cause == machine.DEEPSLEEP_RESET:
        return resets.DEEP_SLEEP
    if cause == machine.SOFT_RESET:
        return resets.SOFT
    return resets.UNKNOWN


def _driver_class(table, controller, what):
    entry = table.get(controller)
    if entry is None:
        raise ValueError("unsupported %s: %s" % (what, controller))
    module_name, class_names = entry
    module = __import__(module_name, None, None, class_names)
    for name in class_names:
        cls = getattr(module, name, None)
        if cls is not None:
            return cls
    raise ImportError("%s has no %s" % (module_name, " or ".join(class_names)))


def _make_panel(display):
    cls = _driver_class(_PANEL_DRIVERS, display.get("controller"), "panel controller")
    bus = display["spi"]
    spi = machine.SPI(
        bus.get("id", _VSPI),
        baudrate=bus.get("baudrate", _SPI_BAUDRATE),
        polarity=0,
        phase=0,
        sck=machine.Pin(bus["sck"]),
        mosi=machine.Pin(bus["mosi"]),
        # The panels are write-only. None keeps the SPI block off its default MISO pin
        # (GPIO 12 for HSPI: a strapping pin, and the CoreInk's power hold).
        miso=None,
    )
    rst = bus.get("rst")
    return cls(
        spi,
        machine.Pin(bus["cs"], machine.Pin.OUT, value=1),  # deselected until a transfer
        machine.Pin(bus["dc"], machine.Pin.OUT, value=0),
        None if rst is None else machine.Pin(rst, machine.Pin.OUT, value=1),
        machine.Pin(bus["busy"], machine.Pin.IN),
        display["width"],
        display["height"],
        rotation=display.get("rotation", 0),
        busy_active=0 if display.get("busy_active", "high") == "low" else 1,
        panel=display.get("panel"),
    )


def _input_pin(number, pull):
    if pull == "up":
        return machine.Pin(number, machine.Pin.IN, machine.Pin.PULL_UP)
    if pull == "down":
        return machine.Pin(number, machine.Pin.IN, machine.Pin.PULL_DOWN)
    # None is MicroPython's documented "no pull resistor" (an external one does the job);
    # the stubs type `pull` as int only.
    return machine.Pin(number, machine.Pin.IN, None)  # pyright: ignore[reportArgumentType]


def _from_bcd(value):
    """0..99 from a BCD byte, or 255 if either digit is not decimal."""
    tens = value >> 4
    units = value & 0x0F
    if tens > 9 or units > 9:
        return 255
    return tens * 10 + units


def _to_bcd(value):
    return (value // 10) << 4 | value % 10


def bm8563_decode(regs):
    """Unix seconds from the seven date-time registers, or None when the chip reports a
    power loss (its time is then meaningless) or holds an impossible date."""
    if regs[0] & _VOLTAGE_LOW:
        return None
    second = _from_bcd(regs[0] & 0x7F)
    minute = _from_bcd(regs[1] & 0x7F)
    hour = _from_bcd(regs[2] & 0x3F)
    day = _from_bcd(regs[3] & 0x3F)
    month = _from_bcd(regs[5] & 0x1F)
    year_in_century = _from_bcd(regs[6])
    if second > 59 or minute > 59 or hour > 23 or year_in_century > 99:
        return None
    if month < 1 or month > 12:
        return None
    # The chip toggles the century bit when the year register wraps from 99 to 00, so a
    # set bit means the century after the base one: the range is 2000..2199.
    year = _BASE_YEAR + year_in_century + (100 if regs[5] & _CENTURY else 0)
    if day < 1 or day > civil.days_in_month(year, month):
        return None
    return civil.seconds_from_civil(year, month, day, hour, minute, second)


def bm8563_encode(seconds, regs):
    """Fill the seven date-time registers with unix seconds (clearing the power-loss
    flag). Raises ValueError outside 2000..2199, which the chip cannot hold."""
    year, month, day, hour, minute, second, weekday = civil.civil_from_seconds(int(seconds))
    if year < _BASE_YEAR or year >= _BASE_YEAR + 200:
        raise ValueError("the BM8563 holds years 2000 to 2199, not %d" % year)
    regs[0] = _to_bcd(second)
    regs[1] = _to_bcd(minute)
    regs[2] = _to_bcd(hour)
    regs[3] = _to_bcd(day)
    regs[4] = (weekday + 1) % 7  # the chip's convention: 0 = Sunday
    regs[5] = _to_bcd(month) | (_CENTURY if year >= _BASE_YEAR + 100 else 0)
    regs[6] = _to_bcd(year % 100)
