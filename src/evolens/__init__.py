"""evolens: watch a generative model while it trains.

Public API::

    import evolens
    monitor = evolens.Monitor(run_dir, sample_fn, every=100, probes=evolens.Probes.from_noise(64, 128))
    monitor.step(step, loss=loss)          # inside the training loop
    run = evolens.open_run(run_dir)        # anywhere, also while training runs
"""

from .capture import AtSteps, Every, LogSpaced, Monitor, Probes, StepResult
from .errors import EvolensError, InputError, NotARunError, RunLockedError, StoreIntegrityError
from .store import Run, find_runs, open_run

__version__ = "0.1.0"


def __getattr__(name: str):
    # Analyses pull in the encoders (and their weights packages): loaded on first use, not on import.
    if name in ("analyze_run", "analyze_attributes"):
        from . import analysis

        return getattr(analysis, name)
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
    "analyze_attributes",
    "analyze_run",
    "find_runs",
    "open_run",
]
