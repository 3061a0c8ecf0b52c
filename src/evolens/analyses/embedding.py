"""Embed the snapshots and reference sets of a run, once per (content, encoder).

Features are stored in the run as derived arrays of kind ``features`` under (encoder id, content hash of the
images): calling ``embedding``
again, from another process, or after more snapshots arrived, only embeds what is new. Snapshots whose
samples contain NaN/inf are skipped with a warning (their features would be meaningless); the skip is
reported in the result.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..encoders.base import Encoder, describe_encoder_input
from ..encoders.registry import get_encoder
from ..errors import InputError
from ..store.derived import FEATURES
from ..store.references import shared_reference
from ..store.shards import ShardedFeatures
from ..store.run import Run, opened
from ._base import choose_steps


@dataclass
class RunEmbedding:
    """Features of a run under one encoder.

    Attributes:
        encoder_id: id of the encoder (name + weights hash).
        snapshots: step → (n_probes, dim) float32 features.
        references: reference name → (n, dim) float32 features; a ``ShardedFeatures`` (on disk, read shard by
            shard; ``np.asarray`` loads it) for a reference whose features a named reference stores.
        skipped: steps not embedded because their samples are not finite.
        computed: how many arrays were embedded now (the rest came from the cache).
    """

    encoder_id: str
    snapshots: dict[int, np.ndarray] = field(default_factory=dict)
    references: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)
    computed: int = 0


def embedding(
    run: Run | str | os.PathLike,
    *,
    encoder: str | Encoder = "efficientnet-lite0",
    reference: bool | str | Sequence[str] = True,
    steps: Sequence[int] | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float = 0.0,
    **encoder_kwargs: Any,
) -> RunEmbedding:
    """Embed every snapshot (or ``steps``) and every reference set (or the named ones) of ``run``.

    Args:
        run: a ``Run`` or a run directory.
        encoder: registered name or ``Encoder`` instance; ``encoder_kwargs`` go to ``get_encoder``.
        reference: True for every reference set, False for none, or a name or list of names.
        steps: snapshot steps to embed (default: all).
        batch_size: encoder batch size (default: the encoder's).
        progress: show a progress bar over the arrays to embed.
        engine: ``"local"`` (this process) or ``"ray"``: every array still to embed goes through one Ray Data
            pipeline with the encoder as actors (``analyses.ray_engine``; ``workers`` actors, a cluster at
            ``address`` or a local Ray). Both store the same features (up to float32 rounding, atol 1e-5).
            ``gpus_per_worker``: GPUs each actor takes (1 on a GPU cluster: one actor per GPU, the encoder moved
            there); 0 runs the actors on CPU slots.

    Returns a ``RunEmbedding``. Encoders that need fitting (``pixels`` with ``pca=``) are fitted on the
    ``train`` reference (or the first one).
    """
    if engine not in ENGINES:
        raise InputError(f"engine: expected one of {list(ENGINES)}, received {engine!r}")
    if workers is not None:
        from .._validation import check_int

        workers = check_int(workers, "workers", minimum=1)
    encoder = get_encoder(encoder, **encoder_kwargs)
    with opened(run) as run:
        return _embed(run, encoder, reference, steps, batch_size, progress,
                      {"address": address, "workers": workers, "num_gpus_per_worker": gpus_per_worker}
                      if engine == "ray" else None)


ENGINES = ("local", "ray")


def _embed(run: Run, encoder: Encoder, reference: Any, steps: Sequence[int] | None, batch_size: int | None,
           progress: bool, on_ray: dict[str, Any] | None = None) -> RunEmbedding:
    if getattr(encoder, "needs_fit", False):
        names = run.reference_names()
        if not names:
            raise InputError("encoder: needs fitting on a reference set, but the run has none (Run.add_reference)")
        encoder.fit(run.reference("train" if "train" in names else names[0]).images)
    if reference is True:
        wanted_refs = run.reference_names()
    elif reference is False or reference is None:
        wanted_refs = []
    else:
        wanted_refs = [reference] if isinstance(reference, str) else list(reference)
        unknown = sorted(set(wanted_refs) - set(run.reference_names()))
        if unknown:
            raise InputError(f"reference: no reference sets {unknown} in run {run.name!r}; "
                             f"known: {run.reference_names()}")
    # only the requested snapshots' rows: a live worker asks for one step at a time on runs of any length
    snapshots = run.snapshots() if steps is None else [run.snapshot(s) for s in choose_steps(run, steps)]
    result = RunEmbedding(encoder.id)
    todo: list[tuple[str, Any, str]] = []  # (kind, key, content hash)
    for snap in snapshots:
        if snap.n_nonfinite:
            result.skipped.append(snap.step)
            continue
        todo.append(("snapshot", snap.step, snap.arrays["samples"]))
    for name in wanted_refs:
        todo.append(("reference", name, run.reference_hash(name)))
    if result.skipped:
        warnings.warn(
            f"evolens: snapshots at steps {result.skipped} have non-finite samples and were not embedded",
            RuntimeWarning, stacklevel=3,
        )
    from tqdm.auto import tqdm

    description = describe_encoder_input(encoder)
    if on_ray is not None:
        result.computed += _embed_on_ray(run, encoder, todo, batch_size, progress, description, on_ray)
    for kind, key, digest in tqdm(todo, desc=f"embedding ({encoder.name})", unit="set", disable=not progress):
        features = run.derived(FEATURES, encoder_id=encoder.id, source=digest)
        if features is None and kind == "reference":  # the named reference this one is: its shards, read
            features = _shared_features(run, key, encoder.id)  # where used (never all at once)
        if features is None:
            images = run.samples(key) if kind == "snapshot" else run.reference(key).images
            features = encoder.encode(images, batch_size)
            run.add_derived(FEATURES, features, encoder_id=encoder.id, source=digest, meta=description)
            result.computed += 1
        if kind == "snapshot" or not isinstance(features, ShardedFeatures):
            features = np.asarray(features)
        (result.snapshots if kind == "snapshot" else result.references)[key] = features
    return result


def _shared_features(run: Run, name: str, encoder_id: str) -> ShardedFeatures | None:
    """The shards of the named reference that the run's reference ``name`` is (resolved by identity), or None."""
    shared = shared_reference(run, name, encoder_id)
    return shared.features(encoder_id) if shared is not None else None


def _embed_on_ray(run: Run, encoder: Encoder, todo: list[tuple[str, Any, str]], batch_size: int | None,
                  progress: bool, description: dict[str, Any], on_ray: dict[str, Any]) -> int:
    """Embed the arrays of ``todo`` not stored yet in one Ray pipeline and store them (the local loop then reads
    them back). Workers read the run's array files themselves (verified here first)."""
    from .ray_engine import NpySource, embed_sources

    missing: dict[str, tuple[str, Any]] = {}
    for kind, key, digest in todo:
        if digest not in missing and run.derived(FEATURES, encoder_id=encoder.id, source=digest) is None and \
                (kind != "reference" or _shared_features(run, key, encoder.id) is None):
            missing[digest] = (kind, key)
    if not missing:
        return 0
    sources = []
    for digest, (kind, key) in missing.items():
        stored = run.array_file(digest)  # a snapshot's samples or a reference's images, by content hash
        sources.append(NpySource(str(stored), int(np.load(stored, mmap_mode="r").shape[0])))
    features = embed_sources(encoder, sources, batch_size=batch_size, progress=progress, **on_ray)
    for digest, values in zip(missing, features):
        run.add_derived(FEATURES, values, encoder_id=encoder.id, source=digest, meta=description)
    return len(missing)
