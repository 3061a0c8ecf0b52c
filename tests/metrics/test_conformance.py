"""Every metric through the one shared tester (``tester.check_metric``): an independent reference, invariants,
a pinned value and bad input. The references are a published package (prdc, scikit-learn) or the metric's
definition written out with scipy, not evolens' code."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import scipy.linalg
from scipy.spatial.distance import cdist

from evolens.metrics import cmmd, copy_rate, fid, kid, nn_divergence, prdc, vendi

from .tester import MetricSpec, check_metric


def reference_fid(real, fake):
    """pytorch-fid's calculate_frechet_distance: scipy.linalg.sqrtm of the covariance product."""
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    diff = real.mean(0) - fake.mean(0)
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def reference_kid(real, fake):
    """Unbiased MMD² with the cubic polynomial kernel (Bińkowski et al. 2018), on the whole sets."""
    k = lambda a, b: (a @ b.T / a.shape[1] + 1.0) ** 3  # noqa: E731
    m = real.shape[0]
    kxx, kyy, kxy = k(real, real), k(fake, fake), k(real, fake)
    return float((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())


def reference_prdc(field: str, k: int):
    def compute(real, fake):
        from prdc import compute_prdc

        with contextlib.redirect_stdout(io.StringIO()):
            return float(compute_prdc(real, fake, nearest_k=k)[field])

    return compute


def reference_cmmd(real, fake, sigma=10.0, scale=1000.0):
    k = lambda a, b: np.exp(-cdist(a, b, "sqeuclidean") / (2 * sigma**2))  # noqa: E731
    return float(scale * (k(real, real).mean() + k(fake, fake).mean() - 2 * k(real, fake).mean()))


def reference_vendi(features):
    """exp of the Shannon entropy of the eigenvalues of the cosine-similarity matrix / n (Friedman & Dieng)."""
    x = features / np.linalg.norm(features, axis=1, keepdims=True)
    eig = np.clip(np.linalg.eigvalsh(x @ x.T / x.shape[0]), 0, None)
    eig = eig[eig > 1e-15]
    return float(np.exp(-(eig * np.log(eig)).sum()))


def with_copies(real, fake):
    """The fake set plus near-copies of the first ten real rows (so the copy rate is not trivially 0)."""
    return np.vstack([fake, real[:10] + 1e-3]) if real.shape[1] == fake.shape[1] else fake


def reference_copy_rate(real, fake, ratio=1 / 3):
    from sklearn.neighbors import NearestNeighbors

    distances, _ = NearestNeighbors(n_neighbors=2).fit(real).kneighbors(with_copies(real, fake))
    return float(np.mean(distances[:, 0] < ratio * distances[:, 1]))


def heldout_like(real):
    return np.random.default_rng(5).standard_normal(real.shape)


def reference_nn_divergence(real, fake, bins=20, eps=1e-8):
    d_gen = cdist(fake, real).min(axis=1)
    d_test = cdist(heldout_like(real), real).min(axis=1)
    edges = np.linspace(min(d_gen.min(), d_test.min()), max(d_gen.max(), d_test.max()) + 1e-12, bins + 1)
    p = np.clip(np.histogram(d_gen, edges)[0] / d_gen.size, eps, None)
    q = np.clip(np.histogram(d_test, edges)[0] / d_test.size, eps, None)
    return float(np.sum(p * np.log(p / q)))


SPECS = [
    MetricSpec("fid", fid, reference_fid, pinned=1.2677504250881064, rtol=1e-6, atol=1e-9, self_value=0.0),
    MetricSpec("kid", lambda r, f: kid(r, f, subsets=1, subset_size=10**6)[0], reference_kid,
               pinned=0.13579339795611656, rtol=1e-9,
               sizes=((150, 150, 8), (40, 40, 5))),
    *[MetricSpec(f"{field}@k={k}", lambda r, f, field=field, k=k: getattr(prdc(r, f, k), field),
                 reference_prdc(field, k), pinned=pinned, rtol=0, atol=1e-12,
                 self_value=None if field == "density" else 1.0)
      for k, values in ((3, (0.775, 0.98, 0.7333333333333334, 0.78)), (5, (0.925, 1.0, 0.725, 0.94)))
      for field, pinned in zip(("precision", "recall", "density", "coverage"), values)],
    MetricSpec("cmmd", cmmd, reference_cmmd, pinned=5.673122294189259, rtol=1e-9, atol=1e-9, self_value=0.0,
               self_atol=1e-9),
    MetricSpec("vendi", lambda r, f: vendi(f), lambda r, f: reference_vendi(f), pinned=5.725392966539239,
               rtol=1e-9, bad_input=False),
    MetricSpec("copy_rate", lambda r, f: copy_rate(with_copies(r, f), r), reference_copy_rate,
               pinned=0.2, rtol=0, atol=1e-12),
    MetricSpec("nn_divergence", lambda r, f: nn_divergence(f, r, heldout_like(r)), reference_nn_divergence,
               pinned=3.214462768444358, rtol=1e-9, atol=1e-12, order_invariant=True),
]


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_metric_conformance(spec):
    check_metric(spec)
