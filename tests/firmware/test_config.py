"""Device configuration: validation and loading on the real MicroPython interpreter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import mpy_json


def load(path: Path) -> dict:
    return mpy_json(f"""
from kiosk import config as cfg
from harness import emit
c, problems = cfg.load({str(path)!r})
emit({{"config": c, "problems": problems, "redacted": cfg.redacted(c)}})
""")[0]


def load_json(tmp_path: Path, value: object) -> dict:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(value))
    return load(path)


DEFAULT_SCALE = 4


def test_missing_file_uses_defaults_and_says_so(tmp_path: Path) -> None:
    r = load(tmp_path / "nope.json")
    assert r["config"]["scale"] == DEFAULT_SCALE
    assert r["problems"] == [f"no config file {tmp_path}/nope.json: using defaults"]


def test_malformed_json_uses_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"scale": 5,')
    r = load(path)
    assert r["config"]["scale"] == DEFAULT_SCALE
    assert r["problems"][0].startswith("config file is not valid JSON")


def test_binary_garbage_uses_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(bytes(range(256)))
    r = load(path)
    assert r["config"]["scale"] == DEFAULT_SCALE
    assert len(r["problems"]) == 1


def test_a_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"device_id": "a", "texts": {"en": {"question": "x" * 20000}}}))
    r = load(path)
    assert r["config"]["texts"]["en"]["question"] == "How was your visit?"
    assert "over the 8192 limit" in r["problems"][0]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ([1, 2], "config must be a JSON object"),
        ({"scale": 7}, "scale must be between 3 and 5 (got 7)"),
        ({"scale": "4"}, "scale must be a whole number"),
        ({"scale": True}, "scale must be a whole number"),
        ({"scale": 4.0}, "scale must be a whole number"),
        ({"scael": 4}, "unknown key 'scael'"),
        ({"sync": {"wifi_pasword": "x"}}, "sync: unknown key 'wifi_pasword'"),
        ({"sync": []}, "sync must be an object"),
        ({"texts": {"en": {"question": "q" * 121}}}, "texts.en.question is longer than 120"
                                                     " characters"),
        ({"texts": {"en": {"questoin": "q"}}}, "texts.en: unknown text 'questoin'"),
        ({"texts": {"en": {"question": 5}}}, "texts.en.question must be text"),
        ({"language": "de"}, "language 'de' has no texts"),
        ({"device_id": "kiosk 1"}, "device_id may hold only letters, digits, '-', '_' and '.'"),
        ({"device_id": "k" * 33}, "device_id is longer than 32 characters"),
        ({"opening_hours": {"mon": ["9:00-17:00"]}},
         "opening_hours.mon: bad span '9:00-17:00': use HH:MM-HH:MM"),
        ({"opening_hours": {"mon": ["17:00-17:00"]}},
         "opening_hours.mon: span '17:00-17:00' is empty"),
        ({"opening_hours": {"mon": ["24:00-02:00"]}},
         "opening_hours.mon: span '24:00-02:00' starts at 24:00"),
        ({"tz_rule": "CET-1CEST"}, "tz_rule 'CET-1CEST' is not a POSIX TZ rule: daylight"
                                   " time needs its dates"),
        ({"tz_rule": 60}, "tz_rule must be text"),
        ({"time_zone": "Europe/Paris"}, "time_zone 'Europe/Paris' has no tz_rule"),
        ({"opening_hours": {"monday": []}}, "opening_hours: unknown day 'monday'"),
        ({"opening_hours": "9-5"}, "opening_hours must be null (always open) or an object of"
                                   " days"),
        ({"sync": {"wifi_password": "p" * 65}}, "sync.wifi_password is longer than 64"
                                                " characters"),
        ({"follow_up_timeout_s": 0}, "follow_up_timeout_s must be between 2 and 120 (got 0)"),
    ],
)
def test_each_bad_value_is_named_and_the_whole_config_falls_back(
    tmp_path: Path, value: object, problem: str
) -> None:
    r = load_json(tmp_path, value)
    assert any(p.startswith(problem) for p in r["problems"]), r["problems"]
    assert r["config"]["scale"] == DEFAULT_SCALE
    assert r["config"]["device_id"] == ""


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    r = load_json(tmp_path, {"scale": 9, "bogus": 1, "thank_you_s": "3"})
    assert len(r["problems"]) == 3


def test_a_good_config_is_merged_over_the_defaults(tmp_path: Path) -> None:
    good = {
        "version": 3,
        "device_id": "desk-1",
        "language": "de",
        "texts": {"de": {"question": "Wie war Ihr Besuch?", "thanks": "Danke schön!"}},
        "scale": 5,
        "opening_hours": {"mon": ["08:00-12:00", "13:00-18:00"], "sat": ["09:00-13:00"]},
        "utc_offset_min": 60,
        "sync": {"wifi_ssid": "store", "wifi_password": "hunter22", "device_key": "k" * 64},
    }
    r = load_json(tmp_path, good)
    assert r["problems"] == []
    c = r["config"]
    assert c["scale"] == 5 and c["version"] == 3 and c["device_id"] == "desk-1"
    assert c["texts"]["de"]["question"] == "Wie war Ihr Besuch?"
    assert c["texts"]["de"]["thanks"] == "Danke schön!"
    assert c["texts"]["de"]["yes"] == "Yes"  # untranslated texts fall back to English
    assert c["follow_up_timeout_s"] == 10
    assert c["sync"]["push_interval_s"] == 30
    assert r["redacted"]["sync"]["wifi_password"] == "***"
    assert r["redacted"]["sync"]["device_key"] == "***"
    assert "hunter22" not in json.dumps(r["redacted"])


def test_save_is_validated_and_atomic(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"scale": 3}))
    r = mpy_json(f"""
from kiosk import config as cfg
from harness import emit
import os
try:
    cfg.save({str(path)!r}, {{"scale": 11}})
    refused = None
except ValueError as e:
    refused = str(e)
after_bad = cfg.load({str(path)!r})[0]["scale"]
cfg.save({str(path)!r}, {{"scale": 5, "version": 2}})
emit({{"refused": refused, "after_bad": after_bad, "after_good": cfg.load({str(path)!r})[0],
      "files": sorted(os.listdir({str(tmp_path)!r}))}})
""")[0]
    assert r["refused"] == "scale must be between 3 and 5 (got 11)"
    assert r["after_bad"] == 3
    assert r["after_good"]["scale"] == 5 and r["after_good"]["version"] == 2
    assert r["files"] == ["config.json"]


@pytest.mark.parametrize("server", [
    "ntp://pool.ntp.org",  # a URL
    "pool.ntp.org:123",  # a port: NTP's is fixed
    "10.0.0",  # a short address
    "300.1.1.1",
    "010.0.0.1",  # lwIP would read it as octal
    "time server",
    "-pool.ntp.org",
    "pool..ntp.org",
])
def test_a_bad_ntp_server_is_refused_by_the_kiosk_and_by_the_host_check(
    tmp_path: Path, server: str
) -> None:
    from deskpulse.device.config_check import check_config
    from deskpulse.errors import DeskPulseError

    sentence = (f"sync.ntp_server must be a host name or an IPv4 address, e.g. pool.ntp.org "
                f"or 192.168.1.5 (got {server!r}); \"\" turns NTP off")
    r = load_json(tmp_path, {"sync": {"ntp_server": server}})
    assert r["problems"] == [sentence]
    assert r["config"]["sync"]["ntp_server"] == "pool.ntp.org"  # the defaults, as for all
    path = tmp_path / "config.json"
    for runtime in ("micropython", "cpython"):  # `deskpulse sync --config` runs either
        with pytest.raises(DeskPulseError) as refused:
            check_config(path, runtime)
        assert sentence in str(refused.value)


@pytest.mark.parametrize("server", ["pool.ntp.org", "192.168.1.5", "ntp1.store-lan", "",
                                    "time_server.local"])
def test_an_ntp_server_name_or_address_or_none_is_taken(tmp_path: Path, server: str) -> None:
    r = load_json(tmp_path, {"sync": {"ntp_server": server}})
    assert r["problems"] == [] and r["config"]["sync"]["ntp_server"] == server


def test_the_ntp_server_must_be_text(tmp_path: Path) -> None:
    r = load_json(tmp_path, {"sync": {"ntp_server": 123}})
    assert r["problems"] == ["sync.ntp_server must be text"]


@pytest.mark.parametrize("text", [b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xe2\x82"])
def test_a_text_that_is_not_utf8_is_refused_as_cpython_refuses_it(
        tmp_path: Path, text: bytes) -> None:
    """A surrogate, an overlong form, a code point past U+10FFFF, a cut sequence: MicroPython's
    own decoding takes some of them; the device refuses them all, as the host does."""
    path = tmp_path / "config.json"
    path.write_bytes(b'{"texts": {"en": {"yes": "' + text + b'"}}}')
    r = load(path)
    assert r["problems"] == ["config file is not valid UTF-8"]
    assert r["config"]["texts"]["en"]["yes"] == "Yes"


def test_only_the_texts_shown_are_kept_and_every_language_is_checked(tmp_path: Path) -> None:
    texts = {"en": {"yes": "Yes!"}, "de": {"yes": "Ja"}, "fr": {"yes": "Oui"}}
    r = load_json(tmp_path, {"language": "de", "texts": texts})
    assert r["problems"] == []
    assert r["config"]["texts"] == {"de": {**ENGLISH, "yes": "Ja"}}
    r = load_json(tmp_path, {"texts": texts})  # English shown: the others are dropped
    assert r["config"]["texts"] == {"en": {**ENGLISH, "yes": "Yes!"}}
    r = load_json(tmp_path, {"texts": {"fr": {"yes": "Oui"}}})  # English by default
    assert r["problems"] == [] and r["config"]["texts"] == {"en": ENGLISH}
    r = load_json(tmp_path, {"language": "de", "texts": {**texts, "fr": {"yes": 5}}})
    assert r["problems"] == ["texts.fr.yes must be text"]


ENGLISH = {"question": "How was your visit?", "follow_up": "Did we tell you what happens next?",
           "yes": "Yes", "no": "No", "thanks": "Thank you!", "sorry": "Sorry - we will do better.",
           "closed": "We are closed"}


def test_loading_a_full_size_config_needs_no_block_of_heap_near_its_size(tmp_path: Path) -> None:
    """The boot reads the config in small pieces and parses it from the file: an 8 KB
    file loads with the free heap cut into 1 KB pieces (reading it whole cannot)."""
    texts = {f"l{i}": {"question": f"question {i} " + "x" * 100, "yes": "y"} for i in range(54)}
    value = {"version": 9, "language": "l7", "texts": texts}
    data = json.dumps(value).encode()
    assert 7500 < len(data) <= 8192
    path = tmp_path / "config.json"
    path.write_bytes(data)
    r = mpy_json(f"""
import gc
from kiosk import config as cfg
from harness import emit
cfg.load({str(path)!r})  # once with room: what the first call loads or caches
gc.collect()
held = [None] * 8192
n = 0
try:
    while n < len(held):
        held[n] = bytearray(1024)
        n += 1
except MemoryError:
    pass
for i in range(0, n, 2):
    held[i] = None  # about half the heap free, in 1 KB pieces
gc.collect()
config, problems = cfg.load({str(path)!r})
held = None
emit([config["version"], problems, sorted(config["texts"])])
""", heap="1M")
    assert r == [[9, [], ["l7"]]]


def test_save_writes_as_it_goes_and_leaves_no_temp_file_when_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    big = {"texts": {f"l{i}": {"question": "q" * 110} for i in range(80)}}  # over 8 KB
    r = mpy_json(f"""
from kiosk import config as cfg
from harness import emit
import os
cfg.save({str(path)!r}, {{"version": 1}})
try:
    cfg.save({str(path)!r}, {big!r})
    refused = None
except ValueError as e:
    refused = str(e)
emit([refused, cfg.load({str(path)!r}), sorted(os.listdir({str(tmp_path)!r}))])
""")[0]
    assert r[0] == "config is over 8192 bytes"
    assert r[1][0]["version"] == 1 and r[1][1] == []
    assert r[2] == ["config.json"]
