# Hardware layers: kiosk.hal.base.Hal is the interface and its defaults; Esp32Hal and
# SimHal extend it. Only modules in this package import machine, network or esp32.
