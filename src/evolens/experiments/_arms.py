"""The arms every PLE experiment compares, and the 95% intervals it reports them with.

Arms (``ple_arms``): maximum likelihood (``mle``); a classical bias correction (``classical``, when the family
has one: n/(n−1) for a Gaussian variance, parametric bootstrap for a mixture); the hypernetwork trained on the
likelihood alone (``ple-lam0``); the paper's penalty as written, λ‖H(X) − H(X̃)‖² with both sides live
(``literal-lam{λ}``); and evolens's penalty (frozen estimator after a warm-up, mean over K synthetic sets:
parametric-bootstrap bias correction, ``evolens-lam{λ}``), each at λ ∈ ``LAMBDAS``.

Normalisation: the NLL is averaged over samples and summed over a sample's dimensions (nats per sample); the
penalty is summed over every parameter entry. So λ = 1 weighs one squared unit of parameter discrepancy like one
nat per sample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch import nn

from ..collapse import PLETrainer

#: penalty weights of the λ sweep (λ = 0 is the ``ple-lam0`` arm)
LAMBDAS = (0.01, 0.1, 1.0, 10.0)

#: one line per arm kind for the reports
ARM_NOTES = {
    "mle": "maximum likelihood (Adam on the model's own parameters)",
    "classical": "MLE + classical bias correction (Gaussian: variance × n/(n−1); mixture: parametric bootstrap)",
    "ple-lam0": "hypernetwork trained on the likelihood alone (λ = 0)",
    "literal": "paper's penalty as written: λ‖H(X) − H(X̃)‖², one synthetic set, H live on both sides",
    "evolens": "evolens's penalty: frozen Ĥ after warm-up, mean over K synthetic sets (bootstrap bias correction)",
}


def arm_kind(name: str) -> str:
    """The ``ARM_NOTES`` key of an arm name (``evolens-lam0.1`` → ``evolens``)."""
    return name.split("-lam")[0] if not name.startswith("ple-lam0") else "ple-lam0"


def ple_arms(model: Callable[[], nn.Module], *, mle: Any, classical: Any | None, ple_kwargs: dict[str, Any],
             lambdas: Sequence[float] = LAMBDAS, literal_kwargs: dict[str, Any] | None = None,
             only: Sequence[str] | None = None) -> dict[str, Any]:
    """Trainers of every arm by name, in report order.

    Args:
        model: factory of a fresh template model (one per trainer).
        mle, classical: the MLE trainer and the classical-correction trainer (None: the family has none).
        ple_kwargs: PLETrainer keyword arguments shared by the hypernetwork arms (steps, lr, batch size, K, ...).
        lambdas: penalty weights of the literal and evolens arms.
        literal_kwargs: overrides of ``ple_kwargs`` for the literal arms.
        only: keep only these arm names (None: all).
    """
    arms: dict[str, Any] = {"mle": mle}
    if classical is not None:
        arms["classical"] = classical
    arms["ple-lam0"] = PLETrainer(model(), lam=0.0, **ple_kwargs)
    for lam in lambdas:
        arms[f"literal-lam{lam:g}"] = PLETrainer(model(), lam=lam, penalty="literal",
                                                 **(ple_kwargs | (literal_kwargs or {})))
    for lam in lambdas:
        arms[f"evolens-lam{lam:g}"] = PLETrainer(model(), lam=lam, **ple_kwargs)
    if only is not None:
        arms = {name: trainer for name, trainer in arms.items() if name in set(only)}
    return arms


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, int]:
    """Mean, half-width of its Student-t confidence interval at ``level`` and the count, over the finite values
    (half-width nan with fewer than two)."""
    from scipy import stats

    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return float("nan"), float("nan"), 0
    if finite.size == 1:
        return float(finite[0]), float("nan"), 1
    half = stats.t.ppf(0.5 + level / 2, finite.size - 1) * finite.std(ddof=1) / np.sqrt(finite.size)
    return float(finite.mean()), float(half), int(finite.size)


def format_ci(values: Sequence[float], digits: int = 3) -> str:
    """``mean ± half-width`` of the 95% interval (``mean`` alone for one value, ``—`` for none); notes how many
    values were not finite."""
    values = np.asarray(values, dtype=float)
    mean, half, count = mean_ci(values)
    if count == 0:
        return "—"
    text = f"{mean:.{digits}f}" if not np.isfinite(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"
    missing = values.size - count
    return text if missing == 0 else f"{text} ({missing} of {values.size} not finite)"


def arms_legend(names: Sequence[str]) -> list[str]:
    """Markdown lines explaining the arm kinds present in ``names``."""
    kinds = list(dict.fromkeys(arm_kind(n) for n in names))
    return ["Arms: " + "; ".join(f"`{k}` {ARM_NOTES[k]}" for k in kinds if k in ARM_NOTES) + ".",
            "Intervals: mean ± half-width of the 95% Student-t interval over seeds. NLL averaged over samples "
            "(nats per sample); penalty summed over parameter entries.", ""]
