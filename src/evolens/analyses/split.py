"""Split analysis: several runs of one experiment (same probes, disjoint data splits), analysed together.

``link_runs`` records the group in every member (an append-only ``run_group`` event); ``split``
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

from .. import names as N
from ..detect import BiasedGeneralizationOnset, OnsetReport
from ..encoders import get_encoder
from ..errors import InputError
from ..metrics.proximity import sample_split_distance
from ..store.run import Run, open_run, opened
from ._base import AnalysisResult

__all__ = ["SplitAnalysis", "group_members", "link_runs", "split"]


def _open_all(runs: Sequence[Run | str | os.PathLike]) -> tuple[list[Run], list[Run]]:
    """(all runs opened, the ones opened here and to be closed by the caller)."""
    if not isinstance(runs, (list, tuple)) or len(runs) < 2:
        raise InputError(f"runs: expected a list of at least 2 runs, received {runs!r}")
    own = [open_run(r) for r in runs if not isinstance(r, Run)]
    it = iter(own)
    return [r if isinstance(r, Run) else next(it) for r in runs], own


def link_runs(runs: Sequence[Run | str | os.PathLike], group: str) -> None:
    """Record in every run that the runs form one experiment named ``group``."""
    if not isinstance(group, str) or not group:
        raise InputError(f"group: expected a non-empty name, received {group!r}")
    opened, own = _open_all(runs)
    members = [str(r.path.resolve()) for r in opened]
    for run in opened:
        run.add_event("run_group", f"member of run group {group!r} ({len(members)} runs)",
                      data={"group": group, "members": members})
    for run in own:
        run.close()


def group_members(run: Run | str | os.PathLike, group: str | None = None) -> list[Path]:
    """The members of the (latest, or named) run group that ``run`` belongs to."""
    with opened(run) as run:
        events = [e for e in run.events(kind="run_group") if group is None or e.data["group"] == group]
        name = run.name
    if not events:
        raise InputError(f"run: {name!r} belongs to no run group{' ' + repr(group) if group else ''}; use link_runs")
    return [Path(p) for p in events[-1].data["members"]]


@dataclass
class SplitAnalysis(AnalysisResult):
    """``AnalysisResult`` (values of the first run) plus the split-distance curve per common snapshot (median
    over model pairs), the test-loss curve (median over runs) and the onset report."""

    steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    distance: np.ndarray = field(default_factory=lambda: np.zeros(0))
    loss_steps: np.ndarray | None = None
    loss: np.ndarray | None = None
    report: OnsetReport | None = None
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


def split(
    runs: Sequence[Run | str | os.PathLike],
    *,
    encoder: Any = "pixels",
    steps: Sequence[int] | None = None,
    loss: str = N.HELDOUT_LOSS,
    detector: BiasedGeneralizationOnset | None = None,
    reduce: str = "median",
) -> SplitAnalysis:
    """Biased-generalization analysis of runs trained on disjoint splits with shared probes.

    At every snapshot step common to all runs (or ``steps``), pairs the runs' samples by probe id and computes
    ``sample_split_distance`` in ``encoder``'s space (``"pixels"``: standardised pixels, as in the paper; or an
    encoder) for each pair of runs; the curve is the median over pairs, stored in every run as
    ``proximity/split_distance@<space>``. Steps already analysed for the same members and space are read
    back. ``reduce`` is how one pair's per-probe distances become one number: ``"median"`` (robust) or
    ``"mean"`` (1 - mean cosine, the paper's ``sample_split_inference.py``). The test-loss curve is the median over runs of the scalar ``loss`` at steps all runs logged. A
    ``split_analysis`` event records the report, plus a ``biased_generalization_onset`` alert when the
    detector fires (each written once for the same result).
    """
    if reduce not in ("median", "mean"):
        raise InputError(f"reduce: expected 'median' or 'mean', received {reduce!r}")
    opened_runs, own = _open_all(runs)
    try:
        return _split(opened_runs, encoder, steps, loss, detector, reduce)
    finally:
        for run in own:
            run.close()


def _split(opened: list[Run], encoder: Any, steps: Sequence[int] | None, loss: str,
           detector: BiasedGeneralizationOnset | None, reduce: str) -> SplitAnalysis:
    common = sorted(set.intersection(*(set(r.steps().tolist()) for r in opened)))
    if steps is not None:
        missing = sorted(set(int(s) for s in steps) - set(common))
        if missing:
            raise InputError(f"steps: {missing} are not snapshot steps common to all runs; common: {common}")
        common = sorted(set(int(s) for s in steps))
    if not common:
        raise InputError("runs: no snapshot step is common to all runs")
    space_id = encoder if isinstance(encoder, str) else getattr(encoder, "id", type(encoder).__name__)
    metric = N.SPLIT_DISTANCE if reduce == "median" else N.SPLIT_DISTANCE_MEAN
    name = N.scalar_name(N.PROXIMITY, metric, encoder=space_id)
    members = [str(r.path.resolve()) for r in opened]
    context = {"members": sorted(members), "space": space_id}
    if reduce != "median":  # the median's context stays what it was, so earlier results are read back
        context["reduce"] = reduce
    pairs = list(itertools.combinations(range(len(opened)), 2))
    done = set.intersection(*(r.analysed_steps("split", context) for r in opened))
    stored = dict(zip(*[a.tolist() for a in opened[0].scalars(name)])) if done else {}
    distances, pair_curves = [], {pair: [] for pair in pairs}
    computed = []
    for step in common:
        if step in done and step in stored:
            distances.append(stored[step])
            continue
        reference_ids = opened[0].probe_ids(step)
        samples = [_paired(r, step, reference_ids)[0] for r in opened]
        if isinstance(encoder, str) and encoder not in ("pixels", "features"):
            encoder = get_encoder(encoder)  # a name: resolved once, on the first step to compute
        values = [sample_split_distance(samples[i], samples[j], space=encoder, reduce=reduce) for i, j in pairs]
        for pair, value in zip(pairs, values):
            pair_curves[pair].append(value)
        distances.append(float(np.median(values)))
        computed.append(step)
        for run in opened:
            run.add_analysis_step("split", context, step, {name: distances[-1]})
    steps_arr, distance = np.array(common, dtype=np.int64), np.array(distances)
    loss_steps = loss_values = None
    if all(loss in r.scalar_names() for r in opened):
        curves = [dict(zip(*[a.tolist() for a in r.scalars(loss)])) for r in opened]
        shared = sorted(set.intersection(*(set(c) for c in curves)))
        if shared:
            loss_steps = np.array(shared, dtype=np.int64)
            loss_values = np.array([np.median([c[s] for c in curves]) for s in shared])
    detector = detector or BiasedGeneralizationOnset()
    report = detector.report(steps_arr, distance, loss_steps, loss_values)
    result = SplitAnalysis("split", space_id, None, {s: {name: d} for s, d in zip(common, distances)}, computed,
                           steps=steps_arr, distance=distance, loss_steps=loss_steps, loss=loss_values, report=report,
                           pair_distances={p: np.array(c) for p, c in pair_curves.items() if len(c) == len(common)})
    if computed:
        data = {"members": members, "space": space_id, "loss": loss, "tau_cos": report.tau_cos,
                "tau_loss": report.tau_loss, "biased_phase": report.biased_phase, "onset_step": report.onset_step}
        for run in opened:
            run.add_event("split_analysis", f"split distance over {len(common)} snapshots: tau_cos={report.tau_cos}, "
                          f"tau_loss={report.tau_loss}", data=data)
            if report.onset_step is not None:
                run.add_event("biased_generalization_onset",
                              f"split distance rose {detector.margin:.0%} above its minimum at step "
                              f"{report.onset_step} while the test loss was still falling",
                              step=report.onset_step, level="alert", data=data)
    return result
