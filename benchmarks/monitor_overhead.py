"""Monitoring overhead on a real training loop: the demo cVAE with and without the Monitor.

Runs the demo training loop (conditional VAE on MNIST-5k, CPU unless CUDA is present) alternately without
and with an evolens Monitor at the default schedule (``Monitor(every=100)``: 100 probes sampled and stored
every 100 steps, the loss logged every step), several times each, and prints the median wall time of each
and their ratio. Checkpoint saving is switched off in both arms: it is the training script's own cost.

On a shared 2-core machine run-to-run noise (several %) exceeds the 2% target, so the benchmark also times
every call into evolens inside the monitored runs (Monitor construction, reference storage, every
``Monitor.step``) and reports that attributable time as a fraction of the unmonitored wall time: the precise
figure. Target (docs/architecture.md): overhead < 2%.

    python benchmarks/monitor_overhead.py [--epochs 10] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from evolens import Monitor
from evolens.experiments.demo import train_demo

DEFAULT_EVERY = Monitor.__init__.__defaults__[0]
_spent = [0.0]


def _timed(method):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            _spent[0] += time.perf_counter() - start

    return wrapper


for _name in ("__init__", "step", "log", "snapshot", "add_reference", "close"):
    setattr(Monitor, _name, _timed(getattr(Monitor, _name)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    train_demo(None, epochs=1, max_steps=20, progress=False)  # warm-up: data cache, kernels, allocator
    plain, monitored, capture, attributable = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            start = time.perf_counter()
            result = train_demo(None, epochs=args.epochs, progress=False)
            plain.append(time.perf_counter() - start)
            run_dir = Path(tmp) / f"run{i}"
            _spent[0] = 0.0
            start = time.perf_counter()
            result = train_demo(run_dir, epochs=args.epochs, every=DEFAULT_EVERY, progress=False,
                                checkpoint_every=10**12)
            monitored.append(time.perf_counter() - start)
            attributable.append(_spent[0])
            from evolens import open_run

            with open_run(run_dir) as run:
                capture.append(sum(s.capture_seconds for s in run.snapshots()))
            print(f"repeat {i}: plain {plain[-1]:.2f} s, monitored {monitored[-1]:.2f} s, inside evolens "
                  f"{attributable[-1]:.3f} s ({result.steps} steps, {result.snapshots} snapshots)", flush=True)
    p, m = statistics.median(plain), statistics.median(monitored)
    print()
    print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, torch threads {torch.get_num_threads()}")
    print(f"schedule: every={DEFAULT_EVERY} steps; {args.epochs} epochs x 32 steps; {args.repeats} repeats each")
    print(f"median wall time  plain {p:.3f} s   monitored {m:.3f} s")
    print(f"time inside snapshots (sample + write), median {statistics.median(capture):.3f} s")
    a = statistics.median(attributable)
    print(f"time inside evolens calls (Monitor init, references, step, close), median {a:.3f} s")
    print(f"end-to-end ratio monitored/plain = {m / p:.4f}  (noisy: wall-time spread between repeats "
          f"{(max(plain) - min(plain)) / p:.1%})")
    print(f"attributable overhead = evolens time / plain wall time = {a / p:.2%}  (target < 2%)")


if __name__ == "__main__":
    main()
