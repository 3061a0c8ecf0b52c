"""The events of a run: their kinds, how each is shown, and what they say about the run's capture.

An event is a row of the ``events`` table (kind, level, step, message, JSON data; ``Run.events``). This module is
the one place that names the kinds evolens writes and decides how a view shows an event — its style (the colour
of its row in the alert tables and of its mark on the step axis) and whether it is marked on the step axis —
so the report, the dashboard and the TensorBoard mirror agree. It also reads the capture's liveness from the
sessions and events (``capture_running``): pure store logic, used by the live worker and by ``mirror``.
"""

from __future__ import annotations

import socket
from typing import Any

from .files import pid_alive

__all__ = [
    "ALERT_PREFIX", "CAPTURE_END", "EVENT_COLORS", "EVENT_STYLES", "FEATURES", "INTERVENTION", "MARKED_KINDS",
    "MARKED_LEVELS", "MIRROR", "PAUSE", "PROJECTION", "RESUME", "capture_running", "event_style", "is_listed", "is_marked",
]

# kinds written by evolens itself (a user's ``Monitor.event`` may write any other)
CAPTURE_END = "capture_end"  # a capture session closed cleanly
MIRROR = "mirror"  # written by ``mirror`` after each pass: data {"capture_running": bool, "source": path, …}
FEATURES = "reference-features"  # a named reference's features added: data {"encoder_id": …}
PROJECTION = "projection"  # a map fitted or extended: data = the map's record (``store.maps``)
ANALYSIS = "analysis"  # analyses of some snapshots done
ANALYSIS_ERROR = "analysis_error"  # an analysis failed: the training went on
INTERVENTION = "intervention"  # the user changed the data or the training (``Monitor.intervention``)
PAUSE = "pause"  # a rule with ``pause=True`` paused the training
RESUME = "resume"
ALERT_PREFIX = "alert:"  # a fired rule: ``alert:<rule name>``, level "alert"

MARKED_KINDS = (INTERVENTION, PAUSE, RESUME)  # drawn on the step axis of every curve (alerts too, by level)
MARKED_LEVELS = ("alert", "warning", "error")  # listed in the alert tables and mirrored to TensorBoard as text

EVENT_STYLES = ("alert", "warning", "intervention", "other")
# the colour of each style: the alert tables' rows and the marks on the step axis
EVENT_COLORS = {"alert": "#b91c1c", "warning": "#b45309", "intervention": "#1d4ed8", "other": "#6b7280"}


def event_style(kind: str, level: str) -> str:
    """How an event of ``kind`` at ``level`` is shown: ``"alert"`` (a fired rule, or any event at level alert),
    ``"intervention"``, ``"warning"`` (warnings, errors, pauses and resumes) or ``"other"``."""
    if level == "alert" or str(kind).startswith(ALERT_PREFIX):
        return "alert"
    if kind == INTERVENTION:
        return "intervention"
    if level in ("warning", "error") or kind in (PAUSE, RESUME):
        return "warning"
    return "other"


def is_marked(kind: str, level: str) -> bool:
    """Whether an event is drawn as a vertical line on the step axis: interventions, pauses, resumes, alerts."""
    return kind in MARKED_KINDS or event_style(kind, level) == "alert"


def is_listed(kind: str, level: str) -> bool:
    """Whether an event is a row of the "alerts and interventions" table: alerts, warnings, errors and the
    marked kinds."""
    return level in MARKED_LEVELS or is_marked(kind, level)


def capture_running(run: Any) -> bool:
    """Whether a capturing process may still add snapshots to ``run`` (an open ``Run``): its last capture session
    has not closed (no ``capture_end`` event) and, when it ran on this host, its process is alive. In a copy kept
    by ``evolens mirror``: what the last mirror pass found in the source. True before any capture session."""
    mirrored = run.events(kind=MIRROR)
    if mirrored:
        return bool(mirrored[-1].data.get("capture_running", True))
    captures = [s for s in run.sessions() if s["kind"] == "capture"]
    if not captures:
        return True  # created, no capture session yet: one may come
    last = captures[-1]
    if any(e.session_id == last["id"] for e in run.events(kind=CAPTURE_END)):
        return False
    return not (last["host"] == socket.gethostname() and not pid_alive(last["pid"]))
