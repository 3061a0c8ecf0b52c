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


@pytest.mark.slow
def test_the_diagnostic_on_a_trained_ple_hypernetwork():
    x, labels = two_classes()
    fit = PLETrainer(Gaussian(1), lam=0.1, steps=300, device="cpu", progress=False).fit(x, seed=0)
    found = hypernetwork_sensitivity(fit.hypernetwork, x, labels, model=Gaussian(1), estimate=moments)
    # reported, not judged: a number the PLE experiments print beside their results
    assert np.isfinite(found.scale_slope) and len(found.estimated_scales) == 5
    assert set(found.per_class) == {0, 1}


def test_bad_input():
    with pytest.raises(InputError, match="hypernetwork"):
        hypernetwork_sensitivity("H", np.zeros((4, 1)))
    with pytest.raises(InputError, match="labels"):
        hypernetwork_sensitivity(moments, np.random.rand(4, 1), labels=[0, 1])
