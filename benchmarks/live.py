"""Live analysis cost and verdict latency on the demo training (conditional VAE on MNIST-5k, digits-cnn).

Trains the demo model the same number of steps (a) with a Monitor only and (b) with a Monitor and live
analysis (quality, proximity and the map with digits-cnn), and reports

- the wall-time ratio (b)/(a) of the training loop (first to last logged loss), for the trainer pinned to one
  core with one torch thread in both arms and the worker to the other core (``Live(cpus=...)``; the target
  ≤ 1.05), and for both sharing the 2 cores (training with 2 threads alone, with 1 beside the worker: see
  docs/architecture.md on spin-waiting);
- the latency from a snapshot's commit to its ``live`` done-mark (all its metrics stored and its rules
  checked): p50 and p95, against the snapshot interval (target: below one interval);
- the worker's seconds per snapshot split by stage (encoders, quality, proximity, map, rules and marks; an
  in-process ``LiveWorker`` over a finished run), beside the floor: embedding one snapshot and the metric
  arithmetic alone, on arrays already in memory (what a two-stage worker that keeps its reference side
  prepared would still pay).

    python benchmarks/live.py [--epochs 10] [--every 25]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from evolens.analyses import Live
from evolens.experiments.demo import train_demo


def _latencies(run_dir: Path) -> tuple[np.ndarray, float]:
    """Seconds from each snapshot's commit to its live done-mark, and the mean snapshot interval (s)."""
    conn = sqlite3.connect(run_dir / "runs.sqlite")
    snaps = dict(conn.execute("SELECT step, wall_time FROM snapshots").fetchall())
    done = dict(conn.execute("SELECT step, created_at FROM analysis_steps WHERE analysis = 'live'").fetchall())
    conn.close()
    steps = sorted(s for s in snaps if s in done)
    times = np.array([snaps[s] for s in sorted(snaps)])
    return np.array([done[s] - snaps[s] for s in steps]), float(np.diff(times).mean())


def _train(run_dir: Path, epochs: int, every: int, live: Live | None, cpu: set[int] | None) -> float:
    if cpu is not None:
        os.sched_setaffinity(0, cpu)
    torch.set_num_threads(1 if cpu is not None and len(cpu) == 1 else len(os.sched_getaffinity(0)))
    start = time.perf_counter()
    train_demo(run_dir, epochs=epochs, every=every, progress=False, analyze=live, checkpoint_every=10**9)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--every", type=int, default=25)
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    train_demo(None, epochs=1, max_steps=20, progress=False)  # warm-up
    from evolens.encoders import get_encoder

    get_encoder("digits-cnn")  # trained and cached before timing
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label, trainer_cpus in (("pinned: trainer on core 0, worker on core 1", {cores[0]}),
                                    ("shared: both on every core", set(cores))):
            # train_demo waits for the worker after the loop: time the loop alone through the monitor's clock
            plain = _train(tmp / f"plain-{len(trainer_cpus)}", args.epochs, args.every, None, trainer_cpus)
            worker_cpus = [c for c in cores if c not in trainer_cpus] or cores
            live = Live(encoder="digits-cnn", analyses=("quality", "proximity", "map"),
                        cpus=worker_cpus if len(trainer_cpus) == 1 else None)
            start = time.perf_counter()
            run_dir = tmp / f"live-{len(trainer_cpus)}"
            os.sched_setaffinity(0, trainer_cpus)
            # (sched_setaffinity pins the calling thread only: with one torch thread all training runs on it)
            torch.set_num_threads(1 if len(trainer_cpus) == 1 else len(cores))
            train_demo(run_dir, epochs=args.epochs, every=args.every, progress=False, analyze=live,
                       checkpoint_every=10**9)
            total = time.perf_counter() - start
            conn = sqlite3.connect(run_dir / "runs.sqlite")
            first, last = conn.execute("SELECT MIN(wall_time), MAX(wall_time) FROM scalars WHERE name = 'loss'"
                                       ).fetchone()
            conn.close()
            plain_conn = sqlite3.connect(tmp / f"plain-{len(trainer_cpus)}" / "runs.sqlite")
            p_first, p_last = plain_conn.execute("SELECT MIN(wall_time), MAX(wall_time) FROM scalars "
                                                 "WHERE name = 'loss'").fetchone()
            plain_conn.close()
            latency, interval = _latencies(run_dir)
            print(f"{label}")
            print(f"  training loop: monitor only {p_last - p_first:.1f} s, with live analysis {last - first:.1f} s,"
                  f" ratio {(last - first) / (p_last - p_first):.3f}  (target <= 1.05 pinned)")
            print(f"  end to end incl. waiting for the worker: {total:.1f} s (monitor only {plain:.1f} s)")
            print(f"  verdict latency (commit -> all metrics stored): p50 {np.percentile(latency, 50):.2f} s, "
                  f"p95 {np.percentile(latency, 95):.2f} s; snapshot interval {interval:.2f} s")
        os.sched_setaffinity(0, set(cores))
        _stages(tmp, args.every)


def _stages(tmp: Path, every: int) -> None:
    """Seconds per snapshot by stage of a warm in-process worker, and the arithmetic floor."""
    from evolens import metrics
    from evolens.analyses import LiveWorker
    from evolens.encoders import get_encoder
    from evolens.store.run import open_run

    run_dir = tmp / "stages"
    train_demo(run_dir, epochs=4, every=every, progress=False, analyze=None, checkpoint_every=10**9)
    live = Live(encoder="digits-cnn", analyses=("quality", "proximity", "map"))
    worker = LiveWorker(run_dir, live)
    try:
        worker.poll()
    finally:
        worker.release()
    stages = {name: np.array(list(values)[1:] or list(values)) for name, values in worker.stage_seconds.items()}  # warm
    print(f"worker seconds per snapshot by stage (median over {len(stages['total'])} warm snapshots):")
    for name, values in stages.items():
        print(f"  {name:16s} {np.median(values):.3f} s")
    encoder = get_encoder("digits-cnn")
    with open_run(run_dir) as run:
        samples, train = run.samples(run.steps()[-1]), run.reference("train").images
        heldout = run.reference("heldout").images if "heldout" in run.reference_names() else train[:500]
    train_f, held_f = encoder.encode(train), encoder.encode(heldout)
    start = time.perf_counter()
    fake = encoder.encode(samples)
    embed = time.perf_counter() - start
    statistics = metrics.fid_statistics(train_f)
    start = time.perf_counter()
    metrics.fid_from_statistics(*statistics, *metrics.fid_statistics(fake))
    metrics.copy_rate(fake, train_f)
    metrics.nn_divergence(fake, train_f, held_f)
    arithmetic = time.perf_counter() - start
    print(f"  floor: embedding {len(samples)} samples {embed:.3f} s + FID, copy rate and NN divergence on "
          f"prepared reference features {arithmetic:.3f} s = {embed + arithmetic:.3f} s")


if __name__ == "__main__":
    main()
