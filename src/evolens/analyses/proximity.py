"""Proximity analysis: how close each snapshot's samples sit to the training data — the memorisation signal.

Per snapshot, in the feature space of ``encoder`` (``pixels`` by default, where copying is literal):

- ``copy_rate``: share of samples whose nearest training item is closer than ``ratio`` × the second nearest;
- ``nn_distance_train``: median distance of a sample to its nearest training item;
- with a held-out reference: ``nn_distance_heldout`` (median distance to the nearest held-out item),
  ``nn_ratio`` = train / held-out median (< 1: closer to the training data than fresh data is) and
  ``closer_to_train`` (the share nearer to a training item; ~0.5 for a model that generalises) when the two
  sets have about the same size, and ``nn_divergence`` (KL between the distance histograms of samples and of
  held-out items to the training set).

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
from ._base import AnalysisResult, check_reference_name, choose_steps, per_snapshot
from .embedding import embedding

__all__ = ["proximity"]

DEFAULT_HELDOUT = "heldout"


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
    """
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
        context = {"encoder": encoder.id, "reference": reference, "heldout": heldout, "ratio": ratio, "bins": bins}
        if heldout is None:
            result.skipped["heldout"] = "no held-out reference set: nn_distance_heldout, nn_ratio, nn_divergence skipped"

        def name(metric: str) -> str:
            return N.scalar_name(N.PROXIMITY, metric, encoder=encoder.id, reference=reference)

        def prepare(todo: list[int]):
            refs = [reference] + ([heldout] if heldout else [])
            embedded = embedding(run, encoder=encoder, reference=refs, steps=todo, progress=progress)
            train = embedded.references[reference]
            held = embedded.references.get(heldout) if heldout else None
            comparable = held is not None and abs(train.shape[0] - held.shape[0]) <= 0.1 * max(train.shape[0],
                                                                                               held.shape[0])
            if held is not None and not comparable:
                result.skipped["nn_ratio"] = (f"train ({train.shape[0]}) and held-out ({held.shape[0]}) sets differ "
                                              "in size by more than 10%")

            def compute(step: int) -> dict[str, float]:
                if step not in embedded.snapshots:
                    result.skipped[f"step={step}"] = "non-finite samples"
                    return {}
                fake = embedded.snapshots[step]
                values = {name(N.NN_DISTANCE_TRAIN): float(np.median(P.nearest_neighbors(fake, train, 1)[0]))}
                if train.shape[0] >= 2:
                    values[name(N.COPY_RATE)] = P.copy_rate(fake, train, ratio)
                if held is not None:
                    values[name(N.NN_DISTANCE_HELDOUT)] = float(np.median(P.nearest_neighbors(fake, held, 1)[0]))
                    values[name(N.NN_DIVERGENCE)] = P.nn_divergence(fake, train, held, bins=bins)
                    if comparable:
                        gap = P.train_heldout_gap(fake, train, held)
                        values[name(N.NN_RATIO)], values[name(N.CLOSER_TO_TRAIN)] = gap.ratio, gap.closer_to_train
                return values

            return compute

        per_snapshot(run, result, context, chosen, prepare, family=N.PROXIMITY, what="proximity metrics",
                     progress=progress)
    return result
