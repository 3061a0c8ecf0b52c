"""What every analysis shares: its result object, the per-snapshot driver that makes it idempotent, and the
helpers that name what produced a number.

An analysis is (``analysis`` name, ``context``): the context holds everything its numbers depend on (encoder
id, reference, parameters). The store records each (analysis, context, step) that is done, in the same
transaction as its scalars, so running an analysis again computes only steps it has not seen — and computes
nothing at all, not even the reference side, when every step is done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..names import parse_name, resolve_name
from ..store import layout
from ..store.run import Run

StepFn = Callable[[int], Mapping[str, float]]


@dataclass
class AnalysisResult:
    """What an analysis found: ``values[step][scalar name]`` for every requested step (computed now or read
    back from the run), which steps were ``computed`` now, and what was ``skipped`` and why."""

    analysis: str
    encoder_id: str | None = None
    reference: str | None = None
    values: dict[int, dict[str, float]] = field(default_factory=dict)
    computed: list[int] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def names(self) -> list[str]:
        """Every scalar name in the result, sorted."""
        return sorted({name for row in self.values.values() for name in row})

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps int64 (m,), values float64 (m,))`` of one scalar, at the steps where it was computed.

        ``name`` may leave out the context (``quality/fid``) when the result holds only one context for it.
        """
        name = resolve_name(name, self.names())
        steps = [s for s in sorted(self.values) if name in self.values[s]]
        return (np.array(steps, dtype=np.int64),
                np.array([self.values[s][name] for s in steps], dtype=np.float64))


def check_reference_name(run: Run, reference: Any, argument: str = "reference") -> str:
    """``reference`` if the run stores a reference set by that name; InputError listing the known ones."""
    if reference not in run.reference_names():
        raise InputError(
            f"{argument}: no reference set {reference!r} in run {run.name!r} (known: {run.reference_names()}); "
            "store one with Run.add_reference(name, images, labels) or Monitor.add_reference"
        )
    return reference


def choose_steps(run: Run, steps: Sequence[int] | None) -> list[int]:
    """The snapshot steps to analyse: all of them, or ``steps`` after checking they exist."""
    captured = run.steps().tolist()
    if steps is None:
        return captured
    wanted = sorted({int(s) for s in steps})
    missing = sorted(set(wanted) - set(captured))
    if missing:
        raise InputError(f"steps: no snapshots at {missing} in run {run.name!r}; captured: {captured}")
    return wanted


def _stored_values(run: Run, steps: set[int], keep: Callable[[str], bool]) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    for name in run.scalar_names():
        if not keep(name):
            continue
        s, v = run.scalars(name)
        for step, value in zip(s.tolist(), v.tolist()):
            if step in steps:
                out.setdefault(step, {})[name] = value
    return out


def stored_reference_quantity(run: Run, kind: str, compute: Callable[[], Any], *, encoder_id: str, source: str,
                              params: Mapping[str, Any] | None = None, meta: Mapping[str, Any] | None = None,
                              shared: Any = None) -> Any:
    """A quantity of a reference set alone (FID statistics, k-NN radii, spacing…), stored under ``kind`` with the
    reference's images hash ``source``: read from the run, else from the named reference ``shared`` whose shards
    the analysis reads (``store.references.NamedReference``), else ``compute()``d once and stored — in
    ``shared`` when given (every run that uses it reads it), else in the run. Live workers call this for every
    snapshot: it is what keeps the reference side out of their per-snapshot cost."""
    value = run.derived(kind, encoder_id=encoder_id, source=source, params=params)
    if value is None and shared is not None:
        value = shared.derived(kind, encoder_id=encoder_id, params=params)
    if value is None:
        value = compute()
        if shared is not None:
            shared.add_derived(kind, value, encoder_id=encoder_id, params=params, meta=meta)
        else:
            run.add_derived(kind, value, encoder_id=encoder_id, source=source, params=params, meta=meta)
    return value


def snapshot_features(embedded: Any, embed: Callable[[int], Any]) -> Callable[[int], Any]:
    """``features(step)``: the (n, d) features of snapshot ``step`` from ``embedded`` (a ``RunEmbedding`` of the
    steps prepared for), embedding a step it lacks on demand with ``embed(step)`` (a ``RunEmbedding`` of that
    step; a prepared analysis reused for later snapshots); None for a snapshot with non-finite samples. Each
    step's features are handed out once (not kept)."""
    def features(step: int) -> Any:
        if step not in embedded.snapshots and step not in embedded.skipped:
            more = embed(step)
            embedded.snapshots.update(more.snapshots)
            embedded.skipped.extend(more.skipped)
        return embedded.snapshots.pop(step, None)

    return features


def per_snapshot(
    run: Run,
    result: AnalysisResult,
    context: Mapping[str, Any],
    steps: list[int],
    prepare: Callable[[list[int]], StepFn],
    *,
    family: str,
    what: str,
    progress: bool = False,
    prepared: dict | None = None,
) -> AnalysisResult:
    """Run one analysis over ``steps``: ``prepare(todo)`` (called only when some step is not done yet) returns
    ``fn(step) -> {name: value}``; each step's values are stored with its done-mark in one transaction.
    Two stages: ``prepare`` does what every snapshot shares (the reference side: statistics, radii, cells, bins,
    the encoder), ``fn`` one snapshot. With ``prepared`` (a dict the caller keeps, e.g. a live worker across
    snapshots) the ``fn`` of the same analysis and context is kept there and reused, so the reference side is
    prepared once per worker, not once per snapshot; ``fn`` must then serve steps not in ``todo``
    (``snapshot_features`` embeds them on demand).
    Values of steps done earlier are read back from the run (names of ``family`` with the same encoder and
    reference). When some step was computed, an ``analysis`` event records ``what`` and the context."""
    done = run.analysed_steps(result.analysis, context) & set(steps)
    todo = [s for s in steps if s not in done]
    if done:
        def same_context(name: str) -> bool:
            parts = parse_name(name)
            return (parts.family == family and parts.encoder == result.encoder_id
                    and parts.reference == result.reference)

        result.values.update(_stored_values(run, done, same_context))
    if todo:
        from tqdm.auto import tqdm

        key = (result.analysis, layout.canonical_json(dict(context)))
        compute = prepared.get(key) if prepared is not None else None
        if compute is None:
            compute = prepare(todo)
            if prepared is not None:
                prepared[key] = compute
        for step in tqdm(todo, desc=result.analysis, unit="snapshot", disable=not progress):
            values = dict(compute(step))
            run.add_analysis_step(result.analysis, context, step, values)
            result.values[step] = values
            result.computed.append(step)
        run.add_event("analysis", f"{what} of {len(result.computed)} snapshots with {result.encoder_id}"
                      + (f" against {result.reference!r}" if result.reference else ""),
                      data={"analysis": result.analysis, **context, "steps": result.computed})
    result.values = dict(sorted(result.values.items()))
    return result
