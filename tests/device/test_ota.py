"""Config over the air, host side (deskpulse.device.ota and `deskpulse config`): layers
merged root first, each kiosk's config checked by the firmware's validator before
anything is saved, versions, and which kiosks are behind. Real SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deskpulse import cli
from deskpulse.device import ota
from deskpulse.device.config_check import firmware_module
from deskpulse.errors import DeskPulseError
from deskpulse.protocol.batch import Response
from deskpulse.store import open_store
from deskpulse.store.base import DeviceFacts, Store

KEY = bytes(range(32))
KIOSKS = {"lyon-a": "acme/north/lyon", "lyon-b": "acme/north/lyon", "nice-a": "acme/south/nice",
          "solo": None}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(tmp_path / "host.db")
    for path in ("acme", "acme/north", "acme/south"):
        opened.add_site(path)
    opened.add_site("acme/north/lyon", time_zone="Europe/Paris",
                    opening_hours="mon-fri 09:00-18:00")
    opened.add_site("acme/south/nice")
    for device_id, site in KIOSKS.items():
        opened.set_key(device_id, KEY, replace=False,
                       facts=DeviceFacts(device_id, None, None,
                                         "America/New_York" if device_id == "nice-a" else None))
        if site:
            opened.assign_kiosk(device_id, site)
    try:
        yield opened
    finally:
        opened.close()


def desired(store: Store, device_id: str) -> dict[str, object] | None:
    found = store.desired_config(device_id)
    return None if found is None else found.config


def question(store: Store, device_id: str) -> str | None:
    config = desired(store, device_id)
    return None if config is None else config["texts"]["en"]["question"]  # type: ignore[index]


def reported(store: Store, device_id: str, status: dict[str, object]) -> None:
    response = Response(seq=1, rating=3, scale=4, told_next="yes", latency_s=1.0,
                        rapid=False, closed=False, boot=1, uptime_s=10, wall=None,
                        config_version=0)
    store.store_batch(device_id, [response], [], {"board": "b", "firmware": "f", **status},
                      "wifi")


def test_a_template_reaches_every_kiosk_below_its_site_in_one_change(store: Store) -> None:
    change = ota.change_layer(store, "site", "acme",
                              {"texts": {"en": {"question": "Were we quick?"}}})
    assert change.versions == {"lyon-a": 1, "lyon-b": 1, "nice-a": 1}
    assert all(question(store, k) == "Were we quick?" for k in ("lyon-a", "lyon-b", "nice-a"))
    assert desired(store, "solo") is None  # in no site: not managed
    assert "texts.en.question: \"How was your visit?\" -> \"Were we quick?\"" in \
        change.changes["lyon-a"]
    # The base layer: each kiosk's zone (its own, else its site's) and its site's hours.
    lyon, nice = desired(store, "lyon-a"), desired(store, "nice-a")
    assert lyon is not None and nice is not None
    assert lyon["time_zone"] == "Europe/Paris" and lyon["tz_rule"]
    assert lyon["opening_hours"] == {d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu",
                                                                   "fri")}
    assert nice["time_zone"] == "America/New_York" and "opening_hours" not in nice


def test_nearer_layers_win_and_a_kiosk_override_wins_over_all(store: Store) -> None:
    ota.change_layer(store, "site", "acme", {"texts": {"en": {"question": "A?", "yes": "Oui"}}})
    ota.change_layer(store, "site", "acme/north", {"texts": {"en": {"question": "North?"}}})
    ota.change_layer(store, "device", "lyon-b", {"texts": {"en": {"question": "B?"}}})
    assert [question(store, k) for k in ("lyon-a", "lyon-b", "nice-a")] == ["North?", "B?", "A?"]
    lyon_b = desired(store, "lyon-b")
    assert lyon_b is not None and lyon_b["texts"]["en"]["yes"] == "Oui"  # type: ignore[index]
    versions = {k: store.desired_versions()[k] for k in ("lyon-a", "lyon-b", "nice-a")}
    assert versions == {"lyon-a": 2, "lyon-b": 3, "nice-a": 1}
    # Unsetting the override: lyon-b follows its site again, under a new version.
    change = ota.change_layer(store, "device", "lyon-b", None)
    assert change.versions == {"lyon-b": 4} and question(store, "lyon-b") == "North?"


def test_a_bad_template_is_refused_naming_the_kiosks_and_the_field(store: Store) -> None:
    ota.change_layer(store, "site", "acme", {"scale": 3})
    before = (store.config_layers(), store.desired_versions())
    with pytest.raises(DeskPulseError) as refused:
        ota.change_layer(store, "site", "acme/north",
                         {"texts": {"en": {"question": "x" * 121}}})
    message = str(refused.value)
    assert message == ("the config of kiosks lyon-a, lyon-b rejected: texts.en.question is "
                       "longer than 120 characters")
    assert (store.config_layers(), store.desired_versions()) == before  # nothing saved


def test_the_firmware_validator_on_micropython_judges_too(store: Store) -> None:
    with pytest.raises(DeskPulseError, match="kiosk nice-a rejected: scale"):
        ota.change_layer(store, "site", "acme/south", {"scale": 9}, runtime="micropython")


@pytest.mark.parametrize("path", ["device_id", "sync.device_key", "sync.server_url",
                                  "sync.wifi_password", "sync.server_cert", "sync",
                                  "version"])
def test_identity_and_network_keys_change_over_usb_only(store: Store, path: str) -> None:
    with pytest.raises(DeskPulseError, match="cannot be set over the air"):
        ota.change_layer(store, "site", "acme", ota.with_value({}, path, "x"))


def test_the_host_refuses_over_the_air_what_the_kiosk_keeps() -> None:
    """The firmware's KEPT_SYNC (what a kiosk keeps under a fetched config) and the
    host's KEPT_BY_KIOSK name the same sync settings: one the kiosk kept but the host
    let a layer set would be shown as desired and never run."""
    kept = firmware_module("kiosk.config").KEPT_SYNC
    assert sorted(f"sync.{key}" for key in kept) == sorted(
        path for path in ota.KEPT_BY_KIOSK if path.startswith("sync."))
    assert "server_cert" in kept


def test_unknown_sites_and_kiosks_are_refused(store: Store) -> None:
    with pytest.raises(DeskPulseError, match="no site 'acme/west'"):
        ota.change_layer(store, "site", "acme/west", {"scale": 3})
    with pytest.raises(DeskPulseError, match="no kiosk ghost is registered"):
        ota.change_layer(store, "device", "ghost", {"scale": 3})


def test_a_dry_run_saves_nothing(store: Store) -> None:
    change = ota.change_layer(store, "site", "acme", {"scale": 3}, dry_run=True)
    assert sorted(change.changes) == ["lyon-a", "lyon-b", "nice-a"]
    assert "scale: 4 -> 3" in change.changes["nice-a"]
    assert store.config_layers() == [] and store.desired_versions() == {}


def test_a_kiosk_that_moves_takes_its_new_sites_config_at_a_refresh(store: Store) -> None:
    ota.change_layer(store, "site", "acme/north", {"scale": 3})
    store.assign_kiosk("solo", "acme/north/lyon")
    assert desired(store, "solo") is None
    assert {s.device_id: s.state for s in ota.config_states(store)}["solo"] == (
        "layers changed since: deskpulse config refresh")
    change = ota.refresh(store)
    assert change.versions == {"solo": 1}
    assert {s.device_id: s.state for s in ota.config_states(store)}["solo"] == "never synced"
    solo = desired(store, "solo")
    assert solo is not None and solo["scale"] == 3


def test_status_shows_who_is_behind_and_who_refused(store: Store) -> None:
    ota.change_layer(store, "site", "acme", {"scale": 3})
    reported(store, "lyon-a", {"config_version": 1})
    reported(store, "lyon-b", {"config_version": 0})
    reported(store, "nice-a", {"config_version": 0, "push": {"config": {
        "desired": 1, "rejected": [1, "scale 3 does not fit"]}}})
    states = {s.device_id: s for s in ota.config_states(store)}
    assert {k: s.state for k, s in states.items()} == {
        "lyon-a": "up to date", "lyon-b": "behind",
        "nice-a": "rejected: scale 3 does not fit", "solo": "not managed"}
    assert (states["lyon-b"].desired, states["lyon-b"].running) == (1, 0)
    assert states["lyon-a"].site == "acme/north/lyon"


def test_diff_shows_what_a_kiosk_behind_will_change(store: Store) -> None:
    ota.change_layer(store, "site", "acme", {"scale": 3})
    reported(store, "lyon-a", {"config_version": 1})
    assert ota.pending_changes(store, "lyon-a") == []
    ota.change_layer(store, "site", "acme", {"scale": 5, "thank_you_s": 4})
    assert ota.pending_changes(store, "lyon-a") == ["scale: 3 -> 5", "thank_you_s: 3 -> 4"]
    with pytest.raises(DeskPulseError, match="not managed over the air"):
        ota.pending_changes(store, "solo")


def test_the_commands_change_thirty_stores_in_one(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "chain.db")
    with open_store(db) as store:
        store.add_site("acme")
        for i in range(30):
            store.add_site(f"acme/store-{i}", "store")
            store.set_key(f"k{i}", KEY, replace=False, facts=DeviceFacts(f"k{i}", None, None,
                                                                         None))
            store.assign_kiosk(f"k{i}", f"acme/store-{i}")
    assert cli.main(["config", "set", "--site", "acme", "--db", db,
                     "texts.en.question=Did we help?", "scale=3"]) == 0
    out = capsys.readouterr().out
    assert out.count(": version 1\n") == 30
    assert cli.main(["config", "status", "--db", db]) == 0
    assert capsys.readouterr().out.count("never synced") == 30
    template = tmp_path / "acme.json"
    template.write_text('{"thank_you_s": 5}')
    assert cli.main(["config", "template", "acme", str(template), "--db", db]) == 0
    assert "  scale: 3 -> 4" in capsys.readouterr().out  # the template replaced the layer
    assert cli.main(["config", "unset", "--site", "acme", "thank_you_s", "--db", db]) == 0
    assert capsys.readouterr().out.count("no longer managed") == 30
    assert cli.main(["config", "unset", "--site", "acme", "--db", db]) == 2
    assert "has no config layer" in capsys.readouterr().err
    assert cli.main(["config", "set", "--site", "acme", "sync.device_key=00",
                     "--db", db]) == 2
    assert capsys.readouterr().err.startswith("deskpulse: sync.device_key cannot be set")


def test_a_desired_config_leaves_room_for_the_kiosks_pinned_certificate(store: Store) -> None:
    """An https kiosk adds its sync.server_cert (up to 3072 characters) to the fetched
    config: a desired config that fits 8 KB alone but not with it is refused here, not by
    the kiosk after the fetch."""
    room = 8192 - ota.KEPT_ROOM
    assert room < 8192 - 3072
    before = (store.config_layers(), store.desired_versions())
    texts = {f"l{i}": {"question": "x" * 100} for i in range(room // 120 + 1)}
    with pytest.raises(DeskPulseError, match=f"over the air a kiosk takes at most {room} "
                       r"\(room for its own identity, network settings and pinned"):
        ota.change_layer(store, "site", "acme", {"texts": texts})
    assert (store.config_layers(), store.desired_versions()) == before
