"""Every quality metric against an independent reference, an invariant, and a pinned value."""

import contextlib
import io

import numpy as np
import pytest
import scipy.linalg

from evolens import InputError

from .test_conformance import reference_fid
from evolens.metrics import (
    FeatureStatistics,
    cmmd,
    density_coverage,
    fid_statistics,
    fid,
    fid_from_statistics,
    kid,
    prdc,
    precision_recall,
    prdc_radii,
    vendi,
)


def gaussians(rng, n_real, n_fake, d, shift=0.2, scale=1.1):
    return rng.standard_normal((n_real, d)), rng.standard_normal((n_fake, d)) * scale + shift


@pytest.mark.parametrize(
    "n_real, n_fake, d",
    [(2000, 1500, 64), pytest.param(4000, 3000, 2048, marks=pytest.mark.slow), (40, 30, 64)],
    ids=["64d", "2048d", "fewer-samples-than-dims"],
)
def test_fid_matches_the_sqrtm_reference(rng, n_real, n_fake, d):
    real, fake = gaussians(rng, n_real, n_fake, d)
    np.testing.assert_allclose(fid(real, fake), reference_fid(real, fake), rtol=1e-6)


def test_fid_of_a_set_with_itself_is_zero(rng):
    real = rng.standard_normal((500, 64))
    assert abs(fid(real, real)) < 1e-6
    assert abs(fid(real[:20], real[:20])) < 1e-6  # low-rank path too


def test_fid_invariants_and_pinned_value():
    rng = np.random.default_rng(123)
    real, fake = gaussians(rng, 300, 200, 16)
    value = fid(real, fake)
    assert value == pytest.approx(fid(real[::-1], fake[rng.permutation(200)]), rel=1e-10)  # order-free
    assert value == pytest.approx(fid(fake, real), rel=1e-9)  # symmetric
    assert value == pytest.approx(1.4954519055, abs=1e-8)  # pinned: 16-d, shift 0.2, scale 1.1, seed 123


def test_fid_of_known_gaussians_closed_form():
    # N(0, I) vs N(m, s² I): |m|² + d (1 - s)², from exact statistics.
    d, m, s = 8, 0.5, 2.0
    value = fid_from_statistics(np.zeros(d), np.eye(d), np.full(d, m), s**2 * np.eye(d))
    assert value == pytest.approx(d * m**2 + d * (1 - s) ** 2, rel=1e-12)


def test_streaming_statistics_equal_batch_statistics(rng):
    x = rng.standard_normal((1000, 32)) * 3 + 1
    stats = FeatureStatistics()
    for chunk in np.array_split(x, 7):
        stats.update(chunk)
    mu, cov = fid_statistics(x)
    np.testing.assert_allclose(stats.mean, mu, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.cov, cov, rtol=1e-9, atol=1e-10)
    restored = FeatureStatistics.from_state(stats.state())
    assert restored.n == 1000
    np.testing.assert_array_equal(restored.cov, stats.cov)


def direct_unbiased_mmd2(x, y, degree=3, coef0=1.0):
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + coef0) ** degree  # noqa: E731
    m, n = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean()


def test_kid_matches_the_direct_unbiased_mmd(rng):
    real, fake = gaussians(rng, 200, 200, 10)
    mean, std = kid(real, fake, subsets=3, subset_size=200)  # the whole sets: every subset is the same
    assert mean == pytest.approx(direct_unbiased_mmd2(real, fake), rel=1e-10) and std == pytest.approx(0, abs=1e-12)
    same = rng.standard_normal((400, 10))
    assert abs(kid(same[:200], same[200:], subsets=20, subset_size=100)[0]) < 0.05  # unbiased: ~0 for one law
    mean, std = kid(real, fake, subsets=50, subset_size=50)
    assert mean > 0 and std > 0


def _reference_prdc(real, fake, k):
    from prdc import compute_prdc

    with contextlib.redirect_stdout(io.StringIO()):
        return compute_prdc(real.astype(np.float32), fake.astype(np.float32), k)


def brute_force_prdc(real, fake, k):
    """The papers' definitions, written out directly."""
    d_rr = np.linalg.norm(real[:, None] - real[None], axis=-1)
    d_ff = np.linalg.norm(fake[:, None] - fake[None], axis=-1)
    d_rf = np.linalg.norm(real[:, None] - fake[None], axis=-1)
    r_real = np.sort(d_rr, axis=1)[:, k]  # k-th neighbour, the point itself (0) at index 0
    r_fake = np.sort(d_ff, axis=1)[:, k]
    precision = np.mean([(d_rf[:, j] < r_real).any() for j in range(len(fake))])
    recall = np.mean([(d_rf[i] < r_fake).any() for i in range(len(real))])
    density = np.mean([(d_rf[:, j] < r_real).sum() for j in range(len(fake))]) / k
    coverage = np.mean([d_rf[i].min() < r_real[i] for i in range(len(real))])
    return precision, recall, density, coverage


@pytest.mark.parametrize("k", [3, 5])
def test_prdc_matches_brute_force_and_the_prdc_package(rng, k):
    real, fake = gaussians(rng, 300, 250, 12, shift=0.4)
    ours = prdc(real, fake, k, row_block=64, col_block=100)  # several blocks each way
    np.testing.assert_allclose([ours.precision, ours.recall, ours.density, ours.coverage],
                               brute_force_prdc(real, fake, k), rtol=0, atol=1e-12)
    reference = _reference_prdc(real, fake, k)
    # prdc works in float32 distances: a point exactly at a radius may flip; allow one sample's worth.
    for name, tol in (("precision", 1 / 250), ("recall", 1 / 300), ("density", 1 / 250), ("coverage", 1 / 300)):
        assert getattr(ours, name) == pytest.approx(float(reference[name]), abs=tol + 1e-12), name
    assert precision_recall(real, fake, k) == (ours.precision, ours.recall)
    assert density_coverage(real, fake, k) == (ours.density, ours.coverage)
    again = prdc(real, fake, k, real_radii=prdc_radii(real, k))
    assert again == ours


def test_prdc_float32_features_agree_with_float64(rng):
    real, fake = gaussians(rng, 400, 300, 64, shift=0.3)
    assert prdc(real.astype(np.float32), fake.astype(np.float32), 5) == prdc(real, fake, 5)


def test_prdc_of_identical_sets(rng):
    real = rng.standard_normal((100, 5))
    result = prdc(real, real.copy(), 5)
    assert result.precision == 1.0 and result.recall == 1.0 and result.coverage == 1.0


def test_cmmd_matches_its_definition(rng):
    real, fake = gaussians(rng, 60, 50, 7, shift=3.0)
    sq = lambda a, b: ((a[:, None] - b[None]) ** 2).sum(-1)  # noqa: E731
    k = lambda a, b: np.exp(-sq(a, b) / (2 * 10.0**2))  # noqa: E731
    expected = 1000 * (k(real, real).mean() + k(fake, fake).mean() - 2 * k(real, fake).mean())
    assert cmmd(real, fake) == pytest.approx(expected, rel=1e-10)
    assert cmmd(real, real) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(
    "features, expected",
    [
        (np.ones((10, 4)), 1.0),
        (np.eye(6), 6.0),
        (np.vstack([np.eye(3), np.eye(3)]), 3.0),
        (np.tile(np.eye(5), (40, 1)), 5.0),  # 200 points in 5 dims: the d x d Gram path
        (np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), np.exp(-(2 / 3) * np.log(2 / 3) - (1 / 3) * np.log(1 / 3))),
    ],
    ids=["identical", "orthogonal", "duplicated-orthogonal", "more-points-than-dims", "entropy-2-1"],
)
def test_vendi_known_answers(features, expected):
    assert vendi(features) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda r: fid(r[:1], r), r"real: found array with 1 sample"),
        (lambda r: fid(r, r[:, :3]), r"fake: expected 4 feature dimensions like real, received shape=\(10, 3\)"),
        (lambda r: fid(np.where(np.eye(10, 4) > 0, np.nan, r), r), "found 4 NaN/inf values"),
        (lambda r: kid(r, np.full_like(r, np.inf)), "fake: expected finite features"),
        (lambda r: prdc(r, r, k=10), r"k: expected k < the number of samples in each set \(10\), received k=10"),
        (lambda r: precision_recall(r, r[:3], k=3), "k < the number"),
        (lambda r: fid(r[0], r), "2 dimensions"),
        (lambda r: vendi(np.zeros((3, 4))), "non-zero rows"),
        (lambda r: fid_from_statistics(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2)), r"mu2: expected shape \(3,\)"),
    ],
    ids=["one-sample", "dims", "nan", "inf", "k-too-large", "k-vs-fake", "rank", "vendi-zero", "stats-shape"],
)
def test_clear_errors(call, match):
    real = np.random.default_rng(0).standard_normal((10, 4))
    with pytest.raises(InputError, match=match):
        call(real)
