"""Rules over metric series: a threshold crossing and a sustained trend. Each fires at most once per run.

A rule looks at the stored series of one scalar (``run.scalars(metric)``) after every snapshot and returns
an ``Alert`` the first time its condition holds; the Monitor writes the alert to the run as an event and, if
the rule asks for it, tells the training loop to pause (``StepResult.should_pause``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import check_real
from ..errors import InputError
from ..store.events import ALERT_PREFIX  # event kind of a fired rule: alert:<rule name>

__all__ = ["ALERT_PREFIX", "Alert", "Rule", "Threshold", "Trend", "check_rules", "rule_from_dict"]



@dataclass(frozen=True)
class Alert:
    """A fired rule: which rule, at which step, on which metric and value, and whether to pause."""

    rule: str
    step: int
    metric: str
    value: float
    message: str
    pause: bool

    def as_data(self) -> dict[str, Any]:
        """JSON-serialisable form stored with the event."""
        return {"rule": self.rule, "metric": self.metric, "value": self.value, "pause": self.pause}


class Rule:
    """Base class: ``check(steps, values) -> Alert | None`` over the full series so far.

    ``min_step``: values logged before this step are ignored (an untrained model fails every check).
    """

    def __init__(self, metric: str, *, pause: bool = False, name: str | None = None, min_step: int = 0) -> None:
        if not isinstance(metric, str) or not metric:
            raise InputError(f"metric: expected a scalar name such as 'quality/fid', received {metric!r}")
        if isinstance(min_step, bool) or not isinstance(min_step, int) or min_step < 0:
            raise InputError(f"min_step: expected a non-negative integer, received {min_step!r}")
        self.metric = metric
        self.pause = bool(pause)
        self.min_step = min_step
        self.name = name or f"{type(self).__name__.lower()}:{metric}"

    def check(self, steps: Any, values: Any) -> Alert | None:
        """The alert if the rule holds on the series (steps, values) so far, else None."""
        steps, values = np.asarray(steps), np.asarray(values, dtype=np.float64)
        keep = steps >= self.min_step
        return self._check(steps[keep], values[keep])

    def _check(self, steps: np.ndarray, values: np.ndarray) -> Alert | None:  # pragma: no cover - abstract
        raise NotImplementedError


class Threshold(Rule):
    """Fires when the latest value is above ``above`` or below ``below`` (exactly one of them)."""

    def __init__(self, metric: str, *, above: float | None = None, below: float | None = None, pause: bool = False,
                 name: str | None = None, min_step: int = 0) -> None:
        if (above is None) == (below is None):
            raise InputError("above, below: expected exactly one of them")
        above = None if above is None else check_real(above, "above")
        below = None if below is None else check_real(below, "below")
        super().__init__(metric, pause=pause, name=name, min_step=min_step)
        self.above, self.below = above, below

    def _check(self, steps: np.ndarray, values: np.ndarray) -> Alert | None:
        if values.size == 0 or not np.isfinite(values[-1]):
            return None
        value = float(values[-1])
        if self.above is not None and value > self.above:
            condition = f"above {self.above:g}"
        elif self.below is not None and value < self.below:
            condition = f"below {self.below:g}"
        else:
            return None
        return Alert(self.name, int(steps[-1]), self.metric, value,
                     f"{self.metric} = {value:.4g} is {condition} at step {int(steps[-1])}", self.pause)


class Trend(Rule):
    """Fires when the last ``snapshots`` values move monotonically ``direction`` ("up"/"down") by at least
    ``min_change`` in total (absolute units of the metric): a sustained drift, not one noisy point."""

    def __init__(self, metric: str, *, direction: str = "up", snapshots: int = 3, min_change: float = 0.0,
                 pause: bool = False, name: str | None = None, min_step: int = 0) -> None:
        if not isinstance(direction, str) or direction not in ("up", "down"):
            raise InputError(f"direction: expected 'up' or 'down', received {direction!r}")
        if isinstance(snapshots, bool) or not isinstance(snapshots, int) or snapshots < 2:
            raise InputError(f"snapshots: expected an integer >= 2, received {snapshots!r}")
        min_change = check_real(min_change, "min_change", minimum=0.0)
        super().__init__(metric, pause=pause, name=name, min_step=min_step)
        self.direction, self.snapshots, self.min_change = direction, snapshots, float(min_change)

    def _check(self, steps: np.ndarray, values: np.ndarray) -> Alert | None:
        finite = np.isfinite(values)
        steps, values = steps[finite], values[finite]
        if values.size < self.snapshots:
            return None
        window = values[-self.snapshots:]
        diffs = np.diff(window) * (1 if self.direction == "up" else -1)
        change = float((window[-1] - window[0]) * (1 if self.direction == "up" else -1))
        if np.all(diffs > 0) and change >= self.min_change:
            return Alert(self.name, int(steps[-1]), self.metric, float(window[-1]),
                         f"{self.metric} went {self.direction} for {self.snapshots} snapshots "
                         f"({window[0]:.4g} -> {window[-1]:.4g}) by step {int(steps[-1])}", self.pause)
        return None


def check_rules(run: Any, rules: Any, fired: set[str]) -> list[Alert]:
    """The alerts of the ``rules`` that hold on the series stored in ``run`` and have not ``fired`` yet (rule
    names; updated in place). A rule whose metric is not stored yet, or is ambiguous (several encoders computed
    it; name one in the rule), waits. The Monitor and the live worker both decide this way."""
    from ..names import resolve_name

    alerts = []
    logged = None
    for rule in rules:
        if rule.name in fired:
            continue
        if logged is None:
            logged = run.scalar_names()  # one query per check, not one per rule
        try:
            metric = resolve_name(rule.metric, logged)
        except InputError:
            continue
        alert = rule.check(*run.scalars(metric))
        if alert is not None:
            fired.add(rule.name)
            alerts.append(alert)
    return alerts


def rule_from_dict(spec: dict[str, Any]) -> Rule:
    """A rule from its JSON form, e.g. ``{"rule": "threshold", "metric": "quality/fid", "above": 80,
    "pause": true}`` or ``{"rule": "trend", "metric": "quality/fid", "direction": "up", "snapshots": 3}``."""
    if not isinstance(spec, dict) or spec.get("rule") not in ("threshold", "trend"):
        raise InputError(f"rule: expected a mapping with 'rule': 'threshold' or 'trend', received {spec!r}")
    kwargs = {k: v for k, v in spec.items() if k != "rule"}
    try:
        return (Threshold if spec["rule"] == "threshold" else Trend)(**kwargs)
    except TypeError as exc:
        raise InputError(f"rule: {spec!r} has an unknown parameter ({exc})") from exc
