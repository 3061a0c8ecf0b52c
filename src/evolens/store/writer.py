"""Append-only writer of one run directory.

``RunWriter`` is the only code that writes a run. The training process holds it through ``Monitor`` (a
*capture* session, with an exclusive lock on the run so two training scripts cannot interleave); analyses
hold one through ``Run`` (an *analysis* session, no lock, short transactions).

Every write goes through ``transaction()``, which rolls back on *any* exception, so a failed write never
leaves the database locked for the training process. Inputs are validated before a transaction starts.
Every snapshot is written as arrays first (each an atomic rename), then one transaction that indexes them:
a process killed at any instant leaves either the whole snapshot or none of it. Creating a run is atomic too
(``layout.create_database``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import socket
import sqlite3
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from .._validation import check_name, check_step, count_nonfinite, describe, to_numpy
from ..errors import EvolensError, InputError, NotARunError, RunLockedError
from . import layout
from .arrays import ArrayStore, StoredArray
from .derived import DERIVED_KINDS, check_kind

try:  # POSIX advisory lock; released by the kernel when the holder dies, even by SIGKILL.
    import fcntl
except ImportError:  # pragma: no cover - Windows: no cross-process lock, documented
    fcntl = None

EVENT_LEVELS = ("debug", "info", "warning", "error", "alert")


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


def _mapping(value: Any, name: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(f"{name}: expected a mapping (dict) or None, received {describe(value)}")
    return dict(value)


def check_snapshot_arrays(
    arrays: Mapping[str, Any], sample_shape: tuple[int, ...] | None = None
) -> dict[str, np.ndarray]:
    """The snapshot invariants every writer obeys: ``samples`` (n, ...) numeric with n >= 1, ``probe_ids``
    (n,) unique strings (``sample:i`` when the caller has none), every other array with n rows, and the
    sample shape of the run's earlier snapshots (``sample_shape``, without the batch axis)."""
    if not isinstance(arrays, Mapping) or "samples" not in arrays:
        keys = sorted(arrays) if isinstance(arrays, Mapping) else describe(arrays)
        raise InputError(f"arrays: expected a mapping with a 'samples' array, received {keys}")
    out = {key: to_numpy(value, f"arrays[{key!r}]") for key, value in arrays.items()}
    samples = out["samples"]
    if samples.ndim < 2 or samples.shape[0] == 0:
        raise InputError(f"samples: expected shape (n, ...) with n >= 1 and at least 2 dimensions, "
                         f"received shape={samples.shape}")
    if not (np.issubdtype(samples.dtype, np.number) or samples.dtype == bool):
        raise InputError(f"samples: expected a numeric dtype, received dtype={samples.dtype}")
    if sample_shape is not None and tuple(samples.shape[1:]) != tuple(sample_shape):
        raise InputError(
            f"samples: expected shape (n, {', '.join(map(str, sample_shape))}) as in earlier snapshots of this run, "
            f"received shape={samples.shape}"
        )
    n = samples.shape[0]
    ids = out.get("probe_ids")
    out["probe_ids"] = np.array([f"sample:{i}" for i in range(n)]) if ids is None else np.asarray(ids).astype(str)
    if out["probe_ids"].ndim == 1 and len(set(out["probe_ids"].tolist())) != out["probe_ids"].shape[0]:
        raise InputError(f"probe_ids: expected {n} distinct ids, received duplicates in shape={out['probe_ids'].shape}")
    for key, value in out.items():
        if key != "samples" and (value.ndim == 0 or value.shape[0] != n):
            raise InputError(f"arrays[{key!r}]: expected {n} rows (one per sample), received shape={value.shape}")
    return out


def _run_dir_state(run_dir: Path) -> str:
    if not run_dir.exists():
        return "missing"
    if not run_dir.is_dir():
        return "file"
    if layout.db_path(run_dir).exists():
        return "run"
    return "other" if layout.creation_leftovers(run_dir) is None else "new"


class RunWriter:
    """Open (creating if needed) a run directory for appending.

    Args:
        run_dir: directory of the run. Created when missing; an existing directory must be empty, a run, or
            what a killed creation left (a lock file, a temporary database), which is cleaned up.
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
        if not isinstance(run_dir, (str, os.PathLike)):
            raise InputError(f"run_dir: expected a path, received {describe(run_dir)}")
        self.run_dir = Path(run_dir)
        self.kind = kind
        self.conn: sqlite3.Connection | None = None
        self._lock_handle = None
        self.mirrors: list[Any] = []
        config_json = to_json(_mapping(config, "config"), "config")
        if name is not None:
            check_name(name, "name")
        state = _run_dir_state(self.run_dir)
        if state == "file":
            raise InputError(f"run_dir: expected a directory, received the file {str(self.run_dir)!r}")
        if state == "other":
            raise NotARunError(
                f"run_dir: expected an empty directory or an evolens run, received {str(self.run_dir)!r} "
                f"which has files but no {layout.DB_NAME}; choose a new directory"
            )
        if state != "run" and not create:
            raise NotARunError(f"run_dir: {str(self.run_dir)!r} is not an evolens run (no {layout.DB_NAME})")
        try:
            if state != "run":
                self.run_dir.mkdir(parents=True, exist_ok=True)
            if kind == "capture":
                self._acquire_lock()
                from .files import network_filesystem

                try:  # advisory (WAL needs every reader on this host: say so once); never a reason not to capture
                    network_filesystem(self.run_dir, warn=True)
                except Exception:  # pragma: no cover - an unreadable or unparsable mount table
                    pass
            if state != "run" and not layout.db_path(self.run_dir).exists():
                layout.create_database(self.run_dir, name=name or self.run_dir.resolve().name, config_json=config_json)
            self.conn = layout.connect(self.run_dir, readonly=False)
            self.arrays = ArrayStore(self.run_dir, fsync=fsync_arrays)
            self.versions = library_versions()
            with self.transaction() as conn:
                cursor = conn.execute(
                    "INSERT INTO sessions(kind, started_at, pid, host, versions) VALUES (?, ?, ?, ?, ?)",
                    (kind, time.time(), os.getpid(), socket.gethostname(), json.dumps(self.versions, sort_keys=True)),
                )
            self.session_id = int(cursor.lastrowid)
        except BaseException:
            self.close()
            raise
        if kind == "capture":
            self.arrays.remove_stale_temporaries()
            layout.remove_stale_creations(self.run_dir)

    # -- locking -------------------------------------------------------------------------------------
    def _acquire_lock(self) -> None:
        if fcntl is None:  # pragma: no cover
            return
        handle = open(layout.lock_path(self.run_dir), "a+")
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
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed when the block ends, rolled back on *any* exception (including a
        failing COMMIT), so no failure leaves the database locked for other processes."""
        if self.conn is None:
            raise EvolensError(f"run writer of {str(self.run_dir)!r} is closed")
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                try:
                    self.conn.execute("ROLLBACK")
                except sqlite3.Error:  # pragma: no cover - the original exception is the one worth raising
                    pass
            raise

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

    def last_snapshot_extra(self) -> dict[str, Any]:
        """The ``extra`` mapping of the latest snapshot ({} before the first)."""
        row = self.conn.execute("SELECT extra FROM snapshots ORDER BY step DESC LIMIT 1").fetchone()
        return json.loads(row[0]) if row else {}

    def reference_names(self) -> list[str]:
        """Names of the stored reference sets."""
        return [r[0] for r in self.conn.execute("SELECT name FROM refs ORDER BY name")]

    def last_event_id(self) -> int:
        """The id of the newest event (0 before the first)."""
        return int(self.conn.execute("SELECT IFNULL(MAX(id), 0) FROM events").fetchone()[0])

    def alert_events_since(self, event_id: int) -> list[tuple[int, int | None, str, str, dict]]:
        """``(id, step, kind, message, data)`` of the alert events newer than ``event_id``: one indexed query,
        cheap enough for every training step."""
        rows = self.conn.execute("SELECT id, step, kind, message, data FROM events WHERE id > ? AND level = 'alert'"
                                 " ORDER BY id", (event_id,)).fetchall()
        return [(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    def count_analysed(self, analysis: str, context: Mapping[str, Any]) -> int:
        """How many snapshots ``analysis`` has done in ``context`` (the live worker's progress)."""
        row = self.conn.execute("SELECT COUNT(*) FROM analysis_steps WHERE analysis = ? AND context = ?",
                                (analysis, layout.canonical_json(dict(context)))).fetchone()
        return int(row[0])

    def event_kinds(self, prefix: str = "") -> set[str]:
        """Kinds of the events already in the run that start with ``prefix``."""
        rows = self.conn.execute("SELECT DISTINCT kind FROM events WHERE substr(kind, 1, ?) = ?", (len(prefix), prefix))
        return {kind for (kind,) in rows}

    # -- appends -------------------------------------------------------------------------------------
    def write_snapshot(
        self,
        step: int,
        arrays: Mapping[str, Any],
        *,
        wall_time: float | None = None,
        capture_seconds: float = 0.0,
        seed: int | None = None,
        checkpoint_path: str | None = None,
        checkpoint_hash: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """Append one snapshot and return its arrays as stored (``probe_ids`` included).

        ``arrays`` must hold ``"samples"`` (n, ...) and may hold ``"probe_ids"`` (n,) (default ``sample:i``),
        ``"labels"`` (n,) and any other arrays with n rows (see ``check_snapshot_arrays``). Arrays are written
        (atomically) before the single transaction that makes the snapshot visible. Raises InputError when
        ``step`` already has a snapshot or an invariant does not hold.
        """
        step = check_step(step)
        checked = check_snapshot_arrays(arrays, self.first_snapshot_shape())
        samples = checked["samples"]
        extra_json = to_json(_mapping(extra, "extra"), "extra")
        stored = {key: self.arrays.put(value, name=key) for key, value in checked.items()}
        try:
            with self.transaction() as conn:
                for record in stored.values():
                    self._index_array(record)
                conn.execute(
                    "INSERT INTO snapshots(step, session_id, wall_time, capture_seconds, seed, n_samples, sample_shape,"
                    " n_nonfinite, checkpoint_path, checkpoint_hash, versions, extra)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (step, self.session_id, time.time() if wall_time is None else float(wall_time),
                     float(capture_seconds), seed, int(samples.shape[0]), json.dumps(list(samples.shape[1:])),
                     count_nonfinite(samples), checkpoint_path, checkpoint_hash,
                     json.dumps(self.versions, sort_keys=True), extra_json),
                )
                conn.executemany("INSERT INTO snapshot_arrays(step, name, hash) VALUES (?, ?, ?)",
                                 [(step, key, record.hash) for key, record in stored.items()])
        except sqlite3.IntegrityError as exc:
            raise InputError(f"step: a snapshot at step {step} is already stored in this run") from exc
        self._mirror("snapshot", step, samples)
        return checked

    def _scalar_rows(self, step: int, values: Mapping[str, Any], now: float) -> tuple[list[tuple], list[str]]:
        if not isinstance(values, Mapping):
            raise InputError(f"values: expected a mapping of scalar names to numbers, received {describe(values)}")
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
        return rows, nonfinite

    def write_scalars(self, step: int, values: Mapping[str, Any], wall_time: float | None = None) -> list[str]:
        """Append scalar values at ``step`` in one transaction; return the names whose value is not finite.

        NaN is stored as SQL NULL and read back as NaN. Raises InputError if this session already wrote a name
        at this step, or a value is not a real number.
        """
        step = check_step(step)
        rows, nonfinite = self._scalar_rows(step, values, time.time() if wall_time is None else wall_time)
        if rows:
            try:
                with self.transaction() as conn:
                    conn.executemany(
                        "INSERT INTO scalars(name, step, session_id, value, wall_time) VALUES (?, ?, ?, ?, ?)", rows
                    )
            except sqlite3.IntegrityError as exc:
                raise InputError(
                    f"scalars: {sorted(values)} at step {step} were already logged in this session; "
                    "log each name once per step"
                ) from exc
            self._mirror("scalars", step, {row[0]: row[3] for row in rows})
        return nonfinite

    def write_analysis_step(self, analysis: str, context: Mapping[str, Any], step: int,
                            values: Mapping[str, Any]) -> None:
        """Record that ``analysis`` (with ``context``: encoder, reference, parameters) is done for ``step``,
        together with the scalars it produced, in one transaction (so a kill never leaves one without the
        other). A step already recorded for the same analysis and context is left as it is."""
        check_name(analysis, "analysis")
        step = check_step(step)
        context_json = layout.canonical_json(_mapping(context, "context"))
        rows, _ = self._scalar_rows(step, values, time.time())
        with self.transaction() as conn:
            done = conn.execute("SELECT 1 FROM analysis_steps WHERE analysis = ? AND context = ? AND step = ?",
                                (analysis, context_json, step)).fetchone()
            if done:
                return
            conn.executemany("INSERT INTO scalars(name, step, session_id, value, wall_time)"
                             " VALUES (?, ?, ?, ?, ?)", rows)
            conn.execute("INSERT INTO analysis_steps(analysis, context, step, session_id, created_at)"
                         " VALUES (?, ?, ?, ?, ?)", (analysis, context_json, step, self.session_id, time.time()))
        if rows:
            self._mirror("scalars", step, {row[0]: row[3] for row in rows})

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
        check_name(kind, "kind")
        if not isinstance(message, str):
            raise InputError(f"message: expected a string, received {describe(message)}")
        if level not in EVENT_LEVELS:
            raise InputError(f"level: expected one of {'/'.join(EVENT_LEVELS)}, received {level!r}")
        step = None if step is None else check_step(step)
        data_json = to_json(_mapping(data, "data"), "data")
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO events(session_id, step, wall_time, kind, level, message, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self.session_id, step, time.time(), kind, level, message, data_json),
            )
        self._mirror("event", step, kind, level, message)
        return int(cursor.lastrowid)

    # -- mirrors ---------------------------------------------------------------------------------------
    def add_mirror(self, mirror: Any) -> None:
        """Send what this writer commits to ``mirror`` as well (e.g. TensorBoard): ``mirror.scalars(step,
        {name: value})``, ``mirror.snapshot(step, samples)``, ``mirror.event(step, kind, level, message)`` after
        each commit, ``mirror.close()`` on close. A mirror that fails is dropped with a warning; the run goes on."""
        if not all(callable(getattr(mirror, m, None)) for m in ("scalars", "snapshot", "event", "close")):
            raise InputError(f"mirror: expected an object with scalars, snapshot, event and close methods, "
                             f"received {describe(mirror)}")
        self.mirrors.append(mirror)

    def _mirror(self, method: str, *args: Any) -> None:
        for mirror in list(self.mirrors):
            try:
                getattr(mirror, method)(*args)
            except Exception as exc:  # a mirror never harms the run or the training that writes it
                self.mirrors.remove(mirror)
                warnings.warn(f"evolens: stopped mirroring to {mirror!r} after an error ({exc!r}); the run itself "
                              "is unaffected", RuntimeWarning, stacklevel=3)
                try:
                    mirror.close()
                except Exception:
                    pass

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
        check_name(name, "name")
        meta_json = to_json(_mapping(meta, "meta"), "meta")
        images_rec = self.arrays.put(images, name="images")
        return self._write_reference_records(name, images_rec, labels, meta_json)

    def write_reference_file(self, name: str, images_file: str | os.PathLike, images_hash: str,
                             labels: np.ndarray | None = None, meta: Mapping[str, Any] | None = None) -> bool:
        """``write_reference`` for images already stored as a content-addressed ``.npy`` file elsewhere (a named
        reference, another run): linked into the run (``ArrayStore.put_file``), never loaded into memory."""
        check_name(name, "name")
        meta_json = to_json(_mapping(meta, "meta"), "meta")
        images_rec = self.arrays.put_file(images_file, images_hash)
        return self._write_reference_records(name, images_rec, labels, meta_json)

    def _write_reference_records(self, name: str, images_rec: Any, labels: np.ndarray | None, meta_json: str) -> bool:
        labels_rec = self.arrays.put(labels, name="labels") if labels is not None else None
        new_hashes = (images_rec.hash, labels_rec.hash if labels_rec else None)
        with self.transaction() as conn:
            row = conn.execute("SELECT images_hash, labels_hash FROM refs WHERE name = ?", (name,)).fetchone()
            if row is None:
                self._index_array(images_rec)
                if labels_rec:
                    self._index_array(labels_rec)
                conn.execute(
                    "INSERT INTO refs(name, images_hash, labels_hash, n, created_at, meta) VALUES (?, ?, ?, ?, ?, ?)",
                    (name, *new_hashes, int(images_rec.shape[0]), time.time(), meta_json),
                )
        if row is None:
            return True
        if tuple(row) == new_hashes:
            return False
        raise InputError(
            f"name: a reference named {name!r} with other content is already stored in this run; "
            "references are append-only, choose another name"
        )

    def write_derived(
        self,
        kind: str,
        array: Any,
        *,
        encoder_id: str = "",
        source: str = "",
        params: Mapping[str, Any] | None = None,
        step: int | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> bool:
        """Store an array derived from the run (see ``evolens.store.derived`` for the kinds and their keys).

        The key is (``kind``, ``encoder_id``, ``source``, ``params``, ``step``); the first write wins and a
        later one with the same key returns False.
        """
        check_kind(kind)
        step = None if step is None else check_step(step)
        for arg, value in (("encoder_id", encoder_id), ("source", source)):
            if not isinstance(value, str):
                raise InputError(f"{arg}: expected a string, received {describe(value)}")
        params_json = layout.canonical_json(_mapping(params, "params"))
        meta_json = to_json(_mapping(meta, "meta"), "meta")
        record = self.arrays.put(to_numpy(array, kind), name=kind)
        with self.transaction() as conn:
            self._index_array(record)
            cursor = conn.execute(
                "INSERT OR IGNORE INTO derived(kind, encoder_id, source, params, step, hash, meta, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, encoder_id, source, params_json, step, record.hash, meta_json, time.time()),
            )
        return cursor.rowcount == 1

    def close(self) -> None:
        """Close the database and release the writer lock. Safe to call twice. A capture session records its
        end (a ``capture_end`` event), so live analysis knows no more snapshots will come from it."""
        for mirror in self.mirrors:
            try:
                mirror.close()
            except Exception:
                pass
        self.mirrors = []
        if self.conn is not None:
            if self.kind == "capture" and getattr(self, "session_id", None) is not None:
                try:
                    self.write_event(layout.CAPTURE_END_EVENT, f"capture session {self.session_id} ended")
                except Exception:  # closing must never fail (a full disk, a read-only remount)
                    pass
            self.conn.close()
            self.conn = None
        if self._lock_handle is not None:
            self._lock_handle.close()  # closing the descriptor releases the flock
            self._lock_handle = None

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["DERIVED_KINDS", "EVENT_LEVELS", "RunWriter", "check_snapshot_arrays", "library_versions", "to_json"]
