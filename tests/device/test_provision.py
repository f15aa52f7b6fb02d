"""`deskpulse provision` (issue 15): several emulated ESP32 ROM loaders (tests/rom_loader.py)
at once, each with its own MAC, flashed by the real esptool with a synthetic MicroPython
(tests/fake_firmware.py) and each kiosk's own image. Each flash is read back: its vfs
partition holds the kiosk's config (its id from its MAC, the store template, the
registry's key), and the simulated ESP32 booted from that partition answers HELLO with
its id: the post-flash check is handed the simulated kiosk's console as the board's
port (a real board answers on its own USB port after the reset)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from certs import make_cert
from conftest import BOARDS, REPO
from deskpulse import cli
from deskpulse.device import labels, provision
from deskpulse.errors import DeskPulseError
from deskpulse.sim.serve_process import ServeProcess
from deskpulse.sim.simulator import Simulator
from deskpulse.store import open_store
from fake_firmware import FakeFirmware
from rom_loader import ERASE_FLASH, FLASH_BEGIN, FLASH_DATA, FLASH_DEFL_BEGIN, RomLoaderStandIn

BOARD = "esp32-devkitc-ssd1680"  # ESP32, 4 MiB, vfs 0x200000 + 2 MiB
BOARD_FILE = BOARDS / f"{BOARD}.json"
VFS_OFFSET, VFS_SIZE = 0x200000, 0x200000
ESP32_BOOT = REPO / "tests" / "firmware" / "mp" / "esp32_boot.py"
HOST_ARCH = "x64"  # the simulator runs the .mpy files on this machine's CPU
WRITES = {FLASH_BEGIN, FLASH_DATA, FLASH_DEFL_BEGIN, ERASE_FLASH}
TEMPLATE: dict[str, Any] = {
    "scale": 3,
    "language": "de",
    "texts": {"de": {"question": "Wie war Ihr Besuch?", "follow_up": "Wissen Sie, wie es "
                     "weitergeht?", "yes": "Ja", "no": "Nein", "thanks": "Danke!"}},
    "opening_hours": {"mon": ["08:00-18:00"], "sat": ["09:00-13:00"]},
    "time_zone": "Europe/Berlin",
    "sync": {"push_interval_s": 120},
}


def mac(n: int) -> str:
    return f"24:0a:c4:00:00:{n:02x}"


def read_config(partition: bytes) -> dict[str, Any]:
    """/config.json of a vfs partition, read with littlefs-python."""
    from littlefs import LittleFS

    fs = LittleFS(block_size=4096, block_count=len(partition) // 4096, mount=False)
    fs.context.buffer = bytearray(partition)
    fs.mount()
    with fs.open("/config.json", "rb") as f:
        return json.loads(f.read())


class Boots:
    """The board's reset after its flash: its vfs partition is taken out of the stand-in's
    flash and the simulated ESP32 boots from it (main.py -> kiosk.boot -> Esp32Hal ->
    kiosk.app.run, tests/firmware/mp/esp32_boot.py; one customer taps, then it waits for
    a host). What it returns is the port the kiosk answers on: its console."""

    def __init__(self, folder: Path, roms: dict[str, RomLoaderStandIn]) -> None:
        self.folder = folder
        self.roms = roms
        self.sims: dict[str, Simulator] = {}
        self.lock = threading.Lock()

    def __call__(self, port: str) -> str:
        partition = self.roms[port].flash[VFS_OFFSET:VFS_OFFSET + VFS_SIZE]
        state = self.folder / f"kiosk-on-{port.rsplit(':', 1)[-1]}"
        state.mkdir()
        (state / "flash.img").write_bytes(partition)
        (state / "plan.json").write_text(json.dumps({
            "image": str(state / "flash.img"), "sessions": 1, "ntp_port": None,
            "config_version": None, "timeout_s": 120, "inspect": False}))
        sim = Simulator(BOARD_FILE, state, heap="1M", firmware_entry=ESP32_BOOT)
        with self.lock:
            self.sims[port] = sim
        sim.start()
        return sim.console_path

    def close(self) -> None:
        for sim in self.sims.values():
            sim.stop()


@pytest.fixture
def firmware(tmp_path: Path) -> Path:
    return FakeFirmware().write(tmp_path / "ESP32_GENERIC-v1.24.1.bin")


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "store-12.json"
    path.write_text(json.dumps(TEMPLATE, ensure_ascii=False))
    return path


def options(tmp_path: Path, firmware: Path, template: Path, **more: Any) -> provision.Options:
    values: dict[str, Any] = {
        "board": BOARD, "firmware": firmware, "template": template,
        "db": tmp_path / "host.db", "server": "http://192.168.1.20:8080",
        "wifi_ssid": "Store-12", "wifi_password": "pw-secret-12",
        "labels": tmp_path / "labels.svg", "arch": HOST_ARCH, "boot_timeout": 60.0,
        "connect_attempts": 2}
    values.update(more)
    return provision.Options(**values)


def registry(db: Path) -> dict[str, bytes]:
    with open_store(db, create=False) as store:
        return {device: key for device in sorted(store.registered_ids())
                if (key := store.device_key(device)) is not None}


def facts(db: Path) -> dict[str, tuple[str | None, str | None, str | None]]:
    with open_store(db, create=False) as store:
        return {f.device_id: (f.name, f.location, f.time_zone) for f in store.device_facts()}


def record_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def stand_ins() -> Iterator[list[RomLoaderStandIn]]:
    roms = [RomLoaderStandIn(mac=mac(n)) for n in range(1, 5)]
    try:
        yield roms
    finally:
        for rom in roms:
            rom.close()


# -- four at once ---------------------------------------------------------------------------
@pytest.mark.slow
def test_four_boards_at_once_each_flashed_registered_and_answering_with_its_id(
        tmp_path: Path, firmware: Path, template: Path,
        stand_ins: list[RomLoaderStandIn]) -> None:
    roms = {rom.url: rom for rom in stand_ins}
    boots = Boots(tmp_path, roms)
    events: list[tuple[str, str, float | None]] = []
    lock = threading.Lock()

    def on_event(port: str, text: str, done: float | None) -> None:
        with lock:
            events.append((port, text, done))

    wanted = options(tmp_path, firmware, template, location="Store 12, Berlin")
    try:
        run = provision.provision(list(roms), wanted, on_event=on_event, console_for=boots)
    finally:
        boots.close()
    assert [r.error for r in run.results] == [None] * 4
    ids = [f"kiosk-240ac40000{n:02x}" for n in range(1, 5)]
    assert [r.device_id for r in run.results] == ids  # in port order
    assert all(r.registration == "new" and r.app_version == "0.1.0" for r in run.results)

    keys = registry(tmp_path / "host.db")
    assert sorted(keys) == ids
    assert facts(tmp_path / "host.db") == {i: (None, "Store 12, Berlin", "Europe/Berlin")
                                           for i in ids}
    data = firmware.read_bytes()
    for n, (url, rom) in enumerate(roms.items()):
        flashed = rom.flash
        assert flashed[0x1000:0x1000 + len(data)] == data
        config = read_config(flashed[VFS_OFFSET:VFS_OFFSET + VFS_SIZE])
        device_id = ids[n]
        assert config["device_id"] == device_id == provision.mac_id(mac(n + 1))
        for key in ("scale", "language", "texts", "opening_hours", "time_zone"):
            assert config[key] == TEMPLATE[key], key
        assert config["tz_rule"].startswith("CET")  # the template's zone, with its rule
        assert config["version"] == 1
        assert config["sync"] == {
            "push_interval_s": 120, "server_url": "http://192.168.1.20:8080",
            "wifi_ssid": "Store-12", "wifi_password": "pw-secret-12",
            "device_key": keys[device_id].hex()}
        # Each board's progress went from its chip to its answer, in order.
        mine = [(text, done) for port, text, done in events if port == url]
        steps = [done for _, done in mine if done is not None]
        assert steps == sorted(steps) and steps[-1] == 1.0
        assert any(text == f"chip: ESP32-D0WD-V3 (revision v3.1), MAC {mac(n + 1)}"
                   for text, _ in mine)
        assert any(text.startswith(f"{device_id} answers on /dev/pts/") for text, _ in mine)
        assert not any(mac(m) in text for text, _ in mine for m in range(1, 5) if m != n + 1)
    assert len(boots.sims) == 4

    # The record: one line per kiosk, with what was flashed; never a key.
    lines = record_lines(run.record)
    assert run.record == tmp_path / "provisioning.jsonl"
    assert [(line["id"], line["mac"], line["ok"]) for line in lines] == [
        (ids[n], mac(n + 1), True) for n in range(4)]
    sha = hashlib.sha256(data).hexdigest()
    for line in lines:
        assert line["board"] == BOARD and line["app_version"] == "0.1.0"
        assert line["firmware"] == {"file": firmware.name, "version": "v1.24.1", "sha256": sha}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", line["time"])
    text = run.record.read_text()
    assert not any(key.hex() in text for key in keys.values())
    assert "pw-secret-12" not in text

    # The label sheet: one label per kiosk, each with its key's fingerprint, never a key.
    assert run.label_files == (tmp_path / "labels.svg",)
    sheet = (tmp_path / "labels.svg").read_text()
    root = ET.fromstring(sheet)
    found = root.findall(f".//{{{labels.SVG_NS}}}g[@class='label']")
    assert [g.get("data-device-id") for g in found] == ids
    for device_id in ids:
        assert f"key fingerprint {labels.key_fingerprint(keys[device_id])}" in sheet
    assert not any(key.hex() in sheet or key.hex()[:16] in sheet for key in keys.values())
    assert "pw-secret-12" not in sheet
    assert [decode_qr(g) for g in found] == [
        f"{i}\nStore 12, Berlin\nkey fingerprint {labels.key_fingerprint(keys[i])}" for i in ids]


# -- a failing board, the command line, a rerun ---------------------------------------------
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
            console_for: provision.ConsoleFor, *args: str) -> tuple[int, str, str]:
    """`deskpulse provision ...` in-process, as a technician runs it, but with the two
    things a board does differently here: the post-flash check is handed the simulated
    kiosks' consoles, and the images are built for the simulator's CPU."""
    real = provision.provision

    def on_the_simulator(ports: list[str], wanted: provision.Options,
                         **kwargs: Any) -> provision.Run:
        wanted = dataclasses.replace(wanted, arch=HOST_ARCH, boot_timeout=60.0,
                                     connect_attempts=2)
        return real(ports, wanted, console_for=console_for, **kwargs)

    monkeypatch.setattr(provision, "provision", on_the_simulator)
    try:
        code = cli.main(["provision", *args])
    finally:
        monkeypatch.setattr(provision, "provision", real)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_a_board_with_another_chip_fails_alone_and_a_rerun_registers_nothing_twice(
        tmp_path: Path, firmware: Path, template: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ids = tmp_path / "ids.csv"
    ids.write_text("# id, name, location\nfront-1,Old desk\nfront-2,Front desk\n"
                   "front-3,Side desk,Annex\nfront-4\n")
    db = tmp_path / "host.db"
    # front-1 is taken already (a kiosk registered by hand): the list goes on from front-2.
    assert cli.main(["devices", "add", "front-1", "--server", "http://10.0.0.1:8080",
                     "--db", str(db), "-o", str(tmp_path / "front-1.json")]) == 0
    capsys.readouterr()
    common = ["--board", BOARD, "--firmware", str(firmware), "--template", str(template),
              "--ids", str(ids), "--db", str(db), "--labels", str(tmp_path / "labels.svg")]
    with RomLoaderStandIn(mac=mac(1)) as one, RomLoaderStandIn(chip="esp32s3", mac=mac(9)) \
            as s3, RomLoaderStandIn(mac=mac(2)) as two:
        before = s3.flash
        roms = {one.url: one, s3.url: s3, two.url: two}
        boots = Boots(tmp_path / "first", roms)
        (tmp_path / "first").mkdir()
        try:
            code, out, err = run_cli(capsys, monkeypatch, boots, "--port", one.url,
                                     "--port", s3.url, "--port", two.url, *common)
        finally:
            boots.close()
        assert code == 1
        assert err.startswith("deskpulse: some boards failed") and err.count("\n") == 1
        summary = out[out.index("provisioned 2 of 3 kiosks"):].splitlines()
        assert summary[1].startswith(f"  {one.url}: front-2 (MAC {mac(1)}, key ")
        assert summary[2] == (f"  {s3.url}: FAILED: the board on {s3.url} is an ESP32-S3, "
                              f"not an ESP32 ({firmware.name}): not registered, nothing written")
        assert summary[3].startswith(f"  {two.url}: front-3 (MAC {mac(2)}, key ")
        # Without a terminal: plain lines, each naming its board.
        assert f"{one.url}: front-2 answers on /dev/pts/" in out
        assert f"{two.url}: writing filesystem: 100%" in out
        assert f"{two.url}: writing filesystem: 40%" not in out
        assert s3.flash == before and not WRITES & set(s3.commands)
        first_keys = registry(db)
        assert sorted(first_keys) == ["front-1", "front-2", "front-3"]
        assert facts(db)["front-3"] == ("Side desk", "Annex", "Europe/Berlin")
        assert facts(db)["front-2"] == ("Front desk", None, "Europe/Berlin")

        # Again on the same two boards and a third one: the two keep their ids and keys
        # (the record maps their MACs), the new one takes the next free id.
        with RomLoaderStandIn(mac=mac(3)) as three:
            roms[three.url] = three
            boots = Boots(tmp_path / "again", roms)
            (tmp_path / "again").mkdir()
            try:
                code, out, err = run_cli(capsys, monkeypatch, boots, "--port", two.url,
                                         "--port", three.url, "--port", one.url, *common)
            finally:
                boots.close()
            assert (code, err) == (0, "")
            config_three = read_config(three.flash[VFS_OFFSET:VFS_OFFSET + VFS_SIZE])
        keys = registry(db)
        assert sorted(keys) == ["front-1", "front-2", "front-3", "front-4"]
        assert {k: keys[k] for k in first_keys} == first_keys
        assert config_three["device_id"] == "front-4"
        assert config_three["sync"]["device_key"] == keys["front-4"].hex()
        assert f"{two.url}: front-3: already registered: its key kept (no new entry)" in out
        assert read_config(one.flash[VFS_OFFSET:VFS_OFFSET + VFS_SIZE])["sync"][
            "device_key"] == keys["front-2"].hex()

        # With --new-key a registered kiosk gets a new key, and says so.
        boots = Boots(tmp_path / "rekey", {one.url: one})
        (tmp_path / "rekey").mkdir()
        try:
            code, out, err = run_cli(capsys, monkeypatch, boots, "--port", one.url,
                                     "--new-key", *common)
        finally:
            boots.close()
        assert (code, err) == (0, "")
        assert "front-2: registered again with a new key (its old key no longer works)" in out
        assert registry(db)["front-2"] != keys["front-2"]
    lines = record_lines(tmp_path / "provisioning.jsonl")
    assert [(line["id"], line["registration"]) for line in lines] == [
        ("front-2", "new"), ("front-3", "new"), ("front-3", "kept"), ("front-4", "new"),
        ("front-2", "kept"), ("front-2", "replaced")]


# -- the WiFi push --------------------------------------------------------------------------
@pytest.mark.slow
def test_wait_push_counts_a_kiosk_done_once_the_server_stored_its_signed_push(
        tmp_path: Path, firmware: Path) -> None:
    """The real `deskpulse serve` on the same database: it takes the push only with the
    key provisioning registered. The simulated customer's tap is what the kiosk pushes."""
    template = tmp_path / "fast.json"
    template.write_text(json.dumps({
        "sync": {"push_interval_s": 5, "push_min_pending": 1, "ntp_server": ""}}))
    db = tmp_path / "host.db"
    open_store(db).close()
    with ServeProcess(db) as server, RomLoaderStandIn(mac=mac(7)) as rom:
        boots = Boots(tmp_path, {rom.url: rom})
        try:
            run = provision.provision([rom.url], options(
                tmp_path, firmware, template, server=f"http://127.0.0.1:{server.port}",
                wait_push=True, push_timeout=90.0, labels=None), console_for=boots)
        finally:
            boots.close()
    result = run.results[0]
    assert (result.error, result.pushed) == (None, True)
    with open_store(db, create=False) as store:
        latest = store.latest_sync("kiosk-240ac4000007")
        stored = store.responses_of("kiosk-240ac4000007")
    assert latest is not None and latest.transport == "wifi"
    assert len(stored) == 1


# -- refusals before any board --------------------------------------------------------------
def test_what_every_board_shares_is_checked_before_any_board(
        tmp_path: Path, firmware: Path, template: Path) -> None:
    with RomLoaderStandIn() as rom:
        cases: list[tuple[dict[str, Any], str]] = []
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"scale": 9}))
        cases.append(({"template": bad}, "scale must be between 3 and 5 (got 9)"))
        named = tmp_path / "named.json"
        named.write_text(json.dumps({"device_id": "front-1"}))
        cases.append(({"template": named}, "sets device_id: each kiosk gets its own"))
        keyed = tmp_path / "keyed.json"
        keyed.write_text(json.dumps({"sync": {"device_key": "ab" * 32}}))
        cases.append(({"template": keyed}, "never a shared one"))
        s3 = FakeFirmware(chip="esp32s3").write(tmp_path / "s3.bin")
        cases.append(({"firmware": s3}, "s3.bin is MicroPython for an ESP32-S3"))
        cases.append(({"server": "ftp://x:1"}, "the kiosk speaks http:// or https://"))
        cases.append(({"server": None, "wait_push": True}, "--wait-push needs a server"))
        empty = tmp_path / "empty.csv"
        empty.write_text("# nothing yet\n")
        cases.append(({"ids_file": empty}, "holds no id"))
        cases.append(({"labels": tmp_path / "no" / "labels.svg"}, "no folder"))
        for change, why in cases:
            with pytest.raises(DeskPulseError, match=re.escape(why)):
                provision.provision([rom.url], options(
                    tmp_path, **({"firmware": firmware, "template": template} | change)))
        with pytest.raises(DeskPulseError, match="is given twice"):
            provision.provision([rom.url, rom.url], options(tmp_path, firmware, template))
        assert rom.sessions == 0
    assert not (tmp_path / "provisioning.jsonl").exists()


def test_the_server_certificate_is_checked_before_any_board(
        tmp_path: Path, firmware: Path, template: Path) -> None:
    """--server-cert is read and checked as `devices add --server-cert` checks it, and
    paired with the server's scheme: a technician learns of a wrong file at the desk."""
    cert = make_cert(tmp_path / "certs", "server")
    https = "https://pushes.example:8443"
    with_cert = tmp_path / "with-cert.json"
    with_cert.write_text(json.dumps(TEMPLATE | {"sync": {"server_cert": cert.pem}}))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"server": https}, "an https:// server needs --server-cert"),
        ({"server_cert": cert.certfile}, "--server-cert is for an https:// server; this "
                                         "one is http://"),
        ({"server": None, "server_cert": cert.certfile}, "--server-cert needs an https:// "
                                                         "server"),
        ({"server": https, "server_cert": cert.keyfile}, "holds a private key"),
        ({"server": https, "server_cert": tmp_path / "none.pem"},
         "cannot read the server certificate"),
        # The template's own certificate counts, and is refused with an http:// server.
        ({"template": with_cert}, "--server-cert is for an https:// server"),
    ]
    with RomLoaderStandIn() as rom:
        for change, why in cases:
            with pytest.raises(DeskPulseError, match=re.escape(why)):
                provision.provision([rom.url], options(
                    tmp_path, **({"firmware": firmware, "template": template} | change)))
        assert rom.sessions == 0
    assert registry_is_empty(tmp_path / "host.db")


def registry_is_empty(db: Path) -> bool:
    if not db.exists():
        return True
    with open_store(db, create=False) as store:
        return not store.registered_ids()


@pytest.mark.slow
def test_an_https_kiosk_is_flashed_with_the_certificate_it_verifies_the_server_by(
        tmp_path: Path, firmware: Path, template: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    cert = make_cert(tmp_path / "certs", "server", hosts=("pushes.example",))
    chained = tmp_path / "certs" / "server-with-text.pem"
    chained.write_text("subject=CN = deskpulse test server\r\n" + cert.pem)  # openssl -text
    with RomLoaderStandIn(mac=mac(1)) as rom:
        boots = Boots(tmp_path, {rom.url: rom})
        try:
            code, out, err = run_cli(
                capsys, monkeypatch, boots, "--port", rom.url, "--board", BOARD,
                "--firmware", str(firmware), "--template", str(template),
                "--db", str(tmp_path / "host.db"), "--server", "https://pushes.example:8443",
                "--server-cert", str(chained))
        finally:
            boots.close()
        config = read_config(rom.flash[VFS_OFFSET:VFS_OFFSET + VFS_SIZE])
    assert (code, err) == (0, ""), out
    assert config["sync"]["server_url"] == "https://pushes.example:8443"
    assert config["sync"]["server_cert"] == cert.pem  # the certificate only, as PEM
    assert config["sync"]["device_key"] == registry(tmp_path / "host.db")[
        provision.mac_id(mac(1))].hex()


def test_a_list_without_a_free_id_fails_that_board_before_it_is_registered(
        tmp_path: Path, firmware: Path, template: Path) -> None:
    ids = tmp_path / "ids.csv"
    ids.write_text("front-1\n")
    db = tmp_path / "host.db"
    assert cli.main(["devices", "add", "front-1", "--server", "http://10.0.0.1:8080",
                     "--db", str(db), "-o", str(tmp_path / "front-1.json")]) == 0
    before = registry(db)
    with RomLoaderStandIn() as rom:
        run = provision.provision([rom.url], options(tmp_path, firmware, template,
                                                     ids_file=ids))
        assert not WRITES & set(rom.commands)
    assert not run.ok and run.results[0].error == (
        f"no unused id left in {ids} (every one is registered or given out in the "
        "provisioning record)")
    assert registry(db) == before
    assert not (tmp_path / "labels.svg").exists()
    assert not run.record.exists()  # no id given out: nothing to record


def test_the_id_list(tmp_path: Path) -> None:
    path = tmp_path / "ids.csv"
    path.write_text('\ufeffa-1\n\n# spare\n"b-2","Desk, left",Mitte\nc-3,,Annex\n')
    assert provision.read_ids(path) == (
        provision.Wanted("a-1"), provision.Wanted("b-2", "Desk, left", "Mitte"),
        provision.Wanted("c-3", None, "Annex"))
    for text, why in (("a 1\n", "line 1: bad device id 'a 1'"),
                      ("a-1\na-1\n", "line 2: a-1 is listed twice"),
                      ("a,b,c,d\n", "line 1: use ID[,NAME[,LOCATION]], not 4 fields")):
        path.write_text(text)
        with pytest.raises(DeskPulseError, match=re.escape(why)):
            provision.read_ids(path)


def test_the_config_is_the_template_with_the_kiosks_own_fields() -> None:
    template = {"scale": 5, "version": 7, "sync": {"server_url": "http://a:1",
                                                   "push_interval_s": 60}}
    config = provision.kiosk_config(template, "k-1", b"\x01" * 32, server="http://b:2",
                                    wifi_ssid="s")
    assert config == {"scale": 5, "version": 7, "device_id": "k-1", "sync": {
        "server_url": "http://b:2", "push_interval_s": 60, "wifi_ssid": "s",
        "device_key": "01" * 32}}
    assert template["sync"] == {"server_url": "http://a:1", "push_interval_s": 60}
    assert provision.kiosk_config({}, "k-2", b"\x02" * 32)["version"] == 1
    pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    pinned = provision.kiosk_config({"sync": {"server_cert": "old"}}, "k-3", b"\x03" * 32,
                                    server="https://c:3", server_cert=pem)
    assert pinned["sync"]["server_cert"] == pem and pinned["sync"]["server_url"] == "https://c:3"
    kept = provision.kiosk_config({"sync": {"server_cert": pem}}, "k-4", b"\x04" * 32)
    assert kept["sync"]["server_cert"] == pem
    assert provision.mac_id("24:0A:C4:12:34:56") == "kiosk-240ac4123456"
    with pytest.raises(DeskPulseError, match="not 6 bytes"):
        provision.mac_id("24:0a:c4")


def test_a_damaged_record_is_refused_before_any_board(tmp_path: Path, firmware: Path,
                                                       template: Path) -> None:
    record = tmp_path / "provisioning.jsonl"
    record.write_text('{"id": "a", "mac": "24:0a:c4:00:00:01"}\n{"id": \n')
    with RomLoaderStandIn() as rom:
        with pytest.raises(DeskPulseError, match="damaged at line 2"):
            provision.provision([rom.url], options(tmp_path, firmware, template))
        assert rom.sessions == 0


# -- labels ---------------------------------------------------------------------------------
def decode_qr(label: ET.Element) -> str:
    """The label's QR code drawn from its SVG path at 8 pixels a module, then read by a
    real decoder (zxing-cpp)."""
    import zxingcpp
    from PIL import Image, ImageDraw

    path = label.find(f"{{{labels.SVG_NS}}}g[@class='qr']/{{{labels.SVG_NS}}}path")
    assert path is not None
    runs = re.findall(r"M(\d+),(\d+)h(\d+)v1h-\d+z", path.get("d", ""))
    size = max(int(x) + int(w) for x, _, w in runs) + labels.QUIET_ZONE
    scale = 8
    picture = Image.new("L", (size * scale, size * scale), 255)
    draw = ImageDraw.Draw(picture)
    for x, y, w in runs:
        draw.rectangle((int(x) * scale, int(y) * scale, (int(x) + int(w)) * scale - 1,
                        (int(y) + 1) * scale - 1), fill=0)
    found = zxingcpp.read_barcodes(picture)
    assert len(found) == 1
    return found[0].text


def test_the_label_sheet(tmp_path: Path) -> None:
    key = bytes(range(32))
    many = [labels.Label(f"kiosk-{n:02d}", "Ein sehr langer Name für den Schalter <Süd> & Co",
                         "Store 12", labels.key_fingerprint(key)) for n in range(16)]
    written = labels.write_sheets(tmp_path / "labels.svg", many)
    assert written == [tmp_path / "labels.svg", tmp_path / "labels-2.svg"]
    first = ET.parse(written[0]).getroot()
    second = ET.parse(written[1]).getroot()
    assert first.get("width") == "210mm" and first.get("height") == "297mm"
    groups = first.findall(f"{{{labels.SVG_NS}}}g")
    assert len(groups) == 14 and len(second.findall(f"{{{labels.SVG_NS}}}g")) == 2
    texts = [t.text for t in groups[0].iter(f"{{{labels.SVG_NS}}}text")]
    assert texts == ["kiosk-00", "Ein sehr langer Name für den …", "Store 12",
                     f"key fingerprint {labels.key_fingerprint(key)}"]
    assert labels.key_fingerprint(key) == hashlib.sha256(key).hexdigest()[:8]
    # The QR code keeps the whole text, escapes and all.
    fingerprint = labels.key_fingerprint(key)
    assert decode_qr(groups[0]) == ("kiosk-00\nEin sehr langer Name für den Schalter <Süd> "
                                    f"& Co\nStore 12\nkey fingerprint {fingerprint}")
    assert key.hex() not in written[0].read_text()
    # The longest id a kiosk takes is set smaller, not cut.
    long_id = "store-12-front-desk-left-kiosk-1"
    sheet = ET.fromstring(labels.sheet_svg([labels.Label(long_id, None, None, "0" * 8)]))
    id_text = next(sheet.iter(f"{{{labels.SVG_NS}}}text"))
    assert id_text.text == long_id and float(id_text.get("font-size", "")) < labels.ID_SIZE_MM
    assert labels.write_sheets(tmp_path / "none.svg", []) == []
    assert not (tmp_path / "none.svg").exists()


def test_the_command_line_help_names_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["provision", "--help"])
    text = capsys.readouterr().out
    for option in ("--port", "--board", "--firmware", "--template", "--server", "--wifi-ssid",
                   "--wifi-password", "--ids", "--labels", "--record", "--new-key",
                   "--wait-push", "--server-cert"):
        assert option in text
