"""KID, FID, precision/recall(/density/coverage), Vendi and k-NN: evolens against each peer library, on the same
float32 features, in one run. Time (best of ``--repeat``) and peak memory per call, each call in a fresh
process (peak RSS above the process's state just before the call: inputs and imports excluded), and the value.

Peers: torch-fidelity 0.4, torchmetrics, clean-fid (feature-level code imported beside a stand-in torchvision,
see ``peers.py``), the ``prdc`` package, ``vendi-score``, scikit-learn and FAISS. Targets (issue 18): KID at least
1.5x faster than torch-fidelity at no more memory.

    python benchmarks/metrics_peers.py [--n 5000] [--dim 2048] [--repeat 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _features(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((16, dim)) / 4.0  # a 16-d manifold in dim-d, as encoder features are
    real = rng.standard_normal((n, 16)) @ basis + 0.05 * rng.standard_normal((n, dim))
    fake = (0.9 * rng.standard_normal((n, 16)) + 0.3) @ basis + 0.05 * rng.standard_normal((n, dim))
    return real.astype(np.float32), fake.astype(np.float32)


def implementations(subsets: int, subset_size: int, k: int) -> dict[str, dict[str, object]]:
    """metric -> implementation -> fn(real, fake) -> value (a float or a dict of floats)."""
    from peers import import_peers

    import evolens.metrics as M

    peers = import_peers()
    table: dict[str, dict[str, object]] = {"KID": {}, "FID": {}, "PRDC": {}, "Vendi": {}, "kNN": {}}
    table["KID"]["evolens"] = lambda r, f: M.kid(r, f, subsets=subsets, subset_size=subset_size)[0]
    table["FID"]["evolens"] = M.fid
    table["PRDC"]["evolens"] = lambda r, f: vars(M.prdc(r, f, k=k))
    table["Vendi"]["evolens"] = lambda r, f: M.vendi(f)
    table["kNN"]["evolens"] = lambda r, f: float(M.nearest_neighbors(f, r, k=k)[0].mean())

    import torch

    if not isinstance(tf := peers["torch_fidelity_kid"], Exception):
        table["KID"]["torch-fidelity"] = lambda r, f: tf.kid_features_to_metric(
            torch.from_numpy(r), torch.from_numpy(f), kid_subsets=subsets, kid_subset_size=subset_size,
            verbose=False)["kernel_inception_distance_mean"]
    if not isinstance(tff := peers["torch_fidelity_fid"], Exception):
        table["FID"]["torch-fidelity"] = lambda r, f: tff.fid_statistics_to_metric(
            tff.fid_features_to_statistics(torch.from_numpy(r)), tff.fid_features_to_statistics(torch.from_numpy(f)),
            False)["frechet_inception_distance"]
    if not isinstance(tfp := peers["torch_fidelity_prc"], Exception):
        table["PRDC"]["torch-fidelity (P/R, k=3)"] = lambda r, f: {
            key.split("_")[0]: v for key, v in tfp.prc_features_to_metric(
                torch.from_numpy(f), torch.from_numpy(r), prc_neighborhood=3, prc_batch_size=10000,
                save_cpu_ram=True, verbose=False).items()}
        table["PRDC"]["evolens (P/R, k=3)"] = lambda r, f: {key: v for key, v in vars(M.prdc(r, f, k=3)).items()
                                                            if key in ("precision", "recall")}
    if not isinstance(tmk := peers["torchmetrics_kid"], Exception):
        def torchmetrics_kid(r, f):
            real, fake = torch.from_numpy(r), torch.from_numpy(f)
            generator = torch.Generator().manual_seed(0)
            scores = []
            for _ in range(subsets):  # KernelInceptionDistance.compute's loop, on the features
                a = real[torch.randperm(len(real), generator=generator)[:subset_size]]
                b = fake[torch.randperm(len(fake), generator=generator)[:subset_size]]
                scores.append(tmk.poly_mmd(a, b))
            return float(torch.stack(scores).mean())
        table["KID"]["torchmetrics"] = torchmetrics_kid
    if not isinstance(tmf := peers["torchmetrics_fid"], Exception):
        def torchmetrics_fid(r, f):  # FrechetInceptionDistance.compute: float64 sums, then _compute_fid
            stats = []
            for x in (torch.from_numpy(r).double(), torch.from_numpy(f).double()):
                mean = x.mean(0)
                cov = (x.T @ x - len(x) * torch.outer(mean, mean)) / (len(x) - 1)
                stats.append((mean, cov))
            return float(tmf._compute_fid(stats[0][0], stats[0][1], stats[1][0], stats[1][1]))
        table["FID"]["torchmetrics"] = torchmetrics_fid
    if not isinstance(cf := peers["cleanfid"], Exception):
        table["KID"]["clean-fid"] = lambda r, f: cf.kernel_distance(r, f, num_subsets=subsets,
                                                                     max_subset_size=subset_size)
        table["FID"]["clean-fid"] = cf.fid_from_feats
    if not isinstance(pr := peers["prdc"], Exception):
        def prdc_package(r, f):
            import contextlib
            import io

            with contextlib.redirect_stdout(io.StringIO()):
                return {key: float(v) for key, v in pr.compute_prdc(r, f, k).items()}
        table["PRDC"]["prdc"] = prdc_package
    if not isinstance(vs := peers["vendi"], Exception):
        table["Vendi"]["vendi-score"] = lambda r, f: float(vs.score_dual(f.astype(np.float64), q=1))
    if not isinstance(fa := peers["faiss"], Exception):
        def faiss_knn(r, f):
            index = fa.IndexFlatL2(r.shape[1])
            index.add(np.ascontiguousarray(r))
            distances, _ = index.search(np.ascontiguousarray(f), k)
            return float(np.sqrt(np.maximum(distances, 0)).mean())
        table["kNN"]["faiss"] = faiss_knn

    def sklearn_knn(r, f):
        from sklearn.neighbors import NearestNeighbors

        return float(NearestNeighbors(n_neighbors=k).fit(r).kneighbors(f)[0].mean())
    table["kNN"]["scikit-learn"] = sklearn_knn
    return table


def _measure(args: tuple) -> dict:
    """In a fresh process: load the features, build the table, time one implementation, peak RSS above start."""
    data, metric, name, subsets, subset_size, k, repeat = args
    import torch

    torch.set_num_threads(int(torch.get_num_threads()))
    real, fake = np.load(data / "real.npy"), np.load(data / "fake.npy")
    fn = implementations(subsets, subset_size, k)[metric][name]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn(real, fake)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB on Linux
    return {"metric": metric, "implementation": name, "seconds": min(times), "peak_mib": peak / 1024,
            "value": value}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--subsets", type=int, default=100)
    parser.add_argument("--subset-size", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--metrics", nargs="+", default=["KID", "FID", "PRDC", "Vendi", "kNN"])
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    real, fake = _features(args.n, args.dim)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        np.save(data / "real.npy", real)
        np.save(data / "fake.npy", fake)
        table = implementations(args.subsets, args.subset_size, args.k)
        context = mp.get_context("spawn")
        for metric in args.metrics:
            for name in table[metric]:
                with context.Pool(1) as pool:  # a fresh process per measurement: its own peak RSS
                    row = pool.apply(_measure, ((data, metric, name, args.subsets, args.subset_size, args.k,
                                                 args.repeat),))
                rows.append(row)
                print(f"{metric:6s} {name:28s} {row['seconds']:8.2f} s {row['peak_mib']:9.1f} MiB  "
                      f"{_short(row['value'])}", flush=True)
    print(f"\n| metric | implementation | s | peak MiB | time vs evolens | value |\n|---|---|---|---|---|---|")
    for row in rows:
        ours = next(r for r in rows if r["metric"] == row["metric"] and r["implementation"].startswith("evolens")
                    and ("k=3" in r["implementation"]) == ("k=3" in row["implementation"]))
        print(f"| {row['metric']} | {row['implementation']} | {row['seconds']:.2f} | {row['peak_mib']:.0f} | "
              f"{row['seconds'] / ours['seconds']:.2f}x | {_short(row['value'])} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return rows


def _short(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:.4g}" for k, v in value.items())
    return f"{value:.6g}"


if __name__ == "__main__":
    main()
