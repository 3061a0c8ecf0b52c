import pytest
import json

import numpy as np
import torch

import evolens
from evolens.capture import Probes
from evolens.cli import main
from evolens.experiments.models import DDPM, PaperUNet, SmallUNet

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


def test_the_papers_sampler_is_the_full_ancestral_chain_with_beta_variance():
    torch.manual_seed(0)
    ddpm = DDPM(SmallUNet(width=8).eval(), T=20)
    probes = Probes.from_noise(3, (1, 16, 16), seed=2)
    ours = ddpm.sample(probes, 20, variance="beta", clamp=False)
    # written out: x_{t-1} = (x_t - β_t / sqrt(1 - ᾱ_t) ε) / sqrt(1 - β_t) + sqrt(β_t) z_t, no noise at t = 0
    x = probes.noise.clone()
    with torch.no_grad():
        for i in reversed(range(20)):
            eps = ddpm.model(x, torch.full((3,), i))
            b, ab = float(ddpm.betas[i]), float(ddpm.alpha_bar[i])
            x = (x - b / (1 - ab) ** 0.5 * eps) / (1 - b) ** 0.5
            if i > 0:
                x = x + b ** 0.5 * probes.noise_at(i)
    torch.testing.assert_close(ours, x, rtol=1e-5, atol=1e-5)
    assert ddpm.sample(probes, 20).abs().max() <= 1.0  # the default clamps


def test_paper_unet_has_the_papers_size():
    unet = PaperUNet()
    assert 3.9e6 < sum(p.numel() for p in unet.parameters()) < 4.2e6  # the paper's ~4.06 M
    tiny = PaperUNet(base=8)
    assert tiny(torch.randn(2, 1, 32, 32), torch.tensor([0, 999])).shape == (2, 1, 32, 32)


def test_quick_experiment_writes_runs_figure_and_summary(tmp_path, capsys):
    assert main(["experiment", "biased-generalization", "--quick", "--out", str(tmp_path), "--seeds", "0", "--quiet"]) == 0
    (folder,) = list(tmp_path.iterdir())
    summary = json.loads((folder / "summary.json").read_text())
    (seed,) = summary["seeds"]
    assert seed["steps"] == [0, 10, 20, 30, 39] and len(seed["split_distance"]) == 5
    assert len(seed["pair_distances"]) == 3  # three splits, all pairs
    assert seed["tau_cos"] in seed["steps"] and seed["tau_loss"] in seed["steps"] and seed["last_step"] == 39
    assert seed["claim_holds"] == (seed["tau_cos"] < seed["tau_loss"] < 39)
    assert set(seed["loss_bands"]) == {"t0.00-0.05", "t0.05-0.25", "t0.25-0.50", "t0.50-1.00"}
    assert {"score_agreement/train_t200", "score_agreement/test_t800"} <= set(seed["score_agreement"])
    assert {"copy_rate", "authenticity", "extraction_rate", "nn_divergence"} <= set(seed["memorisation"])
    assert (folder / "seed0.png").is_file() and "τ_cos" in (folder / "report.md").read_text()
    with evolens.open_run(seed["runs"][0]) as run:
        steps, loss = run.scalars("heldout_loss")
        assert steps.tolist() == [0, 10, 20, 30, 39] and np.isfinite(loss).all()
        assert run.events(kind="run_group") and run.events(kind="split_analysis")
        assert run.probe_ids(0).size == 16


def test_paper_scale_configuration_runs_at_tiny_size(tmp_path):
    """--scale paper's path (PaperUNet on 32x32 digits, the full ancestral sampler with β variance, the loss over
    every t), shrunk to a few steps: ready for a GPU, exercised on the CPU."""
    from dataclasses import replace

    from evolens.experiments.biased_generalization import PAPER, run_experiment

    tiny = replace(PAPER, split_size=8, steps=4, every=2, n_probes=4, batch_size=4, width=8, T=10, loss_images=8,
                   score_images=4)
    summary = run_experiment(tmp_path, seeds=[0], config=tiny, device="cpu", progress=False)
    (seed,) = summary["seeds"]
    assert seed["steps"] == [0, 2, 3] and summary["config"]["unet"] == "paper"
    with evolens.open_run(seed["runs"][0]) as run:
        assert run.samples(3).shape == (4, 1, 32, 32)
        assert run.config["sampler"] == "paper" and run.config["loss_timesteps"] is None
