"""Export a run to TensorBoard: every scalar series, the sample grid of every snapshot, the events (alerts,
pauses, interventions) as text, and the snapshots' features in the embedding projector with sample sprites.

Written with ``torch.utils.tensorboard.SummaryWriter`` (the ``tensorboard`` package: ``pip install
evolens[tensorboard]``); read back with TensorBoard's own ``EventAccumulator`` in the tests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..store.events import is_listed
from ..store.run import Run, opened

__all__ = ["TensorBoardMirror", "export_tensorboard"]



def export_tensorboard(run: Run | str | os.PathLike, logdir: str | os.PathLike, *, encoder: Any = None,
                       max_images: int = 64) -> Path:
    """Write ``run`` as TensorBoard event files under ``logdir``; returns ``logdir``.

    Args:
        run: a ``Run`` or run directory.
        logdir: the TensorBoard log directory (created).
        encoder: features for the embedding projector (default: the encoder of the run's latest map, else none).
        max_images: samples per snapshot in the image grids.

    Scalars keep their names, steps and wall times; each snapshot's samples become the image
    ``samples`` at its step (image-like samples only); events of level alert/warning/error and interventions,
    pauses and resumes become text under ``events``; the features of the latest snapshot go to the projector
    with labels (or probe ids) as metadata and the samples as sprites.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # tensorboard is an optional extra
        raise InputError(f"logdir: exporting to TensorBoard needs the tensorboard package "
                         f"(pip install 'evolens[tensorboard]'); {exc}") from exc
    from ..views.data import sample_grid

    logdir = Path(logdir)
    with opened(run) as run:
        writer = SummaryWriter(log_dir=str(logdir))
        try:
            for name in run.scalar_names():
                steps, values = run.scalars(name)
                for step, value in zip(steps.tolist(), values.tolist()):
                    writer.add_scalar(name, value, global_step=step)
            for snap in run.snapshots():
                grid = sample_grid(run, snap.step, max_images=max_images)
                if grid is not None:
                    writer.add_image("samples", grid, global_step=snap.step, walltime=snap.wall_time,
                                     dataformats="HWC" if grid.ndim == 3 else "HW")
            for event in run.events():
                if is_listed(event.kind, event.level):
                    writer.add_text("events", f"**{event.kind}** ({event.level}): {event.message}",
                                    global_step=event.step or 0, walltime=event.wall_time)
            _add_projector(writer, run, encoder)
        finally:
            writer.close()
    return logdir


def _add_projector(writer: Any, run: Run, encoder: Any) -> None:
    """The latest snapshot's features in the embedding projector, samples as sprites."""
    import torch

    from ..analyses.embedding import embedding
    from ..store import maps
    from ..views.data import samples_as_images

    steps = [s.step for s in run.snapshots() if not s.n_nonfinite]
    if not steps:
        return
    if encoder is None:
        records = maps.records(run)
        if not records:
            return
        from ..encoders import get_encoder, list_encoders

        name = records[-1]["encoder_id"].split("@", 1)[0]
        if name not in {info.name for info in list_encoders()}:
            return
        encoder = get_encoder(name)
    step = steps[-1]
    features = embedding(run, encoder=encoder, steps=[step], reference=False, progress=False).snapshots[step]
    labels = run.labels(step)
    metadata = [str(x) for x in (labels if labels is not None else run.probe_ids(step)).tolist()]
    images = samples_as_images(run.samples(step))
    if images is not None:
        images = np.nan_to_num(images, nan=0.5).clip(0.0, 1.0)
    writer.add_embedding(features, metadata=metadata, global_step=step, tag=f"samples@{encoder.id}",
                         label_img=None if images is None else torch.from_numpy(np.ascontiguousarray(images)))


class TensorBoardMirror:
    """Mirrors a run into TensorBoard while it is written (``Monitor(tensorboard=logdir)``; the live worker
    mirrors its analysis scalars into the same ``logdir``): every scalar, each snapshot's sample grid as the image
    ``samples``, and alerts, warnings, pauses and interventions as text under ``events``.

    Args:
        logdir: the TensorBoard log directory (created).
        max_images: samples per snapshot in the image grid.
        flush_secs: how often the event file is flushed (seconds).
    """

    def __init__(self, logdir: str | os.PathLike, *, max_images: int = 64, flush_secs: float = 10.0) -> None:
        if not isinstance(logdir, (str, os.PathLike)):
            raise InputError(f"tensorboard: expected a log directory path, received {type(logdir).__name__} {logdir!r}")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # tensorboard is an optional extra
            raise InputError(f"tensorboard: mirroring to TensorBoard needs the tensorboard package "
                             f"(pip install 'evolens[tensorboard]'); {exc}") from exc
        self.logdir, self.max_images = Path(logdir), int(max_images)
        self._writer = SummaryWriter(log_dir=str(self.logdir), flush_secs=int(flush_secs))

    def scalars(self, step: int, values: dict[str, float | None]) -> None:
        """Add each value (NaN for a missing one) at ``step``."""
        for name, value in values.items():
            self._writer.add_scalar(name, float("nan") if value is None else value, global_step=step)

    def snapshot(self, step: int, samples: np.ndarray) -> None:
        """Add the grid of the first ``max_images`` samples (image-like samples only)."""
        from ..views.data import samples_as_images
        from ..views.grid import images_to_grid

        images = samples_as_images(np.asarray(samples)[: self.max_images])
        if images is not None:
            grid = images_to_grid(np.nan_to_num(images, nan=0.5).clip(0.0, 1.0))
            self._writer.add_image("samples", grid, global_step=step, dataformats="HWC" if grid.ndim == 3 else "HW")

    def event(self, step: int | None, kind: str, level: str, message: str) -> None:
        """Add alerts, warnings, errors, pauses, resumes and interventions as text."""
        if is_listed(kind, level):
            self._writer.add_text("events", f"**{kind}** ({level}): {message}", global_step=step or 0)

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()

    def __repr__(self) -> str:
        return f"TensorBoardMirror({str(self.logdir)!r})"
