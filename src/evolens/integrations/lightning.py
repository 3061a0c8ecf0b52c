"""PyTorch Lightning: ``EvolensCallback`` watches a ``Trainer.fit`` with one line.

::

    from evolens.integrations.lightning import EvolensCallback

    trainer = Trainer(max_steps=2000, callbacks=[
        EvolensCallback("runs/exp1", every=100, probes=Probes.from_noise(64, 128),
                        sample=lambda module, probes: module.generator(probes.noise))])
    trainer.fit(module, datamodule)

What it does, with Lightning's own hooks:

- **Steps are Lightning's** ``trainer.global_step``: optimizer steps, the x-axis Lightning's loggers use. The
  untrained model is captured at step 0 (``on_train_start``), then the model after every K optimizer steps
  (``on_train_batch_end`` once the step has advanced: batches that only accumulate gradients are not steps), and
  the last step (``on_train_end``). With several optimizers (manual optimisation) ``global_step`` advances by
  more than one per batch; a snapshot is then due when a scheduled step was passed since the last batch, so
  ``every=5`` with two optimizers captures near 6, 10, 16, ... instead of never.
- **Scalars**: the values the LightningModule logs with ``self.log`` (training step values at each optimizer
  step, epoch and validation values when they are computed), under the names Lightning gives them.
- **Checkpoints**: every checkpoint file Lightning's ``ModelCheckpoint`` writes is referenced on the run's
  timeline (a ``checkpoint`` event with path and SHA-256, never copied); with ``checkpoint=True`` the callback
  also saves a Lightning checkpoint at every snapshot (into the run's ``checkpoints/``) and the snapshot
  references it, so a paused run resumes from exactly the snapshot that raised the alert.
- **Resume**: ``trainer.fit(module, ckpt_path=...)`` into the same ``run_dir`` continues the run: steps that
  already have a snapshot are not captured again and a ``resume`` event marks the restart.
- **Distributed**: the run is written by global rank 0 only; every rank takes part in the pause verdict.
- **Pause**: a rule's ``pause`` verdict (``rules=..., on_alert="pause"``, or ``analyze=Live(rules=...)``) sets
  ``trainer.should_stop``: Lightning ends the epoch loop, runs ``on_train_end`` (last snapshot) and returns
  from ``fit``.
- **Failures**: an exception in training is recorded as an ``exception`` event and the run closed cleanly
  (``on_exception``); a failure inside evolens while training runs is recorded and warned about, and the
  training goes on without monitoring.
"""

from __future__ import annotations

import logging
import os
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

try:
    import pytorch_lightning as pl
except ImportError:  # pragma: no cover - the unified ``lightning`` package
    try:
        import lightning.pytorch as pl
    except ImportError as exc:
        from ..errors import InputError

        raise InputError(
            "evolens.integrations.lightning needs PyTorch Lightning (pip install 'evolens[lightning]')"
        ) from exc

from .._validation import describe
from ..capture.monitor import Monitor, _FollowerMonitor
from ..capture.probes import Probes
from ..capture.schedules import Schedule, as_schedule
from ..errors import EvolensError, InputError
from ..store import layout
from ..store.arrays import file_hash

__all__ = ["EvolensCallback"]

logger = logging.getLogger(__name__)


class _DueSchedule(Schedule):
    """The user's schedule, asked about every step passed since the last batch (several optimizers advance
    ``global_step`` by more than one per batch). The callback sets ``passed`` before each ``Monitor.step``."""

    def __init__(self, inner: Schedule) -> None:
        self.inner = inner
        self.passed: range | None = None

    def __call__(self, step: int) -> bool:
        if self.passed is not None and step == self.passed.stop - 1:
            return any(self.inner(s) for s in self.passed)
        return self.inner(step)

    def steps_until(self, last_step: int) -> list[int]:
        return self.inner.steps_until(last_step)

    def __repr__(self) -> str:
        return repr(self.inner)


def _scalar(value: Any) -> float | None:
    """A logged value as a float, or None when it is not a single number."""
    try:
        import torch

        if isinstance(value, torch.Tensor):
            return float(value.detach().float().cpu().item()) if value.numel() == 1 else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    except Exception:  # an odd logged object never stops training
        return None
    return None


class EvolensCallback(pl.Callback):
    """Capture snapshots of the LightningModule being fitted into the evolens run at ``run_dir``.

    Args:
        run_dir: the run directory (created, or resumed when it holds a run).
        every: schedule in optimizer steps (``trainer.global_step``): an int K, a list of steps, ``"log"`` or a
            ``Schedule``. Step 0 (the untrained model) is captured when the schedule includes it.
        probes: the fixed inputs (``Probes``); moved to the module's device at the start of training.
        sample: ``sample(module, probes) -> samples`` (or ``(samples, labels)`` or a dict, as for ``Monitor``);
            default ``module(probes.noise)``.
        analyze: an ``evolens.analyses.Live`` for live analysis while training runs.
        checkpoint: save a Lightning checkpoint at every snapshot into the run's ``checkpoints/`` and reference
            it from the snapshot (needed to resume from a paused snapshot exactly).
        log_metrics: record the values the module logs as scalars (default True).
        **monitor_kwargs: passed to ``Monitor`` (``rules``, ``on_alert``, ``on_snapshot``, ``name``,
            ``config``, ``tensorboard``, ``seed``...).

    After ``fit``: ``callback.run_dir`` is the run; ``callback.paused_at`` the step a pause verdict stopped the
    trainer at (None otherwise).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        every: int | Sequence[int] | Schedule | str = 100,
        probes: Probes | None = None,
        sample: Callable[[Any, Probes | None], Any] | None = None,
        analyze: Any = None,
        *,
        checkpoint: bool = False,
        log_metrics: bool = True,
        **monitor_kwargs: Any,
    ) -> None:
        if not isinstance(run_dir, (str, os.PathLike)):
            raise InputError(f"run_dir: expected a path, received {describe(run_dir)}")
        if probes is not None and not isinstance(probes, Probes):
            raise InputError(f"probes: expected an evolens.Probes, received {describe(probes)}")
        if sample is not None and not callable(sample):
            raise InputError(f"sample: expected a callable sample(module, probes) -> samples, received {describe(sample)}")
        if sample is None and (probes is None or probes.noise is None):
            raise InputError("sample: expected sample(module, probes), since the default module(probes.noise) "
                             "needs probes with noise")
        for name in ("model", "checkpoint", "device", "sample_fn", "every", "probes"):
            if name in monitor_kwargs:
                raise InputError(f"{name}: set by EvolensCallback itself; remove it from the keyword arguments")
        self.run_dir = Path(run_dir)
        self.schedule = _DueSchedule(as_schedule(every))
        self.probes, self.sample, self.analyze = probes, sample, analyze
        self.save_checkpoints, self.log_metrics = bool(checkpoint), bool(log_metrics)
        self.monitor_kwargs = monitor_kwargs
        self.monitor: Monitor | None = None
        self.paused_at: int | None = None
        self._last_step: int | None = None
        self._seen_metrics: dict[str, Any] = {}
        self._last_values: dict[str, tuple[int, float]] = {}
        self._referenced: set[str] = set()
        self._references: list[tuple[str, Any, Any, Any]] = []

    def add_reference(self, name: str, images: Any, labels: Any = None, meta: Mapping | None = None) -> None:
        """Store a reference data set (e.g. the training data) in the run when training starts (on rank 0), as
        ``Monitor.add_reference`` does; the arguments are checked now."""
        from ..store.run import check_reference

        images, labels = check_reference(name, images, labels)
        self._references.append((name, images, labels, meta))

    # -- Lightning hooks ------------------------------------------------------------------------------
    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self.paused_at, self._last_step, self._seen_metrics, self._last_values = None, None, {}, {}
        self._open(trainer, pl_module)
        self._at_step(trainer, trainer.global_step)

    def on_train_batch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self._note_checkpoints(trainer)
        step = trainer.global_step
        if self._last_step is not None and step <= self._last_step:
            return  # gradient accumulation: no optimizer step since the last batch
        self._at_step(trainer, step)

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._log_fresh(trainer, trainer.global_step)
        self._note_checkpoints(trainer)

    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not trainer.sanity_checking:
            self._log_fresh(trainer, trainer.global_step)
            self._note_checkpoints(trainer)

    def on_train_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        monitor = self.monitor
        if monitor is not None:  # every rank: a follower takes part when probes are sharded
            step = trainer.global_step
            if self.save_checkpoints and not self.schedule(step):  # a scheduled step saved it already
                self._guard(lambda: self._save_checkpoint(trainer, step))
            self._guard(lambda: monitor.snapshot(step))
        self._note_checkpoints(trainer)

    def on_exception(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", exception: BaseException) -> None:
        monitor = self.monitor
        if monitor is not None and monitor.is_capturing:
            text = "".join(traceback.format_exception_only(type(exception), exception)).strip()
            self._guard(lambda: monitor.event("exception", f"training stopped by {text}", step=trainer.global_step,
                                              level="error", data={"type": type(exception).__name__}))
        self._close()

    def teardown(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        self._note_checkpoints(trainer)
        self._close()

    def state_dict(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir)}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        stored = state_dict.get("run_dir")
        if stored is not None and Path(stored).resolve() != self.run_dir.resolve():
            warnings.warn(f"evolens: the checkpoint was written while monitoring {stored}; this fit writes to "
                          f"{self.run_dir}", RuntimeWarning, stacklevel=2)

    # -- internals -------------------------------------------------------------------------------------
    def _open(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._close()
        sample = self.sample

        def sample_fn(probes: Probes | None) -> Any:
            return sample(pl_module, probes) if sample is not None else pl_module(probes.noise)

        checkpoint = self._saved_checkpoint if self.save_checkpoints else None
        kwargs = dict(model=pl_module, checkpoint=checkpoint, device=pl_module.device, analyze=self.analyze,
                      **self.monitor_kwargs)
        if trainer.global_rank != 0:
            self.monitor = _FollowerMonitor(self.run_dir, sample_fn, self.schedule, self.probes, **kwargs)
        else:
            self.monitor = Monitor(self.run_dir, sample_fn, self.schedule, self.probes, **kwargs)
            for name, images, labels, meta in self._references:
                self.monitor.add_reference(name, images, labels, meta)

    def _checkpoint_path(self, step: int) -> Path:
        return self.run_dir / layout.CHECKPOINTS_DIR / f"step-{step}.ckpt"

    def _saved_checkpoint(self, step: int) -> str | None:
        """The Monitor's ``checkpoint(step)``: the file ``_save_checkpoint`` wrote for this step."""
        path = self._checkpoint_path(step)
        return str(path) if path.is_file() else None

    def _save_checkpoint(self, trainer: "pl.Trainer", step: int) -> None:
        """Save a Lightning checkpoint for ``step``, on every rank (``save_checkpoint`` is collective). Whether to
        save is rank 0's decision, broadcast: a resumed run must not overwrite a file an earlier snapshot
        references by its hash, and every rank must take the same branch."""
        path = self._checkpoint_path(step)
        if trainer.strategy.broadcast(not path.exists(), src=0):
            path.parent.mkdir(parents=True, exist_ok=True)
            trainer.save_checkpoint(path)

    def _at_step(self, trainer: "pl.Trainer", step: int) -> None:
        monitor = self.monitor
        if monitor is None:
            return
        previous = self._last_step
        self._last_step = step
        self.schedule.passed = range(step, step + 1) if previous is None else range(previous + 1, step + 1)
        # only the capturing rank records scalars: reading logged tensors is a device sync on every step
        scalars = self._fresh_metrics(trainer, step) if (self.log_metrics and monitor.is_capturing) else {}
        if self.save_checkpoints and self.schedule(step):
            self._guard(lambda: self._save_checkpoint(trainer, step))
        result = self._guard(lambda: monitor.step(step, **scalars))
        if result is not None and result.should_pause:
            self.paused_at = step
            trainer.should_stop = True

    def _fresh_metrics(self, trainer: "pl.Trainer", step: int, *, epoch_end: bool = False) -> dict[str, float]:
        """Values logged since the last call. Lightning keeps every logged value in ``callback_metrics`` until it
        is logged again, and each ``self.log`` call stores a new tensor, so during the training steps a value is
        new when its object is (the previous objects are held here, so their ids cannot be reused). At epoch
        and validation ends Lightning rebuilds the dictionary: there a value is new when it was not logged at
        this step already and differs from the last value recorded under its name."""
        fresh = {}
        for name, value in dict(trainer.callback_metrics).items():
            if self._seen_metrics.get(name) is value:
                continue
            self._seen_metrics[name] = value
            number = _scalar(value)
            if number is None:
                continue
            last = self._last_values.get(name)
            if epoch_end and last is not None and (last[0] == step or last[1] == number):
                continue
            self._last_values[name] = (step, number)
            fresh[str(name)] = number
        return fresh

    def _log_fresh(self, trainer: "pl.Trainer", step: int) -> None:
        monitor = self.monitor
        if monitor is None or not self.log_metrics or not monitor.is_capturing:
            return
        scalars = self._fresh_metrics(trainer, step, epoch_end=True)
        if scalars:
            self._guard(lambda: monitor.log(step, **scalars))

    def _note_checkpoints(self, trainer: "pl.Trainer") -> None:
        """Reference the checkpoint files Lightning's ModelCheckpoint callbacks wrote since the last look."""
        monitor = self.monitor
        if monitor is None or not monitor.is_capturing:
            return
        for callback in getattr(trainer, "checkpoint_callbacks", []):
            paths = [getattr(callback, "last_model_path", ""), getattr(callback, "best_model_path", ""),
                     *getattr(callback, "best_k_models", {}).keys()]
            for path in paths:
                if not path or path in self._referenced or not Path(path).is_file():
                    continue
                self._referenced.add(path)
                step = trainer.global_step
                self._guard(lambda: monitor.event(
                    "checkpoint", f"Lightning checkpoint {Path(path).name} at step {step}", step=step,
                    data={"path": str(Path(path).resolve()), "sha256": file_hash(path), "source": "lightning"}))

    def _guard(self, fn: Callable[[], Any]) -> Any:
        """Run an evolens action; a failure is recorded and warned about, and training goes on unmonitored
        (an invalid argument — a typed ``InputError`` from the user's own sample function — is raised)."""
        try:
            return fn()
        except InputError:
            raise
        except Exception as exc:
            message = f"evolens: monitoring stopped after an error ({exc!r}); training goes on"
            logger.exception(message)
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            monitor, self.monitor = self.monitor, None
            if monitor is not None:
                try:
                    if monitor.is_capturing:
                        monitor.event("monitor_error", message, level="error",
                                      data={"traceback": traceback.format_exc(limit=8)})
                    monitor.close()
                except Exception:  # the store itself failed (a full disk): nothing more to record
                    pass
            return None

    def _close(self) -> None:
        monitor, self.monitor = self.monitor, None
        if monitor is not None:
            try:
                monitor.close()
            except EvolensError:
                logger.exception("evolens: closing the run failed")
