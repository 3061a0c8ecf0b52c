"""Run groups: several runs of one experiment (same probes, different data splits), analysed together.

``link_runs`` records the group in every member (an append-only ``run_group`` event); ``analyze_split_runs``
computes the biased-generalization split distance between the members at every common snapshot, stores it
with the test-loss curve, and reports τ_cos, τ_loss and the onset.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .detect import BiasedGeneralizationOnset, OnsetReport
from .errors import InputError
from .metrics.proximity import sample_split_distance
from .store.reader import Run, open_run

__all__ = ["SplitAnalysis", "analyze_split_runs", "group_members", "link_runs"]

SPLIT_DISTANCE = "proximity/split_distance"


def _open_all(runs: Sequence[Run | str | os.PathLike]) -> list[Run]:
    if not isinstance(runs, (list, tuple)) or len(runs) < 2:
        raise InputError(f"runs: expected a list of at least 2 runs, received {runs!r}")
    return [r if isinstance(r, Run) else open_run(r) for r in runs]


def link_runs(runs: Sequence[Run | str | os.PathLike], group: str) -> None:
    """Record in every run that the runs form one experiment named ``group``."""
    if not isinstance(group, str) or not group:
        raise InputError(f"group: expected a non-empty name, received {group!r}")
    opened = _open_all(runs)
    members = [str(r.path.resolve()) for r in opened]
    for run in opened:
        run.add_event("run_group", f"member of run group {group!r} ({len(members)} runs)",
                      data={"group": group, "members": members})


def group_members(run: Run | str | os.PathLike, group: str | None = None) -> list[Path]:
    """The members of the (latest, or named) run group that ``run`` belongs to."""
    run = run if isinstance(run, Run) else open_run(run)
    events = [e for e in run.events(kind="run_group") if group is None or e.data["group"] == group]
    if not events:
        raise InputError(f"run: {run.name!r} belongs to no run group{' ' + repr(group) if group else ''}; use link_runs")
    return [Path(p) for p in events[-1].data["members"]]


@dataclass
class SplitAnalysis:
    """Split distance per common snapshot (median over model pairs), the test-loss curve (median over runs),
    and the onset report."""

    steps: np.ndarray
    distance: np.ndarray
    loss_steps: np.ndarray | None
    loss: np.ndarray | None
    report: OnsetReport
    pair_distances: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)


def _paired(run: Run, step: int, order: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    samples, ids = run.samples(step), run.probe_ids(step)
    if order is None:
        return samples, ids
    position = {pid: i for i, pid in enumerate(ids.tolist())}
    missing = [pid for pid in order.tolist() if pid not in position]
    if missing:
        raise InputError(f"runs: run {run.name!r} lacks probes {missing[:3]} at step {step}; split runs need the same probes")
    return samples[[position[pid] for pid in order.tolist()]], order


def analyze_split_runs(
    runs: Sequence[Run | str | os.PathLike],
    *,
    space: Any = "pixels",
    loss: str = "heldout_loss",
    detector: BiasedGeneralizationOnset | None = None,
    store: bool = True,
) -> SplitAnalysis:
    """Biased-generalization analysis of runs trained on disjoint splits with shared probes.

    At every snapshot step common to all runs, pairs the runs' samples by probe id and computes
    ``sample_split_distance`` for each pair of runs; the curve is the median over pairs. The test-loss curve is
    the median over runs of the scalar ``loss`` at steps all runs logged. With ``store``, the curve is appended
    to every run as ``proximity/split_distance`` and the report as a ``split_analysis`` event (plus a
    ``biased_generalization_onset`` alert when the detector fires).
    """
    opened = _open_all(runs)
    common = sorted(set.intersection(*(set(r.steps().tolist()) for r in opened)))
    if not common:
        raise InputError("runs: no snapshot step is common to all runs")
    distances, pair_curves = [], {pair: [] for pair in itertools.combinations(range(len(opened)), 2)}
    for step in common:
        reference_ids = opened[0].probe_ids(step)
        samples = [_paired(r, step, reference_ids)[0] for r in opened]
        values = []
        for i, j in pair_curves:
            value = sample_split_distance(samples[i], samples[j], space=space)
            pair_curves[(i, j)].append(value)
            values.append(value)
        distances.append(float(np.median(values)))
    steps, distance = np.array(common, dtype=np.int64), np.array(distances)
    loss_steps = loss_values = None
    if all(loss in r.scalar_names() for r in opened):
        curves = [dict(zip(*[a.tolist() for a in r.scalars(loss)])) for r in opened]
        shared = sorted(set.intersection(*(set(c) for c in curves)))
        if shared:
            loss_steps = np.array(shared, dtype=np.int64)
            loss_values = np.array([np.median([c[s] for c in curves]) for s in shared])
    detector = detector or BiasedGeneralizationOnset()
    report = detector.report(steps, distance, loss_steps, loss_values)
    result = SplitAnalysis(steps, distance, loss_steps, loss_values, report,
                           {pair: np.array(curve) for pair, curve in pair_curves.items()})
    if store:
        members = [str(r.path.resolve()) for r in opened]
        data = {"members": members, "space": space if isinstance(space, str) else type(space).__name__,
                "loss": loss, "tau_cos": report.tau_cos, "tau_loss": report.tau_loss,
                "biased_phase": report.biased_phase, "onset_step": report.onset_step}
        for run in opened:
            for step, value in zip(common, distances):
                run.add_scalars(step, {SPLIT_DISTANCE: value})
            run.add_event("split_analysis", f"split distance over {len(common)} snapshots: tau_cos={report.tau_cos}, "
                          f"tau_loss={report.tau_loss}", data=data)
            if report.onset_step is not None:
                run.add_event("biased_generalization_onset",
                              f"split distance rose {detector.margin:.0%} above its minimum at step "
                              f"{report.onset_step} while the test loss was still falling",
                              step=report.onset_step, level="alert", data=data)
    return result
