"""The stored format of evolutionary maps — one place that writes and reads them.

A map is recorded by a ``projection`` event whose data is its **record**: ``projection_id``, ``encoder_id``,
``layout``, ``steps``, ``reference``, ``max_reference``, ``seed``, ``params``, ``scores`` and ``bounds``
([x_min, x_max, y_min, y_max]). Its arrays are derived arrays keyed by (``encoder_id``, source =
``projection_id``): each snapshot's coordinates (``projection-coords``, with its step), the reference points'
coordinates and labels, and the fitted model (``projection-model``, serialised bytes). A map extended live by
one snapshot gets a new record with that step added and its bounds widened (``add_frame``); the latest record
of a ``projection_id`` is the map. The analyses fit and extend maps; views, integrations and experiments read
them through this module only.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from . import events
from .derived import PROJECTION_COORDS, PROJECTION_MODEL, PROJECTION_REFERENCE_COORDS, PROJECTION_REFERENCE_LABELS

__all__ = ["add_frame", "add_map", "bounds_of", "frame", "latest", "model_bytes", "records", "reference_labels"]


def bounds_of(parts: list[np.ndarray | None]) -> list[float]:
    """[x_min, x_max, y_min, y_max] over every (n, 2) array in ``parts`` (None entries skipped)."""
    every = np.concatenate([p for p in parts if p is not None])
    return [float(every[:, 0].min()), float(every[:, 0].max()), float(every[:, 1].min()), float(every[:, 1].max())]


def records(run: Any, projection_id: str | None = None) -> list[dict[str, Any]]:
    """Every map record of the run, oldest first (only those of ``projection_id`` when given)."""
    found = [e.data for e in run.events(kind=events.PROJECTION)]
    return [m for m in found if projection_id is None or m.get("projection_id") == projection_id]


def latest(run: Any, projection_id: str | None = None) -> dict[str, Any] | None:
    """The newest map record (of ``projection_id`` when given), or None."""
    found = records(run, projection_id)
    return found[-1] if found else None


def _key(record: Mapping[str, Any]) -> dict[str, str]:
    return {"encoder_id": record["encoder_id"], "source": record["projection_id"]}


def frame(run: Any, record: Mapping[str, Any], step: int | None) -> np.ndarray | None:
    """Map coordinates (n, 2) of snapshot ``step`` — of the reference points when None — of the map ``record``."""
    kind = PROJECTION_COORDS if step is not None else PROJECTION_REFERENCE_COORDS
    return run.derived(kind, step=step, **_key(record))


def reference_labels(run: Any, record: Mapping[str, Any]) -> np.ndarray | None:
    """Labels of the map's reference points (None when the reference has none)."""
    return run.derived(PROJECTION_REFERENCE_LABELS, **_key(record))


def model_bytes(run: Any, record: Mapping[str, Any]) -> np.ndarray | None:
    """The fitted map, serialised (uint8), or None (maps stored by evolens 0.1)."""
    return run.derived(PROJECTION_MODEL, **_key(record))


def add_map(run: Any, record: Mapping[str, Any], coords: Mapping[int, np.ndarray],
            reference_coords: np.ndarray | None, labels: np.ndarray | None, model: bytes | np.ndarray,
            message: str) -> dict[str, Any]:
    """Store a fitted map: each snapshot's coordinates, the reference points' coordinates and labels, the model,
    then the record (with ``bounds`` computed here) — last, so a reader never finds a record without its arrays.
    Returns the record as stored."""
    key = _key(record)
    for step, step_coords in coords.items():
        run.add_derived(PROJECTION_COORDS, np.asarray(step_coords, dtype=np.float32), step=int(step), **key)
    if reference_coords is not None:
        run.add_derived(PROJECTION_REFERENCE_COORDS, np.asarray(reference_coords, dtype=np.float32), **key)
        if labels is not None:
            run.add_derived(PROJECTION_REFERENCE_LABELS, labels, **key)
    run.add_derived(PROJECTION_MODEL, model, **key)
    stored = {**record, "bounds": bounds_of([*coords.values(), reference_coords])}
    run.add_event(events.PROJECTION, message, data=stored)
    return stored


def add_frame(run: Any, record: Mapping[str, Any], step: int, coords: np.ndarray) -> dict[str, Any]:
    """Extend the map ``record`` by snapshot ``step`` placed at ``coords`` (n, 2): the frame, then a record with
    the step added and the bounds widened by it (no stored frame reread). Returns the new record."""
    run.add_derived(PROJECTION_COORDS, np.asarray(coords, dtype=np.float32), step=int(step), **_key(record))
    x0, x1, y0, y1 = record["bounds"]
    extended = {**record, "steps": sorted(set(record["steps"]) | {int(step)}),
                "bounds": bounds_of([np.array([[x0, y0], [x1, y1]]), np.asarray(coords)])}
    run.add_event(events.PROJECTION, f"map extended with step {step}", step=int(step), data=extended)
    return extended
