"""Append-only writer of one run directory.

``RunWriter`` is the only code that writes a run. The training process holds it through ``Monitor`` (a
*capture* session, with an exclusive lock on the run so two training scripts cannot interleave); analyses
hold one through ``Run`` (an *analysis* session, no lock, short transactions). Every snapshot is written as
arrays first (each an atomic rename), then one SQLite transaction that indexes them: a process killed at any
instant leaves either the whole snapshot or none of it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import InputError, NotARunError, RunLockedError
from .arrays import ArrayStore, StoredArray
from .schema import DB_NAME, LOCK_NAME, connect_existing, connect_new, ensure_schema

try:  # POSIX advisory lock; released by the kernel when the holder dies, even by SIGKILL.
    import fcntl
except ImportError:  # pragma: no cover - Windows: no cross-process lock, documented
    fcntl = None


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries that shape what a snapshot contains."""
    from importlib import metadata

    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("evolens", "numpy", "torch", "scipy", "scikit-learn"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def to_json(value: Any, name: str) -> str:
    """Serialise ``value`` to JSON (numpy scalars/arrays converted); raise InputError naming ``name`` otherwise."""

    def default(obj: Any) -> Any:
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, Path):
            return str(obj)
        raise TypeError(f"{type(obj).__name__} is not JSON serialisable")

    try:
        return json.dumps(value if value is not None else {}, default=default, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: expected JSON-serialisable data, received {type(value).__name__} ({exc})") from exc


def _run_dir_state(run_dir: Path) -> str:
    if not run_dir.exists():
        return "missing"
    if not run_dir.is_dir():
        return "file"
    if (run_dir / DB_NAME).exists():
        return "run"
    if any(run_dir.iterdir()):
        return "other"
    return "empty"


class RunWriter:
    """Open (creating if needed) a run directory for appending.

    Args:
        run_dir: directory of the run. Created when missing; an existing directory must be empty or a run.
        kind: ``"capture"`` (training process; takes the exclusive writer lock) or ``"analysis"``.
        name: run name stored at creation (default: the directory name).
        config: JSON-serialisable run configuration stored at creation.
        create: allow creating a new run (``False`` for analysis writers on existing runs).
        fsync_arrays: fsync array files before renaming them into place.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        *,
        kind: str = "capture",
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        create: bool = True,
        fsync_arrays: bool = True,
    ) -> None:
        if kind not in ("capture", "analysis"):
            raise InputError(f"kind: expected 'capture' or 'analysis', received {kind!r}")
        self.run_dir = Path(run_dir)
        self.kind = kind
        self._lock_handle = None
        state = _run_dir_state(self.run_dir)
        if state == "file":
            raise InputError(f"run_dir: expected a directory, received the file {str(self.run_dir)!r}")
        if state == "other":
            raise NotARunError(
                f"run_dir: expected an empty directory or an evolens run, received {str(self.run_dir)!r} "
                f"which has files but no {DB_NAME}; choose a new directory"
            )
        if state in ("missing", "empty"):
            if not create:
                raise NotARunError(f"run_dir: {str(self.run_dir)!r} is not an evolens run (no {DB_NAME})")
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if kind == "capture":
            self._acquire_lock()
        if state == "run":
            self.conn = connect_existing(self.run_dir, readonly=False)  # checks the format first
            ensure_schema(self.conn)
        else:
            self.conn = connect_new(self.run_dir)
        self.arrays = ArrayStore(self.run_dir, fsync=fsync_arrays)
        config_json = to_json(dict(config or {}), "config")
        self._begin()
        self.conn.execute(
            "INSERT OR IGNORE INTO runs(id, name, created_at, config) VALUES (1, ?, ?, ?)",
            (name or self.run_dir.resolve().name, time.time(), config_json),
        )
        self.versions = library_versions()
        cursor = self.conn.execute(
            "INSERT INTO sessions(kind, started_at, pid, host, versions) VALUES (?, ?, ?, ?, ?)",
            (kind, time.time(), os.getpid(), socket.gethostname(), json.dumps(self.versions, sort_keys=True)),
        )
        self.session_id = int(cursor.lastrowid)
        self.conn.execute("COMMIT")
        if kind == "capture":
            self.arrays.remove_stale_temporaries()

    # -- locking -------------------------------------------------------------------------------------
    def _acquire_lock(self) -> None:
        if fcntl is None:  # pragma: no cover
            return
        handle = open(self.run_dir / LOCK_NAME, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunLockedError(
                f"run_dir: {str(self.run_dir)!r} is being captured by {holder}; stop it first, "
                "or use another run directory"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._lock_handle = handle

    # -- transactions --------------------------------------------------------------------------------
    def _begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def _index_array(self, stored: StoredArray) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO arrays(hash, path, shape, dtype, nbytes, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (stored.hash, stored.path, json.dumps(list(stored.shape)), stored.dtype, stored.nbytes, time.time()),
        )

    # -- reads the writer needs ----------------------------------------------------------------------
    def captured_steps(self) -> list[int]:
        """Steps that already have a committed snapshot, ascending."""
        return [row[0] for row in self.conn.execute("SELECT step FROM snapshots ORDER BY step")]

    def first_snapshot_shape(self) -> tuple[int, ...] | None:
        """Shape of the samples of the earliest snapshot (per-run invariant), or None before the first."""
        row = self.conn.execute("SELECT sample_shape FROM snapshots ORDER BY step LIMIT 1").fetchone()
        return tuple(json.loads(row[0])) if row else None

    # -- appends -------------------------------------------------------------------------------------
    def write_snapshot(
        self,
        step: int,
        arrays: Mapping[str, np.ndarray],
        *,
        wall_time: float,
        capture_seconds: float,
        seed: int | None = None,
        n_nonfinite: int = 0,
        checkpoint_path: str | None = None,
        checkpoint_hash: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Append one snapshot: ``arrays`` must hold ``"samples"`` (n, ...) and may hold any other arrays.

        Arrays are written (atomically) before the single transaction that makes the snapshot visible.
        Raises InputError if ``step`` already has a snapshot.
        """
        samples = arrays["samples"]
        extra_json = to_json(dict(extra or {}), "extra")
        stored = {key: self.arrays.put(value, name=key) for key, value in arrays.items()}
        self._begin()
        try:
            for record in stored.values():
                self._index_array(record)
            self.conn.execute(
                "INSERT INTO snapshots(step, session_id, wall_time, capture_seconds, seed, n_samples, sample_shape,"
                " n_nonfinite, checkpoint_path, checkpoint_hash, versions, extra)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    step,
                    self.session_id,
                    wall_time,
                    capture_seconds,
                    seed,
                    int(samples.shape[0]),
                    json.dumps(list(samples.shape[1:])),
                    int(n_nonfinite),
                    checkpoint_path,
                    checkpoint_hash,
                    json.dumps(self.versions, sort_keys=True),
                    extra_json,
                ),
            )
            self.conn.executemany(
                "INSERT INTO snapshot_arrays(step, name, hash) VALUES (?, ?, ?)",
                [(step, key, record.hash) for key, record in stored.items()],
            )
            self.conn.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            self.conn.execute("ROLLBACK")
            raise InputError(f"step: a snapshot at step {step} is already stored in this run") from exc
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def write_scalars(self, step: int, values: Mapping[str, float], wall_time: float | None = None) -> list[str]:
        """Append scalar values at ``step`` in one transaction; return the names whose value is not finite.

        NaN is stored as SQL NULL and read back as NaN. Raises InputError if this session already wrote a name
        at this step, or a value is not a real number.
        """
        now = time.time() if wall_time is None else wall_time
        rows, nonfinite = [], []
        for key, value in values.items():
            if not isinstance(key, str) or not key:
                raise InputError(f"scalar name: expected a non-empty string, received {key!r}")
            try:
                number = float(value.item() if hasattr(value, "item") else value)
            except (TypeError, ValueError) as exc:
                raise InputError(f"{key}: expected a real number, received {type(value).__name__} {value!r}") from exc
            if not math.isfinite(number):
                nonfinite.append(key)
            rows.append((key, step, self.session_id, None if math.isnan(number) else number, now))
        if not rows:
            return nonfinite
        self._begin()
        try:
            self.conn.executemany(
                "INSERT INTO scalars(name, step, session_id, value, wall_time) VALUES (?, ?, ?, ?, ?)", rows
            )
            self.conn.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            self.conn.execute("ROLLBACK")
            raise InputError(
                f"scalars: {sorted(values)} at step {step} were already logged in this session; "
                "log each name once per step"
            ) from exc
        return nonfinite

    def write_event(
        self,
        kind: str,
        message: str,
        *,
        step: int | None = None,
        level: str = "info",
        data: Mapping[str, Any] | None = None,
    ) -> int:
        """Append an event (alert, warning, intervention, ...) and return its id."""
        if level not in ("debug", "info", "warning", "error", "alert"):
            raise InputError(f"level: expected one of debug/info/warning/error/alert, received {level!r}")
        data_json = to_json(dict(data or {}), "data")
        self._begin()
        cursor = self.conn.execute(
            "INSERT INTO events(session_id, step, wall_time, kind, level, message, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (self.session_id, step, time.time(), kind, level, message, data_json),
        )
        self.conn.execute("COMMIT")
        return int(cursor.lastrowid)

    def write_reference(
        self,
        name: str,
        images: np.ndarray,
        labels: np.ndarray | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> bool:
        """Store a reference data set under ``name``; return False when the same content is already stored.

        Raises InputError when ``name`` exists with different content (references are never replaced).
        """
        meta_json = to_json(dict(meta or {}), "meta")
        images_rec = self.arrays.put(images, name="images")
        labels_rec = self.arrays.put(labels, name="labels") if labels is not None else None
        self._begin()
        try:
            row = self.conn.execute("SELECT images_hash, labels_hash FROM refs WHERE name = ?", (name,)).fetchone()
            new_hashes = (images_rec.hash, labels_rec.hash if labels_rec else None)
            if row is not None:
                self.conn.execute("ROLLBACK")
                if tuple(row) == new_hashes:
                    return False
                raise InputError(
                    f"name: a reference named {name!r} with other content is already stored in this run; "
                    "references are append-only, choose another name"
                )
            self._index_array(images_rec)
            if labels_rec:
                self._index_array(labels_rec)
            self.conn.execute(
                "INSERT INTO refs(name, images_hash, labels_hash, n, created_at, meta) VALUES (?, ?, ?, ?, ?, ?)",
                (name, *new_hashes, int(images.shape[0]), time.time(), meta_json),
            )
            self.conn.execute("COMMIT")
        except InputError:
            raise
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        return True

    def write_features(
        self, content_hash: str, encoder_id: str, features: np.ndarray, encoder: Mapping[str, Any]
    ) -> None:
        """Cache ``features`` (n, d) of the array ``content_hash`` under ``encoder_id`` (first write wins)."""
        record = self.arrays.put(features, name="features")
        encoder_json = to_json(dict(encoder), "encoder")
        self._begin()
        try:
            self._index_array(record)
            self.conn.execute(
                "INSERT OR IGNORE INTO features(content_hash, encoder_id, features_hash, encoder, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (content_hash, encoder_id, record.hash, encoder_json, time.time()),
            )
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the database and release the writer lock. Safe to call twice."""
        if getattr(self, "conn", None) is not None:
            self.conn.close()
            self.conn = None
        if self._lock_handle is not None:
            self._lock_handle.close()  # closing the descriptor releases the flock
            self._lock_handle = None

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
