# Device configuration: defaults, validation, loading and atomic saving.
#
# A config that cannot be read or fails validation is rejected as a whole: the device
# keeps collecting on the defaults and reports every problem (status, service screen),
# rather than guessing which half of a broken file was meant.
import json
import os

from kiosk import jsoncheck

SECRET_KEYS = ("wifi_password", "device_key")
TEXT_KEYS = ("question", "follow_up", "yes", "no", "thanks", "sorry", "closed")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_FILE_BYTES = 8192
# Limits the validator applies beside the tables below (docs/config.md is made from all
# of them: tools/config_doc.py).
_MAX_TEXT = 120  # characters of one text
_MAX_ID = 32  # characters of device_id
_MAX_LANGUAGE = 8  # characters of a language code (at least 2)
_MAX_ZONE = 64  # characters of time_zone
_PIECE = 64  # bytes of a config file checked at a time

ENGLISH = {
    "question": "How was your visit?",
    "follow_up": "Did we tell you what happens next?",
    "yes": "Yes",
    "no": "No",
    "thanks": "Thank you!",
    "sorry": "Sorry - we will do better.",
    "closed": "We are closed",
}


def defaults():
    return {
        "version": 0,
        "device_id": "",
        "language": "en",
        "texts": {"en": dict(ENGLISH)},
        "scale": 4,
        "follow_up_timeout_s": 10,
        "thank_you_s": 3,
        "rapid_interval_s": 5,
        "input_guard_ms": 300,
        "min_read_ms": 600,
        "opening_hours": None,
        # Local time (docs/time.md): tz_rule, a POSIX TZ rule the host derives from the
        # IANA name in time_zone, wins; utc_offset_min is the fixed offset of configs
        # written before it, used only without a rule.
        "time_zone": "",
        "tz_rule": "",
        "utc_offset_min": 0,
        "full_refresh_every": 8,
        "sync": {
            "server_url": "",
            "wifi_ssid": "",
            "wifi_password": "",
            "device_key": "",
            "push_interval_s": 30,
            "push_min_pending": 20,
            # The clock's NTP server (docs/wifi.md): a host name or an IPv4 address,
            # "" for none (e.g. a store network that blocks NTP: the push sets the time).
            "ntp_server": "pool.ntp.org",
            # For an https:// server_url: the server's certificate, or the CA's that
            # signed it, in PEM (docs/wifi.md, "HTTPS"); the kiosk trusts nothing else.
            "server_cert": "",
        },
    }


# key: (type, low, high) for ints, (str, max length) for strings
_INTS = {
    "version": (0, 0xFFFF),
    "scale": (3, 5),
    "follow_up_timeout_s": (2, 120),
    "thank_you_s": (1, 60),
    "rapid_interval_s": (0, 3600),
    # A press counts only once its screen is on the glass and this long after (docs/flow.md).
    "input_guard_ms": (0, 3000),
    # A tap sooner than this after its screen could be seen is quicker than a person reads.
    "min_read_ms": (0, 10000),
    "utc_offset_min": (-720, 840),
    "full_refresh_every": (1, 100),  # partial e-ink refreshes between full ones
}
_SYNC_INTS = {"push_interval_s": (5, 86400), "push_min_pending": (1, 1000)}
_SYNC_STRS = {"server_url": 200, "wifi_ssid": 32, "wifi_password": 64, "device_key": 128,
              # two RSA-2048 certificates in PEM (an old and a new one, for a rollover)
              "server_cert": 3072}
_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
_PEM_END = "-----END CERTIFICATE-----"


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _check_int(problems, where, value, low, high):
    if not _is_int(value):
        problems.append("%s must be a whole number" % where)
    elif not low <= value <= high:
        problems.append("%s must be between %d and %d (got %d)" % (where, low, high, value))


def _check_str(problems, where, value, limit):
    if not isinstance(value, str):
        problems.append("%s must be text" % where)
    elif len(value) > limit:
        problems.append("%s is longer than %d characters" % (where, limit))


def is_ipv4(text):
    """Whether text is a dotted IPv4 address: four decimal numbers 0-255, without
    leading zeros (lwIP would read "010" as octal: kiosk/hostname.py). Such a host is
    used as it is and never looked up (kiosk/resolve.py). Allocates nothing: the push
    asks it for every request."""
    dots = 0
    digits = 0  # in the current number
    value = 0
    for ch in text:
        if ch == ".":
            if not digits or dots == 3:
                return False
            dots += 1
            digits = value = 0
        elif "0" <= ch <= "9":
            if digits and not value:
                return False  # a leading zero: lwIP would read octal
            digits += 1
            value = value * 10 + ord(ch) - 48
            if value > 255:
                return False
        else:
            return False
    return dots == 3 and digits > 0


def _parse_hhmm(text):
    if not isinstance(text, str) or len(text) != 5 or text[2] != ":":
        raise ValueError
    h = int(text[:2])
    m = int(text[3:])
    if not (0 <= h <= 24 and 0 <= m < 60) or h * 60 + m > 1440:
        raise ValueError
    return h * 60 + m


def parse_hours(spans):
    """["08:00-12:00", "17:00-02:00"] -> [(480, 720), (1020, 120)] minutes of the day.

    A span that ends before it starts runs past midnight and belongs to the day it
    starts: "fri": ["17:00-02:00"] is open from Friday 17:00 to Saturday 02:00."""
    out = []
    for span in spans:
        if not isinstance(span, str) or len(span) != 11 or span[5] != "-":
            raise ValueError("bad span %r: use HH:MM-HH:MM" % (span,))
        try:
            start = _parse_hhmm(span[:5])
            end = _parse_hhmm(span[6:])
        except ValueError:
            raise ValueError("bad span %r: use HH:MM-HH:MM" % (span,))
        if start == 1440:
            raise ValueError("span %r starts at 24:00: start it at 00:00 of the next day"
                             % (span,))
        if end == start:
            raise ValueError("span %r is empty: 00:00-24:00 is the whole day" % (span,))
        out.append((start, end))
    return out


def _check_device_id(problems, value):
    _check_str(problems, "device_id", value, _MAX_ID)
    if isinstance(value, str):
        for ch in value:
            # ASCII only, spelled out: MicroPython's isalpha() and isdigit() know only
            # ASCII, CPython's would also pass "é" or "²" (the host runs this too).
            if not ("a" <= ch <= "z" or "A" <= ch <= "Z" or "0" <= ch <= "9" or ch in "-_."):
                problems.append("device_id may hold only letters, digits, '-', '_' and '.'")
                break


def _check_texts(problems, texts, language):
    if not isinstance(texts, dict) or not texts:
        problems.append("texts must map a language code to its texts")
        return
    for lang, table in texts.items():
        if not isinstance(lang, str) or not 2 <= len(lang) <= _MAX_LANGUAGE:
            problems.append("texts: language code %r must be 2-%d letters"
                            % (lang, _MAX_LANGUAGE))
            continue
        if not isinstance(table, dict):
            problems.append("texts.%s must be an object" % lang)
            continue
        for key, value in table.items():
            if key not in TEXT_KEYS:
                problems.append("texts.%s: unknown text %r" % (lang, key))
            else:
                _check_str(problems, "texts.%s.%s" % (lang, key), value, _MAX_TEXT)
    if language != "en" and isinstance(language, str) and language not in texts:
        problems.append("language %r has no texts" % (language,))


def _check_hours(problems, hours):
    if hours is None:
        return
    if not isinstance(hours, dict):
        problems.append("opening_hours must be null (always open) or an object of days")
        return
    for day, spans in hours.items():
        if day not in DAYS:
            problems.append("opening_hours: unknown day %r (use %s)" % (day, ", ".join(DAYS)))
        elif not isinstance(spans, list):
            problems.append("opening_hours.%s must be a list of \"HH:MM-HH:MM\"" % day)
        else:
            try:
                parse_hours(spans)
            except ValueError as e:
                problems.append("opening_hours.%s: %s" % (day, e))


def _check_zone(problems, raw):
    zone = raw.get("time_zone", "")
    _check_str(problems, "time_zone", zone, _MAX_ZONE)
    rule = raw.get("tz_rule", "")
    if not isinstance(rule, str):
        problems.append("tz_rule must be text")
    elif rule:
        from kiosk import tzrule  # here: a kiosk without a zone never loads it (4 KB)

        try:
            tzrule.parse(rule)
        except ValueError as e:
            problems.append("tz_rule %r is not a POSIX TZ rule: %s" % (rule, e))
    elif zone and isinstance(zone, str):
        # The kiosk cannot look a name up; following it needs the rule the host adds.
        problems.append("time_zone %r has no tz_rule: install the config with `deskpulse "
                        "sync --config`, which adds the zone's rule" % (zone,))


def _check_tls(problems, url, cert):
    """An https:// server needs a certificate to verify it against, and a certificate
    only makes sense for one: never a silent unverified (or unencrypted) connection."""
    if not isinstance(url, str) or not isinstance(cert, str):
        return  # reported by _check_str
    https = url.startswith("https://")
    if https and not cert:
        problems.append("sync.server_url is https:// but sync.server_cert is empty: give the "
                        "server's certificate (or its CA's) in PEM")
    elif cert and not https:
        problems.append("sync.server_cert is set but sync.server_url is not https://: the "
                        "push would not use it")
    elif cert and not _looks_like_pem(cert):
        problems.append("sync.server_cert must be PEM: %s ... %s" % (_PEM_BEGIN, _PEM_END))


def _looks_like_pem(text):
    """Certificates in PEM (base64 between BEGIN/END lines); mbedTLS checks the rest when
    the push first uses it (kiosk/https.py)."""
    text = text.strip()
    if not text.startswith(_PEM_BEGIN) or not text.endswith(_PEM_END):
        return False
    for ch in text:
        if not ("A" <= ch <= "Z" or "a" <= ch <= "z" or "0" <= ch <= "9" or ch in "+/=- \r\n"):
            return False
    return True


def validate(raw):
    """Return (config, problems). With any problem the config is the defaults."""
    problems = []
    if not isinstance(raw, dict):
        return defaults(), ["config must be a JSON object"]
    base = defaults()
    for key in raw:
        if key not in base:
            problems.append("unknown key %r" % (key,))
    for key, (low, high) in _INTS.items():
        if key in raw:
            _check_int(problems, key, raw[key], low, high)
    if "device_id" in raw:
        _check_device_id(problems, raw["device_id"])
    language = raw.get("language", "en")
    _check_str(problems, "language", language, _MAX_LANGUAGE)
    if "texts" in raw:
        _check_texts(problems, raw["texts"], language)
    elif language != "en":
        problems.append("language %r has no texts" % (language,))
    _check_hours(problems, raw.get("opening_hours"))
    _check_zone(problems, raw)
    sync = raw.get("sync", {})
    if not isinstance(sync, dict):
        problems.append("sync must be an object")
    else:
        for key in sync:
            if key not in base["sync"]:
                problems.append("sync: unknown key %r" % (key,))
        for key, (low, high) in _SYNC_INTS.items():
            if key in sync:
                _check_int(problems, "sync." + key, sync[key], low, high)
        for key, limit in _SYNC_STRS.items():
            if key in sync:
                _check_str(problems, "sync." + key, sync[key], limit)
        if "ntp_server" in sync:
            from kiosk.hostname import host_problem  # here: most configs never load it

            problem = host_problem("sync.ntp_server", sync["ntp_server"],
                                   '; "" turns NTP off')
            if problem:
                problems.append(problem)
        _check_tls(problems, sync.get("server_url", ""), sync.get("server_cert", ""))
    if problems:
        return base, problems
    for key, value in raw.items():
        if key == "sync":
            base["sync"].update(value)
        elif key != "texts":
            base[key] = value
    # Only the texts shown are kept: a config with many languages would otherwise hold
    # them all in RAM for as long as it is in force (every one was checked above).
    shown = raw.get("texts", {}).get(language)
    if shown is not None:
        merged = dict(ENGLISH)
        merged.update(shown)
        base["texts"] = {language: merged}
    return base, problems


def board_problem(config, board):
    """Why the config cannot run on this board as it is, or None: a scale needs a face
    button per face (on touch boards the faces are drawn, so any scale fits)."""
    faces = sum(1 for b in board["buttons"] if b.get("face"))
    if config["scale"] > faces and not board.get("touch"):
        return "scale %d needs %d face buttons; this board has %d" % (
            config["scale"], config["scale"], faces)
    return None


def scale_rating(position, buttons, scale):
    """The rating that face button `position` (1 = worst of `buttons` face buttons) gives
    on a scale of `scale` faces, or 0 when it gives none.

    A scale smaller than the button count is laid over every button rather than leaving
    the last ones dead: the ends stay the worst and best faces (also "no" and "yes"), and
    each middle face takes the buttons nearest to it, a tie going to the face nearer the
    middle so the layout stays symmetric. Three faces on four buttons: 1, 2, 2, 3 (the
    middle face stands between the two middle buttons; docs/flow.md)."""
    if scale >= buttons or buttons < 2:
        return position if 1 <= position <= scale else 0
    if not 1 <= position <= buttons:
        return 0
    i = position - 1
    if 2 * i > buttons - 1:  # the right half mirrors the left
        return scale + 1 - scale_rating(buttons - i, buttons, scale)
    # Round i * (scale - 1) / (buttons - 1) half up: towards the middle in the left half.
    return (2 * i * (scale - 1) + buttons - 1) // (2 * (buttons - 1)) + 1


def _refusal(problem, what):
    """The sentence for a jsoncheck problem of what (e.g. "config file")."""
    if isinstance(problem, jsoncheck.TooDeep):
        return "%s is nested too deeply: %s" % (what, problem)
    if isinstance(problem, jsoncheck.BadUtf8):
        return "%s is not valid UTF-8" % what
    return "%s is not valid JSON: %s" % (what, problem)


def parse(data, what="config"):
    """The JSON value in data (the bytes of what, e.g. "config file"); raises ValueError
    with the problem as a sentence about what.

    MicroPython's json.loads takes some broken texts and recurses on nesting, so the
    strict check comes first: a config is applied only when it is exactly valid JSON."""
    try:
        jsoncheck.check(data)
    except jsoncheck.JsonProblem as e:
        raise ValueError(_refusal(e, what))
    try:
        return json.loads(data)  # bytes: the check has vouched for their UTF-8
    except ValueError as e:  # the check passed: only what MicroPython's parser lacks
        raise ValueError("%s is not valid JSON (%s)" % (what, e))


def checked_value(checker, path, what="config"):
    """The JSON value of the file at path, whose bytes checker (a jsoncheck.Checker) was
    fed in order: ValueError with the checker's problem as a sentence about what, or
    the value, parsed from the file. json.load reads a stream a byte at a time, so the
    text is never whole in RAM (a config's 8 KB in one piece is more than a busy heap
    may have). Raises OSError when the file cannot be read."""
    try:
        checker.end()
    except jsoncheck.JsonProblem as e:
        raise ValueError(_refusal(e, what))
    with open(path, "rb") as f:
        try:
            return json.load(f)
        except ValueError as e:
            raise ValueError("%s is not valid JSON (%s)" % (what, e))


def read(path, what="config"):
    """The JSON value in the file at path, checked as parse() checks bytes, but in pieces
    of _PIECE bytes and then parsed from the file: never whole in RAM. Raises ValueError
    (a sentence about what) or OSError."""
    checker = jsoncheck.Checker()
    piece = bytearray(_PIECE)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(piece)
            if not n:
                break
            try:
                checker.feed(piece, n)
            except jsoncheck.JsonProblem:
                break  # kept by the checker: checked_value reports it
    return checked_value(checker, path, what)


def load(path):
    """Read and validate the config file: (config, problems); never raises for bad input."""
    try:
        size = os.stat(path)[6]
    except OSError:
        return defaults(), ["no config file %s: using defaults" % path]
    if size > MAX_FILE_BYTES:
        return defaults(), ["config file is %d bytes, over the %d limit" % (size, MAX_FILE_BYTES)]
    try:
        raw = read(path, "config file")
    except OSError as e:
        return defaults(), ["config file %s cannot be read (%s)" % (path, e)]
    except ValueError as e:
        return defaults(), [str(e)]
    return validate(raw)


MAC_ID_PREFIX = "kiosk-"


def id_for_mac(mac):
    """The id of a kiosk whose config names none: "kiosk-" and the 12 lowercase hex
    digits of its base MAC (6 bytes: machine.unique_id() on an ESP32, the MAC esptool
    reads), so a bare kiosk syncs and pushes before anyone names it. "" without a MAC.
    The host has its own copy of this rule (deskpulse.device.registration
    device_id_for_mac); tests/device/test_registry.py checks that they agree."""
    if not mac or len(mac) != 6:
        return ""
    return MAC_ID_PREFIX + "%02x%02x%02x%02x%02x%02x" % tuple(mac)


def name_bare(config, mac):
    """config (validated), its device_id derived from mac when the file names none;
    returned for chaining. The file keeps its own (empty) id: the kiosk takes a MAC id
    only while nobody has named it."""
    if not config["device_id"]:
        config["device_id"] = id_for_mac(mac)
    return config


def identity_problem(current_id, new_id, unconfirmed):
    """Why a config with device_id new_id may not replace one with current_id while
    unconfirmed responses wait for a host, or None. Both are the ids in force, a MAC id
    included (name_bare): a bare kiosk named after its own MAC keeps its id.

    The host stores responses under the id the device reports when they are synced: a
    new id would store again, as another kiosk, responses already stored under the old
    one (counted twice). Naming a kiosk that has none (no name, no MAC) is fine: the host
    refuses an empty id, so nothing can have been stored under it. Taking a kiosk's id
    away is not: named again later, it would store them again all the same."""
    if current_id and new_id != current_id and unconfirmed > 0:
        return ("device_id cannot change from %s to %s while %d responses are not "
                "confirmed by a host: sync them first"
                % (current_id, new_id or '""', unconfirmed))
    return None


KEPT_SYNC = ("server_url", "device_key", "wifi_ssid", "wifi_password", "server_cert")
"""What a kiosk keeps of its own sync settings under a config fetched over the air (with
its device_id): how it reaches the server, and the certificate it trusts the server by.
A server able to change server_cert could pin whatever certificate it likes and remove
the kiosk's only proof of who it talks to; without it, an https kiosk's config would be
refused ("server_cert is empty"). The host refuses to set them over the air
(deskpulse.device.ota.KEPT_BY_KIOSK); docs/wifi.md "HTTPS" has the rollover."""


def install(kiosk, incoming, checker, over_the_air=False):
    """Check the config staged in the file incoming (every byte of which went through
    checker, a jsoncheck.Checker, as it was written) and rename it over
    kiosk.config_path: (config, None), or (None, problems) with the staged file left for
    the caller to remove. A power cut leaves the old config or the new one, whole.

    over_the_air: the staged config is the server's; the kiosk's own device_id and
    KEPT_SYNC settings go into it, and the file is written again (json.dump writes as it
    goes) before the rename."""
    try:
        raw = checked_value(checker, incoming)
    except ValueError as e:
        return None, [str(e)]
    except OSError as e:
        return None, ["config not saved: %s" % e]
    if over_the_air and isinstance(raw, dict):
        current = kiosk.config
        raw["device_id"] = current["device_id"]
        sync = raw.get("sync")
        if sync is None:
            sync = raw["sync"] = {}
        if isinstance(sync, dict):
            for key in KEPT_SYNC:
                sync[key] = current["sync"][key]
    config, problems = validate(raw)
    if problems:
        return None, problems
    if over_the_air:
        try:
            with open(incoming, "w") as f:
                # Compact, as the host sends configs (MicroPython's json.dump takes
                # separators; the stubs do not know it).
                json.dump(raw, f, separators=(",", ":"))  # pyright: ignore[reportCallIssue]
            size = os.stat(incoming)[6]
        except OSError as e:
            return None, ["config not saved: %s" % e]
        if size > MAX_FILE_BYTES:  # the next boot would refuse it
            return None, ["config with this kiosk's own settings is %d bytes, over the %d "
                          "limit" % (size, MAX_FILE_BYTES)]
    raw = None  # the whole value, every language: the config keeps only what it uses
    name_bare(config, kiosk.mac)
    problem = board_problem(config, kiosk.hal.board) or identity_problem(
        kiosk.config["device_id"], config["device_id"], kiosk.log.counts()[1])
    if problem:
        return None, [problem]
    try:
        os.rename(incoming, kiosk.config_path)
    except OSError as e:
        return None, ["config not saved: %s" % e]
    return config, None


def apply(kiosk, config):
    """The kiosk (an app.Kiosk) runs on config, validated and installed, from now on."""
    kiosk.config = config
    if kiosk.config_problems:
        kiosk.config_problems = []
        kiosk.flow.config_problem = False
    # A session in progress finishes under the scale it started with (see flow).
    kiosk.flow.apply_config(config)


def save(path, raw):
    """Validate, then write atomically (temp file + rename). Raises ValueError on problems.
    json.dump writes as it goes: the text is never whole in RAM."""
    config, problems = validate(raw)
    if problems:
        raise ValueError("; ".join(problems))
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(raw, f)
        size = os.stat(tmp)[6]
        if size > MAX_FILE_BYTES:
            raise ValueError("config is over %d bytes" % MAX_FILE_BYTES)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    return config


def redacted(config):
    """A copy safe for status and logs: secrets replaced by '***' when set."""
    out = dict(config)
    sync = dict(config.get("sync", {}))
    for key in SECRET_KEYS:
        if sync.get(key):
            sync[key] = "***"
    out["sync"] = sync
    return out


def texts(config):
    """The texts shown: the language's (validate keeps no other), else English."""
    table = config["texts"]
    return table.get(config["language"]) or table["en"]


def utc_offset_s(config, wall):
    """Seconds east of UTC on the store's clocks at unix time wall: the zone's rule when
    the config has one (daylight saving included), else the fixed utc_offset_min."""
    rule = config["tz_rule"]
    if rule:
        from kiosk import tzrule  # loaded once; a later import is a dict lookup

        return tzrule.offset(tzrule.cached(rule), wall)
    return config["utc_offset_min"] * 60


def is_open(config, wall):
    """Whether the store is open at unix time wall, judged on the store's local clock;
    always True while the clock is unknown (wall == 0), because hours cannot be judged
    then."""
    hours = config["opening_hours"]
    if hours is None or not wall:
        return True
    local = wall + utc_offset_s(config, wall)
    days = local // 86400
    minute = (local - days * 86400) // 60
    # 1970-01-01 was a Thursday (index 3)
    for start, end in parse_hours(hours.get(DAYS[(days + 3) % 7], ())):
        if start <= minute < end or (end < start and start <= minute):
            return True
    # Yesterday's spans that run past midnight.
    for start, end in parse_hours(hours.get(DAYS[(days + 2) % 7], ())):
        if end < start and minute < end:
            return True
    return False
