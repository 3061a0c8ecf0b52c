import pytest
import json

import evolens
from evolens.cli import main
from evolens.experiments.attribute_bias import AFFECTED, thicken
from evolens.experiments.models import Translator

pytestmark = pytest.mark.slow  # experiments, the demo and the Inception network: make test, not test-fast


def test_thicken_is_a_dilation():
    import torch

    image = torch.zeros(1, 1, 5, 5)
    image[0, 0, 2, 2] = 1.0
    assert thicken(image)[0, 0].sum() == 9 and Translator()(torch.rand(2, 1, 28, 28)).shape == (2, 1, 28, 28)


def test_tiny_experiment_pauses_resumes_and_reports(tmp_path, capsys):
    # A threshold of 1.01 flags at the first snapshot after warm-up, so the pause/resume path always runs.
    assert main(["experiment", "attribute-bias", "--out", str(tmp_path), "--seeds", "0", "--steps", "40",
                 "--every", "10", "--threshold", "1.01", "--quiet"]) == 0
    (folder,) = list(tmp_path.iterdir())
    results = json.loads((folder / "results.json").read_text())
    arms = {a["arm"]: a for a in results["arms"]}
    assert arms["intervention"]["flagged_step"] == 20 and arms["control"]["flagged_step"] == 20
    assert str(AFFECTED) in arms["intervention"]["fid_after"]
    run = evolens.open_run(arms["intervention"]["run"])
    kinds = [e.kind for e in run.events()]
    assert "pause" in kinds and "intervention" in kinds and "resume" in kinds
    control = evolens.open_run(arms["control"]["run"])
    assert "pause" not in [e.kind for e in control.events()]  # the control only records the alert
    assert run.steps().tolist() == control.steps().tolist() == [0, 10, 20, 30, 39]
    assert (folder / "preservation.png").is_file()
    assert "flagged at step 20" in capsys.readouterr().out
    for arm in arms.values():  # the map statistic for every snapshot the replayed live map placed
        assert arm["map_steps"] == [0, 10, 20, 30, 39] and all(0 <= v <= 1 for v in arm["map_shift"])
        assert arm["map_flagged_step"] is None or arm["map_flagged_step"] >= 20
    assert run.reference_sizes()["thick"] == 900  # the 1,000 held-out digits but the 100 probes


def test_map_neighbour_shift_counts_points_settled_among_other_classes():
    import numpy as np

    from evolens.experiments.attribute_bias import first_flag, map_neighbour_shift

    # reference: a cluster of 6s at the origin and a cluster of 8s at (10, 0), 10 points each
    rng = np.random.default_rng(0)
    reference = np.concatenate([rng.normal(0, 0.1, (10, 2)), rng.normal(0, 0.1, (10, 2)) + [10, 0]])
    reference_labels = np.array([6] * 10 + [8] * 10)
    # three 6s near the 6s, one near the 8s, and a 3 near the 8s that must not count
    coords = np.array([[0.1, 0], [0, 0.1], [-0.1, 0], [10, 0.1], [10, 0]])
    labels = np.array([6, 6, 6, 6, 3])
    assert map_neighbour_shift(coords, labels, reference, reference_labels, 6, k=5) == 0.25
    # a point halfway has 3 of 5 neighbours of one cluster: majority decides
    assert map_neighbour_shift(np.array([[9.0, 0]]), np.array([6]), reference, reference_labels, 6, k=5) == 1.0
    assert np.isnan(map_neighbour_shift(coords, labels, reference, reference_labels, 7))
    assert first_flag([0, 10, 20, 30], [0.9, 0.1, np.nan, 0.5], above=0.4, min_step=10) == 30
    assert first_flag([0, 10], [0.9, 0.1], above=0.4, min_step=10) is None
