"""Biased generalization (arXiv 2603.03469) on MNIST digits: K models on disjoint splits, trained together.

Per seed: K >= 3 disjoint, class-balanced splits of the MNIST train digits; the same DDPM trained on each, in
lockstep in one process, each under its own evolens Monitor, all sampled from the *same* probes (same x_T, same
reverse noise). At every snapshot (log-spaced by default, plus the last step):

- the held-out loss with the paper's estimator (``loss_compute.py``: ε-MSE averaged over a grid of t — every t
  at paper scale — on a fixed test subset, with per-t fixed noise), and its t/T bands (memorisation shows first
  at small t);
- the score agreement of every ordered model pair (``compare_scores.py``): cosine of their ε-predictions on
  A's training images vs on test images, at t = 0.2, 0.5, 0.8 T;
- then, over the runs: the split distance (1 - mean cosine per pair, median over pairs: the paper's
  ``sample_split_inference.py`` and ``cos_dis_aggregate.py``), and per model the proximity metrics (copy rate,
  authenticity, extraction rate, C_T, NN divergence on fixed bins with its bootstrap interval).

It reports τ_cos (split-distance minimum) and τ_loss (test-loss minimum) per seed and whether
τ_cos < τ_loss < last step, the paper's claim; a figure per seed and ``summary.json``/``report.md``.

    evolens experiment biased-generalization [--seeds 0 1 2] [--quick | --scale paper] [--out DIR]

``--scale paper`` is the paper's CelebA-part setting on MNIST: 32x32, n = 1,024 per split, the ~4 M-parameter
U-Net (``PaperUNet``), batch 512, Adam 1e-4, T = 1000, the full 1000-step ancestral sampler with σ² = β_t and no
clamp, the loss over all 1000 t; meant for a GPU (bf16 autocast on CUDA).
"""

from __future__ import annotations

import contextlib
import itertools
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from .._validation import positive_int, seed_int
from .. import analyses
from .. import names as N
from ..analyses.split import link_runs
from ..capture import Monitor, Probes
from ..capture.schedules import AtSteps, as_schedule
from ..data import ImageDataset, disjoint_splits, mnist
from ..store.run import open_run
from ..metrics.diffusion import diffusion_heldout_loss, loss_bands, score_agreement
from ._output import write_summary
from .models import DDPM, PaperUNet, SmallUNet


@dataclass(frozen=True)
class Config:
    """One experiment's setting (``DEFAULT``: CPU scale; ``QUICK``: tests; ``PAPER``: the paper's, on a GPU)."""

    n_splits: int = 3
    split_size: int = 64
    steps: int = 3000
    every: int | str = "log"
    n_probes: int = 256
    batch_size: int = 64
    lr: float = 1e-3
    image_size: int = 16
    unet: str = "small"
    width: int = 16
    T: int = 1000
    sampler: str = "respaced"
    sample_steps: int = 50
    loss_images: int = 256
    loss_timesteps: int | None = 50
    score_fractions: tuple[float, ...] = (0.2, 0.5, 0.8)
    score_images: int = 64
    bf16: bool = False


DEFAULT = Config()
QUICK = Config(split_size=16, steps=40, every=10, n_probes=16, width=8, sample_steps=5, loss_images=32,
               loss_timesteps=10, score_images=8)
PAPER = Config(split_size=1024, steps=10_000, n_probes=512, batch_size=512, lr=1e-4, image_size=32, unet="paper",
               width=32, sampler="paper", sample_steps=1000, loss_images=1024, loss_timesteps=None,
               score_images=1000, bf16=True)
SCALES = {"cpu": DEFAULT, "quick": QUICK, "paper": PAPER}


@dataclass
class SeedResult:
    seed: int
    steps: list[int]
    split_distance: list[float]
    pair_distances: dict[str, list[float]]
    test_loss: list[float]
    loss_bands: dict[str, list[float]]
    tau_cos: int | None
    tau_loss: int | None
    last_step: int
    claim_holds: bool
    biased_phase: list[int] | None
    onset_step: int | None
    score_agreement: dict[str, list[float]]
    memorisation: dict[str, list[float]]
    seconds: float
    runs: list[str] = field(default_factory=list)


def _digits(split: str, seed: int, size: int) -> ImageDataset:
    data = mnist(split, seed=seed)
    images = torch.from_numpy(np.ascontiguousarray(data.images))
    images = F.interpolate(images, size=(size, size), mode="area") if size < 28 else F.pad(images, [(size - 28) // 2] * 4)
    return ImageDataset(images.numpy(), data.labels, f"mnist{size}", data.source)


def _network(config: Config) -> torch.nn.Module:
    if config.unet == "paper":
        return PaperUNet(base=config.width)
    return SmallUNet(width=config.width)


def _schedule(config: Config) -> AtSteps:
    """The snapshot steps: ``every="log"`` is step 0 and 19 geometrically spaced steps from steps/60 to the
    last (dense where τ_cos and τ_loss fall, ~20 snapshots whatever the length); an int K is every K steps;
    the last step is always included."""
    last = config.steps - 1
    if config.every == "log":
        first = max(1, config.steps // 60)
        steps = {0, *np.unique(np.round(np.geomspace(first, max(first, last), 19)).astype(int)).tolist()}
    else:
        steps = set(as_schedule(config.every).steps_until(last))
    return AtSteps(sorted(steps | {last}))


def _sampler(ddpm: DDPM, config: Config):
    if config.sampler == "paper":
        return lambda p: (ddpm.sample(p, config.T, variance="beta", clamp=False) + 1.0) / 2.0
    return lambda p: (ddpm.sample(p, config.sample_steps) + 1.0) / 2.0


def train_seed(out: Path, seed: int, config: Config, *, device: torch.device, progress: bool) -> SeedResult:
    """Train the K models of one seed in lockstep under their Monitors, then analyse them together."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    train_all = _digits("train", seed, config.image_size)
    test = _digits("heldout", seed, config.image_size).images[: config.loss_images]
    splits = disjoint_splits(train_all, config.n_splits, size=config.split_size, seed=seed)
    probes = Probes.from_noise(config.n_probes, (1, config.image_size, config.image_size), seed=1000 + seed)
    schedule = _schedule(config)
    x_test = torch.from_numpy(test * 2.0 - 1.0).to(device)
    models, monitors, optimizers, generators, x_trains, run_dirs = [], [], [], [], [], []
    for k, split in enumerate(splits):
        torch.manual_seed(seed * 100 + k)
        ddpm = DDPM(_network(config).to(device), T=config.T, device=device)
        run_dir = out / f"seed{seed}" / f"split{k}"
        monitor = Monitor(run_dir, _sampler(ddpm, config), every=schedule, probes=probes, model=ddpm.model,
                          config={"experiment": "biased-generalization", "seed": seed, "split": k, **asdict(config)})
        monitor.add_reference("train", split.images, split.labels)
        monitor.add_reference("heldout", test)
        models.append(ddpm)
        monitors.append(monitor)
        optimizers.append(torch.optim.Adam(ddpm.model.parameters(), lr=config.lr))
        generators.append(torch.Generator().manual_seed(seed * 100 + k))
        x_trains.append(torch.from_numpy(split.images * 2.0 - 1.0).to(device))
        run_dirs.append(run_dir)
    alpha_bar = models[0].alpha_bar
    score_ts = sorted({min(config.T - 1, int(round(f * config.T))) for f in config.score_fractions})
    use_bf16 = config.bf16 and device.type == "cuda"
    try:
        for step in tqdm(range(config.steps), desc=f"seed {seed}: {config.n_splits} DDPMs", disable=not progress,
                         leave=False):
            losses = []
            for ddpm, optimizer, generator, x_train in zip(models, optimizers, generators, x_trains):
                index = torch.randint(0, x_train.shape[0], (config.batch_size,), generator=generator).to(device)
                with torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext():
                    loss = ddpm.loss(x_train[index], generator=generator).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            if not schedule(step):
                for monitor, loss in zip(monitors, losses):
                    monitor.step(step, loss=loss)
                continue
            for ddpm in models:
                ddpm.model.eval()
            with torch.no_grad():
                measured = [_snapshot_scalars(ddpm, x_test, alpha_bar, config, seed) for ddpm in models]
                for a, b in itertools.permutations(range(len(models)), 2):
                    for t in score_ts:
                        agreement = score_agreement(models[a].model, models[b].model,
                                                    x_trains[a][: config.score_images], x_test[: config.score_images],
                                                    t, alpha_bar=alpha_bar, seed=seed)
                        for part, value in (("train", agreement.train), ("test", agreement.test)):
                            key = f"score_agreement/{part}_t{t}"
                            measured[a][key] = measured[a].get(key, 0.0) + value / (len(models) - 1)
            for ddpm in models:
                ddpm.model.train()
            for monitor, loss, values in zip(monitors, losses, measured):
                monitor.step(step, loss=loss, **values)
    finally:
        for monitor in monitors:
            monitor.close()
    return _analyse_seed(seed, run_dirs, config, score_ts, time.perf_counter() - start)


def _snapshot_scalars(ddpm: DDPM, x_test: torch.Tensor, alpha_bar: torch.Tensor, config: Config,
                      seed: int) -> dict[str, float]:
    """The paper's held-out loss (mean over the t grid) and its t/T bands."""
    held = diffusion_heldout_loss(ddpm.model, x_test, alpha_bar=alpha_bar, timesteps=config.loss_timesteps,
                                  seed=10_000 + seed)
    values = {N.HELDOUT_LOSS: held.mean}
    for band, value in loss_bands(held, config.T).items():
        values[f"{N.HELDOUT_LOSS}/{band}"] = value
    return values


def _analyse_seed(seed: int, run_dirs: list[Path], config: Config, score_ts: list[int], seconds: float) -> SeedResult:
    link_runs(run_dirs, f"biased-generalization-seed{seed}")
    split = analyses.split(run_dirs, reduce="mean")  # the paper's: 1 - mean cosine per pair, median over pairs
    steps = split.steps.tolist()
    report = split.report
    runs = [analyses.proximity(run_dir, encoder="pixels", reference="train", heldout="heldout", steps=steps)
            for run_dir in run_dirs]
    memorisation = {}
    for metric in (N.COPY_RATE, N.AUTHENTICITY, N.EXTRACTION_RATE, N.DATA_COPYING_CT, N.NN_DIVERGENCE,
                   N.NN_DIVERGENCE_LOW, N.NN_DIVERGENCE_HIGH):
        name = N.scalar_name(N.PROXIMITY, metric, encoder=runs[0].encoder_id, reference="train")
        if all(name in r.values[steps[-1]] for r in runs):
            memorisation[metric] = np.mean([[r.values[s].get(name, np.nan) for s in steps] for r in runs],
                                           axis=0).tolist()
    curves: dict[str, list[float]] = {}
    bands: dict[str, list[float]] = {}
    for run_dir in run_dirs:
        with open_run(run_dir) as run:
            for name in run.scalar_names():
                if name.startswith("score_agreement/") or name.startswith(f"{N.HELDOUT_LOSS}/"):
                    by_step = dict(zip(*[a.tolist() for a in run.scalars(name)]))
                    target = curves if name.startswith("score_agreement/") else bands
                    target.setdefault(name, []).append([by_step.get(s, np.nan) for s in steps])
    mean = {name: np.mean(values, axis=0).tolist() for name, values in curves.items()}
    median_bands = {name.split("/", 1)[1]: np.median(values, axis=0).tolist() for name, values in bands.items()}
    loss_by_step = dict(zip(split.loss_steps.tolist(), split.loss.tolist())) if split.loss is not None else {}
    last = steps[-1]
    holds = report.tau_cos is not None and report.tau_loss is not None and report.tau_cos < report.tau_loss < last
    return SeedResult(
        seed=seed, steps=steps, split_distance=split.distance.tolist(),
        pair_distances={f"{i}-{j}": c.tolist() for (i, j), c in split.pair_distances.items()},
        test_loss=[loss_by_step.get(s, float("nan")) for s in steps], loss_bands=median_bands,
        tau_cos=report.tau_cos, tau_loss=report.tau_loss, last_step=last, claim_holds=holds,
        biased_phase=list(report.biased_phase) if report.biased_phase else None, onset_step=report.onset_step,
        score_agreement=mean, memorisation=memorisation, seconds=seconds, runs=[str(p) for p in run_dirs],
    )


def plot_seed(result: SeedResult, path: Path) -> str:
    """The paper's figure: split distance and test loss against training step (τ_cos, τ_loss marked, the biased
    phase between them shaded); score agreement on training vs test images; the memorisation metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.maximum(np.array(result.steps), 1)
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(8, 10), sharex=True)
    for pair, values in result.pair_distances.items():
        top.plot(steps, values, color="tab:blue", alpha=0.2, lw=1)
    top.plot(steps, result.split_distance, "o-", color="tab:blue", label="split distance (median over pairs)")
    top.set_ylabel("split distance  1 − mean cos", color="tab:blue")
    twin = top.twinx()
    twin.plot(steps, result.test_loss, "s--", color="tab:red", label="test loss (mean over t)")
    for band, values in result.loss_bands.items():
        if band.startswith("t0.05"):
            twin.plot(steps, values, ":", color="tab:orange", label=f"test loss, {band}")
    twin.set_ylabel("held-out ε-MSE", color="tab:red")
    twin.set_yscale("log")
    if result.tau_cos is not None and result.tau_loss is not None and result.tau_cos < result.tau_loss:
        top.axvspan(max(result.tau_cos, 1), result.tau_loss, color="tab:purple", alpha=0.1, label="biased phase")
    for tau, colour, name in ((result.tau_cos, "tab:blue", "τ_cos"), (result.tau_loss, "tab:red", "τ_loss")):
        if tau is not None:
            top.axvline(max(tau, 1), color=colour, alpha=0.5)
            top.text(max(tau, 1), 0.97, f" {name} = {tau}", color=colour, ha="left", va="top",
                     transform=top.get_xaxis_transform(), fontsize=9)
    verdict = "holds" if result.claim_holds else "does not hold"
    top.set_title(f"biased generalization, seed {result.seed}: τ_cos < τ_loss < end {verdict}")
    top.legend(loc="lower left", fontsize=8)  # the top edge carries the τ labels
    twin.legend(loc="center left", fontsize=8)
    trained = np.array(result.steps) > 0  # step 0: untrained networks, cosines ~0, off the log scale
    for name, values in sorted(result.score_agreement.items()):
        style = "-" if "/train_" in name else "--"
        disagreement = np.clip(1 - np.array(values), 1e-6, None)
        middle.plot(steps[trained], disagreement[trained], style, label=name.split("/", 1)[1])
    middle.set_yscale("log")
    middle.set_ylabel("score disagreement 1 − cos")
    middle.set_title("two models' ε-predictions on A's training images (solid) vs test images (dashed)", fontsize=9)
    middle.legend(fontsize=7, ncol=2)
    memo = result.memorisation
    for metric in (N.COPY_RATE, N.AUTHENTICITY, N.EXTRACTION_RATE):
        if metric in memo:
            bottom.plot(steps, memo[metric], "o-", label=metric)
    bottom.set_ylabel("share of samples")
    if N.NN_DIVERGENCE in memo:
        nn_axis = bottom.twinx()
        nn_axis.plot(steps, memo[N.NN_DIVERGENCE], "x--", color="tab:gray", label="NN divergence")
        if N.NN_DIVERGENCE_LOW in memo:
            nn_axis.fill_between(steps, memo[N.NN_DIVERGENCE_LOW], memo[N.NN_DIVERGENCE_HIGH], color="tab:gray",
                                 alpha=0.2)
        nn_axis.set_ylabel("KL(P_gen ‖ P_test)")
        nn_axis.legend(loc="upper right", fontsize=8)
    bottom.legend(loc="upper left", fontsize=8)
    bottom.set_xlabel("training step (log)")
    bottom.set_xscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def _report(results: list[SeedResult], config: Config, out: Path) -> str:
    lines = ["# Biased generalization (arXiv 2603.03469)", "",
             f"{config.n_splits} disjoint splits of {config.split_size} digits ({config.image_size}x{config.image_size}), "
             f"{config.steps} steps, {config.n_probes} shared probes, test loss over "
             f"{'all' if config.loss_timesteps is None else config.loss_timesteps} t on {config.loss_images} images.", "",
             "| seed | τ_cos | τ_loss | last step | τ_cos < τ_loss < end | onset | minutes |",
             "|---:|---:|---:|---:|:---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.seed} | {r.tau_cos} | {r.tau_loss} | {r.last_step} | {'yes' if r.claim_holds else 'no'} | "
                     f"{r.onset_step} | {r.seconds / 60:.1f} |")
    taus = np.array([[r.tau_cos, r.tau_loss] for r in results if r.tau_cos is not None and r.tau_loss is not None],
                    dtype=float)
    if taus.size:
        lines += ["", f"τ_cos {taus[:, 0].mean():.0f} ± {taus[:, 0].std():.0f}, τ_loss {taus[:, 1].mean():.0f} ± "
                  f"{taus[:, 1].std():.0f} (mean ± std over {len(taus)} seeds); the claim holds in "
                  f"{sum(r.claim_holds for r in results)} of {len(results)} seeds."]
    lines += ["", f"Figures: {', '.join(f'seed{r.seed}.png' for r in results)} in {out}"]
    return "\n".join(lines) + "\n"


def run_experiment(out: str | Path = "runs/biased-generalization", *, seeds: Sequence[int] = (0, 1, 2),
                   config: Config = DEFAULT, device: str | None = None, progress: bool = True) -> dict:
    """Run every seed, write figures, ``summary.json`` and ``report.md`` under ``out``; return the summary."""
    from .._device import resolve_device

    out = Path(out) / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(device)
    results = []
    for seed in seeds:
        result = train_seed(out, seed, config, device=device, progress=progress)
        plot_seed(result, out / f"seed{seed}.png")
        results.append(result)
        if progress:
            print(f"seed {seed}: tau_cos={result.tau_cos} tau_loss={result.tau_loss} last={result.last_step} "
                  f"claim {'holds' if result.claim_holds else 'does not hold'} ({result.seconds:.0f} s)", flush=True)
    summary = {"config": {**asdict(config), "seeds": list(seeds), "device": str(device)},
               "seeds": [asdict(r) for r in results], "out": str(out)}
    write_summary(out, summary, _report(results, config, out), progress, what="figures, runs and summary")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/biased-generalization")
    parser.add_argument("--seeds", type=seed_int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu",
                        help="cpu (default, ~minutes per seed on 2 cores), quick (tests), paper (a GPU)")
    parser.add_argument("--quick", action="store_true", help="the same as --scale quick")
    parser.add_argument("--steps", type=positive_int, default=None)
    parser.add_argument("--every", default=None, help="an int K or 'log'")
    parser.add_argument("--n-splits", type=positive_int, default=None)
    parser.add_argument("--split-size", type=positive_int, default=None)
    parser.add_argument("--probes", type=positive_int, default=None)
    parser.add_argument("--sampler", choices=["respaced", "paper"], default=None)
    parser.add_argument("--sample-steps", type=positive_int, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    config = SCALES["quick" if args.quick else args.scale]
    overrides = {"steps": args.steps, "n_splits": args.n_splits, "split_size": args.split_size,
                 "n_probes": args.probes, "sampler": args.sampler, "sample_steps": args.sample_steps,
                 "every": None if args.every is None else (args.every if args.every == "log" else int(args.every))}
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if config.n_splits < 2:
        parser.error("--n-splits: expected at least 2 splits")
    run_experiment(args.out, seeds=args.seeds, config=config, device=args.device, progress=not args.quiet)
    return 0
