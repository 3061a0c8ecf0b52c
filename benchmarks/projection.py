"""Evolutionary projection vs umap-learn's AlignedUMAP and vs independent per-snapshot t-SNE, in one run.

Data: ``planted_evolution(10 snapshots, 2,000 instances, 512 dims)`` — clusters that appear, split and drift —
or, with ``--run DIR``, the digits-cnn features of a run's snapshots (e.g. ``make demo``'s run). For each method:
wall time, neighbourhood preservation (k-NN recall and scikit-learn trustworthiness at k = 10, mean over
snapshots) and temporal stability (mean displacement of an instance between consecutive snapshots / map scale;
lower is steadier). Targets (issue 17), checked and printed as ratios measured in this run:

- k-NN recall of evolens ≥ 0.9 × that of independent openTSNE per snapshot;
- temporal stability of evolens ≤ that of AlignedUMAP (at least as steady);
- evolens ≥ 10× faster than AlignedUMAP.

    python benchmarks/projection.py [--snapshots 10] [--points 2000] [--dim 512] [--run DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from evolens.projection import EvolutionaryTSNE, knn_recall, planted_evolution, temporal_stability, trustworthiness

EVOLENS = "evolens EvolutionaryTSNE (per-snapshot)"
JOINT = "evolens EvolutionaryTSNE (joint)"
ALIGNED_UMAP = "umap-learn AlignedUMAP"
OPENTSNE = "independent openTSNE per snapshot"


def scores(snapshots, embeddings, ids, k=10):
    return {
        "knn_recall": float(np.mean([knn_recall(x, y, k) for x, y in zip(snapshots, embeddings)])),
        "trustworthiness": float(np.mean([trustworthiness(x, y, k) for x, y in zip(snapshots, embeddings)])),
        "temporal_stability": temporal_stability(embeddings, ids),
    }


def run_evolens(snapshots, ids, seed, affinities="per-snapshot"):
    model = EvolutionaryTSNE(affinities=affinities, random_state=seed).fit(snapshots, ids)
    return model.embedding_


def run_joint(snapshots, ids, seed):
    return run_evolens(snapshots, ids, seed, affinities="joint")


def run_aligned_umap(snapshots, ids, seed):
    from umap import AlignedUMAP

    from evolens.projection import matched_indices

    relations = [dict(zip(*matched_indices(ids[t], ids[t + 1]))) for t in range(len(snapshots) - 1)]
    model = AlignedUMAP(random_state=seed).fit(snapshots, relations=relations)
    return [np.asarray(e) for e in model.embeddings_]


def run_independent_tsne(snapshots, ids, seed):
    import openTSNE

    return [np.asarray(openTSNE.TSNE(random_state=seed, n_jobs=-1).fit(x)) for x in snapshots]


def run_features(run_dir: str, snapshots: int):
    """digits-cnn features and probe ids of up to ``snapshots`` evenly spaced snapshots of a run."""
    from evolens import open_run
    from evolens.analyses import embedding

    with open_run(run_dir) as run:
        steps = run.steps()
        chosen = [int(s) for s in steps[np.unique(np.linspace(0, len(steps) - 1, snapshots).round().astype(int))]]
        embedded = embedding(run, encoder="digits-cnn", reference=False, steps=chosen, progress=False)
        return [np.asarray(embedded.snapshots[s], dtype=np.float32) for s in chosen], \
            [run.probe_ids(s) for s in chosen]


def targets(rows: dict) -> dict[str, dict]:
    """The three targets as measured ratios, each with whether it holds."""
    ours, umap, tsne = rows[EVOLENS], rows[ALIGNED_UMAP], rows[OPENTSNE]
    recall = ours["knn_recall"] / tsne["knn_recall"]
    stability = ours["temporal_stability"] / umap["temporal_stability"]
    speed = umap["seconds"] / ours["seconds"]
    return {
        "knn_recall_vs_per_snapshot_tsne": {"ratio": recall, "target": ">= 0.9", "holds": recall >= 0.9},
        "temporal_stability_vs_aligned_umap": {"ratio": stability, "target": "<= 1", "holds": stability <= 1.0},
        "speedup_vs_aligned_umap": {"ratio": speed, "target": ">= 10", "holds": speed >= 10},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=10)
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", default=None, help="use the digits-cnn features of this run's snapshots")
    parser.add_argument("--skip-joint", action="store_true", help="leave out evolens's joint mode")
    parser.add_argument("--json", default=None, help="also write the table and targets to this JSON file")
    args = parser.parse_args()
    if args.run:
        snapshots, ids = run_features(args.run, args.snapshots)
        data = f"{len(snapshots)} snapshots of {args.run} (digits-cnn, {snapshots[0].shape[1]}-d)"
    else:
        snapshots, ids, _, _ = planted_evolution(args.snapshots, args.points, args.dim, seed=args.seed)
        data = f"planted evolution, {args.snapshots} snapshots x {args.points} points x {args.dim} dims"
    import openTSNE  # noqa: F401  - imports are not part of the timings
    import umap  # noqa: F401

    methods = [(EVOLENS, run_evolens), (JOINT, run_joint), (ALIGNED_UMAP, run_aligned_umap),
               (OPENTSNE, run_independent_tsne)]
    rows = {}
    for name, fn in methods:
        if args.skip_joint and name == JOINT:
            continue
        start = time.perf_counter()
        embeddings = fn(snapshots, ids, args.seed)
        seconds = time.perf_counter() - start
        rows[name] = {"seconds": seconds, **scores(snapshots, embeddings, ids)}
        print(f"done: {name} in {seconds:.1f} s", flush=True)
    base = rows[EVOLENS]["seconds"]
    print(f"\n{data}")
    print(f"| method | seconds | × evolens time | kNN recall | trustworthiness | temporal (lower = steadier) |")
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['seconds']:.1f} | {row['seconds'] / base:.1f} | {row['knn_recall']:.3f} "
              f"| {row['trustworthiness']:.3f} | {row['temporal_stability']:.3f} |")
    checks = targets(rows)
    print()
    for name, check in checks.items():
        print(f"target {name}: {check['ratio']:.2f} ({check['target']}) -> {'holds' if check['holds'] else 'MISSED'}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"data": data, "rows": rows, "targets": checks}, handle, indent=2, default=bool)


if __name__ == "__main__":
    main()
