import pytest
"""The PLE reproductions run end to end at toy size and leave their summary, report and runs."""

import json

import numpy as np

from evolens import open_run
from evolens.experiments import ple_fairness, ple_gmm, ple_loops

pytestmark = pytest.mark.slow  # experiments, the demo and the Inception network: make test, not test-fast


def test_ple_loops_writes_runs_and_summary(tmp_path):
    summary = ple_loops.run_experiment(tmp_path, seeds=[0, 1], generations=2, steps=20, families=["gaussian", "gmm"],
                                       progress=False)
    assert set(summary["families"]) == {"gaussian", "gmm"}
    methods = summary["families"]["gaussian"]["methods"]
    assert list(methods) == ["mle", "classical", "mle-tuned", "ple-lam0", "per-sample-lam0", "constant-lam0",
                             "literal-lam0.1", "literal-lam1", "evolens-lam0.1", "evolens-lam1"]
    # every arm carries generation 0's training NLL and its hypernetwork check (None where it has no H)
    first = methods["ple-lam0"]["first_generation"]
    assert len(first["scale_slope"]) == 2 and all(np.isfinite(first["train_nll"]))
    assert methods["mle"]["first_generation"]["reads_input"] == [None, None]
    assert "H reads" in (tmp_path / "report.md").read_text()
    # the paired drift: MLE against itself is exactly 0, and an arm's equals its drift minus MLE's on average
    assert methods["mle"]["drift_minus_mle_ci"][0] == 0.0
    assert methods["classical"]["drift_minus_mle_ci"][0] == pytest.approx(
        methods["classical"]["log_variance_drift_per_generation"] - methods["mle"]["log_variance_drift_per_generation"])
    assert len(methods["mle"]["variance_ratio_mean"]) == 2
    assert json.loads((tmp_path / "summary.json").read_text())["generations"] == 2
    assert "| mle |" in (tmp_path / "report.md").read_text()
    assert len(methods["mle"]["variance_ratio_last_ci"]) == 2
    with open_run(tmp_path / "gmm" / "evolens-lam1-seed0") as run:
        assert run.steps().tolist() == [0, 1] and "param_error/total" in run.scalar_names()
    # the loop variants of the later literature, each with every estimator
    loops = summary["families"]["gaussian"]["loops"]
    assert set(loops) == {"fully-synthetic", "accumulate", "real-fraction-0.5", "temperature-0.8", "warm-start"}
    assert tuple(loops["accumulate"]) == ple_loops.VARIANT_ARMS
    with open_run(tmp_path / "gaussian" / "accumulate" / "mle-seed0") as run:
        assert run.config["mode"] == "accumulate" and run.scalars("train/n")[1].tolist() == [20, 40]
    assert "accumulate loop" in (tmp_path / "report.md").read_text()


def test_ple_loops_resume_reads_finished_loops_back_and_reruns_interrupted_ones(tmp_path):
    kwargs = dict(seeds=[0], generations=3, steps=20, families=["gaussian"], loops=["fully-synthetic"], progress=False)
    first = ple_loops.run_experiment(tmp_path, **kwargs)
    finished = tmp_path / "gaussian" / "mle-seed0" / "runs.sqlite"
    stamp = finished.stat().st_mtime_ns
    # an interrupted loop: its folder holds fewer generations than asked
    interrupted = tmp_path / "gaussian" / "ple-lam0-seed0"
    import shutil

    shutil.rmtree(interrupted)
    from evolens.collapse import Gaussian, PLETrainer
    from evolens.collapse.loops import SelfConsumingLoop

    SelfConsumingLoop(PLETrainer(Gaussian(1), lam=0.0, steps=5), np.zeros((20, 1)) + np.arange(20)[:, None],
                      generations=1, run_dir=interrupted, progress=False,
                      config={"family": "gaussian", "estimator": "ple-lam0", "loop": "fully-synthetic",
                              "steps": 20}).run()
    again = ple_loops.run_experiment(tmp_path, **kwargs)
    assert finished.stat().st_mtime_ns == stamp  # read back, not trained again
    for name, m in first["families"]["gaussian"]["methods"].items():
        m2 = again["families"]["gaussian"]["methods"][name]
        assert m2["variance_ratio_mean"] == m["variance_ratio_mean"], name  # the rerun loop is the same loop
        assert m2["first_generation"] == m["first_generation"], name  # gen 0 refitted with the loop's own seed
    with open_run(interrupted) as run:
        assert run.steps().tolist() == [0, 1, 2]


def test_ple_gmm_grid(tmp_path):
    summary = ple_gmm.run_experiment(tmp_path, seeds=[0, 1], sizes=[20], imbalances=[0.1], steps=20, progress=False,
                                     arm_names=["mle", "classical", "constant-lam0", "literal-lam0.1", "evolens-lam1"])
    cell = summary["cells"][0]
    assert cell["n"] == 20 and summary["arms"] == ["mle", "classical", "constant-lam0", "literal-lam0.1",
                                                   "evolens-lam1"]
    # the constant-input control never reads its data; MLE has no hypernetwork to check
    assert cell["constant-lam0"]["values"]["reads_input"] == [False, False]
    assert cell["mle"]["values"]["scale_slope"] == [None, None] and "H reads" in (tmp_path / "report.md").read_text()
    mean, half = cell["mle"]["rms_error"]
    assert np.isfinite(mean) and half > 0  # a 95% interval over the two seeds
    assert "minority_var_bias" in cell["classical"] and "95%" in (tmp_path / "report.md").read_text()
    x, minority = ple_gmm.sample(1000, 0.1, np.random.default_rng(0))
    assert abs((x[:, 0] > 0).mean() - 0.1) < 0.03 and abs(minority.mean() - 0.1) < 0.03  # minority share as asked


def test_ple_fairness_small(tmp_path):
    images, labels = ple_fairness.imbalanced_set(10, seed=0)
    assert (labels == 3).sum() == 10 * (labels == 6).sum()
    summary = ple_fairness.run_experiment(tmp_path, ratios=[10, 2], seeds=[0], steps=5, n_samples=100, progress=False,
                                          arm_names=["mle", "per-sample-lam0", "literal-lam0.1", "evolens-lam0.1"])
    rows = [r for r in summary["rows"] if r["ratio"] == 10]
    assert [r["estimator"] for r in rows] == ["mle", "per-sample-lam0", "literal-lam0.1", "evolens-lam0.1"]
    # the imbalance sweep runs the sweep arms only; every row says whether its H reads its input
    assert [r["estimator"] for r in summary["rows"] if r["ratio"] == 2] == ["mle", "literal-lam0.1", "evolens-lam0.1"]
    assert rows[0]["reads_input"] is None and all(isinstance(r["reads_input"], bool) for r in rows[1:])
    assert all(np.isfinite(r["train_nll"]) for r in rows)
    assert "classical" not in ple_fairness.arms(steps=5)  # a VAE has no classical correction
    assert all(r["n_minority_train"] == 40 for r in rows)
    with open_run(tmp_path / "ratio10" / "mle-seed0") as run:
        assert run.samples(0).shape == (100, 1, 28, 28) and "fairness/rfair" in run.scalar_names()
        assert set(run.labels(0).tolist()) <= set(range(-1, 10))  # ten digits, -1 where the classifier abstained
    for row in rows:
        assert row["ri"] == 10 and 0 <= row["rejected_share"] <= 1 and 0 <= row["other_digit_share"] <= 1
        assert {"recall_minority", "coverage_majority"} <= set(row)
    assert summary["data"] and "R_I" in (tmp_path / "report.md").read_text()


def test_ple_fairness_resumes_from_its_runs(tmp_path):
    kwargs = dict(ratios=[10], seeds=[0], steps=5, n_samples=60, progress=False, arm_names=["mle", "ple-lam0"])
    first = ple_fairness.run_experiment(tmp_path, **kwargs)
    kept = tmp_path / "ratio10" / "mle-seed0" / "runs.sqlite"
    stamp = kept.stat().st_mtime_ns
    import shutil

    shutil.rmtree(tmp_path / "ratio10" / "ple-lam0-seed0")  # as if interrupted before this fit was written
    again = ple_fairness.run_experiment(tmp_path, **kwargs)
    assert kept.stat().st_mtime_ns == stamp  # read back, not fitted again
    for a, b in zip(first["rows"], again["rows"]):
        assert {k: v for k, v in a.items() if k != "seconds"} == pytest.approx(
            {k: v for k, v in b.items() if k != "seconds"}, nan_ok=True), a["estimator"]


def test_labelling_abstains_on_what_looks_like_no_digit():
    from evolens.encoders import get_encoder
    from evolens.experiments.ple_fairness import ABSTAIN, label_with_abstention

    classifier = get_encoder("digits-cnn")
    real = ple_fairness.mnist("heldout")
    labels = label_with_abstention(classifier, real.images[:200])
    assert np.mean(labels == real.labels[:200]) > 0.9  # real digits: labelled, and right
    noise = np.random.default_rng(0).random((50, 1, 28, 28)).astype(np.float32)  # no digit at all
    shares = [np.mean(label_with_abstention(classifier, noise, min_confidence=c) == ABSTAIN) for c in (0.0, 0.9, 1.01)]
    assert shares[0] == 0.0 and shares[-1] == 1.0 and shares[0] <= shares[1] <= shares[2]
    assert np.mean(label_with_abstention(classifier, real.images[:200]) == ABSTAIN) < 0.1


def test_mean_ci_is_the_student_t_interval():
    from evolens.experiments._arms import format_ci, mean_ci

    mean, half, n = mean_ci([1.0, 3.0])  # sd 1.414, t(0.975, 1) = 12.706: half-width 12.706 × 1.414 / √2
    assert (mean, n) == (2.0, 2) and half == pytest.approx(12.7062, rel=1e-4)
    assert mean_ci([2.0, np.inf, 4.0, 6.0])[:2] == pytest.approx((4.0, 4.303 * 2 / np.sqrt(3)), rel=1e-3)
    assert format_ci([1.0, np.inf], 1) == "1.0 (1 of 2 not finite)" and format_ci([]) == "—"
