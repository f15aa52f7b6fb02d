"""Storing a batch in PostgreSQL: once per (device, seq), placed in time by its boot's
anchors, as the SQLite engine does (store/sqlite/schema.py says how times are placed).

Exactly-once across processes: the first statement of every batch upserts the device's
row, which locks it until the transaction ends, so batches of one device are stored one
after another whichever `deskpulse serve` process took them; each then checks its records
against the stored namesakes, which (read committed) include everything committed before
it got the lock. A push's key and nonce are checked under a lock on the device's key row
(SELECT ... FOR UPDATE) and the nonce moved up in the same transaction: of two processes
given the same request, the second waits and then finds the nonce taken.

A batch's reads are one call of a server-side function (BATCH_READS, made per session in
pg_temp): its first query is the device's upsert, and every later query of a VOLATILE
function takes a snapshot of its own (read committed), so they see everything committed
before the lock was had. One statement instead of six: psycopg's work per statement was
the most of the writer's CPU per push (docs/benchmarks.md, "Issue 16 item 8, second
pass"). The rest of a batch's statements are sent in pipeline mode.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from deskpulse.errors import DeskPulseError
from deskpulse.protocol.batch import RECEIPT_SOURCE, Anchor, Response
from deskpulse.store import batches, intervals, rollups
from deskpulse.store.base import PushCheck
from deskpulse.store.postgres import rollup_tables
from deskpulse.store.postgres.arrays import NULL_INT, Int8Matrix
from deskpulse.store.postgres.schema import RESPONSE_COLUMNS, Partitions, month_of
from deskpulse.store.rollups import TOLD_CODE, TOLD_ORDER

if TYPE_CHECKING:
    import psycopg

def store_batch(conn: psycopg.Connection[Any], partitions: Partitions, device_id: str,
                responses: Sequence[Response], anchors: Iterable[Anchor],
                status: Mapping[str, Any], transport: str, *, proto: int | None, at: int,
                push: PushCheck | None, own_savepoint: bool = True
                ) -> tuple[int, int, int | None]:
    """Store one batch in one transaction (a savepoint inside the caller's): see
    Store.store_batch; (new, duplicates, the device's desired config version or None, read
    under the device's lock). Without `own_savepoint` the caller has put the connection in
    pipeline mode inside a savepoint that this batch alone uses (the writer's part)."""
    import psycopg

    if not device_id:
        raise DeskPulseError("a device without an id cannot be stored")
    try:
        if not own_savepoint:
            return _store(conn, partitions, device_id, responses, anchors, status,
                          transport, proto, at, push)
        # The savepoint outside the pipeline: psycopg syncs a pipeline around one inside.
        with conn.transaction(), conn.pipeline():
            return _store(conn, partitions, device_id, responses, anchors, status,
                          transport, proto, at, push)
    except psycopg.errors.IntegrityError as exc:
        # The primary message only: PostgreSQL's DETAIL ("Failing row contains ...") is a
        # second line, and an error is one line.
        problem = exc.diag.message_primary or str(exc).strip().splitlines()[0]
        raise DeskPulseError(f"responses of {device_id} not stored: {problem}") from exc


BATCH_READS = "pg_temp.deskpulse_batch_reads"
"""The server-side function that takes a batch's device lock and makes all its reads in
one statement (made per connection by `create_functions`)."""

_DEVICE, _KEY, _NAMESAKE, _OWN_ANCHORED, _SAME_ANCHOR, _SHIFT, _DESIRED = range(7)
"""What each row the function returns is (its `kind`)."""

_BATCH_READS_SQL = f"""
CREATE OR REPLACE FUNCTION {BATCH_READS}(
    _device TEXT, _board TEXT, _firmware TEXT, _proto INTEGER, _at BIGINT, _status TEXT,
    _push BOOLEAN, _nonce_boot BIGINT, _nonce_count BIGINT, _low BIGINT, _high BIGINT,
    _receipt_boots BIGINT[], _anchor_boots BIGINT[], _anchor_uptimes BIGINT[],
    _boots BIGINT[])
RETURNS TABLE (kind INTEGER, text1 TEXT, text2 TEXT, bytes BYTEA, n1 BIGINT, n2 BIGINT,
               n3 BIGINT, n4 BIGINT, n5 BIGINT, n6 BIGINT, n7 BIGINT, n8 BIGINT,
               n9 BIGINT, n10 BIGINT)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- The upsert locks the device's row until the transaction ends: every other batch of
    -- this device waits here. Each query below then takes a snapshot of its own (a
    -- VOLATILE function's queries do), so it sees everything committed before the lock.
    RETURN QUERY
    INSERT INTO devices AS d (device_id, board, firmware, proto, first_seen, last_sync,
                              last_status)
    VALUES (_device, _board, _firmware, _proto, _at, _at, _status)
    ON CONFLICT (device_id) DO UPDATE SET
        board = coalesce(excluded.board, d.board),
        firmware = coalesce(excluded.firmware, d.firmware),
        proto = coalesce(excluded.proto, d.proto),
        last_sync = excluded.last_sync, last_status = excluded.last_status
    RETURNING {_DEVICE}, {rollup_tables.CONFIGURED_AND_BUILT}, NULL::bytea,
              nextval(pg_get_serial_sequence('syncs', 'sync_id')), NULL::bigint,
              NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint,
              NULL::bigint, NULL::bigint, NULL::bigint;
    -- The version of the device's desired config, which rides on a push's answer
    -- (desired_config.desired_versions): one round trip fewer than its own statement.
    RETURN QUERY
    SELECT {_DESIRED}, NULL::text, NULL::text, NULL::bytea, c.version::bigint,
           NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint,
           NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint
    FROM desired_configs c WHERE c.device_id = _device ORDER BY c.row_id DESC LIMIT 1;
    IF _push THEN
        -- The key and the last nonce, locked; the nonce moved up (a refused push is
        -- undone with the batch's savepoint).
        RETURN QUERY
        SELECT {_KEY}, NULL::text, NULL::text, k.key, k.nonce_boot, k.nonce_count,
               NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint,
               NULL::bigint, NULL::bigint, NULL::bigint
        FROM device_keys k WHERE k.device_id = _device FOR UPDATE;
        UPDATE device_keys SET nonce_boot = _nonce_boot, nonce_count = _nonce_count
        WHERE device_id = _device;
    END IF;
    IF _low IS NOT NULL THEN
        -- The stored namesakes of the batch's records (batches.COMPARED).
        RETURN QUERY
        SELECT {_NAMESAKE}, r.told_next, NULL::text, NULL::bytea, r.seq, r.rating::bigint,
               r.scale::bigint, r.latency_ds::bigint, r.rapid::bigint, r.closed::bigint,
               r.boot, r.uptime_s, r.device_wall, r.config_version
        FROM responses r WHERE r.device_id = _device AND r.seq BETWEEN _low AND _high;
    END IF;
    IF cardinality(_receipt_boots) > 0 THEN
        -- Which of these boots have an anchor of the device's own stored: a receipt
        -- anchor is stored only for a boot without one.
        RETURN QUERY
        SELECT DISTINCT {_OWN_ANCHORED}, NULL::text, NULL::text, NULL::bytea, a.boot,
               NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint,
               NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint
        FROM anchors a
        WHERE a.device_id = _device AND a.boot = ANY(_receipt_boots)
          AND a.source != {RECEIPT_SOURCE};
    END IF;
    IF cardinality(_anchor_boots) > 0 THEN
        -- The stored anchors at the batch's anchors' (boot, uptime_s): a kiosk sends
        -- its anchors again with every push.
        RETURN QUERY
        SELECT {_SAME_ANCHOR}, NULL::text, NULL::text, NULL::bytea, a.boot, a.uptime_s,
               a.wall, a.source::bigint, NULL::bigint, NULL::bigint, NULL::bigint,
               NULL::bigint, NULL::bigint, NULL::bigint
        FROM anchors a JOIN unnest(_anchor_boots, _anchor_uptimes) AS b(boot, uptime_s)
          ON a.boot = b.boot AND a.uptime_s = b.uptime_s
        WHERE a.device_id = _device;
    END IF;
    IF cardinality(_boots) > 0 THEN
        -- Each boot's shift, wall - uptime_s of its latest anchor (receipt anchors last),
        -- as _ask_boot_shifts reads it.
        RETURN QUERY
        SELECT DISTINCT ON (a.boot) {_SHIFT}, NULL::text, NULL::text, NULL::bytea, a.boot,
               a.wall - a.uptime_s, NULL::bigint, NULL::bigint, NULL::bigint,
               NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint
        FROM anchors a WHERE a.device_id = _device AND a.boot = ANY(_boots)
        ORDER BY a.boot, a.source = {RECEIPT_SOURCE}, a.uptime_s DESC;
    END IF;
END
$$"""


def create_functions(conn: psycopg.Connection[Any]) -> None:
    """Make the batch's server-side function for this connection (in pg_temp: private
    to the session, gone with it, always the one this code calls; no schema change and
    no right beyond the database's default TEMP). Inside the caller's transaction: a
    rollback undoes it, so the store makes it again after any failed write."""
    conn.execute(_BATCH_READS_SQL)  # type: ignore[arg-type]  # our own text


def _ask_push(conn: psycopg.Connection[Any], device_id: str, push: PushCheck
              ) -> psycopg.Cursor[Any]:
    """Send the read of the device's key and nonce, locked, and move the nonce up; the
    caller checks the row (check_push) and raises when it refuses, which undoes the move
    with the batch's savepoint."""
    asked = conn.execute(
        """SELECT key, nonce_boot, nonce_count FROM device_keys WHERE device_id = %s
           FOR UPDATE""", (device_id,))
    conn.execute(
        "UPDATE device_keys SET nonce_boot = %s, nonce_count = %s WHERE device_id = %s",
        (push.nonce.boot, push.nonce.count, device_id))
    return asked


def check_push(conn: psycopg.Connection[Any], device_id: str, push: PushCheck) -> None:
    batches.check_push(device_id, _ask_push(conn, device_id, push).fetchone(), push)


def _store(conn: psycopg.Connection[Any], partitions: Partitions, device_id: str,
           responses: Sequence[Response], anchors: Iterable[Anchor],
           status: Mapping[str, Any], transport: str, proto: int | None, at: int,
           push: PushCheck | None) -> tuple[int, int, int | None]:
    """The batch, in pipeline mode: statements are sent together when a result is first
    read, so a usual batch takes three round trips to the server: every read it needs in
    one call of the server-side function (device lock with its zones and sync id, key,
    stored namesakes, anchors, shifts), the new rows with the rollup rows they change,
    and the rollups written back with the savepoint's release (or the job's next read)."""
    anchors = list(anchors)
    status_json = json.dumps(status, sort_keys=True, separators=(",", ":"))
    increasing = batches.increasing(responses)
    low, high = batches.seq_range(responses, increasing) if responses else (None, None)
    own = {a.boot for a in anchors if a.source != RECEIPT_SOURCE}
    receipt_boots = sorted({a.boot for a in anchors if a.source == RECEIPT_SOURCE} - own)
    # Every boot the batch names: a superset of those whose shift is needed below.
    boots = sorted({a.boot for a in anchors} | {r.boot for r in responses})
    read = conn.execute(
        f"SELECT * FROM {BATCH_READS}(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
        "%s, %s)",
        (device_id, batches.text(status.get("board")), batches.text(status.get("firmware")),
         proto, at, status_json, push is not None,
         push.nonce.boot if push is not None else None,
         push.nonce.count if push is not None else None, low, high, receipt_boots,
         [a.boot for a in anchors], [a.uptime_s for a in anchors], boots)).fetchall()
    device_row: tuple[Any, ...] | None = None
    key_row: tuple[bytes, int, int] | None = None
    stored: dict[int, tuple[Any, ...]] = {}
    already: set[tuple[int, int, int, int]] = set()
    before: dict[int, int | None] = dict.fromkeys(boots)
    desired: int | None = None
    for kind, text1, text2, key, *n in read:
        if kind == _NAMESAKE:
            stored[n[0]] = (n[1], n[2], text1, *n[3:10])
        elif kind == _SHIFT:
            before[n[0]] = n[1]
        elif kind == _SAME_ANCHOR:
            already.add((n[0], n[1], n[2], n[3]))
        elif kind == _OWN_ANCHORED:
            own.add(n[0])
        elif kind == _KEY:
            key_row = (key, n[0], n[1])
        elif kind == _DESIRED:
            desired = n[0]
        else:
            device_row = (text1, text2, n[0])
    if push is not None:
        batches.check_push(device_id, key_row, push)
    batches.refuse_conflicts(device_id, responses, stored)
    assert device_row is not None  # the function returns the device's row first
    configured, built, sync_id = device_row
    # Before anything new lands, so that a rebuild covers exactly the rows stored so far.
    zone = rollup_tables.zone_of(conn, device_id, configured, built)
    anchor_rows = [(device_id, a.boot, a.uptime_s, a.wall, a.source) for a in anchors
                   if a.source != RECEIPT_SOURCE or a.boot not in own]
    anchored = {row[1] for row in anchor_rows}
    fresh = batches.new_ones(responses, stored, increasing)
    # The device lists anchors oldest first; a later one at the same second wins.
    latest = {(row[1], row[2]): row for row in anchor_rows}
    if all(row[1:] in already for row in latest.values()):
        shifts = before  # the usual push: its anchors are stored as they are
    else:
        conn.cursor().executemany(
            """INSERT INTO anchors VALUES (%s, %s, %s, %s, %s)
               ON CONFLICT (device_id, boot, uptime_s)
               DO UPDATE SET wall = excluded.wall, source = excluded.source""",
            list(latest.values()))
        shifts = _shifts(_ask_boot_shifts(conn, device_id,
                                          anchored.union(r.boot for r in fresh)))
    changes = [rollups.Changes.empty()]
    moved_boots = {b: shifts[b] for b in sorted(anchored) if shifts[b] != before.get(b)}
    _place(conn, partitions, device_id, moved_boots, changes)
    rows = [(r.seq, r.rating, r.scale, TOLD_CODE[r.told_next], round(r.latency_s * 10),
             int(r.rapid), int(r.closed), r.boot, r.uptime_s,
             NULL_INT if r.wall is None else r.wall,
             (NULL_INT if r.wall is None else r.wall) if (shift := shifts[r.boot]) is None
             else r.uptime_s + shift,
             _ANCHOR if shift is not None else _NO_SOURCE if r.wall is None else _DEVICE,
             r.config_version)
            for r in fresh]
    new = len(rows)
    matrix = Int8Matrix(rows, len(_MATRIX_COLUMNS)) if rows else None
    walls = matrix.values[:, _WALL] if matrix is not None else None
    unknown = int((walls == NULL_INT).sum()) if walls is not None else 0
    sync = (sync_id, device_id, at, transport, len(responses), new, len(responses) - new,
            unknown, *batches.health(status), status_json)
    if matrix is None or walls is None:
        conn.execute(_INSERT_SYNC, sync)  # type: ignore[arg-type]  # our own text
    else:
        known = walls[walls != NULL_INT]
        if len(known):  # a batch's times lie within a month or two: its ends suffice then
            first, last = int(known.min()), int(known.max())
            partitions.ensure(conn, [first, last] if month_of(last) - month_of(first) <= 1
                              else known.tolist())
        changes[0] = _new_changes(matrix.values)
        widened = _widen_params(device_id, matrix.values)
        if not unknown and not moved_boots:
            # The usual push: the sync row, the new rows, their boots' spans and the read
            # of the rollup rows they change go as one statement (nothing else changes
            # those rollup rows).
            pending = rollup_tables.Pending(device_id, zone, rollups.Changes.join(changes))
            if pending.read is not None:
                pending.write(conn, conn.cursor(binary=True).execute(
                    f"WITH sync AS ({_INSERT_SYNC}), new AS ({_INSERT_RESPONSES}), "
                    f"spans AS ({_WIDEN_BOOTS}) {pending.read}",  # type: ignore[arg-type]
                    (*sync, device_id, sync_id, matrix, *widened, *pending.params)))
                return new, len(responses) - new, desired
        conn.execute(_INSERT_SYNC, sync)  # type: ignore[arg-type]  # our own text
        conn.execute(_INSERT_RESPONSES,  # type: ignore[arg-type]  # our own text
                     (device_id, sync_id, matrix))
        # Before _bound_unplaced: the new rows may reach further into their boot.
        conn.execute(_WIDEN_BOOTS, widened)  # type: ignore[arg-type]  # our own text
    if unknown or moved_boots:
        _bound_unplaced(conn, device_id, changes)
    rollup_tables.apply(conn, device_id, zone, rollups.Changes.join(changes))
    return new, len(responses) - new, desired


_MATRIX_COLUMNS = ("seq", "rating", "scale", "told_next", "latency_ds", "rapid", "closed",
                   "boot", "uptime_s", "device_wall", "wall", "time_source",
                   "config_version")
"""The new rows' columns as the matrix sends them (arrays.Int8Matrix): told_next as its
TOLD_CODE, time_source as _NO_SOURCE, _DEVICE or _ANCHOR."""
_WALL = _MATRIX_COLUMNS.index("wall")
_NO_SOURCE, _DEVICE, _ANCHOR = 0, 1, 2

_INSERT_SYNC = f"""
    INSERT INTO syncs (sync_id, device_id, at, transport, received, new, duplicates,
                       time_unknown, stored, unacked, dropped, corrupt, fill, boot,
                       reset_cause, crashes, clock_known, status)
    VALUES ({', '.join(['%s'] * 18)})"""

_INSERT_RESPONSES = f"""
    INSERT INTO responses ({', '.join(RESPONSE_COLUMNS)})
    SELECT %s, m[i][1], m[i][2], m[i][3],
           (ARRAY[{', '.join(f"'{t}'" for t in TOLD_ORDER)}])[m[i][4] + 1],
           m[i][5], m[i][6], m[i][7], m[i][8], m[i][9],
           nullif(m[i][10], {NULL_INT}), nullif(m[i][11], {NULL_INT}),
           (ARRAY['device', 'anchor'])[m[i][12]], m[i][13], %s, NULL, NULL
    FROM (SELECT %b::bigint[] AS m) AS batch, generate_subscripts(batch.m, 1) AS i"""
"""A batch's new rows as one statement of one matrix (COPY would leave pipeline mode)."""


_WIDEN_BOOTS = """
    INSERT INTO boots AS b (device_id, boot, first_seq, last_seq, max_uptime_s)
    SELECT %s, * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[])
    ON CONFLICT (device_id, boot) DO UPDATE SET
        first_seq = least(b.first_seq, excluded.first_seq),
        last_seq = greatest(b.last_seq, excluded.last_seq),
        max_uptime_s = greatest(b.max_uptime_s, excluded.max_uptime_s)"""
"""The boots table made to hold stored responses (batches.boot_spans: one row per boot, as
an upsert of one statement needs)."""


def _widen_params(device_id: str, values: Any) -> list[Any]:
    """_WIDEN_BOOTS's parameters for the new rows (the matrix's numpy values)."""
    return widen_params(device_id, *(values[:, _MATRIX_COLUMNS.index(name)].tolist()
                                     for name in ("seq", "boot", "uptime_s")))


def widen_params(device_id: str, seqs: list[int], boots: list[int],
                 uptimes: list[int]) -> list[Any]:
    """_WIDEN_BOOTS's parameters for these stored responses (column by column)."""
    spans = batches.boot_spans(seqs, boots, uptimes)
    return [device_id, *(list(column) for column in zip(*spans, strict=True))]


def widen_boots(conn: psycopg.Connection[Any], device_id: str, seqs: list[int],
                boots: list[int], uptimes: list[int]) -> None:
    """Make the boots table hold these stored responses: every writer of responses calls
    it in the same transaction, or placement would miss them."""
    if seqs:
        conn.execute(_WIDEN_BOOTS,  # type: ignore[arg-type]  # our own text
                     widen_params(device_id, seqs, boots, uptimes))


def _new_changes(values: Any) -> rollups.Changes:
    """The rollup changes of the new rows (the matrix's numpy values): +1 each."""
    import numpy as np

    walls = values[:, _WALL]
    walls = np.where(walls == NULL_INT, 0, walls)
    return rollups.Changes(
        walls=walls, highs=walls, ratings=values[:, 1], scales=values[:, 2],
        tolds=values[:, 3], kinds=values[:, 5] + 2 * values[:, 6],
        weights=np.ones(len(values), np.int64))


def _ask_boot_shifts(conn: psycopg.Connection[Any], device_id: str, boots: Iterable[int]
                     ) -> tuple[list[int], psycopg.Cursor[Any] | None]:
    """Send the read of `wall - uptime_s` of each boot's latest anchor (receipt anchors
    last): what places its records (store/sqlite/ingest.py `_boot_shift`)."""
    wanted = sorted(set(boots))
    if not wanted:
        return wanted, None
    return wanted, conn.execute(
        """SELECT DISTINCT ON (boot) boot, wall - uptime_s FROM anchors
           WHERE device_id = %s AND boot = ANY(%s)
           ORDER BY boot, source = %s, uptime_s DESC""",
        (device_id, wanted, RECEIPT_SOURCE))


def _shifts(asked: tuple[list[int], psycopg.Cursor[Any] | None]) -> dict[int, int | None]:
    """The shift of each boot asked for, None for a boot without an anchor."""
    wanted, cursor = asked
    out: dict[int, int | None] = dict.fromkeys(wanted)
    if cursor is not None:
        out.update(cursor.fetchall())
    return out


def _boot_shifts(conn: psycopg.Connection[Any], device_id: str, boots: Iterable[int]
                 ) -> dict[int, int | None]:
    return _shifts(_ask_boot_shifts(conn, device_id, boots))


def _place(conn: psycopg.Connection[Any], partitions: Partitions, device_id: str,
           shifts: Mapping[int, int | None], changes: list[rollups.Changes]) -> None:
    """(Re)place every stored response of these boots by its boot's shift; rows move to
    their new month's partition. Appends the rollup moves to `changes`."""
    placed = [boot for boot, shift in shifts.items() if shift is not None]
    if not placed:
        return
    spans = {boot: (first, last) for boot, first, last in conn.execute(
        "SELECT boot, first_seq, last_seq FROM boots WHERE device_id = %s AND boot = ANY(%s)",
        (device_id, placed))}
    for boot, shift in shifts.items():
        if shift is None or boot not in spans:  # no anchor, or none of its responses
            continue
        moved = []
        relabelled = []
        for seq, wall, source, uptime_s, low, high, *rest in conn.execute(
                # The boot's span of each partition's primary key; the boot test keeps out
                # responses of another boot inside it (boots whose seqs interleave).
                """SELECT seq, wall, time_source, uptime_s, wall_low, wall_high, rating,
                          scale, told_next, rapid, closed
                   FROM responses
                   WHERE device_id = %s AND seq BETWEEN %s AND %s AND boot = %s""",
                (device_id, *spans[boot], boot)):
            now = uptime_s + shift
            if wall != now:
                moved.append((seq, wall or low, wall or high, now, *rest))
            elif source != "anchor":
                relabelled.append(seq)
        if relabelled:
            conn.execute(
                """UPDATE responses SET time_source = 'anchor'
                   WHERE device_id = %s AND seq = ANY(%s)""", (device_id, relabelled))
        if not moved:
            continue
        seqs, old, old_high, new, ratings, scales, tolds, rapid, closed = zip(
            *moved, strict=True)
        partitions.ensure(conn, new)
        conn.execute(
            """UPDATE responses r SET wall = m.wall, time_source = 'anchor', wall_low = NULL,
                                      wall_high = NULL
               FROM unnest(%s::bigint[], %s::bigint[]) AS m(seq, wall)
               WHERE r.device_id = %s AND r.seq = m.seq""", (list(seqs), list(new), device_id))
        changes.append(rollups.Changes.from_columns(old, ratings, scales, tolds, rapid,
                                                    closed, weight=-1, highs=old_high))
        changes.append(rollups.Changes.from_columns(new, ratings, scales, tolds, rapid,
                                                    closed))


def _bound_unplaced(conn: psycopg.Connection[Any], device_id: str,
                    changes: list[rollups.Changes]) -> None:
    """Give every response of the device still without a time the interval its anchored
    neighbours allow (store/intervals.py), and move the rollups of those that changed."""
    rows = conn.execute(
        """SELECT r.seq, r.boot, r.uptime_s, s.at, r.wall_low, r.wall_high, r.rating,
                  r.scale, r.told_next, r.rapid, r.closed
           FROM responses_unknown r JOIN syncs s ON s.sync_id = r.sync_id
           WHERE r.device_id = %s""", (device_id,)).fetchall()
    if not rows:
        return
    shifts: dict[int, int] = {}
    for boot, shift in conn.execute(
            # The last row of each boot is the one that places it (_boot_shifts' order).
            """SELECT boot, wall - uptime_s FROM anchors WHERE device_id = %s
               ORDER BY boot, source = %s DESC, uptime_s""", (device_id, RECEIPT_SOURCE)):
        shifts[boot] = shift
    reach = dict(conn.execute(
        "SELECT boot, max(uptime_s) FROM anchors WHERE device_id = %s GROUP BY boot",
        (device_id,)).fetchall())
    around = sorted(intervals.neighbours(shifts, (row[1] for row in rows)))
    for boot, highest in conn.execute(
            "SELECT boot, max_uptime_s FROM boots WHERE device_id = %s AND boot = ANY(%s)",
            (device_id, around)):
        reach[boot] = max(reach.get(boot, 0), highest)
    moved = intervals.changed_bounds(shifts, reach, rows)
    if not moved:
        return
    seqs, low, high, new_low, new_high, ratings, scales, tolds, rapid, closed = zip(
        *moved, strict=True)
    conn.execute(
        """UPDATE responses_unknown r SET wall_low = m.low, wall_high = m.high
           FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS m(seq, low, high)
           WHERE r.device_id = %s AND r.seq = m.seq""",
        (list(seqs), list(new_low), list(new_high), device_id))
    changes.append(rollups.Changes.from_columns(low, ratings, scales, tolds, rapid, closed,
                                                weight=-1, highs=high))
    changes.append(rollups.Changes.from_columns(new_low, ratings, scales, tolds, rapid,
                                                closed, highs=new_high))


def place_device(conn: psycopg.Connection[Any], partitions: Partitions,
                 device_id: str) -> None:
    """Place every stored response of the device by its boots' latest anchors and bound
    those without a time, as its batches would have (a device merged from another store,
    whose anchors may place the other store's records). The caller holds the device's lock
    and rebuilds its rollups."""
    boots = [boot for (boot,) in conn.execute(
        "SELECT DISTINCT boot FROM anchors WHERE device_id = %s", (device_id,))]
    _place(conn, partitions, device_id, _boot_shifts(conn, device_id, boots), [])
    _bound_unplaced(conn, device_id, [])
