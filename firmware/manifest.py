# The files a kiosk gets, in MicroPython's manifest format (docs/reference/manifest.rst):
# the one list that images, deploys and frozen firmware are built from. The same app runs
# as .py or .mpy files on the device's filesystem or frozen into a firmware build
# (tools/bench_heap.py runs all three on the ESP32 boot path). A firmware build
# includes it after the port's own manifest, e.g. include("$(PORT_DIR)/boards/manifest.py").
# The wheel ships these files as package data (pyproject.toml); tests/test_packaging.py
# checks that it does, and that every .py under kiosk/ is named here or left out on purpose.
# ruff: noqa: F821
# pyright: reportUndefinedVariable=false

metadata(description="DeskPulse service-desk feedback kiosk")

module("main.py")

package(
    "kiosk",
    files=[
        "__init__.py",
        "app.py",
        "batch.py",
        "boot.py",
        "buttons.py",
        "civil.py",
        "clock.py",
        "config.py",
        "crc.py",
        "fatal.py",
        "flow.py",
        "frames.py",
        "hmac.py",
        "hostname.py",
        "https.py",
        "hwtest.py",
        "journal.py",
        "jsoncheck.py",
        "log.py",
        "outbox.py",
        "ota.py",
        "push.py",
        "record.py",
        "resolve.py",
        "resets.py",
        "ring.py",
        "screen.py",
        "serial_sync.py",
        "sntp.py",
        "ticks.py",
        "touch.py",
        "tzrule.py",
        "varint.py",
        "drivers/__init__.py",
        "drivers/epd.py",
        "drivers/gt911.py",
        "drivers/jd79653a.py",
        "drivers/ssd1680.py",
        "hal/__init__.py",
        "hal/base.py",
        "hal/early.py",
        "hal/esp32.py",
        # Not hal/sim*.py: the simulated hardware runs on the unix port only.
        "ui/__init__.py",
        "ui/display.py",
        "ui/faces.py",
        "ui/font.py",
        "ui/layout.py",
        "ui/screens.py",
        "ui/touchcheck.py",
    ],
    base_path=".",
)

# Data the app reads from the filesystem at run time: file here -> path on the device.
# On the device they live outside the code's folders (the fonts in /fonts, which
# kiosk/hal/esp32.py names): a /kiosk folder on the filesystem comes before .frozen on
# sys.path and would hide a frozen `kiosk` package. So the same app runs from .py or .mpy
# files copied to the device or frozen into its firmware; a frozen build still copies
# these files. MicroPython's manifest functions take .py files only: deskpulse reads
# DATA_FILES itself (deskpulse.resources), and whatever writes a device or an image
# puts each file where DEVICE_DATA says.
DEVICE_DATA = {
    "kiosk/ui/fonts/sansb30.bin": "/fonts/sansb30.bin",
    "kiosk/ui/fonts/sansb22.bin": "/fonts/sansb22.bin",
    "kiosk/ui/fonts/sans22.bin": "/fonts/sans22.bin",
    "kiosk/ui/fonts/sans17.bin": "/fonts/sans17.bin",
    "kiosk/ui/fonts/sans13.bin": "/fonts/sans13.bin",
}
DATA_FILES = list(DEVICE_DATA)
