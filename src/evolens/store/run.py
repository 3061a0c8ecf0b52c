"""Read a run directory, also while a training process is still writing it.

``open_run(path)`` returns a ``Run``. Every query runs in its own short read transaction on a read-only
connection, so readers see only committed snapshots and never block the writer (SQLite WAL). Scalars that a
resumed run logged again for the same step are resolved to the latest session's value: a run that restarted
from a checkpoint reads as one continuous run.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from .._validation import check_array, check_int, check_name, check_step, describe
from ..errors import InputError, NotARunError
from . import events, layout
from .arrays import ArrayStore
from .derived import FEATURES, check_kind
from .writer import RunWriter


@dataclass(frozen=True)
class Snapshot:
    """One captured snapshot: what the model produced for the probes at ``step``.

    ``arrays`` maps array names (``samples``, ``probe_ids``, ``labels``, ``latents``, ...) to content hashes.
    ``wall_time`` is seconds since the epoch; ``capture_seconds`` is how long sampling and writing took.
    """

    step: int
    wall_time: float
    capture_seconds: float
    seed: int | None
    n_samples: int
    sample_shape: tuple[int, ...]
    n_nonfinite: int
    checkpoint_path: str | None
    checkpoint_hash: str | None
    versions: dict[str, str]
    extra: dict[str, Any]
    session_id: int
    arrays: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """Something that happened in a run: an alert, a warning, an intervention. ``step`` may be None."""

    id: int
    step: int | None
    wall_time: float
    kind: str
    level: str
    message: str
    data: dict[str, Any]
    session_id: int


@dataclass(frozen=True)
class Reference:
    """A reference data set stored in the run: ``images`` (n, ...) and optional ``labels`` (n,)."""

    name: str
    images: np.ndarray
    labels: np.ndarray | None
    meta: dict[str, Any]


# The distinct scalar names as a skip scan over the (name, step, session) key: one index seek per name instead of
# reading every scalar row as SELECT DISTINCT does (2 ms instead of 35 ms at 1,000,000 scalars of 100 names).
# Callers append the SELECT over ``names``.
_SCALAR_NAMES = ("WITH RECURSIVE names(name) AS (SELECT MIN(name) FROM scalars UNION ALL "
                 "SELECT (SELECT name FROM scalars WHERE name > names.name ORDER BY name LIMIT 1) FROM names "
                 "WHERE names.name IS NOT NULL) ")


def _after(since: int | None) -> int:
    """The lower bound of ``step > ?`` for an optional ``since`` (every step when None)."""
    return -(2**63) if since is None else int(since)


class Run:
    """A run directory opened for reading (and for appending analysis results).

    Args:
        path: the run directory. Raises NotARunError when it does not hold an evolens run.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise InputError(f"path: expected a run directory path, received {describe(path)}")
        self.path = Path(path)
        self._conn = layout.connect(self.path, readonly=True)
        self._arrays = ArrayStore(self.path)
        self._writer: RunWriter | None = None

    # -- run-level -----------------------------------------------------------------------------------
    def _one(self, sql: str, args: tuple = ()) -> tuple | None:
        return self._conn.execute(sql, args).fetchone()

    @property
    def name(self) -> str:
        """Run name given at creation (default: the directory name)."""
        row = self._one("SELECT name FROM runs WHERE id = 1")
        return row[0] if row else self.path.name

    @property
    def created_at(self) -> float:
        """Creation time, seconds since the epoch."""
        row = self._one("SELECT created_at FROM runs WHERE id = 1")
        return float(row[0]) if row else float("nan")

    @property
    def uid(self) -> str:
        """An identity of the run that its copies share (published, copied to another machine): 16 hex digits
        of the hash of its name and creation time — what a shared results store files its results under."""
        import hashlib

        row = self._one("SELECT name, created_at FROM runs WHERE id = 1")
        key = f"{row[0]}\0{float(row[1])!r}" if row else str(self.path.resolve())
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    @property
    def config(self) -> dict[str, Any]:
        """The configuration stored when the run was created."""
        row = self._one("SELECT config FROM runs WHERE id = 1")
        return json.loads(row[0]) if row else {}

    def sessions(self) -> list[dict[str, Any]]:
        """Every process that wrote to the run: id, kind (capture/analysis), start time, pid, host, versions."""
        rows = self._conn.execute("SELECT id, kind, started_at, pid, host, versions FROM sessions ORDER BY id")
        return [
            {"id": r[0], "kind": r[1], "started_at": r[2], "pid": r[3], "host": r[4], "versions": json.loads(r[5])}
            for r in rows
        ]

    # -- snapshots -----------------------------------------------------------------------------------
    def _query_snapshots(self, where: str = "", args: tuple = ()) -> list[Snapshot]:
        arrays: dict[int, dict[str, str]] = {}
        self._conn.execute("BEGIN")  # one read transaction: rows and their arrays from the same commit
        try:
            rows = self._conn.execute(
                "SELECT step, wall_time, capture_seconds, seed, n_samples, sample_shape, n_nonfinite, checkpoint_path,"
                f" checkpoint_hash, versions, extra, session_id FROM snapshots {where} ORDER BY step",
                args,
            ).fetchall()
            for step, name, digest in self._conn.execute(f"SELECT step, name, hash FROM snapshot_arrays {where}", args):
                arrays.setdefault(step, {})[name] = digest
        finally:
            self._conn.execute("COMMIT")
        return [
            Snapshot(
                step=r[0],
                wall_time=r[1],
                capture_seconds=r[2],
                seed=r[3],
                n_samples=r[4],
                sample_shape=tuple(json.loads(r[5])),
                n_nonfinite=r[6],
                checkpoint_path=r[7],
                checkpoint_hash=r[8],
                versions=json.loads(r[9]),
                extra=json.loads(r[10]),
                session_id=r[11],
                arrays=arrays.get(r[0], {}),
            )
            for r in rows
        ]

    def snapshots(self) -> list[Snapshot]:
        """All committed snapshots in ascending step order."""
        return self._query_snapshots()

    def steps(self, since: int | None = None) -> np.ndarray:
        """Steps that have a snapshot, ascending, as an int64 array (only those after ``since`` when given)."""
        rows = self._conn.execute("SELECT step FROM snapshots WHERE step > ? ORDER BY step",
                                  (_after(since),))
        return np.array([r[0] for r in rows], dtype=np.int64)

    def snapshot_overview(self) -> dict[str, Any]:
        """Counts of the snapshots without reading them: ``n`` (snapshots), ``first_step``, ``last_step`` (None
        when empty), ``n_nonfinite`` (non-finite values over all samples) and ``sample_shape`` (of the first)."""
        n, first, last, nonfinite = self._one("SELECT COUNT(*), MIN(step), MAX(step), TOTAL(n_nonfinite) "
                                              "FROM snapshots") or (0, None, None, 0)
        shape = self._one("SELECT sample_shape FROM snapshots ORDER BY step LIMIT 1")
        return {"n": int(n), "first_step": first, "last_step": last, "n_nonfinite": int(nonfinite),
                "sample_shape": tuple(json.loads(shape[0])) if shape else None}

    def snapshot(self, step: int) -> Snapshot:
        """The snapshot at ``step``; raises InputError listing the captured steps when there is none."""
        step = check_step(step)
        found = self._query_snapshots("WHERE step = ?", (step,))
        if found:
            return found[0]
        captured = self.steps().tolist()
        shown = ", ".join(map(str, captured[:20])) + (" ..." if len(captured) > 20 else "")
        raise InputError(f"step: no snapshot at step {step} in run {self.name!r}; captured steps: [{shown}]")

    def array(self, step: int, name: str, *, mmap: bool = False) -> np.ndarray:
        """The array ``name`` of the snapshot at ``step`` (e.g. ``samples``, ``labels``, ``latents``)."""
        snap = self.snapshot(step)
        if name not in snap.arrays:
            raise InputError(
                f"name: snapshot at step {step} has no array {name!r}; it has {sorted(snap.arrays)}"
            )
        return self._load(snap.arrays[name], mmap=mmap)

    def array_file(self, digest: str) -> Path:
        """The verified ``.npy`` file of the stored array ``digest`` (for readers in other processes, e.g. Ray
        workers, that memory-map it themselves). StoreIntegrityError when it is missing or damaged."""
        row = self._one("SELECT path FROM arrays WHERE hash = ?", (digest,))
        if row is None:
            raise InputError(f"digest: no array {digest!r} in run {self.name!r}")
        self._arrays.get(row[0], mmap=True)  # verified once per process
        return self.path / row[0]

    def _load(self, digest: str, *, mmap: bool = False) -> np.ndarray:
        row = self._one("SELECT path FROM arrays WHERE hash = ?", (digest,))
        if row is None:  # pragma: no cover - foreign keys make this impossible for committed rows
            raise NotARunError(f"run: array {digest} is referenced but not indexed in {str(self.path)!r}")
        return self._arrays.get(row[0], mmap=mmap)

    def samples(self, step: int) -> np.ndarray:
        """Generated samples at ``step``, shape (n_probes, ...) as the sample function returned them."""
        return self.array(step, "samples")

    def probe_ids(self, step: int) -> np.ndarray:
        """Probe ids (strings, shape (n_probes,)) of the samples at ``step``; the same ids across snapshots."""
        return self.array(step, "probe_ids")

    def labels(self, step: int) -> np.ndarray | None:
        """Conditioning or logged labels of the samples at ``step`` (shape (n_probes,)), or None."""
        snap = self.snapshot(step)
        return self._load(snap.arrays["labels"]) if "labels" in snap.arrays else None

    # -- scalars and events ------------------------------------------------------------------------
    def scalar_names(self) -> list[str]:
        """Names of every scalar series in the run, sorted."""
        rows = self._conn.execute(_SCALAR_NAMES + "SELECT name FROM names WHERE name IS NOT NULL")
        return [r[0] for r in rows]

    def scalar_last_steps(self) -> dict[str, int]:
        """``{name: last step logged}`` of every scalar series, sorted by name — one index seek per name, so a
        view learns which series grew without reading them."""
        rows = self._conn.execute(_SCALAR_NAMES + "SELECT name, (SELECT MAX(step) FROM scalars WHERE scalars.name "
                                  "= names.name) FROM names WHERE name IS NOT NULL")
        return {r[0]: int(r[1]) for r in rows}

    def scalars(self, name: str, since: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The series ``name`` as ``(steps int64 (m,), values float64 (m,))``, steps ascending and unique; only
        the steps after ``since`` when given (a view's incremental update).

        Where a resumed run logged a step again, the latest session's value is returned. ``name`` may leave out
        its context (``quality/fid`` for ``quality/fid@pixels~train``) when only one context has it. Raises
        InputError for an unknown or ambiguous name, listing the known ones.
        """
        rows = self._scalar_rows(name, since)
        if not rows and not self._one("SELECT 1 FROM scalars WHERE name = ? LIMIT 1", (name,)):
            from ..names import resolve_name  # a name without its context, an ambiguous or an unknown one

            rows = self._scalar_rows(resolve_name(name, self.scalar_names(), run=self.name), since)
        steps = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        values = np.fromiter((np.nan if r[1] is None else r[1] for r in rows), dtype=np.float64, count=len(rows))
        # rows come in key order (step, then session): the last row of each step is the newest session's value
        last_of_step = np.append(steps[1:] != steps[:-1], True) if len(steps) else np.zeros(0, dtype=bool)
        return steps[last_of_step], values[last_of_step]

    def _scalar_rows(self, name: str, since: int | None = None) -> list[tuple]:
        # a range read of the primary key (name, step, session_id), already in order: no sort, no subquery
        return self._conn.execute(
            "SELECT step, value FROM scalars WHERE name = ? AND step > ? ORDER BY step, session_id",
            (name, _after(since)),
        ).fetchall()

    def event_overview(self) -> dict[str, Any]:
        """Counts of the events without reading them: ``n``, ``n_alerts`` (alerts and warnings), ``last_id``
        (None when none) and ``projection`` (the data of the newest ``projection`` event, or None)."""
        n, alerts, last = self._one("SELECT COUNT(*), TOTAL(level IN ('alert', 'warning')), MAX(id) FROM events")
        row = self._one("SELECT data FROM events WHERE kind = ? ORDER BY id DESC LIMIT 1", (events.PROJECTION,))
        return {"n": int(n), "n_alerts": int(alerts), "last_id": last, "projection": json.loads(row[0]) if row else None}

    def events(self, kind: str | None = None, level: str | None = None, since_id: int | None = None) -> list[Event]:
        """Events in the order they were written, optionally filtered by ``kind`` and ``level``, and only those
        written after the event ``since_id`` when given."""
        sql = "SELECT id, step, wall_time, kind, level, message, data, session_id FROM events"
        clauses, args = [], []
        if since_id is not None:
            clauses.append("id > ?")
            args.append(int(since_id))
        if kind is not None:
            clauses.append("kind = ?")
            args.append(kind)
        if level is not None:
            clauses.append("level = ?")
            args.append(level)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        rows = self._conn.execute(sql + " ORDER BY id", args).fetchall()
        return [Event(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7]) for r in rows]

    # -- references ----------------------------------------------------------------------------------
    def reference_names(self) -> list[str]:
        """Names of the stored reference data sets, sorted."""
        return [r[0] for r in self._conn.execute("SELECT name FROM refs ORDER BY name")]

    def reference_sizes(self) -> dict[str, int]:
        """Number of items of each stored reference data set, without loading them."""
        return {r[0]: int(r[1]) for r in self._conn.execute("SELECT name, n FROM refs ORDER BY name")}

    def reference(self, name: str, *, mmap: bool = False) -> Reference:
        """The reference data set ``name``; raises InputError listing the known ones when absent. ``mmap``: the
        images memory-mapped (read where indexed: a few rows of a large set cost a few rows)."""
        row = self._one("SELECT images_hash, labels_hash, meta FROM refs WHERE name = ?", (name,))
        if row is None:
            raise InputError(f"name: no reference {name!r} in run {self.name!r}; known: {self.reference_names()}")
        labels = self._load(row[1]) if row[1] else None
        return Reference(name, self._load(row[0], mmap=mmap), labels, json.loads(row[2]))

    def reference_labels(self, name: str) -> np.ndarray | None:
        """The labels (n,) of reference ``name``, or None, without reading its images."""
        row = self._one("SELECT labels_hash FROM refs WHERE name = ?", (name,))
        if row is None:
            raise InputError(f"name: no reference {name!r} in run {self.name!r}; known: {self.reference_names()}")
        return self._load(row[0]) if row[0] else None

    # -- derived arrays (features, statistics, maps) -------------------------------------------------
    def derived(self, kind: str, *, encoder_id: str = "", source: str = "", params: Mapping[str, Any] | None = None,
                step: int | None = None) -> np.ndarray | None:
        """The derived array stored under this key (see ``evolens.store.derived``), or None."""
        check_kind(kind)
        row = self._one(
            "SELECT hash FROM derived WHERE kind = ? AND encoder_id = ? AND source = ? AND params = ?"
            " AND IFNULL(step, -1) = ?",
            (kind, encoder_id, source, layout.canonical_json(dict(params or {})), -1 if step is None else step),
        )
        return self._load(row[0]) if row else None

    def add_derived(self, kind: str, array: Any, *, encoder_id: str = "", source: str = "",
                    params: Mapping[str, Any] | None = None, step: int | None = None,
                    meta: Mapping[str, Any] | None = None) -> bool:
        """Store a derived array (first write wins; False when the key was already stored)."""
        return self._analysis_writer().write_derived(kind, array, encoder_id=encoder_id, source=source,
                                                     params=params, step=step, meta=meta)

    def derived_keys(self, kind: str) -> list[tuple[str, str, int | None]]:
        """The distinct (encoder id, source, step) under which arrays of ``kind`` are stored, ordered by step."""
        check_kind(kind)
        rows = self._conn.execute("SELECT DISTINCT encoder_id, source, step FROM derived WHERE kind = ? "
                                  "ORDER BY IFNULL(step, -1), encoder_id, source", (kind,))
        return [(r[0], r[1], r[2]) for r in rows]

    def feature_encoders(self) -> list[str]:
        """Encoder ids that have cached features in this run, sorted."""
        rows = self._conn.execute("SELECT DISTINCT encoder_id FROM derived WHERE kind = ? ORDER BY encoder_id",
                                  (FEATURES,))
        return [r[0] for r in rows]

    def reference_meta(self, name: str) -> dict[str, Any]:
        """The metadata stored with reference ``name`` (for a named reference: where it came from), without
        reading its arrays."""
        row = self._one("SELECT meta FROM refs WHERE name = ?", (name,))
        if row is None:
            raise InputError(f"name: no reference {name!r} in run {self.name!r}; known: {self.reference_names()}")
        return json.loads(row[0])

    def reference_hash(self, name: str) -> str:
        """Content hash of the images of reference ``name``."""
        row = self._one("SELECT images_hash FROM refs WHERE name = ?", (name,))
        if row is None:
            raise InputError(f"name: no reference {name!r} in run {self.name!r}; known: {self.reference_names()}")
        return row[0]

    def count_analysed_snapshots(self, analysis: str) -> int:
        """How many snapshots ``analysis`` has processed in any context (done-marks of steps without a snapshot
        not counted)."""
        row = self._one("SELECT COUNT(DISTINCT a.step) FROM analysis_steps a JOIN snapshots s ON s.step = a.step "
                        "WHERE a.analysis = ?", (analysis,))
        return int(row[0]) if row else 0

    def analysed_steps_any(self, analysis: str) -> set[int]:
        """Steps that ``analysis`` has processed in any context."""
        return {r[0] for r in self._conn.execute("SELECT DISTINCT step FROM analysis_steps WHERE analysis = ?",
                                                 (analysis,))}

    def analysed_steps(self, analysis: str, context: Mapping[str, Any]) -> set[int]:
        """Steps that ``analysis`` has already processed with this ``context`` (encoder, reference, params)."""
        rows = self._conn.execute("SELECT step FROM analysis_steps WHERE analysis = ? AND context = ?",
                                  (analysis, layout.canonical_json(dict(context))))
        return {r[0] for r in rows}

    # -- appending analysis results --------------------------------------------------------------------
    def _analysis_writer(self) -> RunWriter:
        if self._writer is None:
            self._writer = RunWriter(self.path, kind="analysis", create=False)
        return self._writer

    def add_reference(
        self,
        name: str,
        images: Any,
        labels: Any = None,
        meta: Mapping[str, Any] | None = None,
    ) -> bool:
        """Store a reference data set (e.g. ``"train"``, ``"heldout"``) that analyses compare samples against.

        Args:
            name: reference name, unique in the run.
            images: (n, ...) array or tensor, n >= 1, same layout as the samples.
            labels: optional (n,) class labels.
            meta: optional JSON-serialisable description (source, split, seed).

        Returns False when the same content is already stored under ``name`` (idempotent);
        raises InputError when ``name`` holds other content or the arrays are inconsistent.
        """
        images, labels = check_reference(name, images, labels)
        return self._analysis_writer().write_reference(name, images, labels, meta)

    def add_reference_file(self, name: str, images_file: str | os.PathLike, images_hash: str, labels: Any = None,
                           meta: Mapping[str, Any] | None = None) -> bool:
        """``add_reference`` for images already stored as a verified content-addressed ``.npy`` file (a named
        reference's, another run's ``array_file``), hash ``images_hash``: hard-linked into the run (copied in
        chunks across filesystems), never loaded — a million-image reference costs no memory and, on one
        filesystem, no disk."""
        images, labels = check_reference(name, np.load(images_file, mmap_mode="r"), labels)
        return self._analysis_writer().write_reference_file(name, images_file, images_hash, labels, meta)

    def add_mirror(self, mirror: Any) -> None:
        """Mirror what analyses append to this run (scalars, events) to ``mirror``, e.g. an
        ``evolens.integrations.tensorboard.TensorBoardMirror``; see ``RunWriter.add_mirror``."""
        self._analysis_writer().add_mirror(mirror)

    def add_scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Append analysis scalars (e.g. ``{"quality/fid@pixels:train": 12.3}``) at ``step``; a re-analysis
        supersedes."""
        self._analysis_writer().write_scalars(check_step(step), values)

    def add_analysis_step(self, analysis: str, context: Mapping[str, Any], step: int,
                          values: Mapping[str, float]) -> None:
        """Record ``analysis`` as done for ``step`` with ``context``, with its scalars, in one transaction."""
        self._analysis_writer().write_analysis_step(analysis, context, step, values)

    def add_event(
        self, kind: str, message: str, *, step: int | None = None, level: str = "info", data: Mapping | None = None
    ) -> int:
        """Append an event to the run and return its id."""
        return self._analysis_writer().write_event(kind, message, step=step, level=level, data=data)

    def close(self) -> None:
        """Close the connections (the run stays on disk)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"


def check_reference(name: Any, images: Any, labels: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate a reference data set: ``images`` (n, ...) with n >= 1 and optional ``labels`` (n,)."""
    check_name(name, "name")
    images = check_array(images, "images", min_samples=1)
    if images.ndim < 2:
        raise InputError(f"images: expected shape (n, ...) with at least 2 dimensions, received shape={images.shape}")
    if labels is not None:
        labels = check_array(labels, "labels", ndim=1, numeric=False)
        if labels.shape[0] != images.shape[0]:
            raise InputError(
                f"labels: expected shape ({images.shape[0]},) to match images, received shape={labels.shape}"
            )
    return images, labels


def open_run(path: str | os.PathLike) -> Run:
    """Open the run directory at ``path`` for reading; raises NotARunError when it is not a run."""
    return Run(path)


def is_run_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory holding a run database."""
    return layout.db_path(Path(path)).is_file()


def find_runs(root: str | os.PathLike, max_depth: int = 3) -> list[Path]:
    """Run directories at or below ``root`` (down to ``max_depth`` levels), sorted by path."""
    if not isinstance(root, (str, os.PathLike)):
        raise InputError(f"root: expected a directory path, received {describe(root)}")
    max_depth = check_int(max_depth, "max_depth", minimum=0)
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"root: expected a directory, received {str(root)!r} ({'missing' if not root.exists() else 'a file'})")
    found = []
    frontier = [(root, 0)]
    while frontier:
        folder, depth = frontier.pop()
        if is_run_dir(folder):
            found.append(folder)
            continue
        if depth < max_depth:
            frontier.extend((child, depth + 1) for child in folder.iterdir() if child.is_dir() and not child.name.startswith("."))
    return sorted(found)


@contextlib.contextmanager
def opened(run: "Run | str | os.PathLike") -> Iterator["Run"]:
    """``run`` itself when it is an open ``Run``; otherwise the run at that path, closed when the block ends."""
    if isinstance(run, Run):
        yield run
        return
    own = open_run(run)
    try:
        yield own
    finally:
        own.close()
