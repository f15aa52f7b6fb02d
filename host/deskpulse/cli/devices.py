"""`deskpulse devices`: list the kiosks in the store; add, remove or describe them and
rotate their keys (deskpulse.device.registration)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

from deskpulse.cli.format import format_devices
from deskpulse.errors import DeskPulseError
from deskpulse.store import open_store
from deskpulse.store.base import Store, db_option_help
from deskpulse.store.sites import store_for_kiosk


def register(subparsers: Any) -> None:
    """Add `devices` and its subcommands to the `deskpulse` subcommands."""
    dev = subparsers.add_parser(
        "devices", help="list known kiosks; add, remove or describe them, rotate their keys",
        description="Without a subcommand: every kiosk in the database with its last sync "
                    "and health. The subcommands register kiosks for the WiFi push "
                    "(docs/wifi.md).")
    dev.add_argument("--db", help=db_option_help())
    dev.set_defaults(func=do_devices)
    _add_device_commands(dev)


def _add_device_commands(dev: argparse.ArgumentParser) -> None:
    # SUPPRESS: a subcommand's own --db must not reset one given before it (devices --db X add).
    def db_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", default=argparse.SUPPRESS, help=db_option_help())

    def describing(p: argparse.ArgumentParser) -> None:
        p.add_argument("--name", help="what people call it, e.g. 'Front desk' ('' clears)")
        p.add_argument("--location", help="where it stands, e.g. 'Store 12, Lyon' ('' clears)")
        p.add_argument("--time-zone", metavar="IANA",
                       help="its store's time zone for reports, e.g. Europe/Paris")
        p.add_argument("--site", metavar="STORE",
                       help="the store site it is in, e.g. acme/north/lyon-1 (`deskpulse "
                            "sites`; '' takes it out)")

    cmds = dev.add_subparsers(dest="devices_command", metavar="COMMAND")
    add = cmds.add_parser(
        "add", help="register a kiosk for the WiFi push and write its config file",
        description="Create the kiosk's secret key, store it in the database and write a "
                    "device config file (mode 0600) holding its id, the key, the server URL "
                    "and the WiFi settings. Install the file with `deskpulse sync --config "
                    "FILE` over USB (or `deskpulse sim --device-config FILE`). The key is "
                    "not printed.")
    add.add_argument("device_id", metavar="ID", help="the kiosk's id: letters, digits, . _ -")
    add.add_argument("--server", required=True, metavar="URL",
                     help="the aggregator as the kiosk reaches it: http://HOST:PORT of the PC "
                          "running `deskpulse serve` on the store network")
    add.add_argument("--server-cert", metavar="PEM",
                     help="for an https:// server: its certificate (self-signed), or the "
                          "CA's that signed it, which the kiosk verifies the server against")
    add.add_argument("--wifi-ssid", default="", help="the store WiFi network's name")
    add.add_argument("--wifi-password", default="",
                     help="its password; '-' reads it from standard input (keeps it out of "
                          "the shell history)")
    describing(add)
    add.add_argument("--template", metavar="STORE.json",
                     help="a store template: the settings the store's kiosks share (scale, "
                          "language, texts, opening hours, time zone, ...; docs/config.md), "
                          "merged under the kiosk's own and checked with the firmware's "
                          "validator; its time zone is the kiosk's unless --time-zone names "
                          "another")
    db_option(add)
    add.add_argument("-o", "--output", required=True, metavar="FILE",
                     help="the device config file to write")
    add.add_argument("--force", action="store_true",
                     help="replace an existing registration (new key) or file")
    add.set_defaults(func=do_devices_add)

    rm = cmds.add_parser("remove", help="delete a kiosk's key: it can no longer push",
                         description="Delete the kiosk's key. Its stored responses stay.")
    rm.add_argument("device_id", metavar="ID")
    db_option(rm)
    rm.set_defaults(func=do_devices_remove)

    rot = cmds.add_parser(
        "rotate-key", help="give a kiosk a new key and rewrite its config file",
        description="Replace the kiosk's key (the old one stops working at once) and reset "
                    "its replay counter, e.g. after its flash was erased. The config file is "
                    "rewritten with the new key and everything else kept.")
    rot.add_argument("device_id", metavar="ID")
    rot.add_argument("-o", "--output", required=True, metavar="FILE",
                     help="the kiosk's config file (created if missing, which needs --server)")
    rot.add_argument("--server", metavar="URL", help="also set the server URL")
    db_option(rot)
    rot.set_defaults(func=do_devices_rotate)

    st = cmds.add_parser("set", help="set a kiosk's name, location, time zone or store site")
    st.add_argument("device_id", metavar="ID")
    describing(st)
    db_option(st)
    st.set_defaults(func=do_devices_set)

    show = cmds.add_parser("show-key", help="print a kiosk's secret key (64 hex digits)",
                           description="Print the key, for a technician who configures a "
                                       "kiosk by hand. Anyone holding it can push as the "
                                       "kiosk.")
    show.add_argument("device_id", metavar="ID")
    db_option(show)
    show.set_defaults(func=do_devices_show_key)


def do_devices(args: argparse.Namespace) -> int:
    from deskpulse.store.health import kiosk_health

    with open_store(args.db, create=False) as store:
        health = {k.device_id: k for k in kiosk_health(store, now=time.time())}
        print(format_devices(store.devices(), store.registered_ids(), store.kiosk_sites(),
                             health))
    return 0


@contextlib.contextmanager
def _database(args: argparse.Namespace, *, create: bool = False
              ) -> Iterator[Store]:
    """The database; only registration (`devices add`) may create it: the other
    subcommands act on kiosks that a missing database cannot hold."""
    store = open_store(getattr(args, "db", None), create=create)
    try:
        yield store
    finally:
        store.close()


def do_devices_add(args: argparse.Namespace) -> int:
    from deskpulse.device import registration
    from deskpulse.device.server_cert import read_server_cert

    template = (registration.read_store_template(args.template) if args.template
                else None)
    server_cert = read_server_cert(args.server_cert) if args.server_cert else ""
    password = args.wifi_password
    if password == "-":
        password = sys.stdin.readline().rstrip("\r\n")
    with _database(args, create=True) as store:
        if args.site:  # refused before anything is registered or written
            store_for_kiosk({s.path: s for s in store.sites()}, args.site)
        done = registration.add_device(
            store, args.device_id, args.server, args.output, wifi_ssid=args.wifi_ssid,
            wifi_password=password, name=args.name, location=args.location,
            time_zone=args.time_zone, template=template, force=args.force,
            server_cert=server_cert)
        if args.site:
            store.assign_kiosk(args.device_id, args.site)
    again = " (its previous key no longer works)" if done.replaced else ""
    print(f"registered {done.device_id}{again}; pushes to {done.server_url}")
    print(f"config with its key written to {done.config_file} (keep it private); install it "
          f"with: deskpulse sync --config {done.config_file}")
    return 0


def do_devices_remove(args: argparse.Namespace) -> int:
    from deskpulse.device import registration

    with _database(args) as store:
        registration.remove_device(store, args.device_id)
    print(f"removed the key of {args.device_id}: it can no longer push; its responses stay")
    return 0


def do_devices_rotate(args: argparse.Namespace) -> int:
    from deskpulse.device import registration

    with _database(args) as store:
        done = registration.rotate_key(store, args.device_id, args.output, server_url=args.server)
    print(f"new key for {done.device_id} written to {done.config_file}; the old key no "
          f"longer works: install the file with: deskpulse sync --config {done.config_file}")
    return 0


def do_devices_set(args: argparse.Namespace) -> int:
    from deskpulse.device import registration

    if (args.name is None and args.location is None and args.time_zone is None
            and args.site is None):
        raise DeskPulseError("nothing to set: give --name, --location, --time-zone or --site")
    with _database(args) as store:
        if args.site:  # refused before anything else changes
            store_for_kiosk({s.path: s for s in store.sites()}, args.site)
        registration.describe_device(store, args.device_id, name=args.name,
                                 location=args.location, time_zone=args.time_zone)
        if args.site is not None:
            store.assign_kiosk(args.device_id, args.site or None)
    print(f"updated {args.device_id}")
    return 0


def do_devices_show_key(args: argparse.Namespace) -> int:
    from deskpulse.device import registration

    with _database(args) as store:
        print(registration.show_key(store, args.device_id))
    return 0
