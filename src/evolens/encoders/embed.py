"""Embed the snapshots and reference sets of a run, once per (content, encoder).

Features are cached in the run store under (content hash of the images, encoder id): calling ``embed_run``
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

from ..errors import InputError
from ..store.reader import Run, open_run
from .base import Encoder, describe_encoder_input
from .registry import get_encoder


@dataclass
class RunEmbedding:
    """Features of a run under one encoder.

    Attributes:
        encoder_id: id of the encoder (name + weights hash).
        snapshots: step → (n_probes, dim) float32 features.
        references: reference name → (n, dim) float32 features.
        skipped: steps not embedded because their samples are not finite.
        computed: how many arrays were embedded now (the rest came from the cache).
    """

    encoder_id: str
    snapshots: dict[int, np.ndarray] = field(default_factory=dict)
    references: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)
    computed: int = 0


def _as_run(run: Run | str | os.PathLike) -> Run:
    return run if isinstance(run, Run) else open_run(run)


def embed_run(
    run: Run | str | os.PathLike,
    encoder: str | Encoder,
    *,
    steps: Sequence[int] | None = None,
    references: bool | Sequence[str] = True,
    batch_size: int | None = None,
    progress: bool = True,
    **encoder_kwargs: Any,
) -> RunEmbedding:
    """Embed every snapshot (or ``steps``) and every reference set (or the named ones) of ``run``.

    Args:
        run: a ``Run`` or a run directory.
        encoder: registered name or ``Encoder`` instance; ``encoder_kwargs`` go to ``get_encoder``.
        steps: snapshot steps to embed (default: all).
        references: True for all references, False for none, or a list of names.
        batch_size: encoder batch size (default: the encoder's).
        progress: show a progress bar over the arrays to embed.

    Returns a ``RunEmbedding``. Encoders that need fitting (``pixels`` with ``pca=``) are fitted on the
    ``train`` reference (or the first one).
    """
    run = _as_run(run)
    encoder = get_encoder(encoder, **encoder_kwargs)
    if getattr(encoder, "needs_fit", False):
        names = run.reference_names()
        if not names:
            raise InputError("encoder: needs fitting on a reference set, but the run has none (Run.add_reference)")
        encoder.fit(run.reference("train" if "train" in names else names[0]).images)
    wanted_refs = run.reference_names() if references is True else ([] if references is False else list(references))
    snapshots = run.snapshots()
    if steps is not None:
        by_step = {s.step: s for s in snapshots}
        missing = sorted(set(steps) - set(by_step))
        if missing:
            raise InputError(f"steps: no snapshots at {missing}; captured: {sorted(by_step)}")
        snapshots = [by_step[s] for s in steps]
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
            RuntimeWarning, stacklevel=2,
        )
    from tqdm.auto import tqdm

    description = describe_encoder_input(encoder)
    for kind, key, digest in tqdm(todo, desc=f"embed_run ({encoder.name})", unit="set", disable=not progress):
        features = run.cached_features(digest, encoder.id)
        if features is None:
            images = run.samples(key) if kind == "snapshot" else run.reference(key).images
            features = encoder.encode(images, batch_size)
            run.add_features(digest, encoder.id, features, description)
            result.computed += 1
        (result.snapshots if kind == "snapshot" else result.references)[key] = np.asarray(features)
    return result
