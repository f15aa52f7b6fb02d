"""The host database: devices, responses, time anchors and sync history, in SQLite.

One file, WAL mode, a busy timeout, so the sync command, the aggregator server and the
reports can share it. The schema is versioned with `PRAGMA user_version` and migrated
forward on open; a database from a newer deskpulse is refused rather than guessed at.

Every response is keyed by (device_id, seq) and inserted with INSERT OR IGNORE, so a batch
that arrives twice (a lost ACK, a retried push) is stored once. Times follow docs/time.md:
every record of a (device, boot) that has an anchor is placed by the latest anchor of that
boot, `wall = anchor.wall + (uptime_s - anchor.uptime_s)` (time_source 'anchor'), also
when the device stamped it with its own clock, which may have been wrong; the device's
stamp stays in `device_wall` as evidence. A record whose boot has no anchor keeps the
device's stamp (time_source 'device'), or, without one, its time is unknown (NULL) and
counted. When an anchor arrives that changes a boot's offset (`wall - uptime_s` of its
latest anchor: the boot's first anchor, or a clock correction), every stored record of
that boot moves, and the rollups with it; an anchor that agrees with the previous one
(the usual sync) rewrites nothing.
"""

from __future__ import annotations

import contextlib
import json
import operator
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from deskpulse import rollups
from deskpulse.batch import RECEIPT_SOURCE, Anchor, Response
from deskpulse.errors import DeskPulseError

BUSY_TIMEOUT_MS = 30_000

CLOCK_TOLERANCE_S = 120
"""A record placed by an anchor whose device stamp differs from that by more than this many
seconds counts as clock-corrected (docs/time.md, docs/report.md). Within it the two agree:
the device's clock counts whole seconds and a sync sets it a moment late. It is written
into the index below: changing it needs a migration that rebuilds that index."""
CLOCK_CORRECTED = (f"time_source = 'anchor' AND abs(wall - device_wall) > "
                   f"{CLOCK_TOLERANCE_S}")
"""The rows of that index; a query must repeat this text for SQLite to use it."""
CLOCK_CORRECTED_INDEX = (
    # Covering (time_source too), so the report never reads the table for it.
    "CREATE INDEX responses_clock_corrected ON responses(device_id, wall, device_wall, "
    f"rapid, closed, time_source) WHERE {CLOCK_CORRECTED}")

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the serial sync (issue 4). Later issues add their own steps after this one.
    (
        """CREATE TABLE devices (
            device_id   TEXT PRIMARY KEY,
            name        TEXT,            -- set by people (devices add), never by a sync
            location    TEXT,
            time_zone   TEXT,            -- IANA name; reports fall back to the host's
            board       TEXT,
            firmware    TEXT,
            proto       INTEGER,
            first_seen  INTEGER NOT NULL,  -- unix seconds (host clock)
            last_sync   INTEGER,
            last_status TEXT             -- JSON, the device's status at its last sync
        )""",
        """CREATE TABLE syncs (
            sync_id      INTEGER PRIMARY KEY,
            device_id    TEXT NOT NULL REFERENCES devices(device_id),
            at           INTEGER NOT NULL,  -- unix seconds (host clock) of the commit
            transport    TEXT NOT NULL,     -- 'serial' or 'wifi'
            received     INTEGER NOT NULL,  -- responses in the batches
            new          INTEGER NOT NULL,
            duplicates   INTEGER NOT NULL,
            time_unknown INTEGER NOT NULL,  -- of the new ones, still unplaced after it
            stored       INTEGER,           -- device health, copied from its status
            unacked      INTEGER,
            dropped      INTEGER,           -- total the device ever dropped (storage cap)
            corrupt      INTEGER,
            fill         REAL,              -- flash filesystem fill, 0..1
            boot         INTEGER,
            reset_cause  TEXT,
            crashes      INTEGER,
            clock_known  INTEGER,
            status       TEXT NOT NULL      -- the whole status as JSON
        )""",
        "CREATE INDEX syncs_by_device ON syncs(device_id, at)",
        """CREATE TABLE responses (
            device_id      TEXT NOT NULL REFERENCES devices(device_id),
            seq            INTEGER NOT NULL,
            rating         INTEGER NOT NULL CHECK (rating BETWEEN 1 AND scale),
            scale          INTEGER NOT NULL CHECK (scale BETWEEN 3 AND 5),
            told_next      TEXT NOT NULL CHECK (told_next IN ('yes', 'no', 'no_answer')),
            latency_ds     INTEGER NOT NULL,
            rapid          INTEGER NOT NULL,
            closed         INTEGER NOT NULL,
            boot           INTEGER NOT NULL,
            uptime_s       INTEGER NOT NULL,
            device_wall    INTEGER,  -- the device's own time for it, when its clock was set
            wall           INTEGER,  -- resolved UTC unix seconds; NULL = time unknown
            time_source    TEXT CHECK (time_source IN ('device', 'anchor')),
            config_version INTEGER NOT NULL,
            sync_id        INTEGER NOT NULL REFERENCES syncs(sync_id),
            PRIMARY KEY (device_id, seq)
        ) WITHOUT ROWID""",
        "CREATE INDEX responses_by_wall ON responses(wall)",
        # Only rows that anchors may (re)place are indexed: a new anchor touches few rows.
        """CREATE INDEX responses_placeable ON responses(device_id, boot)
            WHERE time_source IS NOT 'device'""",
        """CREATE TABLE anchors (
            device_id TEXT NOT NULL REFERENCES devices(device_id),
            boot      INTEGER NOT NULL,
            uptime_s  INTEGER NOT NULL,
            wall      INTEGER NOT NULL,
            source    INTEGER NOT NULL,  -- 1 host, 2 NTP, 3 RTC chip
            PRIMARY KEY (device_id, boot, uptime_s)
        ) WITHOUT ROWID""",
    ),
    # 2: WiFi push (issue 5): each registered device's key and the highest request nonce
    # accepted from it (docs/wifi.md), so a replayed request stores nothing.
    (
        """CREATE TABLE device_keys (
            device_id  TEXT PRIMARY KEY REFERENCES devices(device_id),
            key        BLOB NOT NULL,      -- 32 random bytes; never printed or logged
            created    INTEGER NOT NULL,   -- unix seconds (host clock)
            nonce_boot INTEGER NOT NULL DEFAULT 0,
            nonce_count INTEGER NOT NULL DEFAULT 0
        )""",
    ),
    # 3: reports (issue 6). The responses table is rebuilt for ingest speed: its
    # `told_next IN (...)` CHECK cost SQLite more than the rest of an insert (an OR of
    # equalities says the same cheaply), and its wall index becomes (device_id, wall),
    # which a batch of one device extends in one place instead of all over a global index,
    # and which serves per-device time ranges. Then the rollup tables (rollups.py); they
    # are filled from existing responses on first use (rollups.ensure_zone).
    (
        """CREATE TABLE responses_v3 (
            device_id      TEXT NOT NULL REFERENCES devices(device_id),
            seq            INTEGER NOT NULL,
            rating         INTEGER NOT NULL CHECK (rating BETWEEN 1 AND scale),
            scale          INTEGER NOT NULL CHECK (scale BETWEEN 3 AND 5),
            told_next      TEXT NOT NULL
                           CHECK (told_next = 'yes' OR told_next = 'no'
                                  OR told_next = 'no_answer'),
            latency_ds     INTEGER NOT NULL,
            rapid          INTEGER NOT NULL,
            closed         INTEGER NOT NULL,
            boot           INTEGER NOT NULL,
            uptime_s       INTEGER NOT NULL,
            device_wall    INTEGER,  -- the device's own time for it, when its clock was set
            wall           INTEGER,  -- resolved UTC unix seconds; NULL = time unknown
            time_source    TEXT CHECK (time_source = 'device' OR time_source = 'anchor'),
            config_version INTEGER NOT NULL,
            sync_id        INTEGER NOT NULL REFERENCES syncs(sync_id),
            PRIMARY KEY (device_id, seq)
        ) WITHOUT ROWID""",
        "INSERT INTO responses_v3 SELECT * FROM responses",
        "DROP TABLE responses",
        "ALTER TABLE responses_v3 RENAME TO responses",
        "CREATE INDEX responses_by_device_wall ON responses(device_id, wall)",
        """CREATE INDEX responses_placeable ON responses(device_id, boot)
            WHERE time_source IS NOT 'device'""",
        *rollups.SCHEMA,
    ),
    # 4: records follow their boot's latest anchor even when the device stamped them
    # (issue 10): a clock correction may move any record of a boot, so the index over
    # placeable rows covers every row now; the stored rows of boots with anchors are
    # re-placed, and the devices whose rows moved get their rollups rebuilt on first use
    # (rollups.ensure_zone rebuilds a device without a rollup_zones row). Then the small
    # index of the records the anchors contradicted, which the report counts.
    (
        "CREATE INDEX responses_by_boot ON responses(device_id, boot)",
        "DROP INDEX responses_placeable",
        """CREATE TEMP TABLE boot_shifts (
               device_id TEXT NOT NULL,
               boot      INTEGER NOT NULL,
               shift     INTEGER NOT NULL,  -- wall - uptime_s of the boot's latest anchor
               PRIMARY KEY (device_id, boot)
           ) WITHOUT ROWID""",
        # SQLite takes the bare column (shift) from the row of max(uptime_s).
        """INSERT INTO temp.boot_shifts
               SELECT device_id, boot, shift FROM (
                   SELECT device_id, boot, wall - uptime_s AS shift, max(uptime_s)
                   FROM anchors GROUP BY device_id, boot)""",
        """DELETE FROM rollup_zones WHERE device_id IN (
               SELECT r.device_id FROM responses r
               JOIN temp.boot_shifts s ON s.device_id = r.device_id AND s.boot = r.boot
               WHERE r.wall IS NOT r.uptime_s + s.shift)""",
        """UPDATE responses SET wall = responses.uptime_s + s.shift, time_source = 'anchor'
               FROM temp.boot_shifts s
               WHERE s.device_id = responses.device_id AND s.boot = responses.boot
                 AND (responses.wall IS NOT responses.uptime_s + s.shift
                      OR responses.time_source IS NOT 'anchor')""",
        "DROP TABLE temp.boot_shifts",
        CLOCK_CORRECTED_INDEX,
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def default_db_path() -> Path:
    """$DESKPULSE_DB, else deskpulse/deskpulse.db in $XDG_DATA_HOME (~/.local/share)."""
    explicit = os.environ.get("DESKPULSE_DB")
    if explicit:
        return Path(explicit).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or ""
    base = Path(data_home) if Path(data_home).is_absolute() else Path.home() / ".local/share"
    return base / "deskpulse" / "deskpulse.db"


def db_option_help() -> str:
    """The --db help line every command shares."""
    return (f"database file (default: $DESKPULSE_DB if set, else {default_db_path()}; "
            "the default follows $XDG_DATA_HOME)")


def connect(path: str | os.PathLike[str] | None = None, *,
            busy_timeout_ms: int | None = None, create: bool = True) -> sqlite3.Connection:
    """Open (creating if needed) and migrate the database. The connection is in
    autocommit mode: writers use `transaction()`. A new database file is private to its
    owner (it holds the kiosks' keys); SQLite gives its -wal and -shm the same mode.
    With `create` False (commands that only read, or change what is already there) a
    missing file is an error and nothing is created: an empty database would only report
    "0 responses". Errors come out as DeskPulseError sentences (`failure`)."""
    db_path = Path(path) if path is not None else default_db_path()
    wait_ms = BUSY_TIMEOUT_MS if busy_timeout_ms is None else busy_timeout_ms
    if not create and not db_path.exists():
        raise DeskPulseError(
            f"no database at {db_path}: run `deskpulse sync` or `deskpulse serve` first "
            "(or register a kiosk with `deskpulse devices add`), or give --db")
    try:
        if create:
            _create_private(db_path, default_folder=path is None
                            and not os.environ.get("DESKPULSE_DB"))
        # mode=rw: a file removed since the check above is an error, not a new database.
        target = db_path if create else f"{db_path.resolve().as_uri()}?mode=rw"
        conn = sqlite3.connect(target, timeout=wait_ms / 1000, isolation_level=None,
                               uri=not create)
    except OSError as exc:
        raise DeskPulseError(
            f"cannot open the database {db_path}: {exc.strerror or exc}") from exc
    except sqlite3.Error as exc:
        raise failure(exc, db_path) from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(wait_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL, not WAL's usual NORMAL: the device frees flash once we ACK, so a commit
        # must survive a power cut of the host too.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        # 64 MiB of page cache (the default is 2 MiB): a sync touches the responses, their
        # (device, wall) index and the rollups; reports read many rollup pages.
        conn.execute("PRAGMA cache_size = -65536")
        migrate(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise failure(exc, db_path) from exc
    except BaseException:
        conn.close()
        raise
    return conn


PRIVATE_FILE_MODE = 0o600
PRIVATE_FOLDER_MODE = 0o700


def _create_private(db_path: Path, *, default_folder: bool) -> None:
    """Create a missing database file readable by its owner only, before SQLite opens it
    (an empty file is an empty database). A missing folder is created private too; an
    existing one is left as it is (the user chose it), except that deskpulse's own
    default folder is created private."""
    folder = db_path.parent
    if not folder.exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=PRIVATE_FOLDER_MODE)
        if default_folder:
            folder.chmod(PRIVATE_FOLDER_MODE)  # whatever the umask
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(db_path, flags, PRIVATE_FILE_MODE))


_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def failure(exc: sqlite3.Error, path: str | os.PathLike[str] | None = None) -> DeskPulseError:
    """What went wrong with the database, as a sentence saying what to do. Every command
    turns SQLite's errors into these (db.connect, the store call sites, cli.main)."""
    where = f" {path}" if path is not None else ""
    named = f":{where}" if where else ""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in _BUSY:
        return DeskPulseError(
            f"another program holds the database{where} (a sync, `deskpulse serve`, a "
            f"report?) and it stayed locked ({exc}): wait for it or stop it, then run the "
            "command again")
    if primary == sqlite3.SQLITE_READONLY:
        return DeskPulseError(
            f"the database file is read-only{named} ({exc}); give your user write "
            "access to it and its folder, or choose another file with --db")
    if primary in _DAMAGED:
        return DeskPulseError(
            f"the database is damaged{named} ({exc}); restore a backup, or move "
            "the file away to start a new database")
    if primary == sqlite3.SQLITE_FULL:
        return DeskPulseError(f"the disk holding the database{where} is full ({exc})")
    if primary == sqlite3.SQLITE_CANTOPEN:
        return DeskPulseError(f"cannot open the database{where} ({exc}): check that its "
                              "folder exists and that you may write there")
    return DeskPulseError(f"the database{where} failed: {exc}")


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextlib.contextmanager
def savepoint(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A part of the open transaction that is undone alone if it raises."""
    conn.execute("SAVEPOINT part")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK TO part")
        conn.execute("RELEASE part")
        raise
    conn.execute("RELEASE part")


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """The transaction batches are stored in: `store_batch` calls inside it share its one
    commit (the server's group commit). Foreign keys are not checked row by row: the
    parent rows (device, sync) are written in the same transaction as the responses, so
    those lookups (a tenth of an insert) prove nothing."""
    checking_keys = conn.execute("PRAGMA foreign_keys").fetchone()[0]
    if checking_keys:
        conn.execute("PRAGMA foreign_keys = OFF")
    try:
        with transaction(conn):
            yield conn
    finally:
        if checking_keys:
            conn.execute("PRAGMA foreign_keys = ON")


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> None:
    """Apply the missing migrations, each in its own transaction."""
    for number, statements in enumerate(MIGRATIONS, start=1):
        if schema_version(conn) >= number:
            continue
        with transaction(conn):
            # Another process may have migrated while we waited for the write lock.
            if schema_version(conn) >= number:
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
    found = schema_version(conn)
    if found > SCHEMA_VERSION:
        raise DeskPulseError(
            f"the database has schema version {found}, newer than this deskpulse "
            f"({SCHEMA_VERSION}): upgrade deskpulse"
        )


# -- storing ------------------------------------------------------------------------------


class ConflictError(DeskPulseError):
    """A record reuses the (device, seq) of a different stored record."""


_COMPARED = ("rating", "scale", "told_next", "latency_ds", "rapid", "closed", "boot",
             "uptime_s", "device_wall", "config_version")


def _row_of(r: Response) -> tuple[Any, ...]:
    return (r.rating, r.scale, r.told_next, r.latency_ds, int(r.rapid), int(r.closed),
            r.boot, r.uptime_s, r.wall, r.config_version)


def _increasing(responses: Sequence[Response]) -> bool:
    seqs = [r.seq for r in responses]
    return all(map(operator.lt, seqs, seqs[1:]))


def _stored_namesakes(conn: sqlite3.Connection, device_id: str,
                      responses: Sequence[Response], increasing: bool
                      ) -> dict[int, tuple[Any, ...]]:
    """The stored rows (compared fields by seq) in the seq range of `responses`."""
    if not responses:
        return {}
    if increasing:
        low, high = responses[0].seq, responses[-1].seq
    else:
        low, high = min(r.seq for r in responses), max(r.seq for r in responses)
    rows = conn.execute(
        f"SELECT seq, {', '.join(_COMPARED)} FROM responses "
        "WHERE device_id = ? AND seq BETWEEN ? AND ?", (device_id, low, high)).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def _conflicts(responses: Sequence[Response], stored: Mapping[int, tuple[Any, ...]]
               ) -> list[int]:
    """Seqs of responses whose stored namesake differs: the same record sent again is a
    duplicate; a different one means the device's numbering restarted (an erased log)."""
    if not stored:  # the usual case: nothing of this range stored yet
        return []
    return sorted({r.seq for r in responses
                   if r.seq in stored and stored[r.seq] != _row_of(r)})


def _new_ones(responses: Sequence[Response], stored: Mapping[int, Any],
              increasing: bool) -> Sequence[Response]:
    """The responses to insert: not stored yet, and each seq once."""
    if increasing and not stored:
        return responses
    seen = set(stored)
    out = []
    for r in responses:
        if r.seq not in seen:
            seen.add(r.seq)
            out.append(r)
    return out


def _num(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _health(status: Mapping[str, Any]) -> tuple[Any, ...]:
    log = status.get("log")
    log = log if isinstance(log, Mapping) else {}
    clock = status.get("clock")
    clock = clock if isinstance(clock, Mapping) else {}
    fill = log.get("fs_fill")
    reset = status.get("reset_cause")
    return (
        _num(log.get("stored")), _num(log.get("unacked")), _num(log.get("dropped")),
        _num(log.get("corrupt")),
        float(fill) if isinstance(fill, int | float) and not isinstance(fill, bool) else None,
        _num(status.get("boot")), reset if isinstance(reset, str) else None,
        _num(status.get("crashes")),
        None if "known" not in clock else int(bool(clock.get("known"))),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


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
    guard: Callable[[sqlite3.Connection], None] | None = None,
) -> tuple[int, int]:
    """Store one sync's responses, anchors and device status in ONE transaction and
    commit; return (new, duplicates). `latest_sync()` then tells the rest. Inside a
    `write_transaction` the caller opened, the batch is a savepoint of it instead and is
    committed with it.

    `guard(conn)` runs first inside that transaction (the server checks and advances a
    request nonce there): if it raises, nothing of this batch is stored."""
    if not device_id:
        raise DeskPulseError("a device without an id cannot be stored")
    at = int(now if now is not None else time.time())
    try:
        with savepoint(conn) if conn.in_transaction else write_transaction(conn):
            return _store(conn, device_id, responses, anchors, status, transport, proto,
                          at, guard)
    except sqlite3.IntegrityError as exc:
        raise DeskPulseError(f"responses of {device_id} not stored: {exc}") from exc


def _store(conn: sqlite3.Connection, device_id: str, responses: Sequence[Response],
           anchors: Iterable[Anchor], status: Mapping[str, Any], transport: str,
           proto: int | None, at: int,
           guard: Callable[[sqlite3.Connection], None] | None) -> tuple[int, int]:
    status_json = json.dumps(status, sort_keys=True, separators=(",", ":"))
    if guard is not None:
        guard(conn)
    conn.execute(
        """INSERT INTO devices (device_id, board, firmware, proto, first_seen, last_sync,
                                last_status)
           VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (device_id) DO UPDATE SET
               board = coalesce(excluded.board, board),
               firmware = coalesce(excluded.firmware, firmware),
               proto = coalesce(excluded.proto, proto),
               last_sync = excluded.last_sync, last_status = excluded.last_status""",
        (device_id, _text(status.get("board")), _text(status.get("firmware")), proto, at,
         at, status_json),
    )
    cur = conn.execute(
        """INSERT INTO syncs (device_id, at, transport, received, new, duplicates,
                              time_unknown, stored, unacked, dropped, corrupt, fill, boot,
                              reset_cause, crashes, clock_known, status)
           VALUES (?, ?, ?, ?, 0, 0, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (device_id, at, transport, len(responses), *_health(status), status_json),
    )
    sync_id = int(cur.lastrowid or 0)
    increasing = _increasing(responses)
    stored = _stored_namesakes(conn, device_id, responses, increasing)
    clashes = _conflicts(responses, stored)
    if clashes:
        raise ConflictError(
            f"device {device_id} sent {len(clashes)} responses (seq {clashes[0]}..."
            f"{clashes[-1]}) that differ from the stored ones with the same numbers: "
            "its log was probably erased and renumbered. Nothing was stored. Give the "
            "device a new device_id (sync --config) so its records keep apart."
        )
    # Before anything new lands, so that a rebuild (new zone, or rollups never
    # built) covers exactly the rows stored so far.
    zone = rollups.ensure_zone(conn, device_id)
    anchor_rows = _anchor_rows(conn, device_id, anchors)
    anchored = {row[1] for row in anchor_rows}
    before = {boot: _boot_shift(conn, device_id, boot) for boot in anchored}
    # The device lists anchors oldest first; a later one at the same second wins.
    conn.executemany(
        "INSERT OR REPLACE INTO anchors VALUES (?, ?, ?, ?, ?)", anchor_rows)
    fresh = _new_ones(responses, stored, increasing)
    shifts = {boot: _boot_shift(conn, device_id, boot)
              for boot in anchored.union(r.boot for r in fresh)}
    changes = [rollups.Changes.empty()]
    # Stored rows move only in boots whose shift this batch changed (a first anchor, a
    # clock correction), and before the new rows go in: those get their place as they
    # are inserted. An anchor that agrees with the last one rewrites nothing.
    _place(conn, device_id, {b: shifts[b] for b in sorted(anchored) if shifts[b] != before[b]},
           changes)
    # The hottest line of a sync: plain attribute reads (latency_ds inlined; bools
    # bind as 0/1), one tuple per response. `shift` (walrus) is the boot's placement:
    # the device's stamp stays in device_wall either way.
    rows = [(device_id, r.seq, r.rating, r.scale, r.told_next, round(r.latency_s * 10),
             r.rapid, r.closed, r.boot, r.uptime_s, r.wall,
             r.wall if (shift := shifts[r.boot]) is None else r.uptime_s + shift,
             "anchor" if shift is not None else None if r.wall is None else "device",
             r.config_version, sync_id)
            for r in fresh]
    # Duplicates were left out above (they must not count in the rollups); the
    # conflict clause stays as a guard. ON CONFLICT on the key only: OR IGNORE would
    # also skip rows that break a CHECK.
    cur = conn.executemany(
        """INSERT INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (device_id, seq) DO NOTHING""", rows)
    new = max(cur.rowcount, 0)
    if new != len(rows):
        raise RuntimeError(f"{len(rows)} new responses of {device_id}, {new} inserted")
    unknown = 0
    if rows:
        columns = list(zip(*rows, strict=True))
        changes[0] = rollups.Changes.from_columns(
            columns[11], columns[2], columns[3], columns[4], columns[6], columns[7])
        unknown = columns[11].count(None)
    rollups.apply(conn, device_id, zone, rollups.Changes.join(changes))
    conn.execute(
        "UPDATE syncs SET new = ?, duplicates = ?, time_unknown = ? WHERE sync_id = ?",
        (new, len(responses) - new, unknown, sync_id))
    return new, len(responses) - new


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
        moved = []
        relabelled = []
        for seq, wall, source, uptime_s, *rest in conn.execute(
                # Without statistics SQLite may prefer the primary key, which would read
                # every response of the device.
                """SELECT seq, wall, time_source, uptime_s, rating, scale, told_next,
                          rapid, closed
                   FROM responses INDEXED BY responses_by_boot
                   WHERE device_id = ? AND boot = ?""",
                (device_id, boot)):
            now = uptime_s + shift
            if wall != now:
                moved.append((seq, wall, now, *rest))
            elif source != "anchor":  # the device's clock was right: only the label
                relabelled.append(seq)
        if relabelled:
            conn.executemany(
                "UPDATE responses SET time_source = 'anchor' WHERE device_id = ? AND seq = ?",
                [(device_id, seq) for seq in relabelled])
        if not moved:
            continue
        conn.executemany(
            """UPDATE responses SET wall = ?, time_source = 'anchor'
               WHERE device_id = ? AND seq = ?""",
            [(m[2], device_id, m[0]) for m in moved])
        _, old, new, ratings, scales, tolds, rapid, closed = zip(*moved, strict=True)
        changes.append(rollups.Changes.from_columns(old, ratings, scales, tolds, rapid,
                                                    closed, weight=-1))
        changes.append(rollups.Changes.from_columns(new, ratings, scales, tolds, rapid,
                                                    closed))


# -- reading ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    device_id: str
    name: str | None
    location: str | None
    time_zone: str | None
    board: str | None
    firmware: str | None
    last_sync: int | None
    syncs: int
    responses: int
    time_unknown: int
    last_seq: int | None
    fill: float | None
    unacked: int | None
    dropped: int | None
    corrupt: int | None
    boot: int | None
    reset_cause: str | None
    crashes: int | None
    clock_known: bool | None
    transport: str | None


def devices(conn: sqlite3.Connection) -> list[DeviceHealth]:
    """Every known device with its latest sync's health, by id."""
    rows = conn.execute(
        """SELECT d.device_id, d.name, d.location, d.time_zone, d.board, d.firmware,
                  d.last_sync,
                  (SELECT count(*) FROM syncs WHERE device_id = d.device_id),
                  (SELECT count(*) FROM responses WHERE device_id = d.device_id),
                  (SELECT count(*) FROM responses WHERE device_id = d.device_id
                                                    AND wall IS NULL),
                  (SELECT max(seq) FROM responses WHERE device_id = d.device_id),
                  s.fill, s.unacked, s.dropped, s.corrupt, s.boot, s.reset_cause, s.crashes,
                  s.clock_known, s.transport
           FROM devices d
           LEFT JOIN syncs s ON s.sync_id = (
               SELECT max(sync_id) FROM syncs WHERE device_id = d.device_id)
           ORDER BY d.device_id""").fetchall()
    names = [f.name for f in fields(DeviceHealth)]
    out = []
    for row in rows:
        values = dict(zip(names, row, strict=True))
        if values["clock_known"] is not None:
            values["clock_known"] = bool(values["clock_known"])
        out.append(DeviceHealth(**values))
    return out


def last_seq(conn: sqlite3.Connection, device_id: str) -> int | None:
    row = conn.execute(
        "SELECT max(seq) FROM responses WHERE device_id = ?", (device_id,)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


@dataclass(frozen=True, slots=True)
class SyncRecord:
    sync_id: int
    at: int
    transport: str
    received: int
    new: int
    duplicates: int
    time_unknown: int  # of the new responses, still unplaced right after this sync
    dropped: int | None
    fill: float | None
    status: dict[str, Any]


def latest_sync(conn: sqlite3.Connection, device_id: str) -> SyncRecord | None:
    """The device's most recent recorded sync."""
    row = conn.execute(
        """SELECT sync_id, at, transport, received, new, duplicates, time_unknown, dropped,
                  fill, status
           FROM syncs WHERE device_id = ? ORDER BY sync_id DESC LIMIT 1""",
        (device_id,)).fetchone()
    if row is None:
        return None
    return SyncRecord(*row[:9], status=json.loads(row[9]))


def count_time_unknown(conn: sqlite3.Connection, device_id: str | None = None) -> int:
    if device_id is None:
        row = conn.execute("SELECT count(*) FROM responses WHERE wall IS NULL").fetchone()
    else:
        row = conn.execute(
            "SELECT count(*) FROM responses WHERE device_id = ? AND wall IS NULL",
            (device_id,)).fetchone()
    return int(row[0])


def responses_of(conn: sqlite3.Connection, device_id: str) -> list[dict[str, Any]]:
    """A device's stored responses as dicts, in seq order (for tests and tools)."""
    cur = conn.execute(
        "SELECT * FROM responses WHERE device_id = ? ORDER BY seq", (device_id,))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
