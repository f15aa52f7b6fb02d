"""Sites and config over the air together, on every engine of test_store.ENGINES: a site's
templates follow it when it is renamed or moved and go when it is removed, and a kiosk a
change of the tree moves gets its new desired config in the same transaction (or, when the
validator refuses it, keeps the one it was sent and is told what to do)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_store import ENGINES, KEY

from deskpulse.device import ota
from deskpulse.store.base import DeviceFacts, Store

KIOSKS = {"lyon-a": "acme/north/lyon", "lyon-b": "acme/north/lyon", "nice-a": "acme/south/nice",
          "solo": None}


@pytest.fixture(params=sorted(ENGINES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = ENGINES[request.param](request, tmp_path)
    try:
        for path in ("acme", "acme/north", "acme/north/lyon", "acme/south", "acme/south/nice"):
            opened.add_site(path)
        for device_id, site in KIOSKS.items():
            opened.set_key(device_id, KEY, replace=False,
                           facts=DeviceFacts(device_id, None, None, None))
            if site:
                opened.assign_kiosk(device_id, site)
        ota.change_layer(opened, "site", "acme/north", {"scale": 3})
        ota.change_layer(opened, "site", "acme/north/lyon",
                         {"texts": {"en": {"question": "Lyon?"}}})
        ota.change_layer(opened, "site", "acme/south", {"thank_you_s": 4})
        yield opened
    finally:
        opened.close()


def desired(store: Store, device_id: str) -> dict[str, Any] | None:
    found = store.desired_config(device_id)
    return None if found is None else found.config


def states(store: Store) -> dict[str, str]:
    return {state.device_id: state.state for state in ota.config_states(store)}


def site_layers(store: Store) -> dict[str, dict[str, Any]]:
    return {layer.name: layer.overlay for layer in store.config_layers()
            if layer.scope == "site"}


def test_a_renamed_sites_templates_and_its_descendants_follow_it(store: Store) -> None:
    versions = store.desired_versions()
    store.rename_site("acme/north", "nord")
    assert site_layers(store) == {"acme/nord": {"scale": 3},
                                  "acme/nord/lyon": {"texts": {"en": {"question": "Lyon?"}}},
                                  "acme/south": {"thank_you_s": 4}}
    # Still applied: the kiosks' configs are what their layers make, and nobody refetches.
    assert states(store)["lyon-a"] == "never synced"
    assert store.desired_versions() == versions
    assert ota.refresh(store).changes == {}
    lyon = desired(store, "lyon-a")
    assert lyon is not None and lyon["scale"] == 3 and lyon["texts"]["en"]["question"] == "Lyon?"


def test_a_moved_site_takes_its_templates_and_its_kiosks_take_their_new_config_at_once(
        store: Store) -> None:
    recompute = ota.Recompute()
    versions = store.desired_versions()
    assert store.move_site("acme/north/lyon", "acme/south", desired=recompute) == \
        "acme/south/lyon"
    assert "acme/south/lyon" in site_layers(store) and "acme/north/lyon" not in site_layers(
        store)
    lyon = desired(store, "lyon-a")
    assert lyon is not None
    # Its own template came along; north's scale stayed behind (the default, left out as
    # such); south's applies now.
    assert (lyon["texts"]["en"]["question"], "scale" in lyon, lyon["thank_you_s"]) == (
        "Lyon?", False, 4)
    assert sorted(recompute.changes) == ["lyon-a", "lyon-b"] and recompute.problem is None
    assert "scale: 3 -> 4" in recompute.changes["lyon-a"]
    assert store.desired_versions()["lyon-a"] == versions["lyon-a"] + 1
    assert store.desired_versions()["nice-a"] == versions["nice-a"]
    assert set(states(store).values()) <= {"never synced", "not managed"}


def test_removing_a_site_removes_its_templates_and_says_so(store: Store) -> None:
    recompute = ota.Recompute()
    removed = store.remove_site("acme/north", force=True, desired=recompute)
    assert removed.layers == ("acme/north", "acme/north/lyon")
    assert site_layers(store) == {"acme/south": {"thank_you_s": 4}}
    # Its kiosks, in no site now, are no longer managed over the air, at once.
    assert desired(store, "lyon-a") is None and "lyon-a" not in store.desired_versions()
    assert states(store)["lyon-a"] == states(store)["lyon-b"] == "not managed"
    assert sorted(recompute.changes) == ["lyon-a", "lyon-b"]


def test_an_assigned_kiosk_takes_its_stores_config_at_once(store: Store) -> None:
    recompute = ota.Recompute()
    store.assign_kiosk("solo", "acme/south/nice", desired=recompute)
    solo = desired(store, "solo")
    assert solo is not None and solo["thank_you_s"] == 4
    assert store.desired_versions()["solo"] == 1 and states(store)["solo"] == "never synced"
    assert "thank_you_s: 3 -> 4" in recompute.changes["solo"]


def test_an_assignment_the_template_refuses_stands_and_keeps_the_config_sent(
        store: Store) -> None:
    store.add_site("acme/south/cannes")  # no kiosk yet: its template is checked for none
    ota.change_layer(store, "site", "acme/south/cannes", {"texts": {"en": {"question": "x" * 121}}})
    before = store.desired_config("lyon-a")
    recompute = ota.Recompute()
    store.assign_kiosk("lyon-a", "acme/south/cannes", desired=recompute)
    assert store.device_site_path("lyon-a") == "acme/south/cannes"
    assert recompute.problem == ("the config of kiosk lyon-a rejected: texts.en.question is "
                                 "longer than 120 characters")
    assert store.desired_config("lyon-a") == before and recompute.changes == {}
    assert states(store)["lyon-a"] == "layers changed since: deskpulse config refresh"


def test_a_failing_recompute_leaves_no_half_change(store: Store) -> None:
    def broken(_store: object, _kiosks: list[str]) -> dict[str, Any]:
        raise RuntimeError("the host died half way")

    with pytest.raises(RuntimeError):
        store.move_site("acme/north/lyon", "acme/south", desired=broken)
    assert store.device_site_path("lyon-a") == "acme/north/lyon"
    assert "acme/north/lyon" in site_layers(store)


def test_a_sites_new_hours_reach_its_managed_kiosks_at_once(store: Store) -> None:
    recompute = ota.Recompute()
    store.set_site("acme/north", opening_hours="mon-fri 09:00-18:00", desired=recompute)
    assert sorted(recompute.changes) == ["lyon-a", "lyon-b"]
    lyon = desired(store, "lyon-b")
    assert lyon is not None and lyon["opening_hours"]["fri"] == ["09:00-18:00"]
    assert states(store)["lyon-b"] == "never synced"
