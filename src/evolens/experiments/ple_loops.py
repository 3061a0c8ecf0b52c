"""Self-consuming loops, every PLE arm (arXiv 2405.13977; loops after Alemohammad et al. 2023).

A 1-D Gaussian (n = 20 real samples) and a 2-D mixture of three Gaussians (n = 150) are retrained on their own
samples for G generations (fully synthetic loop: generation g ≥ 1 sees only n samples of generation g − 1) by
every arm of ``experiments._arms``: MLE, MLE with the classical bias correction (Gaussian: n/(n−1); mixture:
parametric bootstrap), MLE with a tuned learning rate, the DeepSets and the per-sample hypernetwork at λ = 0, the
constant-input control, the paper's literal penalty and evolens's penalty at λ ∈ {0.1, 1}. Per generation every
loop records the estimated parameters, their error against the true distribution, FID/precision/recall against
the real data, and the sample spread; each loop is an evolens run (``evolens report`` shows its collapse).
``summary.json`` and ``report.md`` hold, per arm, the variance ratio (estimated / true) and the parameter error at
the first and last generation and the log-variance drift per generation, mean ± 95% interval over seeds, with
generation 0's training NLL and whether its hypernetwork reads its input (``_arms.arm_sensitivity``).

Besides the fully synthetic loop, the variants of the later literature (``LOOPS``): accumulating all past data
(Gerstgrasser et al. 2024), half real data in every generation (Bertrand et al. 2024), a sampling bias
(temperature 0.8, Alemohammad et al. 2023) and warm-starting each generation from the previous one. The variants
run the arms in ``VARIANT_ARMS`` (the λ sweep runs in the fully synthetic loop).

    python -m experiments.ple_loops [--out runs/ple-loops] [--seeds 0 1 2 3 4] [--generations 10]
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._validation import positive_int, seed_int
from ._output import finished_run, in_processes, write_summary
from ..collapse.loops import LoopResult, SelfConsumingLoop
from ..collapse import BiasCorrectedMLETrainer, Gaussian, GaussianMixture, MLETrainer, mean_nll
from ._arms import arm_sensitivity, arms_legend, format_ci, format_reads, mean_ci, ple_arms

GMM_WEIGHTS = np.array([0.5, 0.3, 0.2])
GMM_MEANS = np.array([[-3.0, 0.0], [0.0, 3.0], [3.0, 0.0]])
GMM_STD = 0.7

#: loop variants: SelfConsumingLoop keyword arguments
LOOPS: dict[str, dict[str, Any]] = {
    "fully-synthetic": {},
    "accumulate": {"mode": "accumulate"},
    "real-fraction-0.5": {"real_fraction": 0.5},
    "temperature-0.8": {"temperature": 0.8},
    "warm-start": {"warm_start": True},
}

#: the arms the loop variants other than fully-synthetic run (the λ sweep runs in the fully synthetic loop)
VARIANT_ARMS = ("mle", "classical", "ple-lam0", "constant-lam0", "literal-lam0.1", "evolens-lam0.1", "evolens-lam1")


def gaussian_truth() -> dict[str, float]:
    return {"mean": 0.0, "var": 1.0}


def gmm_truth() -> dict[str, float]:
    out = {}
    for c, (w, m) in enumerate(zip(GMM_WEIGHTS, GMM_MEANS)):
        out[f"weight/{c}"] = float(w)
        for i in range(2):
            out[f"mean/{c}/{i}"] = float(m[i])
            out[f"var/{c}/{i}"] = GMM_STD**2
    return out


def sample_gmm(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2) draws of the three-component mixture and their (n,) component labels."""
    comp = rng.choice(3, size=n, p=GMM_WEIGHTS)
    comp = comp[np.argsort(GMM_MEANS[comp, 0], kind="stable")]
    return (GMM_MEANS[comp] + GMM_STD * rng.standard_normal((n, 2))).astype(np.float32), comp


def trainers(family: str, steps: int, only: Sequence[str] | None = None) -> dict[str, Any]:
    """Every arm's trainer for ``family`` (``"gaussian"`` or ``"gmm"``), or those named in ``only``."""
    if family == "gaussian":
        def model() -> Gaussian:
            return Gaussian(1)
        mle = MLETrainer(model(), steps=50)
        classical = BiasCorrectedMLETrainer(model(), steps=50, correction="bessel")
    else:
        def model() -> GaussianMixture:
            return GaussianMixture(3, 2)
        mle = MLETrainer(model(), steps=400, lr=0.02)
        classical = BiasCorrectedMLETrainer(model(), steps=400, lr=0.02, correction="parametric-bootstrap",
                                            replicates=20, refit_steps=200)
    return ple_arms(model, mle=mle, classical=classical, ple_kwargs={"steps": steps}, only=only)


def arms_for(variant: str, family: str, steps: int) -> list[str]:
    """Arm names a loop variant runs: every arm in the fully synthetic loop, ``VARIANT_ARMS`` in the others."""
    names = list(trainers(family, steps))
    return names if variant == "fully-synthetic" else [n for n in names if n in VARIANT_ARMS]


def _spread(result: Any, family: str) -> np.ndarray:
    names = ["params/var"] if family == "gaussian" else [f"params/var/{c}/{i}" for c in range(3) for i in range(2)]
    return np.mean([result.series(n) for n in names], axis=0) / (1.0 if family == "gaussian" else GMM_STD**2)


def _one_loop(job: tuple) -> tuple[str, str, str, int, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """One (family, loop variant, estimator, seed) loop (in a worker process)."""
    family, variant, name, seed, steps, generations, out = job
    n = 20 if family == "gaussian" else 150
    truth = gaussian_truth() if family == "gaussian" else gmm_truth()
    rng = np.random.default_rng(seed)
    real, labels = (rng.normal(0, 1, (n, 1)).astype(np.float32), None) if family == "gaussian" else sample_gmm(n, rng)
    trainer = trainers(family, steps, only=[name])[name]
    folder = Path(out) / family if variant == "fully-synthetic" else Path(out) / family / variant
    run_dir = folder / f"{name}-seed{seed}"
    config = {"family": family, "estimator": name, "loop": variant, "steps": steps}
    result = _finished_loop(run_dir, config, generations)
    if result is None:  # not run yet, or interrupted: (re)run it
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        loop = SelfConsumingLoop(trainer, real, generations=generations, true_params=truth, seed=seed,
                                 run_dir=run_dir, name=f"{family} {variant} {name} seed {seed}", config=config,
                                 progress=False, **LOOPS[variant])
        result = loop.run()
    # generation 0 is a fit on the real data with seed × 1000 (the loop's own): refitted when the loop was read back
    first = result.first_fit or trainer.fit(real, seed=seed * 1000)
    model = Gaussian(1) if family == "gaussian" else GaussianMixture(3, 2)
    checks = {"train_nll": mean_nll(first.model, real, seed=seed), **arm_sensitivity(first, real, labels, model)}
    return (family, variant, name, seed, _spread(result, family), result.series("param_error/total"),
            result.series("quality/fid"), checks)


def _finished_loop(run_dir: Path, config: dict[str, Any], generations: int) -> LoopResult | None:
    """The loop already written to ``run_dir`` with this config and every generation (an experiment that was
    interrupted resumes where it stopped), else None."""
    return finished_run(run_dir, config, lambda run: run.steps().tolist() == list(range(generations)),
                        lambda run: LoopResult.from_run(run_dir))


def run_experiment(out: str | Path, *, seeds: Sequence[int] = (0, 1, 2, 3, 4), generations: int = 10,
                   steps: int = 1000, families: Sequence[str] = ("gaussian", "gmm"), progress: bool = True,
                   workers: int | None = None, loops: Sequence[str] = tuple(LOOPS)) -> dict:
    """Run every (family, estimator, seed) loop, ``workers`` processes at a time (default: one per CPU core,
    each with one torch thread: these models are too small for intra-op threads to pay off)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(loops) - set(LOOPS))
    if unknown or not loops:
        from ..errors import InputError

        raise InputError(f"loops: expected a non-empty subset of {list(LOOPS)}, received {list(loops)}")
    summary: dict[str, Any] = {"generations": generations, "seeds": list(seeds), "steps": steps, "families": {},
                               "loops": list(loops)}
    start = time.perf_counter()
    jobs = [(family, variant, name, seed, steps, generations, str(out))
            for family in families for variant in loops for name in arms_for(variant, family, steps) for seed in seeds]
    results: dict[tuple[str, str, str], list] = {}
    for family, variant, name, seed, ratio, error, fid_values, checks in in_processes(_one_loop, jobs, workers=workers,
                                                                                desc="loops", progress=progress):
        results.setdefault((family, variant, name), []).append((ratio, error, fid_values, checks, seed))
    for family in families:
        fam: dict[str, Any] = {"n": 20 if family == "gaussian" else 150, "loops": {}}
        for variant in loops:
            fam["loops"][variant] = _methods(results, family, variant, arms_for(variant, family, steps), generations)
        fam["methods"] = fam["loops"].get("fully-synthetic", fam["loops"][loops[0]])
        summary["families"][family] = fam
    summary["seconds"] = round(time.perf_counter() - start, 1)
    write_summary(out, summary, _markdown(summary), progress, "runs and summary")
    return summary


def _methods(results: dict, family: str, variant: str, names: Sequence[str], generations: int) -> dict[str, Any]:
    """Per arm: mean and sd over seeds of each curve, and mean with 95% interval of the first/last-generation
    values and of the log-variance drift per generation; beside MLE's, each arm's drift minus MLE's on the same
    seed (the same real data and the same noise draws: a paired difference, far tighter than the two intervals)."""
    methods: dict[str, Any] = {}
    drifts: dict[str, dict[int, float]] = {}
    for name in names:
        rows = sorted(results[(family, variant, name)], key=lambda r: r[4])
        ratios, errors, fids = (np.array([r[k] for r in rows]) for k in range(3))
        checks = {key: [r[3][key] for r in rows] for key in rows[0][3]}
        drift = np.log(ratios[:, -1] / ratios[:, 0]) / max(1, generations - 1)
        drifts[name] = dict(zip([r[4] for r in rows], drift.tolist()))
        methods[name] = {
            "variance_ratio_mean": ratios.mean(0).round(4).tolist(),
            "variance_ratio_sd": ratios.std(0).round(4).tolist(),
            "variance_ratio_first_ci": list(mean_ci(ratios[:, 0])[:2]),
            "variance_ratio_last_ci": list(mean_ci(ratios[:, -1])[:2]),
            "log_variance_drift_per_generation": float(np.mean(drift)),
            "log_variance_drift_ci": list(mean_ci(drift)[:2]),
            "param_error_mean": errors.mean(0).round(4).tolist(),
            "param_error_sd": errors.std(0).round(4).tolist(),
            "param_error_last_ci": list(mean_ci(errors[:, -1])[:2]),
            "fid_mean": fids.mean(0).round(4).tolist(),
            "fid_last_ci": list(mean_ci(fids[:, -1])[:2]),
            "first_generation": checks,  # per seed: training NLL and the hypernetwork checks (None without an H)
        }
    for name in names:
        paired = [drifts[name][seed] - drifts["mle"][seed] for seed in drifts[name] if seed in drifts.get("mle", {})]
        methods[name]["drift_minus_mle_ci"] = list(mean_ci(paired)[:2]) if paired else [float("nan")] * 2
    return methods


def _ci(pair: Sequence[float], digits: int = 3) -> str:
    return f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"


def _markdown(summary: dict) -> str:
    g = summary["generations"]
    lines = [f"# Self-consuming loops, every PLE arm ({len(summary['seeds'])} seeds, {g} generations)", ""]
    first = next(iter(summary["families"].values()))["loops"]
    lines += arms_legend(list(next(iter(first.values()))))
    for family, fam in summary["families"].items():
        for variant, methods in fam["loops"].items():
            lines += [f"## {family} (n = {fam['n']}), {variant} loop", "",
                      "| arm | variance / true, gen 0 | gen last | log-var drift / gen | drift − MLE's (paired) "
                      "| param error gen last "
                      "| FID gen last | train NLL gen 0 | H slope gen 0 | H class share gen 0 | H reads |",
                      "|---|---|---|---|---|---|---|---|---|---|---|"]
            for name, m in methods.items():
                first = m["first_generation"]
                lines.append(f"| {name} | {_ci(m['variance_ratio_first_ci'])} | {_ci(m['variance_ratio_last_ci'])} "
                             f"| {_ci(m['log_variance_drift_ci'], 4)} | {_ci(m['drift_minus_mle_ci'], 4)} "
                             f"| {_ci(m['param_error_last_ci'])} "
                             f"| {_ci(m['fid_last_ci'])} | {format_ci(first['train_nll'])} "
                             f"| {format_ci(first['scale_slope'], 2)} | {format_ci(first['class_share'], 2)} "
                             f"| {format_reads(first['reads_input'])} |")
            lines.append("")
    lines.append(f"PLE steps {summary['steps']} per generation; wall time {summary['seconds']} s.")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/ple-loops")
    parser.add_argument("--seeds", type=seed_int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--generations", type=positive_int, default=10)
    parser.add_argument("--steps", type=positive_int, default=1000, help="PLE optimisation steps per generation")
    parser.add_argument("--workers", type=positive_int, default=None, help="parallel loops (default: one per CPU core)")
    parser.add_argument("--families", nargs="+", default=["gaussian", "gmm"], choices=["gaussian", "gmm"])
    parser.add_argument("--loops", nargs="+", default=list(LOOPS), choices=list(LOOPS))
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    run_experiment(args.out, seeds=args.seeds, generations=args.generations, steps=args.steps,
                   families=args.families, progress=not args.quiet, workers=args.workers, loops=args.loops)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
