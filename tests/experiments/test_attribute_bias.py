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
