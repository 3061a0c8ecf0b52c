"""Export a run to Weights & Biases in offline mode: every scalar series at its step, each snapshot's sample
grid as an image, the run's events as a table and its configuration. Nothing leaves the machine: the export is
a W&B offline run directory (``wandb sync DIR`` uploads it later, if the user wants).

Needs the ``wandb`` package (``pip install 'evolens[wandb]'``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import describe
from ..errors import InputError
from ..store.run import Run, opened

__all__ = ["export_wandb"]


def _steps_with_values(run: Run) -> dict[int, dict[str, float]]:
    """{step: {scalar name: value}} over every series, NaN values left out."""
    by_step: dict[int, dict[str, float]] = {}
    for name in run.scalar_names():
        steps, values = run.scalars(name)
        for step, value in zip(steps.tolist(), values.tolist()):
            if np.isfinite(value):
                by_step.setdefault(int(step), {})[name] = float(value)
    return by_step


def export_wandb(run: Run | str | os.PathLike, directory: str | os.PathLike, *, project: str = "evolens",
                 name: str | None = None, max_images: int = 64) -> Path:
    """Write ``run`` as a W&B offline run under ``directory``; returns the offline run's directory.

    Args:
        run: a ``Run`` or run directory.
        directory: where W&B writes (its ``wandb/offline-run-*`` folder goes inside; created).
        project: the W&B project name stored with the run.
        name: the W&B run name (default: the evolens run's name).
        max_images: samples per snapshot in the image grids.

    W&B wants steps logged in increasing order, so values are logged step by step (all series of one step in
    one ``log`` call); images go with their snapshot's step; the events table is logged at the last step.
    """
    try:
        import wandb
    except ImportError as exc:
        raise InputError(f"directory: exporting to W&B needs the wandb package (pip install 'evolens[wandb]'); "
                         f"{exc}") from exc
    if not isinstance(directory, (str, os.PathLike)):
        raise InputError(f"directory: expected a directory path, received {describe(directory)}")
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise InputError(f"max_images: expected a positive integer, received {describe(max_images)}")
    from ..views.data import sample_grid

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InputError(f"directory: expected a directory, received the file {str(directory)!r}")
    directory.mkdir(parents=True, exist_ok=True)
    with opened(run) as run:
        by_step = _steps_with_values(run)
        grids: dict[int, Any] = {}
        for snap in run.snapshots():
            grid = sample_grid(run, snap.step, max_images=max_images)
            if grid is not None:
                grids[snap.step] = grid
        events = [[e.step if e.step is not None else -1, e.kind, e.level, e.message] for e in run.events()]
        settings = wandb.Settings(mode="offline", console="off", silent=True, x_disable_stats=True,
                                  x_disable_meta=True, save_code=False)
        session = wandb.init(dir=str(directory), project=project, name=name or run.name, config=run.config,
                             settings=settings, reinit="create_new")
        try:
            for step in sorted(set(by_step) | set(grids)):
                values: dict[str, Any] = dict(by_step.get(step, {}))
                if step in grids:
                    values["samples"] = wandb.Image(grids[step], caption=f"step {step}")
                session.log(values, step=step)
            if events:
                last = max([*by_step, *grids], default=0)
                session.log({"events": wandb.Table(columns=["step", "kind", "level", "message"], data=events)},
                            step=last)
            run_dir = Path(session.dir).parent
        finally:
            session.finish()
    return run_dir
