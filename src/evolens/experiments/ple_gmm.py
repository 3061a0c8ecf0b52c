"""GMM estimation error vs sample size and imbalance, every PLE arm (arXiv 2405.13977's low-data, imbalanced regime).

Data: a 1-D mixture of two Gaussians, N(−2, 0.6²) with weight 1 − π and N(+2, 0.6²) with weight π (the minority),
n ∈ {20, 50, 200} samples, π ∈ {0.5, 0.2, 0.1}. Each arm (``experiments._arms``: MLE, MLE + parametric-bootstrap
bias correction, MLE with a tuned learning rate, the DeepSets and the per-sample hypernetwork at λ = 0, the
constant-input control, the paper's literal penalty and evolens's penalty at λ ∈ {0.1, 1}) fits a 2-component
mixture (k-means start). Reported per cell, mean ± 95% interval over seeds: the RMS error over all parameters
(``evolens.collapse.loops.parameter_error``), the absolute error of the minority weight, the signed relative bias
of the minority component's variance (MLE underestimates it by about (n_min − 1)/n_min), the training NLL, and for
every hypernetwork arm whether H reads its input (``_arms.arm_sensitivity``: scale slope on the scaled data, change
on the two components' samples beside k-means').

    python -m experiments.ple_gmm [--out runs/ple-gmm] [--seeds 0 1 2 3 4] [--arms mle classical ...]
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._validation import positive_int, seed_int, unit_share
from ._output import in_processes, write_summary
from ..collapse.loops import parameter_error
from ..collapse import BiasCorrectedMLETrainer, GaussianMixture, MLETrainer, mean_nll
from ._arms import arm_sensitivity, arms_legend, format_ci, format_reads, mean_ci, ple_arms

MEANS, STD = (-2.0, 2.0), 0.6


def truth(pi: float) -> dict[str, float]:
    return {"weight/0": 1 - pi, "weight/1": pi, "mean/0": MEANS[0], "mean/1": MEANS[1],
            "var/0": STD**2, "var/1": STD**2}


def sample(n: int, pi: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(n, 1) draws of the mixture and their (n,) component labels (1 = minority)."""
    minority = rng.random(n) < pi
    minority[rng.integers(n)] = True  # at least one minority sample, so the component can be estimated at all
    x = np.where(minority, MEANS[1], MEANS[0])[:, None] + STD * rng.standard_normal((n, 1))
    return x.astype(np.float32), minority.astype(int)


def arms(steps: int = 1000, only: Sequence[str] | None = None) -> dict[str, Any]:
    """The trainers of every arm (``experiments._arms.ple_arms``) for a 2-component 1-D mixture."""
    def model() -> GaussianMixture:
        return GaussianMixture(2, 1)

    mle = MLETrainer(model(), steps=400, lr=0.02)
    classical = BiasCorrectedMLETrainer(model(), steps=400, lr=0.02, correction="parametric-bootstrap", replicates=20,
                                        refit_steps=200)
    return ple_arms(model, mle=mle, classical=classical, ple_kwargs={"steps": steps}, only=only)


def _one_fit(job: tuple) -> tuple[int, float, str, dict[str, Any]]:
    """One (n, π, arm, seed) fit (in a worker process): its errors, training NLL and H's sensitivity."""
    n, pi, name, seed, steps = job
    x, labels = sample(n, pi, np.random.default_rng(1000 * n + int(100 * pi) + seed))
    fit = arms(steps, only=[name])[name].fit(x, seed=seed)
    params = fit.parameters()
    errors = parameter_error(params, truth(pi))
    return n, pi, name, {"rms_error": errors["total"], "minority_weight_error": errors["weight/1"],
                         "minority_var_bias": (params["var/1"] - STD**2) / STD**2,
                         "train_nll": mean_nll(fit.model, x, seed=seed),
                         **arm_sensitivity(fit, x, labels, GaussianMixture(2, 1))}


def run_experiment(out: str | Path, *, seeds: Sequence[int] = (0, 1, 2, 3, 4), sizes: Sequence[int] = (20, 50, 200),
                   imbalances: Sequence[float] = (0.5, 0.2, 0.1), steps: int = 1000, progress: bool = True,
                   arm_names: Sequence[str] | None = None, workers: int | None = None) -> dict:
    """Fit every (n, π, arm, seed), ``workers`` processes at a time (default one per core); write the summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(arms(steps, only=arm_names))
    if not names:
        from ..errors import InputError

        raise InputError(f"arm_names: expected names among {list(arms(steps))}, received {list(arm_names or [])}")
    start = time.perf_counter()
    jobs = [(n, pi, name, seed, steps) for n in sizes for pi in imbalances for name in names for seed in seeds]
    values: dict[tuple[int, float, str], list[dict[str, float]]] = {}
    for n, pi, name, errors in in_processes(_one_fit, jobs, workers=workers, desc="GMM fits", progress=progress):
        values.setdefault((n, pi, name), []).append(errors)
    cells = []
    for n in sizes:
        for pi in imbalances:
            cell: dict[str, Any] = {"n": n, "pi": pi}
            for name in names:
                raw = {key: [r[key] for r in values[(n, pi, name)]] for key in METRICS + SENSITIVITY}
                cell[name] = {key: list(mean_ci([v for v in raw[key] if v is not None])[:2]) for key in METRICS}
                cell[name]["values"] = raw  # per seed, the hypernetwork checks included (None without an H)
            cells.append(cell)
    summary = {"seeds": list(seeds), "arms": names, "cells": cells, "steps": steps,
               "seconds": round(time.perf_counter() - start, 1)}
    write_summary(out, summary, _markdown(summary), progress, "summary")
    return summary


#: per-fit numbers of the summary (values over seeds) and the per-fit hypernetwork checks
METRICS = ["rms_error", "minority_var_bias", "minority_weight_error", "train_nll"]
SENSITIVITY = ["scale_slope", "class_share", "reads_input"]


def _markdown(summary: dict) -> str:
    names = summary["arms"]
    lines = [f"# GMM estimation, every PLE arm ({len(summary['seeds'])} seeds per cell)", "", *arms_legend(names)]
    header = ["| arm | " + " | ".join(f"n={c['n']}, π={c['pi']}" for c in summary["cells"]) + " |",
              "|---|" + "---|" * len(summary["cells"])]
    for key, title in (("rms_error", "RMS parameter error"),
                       ("minority_var_bias", "Minority variance, signed relative bias (0 = unbiased)"),
                       ("minority_weight_error", "Minority weight, absolute error"),
                       ("train_nll", "Training NLL (nats per sample; the arms are compared at their own fit)"),
                       ("scale_slope", "Hypernetwork scale slope (1 = reads the scale of its data, 0 = ignores it)"),
                       ("class_share", "Hypernetwork change on each component's samples / k-means' change (median "
                                       "over the two; 1 = moves as far as a plain estimate)")):
        lines += [f"## {title}", "", *header]
        for name in names:
            lines.append(f"| {name} | " + " | ".join(format_ci(c[name]["values"][key]) for c in summary["cells"])
                         + " |")
        lines.append("")
    lines += ["## H reads its input (seeds)", "", *header]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(format_reads(c[name]["values"]["reads_input"]) for c in summary["cells"])
                     + " |")
    lines.append("")
    lines.append(f"PLE steps {summary['steps']}; wall time {summary['seconds']} s.")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/ple-gmm")
    parser.add_argument("--seeds", type=seed_int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--sizes", type=positive_int, nargs="+", default=[20, 50, 200])
    parser.add_argument("--imbalances", type=unit_share, nargs="+", default=[0.5, 0.2, 0.1])
    parser.add_argument("--steps", type=positive_int, default=1000)
    parser.add_argument("--arms", nargs="+", default=None, choices=list(arms()), help="default: every arm")
    parser.add_argument("--workers", type=positive_int, default=None, help="parallel fits (default: one per CPU core)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    run_experiment(args.out, seeds=args.seeds, sizes=args.sizes, imbalances=args.imbalances, steps=args.steps,
                   progress=not args.quiet, arm_names=args.arms, workers=args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
