"""Sites: organisation > region > store > kiosk, the rules every store engine shares.

A site is named by its slash-separated path ("acme/north/lyon-1"); its ancestors are the
prefixes of that path, so a site's place in the tree needs no second lookup. The kinds
nest in one direction only: an organisation stands at the top, a region in an
organisation, a store in a region or directly in an organisation (a chain without
regions), and a kiosk is assigned to a store.

A site may set a time zone and weekly opening hours; a kiosk inherits them from the
nearest site above it that sets them (its own time zone, when set, wins; without any, the
host's zone applies as before). The engines keep the rows; everything here is plain
Python so that SQLite and PostgreSQL judge a path, a move or an hours text alike, and
`SiteMethods` is the Store's site methods for both, over each engine's own queries.
"""

from __future__ import annotations

import abc
import contextlib
import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal, Protocol

from deskpulse.errors import DeskPulseError
from deskpulse.store.base import DesiredFor, Site, SiteRemoval
from deskpulse.timezones import zone_info

SiteKind = Literal["organisation", "region", "store"]
KINDS: tuple[SiteKind, ...] = ("organisation", "region", "store")
PARENT_KINDS: dict[str, tuple[str, ...]] = {
    "organisation": (),
    "region": ("organisation",),
    "store": ("region", "organisation"),
}
"""The kinds a site of each kind may stand in (an organisation in none: it is a root)."""

MIGRATED_ORGANISATION = "default"
"""The organisation the free-text locations of a database from before sites became
stores of (schema migration 6)."""

MAX_NAME = 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# -- paths --------------------------------------------------------------------------------


def check_path(path: str) -> str:
    """A site path as given, refused with a sentence when it is not one."""
    if not path:
        raise DeskPulseError("a site path is empty: give one such as acme/north/lyon-1")
    for name in path.split("/"):
        _check_name(name, path)
    return path


def check_name(name: str) -> str:
    """One segment of a path (what `rename` takes)."""
    if "/" in name:
        raise DeskPulseError(f"a site name holds no '/': {name!r} (move a site with "
                             "`deskpulse sites move`)")
    _check_name(name, name)
    return name


def _check_name(name: str, path: str) -> None:
    if not name:
        raise DeskPulseError(f"site path {path!r} has an empty part: separate names with one "
                             "'/', with none at either end")
    if name != name.strip() or _CONTROL.search(name):
        raise DeskPulseError(f"site name {name!r} in {path!r} starts or ends with a space or "
                             "holds a control character")
    if len(name) > MAX_NAME:
        raise DeskPulseError(f"site name {name[:20]!r}... in {path!r} is longer than "
                             f"{MAX_NAME} characters")


def parent_of(path: str) -> str | None:
    return path.rpartition("/")[0] or None


def name_of(path: str) -> str:
    return path.rpartition("/")[2]


def is_under(path: str, node: str) -> bool:
    """Whether `path` is `node` or lies below it."""
    return path == node or path.startswith(node + "/")


def ancestors(path: str) -> list[str]:
    """The path and every site above it, nearest first."""
    parts = path.split("/")
    return ["/".join(parts[:n]) for n in range(len(parts), 0, -1)]


def children(tree: Mapping[str, Site], path: str) -> list[Site]:
    """The sites one level below `path`, by path."""
    return sorted((s for s in tree.values() if s.parent == path), key=lambda s: s.path)


def child_towards(node: str | None, path: str) -> str:
    """The child of `node` (None: the top) on the way down to `path`, which lies below it."""
    depth = 0 if node is None else node.count("/") + 1
    return "/".join(path.split("/")[:depth + 1])


def default_kind(path: str, parent_kind: str | None) -> SiteKind:
    """The kind a new site gets when none is named: the next level below its parent's."""
    if parent_kind is None:
        return "organisation"
    return "region" if parent_kind == "organisation" else "store"


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def check_kind(path: str, kind: str, parent_kind: str | None) -> SiteKind:
    """`kind` for a site at `path` whose parent (which exists) has `parent_kind`, None at
    the top."""
    if kind not in KINDS:
        raise DeskPulseError(f"{kind!r} is not a kind of site: give one of "
                             f"{', '.join(KINDS)}")
    allowed = PARENT_KINDS[kind]
    parent = parent_of(path)
    where = " or ".join(_a(a) for a in allowed)
    if parent is None and allowed:
        raise DeskPulseError(f"{_a(kind)} stands in {where}: give its path from the top, "
                             f"e.g. acme/{path}")
    if parent is not None and not allowed:
        raise DeskPulseError(f"an organisation stands at the top: give {path!r} a path "
                             "without '/'")
    if parent_kind is not None and parent_kind not in allowed:
        raise DeskPulseError(f"{_a(kind)} stands in {where}, not in the {parent_kind} "
                             f"{parent!r}")
    return kind  # type: ignore[return-value]  # one of KINDS, checked above


def moved_path(path: str, new_parent: str) -> str:
    """Where a site goes when moved into `new_parent`, refused inside itself."""
    if is_under(new_parent, path):
        raise DeskPulseError(f"cannot move {path!r} into {new_parent!r}, which lies inside it")
    return f"{new_parent}/{name_of(path)}"


def renamed_path(path: str, name: str) -> str:
    parent = parent_of(path)
    check_name(name)
    return name if parent is None else f"{parent}/{name}"


def no_site(path: str) -> DeskPulseError:
    return DeskPulseError(f"no site {path!r}: `deskpulse sites list` shows them")


def site_exists(path: str) -> DeskPulseError:
    return DeskPulseError(f"a site {path!r} exists already")


def not_a_store(path: str, kind: str) -> DeskPulseError:
    return DeskPulseError(f"{path!r} is {_a(kind)}: a kiosk is assigned to a store; give "
                          "a store's path")


def unknown_kiosk(device_id: str) -> DeskPulseError:
    return DeskPulseError(f"no device {device_id} in the database: `deskpulse devices` lists "
                          "the known ones")


def refused_removal(path: str, sites_below: int, kiosks: int) -> DeskPulseError:
    held = []
    if sites_below:
        held.append(f"{sites_below} site{'s' if sites_below != 1 else ''}")
    if kiosks:
        held.append(f"{kiosks} kiosk{'s' if kiosks != 1 else ''}")
    return DeskPulseError(
        f"{path!r} holds {' and '.join(held)}: move them first, or pass --force to remove "
        "it with every site below it and leave its kiosks without a site (their responses "
        "stay)")


# -- time zones and opening hours --------------------------------------------------------


def check_zone(name: str) -> str:
    """An IANA zone name this host knows ("" clears a site's zone)."""
    if name and zone_info(name) is None:
        raise DeskPulseError(f"unknown time zone {name!r}: use an IANA name such as "
                             "Europe/Paris or America/New_York")
    return name


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(r"(\d\d):(\d\d)-(\d\d):(\d\d)")
HOURS_EXAMPLE = "mon-fri 09:00-18:00, sat 10:00-13:00"


def _minutes(hours: str, minutes: str, text: str) -> int:
    h, m = int(hours), int(minutes)
    if m > 59 or h > 24 or (h == 24 and m):
        raise DeskPulseError(f"opening hours: {text!r} is not a time from 00:00 to 24:00")
    return h * 60 + m


def _days(text: str) -> list[str]:
    first, dash, last = text.partition("-")
    if first not in DAYS or (dash and last not in DAYS):
        raise DeskPulseError(f"opening hours: {text!r} is not a day or a range of days "
                             f"({', '.join(DAYS)}; e.g. mon-fri)")
    start, end = DAYS.index(first), DAYS.index(last) if dash else DAYS.index(first)
    if end < start:
        raise DeskPulseError(f"opening hours: the days {text!r} run backwards; write "
                             "them from mon to sun, one group each (fri 17:00-24:00, "
                             "sat-sun 00:00-02:00)")
    return list(DAYS[start:end + 1])


def parse_hours(text: str) -> dict[str, list[str]]:
    """Opening hours as written for a site ("mon-fri 09:00-18:00, sat 10:00-13:00": groups
    of a day or a range of days and one or more spans, separated by commas) as the kiosk
    config's `opening_hours` (docs/config.md): days to lists of "HH:MM-HH:MM". A span past
    midnight belongs to the day it starts, as on the kiosk. Days left out are closed."""
    week: dict[str, list[str]] = {}
    for group in text.lower().split(","):
        words = group.split()
        if len(words) < 2:
            raise DeskPulseError(
                f"opening hours: {group.strip()!r} needs days and at least one span, "
                f"e.g. {HOURS_EXAMPLE!r}")
        spans = []
        for word in words[1:]:
            match = _SPAN.fullmatch(word)
            if match is None:
                raise DeskPulseError(f"opening hours: {word!r} is not a span HH:MM-HH:MM "
                                     f"(e.g. {HOURS_EXAMPLE!r})")
            start = _minutes(match.group(1), match.group(2), word)
            end = _minutes(match.group(3), match.group(4), word)
            if start == end:
                raise DeskPulseError(f"opening hours: the span {word!r} is empty")
            spans.append((start, end, word))
        spans.sort()
        for (_, end, word), (start, _, later) in zip(spans, spans[1:], strict=False):
            if start < end:
                raise DeskPulseError(f"opening hours: {word!r} and {later!r} overlap")
        for day in _days(words[0]):
            if day in week:
                raise DeskPulseError(f"opening hours: {day} is given twice; give each day "
                                     "once, with all its spans")
            week[day] = [word for _, _, word in spans]
    return {day: week[day] for day in DAYS if day in week}


def format_hours(week: Mapping[str, list[str]]) -> str:
    """The readable text of a week: consecutive days with the same spans share a range."""
    groups: list[tuple[list[str], list[str]]] = []
    previous: str | None = None
    for day in DAYS:
        spans = week.get(day)
        if spans is None:
            previous = None
            continue
        if previous is not None and groups[-1][1] == spans:
            groups[-1][0].append(day)
        else:
            groups.append(([day], list(spans)))
        previous = day
    return ", ".join(
        (days[0] if len(days) == 1 else f"{days[0]}-{days[-1]}") + " " + " ".join(spans)
        for days, spans in groups)


def check_hours(text: str) -> str:
    """Opening hours in their one stored form ("" clears a site's hours)."""
    return format_hours(parse_hours(text)) if text.strip() else ""


# -- the checks before a change (each engine then writes what they return) ---------------

Tree = Mapping[str, Site]
"""Every site by path, as read inside the transaction that changes them."""


def _found(tree: Tree, path: str) -> Site:
    site = tree.get(path)
    if site is None:
        raise no_site(path)
    return site


def new_site(tree: Tree, path: str, kind: str | None, time_zone: str | None,
             opening_hours: str | None) -> Site:
    """The site `add_site` inserts."""
    check_path(path)
    if path in tree:
        raise site_exists(path)
    parent = parent_of(path)
    parent_kind = tree[parent].kind if parent is not None and parent in tree else None
    if parent is not None and parent_kind is None:
        raise DeskPulseError(f"no site {parent!r}: add it first with `deskpulse sites add "
                             f"{parent}`")
    chosen = check_kind(path, kind or default_kind(path, parent_kind), parent_kind)
    return Site(path, chosen, check_zone(time_zone or "") or None,
                check_hours(opening_hours or "") or None)


def changed_site(tree: Tree, path: str, time_zone: str | None,
                 opening_hours: str | None) -> Site:
    """The site `set_site` writes (None leaves a setting, "" clears it)."""
    site = _found(tree, path)
    zone = site.time_zone if time_zone is None else check_zone(time_zone) or None
    hours = (site.opening_hours if opening_hours is None
             else check_hours(opening_hours) or None)
    return Site(path, site.kind, zone, hours)


def _free(tree: Tree, new: str) -> str:
    if new in tree:
        raise site_exists(new)
    return new


def new_name(tree: Tree, path: str, name: str) -> str:
    """The path `rename_site` gives the site."""
    _found(tree, path)
    return _free(tree, renamed_path(path, name))


def new_place(tree: Tree, path: str, parent: str) -> str:
    """The path `move_site` gives the site."""
    site = _found(tree, path)
    check_kind(moved_path(path, _found(tree, parent).path), site.kind, tree[parent].kind)
    return _free(tree, moved_path(path, parent))


def removal(tree: Tree, placed: Mapping[str, str], path: str, force: bool) -> SiteRemoval:
    """What `remove_site` removes; refused without `force` when the site holds anything."""
    _found(tree, path)
    below = [p for p in sorted(tree) if is_under(p, path)]
    kiosks = sorted(d for d, store in placed.items() if is_under(store, path))
    if (len(below) > 1 or kiosks) and not force:
        raise refused_removal(path, len(below) - 1, len(kiosks))
    return SiteRemoval(below, kiosks)


def store_for_kiosk(tree: Tree, path: str) -> str:
    """A store's path that a kiosk may be assigned to."""
    site = _found(tree, path)
    if site.kind != "store":
        raise not_a_store(path, site.kind)
    return path


# -- what a kiosk inherits ---------------------------------------------------------------


def inherited(tree: Tree, path: str | None) -> tuple[str | None, str | None]:
    """(time zone, opening hours) that the site `path` and the kiosks in it follow: each
    the nearest one set at or above it; None where no site sets one."""
    zone = hours = None
    for here in ancestors(path) if path else []:
        site = tree.get(here)
        if site is not None:
            zone = zone or site.time_zone
            hours = hours or site.opening_hours
    return zone, hours


def kiosk_zones(kiosks: Iterable[tuple[str, str | None]], placed: Mapping[str, str],
                tree: Tree) -> dict[str, str | None]:
    """The configured zone of each (device_id, own zone): its own when set, else the one
    its store inherits, else None (the host's: timezones.device_zone)."""
    return {device_id: own or inherited(tree, placed.get(device_id))[0]
            for device_id, own in kiosks}


# -- the Store's site methods, over an engine's queries -------------------------------------


class SiteQueries(Protocol):
    """What an engine's site module offers (store/sqlite/sites.py, store/postgres/sites.py),
    each function inside the caller's transaction."""

    def tree(self, conn: Any) -> list[Site]: ...
    def write(self, conn: Any, site: Site) -> None: ...
    def repath(self, conn: Any, old: str, new: str) -> None: ...
    def remove(self, conn: Any, paths: Iterable[str]) -> list[str]: ...
    def save_desired(self, conn: Any,
                     configs: Mapping[str, Mapping[str, Any] | None]) -> None: ...
    def assign(self, conn: Any, device_id: str, store: str | None) -> bool: ...
    def device_site(self, conn: Any, device_id: str) -> str | None: ...
    def placed(self, conn: Any) -> dict[str, str]: ...


class SiteMethods(abc.ABC):
    """The site methods of base.Store, the same on every engine: the checks above on the
    tree read in the transaction that changes it, then the engine's writes. An engine
    mixes this in before Store and says how it reads and how it changes the tree."""

    connection: Any
    site_queries: ClassVar[SiteQueries]

    @abc.abstractmethod
    def _site_read(self) -> contextlib.AbstractContextManager[None]:
        """Around a read: the engine's errors become StoreError sentences."""

    @abc.abstractmethod
    def _tree_change(self) -> contextlib.AbstractContextManager[dict[str, Site]]:
        """Around a change: one transaction, no other writer of the tree meanwhile, the
        tree as it stands (path to site), and the kiosks' zones brought up to date after
        the change (`follow_zones`); errors as in `_site_read`."""

    def sites(self) -> list[Site]:
        with self._site_read():
            return self.site_queries.tree(self.connection)

    def add_site(self, path: str, kind: str | None = None, *, time_zone: str | None = None,
                 opening_hours: str | None = None) -> Site:
        with self._tree_change() as tree:
            site = new_site(tree, path, kind, time_zone, opening_hours)
            self.site_queries.write(self.connection, site)
        return site

    def set_site(self, path: str, *, time_zone: str | None = None,
                 opening_hours: str | None = None, desired: DesiredFor | None = None) -> Site:
        with self._tree_change() as tree:
            site = changed_site(tree, path, time_zone, opening_hours)
            self.site_queries.write(self.connection, site)
            self._follow_desired(desired, self._kiosks_under(path))
        return site

    def rename_site(self, path: str, name: str) -> str:
        with self._tree_change() as tree:
            new = new_name(tree, path, name)
            self.site_queries.repath(self.connection, path, new)
        return new

    def move_site(self, path: str, parent: str, *, desired: DesiredFor | None = None) -> str:
        with self._tree_change() as tree:
            new = new_place(tree, path, parent)
            self.site_queries.repath(self.connection, path, new)
            self._follow_desired(desired, self._kiosks_under(new))
        return new

    def remove_site(self, path: str, *, force: bool = False,
                    desired: DesiredFor | None = None) -> SiteRemoval:
        with self._tree_change() as tree:
            removed = removal(tree, self.site_queries.placed(self.connection), path, force)
            layers = self.site_queries.remove(self.connection, removed.sites)
            self._follow_desired(desired, removed.kiosks)
        return SiteRemoval(removed.sites, removed.kiosks, tuple(layers))

    def assign_kiosk(self, device_id: str, store_path: str | None, *,
                     desired: DesiredFor | None = None) -> None:
        with self._tree_change() as tree:
            if store_path is not None:
                store_for_kiosk(tree, store_path)
            if not self.site_queries.assign(self.connection, device_id, store_path):
                raise unknown_kiosk(device_id)
            self._follow_desired(desired, [device_id])

    def _kiosks_under(self, path: str) -> list[str]:
        return [device for device, store in self.site_queries.placed(self.connection).items()
                if is_under(store, path)]

    def _follow_desired(self, desired: DesiredFor | None, kiosks: list[str]) -> None:
        if desired is not None and kiosks:
            self.site_queries.save_desired(self.connection, desired(self, kiosks))

    def device_site_path(self, device_id: str) -> str | None:
        with self._site_read():
            return self.site_queries.device_site(self.connection, device_id)

    def kiosk_sites(self) -> dict[str, str]:
        with self._site_read():
            return self.site_queries.placed(self.connection)

