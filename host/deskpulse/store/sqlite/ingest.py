"""Storing a batch in SQLite: once per (device, seq), placed in time by its boot's anchors."""

from __future__ import annotations

import json
import operator
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from deskpulse.errors import DeskPulseError
from deskpulse.protocol.batch import RECEIPT_SOURCE, Anchor, Response
from deskpulse.store import batches, intervals, rollups
from deskpulse.store.base import PushCheck
from deskpulse.store.sqlite import bulk, rollup_tables
from deskpulse.store.sqlite.schema import savepoint, write_transaction

_INSERTED = ("device_id", "seq", "rating", "scale", "told_next", "latency_ds", "rapid",
             "closed", "boot", "uptime_s", "device_wall", "wall", "time_source",
             "config_version", "sync_id")
"""The columns a new response is inserted with; wall_low and wall_high start NULL."""
_INSERT_HEAD = f"INSERT INTO responses ({', '.join(_INSERTED)})"


def _stored_namesakes(conn: sqlite3.Connection, device_id: str,
                      responses: Sequence[Response], increasing: bool
                      ) -> dict[int, tuple[Any, ...]]:
    """The stored rows (compared fields by seq) in the seq range of `responses`."""
    if not responses:
        return {}
    low, high = batches.seq_range(responses, increasing)
    rows = conn.execute(
        f"SELECT seq, {', '.join(batches.COMPARED)} FROM responses "
        "WHERE device_id = ? AND seq BETWEEN ? AND ?", (device_id, low, high)).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def store_batch(
    conn: sqlite3.Connection,
    device_id: str,
    responses: Sequence[Response],
    anchors: Iterable[Anchor],
    status: Mapping[str, Any],
    transport: str,
    *,
    proto: int | None = None,
    now: float | None = None,
    push: PushCheck | None = None,
) -> tuple[int, int]:
    """Store one sync's responses, anchors and device status in ONE transaction and
    commit; return (new, duplicates). `latest_sync()` then tells the rest. Inside a
    `write_transaction` the caller opened, the batch is a savepoint of it instead and is
    committed with it.

    `push` is checked first inside that transaction (the key still holds, the nonce is new
    and becomes the last one): if it fails, nothing of this batch is stored."""
    if not device_id:
        raise DeskPulseError("a device without an id cannot be stored")
    at = int(now if now is not None else time.time())
    try:
        with savepoint(conn) if conn.in_transaction else write_transaction(conn):
            if push is not None:
                check_push(conn, device_id, push)
            return _store(conn, device_id, responses, anchors, status, transport, proto, at)
    except sqlite3.IntegrityError as exc:
        raise DeskPulseError(f"responses of {device_id} not stored: {exc}") from exc


def check_push(conn: sqlite3.Connection, device_id: str, push: PushCheck) -> None:
    row = conn.execute(
        "SELECT key, nonce_boot, nonce_count FROM device_keys WHERE device_id = ?",
        (device_id,)).fetchone()
    batches.check_push(device_id, row, push)
    conn.execute(
        "UPDATE device_keys SET nonce_boot = ?, nonce_count = ? WHERE device_id = ?",
        (push.nonce.boot, push.nonce.count, device_id))


def _store(conn: sqlite3.Connection, device_id: str, responses: Sequence[Response],
           anchors: Iterable[Anchor], status: Mapping[str, Any], transport: str,
           proto: int | None, at: int) -> tuple[int, int]:
    status_json = json.dumps(status, sort_keys=True, separators=(",", ":"))
    conn.execute(
        """INSERT INTO devices (device_id, board, firmware, proto, first_seen, last_sync,
                                last_status)
           VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (device_id) DO UPDATE SET
               board = coalesce(excluded.board, board),
               firmware = coalesce(excluded.firmware, firmware),
               proto = coalesce(excluded.proto, proto),
               last_sync = excluded.last_sync, last_status = excluded.last_status""",
        (device_id, batches.text(status.get("board")), batches.text(status.get("firmware")),
         proto, at, at, status_json),
    )
    cur = conn.execute(
        """INSERT INTO syncs (device_id, at, transport, received, new, duplicates,
                              time_unknown, stored, unacked, dropped, corrupt, fill, boot,
                              reset_cause, crashes, clock_known, status)
           VALUES (?, ?, ?, ?, 0, 0, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (device_id, at, transport, len(responses), *batches.health(status), status_json),
    )
    sync_id = int(cur.lastrowid or 0)
    increasing = batches.increasing(responses)
    stored = _stored_namesakes(conn, device_id, responses, increasing)
    batches.refuse_conflicts(device_id, responses, stored)
    # Before anything new lands, so that a rebuild (new zone, or rollups never
    # built) covers exactly the rows stored so far.
    zone = rollup_tables.ensure_zone(conn, device_id)
    anchor_rows = _anchor_rows(conn, device_id, anchors)
    anchored = {row[1] for row in anchor_rows}
    before = {boot: _boot_shift(conn, device_id, boot) for boot in anchored}
    # The device lists anchors oldest first; a later one at the same second wins.
    conn.executemany(
        "INSERT OR REPLACE INTO anchors VALUES (?, ?, ?, ?, ?)", anchor_rows)
    fresh = batches.new_ones(responses, stored, increasing)
    shifts = {boot: _boot_shift(conn, device_id, boot)
              for boot in anchored.union(map(operator.attrgetter("boot"), fresh))}
    changes = [rollups.Changes.empty()]
    # Stored rows move only in boots whose shift this batch changed (a first anchor, a
    # clock correction), and before the new rows go in: those get their place as they
    # are inserted. An anchor that agrees with the last one rewrites nothing.
    moved_boots = {b: shifts[b] for b in sorted(anchored) if shifts[b] != before[b]}
    _place(conn, device_id, moved_boots, changes)
    # The hottest line of a sync: plain attribute reads (latency_ds inlined), one tuple
    # per response. `shift` (walrus) is the boot's placement: the device's stamp stays in
    # device_wall either way. The sqlite3 module binds exact ints and strs directly but
    # looks every other value (bool, None) up in its adapter registry, which cost more
    # than SQLite's own work on the column: flags go in as ints, and the interval columns
    # (NULL for a new row) are left to their default instead of being bound.
    rows = [(device_id, r.seq, r.rating, r.scale, r.told_next, round(r.latency_s * 10),
             int(r.rapid), int(r.closed), r.boot, r.uptime_s, r.wall,
             r.wall if (shift := shifts[r.boot]) is None else r.uptime_s + shift,
             "anchor" if shift is not None else None if r.wall is None else "device",
             r.config_version, sync_id)
            for r in fresh]
    # Duplicates were left out above (they must not count in the rollups); the
    # conflict clause stays as a guard. ON CONFLICT on the key only: OR IGNORE would
    # also skip rows that break a CHECK. Multi-row statements (bulk.py): a row SQLite
    # refuses fails its statement, and the transaction takes the whole batch back.
    new = bulk.insert_rows(conn, _INSERT_HEAD, rows, len(_INSERTED),
                           "ON CONFLICT (device_id, seq) DO NOTHING")
    if new != len(rows):
        raise RuntimeError(f"{len(rows)} new responses of {device_id}, {new} inserted")
    unknown = 0
    if rows:
        # Before _bound_unplaced: the new rows may reach further into their boot.
        widen_boots(conn, device_id, *(list(map(operator.itemgetter(column), rows))
                                       for column in (1, 8, 9)))
        # Only the six columns the rollups need (transposing all 15 cost twice as much).
        walls, ratings, scales, tolds, rapid, closed = (
            list(map(operator.itemgetter(column), rows)) for column in (11, 2, 3, 4, 6, 7))
        changes[0] = rollups.Changes.from_columns(walls, ratings, scales, tolds, rapid, closed)
        unknown = walls.count(None)
    if unknown or moved_boots:
        # New responses without a time, or a boot newly placed that may bound them.
        _bound_unplaced(conn, device_id, changes)
    rollup_tables.apply(conn, device_id, zone, rollups.Changes.join(changes))
    conn.execute(
        "UPDATE syncs SET new = ?, duplicates = ?, time_unknown = ? WHERE sync_id = ?",
        (new, len(responses) - new, unknown, sync_id))
    return new, len(responses) - new


_WIDEN_BOOTS = """INSERT INTO boots VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (device_id, boot) DO UPDATE SET
        first_seq = min(first_seq, excluded.first_seq),
        last_seq = max(last_seq, excluded.last_seq),
        max_uptime_s = max(max_uptime_s, excluded.max_uptime_s)"""


def widen_boots(conn: sqlite3.Connection, device_id: str, seqs: list[int],
                boots: list[int], uptimes: list[int]) -> None:
    """Make the boots table hold these stored responses (column by column, in the same
    order): every caller that inserts responses calls it in the same transaction, or
    placement would miss them."""
    conn.executemany(_WIDEN_BOOTS, [(device_id, *span)
                                    for span in batches.boot_spans(seqs, boots, uptimes)])


def _anchor_rows(conn: sqlite3.Connection, device_id: str,
                 anchors: Iterable[Anchor]) -> list[tuple[str, int, int, int, int]]:
    """The rows to store: a receipt anchor is kept only for a boot with no anchor of the
    device's own (stored or in this batch), where it is the only placement there is;
    otherwise every push would add a row that nothing reads."""
    anchors = list(anchors)
    own = {a.boot for a in anchors if a.source != RECEIPT_SOURCE}
    rows: list[tuple[str, int, int, int, int]] = []
    for a in anchors:
        if a.source == RECEIPT_SOURCE and (a.boot in own or conn.execute(
                f"""SELECT 1 FROM anchors WHERE device_id = ? AND boot = ?
                    AND source != {RECEIPT_SOURCE} LIMIT 1""",
                (device_id, a.boot)).fetchone()):
            continue
        rows.append((device_id, a.boot, a.uptime_s, a.wall, a.source))
    return rows


def _boot_shift(conn: sqlite3.Connection, device_id: str, boot: int) -> int | None:
    """`wall - uptime_s` of the boot's latest anchor: what places its records; None when
    the boot has no anchor. The server's receipt anchors count only in a boot the device
    sent none for: its own anchors say what its clock was set to, while a receipt anchor
    carries the network's delay, differs a little at every push (which would move the
    whole boot each time), and comes from a PC whose clock may be the wrong one."""
    row = conn.execute(
        f"""SELECT wall - uptime_s FROM anchors WHERE device_id = ? AND boot = ?
           ORDER BY source = {RECEIPT_SOURCE}, uptime_s DESC LIMIT 1""",
        (device_id, boot)).fetchone()
    return None if row is None else int(row[0])


def _place(conn: sqlite3.Connection, device_id: str, shifts: Mapping[int, int | None],
           changes: list[rollups.Changes]) -> None:
    """(Re)place every stored response of these boots by its boot's shift (the latest
    anchor's `wall - uptime_s`), also those the device stamped itself. Appends the rollup
    moves to `changes`. Rows already where they belong are not written."""
    for boot, shift in shifts.items():
        if shift is None:
            continue
        span = conn.execute("SELECT first_seq, last_seq FROM boots WHERE device_id = ? "
                            "AND boot = ?", (device_id, boot)).fetchone()
        if span is None:
            continue  # none of its responses stored yet
        moved = []
        relabelled = []
        for seq, wall, source, uptime_s, low, high, *rest in conn.execute(
                # The boot's span of the primary key; the boot test keeps out responses
                # of another boot inside it (a device whose boots' seqs interleave).
                """SELECT seq, wall, time_source, uptime_s, wall_low, wall_high, rating,
                          scale, told_next, rapid, closed
                   FROM responses WHERE device_id = ? AND seq BETWEEN ? AND ? AND boot = ?""",
                (device_id, *span, boot)):
            now = uptime_s + shift
            if wall != now:
                # A response without a time leaves the bucket its interval gave it.
                moved.append((seq, wall or low, wall or high, now, *rest))
            elif source != "anchor":  # the device's clock was right: only the label
                relabelled.append(seq)
        if relabelled:
            conn.executemany(
                "UPDATE responses SET time_source = 'anchor' WHERE device_id = ? AND seq = ?",
                [(device_id, seq) for seq in relabelled])
        if not moved:
            continue
        conn.executemany(
            """UPDATE responses SET wall = ?, time_source = 'anchor', wall_low = NULL,
                                    wall_high = NULL
               WHERE device_id = ? AND seq = ?""",
            [(m[3], device_id, m[0]) for m in moved])
        _, old, old_high, new, ratings, scales, tolds, rapid, closed = zip(*moved, strict=True)
        changes.append(rollups.Changes.from_columns(old, ratings, scales, tolds, rapid,
                                                    closed, weight=-1, highs=old_high))
        changes.append(rollups.Changes.from_columns(new, ratings, scales, tolds, rapid,
                                                    closed))


def _bound_unplaced(conn: sqlite3.Connection, device_id: str,
                    changes: list[rollups.Changes]) -> None:
    """Give every response of the device still without a time the interval its anchored
    neighbours allow (store/intervals.py), and move the rollups of those whose interval
    changed. Reads only those responses (by the (device_id, wall) index) and the boots
    around them."""
    rows = conn.execute(
        # Named: without statistics SQLite prefers the primary key and reads every
        # response of the device at every sync (2 ms per batch at 20,000 responses).
        """SELECT r.seq, r.boot, r.uptime_s, s.at, r.wall_low, r.wall_high, r.rating,
                  r.scale, r.told_next, r.rapid, r.closed
           FROM responses r INDEXED BY responses_by_device_wall
           JOIN syncs s ON s.sync_id = r.sync_id
           WHERE r.device_id = ? AND r.wall IS NULL""", (device_id,)).fetchall()
    if not rows:
        return
    shifts = dict(conn.execute(
        # The last row of each boot is the one that places it (_boot_shift's order).
        f"""SELECT boot, wall - uptime_s FROM anchors WHERE device_id = ?
            ORDER BY boot, source = {RECEIPT_SOURCE} DESC, uptime_s""", (device_id,)))
    reach = dict(conn.execute(
        "SELECT boot, max(uptime_s) FROM anchors WHERE device_id = ? GROUP BY boot",
        (device_id,)))
    for boot in intervals.neighbours(shifts, (row[1] for row in rows)):
        found = conn.execute(
            "SELECT max_uptime_s FROM boots WHERE device_id = ? AND boot = ?",
            (device_id, boot)).fetchone()
        if found is not None:
            reach[boot] = max(reach.get(boot, 0), found[0])
    moved = intervals.changed_bounds(shifts, reach, rows)
    if not moved:
        return
    conn.executemany(
        "UPDATE responses SET wall_low = ?, wall_high = ? WHERE device_id = ? AND seq = ?",
        [(m[3], m[4], device_id, m[0]) for m in moved])
    _, low, high, new_low, new_high, ratings, scales, tolds, rapid, closed = zip(
        *moved, strict=True)
    changes.append(rollups.Changes.from_columns(low, ratings, scales, tolds, rapid, closed,
                                                weight=-1, highs=high))
    changes.append(rollups.Changes.from_columns(new_low, ratings, scales, tolds, rapid,
                                                closed, highs=new_high))


def place_device(conn: sqlite3.Connection, device_id: str) -> None:
    """Place every stored response of the device by its boots' latest anchors and bound
    those without a time, as its batches would have (a device merged from another store,
    whose anchors may place the other store's records). The caller rebuilds its rollups."""
    boots = [row[0] for row in conn.execute(
        "SELECT DISTINCT boot FROM anchors WHERE device_id = ?", (device_id,))]
    _place(conn, device_id, {boot: _boot_shift(conn, device_id, boot) for boot in boots}, [])
    _bound_unplaced(conn, device_id, [])
