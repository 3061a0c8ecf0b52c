"""evolens: watch a generative model while it trains.

Public API::

    import evolens
    monitor = evolens.Monitor(run_dir, sample_fn, every=100, probes=evolens.Probes.from_noise(64, 128))
    monitor.step(step, loss=loss)          # inside the training loop
    run = evolens.open_run(run_dir)        # anywhere, also while training runs
    evolens.analyses.quality(run, encoder="efficientnet-lite0", reference="train")

Names are loaded on first use, so ``import evolens`` (and the ``evolens`` command) starts without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import EvolensError, InputError, NotARunError, RunLockedError, StoreIntegrityError
from .store import Run, find_runs, open_run

__version__ = "0.2.0"

_LAZY = {
    "AtSteps": "evolens.capture",
    "Every": "evolens.capture",
    "LogSpaced": "evolens.capture",
    "Monitor": "evolens.capture",
    "Probes": "evolens.capture",
    "StepResult": "evolens.capture",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "analyses":
        return importlib.import_module("evolens.analyses")
    raise AttributeError(f"module 'evolens' has no attribute {name!r}")


__all__ = [
    "AtSteps",
    "Every",
    "EvolensError",
    "InputError",
    "LogSpaced",
    "Monitor",
    "NotARunError",
    "Probes",
    "Run",
    "RunLockedError",
    "StepResult",
    "StoreIntegrityError",
    "__version__",
    "analyses",
    "find_runs",
    "open_run",
]
