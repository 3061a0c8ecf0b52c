"""The fixed-noise diffusers sampler on a tiny randomly initialised UNet2DModel: the same weights give the same
samples at every snapshot, the samples equal a hand-written reverse process (DDPM and DDIM update rules written
out from the papers' formulas, fed the same per-probe noise), class labels reach the UNet, and a subset of the
probes draws exactly its rows of the full set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

import evolens  # noqa: E402
from evolens import InputError, Probes  # noqa: E402
from evolens.integrations.diffusers import fixed_noise_sampler, sample  # noqa: E402

T = 40


def tiny_unet(num_class_embeds: int | None = None) -> "diffusers.UNet2DModel":
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4, num_class_embeds=num_class_embeds,
    ).eval()


def probes(labels=None) -> Probes:
    return Probes.from_noise(5, (1, 8, 8), seed=11, labels=labels)


def ddpm_by_hand(unet, p: Probes, class_labels=None) -> torch.Tensor:
    """Ho et al.'s ancestral step with the clipped x0 parameterisation and σ_t² = β̃_t, written out."""
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float32)
    alpha_bar = torch.cumprod(1 - betas, 0)
    generators = p.generators()
    x = p.noise.clone()
    with torch.no_grad():
        for t in range(T - 1, -1, -1):
            eps = unet(x, t, class_labels=class_labels).sample
            ab_t = alpha_bar[t]
            ab_prev = alpha_bar[t - 1] if t > 0 else torch.tensor(1.0)
            beta_t = 1 - ab_t / ab_prev
            x0 = ((x - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()).clamp(-1, 1)
            mean = (ab_prev.sqrt() * beta_t / (1 - ab_t)) * x0 + ((1 - beta_t).sqrt() * (1 - ab_prev) / (1 - ab_t)) * x
            if t > 0:
                z = torch.cat([torch.randn((1, 1, 8, 8), generator=g) for g in generators])
                mean = mean + ((1 - ab_prev) / (1 - ab_t) * beta_t).clamp(min=1e-20).sqrt() * z
            x = mean
    return (x / 2 + 0.5).clamp(0, 1)


def ddim_by_hand(unet, p: Probes, steps: int) -> torch.Tensor:
    """Song et al.'s deterministic DDIM update (η = 0) on the 'leading' timestep grid, written out."""
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float32)
    alpha_bar = torch.cumprod(1 - betas, 0)
    ratio = T // steps
    x = p.noise.clone()
    with torch.no_grad():
        for t in range((steps - 1) * ratio, -1, -ratio):
            eps = unet(x, t).sample
            ab_t = alpha_bar[t]
            ab_prev = alpha_bar[t - ratio] if t - ratio >= 0 else torch.tensor(1.0)
            x0 = ((x - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()).clamp(-1, 1)
            x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
    return (x / 2 + 0.5).clamp(0, 1)


def test_ddpm_samples_equal_the_hand_written_ancestral_loop_and_repeat_exactly():
    unet, scheduler = tiny_unet(), diffusers.DDPMScheduler(num_train_timesteps=T)
    p = probes()
    with torch.no_grad():
        first = sample(unet, scheduler, p)
        second = sample(unet, scheduler, p)
    assert first.shape == (5, 1, 8, 8)
    assert torch.equal(first, second)  # two snapshots of the same weights are identical
    torch.testing.assert_close(first, ddpm_by_hand(unet, p), rtol=0, atol=2e-5)
    assert scheduler.num_inference_steps is None  # the caller's scheduler was not touched


def test_ddim_and_a_pipeline_object():
    unet = tiny_unet()
    pipeline = diffusers.DDIMPipeline(unet=unet, scheduler=diffusers.DDIMScheduler(num_train_timesteps=T))
    with torch.no_grad():
        ours = sample(pipeline, None, probes(), num_inference_steps=8)
    torch.testing.assert_close(ours, ddim_by_hand(unet, probes(), 8), rtol=0, atol=2e-5)


def test_class_labels_reach_a_class_conditional_unet():
    unet, scheduler = tiny_unet(num_class_embeds=3), diffusers.DDPMScheduler(num_train_timesteps=T)
    labels = np.array([0, 1, 2, 0, 1])
    with torch.no_grad():
        ours = sample(unet, scheduler, probes(labels))
        swapped = sample(unet, scheduler, probes((labels + 1) % 3))
    torch.testing.assert_close(ours, ddpm_by_hand(unet, probes(labels), torch.as_tensor(labels)), rtol=0, atol=2e-5)
    assert (ours - swapped).abs().max() > 1e-3  # the label changes the sample


def test_a_subset_of_the_probes_draws_its_own_rows():
    unet, scheduler = tiny_unet(), diffusers.EulerAncestralDiscreteScheduler(num_train_timesteps=T)
    p = probes()
    with torch.no_grad():
        full = sample(unet, scheduler, p, num_inference_steps=10)
        part = sample(unet, scheduler, p.take([3, 1]), num_inference_steps=10)
        shards = [sample(unet, scheduler, p.shard(rank, 2), num_inference_steps=10) for rank in (0, 1)]
    torch.testing.assert_close(part, full[[3, 1]], rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.cat(shards), full, rtol=0, atol=1e-5)


def test_in_a_monitor_snapshots_of_the_same_weights_are_identical(tmp_path):
    unet, scheduler = tiny_unet(), diffusers.DDPMScheduler(num_train_timesteps=T)
    sampler = fixed_noise_sampler(unet, scheduler, num_inference_steps=10)
    with evolens.Monitor(tmp_path / "run", sampler, every=1, probes=probes(), model=unet) as monitor:
        monitor.step(0)
        monitor.step(1)
        with torch.no_grad():
            unet.conv_out.bias.add_(0.5)  # "training" changes the weights
        monitor.step(2)
    with evolens.open_run(tmp_path / "run") as run:
        np.testing.assert_array_equal(run.samples(0), run.samples(1))
        assert np.abs(run.samples(2) - run.samples(1)).max() > 1e-3


def test_bad_arguments_are_typed_errors():
    unet = tiny_unet()
    with pytest.raises(InputError, match="model"):
        fixed_noise_sampler(unet)  # neither a pipeline nor a scheduler
    with pytest.raises(InputError, match="scheduler"):
        fixed_noise_sampler(unet, "ddpm")
    with pytest.raises(InputError, match="options"):
        fixed_noise_sampler(unet, diffusers.DDPMScheduler(num_train_timesteps=T), steps=10)
    with pytest.raises(InputError, match="probes"):
        sample(unet, diffusers.DDPMScheduler(num_train_timesteps=T), Probes.from_noise(3, 4))
    with pytest.raises(InputError, match="num_inference_steps"):
        sample(unet, diffusers.DDPMScheduler(num_train_timesteps=T), probes(), num_inference_steps=0)
