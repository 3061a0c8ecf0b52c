"""Live analysis: a worker that follows a run while it trains, analyses every new snapshot once, and turns the
verdicts of its rules into alerts that ``Monitor.step()`` sees at its next call.

The worker talks to training only through the run directory. Per snapshot it runs the configured analyses of
``evolens.analyses`` (quality, proximity, attributes; each idempotent), places the snapshot on the evolutionary
map (fitted once on the first snapshots, then ``extend``-ed, refitted when the new snapshot's neighbourhoods are
badly kept), checks the rules on the stored series and writes an ``alert:<rule>`` event when one fires. Then it
marks the snapshot done (analysis ``live``), in the same transaction-per-step discipline as every analysis, so a
worker killed at any moment and started again analyses nothing twice and misses nothing. One worker per run at
a time: it holds ``analysis.lock`` (an ``flock``, released by the kernel when the worker dies).

Start it from the training script with ``Monitor(..., analyze=Live(...))`` (a separate, lower-priority process
that the training never waits on, unless ``max_lag`` asks it to), or on any machine that sees the run directory
with ``evolens watch RUN_DIR``.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._validation import describe
from ..detect.rules import ALERT_PREFIX, Rule, check_rules
from ..errors import EvolensError, InputError, RunLockedError
from ..store import layout
from ..store.events import capture_running  # re-exported: evolens.analyses.live.capture_running
from ..store.results import ResultsStore, results_store
from ..store.run import Run, open_run

logger = logging.getLogger(__name__)

__all__ = ["LIVE_ANALYSES", "Live", "LiveWorker", "capture_running", "start_worker", "watch"]

LIVE_ANALYSES = ("quality", "proximity", "attributes", "map")
STAGE_HISTORY = 1000  # snapshots whose stage timings a worker keeps


@dataclass
class Live:
    """What the live worker computes for every snapshot, and how it runs.

    Args:
        encoder: encoder name (or a picklable ``Encoder``) for quality, proximity and the map.
        reference: the training data's reference set.
        analyses: subset of ``("quality", "proximity", "attributes", "map")``; ``attributes`` needs ``classifier``.
        heldout: held-out reference set for proximity (skipped when absent).
        classifier: encoder name (with ``classify``) that labels attributes, e.g. ``"digits-cnn"``.
        rules: ``evolens.detect`` rules checked after every snapshot; their alerts reach ``Monitor.step()``.
        metrics, by: quality metrics and per-class grouping (see ``analyses.quality``).
        max_lag: with a Monitor, the most snapshots the worker may fall behind: at a snapshot the Monitor waits
            until at most ``max_lag`` snapshots are unanalysed (0: every verdict arrives at its own snapshot's
            step). None never waits.
        max_wait: the longest the Monitor waits at one snapshot for a worker that makes no progress (seconds);
            then it records an ``analysis_lagging`` warning and training goes on.
        map_after: snapshots analysed before the map is first fitted.
        map_max_reference: reference points drawn on the map.
        device, threads, niceness: the worker's torch device, torch threads and scheduling priority.
        cpus: CPU cores the worker runs on (Linux ``sched_setaffinity``), e.g. the core the training does not use.
        poll_seconds: how often an idle worker looks for new snapshots.
        tensorboard: a TensorBoard log directory the worker mirrors its scalars and alerts into
            (``Monitor(tensorboard=...)`` sets it to the Monitor's).
        results: a ``postgresql://`` URL: workers on several hosts (each on its own copy of the run, kept by
            ``evolens mirror``) claim snapshots there, so each is analysed once, and import each other's values
            (``evolens.store.results_db``). None: this worker alone.
        stale_after: seconds after which a claim in ``results`` whose worker has not finished is taken over.
    """

    encoder: Any = "efficientnet-lite0"
    reference: str = "train"
    analyses: Sequence[str] = ("quality", "proximity", "map")
    heldout: str | None = "heldout"
    classifier: str | None = None
    rules: Sequence[Rule] = ()
    metrics: Sequence[str] = ("fid", "kid", "prdc", "vendi", "cmmd")
    by: str | None = "label"
    max_lag: int | None = None
    max_wait: float = 300.0
    map_after: int = 3
    map_max_reference: int = 1000
    device: str | None = None
    threads: int = 1
    niceness: int = 10
    poll_seconds: float = 0.2
    map_params: dict[str, Any] = field(default_factory=dict)
    cpus: Sequence[int] | None = None
    tensorboard: str | None = None
    results: str | None = None
    stale_after: float = 600.0

    def __post_init__(self) -> None:
        if self.results is not None and (not isinstance(self.results, str)
                                         or not self.results.startswith(("postgresql://", "postgres://"))):
            raise InputError(f"results: expected None or a postgresql:// URL, received {describe(self.results)}")
        self.analyses = tuple(self.analyses)
        unknown = sorted(set(self.analyses) - set(LIVE_ANALYSES))
        if unknown or not self.analyses:
            raise InputError(f"analyses: expected a non-empty subset of {LIVE_ANALYSES}, received {self.analyses!r}")
        if "attributes" in self.analyses and self.classifier is None:
            raise InputError("classifier: the 'attributes' analysis needs a classifier (e.g. 'digits-cnn')")
        if not all(isinstance(rule, Rule) for rule in self.rules):
            raise InputError(f"rules: expected evolens.detect rules (Threshold, Trend, ...), received {describe(self.rules)}")
        if self.max_lag is not None and (isinstance(self.max_lag, bool) or not isinstance(self.max_lag, int)
                                         or self.max_lag < 0):
            raise InputError(f"max_lag: expected None or an integer >= 0, received {self.max_lag!r}")
        for name in ("map_after", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name}: expected a positive integer, received {value!r}")
        self.rules = list(self.rules)

    def context(self) -> dict[str, Any]:
        """What the worker's numbers depend on: the key of its per-snapshot done-marks."""
        encoder = self.encoder if isinstance(self.encoder, str) else getattr(self.encoder, "id", repr(self.encoder))
        return {"encoder": encoder, "reference": self.reference, "analyses": sorted(self.analyses),
                "heldout": self.heldout, "classifier": self.classifier, "metrics": sorted(self.metrics),
                "by": self.by}


class LiveWorker:
    """Analyses the snapshots of one run as they arrive (see the module docstring).

    ``poll()`` analyses every snapshot not done yet and returns how many it did; ``run()`` polls until the
    capture has ended and every snapshot is done (``follow=True``: forever).
    """

    def __init__(self, run_dir: str | os.PathLike, live: Live) -> None:
        if not isinstance(live, Live):
            raise InputError(f"live: expected an evolens.analyses.Live, received {describe(live)}")
        self.run_dir, self.live = Path(run_dir), live
        self.context = live.context()
        self._encoder = self._classifier = None
        self._fired: set[str] | None = None
        self._map: dict[str, Any] | None = None
        self._failed: set[int] = set()
        self._lock = None
        self._run: Run | None = None  # kept open: one analysis session per worker, not one per poll
        self._results: ResultsStore | None = None  # where claims and values live (Live.results), made on first use
        # seconds of each stage for the last STAGE_HISTORY analysed snapshots (bounded: a worker may run for days)
        self.stage_seconds: dict[str, deque[float]] = {}
        self._prepared: dict = {}  # each analysis's prepared reference side, kept warm across snapshots

    # -- one worker per run ----------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the run's analysis lock; RunLockedError when another worker holds it."""
        import fcntl

        handle = open(layout.analysis_lock_path(self.run_dir), "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RunLockedError(f"run_dir: another live worker is analysing {str(self.run_dir)!r}") from None
        self._lock = handle

    def release(self) -> None:
        if self._results is not None:
            self._results.close()
            self._results = None
        if self._run is not None:
            self._run.close()
            self._run = None
        self._prepared.clear()  # prepared against that open run
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- the work --------------------------------------------------------------------------------------
    def _encoders(self):
        from ..encoders import get_encoder

        if self._encoder is None:
            self._encoder = get_encoder(self.live.encoder, device=self.live.device) \
                if isinstance(self.live.encoder, str) else self.live.encoder
        if self.live.classifier is not None and self._classifier is None:
            self._classifier = get_encoder(self.live.classifier, device=self.live.device)
        return self._encoder, self._classifier

    def pending(self, run: Run) -> list[int]:
        """Snapshot steps not analysed yet (failed ones excluded), ascending."""
        done = run.analysed_steps("live", self.context)
        return [s for s in run.steps().tolist() if s not in done and s not in self._failed]

    def poll(self) -> int:
        """Analyse every pending snapshot; return how many were done. Waits (returns 0) while the reference
        sets the analyses need are not stored yet."""
        if self._run is None:
            self._run = open_run(self.run_dir)
            if self.live.tensorboard is not None:
                from ..integrations.tensorboard import TensorBoardMirror

                self._run.add_mirror(TensorBoardMirror(self.live.tensorboard))
        run = self._run
        todo = self.pending(run)
        if not todo:
            return 0
        needed = [self.live.reference] if {"quality", "proximity", "map"} & set(self.live.analyses) else []
        if any(name not in run.reference_names() for name in needed):
            return 0
        if self._fired is None:
            self._fired = {e.kind[len(ALERT_PREFIX):] for e in run.events() if e.kind.startswith(ALERT_PREFIX)}
        results = self._results_store(run)
        finished = results.finished(run.uid, self.context)
        done = 0
        for step in todo:
            if step in finished:  # analysed by a worker on another host: its values, this run's rules
                self._import(run, step, finished[step])
                done += 1
                continue
            if not results.claim(run.uid, run.name, self.context, step):
                continue  # another worker has it: its values are imported once it finishes
            try:
                values = self._analyse(run, step)
                results.finish(run.uid, self.context, step, values)
                done += 1
            except Exception as exc:  # one bad snapshot must not stop the worker (nor the training)
                results.release(run.uid, self.context, step)
                done += 1
                self._failed.add(step)
                logger.exception("evolens live: snapshot %d of %s failed", step, self.run_dir)
                run.add_event("analysis_error", f"live analysis of step {step} failed: {exc!r}", step=step,
                              level="error", data={"traceback": traceback.format_exc(limit=8)})
                # marked done all the same: the error is on the timeline, and a Monitor waiting on the
                # worker's lag must not wait for a snapshot that will never be analysed
                run.add_analysis_step("live", self.context, step, {})
        return done

    def _results_store(self, run: Run) -> ResultsStore:
        """The store of claims and values (``Live.results``: local, or PostgreSQL shared by hosts), made once."""
        if self._results is None:
            def unreachable(exc: Exception) -> None:  # said once; the worker goes on alone
                logger.warning("evolens live: %s", exc)
                run.add_event("analysis_error", f"results store unreachable, analysing alone: {exc}",
                              level="warning")

            self._results = results_store(self.live.results, stale_after=self.live.stale_after,
                                          on_unreachable=unreachable)
        return self._results

    def _import(self, run: Run, step: int, finished: dict[str, Any]) -> None:
        """Write the values another host's worker computed for ``step`` into this run, check the rules on them
        (alerts reach this run's Monitor) and mark the step done."""
        if finished["values"]:
            run.add_scalars(step, finished["values"])
        self._check_rules(run, step)
        run.add_analysis_step("live", self.context, step, {})
        run.add_event("analysis", f"step {step} analysed by {finished['host']} (pid {finished['pid']})", step=step,
                      data={"analysis": "live", "host": finished["host"], "pid": finished["pid"],
                            "values": len(finished["values"])})

    def _check_rules(self, run: Run, step: int) -> None:
        for alert in check_rules(run, self.live.rules, self._fired):
            checkpoint = run.snapshot(step).checkpoint_path
            run.add_event(f"{ALERT_PREFIX}{alert.rule}", alert.message, step=alert.step, level="alert",
                          data={**alert.as_data(), "checkpoint": checkpoint, "source": "live"})

    def _analyse(self, run: Run, step: int) -> dict[str, float]:
        """Every configured analysis of ``step``, the rules, the done-mark; returns the scalars computed."""
        from . import attributes, proximity, quality

        started = time.perf_counter()
        encoder, classifier = self._encoders()
        live = self.live
        values: dict[str, float] = {}

        def timed(stage: str, since: float) -> float:  # seconds of each stage per snapshot (benchmarks/live.py)
            now = time.perf_counter()
            self.stage_seconds.setdefault(stage, deque(maxlen=STAGE_HISTORY)).append(now - since)
            return now

        clock = timed("encoders", started)
        if "quality" in live.analyses:
            values.update(quality(run, encoder=encoder, reference=live.reference, steps=[step], metrics=live.metrics,
                                  by=live.by, progress=False, prepared=self._prepared).values.get(step, {}))
            clock = timed("quality", clock)
        if "proximity" in live.analyses:
            values.update(proximity(run, encoder=encoder, reference=live.reference, heldout=live.heldout,
                                    steps=[step], prepared=self._prepared).values.get(step, {}))
            clock = timed("proximity", clock)
        if "attributes" in live.analyses:
            values.update(attributes(run, classifier=classifier, reference=live.reference,
                                     steps=[step], prepared=self._prepared).values.get(step, {}))
            clock = timed("attributes", clock)
        if "map" in live.analyses:
            self._place_on_map(run, step, encoder)
            clock = timed("map", clock)
        self._check_rules(run, step)
        run.add_analysis_step("live", self.context, step, {})
        timed("rules and marks", clock)
        timed("total", started)
        return values

    # -- the map ---------------------------------------------------------------------------------------
    def _place_on_map(self, run: Run, step: int, encoder: Any) -> None:
        from ..projection.scores import knn_recall
        from ..store import maps
        from .embedding import embedding

        live = self.live
        done = sorted(run.analysed_steps("live", self.context) | {step})
        if self._map is None:
            if len(done) < live.map_after:
                return
            self._fit_map(run, done, encoder)
            return
        features = embedding(run, encoder=encoder, reference=False, steps=[step], progress=False).snapshots.get(step)
        if features is None:  # non-finite samples: not drawn
            return
        model, meta = self._map["model"], self._map["meta"]
        coords = model.extend(features, run.probe_ids(step)).astype(np.float32)
        k = 10
        # Refit when the fixed map no longer keeps this snapshot's neighbourhoods — at most each time the number
        # of snapshots has doubled since the last fit, so refitting costs O(n log n) over a run, not O(n²).
        if (features.shape[0] > 2 * k + 1 and len(done) >= 2 * self._map["fitted_on"]
                and knn_recall(features, coords, k) < 0.5 * self._map["recall"]):
            self._fit_map(run, done, encoder)
            return
        meta = maps.add_frame(run, meta, step, coords)
        self._map["meta"] = meta

    def _fit_map(self, run: Run, steps: list[int], encoder: Any) -> None:
        from ..store import maps
        from .projection import load_projection_model, projection

        params = {"perplexity": 30.0, **self.live.map_params}
        n_points = sum(run.snapshot(s).n_samples for s in steps) + min(self.live.map_max_reference,
                                                                      run.reference_sizes()[self.live.reference])
        params["perplexity"] = float(min(params["perplexity"], max(2.0, (n_points - 2) / 3.0)))
        fitted = projection(run, encoder=encoder, reference=self.live.reference, steps=steps,
                            max_reference=self.live.map_max_reference, progress=False, **params)
        meta = maps.latest(run, fitted.projection_id)
        self._map = {"model": load_projection_model(run, fitted.projection_id), "meta": meta,
                     "recall": fitted.scores.get("knn_recall", 0.0), "fitted_on": len(steps)}

    # -- the loop --------------------------------------------------------------------------------------
    def run(self, *, follow: bool = False, timeout: float | None = None) -> int:
        """Poll until the capture has ended and every snapshot is analysed (or forever with ``follow``);
        return how many snapshots were analysed."""
        self.acquire()
        total, start = 0, time.monotonic()
        try:
            while True:
                done = self.poll()
                total += done
                if done:
                    continue
                if not follow and not capture_running(self._run) and not self.pending(self._run):
                    return total
                if timeout is not None and time.monotonic() - start > timeout:
                    return total
                time.sleep(self.live.poll_seconds)
        finally:
            self.release()


def start_worker(run_dir: str | os.PathLike, live: Live):
    """Start a worker for ``run_dir`` as a separate process (``python -m evolens.analyses``), in its own
    session (a Ctrl+C meant for the training does not stop it; it finishes what was captured) and at lower
    priority. Returns the ``subprocess.Popen``. The configuration travels pickled on the child's stdin."""
    import subprocess

    with open(layout.analysis_log_path(Path(run_dir)), "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "evolens.analyses", str(run_dir), "--config-stdin"],
            stdin=subprocess.PIPE, stdout=log, stderr=log, start_new_session=True,
        )
    if live.cpus is not None and hasattr(os, "sched_setaffinity"):
        # at once, before the child imports anything: it would otherwise start on the training's cores
        os.sched_setaffinity(process.pid, set(live.cpus))
    process.stdin.write(pickle.dumps(live))
    process.stdin.close()
    return process


def watch(path: str | os.PathLike, live: Live, *, follow: bool = False, progress: bool = True) -> dict[str, int]:
    """Follow one run, or every run at or below ``path`` (runs that appear later too), with live analysis.

    Ends when every run's capture has ended and all its snapshots are analysed (``follow``: never). Returns the
    number of snapshots analysed per run. A run another worker holds is skipped.
    """
    from ..store.run import find_runs, is_run_dir

    root = Path(path)
    if not root.exists():
        raise InputError(f"path: expected a run directory or a folder of runs, received {str(root)!r} (missing)")
    workers: dict[Path, LiveWorker] = {}
    counts: dict[str, int] = {}
    try:
        while True:
            runs = [root] if is_run_dir(root) else find_runs(root)
            for run_dir in runs:
                if run_dir not in workers:
                    worker = LiveWorker(run_dir, live)
                    try:
                        worker.acquire()
                    except RunLockedError:
                        continue
                    workers[run_dir] = worker
            busy = False
            for run_dir, worker in workers.items():
                done = worker.poll()
                counts[str(run_dir)] = counts.get(str(run_dir), 0) + done
                if done and progress:
                    print(f"{run_dir}: {counts[str(run_dir)]} snapshots analysed", flush=True)
                busy |= bool(done)
            if busy:
                continue
            if not follow and workers:
                finished = True
                for worker in workers.values():
                    finished &= worker._run is not None and not capture_running(worker._run) \
                        and not worker.pending(worker._run)
                if finished:
                    return counts
            time.sleep(live.poll_seconds)
    finally:
        for worker in workers.values():
            worker.release()


def _main(argv: list[str]) -> int:
    """The worker process that ``start_worker`` launches."""
    run_dir = argv[0]
    live = pickle.loads(sys.stdin.buffer.read())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        os.nice(live.niceness)
    except OSError:  # pragma: no cover - not permitted: run at normal priority
        pass
    if live.cpus is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(live.cpus))
    import torch

    torch.set_num_threads(live.threads)
    worker = LiveWorker(run_dir, live)
    try:
        worker.run()
    except RunLockedError:
        return 0  # another worker already follows this run
    except EvolensError as exc:
        print(f"evolens live worker: {exc}", file=sys.stderr)
        return 2
    return 0


