"""Child process for the crash tests: captures snapshots into a run, optionally SIGKILLs itself mid-write.

Usage: python crash_child.py RUN_DIR FIRST_STEP LAST_STEP [KILL_AT_STEP]
Prints "captured <step>" after each committed snapshot. With KILL_AT_STEP, the process kills itself with
SIGKILL inside the snapshot transaction of that step, after its array files are on disk.
"""

import os
import signal
import sys

import numpy as np

import evolens
from evolens.store import writer as writer_module

run_dir, first, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
kill_at = int(sys.argv[4]) if len(sys.argv) > 4 else None

if kill_at is not None:
    original = writer_module.RunWriter._index_array
    state = {"step": None}

    def killing_index(self, stored):
        if state["step"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, stored)

    writer_module.RunWriter._index_array = killing_index

probes = evolens.Probes.from_noise(16, (3, 32, 32), seed=1)


calls = [0]


def sample_fn(p):
    # New content at every snapshot, so every snapshot writes a new ~200 kB array file.
    calls[0] += 1
    return p.noise * (1.0 + 0.01 * calls[0])


monitor = evolens.Monitor(run_dir, sample_fn, every=1, probes=probes)
for step in range(first, last + 1):
    if kill_at is not None:
        state["step"] = step
    result = monitor.step(step, loss=float(step))
    if result.captured:
        print(f"captured {step}", flush=True)
monitor.close()
print("done", flush=True)
