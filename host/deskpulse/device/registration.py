"""Kiosks registered for the WiFi push: their keys in the database, their config files.

`deskpulse devices add` creates a device's random key, stores it (table device_keys) and
writes the device config file that carries it to the kiosk (docs/wifi.md, "Keys"). The
key leaves the database only into that file (mode 0600) or through `show_key`, asked for
by name; nothing here prints or logs it.

A registration and its file change together: the database change is committed only after
the file is in place, and a file whose commit failed is taken back, so the kiosk never
holds a key the server does not know.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import zoneinfo
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from deskpulse import files
from deskpulse.device.config_check import check_config_value, merge_config, read_config_json
from deskpulse.device.zone_rule import with_zone_rule
from deskpulse.errors import DeskPulseError
from deskpulse.protocol import signing
from deskpulse.store.base import DeviceFacts, Store, already_registered

_SYNC_TEXT_LIMITS = {"server_url": 200, "wifi_ssid": 32, "wifi_password": 64}
"""The firmware's limits for these config fields (kiosk/config.py `_SYNC_STRS`)."""
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")


# -- checking what people type ------------------------------------------------------------


def check_device_id(device_id: str) -> str:
    """The id itself, or an error saying what a device id may hold (a kiosk's config
    takes at most 32 characters)."""
    if not signing.DEVICE_ID.fullmatch(device_id):
        raise DeskPulseError(
            f"bad device id {device_id[:80]!r}: use 1-32 letters, digits, '.', '_' or '-'")
    return device_id


MAC_ID_PREFIX = "kiosk-"
"""A kiosk whose config names no device_id goes by this and its MAC's 12 hex digits."""
_MAC = re.compile(r"[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}")


def device_id_for_mac(mac: str | bytes) -> str:
    """The id a kiosk nobody has named goes by: "kiosk-" and the 12 lowercase hex digits
    of its base MAC, given as 6 bytes or as esptool prints it ("24:0A:C4:12:34:56",
    '-' or no separators too). The firmware's copy of this rule is kiosk/config.py
    `id_for_mac` (machine.unique_id() on an ESP32 is the same base MAC);
    tests/device/test_registry.py checks that both agree."""
    if isinstance(mac, bytes):
        if len(mac) != 6:
            raise DeskPulseError(f"a MAC is 6 bytes, not {len(mac)}")
        return MAC_ID_PREFIX + mac.hex()
    text = mac.strip()
    if not _MAC.fullmatch(text):
        raise DeskPulseError(f"bad MAC {mac[:40]!r}: give 12 hex digits, e.g. "
                             "24:0a:c4:12:34:56")
    return MAC_ID_PREFIX + re.sub(r"[:-]", "", text).lower()


def check_server_url(url: str) -> str:
    """An aggregator address the kiosk can use, as `http://host:port` (no path)."""
    example = ("give it as http://HOST:PORT, e.g. http://192.168.1.20:8080 (or https://, "
               "with the server's certificate)")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise DeskPulseError(f"bad server URL {url!r} ({exc}): {example}") from exc
    if parts.scheme not in ("http", "https"):
        raise DeskPulseError(f"bad server URL {url!r}: the kiosk speaks http:// or https://; "
                             f"{example}")
    host = parts.hostname or ""
    if not _HOST.fullmatch(host) or "@" in parts.netloc:
        raise DeskPulseError(f"bad server URL {url!r}: no usable host name; {example}")
    if port is None or port == 0:
        raise DeskPulseError(f"server URL {url!r} lacks the port; {example}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise DeskPulseError(
            f"server URL {url!r} has a path or query; the kiosk adds /v1/... itself: "
            f"{example}")
    normal = f"{parts.scheme}://{host}:{port}"
    if len(normal) > _SYNC_TEXT_LIMITS["server_url"]:
        raise DeskPulseError(f"server URL {url!r} is too long for the kiosk's config")
    return normal


def check_time_zone(name: str) -> str:
    """An IANA time zone name that this host knows, e.g. Europe/Paris."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise DeskPulseError(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Paris or "
            "America/New_York") from exc
    return name


def _check_wifi(ssid: str, password: str) -> None:
    for what, value in (("wifi_ssid", ssid), ("wifi_password", password)):
        if len(value) > _SYNC_TEXT_LIMITS[what]:
            raise DeskPulseError(f"{what.replace('_', ' ')} is longer than the kiosk takes "
                                 f"({_SYNC_TEXT_LIMITS[what]} characters)")


# -- the device config file ---------------------------------------------------------------


def check_server_cert_pairing(server_url: str, server_cert: str) -> None:
    """An https:// server needs the certificate the kiosk verifies it against, and only
    an https:// one takes it (the firmware's validator has the same rule)."""
    if server_url.startswith("https://") != bool(server_cert):
        raise DeskPulseError(
            "an https:// server needs --server-cert (the kiosk verifies the server against "
            "it)" if server_cert == "" else
            "--server-cert is for an https:// server; this one is http://")


def device_config(device_id: str, server_url: str, key: bytes, wifi_ssid: str = "",
                  wifi_password: str = "", time_zone: str | None = None,
                  server_cert: str = "") -> dict[str, Any]:
    """A kiosk config (kiosk/config.py) that sets only what the push needs (with the
    certificate an https:// server is verified against), and the kiosk's time zone with
    its rule when one is given; every other setting keeps the kiosk's default."""
    check_server_cert_pairing(server_url, server_cert)
    config: dict[str, Any] = {"device_id": device_id}
    if time_zone:
        config["time_zone"] = time_zone
    config["sync"] = {"server_url": server_url, "wifi_ssid": wifi_ssid,
                      "wifi_password": wifi_password, "device_key": key.hex()}
    if server_cert:
        config["sync"]["server_cert"] = server_cert
    return with_zone_rule(config)


def read_store_template(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A store template: the settings a store's kiosks share (scale, language, texts,
    opening hours, time zone, NTP, push timing, the store's WiFi), a kiosk config without
    what is each kiosk's own. Its values are checked when it is merged (kiosk_config)."""
    raw = read_config_json(path, "store template")
    if not isinstance(raw, dict):
        raise DeskPulseError(f"store template {path} is not a JSON object of config keys")
    if "device_id" in raw:
        raise DeskPulseError(f"store template {path} sets device_id: each kiosk has its own; "
                             "take it out")
    sync = raw.get("sync", {})
    if isinstance(sync, dict) and sync.get("device_key"):
        raise DeskPulseError(f"store template {path} holds a device_key: each kiosk gets its "
                             "own from the registry, never a shared one; take it out")
    return raw


def kiosk_config(own: Mapping[str, Any], template: Mapping[str, Any] | None = None,
                 what: str = "the kiosk's config") -> dict[str, Any]:
    """The kiosk's own settings (device_config) merged over a store template
    (merge_config: the kiosk's own win), with the zone's rule, checked by the firmware's
    validator; the template's WiFi stays unless the kiosk's own names one."""
    if template is None:
        return dict(own)
    mine = dict(own)
    sync = {k: v for k, v in dict(own.get("sync", {})).items()
            if v or k not in ("wifi_ssid", "wifi_password")}
    mine["sync"] = sync
    config = with_zone_rule(merge_config(template, mine))
    check_config_value(config, what)
    return config


def _config_bytes(config: Mapping[str, Any]) -> bytes:
    return (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def read_config(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DeskPulseError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (ValueError, UnicodeError) as exc:
        raise DeskPulseError(f"{path} is not a JSON config: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("sync", {}), dict):
        raise DeskPulseError(f"{path} is not a kiosk config (a JSON object with 'sync')")
    return raw


@contextlib.contextmanager
def _placed_file(path: Path, data: bytes, *, replace: bool) -> Iterator[None]:
    """Put `data` at `path` (owner-only, written to a temporary file then renamed) for the
    body of the `with`; take it back out (or put the old file back) if the body fails,
    e.g. when the registration it belongs to cannot be committed. With replace False an
    existing file is an error."""
    if path.exists() and not replace:
        raise DeskPulseError(f"{path} exists; pass --force to overwrite it")
    if path.is_dir():
        raise DeskPulseError(f"{path} is a folder; -o takes a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        previous = path.read_bytes() if path.exists() else None
    except OSError as exc:
        raise DeskPulseError(f"cannot write {path}: {exc.strerror or exc}") from exc
    files.write_whole(path, data, private=True)
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError, DeskPulseError):
            if previous is None:
                path.unlink()
            else:
                files.write_whole(path, previous, private=True)
        raise


# -- the registry -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Registered:
    device_id: str
    config_file: Path
    server_url: str
    replaced: bool  # an earlier registration (and its key) was replaced


def add_device(
    store: Store,
    device_id: str,
    server_url: str,
    config_file: str | os.PathLike[str],
    *,
    wifi_ssid: str = "",
    wifi_password: str = "",
    name: str | None = None,
    location: str | None = None,
    time_zone: str | None = None,
    template: Mapping[str, Any] | None = None,
    force: bool = False,
    now: float | None = None,
    server_cert: str = "",
) -> Registered:
    """Register a kiosk for the WiFi push with a new random key and write its config
    file: its own settings over the store template when one is given (read_store_template;
    the template's time zone is then the kiosk's unless time_zone names another). An
    existing registration or file is replaced only with force."""
    check_device_id(device_id)
    url = check_server_url(server_url)
    if not time_zone and template is not None and isinstance(template.get("time_zone"), str):
        time_zone = template["time_zone"] or None
    if time_zone:
        check_time_zone(time_zone)
    _check_wifi(wifi_ssid, wifi_password)
    path = Path(config_file)
    key = signing.new_key()
    data = _config_bytes(kiosk_config(
        device_config(device_id, url, key, wifi_ssid, wifi_password, time_zone, server_cert),
        template,
        f"the config of {device_id} over its store template"))
    if not force and store.device_key(device_id) is not None:
        raise already_registered(device_id)  # the store asks again as it commits
    with _placed_file(path, data, replace=force):
        replaced = store.set_key(device_id, key, replace=force, now=now,
                                 facts=DeviceFacts(device_id, name, location, time_zone))
    return Registered(device_id, path, url, replaced)


def rotate_key(
    store: Store,
    device_id: str,
    config_file: str | os.PathLike[str],
    *,
    server_url: str | None = None,
    now: float | None = None,
) -> Registered:
    """Give a registered kiosk a new key (and a fresh replay counter) and rewrite its
    config file with it, keeping the rest of the file; a missing file is created, which
    needs server_url."""
    check_device_id(device_id)
    path = Path(config_file)
    if path.exists():
        config = read_config(path)
        if config.get("device_id", device_id) != device_id:
            raise DeskPulseError(
                f"{path} is the config of {config.get('device_id')!r}, not {device_id!r}")
    elif server_url is None:
        raise DeskPulseError(f"{path} does not exist: pass --server URL to create it")
    else:
        config = {"device_id": device_id, "sync": {}}
    sync = dict(config.get("sync", {}))
    if server_url is not None:
        sync["server_url"] = check_server_url(server_url)
    key = signing.new_key()
    sync["device_key"] = key.hex()
    config = {**config, "device_id": device_id, "sync": sync}
    if store.device_key(device_id) is None:
        raise DeskPulseError(f"{device_id} is not registered: use `deskpulse devices add`")
    with _placed_file(path, _config_bytes(config), replace=True):
        store.set_key(device_id, key, replace=True, now=now)  # refused if removed meanwhile
    return Registered(device_id, path, str(sync.get("server_url", "")), True)


def remove_device(store: Store, device_id: str) -> None:
    """Delete the kiosk's key: it can no longer push. Its stored responses stay."""
    check_device_id(device_id)
    store.remove_key(device_id)


def describe_device(store: Store, device_id: str, *, name: str | None = None,
                    location: str | None = None, time_zone: str | None = None) -> None:
    """Set a known kiosk's name, location or time zone ("" clears one)."""
    check_device_id(device_id)
    if time_zone:
        check_time_zone(time_zone)
    store.describe_device(device_id, name=name, location=location, time_zone=time_zone)


def show_key(store: Store, device_id: str) -> str:
    """The kiosk's key as the 64 hex digits of its config file."""
    check_device_id(device_id)
    key = store.device_key(device_id)
    if key is None:
        raise DeskPulseError(f"{device_id} is not registered")
    return key.hex()
