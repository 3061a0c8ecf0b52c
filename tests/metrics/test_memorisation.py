"""Memorisation metrics from the field and the biased-generalization paper's estimators, each against its
definition on constructed cases and, where public code defines it, against a re-computation that follows that
code's steps: dgm-eval ``dgm_eval/metrics/authpct.py`` and ``ct.py``; the paper's
``Experiments/src/Generation/loss_compute.py``, ``compare_scores.py`` and ``sample_split_inference.py``
(davide-beltrame/Why-Diffusion-Models-Don-t-Memorize)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from evolens import InputError
from evolens.metrics import (
    authenticity,
    data_copying_ct,
    extraction_rate,
    nn_divergence,
    nn_divergence_bootstrap,
    nn_divergence_edges,
    normalized_l2,
    sample_split_distance,
)
from evolens.metrics.diffusion import diffusion_heldout_loss, linear_alpha_bar, loss_bands, score_agreement

RNG = np.random.default_rng(0)


def gaussian(n: int, d: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


# -- authenticity ---------------------------------------------------------------------------------------------
def authpct_dgm_eval(train: np.ndarray, gen: np.ndarray) -> float:
    """dgm-eval's authpct.py, step by step (torch cdist, self-distances set to inf), as a fraction."""
    train_t, gen_t = torch.tensor(train, dtype=torch.float32), torch.tensor(gen, dtype=torch.float32)
    real = torch.cdist(train_t, train_t)
    real.fill_diagonal_(float("inf"))
    gen_d = torch.cdist(train_t, gen_t)
    real_min, gen_min = real.min(axis=0), gen_d.min(dim=0)
    authentic = real_min.values[gen_min.indices] < gen_min.values
    return float(torch.sum(authentic) / len(authentic))


def test_authenticity_follows_dgm_eval_and_its_definition():
    train, fresh = gaussian(300), gaussian(200, seed=1)
    assert authenticity(fresh, train) == pytest.approx(authpct_dgm_eval(train, fresh), abs=1e-12)
    assert 0.3 < authenticity(fresh, train) < 0.9  # fresh data: often farther than the data's own spacing
    assert authenticity(train[:50], train) == 0.0  # copies are never authentic
    far = train[:20] * 50.0  # far outside the data: always authentic
    assert authenticity(far, train) == 1.0


# -- C_T ----------------------------------------------------------------------------------------------------
def ct_dgm_eval(train: np.ndarray, test: np.ndarray, gen: np.ndarray, seed: int = 0) -> float:
    """dgm-eval's ct.py, step by step (PCA to 64, k-means with 3 cells, Zu per cell, weighted C_T, tau = 20/m);
    k-means and PCA seeded as evolens seeds them."""
    if train.shape[1] > 64:
        pca = PCA(n_components=64, random_state=seed).fit(train)
        train, test, gen = pca.transform(train), pca.transform(test), pca.transform(gen)
    km = KMeans(n_clusters=3, n_init=10, random_state=seed).fit(train)
    t_lab, p_lab, q_lab = km.predict(train), km.predict(test), km.predict(gen)
    m, n = gen.shape[0], test.shape[0]
    tau = 20 / m
    zu = np.zeros(3)
    for i in range(3):
        pn, qm, tt = test[p_lab == i], gen[q_lab == i], train[t_lab == i]
        if len(qm) == 0:
            continue
        nn = NearestNeighbors(n_neighbors=1).fit(tt)
        lq, _ = nn.kneighbors(X=qm, n_neighbors=1)
        lp, _ = nn.kneighbors(X=pn, n_neighbors=1)
        u, _ = mannwhitneyu(lq, lp, alternative="less")
        zu[i] = (u[0] - (len(pn) * len(qm) / 2 - 0.5)) / np.sqrt(len(pn) * len(qm) * (len(pn) + len(qm) + 1) / 12)
    q_share = np.bincount(q_lab, minlength=3) / m
    p_share = np.bincount(p_lab, minlength=3) / n
    keep = q_share > tau
    return float(p_share[keep].dot(zu[keep]) / np.sum(p_share[keep]))


@pytest.mark.parametrize("d", [8, 80])  # 80: through the PCA to 64 dimensions
def test_ct_follows_dgm_eval(d):
    train, test, gen = gaussian(400, d), gaussian(300, d, seed=1), gaussian(300, d, seed=2)
    assert data_copying_ct(gen, train, test) == pytest.approx(ct_dgm_eval(train, test, gen), abs=1e-9)


def test_ct_sees_planted_copies_and_not_fresh_samples():
    train, test = gaussian(400), gaussian(300, seed=1)
    fresh = gaussian(300, seed=2)
    copies = train[RNG.choice(400, 300, replace=False)] + RNG.normal(scale=1e-3, size=(300, 8))
    assert abs(data_copying_ct(fresh, train, test)) < 3.0  # a Z statistic: no evidence either way
    assert data_copying_ct(copies, train, test) < -10.0  # data copying
    assert data_copying_ct(fresh * 3.0, train, test) > 3.0  # too far: underfitting
    with pytest.raises(InputError, match="n_cells"):
        data_copying_ct(fresh, train, test, n_cells=0)


# -- Carlini et al.'s normalised l2 ---------------------------------------------------------------------------
def test_normalized_l2_closed_form_and_extraction():
    train = np.arange(100, dtype=np.float64)[:, None]
    # nearest three of 0.1: 0 (0.1), 1 (0.9), 2 (1.9) -> 0.1 / (0.5 * mean(0.1, 0.9, 1.9))
    assert normalized_l2(np.array([[0.1]]), train, n_neighbors=3)[0] == pytest.approx(0.1 / (0.5 * 2.9 / 3))
    data = gaussian(500, 16)
    copies, fresh = data[:40] + 1e-4, gaussian(40, 16, seed=3)
    assert extraction_rate(copies, data) == 1.0 and extraction_rate(fresh, data) == 0.0


# -- NN divergence on fixed bins ------------------------------------------------------------------------------
def test_nn_divergence_fixed_bins_and_bootstrap():
    train, held = gaussian(300), gaussian(300, seed=1)
    edges = nn_divergence_edges(train, held, bins=10)
    assert edges[0] == 0 and np.isinf(edges[-1]) and len(edges) == 11
    # the edges are the held-out quantiles: each bin holds a tenth of the held-out distances
    d_held = NearestNeighbors(n_neighbors=1).fit(train).kneighbors(held)[0][:, 0]
    np.testing.assert_allclose(np.histogram(d_held, edges)[0], 30, atol=1)
    assert nn_divergence(held, train, held, edges=edges) == pytest.approx(0.0, abs=1e-12)
    fresh, copies = gaussian(300, seed=2), train[:300] + 1e-3
    assert nn_divergence(fresh, train, held, edges=edges) < 0.1
    # copies: every distance in the first bin -> KL = log(1 / P_test(first bin)) = log(10)
    assert nn_divergence(copies, train, held, edges=edges) == pytest.approx(np.log(10), rel=0.05)
    ci = nn_divergence_bootstrap(fresh, train, held, edges=edges, n_bootstrap=100, seed=0)
    assert ci.low <= ci.value <= ci.high and ci.high - ci.low > 0
    assert ci == nn_divergence_bootstrap(fresh, train, held, edges=edges, n_bootstrap=100, seed=0)
    copied = nn_divergence_bootstrap(copies, train, held, edges=edges, n_bootstrap=100)
    assert copied.low > ci.high  # the intervals separate copying from fresh samples
    with pytest.raises(InputError, match="edges"):
        nn_divergence(fresh, train, held, edges=[0.0, 1.0])


# -- the sample-split distance ----------------------------------------------------------------------------------
def test_split_distance_mean_follows_sample_split_inference():
    a, b = RNG.random((16, 3, 8, 8)), RNG.random((16, 3, 8, 8))

    def standardised(x):  # sample_split_inference.py: per image and channel, unbiased std + 1e-12, then flatten
        x = torch.tensor(x)
        return ((x - x.mean(dim=(2, 3), keepdim=True)) / (x.std(dim=(2, 3), keepdim=True) + 1e-12)).flatten(1)

    cos = torch.nn.functional.cosine_similarity(standardised(a), standardised(b), dim=1)
    assert sample_split_distance(a, b, reduce="mean") == pytest.approx(1 - float(cos.mean()), abs=1e-9)
    assert sample_split_distance(a, b) == pytest.approx(float(np.median(1 - cos.numpy())), abs=1e-9)
    assert sample_split_distance(a, a, reduce="mean") == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(InputError, match="reduce"):
        sample_split_distance(a, b, reduce="max")


# -- the diffusion held-out loss and score agreement ----------------------------------------------------------
def loss_compute_steps(model, x0, alpha_bar, seed):
    """loss_compute.py, step by step: for every t, seed the global RNG with seed + t, noise, predict, average."""
    total, count = 0.0, 0
    for t in range(alpha_bar.numel()):
        torch.manual_seed(seed + t)
        noise = torch.randn_like(x0)
        ab = alpha_bar[t].float()
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        losses = ((model(x_t, torch.full((x0.shape[0],), t)) - noise) ** 2).mean(dim=(1, 2, 3))
        total, count = total + float(losses.double().sum()), count + losses.numel()
    return total / count


def test_heldout_loss_is_the_papers_estimator():
    alpha_bar = linear_alpha_bar(50)
    x0 = torch.rand(20, 1, 4, 4) * 2 - 1
    conv = torch.nn.Conv2d(1, 1, 3, padding=1)

    def model(x, t):
        return conv(x) * (1 + t[:, None, None, None].float() / 50)

    with torch.no_grad():
        ours = diffusion_heldout_loss(model, x0, alpha_bar=alpha_bar, seed=7)
        expected = loss_compute_steps(model, x0, alpha_bar, 7)
    assert ours.mean == pytest.approx(expected, rel=1e-6)
    assert ours.timesteps.tolist() == list(range(50)) and ours.per_t.shape == (50,)
    with torch.no_grad():
        again = diffusion_heldout_loss(model, x0, alpha_bar=alpha_bar, seed=7)
    np.testing.assert_array_equal(again.per_t, ours.per_t)  # the noise is fixed per t


def test_heldout_loss_closed_form_and_bands():
    # model ε̂ = x_t: E||x_t - ε||²/d = ᾱ_t E[x0²] + (sqrt(1 - ᾱ_t) - 1)², averaged over t
    alpha_bar = linear_alpha_bar(100)
    x0 = torch.rand(4000, 1, 2, 2) * 2 - 1  # E[x0²] = 1/3
    result = diffusion_heldout_loss(lambda x, t: x, x0, alpha_bar=alpha_bar, timesteps=50, seed=1)
    ab = alpha_bar[result.timesteps].numpy()
    closed = ab * float((x0 ** 2).mean()) + (np.sqrt(1 - ab) - 1) ** 2
    np.testing.assert_allclose(result.per_t, closed, rtol=0.05, atol=0.01)
    assert result.timesteps.size == 50 and result.sem > 0
    bands = loss_bands(result, 100)
    low = (result.timesteps >= 5) & (result.timesteps < 25)
    assert bands["t0.05-0.25"] == pytest.approx(result.per_t[low].mean())
    with pytest.raises(InputError, match="timesteps"):
        diffusion_heldout_loss(lambda x, t: x, x0, alpha_bar=alpha_bar, timesteps=[100])


def test_score_agreement_closed_forms():
    alpha_bar = linear_alpha_bar(100)
    x_train, x_test = torch.rand(30, 1, 4, 4), torch.rand(40, 1, 4, 4)
    sign = torch.ones(1, 1, 4, 4)
    sign[..., :2] = -1

    def a(x, t):
        return x

    same = score_agreement(a, lambda x, t: 2 * x, x_train, x_test, 30, alpha_bar=alpha_bar)
    assert same.train == pytest.approx(1.0) and same.test == pytest.approx(1.0)
    opposite = score_agreement(a, lambda x, t: -x, x_train, x_test, 30, alpha_bar=alpha_bar)
    assert opposite.train == pytest.approx(-1.0)
    # a(x) = x, b(x) = x * sign: cos = Σ x² sign / Σ x², on the same noised images (generator seeded with seed)
    mixed = score_agreement(a, lambda x, t: x * sign, x_train, x_test, 30, alpha_bar=alpha_bar, seed=5)
    noise = torch.randn(x_train.shape, generator=torch.Generator().manual_seed(5))
    ab = float(alpha_bar[30])
    x_t = (ab ** 0.5 * x_train + (1 - ab) ** 0.5 * noise).flatten(1).double()
    expected = ((x_t ** 2 * sign.flatten(1)).sum(1) / (x_t ** 2).sum(1)).mean()
    assert mixed.train == pytest.approx(float(expected), abs=1e-9)
    with pytest.raises(InputError, match="t"):
        score_agreement(a, a, x_train, x_test, 100, alpha_bar=alpha_bar)
