"""PLE estimator: hypernetwork shapes, λ = 0 equals MLE, zero penalty on real data, GMM/VAE fits."""

import numpy as np
import pytest
import torch
from torch import nn

from evolens.errors import InputError
from evolens.collapse import (
    VAE,
    BiasCorrectedMLETrainer,
    TunedMLETrainer,
    hypernetwork_sensitivity,
    mean_nll,
    plain_estimator,
    Gaussian,
    GaussianMixture,
    Hypernetwork,
    MLETrainer,
    PLETrainer,
    call_with,
    parameter_shapes,
    ple_penalty,
)


class _Odd(nn.Module):
    """An arbitrary small module: conv, batch-norm buffers, a frozen parameter, a bare parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.norm = nn.BatchNorm2d(3)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
        self.scale = nn.Parameter(torch.ones(2, 1, 7))
        self.frozen = nn.Parameter(torch.zeros(3), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.conv(x))) * self.scale.sum()


def test_hypernetwork_outputs_every_trainable_parameter_with_its_shape():
    module = _Odd()
    hyper = Hypernetwork.for_model(module, in_features=36, width=16)
    out = hyper(torch.randn(11, 1, 6, 6))
    expected = {name: p.shape for name, p in module.named_parameters() if p.requires_grad}
    assert {k: v.shape for k, v in out.items()} == expected
    assert "frozen" not in out
    # starts at the module's own parameters (small read-out weights), and runs through functional_call
    for name, p in module.named_parameters():
        if name in out:
            np.testing.assert_allclose(out[name].detach().numpy(), p.detach().numpy(), atol=0.05)
    y = call_with(module.eval(), out, "forward", torch.randn(4, 1, 6, 6))
    assert y.shape == (4, 5)
    y.sum().backward()  # gradients reach the hypernetwork
    assert hyper.readouts[0].weight.grad is not None
    batched = hyper.forward_sets(torch.randn(3, 11, 1, 6, 6))
    assert batched["scale"].shape == (3, 2, 1, 7)


def test_hypernetwork_is_order_invariant_and_rejects_bad_sets():
    hyper = Hypernetwork.for_model(Gaussian(3))
    x = torch.randn(20, 3)
    a, b = hyper(x), hyper(x[torch.randperm(20)])
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)
    with pytest.raises(InputError, match="features per sample"):
        hyper(torch.randn(5, 4))
    with pytest.raises(InputError, match="non-empty"):
        hyper(torch.zeros(0, 3))
    with pytest.raises(InputError, match="in_features"):
        Hypernetwork.for_model(nn.Conv2d(1, 1, 3))
    with pytest.raises(InputError, match="no trainable"):
        parameter_shapes(nn.ReLU())


def test_pooling_in_chunks_equals_pooling_at_once():
    hyper = Hypernetwork.for_model(Gaussian(2), chunk_size=7)
    whole = Hypernetwork.for_model(Gaussian(2), chunk_size=10_000)
    whole.load_state_dict(hyper.state_dict())
    x = torch.randn(50, 2)
    torch.testing.assert_close(hyper.pool(x), whole.pool(x), atol=1e-6, rtol=1e-5)


def test_penalty_is_zero_when_synthetic_data_equal_real_data():
    hyper = Hypernetwork.for_model(GaussianMixture(3, 2))
    x = torch.randn(40, 2)
    assert float(ple_penalty(hyper, x, x).detach()) == 0.0
    assert float(ple_penalty(hyper, x, x + 1.0).detach()) > 0.0
    # and in training: a sampler that hands back the real batch gives a zero penalty at every step
    trainer = PLETrainer(Gaussian(2), lam=1.0, steps=40, warmup=0.25, device="cpu",
                         sampler=lambda model, params, n, gen: x.repeat(n // x.shape[0], 1))
    result = trainer.fit(x)
    # (the batched estimate of K identical sets differs from the single-set one by float rounding only)
    assert max(result.history["penalty"]) < 1e-12 and len(result.history["penalty"]) == 40


def test_mle_gaussian_matches_the_closed_form_biased_variance():
    x = np.random.default_rng(0).normal(1.5, 2.0, size=(25, 1))
    fit = MLETrainer(Gaussian(1), init_from_data=False, steps=2000, lr=0.05, device="cpu").fit(x)
    # the MLE is the sample mean and the (n−1)/n-biased variance, np.var(ddof=0)
    assert fit.parameters()["mean"] == pytest.approx(x.mean(), abs=1e-3)
    assert fit.parameters()["var"] == pytest.approx(x.var(), rel=1e-3)
    assert abs(fit.parameters()["var"] - x.var(ddof=1)) > 0.05


def test_ple_with_lambda_zero_equals_mle_up_to_optimisation_noise():
    for seed in range(3):
        x = np.random.default_rng(seed).normal(0.5, 1.5, size=(30, 1))
        mle = MLETrainer(Gaussian(1), device="cpu").fit(x).parameters()
        ple = PLETrainer(Gaussian(1), lam=0.0, device="cpu", seed=seed).fit(x)  # trained across sets, 1000 steps
        assert ple.parameters()["mean"] == pytest.approx(mle["mean"], abs=0.05 * 1.5)
        assert ple.parameters()["var"] == pytest.approx(mle["var"], rel=0.06)
        assert max(ple.history["penalty"]) == 0.0


def test_bessel_correction_is_the_unbiased_sample_variance():
    x = np.random.default_rng(1).normal(0.0, 2.0, size=(12, 1))
    fit = BiasCorrectedMLETrainer(Gaussian(1), correction="bessel", device="cpu").fit(x)
    assert fit.parameters()["var"] == pytest.approx(x.var(ddof=1), rel=1e-4)  # closed form n/(n−1) × MLE
    assert fit.parameters()["mean"] == pytest.approx(x.mean(), abs=1e-5) and fit.method == "mle-bessel"
    with pytest.raises(InputError, match="bessel"):
        BiasCorrectedMLETrainer(GaussianMixture(2, 1), correction="bessel", device="cpu").fit(x)
    with pytest.raises(InputError, match="correction"):
        BiasCorrectedMLETrainer(Gaussian(1), correction="jackknife")
    with pytest.raises(InputError, match="replicates"):
        BiasCorrectedMLETrainer(Gaussian(1), replicates=1)


def test_parametric_bootstrap_matches_its_closed_form_on_a_gaussian():
    """On a Gaussian the refits' log σ* = log σ̂ + ½ log(χ²_{n−1}/n), so the bootstrap-corrected log-variance is
    log σ̂² − (ψ((n−1)/2) + log(2/n)) up to Monte-Carlo error (B = 200: sd ≈ 0.47/√200 ≈ 0.033)."""
    from scipy.special import digamma

    n = 10
    x = np.random.default_rng(3).normal(0.0, 1.0, size=(n, 1))
    fit = BiasCorrectedMLETrainer(Gaussian(1), correction="parametric-bootstrap", replicates=200, steps=50,
                                  refit_steps=300, lr=0.05, device="cpu").fit(x)
    expected = np.log(x.var()) - (digamma((n - 1) / 2) + np.log(2 / n))
    assert np.log(fit.parameters()["var"]) == pytest.approx(expected, abs=0.1)
    assert fit.parameters()["var"] > x.var() * 1.1  # the correction widens it (MLE is biased low)
    assert fit.parameters()["mean"] == pytest.approx(x.mean(), abs=0.1)


def test_literal_penalty_is_the_papers_form_with_h_live_on_both_sides():
    x = np.random.default_rng(0).normal(0.0, 1.0, size=(20, 1))
    trainer = PLETrainer(Gaussian(1), lam=1.0, penalty="literal", steps=30, device="cpu")
    fit = trainer.fit(x)
    assert fit.method == "ple-literal" and "nll_bootstrap" in fit.history  # H trained across sets, every form
    assert fit.history["penalty"][0] > 0  # penalised from step 0: no warm-up, one live synthetic set
    # the same loss by hand at H's starting point: NLL(X; H(X)) + λ‖H(X) − H(X̃)‖², X̃ ~ p(·; H(X))
    torch.manual_seed(0)
    hyper = Hypernetwork.for_model(Gaussian(1), 1)
    real = torch.as_tensor(x, dtype=torch.float32)
    synthetic = call_with(Gaussian(1), hyper(real), "rsample", 20, generator=torch.Generator().manual_seed(1))
    by_hand = ple_penalty(hyper, real, synthetic)
    by_hand.backward()
    assert all(p.grad is not None for p in hyper.encoder.parameters())  # gradients reach H through both sides
    with pytest.raises(InputError, match="penalty"):
        PLETrainer(Gaussian(1), penalty="naive")


def _shifted_sampler(model, params, n, generator):
    """The model's differentiable draw, moved far from the data so that any H gives the sets different weights."""
    return call_with(model, params, "rsample", n, generator=generator) * 2.0 + 1.0


@pytest.mark.parametrize("penalty", ["literal", "frozen"], ids=["literal", "frozen"])
def test_the_penalty_is_in_the_loss_for_every_form(penalty):
    """The logged loss is the NLL terms plus λ × the logged penalty at every step: the literal form once computed
    its penalty and never added it, so every literal fit equalled λ = 0 to the last bit."""
    x = np.random.default_rng(0).normal(0.0, 1.0, size=(20, 1))
    lam = 3.0
    fit = PLETrainer(Gaussian(1), lam=lam, penalty=penalty, steps=40, warmup=0.25, init_scale=1.0,
                     sampler=_shifted_sampler, device="cpu").fit(x, seed=0)
    history = {k: np.asarray(v) for k, v in fit.history.items()}
    nll = history["nll"] + history.get("nll_bootstrap", 0.0)
    penalised = history["penalty"] > 0
    assert penalised.sum() >= 30  # penalised after the warm-up (frozen) or from step 0 (literal)
    np.testing.assert_allclose(history["loss"], nll + lam * history["penalty"], rtol=1e-5, atol=1e-7)
    # the penalty weighs enough at some steps that a loss without it would fail the comparison above
    assert np.any(lam * history["penalty"] > 1e-4 * np.abs(history["loss"]))  # 10 × the rtol above


def test_logged_literal_penalty_equals_the_penalty_by_hand_from_the_same_sets():
    x = np.random.default_rng(1).normal(0.0, 1.0, size=(20, 1))
    drawn = []

    def recording_sampler(model, params, n, generator):
        synthetic = _shifted_sampler(model, params, n, generator)
        drawn.append(synthetic.detach().clone())
        return synthetic

    # one step at a negligible learning rate: the returned H is the H that computed the logged penalty
    fit = PLETrainer(Gaussian(1), lam=1.0, penalty="literal", steps=1, lr=1e-12, init_scale=1.0,
                     sampler=recording_sampler, device="cpu").fit(x, seed=0)
    real = torch.as_tensor(x, dtype=torch.float32)
    by_hand = float(ple_penalty(fit.hypernetwork, real, drawn[0]).detach())
    assert by_hand > 1e-4
    assert fit.history["penalty"][0] == pytest.approx(by_hand, rel=1e-4)


def test_gmm_mle_agrees_with_scikit_learn():
    from sklearn.mixture import GaussianMixture as SkGMM

    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal([-3, 0], 0.5, (150, 2)), rng.normal([2, 1], 1.0, (50, 2))]).astype(np.float32)
    fit = MLETrainer(GaussianMixture(2, 2), steps=800, lr=0.02, device="cpu").fit(x)
    with torch.no_grad():
        ours = float(fit.model.nll(torch.as_tensor(x)).mean())
    sk = SkGMM(2, covariance_type="diag", random_state=0, tol=1e-8, max_iter=1000).fit(x)
    assert ours == pytest.approx(-sk.score(x), abs=5e-3)
    weights = sorted(fit.model.weights().detach().numpy())
    np.testing.assert_allclose(weights, sorted(sk.weights_), atol=5e-3)


def test_gmm_rsample_draws_from_the_mixture_and_is_differentiable():
    gmm = GaussianMixture(2, 1)
    with torch.no_grad():
        gmm.logits.copy_(torch.log(torch.tensor([0.8, 0.2])))
        gmm.means.copy_(torch.tensor([[-5.0], [5.0]]))
        gmm.log_stds.fill_(np.log(0.1))
    x = gmm.rsample(20_000, generator=torch.Generator().manual_seed(0))
    share = float((x > 0).float().mean())
    assert share == pytest.approx(0.2, abs=0.01)  # binomial sd 0.003
    x.sum().backward()
    assert gmm.logits.grad is not None and gmm.logits.grad.abs().sum() > 0  # straight-through Gumbel-softmax


def test_vae_ple_trains_on_images_and_samples_images():
    rng = np.random.default_rng(0)
    images = (rng.random((64, 1, 8, 8)) > 0.5).astype(np.float32)
    trainer = PLETrainer(VAE((1, 8, 8), latent_dim=2, hidden=16), lam=0.1, steps=30, batch_size=16,
                         synthetic_sets=2, device="cpu")
    fit = trainer.fit(images)
    assert fit.sample(5).shape == (5, 1, 8, 8)
    assert np.isfinite(fit.history["loss"]).all() and max(fit.history["penalty"]) > 0
    assert fit.history["nll"][-1] < fit.history["nll"][0]


def test_trainers_reject_bad_input():
    with pytest.raises(InputError, match="lam"):
        PLETrainer(Gaussian(1), lam=-1)
    with pytest.raises(InputError, match="steps"):
        MLETrainer(Gaussian(1), steps=0)
    with pytest.raises(InputError, match="NaN"):
        MLETrainer(Gaussian(1), device="cpu").fit(np.array([[1.0], [np.nan], [2.0]]))
    with pytest.raises(InputError, match="at least 2"):
        MLETrainer(Gaussian(1), device="cpu").fit(np.array([[1.0]]))
    with pytest.raises(InputError, match="features per sample"):
        MLETrainer(Gaussian(2), device="cpu").fit(np.zeros((5, 3)))


def test_literal_penalty_changes_the_fit_once_h_reads_its_input():
    """The regression the literal bug hid: λ = 10 and λ = 0 gave the same variance to the last bit."""
    x = np.random.default_rng(0).standard_normal((20, 1))
    free = PLETrainer(Gaussian(1), lam=0.0, steps=500, device="cpu").fit(x, seed=0)
    penalised = PLETrainer(Gaussian(1), lam=10.0, penalty="literal", steps=500, device="cpu").fit(x, seed=0)
    assert hypernetwork_sensitivity(penalised.hypernetwork, x, model=Gaussian(1)).scale_slope >= 0.5
    assert abs(penalised.parameters()["var"] - free.parameters()["var"]) > 0.01
    assert max(penalised.history["penalty"]) > 0 and max(free.history["penalty"]) == 0


def test_default_hypernetwork_estimates_the_scale_and_the_classes_of_its_data():
    x = np.random.default_rng(0).standard_normal((512, 1))
    fit = PLETrainer(Gaussian(1), lam=0.0, device="cpu").fit(x)
    found = hypernetwork_sensitivity(fit.hypernetwork, x, model=Gaussian(1))
    assert found.scale_slope >= 0.5 and found.reads_input  # 1 = reads the scale exactly; 0.96 measured
    # two classes: H's parameters move on each class's subset about as far as the moments do
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(300, int), np.ones(212, int)]
    two = np.where(labels[:, None] == 0, rng.normal(-1, 0.5, (512, 1)), rng.normal(1.5, 1.0, (512, 1)))
    fit = PLETrainer(Gaussian(1), lam=0.0, device="cpu").fit(two)
    found = hypernetwork_sensitivity(fit.hypernetwork, two, labels, model=Gaussian(1),
                                     estimate=plain_estimator(Gaussian(1)))
    assert 0.5 <= found.class_share <= 1.5, found  # 0.85 measured
    # without training across sets, H fitted to one set ignores its input: the state the old results had
    blind = PLETrainer(Gaussian(1), lam=0.0, across_sets=False, device="cpu").fit(x)
    assert abs(hypernetwork_sensitivity(blind.hypernetwork, x, model=Gaussian(1)).scale_slope) < 0.05


def test_constant_input_arm_is_a_pure_reparameterisation():
    x = np.random.default_rng(2).normal(1.0, 2.0, (64, 1))
    fit = PLETrainer(Gaussian(1), lam=0.0, input="constant", steps=300, device="cpu").fit(x)
    hyper = fit.hypernetwork
    with torch.no_grad():
        a, b = hyper(torch.randn(64, 1)), hyper(torch.randn(64, 1) * 5 + 3)
    # H never saw the data and was trained on one fixed set: its answer hardly depends on what it is fed ...
    assert abs(hypernetwork_sensitivity(hyper, x, model=Gaussian(1)).scale_slope) < 0.05
    assert all(float((a[k] - b[k]).abs().max()) < 0.05 for k in a)
    # ... and yet the model it parameterises fits the data (mean 1, var 4 up to the sample)
    assert fit.parameters()["mean"] == pytest.approx(x.mean(), abs=0.1)
    assert fit.parameters()["var"] == pytest.approx(x.var(), rel=0.1)
    with pytest.raises(InputError, match="input"):
        PLETrainer(Gaussian(1), lam=0.1, input="constant")
    with pytest.raises(InputError, match="input"):
        PLETrainer(Gaussian(1), input="noise")


def test_per_sample_hypernetwork_is_the_mean_of_per_sample_outputs():
    hyper = Hypernetwork.for_model(GaussianMixture(2, 2), architecture="per-sample", init_scale=1.0)
    x = torch.randn(9, 2)
    whole = hyper(x)
    singles = [hyper(x[i:i + 1]) for i in range(9)]
    for name in whole:
        torch.testing.assert_close(whole[name], torch.stack([s[name] for s in singles]).mean(0), atol=1e-6, rtol=1e-5)
    # DeepSets has a set MLP after the pooling: not an average of per-sample outputs
    deep = Hypernetwork.for_model(GaussianMixture(2, 2), init_scale=1.0)
    singles = [deep(x[i:i + 1]) for i in range(9)]
    assert any(float((deep(x)[k] - torch.stack([s[k] for s in singles]).mean(0)).abs().max()) > 1e-4 for k in whole)
    with pytest.raises(InputError, match="architecture"):
        Hypernetwork.for_model(Gaussian(1), architecture="transformer")
    with pytest.raises(InputError, match="hypernetwork"):
        PLETrainer(Gaussian(1), hypernetwork="transformer")


def test_tuned_mle_keeps_the_learning_rate_with_the_lowest_nll():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal([-3, 0], 0.5, (60, 2)), rng.normal([2, 1], 1.0, (20, 2))]).astype(np.float32)
    lrs = (1e-4, 3e-3, 3e-2)
    tuned = TunedMLETrainer(GaussianMixture(2, 2), lrs=lrs, steps=150, device="cpu").fit(x, seed=0)
    each = [mean_nll(MLETrainer(GaussianMixture(2, 2), lr=lr, steps=150, device="cpu").fit(x, seed=0).model, x)
            for lr in lrs]
    assert tuned.history["lr"] == [lrs[int(np.argmin(each))]] and tuned.method == "mle-tuned"
    assert mean_nll(tuned.model, x) == pytest.approx(min(each), abs=1e-5)
    with pytest.raises(InputError, match="lrs"):
        TunedMLETrainer(Gaussian(1), lrs=())


def test_mean_nll_is_the_closed_form_gaussian_likelihood():
    from scipy import stats

    x = np.random.default_rng(4).normal(0.3, 1.7, (50, 1))
    model = Gaussian(1)
    model.init_from_data(torch.as_tensor(x, dtype=torch.float32))
    expected = -stats.norm(x.mean(), x.std()).logpdf(x).mean()
    assert mean_nll(model, x) == pytest.approx(expected, rel=1e-5)
