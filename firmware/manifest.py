# The files a kiosk gets, in MicroPython's manifest format (docs/reference/manifest.rst):
# the one list that images, deploys and frozen firmware are built from. A firmware build
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
        "flow.py",
        "frames.py",
        "hmac.py",
        "journal.py",
        "jsoncheck.py",
        "log.py",
        "outbox.py",
        "push.py",
        "record.py",
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

# Read from the filesystem at run time, so a frozen build still copies them there.
# MicroPython's manifest functions take .py files only: deskpulse reads this list itself.
DATA_FILES = [
    "kiosk/ui/fonts/sansb30.bin",
    "kiosk/ui/fonts/sansb22.bin",
    "kiosk/ui/fonts/sans22.bin",
    "kiosk/ui/fonts/sans17.bin",
    "kiosk/ui/fonts/sans13.bin",
]
