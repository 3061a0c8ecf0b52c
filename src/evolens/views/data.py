"""What the report and the dashboard show, as plain data read from a run (JSON-ready dicts, PNG bytes).

The static report (:mod:`evolens.views.report`) and the live dashboard (:mod:`evolens.views.server`) are thin layers over
these functions, so both show the same numbers. Nothing here writes to the run.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

from ..errors import InputError
from ..store import events as event_kinds
from ..store import layout, maps
from ..store.run import Run
from .grid import images_to_grid, png_bytes

__all__ = [
    "event_list",
    "class_heatmap",
    "config_rows",
    "metric_panels",
    "png_bytes",
    "projection_meta",
    "memorisation_gallery",
    "probe_thumbnails",
    "reference_images_at",
    "reference_thumbnails",
    "sample_attributes",
    "projection_points",
    "projection_track",
    "run_summary",
    "sample_grid",
    "sample_points",
    "samples_as_images",
    "scalar_series",
]

# axis ranges of stored projections without "bounds" in their event, by (run path, projection id)
_BOUNDS_CACHE: dict[tuple[str, str], list[float]] = {}

def _finite_or_none(values: np.ndarray, decimals: int | None = None) -> list[float | None]:
    out: list[float | None] = []
    for v in np.asarray(values, dtype=np.float64).tolist():
        out.append(None if not math.isfinite(v) else (round(v, decimals) if decimals is not None else v))
    return out


def samples_kind(sample_shape: tuple[int, ...]) -> str:
    """``"images"`` for (C, H, W) with C in {1, 3} or (H, W) samples, ``"points"`` for 1-D/2-D vectors, else
    ``"other"`` (shape of one sample, without the batch axis)."""
    shape = tuple(sample_shape)
    if (len(shape) == 3 and shape[0] in (1, 3) and min(shape[1:]) >= 4) or (len(shape) == 2 and min(shape) >= 4):
        return "images"
    if len(shape) <= 1 and (not shape or shape[0] <= 2):
        return "points"
    return "other"


def run_summary(run: Run) -> dict[str, Any]:
    """Name, config, sessions, snapshot steps, scalar names, references and counts of one run (JSON-ready).

    Read with aggregate queries only (no snapshot or event is loaded), so the dashboard's 2-second poll stays
    cheap on long runs; ``cursor`` says what the run holds (a view fetches what changed since its last one).
    """
    snapshots = run.snapshot_overview()
    events = run.event_overview()
    live_done = run.count_analysed_snapshots("live")
    live_followed = layout.analysis_lock_path(run.path).exists()  # a worker has followed this run
    sessions = run.sessions()
    projection = events["projection"]
    last_steps = run.scalar_last_steps()
    return {
        "name": run.name,
        "path": str(run.path),
        "created_at": run.created_at,
        "config": run.config,
        "config_rows": config_rows(run.config),
        "sessions": len(sessions),
        "n_snapshots": snapshots["n"],
        "first_step": snapshots["first_step"],
        "last_step": snapshots["last_step"],
        "n_nonfinite": snapshots["n_nonfinite"],
        "samples_kind": samples_kind(snapshots["sample_shape"]) if snapshots["sample_shape"] is not None else None,
        "scalar_names": list(last_steps),
        "references": [{"name": name, "n": n} for name, n in run.reference_sizes().items()],
        "n_events": events["n"],
        "n_alerts": events["n_alerts"],
        "has_projection": projection is not None,
        "projection_steps": len(projection.get("steps", [])) if projection is not None else 0,
        # snapshots the live worker has not analysed yet (None when no live analysis ever ran on the run)
        "analysis_lag": None if not live_done and not live_followed else snapshots["n"] - live_done,
        # where an incremental view stands: the last snapshot step, the last event id, the newest session and
        # each scalar series' last step (a view asks for ``since`` its own last step of the series that grew;
        # a new session means re-read everything: a resume may log earlier steps again)
        "cursor": {"step": snapshots["last_step"], "event": events["last_id"],
                   "session": sessions[-1]["id"] if sessions else None, "scalars": last_steps},
    }


def config_rows(config: Any, prefix: str = "", max_items: int = 8) -> list[list[str]]:
    """A run config as compact ``[key, value]`` rows: nested mappings flattened to dotted keys, lists longer
    than ``max_items`` folded to their first items and their length (a probe label list is one row, not 100)."""
    if not isinstance(config, dict):
        return [[prefix or "config", _config_value(config, max_items)]]
    rows: list[list[str]] = []
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            rows += config_rows(value, name, max_items)
        else:
            rows.append([name, _config_value(value, max_items)])
    return rows


def _config_value(value: Any, max_items: int) -> str:
    import json

    if isinstance(value, (list, tuple)) and len(value) > max_items:
        head = json.dumps(list(value[:max_items]), default=str)[:-1]
        return f"{head}, …] ({len(value)} items)"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 300 else text[:297] + "…"


def metric_panels(names: list[str]) -> list[dict[str, Any]]:
    """One panel per metric and context: the scalar names grouped by (family, metric, encoder, reference), with
    the overall series and the per-class ones apart, in first-seen order.

    Each panel: ``id`` (safe for HTML ids), ``title`` (``"quality/fid · efficientnet-lite0 vs train"``),
    ``direction`` (``"lower is better"``, ``"higher is better"`` or ``""``), ``overall`` (the name without a class,
    or None) and ``classes`` (``{class: name}``, in class order) — the views draw the overall curve in the panel
    and the classes as a class × step heatmap beside it.
    """
    from .. import names as N

    panels: dict[tuple, dict[str, Any]] = {}
    for name in names:
        parts = N.parse_name(name)
        key = (parts.family, parts.metric, parts.encoder, parts.reference)
        if key not in panels:
            base = f"{parts.family}/{parts.metric}" if parts.family else parts.metric
            leaf = parts.metric.rsplit("/", 1)[-1]
            direction = ("lower is better" if leaf in N.LOWER_IS_BETTER else
                         "higher is better" if leaf in N.HIGHER_IS_BETTER else "")
            title = base + (f" · {parts.context}" if parts.context else "")
            digest = hashlib.sha1(repr(key).encode()).hexdigest()[:10]  # stable while new names appear
            panels[key] = {"id": f"panel-{digest}", "title": title, "direction": direction,
                           "overall": None, "classes": {}}
        if parts.cls is None:
            panels[key]["overall"] = name
        else:
            panels[key]["classes"][parts.cls] = name
    for panel in panels.values():
        panel["classes"] = dict(sorted(panel["classes"].items(), key=lambda kv: _class_order(kv[0])))
    return list(panels.values())


def _class_order(cls: str) -> tuple:
    try:
        return (0, float(cls), cls)
    except ValueError:
        return (1, 0.0, cls)


def class_heatmap(series: dict[str, dict[str, list]], classes: dict[str, str]) -> dict[str, Any]:
    """The class × step matrix of one panel: ``{"steps": [...], "classes": [...], "z": [[value or None, ...], ...]}``
    over the union of the classes' steps (None where a class has no value at a step)."""
    steps = sorted({s for name in classes.values() if name in series for s in series[name]["steps"]})
    column = {s: i for i, s in enumerate(steps)}
    rows = []
    for name in classes.values():
        row: list[Any] = [None] * len(steps)
        if name in series:
            for step, value in zip(series[name]["steps"], series[name]["values"]):
                row[column[step]] = value
        rows.append(row)
    return {"steps": steps, "classes": list(classes), "z": rows}


def scalar_series(run: Run, names: list[str] | None = None, max_points: int = 2000,
                  since: int | None = None) -> dict[str, dict[str, list]]:
    """``{name: {"steps": [...], "values": [...]}}`` (non-finite values as None); long series are thinned to at
    most ``max_points`` evenly spaced points (the last point always kept). With ``since``, only the points after
    that step (a view appending to what it has; names without new points are left out)."""
    known = run.scalar_names()
    if names is None:
        names = known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"names: {unknown} are not scalars of run {run.name!r}; known: {known}")
    out = {}
    for name in names:
        steps, values = run.scalars(name, since=since)
        if since is not None and not len(steps):
            continue
        if len(steps) > max_points:
            keep = np.unique(np.linspace(0, len(steps) - 1, max_points).round().astype(int))
            steps, values = steps[keep], values[keep]
        out[name] = {"steps": np.asarray(steps).astype(int).tolist(), "values": _finite_or_none(values)}
    return out


def event_list(run: Run, since_id: int | None = None) -> list[dict[str, Any]]:
    """Every event of the run (only those after event ``since_id`` when given), oldest first (JSON-ready), each
    with how the views show it (``store.events``): ``style`` (alert, warning, intervention, other), ``marked``
    (a line on the step axis) and ``listed`` (a row of the alerts table)."""
    return [{"id": e.id, "step": e.step, "kind": e.kind, "level": e.level, "message": e.message,
             "wall_time": e.wall_time, "style": event_kinds.event_style(e.kind, e.level),
             "marked": event_kinds.is_marked(e.kind, e.level), "listed": event_kinds.is_listed(e.kind, e.level)}
            for e in run.events(since_id=since_id)]


def samples_as_images(samples: np.ndarray) -> np.ndarray | None:
    """(n, C, H, W) with C in {1, 3} in [0, 1] for image-like samples, else None."""
    if samples.ndim == 3 and min(samples.shape[1:]) >= 4:
        samples = samples[:, None]
    if samples.ndim != 4 or samples.shape[1] not in (1, 3) or min(samples.shape[2:]) < 4:
        return None
    images = samples.astype(np.float32)
    finite = images[np.isfinite(images)]
    if finite.size and (finite.min() < -1e-3 or finite.max() > 1 + 1e-3):
        low, high = (-1.0, 1.0) if finite.min() >= -1 - 1e-3 and finite.max() <= 1 + 1e-3 else (finite.min(), finite.max())
        images = (images - low) / max(high - low, 1e-12)
    return images


def sample_grid(run: Run, step: int, max_images: int = 100) -> np.ndarray | None:
    """A uint8 picture of the first ``max_images`` samples of snapshot ``step``, or None when the samples are not
    images ((n, C, H, W), C in {1, 3}). Images outside [0, 1] are shown from [−1, 1] or min–max scaled."""
    samples = run.samples(step)  # raises InputError for an unknown step
    images = samples_as_images(samples[:max_images])
    return None if images is None else images_to_grid(images)


def sample_points(run: Run, step: int, max_points: int = 5000, decimals: int = 4) -> dict[str, Any] | None:
    """Low-dimensional samples (n, 1) or (n, 2) of snapshot ``step`` as ``{"x": [...], "y": [...] | None}``;
    None for other shapes (images have :func:`sample_grid`)."""
    samples = run.samples(step)
    flat = samples.reshape(samples.shape[0], -1) if samples.ndim > 1 else samples[:, None]
    if flat.shape[1] > 2:
        return None
    flat = flat[:max_points]
    return {"x": _finite_or_none(flat[:, 0], decimals),
            "y": _finite_or_none(flat[:, 1], decimals) if flat.shape[1] == 2 else None}


def projection_meta(run: Run) -> dict[str, Any] | None:
    """The latest stored evolutionary projection: id, encoder, layout, steps, scores, axis ranges; None if none."""
    data = maps.latest(run)
    if data is None:
        return None
    meta = {"projection_id": data["projection_id"], "encoder_id": data["encoder_id"], "layout": data.get("layout"),
            "steps": [int(s) for s in data["steps"]], "scores": data.get("scores", {}),
            "reference_name": data.get("reference"), "max_reference": data.get("max_reference"),
            "seed": data.get("seed")}
    bounds = data.get("bounds") or _BOUNDS_CACHE.get((str(run.path), meta["projection_id"]))
    if bounds is None:  # older projections: computed from every stored frame, once per process (they never change)
        parts = [maps.frame(run, meta, s) for s in meta["steps"]] + [maps.frame(run, meta, None)]
        bounds = maps.bounds_of(parts)
        _BOUNDS_CACHE[(str(run.path), meta["projection_id"])] = bounds
    meta["bounds"] = bounds
    return meta


def memorisation_gallery(run: Run, step: int | None = None, *, max_samples: int = 24, k: int = 3,
                         scale: int = 3) -> dict[str, Any] | None:
    """Each probe's sample beside its ``k`` nearest training images, closest samples first, from the evidence the
    proximity analysis stored (derived kind ``nearest-train``) for snapshot ``step`` (default: the newest step
    with evidence). None when no evidence is stored or the samples are not images.

    Returns ``{"step", "steps" (all steps with evidence), "encoder_id", "reference", "items": [{"probe",
    "sample" (PNG data URI), "neighbours": [{"index", "distance", "image"}]}]}``; distances in the encoder's
    feature space (pixels by default), as stored.
    """
    from ..analyses.proximity import NEAREST_K
    from ..store.derived import NEAREST_TRAIN

    keys = run.derived_keys(NEAREST_TRAIN)
    if not keys:
        return None
    encoder_id, source = keys[-1][0], keys[-1][1]  # the newest evidence's encoder and reference
    steps = sorted({s for e, src, s in keys if e == encoder_id and src == source and s is not None})
    step = steps[-1] if step is None else step
    if step not in steps:
        raise InputError(f"step: expected a step with memorisation evidence {steps}, received {step}")
    reference = next((name for name in run.reference_names() if run.reference_hash(name) == source), None)
    if reference is None:
        return None
    distances = run.derived(NEAREST_TRAIN, encoder_id=encoder_id, source=source,
                            params={"k": NEAREST_K, "part": "distance"}, step=step)
    indices = run.derived(NEAREST_TRAIN, encoder_id=encoder_id, source=source,
                          params={"k": NEAREST_K, "part": "index"}, step=step)
    samples = samples_as_images(run.samples(step))
    if distances is None or indices is None or samples is None:
        return None
    order = np.argsort(distances[:, 0], kind="stable")[:max_samples]
    train = reference_images_at(run, reference, indices[order, :k].ravel())  # only the rows shown
    if train is None:
        return None

    ids = run.probe_ids(step)
    items = [{"probe": str(ids[i]), "sample": _image_uri(samples[i], scale),
              "neighbours": [{"index": int(indices[i, j]), "distance": round(float(distances[i, j]), 4),
                              "image": _image_uri(train[int(indices[i, j])], scale)}
                             for j in range(min(k, indices.shape[1]))]}
             for i in order]
    return {"step": int(step), "steps": steps, "encoder_id": encoder_id, "reference": reference, "items": items}


def probe_thumbnails(run: Run, step: int, probe_ids: list[str] | None = None, *, size: int = 84) -> list[str] | None:
    """PNG data URIs of the samples of snapshot ``step`` for ``probe_ids`` (default: every probe, in row order),
    each upscaled to about ``size`` pixels — the map's hover thumbnails. None when the samples are not images;
    an unknown id gets an empty string."""
    samples = samples_as_images(run.samples(step))
    if samples is None:
        return None
    ids = [str(i) for i in run.probe_ids(step)]
    rows = range(len(ids)) if probe_ids is None else [ids.index(p) if p in ids else -1 for p in probe_ids]
    return _thumbnails(samples, rows, size)


def projection_track(run: Run, meta: dict[str, Any], probe_id: str, decimals: int = 3) -> dict[str, Any]:
    """One probe's map positions over the projected snapshots: ``{"id", "steps", "x", "y"}`` (steps where the
    probe was drawn). InputError when no snapshot of the map holds ``probe_id``."""

    track: dict[str, Any] = {"id": str(probe_id), "steps": [], "x": [], "y": []}
    for step in meta["steps"]:
        coords = maps.frame(run, meta, step)
        if coords is None:
            continue
        where = np.flatnonzero(np.asarray(run.probe_ids(step)).astype(str) == str(probe_id))
        if where.size and where[0] < len(coords):
            track["steps"].append(int(step))
            track["x"].append(round(float(coords[where[0], 0]), decimals))
            track["y"].append(round(float(coords[where[0], 1]), decimals))
    if not track["steps"]:
        raise InputError(f"probe: no snapshot of the map holds probe {probe_id!r}")
    return track


def projection_points(run: Run, meta: dict[str, Any], step: int | None, max_points: int = 5000,
                      decimals: int = 3) -> dict[str, Any]:
    """Map coordinates of snapshot ``step`` (or of the reference data when ``step`` is None), at most
    ``max_points`` points, rounded to ``decimals``: ``{"x", "y", "labels", "ids"}`` (JSON-ready)."""

    if step is None:
        coords, labels, ids = maps.frame(run, meta, None), maps.reference_labels(run, meta), None
    else:
        if step not in meta["steps"]:
            raise InputError(f"step: expected one of the projected steps {meta['steps']}, received {step}")
        coords = maps.frame(run, meta, step)
        labels, ids = run.labels(step), run.probe_ids(step)
    if coords is None:
        return {"step": step, "x": [], "y": [], "labels": None, "ids": None, "attributes": {}}
    coords = coords[:max_points]
    return {
        "step": step,
        "x": np.round(coords[:, 0].astype(np.float64), decimals).tolist(),
        "y": np.round(coords[:, 1].astype(np.float64), decimals).tolist(),
        "labels": None if labels is None else np.asarray(labels).reshape(-1)[: len(coords)].astype(int).tolist(),
        "ids": None if ids is None else [str(i) for i in np.asarray(ids)[: len(coords)].tolist()],
        "attributes": {} if step is None else {name: values[: len(coords)].tolist()
                                               for name, values in sample_attributes(run, step).items()},
    }


# arrays of a snapshot that are not attributes of its samples
_NOT_ATTRIBUTES = frozenset({"samples", "probe_ids", "labels", "latents", "noise", "targets_onehot"})
MAX_ATTRIBUTE_VALUES = 64  # an integer array with more distinct values is an index or an id, not a colour


def sample_attributes(run: Run, step: int) -> dict[str, np.ndarray]:
    """Integer attributes of each sample of snapshot ``step`` that a map can be coloured by: every (n,) integer
    array logged with the snapshot (besides samples, ids, labels, latents) with at most ``MAX_ATTRIBUTE_VALUES``
    distinct values, and each attribute classifier's labels (derived ``attribute-labels``, named
    ``"<classifier> attribute"``). ``{name: (n,) int64}``."""
    from ..store.derived import ATTRIBUTE_LABELS

    out: dict[str, np.ndarray] = {}
    for name in sorted(run.snapshot(step).arrays):
        if name in _NOT_ATTRIBUTES:
            continue
        values = run.array(step, name)
        if values.ndim == 1 and (np.issubdtype(values.dtype, np.integer) or values.dtype == bool) \
                and len(np.unique(values)) <= MAX_ATTRIBUTE_VALUES:
            out[name] = values.astype(np.int64)
    for classifier, source, at in run.derived_keys(ATTRIBUTE_LABELS):
        if at == step:
            labels = run.derived(ATTRIBUTE_LABELS, encoder_id=classifier, source=source, step=step)
            if labels is not None:
                out[f"{classifier} attribute"] = np.asarray(labels, dtype=np.int64)
    return out


def reference_thumbnails(run: Run, meta: dict[str, Any], positions: list[int] | None = None, *,
                         size: int = 84) -> list[str] | None:
    """PNG data URIs of the reference items behind the map's reference points at ``positions`` (indices into
    the map's reference points; default: all), upscaled to about ``size`` pixels — the map's hover images for
    reference points. None when the map's reference items cannot be found or are not images; a position out
    of range gets an empty string."""
    from ..analyses.projection import projection_reference_items

    items = projection_reference_items(run, meta.get("reference_name"), meta.get("max_reference"), meta.get("seed"))
    if items is None:
        return None
    positions = range(len(items)) if positions is None else positions
    rows = [int(items[p]) if 0 <= p < len(items) else -1 for p in positions]
    images = reference_images_at(run, meta["reference_name"], rows)
    return None if images is None else _thumbnails(images, rows, size)


def reference_images_at(run: Run, name: str, rows: Any) -> dict[int, np.ndarray] | None:
    """``{row: image (C, H, W) in [0, 1]}`` of the reference set ``name`` at ``rows`` (ints; others ignored),
    read from its memory-mapped file — only those rows, however large the set (a named reference of a million
    images). None when the reference is not images."""
    images = run.reference(name, mmap=True).images
    wanted = sorted({int(r) for r in np.asarray(rows, dtype=np.int64).ravel() if 0 <= int(r) < images.shape[0]})
    picked = samples_as_images(np.asarray(images[wanted if wanted else [0]]))
    if picked is None:
        return None
    return dict(zip(wanted, picked))


def _image_uri(image: np.ndarray, scale: int) -> str:
    """One image (C, H, W) in [0, 1] as a PNG data URI, each pixel ``scale`` × ``scale``."""
    import base64

    return "data:image/png;base64," + base64.b64encode(png_bytes(images_to_grid(image[None], pad=0), scale)).decode()


def _thumbnails(images: Any, rows: Any, size: int) -> list[str]:
    """PNG data URIs of ``images[row]`` for each row (an (n, C, H, W) array, or a ``{row: image}`` mapping),
    upscaled to about ``size`` pixels ("" for a row < 0 or not in the mapping)."""
    if isinstance(images, dict):
        if not images:
            return ["" for _ in rows]
        scale = max(1, size // max(next(iter(images.values())).shape[1:]))
        return [_image_uri(images[r], scale) if r in images else "" for r in rows]
    scale = max(1, size // max(images.shape[2:]))
    return ["" if r < 0 else _image_uri(images[r], scale) for r in rows]
