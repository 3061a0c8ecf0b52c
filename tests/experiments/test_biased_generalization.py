import pytest
import json

import numpy as np
import torch

import evolens
from evolens.capture import Probes
from evolens.cli import main
from evolens.experiments.models import DDPM, SmallUNet

pytestmark = pytest.mark.slow  # experiments, the demo and the Inception network: make test, not test-fast


def test_ddpm_sampling_is_a_function_of_the_probes():
    torch.manual_seed(0)
    ddpm = DDPM(SmallUNet().eval())
    probes = Probes.from_noise(4, (1, 16, 16), seed=5)
    a, b = ddpm.sample(probes, 8), ddpm.sample(probes, 8)
    assert torch.equal(a, b) and a.shape == (4, 1, 16, 16) and a.abs().max() <= 1.0
    other = ddpm.sample(Probes.from_noise(4, (1, 16, 16), seed=6), 8)
    assert not torch.equal(a, other)


def test_ddpm_loss_at_fixed_noise_is_the_noise_prediction_error():
    torch.manual_seed(0)
    ddpm = DDPM(SmallUNet().eval())
    x0 = torch.rand(3, 1, 16, 16) * 2 - 1
    t = torch.tensor([0, 500, 999])
    noise = torch.randn(3, 1, 16, 16)
    ab = ddpm.alpha_bar[t].float()[:, None, None, None]
    expected = ((ddpm.model(ab.sqrt() * x0 + (1 - ab).sqrt() * noise, t) - noise) ** 2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(ddpm.loss(x0, t, noise), expected)


def test_tiny_experiment_writes_runs_figure_and_json(tmp_path, capsys):
    assert main(["experiment", "biased-generalization", "--out", str(tmp_path), "--seeds", "0", "--steps", "30",
                 "--every", "10", "--split-size", "32", "--sample-steps", "5", "--quiet"]) == 0
    (folder,) = list(tmp_path.iterdir())
    results = json.loads((folder / "results.json").read_text())
    (seed,) = results["seeds"]
    assert seed["steps"] == [0, 10, 20, 29] and len(seed["split_distance"]) == 4
    assert seed["tau_cos"] in seed["steps"] and seed["tau_loss"] in seed["steps"]
    assert (folder / "seed0.png").is_file()
    run = evolens.open_run(seed["runs"][0])
    assert np.isfinite(run.scalars("proximity/copy_rate")[1]).all()
    assert run.events(kind="run_group") and run.events(kind="split_analysis")
    assert "tau_cos=" in capsys.readouterr().out
