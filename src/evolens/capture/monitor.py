"""``Monitor``: three lines in a training loop, a run directory that records how the model evolves.

::

    monitor = evolens.Monitor("runs/exp1", sample_fn, every=100, probes=Probes.from_noise(64, 128))
    for step, batch in enumerate(loader):
        loss = train_step(batch)
        monitor.step(step, loss=loss)

At each scheduled step the Monitor calls ``sample_fn(probes)`` under ``torch.no_grad()``, with the global
random state forked and seeded from the probe seed (so a sampler that draws its own noise draws the same
noise at every snapshot, and the training run's random stream is left exactly as it would be without
monitoring), and appends the samples as a snapshot. Scalars passed to ``step`` are appended at every step.
Restarting a script with the same run directory resumes the run: steps that already have a snapshot are not
captured again, and scalars logged again for a step supersede the old values when read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .._validation import check_step, count_nonfinite, describe, to_numpy
from ..errors import InputError
from ..detect.rules import ALERT_PREFIX, check_rules
from ..store import layout
from ..store.arrays import file_hash
from ..store.run import Run, check_reference
from ..store.writer import RunWriter
from .probes import Probes
from .schedules import Schedule, as_schedule

logger = logging.getLogger(__name__)

SampleFn = Callable[[Probes | None], Any]


@dataclass
class StepResult:
    """What ``Monitor.step`` did at one step.

    Attributes:
        step: the step.
        captured: whether a snapshot was written at this step.
        capture_seconds: wall time spent sampling and writing the snapshot (0 when not captured).
        alerts: events of level ``alert`` raised at this step by detectors.
        should_pause: True when a detector asks the training loop to stop (save a checkpoint and exit).
    """

    step: int
    captured: bool = False
    capture_seconds: float = 0.0
    alerts: list[Any] = field(default_factory=list)
    should_pause: bool = False


def _split_output(output: Any) -> dict[str, Any]:
    """Normalise what a sample function returned into a dict with at least ``samples``."""
    if isinstance(output, Mapping):
        if "samples" not in output:
            raise InputError(f"sample_fn: expected a dict with a 'samples' key, received keys {sorted(output)}")
        return dict(output)
    if isinstance(output, tuple):
        if len(output) != 2:
            raise InputError(
                f"sample_fn: expected samples, (samples, labels) or a dict, received a tuple of {len(output)}"
            )
        return {"samples": output[0], "labels": output[1]}
    return {"samples": output}


@contextlib.contextmanager
def _sampling_context(seed: int, model: torch.nn.Module | None):
    """No grad, eval mode, and a forked global RNG seeded with ``seed`` (restored on exit)."""
    was_training = model.training if model is not None else False
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
            if model is not None:
                model.eval()
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
        if model is not None and was_training:
            model.train()


class Monitor:
    """Capture snapshots of a generative model on a schedule, into a crash-safe run directory.

    Distributed training: on global rank 0 this is the capturing Monitor; on every other rank the same call
    gives a follower with the same API that stores nothing (``Monitor.is_capturing`` tells which). Call
    ``step`` on every rank: at the schedule's steps rank 0 broadcasts its pause verdict, so every rank's
    ``StepResult.should_pause`` agrees and all ranks stop together.

    Args:
        run_dir: directory of the run; created if missing, resumed if it already holds a run.
        sample_fn: ``sample_fn(probes) -> samples`` where samples is an (n, ...) array or tensor (images as
            (n, C, H, W)); it may also return ``(samples, labels)`` or a dict with ``samples`` and any of
            ``labels`` (n,), ``latents`` (n, ...) and other arrays to store with the snapshot.
        every: schedule: an int K (every K steps, from step 0), a list of steps, ``"log"`` (log-spaced) or a
            ``Schedule``.
        probes: the fixed inputs (``Probes``); passed to ``sample_fn``. None calls ``sample_fn(None)`` and
            uses ``seed`` for the random state, with ids ``sample:0..n-1``.
        model: optional module: put in eval mode while sampling and restored afterwards.
        checkpoint: optional ``checkpoint(step) -> path`` called at each snapshot; the file is referenced by
            path and SHA-256 (never copied).
        seed: seed of the global RNG while sampling when ``probes`` is None.
        name, config: stored with the run when it is created.
        device: if given, probes are moved to this device once, before the first snapshot.
        on_snapshot: callables ``fn(monitor, step, arrays) -> {name: value} | None`` run after each snapshot
            (arrays: the stored numpy arrays, ``samples`` first); returned values are logged as scalars at
            that step, so rules can watch them (e.g. an attribute-preservation rate).
        rules: ``evolens.detect`` rules checked after each snapshot; each fires at most once per run.
        on_alert: what a fired rule does besides being recorded: ``"log"`` (nothing more), ``"pause"``
            (``StepResult.should_pause``; rules with ``pause=True`` always pause), or a callable
            ``fn(monitor, alert)`` (the monitor first, as for ``on_snapshot``).
        tensorboard: a TensorBoard log directory that mirrors the run live: every scalar, each snapshot's
            sample grid and the alerts (the live worker's analysis scalars too). Needs ``evolens[tensorboard]``.
        shard_probes: distributed training: every rank samples its share of the probes (``Probes.shard``) and
            rank 0 gathers the shares into one snapshot (faster sampling of large probe sets). The sample
            function must then draw its noise from the probes (``noise``, ``noise_at``, ``generators``, as the
            diffusers sampler does), not from a generator of the whole batch, for a snapshot to equal the
            unsharded one; every rank must call ``step`` (and ``snapshot``) at the same steps.
        analyze: an ``evolens.analyses.Live``: starts the live analysis worker as a separate process that
            analyses every snapshot; alerts of its rules reach ``step()`` at its next call (one cheap query per
            step). The training never waits on the worker unless ``Live(max_lag=...)`` says so, and never
            fails with it: a dead worker becomes a warning event.
    """

    is_capturing = True

    def __new__(cls, *args: Any, **kwargs: Any) -> "Monitor":
        from .distributed import global_rank

        if cls is Monitor and global_rank() != 0:
            return super().__new__(_FollowerMonitor)
        return super().__new__(cls)

    def __init__(
        self,
        run_dir: str | os.PathLike,
        sample_fn: SampleFn,
        every: int | Sequence[int] | Schedule | str = 100,
        probes: Probes | None = None,
        *,
        model: torch.nn.Module | None = None,
        checkpoint: Callable[[int], str | os.PathLike | None] | None = None,
        seed: int = 0,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        device: str | torch.device | None = None,
        on_snapshot: Sequence[Callable[..., Mapping[str, float] | None]] = (),
        rules: Sequence[Any] = (),
        on_alert: str | Callable[..., Any] = "log",
        analyze: Any = None,
        shard_probes: bool = False,
        tensorboard: str | os.PathLike | None = None,
    ) -> None:
        if not callable(sample_fn):
            raise InputError(f"sample_fn: expected a callable sample_fn(probes) -> samples, received {describe(sample_fn)}")
        if probes is not None and not isinstance(probes, Probes):
            raise InputError(f"probes: expected an evolens.Probes, received {describe(probes)}")
        if checkpoint is not None and not callable(checkpoint):
            raise InputError(f"checkpoint: expected a callable checkpoint(step) -> path, received {describe(checkpoint)}")
        from ..detect.rules import Rule

        if not all(callable(fn) for fn in on_snapshot):
            raise InputError(f"on_snapshot: expected callables fn(monitor, step, arrays), received {describe(on_snapshot)}")
        if not all(isinstance(rule, Rule) for rule in rules):
            raise InputError(f"rules: expected evolens.detect rules (Threshold, Trend, ...), received {describe(rules)}")
        if not (callable(on_alert) or on_alert in ("log", "pause")):
            raise InputError(f"on_alert: expected 'log', 'pause' or a callable fn(monitor, alert), received {on_alert!r}")
        if analyze is not None:
            from ..analyses.live import Live

            if not isinstance(analyze, Live):
                raise InputError(f"analyze: expected None or an evolens.analyses.Live, received {describe(analyze)}")
        names = [rule.name for rule in rules]
        if len(set(names)) != len(names):
            raise InputError(f"rules: expected distinct rule names, received {names}")
        self.on_snapshot, self.rules, self.on_alert = list(on_snapshot), list(rules), on_alert
        self.schedule = as_schedule(every)
        self.sample_fn = sample_fn
        self.probes = probes
        self.model = model
        self.checkpoint = checkpoint
        self.seed = probes.seed if probes is not None else int(seed)
        self._device_probes = probes.to(device) if (probes is not None and device is not None) else probes
        self._shard = _my_shard(probes, shard_probes, device)
        run_config = {
            "schedule": repr(self.schedule),
            "probes": probes.describe() if probes is not None else None,
            **dict(config or {}),
        }
        self._reader: Run | None = None  # opened on the first rule check
        mirror = None
        if tensorboard is not None:
            from ..integrations.tensorboard import TensorBoardMirror

            mirror = TensorBoardMirror(tensorboard)
            if analyze is not None and analyze.tensorboard is None:
                import dataclasses

                analyze = dataclasses.replace(analyze, tensorboard=str(tensorboard))
        try:
            self._writer = RunWriter(run_dir, kind="capture", name=name, config=run_config)
        except BaseException:
            if mirror is not None:  # its event file and writer thread must not outlive a Monitor that never was
                mirror.close()
            raise
        if mirror is not None:
            self._writer.add_mirror(mirror)
        self.run_dir = self._writer.run_dir
        self._captured = set(self._writer.captured_steps())
        self._probe_fingerprint = probes.fingerprint() if probes is not None else None
        self._check_resume_probes()
        self._last_step: int | None = None
        self._warned_nonfinite: set[str] = set()
        # a resumed run does not fire a rule twice
        self._fired = {kind[len("alert:"):] for kind in self._writer.event_kinds("alert:")}
        if self._captured:
            last = max(self._captured)
            self._writer.write_event(
                "resume",
                f"run resumed by session {self._writer.session_id}; {len(self._captured)} snapshots so far, last at step {last}",
                step=last,
                data={"session_id": self._writer.session_id, "last_captured_step": last},
            )
            logger.info("evolens: resuming run %s at snapshot step %d", self.run_dir, last)
        self.analyze, self._worker, self._worker_reported = analyze, None, False
        self._alert_cursor = self._writer.last_event_id()
        self._pending_pause = False  # distributed: a verdict waits for the next scheduled step
        if analyze is not None:
            from ..analyses.live import start_worker

            try:
                self._worker = start_worker(self.run_dir, analyze)
            except OSError as exc:  # no process could be started: training goes on without live analysis
                self._worker_reported = True
                self._writer.write_event("analysis_worker_died", f"the live analysis worker could not start: {exc}",
                                         level="warning", data={"error": repr(exc)})
                warnings.warn(f"evolens: live analysis could not start ({exc})", RuntimeWarning, stacklevel=2)

    def _check_resume_probes(self) -> None:
        if not self._captured or self._probe_fingerprint is None:
            return
        stored = self._writer.last_snapshot_extra().get("probe_fingerprint")
        if stored is not None and stored != self._probe_fingerprint:
            self.close()
            raise InputError(
                f"probes: expected the probes this run was captured with (fingerprint {stored[:12]}), received "
                f"different ones ({self._probe_fingerprint[:12]}); snapshots are only comparable with fixed probes, "
                "so use the same seed/inputs or a new run directory"
            )

    # -- public API ----------------------------------------------------------------------------------
    @property
    def captured_steps(self) -> list[int]:
        """Steps that have a snapshot in this run (including earlier sessions), ascending."""
        return sorted(self._captured)

    def step(self, step: int, **scalars: float) -> StepResult:
        """Record ``scalars`` at ``step`` and capture a snapshot if the schedule says so.

        ``step`` must increase strictly within one Monitor (a restarted script may start lower: steps that
        already have a snapshot are skipped). Scalars may be floats, numpy scalars or 0-d tensors.
        """
        step = check_step(step)
        if self._last_step is not None and step <= self._last_step:
            raise InputError(
                f"step: expected a step greater than the previous one ({self._last_step}), received {step}; "
                "steps must increase within a run"
            )
        self._last_step = step
        if scalars:
            self._log(step, scalars)
        result = StepResult(step)
        if self.schedule(step) and self._agree_on_capture(step):
            result.capture_seconds, arrays = self._capture(step)
            result.captured = True
            self._after_snapshot(step, arrays, result)
        if self.analyze is not None:
            if result.captured and self.analyze.max_lag is not None:
                self._wait_for_analysis(self.analyze.max_lag)
            self._collect_live_alerts(step, result)
        return _agree_on_pause(self, step, result)

    def log(self, step: int | None = None, **scalars: float) -> None:
        """Record scalars at ``step`` (default: the last step passed to ``step``) without capturing.

        Use it for values computed at a different cadence (a test loss every N steps). Each name may be
        logged once per step.
        """
        if step is None:
            if self._last_step is None:
                raise InputError("step: expected a step, since monitor.step() has not been called yet")
            step = self._last_step
        self._log(check_step(step), scalars)

    def analysis_lag(self) -> int:
        """Snapshots captured but not yet analysed by the live worker (0 without ``analyze``)."""
        if self.analyze is None:
            return 0
        return max(0, len(self._captured) - self._writer.count_analysed("live", self.analyze.context()))

    def wait_for_analysis(self, timeout: float | None = None) -> bool:
        """Wait until the live worker has analysed every captured snapshot (it ends by itself once the
        Monitor is closed); True when it has, False on ``timeout`` (seconds) or when there is no worker."""
        if self._worker is None:
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._writer.conn is None:  # closed: the worker finishes and exits
            try:
                self._worker.wait(timeout)
            except Exception:
                return False
            return self._worker.returncode == 0
        while self.analysis_lag() > 0:
            if self._worker.poll() is not None or (deadline is not None and time.monotonic() > deadline):
                return False
            time.sleep(0.02)
        return True

    def snapshot(self, step: int) -> bool:
        """Capture a snapshot at ``step`` now, whatever the schedule; False if the step already has one."""
        step = check_step(step)
        if not self._agree_on_capture(step):
            return False
        _, arrays = self._capture(step)
        self._after_snapshot(step, arrays, StepResult(step, captured=True))
        return True

    def event(
        self, kind: str, message: str, *, step: int | None = None, level: str = "info", data: Mapping | None = None
    ) -> int:
        """Append an event (intervention, note, alert) to the run; ``step`` defaults to the last step."""
        step = self._last_step if step is None else check_step(step)
        return self._writer.write_event(kind, message, step=step, level=level, data=data)

    def record_intervention(self, message: str, *, step: int | None = None, **data: Any) -> int:
        """Record an intervention (e.g. ``added=500, what="thick 6s"``) on the run's timeline; returns its id."""
        return self.event("intervention", message, step=step, level="info", data=data)

    def add_reference(self, name: str, images: Any, labels: Any = None, meta: Mapping | None = None) -> bool:
        """Store a reference data set (e.g. the training data) in the run; see ``Run.add_reference``."""
        images, labels = check_reference(name, images, labels)
        return self._writer.write_reference(name, images, labels, meta)

    def open(self) -> Run:
        """A reader on this run (see ``evolens.open_run``)."""
        return Run(self.run_dir)

    def close(self) -> None:
        """Release the run (the writer lock and the database). Safe to call twice. A live worker goes on until
        it has analysed every captured snapshot, then exits (``wait_for_analysis`` waits for it)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._writer.close()

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------------
    def _log(self, step: int, scalars: Mapping[str, Any]) -> None:
        nonfinite = self._writer.write_scalars(step, scalars)
        for key in nonfinite:
            if key not in self._warned_nonfinite:  # one warning event per series and session, not per step
                self._warned_nonfinite.add(key)
                self._writer.write_event(
                    "nonfinite_scalar",
                    f"scalar {key!r} is not finite at step {step}",
                    step=step,
                    level="warning",
                    data={"name": key},
                )
                warnings.warn(f"evolens: scalar {key!r} is not finite at step {step}", RuntimeWarning, stacklevel=3)

    def _agree_on_capture(self, step: int) -> bool:
        """Whether to capture ``step`` (not captured yet); with sharded probes rank 0's answer on every rank."""
        capture = step not in self._captured
        if self._shard is not None:
            from .distributed import broadcast_flag

            capture = broadcast_flag(capture)
        return capture

    def _sample_arrays(self, probes: Probes | None) -> dict[str, np.ndarray]:
        """``sample_fn(probes)`` under the sampling context, as numpy arrays."""
        with _sampling_context(self.seed, self.model):
            output = _split_output(self.sample_fn(probes))
        return {key: to_numpy(value, f"sample_fn()[{key!r}]") for key, value in output.items()}

    def _sample_all(self) -> dict[str, np.ndarray]:
        """The samples of every probe: here, or with sharded probes every rank's share gathered here."""
        if self._shard is None:
            return self._sample_arrays(self._device_probes)
        return _gather_shards(self._sample_shard())

    def _sample_shard(self) -> tuple[str, Any]:
        try:
            return ("ok", self._sample_arrays(self._shard))
        except Exception as exc:  # sent on: rank 0 must not wait forever for a share that never comes
            return ("error", exc)

    def _capture(self, step: int) -> tuple[float, dict[str, np.ndarray]]:
        start = time.perf_counter()
        arrays = self._sample_all()
        samples = arrays["samples"]
        if self.probes is not None:
            if samples.ndim >= 1 and samples.shape[0] != self.probes.n:
                raise InputError(
                    f"sample_fn(): expected {self.probes.n} samples (one per probe), received shape={samples.shape}"
                )
            arrays["probe_ids"] = self.probes.ids
            if "labels" not in arrays and self.probes.labels is not None:
                arrays["labels"] = self.probes.labels.numpy()
        checkpoint_path = checkpoint_hash = None
        if self.checkpoint is not None:
            path = self.checkpoint(step)
            if path is not None:
                if not Path(path).is_file():
                    raise InputError(f"checkpoint: expected checkpoint({step}) to return an existing file, received {str(path)!r}")
                checkpoint_path, checkpoint_hash = str(Path(path).resolve()), file_hash(path)
        stored = self._writer.write_snapshot(
            step,
            arrays,
            wall_time=time.time(),
            capture_seconds=time.perf_counter() - start,
            seed=self.seed,
            checkpoint_path=checkpoint_path,
            checkpoint_hash=checkpoint_hash,
            extra={"probe_fingerprint": self._probe_fingerprint},
        )
        self._captured.add(step)
        n_nonfinite = count_nonfinite(stored["samples"])
        if n_nonfinite:
            # Decision: keep the snapshot as captured (NaNs are evidence that training diverged) and flag it;
            # analyses skip or reject non-finite snapshots explicitly instead of silently dropping them.
            fraction = n_nonfinite / max(samples.size, 1)
            message = f"{n_nonfinite} non-finite values ({fraction:.1%}) in the samples at step {step}"
            self._writer.write_event(
                "nonfinite_samples", message, step=step, level="warning",
                data={"n_nonfinite": n_nonfinite, "fraction": fraction},
            )
            warnings.warn(f"evolens: {message}", RuntimeWarning, stacklevel=3)
        return time.perf_counter() - start, stored

    def _after_snapshot(self, step: int, arrays: Mapping[str, np.ndarray], result: StepResult) -> None:
        """Run the snapshot hooks (their values become scalars), then the rules; record and act on alerts."""
        for fn in self.on_snapshot:
            values = fn(self, step, arrays)
            if values:
                self._log(step, values)
        if not self.rules:
            return
        if self._reader is None:
            self._reader = Run(self.run_dir)
        for alert in check_rules(self._reader, self.rules, self._fired):
            checkpoint = self._reader.snapshot(step).checkpoint_path
            pause = alert.pause or self.on_alert == "pause"
            self._writer.write_event(f"{ALERT_PREFIX}{alert.rule}", alert.message, step=step, level="alert",
                                     data={**alert.as_data(), "pause": pause, "checkpoint": checkpoint})
            self._act_on_alert(alert, step, result, checkpoint)

    def _act_on_alert(self, alert: Any, step: int, result: StepResult, checkpoint: str | None) -> None:
        """Report a fired rule in ``result``, call ``on_alert``, and pause when the rule or ``on_alert`` asks."""
        result.alerts.append(alert)
        if callable(self.on_alert):
            self.on_alert(self, alert)
        if alert.pause or self.on_alert == "pause":
            result.should_pause = True
            self._writer.write_event("pause", f"training paused at step {step} by {alert.rule}", step=step,
                                     data={"rule": alert.rule, "checkpoint": checkpoint, "alert_step": alert.step})

    def _collect_live_alerts(self, step: int, result: StepResult) -> None:
        """The alerts the live worker wrote since the last call (one indexed query), acted on like the Monitor's
        own; a dead worker becomes one warning event and the training goes on."""
        from ..detect.rules import Alert

        rows = self._writer.alert_events_since(self._alert_cursor)
        for event_id, alert_step, kind, message, data in rows:
            self._alert_cursor = max(self._alert_cursor, event_id)
            if data.get("source") != "live":
                continue
            alert = Alert(kind[len(ALERT_PREFIX):], int(alert_step), data.get("metric", ""),
                          float(data.get("value", float("nan"))), message, bool(data.get("pause")))
            self._act_on_alert(alert, step, result, data.get("checkpoint"))
        if self._worker is not None and not self._worker_reported and self._worker.poll() not in (None, 0):
            self._worker_reported = True
            self._writer.write_event("analysis_worker_died", f"the live analysis worker exited with status "
                                     f"{self._worker.returncode}; see {layout.ANALYSIS_LOG_NAME}", step=step,
                                     level="warning", data={"returncode": self._worker.returncode})

    def _wait_for_analysis(self, max_lag: int) -> None:
        """Wait while the worker is more than ``max_lag`` snapshots behind (it must be alive and have the
        reference sets it needs), so a verdict never arrives later than the user allows."""
        context = self.analyze.context()
        start, done = time.monotonic(), self._writer.count_analysed("live", context)
        while len(self._captured) - done > max_lag:
            if self._worker is None or self._worker.poll() is not None:
                return
            if self.analyze.reference not in self._writer.reference_names():
                return  # the worker waits for the reference set; waiting for the worker would deadlock
            if time.monotonic() - start > self.analyze.max_wait:  # a stuck worker must not stall training
                self._writer.write_event("analysis_lagging", f"the live analysis made no progress for "
                                         f"{self.analyze.max_wait:g} s; training goes on", level="warning",
                                         data={"lag": len(self._captured) - done})
                return
            time.sleep(0.01)
            now_done = self._writer.count_analysed("live", context)
            if now_done != done:
                start, done = time.monotonic(), now_done


def _my_shard(probes: Probes | None, shard_probes: bool, device: Any) -> Probes | None:
    """This rank's share of the probes when sampling is sharded over several processes, else None."""
    from .distributed import distributed_world, global_rank

    if not shard_probes:
        return None
    if probes is None:
        raise InputError("shard_probes: expected probes to shard, received probes=None")
    world = distributed_world()
    if world == 1:
        return None
    shard = probes.shard(global_rank(), world)
    return shard.to(device) if device is not None else shard


def _gather_shards(share: tuple[str, Any]) -> dict[str, np.ndarray] | None:
    """Gather every rank's ``("ok", arrays)`` or ``("error", exc)`` on rank 0 and concatenate them in rank
    order (None on the other ranks). A rank whose sampling failed makes every rank raise."""
    from .distributed import gather_to_rank0

    gathered = gather_to_rank0(share)
    if share[0] == "error":
        raise share[1]
    if gathered is None:
        return None
    failed = [(rank, value) for rank, (status, value) in enumerate(gathered) if status == "error"]
    if failed:
        rank, exc = failed[0]
        raise RuntimeError(f"sample_fn failed on rank {rank}: {exc!r}") from exc
    keys = list(gathered[0][1])
    if any(list(arrays) != keys for _, arrays in gathered):
        raise InputError(f"sample_fn(): expected the same keys on every rank, received "
                         f"{[sorted(arrays) for _, arrays in gathered]}")
    return {key: np.concatenate([arrays[key] for _, arrays in gathered]) for key in keys}


def _agree_on_pause(monitor: "Monitor", step: int, result: StepResult) -> StepResult:
    """Distributed runs pause only at the schedule's steps, with rank 0's verdict broadcast to every rank; a
    verdict that arrives between them waits for the next one. Single-process runs pause at once."""
    from .distributed import broadcast_flag, distributed_world

    if distributed_world() == 1:
        return result
    monitor._pending_pause |= result.should_pause
    result.should_pause = False
    if monitor.schedule(step):
        result.should_pause = broadcast_flag(monitor._pending_pause)
        monitor._pending_pause = False
    return result


class _FollowerMonitor(Monitor):
    """What ``Monitor(...)`` is on a rank other than 0: the same API, nothing captured or stored; ``step``
    takes part in the pause broadcast at the schedule's steps."""

    is_capturing = False

    def __init__(self, run_dir: Any, sample_fn: Any, every: Any = 100, probes: Any = None, *, model: Any = None,
                 seed: int = 0, device: Any = None, shard_probes: bool = False, **kwargs: Any) -> None:
        self.schedule = as_schedule(every)
        self.run_dir = Path(run_dir)
        self.probes, self.analyze, self._pending_pause, self._last_step = probes, None, False, None
        self.sample_fn, self.model = sample_fn, model
        self.seed = probes.seed if probes is not None else int(seed)
        self._shard = _my_shard(probes, shard_probes, device)

    @property
    def captured_steps(self) -> list[int]:
        return []

    def step(self, step: int, **scalars: float) -> StepResult:
        step = check_step(step)
        if self._last_step is not None and step <= self._last_step:
            raise InputError(f"step: expected a step greater than the previous one ({self._last_step}), "
                             f"received {step}; steps must increase within a run")
        self._last_step = step
        if self.schedule(step):
            self._share_samples()
        return _agree_on_pause(self, step, StepResult(step))

    def _share_samples(self) -> bool:
        """With sharded probes: sample this rank's share when rank 0 captures, and send it to rank 0."""
        if self._shard is None:
            return False
        from .distributed import broadcast_flag

        if broadcast_flag(False):
            _gather_shards(self._sample_shard())
            return True
        return False

    def log(self, step: int | None = None, **scalars: float) -> None:
        return None

    def snapshot(self, step: int) -> bool:
        check_step(step)
        self._share_samples()
        return False

    def event(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def record_intervention(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def add_reference(self, *args: Any, **kwargs: Any) -> bool:
        return False

    def analysis_lag(self) -> int:
        return 0

    def wait_for_analysis(self, timeout: float | None = None) -> bool:
        return False

    def open(self) -> Run:
        raise InputError("open: this process is not rank 0; only rank 0 captures the run (open it by path)")

    def close(self) -> None:
        return None
