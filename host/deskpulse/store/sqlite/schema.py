"""The SQLite store's file, schema and transactions: devices, responses, time anchors,
sync history and rollups in one file.

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
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from deskpulse.errors import DeskPulseError
from deskpulse.store.base import CLOCK_TOLERANCE_S, StoreError, default_db_path
from deskpulse.store.sqlite import accounts, desired_config, health, notify, rollup_tables, sites

BUSY_TIMEOUT_MS = 30_000
MMAP_BYTES = 1 << 40
"""More than any database: SQLite maps what its compiled maximum allows."""

# CLOCK_TOLERANCE_S is written into the index below: changing it needs a migration that
# rebuilds that index.
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
        *rollup_tables.SCHEMA,
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
    # 5: responses without a time get the interval their boot's anchored neighbours allow
    # (store/intervals.py, issue 13); NULL where there is none, and for every response
    # with a time. A device's old responses get theirs at its next sync that brings a
    # response without a time or a boot's first anchor.
    (
        "ALTER TABLE responses ADD COLUMN wall_low INTEGER",
        "ALTER TABLE responses ADD COLUMN wall_high INTEGER",
    ),
    # 6: sites (issue 16): organisation > region > store, each with its own time zone and
    # opening hours that the kiosks below inherit; a kiosk is in a store. Each free-text
    # location becomes a store of the organisation "default" and its kiosks are put in it.
    sites.SCHEMA,
    # 7: config over the air (issue 16, item 6): the layers people set and each kiosk's
    # desired config merged from them (desired_config.py).
    desired_config.SCHEMA,
    # 8: ingest speed (issue 16 item 8): the boot index carries uptime_s, so the highest
    # uptime of a boot (the reach that bounds unplaced responses, at most syncs) is one
    # index probe instead of a read of every response of the boot; it serves the
    # placement's (device_id, boot) lookups as before.
    (
        "DROP INDEX responses_by_boot",
        "CREATE INDEX responses_by_boot ON responses(device_id, boot, uptime_s)",
    ),
    # accounts (issue 17): the dashboard's users and the secret that signs their
    # sessions (accounts.py).
    accounts.SCHEMA,
    # device health (issue 17): refused pushes counted per (claimed id, reason, hour), and
    # the index that finds a kiosk's latest serial sync (health.py).
    health.SCHEMA,
    # notify (issue 17): alert rules per site, the log of what each destination was told,
    # and the lease one notifying process holds (notify.py).
    notify.SCHEMA,
    # digest record (issue 17): the weekly digests delivered, by ISO week, recipient and
    # site, so that none is sent twice (notify.py).
    notify.DIGEST_SCHEMA,
    # month responses (issue 17): each month rollup row's number of responses beside its
    # counters, filled here for the rows there are (rollup_tables.py).
    rollup_tables.MONTH_RESPONSES,
    # boots (issue 16 item 8): each boot's span of seqs and its highest uptime, kept by
    # ingest (batches.boot_spans), replace the index of every response by boot, whose
    # upkeep was about a quarter of SQLite's work per response stored: placement reads a
    # boot's responses through the primary key in its span, and a boot's reach here.
    (
        """CREATE TABLE boots (
            device_id    TEXT NOT NULL REFERENCES devices(device_id),
            boot         INTEGER NOT NULL,
            first_seq    INTEGER NOT NULL,  -- the boot's lowest and highest seq stored
            last_seq     INTEGER NOT NULL,
            max_uptime_s INTEGER NOT NULL,  -- its latest response's uptime
            PRIMARY KEY (device_id, boot)
        ) WITHOUT ROWID""",
        # Read from the index that goes (it covers seq, the table's key).
        """INSERT INTO boots
               SELECT device_id, boot, min(seq), max(seq), max(uptime_s) FROM responses
               GROUP BY device_id, boot""",
        "DROP INDEX responses_by_boot",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

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
        # Pages read through a memory map rather than a read() each: a whole-range report
        # reads 25 MB of month rows, most on overflow pages (issue 17: 0.21 s to 0.07 s
        # for the 10M chain's). SQLite caps the map at its own maximum (2 GiB).
        conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
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


def failure(exc: sqlite3.Error, path: str | os.PathLike[str] | None = None) -> StoreError:
    """What went wrong with the database, as a sentence saying what to do. Every command
    turns SQLite's errors into these (SqliteStore wraps every method)."""
    where = f" {path}" if path is not None else ""
    named = f":{where}" if where else ""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in _BUSY:
        return StoreError(
            f"another program holds the database{where} (a sync, `deskpulse serve`, a "
            f"report?) and it stayed locked ({exc}): wait for it or stop it, then run the "
            "command again", busy=True)
    if primary == sqlite3.SQLITE_READONLY:
        return StoreError(
            f"the database file is read-only{named} ({exc}); give your user write "
            "access to it and its folder, or choose another file with --db")
    if primary in _DAMAGED:
        return StoreError(
            f"the database is damaged{named} ({exc}); restore a backup, or move "
            "the file away to start a new database")
    if primary == sqlite3.SQLITE_FULL:
        return StoreError(f"the disk holding the database{where} is full ({exc})")
    if primary == sqlite3.SQLITE_CANTOPEN:
        return StoreError(f"cannot open the database{where} ({exc}): check that its "
                              "folder exists and that you may write there")
    return StoreError(f"the database{where} failed: {exc}")


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


