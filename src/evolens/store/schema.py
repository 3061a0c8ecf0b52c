"""The on-disk format of one run directory, and how to connect to it.

A run directory is self-describing and can be copied as a whole::

    run_dir/
      runs.sqlite      (+ -wal, -shm)  runs, sessions, snapshots, scalars, events, references, array index
      arrays/ab/<sha256>.npy           content-addressed arrays (samples, labels, probe ids, latents, ...)
      writer.lock                      held (flock) by the live capturing process, if any

SQLite runs in WAL mode so that readers (CLI, dashboard, analyses) never block the training process and never
see a half-written transaction. ``synchronous=NORMAL`` keeps a commit cheap (no fsync per commit) while a
killed process still loses no committed transaction; only an OS crash can lose the last commits, never
corrupt the file. Triggers make every table append-only: rows are never updated or deleted.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import NotARunError

DB_NAME = "runs.sqlite"
ARRAYS_DIR = "arrays"
LOCK_NAME = "writer.lock"
FORMAT_NAME = "evolens-run"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000

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
CREATE INDEX IF NOT EXISTS events_by_step ON events(step);
"""

_APPEND_ONLY = ("runs", "sessions", "arrays", "snapshots", "snapshot_arrays", "scalars", "events", "refs", "features")


def _append_only_triggers() -> str:
    parts = []
    for table in _APPEND_ONLY:
        for op in ("UPDATE", "DELETE"):
            parts.append(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'evolens run store is append-only: {op} on {table} refused'); END;"
            )
    return "\n".join(parts)


def _configure(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=ON")


def connect_new(run_dir: Path) -> sqlite3.Connection:
    """Create (if needed) and open the database of ``run_dir`` for writing, with the schema in place."""
    conn = sqlite3.connect(run_dir / DB_NAME, isolation_level=None, check_same_thread=False)
    _configure(conn)
    conn.execute("PRAGMA journal_mode=WAL")
    ensure_schema(conn)
    check_format(conn, run_dir)
    return conn


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create every table, index and append-only trigger that is missing (idempotent; adds tables that newer
    evolens versions introduced to runs written by older ones, never changes existing ones)."""
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in (_TABLES + _append_only_triggers()).split(";\n"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('format', ?)", (FORMAT_NAME,))
        conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def connect_existing(run_dir: Path, *, readonly: bool) -> sqlite3.Connection:
    """Open the database of an existing run; raise NotARunError when ``run_dir`` does not hold one."""
    db = run_dir / DB_NAME
    if not db.is_file():
        raise NotARunError(
            f"run: expected an evolens run directory containing {DB_NAME}, received {str(run_dir)!r} "
            f"({'no such directory' if not run_dir.exists() else 'no ' + DB_NAME + ' in it'}); "
            "runs are created by evolens.Monitor(run_dir, ...)"
        )
    uri = f"{db.resolve().as_uri()}?mode={'ro' if readonly else 'rw'}"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        _configure(conn)
        check_format(conn, run_dir)
    except sqlite3.DatabaseError as exc:
        raise NotARunError(f"run: {str(db)!r} is not a readable evolens run database ({exc})") from exc
    return conn


def check_format(conn: sqlite3.Connection, run_dir: Path) -> None:
    """Raise NotARunError unless ``conn`` holds the evolens run schema of a version this code reads."""
    try:
        rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as exc:
        raise NotARunError(f"run: {str(run_dir)!r} has a {DB_NAME} that is not an evolens run ({exc})") from exc
    if rows.get("format") != FORMAT_NAME:
        raise NotARunError(
            f"run: expected meta.format={FORMAT_NAME!r} in {str(run_dir / DB_NAME)!r}, received {rows.get('format')!r}"
        )
    version = int(rows.get("schema_version", "0"))
    if version > SCHEMA_VERSION:
        raise NotARunError(
            f"run: {str(run_dir)!r} has schema version {version}, this evolens reads up to {SCHEMA_VERSION}; "
            "upgrade evolens"
        )
