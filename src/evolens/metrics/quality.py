"""Sample-quality metrics on feature arrays: FID, KID, precision/recall, density/coverage, CMMD, Vendi.

Pure functions on ``(n, d)`` float arrays (features from any encoder), each agreeing with the reference
implementation the field uses (tests state the tolerances):

- ``fid``: Heusel et al. 2017, the pytorch-fid/clean-fid formula; the matrix square root's trace is computed
  from symmetric eigen-decompositions (or, with fewer samples than dimensions, from the singular values of the
  n1 x n2 cross-product), several times faster than ``scipy.linalg.sqrtm`` and exact to float64 rounding.
- ``kid``: Bińkowski et al. 2018, unbiased MMD² with the cubic polynomial kernel over random subsets.
- ``precision_recall`` (Kynkäänniemi et al. 2019) and ``density_coverage`` (Naeem et al. 2020), as the
  ``prdc`` package computes them, in blocks (memory bounded by the block size, not n²).
- ``cmmd``: Jayasumana et al. 2024, MMD² with a Gaussian RBF kernel, σ = 10, scaled by 1000 (the authors'
  estimator, which keeps the kernel diagonal).
- ``vendi``: Friedman & Dieng 2023, exp of the entropy of the eigenvalues of the cosine-similarity matrix / n.

The real side of KID, PRDC and CMMD (and ``prdc_radii``, ``cmmd_reference_term``) may also be a *blocked* set —
a ``ShardedFeatures`` or ``RowSelection`` too large for memory (a named reference): it is read one shard at a
time (KID gathers only its subsets' rows), so memory is set by the shard and the fake set, not the reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
from scipy import linalg

from .._validation import check_array, check_int, check_positive, check_real, check_seed, count_nonfinite, describe
from ..errors import InputError
from ._distances import (blocks, centred_pair, kth_smallest_sq_dist, knn_sq, reference_blocks, rounding_margin,
                         row_sq_norms, sq_dist_block, strictly_within)

__all__ = [
    "FeatureStatistics",
    "fid_uses_cross_product",
    "check_features",
    "cmmd",
    "cmmd_reference_term",
    "density_coverage",
    "fid_statistics",
    "is_blocked",
    "knn_radii",
    "fid",
    "fid_from_statistics",
    "kid",
    "precision_recall",
    "prdc",
    "prdc_radii",
    "vendi",
]


def check_features(x: Any, name: str, min_samples: int = 2, dtype: Any = np.float64) -> np.ndarray:
    """Validate a feature array: 2-D (n, d), numeric, finite, n >= ``min_samples``; return it as ``dtype``.

    ``dtype=None`` keeps float32/float64 input as it is (no copy) and converts anything else to float64.
    """
    x = check_array(x, name, ndim=2, min_samples=min_samples)
    if x.shape[1] == 0:
        raise InputError(f"{name}: expected at least one feature dimension, received shape={x.shape}")
    # A float64 sum is finite iff every entry is (no overflow for float32/float64 data): O(1) extra memory.
    if not np.isfinite(np.sum(x, dtype=np.float64)):
        bad = count_nonfinite(x)
        raise InputError(f"{name}: expected finite features, found {bad} NaN/inf values in shape={x.shape}")
    if dtype is None:
        dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float64
    return np.asarray(x, dtype=dtype)


def _check_pair(
    first: Any,
    second: Any,
    min_samples: int = 2,
    dtype: Any = np.float64,
    *,
    names: tuple[str, str] = ("real", "fake"),
    min_second: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate two feature sets with the same dimension; the second takes the first's dtype when ``dtype=None``."""
    first = check_features(first, names[0], min_samples, dtype)
    second = check_features(second, names[1], min_samples if min_second is None else min_second,
                            dtype if dtype is not None else first.dtype)
    if first.shape[1] != second.shape[1]:
        raise InputError(
            f"{names[1]}: expected {first.shape[1]} feature dimensions like {names[0]}, received shape={second.shape}"
        )
    return first, second


PRECISION_RECALL_K = 3  # Kynkäänniemi et al. 2019: the k of improved precision and recall
DENSITY_COVERAGE_K = 5  # Naeem et al. 2020: the k of density and coverage


def is_blocked(x: Any) -> bool:
    """Whether ``x`` is a blocked feature set (``shape``, ``dtype``, ``blocks()``, ``take()``: a ``ShardedFeatures``
    or ``RowSelection``) rather than an array."""
    return hasattr(x, "blocks") and hasattr(x, "take") and not isinstance(x, np.ndarray)


def _check_real_side(real: Any, fake: Any, dtype: Any = None, min_samples: int = 2) -> tuple[Any, np.ndarray]:
    """``_check_pair`` for a real side that may be blocked: its shape, dtype and finiteness are read from its
    manifest (no rows loaded); the fake array takes the real's float dtype (or ``dtype``)."""
    if not is_blocked(real):
        return _check_pair(real, fake, min_samples, dtype)
    d = _check_blocked(real, min_samples).shape[1]
    fake_dtype = dtype if dtype is not None else (real.dtype if real.dtype in (np.float32, np.float64) else np.float64)
    fake = check_features(fake, "fake", min_samples, fake_dtype)
    if fake.shape[1] != d:
        raise InputError(f"fake: expected {d} feature dimensions like real, received shape={fake.shape}")
    return real, fake


def _check_blocked(real: Any, min_samples: int = 2) -> Any:
    """A blocked real set checked like ``check_features`` checks an array — size and finiteness — from its
    manifest (no rows loaded); returned as it is."""
    if real.shape[0] < min_samples:
        raise InputError(f"real: expected at least {min_samples} samples, received {real.shape[0]}")
    if not real.all_finite():
        raise InputError(f"real: expected finite features, found NaN/inf values in the stored shards of {real!r}")
    return real


def _centre_of(real: Any) -> np.ndarray:
    """The row mean (d,) float64 of an array or a blocked set (its stored mean, else one pass over its blocks)."""
    if not is_blocked(real):
        return real.mean(axis=0, dtype=np.float64)
    if real.mean is not None:
        return np.asarray(real.mean, dtype=np.float64)
    total = np.zeros(real.shape[1])
    for _, block in real.blocks():
        total += block.sum(axis=0, dtype=np.float64)
    return total / real.shape[0]


def _check_k(k: int, n_real: int, n_fake: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k: expected a positive integer, received {k!r}")
    smallest = min(n_real, n_fake)
    if k >= smallest:
        raise InputError(f"k: expected k < the number of samples in each set ({smallest}), received k={k}")
    return int(k)


# -- FID ---------------------------------------------------------------------------------------------------
def _mean_cov(x: np.ndarray, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    # Centred Gram matrix in float64, accumulated over row blocks: numpy dispatches cᵀc to a symmetric rank-k
    # update (~2x faster than np.cov), and a float32 input is never copied whole to float64 (peak memory: one
    # block and the d x d result). Two passes (mean, then centred scatter): no cancellation on offset features.
    mean = x.mean(axis=0, dtype=np.float64)
    scatter = np.zeros((x.shape[1], x.shape[1]))
    for rows in blocks(x.shape[0], block):
        centred = x[rows] - mean  # float64
        scatter += centred.T @ centred
    return mean, scatter / (x.shape[0] - 1)


def fid_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased covariance (d, d), float64, of features (n, d) with n >= 2."""
    return _mean_cov(check_features(features, "features", dtype=None))


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    w, v = linalg.eigh(matrix, check_finite=False, driver="evd")
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def _trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    # tr sqrt(S1 S2) = tr sqrt(Fᵀ S2 F) for any factor S1 = F Fᵀ: the inner matrix is symmetric PSD, so a
    # Cholesky factor (or, for singular S1, the eigen square root) and one eigvalsh replace the Schur-based
    # sqrtm of a non-symmetric product (and its imaginary round-off).
    try:
        factor = linalg.cholesky(s1, lower=True, check_finite=False)
    except linalg.LinAlgError:
        factor = _sqrt_psd(s1)
    inner = factor.T @ s2 @ factor
    eigenvalues = linalg.eigvalsh((inner + inner.T) / 2.0, check_finite=False, driver="evd")
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def fid_from_statistics(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Fréchet distance between Gaussians N(mu1, sigma1) and N(mu2, sigma2).

    ``|mu1 - mu2|² + tr(sigma1) + tr(sigma2) - 2 tr sqrt(sigma1 sigma2)``; means (d,), covariances (d, d).
    """
    mu1, mu2 = check_array(mu1, "mu1", ndim=1).astype(np.float64), check_array(mu2, "mu2", ndim=1).astype(np.float64)
    d = mu1.shape[0]
    s1 = check_array(sigma1, "sigma1", ndim=2).astype(np.float64)
    s2 = check_array(sigma2, "sigma2", ndim=2).astype(np.float64)
    for name, value, shape in (("mu2", mu2, (d,)), ("sigma1", s1, (d, d)), ("sigma2", s2, (d, d))):
        if value.shape != shape:
            raise InputError(f"{name}: expected shape {shape} to match mu1, received shape={value.shape}")
        if count_nonfinite(value):
            raise InputError(f"{name}: expected finite values, received NaN/inf in shape={value.shape}")
    for name, sigma in (("sigma1", s1), ("sigma2", s2)):
        _check_covariance(sigma, name)
    return frechet_distance(mu1, s1, mu2, s2)


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """``fid_from_statistics`` without the input checks, for statistics evolens computed itself (float64 means
    (d,), symmetric PSD covariances (d, d)): the checks' Cholesky would add ~20% at d = 2048."""
    diff = mu1 - mu2
    value = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * _trace_sqrt_product(s1, s2)
    return float(max(value, 0.0))


def _check_covariance(sigma: np.ndarray, name: str) -> None:
    """Refuse a matrix that is not a covariance: asymmetric, or not positive semi-definite (a Cholesky factor of
    sigma + a jitter of 1e-9 of its largest variance must exist; rank-deficient covariances pass)."""
    scale = float(np.abs(sigma).max()) or 1.0
    if np.abs(sigma - sigma.T).max() > 1e-8 * scale:
        raise InputError(f"{name}: expected a symmetric covariance matrix, received one with |S - Sᵀ| up to "
                         f"{np.abs(sigma - sigma.T).max():.3g}")
    jitter = 1e-9 * max(float(np.diag(sigma).max()), 0.0) + 1e-300
    try:
        linalg.cholesky(sigma + jitter * np.eye(sigma.shape[0]), lower=True, check_finite=False)
    except linalg.LinAlgError:
        raise InputError(f"{name}: expected a positive semi-definite covariance matrix, received one with a negative "
                         f"eigenvalue (smallest diagonal entry {float(np.diag(sigma).min()):.3g})") from None


def fid_uses_cross_product(n1: int, n2: int, d: int) -> bool:
    """Whether ``fid`` takes the cross-product path for sets of n1 and n2 samples of d features: the one with
    fewer floating-point operations.

    Covariance path: two centred Gram matrices (n d² each, symmetric rank-k updates) and ~6 d³ for the
    Cholesky factor, the product Fᵀ S2 F and its eigenvalues. Cross-product path: the n1 x n2 product of the
    centred sets (2 n1 n2 d) and its singular values (~4 n1 n2 min(n1, n2) for values only).
    """
    covariance = (n1 + n2) * d * d + 6.0 * d**3
    cross = 2.0 * n1 * n2 * d + 4.0 * n1 * n2 * min(n1, n2)
    return cross < covariance


def fid(real: Any, fake: Any) -> float:
    """FID between feature sets real (n1, d) and fake (n2, d), n1, n2 >= 2.

    When it is cheaper (``fid_uses_cross_product``: typically both sets smaller than d) the covariance square
    root is never formed: with centred, scaled A_i = (X_i - mu_i) / sqrt(n_i - 1), tr sqrt(S1 S2) is the sum of
    singular values of A1 A2ᵀ (n1 x n2). Both paths agree to float64 rounding.
    """
    real, fake = _check_pair(real, fake, dtype=None)  # float32 stays float32: statistics accumulate in float64
    n1, n2, d = real.shape[0], fake.shape[0], real.shape[1]
    if fid_uses_cross_product(n1, n2, d):
        real, fake = real.astype(np.float64, copy=False), fake.astype(np.float64, copy=False)
        mu1, mu2 = real.mean(axis=0), fake.mean(axis=0)
        a1 = (real - mu1) / np.sqrt(n1 - 1)
        a2 = (fake - mu2) / np.sqrt(n2 - 1)
        cross = linalg.svdvals(a1 @ a2.T, check_finite=False).sum()
        diff = mu1 - mu2
        value = diff @ diff + np.einsum("ij,ij->", a1, a1) + np.einsum("ij,ij->", a2, a2) - 2.0 * cross
        return float(max(value, 0.0))
    (mu1, cov1), (mu2, cov2) = _mean_cov(real), _mean_cov(fake)
    return frechet_distance(mu1, cov1, mu2, cov2)


class FeatureStatistics:
    """Streaming mean and covariance of features, for FID against a large reference set.

    Each batch's mean and centred scatter are computed exactly (two passes over the batch, float64) and merged
    with the running ones by Chan et al.'s update (M2 += M2_batch + δδᵀ n_a n_b / n): no Σxxᵀ − n μμᵀ
    cancellation, so features with a large common offset keep their covariance. ``update(batch)`` any number
    of times, then ``mean``/``cov``; ``state()``/``from_state()`` round-trip through one array so a run stores
    the reference statistics once (states written by evolens 0.1, raw sums, still load).
    """

    def __init__(self, dim: int | None = None) -> None:
        if dim is not None:
            dim = check_int(dim, "dim", minimum=1)
        self.n = 0
        self._mean = None if dim is None else np.zeros(dim)
        self._scatter = None if dim is None else np.zeros((dim, dim))

    def update(self, features: Any) -> "FeatureStatistics":
        """Add a batch (m, d) of features; returns self."""
        x = check_features(features, "features", min_samples=1)
        if self._mean is None:
            self._mean, self._scatter = np.zeros(x.shape[1]), np.zeros((x.shape[1], x.shape[1]))
        if x.shape[1] != self._mean.shape[0]:
            raise InputError(f"features: expected {self._mean.shape[0]} dimensions, received shape={x.shape}")
        m = x.shape[0]
        batch_mean = x.mean(axis=0)
        centred = x - batch_mean
        batch_scatter = centred.T @ centred
        total = self.n + m
        delta = batch_mean - self._mean
        self._scatter += batch_scatter + np.outer(delta, delta) * (self.n * m / total)
        self._mean += delta * (m / total)
        self.n = total
        return self

    def update_blocks(self, blocks: Iterable[Any]) -> "FeatureStatistics":
        """``update`` with every (m, d) block of ``blocks`` in turn (e.g. the shards of a reference too large for
        memory, one at a time); returns self."""
        for block in blocks:
            self.update(block)
        return self

    @property
    def mean(self) -> np.ndarray:
        """Mean (d,)."""
        if self.n < 1:
            raise InputError("features: no features added yet")
        return self._mean.copy()

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance (d, d) (needs n >= 2)."""
        if self.n < 2:
            raise InputError(f"features: expected at least 2 samples for a covariance, received {self.n}")
        return self._scatter / (self.n - 1)

    def state(self) -> np.ndarray:
        """Everything as one (d + 3, d) float64 array: rows [n, 0…], [2, 0…] (the format), mean, centred scatter
        Σ(x−μ)(x−μ)ᵀ (d rows)."""
        if self._mean is None:
            raise InputError("features: no features added yet")
        header = np.zeros((2, self._mean.shape[0]))
        header[0, 0], header[1, 0] = self.n, 2
        return np.vstack([header, self._mean[None], self._scatter])

    @classmethod
    def from_state(cls, state: np.ndarray) -> "FeatureStatistics":
        """Rebuild from ``state()`` (or from the (d + 2, d) raw sums [n, Σx, Σxxᵀ] that evolens 0.1 stored)."""
        state = check_array(state, "state", ndim=2).astype(np.float64)
        d = state.shape[1]
        if state.shape[0] not in (d + 2, d + 3) or count_nonfinite(state) or state[0, 0] < 1 \
                or state[0, 0] != int(state[0, 0]) or (state.shape[0] == d + 3 and state[1, 0] != 2):
            raise InputError(f"state: expected a FeatureStatistics.state() array of shape (d + 3, d), received "
                             f"shape={state.shape}")
        stats = cls()
        stats.n = int(state[0, 0])
        if state.shape[0] == d + 3:
            stats._mean, stats._scatter = state[2].copy(), state[3:].copy()
        else:  # evolens 0.1: raw sums
            stats._mean = state[1] / stats.n
            stats._scatter = state[2:] - stats.n * np.outer(stats._mean, stats._mean)
        return stats


# -- KID ---------------------------------------------------------------------------------------------------
def _shifted_polynomial_kernel(gram: np.ndarray, coefficients: list[float], gamma: float) -> np.ndarray:
    """k − c^d from a Gram block x·yᵀ (overwritten: scaled by gamma in place): Σ_{i=1..d} C(d, i) c^(d−i) g^i
    with g = gamma x·y, by Horner (``coefficients`` = those C(d, i) c^(d−i), i = 1..d). Same shape and dtype."""
    gram *= gamma
    out = np.full_like(gram, coefficients[-1])
    for coefficient in reversed(coefficients[:-1]):
        out *= gram
        out += coefficient
    out *= gram
    return out


def _shifted_polynomial_kernel_sum(x: np.ndarray, y: np.ndarray | None, coefficients: list[float], gamma: float,
                                    ) -> tuple[float, float]:
    """Σ of k(x_i, y_j) − coef0^degree over all pairs, and over the diagonal (0 when ``y`` is None: then y = x
    and the Gram matrix is a symmetric rank-k update), in float64; the kernel in x's dtype.

    k − c^d = Σ_{i=1..d} C(d, i) c^(d−i) g^i with g = gamma x·y, by Horner (``coefficients`` = those C(d, i)
    c^(d−i), i = 1..d): the constant, which cancels in the MMD, is never added, so small features keep their
    digits (with it, a 1e-6 feature scale lost ~1e-3 of KID)."""
    out = _shifted_polynomial_kernel(x @ x.T if y is None else x @ y.T, coefficients, gamma)  # x @ x.T: syrk
    return float(out.sum(dtype=np.float64)), (float(np.trace(out, dtype=np.float64)) if y is None else 0.0)


def kid(
    real: Any,
    fake: Any,
    subsets: int = 100,
    subset_size: int = 1000,
    *,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance: (mean, std) over ``subsets`` of the unbiased MMD² estimate.

    Kernel k(x, y) = (gamma x·y + coef0)^degree with gamma = 1/d by default. Each subset draws
    ``m = min(subset_size, n_real, n_fake)`` samples from each set without replacement (as clean-fid does for
    small sets); std is the population std over subsets (as torch-fidelity). float32 features are computed
    with float32 kernels and float64 sums (float64 features in float64); the kernel's constant coef0^degree,
    which cancels in the estimate, is left out before summing.
    """
    real, fake = _check_real_side(real, fake)
    subsets = check_int(subsets, "subsets", minimum=1)
    subset_size = check_int(subset_size, "subset_size", minimum=2)
    degree = check_int(degree, "degree", minimum=1)
    if gamma is not None:
        gamma = check_positive(gamma, "gamma")
    coef0 = check_real(coef0, "coef0")
    seed = check_seed(seed)
    n_real, n_fake, d = real.shape[0], fake.shape[0], real.shape[1]
    m = min(subset_size, n_real, n_fake)
    gamma = 1.0 / d if gamma is None else float(gamma)
    coefficients = [math.comb(degree, i) * coef0 ** (degree - i) for i in range(1, degree + 1)]
    rng = np.random.default_rng(seed)
    draws = [(rng.choice(n_real, m, replace=False), rng.choice(n_fake, m, replace=False)) for _ in range(subsets)]
    if not is_blocked(real) and _kid_whole_kernels_cheaper(n_real, n_fake, m, subsets):
        real_index = np.stack([a for a, _ in draws])
        fake_index = np.stack([b for _, b in draws])
        xx, xx_diagonal = _subset_kernel_sums(real, None, real_index, None, coefficients, gamma)
        yy, yy_diagonal = _subset_kernel_sums(fake, None, fake_index, None, coefficients, gamma)
        xy, _ = _subset_kernel_sums(real, fake, real_index, fake_index, coefficients, gamma)
        values = ((xx - xx_diagonal) + (yy - yy_diagonal)) / (m * (m - 1)) - 2.0 * xy / (m * m)
        return float(values.mean()), float(values.std())
    values = np.empty(subsets)
    for i, (a, b) in enumerate(draws):
        x = np.asarray(real.take(a), dtype=fake.dtype) if is_blocked(real) else real[a]  # m rows of a blocked set
        y = fake[b]
        xx, xx_diagonal = _shifted_polynomial_kernel_sum(x, None, coefficients, gamma)
        yy, yy_diagonal = _shifted_polynomial_kernel_sum(y, None, coefficients, gamma)
        xy, _ = _shifted_polynomial_kernel_sum(x, y, coefficients, gamma)
        values[i] = ((xx - xx_diagonal) + (yy - yy_diagonal)) / (m * (m - 1)) - 2.0 * xy / (m * m)
    return float(values.mean()), float(values.std())


def _kid_whole_kernels_cheaper(n_real: int, n_fake: int, m: int, subsets: int) -> bool:
    """Whether computing each whole kernel matrix once (in blocks) costs fewer kernel entries than the subsets'
    own: (n_r² + n_f²)/2 + n_r n_f against subsets × 2 m² (x·x and y·y as symmetric updates)."""
    return (n_real**2 + n_fake**2) / 2 + n_real * n_fake < subsets * 2 * m * m


def _subset_kernel_sums(x: np.ndarray, y: np.ndarray | None, x_index: np.ndarray, y_index: np.ndarray | None,
                        coefficients: list[float], gamma: float, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For every subset s (row of ``x_index`` (S, m), ``y_index``): Σ_{i ∈ s_x, j ∈ s_y} (k(x_i, y_j) − c^d), and
    (with ``y`` None: y = x, s_y = s_x) Σ_{i ∈ s} of the diagonal; float64 (S,) each.

    The kernel matrix is computed once, in ``block``-sized tiles K_IJ, instead of once per subset: subset s's
    sum over a tile is a_s[I]ᵀ K_IJ b_s[J] with a_s, b_s the subsets' 0/1 indicators, all subsets at once as
    rowsum((A_I K_IJ) ∘ B_J). When the subsets cover the data several times over (100 subsets of 1,000 from
    5,000) that is several times fewer kernel entries, and memory stays at a few tiles."""
    symmetric = y is None
    y = x if symmetric else y
    subsets = x_index.shape[0]
    a = np.zeros((subsets, x.shape[0]), dtype=x.dtype)
    np.put_along_axis(a, x_index, 1.0, axis=1)
    b = a if symmetric else np.zeros((subsets, y.shape[0]), dtype=x.dtype)
    if not symmetric:
        np.put_along_axis(b, y_index, 1.0, axis=1)
    total = np.zeros(subsets)
    for rows in blocks(x.shape[0], block):
        for cols in blocks(y.shape[0], block):
            if symmetric and cols.start < rows.start:
                continue  # K is symmetric: the tile below the diagonal is the transpose of one above it
            tile = _shifted_polynomial_kernel(x[rows] @ y[cols].T, coefficients, gamma)
            part = np.einsum("sj,sj->s", a[:, rows] @ tile, b[:, cols], dtype=np.float64)
            total += part if not symmetric or cols.start == rows.start else 2.0 * part
    if not symmetric:
        return total, np.zeros(subsets)
    norms = np.einsum("ij,ij->i", x, x, dtype=np.float64) * gamma
    diagonal = np.zeros_like(norms)
    for coefficient in reversed(coefficients):
        diagonal = (diagonal + coefficient) * norms
    return total, a.astype(np.float64) @ diagonal


# -- precision / recall / density / coverage ---------------------------------------------------------------
@dataclass(frozen=True)
class PRDC:
    """Precision, recall (Kynkäänniemi et al.), density, coverage (Naeem et al.) at one k."""

    precision: float
    recall: float
    density: float
    coverage: float


def prdc_radii(real: Any, k: int) -> np.ndarray:
    """Squared distance of each real sample to its k-th nearest other real sample (n,), exact, float64, for reuse
    in ``prdc``. ``real`` may be blocked (one shard of queries searched against the shards at a time)."""
    return knn_radii(real, (k,))[k]


def knn_radii(real: Any, ks: Iterable[int]) -> dict[int, np.ndarray]:
    """``{k: prdc_radii(real, k)}`` for several k from one neighbour search (the largest k's)."""
    ks = sorted({int(k) for k in ks})
    if not ks:
        raise InputError("ks: expected at least one k, received none")
    real = _check_blocked(real) if is_blocked(real) else check_features(real, "real", dtype=None)
    for k in ks:
        _check_k(k, real.shape[0], real.shape[0])
    wanted = ks[-1] + 1  # the point itself counts (distance 0)
    distances = np.empty((real.shape[0], wanted))
    for offset, block in reference_blocks(real):  # queries a block (a shard) at a time, against all of real
        distances[offset:offset + block.shape[0]] = knn_sq(np.asarray(block), real, wanted)[0]
    return {k: np.ascontiguousarray(distances[:, k]) for k in ks}


def prdc(
    real: Any,
    fake: Any,
    k: int = 5,
    *,
    real_radii: np.ndarray | None = None,
    row_block: int = 1024,
    col_block: int = 8192,
) -> PRDC:
    """All four manifold metrics in one blocked pass, with the ``prdc`` package's definitions.

    Radii are distances to the k-th nearest neighbour within each set (the point itself excluded);
    comparisons are strict (``<``), as in ``prdc``. ``real_radii`` (from ``prdc_radii(real, k)``) skips
    recomputing the real set's radii when many fake sets are compared with one real set.
    """
    real, fake = _check_real_side(real, fake)  # float32 features stay float32: no copy, fast GEMMs
    k = _check_k(k, real.shape[0], fake.shape[0])
    row_block = check_int(row_block, "row_block", minimum=1)
    col_block = check_int(col_block, "col_block", minimum=1)
    if real_radii is not None:
        radii = check_array(real_radii, "real_radii", ndim=1)
        if radii.shape != (real.shape[0],) or count_nonfinite(radii) or np.any(radii < 0):
            raise InputError(f"real_radii: expected ({real.shape[0]},) finite squared radii >= 0 (prdc_radii(real, "
                             f"k)), received {describe(real_radii)}")
    if real_radii is not None:
        real_r2 = np.asarray(real_radii, dtype=np.float64)
    elif is_blocked(real):
        real_r2 = prdc_radii(real, k)
    else:
        real_r2 = kth_smallest_sq_dist(real, real, k + 1, row_block=row_block, col_block=col_block)
    fake_r2 = kth_smallest_sq_dist(fake, fake, k + 1, row_block=row_block, col_block=col_block)
    # both sets shifted by the real mean (distances unchanged; the expansion's norms lose the common offset)
    centre = _centre_of(real).astype(fake.dtype)
    centred_fake = fake - centre if np.any(centre) else fake
    fake_sq = row_sq_norms(centred_fake)
    in_real_manifold = np.zeros(fake.shape[0], dtype=bool)   # precision: fake inside some real ball
    density_counts = np.zeros(fake.shape[0], dtype=np.int64)  # density: how many real balls hold it
    real_covered_by_fake = np.zeros(real.shape[0], dtype=bool)  # recall: real inside some fake ball
    real_has_fake_inside = np.zeros(real.shape[0], dtype=bool)  # coverage: some fake inside the real's ball
    for offset, real_block in reference_blocks(real):  # a view of an array, one shard of a blocked set
        real_block = np.asarray(real_block, dtype=fake.dtype)
        centred_real = real_block - centre if np.any(centre) else real_block
        real_sq = row_sq_norms(centred_real)
        for rows in blocks(fake.shape[0], row_block):
            for local in blocks(real_block.shape[0], col_block):
                cols = slice(offset + local.start, offset + local.stop)
                d2 = sq_dist_block(centred_fake[rows], centred_real[local], fake_sq[rows], real_sq[local])
                margin = rounding_margin(fake_sq[rows], real_sq[local], real.shape[1], fake.dtype)
                # ties with a radius (duplicated rows: the memorisation case) are decided on exact distances
                inside_real = strictly_within(d2, real_r2[None, cols], margin, fake, real, rows.start, cols.start)
                in_real_manifold[rows] |= inside_real.any(axis=1)
                density_counts[rows] += inside_real.sum(axis=1)
                real_has_fake_inside[cols] |= inside_real.any(axis=0)
                inside_fake = strictly_within(d2, fake_r2[rows, None], margin, fake, real, rows.start, cols.start)
                real_covered_by_fake[cols] |= inside_fake.any(axis=0)
    return PRDC(
        precision=float(in_real_manifold.mean()),
        recall=float(real_covered_by_fake.mean()),
        density=float(density_counts.mean() / k),
        coverage=float(real_has_fake_inside.mean()),
    )


def precision_recall(real: Any, fake: Any, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN radii; (precision, recall)."""
    result = prdc(real, fake, k)
    return result.precision, result.recall


def density_coverage(real: Any, fake: Any, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020) with k-NN radii of the real set; (density, coverage)."""
    result = prdc(real, fake, k)
    return result.density, result.coverage


# -- CMMD --------------------------------------------------------------------------------------------------
def _rbf_sum(x: np.ndarray, y: np.ndarray, gamma: float, block: int = 2048) -> float:
    """Σ exp(-gamma |x_i - y_j|²) over all pairs of two (already centred) arrays, in tiles."""
    x_sq, y_sq = row_sq_norms(x), row_sq_norms(y)
    total = 0.0
    for rows in blocks(x.shape[0], block):
        for cols in blocks(y.shape[0], block):
            total += np.exp(-gamma * sq_dist_block(x[rows], y[cols], x_sq[rows], y_sq[cols])).sum()
    return total


def _mean_rbf(x: Any, y: np.ndarray, gamma: float, block: int = 2048) -> float:
    """Mean RBF kernel value over all pairs of ``x`` (an array or a blocked set, read a shard at a time) and the
    array ``y``, both shifted by y's mean (a common offset would cancel the distances' digits)."""
    if not is_blocked(x):
        x, y = centred_pair(x, y)
        return _rbf_sum(x, y, gamma, block) / (x.shape[0] * y.shape[0])
    centre = y.mean(axis=0, dtype=np.float64).astype(y.dtype)
    y = y - centre
    total = sum(_rbf_sum(np.asarray(part, dtype=y.dtype) - centre, y, gamma, block) for _, part in x.blocks())
    return total / (x.shape[0] * y.shape[0])


def _mean_rbf_within(x: Any, gamma: float, dtype: Any = np.float64) -> float:
    """Mean RBF kernel value over all pairs of a blocked set (diagonal included): every pair of shards once,
    the kernel being symmetric; two shards in memory at a time."""
    centre = _centre_of(x)
    total = 0.0
    for first, a in x.blocks():
        a = np.asarray(a, dtype=dtype) - centre
        for second, b in x.blocks():
            if second < first:
                continue
            b = a if second == first else np.asarray(b, dtype=dtype) - centre
            total += (1.0 if second == first else 2.0) * _rbf_sum(a, b, gamma)
    return total / (x.shape[0] * x.shape[0])


def cmmd(
    real: Any, fake: Any, sigma: float = 10.0, scale: float = 1000.0, *, real_term: float | None = None
) -> float:
    """CMMD (Jayasumana et al. 2024): ``scale * MMD²`` with k(x, y) = exp(-|x - y|² / (2 sigma²)).

    The estimator of the authors' code: means over the full kernel matrices, diagonals included. Meant for
    CLIP embeddings; works on any features. ``real_term`` (the mean real-real kernel value, from
    ``cmmd_reference_term``) avoids recomputing it when many fake sets are compared with one real set.
    """
    real, fake = _check_real_side(real, fake, dtype=np.float64)  # an MMD of one sample is all diagonal: refused
    sigma = check_positive(sigma, "sigma")
    scale = check_positive(scale, "scale")
    if real_term is not None:  # a mean of kernel values in (0, 1]
        real_term = check_real(real_term, "real_term", minimum=0.0, maximum=1.0)
    gamma = 1.0 / (2.0 * sigma**2)
    if real_term is not None:
        k_rr = float(real_term)
    else:
        k_rr = _mean_rbf_within(real, gamma) if is_blocked(real) else _mean_rbf(real, real, gamma)
    return float(scale * (k_rr + _mean_rbf(fake, fake, gamma) - 2.0 * _mean_rbf(real, fake, gamma)))


def cmmd_reference_term(real: Any, sigma: float = 10.0) -> float:
    """Mean RBF kernel value over all pairs of ``real`` (the part of CMMD that depends on real only); ``real``
    may be blocked (pairs of shards, two in memory at a time)."""
    sigma = check_positive(sigma, "sigma")
    if is_blocked(real):
        return _mean_rbf_within(_check_blocked(real), 1.0 / (2.0 * sigma**2))
    real = check_features(real, "real")
    return _mean_rbf(real, real, 1.0 / (2.0 * sigma**2))


# -- Vendi -------------------------------------------------------------------------------------------------
def vendi(features: Any, q: float = 1.0) -> float:
    """Vendi score (Friedman & Dieng 2023) with the cosine-similarity kernel: effective number of distinct samples.

    The eigenvalues of K/n (K the n x n cosine similarity) equal the non-zero eigenvalues of XᵀX/n for
    row-normalised X, so the smaller of the two Gram matrices is decomposed. ``q`` is the order
    (1: Shannon entropy; other q: Rényi). Rows must be non-zero.
    """
    x = check_features(features, "features", min_samples=1)
    q = check_real(q, "q", minimum=0.0, finite=False)  # q = inf: the min-entropy order
    norms = np.linalg.norm(x, axis=1)
    if np.any(norms == 0):
        raise InputError(f"features: expected non-zero rows for cosine similarity, found {int((norms == 0).sum())} zero rows")
    x = x / norms[:, None]
    n = x.shape[0]
    gram = (x @ x.T) if n <= x.shape[1] else (x.T @ x)
    eigenvalues = np.clip(linalg.eigvalsh(gram / n, check_finite=False), 0.0, None)
    eigenvalues = eigenvalues[eigenvalues > 1e-12]
    if q == 1.0:
        return float(np.exp(-np.sum(eigenvalues * np.log(eigenvalues))))
    if q == np.inf:
        return float(1.0 / eigenvalues.max())
    return float(np.sum(eigenvalues**q) ** (1.0 / (1.0 - q)))
