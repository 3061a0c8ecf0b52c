"""Past one machine: copy rate against a million reference features, and embedding throughput on Ray.

1. **Copy rate of 10,000 samples against 1,000,000 × 512 reference features** (generated: a mixture of 1,000
   Gaussian clusters, like image embeddings; kept in 64 Ki-row shards on disk, as ``evolens embed --out`` and
   named references store them). Each method runs in a fresh process; time and peak RSS above the process's
   state before the call (the reference read shard by shard; sklearn needs the whole array in memory):
   the torch path, FAISS flat (both exact, through ``nearest_neighbors``), FAISS IVF (approximate, with its
   recall@2 against exact on 1,000 samples) and scikit-learn brute force. The torch path is also run on a
   reference 4× smaller to show its memory does not depend on the reference size. And FID + KID of the samples
   against the reference: read from its shards (at both sizes) and loaded in memory.
2. **Embedding throughput** of ``efficientnet-lite0`` on this machine: one process vs Ray Data with 1 and 2
   encoder actors (``ray.init(num_cpus=2)``), and the largest difference from the one-process features.

Targets (issue 20): exact path at least as fast as FAISS flat, or FAISS used for it; peak memory independent of
the reference size; a Ray run equal to the local one.

    python benchmarks/scale.py [--reference 1000000] [--queries 10000] [--images 256]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

DIM = 512


def _clustered(n: int, seed: int, centres: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (centres[rng.integers(0, len(centres), n)] + rng.normal(0, 1.0, (n, DIM))).astype(np.float32)


def write_reference(folder: Path, n: int, centres: np.ndarray) -> None:
    from evolens.store.shards import ShardWriter

    with ShardWriter(folder) as writer:
        for i, start in enumerate(tqdm(range(0, n, 65_536), desc=f"writing {n:,} reference rows", unit="shard")):
            writer.append(_clustered(min(65_536, n - start), 1000 + i, centres))


class RssSampler:
    """Samples this process's resident memory every 5 ms in a thread; ``stop()`` returns the peak above the RSS
    at the start, in MiB (ru_maxrss would report the high-water mark of the imports before the call instead)."""

    def __init__(self) -> None:
        import threading

        self.page = resource.getpagesize()
        self.start = self.peak = self._rss()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _rss(self) -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * self.page

    def _run(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        return (self.peak - self.start) / 2**20


def _measure(args: tuple) -> dict:
    """In a fresh process: one copy-rate computation; seconds, peak RSS above start (MiB), copy rate, recall."""
    method, reference_dir, queries_path = args
    import torch

    from evolens.metrics.proximity import approximate_nearest_neighbors, copy_rate_from_distances, nearest_neighbors
    from evolens.store.shards import ShardedFeatures

    torch.set_num_threads(int(torch.get_num_threads()))
    queries = np.load(queries_path)
    reference = ShardedFeatures(reference_dir)
    sampler = RssSampler()
    start = time.perf_counter()
    recall = None
    if method.startswith("fid+kid"):  # quality against the reference: shards streamed, or all in memory
        from evolens.metrics import quality as Q

        real = reference if method == "fid+kid" else reference.load()
        stats = Q.FeatureStatistics().update_blocks(b for _, b in reference_blocks_of(real))
        mu, cov = Q.fid_statistics(queries)
        fid = Q.frechet_distance(stats.mean, stats.cov, mu, cov)
        kid, _ = Q.kid(real, queries)
        seconds = time.perf_counter() - start
        return {"method": method, "reference": reference.shape[0], "seconds": seconds, "peak_mib": sampler.stop(),
                "copy_rate": float("nan"), "recall": None, "fid": fid, "kid": kid}
    if method in ("torch", "faiss"):
        distances, _ = nearest_neighbors(queries, reference, 2, backend=method)
    elif method == "faiss-ivf":
        distances, _, recall = approximate_nearest_neighbors(queries, reference, 2, method="ivf", recall_sample=1000)
    else:  # scikit-learn brute force: the whole reference in memory
        from sklearn.neighbors import NearestNeighbors

        distances, _ = NearestNeighbors(n_neighbors=2, algorithm="brute").fit(reference.load()).kneighbors(queries)
    seconds = time.perf_counter() - start
    peak = sampler.stop()
    return {"method": method, "reference": reference.shape[0], "seconds": seconds, "peak_mib": peak,
            "copy_rate": copy_rate_from_distances(distances, 1 / 3), "recall": recall}


def reference_blocks_of(real):
    from evolens.metrics._distances import reference_blocks

    return reference_blocks(real, 65_536)


def copy_rate_table(n_reference: int, n_queries: int, methods: list[str]) -> list[dict]:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3.0, (1000, DIM))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        small = max(n_reference // 4, 65_536)
        write_reference(root / "small", small, centres)
        write_reference(root / "full", n_reference, centres)
        from evolens.store.shards import ShardedFeatures

        queries = _clustered(n_queries, 1, centres)
        copied = rng.choice(small, n_queries // 100, replace=False)  # 1% near-copies of rows both references hold
        queries[: len(copied)] = ShardedFeatures(root / "full").take(copied) + 1e-3 * rng.normal(size=(len(copied), DIM))
        np.save(root / "queries.npy", queries)
        context = mp.get_context("spawn")
        plan = [(m, root / "small") for m in ("torch", "fid+kid") if m in methods] + [(m, root / "full")
                                                                                      for m in methods]
        for method, folder in plan:
            with context.Pool(1) as pool:
                row = pool.apply(_measure, ((method, folder, root / "queries.npy"),))
            rows.append(row)
            print(f"{method:10s} {row['reference']:>10,} refs {row['seconds']:8.1f} s {row['peak_mib']:8.0f} MiB "
                  f"copy rate {row['copy_rate']:.4f}" + (f" recall@2 {row['recall']:.3f}" if row["recall"] else "")
                  + (f" FID {row['fid']:.4f} KID {row['kid']:.6f}" if "fid" in row else ""), flush=True)
    return rows


def ray_throughput(n_images: int) -> list[dict]:
    import ray

    from evolens.analyses.ray_engine import NpySource, embed_sources
    from evolens.encoders import get_encoder

    encoder = get_encoder("efficientnet-lite0")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "images.npy"
        np.save(path, np.random.default_rng(0).random((n_images, 3, 32, 32), dtype=np.float32))
        start = time.perf_counter()
        local = encoder.encode(np.load(path))
        rows.append({"engine": "one process (2 torch threads)", "seconds": time.perf_counter() - start,
                     "max_abs_diff": 0.0})
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            for workers in (1, 2):
                start = time.perf_counter()
                (features,) = embed_sources(encoder, [NpySource(str(path), n_images)], workers=workers,
                                            progress=False)
                rows.append({"engine": f"Ray Data, {workers} actor{'s' if workers > 1 else ''}",
                             "seconds": time.perf_counter() - start,
                             "max_abs_diff": float(np.abs(features - local).max())})
        finally:
            ray.shutdown()
    for row in rows:
        row["images_per_s"] = n_images / row["seconds"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--methods", nargs="+", default=["torch", "faiss", "faiss-ivf", "sklearn", "fid+kid",
                                                         "fid+kid-memory"],
                        help="fid+kid: FID and KID of the queries with the reference read from its shards; "
                             "fid+kid-memory: the same with the reference loaded")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    copy = copy_rate_table(args.reference, args.queries, args.methods)
    print(f"\nCopy rate of {args.queries:,} samples against {args.reference:,} × {DIM} reference features (fresh "
          "process each, peak RSS above the start):\n")
    print("| method | reference rows | s | peak MiB | copy rate | recall@2 |\n|---|---|---|---|---|---|")
    for row in copy:
        recall = "" if row["recall"] is None else f"{row['recall']:.3f}"
        print(f"| {row['method']} | {row['reference']:,} | {row['seconds']:.1f} | {row['peak_mib']:.0f} | "
              f"{row['copy_rate']:.4f} | {recall} |")
    throughput = [] if args.skip_ray else ray_throughput(args.images)
    if throughput:
        print(f"\nefficientnet-lite0 on {args.images} images (3 × 32 × 32, resized to 224 by the encoder):\n")
        print("| engine | s | images/s | max |Δ| vs one process |\n|---|---|---|---|")
        for row in throughput:
            print(f"| {row['engine']} | {row['seconds']:.1f} | {row['images_per_s']:.1f} | {row['max_abs_diff']:.1e} |")
    print("\n" + json.dumps({"copy_rate": copy, "ray": throughput}))


if __name__ == "__main__":
    main()
