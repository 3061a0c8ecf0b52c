"""Runners: apply the pure metric functions to every snapshot of a run and store the results in it.

``analyze_run`` embeds the run with an encoder (cached), computes the quality metrics of every snapshot
against a reference set, overall and per class, and appends them as scalars (``quality/fid``,
``quality/fid/class=3``, ...). Reference-side quantities (FID statistics, k-NN radii, the CMMD real-real
term) are computed once per analysis; the FID statistics of the reference are stored in the run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .encoders import Encoder, embed_run, get_encoder
from .errors import InputError
from .metrics import quality
from .store.reader import Run, open_run

__all__ = ["QUALITY_METRICS", "QualityAnalysis", "analyze_attributes", "analyze_run"]

QUALITY_METRICS = ("fid", "kid", "prdc", "vendi", "cmmd")
PRECISION_RECALL_K = 3  # Kynkäänniemi et al. 2019
DENSITY_COVERAGE_K = 5  # Naeem et al. 2020


@dataclass
class QualityAnalysis:
    """Result of ``analyze_run``: ``values[step][scalar name]``, plus what was skipped and why."""

    encoder_id: str
    reference: str
    values: dict[int, dict[str, float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one scalar across snapshots (steps where it was computed)."""
        steps = [s for s in sorted(self.values) if name in self.values[s]]
        return np.array(steps, dtype=np.int64), np.array([self.values[s][name] for s in steps])


class _ReferenceSide:
    """Everything that depends only on the reference features of one group (all, or one class)."""

    def __init__(self, features: np.ndarray, metrics: Sequence[str], stats: quality.FeatureStatistics | None = None):
        self.features = features
        self.n = features.shape[0]
        self.stats = stats
        if "fid" in metrics and stats is None and self.n >= 2:
            self.stats = quality.FeatureStatistics().update(features)
        self.radii = {}
        if "prdc" in metrics:
            for k in {PRECISION_RECALL_K, DENSITY_COVERAGE_K}:
                if self.n > k:
                    self.radii[k] = quality.real_radii_sq(features, k)
        self.cmmd_term = quality.cmmd_real_term(features) if "cmmd" in metrics else None


def _metrics_for(ref: _ReferenceSide, fake: np.ndarray, metrics: Sequence[str], prefix: str) -> dict[str, float]:
    out: dict[str, float] = {}
    n_fake = fake.shape[0]
    if n_fake < 2 or ref.n < 2:
        return out
    if "fid" in metrics:
        if fake.shape[0] < fake.shape[1]:
            out[f"{prefix}fid"] = quality.fid(ref.features, fake)  # the low-rank path, exact
        else:
            mu, cov = quality.features_to_stats(fake)
            out[f"{prefix}fid"] = quality.fid_from_stats(ref.stats.mean, ref.stats.cov, mu, cov)
    if "kid" in metrics:
        out[f"{prefix}kid"], out[f"{prefix}kid_std"] = quality.kid(ref.features, fake)
    if "prdc" in metrics:
        if PRECISION_RECALL_K in ref.radii and n_fake > PRECISION_RECALL_K:
            pr = quality.prdc(ref.features, fake, PRECISION_RECALL_K, real_radii=ref.radii[PRECISION_RECALL_K])
            out[f"{prefix}precision"], out[f"{prefix}recall"] = pr.precision, pr.recall
        if DENSITY_COVERAGE_K in ref.radii and n_fake > DENSITY_COVERAGE_K:
            dc = quality.prdc(ref.features, fake, DENSITY_COVERAGE_K, real_radii=ref.radii[DENSITY_COVERAGE_K])
            out[f"{prefix}density"], out[f"{prefix}coverage"] = dc.density, dc.coverage
    if "vendi" in metrics:
        out[f"{prefix}vendi"] = quality.vendi(fake)
    if "cmmd" in metrics:
        out[f"{prefix}cmmd"] = quality.cmmd(ref.features, fake, real_term=ref.cmmd_term)
    return out


def _reference_stats(run: Run, reference: str, encoder_id: str, features: np.ndarray) -> quality.FeatureStatistics:
    key = f"fidstats:{run.reference_hash(reference)}"
    cached = run.cached_features(key, encoder_id)
    if cached is not None:
        return quality.FeatureStatistics.from_state(cached)
    stats = quality.FeatureStatistics().update(features)
    run.add_features(key, encoder_id, stats.state(), {"kind": "fid-statistics", "reference": reference})
    return stats


def analyze_run(
    run: Run | str | os.PathLike,
    encoder: str | Encoder = "efficientnet-lite0",
    reference: str = "train",
    by: str | None = "label",
    *,
    metrics: Sequence[str] = QUALITY_METRICS,
    steps: Sequence[int] | None = None,
    progress: bool = True,
    store: bool = True,
    **encoder_kwargs: Any,
) -> QualityAnalysis:
    """Quality metrics of every snapshot against the reference set, overall and per class; stored as scalars.

    Args:
        run: a ``Run`` or run directory.
        encoder: encoder name or instance (features are cached in the run).
        reference: name of the reference set (``Run.add_reference``).
        by: ``"label"``: also per class, grouping samples by their stored labels and the reference by its
            labels (scalars ``quality/<metric>/class=<c>``); None: overall only.
        metrics: subset of ``("fid", "kid", "prdc", "vendi", "cmmd")``.
        steps: snapshots to analyse (default: all).
        store: append the results as scalars and an ``analysis`` event.

    Returns a ``QualityAnalysis``. Groups with fewer than 2 samples on either side are skipped (listed in
    ``skipped``); snapshots with non-finite samples are skipped by the embedding step.
    """
    unknown = sorted(set(metrics) - set(QUALITY_METRICS))
    if unknown:
        raise InputError(f"metrics: expected a subset of {QUALITY_METRICS}, received unknown {unknown}")
    if by not in ("label", None):
        raise InputError(f"by: expected 'label' or None, received {by!r}")
    run = run if isinstance(run, Run) else open_run(run)
    if reference not in run.reference_names():
        raise InputError(
            f"reference: no reference set {reference!r} in run {run.name!r} (known: {run.reference_names()}); "
            "store one with Run.add_reference(name, images, labels)"
        )
    encoder = get_encoder(encoder, **encoder_kwargs)
    embedded = embed_run(run, encoder, steps=steps, references=[reference], progress=progress)
    ref_features = embedded.references[reference]
    ref_labels = run.reference(reference).labels
    result = QualityAnalysis(encoder.id, reference)
    for step in embedded.skipped:
        result.skipped[f"step={step}"] = "non-finite samples"
    overall = _ReferenceSide(ref_features, metrics, _reference_stats(run, reference, encoder.id, ref_features)
                             if "fid" in metrics else None)
    per_class: dict[Any, _ReferenceSide] = {}
    if by == "label":
        if ref_labels is None:
            result.skipped["by=label"] = f"reference {reference!r} has no labels"
        else:
            for label in np.unique(ref_labels):
                per_class[label.item()] = _ReferenceSide(ref_features[ref_labels == label], metrics)
    from tqdm.auto import tqdm

    for step in tqdm(sorted(embedded.snapshots), desc="analyze_run", unit="snapshot", disable=not progress):
        fake = embedded.snapshots[step]
        values = _metrics_for(overall, fake, metrics, "quality/")
        if per_class:
            labels = run.labels(step)
            if labels is None:
                result.skipped[f"step={step}/by=label"] = "snapshot has no labels"
            else:
                for label, side in per_class.items():
                    group = fake[labels == label]
                    if group.shape[0] < 2 or side.n < 2:
                        result.skipped[f"step={step}/class={label}"] = f"{group.shape[0]} samples, {side.n} reference"
                        continue
                    values.update(_metrics_for(side, group, metrics, f"quality/class={label}/"))
        # Scalar names put the metric first: quality/fid/class=3 sits next to quality/fid.
        values = {_metric_first(name): value for name, value in values.items()}
        result.values[step] = values
        if store and values:
            run.add_scalars(step, values)
    if store:
        run.add_event(
            "analysis",
            f"quality metrics of {len(result.values)} snapshots against {reference!r} with {encoder.id}",
            data={"analysis": "quality", "encoder_id": encoder.id, "reference": reference, "by": by,
                  "metrics": list(metrics), "steps": sorted(result.values)},
        )
    return result


def _metric_first(name: str) -> str:
    parts = name.split("/")
    if len(parts) == 3 and parts[1].startswith("class="):
        return f"{parts[0]}/{parts[2]}/{parts[1]}"
    return name


def analyze_attributes(
    run: Run | str | os.PathLike,
    classifier: Any,
    *,
    reference: str | None = "train",
    majority: int | None = None,
    minority: int | None = None,
    steps: Sequence[int] | None = None,
    store: bool = True,
) -> dict[int, dict[str, float]]:
    """Attribute metrics of every snapshot, labels from ``classifier`` (``classify()`` or a callable).

    Per snapshot: the share of each attribute value (``attr/share/value=<v>``); total variation from the
    reference set's attribute distribution (``attr/divergence_tv``, the reference labelled by the same
    classifier); when the snapshot stores target labels, the target success rate (``attr/target_success``) and
    the mean per-target-class TV divergence (``attr/divergence_tv_by_class``); with ``majority``/``minority``,
    the fairness ratio ``attr/rfair``. Stored as scalars with an ``analysis`` event; returns ``{step: values}``.
    """
    from .metrics import attributes

    run = run if isinstance(run, Run) else open_run(run)
    ref_attrs = ref_classes = None
    if reference is not None:
        if reference not in run.reference_names():
            raise InputError(f"reference: no reference set {reference!r} in run {run.name!r}; known: {run.reference_names()}")
        ref = run.reference(reference)
        ref_attrs = attributes.labels_from_classifier(ref.images, classifier)
        ref_classes = ref.labels
    chosen = [s.step for s in run.snapshots() if not s.n_nonfinite] if steps is None else list(steps)
    results: dict[int, dict[str, float]] = {}
    for step in chosen:
        predicted = attributes.labels_from_classifier(run.samples(step), classifier)
        n_values = int(max(predicted.max(), ref_attrs.max() if ref_attrs is not None else 0)) + 1
        values = {f"attr/share/value={v}": float(share)
                  for v, share in enumerate(attributes.attribute_distribution(predicted, n_values))}
        if ref_attrs is not None:
            values["attr/divergence_tv"] = attributes.attribute_divergence(predicted, ref_attrs)
        targets = run.labels(step)
        if targets is not None:
            values["attr/target_success"] = attributes.target_success_rate(predicted, targets)
            if ref_classes is not None:
                by_class = attributes.attribute_divergence(predicted, ref_attrs, generated_classes=targets,
                                                           reference_classes=ref_classes)
                if by_class:
                    values["attr/divergence_tv_by_class"] = float(np.mean(list(by_class.values())))
        if majority is not None and minority is not None and np.isin([majority, minority], predicted).any():
            values["attr/rfair"] = attributes.rfair(predicted, majority, minority)
        results[step] = values
        if store:
            run.add_scalars(step, values)
    if store:
        run.add_event("analysis", f"attribute metrics of {len(results)} snapshots",
                      data={"analysis": "attributes", "reference": reference, "majority": majority,
                            "minority": minority, "steps": sorted(results)})
    return results
