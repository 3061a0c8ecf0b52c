"""Evolutionary projection vs umap-learn's AlignedUMAP and vs independent per-snapshot t-SNE, in one run.

Data: ``planted_evolution(10 snapshots, 2,000 instances, 512 dims)``: clusters that appear, split and drift.
For each method: wall time, neighbourhood preservation (k-NN recall and scikit-learn trustworthiness at
k = 10, mean over snapshots) and temporal stability (mean displacement of an instance between consecutive
snapshots / map scale; lower is steadier). Target: evolens >= 10x faster than AlignedUMAP with equal or
better trustworthiness and temporal stability.

    python benchmarks/projection.py [--snapshots 10] [--points 2000] [--dim 512]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from evolens.projection import EvolutionaryTSNE, knn_recall, planted_evolution, temporal_stability, trustworthiness


def scores(snapshots, embeddings, ids, k=10):
    return {
        "knn_recall": float(np.mean([knn_recall(x, y, k) for x, y in zip(snapshots, embeddings)])),
        "trustworthiness": float(np.mean([trustworthiness(x, y, k) for x, y in zip(snapshots, embeddings)])),
        "temporal_stability": temporal_stability(embeddings, ids),
    }


def run_evolens(snapshots, ids, seed):
    model = EvolutionaryTSNE(random_state=seed).fit(snapshots, ids)
    return model.embedding_


def run_aligned_umap(snapshots, ids, seed):
    from umap import AlignedUMAP

    relations = [{i: i for i in range(len(ids[t]))} for t in range(len(snapshots) - 1)]
    model = AlignedUMAP(random_state=seed).fit(snapshots, relations=relations)
    return [np.asarray(e) for e in model.embeddings_]


def run_independent_tsne(snapshots, ids, seed):
    import openTSNE

    return [np.asarray(openTSNE.TSNE(random_state=seed, n_jobs=-1).fit(x)) for x in snapshots]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=10)
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    snapshots, ids, _, _ = planted_evolution(args.snapshots, args.points, args.dim, seed=args.seed)
    import openTSNE  # noqa: F401  - imports are not part of the timings
    import umap  # noqa: F401

    rows = {}
    for name, fn in (("evolens EvolutionaryTSNE", run_evolens), ("umap-learn AlignedUMAP", run_aligned_umap),
                     ("independent openTSNE per snapshot", run_independent_tsne)):
        start = time.perf_counter()
        embeddings = fn(snapshots, ids, args.seed)
        seconds = time.perf_counter() - start
        rows[name] = {"seconds": seconds, **scores(snapshots, embeddings, ids)}
        print(f"done: {name} in {seconds:.1f} s", flush=True)
    base = rows["evolens EvolutionaryTSNE"]["seconds"]
    print(f"\n{args.snapshots} snapshots x {args.points} points x {args.dim} dims")
    print(f"{'method':36s} {'seconds':>8s} {'vs evolens':>10s} {'kNN recall':>10s} {'trustw.':>8s} {'temporal':>9s}")
    for name, row in rows.items():
        print(f"{name:36s} {row['seconds']:8.1f} {row['seconds'] / base:9.1f}x {row['knn_recall']:10.3f} "
              f"{row['trustworthiness']:8.3f} {row['temporal_stability']:9.3f}")


if __name__ == "__main__":
    main()
