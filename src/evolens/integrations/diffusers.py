"""diffusers: sample a UNet with any scheduler from fixed probes, so snapshots of one probe are comparable.

::

    from evolens.integrations.diffusers import fixed_noise_sampler

    probes = evolens.Probes.from_noise(64, (3, 32, 32), seed=0)          # the initial latents
    monitor = evolens.Monitor("runs/ddpm", fixed_noise_sampler(unet, DDPMScheduler(...), num_inference_steps=100),
                              every=500, probes=probes, model=unet)

The initial latents are the probes' noise (times the scheduler's ``init_noise_sigma``); every noise the
scheduler draws in ``step(..., generator=...)`` comes from one generator per probe (``Probes.generators``),
seeded from the probe seed and the probe's id. So a probe's whole noise sequence is the same at every snapshot,
and the same whether it is sampled alone, with the other probes or on another rank (``shard_probes``): what
changes between two snapshots of one probe is the model. Class-conditional UNets (``num_class_embeds``) get the
probes' labels as ``class_labels``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

import torch

from .._validation import describe
from ..capture.probes import Probes
from ..errors import InputError

__all__ = ["fixed_noise_sampler", "sample"]


def _unet_and_scheduler(model: Any, scheduler: Any) -> tuple[Any, Any]:
    if scheduler is None:  # a pipeline (DDPMPipeline, DDIMPipeline, ...) carries both
        unet, scheduler = getattr(model, "unet", None), getattr(model, "scheduler", None)
        if unet is None or scheduler is None:
            raise InputError(f"model: expected a diffusers pipeline with .unet and .scheduler, or a UNet together "
                             f"with scheduler=, received {describe(model)} and no scheduler")
        model = unet
    if not callable(model):
        raise InputError(f"model: expected a diffusers UNet (a callable module), received {describe(model)}")
    for method in ("set_timesteps", "step", "scale_model_input"):
        if not callable(getattr(scheduler, method, None)):
            raise InputError(f"scheduler: expected a diffusers scheduler (with .{method}), received {describe(scheduler)}")
    return model, scheduler


def _fresh_scheduler(scheduler: Any) -> Any:
    """A new scheduler with the same configuration: multistep schedulers keep state between steps, and the
    caller's scheduler (the one training uses to add noise) must not be touched."""
    config = getattr(scheduler, "config", None)
    if config is not None and hasattr(type(scheduler), "from_config"):
        return type(scheduler).from_config(config)
    import copy

    return copy.deepcopy(scheduler)


def sample(
    model: Any,
    scheduler: Any,
    probes: Probes,
    *,
    num_inference_steps: int | None = None,
    eta: float = 0.0,
    output: str = "unit",
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
    model_kwargs: Mapping[str, Any] | Callable[[Probes], Mapping[str, Any]] | None = None,
) -> torch.Tensor:
    """Run the reverse process of ``scheduler`` with ``model`` from ``probes``; returns (n, C, H, W) samples.

    Args:
        model: a diffusers UNet (``UNet2DModel``...) or a pipeline with ``.unet`` and ``.scheduler`` (then
            ``scheduler`` is None).
        scheduler: any diffusers scheduler (DDPM, DDIM, Euler ancestral, DPM-Solver...). It is copied from its
            config, never modified.
        probes: ``Probes.from_noise(n, (C, H, W))``: the initial latents; labels, when set, are passed as
            ``class_labels``.
        num_inference_steps: reverse steps (default: the scheduler's ``num_train_timesteps``, i.e. the full
            ancestral chain for DDPM).
        eta: DDIM's η (0: deterministic), passed to schedulers whose ``step`` takes it.
        output: ``"unit"`` maps [-1, 1] to [0, 1] and clamps, as diffusers' image pipelines do; ``"raw"``
            returns the final sample as the scheduler leaves it.
        decode: optional ``decode(latents) -> images`` for latent diffusion (e.g. a VAE's decode), applied
            before ``output``.
        model_kwargs: extra keyword arguments for the UNet (e.g. ``encoder_hidden_states``), or a function of
            the probes that returns them.
    """
    model, scheduler = _unet_and_scheduler(model, scheduler)
    if not isinstance(probes, Probes) or probes.noise is None or probes.noise.ndim < 2:
        raise InputError(f"probes: expected evolens.Probes with noise of the latent shape, e.g. "
                         f"Probes.from_noise(n, (C, H, W)), received {describe(probes)}")
    config = getattr(model, "config", None)
    if decode is None and config is not None and hasattr(config, "in_channels") and hasattr(config, "sample_size"):
        size = config.sample_size
        size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        expected = (int(config.in_channels), *map(int, size))
        if tuple(probes.noise.shape[1:]) != expected:
            raise InputError(f"probes: expected noise of the UNet's sample shape {expected} per probe, e.g. "
                             f"Probes.from_noise(n, {expected}), received shape={tuple(probes.noise.shape[1:])}")
    if output not in ("unit", "raw"):
        raise InputError(f"output: expected 'unit' or 'raw', received {output!r}")
    scheduler = _fresh_scheduler(scheduler)
    if num_inference_steps is None:
        num_inference_steps = int(scheduler.config.num_train_timesteps)
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
        raise InputError(f"num_inference_steps: expected a positive integer, received {describe(num_inference_steps)}")
    parameter = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    device = parameter.device if parameter is not None else probes.noise.device
    dtype = parameter.dtype if parameter is not None else torch.float32
    scheduler.set_timesteps(num_inference_steps, device=device)
    accepts = inspect.signature(scheduler.step).parameters
    step_kwargs: dict[str, Any] = {}
    if "generator" in accepts:
        step_kwargs["generator"] = probes.generators()  # CPU generators: the same numbers on any device
    if "eta" in accepts:
        step_kwargs["eta"] = float(eta)
    extra = dict(model_kwargs(probes) if callable(model_kwargs) else (model_kwargs or {}))
    if probes.labels is not None and "class_labels" not in extra:
        extra["class_labels"] = probes.labels.to(device)
    latents = probes.noise.to(device=device, dtype=dtype) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        prediction = model(scheduler.scale_model_input(latents, t), t, **extra)
        prediction = getattr(prediction, "sample", prediction)
        latents = scheduler.step(prediction, t, latents, **step_kwargs).prev_sample
    images = decode(latents) if decode is not None else latents
    images = getattr(images, "sample", images)
    return (images / 2 + 0.5).clamp(0, 1) if output == "unit" else images


def fixed_noise_sampler(model: Any, scheduler: Any = None, **options: Any) -> Callable[[Probes], torch.Tensor]:
    """A ``sample_fn(probes)`` for ``Monitor``/``EvolensCallback`` that calls ``sample(model, scheduler, probes,
    **options)`` (see ``sample`` for the options); the arguments are checked now, not at the first snapshot."""
    _unet_and_scheduler(model, scheduler)
    unknown = set(options) - {"num_inference_steps", "eta", "output", "decode", "model_kwargs"}
    if unknown:
        raise InputError(f"options: unknown keyword arguments {sorted(unknown)}; expected num_inference_steps, eta, "
                         "output, decode or model_kwargs")

    def sample_fn(probes: Probes) -> torch.Tensor:
        return sample(model, scheduler, probes, **options)

    return sample_fn
