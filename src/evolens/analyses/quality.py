"""Quality analysis: how close each snapshot's samples are to a reference set, overall and per class.

``quality(run, encoder=..., reference=...)`` embeds the snapshots (features cached in the run), computes FID,
KID, precision/recall/density/coverage, Vendi and CMMD of every snapshot against the reference set, and stores
them as scalars named with their encoder and reference (``quality/fid@<encoder id>~train``, per class
``quality/fid/class=3@...``), so two encoders never overwrite each other. Reference-side quantities (FID
statistics, k-NN radii) are computed once and stored in the run; a second call computes nothing.

Against a named reference (``evolens.store.references``) the reference side is its shards, read one at a time
(KID gathers its subsets' rows, FID uses the stored statistics), and its reference-side quantities are read
from, or stored once into, the named reference for every run that uses it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .. import names as N
from ..encoders import Encoder, get_encoder
from ..errors import InputError
from ..metrics import quality as Q
from ..store.derived import CMMD_REFERENCE_TERM, FID_STATISTICS, PRDC_RADII
from ..store.references import NamedReference, shared_reference
from ..store.run import Run, opened
from ._base import (AnalysisResult, check_reference_name, choose_steps, per_snapshot, snapshot_features,
                    stored_reference_quantity)
from .embedding import embedding

__all__ = ["QUALITY_METRICS", "quality"]

QUALITY_METRICS = ("fid", "kid", "prdc", "vendi", "cmmd")
PRECISION_RECALL_K = Q.PRECISION_RECALL_K
DENSITY_COVERAGE_K = Q.DENSITY_COVERAGE_K


@dataclass
class _ReferenceSide:
    """Everything that depends only on the reference features of one group (all, or one class)."""

    features: Any  # (n, d) array, or a blocked set (ShardedFeatures / RowSelection) read a shard at a time
    stats: Q.FeatureStatistics | None = None
    radii: dict[int, np.ndarray] = field(default_factory=dict)
    cmmd_term: float | None = None

    @property
    def n(self) -> int:
        return self.features.shape[0]


def _metrics_for(ref: _ReferenceSide, fake: np.ndarray, metrics: Sequence[str]) -> dict[str, float]:
    """``{metric: value}`` of one group of generated features against one reference side."""
    out: dict[str, float] = {}
    n_fake = fake.shape[0]
    if n_fake < 2 or ref.n < 2:
        return out
    if "fid" in metrics:
        if n_fake < fake.shape[1] and not Q.is_blocked(ref.features):
            out[N.FID] = Q.fid(ref.features, fake)  # the low-rank path, exact
        else:
            mu, cov = Q.fid_statistics(fake)
            out[N.FID] = Q.frechet_distance(ref.stats.mean, ref.stats.cov, mu, cov)
    if "kid" in metrics:
        out[N.KID], out[N.KID_STD] = Q.kid(ref.features, fake)
    if "prdc" in metrics:
        if PRECISION_RECALL_K in ref.radii and n_fake > PRECISION_RECALL_K:
            pr = Q.prdc(ref.features, fake, PRECISION_RECALL_K, real_radii=ref.radii[PRECISION_RECALL_K])
            out[N.PRECISION], out[N.RECALL] = pr.precision, pr.recall
        if DENSITY_COVERAGE_K in ref.radii and n_fake > DENSITY_COVERAGE_K:
            dc = Q.prdc(ref.features, fake, DENSITY_COVERAGE_K, real_radii=ref.radii[DENSITY_COVERAGE_K])
            out[N.DENSITY], out[N.COVERAGE] = dc.density, dc.coverage
    if "vendi" in metrics:
        out[N.VENDI] = Q.vendi(fake)
    if "cmmd" in metrics:
        out[N.CMMD] = Q.cmmd(ref.features, fake, real_term=ref.cmmd_term)
    return out


def _statistics(features: Any) -> Q.FeatureStatistics:
    """FID statistics of an array, or of a blocked set merged shard by shard (never all rows at once)."""
    if Q.is_blocked(features):
        return Q.FeatureStatistics().update_blocks(block for _, block in features.blocks())
    return Q.FeatureStatistics().update(features)


def _stored_reference_side(run: Run, reference: str, encoder_id: str, features: Any,
                           metrics: Sequence[str], cls: Any = None, shared: NamedReference | None = None,
                           ) -> _ReferenceSide:
    """The reference side of all reference items (``cls`` None) or of one class, with its FID statistics, k-NN
    radii and CMMD term read from the run — or from the named reference ``shared`` whose shards ``features``
    are — or computed once and stored there (in ``shared`` when given: every run using it reads them). A live
    worker calls this for every snapshot."""
    source = run.reference_hash(reference)
    group = {} if cls is None else {"class": cls}
    meta = {"reference": reference, **group}

    def stored(kind: str, compute, **params):
        return stored_reference_quantity(run, kind, compute, encoder_id=encoder_id, source=source,
                                         params={**group, **params}, meta=meta, shared=shared)

    n = features.shape[0]
    stats = radii = None
    if "fid" in metrics and n >= 2:
        stats = Q.FeatureStatistics.from_state(stored(FID_STATISTICS, lambda: _statistics(features).state()))
    if "prdc" in metrics:
        radii = {k: stored(PRDC_RADII, lambda k=k: Q.prdc_radii(features, k), k=k)
                 for k in (PRECISION_RECALL_K, DENSITY_COVERAGE_K) if n > k}
    cmmd_term = None
    if "cmmd" in metrics and n >= 2:
        cmmd_term = float(stored(CMMD_REFERENCE_TERM, lambda: np.array([Q.cmmd_reference_term(features)]))[0])
    return _ReferenceSide(features, stats, radii or {}, cmmd_term)


def quality(
    run: Run | str | os.PathLike,
    *,
    encoder: str | Encoder = "efficientnet-lite0",
    reference: str = "train",
    steps: Sequence[int] | None = None,
    metrics: Sequence[str] = QUALITY_METRICS,
    by: str | None = "label",
    progress: bool = True,
    prepared: dict | None = None,
    **encoder_kwargs: Any,
) -> AnalysisResult:
    """Quality metrics of every snapshot (or ``steps``) against a reference set, overall and per class.

    Args:
        run: a ``Run`` or run directory.
        encoder: encoder name or instance (features are cached in the run).
        reference: name of the reference set (``Run.add_reference``).
        steps: snapshots to analyse (default: all); steps already analysed in this context are read back.
        metrics: subset of ``("fid", "kid", "prdc", "vendi", "cmmd")``.
        by: ``"label"``: also per class, grouping samples by their stored labels and the reference by its
            labels; None: overall only.

    Returns an ``AnalysisResult`` whose names are ``quality/<metric>[/class=<c>]@<encoder id>~<reference>``.
    Groups with fewer than 2 samples on either side are skipped (listed in ``skipped``), and so are snapshots
    with non-finite samples.
    
    ``prepared``: a dict kept across calls (a live worker's) that keeps the prepared reference side for the next
    snapshot (``_base.per_snapshot``)."""
    unknown = sorted(set(metrics) - set(QUALITY_METRICS))
    if isinstance(metrics, str) or unknown:
        raise InputError(f"metrics: expected a subset of {QUALITY_METRICS}, received {metrics!r}")
    if by not in ("label", None):
        raise InputError(f"by: expected 'label' or None, received {by!r}")
    encoder = get_encoder(encoder, **encoder_kwargs)
    with opened(run) as run:
        check_reference_name(run, reference)
        chosen = choose_steps(run, steps)
        result = AnalysisResult("quality", encoder.id, reference)
        context = {"encoder": encoder.id, "reference": reference, "metrics": sorted(metrics), "by": by}

        def name(metric: str, cls: Any = None) -> str:
            return N.scalar_name(N.QUALITY, metric, cls=cls, encoder=encoder.id, reference=reference)

        def prepare(todo: list[int]):
            embedded = embedding(run, encoder=encoder, reference=[reference], steps=todo, progress=progress)
            features_of = snapshot_features(embedded, lambda step: embedding(run, encoder=encoder, reference=False,
                                                                             steps=[step], progress=False))
            ref_features = embedded.references[reference]  # a named reference's shards stay on disk
            shared = shared_reference(run, reference, encoder.id)  # None unless it is a named reference
            overall = _stored_reference_side(run, reference, encoder.id, ref_features, metrics, shared=shared)
            per_class: dict[Any, _ReferenceSide] = {}
            ref_labels = run.reference_labels(reference) if by == "label" else None
            if by == "label" and ref_labels is None:
                result.skipped["by=label"] = f"reference {reference!r} has no labels"
            elif ref_labels is not None:
                def rows_of(label):  # one class: a selection of the shards (nothing read yet), or an array
                    mask = ref_labels == label
                    return ref_features.select(mask) if Q.is_blocked(ref_features) else ref_features[mask]

                per_class = {label.item(): _stored_reference_side(run, reference, encoder.id, rows_of(label),
                                                                  metrics, cls=label.item(), shared=shared)
                             for label in np.unique(ref_labels)}

            def compute(step: int) -> dict[str, float]:
                fake = features_of(step)
                if fake is None:
                    result.skipped[f"step={step}"] = "non-finite samples"
                    return {}
                values = {name(m): v for m, v in _metrics_for(overall, fake, metrics).items()}
                if per_class:
                    labels = run.labels(step)
                    if labels is None:
                        result.skipped[f"step={step}/by=label"] = "snapshot has no labels"
                        return values
                    for label, side in per_class.items():
                        group = fake[labels == label]
                        if group.shape[0] < 2 or side.n < 2:
                            result.skipped[f"step={step}/class={label}"] = f"{group.shape[0]} samples, {side.n} reference"
                            continue
                        values.update({name(m, label): v for m, v in _metrics_for(side, group, metrics).items()})
                return values

            return compute

        per_snapshot(run, result, context, chosen, prepare, prepared=prepared, family=N.QUALITY, what="quality metrics",
                     progress=progress)
    return result
