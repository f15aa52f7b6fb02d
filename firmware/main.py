# The ESP32 entry point: finishes an app update that a power cut interrupted, then starts
# the app; no other work at import time.
# `deskpulse deploy` (host/deskpulse/device/deploy.py) stages the new app in /kiosk.new,
# checks it, then renames /kiosk -> /kiosk.old, /kiosk.new -> /kiosk and removes
# /kiosk.old. Whichever step a power cut came before, one whole app is left: a /kiosk.new
# without a /kiosk is the checked new app, a /kiosk.new beside a /kiosk an unfinished
# staging, a /kiosk.old beside a /kiosk the app just replaced. Normally this costs four
# stat calls; the function is deleted before the app's imports, which need the heap.
import os


def _finish_update():
    def exists(path):
        try:
            os.stat(path)
            return True
        except OSError:
            return False

    def remove(path):
        if os.stat(path)[0] & 0x4000:
            for name in [entry[0] for entry in os.ilistdir(path)]:
                remove(path + "/" + name)
            os.rmdir(path)
        else:
            os.remove(path)

    if not exists("/kiosk"):
        for spare in ("/kiosk.new", "/kiosk.old"):
            if exists(spare):
                os.rename(spare, "/kiosk")
                break
    if exists("/kiosk"):
        for spare in ("/kiosk.old", "/kiosk.new"):
            if exists(spare):
                remove(spare)


try:
    _finish_update()
except OSError as error:  # a failing flash: the app may still start, and says more
    print("main.py: cannot finish the app update: %s" % error)
del _finish_update

import kiosk.boot  # noqa: E402

kiosk.boot.run()
