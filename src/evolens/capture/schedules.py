"""When to capture a snapshot: every K steps, log-spaced steps, or an explicit list.

A schedule is a pure predicate on the step number, so a resumed run asks the same question and gets the
same answer; the Monitor skips steps that already have a snapshot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from .._validation import check_step, describe
from ..errors import InputError


class Schedule:
    """Base class: ``schedule(step) -> bool`` says whether ``step`` gets a snapshot."""

    def __call__(self, step: int) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def steps_until(self, last_step: int) -> list[int]:
        """Every scheduled step in ``[0, last_step]``, ascending (for planning and reports)."""
        return [s for s in range(last_step + 1) if self(s)]


@dataclass(frozen=True)
class Every(Schedule):
    """Capture at ``start``, ``start + k``, ``start + 2k``, ... (``k`` >= 1 steps apart)."""

    k: int
    start: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise InputError(f"every: expected a positive integer number of steps, received {describe(self.k)}")
        check_step(self.start, "start")

    def __call__(self, step: int) -> bool:
        return step >= self.start and (step - self.start) % self.k == 0

    def steps_until(self, last_step: int) -> list[int]:
        return list(range(self.start, last_step + 1, self.k))


@dataclass(frozen=True)
class LogSpaced(Schedule):
    """Capture densely early and sparsely later: ``per_decade`` steps per factor of 10, plus step 0.

    Steps are ``round(10 ** (i / per_decade))`` for i = 0, 1, ... (deduplicated), so with ``per_decade=4``:
    0, 1, 2, 3, 6, 10, 18, 32, 56, 100, 178, ... Useful when early training changes fastest.
    """

    per_decade: int = 8
    max_step: int = 10**9

    def __post_init__(self) -> None:
        if isinstance(self.per_decade, bool) or not isinstance(self.per_decade, int) or self.per_decade < 1:
            raise InputError(f"per_decade: expected a positive integer, received {describe(self.per_decade)}")

    def _steps(self) -> frozenset[int]:
        steps = {0}
        i = 0
        while True:
            s = round(10 ** (i / self.per_decade))
            if s > self.max_step:
                break
            steps.add(s)
            i += 1
        return frozenset(steps)

    def __call__(self, step: int) -> bool:
        if step == 0:
            return True
        # The nearest exponent is enough: rounding never maps two exponents more than one apart to one step.
        i = round(self.per_decade * math.log10(step))
        return any(round(10 ** (j / self.per_decade)) == step for j in (i - 1, i, i + 1) if j >= 0)

    def steps_until(self, last_step: int) -> list[int]:
        return sorted(s for s in self._steps() if s <= last_step)


@dataclass(frozen=True)
class AtSteps(Schedule):
    """Capture exactly at the given steps."""

    steps: frozenset[int]

    def __init__(self, steps: Iterable[int]) -> None:
        if isinstance(steps, (str, bytes)) or not hasattr(steps, "__iter__"):
            raise InputError(f"steps: expected a list of non-negative integer steps, received {describe(steps)}")
        checked = frozenset(check_step(s, "steps[]") for s in steps)
        if not checked:
            raise InputError("steps: expected at least one step, received an empty list")
        object.__setattr__(self, "steps", checked)

    def __call__(self, step: int) -> bool:
        return step in self.steps

    def steps_until(self, last_step: int) -> list[int]:
        return sorted(s for s in self.steps if s <= last_step)


def as_schedule(every: "int | Sequence[int] | Schedule | str") -> Schedule:
    """Build a schedule from the Monitor's ``every`` argument.

    ``int`` → Every(k); a list/tuple/set/range of steps → AtSteps; ``"log"`` → LogSpaced(); a Schedule is kept.
    """
    if isinstance(every, Schedule):
        return every
    if isinstance(every, str):
        if every == "log":
            return LogSpaced()
        raise InputError(f"every: expected an int, a list of steps, 'log' or a Schedule, received {every!r}")
    if isinstance(every, (int,)) and not isinstance(every, bool):
        return Every(every)
    if isinstance(every, (list, tuple, set, frozenset, range)):
        return AtSteps(every)
    raise InputError(f"every: expected an int, a list of steps, 'log' or a Schedule, received {describe(every)}")
