# The simulator's entry point on the MicroPython unix port (run by `deskpulse sim`):
#   micropython sim_main.py --board BOARD.json --state DIR [--script FILE]
#       [--config FILE] [--device-config FILE] [--reset-cause CAUSE] [--poll-ms N]
#       [--refresh-scale F] [--mac HEX] [--realtime] [--paced-waits] [--dump]
# Time is virtual (kiosk/hal/simclock.py): while the script plays, idle time jumps to the
# next deadline; --realtime paces the kiosk by the wall clock instead (a script's `wait`
# still fast-forwards; with --paced-waits too, it sleeps: the firmware at a device's pace,
# for benchmarks). After the script, or without one, the kiosk keeps wall-clock time:
# whoever talks to it then (a person, `deskpulse sync`) does so in real time.
# A run that ends (script `exit`) with a failed display, log or sync task exits 3 and
# says why on stderr.
# --interactive DIR: key presses in, frames and status out, over the FIFOs in DIR
# (kiosk/hal/simkeys.py; `deskpulse sim --interactive`).
# --device-config is the file `deskpulse devices add ... -o FILE` writes (device_id and the
# sync section: server, WiFi, key); it is merged over --config (or over the config already
# on the simulated flash), validated and installed before boot.
# --mac: the simulated chip's base MAC (12 hex digits, ':' allowed), kept in the state
# folder; without it the folder's own (kiosk/hal/sim.py). A kiosk whose config names no
# device_id goes by it: kiosk- and its 12 hex digits.
# The process's stdin/stdout are the simulated device's console (the ESP32's REPL UART).
import binascii
import gc
import json
import os
import sys

from kiosk import app
from kiosk import config as cfg
from kiosk.hal import simscript
from kiosk.hal.sim import SimHal
from kiosk.hal.simclock import VirtualClock
from kiosk.log import ResponseLog

_USAGE = ("usage: sim_main.py --board BOARD.json --state DIR [--script FILE] [--config FILE] "
          "[--device-config FILE] [--reset-cause CAUSE] [--poll-ms N] [--refresh-scale F] "
          "[--mac HEX] [--interactive DIR] [--realtime] [--paced-waits] [--dump]")


_VALUED = ("--board", "--state", "--script", "--config", "--device-config", "--reset-cause",
           "--poll-ms", "--refresh-scale", "--interactive", "--mac")


def _fail(message):
    """Report bad input; returns the SystemExit for the caller to raise."""
    sys.stderr.write("deskpulse: %s\n" % message)
    return SystemExit(2)


def _args(argv):
    opts = {"--script": None, "--config": None, "--device-config": None,
            "--reset-cause": "power_on", "--dump": False, "--realtime": False,
            "--paced-waits": False, "--poll-ms": None,
            "--refresh-scale": "1", "--interactive": None, "--mac": None}
    i = 0
    while i < len(argv):
        key = argv[i]
        if key in ("--dump", "--realtime", "--paced-waits"):
            opts[key] = True
            i += 1
        elif key in _VALUED and i + 1 < len(argv):
            opts[key] = argv[i + 1]
            i += 2
        else:
            raise _fail("unexpected argument %r\n%s" % (key, _USAGE))
    if "--board" not in opts or "--state" not in opts:
        raise _fail(_USAGE)
    return opts


def _mac(text):
    """The bytes of a MAC given as 12 hex digits, with or without ':' or '-'."""
    digits = text.replace(":", "").replace("-", "")
    try:
        mac = binascii.unhexlify(digits)
    except ValueError:
        mac = b""
    if len(mac) != 6:
        raise _fail("--mac %r is not a MAC: give 12 hex digits, e.g. 24:0a:c4:12:34:56"
                    % text)
    return mac


def _read(path, what):
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        raise _fail("cannot read %s %s: %s" % (what, path, e))


def _json_file(path, what):
    # The device's own strict reading (kiosk.config.read), so that the simulator never
    # installs a file a real kiosk would refuse.
    try:
        raw = cfg.read(path, "%s %s" % (what, path))
    except OSError as e:
        raise _fail("cannot read %s %s: %s" % (what, path, e))
    except ValueError as e:
        raise _fail(str(e))
    if not isinstance(raw, dict):
        raise _fail("%s %s must hold a JSON object" % (what, path))
    return raw


def _unconfirmed(root):
    """How many stored responses no host has confirmed yet. Opening the log is what every
    boot does first (it only tidies what a power cut left); the kiosk opens it again."""
    log = ResponseLog(root)
    try:
        log.open()
        return log.counts()[1]
    finally:
        log.close()


def _install_config(target, config_path, device_path, root, mac):
    """Install --config, with --device-config merged over it (or over the config on the
    flash): top-level keys replace, the sync section is merged key by key. Refused, with
    nothing changed, when it would rename a kiosk that holds unconfirmed responses (its
    id and the new one as the kiosk takes them: a config naming none gets the MAC's)."""
    if config_path:
        raw = _json_file(config_path, "config")
    else:
        try:
            os.stat(target)
        except OSError:
            raw = {}  # a fresh device: the device config over the defaults
        else:
            raw = _json_file(target, "config on the device")
    what = config_path
    if device_path:
        device = _json_file(device_path, "device config")
        for key, value in device.items():
            if key == "sync" and isinstance(value, dict) and isinstance(raw.get("sync"), dict):
                merged = dict(raw["sync"])
                merged.update(value)
                raw["sync"] = merged
            else:
                raw[key] = value
        what = device_path if not config_path else "%s + %s" % (config_path, device_path)
    config, problems = cfg.validate(raw)
    if problems:
        raise _fail("config %s rejected: %s" % (what, "; ".join(problems)))
    current = cfg.name_bare(cfg.load(target)[0], mac)["device_id"]
    problem = cfg.identity_problem(current, cfg.name_bare(config, mac)["device_id"],
                                   _unconfirmed(root))
    if problem:
        raise _fail("config %s rejected: %s" % (what, problem))
    try:
        cfg.save(target, raw)
    except ValueError as e:
        raise _fail("config %s rejected: %s" % (what, e))


def _dump(kiosk):
    """Print the device's status and every stored response as JSON lines."""
    kiosk.inspect()
    print("@" + json.dumps({"status": kiosk.status(), "anchors": kiosk.clock.anchors}))
    seq = 1
    while True:
        batch = kiosk.log.read(seq, 1024)
        if not batch:
            break
        for rec in batch:
            print("@" + json.dumps({"response": app.describe(rec)}))
        seq = batch[-1][0] + 1


def main(argv):
    opts = _args(argv)
    try:
        board = json.loads(_read(opts["--board"], "board file"))
    except ValueError as e:
        raise _fail("board file %s is not valid JSON: %s" % (opts["--board"], e))
    if opts["--poll-ms"]:
        # Tests poll faster than a real board so that long scripts finish sooner.
        board["poll_ms"] = int(opts["--poll-ms"])
    script = opts["--script"]
    if script:
        try:
            simscript.check(script, board)
        except simscript.ScriptError as e:
            raise _fail("script %s: %s" % (script, e))
        except OSError as e:
            raise _fail("cannot read script %s: %s" % (script, e))
    try:
        os.mkdir(opts["--state"])
    except OSError:
        pass  # already there (or not creatable: the mount below says so)
    gc.collect()  # parsing left garbage; the flash simulator wants whole 4 KB blocks
    # The script's own time, until it is over.
    clock = VirtualClock(realtime=bool(opts["--realtime"] or not script))
    clock.paced_waits = bool(opts["--paced-waits"])
    mac = _mac(opts["--mac"]) if opts["--mac"] else None
    try:
        hal = SimHal(board, opts["--state"], opts["--reset-cause"],
                     refresh_scale=float(opts["--refresh-scale"]), clock=clock, mac=mac)
    except OSError as e:
        raise _fail("cannot mount the simulated flash in %s: %s" % (opts["--state"], e))
    if opts["--config"] or opts["--device-config"]:
        _install_config(hal.fs_root + "/config.json", opts["--config"], opts["--device-config"],
                        hal.fs_root, hal.unique_id())
    if opts["--dump"]:
        kiosk = app.Kiosk(hal)
        try:
            _dump(kiosk)
        finally:
            kiosk.close()
        return

    holder = []

    async def customer():
        while not holder:  # run() builds the kiosk before this first runs
            await simscript.asyncio.sleep_ms(1)
        if opts["--interactive"]:
            # A person at a terminal instead of a script (kiosk/hal/simkeys.py): runs until
            # the simulator is stopped.
            from kiosk.hal import simkeys

            await simkeys.serve(opts["--interactive"], hal, holder[0])
        if not script or not await simscript.play(script, hal, holder[0]):
            clock.realtime = True  # the script is over: a person or a host tool may talk
            while True:
                await simscript.asyncio.sleep_ms(3600000)

    def on_ready(kiosk):
        holder.append(kiosk)
        if kiosk.sync is not None:
            clock.peer_activity = lambda: kiosk.sync.lines

    clock.install()
    kiosk = app.run(hal, customer(), on_ready=on_ready)
    hal.shut_down()
    if kiosk.maintenance_s:
        # On a board kiosk/boot.py would leave the REPL free, then restart: here it ends.
        print("deskpulse: stopped for maintenance (%d s)" % kiosk.maintenance_s)
    status = kiosk.status()
    print("@" + json.dumps({"status": status}))
    failures = _failures(kiosk, status)
    if failures:
        sys.stderr.write("deskpulse: the simulated kiosk failed: %s\n" % "; ".join(failures))
        raise SystemExit(3)


def _failures(kiosk, status):
    """What went wrong during the run that the kiosk survived but a test or a person must
    hear of: a device would show it on its service screen."""
    out = []
    display = status["display"]
    if display and display["failures"]:
        out.append("display failed %d time(s), last: %s" % (display["failures"],
                                                             display["error"]))
    if status["store_errors"]:
        out.append("%d response(s) could not be stored" % status["store_errors"])
    if kiosk.sync is not None and kiosk.sync.failures:
        out.append("serial sync failed %d time(s)" % kiosk.sync.failures)
    return out


main(sys.argv[1:])
