"""Projection analysis: embed a run, lay out reference data and every snapshot on one map, store the map.

``projection(run, encoder=...)`` fits an ``EvolutionaryTSNE`` and stores, as derived arrays of the run, the map
coordinates of each snapshot and of a reference subsample, the labels of that subsample and the fitted map
itself (so ``extend`` can place later snapshots after a restart). A ``projection`` event records its
parameters, scores and axis ranges. The same call on the same inputs finds the stored map and computes
nothing. ``load_projection`` reads a map back; the report and the dashboard draw it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..encoders import Encoder, get_encoder
from ..errors import InputError
from ..projection.evolutionary import EvolutionaryTSNE
from ..store import maps
from ..store.run import Run, opened
from ._base import check_reference_name, choose_steps
from .embedding import embedding

__all__ = ["Projection", "load_projection", "projection", "projection_bounds", "projection_coords",
           "stored_projections"]


@dataclass
class Projection:
    """A stored map: ``coords[step]`` (n, 2), ``ids[step]``, ``labels[step]`` (or None), reference points."""

    projection_id: str
    encoder_id: str
    layout: str
    steps: list[int]
    coords: dict[int, np.ndarray] = field(default_factory=dict)
    ids: dict[int, np.ndarray] = field(default_factory=dict)
    labels: dict[int, np.ndarray | None] = field(default_factory=dict)
    reference_coords: np.ndarray | None = None
    reference_labels: np.ndarray | None = None
    scores: dict[str, float] = field(default_factory=dict)
    computed: bool = False


projection_bounds = maps.bounds_of  # the map format lives in store/maps.py


def stored_projections(run: Run) -> list[dict[str, Any]]:
    """The record of every map stored in the run (oldest first): ``projection_id``, ``encoder_id``, ``layout``,
    ``steps``, ``scores``, ``bounds`` and the parameters (``store.maps.records``)."""
    return maps.records(run)


def projection_coords(run: Run, meta: dict[str, Any], step: int | None) -> np.ndarray | None:
    """Map coordinates (n, 2) of snapshot ``step`` (or of the reference points when None) of the map ``meta``."""
    return maps.frame(run, meta, step)


def reference_subsample(n_reference: int, max_reference: int, seed: int) -> np.ndarray:
    """Which reference items (sorted indices, at most ``max_reference`` of ``n_reference``) a map draws: the same
    for the same arguments, so a view finds the image behind a reference point from the map's description."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_reference, min(max_reference, n_reference), replace=False))


def projection_reference_items(run: Run, reference: str | None, max_reference: int | None,
                               seed: int | None) -> np.ndarray | None:
    """Indices into the reference set ``reference`` of a map's reference points (in their order), from the map's
    description (its ``reference``, ``max_reference`` and ``seed``); None when the map has none or the
    description lacks them (maps stored by evolens 0.1)."""
    if reference is None or max_reference is None or seed is None or reference not in run.reference_names():
        return None
    return reference_subsample(run.reference_sizes()[reference], int(max_reference), int(seed))


def projection_reference_labels(run: Run, meta: dict[str, Any]) -> np.ndarray | None:
    """Labels of the reference points of the map ``meta`` (None when the reference has no labels)."""
    return maps.reference_labels(run, meta)


def projection(
    run: Run | str | os.PathLike,
    *,
    encoder: str | Encoder = "efficientnet-lite0",
    reference: str | None = "train",
    steps: Sequence[int] | None = None,
    max_reference: int = 2000,
    layout: str = "free",
    seed: int = 0,
    progress: bool = True,
    **params: Any,
) -> Projection:
    """Fit an ``EvolutionaryTSNE`` to the run's snapshots (and a reference subsample) and store it in the run.

    Args:
        run: ``Run`` or run directory.
        encoder: encoder name or instance (features cached in the run).
        reference: reference set drawn in grey on the map (None for none); at most ``max_reference`` of its
            points, chosen with ``seed``.
        steps: snapshots to project (default: all with finite samples).
        layout, params: passed to ``EvolutionaryTSNE``.

    Returns the ``Projection`` (``computed`` False when an identical map was already stored).
    """
    encoder = get_encoder(encoder)
    with opened(run) as run:
        if reference is not None:
            check_reference_name(run, reference)
        nonfinite = {s.step for s in run.snapshots() if s.n_nonfinite}
        chosen = [s for s in choose_steps(run, steps) if s not in nonfinite]
        if not chosen:
            raise InputError(f"run: no snapshots with finite samples to project in {run.name!r}")
        description = {"encoder_id": encoder.id, "layout": layout, "steps": chosen, "reference": reference,
                       "max_reference": max_reference, "seed": seed, "params": params}
        projection_id = hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()[:16]
        if any(meta.get("projection_id") == projection_id for meta in stored_projections(run)):
            return load_projection(run, projection_id)
        embedded = embedding(run, encoder=encoder, reference=[reference] if reference else False, steps=chosen,
                             progress=progress)
        ref_features = ref_labels = None
        if reference is not None:
            all_features = embedded.references[reference]
            index = reference_subsample(all_features.shape[0], max_reference, seed)
            ref_features = all_features[index]
            labels = run.reference_labels(reference)
            ref_labels = labels[index] if labels is not None else None
        ids = [run.probe_ids(s) for s in chosen]
        model = EvolutionaryTSNE(layout=layout, random_state=seed, **params)
        model.fit([embedded.snapshots[s] for s in chosen], ids, reference=ref_features)
        scores = model.scores()
        result = Projection(projection_id, encoder.id, layout, chosen, reference_labels=ref_labels, scores=scores,
                            computed=True)
        for step, coords, step_ids in zip(chosen, model.embedding_, ids):
            result.coords[step] = coords.astype(np.float32)
            result.ids[step] = step_ids
            result.labels[step] = run.labels(step)
        if model.reference_embedding_ is not None:
            result.reference_coords = model.reference_embedding_.astype(np.float32)
        maps.add_map(run, {**description, "projection_id": projection_id, "scores": scores}, result.coords,
                     result.reference_coords, ref_labels if result.reference_coords is not None else None,
                     model.to_bytes(), f"evolutionary t-SNE ({layout}) of {len(chosen)} snapshots with {encoder.id}")
    return result


def load_projection(run: Run | str | os.PathLike, projection_id: str | None = None) -> Projection:
    """Read a stored projection (the latest one unless ``projection_id`` is given)."""
    with opened(run) as run:
        metas = [m for m in stored_projections(run) if projection_id is None or m.get("projection_id") == projection_id]
        if not metas:
            raise InputError(f"run: no stored projection{' ' + projection_id if projection_id else ''} in "
                             f"{run.name!r}; run evolens.analyses.projection first")
        meta = metas[-1]
        result = Projection(meta["projection_id"], meta["encoder_id"], meta["layout"], list(meta["steps"]),
                            scores=meta.get("scores", {}))
        for step in result.steps:
            result.coords[step] = projection_coords(run, meta, step)
            result.ids[step] = run.probe_ids(step)
            result.labels[step] = run.labels(step)
        result.reference_coords = projection_coords(run, meta, None)
        result.reference_labels = projection_reference_labels(run, meta)
    return result


def load_projection_model(run: Run | str | os.PathLike, projection_id: str | None = None) -> EvolutionaryTSNE:
    """The fitted map of a stored projection, ready for ``extend`` (maps stored by evolens 0.1 have none).

    The map is stored with pickle: load maps only from runs you trust, as with any pickled model.
    """
    with opened(run) as run:
        metas = [m for m in stored_projections(run) if projection_id is None or m.get("projection_id") == projection_id]
        if not metas:
            raise InputError(f"run: no stored projection{' ' + projection_id if projection_id else ''} in {run.name!r}")
        blob = maps.model_bytes(run, metas[-1])
        if blob is None:
            raise InputError(f"projection_id: the map {metas[-1]['projection_id']} has no stored model "
                             "(written by evolens 0.1); fit it again with evolens.analyses.projection")
        return EvolutionaryTSNE.from_bytes(blob)
