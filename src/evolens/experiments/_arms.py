"""The arms every PLE experiment compares, how each arm's hypernetwork is checked, and the 95% intervals.

Arms (``ple_arms``), in report order:

- ``mle``: maximum likelihood (Adam on the model's own parameters); ``classical``: a classical bias correction
  when the family has one (n/(n−1) for a Gaussian variance, parametric bootstrap for a mixture);
  ``mle-tuned``: maximum likelihood with its learning rate tuned on the training NLL — the control for "the
  hypernetwork only optimises faster" (every arm's final training NLL is reported beside it);
- ``ple-lam0``: the DeepSets hypernetwork trained on the likelihood alone (λ = 0), across sets so that it
  estimates; ``per-sample-lam0``: the hypernetwork PLE's reviewers describe (a per-sample network, θ = the mean
  of its outputs), λ = 0; ``constant-lam0``: H fed one fixed random set instead of the data, a pure
  re-parameterisation of the weights (whatever it changes is not H reading its data);
- ``literal-lam{λ}``: the paper's penalty as written, λ‖H(X) − H(X̃)‖², one synthetic set, H live on both sides;
  ``evolens-lam{λ}``: evolens's penalty (frozen estimator after a warm-up, mean over K synthetic sets:
  parametric-bootstrap bias correction); λ ∈ ``LAMBDAS``.

Every hypernetwork arm is reported with ``arm_sensitivity``: its scale slope and its change on class subsets
beside a plain estimate's (``evolens.collapse.hypernetwork_sensitivity``), and whether it reads its input; a
penalty arm whose H does not read its input is marked, and its penalty effect is not evidence.

Normalisation: the NLL is averaged over samples and summed over a sample's dimensions (nats per sample); the
penalty is summed over every parameter entry. So λ = 1 weighs one squared unit of parameter discrepancy like one
nat per sample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch import nn

from ..collapse import PLETrainer, TunedMLETrainer, hypernetwork_sensitivity, plain_estimator

#: penalty weights of the λ sweep (λ = 0 is the ``ple-lam0`` arm)
LAMBDAS = (0.1, 1.0)

#: one line per arm kind for the reports
ARM_NOTES = {
    "mle": "maximum likelihood (Adam on the model's own parameters)",
    "classical": "MLE + classical bias correction (Gaussian: variance × n/(n−1); mixture: parametric bootstrap)",
    "mle-tuned": "maximum likelihood, learning rate tuned on the training NLL (the optimiser control)",
    "ple-lam0": "DeepSets hypernetwork trained across sets on the likelihood alone (λ = 0)",
    "per-sample": "the reviewers' hypernetwork: a per-sample network, θ = the mean of its outputs (λ = 0)",
    "constant": "H fed one fixed random set instead of the data: a pure re-parameterisation (λ = 0 control)",
    "literal": "paper's penalty as written: λ‖H(X) − H(X̃)‖², one synthetic set, H live on both sides",
    "evolens": "evolens's penalty: frozen Ĥ after warm-up, mean over K synthetic sets (bootstrap bias correction)",
}


def arm_kind(name: str) -> str:
    """The ``ARM_NOTES`` key of an arm name (``evolens-lam0.1`` → ``evolens``)."""
    return name.split("-lam")[0] if not name.startswith("ple-lam0") else "ple-lam0"


def ple_arms(model: Callable[[], nn.Module], *, mle: Any, classical: Any | None, ple_kwargs: dict[str, Any],
             lambdas: Sequence[float] = LAMBDAS, literal_kwargs: dict[str, Any] | None = None,
             tuned_kwargs: dict[str, Any] | None = None, only: Sequence[str] | None = None) -> dict[str, Any]:
    """Trainers of every arm by name, in report order.

    Args:
        model: factory of a fresh template model (one per trainer).
        mle, classical: the MLE trainer and the classical-correction trainer (None: the family has none).
        ple_kwargs: PLETrainer keyword arguments shared by the hypernetwork arms (steps, lr, batch size, K, ...).
        lambdas: penalty weights of the literal and evolens arms.
        literal_kwargs: overrides of ``ple_kwargs`` for the literal arms.
        tuned_kwargs: TunedMLETrainer keyword arguments (default: ``mle``'s steps and batch size).
        only: keep only these arm names (None: all).
    """
    arms: dict[str, Any] = {"mle": mle}
    if classical is not None:
        arms["classical"] = classical
    arms["mle-tuned"] = TunedMLETrainer(model(), **({"steps": mle.steps, "batch_size": mle.batch_size}
                                                    | (tuned_kwargs or {})))
    arms["ple-lam0"] = PLETrainer(model(), lam=0.0, **ple_kwargs)
    arms["per-sample-lam0"] = PLETrainer(model(), lam=0.0, hypernetwork="per-sample", **ple_kwargs)
    arms["constant-lam0"] = PLETrainer(model(), lam=0.0, input="constant", **ple_kwargs)
    for lam in lambdas:
        arms[f"literal-lam{lam:g}"] = PLETrainer(model(), lam=lam, penalty="literal",
                                                 **(ple_kwargs | (literal_kwargs or {})))
    for lam in lambdas:
        arms[f"evolens-lam{lam:g}"] = PLETrainer(model(), lam=lam, **ple_kwargs)
    if only is not None:
        arms = {name: trainer for name, trainer in arms.items() if name in set(only)}
    return arms


def arm_sensitivity(fit: Any, x: np.ndarray, labels: np.ndarray | None, model: nn.Module) -> dict[str, Any]:
    """Does this arm's hypernetwork read its input? ``{"scale_slope", "class_share", "reads_input"}`` (values
    None for arms without a hypernetwork or where a measure does not apply), from
    ``hypernetwork_sensitivity`` with the model's plain estimate (``plain_estimator``) for the class subsets."""
    if getattr(fit, "hypernetwork", None) is None:
        return {"scale_slope": None, "class_share": None, "reads_input": None}
    estimate = plain_estimator(model) if hasattr(model, "init_from_data") else None
    found = hypernetwork_sensitivity(fit.hypernetwork, x, labels, model=model, estimate=estimate)
    return {"scale_slope": found.scale_slope, "class_share": found.class_share, "reads_input": found.reads_input}


def format_reads(values: Sequence[Any]) -> str:
    """``k/n`` of the seeds whose H reads its input (``—`` for arms without one)."""
    known = [v for v in values if v is not None]
    return "—" if not known else f"{sum(bool(v) for v in known)}/{len(known)}"


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


def format_ci(values: Sequence[float | None], digits: int = 3) -> str:
    """``mean ± half-width`` of the 95% interval (``mean`` alone for one value, ``—`` for none); notes how many
    values were not finite (None counts as not measured, not as missing)."""
    values = np.asarray([v for v in values if v is not None], dtype=float)
    if values.size == 0:
        return "—"
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
            "(nats per sample); penalty summed over parameter entries.",
            "H reads: seeds whose hypernetwork reads its input (scale slope ≥ 0.5, or, without one, a change on "
            "class subsets ≥ 0.5 × a plain estimate's); slope: d log σ̂ / d log σ of H's estimate on scaled data "
            "(1 = reads the scale exactly, 0 = ignores its input). A penalty arm whose H does not read is no "
            "evidence about the penalty.", ""]
