import pytest
"""The PLE reproductions run end to end at toy size and leave their summary, report and runs."""

import json

import numpy as np

from evolens import open_run
from evolens.experiments import ple_fairness, ple_gmm, ple_loops

pytestmark = pytest.mark.slow  # experiments, the demo and the Inception network: make test, not test-fast


def test_ple_loops_writes_runs_and_summary(tmp_path):
    summary = ple_loops.run_experiment(tmp_path, seeds=[0], generations=2, steps=20, families=["gaussian", "gmm"],
                                       progress=False)
    assert set(summary["families"]) == {"gaussian", "gmm"}
    methods = summary["families"]["gaussian"]["methods"]
    assert set(methods) == {"mle", "ple-lam0.1", "ple-lam10"}
    assert len(methods["mle"]["variance_ratio_mean"]) == 2
    assert json.loads((tmp_path / "summary.json").read_text())["generations"] == 2
    assert "| mle |" in (tmp_path / "report.md").read_text()
    with open_run(tmp_path / "gmm" / "ple-lam10-seed0") as run:
        assert run.steps().tolist() == [0, 1] and "param_error/total" in run.scalar_names()
    # the loop variants of the later literature, each with every estimator
    loops = summary["families"]["gaussian"]["loops"]
    assert set(loops) == {"fully-synthetic", "accumulate", "real-fraction-0.5", "temperature-0.8", "warm-start"}
    assert set(loops["accumulate"]) == {"mle", "ple-lam0.1", "ple-lam10"}
    with open_run(tmp_path / "gaussian" / "accumulate" / "mle-seed0") as run:
        assert run.config["mode"] == "accumulate" and run.scalars("train/n")[1].tolist() == [20, 40]
    assert "accumulate loop" in (tmp_path / "report.md").read_text()


def test_ple_gmm_grid(tmp_path):
    summary = ple_gmm.run_experiment(tmp_path, seeds=[0], sizes=[20], imbalances=[0.1], steps=20, progress=False)
    cell = summary["cells"][0]
    assert cell["n"] == 20 and np.isfinite(cell["mle"]["rms_error"][0]) and "ple-lam10" in cell
    x = ple_gmm.sample(1000, 0.1, np.random.default_rng(0))
    assert abs((x[:, 0] > 0).mean() - 0.1) < 0.03  # minority share as asked


def test_ple_fairness_small(tmp_path):
    images, labels = ple_fairness.imbalanced_set(10, seed=0)
    assert (labels == 3).sum() == 10 * (labels == 6).sum()
    summary = ple_fairness.run_experiment(tmp_path, ratios=[10], seeds=[0], steps=5, n_samples=100, progress=False)
    rows = summary["rows"]
    assert [r["estimator"] for r in rows] == ["mle", "ple-lam0.1"]
    assert all(r["n_minority_train"] == 40 for r in rows)
    with open_run(tmp_path / "ratio10" / "mle-seed0") as run:
        assert run.samples(0).shape == (100, 1, 28, 28) and "fairness/rfair" in run.scalar_names()
        assert set(run.labels(0).tolist()) <= set(range(-1, 10))  # ten digits, -1 where the classifier abstained
    for row in rows:
        assert row["ri"] == 10 and 0 <= row["rejected_share"] <= 1 and 0 <= row["other_digit_share"] <= 1
        assert {"recall_minority", "coverage_majority"} <= set(row)
    assert summary["data"] and "R_I" in (tmp_path / "report.md").read_text()


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
