"""Biased-generalization onset (arXiv 2603.03469): the split distance turns up while the test loss still falls.

Two models trained on disjoint splits produce nearly the same sample from the same noise while they
generalise; when each starts to favour its own training data their paired samples diverge. The paper marks
τ_cos = argmin of the split distance and τ_loss = argmin of the test loss; training between them is the
biased phase (τ_cos comes first). It fixes no threshold: the streaming rule here fires once when the
distance has risen by ``margin`` above its running minimum while the test loss is still at its running
minimum (still falling), so a training loop can stop before τ_loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import check_array, check_positive
from ..errors import InputError

__all__ = ["BiasedGeneralizationOnset", "OnsetReport"]


@dataclass(frozen=True)
class OnsetReport:
    """τ_cos, τ_loss, the biased phase between them (when τ_cos < τ_loss), and the first step the streaming
    rule fired at (None if it never did)."""

    tau_cos: int | None
    tau_loss: int | None
    biased_phase: tuple[int, int] | None
    onset_step: int | None


class BiasedGeneralizationOnset:
    """Detector over the split-distance and test-loss curves.

    Args:
        margin: rise above the running minimum of the distance that counts as a turn, relative to that
            minimum (0.05 = 5% above it).
        patience: consecutive snapshots the rise must hold before the rule fires (filters noise).
    """

    def __init__(self, margin: float = 0.05, patience: int = 2) -> None:
        margin = check_positive(margin, "margin")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise InputError(f"patience: expected a positive integer, received {patience!r}")
        self.margin = float(margin)
        self.patience = patience
        self.reset()

    def reset(self) -> None:
        """Forget the streamed history."""
        self._min_distance = np.inf
        self._min_loss = np.inf
        self._loss_falling = True
        self._risen = 0
        self.onset_step_: int | None = None

    def update(self, step: int, distance: float | None = None, test_loss: float | None = None) -> dict[str, Any] | None:
        """Feed the latest values; returns the onset (a dict) the first time the rule fires, else None."""
        if test_loss is not None and np.isfinite(test_loss):
            self._loss_falling = test_loss <= self._min_loss
            self._min_loss = min(self._min_loss, float(test_loss))
        if distance is None or not np.isfinite(distance) or self.onset_step_ is not None:
            return None
        if distance < self._min_distance:
            self._min_distance = float(distance)
            self._risen = 0
            return None
        threshold = self._min_distance + self.margin * abs(self._min_distance)
        self._risen = self._risen + 1 if distance >= threshold else 0
        if self._risen >= self.patience and self._loss_falling:
            self.onset_step_ = int(step)
            return {"step": int(step), "distance": float(distance), "min_distance": self._min_distance,
                    "test_loss": None if not np.isfinite(self._min_loss) else self._min_loss}
        return None

    def report(self, steps: Any, distance: Any, loss_steps: Any = None, loss: Any = None) -> OnsetReport:
        """τ_cos, τ_loss, the biased phase and the streaming onset over complete curves (pure; resets state)."""
        steps = check_array(steps, "steps", ndim=1, min_samples=1)
        distance = check_array(distance, "distance", ndim=1, min_samples=1)
        if distance.shape != steps.shape:
            raise InputError(f"distance: expected shape {steps.shape} like steps, received shape={distance.shape}")
        tau_cos = int(steps[int(np.nanargmin(distance))])
        tau_loss = None
        loss_at: dict[int, float] = {}
        if loss is not None:
            loss_steps = check_array(loss_steps, "loss_steps", ndim=1, min_samples=1)
            loss = check_array(loss, "loss", ndim=1, min_samples=1)
            if loss.shape != loss_steps.shape:
                raise InputError(f"loss: expected shape {loss_steps.shape} like loss_steps, received shape={loss.shape}")
            tau_loss = int(loss_steps[int(np.nanargmin(loss))])
            loss_at = dict(zip(loss_steps.tolist(), loss.tolist()))
        self.reset()
        events = sorted(set(steps.tolist()) | set(loss_at))
        by_step = dict(zip(steps.tolist(), distance.tolist()))
        for step in events:
            self.update(step, by_step.get(step), loss_at.get(step))
        phase = (tau_cos, tau_loss) if tau_loss is not None and tau_cos < tau_loss else None
        return OnsetReport(tau_cos, tau_loss, phase, self.onset_step_)
