# The ESP32 entry point: no work at import time beyond starting the app.
import kiosk.boot

kiosk.boot.run()
