"""Synthetic snapshots with a planted evolution, for tests, benchmarks and demonstrations of the projection."""

from __future__ import annotations

import numpy as np


def planted_evolution(
    n_snapshots: int = 6, n_points: int = 300, dim: int = 32, *, seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Snapshots in which clusters appear, split and drift; returns (snapshots, instance_ids, labels, reference).

    Every snapshot holds the same ``n_points`` instances (ids 0..n-1), each of one of 4 classes. At t = 0 all
    instances sit near the origin (an untrained generator); class centres then move out towards the
    reference cluster centres; class 3 splits into two halves from the middle of training; class 2 keeps
    drifting past its reference cluster. ``reference`` holds 2 * n_points points drawn around the final
    centres of classes 0-2 and both halves of class 3.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((5, dim)) * 6.0  # classes 0-3, plus class 3's second half
    labels = np.arange(n_points) % 4
    half = (np.arange(n_points) // 4) % 2 == 1
    own_noise = rng.standard_normal((n_points, dim))
    drift = rng.standard_normal(dim) * 3.0
    snapshots, ids, labs = [], [], []
    for t in range(n_snapshots):
        progress = t / max(n_snapshots - 1, 1)
        target = centres[labels].copy()
        split = (labels == 3) & half
        target[split] = centres[4] if progress > 0.5 else centres[3]
        target[labels == 2] += drift * progress
        noise_scale = 1.0 + 2.0 * (1 - progress)
        points = progress * target + noise_scale * (0.7 * own_noise + 0.3 * rng.standard_normal((n_points, dim)))
        snapshots.append(points.astype(np.float32))
        ids.append(np.arange(n_points))
        labs.append(labels.copy())
    ref_labels = rng.integers(0, 5, 2 * n_points)
    reference = (centres[ref_labels] + rng.standard_normal((2 * n_points, dim))).astype(np.float32)
    return snapshots, ids, labs, reference
