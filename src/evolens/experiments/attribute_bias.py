"""Attribute bias in image-to-image translation, detected early and fixed by an intervention (arXiv 2412.12755).

Analogue of the paper's hair-colour GAN on data we can use here: a small CNN translates MNIST digits from
their normal stroke to a *thick* stroke. The translator is trained without pairs, by retrieval: each source is
pulled to the image of the thick target domain nearest to its ideal translation, plus a weak coarse content
term. In the target domain the style is correlated with the class: it holds no thick 6s.
So the model learns to turn 6s into other thick digits — changing identity along with style, as hair colour
dragged gender and age along.

evolens watches the translations of fixed probe digits; a snapshot hook classifies them with digits-cnn and
logs the identity-preservation rate per class; a ``Threshold`` rule flags class 6. In the intervention arm the
rule pauses training (checkpoint referenced), the experiment adds de-correlating examples (thick 6s) to the
target domain, records the intervention and resumes the same run from the checkpoint. The control arm runs
the same seed without intervention. Reported per seed: the snapshot that was flagged (as % of training), and
per-class FID (digits-cnn features, vs real thick digits of the class) and preservation before (at the flag)
and after (end of training) for both arms.

The map takes part in the detection, as in the paper, where the owner sees the translated images of a class
settle among other classes on the evolving map. Each run holds a ``thick`` reference (real thick digits of every
class, 6s included); after training, the live worker's map is replayed over the run's snapshots in order (fitted
on the first three, then each snapshot placed by ``extend`` — the coordinates a live dashboard showed at that
step) and, per snapshot, ``map_neighbour_shift`` gives the share of translated 6s whose nearest reference digits
on the map are mostly of other classes. The map "would have flagged" at the first snapshot (from the rule's
``min_step``) where that share reaches 1 − threshold, the mirror of the classifier rule; both steps are reported.

    python -m experiments.attribute_bias [--out runs/attribute-bias] [--seeds 0 1 2]
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from .._validation import finite_float, positive_int, seed_int
from ..capture import Monitor, Probes
from ..data import mnist
from ..detect import Threshold
from ..metrics import fid, preservation_rate
from ..metrics.proximity import nearest_neighbors
from .models import Translator

AFFECTED = 6  # the class absent from the thick target domain
MAP_REFERENCE = "thick"  # real thick digits of every class: the grey points of the map


def thicken(images: torch.Tensor) -> torch.Tensor:
    """The thick stroke style: 3x3 grey dilation of (n, 1, 28, 28) images in [0, 1]."""
    return F.max_pool2d(images, 3, stride=1, padding=1)


def _loss(model: Translator, x: torch.Tensor, targets: np.ndarray, target_features: np.ndarray, digits,
          content_weight: float) -> torch.Tensor:
    out = model(x)
    # Unpaired training by retrieval: the target of each source is the image of the thick target domain whose
    # digits-cnn features are nearest to those of its ideal translation. Where the domain lacks the source's
    # class, that is the most similar other digit: the correlation in the data becomes the model's bias.
    query = digits.encode(thicken(x).numpy())
    _, index = nearest_neighbors(query, target_features, 1)
    target = torch.from_numpy(targets[index[:, 0]]).reshape_as(out)
    content = F.mse_loss(F.avg_pool2d(out, 4), F.avg_pool2d(thicken(x), 4))  # coarse layout only
    return F.mse_loss(out, target) + content_weight * content


def map_neighbour_shift(coords: np.ndarray, labels: np.ndarray, reference_coords: np.ndarray,
                        reference_labels: np.ndarray, cls: int, k: int = 5) -> float:
    """Share of the points of class ``cls`` whose ``k`` nearest reference points on the map mostly (more than
    half) carry another label.

    Args:
        coords: (n, 2) map coordinates of one snapshot; labels: (n,) the class each point should show.
        reference_coords: (m, 2) map coordinates of labelled reference points; reference_labels: (m,).
        cls: the class watched; k: neighbours per point (k <= m).

    Returns a share in [0, 1]; NaN when no point has label ``cls``.
    """
    from scipy.spatial import cKDTree

    mine = np.asarray(coords, dtype=np.float64)[np.asarray(labels) == cls]
    if mine.shape[0] == 0:
        return float("nan")
    _, index = cKDTree(np.asarray(reference_coords, dtype=np.float64)).query(mine, k=k)
    other = np.asarray(reference_labels)[index.reshape(len(mine), k)] != cls
    return float(np.mean(other.sum(axis=1) > k / 2))


def first_flag(steps: Sequence[int], values: Sequence[float], *, above: float, min_step: int) -> int | None:
    """The first step >= ``min_step`` whose value is >= ``above`` (NaN never flags), or None."""
    for step, value in zip(steps, values):
        if step >= min_step and np.isfinite(value) and value >= above:
            return int(step)
    return None


def map_series(run_dir: str | Path, *, cls: int = AFFECTED, k: int = 5) -> tuple[list[int], list[float]]:
    """Replay the live worker's map over a finished run (digits-cnn features, the ``thick`` reference) and
    return, per snapshot, ``map_neighbour_shift`` of class ``cls`` at the coordinates that snapshot received
    when it was first placed (the map fitted on the first three snapshots, then extended one snapshot at a time,
    refitted when it stops keeping neighbourhoods — what a live dashboard showed)."""
    from ..analyses.live import Live, watch
    from ..store import maps
    from ..store import open_run

    watch(run_dir, Live(encoder="digits-cnn", reference=MAP_REFERENCE, analyses=("map",), heldout=None,
                        map_max_reference=1000), progress=False)
    placed: dict[int, float] = {}
    with open_run(run_dir) as run:
        for meta in maps.records(run):
            reference_coords = maps.frame(run, meta, None)
            reference_labels = maps.reference_labels(run, meta)
            for step in meta["steps"]:
                if step not in placed:  # the first placement is the one seen at that step
                    placed[step] = map_neighbour_shift(maps.frame(run, meta, step), run.labels(step),
                                                       reference_coords, reference_labels, cls, k)
    steps = sorted(placed)
    return steps, [placed[s] for s in steps]


@dataclass
class ArmResult:
    arm: str
    flagged_step: int | None
    flagged_percent: float | None
    fid_before: dict[int, float]
    fid_after: dict[int, float]
    preservation_before: dict[int, float]
    preservation_after: dict[int, float]
    run: str
    map_flagged_step: int | None = None
    map_steps: list[int] = field(default_factory=list)
    map_shift: list[float] = field(default_factory=list)


def _evaluate(model: Translator, sources: torch.Tensor, labels: np.ndarray, real_thick_features: dict[int, np.ndarray],
              digits) -> tuple[dict[int, float], dict[int, float]]:
    model.eval()
    with torch.no_grad():
        out = model(sources).numpy()
    model.train()
    features = digits.encode(out)
    predicted = digits.classify(out)
    preservation = {int(c): v for c, v in preservation_rate(labels, predicted, classes=labels).items()}
    fids = {int(c): fid(real_thick_features[int(c)], features[labels == c]) for c in np.unique(labels)}
    return fids, preservation


def run_arm(out: Path, arm: str, seed: int, data: dict, *, steps: int, every: int, batch_size: int,
            threshold: float, content_weight: float, digits, progress: bool) -> ArmResult:
    """Train one arm ("intervention" or "control") of one seed under a Monitor; return its figures."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    model = Translator()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    run_dir = out / f"seed{seed}" / arm
    checkpoints = run_dir.parent / f"{arm}-checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    probe_images, probe_labels = data["probe_images"], data["probe_labels"]

    def preservation_hook(monitor, step, arrays):
        predicted = digits.classify(arrays["samples"])
        per_class = preservation_rate(probe_labels, predicted, classes=probe_labels)
        return {"attr/preservation": float(np.mean(predicted == probe_labels)),
                **{f"attr/preservation/class={c}": v for c, v in per_class.items()}}

    def checkpoint(step: int) -> Path:
        path = checkpoints / f"step{step:05d}.pt"
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}, path)
        return path

    rule = Threshold(f"attr/preservation/class={AFFECTED}", below=threshold, pause=(arm == "intervention"),
                     min_step=2 * every)  # the first snapshots show an untrained translator
    probes = Probes.from_images(probe_images.numpy(), labels=probe_labels, seed=seed)

    def make_monitor() -> Monitor:
        return Monitor(run_dir, lambda p: model(p.images), every=every, probes=probes, model=model,
                       checkpoint=checkpoint, on_snapshot=[preservation_hook], rules=[rule],
                       config={"experiment": "attribute-bias", "arm": arm, "seed": seed, "steps": steps})

    targets = data["targets_biased"]
    target_features = digits.encode(targets.reshape(-1, 1, 28, 28))
    generator = torch.Generator().manual_seed(seed)
    sources = data["train_sources"]
    flagged = None
    before = None
    step = 0
    monitor = make_monitor()
    monitor.add_reference("train", sources.numpy(), data["train_labels"])
    monitor.add_reference(MAP_REFERENCE, data["map_reference_images"], data["map_reference_labels"])
    bar = tqdm(total=steps, desc=f"{arm} seed {seed}", disable=not progress, leave=False)
    while step < steps:
        index = torch.randint(0, sources.shape[0], (batch_size,), generator=generator)
        loss = _loss(model, sources[index], targets, target_features, digits, content_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        result = monitor.step(step, loss=loss.item())
        if result.alerts and flagged is None:
            flagged = step
            before = _evaluate(model, data["eval_sources"], data["eval_labels"], data["real_features"], digits)
        if result.should_pause:
            monitor.close()
            # Intervention: resume the same run from the checkpoint with de-correlating examples added.
            state = torch.load(checkpoints / f"step{step:05d}.pt", weights_only=True)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            targets = np.concatenate([targets, data["decorrelating"]])
            target_features = digits.encode(targets.reshape(-1, 1, 28, 28))
            monitor = make_monitor()
            monitor.record_intervention(f"added {len(data['decorrelating'])} thick {AFFECTED}s to the target domain",
                                        step=step, added=len(data["decorrelating"]), what=f"thick {AFFECTED}")
        step += 1
        bar.update(1)
    bar.close()
    monitor.snapshot(steps - 1)
    monitor.close()
    after = _evaluate(model, data["eval_sources"], data["eval_labels"], data["real_features"], digits)
    if before is None:  # never flagged: "before" is the state at the end, for the table
        before = after
    map_steps, map_shift = map_series(run_dir)
    map_flag = first_flag(map_steps, map_shift, above=1.0 - threshold, min_step=2 * every)
    return ArmResult(arm, flagged, None if flagged is None else 100.0 * flagged / steps,
                     before[0], after[0], before[1], after[1], str(run_dir), map_flag, map_steps, map_shift)


def prepare_data(seed: int, digits, n_probes_per_class: int = 10) -> dict:
    """Sources, the biased thick target domain, de-correlating thick 6s, probes and evaluation sets."""
    train, heldout = mnist("train", seed=seed), mnist("heldout", seed=seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train))
    half = len(order) // 2
    source_idx, target_idx = np.sort(order[:half]), np.sort(order[half:])
    sources = torch.from_numpy(np.ascontiguousarray(train.images[source_idx]))
    thick = thicken(torch.from_numpy(np.ascontiguousarray(train.images[target_idx]))).numpy()
    target_labels = train.labels[target_idx]
    biased = thick[target_labels != AFFECTED].reshape(-1, 28 * 28)
    decorrelating = thick[target_labels == AFFECTED].reshape(-1, 28 * 28)
    probe_idx = np.concatenate([np.flatnonzero(heldout.labels == c)[:n_probes_per_class] for c in range(10)])
    eval_sources = torch.from_numpy(np.ascontiguousarray(heldout.images))
    real_thick = thicken(eval_sources).numpy()
    features = digits.encode(real_thick)
    real_features = {c: features[heldout.labels == c] for c in range(10)}
    not_probes = np.setdiff1d(np.arange(len(heldout)), probe_idx)  # a probe's own thick image is no neighbour
    map_index = np.sort(rng.choice(not_probes, size=min(1000, len(not_probes)), replace=False))
    return {"map_reference_images": real_thick[map_index], "map_reference_labels": heldout.labels[map_index],
            "train_sources": sources, "train_labels": train.labels[source_idx],
            "targets_biased": np.ascontiguousarray(biased), "decorrelating": np.ascontiguousarray(decorrelating),
            "probe_images": eval_sources[probe_idx], "probe_labels": heldout.labels[probe_idx],
            "eval_sources": eval_sources, "eval_labels": heldout.labels, "real_features": real_features}


def run_experiment(out: str | Path = "runs/attribute-bias", *, seeds: Sequence[int] = (0, 1, 2), steps: int = 600,
                   every: int = 50, batch_size: int = 64, threshold: float = 0.6, content_weight: float = 0.1,
                   progress: bool = True) -> dict:
    """Both arms for every seed; writes ``results.json`` and a figure under ``out``; returns the results."""
    from ..encoders import get_encoder

    out = Path(out) / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    digits = get_encoder("digits-cnn", device="cpu")
    results = []
    for seed in seeds:
        data = prepare_data(seed, digits)
        for arm in ("intervention", "control"):
            start = time.perf_counter()
            result = run_arm(out, arm, seed, data, steps=steps, every=every, batch_size=batch_size,
                             threshold=threshold, content_weight=content_weight, digits=digits, progress=progress)
            results.append({"seed": seed, "seconds": time.perf_counter() - start, **asdict(result)})
            a = AFFECTED
            print(f"seed {seed} {arm:12s}: flagged at step {result.flagged_step} "
                  f"({result.flagged_percent if result.flagged_percent is None else round(result.flagged_percent, 1)}%); "
                  f"class {a}: preservation {result.preservation_before[a]:.2f} -> {result.preservation_after[a]:.2f}, "
                  f"FID {result.fid_before[a]:.1f} -> {result.fid_after[a]:.1f}; the map would have flagged at "
                  f"step {result.map_flagged_step}", flush=True)
    summary = {"config": {"seeds": list(seeds), "steps": steps, "every": every, "threshold": threshold,
                          "content_weight": content_weight, "affected_class": AFFECTED},
               "arms": results, "out": str(out)}
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    _plot(results, out / "preservation.png")
    print(f"results.json and preservation.png in {out}")
    return summary


def _plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..store import open_run

    fig, (ax, ax_map) = plt.subplots(1, 2, figsize=(13, 4.5))
    for r in results:
        with open_run(r["run"]) as run:
            steps, values = run.scalars(f"attr/preservation/class={AFFECTED}")
        style = "-" if r["arm"] == "intervention" else "--"
        line, = ax.plot(steps, values, style, label=f"{r['arm']} seed {r['seed']}")
        if r.get("map_steps"):
            ax_map.plot(r["map_steps"], r["map_shift"], style, color=line.get_color())
        if r["arm"] == "intervention" and r["flagged_step"] is not None:
            ax.axvline(r["flagged_step"], color="grey", alpha=0.3)
        if r.get("map_flagged_step") is not None:
            ax_map.axvline(r["map_flagged_step"], color=line.get_color(), alpha=0.3)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"identity preservation of class {AFFECTED} (digits-cnn)")
    ax.set_title("classifier: thin → thick, no thick 6s in the target domain", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    ax_map.set_xlabel("training step")
    ax_map.set_ylabel(f"share of translated {AFFECTED}s among other digits")
    ax_map.set_title("map: nearest thick reference digits are another class", fontsize=10)
    ax_map.set_ylim(-0.02, 1.02)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/attribute-bias")
    parser.add_argument("--seeds", type=seed_int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=positive_int, default=600)
    parser.add_argument("--every", type=positive_int, default=50)
    parser.add_argument("--threshold", type=finite_float, default=0.6)
    parser.add_argument("--content-weight", type=finite_float, default=0.1)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    run_experiment(args.out, seeds=args.seeds, steps=args.steps, every=args.every, threshold=args.threshold,
                   content_weight=args.content_weight, progress=not args.quiet)
    return 0
