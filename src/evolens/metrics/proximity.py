"""Proximity to the training data: nearest neighbours, copy rate, NN divergence, train/held-out gap, and the
two-model sample-split distance of the biased-generalization paper (arXiv 2603.03469).

Pure functions on arrays. Distances are exact Euclidean, computed in blocks over the reference set
(``_distances``), so memory stays flat however large the training set is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import check_array
from ..errors import InputError
from ._distances import knn_sq
from .quality import _check_pair, check_features

__all__ = [
    "TrainHeldoutGap",
    "copy_rate",
    "nearest_neighbors",
    "nn_divergence",
    "sample_split_distance",
    "standardize_images",
    "train_heldout_gap",
]


def _pair(queries: Any, reference: Any, q_name: str, r_name: str, min_reference: int = 1):
    # float32 features stay float32 (fast GEMMs); the reference follows the queries' dtype.
    return _check_pair(queries, reference, 1, None, names=(q_name, r_name), min_second=min_reference)


def nearest_neighbors(queries: Any, reference: Any, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest reference rows of each query: (Euclidean distances (n_q, k) ascending, indices (n_q, k)).

    Exact; float32 inputs are computed with float32 GEMMs (float64 inputs in float64), in blocks of the
    reference so memory does not grow with it.
    """
    queries, reference = _pair(queries, reference, "queries", "reference")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= reference.shape[0]:
        raise InputError(f"k: expected 1 <= k <= {reference.shape[0]} (reference size), received {k!r}")
    sq, index = knn_sq(queries, reference, int(k))
    return np.sqrt(sq), index


def copy_rate(generated: Any, train: Any, ratio: float = 1 / 3) -> float:
    """Share of generated samples whose nearest training sample is closer than ``ratio`` x the second nearest.

    The memorisation criterion of Yoon et al. 2023 / Carlini et al.: a sample much nearer to one training
    image than to any other is a copy of it.
    """
    if not 0 < ratio < 1:
        raise InputError(f"ratio: expected a number in (0, 1), received {ratio!r}")
    generated, train = _pair(generated, train, "generated", "train", min_reference=2)
    distances, _ = nearest_neighbors(generated, train, k=2)
    return float(np.mean(distances[:, 0] < ratio * distances[:, 1]))


def nn_divergence(generated: Any, train: Any, heldout: Any, bins: int = 20, eps: float = 1e-8) -> float:
    """KL(P_gen || P_test) between histograms of nearest-training-sample distances (arXiv 2603.03469).

    P_gen: distances of generated samples to their nearest training sample; P_test: the same for held-out
    real samples. Both histograms share ``bins`` equal-width bins over the pooled range; probabilities are
    clipped at ``eps`` as in the paper. ~0 when generated samples relate to the training set like fresh data;
    large when they are copies of it (distances piled at 0).
    """
    # A histogram of one distance says nothing: every set needs two samples.
    generated, train = _pair(generated, train, "generated", "train", min_reference=2)
    heldout, _ = _pair(heldout, train, "heldout", "train", min_reference=2)
    if generated.shape[0] < 2 or heldout.shape[0] < 2:
        raise InputError(f"generated, heldout: expected at least 2 samples each, received shape={generated.shape} "
                         f"and shape={heldout.shape}")
    if bins < 2:
        raise InputError(f"bins: expected at least 2, received {bins}")
    d_gen = nearest_neighbors(generated, train, 1)[0][:, 0]
    d_test = nearest_neighbors(heldout, train, 1)[0][:, 0]
    edges = np.linspace(min(d_gen.min(), d_test.min()), max(d_gen.max(), d_test.max()) + 1e-12, bins + 1)
    p = np.histogram(d_gen, edges)[0] / d_gen.size
    q = np.histogram(d_test, edges)[0] / d_test.size
    p, q = np.clip(p, eps, None), np.clip(q, eps, None)
    return float(np.sum(p * np.log(p / q)))


@dataclass(frozen=True)
class TrainHeldoutGap:
    """Distances of generated samples to their nearest training vs nearest held-out sample (equal-size sets).

    ``ratio`` = median_to_train / median_to_heldout: ~1 for a model that generalises, < 1 when samples sit
    closer to the training data than to fresh data from the same distribution. ``closer_to_train`` is the
    share of samples whose nearest training sample is nearer than their nearest held-out one (~0.5 if fair).
    """

    median_to_train: float
    median_to_heldout: float
    ratio: float
    closer_to_train: float


def train_heldout_gap(generated: Any, train: Any, heldout: Any) -> TrainHeldoutGap:
    """Compare each generated sample's distance to the training set with its distance to a held-out set.

    Use sets of equal size: the nearest neighbour in a bigger set is nearer by chance alone, so a larger
    training set pushes ``ratio`` below 1 without any memorisation. (Subsampling the larger set instead would
    drop the very training images a model copied.) Raises InputError when the sizes differ by more than 10%.
    """
    generated, train = _pair(generated, train, "generated", "train")
    heldout, _ = _pair(heldout, train, "heldout", "train")
    if abs(train.shape[0] - heldout.shape[0]) > 0.1 * max(train.shape[0], heldout.shape[0]):
        raise InputError(
            f"heldout: expected about as many samples as train ({train.shape[0]}) for a fair comparison, "
            f"received {heldout.shape[0]}; compare with an equal-size subset of the training data"
        )
    to_train = nearest_neighbors(generated, train, 1)[0][:, 0]
    to_heldout = nearest_neighbors(generated, heldout, 1)[0][:, 0]
    m_train, m_heldout = float(np.median(to_train)), float(np.median(to_heldout))
    return TrainHeldoutGap(m_train, m_heldout, m_train / m_heldout if m_heldout > 0 else float("inf"),
                           float(np.mean(to_train < to_heldout)))


def standardize_images(images: Any, name: str = "images") -> np.ndarray:
    """Per-image, per-channel standardisation of (n, C, H, W) images, flattened to (n, C*H*W) float64.

    Constant channels (std 0) become zeros. This is the pixel space of the sample-split measure.
    """
    x = check_array(images, name, ndim=4, min_samples=1).astype(np.float64)
    mean = x.mean(axis=(2, 3), keepdims=True)
    std = x.std(axis=(2, 3), keepdims=True)
    return np.where(std > 0, (x - mean) / np.where(std > 0, std, 1.0), 0.0).reshape(x.shape[0], -1)


def sample_split_distance(samples_a: Any, samples_b: Any, space: Any = "pixels", *, return_all: bool = False):
    """Median cosine distance (1 - cos) between probe-paired samples of two models (arXiv 2603.03469).

    Args:
        samples_a, samples_b: the two models' samples for the same probes, row i paired with row i.
            With ``space="pixels"``: images (n, C, H, W), standardised per image and channel first.
            With ``space="features"``: feature arrays (n, d), compared as they are.
            With an encoder (name or instance): images embedded by it, then compared.
        return_all: also return the per-pair distances.

    0 for identical samples; ~1 for unrelated ones (cosine ~0); up to 2 for opposite ones.
    """
    if space == "pixels":
        a, b = standardize_images(samples_a, "samples_a"), standardize_images(samples_b, "samples_b")
    elif space == "features":
        a = check_features(samples_a, "samples_a", min_samples=1)
        b = check_features(samples_b, "samples_b", min_samples=1)
    else:
        from ..encoders import get_encoder

        encoder = get_encoder(space)
        a = encoder.encode(samples_a).astype(np.float64)
        b = encoder.encode(samples_b).astype(np.float64)
    if a.shape != b.shape:
        raise InputError(f"samples_b: expected shape {a.shape} to pair row by row with samples_a, received shape={b.shape}")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosine = np.where(norms > 0, np.einsum("ij,ij->i", a, b) / np.where(norms > 0, norms, 1.0), 0.0)
    distances = 1.0 - cosine
    median = float(np.median(distances))
    return (median, distances) if return_all else median
