"""How good a 2-D map is: neighbourhood preservation and temporal stability. Pure functions on arrays."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .._validation import check_array, check_int, count_nonfinite
from ..errors import InputError
from ..metrics._distances import knn_sq


def _check_xy(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x = check_array(x, "features", ndim=2, min_samples=2)
    y = check_array(y, "embedding", ndim=2, min_samples=2)
    for name, value in (("features", x), ("embedding", y)):
        if count_nonfinite(value):
            raise InputError(f"{name}: expected finite values, found {count_nonfinite(value)} NaN/inf in "
                             f"shape={value.shape}")
    if x.shape[0] != y.shape[0]:
        raise InputError(f"embedding: expected {x.shape[0]} rows like features, received shape={y.shape}")
    return x, y


def knn_recall(features: Any, embedding: Any, k: int = 10) -> float:
    """Mean share of each point's k nearest neighbours in feature space that are among its k nearest on the map.

    features (n, d), embedding (n, 2); exact neighbours (blocked), the point itself excluded. 1 is perfect.
    """
    x, y = _check_xy(features, embedding)
    k = check_int(k, "k", minimum=1, maximum=x.shape[0] - 1)
    x = np.asarray(x, dtype=np.float32)
    _, high = knn_sq(x, x, k + 1)
    _, low = knn_sq(np.asarray(y, dtype=np.float64), np.asarray(y, dtype=np.float64), k + 1)
    # Both neighbour lists contain the point itself: count shared entries, minus that one.
    shared = (high[:, :, None] == low[:, None, :]).any(axis=2).sum(axis=1) - 1
    return float(shared.sum() / (x.shape[0] * k))


def trustworthiness(features: Any, embedding: Any, k: int = 10) -> float:
    """scikit-learn's trustworthiness (Venna & Kaski): 1 when no false neighbours appear on the map."""
    from sklearn.manifold import trustworthiness as sk_trustworthiness

    x, y = _check_xy(features, embedding)
    k = check_int(k, "k", minimum=1)
    if not k < x.shape[0] / 2:
        raise InputError(f"k: expected 1 <= k < n / 2 = {x.shape[0] / 2}, received {k}")
    return float(sk_trustworthiness(x, y, n_neighbors=k))


def map_scale(embeddings: Sequence[np.ndarray]) -> float:
    """RMS distance of all map points from their common centroid: the unit of temporal stability."""
    points = np.concatenate([np.asarray(e, dtype=np.float64) for e in embeddings])
    return float(np.sqrt(((points - points.mean(axis=0)) ** 2).sum(axis=1).mean()))


def temporal_stability(embeddings: Sequence[Any], instance_ids: Sequence[Any], scale: float | None = None) -> float:
    """Mean displacement of the same instance between consecutive snapshots, divided by the map scale.

    ``embeddings[t]`` (n_t, 2) and ``instance_ids[t]`` (n_t,); instances are matched by id. 0 means nothing
    moved; lower is more stable. ``scale`` defaults to ``map_scale(embeddings)``.
    """
    if len(embeddings) < 2:
        raise InputError(f"embeddings: expected >= 2 snapshots, received {len(embeddings)}")
    if len(embeddings) != len(instance_ids):
        raise InputError(f"instance_ids: expected one id array per embedding ({len(embeddings)}), received "
                         f"{len(instance_ids)}")
    for t, (embedding, ids) in enumerate(zip(embeddings, instance_ids)):
        if len(ids) != len(embedding):
            raise InputError(f"instance_ids: expected {len(embedding)} ids for snapshot {t} (one per point), "
                             f"received {len(ids)}")
    scale = map_scale(embeddings) if scale is None else float(scale)
    moves = []
    for t in range(len(embeddings) - 1):
        a, b = matched_indices(instance_ids[t], instance_ids[t + 1])
        if a.size:
            moves.append(np.linalg.norm(np.asarray(embeddings[t])[a] - np.asarray(embeddings[t + 1])[b], axis=1))
    if not moves:
        raise InputError("instance_ids: no instance appears in two consecutive snapshots")
    return float(np.concatenate(moves).mean() / max(scale, 1e-12))


def matched_indices(ids_a: Any, ids_b: Any) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (ia, ib) such that ids_a[ia] == ids_b[ib], for ids present in both."""
    ids_a, ids_b = np.asarray(ids_a), np.asarray(ids_b)
    common, ia, ib = np.intersect1d(ids_a, ids_b, assume_unique=False, return_indices=True)
    return ia.astype(np.int64), ib.astype(np.int64)
