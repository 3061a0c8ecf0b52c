"""Proximity analysis: how close each snapshot's samples sit to the training data — the memorisation signal.

Per snapshot, in the feature space of ``encoder`` (``pixels`` by default, where copying is literal):

- ``copy_rate``: share of samples whose nearest training item is closer than ``ratio`` × the second nearest;
- ``nn_distance_train``: median distance of a sample to its nearest training item;
- with a held-out reference: ``nn_distance_heldout`` (median distance to the nearest held-out item),
  ``nn_ratio`` = train / held-out median (< 1: closer to the training data than fresh data is) and
  ``closer_to_train`` (the share nearer to a training item; ~0.5 for a model that generalises) when the two
  sets have about the same size, ``nn_divergence`` (KL between the distance histograms of samples and of
  held-out items to the training set, on bins fixed once per analysis at the held-out distances' quantiles) with
  its 95% bootstrap interval ``nn_divergence_low``/``_high``, and the C_T data-copying statistic
  ``data_copying_ct`` (Meehan et al. 2020; with at least 60 samples per snapshot, since it only counts k-means
  cells holding more than 20/m of the samples);
- ``authenticity`` (Alaa et al. 2022) and ``extraction_rate`` (Carlini et al. 2023's normalised l2 below 1/3).

Evidence: each sample's ``NEAREST_K`` nearest training items (distances and indices) are stored per snapshot
(derived kind ``nearest-train``), so a view can show a sample beside what it is close to
(``nearest_training``).

Names are ``proximity/<metric>@<encoder id>~<reference>``.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from .. import names as N
from ..encoders import Encoder, get_encoder
from ..errors import InputError
from ..metrics import proximity as P
from ..store.run import Run, opened
from ..store.derived import HELDOUT_NEAREST_TRAIN, TRAINING_SPACING
from ..store.references import shared_reference
from ._base import (AnalysisResult, check_reference_name, choose_steps, per_snapshot, snapshot_features,
                    stored_reference_quantity)
from .embedding import embedding

__all__ = ["NEAREST_K", "nearest_training", "proximity"]

DEFAULT_HELDOUT = "heldout"
NEAREST_K = 5  # nearest training items stored per sample as evidence
EXTRACTION_NEIGHBORS = 50  # Carlini et al.'s neighbourhood of the normalised l2
CT_MIN_SAMPLES = 60  # C_T keeps cells holding more than 20/m of the samples: below 60 samples hardly any cell does


def nearest_training(run: Run | str | os.PathLike, step: int, *, encoder: str | Encoder = "pixels",
                     reference: str = "train") -> tuple[np.ndarray, np.ndarray] | None:
    """The stored evidence of snapshot ``step``: (distances (n, k), indices (n, k) into the reference set) of
    each sample's nearest reference items in ``encoder``'s space, or None when the proximity analysis has not
    stored them."""
    from ..store.derived import NEAREST_TRAIN

    encoder_id = get_encoder(encoder).id if isinstance(encoder, str) else encoder.id
    with opened(run) as run:
        check_reference_name(run, reference)
        source = run.reference_hash(reference)
        distances = run.derived(NEAREST_TRAIN, encoder_id=encoder_id, source=source,
                                params={"k": NEAREST_K, "part": "distance"}, step=step)
        indices = run.derived(NEAREST_TRAIN, encoder_id=encoder_id, source=source,
                              params={"k": NEAREST_K, "part": "index"}, step=step)
    return None if distances is None or indices is None else (distances, indices)


def proximity(
    run: Run | str | os.PathLike,
    *,
    encoder: str | Encoder = "pixels",
    reference: str = "train",
    heldout: str | None = DEFAULT_HELDOUT,
    steps: Sequence[int] | None = None,
    ratio: float = 1 / 3,
    bins: int = 20,
    progress: bool = False,
    prepared: dict | None = None,
    **encoder_kwargs: Any,
) -> AnalysisResult:
    """Memorisation metrics of every snapshot (or ``steps``) against the training reference set.

    Args:
        run: a ``Run`` or run directory.
        encoder: encoder name or instance (``pixels`` by default; ``identity`` for non-image samples).
        reference: the training data (a reference set of the run).
        heldout: a reference set of fresh data from the same distribution; the metrics that need it are
            skipped when the default ``"heldout"`` is absent, and an absent name given explicitly is an error.
        ratio: the copy criterion of ``copy_rate`` (Yoon et al. 2023; 1/3).
        bins: histogram bins of ``nn_divergence``.

    Returns an ``AnalysisResult``; steps already analysed in this context are read back, not recomputed.
    
    ``prepared``: a dict kept across calls (a live worker's) that keeps the prepared reference side for the next
    snapshot (``_base.per_snapshot``)."""
    if not 0 < ratio < 1:
        raise InputError(f"ratio: expected a number in (0, 1), received {ratio!r}")
    encoder = get_encoder(encoder, **encoder_kwargs)
    with opened(run) as run:
        check_reference_name(run, reference)
        if heldout is not None and heldout not in run.reference_names():
            if heldout != DEFAULT_HELDOUT:
                check_reference_name(run, heldout, "heldout")
            heldout = None
        chosen = choose_steps(run, steps)
        result = AnalysisResult("proximity", encoder.id, reference)
        context = {"encoder": encoder.id, "reference": reference, "heldout": heldout, "ratio": ratio, "bins": bins,
                   "version": 2}
        if heldout is None:
            result.skipped["heldout"] = "no held-out reference set: nn_distance_heldout, nn_ratio, nn_divergence skipped"

        def name(metric: str) -> str:
            return N.scalar_name(N.PROXIMITY, metric, encoder=encoder.id, reference=reference)

        def prepare(todo: list[int]):
            refs = [reference] + ([heldout] if heldout else [])
            embedded = embedding(run, encoder=encoder, reference=refs, steps=todo, progress=progress)
            features_of = snapshot_features(embedded, lambda step: embedding(run, encoder=encoder, reference=False,
                                                                             steps=[step], progress=False))
            train = embedded.references[reference]
            held = embedded.references.get(heldout) if heldout else None
            comparable = held is not None and abs(train.shape[0] - held.shape[0]) <= 0.1 * max(train.shape[0],
                                                                                               held.shape[0])
            if held is not None and not comparable:
                result.skipped["nn_ratio"] = (f"train ({train.shape[0]}) and held-out ({held.shape[0]}) sets differ "
                                              "in size by more than 10%")
            # the same bins, spacing and cells judge every snapshot: the searches of the reference alone are
            # stored (in the run, or with the named reference whose shards these are), not redone per snapshot
            many = train.shape[0] >= 2
            source = run.reference_hash(reference)
            shared = shared_reference(run, reference, encoder.id)  # None unless it is a named reference

            def stored(kind, compute, **params):
                return stored_reference_quantity(run, kind, compute, encoder_id=encoder.id, source=source,
                                                 params=params, meta={"reference": reference}, shared=shared)

            spacing = stored(TRAINING_SPACING, lambda: P.training_spacing(train)) if many else None
            d_held = edges = None
            if held is not None and held.shape[0] >= 2:
                d_held = stored(HELDOUT_NEAREST_TRAIN, lambda: P.nearest_neighbors(held, train, 1)[0][:, 0],
                                heldout=run.reference_hash(heldout))
                edges = P.nn_divergence_edges_from_distances(d_held, bins)
            partition = None
            if held is not None and many and train.shape[0] >= 3:
                # the cells, and the held-out rows' cells and distances, fitted once (shards: read one at a time)
                partition = P.ct_partition(train, seed=0, heldout=held if held.shape[0] >= 2 else None)
            # one neighbour search per snapshot serves the evidence and every metric below (the extraction
            # criterion needs the most neighbours: Carlini et al.'s 50)
            k = min(max(NEAREST_K, EXTRACTION_NEIGHBORS), train.shape[0])

            def compute(step: int) -> dict[str, float]:
                from ..store.derived import NEAREST_TRAIN

                fake = features_of(step)
                if fake is None:
                    result.skipped[f"step={step}"] = "non-finite samples"
                    return {}
                distances, indices = P.nearest_neighbors(fake, train, k)
                for part, array in (("distance", distances[:, :NEAREST_K].astype(np.float32)),
                                    ("index", indices[:, :NEAREST_K].astype(np.int64))):
                    run.add_derived(NEAREST_TRAIN, array, encoder_id=encoder.id, source=source,
                                    params={"k": NEAREST_K, "part": part}, step=step)
                values = {name(N.NN_DISTANCE_TRAIN): float(np.median(distances[:, 0]))}
                if many:
                    values[name(N.COPY_RATE)] = P.copy_rate_from_distances(distances, ratio)
                    values[name(N.AUTHENTICITY)] = P.authenticity_from_neighbors(distances[:, 0], indices[:, 0],
                                                                                 spacing)
                    values[name(N.EXTRACTION_RATE)] = float(np.mean(P.normalized_l2_from_distances(distances) < P.EXTRACTION_THRESHOLD))
                if held is not None:
                    values[name(N.NN_DISTANCE_HELDOUT)] = float(np.median(P.nearest_neighbors(fake, held, 1)[0]))
                    if edges is not None and fake.shape[0] >= 2:
                        ci = P.nn_divergence_from_distances(distances[:, 0], d_held, edges=edges, seed=step % 2**32)
                        values[name(N.NN_DIVERGENCE)] = ci.value
                        values[name(N.NN_DIVERGENCE_LOW)], values[name(N.NN_DIVERGENCE_HIGH)] = ci.low, ci.high
                    if partition is not None and fake.shape[0] >= CT_MIN_SAMPLES:
                        try:
                            values[name(N.DATA_COPYING_CT)] = P.data_copying_ct(fake, train, held, partition=partition)
                        except InputError as exc:  # a cell without held-out data: C_T is undefined here
                            result.skipped[N.DATA_COPYING_CT] = str(exc)
                    elif partition is not None:
                        result.skipped[N.DATA_COPYING_CT] = (f"C_T needs at least {CT_MIN_SAMPLES} samples per "
                                                             f"snapshot, received {fake.shape[0]}")
                    if comparable:
                        gap = P.train_heldout_gap(fake, train, held)
                        values[name(N.NN_RATIO)], values[name(N.CLOSER_TO_TRAIN)] = gap.ratio, gap.closer_to_train
                return values

            return compute

        per_snapshot(run, result, context, chosen, prepare, prepared=prepared, family=N.PROXIMITY, what="proximity metrics",
                     progress=progress)
    return result
