"""Quality metrics against the reference implementations, in one run, as ratios.

- FID on n x 2048 features: evolens ``fid`` vs the ``scipy.linalg.sqrtm`` path that pytorch-fid and
  clean-fid use (same statistics code; the difference is the matrix square root). Target: >= 4x faster,
  same value (1e-6 relative).
- precision/recall/density/coverage on n x 2048: evolens ``prdc`` (blocked, one pass per k) vs the ``prdc``
  package. Target: >= 3x faster; and peak memory flat as n grows (evolens' is bounded by its block size,
  prdc's grows as n²). Peak memory is measured with tracemalloc (numpy reports its buffers to it).

    python benchmarks/metrics.py [--n 10000] [--dim 2048]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
import tracemalloc

import numpy as np
import scipy.linalg

from evolens.metrics import fid, prdc


def reference_fid(real: np.ndarray, fake: np.ndarray) -> float:
    """pytorch-fid's calculate_frechet_distance (scipy.linalg.sqrtm of sigma1 @ sigma2)."""
    mu1, mu2 = real.mean(axis=0), fake.mean(axis=0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * 1e-6
        covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def reference_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict:
    from prdc import compute_prdc

    with contextlib.redirect_stdout(io.StringIO()):
        return compute_prdc(real, fake, k)


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def peak_mib(fn, *args) -> float:
    tracemalloc.start()
    try:
        fn(*args)
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    # Features on a 16-d manifold in 2,048-d (as encoder features are), fake slightly shifted and narrower:
    # precision/recall/density/coverage take non-trivial values.
    basis = rng.standard_normal((16, args.dim)) / 4.0
    real = (rng.standard_normal((args.n, 16)) @ basis + 0.05 * rng.standard_normal((args.n, args.dim)))
    fake = ((0.9 * rng.standard_normal((args.n, 16)) + 0.3) @ basis + 0.05 * rng.standard_normal((args.n, args.dim)))
    real, fake = real.astype(np.float32), fake.astype(np.float32)

    ours, t_ours = timed(fid, real, fake)
    ref, t_ref = timed(reference_fid, real.astype(np.float64), fake.astype(np.float64))
    print(f"FID {args.n}x{args.dim}: evolens {ours:.6f} in {t_ours:.2f} s; scipy.sqrtm path {ref:.6f} in {t_ref:.2f} s")
    print(f"  relative difference {abs(ours - ref) / abs(ref):.2e}; speed-up {t_ref / t_ours:.2f}x (target >= 4x)")

    mine, t_mine = timed(prdc, real, fake, args.k)
    theirs, t_theirs = timed(reference_prdc, real, fake, args.k)
    print(f"PRDC {args.n}x{args.dim}, k={args.k}: evolens {t_mine:.2f} s; prdc {t_theirs:.2f} s; "
          f"speed-up {t_theirs / t_mine:.2f}x (target >= 3x)")
    for name in ("precision", "recall", "density", "coverage"):
        print(f"  {name:9s} evolens {getattr(mine, name):.6f}  prdc {float(theirs[name]):.6f}")

    print("peak memory (MiB, tracemalloc) as n grows, inputs excluded:")
    for n in (args.n // 4, args.n // 2, args.n):
        r, f = real[:n], fake[:n]
        print(f"  n={n:6d}: evolens prdc {peak_mib(prdc, r, f, args.k):8.1f}   "
              f"prdc package {peak_mib(reference_prdc, r, f, args.k):8.1f}")


if __name__ == "__main__":
    main()
