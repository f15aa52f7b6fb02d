"""Device registration for the WiFi push: keys in the database, config files for kiosks,
and the `deskpulse devices` subcommands over them."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from deskpulse import cli
from deskpulse.device import registration
from deskpulse.device.config_check import check_config
from deskpulse.errors import DeskPulseError
from deskpulse.protocol.batch import Response
from deskpulse.store import open_store
from deskpulse.store.base import StoreError
from deskpulse.store.sqlite import queries

SERVER = "http://192.168.1.20:8080"


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    c = open_store(tmp_path / "d.db")
    yield c
    c.close()


def key_row(conn: sqlite3.Connection, device_id: str) -> tuple | None:
    return conn.connection.execute(
        "SELECT key, nonce_boot, nonce_count FROM device_keys WHERE device_id = ?",
        (device_id,)).fetchone()


def file_key(path: Path) -> str:
    return json.loads(path.read_text())["sync"]["device_key"]


def test_add_registers_the_device_and_writes_a_private_config(
        conn: sqlite3.Connection, tmp_path: Path) -> None:
    out = tmp_path / "cfg" / "front-1.json"
    done = registration.add_device(conn, "front-1", SERVER + "/", out, wifi_ssid="Store",
                               wifi_password="pa55 word", name="Front desk",
                               location="Lyon", time_zone="Europe/Paris")
    assert done.server_url == SERVER and not done.replaced
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    config = json.loads(out.read_text())
    assert config == {
        "device_id": "front-1", "time_zone": "Europe/Paris",
        "tz_rule": "CET-1CEST,M3.5.0,M10.5.0/3",  # from the host's tzdata
        "sync": {"server_url": SERVER, "wifi_ssid": "Store", "wifi_password": "pa55 word",
                 "device_key": config["sync"]["device_key"]}}
    key, nonce_boot, nonce_count = key_row(conn, "front-1")
    assert len(key) == 32 and key.hex() == config["sync"]["device_key"]
    assert (nonce_boot, nonce_count) == (0, 0)
    (device,) = conn.devices()
    assert (device.device_id, device.name, device.location, device.time_zone) == (
        "front-1", "Front desk", "Lyon", "Europe/Paris")


def test_the_config_file_passes_the_firmware_validator(
        conn: sqlite3.Connection, tmp_path: Path) -> None:
    out = tmp_path / "k.json"
    registration.add_device(conn, "k." + "x" * 30, SERVER, out, wifi_ssid="s" * 32,
                        wifi_password="p" * 64)
    checked = check_config(out)  # kiosk/config.py on the real MicroPython
    assert checked.device_id == "k." + "x" * 30


def test_each_registration_gets_its_own_key(conn: sqlite3.Connection, tmp_path: Path) -> None:
    registration.add_device(conn, "a", SERVER, tmp_path / "a.json")
    registration.add_device(conn, "b", SERVER, tmp_path / "b.json")
    assert file_key(tmp_path / "a.json") != file_key(tmp_path / "b.json")
    assert conn.registered_ids() == {"a", "b"}


def test_add_refuses_to_overwrite_without_force(conn: sqlite3.Connection,
                                                tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    registration.add_device(conn, "a", SERVER, out)
    first = file_key(out)
    conn.connection.execute("UPDATE device_keys SET nonce_boot = 3, nonce_count = 9")
    with pytest.raises(DeskPulseError, match="already registered"):
        registration.add_device(conn, "a", SERVER, tmp_path / "other.json")
    assert not (tmp_path / "other.json").exists()
    (tmp_path / "b.json").write_text("keep me")
    with pytest.raises(DeskPulseError, match="exists"):
        registration.add_device(conn, "b", SERVER, tmp_path / "b.json")
    assert (tmp_path / "b.json").read_text() == "keep me"
    assert "b" not in conn.registered_ids()

    done = registration.add_device(conn, "a", SERVER, out, force=True)
    assert done.replaced
    assert file_key(out) != first
    assert key_row(conn, "a") == (bytes.fromhex(file_key(out)), 0, 0)


def test_a_device_seen_over_serial_can_be_registered(conn: sqlite3.Connection,
                                                     tmp_path: Path) -> None:
    r = Response(1, 3, 4, "yes", 2.0, False, False, 1, 10, None, 0)
    conn.store_batch("desk-1", [r], [], {"board": "b"}, "serial")
    registration.add_device(conn, "desk-1", SERVER, tmp_path / "d.json", name="Desk")
    (device,) = conn.devices()
    assert (device.name, device.board, device.responses) == ("Desk", "b", 1)


@pytest.mark.parametrize("bad", ["", "a b", "a/b", "é", "x" * 65, "a:b", "../x"])
def test_bad_device_ids_are_refused(conn: sqlite3.Connection, tmp_path: Path,
                                    bad: str) -> None:
    with pytest.raises(DeskPulseError, match="device id"):
        registration.add_device(conn, bad, SERVER, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def test_ids_longer_than_a_kiosk_config_takes_are_refused(conn: sqlite3.Connection,
                                                          tmp_path: Path) -> None:
    with pytest.raises(DeskPulseError, match="1-32"):
        registration.add_device(conn, "x" * 33, SERVER, tmp_path / "x.json")


@pytest.mark.parametrize("url, normal", [
    ("http://192.168.1.20:8080", "http://192.168.1.20:8080"),
    ("http://192.168.1.20:8080/", "http://192.168.1.20:8080"),
    ("  http://backoffice.local:80 ", "http://backoffice.local:80"),
])
def test_server_urls_are_normalised(url: str, normal: str) -> None:
    assert registration.check_server_url(url) == normal


@pytest.mark.parametrize("url, why", [
    ("ftp://192.168.1.20:8443", "speaks http:// or https://"),
    ("192.168.1.20:8080", "speaks http:// or https://"),
    ("http://192.168.1.20", "lacks the port"),
    ("http://192.168.1.20:0", "lacks the port"),
    ("http://192.168.1.20:99999", "bad server URL"),
    ("http://192.168.1.20:8080/deskpulse", "path"),
    ("http://192.168.1.20:8080/?a=1", "path or query"),
    ("http://user:pw@host:8080", "host"),
    ("http://:8080", "host"),
    ("http://ho st:8080", "host"),
])
def test_bad_server_urls_are_refused(url: str, why: str) -> None:
    with pytest.raises(DeskPulseError, match=why):
        registration.check_server_url(url)


def test_time_zones_must_be_known(conn: sqlite3.Connection, tmp_path: Path) -> None:
    assert registration.check_time_zone("America/New_York") == "America/New_York"
    for bad in ("Mars/Olympus", "../../etc/passwd", "", "Europe/"):
        with pytest.raises(DeskPulseError, match="time zone"):
            registration.check_time_zone(bad)
    with pytest.raises(DeskPulseError, match="time zone"):
        registration.add_device(conn, "a", SERVER, tmp_path / "a.json", time_zone="Nowhere/X")
    assert "a" not in conn.registered_ids()


def test_wifi_settings_longer_than_the_kiosk_takes_are_refused(
        conn: sqlite3.Connection, tmp_path: Path) -> None:
    with pytest.raises(DeskPulseError, match="ssid"):
        registration.add_device(conn, "a", SERVER, tmp_path / "a.json", wifi_ssid="s" * 33)
    with pytest.raises(DeskPulseError, match="password"):
        registration.add_device(conn, "a", SERVER, tmp_path / "a.json", wifi_password="p" * 65)


def test_a_failed_commit_takes_the_file_back(conn: sqlite3.Connection, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    out = tmp_path / "a.json"
    registration.add_device(conn, "a", SERVER, out)
    before = out.read_bytes()
    monkeypatch.setattr(queries, "set_key", broken)
    with pytest.raises(StoreError, match="disk I/O error"):
        registration.add_device(conn, "b", SERVER, tmp_path / "b.json")
    assert not (tmp_path / "b.json").exists()
    with pytest.raises(StoreError, match="disk I/O error"):
        registration.rotate_key(conn, "a", out)
    assert out.read_bytes() == before  # the kiosk's working file is put back
    assert conn.device_key("a") == bytes.fromhex(file_key(out))
    assert conn.registered_ids() == {"a"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_rotate_key_resets_the_nonce_and_keeps_the_rest_of_the_file(
        conn: sqlite3.Connection, tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    registration.add_device(conn, "a", SERVER, out, wifi_ssid="Store", wifi_password="pw")
    config = json.loads(out.read_text())
    config["scale"] = 5
    config["sync"]["push_interval_s"] = 60
    out.write_text(json.dumps(config))
    old = file_key(out)
    conn.connection.execute("UPDATE device_keys SET nonce_boot = 7, nonce_count = 42")

    registration.rotate_key(conn, "a", out)
    rotated = json.loads(out.read_text())
    assert rotated["sync"]["device_key"] != old
    assert rotated["scale"] == 5
    assert rotated["sync"] | {"device_key": old} == config["sync"]
    assert key_row(conn, "a") == (bytes.fromhex(rotated["sync"]["device_key"]), 0, 0)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_rotate_key_checks_the_file_and_the_registration(conn: sqlite3.Connection,
                                                         tmp_path: Path) -> None:
    registration.add_device(conn, "a", SERVER, tmp_path / "a.json")
    registration.add_device(conn, "b", SERVER, tmp_path / "b.json")
    key_a = conn.device_key("a")
    with pytest.raises(DeskPulseError, match="config of 'b'"):
        registration.rotate_key(conn, "a", tmp_path / "b.json")
    with pytest.raises(DeskPulseError, match="--server"):
        registration.rotate_key(conn, "a", tmp_path / "new.json")
    with pytest.raises(DeskPulseError, match="not registered"):
        registration.rotate_key(conn, "nobody", tmp_path / "n.json", server_url=SERVER)
    assert not (tmp_path / "n.json").exists()
    assert conn.device_key("a") == key_a

    registration.rotate_key(conn, "a", tmp_path / "new.json", server_url=SERVER + "/")
    made = json.loads((tmp_path / "new.json").read_text())
    assert made["device_id"] == "a" and made["sync"]["server_url"] == SERVER
    assert conn.device_key("a").hex() == made["sync"]["device_key"]


def test_remove_deletes_the_key_and_keeps_the_responses(conn: sqlite3.Connection,
                                                        tmp_path: Path) -> None:
    registration.add_device(conn, "a", SERVER, tmp_path / "a.json")
    r = Response(1, 3, 4, "yes", 2.0, False, False, 1, 10, None, 0)
    conn.store_batch("a", [r], [], {}, "wifi")
    registration.remove_device(conn, "a")
    assert conn.device_key("a") is None
    assert len(conn.responses_of("a")) == 1
    with pytest.raises(DeskPulseError, match="not registered"):
        registration.remove_device(conn, "a")


def test_describe_sets_and_clears(conn: sqlite3.Connection, tmp_path: Path) -> None:
    registration.add_device(conn, "a", SERVER, tmp_path / "a.json", name="A", location="L")
    registration.describe_device(conn, "a", location="", time_zone="Asia/Tokyo")
    (d,) = conn.devices()
    assert (d.name, d.location, d.time_zone) == ("A", None, "Asia/Tokyo")
    with pytest.raises(DeskPulseError, match="no device"):
        registration.describe_device(conn, "b", name="B")
    with pytest.raises(DeskPulseError, match="time zone"):
        registration.describe_device(conn, "a", time_zone="Bad/Zone")


# -- the commands ---------------------------------------------------------------------------


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_devices_commands_never_print_a_key_unless_asked(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dbfile = str(tmp_path / "d.db")
    out_file = tmp_path / "a.json"
    shown: list[str] = []
    code, out, err = run(["devices", "add", "a", "--server", SERVER, "--name", "Front",
                          "--time-zone", "Europe/Paris", "--db", dbfile, "-o",
                          str(out_file)], capsys)
    assert code == 0 and "registered a" in out
    shown += [out, err]
    key = file_key(out_file)
    # --db before the subcommand is kept, not reset by the subcommand's own option.
    code, out, err = run(["devices", "--db", dbfile], capsys)
    assert code == 0 and out.startswith("a (Front), Europe/Paris\n")
    assert "registered for the WiFi push" in out
    shown += [out, err]
    code, out, err = run(["devices", "--db", dbfile, "set", "a", "--location", "Hall"],
                         capsys)
    assert code == 0
    shown += [out, err]
    code, out, err = run(["devices", "rotate-key", "a", "--db", dbfile, "-o",
                          str(out_file)], capsys)
    assert code == 0 and "new key" in out
    shown += [out, err]
    new_key = file_key(out_file)
    assert new_key != key
    for text in shown:
        assert key not in text and new_key not in text

    code, out, err = run(["devices", "show-key", "a", "--db", dbfile], capsys)
    assert (code, out, err) == (0, new_key + "\n", "")
    code, out, err = run(["devices", "remove", "a", "--db", dbfile], capsys)
    assert code == 0 and "removed" in out and new_key not in out
    code, out, err = run(["devices", "--db", dbfile], capsys)
    assert out.startswith("a (Front) at Hall, Europe/Paris\n")
    assert "registered for" not in out


def test_devices_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dbfile = str(tmp_path / "d.db")
    out_file = str(tmp_path / "a.json")
    assert run(["devices", "add", "a", "--server", SERVER, "--db", dbfile, "-o", out_file],
               capsys)[0] == 0
    code, out, err = run(["devices", "add", "a", "--server", SERVER, "--db", dbfile, "-o",
                          str(tmp_path / "b.json")], capsys)
    assert code == 2 and err.startswith("deskpulse: a is already registered")
    code, out, err = run(["devices", "add", "c", "--server", "http://h", "--db", dbfile,
                          "-o", str(tmp_path / "c.json")], capsys)
    assert code == 2 and "lacks the port" in err
    code, out, err = run(["devices", "show-key", "zz", "--db", dbfile], capsys)
    assert code == 2 and err == "deskpulse: zz is not registered\n" and out == ""
    code, out, err = run(["devices", "set", "a", "--db", dbfile], capsys)
    assert code == 2 and "nothing to set" in err


def test_wifi_password_from_stdin(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("secret word\n"))
    out_file = tmp_path / "a.json"
    code, out, err = run(["devices", "add", "a", "--server", SERVER, "--wifi-ssid", "S",
                          "--wifi-password", "-", "--db", str(tmp_path / "d.db"), "-o",
                          str(out_file)], capsys)
    assert code == 0
    assert json.loads(out_file.read_text())["sync"]["wifi_password"] == "secret word"
    assert "secret" not in out + err


def test_config_file_is_private_even_with_a_lax_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        c = open_store(tmp_path / "d.db")
        registration.add_device(c, "a", SERVER, tmp_path / "a.json")
        c.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o600


# -- ids from the MAC ---------------------------------------------------------------------

MACS = ["24:0a:c4:12:34:56", "00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff", "02:9a:bc:de:f0:01",
        "A4:CF:12:0B:7E:C8"]


def test_the_mac_id_rule_of_the_host_and_of_the_firmware_agree() -> None:
    """The host's device_id_for_mac (provisioning, from esptool's MAC) and the firmware's
    id_for_mac (machine.unique_id() on the kiosk) give every MAC the same id, on the
    kiosk's own interpreter."""
    from conftest import mpy_json

    macs = [bytes.fromhex(m.replace(":", "")) for m in MACS]
    firmware = mpy_json(f"""
from kiosk import config as cfg
from harness import emit
for mac in {macs!r}:
    emit(cfg.id_for_mac(mac))
emit(cfg.id_for_mac(None))
emit(cfg.id_for_mac(b"\\x01\\x02"))
""")
    host = [registration.device_id_for_mac(m) for m in MACS]
    assert firmware == [*host, "", ""]
    assert host[0] == "kiosk-240ac4123456" and host[4] == "kiosk-a4cf120b7ec8"
    assert [registration.device_id_for_mac(m) for m in macs] == host
    # Every one is an id the kiosk, the server and the registry take.
    for device_id in host:
        assert registration.check_device_id(device_id) == device_id


@pytest.mark.parametrize("mac", ["24:0a:c4:12:34", "24:0a:c4:12:34:5g", "kiosk-240ac4123456",
                                 "", "24:0a:c4:12:34:56:78"])
def test_a_mac_that_is_not_six_bytes_is_refused(mac: str) -> None:
    with pytest.raises(DeskPulseError, match="bad MAC"):
        registration.device_id_for_mac(mac)


def test_separators_and_case_do_not_change_the_id() -> None:
    ids = {registration.device_id_for_mac(m) for m in
           ("24:0A:C4:12:34:56", "24-0a-c4-12-34-56", "240ac4123456", " 24:0a:c4:12:34:56\n")}
    assert ids == {"kiosk-240ac4123456"}


# -- store templates ----------------------------------------------------------------------

TEMPLATE = {
    "version": 3, "scale": 3, "language": "de", "time_zone": "Europe/Berlin",
    "texts": {"de": {"question": "Wie war Ihr Besuch?", "thanks": "Danke!"}},
    "opening_hours": {"mon": ["08:00-18:00"], "sat": ["09:00-13:00"]},
    "sync": {"wifi_ssid": "Filiale", "wifi_password": "geheim", "push_interval_s": 60},
}


def test_add_with_a_template_writes_the_template_under_the_kiosk_s_own_settings(
        conn: sqlite3.Connection, tmp_path: Path) -> None:
    out = tmp_path / "front-1.json"
    registration.add_device(conn, "front-1", SERVER, out, template=TEMPLATE, name="Front")
    config = json.loads(out.read_text())
    key = config["sync"]["device_key"]
    assert config == {
        **TEMPLATE, "device_id": "front-1", "tz_rule": "CET-1CEST,M3.5.0,M10.5.0/3",
        "sync": {"wifi_ssid": "Filiale", "wifi_password": "geheim", "push_interval_s": 60,
                 "server_url": SERVER, "device_key": key}}
    assert check_config(out).device_id == "front-1"  # the firmware's validator takes it
    # The template's zone is the kiosk's in the registry too (the reports' local time).
    assert conn.connection.execute(
        "SELECT time_zone FROM devices WHERE device_id = 'front-1'").fetchone() == (
        "Europe/Berlin",)
    # The kiosk's own WiFi and zone win over the template's.
    other = tmp_path / "front-2.json"
    registration.add_device(conn, "front-2", SERVER, other, template=TEMPLATE,
                            wifi_ssid="Lager", time_zone="Europe/Vienna")
    config = json.loads(other.read_text())
    assert (config["sync"]["wifi_ssid"], config["sync"]["wifi_password"]) == ("Lager", "geheim")
    assert config["time_zone"] == "Europe/Vienna"


def test_a_template_the_firmware_refuses_writes_and_registers_nothing(
        conn: sqlite3.Connection, tmp_path: Path) -> None:
    out = tmp_path / "front-1.json"
    bad = {**TEMPLATE, "scale": 7, "opening_hours": {"mon": ["8:00-18:00"]}}
    with pytest.raises(DeskPulseError) as err:
        registration.add_device(conn, "front-1", SERVER, out, template=bad)
    assert str(err.value).startswith("the config of front-1 over its store template rejected:")
    assert "scale must be between 3 and 5 (got 7)" in str(err.value)
    assert "opening_hours.mon: bad span '8:00-18:00'" in str(err.value)
    assert not out.exists() and key_row(conn, "front-1") is None


@pytest.mark.parametrize(("template", "problem"), [
    ({"device_id": "shared"}, "sets device_id: each kiosk has its own"),
    ({"sync": {"device_key": "ab" * 32}}, "holds a device_key"),
    ([1, 2], "is not a JSON object of config keys"),
])
def test_a_template_with_what_is_each_kiosk_s_own_is_refused(
        tmp_path: Path, template: object, problem: str) -> None:
    path = tmp_path / "store.json"
    path.write_text(json.dumps(template))
    with pytest.raises(DeskPulseError, match=problem):
        registration.read_store_template(path)


def test_devices_add_takes_a_template(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    template = tmp_path / "store.json"
    template.write_text(json.dumps(TEMPLATE))
    out = tmp_path / "front-1.json"
    assert cli.main(["devices", "--db", str(tmp_path / "d.db"), "add", "front-1", "--server",
                     SERVER, "--template", str(template), "-o", str(out)]) == 0
    config = json.loads(out.read_text())
    assert (config["scale"], config["language"], config["device_id"]) == (3, "de", "front-1")
    assert "geheim" not in capsys.readouterr().out
    template.write_text(json.dumps({**TEMPLATE, "language": "fr"}))
    assert cli.main(["devices", "--db", str(tmp_path / "d.db"), "add", "front-2", "--server",
                     SERVER, "--template", str(template), "-o", str(tmp_path / "f2.json")]) == 2
    assert "language 'fr' has no texts" in capsys.readouterr().err
