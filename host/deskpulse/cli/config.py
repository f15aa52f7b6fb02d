"""`deskpulse config`: a kiosk's config, read back over USB (deskpulse.device.sync), and
the configs the server sends kiosks over the air (deskpulse.device.ota): site templates,
kiosk overrides, and which kiosks run them."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from deskpulse.errors import DeskPulseError
from deskpulse.store import open_store
from deskpulse.store.base import db_option_help

if TYPE_CHECKING:
    from deskpulse.device.ota import Change
    from deskpulse.store.base import LayerScope


def register(subparsers: Any) -> None:
    """Add `config` and its subcommands to the `deskpulse` subcommands."""
    cfg = subparsers.add_parser(
        "config", help="read a kiosk's config back over USB (secrets hidden)",
        description="A kiosk's device config as it is stored on the kiosk. Change it with "
                    "`deskpulse sync --config FILE` (merged in) or `--config FILE "
                    "--replace`, or over the air: a site's template and a kiosk's "
                    "overrides, which the server sends the kiosks at their next push "
                    "(docs/wifi.md, \"Config over the air\"); docs/config.md lists every "
                    "key.")
    cmds = cfg.add_subparsers(dest="config_command", metavar="COMMAND", required=True)
    show = cmds.add_parser(
        "show", help="print the kiosk's config file as JSON, secrets as ***",
        description="Print the kiosk's config file as JSON, the WiFi password and the "
                    "device key as *** (when set); a key the file leaves out has its "
                    "default (docs/config.md). Notes on the kiosk's id and config "
                    "problems go to standard error. Changes nothing on the kiosk.")
    show.add_argument("--port", default="auto",
                      help="the kiosk's serial port, or 'auto' to find the single ESP32 USB "
                           "port (default: %(default)s)")
    show.set_defaults(func=do_config_show)
    _add_air_commands(cmds)


def _add_air_commands(cmds: Any) -> None:
    def command(name: str, help_text: str, description: str, func: Any, *,
                layer: bool = False, dry_run: bool = False) -> argparse.ArgumentParser:
        p = cmds.add_parser(name, help=help_text, description=description)
        if layer:
            where = p.add_mutually_exclusive_group(required=True)
            where.add_argument("--site", metavar="PATH",
                               help="a site's template: every kiosk in it and below it "
                                    "(acme, acme/north/lyon-1)")
            where.add_argument("--device", metavar="ID", help="one kiosk's overrides")
        if dry_run or layer:
            p.add_argument("--dry-run", action="store_true",
                           help="print what would change on each kiosk; save nothing")
        p.add_argument("--db", help=db_option_help())
        p.set_defaults(func=func)
        return p

    command("set", "set config keys of a site's template or a kiosk's overrides",
            "Set keys in a layer, e.g. `deskpulse config set --site acme "
            "texts.en.question=\"How was your visit today?\"`: every kiosk whose config "
            "changes gets a new version, which it fetches at its next push. A VALUE that "
            "is JSON (a number, true, an object, a quoted string) is taken as such, else "
            "as text. Each kiosk's whole config is checked by the firmware's validator "
            "first: nothing is saved if one would refuse it. Identity and network keys "
            "(device_id, sync.server_url, sync.device_key, sync.wifi_*) change over USB "
            "only.", do_config_set, layer=True,
            ).add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    command("unset", "take keys out of a layer (no KEY: the whole layer)",
            "Take keys out of a site's template or a kiosk's overrides; without KEY the "
            "whole layer goes. A kiosk left with no layer is no longer managed over the "
            "air and keeps the config it runs.", do_config_unset, layer=True,
            ).add_argument("keys", nargs="*", metavar="KEY")
    tpl = command("template", "make a JSON file a site's whole template",
                  "Replace a site's template with the config keys in FILE (a JSON object), "
                  "checked as `set` checks.", do_config_template, dry_run=True)
    tpl.add_argument("site", metavar="SITE")
    tpl.add_argument("file", metavar="FILE")
    command("layers", "list every site template and kiosk override",
            "Every layer as JSON lines: scope, name, keys.", do_config_layers)
    command("desired", "print the config the server holds for a kiosk",
            "The kiosk's desired config (its layers merged) with its version, as the "
            "server sends it; the kiosk keeps its own identity and network settings.",
            do_config_desired).add_argument("device_id", metavar="ID")
    command("diff", "what a kiosk will change when it takes its desired config",
            "One line per key, `path: old -> new`, from the version the kiosk runs to the "
            "one the server holds for it.", do_config_diff,
            ).add_argument("device_id", metavar="ID")
    command("status", "which kiosks run their desired config and which are behind",
            "Every registered kiosk: its site, the version the server holds for it, the "
            "one it reported at its last push or sync, and whether it is up to date, "
            "behind, or refused the config (with its reason).", do_config_status)
    command("refresh", "recompute every kiosk's desired config",
            "After a kiosk was registered, got another time zone, or moved to a site "
            "whose template did not fit it (`deskpulse sites` says so): recompute and "
            "check every kiosk's desired config from the layers as they are (`set`, "
            "`unset`, `template` and `deskpulse sites` do it themselves).",
            do_config_refresh, dry_run=True)


def do_config_show(args: argparse.Namespace) -> int:
    from deskpulse.device.config_check import redacted_config
    from deskpulse.device.sync import fetch_config  # pyserial: only for this command

    found = fetch_config(args.port)
    if found.config is None:
        print(f"{found.device_id or 'the kiosk'} has no config file: it runs on its "
              "defaults", file=sys.stderr)
    elif not found.config.get("device_id") and found.device_id:
        print(f"the file names no device_id: the kiosk goes by {found.device_id}, from its "
              "MAC", file=sys.stderr)
    for problem in found.problems:
        print(f"config problem on the kiosk: {problem}", file=sys.stderr)
    print(json.dumps(redacted_config(found.config or {}), indent=2, ensure_ascii=False))
    return 0


def _layer(args: argparse.Namespace) -> tuple[LayerScope, str]:
    return ("site", args.site) if args.site is not None else ("device", args.device)


def _print_change(change: Change, dry_run: bool) -> None:
    if not change.changes:
        print("no kiosk's config changes", file=sys.stderr)
    for device_id, lines in change.changes.items():
        version = change.versions.get(device_id)
        if dry_run:
            head = f"{device_id}: would change"
        elif version is None:
            head = f"{device_id}: no longer managed over the air"
        else:
            head = f"{device_id}: version {version}"
        print(head)
        for line in lines:
            print(f"  {line}")


def do_config_set(args: argparse.Namespace) -> int:
    from deskpulse.device import ota

    scope, name = _layer(args)
    with open_store(args.db, create=False) as store:
        overlay = ota.layer_of(store, scope, name)
        for text in args.assignments:
            path, value = ota.parse_assignment(text)
            overlay = ota.with_value(overlay, path, value)
        _print_change(ota.change_layer(store, scope, name, overlay, dry_run=args.dry_run),
                      args.dry_run)
    return 0


def do_config_unset(args: argparse.Namespace) -> int:
    from deskpulse.device import ota

    scope, name = _layer(args)
    with open_store(args.db, create=False) as store:
        overlay: dict[str, Any] | None = ota.layer_of(store, scope, name)
        if not overlay:
            raise DeskPulseError(f"the {scope} {name} has no config layer")
        for key in args.keys:
            overlay = ota.without_value(overlay or {}, key)
        if not args.keys:
            overlay = None
        _print_change(ota.change_layer(store, scope, name, overlay, dry_run=args.dry_run),
                      args.dry_run)
    return 0


def do_config_template(args: argparse.Namespace) -> int:
    from deskpulse.device import ota
    from deskpulse.device.config_check import read_config_json

    overlay = ota.check_layer(read_config_json(args.file, "template"), f"template {args.file}")
    with open_store(args.db, create=False) as store:
        _print_change(ota.change_layer(store, "site", args.site, overlay,
                                       dry_run=args.dry_run), args.dry_run)
    return 0


def do_config_layers(args: argparse.Namespace) -> int:
    with open_store(args.db, create=False) as store:
        for layer in store.config_layers():
            print(json.dumps({"scope": layer.scope, "name": layer.name,
                              "config": layer.overlay}, ensure_ascii=False))
    return 0


def do_config_desired(args: argparse.Namespace) -> int:
    with open_store(args.db, create=False) as store:
        desired = store.desired_config(args.device_id)
    if desired is None:
        raise DeskPulseError(f"{args.device_id} is not managed over the air: no template "
                             "or override applies to it")
    print(json.dumps(desired.config, indent=2, ensure_ascii=False, sort_keys=True))
    return 0


def do_config_diff(args: argparse.Namespace) -> int:
    from deskpulse.device import ota

    with open_store(args.db, create=False) as store:
        lines = ota.pending_changes(store, args.device_id)
    if not lines:
        print(f"{args.device_id} runs its desired config", file=sys.stderr)
    for line in lines:
        print(line)
    return 0


def do_config_status(args: argparse.Namespace) -> int:
    from deskpulse.device import ota

    with open_store(args.db, create=False) as store:
        states = ota.config_states(store)
    rows = [("kiosk", "site", "desired", "running", "state")]
    rows += [(s.device_id, s.site or "-", _shown(s.desired), _shown(s.running), s.state)
             for s in states]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
              + "  " + row[4])
    return 0


def _shown(version: int | None) -> str:
    return "-" if version is None else str(version)


def do_config_refresh(args: argparse.Namespace) -> int:
    from deskpulse.device import ota

    with open_store(args.db, create=False) as store:
        _print_change(ota.refresh(store, dry_run=args.dry_run), args.dry_run)
    return 0
