"""Exact nearest neighbours: evolens' blocked search vs scikit-learn's brute-force NearestNeighbors.

10,000 queries against 100,000 x 512 float32 references (sizes adjustable); prints wall time, the ratio, and
peak memory of each (tracemalloc; inputs excluded), and checks that the neighbours agree.

    python benchmarks/proximity.py [--queries 10000] [--reference 100000] [--dim 512] [--k 5]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
from sklearn.neighbors import NearestNeighbors

from evolens.metrics import nearest_neighbors


def measure(fn):
    tracemalloc.start()
    start = time.perf_counter()
    try:
        result = fn()
        return result, time.perf_counter() - start, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--reference", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((args.reference, args.dim), dtype=np.float32)
    queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)

    (ours_d, ours_i), t_ours, m_ours = measure(lambda: nearest_neighbors(queries, reference, args.k))
    index = NearestNeighbors(n_neighbors=args.k, algorithm="brute").fit(reference)
    (sk_d, sk_i), t_sk, m_sk = measure(lambda: index.kneighbors(queries))
    agree = float(np.mean(ours_i == sk_i))
    print(f"{args.queries} queries x {args.reference} references x {args.dim} dims, k={args.k} (float32)")
    print(f"evolens nearest_neighbors: {t_ours:7.2f} s, peak {m_ours:8.1f} MiB")
    print(f"sklearn brute kneighbors : {t_sk:7.2f} s, peak {m_sk:8.1f} MiB")
    print(f"speed-up {t_sk / t_ours:.2f}x; identical neighbour indices {agree:.4%}; "
          f"max distance difference {np.abs(ours_d - sk_d).max():.2e}")


if __name__ == "__main__":
    main()
