"""Self-consuming loops: the textbook variance collapse of MLE, PLE resisting it, runs written per generation."""

import numpy as np
import pytest
from scipy.special import digamma

from evolens import analyses, open_run
from evolens.metrics import nearest_neighbors
from evolens.errors import InputError
from evolens.collapse.loops import SelfConsumingLoop, parameter_error
from evolens.collapse import Gaussian, GaussianMixture, MLETrainer, PLETrainer


def _log_var_drift(n: int) -> float:
    """E[log(σ̂²_MLE/σ²)] per generation for n Gaussian samples: E log(χ²_{n−1}/n) = ψ((n−1)/2) + log(2/n)."""
    return float(digamma((n - 1) / 2) + np.log(2 / n))


def test_mle_loop_shows_the_textbook_collapse():
    n, generations, seeds = 10, 8, 40
    trainer = MLETrainer(Gaussian(1), steps=20, device="cpu")  # moments init = the exact MLE; steps keep it there
    first, last = [], []
    for seed in range(seeds):
        real = np.random.default_rng(seed).normal(0.0, 1.0, size=(n, 1))
        result = SelfConsumingLoop(trainer, real, generations=generations, seed=seed, progress=False).run()
        var = result.series("params/var")
        first.append(var[0] / real.var(ddof=1))  # one generation: E = (n−1)/n against the unbiased estimate
        last.append(np.log(var[-1] / var[0]))
    # (n−1)/n = 0.9; the ratio s²_MLE/s²_unbiased is exactly 0.9 for every data set
    np.testing.assert_allclose(first, 0.9, rtol=2e-3)
    # log-variance drifts by E log(χ²_9/10) = −0.219 per generation: −1.53 over 7 refits, sd 0.49·√7/√40 = 0.21
    expected = (generations - 1) * _log_var_drift(n)
    assert np.mean(last) == pytest.approx(expected, abs=0.6)
    assert np.mean(last) < -0.8  # it shrinks


@pytest.mark.slow
def test_ple_variance_shrinks_less_than_mle():
    """evolens's penalty at large λ seeks the unbiased variance n/(n−1) × the MLE's; each refit multiplies the
    variance by that ratio × a χ² factor common to both methods, so PLE's log-variance drifts less than MLE's
    (−0.219 per generation at n = 10, from the closed form) by log of the ratio."""
    n, seeds = 10, 6
    ple = PLETrainer(Gaussian(1), lam=10.0, steps=600, device="cpu")
    ratios = np.asarray([ple.fit(real, seed=seed).parameters()["var"] / real.var()  # real.var() is the MLE
                         for seed, real in ((s, np.random.default_rng(200 + s).normal(0.0, 1.0, size=(n, 1)))
                                            for s in range(seeds))])
    se = ratios.std(ddof=1) / np.sqrt(seeds)
    assert ratios.mean() > 1.0 + 2 * se  # the penalty widens the MLE variance, beyond its seed-to-seed noise
    assert abs(ratios.mean() - n / (n - 1)) < 3 * se + 0.05  # ... toward the unbiased n/(n−1) = 1.111


def test_loop_modes_and_run_store(tmp_path):
    rng = np.random.default_rng(0)
    real = np.concatenate([rng.normal(-2, 0.5, (60, 2)), rng.normal(2, 0.5, (40, 2))]).astype(np.float32)
    truth = {"weight/0": 0.6, "weight/1": 0.4}
    trainer = MLETrainer(GaussianMixture(2, 2), steps=100, lr=0.02, device="cpu")
    loop = SelfConsumingLoop(trainer, real, generations=3, mode="synthetic-augmented", true_params=truth,
                             run_dir=tmp_path / "run", name="gmm loop", progress=False)
    result = loop.run()
    assert result.generations == 3
    assert result.series("train/n").tolist() == [100, 200, 200]
    for name in ("quality/fid", "quality/precision", "quality/recall", "diversity/std", "param_error/total"):
        assert np.isfinite(result.series(name)).all(), name
    with open_run(tmp_path / "run") as run:
        assert run.steps().tolist() == [0, 1, 2]
        assert run.samples(2).shape == (100, 2)
        steps, values = run.scalars("quality/fid")
        np.testing.assert_allclose(values, result.series("quality/fid"))
        assert run.reference_names() == ["train"] and run.config["mode"] == "synthetic-augmented"
        assert len(run.events("generation")) == 3
        assert "quality/fid@identity~train" in run.scalar_names()  # the loop's metrics name their feature space
        assert run.probe_ids(1).tolist()[:2] == ["sample:0", "sample:1"]  # the writer's invariant, not the Monitor's
    # the records read back from the run are the records the loop returned
    from evolens.collapse.loops import LoopResult

    back = LoopResult.from_run(tmp_path / "run")
    assert back.generations == 3 and back.mode == "synthetic-augmented" and back.first_fit is None
    for name in ("quality/fid", "param_error/total", "train/n", "params/weight/0"):
        np.testing.assert_allclose(back.series(name), result.series(name), rtol=1e-12, err_msg=name)
    # A loop run is a run like any other: it can be projected and proximity-analysed.
    found = analyses.proximity(tmp_path / "run", encoder="identity")
    assert sorted(found.values) == [0, 1, 2]
    copy_rate = found.series("proximity/copy_rate")[1]
    assert ((copy_rate >= 0) & (copy_rate <= 1)).all()
    with open_run(tmp_path / "run") as run:
        expected = np.median(nearest_neighbors(run.samples(2), run.reference("train").images, 1)[0])
    assert found.series("proximity/nn_distance_train")[1][2] == pytest.approx(expected, rel=1e-6)
    projection = analyses.projection(tmp_path / "run", encoder="identity", perplexity=10, n_iter=50, progress=False)
    assert projection.steps == [0, 1, 2] and projection.coords[1].shape == (100, 2)
    assert projection.reference_coords.shape == (100, 2)
    fresh = SelfConsumingLoop(trainer, real, generations=2, mode="fresh-data", progress=False,
                              real_sampler=lambda k, r: r.normal(0, 1, (k, 2))).run()
    assert fresh.series("train/n").tolist() == [100, 200]


def test_loop_rejects_bad_arguments():
    trainer = MLETrainer(Gaussian(1), device="cpu")
    with pytest.raises(InputError, match="mode"):
        SelfConsumingLoop(trainer, np.zeros((5, 1)), mode="recycled")
    with pytest.raises(InputError, match="real_sampler"):
        SelfConsumingLoop(trainer, np.zeros((5, 1)), mode="fresh-data")
    with pytest.raises(InputError, match="NaN"):
        SelfConsumingLoop(trainer, np.array([[0.0], [np.nan]]))
    with pytest.raises(InputError, match="trainer"):
        SelfConsumingLoop(object(), np.zeros((5, 1)))
    with pytest.raises(InputError, match="true_params"):
        parameter_error({"mean": 0.0}, {"var": 1.0})
    assert parameter_error({"mean": 1.0, "var": 2.0}, {"mean": 0.0, "var": 1.0})["total"] == pytest.approx(1.0)


def test_accumulate_real_fraction_temperature_and_warm_start():
    real = np.random.default_rng(0).normal(0.0, 1.0, size=(40, 1))
    trainer = MLETrainer(Gaussian(1), steps=5, device="cpu")

    def run(**kwargs):
        return SelfConsumingLoop(trainer, real, generations=4, seed=1, progress=False, **kwargs).run()

    # accumulate (Gerstgrasser et al. 2024): real + every earlier generation's samples
    assert run(mode="accumulate").series("train/n").tolist() == [40, 80, 120, 160]
    assert run(mode="synthetic-augmented").series("train/n").tolist() == [40, 80, 80, 80]
    # a real-data fraction (Bertrand et al. 2024): the real set's size, a quarter of it real
    mixed = SelfConsumingLoop(trainer, real, generations=3, seed=1, progress=False, real_fraction=0.25)
    rng = np.random.default_rng(0)
    data = mixed._training_set(1, [np.full((40, 1), 99.0, dtype=np.float32)], rng)
    assert data.shape == (40, 1) and int((data == 99.0).sum()) == 30
    assert set(data[data != 99.0].tolist()) <= set(real.astype(np.float32).ravel().tolist())
    # temperature: samples pulled toward their mean, their spread scaled exactly by it
    plain, biased = run(), run(temperature=0.5)
    assert biased.series("diversity/std")[0] == pytest.approx(0.5 * plain.series("diversity/std")[0], rel=1e-5)
    assert biased.series("params/var")[-1] < plain.series("params/var")[-1]
    # warm start: with (almost) no optimisation, a warm-started generation keeps the previous weights, a fresh one
    # re-initialises from its own data's moments
    frozen = MLETrainer(Gaussian(1), steps=1, lr=1e-12, device="cpu")
    warm = SelfConsumingLoop(frozen, real, generations=3, seed=1, progress=False, warm_start=True).run()
    cold = SelfConsumingLoop(frozen, real, generations=3, seed=1, progress=False).run()
    assert warm.series("params/var")[2] == pytest.approx(warm.series("params/var")[0], rel=1e-6)
    assert cold.series("params/var")[2] != pytest.approx(cold.series("params/var")[0], rel=1e-3)
    for bad in (dict(real_fraction=1.5), dict(real_fraction=0.5, mode="accumulate"), dict(temperature=0.0)):
        with pytest.raises(InputError, match="real_fraction|temperature"):
            SelfConsumingLoop(trainer, real, progress=False, **bad)
