"""Attribute analysis: what an attribute classifier says about each snapshot's samples.

Per snapshot: the share of each attribute value, the total-variation distance from the reference set's
attribute distribution (the reference labelled by the same classifier), and when the snapshot stores target
labels, the target success rate and the per-target-class divergence; with ``majority``/``minority``, the
fairness ratio RFair. Names are ``attr/<metric>@<classifier id>~<reference>``.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from .. import names as N
from ..metrics import attributes as A
from ..store.derived import ATTRIBUTE_LABELS
from ..store.run import Run, opened
from ._base import AnalysisResult, check_reference_name, choose_steps, per_snapshot

__all__ = ["attributes", "classifier_id"]


def classifier_id(classifier: Any) -> str:
    """The name that identifies a classifier in scalar names: its ``id``, ``name``, or its type's name."""
    for attribute in ("id", "name"):
        value = getattr(classifier, attribute, None)
        if isinstance(value, str) and value:
            return value
    return getattr(classifier, "__name__", type(classifier).__name__)


def attributes(
    run: Run | str | os.PathLike,
    *,
    classifier: Any,
    reference: str | None = "train",
    steps: Sequence[int] | None = None,
    majority: int | None = None,
    minority: int | None = None,
    progress: bool = False,
    prepared: dict | None = None,
) -> AnalysisResult:
    """Attribute metrics of every snapshot (or ``steps``), labels from ``classifier`` (an object with
    ``classify(images)`` or a callable returning labels (n,) or scores (n, k)). Snapshots with non-finite
    samples are skipped. Returns an ``AnalysisResult``; already analysed steps are read back. ``prepared``: a
    dict kept across calls (a live worker's) that keeps the reference side — the reference's attribute labels —
    for the next snapshot (``_base.per_snapshot``)."""
    cid = classifier_id(classifier)
    with opened(run) as run:
        if reference is not None:
            check_reference_name(run, reference)
        chosen = choose_steps(run, steps)
        result = AnalysisResult("attributes", cid, reference)
        context = {"classifier": cid, "reference": reference, "majority": majority, "minority": minority}

        def name(metric: str, cls: Any = None) -> str:
            return N.scalar_name(N.ATTRIBUTES, metric, cls=cls, encoder=cid, reference=reference)

        def prepare(todo: list[int]):
            ref_attrs = ref_classes = None
            if reference is not None:
                ref = run.reference(reference)
                ref_attrs, ref_classes = A.labels_from_classifier(ref.images, classifier), ref.labels
            def compute(step: int) -> dict[str, float]:
                if run.snapshot(step).n_nonfinite:
                    result.skipped[f"step={step}"] = "non-finite samples"
                    return {}
                predicted = A.labels_from_classifier(run.samples(step), classifier)
                # kept per sample, so the map can be coloured by attribute (first write wins: idempotent)
                run.add_derived(ATTRIBUTE_LABELS, predicted.astype(np.int64), encoder_id=cid, source=cid, step=step)
                n_values = int(max(predicted.max(), ref_attrs.max() if ref_attrs is not None else 0)) + 1
                values = {name(f"{N.SHARE}/value={v}"): float(share)
                          for v, share in enumerate(A.attribute_distribution(predicted, n_values))}
                if ref_attrs is not None:
                    values[name(N.DIVERGENCE_TV)] = A.attribute_divergence(predicted, ref_attrs)
                targets = run.labels(step)
                if targets is not None:
                    values[name(N.TARGET_SUCCESS)] = A.target_success_rate(predicted, targets)
                    if ref_classes is not None:
                        by_class = A.attribute_divergence(predicted, ref_attrs, generated_classes=targets,
                                                          reference_classes=ref_classes)
                        if by_class:
                            values[name(N.DIVERGENCE_TV_BY_CLASS)] = float(np.mean(list(by_class.values())))
                if majority is not None and minority is not None and np.isin([majority, minority], predicted).any():
                    values[name(N.RFAIR)] = A.rfair(predicted, majority, minority)
                return values

            return compute

        per_snapshot(run, result, context, chosen, prepare, prepared=prepared, family=N.ATTRIBUTES, what="attribute metrics",
                     progress=progress)
    return result
