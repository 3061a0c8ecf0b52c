"""The on-disk format of one run directory: every file name, the SQL schema, its version, and migrations.

This module and the rest of ``evolens.store`` are the only code that knows the format; everything else reads
and writes runs through ``RunWriter`` and ``Run``. A run directory is self-describing and can be copied whole::

    run_dir/
      runs.sqlite      (+ -wal, -shm)  runs, sessions, snapshots, scalars, events, references, derived arrays
      arrays/ab/<sha256>.npy           content-addressed arrays (samples, probe ids, features, map coordinates, ...)
      writer.lock                      held (flock) by the live capturing process, if any
      analysis.lock, analysis.log      held (flock) by the live analysis worker, if any; its log
      report.html                      written by ``evolens report`` (optional)
      checkpoints/, thumbnails/        optional, for files that training or the views keep beside the run

SQLite runs in WAL mode so that readers (CLI, dashboard, analyses) never block the training process and never
see a half-written transaction. ``synchronous=NORMAL`` keeps a commit cheap (no fsync per commit) while a
killed process still loses no committed transaction. Triggers make every table but ``meta`` append-only.

A new run's database is built under a temporary name and linked into place in one step (see
``create_database``), so ``runs.sqlite`` exists only when it is complete: a directory whose creation was killed
holds only leftovers (``creation_leftovers``) and is not a run yet.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from ..errors import NotARunError, StoreIntegrityError
from . import events
from .files import fsync_dir, remove_dead_temporaries

DB_NAME = "runs.sqlite"
ARRAYS_DIR = "arrays"
LOCK_NAME = "writer.lock"
ANALYSIS_LOCK_NAME = "analysis.lock"
ANALYSIS_LOG_NAME = "analysis.log"
CAPTURE_END_EVENT = events.CAPTURE_END  # written when a capture session closes cleanly
REPORT_NAME = "report.html"
CHECKPOINTS_DIR = "checkpoints"
THUMBNAILS_DIR = "thumbnails"
FORMAT_NAME = "evolens-run"
SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 30_000
_CREATING_MARK = ".creating-"

# Version 1 (evolens 0.1) had every table below except ``derived`` and ``analysis_steps``; it kept derived
# arrays in ``features`` under made-up content hashes, which ``_migrate_1_to_2`` turns into typed rows.
_TABLES = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    name       TEXT NOT NULL,
    created_at REAL NOT NULL,
    config     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL,
    started_at REAL NOT NULL,
    pid        INTEGER NOT NULL,
    host       TEXT NOT NULL,
    versions   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS arrays (
    hash       TEXT PRIMARY KEY,
    path       TEXT NOT NULL,
    shape      TEXT NOT NULL,
    dtype      TEXT NOT NULL,
    nbytes     INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    step            INTEGER PRIMARY KEY,
    session_id      INTEGER NOT NULL REFERENCES sessions(id),
    wall_time       REAL NOT NULL,
    capture_seconds REAL NOT NULL,
    seed            INTEGER,
    n_samples       INTEGER NOT NULL,
    sample_shape    TEXT NOT NULL,
    n_nonfinite     INTEGER NOT NULL,
    checkpoint_path TEXT,
    checkpoint_hash TEXT,
    versions        TEXT NOT NULL,
    extra           TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshot_arrays (
    step INTEGER NOT NULL REFERENCES snapshots(step),
    name TEXT NOT NULL,
    hash TEXT NOT NULL REFERENCES arrays(hash),
    PRIMARY KEY (step, name)
);
CREATE TABLE IF NOT EXISTS scalars (
    name       TEXT NOT NULL,
    step       INTEGER NOT NULL,
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    value      REAL,
    wall_time  REAL NOT NULL,
    PRIMARY KEY (name, step, session_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    step       INTEGER,
    wall_time  REAL NOT NULL,
    kind       TEXT NOT NULL,
    level      TEXT NOT NULL,
    message    TEXT NOT NULL,
    data       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS refs (
    name        TEXT PRIMARY KEY,
    images_hash TEXT NOT NULL REFERENCES arrays(hash),
    labels_hash TEXT REFERENCES arrays(hash),
    n           INTEGER NOT NULL,
    created_at  REAL NOT NULL,
    meta        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS features (
    content_hash  TEXT NOT NULL,
    encoder_id    TEXT NOT NULL,
    features_hash TEXT NOT NULL REFERENCES arrays(hash),
    encoder       TEXT NOT NULL,
    created_at    REAL NOT NULL,
    PRIMARY KEY (content_hash, encoder_id)
);
CREATE TABLE IF NOT EXISTS derived (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL,
    encoder_id TEXT NOT NULL,
    source     TEXT NOT NULL,
    params     TEXT NOT NULL,
    step       INTEGER,
    hash       TEXT NOT NULL REFERENCES arrays(hash),
    meta       TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS analysis_steps (
    analysis   TEXT NOT NULL,
    context    TEXT NOT NULL,
    step       INTEGER NOT NULL,
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    created_at REAL NOT NULL,
    PRIMARY KEY (analysis, context, step)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_by_step ON events(step);
CREATE UNIQUE INDEX IF NOT EXISTS derived_key ON derived(kind, encoder_id, source, params, IFNULL(step, -1));
"""

_APPEND_ONLY = ("runs", "sessions", "arrays", "snapshots", "snapshot_arrays", "scalars", "events", "refs", "features",
                "derived", "analysis_steps")


def db_path(run_dir: Path) -> Path:
    """The run's SQLite database."""
    return Path(run_dir) / DB_NAME


def lock_path(run_dir: Path) -> Path:
    """The file a capturing process holds an exclusive ``flock`` on."""
    return Path(run_dir) / LOCK_NAME


def analysis_lock_path(run_dir: Path) -> Path:
    """The file a live analysis worker holds an exclusive ``flock`` on (one worker per run)."""
    return Path(run_dir) / ANALYSIS_LOCK_NAME


def analysis_log_path(run_dir: Path) -> Path:
    """Where a live analysis worker started by a Monitor writes its log (stderr)."""
    return Path(run_dir) / ANALYSIS_LOG_NAME


def report_path(run_dir: Path) -> Path:
    """Where ``evolens report`` writes the run's HTML report by default."""
    return Path(run_dir) / REPORT_NAME


def array_relative_path(digest: str) -> str:
    """Path, relative to the run directory, of the content-addressed array named ``digest``."""
    return f"{ARRAYS_DIR}/{digest[:2]}/{digest}.npy"


def creation_leftovers(run_dir: Path) -> list[Path] | None:
    """What a killed creation left in ``run_dir`` (lock file, temporary databases), or None when the directory
    holds anything else. An empty list means an empty directory. Never called on a complete run."""
    found = []
    for entry in Path(run_dir).iterdir():
        if entry.name == LOCK_NAME or entry.name.startswith(DB_NAME + _CREATING_MARK):
            found.append(entry)
        else:
            return None
    return found


def remove_stale_creations(run_dir: Path) -> int:
    """Delete temporary databases of creations whose process is dead; return how many were removed."""
    return remove_dead_temporaries(Path(run_dir).glob(f"{DB_NAME}{_CREATING_MARK}*"), _CREATING_MARK)


def _statements() -> list[str]:
    parts = [s for s in _TABLES.split(";\n") if s.strip()]
    for table in _APPEND_ONLY:
        for op in ("UPDATE", "DELETE"):
            parts.append(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'evolens run store is append-only: {op} on {table} refused'); END"
            )
    return parts


def _configure(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA synchronous=NORMAL")


def create_database(run_dir: Path, *, name: str, config_json: str) -> bool:
    """Create ``run_dir/runs.sqlite`` atomically: schema, format marker and the run row are written to a
    temporary file, fsynced, then hard-linked into place (which fails instead of replacing an existing file).

    Returns False when another process created the database first. A process killed at any moment leaves
    either no ``runs.sqlite`` (only leftovers, removed by the next creation) or a complete one.
    """
    run_dir = Path(run_dir)
    tmp = run_dir / f"{DB_NAME}{_CREATING_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("BEGIN")
            for statement in _statements():
                conn.execute(statement)
            conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)",
                             [("format", FORMAT_NAME), ("schema_version", str(SCHEMA_VERSION))])
            conn.execute("INSERT INTO runs(id, name, created_at, config) VALUES (1, ?, ?, ?)",
                         (name, time.time(), config_json))
            conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode=WAL")  # persistent in the file; the WAL is removed on close
        finally:
            conn.close()
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        try:
            os.link(tmp, db_path(run_dir))
        except FileExistsError:
            return False
        fsync_dir(run_dir)
        return True
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-journal"), tmp.with_name(tmp.name + "-wal"),
                         tmp.with_name(tmp.name + "-shm")):
            leftover.unlink(missing_ok=True)



def connect(run_dir: Path, *, readonly: bool) -> sqlite3.Connection:
    """Open the database of an existing run (migrating a version-1 run once); raise NotARunError when
    ``run_dir`` does not hold one."""
    db = db_path(run_dir)
    if not db.is_file():
        raise NotARunError(
            f"run: expected an evolens run directory containing {DB_NAME}, received {str(run_dir)!r} "
            f"({'no such directory' if not Path(run_dir).exists() else 'no ' + DB_NAME + ' in it'}); "
            "runs are created by evolens.Monitor(run_dir, ...)"
        )
    conn, version = _open_checked(db, run_dir, readonly=readonly)
    if version < SCHEMA_VERSION:  # once per run written by an older evolens
        conn.close()
        _migrate(db, run_dir, version)
        conn, version = _open_checked(db, run_dir, readonly=readonly)
    return conn


class ReadConnection:
    """A reader's connection that creates nothing in the run directory and reads runs on read-only media.

    SQLite's ``mode=ro`` still creates the ``-wal``/``-shm`` files of a WAL database (and fails where it cannot).
    A run no writer has open has no ``-wal`` file: it is read with ``immutable=1`` (no lock, no side file). When
    a ``-wal`` file exists — a writer is live, or was killed — the reader joins it with ``mode=ro``; where even that
    cannot open (a read-only medium), ``immutable=1`` reads the last checkpointed state. The connection is
    re-opened in ``mode=ro`` as soon as a writer appears, so a long-lived ``Run`` keeps following the run.
    ``execute`` turns a damaged database (``sqlite3.DatabaseError`` other than a busy/locked one) into a
    ``StoreIntegrityError`` naming the file.
    """

    def __init__(self, db: Path) -> None:
        self.db = db
        self._wal = db.with_name(db.name + "-wal")
        self._conn: sqlite3.Connection | None = None
        self.immutable = False
        self._open()

    def _open(self) -> None:
        uri = self.db.resolve().as_uri()
        attempts = ["immutable=1"] if not self._wal.exists() else ["mode=ro", "immutable=1"]
        error: Exception | None = None
        for query in attempts:
            try:
                conn = sqlite3.connect(f"{uri}?{query}", uri=True, isolation_level=None, check_same_thread=False)
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            except sqlite3.DatabaseError as exc:
                error = exc
                continue
            if self._conn is not None:
                self._conn.close()
            self._conn, self.immutable = conn, query == "immutable=1"
            return
        raise NotARunError(f"run: {str(self.db)!r} is not a readable evolens run database ({error})")

    def execute(self, sql: str, args: tuple | list = ()) -> sqlite3.Cursor:
        if self._conn is None:
            raise NotARunError(f"run: {str(self.db)!r} is closed")
        if self.immutable and self._wal.exists() and not self._conn.in_transaction:
            self._open()  # a writer started: follow its commits
        try:
            return self._conn.execute(sql, args)
        except sqlite3.OperationalError:
            raise
        except sqlite3.DatabaseError as exc:
            raise StoreIntegrityError(f"run database {str(self.db)!r} is damaged ({exc}); copy out what "
                                      "`evolens verify` still reads") from exc

    @property
    def in_transaction(self) -> bool:
        return self._conn is not None and self._conn.in_transaction

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _open_checked(db: Path, run_dir: Path, *, readonly: bool) -> tuple[sqlite3.Connection, int]:
    uri = f"{db.resolve().as_uri()}?mode={'ro' if readonly else 'rw'}"
    try:
        conn = ReadConnection(db) if readonly else \
            sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    except sqlite3.DatabaseError as exc:
        raise NotARunError(f"run: {str(db)!r} is not a readable evolens run database ({exc})") from exc
    try:
        _configure(conn)
        version = _check_format(conn, run_dir)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise NotARunError(f"run: {str(db)!r} is not a readable evolens run database ({exc})") from exc
    except BaseException:
        conn.close()
        raise
    return conn, version


def _check_format(conn: sqlite3.Connection, run_dir: Path) -> int:
    """The schema version of ``conn``; NotARunError unless it holds an evolens run this code reads."""
    try:
        rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as exc:
        raise NotARunError(f"run: {str(run_dir)!r} has a {DB_NAME} that is not an evolens run ({exc})") from exc
    if rows.get("format") != FORMAT_NAME:
        raise NotARunError(
            f"run: expected meta.format={FORMAT_NAME!r} in {str(db_path(run_dir))!r}, received {rows.get('format')!r}"
        )
    version = int(rows.get("schema_version", "0"))
    if version > SCHEMA_VERSION:
        raise NotARunError(
            f"run: {str(run_dir)!r} has schema version {version}, this evolens reads up to {SCHEMA_VERSION}; "
            "upgrade evolens"
        )
    return version


def _migrate(db: Path, run_dir: Path, version: int) -> None:
    """Bring a run written by an older evolens up to ``SCHEMA_VERSION`` in one transaction (idempotent)."""
    try:
        conn = sqlite3.connect(db, isolation_level=None)
    except sqlite3.DatabaseError as exc:  # pragma: no cover
        raise NotARunError(f"run: cannot open {str(db)!r} to upgrade it ({exc})") from exc
    try:
        _configure(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            if _check_format(conn, run_dir) < SCHEMA_VERSION:  # another process may have migrated meanwhile
                for statement in _statements():
                    conn.execute(statement)
                if version < 2:
                    _migrate_1_to_2(conn)
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.OperationalError as exc:
        raise NotARunError(
            f"run: {str(run_dir)!r} was written by evolens 0.1 (schema {version}) and must be upgraded once to "
            f"schema {SCHEMA_VERSION}, which needs write access ({exc}); copy it to a writable place"
        ) from exc
    finally:
        conn.close()


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Version 1 kept FID statistics and map coordinates in ``features`` under keys ``fidstats:<hash>`` and
    ``projection:<id>:<part>``; copy every row into ``derived`` with its real kind, source and step."""
    rows = conn.execute("SELECT content_hash, encoder_id, features_hash, encoder, created_at FROM features").fetchall()
    for content_hash, encoder_id, features_hash, encoder, created_at in rows:
        kind, source, step = "features", content_hash, None
        if content_hash.startswith("fidstats:"):
            kind, source = "fid-statistics", content_hash.split(":", 1)[1]
        elif content_hash.startswith("projection:"):
            _, source, part = content_hash.split(":", 2)
            if part.startswith("step="):
                kind, step = "projection-coords", int(part[len("step="):])
            elif part == "reference":
                kind = "projection-reference-coords"
            else:
                kind = "projection-reference-labels"
        conn.execute(
            "INSERT OR IGNORE INTO derived(kind, encoder_id, source, params, step, hash, meta, created_at)"
            " VALUES (?, ?, ?, '{}', ?, ?, ?, ?)",
            (kind, encoder_id, source, step, features_hash, encoder, created_at),
        )


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the one spelling of parameters that keys derived arrays."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
