# Hardware layers. The logic receives one of these objects and never imports machine,
# network or esp32 itself:
#   kiosk.hal.esp32.Esp32Hal  real pins, SPI/I2C, RTC, watchdog (imports machine/esp32)
#   kiosk.hal.sim.SimHal      the unix port: simulated pins and clock, LittleFS on an image
#
# Interface every layer provides:
#   board               dict: the board definition (boards/<name>.json)
#   fs_root             path prefix of the kiosk's flash filesystem ("" on the ESP32)
#   ticks_ms()          millisecond ticks already reduced mod 2**30 (kiosk.ticks arithmetic)
#   read_buttons()      int bit mask, bit i set while button i is pressed (logical level)
#   rtc_read()          unix seconds from a battery-backed RTC chip, or None
#   rtc_write(seconds)  set that RTC (no-op without one)
#   kept_time_read()    unix seconds from the chip's own RTC, which keeps counting through
#                       every reset but a power-on (kiosk.clock decides when to trust it)
#   kept_time_write(seconds)  set it (every time the clock is set)
#   reset_cause()       "power_on", "hard", "watchdog", "soft", "deep_sleep", "brownout", ...
#   feed_watchdog()
#   panel               e-paper panel driver (kiosk.drivers), or None
#   touch               touch controller driver, or None
#   fonts_dir           where the bitmap fonts are (kiosk/ui/fonts)
#   screen              an extra screen with show(kind, title, options, note), or None:
#                       the simulator's console echo (kiosk.screen.TextScreen)
#   console_write(data) write to the REPL UART without blocking (data may be dropped)
#   reset()             reboot the device
# Optional, for the WiFi push (kiosk.push):
#   open_connection(host, port)   coroutine -> (reader, writer) asyncio streams; raises
#                       OSError at once while the network is down (never waits for it)
#   network_run(sync_config, clock)  coroutine run as a task while the push is configured:
#                       keeps the WiFi connected and sets the clock by NTP (ESP32 only)
