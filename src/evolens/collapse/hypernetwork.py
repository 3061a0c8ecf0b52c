"""Hypernetwork H_φ: a *data set* → the weights of a generative model (PLE, arXiv 2405.13977).

Design (DeepSets, as in the public third-party PLE implementation): a per-sample MLP embeds every sample, the
embeddings are mean-pooled over the set, a second MLP maps the pooled vector to a context ``z``, and one linear
read-out per parameter tensor of the target model maps ``z`` to that tensor. Mean pooling makes H invariant to the
order of the samples and defined for any set size, so an estimator trained on subsets applies to the whole data.

The read-outs start at the target model's own initial parameters (bias = the flattened tensor, weight scaled by
``init_scale``): at step 0, H outputs the model as constructed, and with λ = 0 training H is gradient descent on the
model's own likelihood through an input-dependent re-parameterisation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from ..errors import InputError

__all__ = ["HYPERNETWORKS", "Hypernetwork", "call_with", "parameter_shapes"]

#: Hypernetwork architectures: DeepSets (per-sample MLP → mean → MLP → read-outs) and the reviewers' per-sample
#: network (one fully connected network applied to each sample, θ = the mean of its outputs)
HYPERNETWORKS = ("deepsets", "per-sample")


def parameter_shapes(module: nn.Module) -> dict[str, torch.Size]:
    """Shapes of ``module``'s trainable parameters by their ``named_parameters`` names."""
    if not isinstance(module, nn.Module):
        raise InputError(f"module: expected a torch.nn.Module, received {type(module).__name__}")
    shapes = {name: p.shape for name, p in module.named_parameters() if p.requires_grad}
    if not shapes:
        raise InputError(f"module: {type(module).__name__} has no trainable parameters for a hypernetwork to produce")
    return shapes


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ELU())
    return nn.Sequential(*layers)


class _MethodCall(nn.Module):
    """Lets ``torch.func.functional_call`` call a method other than ``forward``."""

    def __init__(self, model: nn.Module, method: str) -> None:
        super().__init__()
        self.model, self.method = model, method

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.model, self.method)(*args, **kwargs)


def call_with(model: nn.Module, params: Mapping[str, torch.Tensor], method: str, *args: Any, **kwargs: Any) -> Any:
    """Call ``model.<method>(*args, **kwargs)`` with its parameters replaced by ``params`` (differentiably).

    ``params`` maps ``named_parameters`` names to tensors of the same shapes (e.g. a :class:`Hypernetwork` output);
    parameters and buffers not in ``params`` keep the module's own values. Uses ``torch.func.functional_call``.
    """
    if not hasattr(model, method):
        raise InputError(f"method: {type(model).__name__} has no method {method!r}")
    wrapped = _MethodCall(model, method)
    return functional_call(wrapped, {f"model.{k}": v for k, v in params.items()}, args, kwargs)


class Hypernetwork(nn.Module):
    """Set hypernetwork: a set of samples (n, *feature_shape) → a dict of parameter tensors.

    Args:
        shapes: parameter name → shape of the target model (see :func:`parameter_shapes`).
        in_features: number of features of one sample after flattening.
        width: width of the per-sample and set MLPs and of the context ``z``.
        depth: hidden layers of each MLP (≥ 1).
        architecture: ``"deepsets"`` (default: per-sample MLP → mean pool → set MLP → read-outs) or
            ``"per-sample"``, the network PLE's reviewers describe: a fully connected network with ``depth``
            hidden layers and the read-outs as its last layer, applied to every sample, θ = the mean of the
            per-sample outputs (the read-outs are linear, so this is the mean of the last hidden layer read out
            once; there is no set MLP after the pooling, so θ is an average of per-sample terms).
        init: optional parameter name → initial tensor; the read-outs start there (default: zeros).
        init_scale: scale of the read-out weights at initialisation (small: H starts near ``init``).
        chunk_size: samples embedded per chunk when pooling large sets (memory bound, same result).
    """

    def __init__(
        self,
        shapes: Mapping[str, torch.Size | tuple[int, ...]],
        in_features: int,
        *,
        width: int = 64,
        depth: int = 2,
        init: Mapping[str, torch.Tensor] | None = None,
        init_scale: float = 1e-2,
        chunk_size: int = 4096,
        architecture: str = "deepsets",
    ) -> None:
        super().__init__()
        if architecture not in HYPERNETWORKS:
            raise InputError(f"architecture: expected one of {list(HYPERNETWORKS)}, received {architecture!r}")
        if int(in_features) < 1:
            raise InputError(f"in_features: expected a positive integer, received {in_features!r}")
        if int(width) < 1 or int(depth) < 1:
            raise InputError(f"width, depth: expected positive integers, received width={width!r}, depth={depth!r}")
        if not shapes:
            raise InputError("shapes: expected at least one parameter shape, received none")
        self.in_features, self.width, self.chunk_size = int(in_features), int(width), int(chunk_size)
        self.shapes = {name: torch.Size(shape) for name, shape in shapes.items()}
        self.names = list(self.shapes)
        self.architecture = architecture
        if architecture == "deepsets":
            self.encoder = _mlp([self.in_features] + [width] * (depth + 1))
            self.head: nn.Module = _mlp([width] * (depth + 2))
        else:  # per-sample: depth hidden layers, each with its activation, then the linear read-outs
            self.encoder = nn.Sequential(_mlp([self.in_features] + [width] * depth), nn.ELU())
            self.head = nn.Identity()
        # fixed affine applied to every input sample (see set_input_normalization); identity by default
        self.register_buffer("input_shift", torch.zeros(()))
        self.register_buffer("input_scale", torch.ones(()))
        self.readouts = nn.ModuleList(nn.Linear(width, max(1, shape.numel())) for shape in self.shapes.values())
        with torch.no_grad():
            for name, readout in zip(self.names, self.readouts):
                readout.weight.mul_(init_scale)
                if init is not None and name in init:
                    value = torch.as_tensor(init[name], dtype=readout.bias.dtype).reshape(-1)
                    if value.numel() != readout.bias.numel():
                        raise InputError(
                            f"init[{name!r}]: expected {readout.bias.numel()} values, received {value.numel()}"
                        )
                    readout.bias.copy_(value)
                else:
                    readout.bias.zero_()

    @classmethod
    def for_model(cls, module: nn.Module, in_features: int | None = None, **kwargs: Any) -> "Hypernetwork":
        """A hypernetwork producing every trainable parameter of ``module``, starting at its current values.

        ``in_features`` defaults to ``module.in_features`` when the module has that attribute.
        """
        shapes = parameter_shapes(module)
        if in_features is None:
            in_features = getattr(module, "in_features", None)
            if in_features is None:
                raise InputError(
                    f"in_features: {type(module).__name__} has no in_features attribute; pass the number of "
                    "features of one flattened sample"
                )
        init = {name: p.detach().clone() for name, p in module.named_parameters() if name in shapes}
        return cls(shapes, int(in_features), init=init, **kwargs)

    def set_input_normalization(self, x: torch.Tensor) -> None:
        """Standardise inputs by the mean and standard deviation of all entries of ``x`` (one scalar each),
        so the set encoder sees values of order 1 whatever the data's units; the outputs are unaffected."""
        with torch.no_grad():
            flat = self._flatten(x)
            self.input_shift.copy_(flat.mean())
            self.input_scale.copy_(flat.std().clamp_min(1e-6) if flat.numel() > 1 else torch.ones(()))

    def _flatten(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise InputError(f"x: expected a torch.Tensor set of samples, received {type(x).__name__}")
        if x.ndim < 1 or x.shape[0] == 0:
            raise InputError(f"x: expected a non-empty set (n, ...), received shape={tuple(x.shape)}")
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.in_features:
            raise InputError(
                f"x: expected {self.in_features} features per sample after flattening, received shape={tuple(x.shape)}"
            )
        return flat.to(self.readouts[0].weight.dtype)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of the per-sample embeddings, (width,); computed in chunks of ``chunk_size`` samples."""
        flat = (self._flatten(x) - self.input_shift) / self.input_scale
        if flat.shape[0] <= self.chunk_size:
            return self.encoder(flat).mean(dim=0)
        total = sum(self.encoder(chunk).sum(dim=0) for chunk in flat.split(self.chunk_size))
        return total / flat.shape[0]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Parameters estimated from the set ``x`` (n, ...): name → tensor of the target model's shape."""
        z = self.head(self.pool(x))
        return {name: readout(z).reshape(self.shapes[name]) for name, readout in zip(self.names, self.readouts)}

    def forward_sets(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Parameters estimated from each of K sets at once: ``x`` (K, n, ...) → name → (K, *shape)."""
        if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise InputError(f"x: expected K non-empty sets, shape (K, n, ...), received {getattr(x, 'shape', type(x))}")
        k, n = x.shape[0], x.shape[1]
        flat = (self._flatten(x.reshape(k * n, *x.shape[2:])) - self.input_shift) / self.input_scale
        z = self.head(self.encoder(flat).reshape(k, n, -1).mean(dim=1))
        return {name: readout(z).reshape(k, *self.shapes[name]) for name, readout in zip(self.names, self.readouts)}
