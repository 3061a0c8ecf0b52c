"""Does a hypernetwork read its input? Two checks from PLE's review (OpenReview tL8dpJmECp).

A reviewer predicted that H could collapse to "weights ≈ 0, biases ≈ θ*": an estimator that returns one fixed
parameter vector whatever data it is given, in which case PLE's penalty ‖H(X) − H(X̃)‖² is ~0 by construction and
says nothing about X̃. ``hypernetwork_sensitivity`` measures

- how far H's output moves when it is fed a class-restricted subset instead of the whole data (the reviewer's
  proposed test): ~0 for a collapsed H, of the order of the classes' parameter differences for one that reads
  its input;
- for a Gaussian model, the slope of log σ̂ (the standard deviation H's parameters imply) against log σ of
  Gaussian data sets of known σ: 1 for an estimator that reads the scale of its data, 0 for a constant one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .._validation import describe
from ..errors import InputError

__all__ = ["HypernetworkSensitivity", "hypernetwork_sensitivity"]


@dataclass(frozen=True)
class HypernetworkSensitivity:
    """What ``hypernetwork_sensitivity`` measured.

    Attributes:
        per_class: {class: ‖H(x_c) − H(x)‖ / ‖H(x)‖}, the relative change of all parameter entries when H sees
            only class c's samples (empty without labels).
        reference_change: the same relative change of the parameters a plain estimate would give (the
            ``estimate`` function, e.g. the maximum-likelihood moments), for scale: H should move comparably.
        scale_slope: slope of log σ̂ against log σ over Gaussian sets (None without a Gaussian ``model``).
        scales, estimated_scales: the σ grid and the σ̂ H implied for each.
    """

    per_class: dict[int, float]
    reference_change: dict[int, float]
    scale_slope: float | None
    scales: list[float]
    estimated_scales: list[float]


def _flat(params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([torch.as_tensor(v).detach().reshape(-1).double() for v in params.values()])


def _relative_change(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    fa, fb = _flat(a), _flat(b)
    return float((fa - fb).norm() / fa.norm().clamp_min(1e-12))


@torch.no_grad()
def hypernetwork_sensitivity(
    hypernetwork: Callable[[torch.Tensor], Mapping[str, torch.Tensor]],
    x: Any,
    labels: Any = None,
    *,
    model: torch.nn.Module | None = None,
    estimate: Callable[[torch.Tensor], Mapping[str, torch.Tensor]] | None = None,
    scales: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
    n: int = 512,
    seed: int = 0,
) -> HypernetworkSensitivity:
    """Check whether ``hypernetwork`` (a data set (n, d) → {parameter name: tensor}) reads its input.

    Args:
        hypernetwork: a trained ``Hypernetwork`` (``FitResult.hypernetwork``) or any callable of that form.
        x: (n, d) the data it was trained on.
        labels: optional (n,) class labels: each class's subset is fed in alone (classes with >= 2 samples).
        model: the target model; when it is an ``evolens.collapse.Gaussian``, the scale slope is measured on
            Gaussian sets N(0, σ² I) of ``n`` samples for σ in ``scales``.
        estimate: optional plain estimator of the same parameters (data → params) whose change on the class
            subsets is reported beside H's, for scale.
        seed: seeds the Gaussian sets.
    """
    if not callable(hypernetwork):
        raise InputError(f"hypernetwork: expected a callable data set -> parameters, received {describe(hypernetwork)}")
    data = torch.as_tensor(np.asarray(x, dtype=np.float32))
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or data.shape[0] < 2 or not torch.isfinite(data).all():
        raise InputError(f"x: expected a finite (n, d) array with n >= 2, received shape={tuple(data.shape)}")
    full = dict(hypernetwork(data))
    per_class: dict[int, float] = {}
    reference: dict[int, float] = {}
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (data.shape[0],):
            raise InputError(f"labels: expected shape ({data.shape[0]},), received shape={labels.shape}")
        full_estimate = dict(estimate(data)) if estimate is not None else None
        for c in np.unique(labels).tolist():
            subset = data[torch.from_numpy(labels == c)]
            if subset.shape[0] < 2:
                continue
            per_class[int(c)] = _relative_change(full, dict(hypernetwork(subset)))
            if estimate is not None:
                reference[int(c)] = _relative_change(full_estimate, dict(estimate(subset)))
    slope, estimated = None, []
    scales = [float(s) for s in scales]
    if model is not None:
        from .hypernetwork import call_with
        from .models import Gaussian

        if isinstance(model, Gaussian):
            if len(scales) < 2 or min(scales) <= 0:
                raise InputError(f"scales: expected at least two positive scales, received {scales}")
            generator = torch.Generator().manual_seed(int(seed))
            base = torch.randn((int(n), model.in_features), generator=generator)
            for sigma in scales:
                params = dict(hypernetwork(base * sigma))
                described = call_with(model, params, "describe")
                variances = [v for k, v in described.items() if k.startswith("var")]
                estimated.append(float(np.sqrt(np.mean(variances))))
            slope = float(np.polyfit(np.log(scales), np.log(estimated), 1)[0])
    return HypernetworkSensitivity(per_class, reference, slope, scales, estimated)
