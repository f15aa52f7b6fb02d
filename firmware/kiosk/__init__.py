# DeskPulse kiosk firmware. Logic modules take their hardware through constructors;
# only kiosk.hal.esp32 imports machine/network/esp32.
FIRMWARE_VERSION = "0.1.0"
