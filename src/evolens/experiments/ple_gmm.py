"""GMM estimation error vs sample size and imbalance, MLE vs PLE (arXiv 2405.13977's low-data, imbalanced regime).

Data: a 1-D mixture of two Gaussians, N(−2, 0.6²) with weight 1 − π and N(+2, 0.6²) with weight π (the minority),
n ∈ {20, 50, 200} samples, π ∈ {0.5, 0.2, 0.1}. Each estimator fits a 2-component mixture (k-means start);
reported per cell, mean ± sd over seeds: the absolute error of the minority weight, the error of the minority
component's variance (relative), and the RMS error over all parameters (``evolens.collapse.loops.parameter_error``).

    python -m experiments.ple_gmm [--out runs/ple-gmm] [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from ._output import write_summary
from ..collapse.loops import parameter_error
from ..collapse import GaussianMixture, MLETrainer, PLETrainer

MEANS, STD = (-2.0, 2.0), 0.6


def truth(pi: float) -> dict[str, float]:
    return {"weight/0": 1 - pi, "weight/1": pi, "mean/0": MEANS[0], "mean/1": MEANS[1],
            "var/0": STD**2, "var/1": STD**2}


def sample(n: int, pi: float, rng: np.random.Generator) -> np.ndarray:
    minority = rng.random(n) < pi
    minority[rng.integers(n)] = True  # at least one minority sample, so the component can be estimated at all
    return np.where(minority, MEANS[1], MEANS[0])[:, None] + STD * rng.standard_normal((n, 1))


def run_experiment(out: str | Path, *, seeds: Sequence[int] = (0, 1, 2, 3, 4), sizes: Sequence[int] = (20, 50, 200),
                   imbalances: Sequence[float] = (0.5, 0.2, 0.1), steps: int = 500, progress: bool = True) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    estimators: dict[str, Any] = {
        "mle": MLETrainer(GaussianMixture(2, 1), steps=400, lr=0.02),
        "ple-lam0.1": PLETrainer(GaussianMixture(2, 1), lam=0.1, steps=steps),
        "ple-lam10": PLETrainer(GaussianMixture(2, 1), lam=10.0, steps=steps),
    }
    cells = []
    start = time.perf_counter()
    grid = [(n, pi) for n in sizes for pi in imbalances]
    for n, pi in tqdm(grid, desc="GMM cells", disable=not progress):
        cell: dict[str, Any] = {"n": n, "pi": pi}
        for name, est in estimators.items():
            w_err, v_err, total = [], [], []
            for seed in seeds:
                x = sample(n, pi, np.random.default_rng(1000 * n + int(100 * pi) + seed))
                params = est.fit(x, seed=seed).parameters()
                errors = parameter_error(params, truth(pi))
                w_err.append(errors["weight/1"])
                v_err.append(errors["var/1"] / STD**2)
                total.append(errors["total"])
            cell[name] = {"minority_weight_error": [float(np.mean(w_err)), float(np.std(w_err))],
                          "minority_var_rel_error": [float(np.mean(v_err)), float(np.std(v_err))],
                          "rms_error": [float(np.mean(total)), float(np.std(total))]}
        cells.append(cell)
    summary = {"seeds": list(seeds), "cells": cells, "seconds": round(time.perf_counter() - start, 1)}
    write_summary(out, summary, _markdown(summary, list(estimators)), progress, "summary")
    return summary


def _markdown(summary: dict, names: list[str]) -> str:
    lines = [f"# GMM estimation, MLE vs PLE ({len(summary['seeds'])} seeds per cell)", "",
             "RMS parameter error (mean ± sd); minority weight error; minority variance relative error", "",
             "| n | π | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for cell in summary["cells"]:
        cols = []
        for name in names:
            m = cell[name]
            cols.append(f"{m['rms_error'][0]:.3f} ± {m['rms_error'][1]:.3f}; w {m['minority_weight_error'][0]:.3f}; "
                        f"v {m['minority_var_rel_error'][0]:.2f}")
        lines.append(f"| {cell['n']} | {cell['pi']} | " + " | ".join(cols) + " |")
    lines.append(f"\nWall time {summary['seconds']} s.")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/ple-gmm")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 50, 200])
    parser.add_argument("--imbalances", type=float, nargs="+", default=[0.5, 0.2, 0.1])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    run_experiment(args.out, seeds=args.seeds, sizes=args.sizes, imbalances=args.imbalances, steps=args.steps,
                   progress=not args.quiet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
