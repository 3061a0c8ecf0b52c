"""Diffusion-model metrics of the biased-generalization paper (arXiv 2603.03469), on an ε-predicting network.

- ``diffusion_heldout_loss``: the paper's test-loss estimator (``Generation/loss_compute.py``): the ε-MSE
  averaged over a grid of timesteps (all T by default) on a fixed test subset, with the forward noise of each t
  drawn from a generator seeded by (seed + t), so it is identical at every checkpoint. Overfitting shows first
  at small t; the per-t curve and ``loss_bands`` show where.
- ``score_agreement``: the paper's ``Generation/compare_scores.py``: at a fixed t, the cosine between two
  models' ε-predictions on noised training images of model A and on noised common test images.

The network is any callable ``model(x_t, t) -> ε̂`` with x_t (n, C, H, W) and t (n,) integer timesteps; the
forward process is x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε with ``alpha_bar`` (T,) the cumulative products.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .._validation import describe
from ..errors import InputError

__all__ = ["HeldoutLoss", "ScoreAgreement", "diffusion_heldout_loss", "linear_alpha_bar", "loss_bands",
           "score_agreement"]

#: bands of t/T reported by ``loss_bands`` by default: memorisation appears first in the lowest non-trivial band
DEFAULT_BANDS: Mapping[str, tuple[float, float]] = {"t0.00-0.05": (0.0, 0.05), "t0.05-0.25": (0.05, 0.25),
                                                    "t0.25-0.50": (0.25, 0.5), "t0.50-1.00": (0.5, 1.0)}


def linear_alpha_bar(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """ᾱ_t (T,) float64 of the linear β schedule of Ho et al. 2020 (the paper's: 1e-4 → 0.02, T = 1000)."""
    if isinstance(T, bool) or not isinstance(T, int) or T < 2:
        raise InputError(f"T: expected an integer >= 2, received {describe(T)}")
    return torch.cumprod(1.0 - torch.linspace(beta_start, beta_end, T, dtype=torch.float64), dim=0)


def _check_inputs(x0: Any, alpha_bar: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(x0, torch.Tensor) or x0.ndim < 2 or x0.shape[0] < 1:
        raise InputError(f"{name}: expected a tensor (n, C, H, W) of images in the model's range, received {describe(x0)}")
    if not torch.isfinite(x0).all():
        raise InputError(f"{name}: expected finite values, received NaN or inf")
    alpha_bar = torch.as_tensor(alpha_bar, dtype=torch.float64)
    if alpha_bar.ndim != 1 or alpha_bar.numel() < 2 or not ((alpha_bar > 0) & (alpha_bar < 1)).all():
        raise InputError(f"alpha_bar: expected a 1-d schedule of cumulative products in (0, 1), received "
                         f"{describe(alpha_bar)}")
    return x0, alpha_bar


def _noised(x0: torch.Tensor, alpha_bar: torch.Tensor, t: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(x0.device, x0.dtype)
    ab = float(alpha_bar[t])
    return ab ** 0.5 * x0 + (1 - ab) ** 0.5 * noise, noise


@dataclass(frozen=True)
class HeldoutLoss:
    """The mean ε-MSE over (images × timesteps), its standard error, and the per-t means.

    Attributes:
        mean: the estimator (a float).
        sem: standard error of the mean over the n·len(t) per-image, per-t losses.
        timesteps: (k,) the t grid.
        per_t: (k,) mean loss over the images at each t.
    """

    mean: float
    sem: float
    timesteps: np.ndarray
    per_t: np.ndarray


@torch.no_grad()
def diffusion_heldout_loss(model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x0: torch.Tensor, *,
                           alpha_bar: Any, timesteps: Sequence[int] | int | None = None, seed: int = 0,
                           batch_size: int = 256) -> HeldoutLoss:
    """The paper's held-out loss: mean over ``timesteps`` and the images ``x0`` of ||ε̂(x_t, t) − ε||² / d.

    Args:
        model: ``model(x_t, t) -> ε̂`` (put it in eval mode first; evaluated under ``no_grad``).
        x0: (n, C, H, W) fixed test images, in the model's data range.
        alpha_bar: (T,) cumulative products of the noise schedule (``linear_alpha_bar()`` for the paper's).
        timesteps: the t grid: None for all of 0..T-1 (the paper), an int k for k evenly spaced steps
            (>= 50 recommended), or explicit steps.
        seed: the noise of step t is drawn from a generator seeded with ``seed + t`` (identical at every call).
        batch_size: images per forward pass.
    """
    x0, alpha_bar = _check_inputs(x0, alpha_bar, "x0")
    T = alpha_bar.numel()
    if timesteps is None:
        grid = np.arange(T)
    elif isinstance(timesteps, (int, np.integer)) and not isinstance(timesteps, bool):
        if not 2 <= timesteps <= T:
            raise InputError(f"timesteps: expected between 2 and T={T} evenly spaced steps, received {timesteps}")
        grid = np.unique(np.linspace(0, T - 1, int(timesteps)).round().astype(np.int64))
    else:
        grid = np.asarray(timesteps)
        if grid.ndim != 1 or grid.size == 0 or not np.issubdtype(grid.dtype, np.integer) or grid.min() < 0 \
                or grid.max() >= T:
            raise InputError(f"timesteps: expected integer steps in [0, {T}), received {describe(timesteps)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size: expected a positive integer, received {describe(batch_size)}")
    per_t, total, total_sq, count = [], 0.0, 0.0, 0
    for t in grid.tolist():
        x_t, noise = _noised(x0, alpha_bar, t, torch.Generator().manual_seed(int(seed) + int(t)))
        losses = []
        for start in range(0, x0.shape[0], batch_size):
            stop = start + batch_size
            steps = torch.full((x_t[start:stop].shape[0],), t, dtype=torch.long, device=x0.device)
            eps = model(x_t[start:stop], steps)
            losses.append(((eps.float() - noise[start:stop].float()) ** 2).flatten(1).mean(1).double().cpu())
        values = torch.cat(losses)
        per_t.append(float(values.mean()))
        total, total_sq, count = total + float(values.sum()), total_sq + float((values ** 2).sum()), count + values.numel()
    mean = total / count
    sem = float(np.sqrt(max(total_sq / count - mean ** 2, 0.0) / count))
    return HeldoutLoss(float(mean), sem, grid, np.array(per_t))


def loss_bands(loss: HeldoutLoss, T: int, bands: Mapping[str, tuple[float, float]] = DEFAULT_BANDS) -> dict[str, float]:
    """Mean per-t loss within each band [lo, hi) of t/T (the last band includes t = T-1); NaN for a band the
    grid does not reach. E.g. ``{"t0.05-0.25": ...}``: where overfitting shows first."""
    fraction = loss.timesteps / float(T)
    out = {}
    for name, (lo, hi) in bands.items():
        inside = (fraction >= lo) & ((fraction < hi) | (hi >= 1.0))
        out[name] = float(loss.per_t[inside].mean()) if inside.any() else float("nan")
    return out


@dataclass(frozen=True)
class ScoreAgreement:
    """Mean cosine between two models' ε-predictions at one t, on A's training images and on test images,
    with their standard errors. Models that generalise agree on both; models that memorise their own split
    agree on test images but disagree on A's training images (A has memorised them, B has not)."""

    t: int
    train: float
    test: float
    sem_train: float
    sem_test: float


@torch.no_grad()
def score_agreement(model_a: Callable, model_b: Callable, x_train_a: torch.Tensor, x_test: torch.Tensor, t: int, *,
                    alpha_bar: Any, seed: int = 0, batch_size: int = 256) -> ScoreAgreement:
    """The paper's score comparison (``compare_scores.py``) at timestep ``t``.

    Noises A's training images and the test images at ``t`` (forward noise from generators seeded with
    ``seed`` and ``seed + 1``: identical at every call), predicts ε with both models and takes the cosine
    between the two predictions of each image (flattened), averaged over the images.
    """
    x_train_a, alpha_bar = _check_inputs(x_train_a, alpha_bar, "x_train_a")
    x_test, _ = _check_inputs(x_test, alpha_bar, "x_test")
    T = alpha_bar.numel()
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < T:
        raise InputError(f"t: expected an integer timestep in [0, {T}), received {describe(t)}")

    def cosines(x0: torch.Tensor, generator_seed: int) -> np.ndarray:
        x_t, _ = _noised(x0, alpha_bar, int(t), torch.Generator().manual_seed(generator_seed))
        out = []
        for start in range(0, x0.shape[0], batch_size):
            batch = x_t[start:start + batch_size]
            steps = torch.full((batch.shape[0],), int(t), dtype=torch.long, device=batch.device)
            a, b = model_a(batch, steps).flatten(1).double(), model_b(batch, steps).flatten(1).double()
            out.append(torch.nn.functional.cosine_similarity(a, b, dim=1).cpu())
        return torch.cat(out).numpy()

    on_train, on_test = cosines(x_train_a, int(seed)), cosines(x_test, int(seed) + 1)

    def sem(values: np.ndarray) -> float:
        return float(values.std() / np.sqrt(values.size))

    return ScoreAgreement(int(t), float(on_train.mean()), float(on_test.mean()), sem(on_train), sem(on_test))
