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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import linalg

from .._validation import check_array, count_nonfinite
from ..errors import InputError
from ._distances import blocks, kth_smallest_sq_dist, row_sq_norms, sq_dist_block

__all__ = [
    "FeatureStatistics",
    "check_features",
    "cmmd",
    "cmmd_reference_term",
    "density_coverage",
    "fid_statistics",
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


def _check_k(k: int, n_real: int, n_fake: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k: expected a positive integer, received {k!r}")
    smallest = min(n_real, n_fake)
    if k >= smallest:
        raise InputError(f"k: expected k < the number of samples in each set ({smallest}), received k={k}")
    return int(k)


# -- FID ---------------------------------------------------------------------------------------------------
def _mean_cov(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Centred Gram matrix: numpy dispatches xcᵀ xc to a symmetric rank-k update; ~2x faster than np.cov,
    # which adds copies around the same product. Same float64 arithmetic, same result to rounding.
    mean = x.mean(axis=0)
    centred = x - mean
    return mean, (centred.T @ centred) / (x.shape[0] - 1)


def fid_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased covariance (d, d), float64, of features (n, d) with n >= 2."""
    return _mean_cov(check_features(features, "features"))


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
    diff = mu1 - mu2
    value = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * _trace_sqrt_product(s1, s2)
    return float(max(value, 0.0))


def fid(real: Any, fake: Any) -> float:
    """FID between feature sets real (n1, d) and fake (n2, d), n1, n2 >= 2.

    With fewer samples than dimensions the covariance square root is never formed: with centred, scaled
    A_i = (X_i - mu_i) / sqrt(n_i - 1), tr sqrt(S1 S2) is the sum of singular values of A1 A2ᵀ (n1 x n2).
    """
    real, fake = _check_pair(real, fake)
    n1, n2, d = real.shape[0], fake.shape[0], real.shape[1]
    mu1, mu2 = real.mean(axis=0), fake.mean(axis=0)
    if min(n1, n2) < d:
        a1 = (real - mu1) / np.sqrt(n1 - 1)
        a2 = (fake - mu2) / np.sqrt(n2 - 1)
        cross = linalg.svdvals(a1 @ a2.T, check_finite=False).sum()
        diff = mu1 - mu2
        value = diff @ diff + np.einsum("ij,ij->", a1, a1) + np.einsum("ij,ij->", a2, a2) - 2.0 * cross
        return float(max(value, 0.0))
    (mu1, cov1), (mu2, cov2) = _mean_cov(real), _mean_cov(fake)
    return fid_from_statistics(mu1, cov1, mu2, cov2)


class FeatureStatistics:
    """Streaming mean and covariance of features (float64 sums), for FID against a large reference set.

    ``update(batch)`` any number of times, then ``mean``/``cov``; ``state()``/``from_state()`` round-trip
    through arrays so a run stores the reference statistics once.
    """

    def __init__(self, dim: int | None = None) -> None:
        self.n = 0
        self._sum = None if dim is None else np.zeros(dim)
        self._outer = None if dim is None else np.zeros((dim, dim))

    def update(self, features: Any) -> "FeatureStatistics":
        """Add a batch (m, d) of features; returns self."""
        x = check_features(features, "features", min_samples=1)
        if self._sum is None:
            self._sum, self._outer = np.zeros(x.shape[1]), np.zeros((x.shape[1], x.shape[1]))
        if x.shape[1] != self._sum.shape[0]:
            raise InputError(f"features: expected {self._sum.shape[0]} dimensions, received shape={x.shape}")
        self.n += x.shape[0]
        self._sum += x.sum(axis=0)
        self._outer += x.T @ x
        return self

    @property
    def mean(self) -> np.ndarray:
        """Mean (d,)."""
        if self.n < 1:
            raise InputError("features: no features added yet")
        return self._sum / self.n

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance (d, d) (needs n >= 2)."""
        if self.n < 2:
            raise InputError(f"features: expected at least 2 samples for a covariance, received {self.n}")
        mean = self.mean
        return (self._outer - self.n * np.outer(mean, mean)) / (self.n - 1)

    def state(self) -> np.ndarray:
        """All sums as one (d + 2, d) float64 array: [n, ...], sum, outer products."""
        header = np.zeros((1, self._sum.shape[0]))
        header[0, 0] = self.n
        return np.vstack([header, self._sum[None], self._outer])

    @classmethod
    def from_state(cls, state: np.ndarray) -> "FeatureStatistics":
        """Rebuild from ``state()``."""
        state = np.asarray(state, dtype=np.float64)
        stats = cls()
        stats.n, stats._sum, stats._outer = int(state[0, 0]), state[1].copy(), state[2:].copy()
        return stats


# -- KID ---------------------------------------------------------------------------------------------------
def _polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> np.ndarray:
    return (gamma * (x @ y.T) + coef0) ** degree


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
    small sets); std is the population std over subsets (as torch-fidelity).
    """
    real, fake = _check_pair(real, fake)
    if subsets < 1:
        raise InputError(f"subsets: expected a positive integer, received {subsets}")
    m = min(int(subset_size), real.shape[0], fake.shape[0])
    if m < 2:
        raise InputError(f"subset_size: expected at least 2, received {subset_size}")
    gamma = 1.0 / real.shape[1] if gamma is None else float(gamma)
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        x = real[rng.choice(real.shape[0], m, replace=False)]
        y = fake[rng.choice(fake.shape[0], m, replace=False)]
        k_xx = _polynomial_kernel(x, x, degree, gamma, coef0)
        k_yy = _polynomial_kernel(y, y, degree, gamma, coef0)
        k_xy = _polynomial_kernel(x, y, degree, gamma, coef0)
        values[i] = ((k_xx.sum() - np.trace(k_xx)) + (k_yy.sum() - np.trace(k_yy))) / (m * (m - 1)) - 2.0 * k_xy.mean()
    return float(values.mean()), float(values.std())


# -- precision / recall / density / coverage ---------------------------------------------------------------
@dataclass(frozen=True)
class PRDC:
    """Precision, recall (Kynkäänniemi et al.), density, coverage (Naeem et al.) at one k."""

    precision: float
    recall: float
    density: float
    coverage: float


def prdc_radii(real: Any, k: int) -> np.ndarray:
    """Squared distance of each real sample to its k-th nearest other real sample (n,), for reuse in ``prdc``."""
    real = check_features(real, "real", dtype=None)
    _check_k(k, real.shape[0], real.shape[0])
    return kth_smallest_sq_dist(real, real, k + 1)


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
    real, fake = _check_pair(real, fake, dtype=None)  # float32 features stay float32: no copy, fast GEMMs
    k = _check_k(k, real.shape[0], fake.shape[0])
    if real_radii is not None and np.shape(real_radii) != (real.shape[0],):
        raise InputError(f"real_radii: expected shape ({real.shape[0]},), received shape={np.shape(real_radii)}")
    real_r2 = (kth_smallest_sq_dist(real, real, k + 1, row_block=row_block, col_block=col_block)
               if real_radii is None else np.asarray(real_radii, dtype=real.dtype))
    fake_r2 = kth_smallest_sq_dist(fake, fake, k + 1, row_block=row_block, col_block=col_block)
    real_sq, fake_sq = row_sq_norms(real), row_sq_norms(fake)
    in_real_manifold = np.zeros(fake.shape[0], dtype=bool)   # precision: fake inside some real ball
    density_counts = np.zeros(fake.shape[0], dtype=np.int64)  # density: how many real balls hold it
    real_covered_by_fake = np.zeros(real.shape[0], dtype=bool)  # recall: real inside some fake ball
    nearest_fake = np.full(real.shape[0], np.inf, dtype=real.dtype)  # coverage: nearest fake of each real
    for rows in blocks(fake.shape[0], row_block):
        for cols in blocks(real.shape[0], col_block):
            d2 = sq_dist_block(fake[rows], real[cols], fake_sq[rows], real_sq[cols])
            inside_real = d2 < real_r2[None, cols]
            in_real_manifold[rows] |= inside_real.any(axis=1)
            density_counts[rows] += inside_real.sum(axis=1)
            real_covered_by_fake[cols] |= (d2 < fake_r2[rows, None]).any(axis=0)
            np.minimum(nearest_fake[cols], d2.min(axis=0), out=nearest_fake[cols])
    return PRDC(
        precision=float(in_real_manifold.mean()),
        recall=float(real_covered_by_fake.mean()),
        density=float(density_counts.mean() / k),
        coverage=float((nearest_fake < real_r2).mean()),
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
def _mean_rbf(x: np.ndarray, y: np.ndarray, gamma: float, block: int = 2048) -> float:
    x_sq, y_sq = row_sq_norms(x), row_sq_norms(y)
    total = 0.0
    for rows in blocks(x.shape[0], block):
        for cols in blocks(y.shape[0], block):
            total += np.exp(-gamma * sq_dist_block(x[rows], y[cols], x_sq[rows], y_sq[cols])).sum()
    return total / (x.shape[0] * y.shape[0])


def cmmd(
    real: Any, fake: Any, sigma: float = 10.0, scale: float = 1000.0, *, real_term: float | None = None
) -> float:
    """CMMD (Jayasumana et al. 2024): ``scale * MMD²`` with k(x, y) = exp(-|x - y|² / (2 sigma²)).

    The estimator of the authors' code: means over the full kernel matrices, diagonals included. Meant for
    CLIP embeddings; works on any features. ``real_term`` (the mean real-real kernel value, from
    ``cmmd_reference_term``) avoids recomputing it when many fake sets are compared with one real set.
    """
    real, fake = _check_pair(real, fake)  # an MMD of one sample is all diagonal: refuse it like the other metrics
    gamma = 1.0 / (2.0 * sigma**2)
    k_rr = _mean_rbf(real, real, gamma) if real_term is None else float(real_term)
    return float(scale * (k_rr + _mean_rbf(fake, fake, gamma) - 2.0 * _mean_rbf(real, fake, gamma)))


def cmmd_reference_term(real: Any, sigma: float = 10.0) -> float:
    """Mean RBF kernel value over all pairs of ``real`` (the part of CMMD that depends on real only)."""
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
