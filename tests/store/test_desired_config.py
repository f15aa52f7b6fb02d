"""Config over the air in the store's contract: layers, desired configs and their versions,
and the nonce check of a fetch. Runs on every engine of test_store.ENGINES."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_store import ENGINES, KEY, STATUS, answer

from deskpulse.protocol.signing import Nonce
from deskpulse.store.base import ConfigLayer, DeviceFacts, PushCheck, PushRefused, Store


@pytest.fixture(params=sorted(ENGINES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = ENGINES[request.param](request, tmp_path)
    try:
        for device_id in ("k1", "k2"):
            opened.set_key(device_id, KEY, replace=False,
                           facts=DeviceFacts(device_id, None, None, None))
        yield opened
    finally:
        opened.close()


QUESTION = {"texts": {"en": {"question": "Were we quick?"}}}


def test_a_layer_and_the_desired_configs_are_saved_together(store: Store) -> None:
    versions = store.save_config({"k1": QUESTION, "k2": QUESTION},
                                 layer=("site", "acme", QUESTION), now=100)
    assert versions == {"k1": 1, "k2": 1}
    assert store.config_layers() == [ConfigLayer("site", "acme", QUESTION, 100)]
    desired = store.desired_config("k1")
    assert desired is not None
    assert desired.version == 1 and desired.config == {**QUESTION, "version": 1}
    assert store.desired_versions() == {"k1": 1, "k2": 1}
    assert store.desired_versions("k2") == {"k2": 1}
    assert store.desired_config("nobody") is None


def test_a_version_changes_only_when_the_config_does(store: Store) -> None:
    store.save_config({"k1": QUESTION})
    assert store.save_config({"k1": QUESTION}) == {}  # the same config: no new version
    assert store.save_config({"k1": {**QUESTION, "version": 9}}) == {}  # version aside
    assert store.save_config({"k1": {"scale": 3}}) == {"k1": 2}
    # The older one stays readable (for `config diff`), until the history is trimmed.
    older = store.desired_config("k1", 1)
    assert older is not None and older.config == {**QUESTION, "version": 1}


def test_a_new_version_is_above_the_one_the_kiosk_runs(store: Store) -> None:
    # A kiosk given version 40 by a USB config file must not take the server's 1 for its own.
    store.store_batch("k1", [answer(1)], [], {**STATUS, "config_version": 40}, "serial")
    assert store.save_config({"k1": QUESTION}) == {"k1": 41}


def test_versions_wrap_within_the_kiosks_sixteen_bits(store: Store) -> None:
    store.store_batch("k1", [answer(1)], [], {**STATUS, "config_version": 0xFFFF}, "serial")
    assert store.save_config({"k1": QUESTION}) == {"k1": 1}


def test_a_kiosk_no_longer_managed_has_no_desired_config(store: Store) -> None:
    store.save_config({"k1": QUESTION}, layer=("device", "k1", QUESTION))
    assert store.save_config({"k1": None}, layer=("device", "k1", None)) == {"k1": None}
    assert store.config_layers() == []
    assert store.desired_config("k1") is None and store.desired_versions() == {}
    # Managed again: a version above every one it was given.
    assert store.save_config({"k1": QUESTION}) == {"k1": 2}


def test_a_fetch_is_checked_and_advances_the_nonce_as_a_push(store: Store) -> None:
    store.accept_request("k1", PushCheck(KEY, Nonce(2, 1)))
    with pytest.raises(PushRefused) as replay:
        store.accept_request("k1", PushCheck(KEY, Nonce(2, 1)))
    assert replay.value.problem == "replayed"
    with pytest.raises(PushRefused) as wrong:
        store.accept_request("k1", PushCheck(bytes(32), Nonce(2, 2)))
    assert wrong.value.problem == "key_replaced"
    with pytest.raises(PushRefused) as unknown:
        store.accept_request("k9", PushCheck(KEY, Nonce(2, 3)))
    assert unknown.value.problem == "unknown_device"
    # A push after the fetch needs a higher nonce still.
    with pytest.raises(PushRefused):
        store.store_batch("k1", [answer(1)], [], STATUS, "wifi",
                          push=PushCheck(KEY, Nonce(2, 1)))
    store.store_batch("k1", [answer(1)], [], STATUS, "wifi", push=PushCheck(KEY, Nonce(2, 2)))
