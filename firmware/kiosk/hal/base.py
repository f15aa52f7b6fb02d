# The interface every hardware layer provides, as a class both layers extend:
#   kiosk.hal.esp32.Esp32Hal  real pins, SPI/I2C, RTC, watchdog (imports machine/esp32)
#   kiosk.hal.sim.SimHal      the unix port: simulated pins and clock, LittleFS on an image
# The logic receives one of these objects and never imports machine, network or esp32.
# The defaults here are those of a board without the optional part, so the app asks every
# layer the same way and never probes with getattr. (The return annotations are for the
# type checker; MicroPython ignores them.)


class Hal:
    board = None  # dict: the board definition (boards/<name>.json)
    fs_root = ""  # path prefix of the kiosk's flash filesystem ("" on the ESP32)
    fonts_dir = ""  # where the bitmap fonts are
    panel = None  # the e-paper panel driver (kiosk.drivers), or None
    touch = None  # the touch controller driver, or None
    # An extra screen with show(kind, title, options, note), or None: the simulator's
    # console echo, or the console itself on a board without a panel (kiosk.screen).
    screen = None
    console_sync = True  # the REPL UART carries the serial sync while the app runs
    console_write_chunk = 256  # bytes per console write (0: whole frames at once)
    # For the WiFi push (kiosk.push): a coroutine function (IPv4 address, port) ->
    # (reader, writer) asyncio streams that raises OSError at once while the network is
    # down (names are looked up by kiosk/resolve.py, rarely, never here); None on a board
    # without a network.
    open_connection = None

    def ticks_ms(self):
        """Millisecond ticks already reduced mod 2**30 (kiosk.ticks arithmetic)."""
        raise NotImplementedError

    def read_buttons(self):
        """Bit i set while button i is pressed (the logical level, whatever the wiring)."""
        raise NotImplementedError

    def rtc_read(self) -> "int | None":
        """Unix seconds from a battery-backed clock chip, or None without one."""
        return None

    def rtc_write(self, seconds):
        """Set the clock chip; nothing without one."""

    def kept_time_read(self) -> int:
        """Unix seconds from the chip's own RTC, which counts on through every reset but a
        power-on (kiosk.clock decides when to trust it); 0 without one."""
        return 0

    def kept_time_write(self, seconds):
        """Set that RTC (every time the clock is set)."""

    def reset_cause(self) -> str:
        """The port's own cause of this boot: "power_on", "hard", "watchdog", "soft",
        "deep_sleep" or "unknown" (kiosk/resets.py tells more apart with reset_memory()
        and the RTC time); a layer that knows more may name a kiosk.resets cause itself."""
        return "unknown"

    def reset_memory(self) -> "bytes | None":
        """What the chip's RTC memory held at boot, before this boot wrote its marker
        (kiosk/resets.py); None without such memory."""
        return None

    def unique_id(self) -> "bytes | None":
        """The chip's base MAC (6 bytes), from which a kiosk nobody has named takes its
        id (kiosk.config.id_for_mac); None without one."""
        return None

    def feed_watchdog(self):
        """Keep the watchdog from resetting the board; nothing without one."""

    def console_write(self, data):
        """Write to the REPL UART without blocking (data may be dropped)."""
        raise NotImplementedError

    def reset(self):
        """Reboot the device."""
        raise NotImplementedError

    def stop_for_maintenance(self, seconds):
        """The app has stopped for a technician: keep the watchdog fed (the REPL is
        free meanwhile) and restart the board after `seconds`."""

    def network_status(self) -> "dict | None":
        """The network's state for the status and the service screen, or None."""
        return None

    def tasks(self, kiosk) -> tuple:
        """Coroutines of the board's optional parts that run beside the app's own tasks
        (and end with them): e.g. the ESP32 keeps the WiFi up for the push."""
        return ()
