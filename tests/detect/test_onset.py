import numpy as np
import pytest

from evolens import InputError
from evolens.detect import BiasedGeneralizationOnset


def curves(noise=0.0, seed=0):
    """Distance falls to a minimum at step 40 then rises; test loss falls until step 70 then rises."""
    rng = np.random.default_rng(seed)
    steps = np.arange(0, 101, 5)
    distance = 0.3 + 0.002 * (steps - 40.0) ** 2 / 10 + noise * rng.standard_normal(steps.size)
    loss = 1.0 + 0.0005 * (steps - 70.0) ** 2 / 10
    return steps, distance, loss


def test_finds_the_planted_order():
    steps, distance, loss = curves()
    report = BiasedGeneralizationOnset(margin=0.05, patience=2).report(steps, distance, steps, loss)
    assert report.tau_cos == 40 and report.tau_loss == 70 and report.biased_phase == (40, 70)
    # 5% above the minimum 0.3 is 0.315: first reached at step 50 (0.32), held for a second snapshot at 55.
    assert report.onset_step == 55 and report.onset_step < report.tau_loss


def test_fires_once_when_streaming():
    steps, distance, loss = curves()
    detector = BiasedGeneralizationOnset(margin=0.05, patience=2)
    fired = [detector.update(s, d, l) for s, d, l in zip(steps, distance, loss)]
    assert [f["step"] for f in fired if f] == [55]


def test_does_not_fire_on_noise_around_a_flat_curve():
    rng = np.random.default_rng(1)
    steps = np.arange(50)
    distance = 0.5 + 0.005 * rng.standard_normal(50)  # ±1% noise, below the 5% margin
    loss = np.linspace(2.0, 1.0, 50)
    assert BiasedGeneralizationOnset(margin=0.05, patience=2).report(steps, distance, steps, loss).onset_step is None


def test_does_not_fire_once_the_test_loss_has_turned():
    steps, distance, _ = curves()
    loss = 1.0 + 0.0005 * (steps - 30.0) ** 2 / 10  # test loss minimum before the distance turns
    report = BiasedGeneralizationOnset().report(steps, distance, steps, loss)
    assert report.onset_step is None and report.biased_phase is None and report.tau_loss == 30


def test_errors():
    with pytest.raises(InputError, match="margin"):
        BiasedGeneralizationOnset(margin=0)
    with pytest.raises(InputError, match="patience"):
        BiasedGeneralizationOnset(patience=0)
    with pytest.raises(InputError, match=r"distance: expected shape \(3,\)"):
        BiasedGeneralizationOnset().report([1, 2, 3], [0.1, 0.2])
