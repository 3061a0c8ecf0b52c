"""The one metric tester every metric goes through (after torchmetrics' MetricTester): for a metric
``fn(real, fake) -> float`` it checks

1. agreement with an independent reference implementation (a published package or a brute-force definition
   written without evolens' code) on several data sets, with explicit ``rtol``/``atol``;
2. invariants: the order of the rows of either set does not matter, and the metric of a set against itself
   has its known value (0 for a distance, 1 for precision, ...) when there is one;
3. one pinned value on fixed data, so an unnoticed change of definition fails;
4. bad input: NaN features, mismatched dimensions, a single sample — each a typed ``InputError`` that names
   the argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest

from evolens import InputError


@dataclass
class MetricSpec:
    """One metric under test."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    reference: Callable[[np.ndarray, np.ndarray], float]
    pinned: float
    rtol: float = 1e-7
    atol: float = 1e-10
    self_value: float | None = None  # fn(x, x)
    self_atol: float = 1e-6
    sizes: tuple[tuple[int, int, int], ...] = ((200, 150, 8), (60, 40, 5))
    bad_input: bool = True
    order_invariant: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def sample_sets(seed: int, n_real: int, n_fake: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian feature sets that differ in mean and scale (float64)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_real, d)), rng.standard_normal((n_fake, d)) * 1.2 + 0.3


def pinned_sets() -> tuple[np.ndarray, np.ndarray]:
    """The fixed data of every pinned value."""
    return sample_sets(2026, 50, 40, 6)


def check_metric(spec: MetricSpec) -> None:
    """Run the four checks of the module docstring on ``spec``."""
    for i, (n_real, n_fake, d) in enumerate(spec.sizes):
        real, fake = sample_sets(i, n_real, n_fake, d)
        got, expected = spec.fn(real, fake), spec.reference(real, fake)
        np.testing.assert_allclose(got, expected, rtol=spec.rtol, atol=spec.atol,
                                   err_msg=f"{spec.name} vs its reference at sizes {(n_real, n_fake, d)}")
        if spec.order_invariant:
            rng = np.random.default_rng(100 + i)
            shuffled = spec.fn(real[rng.permutation(n_real)], fake[rng.permutation(n_fake)])
            np.testing.assert_allclose(shuffled, got, rtol=1e-9, atol=1e-12, err_msg=f"{spec.name}: row order")
    if spec.self_value is not None:
        real, _ = sample_sets(7, 80, 80, 5)
        assert spec.fn(real, real.copy()) == pytest.approx(spec.self_value, abs=spec.self_atol), spec.name
    real, fake = pinned_sets()
    assert spec.fn(real, fake) == pytest.approx(spec.pinned, rel=1e-6, abs=1e-12), (spec.name, spec.fn(real, fake))
    if spec.bad_input:
        real, fake = sample_sets(3, 20, 20, 4)
        broken = fake.copy()
        broken[2, 1] = np.nan
        with pytest.raises(InputError, match=r"NaN|finite"):
            spec.fn(real, broken)
        with pytest.raises(InputError, match=r"dimensions|shape"):
            spec.fn(real, fake[:, :3])
        with pytest.raises(InputError, match=r"sample|at least|expected"):
            spec.fn(real[:1], fake)
