"""PLE and MLE trainers with one interface: ``trainer.fit(x) -> FitResult``.

PLE (penalised likelihood estimation, arXiv 2405.13977) trains a hypernetwork H_φ (data set → weights) by

    L(φ) = NLL(X; H_φ(X)) + NLL(B; H_φ(B)) + λ · ‖Ĥ(X) − mean_k Ĥ(X̃_k)‖²,   X̃_k ~ p(·; H_φ(X)),

- NLL: mean negative log-likelihood per sample (nats) of the real data X under the weights H_φ(X);
- B: a bootstrap resample of X under a random affine map of its values (scale and shift, ±``spread``): it teaches
  H to *estimate* — to answer other data sets with their own weights — which every penalty relies on, so it is
  trained at every λ and for every penalty form (``across_sets``; without it H fitted to one set ignores its
  input and H(X̃) ≡ H(X));
- Ĥ: the estimator, a frozen copy of H taken when the penalty starts (after a likelihood-only ``warmup``);
- X̃_k: K = ``synthetic_sets`` synthetic sets of |X| samples, drawn differentiably from the live weights H_φ(X);
  gradients of the penalty reach φ only through these draws;
- ‖·‖²: squared distance summed over every parameter entry; λ = 0.1 in the paper.

The penalty asks for weights whose own samples, run through the estimator, give back what the estimator gives on
the real data: a fixed point that removes the estimator's bias in its own model family (for a Gaussian it moves
the variance from the MLE's (n−1)/n·s² towards the unbiased s², the bias that compounds in self-consuming loops).
The paper does not publish the exact discrepancy; three choices above are ours and were measured
(docs/architecture.md): without the frozen estimator the penalty is cheapest to reduce by making H ignore its
input (PLE then shrank a Gaussian's variance *faster* than MLE in loops); with one synthetic set instead of the
mean of K, the penalty's variance term rewards narrower models and cancels the bias correction; without the
affine-augmented bootstrap sets, H's response to its input stayed weak (slope 0.1–0.8 in log σ) and noisy.
With λ = 0 only the two likelihood terms are trained: H becomes an estimator whose answer on X converges to the
maximum-likelihood fit (within 3% of the MLE variance of 30 Gaussian values at the default 1000 steps).

In effect this is *parametric-bootstrap bias correction* learned through the estimator: the mean of Ĥ over K sets
drawn from the fitted model estimates E[Ĥ(X̃)], and the penalty asks for weights θ with E_θ[Ĥ(X̃)] = Ĥ(X), the
fixed point that the classical bootstrap correction θ̂ − (mean_b θ̂*_b − θ̂) approximates in one step
(:class:`BiasCorrectedMLETrainer`). ``penalty="literal"`` trains the paper's form as written instead:
λ‖H(X) − H(X̃)‖² with one synthetic set and H live on both sides, from step 0 (no warm-up).

Normalisation, so that a value of λ means something: the NLL is averaged over samples and summed over the
dimensions of one sample (nats per sample); the penalty is summed over every parameter entry of the model.

For large data (``batch_size`` < n) X is a random minibatch at every step; minibatches already vary, and B is a
resample of the minibatch, drawn only when ``spread`` > 0. The fitted model takes the weights H_φ(all real data).
``input="constant"`` feeds H one fixed random set instead of the data (a control: a pure re-parameterisation).

:class:`MLETrainer` fits the model's own parameters by minimising the mean NLL with Adam and exposes the same
arguments and result, so either can be handed to :class:`evolens.collapse.loops.SelfConsumingLoop`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .._validation import check_int, check_positive, check_seed
from ..errors import InputError
from .hypernetwork import HYPERNETWORKS, Hypernetwork, call_with

__all__ = ["BiasCorrectedMLETrainer", "FitResult", "INPUTS", "MLETrainer", "PLETrainer", "PENALTIES", "TunedMLETrainer",
           "mean_nll", "ple_penalty",
           "linear_warmup"]

#: PLETrainer penalty forms: evolens's bias-correcting form (the default) and the paper's literal one
PENALTIES = ("frozen", "literal")

#: what PLETrainer feeds its hypernetwork: the data, or one fixed random set (the re-parameterisation control)
INPUTS = ("data", "constant")

Sampler = Callable[[nn.Module, dict, int, torch.Generator], torch.Tensor]


@dataclass
class FitResult:
    """A fitted model and how it got there.

    Attributes:
        model: a copy of the template model holding the estimated parameters.
        history: per training step, ``"loss"``, ``"nll"`` (mean nats per sample) and, for PLE, ``"penalty"``.
        seconds: wall time of the fit.
        hypernetwork: the trained hypernetwork (PLE) or None (MLE).
        method: ``"mle"`` or ``"ple"``.
    """

    model: nn.Module
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    hypernetwork: Hypernetwork | None = None
    method: str = "mle"

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """(n, *sample_shape) float32 samples of the fitted model, reproducible from ``seed``."""
        gen = torch.Generator(device=self.model.device).manual_seed(int(seed))
        return self.model.sample(int(n), generator=gen)

    def parameters(self) -> dict[str, float]:
        """Readable parameters of the fitted model (``model.describe()``)."""
        return self.model.describe() if hasattr(self.model, "describe") else {}


def linear_warmup(warmup_steps: int) -> Callable[[int], float]:
    """λ schedule: a multiplier rising linearly from 0 to 1 over ``warmup_steps`` steps, then 1."""
    warmup_steps = check_int(warmup_steps, "warmup_steps", minimum=1)
    return lambda step: min(1.0, (step + 1) / warmup_steps)


def _as_tensor(x: Any, device: torch.device) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            t = torch.as_tensor(np.asarray(x, dtype=np.float32))
        except (TypeError, ValueError) as exc:
            raise InputError(f"x: expected a numeric array (n, ...), received {type(x).__name__}") from exc
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim < 2 or t.shape[0] < 2:
        raise InputError(f"x: expected at least 2 samples, shape (n, ...), received shape={tuple(t.shape)}")
    t = t.to(device=device, dtype=torch.float32)
    bad = int((~torch.isfinite(t)).sum())
    if bad:
        raise InputError(f"x: expected finite values, received {bad} NaN/inf entries in shape={tuple(t.shape)}")
    return t


def ple_penalty(hypernetwork: Hypernetwork, real: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
    """‖H(real) − H(synthetic)‖², summed over every parameter entry (a 0-d tensor, differentiable)."""
    a, b = hypernetwork(real), hypernetwork(synthetic)
    return sum(((a[k] - b[k]) ** 2).sum() for k in a)


def default_sampler(model: nn.Module, params: dict, n: int, generator: torch.Generator) -> torch.Tensor:
    """Differentiable draw of ``n`` samples from ``model`` with weights ``params`` (its ``rsample``)."""
    return call_with(model, params, "rsample", n, generator=generator)


class _Trainer:
    method = "mle"

    def __init__(
        self,
        model: nn.Module | Callable[[], nn.Module],
        *,
        steps: int,
        lr: float,
        batch_size: int | None,
        seed: int,
        device: str | torch.device | None,
        init_from_data: bool,
        progress: bool,
    ) -> None:
        if not (isinstance(model, nn.Module) or callable(model)):
            raise InputError(f"model: expected a torch.nn.Module or a factory returning one, received {type(model).__name__}")
        steps = check_int(steps, "steps", minimum=1)
        lr = check_positive(lr, "lr")
        if batch_size is not None:
            batch_size = check_int(batch_size, "batch_size", minimum=2)
        seed = check_seed(seed)
        from .._device import resolve_device

        self.template = model
        self.steps, self.lr, self.seed = steps, lr, seed
        self.batch_size = batch_size
        self.device = resolve_device(device)
        self.init_from_data = bool(init_from_data)
        self.progress = bool(progress)

    def _fresh_model(self, x: torch.Tensor, generator: torch.Generator, init: nn.Module | None = None) -> nn.Module:
        if init is not None:  # warm start: the previous fit's weights, no re-initialisation from the data
            return copy.deepcopy(init).to(self.device)
        model = self.template() if not isinstance(self.template, nn.Module) else copy.deepcopy(self.template)
        if not isinstance(model, nn.Module):
            raise InputError(f"model: the factory returned {type(model).__name__}, expected a torch.nn.Module")
        model = model.to(self.device)
        for method in ("nll", "rsample"):
            if not hasattr(model, method):
                raise InputError(f"model: {type(model).__name__} has no {method}() (see evolens.collapse.models)")
        if self.init_from_data and hasattr(model, "init_from_data"):
            model.init_from_data(x, generator=generator)
        return model

    def fit(self, x: Any, seed: int | None = None, *, init: nn.Module | None = None) -> FitResult:
        """Estimate the model from ``x`` (n, ...) float data; ``seed`` overrides the trainer's seed; ``init``
        (a fitted model, e.g. the previous generation's ``FitResult.model``) warm-starts from its weights
        instead of a fresh initialisation."""
        seed = self.seed if seed is None else int(seed)
        if init is not None and not isinstance(init, nn.Module):
            raise InputError(f"init: expected a fitted torch.nn.Module (FitResult.model), received {type(init).__name__}")
        data = _as_tensor(x, self.device)
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)
            generator = torch.Generator().manual_seed(seed)
            result = self._fit(data, generator, seed, init)
        result.seconds = time.perf_counter() - start
        return result

    def _fit(self, data: torch.Tensor, generator: torch.Generator, seed: int,
             init: nn.Module | None) -> FitResult:  # pragma: no cover
        raise NotImplementedError


class MLETrainer(_Trainer):
    """Maximum likelihood: Adam on the model's own parameters, mean NLL over full or mini batches.

    Args:
        model: a template :class:`~evolens.collapse.models.DensityModel` (copied for every fit) or a factory.
        steps: optimisation steps; lr: Adam learning rate.
        batch_size: None for full-batch steps (exact MLE at convergence), else minibatches drawn at random.
        seed: seeds initialisation, batches and the model's noise; device: default CUDA when present.
        init_from_data: call the model's ``init_from_data`` first (Gaussian moments, GMM k-means).
        progress: show a progress bar.
    """

    method = "mle"

    def __init__(
        self,
        model: nn.Module | Callable[[], nn.Module],
        *,
        steps: int = 500,
        lr: float = 1e-2,
        batch_size: int | None = None,
        seed: int = 0,
        device: str | torch.device | None = None,
        init_from_data: bool = True,
        progress: bool = False,
    ) -> None:
        super().__init__(model, steps=steps, lr=lr, batch_size=batch_size, seed=seed, device=device,
                         init_from_data=init_from_data, progress=progress)

    def _batches(self, n: int, generator: torch.Generator) -> Callable[[], torch.Tensor]:
        """Index sampler: all n (full batch) when batch_size is None or ≥ n, else a random subset per step."""
        if self.batch_size is None or self.batch_size >= n:
            everything = torch.arange(n)
            return lambda: everything
        size = self.batch_size
        return lambda: torch.randperm(n, generator=generator)[:size]

    def _fit(self, data: torch.Tensor, generator: torch.Generator, seed: int, init: nn.Module | None) -> FitResult:
        model = self._fresh_model(data, generator, init)
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=self.lr)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, self.steps)
        next_batch = self._batches(data.shape[0], generator)
        history: dict[str, list[float]] = {"loss": [], "nll": []}
        for _ in tqdm(range(self.steps), desc="MLE", disable=not self.progress, leave=False):
            batch = data[next_batch().to(data.device)]
            loss = model.nll(batch).mean()
            if not torch.isfinite(loss):
                raise InputError(f"x: the NLL became {float(loss)} during MLE; lower lr (now {self.lr})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            history["loss"].append(float(loss.detach()))
            history["nll"].append(history["loss"][-1])
        model.eval()
        return FitResult(model=model, history=history, method=self.method)


class TunedMLETrainer(MLETrainer):
    """Maximum likelihood with its learning rate tuned: one fit per rate in ``lrs``, the one with the lowest mean NLL
    on all the data kept (``history["lr"]`` says which). The control that asks whether a hypernetwork arm wins by
    estimating better or only by optimising faster: a hypernetwork's read-outs move every weight by up to
    ``width`` × lr per step, a faster optimiser than Adam at the same lr on the weights themselves.

    Args:
        model, steps, batch_size, seed, device, init_from_data, progress: as :class:`MLETrainer`.
        lrs: the learning rates tried (at least one, each > 0).
    """

    method = "mle-tuned"

    def __init__(self, model: nn.Module | Callable[[], nn.Module], *, lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2),
                 **kwargs: Any) -> None:
        if isinstance(lrs, (str, bytes)) or not hasattr(lrs, "__iter__") or len(list(lrs)) == 0:
            raise InputError(f"lrs: expected a non-empty sequence of learning rates, received {lrs!r}")
        self.lrs = tuple(check_positive(lr, "lrs") for lr in lrs)
        super().__init__(model, lr=self.lrs[0], **kwargs)

    def _fit(self, data: torch.Tensor, generator: torch.Generator, seed: int, init: nn.Module | None) -> FitResult:
        best: tuple[float, float, FitResult] | None = None
        for lr in self.lrs:
            trainer = MLETrainer(self.template, steps=self.steps, lr=lr, batch_size=self.batch_size,
                                 device=self.device, init_from_data=self.init_from_data)
            torch.manual_seed(seed)
            try:
                result = trainer._fit(data, torch.Generator().manual_seed(seed), seed, init)
            except InputError:  # this rate diverged: the others decide
                continue
            score = mean_nll(result.model, data, seed=seed)
            if np.isfinite(score) and (best is None or score < best[0]):
                best = (score, lr, result)
        if best is None:
            raise InputError(f"lrs: every learning rate diverged ({list(self.lrs)}); try smaller ones")
        best[2].history["lr"] = [best[1]]
        best[2].method = self.method
        return best[2]


def mean_nll(model: nn.Module, x: Any, seed: int = 0, chunk: int = 4096) -> float:
    """Mean negative log-likelihood of ``x`` (n, ...) under ``model`` in nats per sample (for a VAE the negative
    ELBO, one seeded draw of z per sample), without gradients; the number the arms of an experiment are matched on."""
    data = x if isinstance(x, torch.Tensor) else _as_tensor(x, model.device)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        total = sum(float(model.nll(part.to(model.device)).sum()) for part in data.split(chunk))
    return total / data.shape[0]


class PLETrainer(_Trainer):
    """Penalised likelihood estimation with a hypernetwork (see the module docstring for the objective).

    Args:
        model: template model (copied per fit) or factory; its trainable parameters are what H produces.
        lam: penalty weight λ (0.1 in the paper); ``lam=0`` trains H on the likelihood alone.
        schedule: optional ``step -> multiplier`` of λ (e.g. :func:`linear_warmup`); default constant.
        sampler: optional ``(model, params, n, generator) -> X̃`` differentiable draw; default ``model.rsample``.
        steps, lr, batch_size, seed, device, init_from_data, progress: as :class:`MLETrainer`, except that a
            ``batch_size`` of None (or ≥ n) means a bootstrap resample of all n samples at every step.
        width, depth, init_scale: hypernetwork size (see :class:`~evolens.collapse.hypernetwork.Hypernetwork`).
        hypernetwork: ``"deepsets"`` (default) or ``"per-sample"`` (the reviewers' network, θ = the mean of a
            per-sample network's outputs); see :class:`~evolens.collapse.hypernetwork.Hypernetwork`.
        synthetic_sets: K synthetic sets whose mean estimate enters the penalty (drawn in one batch).
        warmup: fraction of the steps trained on the likelihood alone before the estimator is frozen.
        across_sets: also train H on another set at every step (a bootstrap resample of the data or of the
            minibatch under a random affine map of its values), so that H *estimates*: it answers other data sets
            with their own weights. Without it H is fitted to one set and ignores its input (``scale_slope`` 0.00
            at λ = 0), and no penalty comparing H(X) with H(X̃) has anything to act on. With minibatches and
            ``spread=0`` the minibatches are the only other sets.
        spread: range of the random log-scale and shift (in data standard deviations) of those sets; the default
            1.5 spans scales e^±1.5 = 0.22–4.5, the range ``hypernetwork_sensitivity`` probes (0.25–4).
        penalty: ``"frozen"`` (default, evolens's form above) or ``"literal"`` (the paper's form as written:
            ‖H(X) − H(X̃)‖², one synthetic set, both sides live, no warm-up; ``synthetic_sets`` and ``warmup``
            are then unused).
        input: ``"data"`` (default) or ``"constant"``: H is fed one fixed random set instead of the data, so it
            is a pure re-parameterisation of the model's weights (a control arm: whatever it changes is not
            H reading its data). Only with λ = 0.
    """

    method = "ple"

    def __init__(
        self,
        model: nn.Module | Callable[[], nn.Module],
        *,
        lam: float = 0.1,
        schedule: Callable[[int], float] | None = None,
        sampler: Sampler | None = None,
        steps: int = 1000,
        lr: float = 1e-3,
        batch_size: int | None = None,
        width: int = 64,
        depth: int = 2,
        init_scale: float = 1e-2,
        hypernetwork: str = "deepsets",
        synthetic_sets: int = 64,
        warmup: float = 0.5,
        across_sets: bool = True,
        spread: float = 1.5,
        penalty: str = "frozen",
        input: str = "data",
        seed: int = 0,
        device: str | torch.device | None = None,
        init_from_data: bool = True,
        progress: bool = False,
    ) -> None:
        super().__init__(model, steps=steps, lr=lr, batch_size=batch_size, seed=seed, device=device,
                         init_from_data=init_from_data, progress=progress)
        if isinstance(lam, bool) or not (isinstance(lam, (int, float)) and lam >= 0 and np.isfinite(lam)):
            raise InputError(f"lam: expected a finite number ≥ 0, received {lam!r}")
        if schedule is not None and not callable(schedule):
            raise InputError(f"schedule: expected a callable step -> multiplier, received {type(schedule).__name__}")
        if sampler is not None and not callable(sampler):
            raise InputError(f"sampler: expected a callable (model, params, n, generator), received {type(sampler).__name__}")
        self.lam, self.schedule = float(lam), schedule
        self.sampler = sampler or default_sampler
        self.width, self.depth, self.init_scale = int(width), int(depth), float(init_scale)
        if int(synthetic_sets) < 1:
            raise InputError(f"synthetic_sets: expected a positive integer, received {synthetic_sets!r}")
        self.synthetic_sets = int(synthetic_sets)
        if not 0 <= warmup < 1:
            raise InputError(f"warmup: expected a fraction of the steps in [0, 1), received {warmup!r}")
        self.warmup = float(warmup)
        if not (isinstance(spread, (int, float)) and 0 <= spread <= 2):
            raise InputError(f"spread: expected a number in [0, 2], received {spread!r}")
        self.spread = float(spread)
        if penalty not in PENALTIES:
            raise InputError(f"penalty: expected one of {list(PENALTIES)}, received {penalty!r}")
        self.penalty = penalty
        if hypernetwork not in HYPERNETWORKS:
            raise InputError(f"hypernetwork: expected one of {list(HYPERNETWORKS)}, received {hypernetwork!r}")
        self.hypernetwork = hypernetwork
        if not isinstance(across_sets, bool):
            raise InputError(f"across_sets: expected True or False, received {across_sets!r}")
        self.across_sets = across_sets
        if input not in INPUTS:
            raise InputError(f"input: expected one of {list(INPUTS)}, received {input!r}")
        if input == "constant" and self.lam > 0:
            raise InputError(f"input: 'constant' is the λ = 0 control (H never sees the data, so a penalty comparing "
                             f"H(X) with H(X̃) is 0), received lam={self.lam:g}")
        self.input = input
        if penalty == "literal":
            self.method = "ple-literal"

    def _fit(self, data: torch.Tensor, generator: torch.Generator, seed: int, init: nn.Module | None) -> FitResult:
        model = self._fresh_model(data, generator, init)
        n = data.shape[0]
        in_features = int(np.prod(data.shape[1:]))
        hyper = Hypernetwork.for_model(model, in_features, width=self.width, depth=self.depth,
                                       init_scale=self.init_scale, architecture=self.hypernetwork).to(self.device)
        constant = self.input == "constant"
        # the control arm: one fixed random set of the data's shape stands for the data wherever H reads it
        fixed = torch.randn(data.shape, generator=torch.Generator().manual_seed(seed + 2)).to(self.device) \
            if constant else None
        hyper.set_input_normalization(fixed if constant else data)
        optimizer = torch.optim.Adam(hyper.parameters(), lr=self.lr)
        literal = self.penalty == "literal"
        warmup_steps = int(round(self.warmup * self.steps)) if self.lam > 0 and not literal else 0
        # constant rate while H learns to estimate, then a cosine decay over the penalised phase
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: 1.0 if step < warmup_steps
            else 0.5 * (1 + np.cos(np.pi * (step - warmup_steps) / max(1, self.steps - warmup_steps))),
        )
        full_batch = self.batch_size is None or self.batch_size >= n
        # training across sets makes H an estimator at every λ and for every penalty form; minibatches are other
        # sets already, so there the extra set is only drawn when the affine map makes it differ from one
        train_estimator = self.across_sets and not constant and (full_batch or self.spread > 0)
        history: dict[str, list[float]] = {"loss": [], "nll": [], "penalty": []}
        if train_estimator:
            history["nll_bootstrap"] = []
        sample_gen = torch.Generator(device=self.device).manual_seed(seed + 1)
        estimator: Hypernetwork | None = None
        for step in tqdm(range(self.steps), desc="PLE", disable=not self.progress, leave=False):
            if full_batch:
                batch = data
            else:
                batch = data[torch.randperm(n, generator=generator)[: self.batch_size].to(data.device)]
            params = hyper(fixed if constant else batch)
            nll = call_with(model, params, "nll", batch).mean()
            loss = nll
            if train_estimator:  # teach H to estimate from other sets too (see _estimator_set)
                boot = self._estimator_set(batch, generator)
                nll_boot = call_with(model, hyper(boot), "nll", boot).mean()
                loss = loss + nll_boot
                history["nll_bootstrap"].append(float(nll_boot.detach()))
            lam = 0.0 if step < warmup_steps else self.lam
            if self.schedule is not None:
                lam *= float(self.schedule(step))
            penalty = torch.zeros((), device=self.device)
            if lam > 0 and literal:  # the paper's form: H live on both sides, one synthetic set
                synthetic = self.sampler(model, params, batch.shape[0], sample_gen)
                penalty = ple_penalty(hyper, batch, synthetic)
            elif lam > 0:
                if estimator is None:  # the likelihood-trained estimator, held fixed from here on
                    estimator = copy.deepcopy(hyper).requires_grad_(False)
                penalty = self._penalty(estimator, model, params, batch, sample_gen)
            # one place where the penalty joins the loss, whatever its form (the literal branch once lacked it)
            loss = loss + lam * penalty
            if not torch.isfinite(loss):
                raise InputError(f"x: the PLE loss became {float(loss)} at step {step}; lower lr (now {self.lr}) or lam")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            history["loss"].append(float(loss.detach()))
            history["nll"].append(float(nll.detach()))
            history["penalty"].append(float(penalty.detach()))
        with torch.no_grad():
            final = hyper(fixed if constant else data)
            for name, p in model.named_parameters():
                if name in final:
                    p.copy_(final[name])
        model.eval()
        return FitResult(model=model, history=history, hypernetwork=hyper, method=self.method)

    def _estimator_set(self, data: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A bootstrap resample of ``data`` (the data, or the minibatch) under a random affine map of its values (log-scale ±``spread``,
        shift ±``spread`` standard deviations) so that H learns how estimates respond to the data."""
        n = data.shape[0]
        boot = data[torch.randint(0, n, (n,), generator=generator).to(data.device)]
        if self.spread == 0:
            return boot
        u = (torch.rand(2, generator=generator) * 2 - 1) * self.spread
        centre, scale = data.mean(dim=0), data.std().clamp_min(1e-6)
        return centre + (boot - centre) * torch.exp(u[0]).to(data.device) + u[1].to(data.device) * scale

    def _penalty(
        self, estimator: Hypernetwork, model: nn.Module, params: dict, batch: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """‖Ĥ(X) − mean_k Ĥ(X̃_k)‖²: K = synthetic_sets sets X̃_k of |X| samples drawn from the live ``params``,
        Ĥ the frozen estimator (gradients reach ``params`` through the draws only)."""
        k, n = self.synthetic_sets, batch.shape[0]
        with torch.no_grad():
            target = estimator(batch)
        synthetic = self.sampler(model, params, k * n, generator)
        estimates = estimator.forward_sets(synthetic.reshape(k, n, *synthetic.shape[1:]))
        return sum(((target[name] - estimates[name].mean(dim=0)) ** 2).sum() for name in params)


#: BiasCorrectedMLETrainer corrections
CORRECTIONS = ("bessel", "parametric-bootstrap")


class BiasCorrectedMLETrainer(MLETrainer):
    """Maximum likelihood followed by a classical bias correction: the baseline PLE has to beat.

    - ``"bessel"`` (Gaussian only, closed form): the variance times n/(n−1), i.e. ``log_std += ½ log(n/(n−1))``,
      the unbiased sample variance.
    - ``"parametric-bootstrap"`` (any model): draw ``replicates`` sets of n samples from the MLE fit θ̂, refit
      each by MLE starting from θ̂ (which keeps mixture components in the same order), and return
      θ̂ − (mean_b θ̂*_b − θ̂) = 2θ̂ − mean_b θ̂*_b, computed on the model's own parameters (logits, means,
      log standard deviations), so the corrected model stays valid.

    Args:
        model, steps, lr, batch_size, seed, device, init_from_data, progress: as :class:`MLETrainer`.
        correction: ``"bessel"`` or ``"parametric-bootstrap"``.
        replicates: bootstrap sets B (parametric bootstrap only).
        refit_steps: MLE steps per bootstrap refit (default ``steps // 2``; refits start at θ̂).
    """

    def __init__(
        self,
        model: nn.Module | Callable[[], nn.Module],
        *,
        correction: str = "parametric-bootstrap",
        replicates: int = 20,
        refit_steps: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        if not isinstance(correction, str) or correction not in CORRECTIONS:
            raise InputError(f"correction: expected one of {list(CORRECTIONS)}, received {correction!r}")
        self.correction, self.replicates = correction, check_int(replicates, "replicates", minimum=2)
        self.refit_steps = max(1, self.steps // 2) if refit_steps is None else \
            check_int(refit_steps, "refit_steps", minimum=1)
        self.method = f"mle-{correction}"

    def _fit(self, data: torch.Tensor, generator: torch.Generator, seed: int, init: nn.Module | None) -> FitResult:
        result = super()._fit(data, generator, seed, init)
        model, n = result.model, data.shape[0]
        if self.correction == "bessel":
            from .models import Gaussian

            if not isinstance(model, Gaussian):
                raise InputError(f"correction: 'bessel' is the Gaussian's closed form, received a {type(model).__name__}"
                                 " (use 'parametric-bootstrap')")
            with torch.no_grad():
                model.log_std.add_(0.5 * float(np.log(n / (n - 1))))
            return result
        refit = MLETrainer(model, steps=self.refit_steps, lr=self.lr, batch_size=self.batch_size,
                           device=self.device, init_from_data=False)
        draw_gen = torch.Generator(device=model.device).manual_seed(seed + 7919)
        totals = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
        for b in range(self.replicates):
            with torch.no_grad():
                replicate = model.rsample(n, generator=draw_gen)
            boot = refit._fit(replicate.detach(), generator, seed + b, init=model).model
            for name, p in boot.named_parameters():
                totals[name] += p.detach()
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(2 * p - totals[name] / self.replicates)
        return result
