"""Capture: the Monitor, its schedules, and the fixed probes that make snapshots comparable."""

from .monitor import Monitor, StepResult
from .probes import Probes
from .schedules import AtSteps, Every, LogSpaced, Schedule, as_schedule

__all__ = ["AtSteps", "Every", "LogSpaced", "Monitor", "Probes", "Schedule", "StepResult", "as_schedule"]
