"""hypernetwork_sensitivity: the reviewer's class-subset test and the log σ̂ / log σ slope tell an estimator that
reads its data from one that returns the same parameters whatever it is given."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evolens import InputError
from evolens.collapse import Gaussian, Hypernetwork, PLETrainer
from evolens.collapse.diagnostics import hypernetwork_sensitivity


def moments(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The Gaussian MLE in the model's parameter names: an estimator that reads its input exactly."""
    return {"mean": x.mean(0), "log_std": torch.log(x.std(0, unbiased=False))}


def two_classes(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(-2, 1, (200, 1)), rng.normal(3, 0.5, (100, 1))]).astype(np.float32)
    return x, np.repeat([0, 1], [200, 100])


def test_an_estimator_that_reads_its_input_has_slope_one_and_moves_with_the_class():
    x, labels = two_classes()
    found = hypernetwork_sensitivity(moments, x, labels, model=Gaussian(1), estimate=moments)
    assert found.scale_slope == pytest.approx(1.0, abs=1e-6)  # σ̂ = the sample std of σ·z: exactly ∝ σ
    assert found.per_class == found.reference_change and min(found.per_class.values()) > 0.3


def test_a_collapsed_hypernetwork_is_flagged():
    collapsed = Hypernetwork.for_model(Gaussian(1), in_features=1)
    with torch.no_grad():
        for readout in collapsed.readouts:  # "weights ≈ 0, biases ≈ θ*"
            readout.weight.zero_()
    x, labels = two_classes()
    found = hypernetwork_sensitivity(collapsed, x, labels, model=Gaussian(1), estimate=moments)
    assert found.scale_slope == pytest.approx(0.0, abs=1e-9)
    assert max(found.per_class.values()) < 1e-9 < min(found.reference_change.values())


def test_reads_input_is_the_slope_verdict_or_the_class_share():
    x, labels = two_classes()
    reading = hypernetwork_sensitivity(moments, x, labels, model=Gaussian(1), estimate=moments)
    assert reading.reads_input is True and reading.class_share == pytest.approx(1.0)
    collapsed = Hypernetwork.for_model(Gaussian(1), in_features=1)
    with torch.no_grad():
        for readout in collapsed.readouts:
            readout.weight.zero_()
    found = hypernetwork_sensitivity(collapsed, x, labels, model=Gaussian(1), estimate=moments)
    assert found.reads_input is False
    # without a Gaussian model the class share decides; with neither, nothing can be said
    assert hypernetwork_sensitivity(moments, x, labels, estimate=moments).reads_input is True
    assert hypernetwork_sensitivity(collapsed, x, labels, estimate=moments).reads_input is False
    assert hypernetwork_sensitivity(moments, x).reads_input is None


def test_scale_slope_of_a_mixture_estimator_on_the_scaled_data():
    """For a model other than a Gaussian, the slope is measured on the data scaled about its mean: a plain
    estimator whose variances scale with σ² (k-means spreads on scaled data) gives slope 1."""
    from evolens.collapse import GaussianMixture, plain_estimator

    x, labels = two_classes()
    found = hypernetwork_sensitivity(plain_estimator(GaussianMixture(2, 1)), x, labels, model=GaussianMixture(2, 1),
                                     estimate=plain_estimator(GaussianMixture(2, 1)))
    assert found.scale_slope == pytest.approx(1.0, abs=1e-3) and found.reads_input
    collapsed = Hypernetwork.for_model(GaussianMixture(2, 1))
    with torch.no_grad():
        for readout in collapsed.readouts:
            readout.weight.zero_()
    assert hypernetwork_sensitivity(collapsed, x, model=GaussianMixture(2, 1)).scale_slope == pytest.approx(0, abs=1e-9)


@pytest.mark.slow
def test_the_diagnostic_on_a_trained_ple_hypernetwork():
    x, labels = two_classes()
    fit = PLETrainer(Gaussian(1), lam=0.1, device="cpu", progress=False).fit(x, seed=0)
    found = hypernetwork_sensitivity(fit.hypernetwork, x, labels, model=Gaussian(1), estimate=moments)
    # trained across sets, H reads the scale of its data and moves with the classes
    assert found.scale_slope > 0.5 and len(found.estimated_scales) == 5 and found.reads_input
    assert set(found.per_class) == {0, 1} and found.class_share > 0.3


def test_bad_input():
    with pytest.raises(InputError, match="hypernetwork"):
        hypernetwork_sensitivity("H", np.zeros((4, 1)))
    with pytest.raises(InputError, match="labels"):
        hypernetwork_sensitivity(moments, np.random.rand(4, 1), labels=[0, 1])
