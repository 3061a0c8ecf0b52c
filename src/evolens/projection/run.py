"""Project a whole run: embed it, lay out reference data and every snapshot on one map, store the map.

The stored projection (coordinates per snapshot and for a reference subsample, probe ids, labels, scores)
is what the report and the dashboard draw; ``load_projection`` reads it back and ``projection_figure``
draws it with plotly (a snapshot slider and a play button; reference data in grey).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..store.reader import Run, open_run
from .evolutionary import EvolutionaryTSNE

__all__ = ["Projection", "load_projection", "project_run", "projection_figure"]


@dataclass
class Projection:
    """A stored map: ``coords[step]`` (n, 2), ``ids[step]``, ``labels[step]`` (or None), reference points."""

    projection_id: str
    encoder_id: str
    layout: str
    steps: list[int]
    coords: dict[int, np.ndarray] = field(default_factory=dict)
    ids: dict[int, np.ndarray] = field(default_factory=dict)
    labels: dict[int, np.ndarray | None] = field(default_factory=dict)
    reference_coords: np.ndarray | None = None
    reference_labels: np.ndarray | None = None
    scores: dict[str, float] = field(default_factory=dict)


def projection_bounds(parts: list[np.ndarray | None]) -> list[float]:
    """[x_min, x_max, y_min, y_max] over every (n, 2) array in ``parts`` (None entries skipped)."""
    every = np.concatenate([p for p in parts if p is not None])
    return [float(every[:, 0].min()), float(every[:, 0].max()), float(every[:, 1].min()), float(every[:, 1].max())]


def _key(projection_id: str, part: str) -> str:
    return f"projection:{projection_id}:{part}"


def project_run(
    run: Run | str | os.PathLike,
    encoder: Any = "efficientnet-lite0",
    *,
    reference: str | None = "train",
    max_reference: int = 2000,
    layout: str = "free",
    steps: Sequence[int] | None = None,
    seed: int = 0,
    progress: bool = True,
    **params: Any,
) -> Projection:
    """Fit an ``EvolutionaryTSNE`` to the run's snapshots (and a reference subsample) and store it in the run.

    Args:
        run: ``Run`` or run directory.
        encoder: encoder name or instance (features cached in the run).
        reference: reference set drawn in grey on the map (None for none); at most ``max_reference`` of its
            points, chosen with ``seed``.
        layout, params: passed to ``EvolutionaryTSNE``.
        steps: snapshots to project (default: all with finite samples).

    Returns the ``Projection`` (also readable later with ``load_projection``).
    """
    from ..encoders import embed_run, get_encoder

    run = run if isinstance(run, Run) else open_run(run)
    encoder = get_encoder(encoder)
    if reference is not None and reference not in run.reference_names():
        raise InputError(f"reference: no reference set {reference!r} in run {run.name!r}; known: {run.reference_names()}")
    embedded = embed_run(run, encoder, steps=steps, references=[reference] if reference else False, progress=progress)
    chosen = sorted(embedded.snapshots)
    if not chosen:
        raise InputError(f"run: no snapshots with finite samples to project in {run.name!r}")
    ref_features = ref_labels = None
    if reference is not None:
        all_features = embedded.references[reference]
        rng = np.random.default_rng(seed)
        index = np.sort(rng.choice(all_features.shape[0], min(max_reference, all_features.shape[0]), replace=False))
        ref_features = all_features[index]
        labels = run.reference(reference).labels
        ref_labels = labels[index] if labels is not None else None
    ids = [run.probe_ids(s) for s in chosen]
    model = EvolutionaryTSNE(layout=layout, random_state=seed, **params)
    model.fit([embedded.snapshots[s] for s in chosen], ids, reference=ref_features)
    scores = model.scores()
    description = {"encoder_id": encoder.id, "layout": layout, "steps": chosen, "reference": reference,
                   "max_reference": max_reference, "seed": seed, "params": params}
    projection_id = hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()[:16]
    result = Projection(projection_id, encoder.id, layout, chosen, reference_labels=ref_labels, scores=scores)
    for step, coords, step_ids in zip(chosen, model.embedding_, ids):
        result.coords[step] = coords.astype(np.float32)
        result.ids[step] = step_ids
        result.labels[step] = run.labels(step)
        run.add_features(_key(projection_id, f"step={step}"), encoder.id, result.coords[step], {"kind": "projection"})
    if model.reference_embedding_ is not None:
        result.reference_coords = model.reference_embedding_.astype(np.float32)
        run.add_features(_key(projection_id, "reference"), encoder.id, result.reference_coords, {"kind": "projection"})
        if ref_labels is not None:
            run.add_features(_key(projection_id, "reference-labels"), encoder.id, ref_labels, {"kind": "projection"})
    bounds = projection_bounds([result.coords[s] for s in chosen] + [result.reference_coords])
    run.add_event("projection", f"evolutionary t-SNE ({layout}) of {len(chosen)} snapshots with {encoder.id}",
                  data={**description, "projection_id": projection_id, "scores": scores, "bounds": bounds})
    return result


def load_projection(run: Run | str | os.PathLike, projection_id: str | None = None) -> Projection:
    """Read a stored projection (the latest one unless ``projection_id`` is given)."""
    run = run if isinstance(run, Run) else open_run(run)
    events = [e for e in run.events(kind="projection")
              if projection_id is None or e.data.get("projection_id") == projection_id]
    if not events:
        raise InputError(f"run: no stored projection{' ' + projection_id if projection_id else ''} in {run.name!r}; "
                         "run evolens.projection.project_run first")
    data = events[-1].data
    pid, encoder_id = data["projection_id"], data["encoder_id"]
    result = Projection(pid, encoder_id, data["layout"], list(data["steps"]), scores=data.get("scores", {}))
    for step in result.steps:
        result.coords[step] = run.cached_features(_key(pid, f"step={step}"), encoder_id)
        result.ids[step] = run.probe_ids(step)
        result.labels[step] = run.labels(step)
    result.reference_coords = run.cached_features(_key(pid, "reference"), encoder_id)
    result.reference_labels = run.cached_features(_key(pid, "reference-labels"), encoder_id)
    return result


def projection_figure(projection: Projection, *, title: str | None = None, max_points: int | None = None):
    """A plotly figure of the map: one frame per snapshot (slider + play), samples coloured by label,
    reference data in grey, fixed axes so motion between frames is the model's."""
    import plotly.graph_objects as go

    x0, x1, y0, y1 = projection_bounds([projection.coords[s] for s in projection.steps] + [projection.reference_coords])
    pad_x, pad_y = 0.05 * (x1 - x0), 0.05 * (y1 - y0)
    x_range, y_range = [x0 - pad_x, x1 + pad_x], [y0 - pad_y, y1 + pad_y]

    def reference_trace():
        if projection.reference_coords is None:
            return []
        return [go.Scattergl(x=projection.reference_coords[:, 0], y=projection.reference_coords[:, 1], mode="markers",
                             marker=dict(size=4, color="rgba(150,150,150,0.35)"), name="reference data",
                             hoverinfo="skip")]

    def sample_trace(step: int):
        coords = projection.coords[step][:max_points] if max_points else projection.coords[step]
        labels = projection.labels.get(step)
        text = [f"probe {i}" + (f", label {l}" if labels is not None else "")
                for i, l in zip(projection.ids[step], labels if labels is not None else projection.ids[step])]
        marker = dict(size=7, line=dict(width=0.5, color="white"))
        if labels is not None:
            marker.update(color=np.asarray(labels)[: len(coords)].astype(float), colorscale="Turbo", showscale=True,
                          colorbar=dict(title="label"))
        return go.Scattergl(x=coords[:, 0], y=coords[:, 1], mode="markers", marker=marker, text=text[: len(coords)],
                            hoverinfo="text", name=f"samples at step {step}")

    first = projection.steps[0]
    frames = [go.Frame(data=reference_trace() + [sample_trace(s)], name=str(s)) for s in projection.steps]
    slider = dict(active=0, currentvalue=dict(prefix="step "), pad=dict(t=40), transition=dict(duration=0),
                  steps=[dict(label=str(s), method="animate",
                              args=[[str(s)], dict(mode="immediate", frame=dict(duration=0, redraw=True),
                                                   transition=dict(duration=0))]) for s in projection.steps])
    play = dict(type="buttons", showactive=False, x=0.0, y=-0.08, xanchor="left",
                buttons=[dict(label="play", method="animate",
                              args=[None, dict(frame=dict(duration=400, redraw=True), fromcurrent=True)]),
                         dict(label="pause", method="animate",
                              args=[[None], dict(mode="immediate", frame=dict(duration=0, redraw=False))])])
    figure = go.Figure(data=reference_trace() + [sample_trace(first)], frames=frames)
    figure.update_layout(title=title or f"evolutionary map ({projection.layout}, {projection.encoder_id})",
                         xaxis=dict(range=x_range, showticklabels=False, zeroline=False),
                         yaxis=dict(range=y_range, showticklabels=False, zeroline=False, scaleanchor="x"),
                         sliders=[slider], updatemenus=[play], template="plotly_white", height=640)
    return figure
