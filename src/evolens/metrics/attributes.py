"""Attributes of generated samples: distributions, divergence from the data, preservation, target success, RFair.

Attributes are integer-coded labels per sample (hair colour, age group, digit identity, stroke style, ...).
They come from labels the user logs with a snapshot, from any classifier (``labels_from_classifier``, e.g.
the digits-cnn head), or from zero-shot CLIP prompts (``labels_from_prompts``). Pure functions on arrays.

**Fairness ratio** (arXiv 2405.13977 reports it for PLE without publishing its formula): evolens defines
``rfair = count(majority) / count(minority)`` among generated samples. A fair model has rfair ≈ 1; a model
that reproduces the data's imbalance has rfair ≈ the data's imbalance ratio; one that amplifies it, more.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .._validation import check_array, check_int, check_positive
from ..errors import InputError

__all__ = [
    "attribute_distribution",
    "attribute_divergence",
    "kl_divergence",
    "labels_from_classifier",
    "labels_from_prompts",
    "preservation_rate",
    "rfair",
    "target_success_rate",
    "total_variation",
]


def _labels(values: Any, name: str) -> np.ndarray:
    array = check_array(values, name, ndim=1, min_samples=1)
    if not np.issubdtype(array.dtype, np.integer) and not np.all(np.equal(np.mod(array, 1), 0)):
        raise InputError(f"{name}: expected integer-coded labels, received dtype={array.dtype}")
    if np.any(array < 0):
        raise InputError(f"{name}: expected non-negative label codes, found {int(array.min())}")
    return array.astype(np.int64)


def attribute_distribution(labels: Any, n_values: int | None = None) -> np.ndarray:
    """Share of each attribute value 0..n_values-1 among (n,) integer labels; sums to 1."""
    labels = _labels(labels, "labels")
    n_values = int(labels.max()) + 1 if n_values is None else check_int(n_values, "n_values", minimum=1)
    if labels.max() >= n_values:
        raise InputError(f"n_values: expected more than the largest label {int(labels.max())}, received {n_values}")
    return np.bincount(labels, minlength=n_values) / labels.size


def _pair_distributions(p: Any, q: Any) -> tuple[np.ndarray, np.ndarray]:
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise InputError(f"q: expected a distribution of shape {p.shape} like p, received shape={q.shape}")
    for name, d in (("p", p), ("q", q)):
        if np.any(d < 0) or not np.isclose(d.sum(), 1.0, atol=1e-6):
            raise InputError(f"{name}: expected non-negative shares summing to 1, received sum={d.sum():.6f}")
    return p, q


def total_variation(p: Any, q: Any) -> float:
    """Total variation distance ½ Σ |p - q| between two distributions over the same values (0..1)."""
    p, q = _pair_distributions(p, q)
    return float(0.5 * np.abs(p - q).sum())


def kl_divergence(p: Any, q: Any, eps: float = 1e-8) -> float:
    """KL(p || q) in nats, with q clipped at ``eps`` so values absent from q give a large finite number."""
    eps = check_positive(eps, "eps")
    p, q = _pair_distributions(p, q)
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / np.clip(q[mask], eps, None))))


def attribute_divergence(
    generated: Any,
    reference: Any,
    *,
    generated_classes: Any = None,
    reference_classes: Any = None,
    metric: str = "tv",
) -> float | dict[int, float]:
    """Divergence of the generated attribute distribution from the reference one (``"tv"`` or ``"kl"``).

    With ``generated_classes`` and ``reference_classes`` (target class of each sample), returns
    ``{class: divergence}`` comparing the attributes within each class present on both sides.
    """
    if metric not in ("tv", "kl"):
        raise InputError(f"metric: expected 'tv' or 'kl', received {metric!r}")
    generated, reference = _labels(generated, "generated"), _labels(reference, "reference")
    n_values = int(max(generated.max(), reference.max())) + 1
    fn = total_variation if metric == "tv" else kl_divergence
    if generated_classes is None and reference_classes is None:
        return fn(attribute_distribution(generated, n_values), attribute_distribution(reference, n_values))
    if generated_classes is None or reference_classes is None:
        raise InputError("generated_classes, reference_classes: expected both or neither")
    g_cls, r_cls = _labels(generated_classes, "generated_classes"), _labels(reference_classes, "reference_classes")
    if g_cls.shape != generated.shape or r_cls.shape != reference.shape:
        raise InputError("generated_classes, reference_classes: expected one class per sample")
    out = {}
    for c in sorted(set(g_cls.tolist()) & set(r_cls.tolist())):
        out[c] = fn(attribute_distribution(generated[g_cls == c], n_values),
                    attribute_distribution(reference[r_cls == c], n_values))
    return out


def preservation_rate(source: Any, output: Any, classes: Any = None) -> float | dict[int, float]:
    """Share of samples whose attribute that must not change is the same in the output as in the source.

    For image-to-image models: e.g. digit identity kept while the stroke style is translated. With
    ``classes`` (one per sample), returns ``{class: rate}``.
    """
    source, output = _labels(source, "source"), _labels(output, "output")
    if source.shape != output.shape:
        raise InputError(f"output: expected shape {source.shape} like source, received shape={output.shape}")
    kept = source == output
    if classes is None:
        return float(kept.mean())
    classes = _labels(classes, "classes")
    if classes.shape != source.shape:
        raise InputError(f"classes: expected shape {source.shape}, received shape={classes.shape}")
    return {int(c): float(kept[classes == c].mean()) for c in np.unique(classes)}


def target_success_rate(output: Any, target: Any) -> float:
    """Share of outputs whose translated attribute equals the requested target."""
    output, target = _labels(output, "output"), _labels(target, "target")
    if output.shape != target.shape:
        raise InputError(f"target: expected shape {output.shape} like output, received shape={target.shape}")
    return float((output == target).mean())


def rfair(labels: Any, majority: int, minority: int) -> float:
    """Fairness ratio count(majority) / count(minority) among generated samples (see module docstring).

    Returns inf when the minority value never appears (the model dropped it entirely).
    """
    majority = check_int(majority, "majority", minimum=0)
    minority = check_int(minority, "minority", minimum=0)
    if minority == majority:
        raise InputError(f"minority: expected a label other than majority ({majority}), received {minority}")
    labels = _labels(labels, "labels")
    n_major, n_minor = int((labels == majority).sum()), int((labels == minority).sum())
    if n_major == 0 and n_minor == 0:
        raise InputError(f"labels: neither majority {majority} nor minority {minority} appears among {labels.size} labels")
    return float("inf") if n_minor == 0 else n_major / n_minor


def labels_from_classifier(images: Any, classifier: Any, batch_size: int = 256) -> np.ndarray:
    """Attribute labels (n,) from a classifier: an object with ``classify(images)`` (e.g. the digits-cnn
    encoder), or a callable returning labels (n,) or scores (n, k) (argmax taken)."""
    if hasattr(classifier, "classify"):
        return np.asarray(classifier.classify(images), dtype=np.int64)
    if not callable(classifier):
        raise InputError(f"classifier: expected an object with classify() or a callable, received {type(classifier).__name__}")
    out = np.asarray(classifier(images))
    if hasattr(out, "detach"):
        out = out.detach().cpu().numpy()
    if out.ndim == 2:
        return out.argmax(axis=1).astype(np.int64)
    return _labels(out, "classifier(images)")


def labels_from_prompts(images: Any, clip: Any, prompts: Sequence[str]) -> np.ndarray:
    """Zero-shot attribute labels: index of the best-matching prompt per image (CLIP encoder ``zero_shot``)."""
    if not hasattr(clip, "zero_shot"):
        raise InputError(f"clip: expected a CLIP encoder (evolens.encoders.CLIPEncoder), received {type(clip).__name__}")
    return np.asarray(clip.zero_shot(images, prompts).argmax(axis=1), dtype=np.int64)
