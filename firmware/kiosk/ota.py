# Config over the air, device side (docs/wifi.md, "Config over the air"). A verified push
# answer names the version of the config the server holds for this kiosk; when it is not
# the version running, the push task fetches it here, right after that push, under the
# push's next nonce and key, and applies it as a serial CONFIG upload is applied.
#
# The answer's body is never whole in RAM: it is read through the push's fixed answer
# buffer and each piece goes at once to config.json.new, through the strict JSON check
# and the answer's HMAC. Only a body whose signature verifies is installed
# (kiosk.config.install: parsed from the file, validated by the firmware's validator,
# renamed over config.json), so a power cut leaves the old config or the new one.
#
# The push right after a fetch that applied or refused a config goes out even without a
# record waiting (an empty batch), so the server soon shows the version the kiosk runs.
#
# Once per push answer: a fetch that fails (network, server, a forged answer) is tried
# again after the next push that names the version; a config the kiosk refuses is
# reported (status push.config.rejected: [version, reason]) and not fetched again until
# the server names another version (or the kiosk restarts).
import asyncio
import os

from kiosk import jsoncheck
from kiosk import config as cfg
from kiosk.hmac import same_hex
from kiosk.push import PushError, content_length, error_sentence, head_fields
from micropython import const

REQUEST_TYPE = "application/json"
_INCOMING = ".new"  # as the serial upload: the config path + this while it arrives
_MAX_SHOWN = const(120)


class Refused(Exception):
    """The server's config, signed and whole, that this kiosk will not run."""


async def fetch(push, desired):
    """Fetch and apply the config version `desired` that a push answer named, unless the
    kiosk runs it or refused it; the outcome goes to push.ota (the status)."""
    state = push.ota
    if state is None:
        state = push.ota = {"desired": None, "fetches": 0, "applied": 0, "rejected": None,
                            "last_error": None}
    state["desired"] = desired
    rejected = state["rejected"]
    kiosk = push.kiosk
    if desired == kiosk.config["version"] or (rejected is not None and rejected[0] == desired):
        return
    state["fetches"] += 1
    incoming = kiosk.config_path + _INCOMING
    try:
        config = await _request(push, incoming)
        state["last_error"] = None
    except Refused as e:
        state["rejected"] = [desired, str(e)[:_MAX_SHOWN]]
        push.report_due = True  # the server shows the reason without waiting
        return
    except Exception as e:  # network, timeouts, the server's refusals, a forgery
        state["last_error"] = ("%s: %s" % (type(e).__name__, e))[:_MAX_SHOWN]
        return
    finally:
        try:
            os.remove(incoming)
        except OSError:
            pass  # installed (renamed away), or never written
    cfg.apply(kiosk, config)
    state["applied"] += 1
    state["rejected"] = None
    push.report_due = True  # the server learns the version it runs at once


async def _request(push, incoming):
    host, port, path, device_id = push._settings()
    # The batches path's sibling: prefix/v1/devices/<id>/config
    path = path[:path.rfind(b"/") + 1] + b"config"
    address = push._address(host)
    nonce = push.next_nonce()
    line = ('{"running":%d}' % push.kiosk.config["version"]).encode()
    head = push.signed_head(host, port, path, device_id, nonce, REQUEST_TYPE, line, b"")
    stage = _Stage(push, incoming, nonce)
    await push._exchange(host, address, port, head, line, b"", read=stage.read)
    if not stage.verified:
        raise PushError("config answer not verified")
    config, problems = cfg.install(push.kiosk, incoming, stage.checker, over_the_air=True)
    if problems:
        if problems[0].startswith("config not saved"):
            # The flash failed (full, worn): not the config's fault, so it is fetched
            # again after the next push that names it.
            raise PushError(problems[0])
        raise Refused("; ".join(problems))
    return config


class _Stage:
    """Reads a fetch's answer: the head into the push's answer buffer, the body through it
    to the staged file, the JSON check and the answer's HMAC."""

    def __init__(self, push, incoming, nonce):
        self.push = push
        self.incoming = incoming
        self.nonce = nonce
        self.checker = jsoncheck.Checker()
        self.verified = False

    async def read(self, reader):
        push = self.push
        buf = push._answer
        mv = push._answer_mv
        step = push.step_timeout_ms
        wait_for_ms = asyncio.wait_for_ms
        got = 0
        head_end = -1
        while head_end < 0:
            if got == len(buf):
                raise PushError("answer head longer than %d bytes" % len(buf))
            n = await wait_for_ms(reader.readinto(mv[got:]), step)
            if not n:
                raise PushError("answer cut short after %d bytes" % got)
            got += n
            head_end = bytes(mv[:got]).find(b"\r\n\r\n")
        code, signature, _ = head_fields(mv, head_end)
        length = content_length(buf, head_end)
        start = head_end + 4
        if code != 200:
            raise PushError("server answered %d: %s" % (code, error_sentence(bytes(mv[start:got]))))
        if not 0 < length <= cfg.MAX_FILE_BYTES:
            raise PushError("config answer of %d bytes (at most %d)"
                            % (length, cfg.MAX_FILE_BYTES))
        mac = push._key()
        mac.begin()
        mac.update(b"DP1 config\n")
        mac.update(self.nonce)
        mac.update(b"\n")
        left = length
        with open(self.incoming, "wb") as f:
            piece = mv[start:got]
            while True:
                if len(piece) > left:
                    raise PushError("config answer longer than its Content-Length")
                left -= len(piece)
                f.write(piece)
                mac.update(piece)
                self._check(piece)
                if not left:
                    break
                n = await wait_for_ms(reader.readinto(mv[:min(len(buf), left)]), step)
                if not n:
                    raise PushError("config answer cut short, %d bytes missing" % left)
                piece = mv[:n]
        if signature is None or not same_hex(mac.hexdigest(), signature):
            raise PushError("config answer signature does not match: not applied")
        self.verified = True

    def _check(self, piece):
        checker = self.checker
        if checker.problem is None:
            try:
                checker.feed(piece)
            except jsoncheck.JsonProblem:
                pass  # kept by the checker: kiosk.config.install reports it

