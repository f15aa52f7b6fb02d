# Device drivers: e-paper panel controllers and touch controllers. They take their bus
# and pins through the constructor (machine objects on the ESP32, fakes in tests and in
# the simulator) and never import machine themselves.
#
# Panel drivers (ssd1680.py: SSD1680/SSD1681, jd79653a.py) share this interface:
#   Driver(spi, cs, dc, rst, busy, width, height, rotation=0, busy_active=1,
#          busy_timeout_ms=..., ticks_ms=None, sleep_ms=None, partial_lut=None, panel=None)
#       spi      object with write(buf)
#       cs/dc/rst/busy  pin objects with value([v]); rst may be None
#       width/height    the panel's native size in pixels (2.13": 122 x 250)
#       rotation        0/90/180/270; the logical size below follows it
#       ticks_ms        wrapping tick source (kiosk.ticks arithmetic); sleep_ms an
#                       awaitable sleep (asyncio.sleep_ms by default)
#       partial_lut     a register waveform for partial refreshes, or panel the name of
#                       the glass whose waveform the driver knows (the board's display.panel)
#   .width, .height     logical size after rotation (2.13" at 90: 250 x 122)
#   .buffer, .framebuf  the frame buffer and a framebuf.FrameBuffer over it, in logical
#                       coordinates: the screens draw on it with INK and PAPER
#   .INK, .PAPER        colour values to draw with
#   async init()        hardware reset, software reset, configuration
#   write(full=False)   copy .buffer into panel RAM (synchronous SPI; when it returns the
#                       buffer may be drawn on again: "buffer free"); full: the refresh
#                       that follows is a full one (the SSD1680 then fills both RAMs)
#   async update(full)  run a full or partial refresh of the last frame written and
#                       await BUSY ("panel done"); full whatever was asked when the panel
#                       cannot run a partial one right (first refresh after init(), ...)
#   async deep_sleep()
#   busy()              True while the panel is refreshing
#   Waiting on BUSY never blocks the event loop and raises PanelError after
#   busy_timeout_ms, so a dead panel is reported instead of hanging the kiosk.
#
# Touch drivers (gt911.py: GT911 and GT1151 class) share:
#   Touch(i2c, address, width, height, rotation=0, int_pin=None, rst_pin=None,
#         mirror_x=False, mirror_y=False, swap_xy=False, sleep_ms=None)
#   start()   reset with the address select and find the chip at either address, once,
#             blocking (~80 ms); a chip that does not answer is kept in .error, not raised
#   read_xy() -> the first touch point as (x << 16) | y in logical screen coordinates, or -1
#   status()  address, product, error: for the service screen and the status


class PanelError(Exception):
    pass
