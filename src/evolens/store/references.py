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

``evolens reference add NAME PATH --encoder …`` (or ``add_named_reference``) embeds once; ``analyses.embedding``
of any run whose reference has the same content (the same images hash) reads the features from here instead of
embedding them again — like clean-fid's custom statistics, for every feature-based metric.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .._paths import cache_dir
from .._validation import check_name
from ..errors import InputError
from .derived import FID_STATISTICS, PRDC_RADII, TRAINING_SPACING
from .run import Run, is_run_dir, open_run
from .shards import DEFAULT_SHARD_ROWS, ShardedFeatures, ShardWriter, is_shard_dir

__all__ = ["NamedReference", "add_named_reference", "find_shared_features", "named_reference_of", "named_references",
           "reference_store", "use_named_reference"]

FEATURES_EVENT = "reference-features"


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

    def features(self, encoder_id: str) -> ShardedFeatures | None:
        folder = self.path / "features" / _safe_id(encoder_id)
        return ShardedFeatures(folder) if encoder_id in self.encoders() and is_shard_dir(folder) else None

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


def add_named_reference(name: str, images: Any, labels: Any = None, *, encoder: Any = "efficientnet-lite0",
                        store: str | os.PathLike | None = None, batch_size: int | None = None,
                        engine: str = "local", address: str | None = None, workers: int | None = None,
                        progress: bool = True, shard_rows: int = DEFAULT_SHARD_ROWS, radii: bool = True,
                        gpus_per_worker: float = 0.0, **encoder_kwargs: Any) -> NamedReference:
    """Store ``images`` (n, C, H, W) (and ``labels`` (n,)) as the reference ``name`` (once; the same content again
    is a no-op, other content under the name an InputError) and their features under ``encoder`` in shards,
    with FID statistics and (``radii``) the k-NN radii of precision/recall and density/coverage — a search of
    every shard against the shards, quadratic in n: pass False for a very large set whose PRDC no run needs
    (a run computes them on first use and stores them here). An encoder already stored is not embedded again.
    ``engine="ray"`` embeds on Ray (``gpus_per_worker``: one actor per GPU). Returns the ``NamedReference``."""
    from ..encoders.registry import get_encoder
    from ..metrics.quality import DENSITY_COVERAGE_K, PRECISION_RECALL_K, FeatureStatistics, knn_radii
    from .run import check_reference
    from .writer import RunWriter

    check_name(name, "name")
    images, labels = check_reference(name, images, labels)
    path = reference_store(store) / name
    with RunWriter(path, kind="analysis", name=name, config={"kind": "named reference"}) as writer:
        writer.write_reference(name, images, labels)
    reference = NamedReference(path)
    encoder = get_encoder(encoder, **encoder_kwargs)
    if encoder.id in reference.encoders():
        return reference
    folder = path / "features" / _safe_id(encoder.id)
    if folder.exists():  # a killed earlier attempt (no event was written): start over
        import shutil

        shutil.rmtree(folder)
    from ..analyses.ray_engine import NpySource, embed_into_shards

    writer = ShardWriter(folder, shard_rows=shard_rows)
    stored = reference.images
    embed_into_shards(encoder, NpySource(str(stored.filename), len(stored)), writer, engine=engine, address=address,
                      workers=workers, batch_size=batch_size, progress=progress,
                      description=f"embedding {name} ({encoder.name})", num_gpus_per_worker=gpus_per_worker)
    features = writer.close()
    statistics = FeatureStatistics().update_blocks(block for _, block in features.blocks())  # one shard at a time
    with open_run(path) as run:
        run.add_derived(FID_STATISTICS, statistics.state(), encoder_id=encoder.id, source=reference.content_hash)
    ks = [k for k in (1, PRECISION_RECALL_K, DENSITY_COVERAGE_K) if k < features.shape[0]] if radii else []
    if ks:  # one neighbour search of every shard: the PRDC radii and the spacing authenticity judges by
        for k, value in knn_radii(features, ks).items():
            if k == 1:
                reference.add_derived(TRAINING_SPACING, np.sqrt(value), encoder_id=encoder.id,
                                      meta={"reference": name})
            else:
                reference.add_derived(PRDC_RADII, value, encoder_id=encoder.id, params={"k": k},
                                      meta={"reference": name})
    with open_run(path) as run:
        run.add_event(FEATURES_EVENT, f"{features.shape[0]} features of {name} with {encoder.id}",
                      data={"encoder_id": encoder.id, "folder": str(folder.relative_to(path)),
                            "n": features.shape[0], "d": features.shape[1]})
    return reference


def use_named_reference(run_dir: str | os.PathLike, name: str, *, as_name: str | None = None,
                        store: str | os.PathLike | None = None) -> str:
    """Give the run at ``run_dir`` the stored reference ``name`` (under ``as_name``, default ``name``): its images
    and labels are linked into the run (views show them; a hard link to the stored file, no copy on one
    filesystem) and every analysis of the run reads the reference's stored features and statistics instead of
    embedding it. Returns the name in the run."""
    matches = [r for r in named_references(store) if r.name == name]
    if not matches:
        known = [r.name for r in named_references(store)]
        raise InputError(f"name: no stored reference {name!r} in {str(reference_store(store))!r}; known: {known}")
    reference = matches[0]
    with open_run(run_dir) as run:
        run.add_reference_file(as_name or name, reference.images_file, reference.content_hash, reference.labels)
    return as_name or name


def find_shared_features(content_hash: str, encoder_id: str,
                         store: str | os.PathLike | None = None) -> ShardedFeatures | None:
    """The stored features of a reference whose images have ``content_hash``, under ``encoder_id``; None when no
    reference of the store has them."""
    for reference in _references_with(content_hash, store):
        features = reference.features(encoder_id)
        if features is not None:
            return features
    return None


def named_reference_of(features: Any) -> NamedReference | None:
    """The stored reference whose shards ``features`` are (a ``ShardedFeatures`` under ``<reference>/features/``,
    or a ``RowSelection`` of one); None for anything else."""
    folder = getattr(getattr(features, "parent", features), "folder", None)
    if folder is None:
        return None
    root = Path(folder).parent.parent
    if not is_run_dir(root):
        return None
    try:
        return NamedReference(root)
    except InputError:
        return None


def _references_with(content_hash: str, store: str | os.PathLike | None) -> Iterator[NamedReference]:
    for reference in named_references(store):
        if reference.content_hash == content_hash:
            yield reference
