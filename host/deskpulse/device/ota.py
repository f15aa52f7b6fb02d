"""Config over the air, host side: the layers people set (a site's template, a kiosk's
overrides), each kiosk's desired config merged from them, and which kiosks run it.

A kiosk's layers are, bottom to top: its time zone (its own from `deskpulse devices`,
else its site's) and its site's opening hours (`deskpulse sites`), the template of every
ancestor of its store site, root first (acme, acme/north, acme/north/lyon-1), then its
own overrides; each merged over the ones below with `merge_config`. Whatever no layer
sets takes the firmware's default: the desired config is the kiosk's whole config, except
what the kiosk keeps of its own (KEPT_BY_KIOSK: its identity and how it reaches the
network), which no layer may set.

Every change recomputes every registered kiosk's desired config and validates each
distinct one with the firmware's own validator before anything is saved, so a bad
template is refused at once, naming the kiosks and the field; a kiosk whose config
changed gets a new version (store.save_config), which the next push answer tells it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from deskpulse.device.config_check import (
    Runtime,
    check_config_value,
    config_changes,
    merge_config,
)
from deskpulse.device.zone_rule import with_zone_rule
from deskpulse.errors import DeskPulseError
from deskpulse.protocol.wire import MAX_CONFIG_BYTES
from deskpulse.store import sites
from deskpulse.store.base import LayerScope, Site, Store

KEPT_BY_KIOSK = ("device_id", "version", "sync.server_url", "sync.device_key",
                 "sync.wifi_ssid", "sync.wifi_password")
"""Config keys a kiosk keeps from its own config when it applies one fetched over the air
(firmware kiosk/ota.py has the same list): a wrong one would cut it off from the server
until a technician came, so they change over USB only (`deskpulse sync --config`)."""


KEPT_ROOM = 600
"""Bytes a desired config leaves free for what the kiosk adds of its own (KEPT_BY_KIOSK at
their longest, with their names): the file it writes takes at most MAX_CONFIG_BYTES."""


def parse_assignment(text: str) -> tuple[str, Any]:
    """"texts.en.question=How was it?" -> ("texts.en.question", "How was it?"). A value
    that is JSON (a number, true, null, an object, a quoted string) is taken as such,
    anything else as text."""
    path, equals, value = text.partition("=")
    if not equals or not path.strip():
        raise DeskPulseError(f"{text!r}: write KEY=VALUE, e.g. texts.en.question=\"...\"")
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    return check_key_path(path.strip()), parsed


def check_key_path(path: str) -> str:
    parts = path.split(".")
    if any(not part for part in parts):
        raise DeskPulseError(f"{path!r} is not a config key path (e.g. texts.en.question)")
    for kept in KEPT_BY_KIOSK:
        if path == kept or path.startswith(kept + ".") or kept.startswith(path + "."):
            raise DeskPulseError(
                f"{kept} cannot be set over the air: a wrong value would cut the kiosk off; "
                "change it over USB (deskpulse sync --config)")
    return path


def with_value(overlay: Mapping[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of overlay with the key path set (objects on the way created)."""
    head, _, rest = path.partition(".")
    out = dict(overlay)
    if rest:
        inner = out.get(head)
        out[head] = with_value(inner if isinstance(inner, Mapping) else {}, rest, value)
    else:
        out[head] = value
    return out


def without_value(overlay: Mapping[str, Any], path: str) -> dict[str, Any]:
    """A copy of overlay without the key path (an object left empty goes too); a path it
    does not set is an error."""
    head, _, rest = path.partition(".")
    if head not in overlay or (rest and not isinstance(overlay[head], Mapping)):
        raise DeskPulseError(f"{path} is not set in this layer")
    out = dict(overlay)
    if rest:
        inner = without_value(overlay[head], rest)
        if inner:
            out[head] = inner
        else:
            del out[head]
    else:
        del out[head]
    return out


def check_layer(overlay: Any, what: str) -> dict[str, Any]:
    """A layer's overlay: a JSON object that sets none of KEPT_BY_KIOSK."""
    if not isinstance(overlay, dict):
        raise DeskPulseError(f"{what} is not a JSON object of config keys")

    def walk(prefix: str, value: Mapping[str, Any]) -> None:
        for key, inner in value.items():
            path = f"{prefix}{key}"
            if isinstance(inner, Mapping) and path == "sync":
                walk(path + ".", inner)
            else:
                check_key_path(path)

    walk("", overlay)
    return overlay


# -- desired configs -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Layers:
    """Every layer, by scope and name, and what each kiosk's layers are built from."""

    templates: dict[str, dict[str, Any]]  # site path -> overlay
    overrides: dict[str, dict[str, Any]]  # device id -> overlay
    own_zones: dict[str, str]  # device id -> the zone `deskpulse devices` gave it
    placed: dict[str, str]  # device id -> its store site's path
    tree: dict[str, Site]

    @classmethod
    def read(cls, store: Store) -> Layers:
        templates: dict[str, dict[str, Any]] = {}
        overrides: dict[str, dict[str, Any]] = {}
        for layer in store.config_layers():
            (templates if layer.scope == "site" else overrides)[layer.name] = layer.overlay
        zones = {facts.device_id: facts.time_zone for facts in store.device_facts()
                 if facts.time_zone}
        return cls(templates, overrides, zones, store.kiosk_sites(),
                   {site.path: site for site in store.sites()})

    def changed(self, scope: LayerScope, name: str, overlay: dict[str, Any] | None) -> Layers:
        table = dict(self.templates if scope == "site" else self.overrides)
        if overlay is None:
            table.pop(name, None)
        else:
            table[name] = overlay
        if scope == "site":
            return Layers(table, self.overrides, self.own_zones, self.placed, self.tree)
        return Layers(self.templates, table, self.own_zones, self.placed, self.tree)

    def of(self, device_id: str) -> list[tuple[str, dict[str, Any]]]:
        """(label, overlay) of the kiosk's layers that exist, bottom to top. The zone and
        hours only when some template or override applies: without one the kiosk is not
        managed over the air."""
        site = self.placed.get(device_id)
        found = [(f"site {path}", self.templates[path])
                 for path in reversed(sites.ancestors(site) if site else [])
                 if path in self.templates]
        if device_id in self.overrides:
            found.append((f"device {device_id}", self.overrides[device_id]))
        if not found:
            return found
        zone, hours = sites.inherited(self.tree, site)
        zone = self.own_zones.get(device_id) or zone
        base: dict[str, Any] = {}
        if zone:
            base["time_zone"] = zone
        if hours:
            base["opening_hours"] = sites.parse_hours(hours)
        if base:
            found.insert(0, ("time zone and hours (deskpulse devices, sites)", base))
        return found

    def merged(self, device_id: str) -> dict[str, Any] | None:
        layers = self.of(device_id)
        if not layers:
            return None
        merged: dict[str, Any] = {}
        for _, overlay in layers:
            merged = merge_config(merged, overlay)
        return merged


def desired_configs(layers: Layers, device_ids: Iterable[str],
                    runtime: Runtime | None = None) -> dict[str, dict[str, Any] | None]:
    """Each kiosk's desired config (None: not managed), each distinct one checked by the
    firmware's validator as it will be sent (with its time zone's rule); the first that
    fails is one sentence naming its kiosks and the problem."""
    groups: dict[str, list[str]] = {}
    merged: dict[str, dict[str, Any] | None] = {}
    for device_id in sorted(device_ids):
        merged[device_id] = config = layers.merged(device_id)
        if config is not None:
            groups.setdefault(json.dumps(config, sort_keys=True), []).append(device_id)
    checked: dict[str, dict[str, Any]] = {}
    for text, members in groups.items():
        shown = ", ".join(members[:5]) + (f" and {len(members) - 5} more"
                                          if len(members) > 5 else "")
        what = f"the config of kiosk{'s' if len(members) > 1 else ''} {shown}"
        data = check_config_value(json.loads(text), what, runtime).data
        if len(data) > MAX_CONFIG_BYTES - KEPT_ROOM:
            raise DeskPulseError(
                f"{what} is {len(data)} bytes compacted; over the air a kiosk takes at most "
                f"{MAX_CONFIG_BYTES - KEPT_ROOM} (room for its own identity and network "
                "settings)")
        checked[text] = json.loads(data)
    return {device_id: None if config is None
            else checked[json.dumps(config, sort_keys=True)]
            for device_id, config in merged.items()}


@dataclass(frozen=True, slots=True)
class Change:
    """What a layer change did (or, dry, would do) to each kiosk whose config changes."""

    versions: dict[str, int | None]  # kiosk -> new version (None: no longer managed)
    changes: dict[str, list[str]]  # kiosk -> `path: old -> new` lines


def change_layer(store: Store, scope: LayerScope, name: str,
                 overlay: dict[str, Any] | None, *, dry_run: bool = False,
                 runtime: Runtime | None = None) -> Change:
    """Set (or with None remove) a layer and recompute every registered kiosk's desired
    config, all checked before anything is saved."""
    if overlay is not None:
        check_layer(overlay, f"the {scope} layer {name}")
    device_ids = sorted(store.registered_ids())
    layers = Layers.read(store)
    if scope == "device" and name not in device_ids and overlay is not None:
        raise DeskPulseError(f"no kiosk {name} is registered (deskpulse devices add)")
    if scope == "site" and name not in layers.tree and overlay is not None:
        raise sites.no_site(name)
    if overlay == {}:
        overlay = None  # an empty layer is no layer
    return _save(store, layers.changed(scope, name, overlay), device_ids,
                 (scope, name, overlay), dry_run, runtime)


def refresh(store: Store, *, dry_run: bool = False, runtime: Runtime | None = None
            ) -> Change:
    """Recompute every kiosk's desired config from the layers as they are: after a kiosk
    was registered, got another time zone, or moved to a site whose template its
    validator refused then (Recompute)."""
    device_ids = sorted(store.registered_ids())
    return _save(store, Layers.read(store), device_ids, None, dry_run, runtime)


def _save(store: Store, layers: Layers, device_ids: list[str],
          layer: tuple[LayerScope, str, dict[str, Any] | None] | None, dry_run: bool,
          runtime: Runtime | None) -> Change:
    desired = desired_configs(layers, device_ids, runtime)
    changes = _changes(store, desired)
    if dry_run:
        return Change({device_id: None for device_id in changes}, changes)
    versions = store.save_config(desired, layer=layer)
    return Change(versions, changes)


def _changes(store: Store, desired: Mapping[str, Mapping[str, Any] | None]
             ) -> dict[str, list[str]]:
    """`path: old -> new` lines of each kiosk whose desired config this changes."""
    changes: dict[str, list[str]] = {}
    for device_id, config in desired.items():
        before = store.desired_config(device_id)
        old = before.config if before is not None else None
        if _bare(old) != _bare(config):
            changes[device_id] = config_changes(_bare(old) or {}, _bare(config) or {})
    return changes


@dataclass(slots=True)
class Recompute:
    """The desired configs of the kiosks a change of the site tree moves (an assignment,
    a move, a removal; store.base.DesiredFor), from the layers as the change leaves them,
    saved in its transaction. When the validator refuses one, none of them changes and
    `problem` says why: the site change still stands, the kiosks keep the config they
    were sent (a safe one), and `deskpulse config status` shows "layers changed" until the
    layer is fixed and `deskpulse config refresh` run."""

    runtime: Runtime | None = None
    changes: dict[str, list[str]] = field(default_factory=dict)
    problem: str | None = None

    def __call__(self, store: Store, device_ids: list[str]
                 ) -> dict[str, dict[str, Any] | None]:
        registered = store.registered_ids()  # only they take configs over the air
        try:
            desired = desired_configs(Layers.read(store),
                                      [d for d in device_ids if d in registered], self.runtime)
        except DeskPulseError as refused:
            self.problem = str(refused)
            return {}
        self.changes = _changes(store, desired)
        return desired


def _bare(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if config is None else {k: v for k, v in config.items() if k != "version"}


def layer_of(store: Store, scope: LayerScope, name: str) -> dict[str, Any]:
    """The layer's overlay ({} when it has none)."""
    for layer in store.config_layers():
        if layer.scope == scope and layer.name == name:
            return layer.overlay
    return {}


# -- which kiosks run it ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KioskConfigState:
    device_id: str
    site: str | None
    desired: int | None  # None: not managed over the air
    running: int | None  # from its last sync or push; None: never heard of
    rejected: str | None  # the kiosk refused the desired version: its reason
    stale: bool = False  # its layers changed since (a refused Recompute): `config refresh`

    @property
    def state(self) -> str:
        if self.stale:
            return "layers changed since: deskpulse config refresh"
        if self.desired is None:
            return "not managed"
        if self.running == self.desired:
            return "up to date"
        if self.rejected:
            return f"rejected: {self.rejected}"
        return "behind" if self.running is not None else "never synced"


def config_states(store: Store) -> list[KioskConfigState]:
    """Every registered kiosk's desired and running config versions, and whether its
    desired config still is what its layers make (not after a move to another site)."""
    desired = store.desired_versions()
    layers = Layers.read(store)
    out = []
    for device_id in sorted(store.registered_ids()):
        held = store.desired_config(device_id)
        made = layers.merged(device_id)
        latest = store.latest_sync(device_id)
        status = latest.status if latest is not None else {}
        running = status.get("config_version")
        out.append(KioskConfigState(
            device_id, store.device_site_path(device_id), desired.get(device_id),
            running if isinstance(running, int) else None,
            _rejection(status, desired.get(device_id)),
            _bare(held.config if held else None) != _bare(
                with_zone_rule(made) if made is not None else None)))
    return out


def _rejection(status: Mapping[str, Any], desired: int | None) -> str | None:
    """The kiosk's reason for refusing the desired version, from its status
    (push.config.rejected: [version, reason])."""
    push = status.get("push")
    ota = push.get("config") if isinstance(push, Mapping) else None
    rejected = ota.get("rejected") if isinstance(ota, Mapping) else None
    if (isinstance(rejected, list) and len(rejected) == 2 and rejected[0] == desired
            and desired is not None):
        return str(rejected[1])
    return None


def pending_changes(store: Store, device_id: str) -> list[str]:
    """What the kiosk will change when it takes its desired config: from the version it
    runs (while still kept) to the desired one, `path: old -> new` per line."""
    desired = store.desired_config(device_id)
    if desired is None:
        raise DeskPulseError(f"{device_id} is not managed over the air: no template or "
                             "override applies to it")
    latest = store.latest_sync(device_id)
    running = latest.status.get("config_version") if latest is not None else None
    if running == desired.version:
        return []
    if running is None:
        raise DeskPulseError(f"{device_id} has not reported its config version yet (its "
                             f"first push or sync does); it will take version "
                             f"{desired.version} as a whole (deskpulse config desired "
                             f"{device_id})")
    before = store.desired_config(device_id, running) if isinstance(running, int) else None
    if before is None:
        raise DeskPulseError(
            f"{device_id} runs config version {running}, which this server did not give it; "
            f"it will take version {desired.version} as a whole (deskpulse config desired "
            f"{device_id})")
    return config_changes(_bare(before.config) or {}, _bare(desired.config) or {})
