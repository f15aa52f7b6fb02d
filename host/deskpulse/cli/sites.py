"""`deskpulse sites`: the organisation > region > store tree, its time zones and opening
hours, and which store each kiosk is in (the Store's site methods; rules in
deskpulse.store.sites)."""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from deskpulse.cli.groups import database_group
from deskpulse.errors import DeskPulseError
from deskpulse.store import open_store
from deskpulse.store import sites as rules
from deskpulse.store.base import Site, Store

if TYPE_CHECKING:
    from deskpulse.device.ota import Recompute


def register(subparsers: Any) -> None:
    """Add `sites` and its subcommands to the `deskpulse` subcommands."""
    command = database_group(
        subparsers, "sites", default=do_list,
        help_text="organisations, regions and stores: their time zones, opening hours "
                  "and kiosks",
        description="Without a subcommand: the tree of sites with their kiosks. A site is "
                    "named by its path from the top, e.g. acme/north/lyon-1 (organisation "
                    "acme, region north, store lyon-1); a kiosk is in a store and follows "
                    "the nearest time zone and opening hours set at or above it "
                    "(docs/sites.md).")

    def settings(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--time-zone", metavar="IANA",
                            help="its time zone, e.g. Europe/Paris ('' clears: inherited)")
        parser.add_argument("--hours", metavar="TEXT",
                            help=f"its opening hours, e.g. '{rules.HOURS_EXAMPLE}' (days "
                                 "left out are closed; '' clears: inherited)")

    command("list", do_list, "the tree of sites with their kiosks")
    add = command("add", do_add, "add a site under an existing one",
                  "Add a site. Its kind is the level below its parent's (an organisation "
                  "at the top, a region in an organisation, a store in a region) unless "
                  "--kind says otherwise (a store directly in an organisation).")
    add.add_argument("path", metavar="PATH", help="e.g. acme, acme/north, acme/north/lyon-1")
    add.add_argument("--kind", choices=rules.KINDS)
    settings(add)
    show = command("show", do_show, "a site: its zone and hours (own or inherited), the "
                                    "sites below it and its kiosks")
    show.add_argument("path", metavar="PATH")
    st = command("set", do_set, "set a site's time zone or opening hours",
                 "Set a site's time zone or opening hours. The kiosks below it follow them "
                 "unless a site nearer to them, or the kiosk itself (its time zone), sets "
                 "its own; reports recount their local-time figures on their next run.")
    st.add_argument("path", metavar="PATH")
    settings(st)
    rn = command("rename", do_rename, "rename a site; the sites below it and their kiosks "
                                      "follow")
    rn.add_argument("path", metavar="PATH")
    rn.add_argument("name", metavar="NAME", help="its new last name, e.g. lyon-2")
    mv = command("move", do_move, "move a site, with everything below it, into another")
    mv.add_argument("path", metavar="PATH")
    mv.add_argument("parent", metavar="PARENT", help="the site it goes into")
    rm = command("remove", do_remove, "remove a site that holds no site and no kiosk",
                 "Remove a site. One that holds sites or kiosks is refused unless --force.")
    rm.add_argument("path", metavar="PATH")
    rm.add_argument("--force", action="store_true",
                    help="also remove every site below it; its kiosks are left in no store "
                         "(their responses stay)")
    assign = command("assign", do_assign, "put kiosks in a store")
    assign.add_argument("store", metavar="STORE", help="a store's path, e.g. acme/north/lyon-1")
    assign.add_argument("device_ids", metavar="ID", nargs="+")
    unassign = command("unassign", do_unassign, "take kiosks out of their store")
    unassign.add_argument("device_ids", metavar="ID", nargs="+")


# -- the commands -------------------------------------------------------------------------


def _open(args: argparse.Namespace, *, create: bool = False) -> Store:
    """The database; only `sites add` may create it (see do_add)."""
    return open_store(getattr(args, "db", None), create=create)


def do_list(args: argparse.Namespace) -> int:
    with _open(args) as store:
        print(format_tree(store.sites(), store.kiosk_sites(),
                          [f.device_id for f in store.device_facts()]))
    return 0


def do_add(args: argparse.Namespace) -> int:
    with _open(args, create=True) as store:  # a chain may be laid out before any kiosk
        site = store.add_site(args.path, args.kind, time_zone=args.time_zone,
                              opening_hours=args.hours)
    print(f"added the {site.kind} {site.path}")
    return 0


def do_show(args: argparse.Namespace) -> int:
    with _open(args) as store:
        tree = {s.path: s for s in store.sites()}
        if args.path not in tree:
            raise rules.no_site(args.path)
        facts = {f.device_id: f.time_zone for f in store.device_facts()}
        print(format_site(tree, args.path, store.kiosk_sites(), facts))
    return 0


def do_set(args: argparse.Namespace) -> int:
    if args.time_zone is None and args.hours is None:
        raise DeskPulseError("nothing to set: give --time-zone or --hours")
    from deskpulse.device.ota import Recompute

    recompute = Recompute()
    with _open(args) as store:
        site = store.set_site(args.path, time_zone=args.time_zone, opening_hours=args.hours,
                              desired=recompute)
        print(f"{site.path}: time zone {site.time_zone or 'inherited'}, opening hours "
              f"{site.opening_hours or 'inherited'}")
        _print_configs(store, recompute)
    return 0


def do_rename(args: argparse.Namespace) -> int:
    with _open(args) as store:
        new = store.rename_site(args.path, args.name)
    print(f"renamed {args.path} to {new}")
    return 0


def do_move(args: argparse.Namespace) -> int:
    from deskpulse.device.ota import Recompute

    recompute = Recompute()
    with _open(args) as store:
        new = store.move_site(args.path, args.parent, desired=recompute)
        print(f"moved {args.path} to {new}")
        _print_configs(store, recompute)
    return 0


def do_remove(args: argparse.Namespace) -> int:
    from deskpulse.device.ota import Recompute

    recompute = Recompute()
    with _open(args) as store:
        removed = store.remove_site(args.path, force=args.force, desired=recompute)
        below = len(removed.sites) - 1
        line = f"removed {args.path}"
        if below:
            line += f" and {below} site{'s' if below != 1 else ''} below it"
        if removed.kiosks:
            line += f"; now in no store (their responses stay): {', '.join(removed.kiosks)}"
        print(line)
        if removed.layers:
            print(f"removed the config templates of {', '.join(removed.layers)}")
        _print_configs(store, recompute)
    return 0


def do_assign(args: argparse.Namespace) -> int:
    _assign(args, args.store)
    return 0


def do_unassign(args: argparse.Namespace) -> int:
    _assign(args, None)
    return 0


def _assign(args: argparse.Namespace, store_path: str | None) -> None:
    from deskpulse.device.ota import Recompute

    with _open(args) as store:
        for device_id in args.device_ids:
            recompute = Recompute()
            store.assign_kiosk(device_id, store_path, desired=recompute)
            print(f"{device_id} is in {store_path or 'no store'}")
            _print_configs(store, recompute)


def _print_configs(store: Store, recompute: Recompute) -> None:
    """What a site change did to the moved kiosks' configs over the air (ota.Recompute)."""
    versions = store.desired_versions()
    for device_id, lines in recompute.changes.items():
        version = versions.get(device_id)
        print(f"  {device_id}: config over the air " + (
            f"version {version}, sent at its next push" if version is not None
            else "no longer managed (it keeps the config it runs)"))
        for line in lines:
            print(f"    {line}")
    if recompute.problem:
        print(f"deskpulse: note: {recompute.problem}; the kiosks keep the config they were "
              "sent: fix the site's template or the kiosk's overrides (deskpulse config "
              "set), then run deskpulse config refresh", file=sys.stderr)


# -- text -----------------------------------------------------------------------------------


def _settings_text(site: Site) -> str:
    own = [f"zone {site.time_zone}" if site.time_zone else "",
           f"hours {site.opening_hours}" if site.opening_hours else ""]
    return "; ".join(part for part in own if part)


def format_tree(sites: Sequence[Site], placed: Mapping[str, str],
                device_ids: Sequence[str]) -> str:
    """The tree, one site a line, indented under its parent, with each site's own zone
    and hours and each store's kiosks; then the kiosks in no store."""
    children: dict[str | None, list[Site]] = defaultdict(list)
    for site in sites:
        children[site.parent].append(site)
    kiosks: dict[str, list[str]] = defaultdict(list)
    for device_id, store_path in sorted(placed.items()):
        kiosks[store_path].append(device_id)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for site in children.get(parent, []):
            line = f"{'  ' * depth}{site.name} ({site.kind})"
            own = _settings_text(site)
            if own:
                line += f"  {own}"
            if site.kind == "store":
                line += f"  kiosks: {', '.join(kiosks[site.path]) or 'none'}"
            lines.append(line)
            walk(site.path, depth + 1)

    walk(None, 0)
    if not sites:
        lines.append("no sites yet: add one with `deskpulse sites add ORGANISATION`")
    loose = [d for d in device_ids if d not in placed]
    if loose:
        lines.append(f"in no store: {', '.join(loose)}")
    return "\n".join(lines)


def _from(tree: rules.Tree, path: str, attribute: str) -> str:
    for here in rules.ancestors(path):
        value = getattr(tree[here], attribute) if here in tree else None
        if value:
            return value if here == path else f"{value} (from {here})"
    return "none set (the host's zone)" if attribute == "time_zone" else "none set"


def format_site(tree: rules.Tree, path: str, placed: Mapping[str, str],
                own_zones: Mapping[str, str | None]) -> str:
    """One site: what it follows and where that comes from, what lies below it."""
    site = tree[path]
    lines = [f"{path} ({site.kind})",
             f"time zone: {_from(tree, path, 'time_zone')}",
             f"opening hours: {_from(tree, path, 'opening_hours')}"]
    below = [s for s in tree.values() if s.parent == path]
    if below:
        lines.append("below it: " + ", ".join(f"{s.name} ({s.kind})" for s in below))
    inside = sorted(d for d, store in placed.items() if rules.is_under(store, path))
    if site.kind == "store" or inside:
        shown = [d + (f" (own zone {own_zones[d]})" if own_zones.get(d) else "")
                 for d in inside]
        lines.append(f"kiosks: {', '.join(shown) if shown else 'none'}")
    return "\n".join(lines)
