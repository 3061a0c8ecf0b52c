"""Does a hypernetwork read its input? Two checks from PLE's review (OpenReview tL8dpJmECp).

A reviewer predicted that H could collapse to "weights ≈ 0, biases ≈ θ*": an estimator that returns one fixed
parameter vector whatever data it is given, in which case PLE's penalty ‖H(X) − H(X̃)‖² is ~0 by construction and
says nothing about X̃. ``hypernetwork_sensitivity`` measures

- how far H's output moves when it is fed a class-restricted subset instead of the whole data (the reviewer's
  proposed test): ~0 for a collapsed H, of the order of the classes' parameter differences for one that reads
  its input;
- for a Gaussian model, the slope of log σ̂ (the standard deviation H's parameters imply) against log σ of
  Gaussian data sets of known σ: 1 for an estimator that reads the scale of its data, 0 for a constant one; for
  any other model whose ``describe()`` reports variances (``var…`` keys, e.g. a Gaussian mixture), the same slope
  on the data itself scaled by σ about its mean.

``HypernetworkSensitivity.reads_input`` turns this into the verdict every PLE arm is reported with: an arm whose
H does not read its input cannot show a penalty effect, and its result is not read as evidence about the penalty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .._validation import describe
from ..errors import InputError

__all__ = ["HypernetworkSensitivity", "READS_INPUT_SLOPE", "READS_INPUT_SHARE", "hypernetwork_sensitivity",
           "plain_estimator"]

#: a hypernetwork reads its input when its scale slope is at least this (1 = reads the scale exactly, 0 = constant)
READS_INPUT_SLOPE = 0.5
#: ... or, without a slope, when its parameters move on class subsets at least this share of a plain estimate's move
READS_INPUT_SHARE = 0.5


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

    @property
    def class_share(self) -> float | None:
        """Median over classes of H's change / the plain estimate's change (None without both)."""
        shares = [self.per_class[c] / self.reference_change[c] for c in self.per_class
                  if c in self.reference_change and self.reference_change[c] > 0]
        return float(np.median(shares)) if shares else None

    @property
    def reads_input(self) -> bool | None:
        """True when H reads its data: ``scale_slope`` ≥ ``READS_INPUT_SLOPE`` where it was measured, else
        ``class_share`` ≥ ``READS_INPUT_SHARE``; None when neither could be measured."""
        if self.scale_slope is not None and np.isfinite(self.scale_slope):
            return bool(self.scale_slope >= READS_INPUT_SLOPE)
        share = self.class_share
        return None if share is None else bool(share >= READS_INPUT_SHARE)


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
            generator = torch.Generator().manual_seed(int(seed))
            base, centre = torch.randn((int(n), model.in_features), generator=generator), 0.0
        else:  # the data itself, scaled about its mean
            base, centre = data - data.mean(dim=0), data.mean(dim=0)
        if isinstance(model, Gaussian) or _variances(call_with(model, full, "describe")):
            if len(scales) < 2 or min(scales) <= 0:
                raise InputError(f"scales: expected at least two positive scales, received {scales}")
            for sigma in scales:
                variances = _variances(call_with(model, dict(hypernetwork(centre + base * sigma)), "describe"))
                estimated.append(float(np.sqrt(np.mean(variances))))
            slope = float(np.polyfit(np.log(scales), np.log(estimated), 1)[0])
    return HypernetworkSensitivity(per_class, reference, slope, scales, estimated)


def _variances(described: Mapping[str, float]) -> list[float]:
    return [float(v) for k, v in described.items() if k.startswith("var")]


def plain_estimator(model: torch.nn.Module) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    """The plain estimate a hypernetwork is compared with: ``data (n, d) → parameters`` from the model's own
    ``init_from_data`` (a Gaussian's moments, a mixture's k-means), on a fresh copy of ``model``."""
    import copy

    if not hasattr(model, "init_from_data"):
        raise InputError(f"model: {type(model).__name__} has no init_from_data() to estimate from a data set")

    def estimate(x: torch.Tensor) -> dict[str, torch.Tensor]:
        fresh = copy.deepcopy(model)
        fresh.init_from_data(x, generator=torch.Generator().manual_seed(0))
        return {name: p.detach().clone() for name, p in fresh.named_parameters()}

    return estimate
