"""Numbers at the edges: float32 features with a large common offset, duplicated rows (ties at a radius), tiny
feature scales — each against a float64 (or exact) reference computed independently of evolens' blocked code."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from evolens.metrics import FeatureStatistics, cmmd, fid, kid, nearest_neighbors, prdc
from evolens.metrics.quality import fid_uses_cross_product


def offset_pair(rng, n=400, d=64, offset=1e4):
    real = (offset + rng.standard_normal((n, d))).astype(np.float32)
    fake = (offset + 0.1 + 1.1 * rng.standard_normal((n, d))).astype(np.float32)
    return real, fake


def prdc_package(real, fake, k):
    import contextlib
    import io

    from prdc import compute_prdc

    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
        return compute_prdc(real_features=real, fake_features=fake, nearest_k=k)


def test_prdc_float32_with_a_large_offset_matches_the_prdc_package_on_float64(rng):
    real, fake = offset_pair(rng)
    expected = prdc_package(real.astype(np.float64), fake.astype(np.float64), 5)
    result = prdc(real, fake, k=5)
    assert 0.2 < expected["precision"] < 1  # the data is far from degenerate: a 0 here is the cancellation
    for field in ("precision", "recall", "density", "coverage"):
        assert getattr(result, field) == pytest.approx(expected[field], abs=1e-9), field


def test_nearest_neighbors_float32_with_a_large_offset_matches_float64_cdist(rng):
    queries, reference = offset_pair(rng, n=300, d=32)
    full = cdist(queries.astype(np.float64), reference.astype(np.float64))
    expected = np.sort(full, axis=1)[:, :3]
    distances, index = nearest_neighbors(queries, reference, k=3)
    assert expected.min() > 2  # ~sqrt(2 d): a 0 here is the cancellation
    np.testing.assert_allclose(distances, expected, rtol=1e-12)
    np.testing.assert_allclose(np.take_along_axis(full, index, axis=1), expected, rtol=1e-12)


def test_prdc_density_is_exactly_one_when_fake_rows_duplicate_real_rows(rng):
    # The memorisation case: every fake row is a real row. Each real point's ball holds itself and k - 1 other
    # points strictly inside, its k-th neighbour on the boundary (excluded by the strict <): density = 1 exactly.
    for dtype, offset in ((np.float32, 0.0), (np.float32, 50.0), (np.float64, 0.0)):
        real = (offset + rng.standard_normal((300, 48))).astype(dtype)
        result = prdc(real, real.copy(), k=5)
        expected = prdc_package(real.astype(np.float64), real.astype(np.float64), 5)
        assert result.density == 1.0 and expected["density"] == 1.0, dtype
        assert result.precision == result.recall == result.coverage == 1.0
        # half the fake set copied, half fresh: the package on float64 is the reference
        fake = np.concatenate([real[:150], (offset + rng.standard_normal((150, 48))).astype(dtype)])
        expected = prdc_package(real.astype(np.float64), fake.astype(np.float64), 5)
        result = prdc(real, fake, k=5)
        for field in ("precision", "recall", "density", "coverage"):
            assert getattr(result, field) == pytest.approx(expected[field], abs=1e-12), (dtype, field)


def exact_unbiased_kid(x, y, degree=3, coef0=1):
    """The unbiased MMD² with the polynomial kernel in exact rational arithmetic (one subset: all rows)."""
    d = x.shape[1]
    X = [[Fraction(float(v)) for v in row] for row in x]
    Y = [[Fraction(float(v)) for v in row] for row in y]

    def k(a, b):
        return (sum(p * q for p, q in zip(a, b)) / d + coef0) ** degree

    m = len(X)
    xx = sum(k(X[i], X[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(Y[i], Y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(a, b) for a in X for b in Y)
    return float((xx + yy) / (m * (m - 1)) - 2 * xy / (m * m))


@pytest.mark.parametrize("scale", [1e-6, 1.0, 30.0])
def test_kid_at_small_and_large_feature_scales_matches_exact_arithmetic(rng, scale):
    x = rng.standard_normal((12, 5)) * scale
    y = (rng.standard_normal((12, 5)) + 0.5) * scale
    expected = exact_unbiased_kid(x, y)
    value, _ = kid(x, y, subsets=1, subset_size=12)
    assert value == pytest.approx(expected, rel=1e-9)
    value32, _ = kid(x.astype(np.float32), y.astype(np.float32), subsets=1, subset_size=12)
    assert value32 == pytest.approx(exact_unbiased_kid(x.astype(np.float32), y.astype(np.float32)), rel=2e-4)


def test_fid_paths_agree_and_the_cheaper_one_is_taken(rng):
    d = 96
    small = rng.standard_normal((40, d))
    large = rng.standard_normal((3000, d)) * 1.3 + 0.2
    assert fid_uses_cross_product(40, 60, d) and not fid_uses_cross_product(40, 3000, d)
    # the same value either way: the covariance path on (small, large) against the cross-product formula
    mu1, mu2 = small.mean(0), large.mean(0)
    a1 = (small - mu1) / np.sqrt(39)
    a2 = (large - mu2) / np.sqrt(2999)
    cross = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum()
    expected = (mu1 - mu2) @ (mu1 - mu2) + (a1**2).sum() + (a2**2).sum() - 2 * cross
    assert fid(small, large) == pytest.approx(expected, rel=1e-7)  # S1 is singular: clipped eigenvalues


def test_streaming_statistics_keep_the_covariance_of_offset_features(rng):
    x = 1e6 + rng.standard_normal((5000, 8))
    stats = FeatureStatistics()
    for chunk in np.array_split(x, 13):
        stats.update(chunk)
    expected = np.cov(x - 1e6, rowvar=False)  # the offset removed exactly before np.cov's two passes
    np.testing.assert_allclose(stats.cov, expected, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(stats.mean - 1e6, (x - 1e6).mean(0), atol=1e-8)


def test_statistics_stored_by_evolens_0_1_still_load(rng):
    x = rng.standard_normal((200, 6)) + 3
    header = np.zeros((1, 6))
    header[0, 0] = 200
    old_state = np.vstack([header, x.sum(0)[None], x.T @ x])  # evolens 0.1: [n, Σx, Σxxᵀ]
    stats = FeatureStatistics.from_state(old_state)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=1e-9)
    assert FeatureStatistics.from_state(stats.state()).n == 200


def test_cmmd_float32_with_an_offset_matches_float64(rng):
    real, fake = offset_pair(rng, n=200, d=16, offset=1e3)
    expected = cmmd(real.astype(np.float64) - 1e3, fake.astype(np.float64) - 1e3, sigma=3.0)
    assert cmmd(real, fake, sigma=3.0) == pytest.approx(expected, rel=1e-4)


def test_kid_whole_kernel_tiles_equal_the_per_subset_kernels(rng, monkeypatch):
    from evolens.metrics import quality

    real = rng.standard_normal((700, 24))
    fake = rng.standard_normal((650, 24)) * 1.1 + 0.05
    assert quality._kid_whole_kernels_cheaper(700, 650, 300, 40)  # 40 subsets of 300 cover the sets many times
    tiled = kid(real, fake, subsets=40, subset_size=300, seed=3)
    monkeypatch.setattr(quality, "_kid_whole_kernels_cheaper", lambda *args: False)
    per_subset = kid(real, fake, subsets=40, subset_size=300, seed=3)
    assert tiled[0] == pytest.approx(per_subset[0], rel=1e-12) and tiled[1] == pytest.approx(per_subset[1], rel=1e-10)
    # and one subset against exact arithmetic, on the tiled path (a tile smaller than the set)
    x, y = real[:40], fake[:40]
    monkeypatch.undo()
    assert quality._kid_whole_kernels_cheaper(40, 40, 40, 1) is False
    value = quality._subset_kernel_sums(x, None, np.arange(40)[None], None, [3.0, 3.0, 1.0], 1 / 24, block=16)
    direct = ((x @ x.T / 24 + 1) ** 3 - 1).sum(), np.trace((x @ x.T / 24 + 1) ** 3 - 1)
    assert value[0][0] == pytest.approx(direct[0], rel=1e-12) and value[1][0] == pytest.approx(direct[1], rel=1e-12)
