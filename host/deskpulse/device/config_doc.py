"""docs/config.md, made from the firmware's own validator (kiosk/config.py): every key of a
device config with its type, default and limits.

The types, defaults and limits come from the validator's tables and constants (defaults(),
_INTS, _SYNC_INTS, _SYNC_STRS, TEXT_KEYS, DAYS, ENGLISH, _MAX_*), so they cannot drift
from what a kiosk takes; only the meanings are written here. A key the validator has and
this module does not describe (or the other way round) is an error, and
tests/device/test_config_doc.py compares the file with what `tools/config_doc.py` makes
and probes the validator at every limit the page states.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deskpulse.device.config_check import firmware_module
from deskpulse.errors import DeskPulseError

MEANINGS: dict[str, str] = {
    "version": "A number of the host's choosing, kept with every response recorded under "
               "this config (reports can tell configs apart).",
    "device_id": "The kiosk's id: the host stores its responses under it, the push signs "
                 "with it. Empty: the kiosk goes by `kiosk-` and the 12 lowercase hex digits "
                 "of its MAC. It cannot change while responses wait for a host "
                 "(docs/protocol.md).",
    "language": "The language of the texts shown: `en` or a language of `texts`.",
    "texts": "The customer's texts per language; a text left out is the English one. "
             "Only the language shown is kept in the kiosk's RAM.",
    "scale": "Faces on the rating screen; a button board needs a face button per face.",
    "follow_up_timeout_s": "How long the follow-up question waits for an answer.",
    "thank_you_s": "How long the thank-you screen stays.",
    "rapid_interval_s": "A session that starts sooner than this after the previous one, "
                        "with a tap quicker than a person reads (`min_read_ms`), is flagged "
                        "rapid (left out of reports unless asked for).",
    "input_guard_ms": "A press counts only once its screen is on the glass and this long "
                      "after (docs/flow.md).",
    "min_read_ms": "A tap sooner than this after its screen could be seen is quicker than a "
                   "person reads (see `rapid_interval_s`).",
    "opening_hours": "null: always open. Else the days open, each with its spans in the "
                     "store's local time; a span past midnight belongs to the day it starts "
                     "(`fri: [\"17:00-02:00\"]`). A response outside them is flagged closed.",
    "time_zone": "The store's IANA time zone (e.g. `Europe/Paris`): local time for opening "
                 "hours and reports. The host adds its `tz_rule` when it installs the config.",
    "tz_rule": "The zone's POSIX TZ rule (`CET-1CEST,M3.5.0,M10.5.0/3`), written by the "
               "host from `time_zone`; wins over `utc_offset_min`.",
    "utc_offset_min": "A fixed offset from UTC, for configs without a zone.",
    "full_refresh_every": "Partial e-ink refreshes between two full ones (against ghosting).",
    "sync": "The WiFi push (docs/wifi.md); all of it unset: no push.",
    "sync.server_url": "The aggregator, `http://HOST:PORT` (`deskpulse serve`), or "
                       "`https://HOST:PORT` (`serve --certfile`), which needs "
                       "`sync.server_cert`.",
    "sync.wifi_ssid": "The store WiFi's name.",
    "sync.wifi_password": "Its password. Never shown: `deskpulse config show` and `sync` "
                          "print `***`.",
    "sync.device_key": "The push key, 64 hex digits from `deskpulse devices add`. Never "
                       "shown.",
    "sync.push_interval_s": "Seconds between pushes while responses wait.",
    "sync.push_min_pending": "Responses waiting that start a push before the interval.",
    "sync.server_cert": "For an `https://` server only (required then): the certificate "
                        "the kiosk verifies it against, in PEM: the server's own (pinned) "
                        "or the CA's that signed it; several for a rollover. The server's "
                        "name or address in the URL must be in it, and the kiosk's clock "
                        "set (docs/wifi.md, \"HTTPS\"). `deskpulse devices add "
                        "--server-cert` and `deskpulse provision --server-cert` put it "
                        "here. Kept by the kiosk under a config over the air: it changes "
                        "over USB only.",
    "sync.ntp_server": "The clock's NTP server: a host name or an IPv4 address; \"\" for "
                       "none (the push sets the clock then).",
}
"""What each key means: the only hand-written part of docs/config.md."""

TEXT_MEANINGS: dict[str, str] = {
    "question": "The rating screen's question.",
    "follow_up": "The follow-up question after a rating.",
    "yes": "The follow-up's yes.",
    "no": "The follow-up's no.",
    "thanks": "The thank-you screen.",
    "sorry": "The thank-you screen after a \"no\" to the follow-up question.",
    "closed": "Shown outside the opening hours.",
}

_NTP_NAME = 253  # characters of a host name (kiosk/hostname.py), labels of 1-63


@dataclass(frozen=True)
class KeyDoc:
    """One row of docs/config.md."""

    path: str  # e.g. "sync.push_interval_s", "texts.<language>.question"
    type: str
    default: Any
    limits: str
    meaning: str
    low: int | None = None  # the whole numbers taken, for integers
    high: int | None = None
    max_length: int | None = None  # characters, for texts


def config_keys() -> list[KeyDoc]:
    """Every key of a device config, in the order of the firmware's defaults()."""
    fw = firmware_module("kiosk.config")
    defaults = fw.defaults()
    ints: Mapping[str, tuple[int, int]] = fw._INTS
    sync_ints: Mapping[str, tuple[int, int]] = fw._SYNC_INTS
    sync_strs: Mapping[str, int] = fw._SYNC_STRS
    described = {*defaults, *(f"sync.{k}" for k in defaults["sync"])}
    if set(MEANINGS) != described:
        raise DeskPulseError(
            "the config keys described and the firmware's differ: "
            f"undescribed {sorted(described - set(MEANINGS))}, "
            f"gone {sorted(set(MEANINGS) - described)} (deskpulse.device.config_doc.MEANINGS)")
    if set(TEXT_MEANINGS) != set(fw.TEXT_KEYS):
        raise DeskPulseError("the texts described and the firmware's TEXT_KEYS differ")
    rows: list[KeyDoc] = []
    for key, default in defaults.items():
        meaning = MEANINGS[key]
        if key in ints:
            low, high = ints[key]
            rows.append(KeyDoc(key, "integer", default, f"{low} to {high}", meaning, low, high))
        elif key == "device_id":
            rows.append(KeyDoc(key, "text", default,
                               f"at most {fw._MAX_ID} characters: letters, digits, "
                               "`-`, `_`, `.`", meaning, max_length=fw._MAX_ID))
        elif key == "language":
            rows.append(KeyDoc(key, "text", default,
                               f"2 to {fw._MAX_LANGUAGE} characters",
                               meaning, max_length=fw._MAX_LANGUAGE))
        elif key == "texts":
            rows.append(KeyDoc(key, "object", "(`en`: the texts below)",
                               "language code (2 to "
                               f"{fw._MAX_LANGUAGE} characters) to its texts",
                               meaning))
            for text in fw.TEXT_KEYS:
                rows.append(KeyDoc(f"texts.<language>.{text}", "text", fw.ENGLISH[text],
                                   f"at most {fw._MAX_TEXT} characters",
                                   TEXT_MEANINGS[text],
                                   max_length=fw._MAX_TEXT))
        elif key == "opening_hours":
            rows.append(KeyDoc(key, "null or object", default,
                               f"days ({', '.join(f'`{d}`' for d in fw.DAYS)}) to lists of "
                               "`\"HH:MM-HH:MM\"` (00:00 to 24:00)", meaning))
        elif key == "time_zone":
            rows.append(KeyDoc(key, "text", default,
                               f"at most {fw._MAX_ZONE} characters",
                               meaning, max_length=fw._MAX_ZONE))
        elif key == "tz_rule":
            rows.append(KeyDoc(key, "text", default, "a POSIX TZ rule", meaning))
        elif key == "sync":
            rows.append(KeyDoc(key, "object", "(below)", "the keys below", meaning))
            for skey, sdefault in default.items():
                path = f"sync.{skey}"
                if skey in sync_ints:
                    low, high = sync_ints[skey]
                    rows.append(KeyDoc(path, "integer", sdefault, f"{low} to {high}",
                                       MEANINGS[path], low, high))
                elif skey in sync_strs:
                    rows.append(KeyDoc(path, "text", sdefault,
                                       f"at most {sync_strs[skey]} characters",
                                       MEANINGS[path], max_length=sync_strs[skey]))
                elif skey == "ntp_server":
                    rows.append(KeyDoc(path, "text", sdefault,
                                       f"a host name (at most {_NTP_NAME} characters) or an "
                                       "IPv4 address, or \"\"", MEANINGS[path]))
                else:
                    raise DeskPulseError(f"config_doc cannot tell the limits of {path}")
        else:
            raise DeskPulseError(f"config_doc cannot tell the limits of {key}")
    return rows


_HEAD = """\
# Device config

<!-- Made by tools/config_doc.py from firmware/kiosk/config.py (the kiosk's validator):
     edit the validator or deskpulse/device/config_doc.py, then run the tool.
     tests/device/test_config_doc.py fails while this page and the validator disagree. -->

A kiosk's settings are one JSON object in `/config.json` on its flash, at most
{max_bytes:,} bytes (compacted as the host sends it). Every key may be left out: it then
has its default. A file with an unknown key, a wrong type or a value out of range is
refused as a whole, saying why (the kiosk keeps its old config, or runs on the defaults
at boot). The host checks a config with this same validator before it sends it.

- `deskpulse config show --port PORT` prints a kiosk's config (secrets as `***`).
- `deskpulse sync --config FILE` merges FILE into the kiosk's config: objects key by key
  (texts per language and per text, `sync`, the days of `opening_hours`), anything else
  replaced; what changes is printed, and a file that changes nothing is not sent.
  `--replace` sends FILE as the whole config.
- `deskpulse devices add ID --template STORE.json` writes a kiosk's config from a store
  template (the settings a store's kiosks share) and the kiosk's own id, key and server.

| key | type | default | limits | meaning |
|---|---|---|---|---|
"""


def render() -> str:
    """The text of docs/config.md."""
    fw = firmware_module("kiosk.config")
    lines = [_HEAD.format(max_bytes=fw.MAX_FILE_BYTES)]
    for row in config_keys():
        default = row.default if isinstance(row.default, str) and row.default.startswith("(") \
            else json.dumps(row.default, ensure_ascii=False)
        cells = (f"`{row.path}`", row.type, _cell(default, code=not default.startswith("(")),
                 row.limits, row.meaning)
        lines.append("| " + " | ".join(cells) + " |\n")
    return "".join(lines)


def _cell(text: str, *, code: bool) -> str:
    text = text.replace("|", "\\|")
    return f"`{text}`" if code else text
