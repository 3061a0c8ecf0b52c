"""Named reference sets stored once, outside any run, and shared by every run whose reference has the same content.

A reference store is a folder (``$EVOLENS_REFERENCES``, else ``<cache>/references``) of reference directories,
one per name, each in the run store format (``runs.sqlite`` + content-addressed arrays): the images and labels
as a reference row, and per encoder

- the features in shards (``features/<encoder id>/``, memory-mapped, one shard in memory at a time),
- the FID statistics (derived ``fid-statistics``, Chan-merged over the shards: never all features at once),
- the k-NN radii of precision/recall (k = 3) and density/coverage (k = 5) (derived ``prdc-radii``) and each
  item's distance to its nearest other item (``training-spacing``, for authenticity), from one neighbour search
  of each shard against the shards, and whatever else a run's analysis computes of the reference alone
  on first use (per-class statistics and radii, the CMMD reference term): stored here, for every later run,
- an event ``reference-features`` recording the encoder, the shard folder and the size.

``evolens reference add NAME PATH --encoder …`` (or ``evolens.analyses.references.add_named_reference``, which
embeds: it lives above the store) embeds once; ``evolens reference use RUN NAME`` links it into a run and records it
there by identity (name, store, content hash), and ``analyses.embedding`` of that run reads the features from here
instead of embedding them again — like clean-fid's custom statistics, for every feature-based metric. This module
stores and finds; it computes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .._paths import cache_dir
from .._validation import check_name
from ..errors import InputError
from . import events
from .derived import FID_STATISTICS
from .run import Run, is_run_dir, open_run
from .shards import ShardedFeatures, is_shard_dir

__all__ = ["NAMED_REFERENCE", "NamedReference", "find_shared_features", "named_reference_record", "named_references",
           "reference_store", "shared_reference", "store_named_reference", "use_named_reference"]

FEATURES_EVENT = events.FEATURES
NAMED_REFERENCE = "named_reference"  # the key of a linked reference's record in the run's reference metadata


def reference_store(store: str | os.PathLike | None = None) -> Path:
    """The reference store folder: ``store``, else ``$EVOLENS_REFERENCES``, else ``<evolens cache>/references``."""
    if store is not None:
        return Path(store).expanduser()
    if os.environ.get("EVOLENS_REFERENCES"):
        return Path(os.environ["EVOLENS_REFERENCES"]).expanduser()
    return cache_dir() / "references"


def _safe_id(encoder_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in encoder_id)


class NamedReference:
    """One stored reference: ``name``, ``path``, ``n``, ``content_hash`` (of its images), ``images`` and
    ``labels`` (memory-mapped), ``encoders()``, ``features(encoder_id)`` (``ShardedFeatures`` or None),
    ``fid_statistics(encoder_id)`` (the packed ``FeatureStatistics`` state or None)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not is_run_dir(self.path):
            raise InputError(f"path: expected a stored reference directory, received {str(path)!r}")
        with open_run(self.path) as run:
            self.name = run.name
            names = run.reference_names()
            if self.name not in names:
                raise InputError(f"path: {str(path)!r} is an evolens run, not a stored reference")
            self.n = run.reference_sizes()[self.name]
            self.content_hash = run.reference_hash(self.name)

    def _run(self) -> Run:
        return open_run(self.path)

    @property
    def images(self) -> np.ndarray:
        """The images (n, ...), memory-mapped (verified on first read)."""
        with self._run() as run:
            return np.load(run.array_file(self.content_hash), mmap_mode="r")

    @property
    def images_file(self) -> Path:
        """The ``.npy`` file of the images (content-addressed, hash ``content_hash``), not read."""
        with self._run() as run:
            return self.path / run._one("SELECT path FROM arrays WHERE hash = ?", (self.content_hash,))[0]

    @property
    def labels(self) -> np.ndarray | None:
        """The labels (n,), or None; read without loading the images."""
        with self._run() as run:
            return run.reference_labels(self.name)

    def encoders(self) -> list[str]:
        """Encoder ids whose features are stored, in the order they were added."""
        with self._run() as run:
            return [e.data["encoder_id"] for e in run.events(kind=FEATURES_EVENT)]

    def features_folder(self, encoder_id: str) -> Path:
        """Where the shards of the features under ``encoder_id`` are (or go)."""
        return self.path / "features" / _safe_id(encoder_id)

    def features(self, encoder_id: str) -> ShardedFeatures | None:
        """The features under ``encoder_id`` (n, d) as shards on disk, or None when they are not complete."""
        folder = self.features_folder(encoder_id)
        return ShardedFeatures(folder) if encoder_id in self.encoders() and is_shard_dir(folder) else None

    def record_features(self, encoder_id: str, features: ShardedFeatures) -> None:
        """Mark the shards written to ``features_folder(encoder_id)`` complete (the ``reference-features`` event,
        written last: a killed embedding leaves a folder without one, which the next attempt replaces)."""
        folder = self.features_folder(encoder_id)
        with self._run() as run:
            run.add_event(FEATURES_EVENT, f"{features.shape[0]} features of {self.name} with {encoder_id}",
                          data={"encoder_id": encoder_id, "folder": str(folder.relative_to(self.path)),
                                "n": features.shape[0], "d": features.shape[1]})

    def fid_statistics(self, encoder_id: str) -> np.ndarray | None:
        with self._run() as run:
            return run.derived(FID_STATISTICS, encoder_id=encoder_id, source=self.content_hash)

    def derived(self, kind: str, *, encoder_id: str, params: dict | None = None) -> np.ndarray | None:
        """A quantity of this reference alone stored under ``kind`` (``evolens.store.derived``), or None."""
        with self._run() as run:
            return run.derived(kind, encoder_id=encoder_id, source=self.content_hash, params=params)

    def add_derived(self, kind: str, value: Any, *, encoder_id: str, params: dict | None = None,
                    meta: dict | None = None) -> bool:
        """Store a quantity of this reference alone for every run that uses it (first write wins)."""
        with self._run() as run:
            return run.add_derived(kind, value, encoder_id=encoder_id, source=self.content_hash, params=params,
                                   meta=meta)

    def __repr__(self) -> str:
        return f"NamedReference({self.name!r}, n={self.n}, encoders={self.encoders()})"


def named_references(store: str | os.PathLike | None = None) -> list[NamedReference]:
    """Every reference in the store, by name."""
    root = reference_store(store)
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.iterdir()):
        if is_run_dir(path):
            try:
                out.append(NamedReference(path))
            except InputError:
                continue
    return out


def store_named_reference(name: str, images: Any, labels: Any = None,
                          store: str | os.PathLike | None = None) -> NamedReference:
    """Store ``images`` (n, ...) and ``labels`` (n,) as the reference ``name`` of ``store`` (once: the same
    content again is a no-op, other content under the name an InputError); no features yet."""
    from .run import check_reference
    from .writer import RunWriter

    check_name(name, "name")
    images, labels = check_reference(name, images, labels)
    path = reference_store(store) / name
    with RunWriter(path, kind="analysis", name=name, config={"kind": "named reference"}) as writer:
        writer.write_reference(name, images, labels)
    return NamedReference(path)


def use_named_reference(run_dir: str | os.PathLike, name: str, *, as_name: str | None = None,
                        store: str | os.PathLike | None = None) -> str:
    """Give the run at ``run_dir`` the stored reference ``name`` (under ``as_name``, default ``name``): its images
    and labels are linked into the run (views show them; a hard link to the stored file, no copy on one
    filesystem) and every analysis of the run reads the reference's stored features and statistics instead of
    embedding it. The run records the reference by identity — its name, the store's absolute path and its
    content hash (``reference_meta(...)["named_reference"]``) — so the analyses find it in that store, whichever
    store is the default when they run. Returns the name in the run."""
    root = reference_store(store)
    path = root / name
    if not is_run_dir(path):
        known = [r.name for r in named_references(store)]
        raise InputError(f"name: no stored reference {name!r} in {str(root)!r}; known: {known}")
    reference = NamedReference(path)
    record = {NAMED_REFERENCE: {"name": reference.name, "store": str(root.resolve()),
                                "content_hash": reference.content_hash}}
    with open_run(run_dir) as run:
        run.add_reference_file(as_name or name, reference.images_file, reference.content_hash, reference.labels,
                               meta=record)
    return as_name or name


def named_reference_record(run: Run, name: str) -> dict[str, str] | None:
    """Where the run's reference ``name`` came from — ``{"name", "store", "content_hash"}`` as
    ``use_named_reference`` recorded it — or None for a reference stored in the run itself."""
    record = run.reference_meta(name).get(NAMED_REFERENCE)
    return dict(record) if isinstance(record, dict) else None


def shared_reference(run: Run, name: str, encoder_id: str) -> NamedReference | None:
    """The stored named reference that the run's reference ``name`` is, holding features under ``encoder_id``;
    None when there is none (the analyses then embed the run's own copy). Resolved from the run's record
    (``named_reference_record``: that store, that name, the same content); a run whose reference was linked before
    records were kept is matched by content hash in the default store."""
    record = named_reference_record(run, name)
    if record is not None:
        path = Path(record["store"]) / record["name"]
        if not is_run_dir(path):
            return None
        try:
            reference = NamedReference(path)
        except InputError:
            return None
        same = reference.content_hash == record["content_hash"] == run.reference_hash(name)
        return reference if same and reference.features(encoder_id) is not None else None
    digest = run.reference_hash(name)
    return next((r for r in _references_with(digest, None) if r.features(encoder_id) is not None), None)


def find_shared_features(content_hash: str, encoder_id: str,
                         store: str | os.PathLike | None = None) -> ShardedFeatures | None:
    """The stored features of a reference whose images have ``content_hash``, under ``encoder_id``; None when no
    reference of ``store`` (default: the default store) has them."""
    for reference in _references_with(content_hash, store):
        features = reference.features(encoder_id)
        if features is not None:
            return features
    return None


def _references_with(content_hash: str, store: str | os.PathLike | None) -> Iterator[NamedReference]:
    for reference in named_references(store):
        if reference.content_hash == content_hash:
            yield reference
