"""The encoder registry: names → encoder classes or factories, like torch-fidelity's feature-extractor registry."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from .._validation import describe
from ..errors import InputError
from .base import Encoder
from .costs import COSTS

_REGISTRY: dict[str, Callable[..., Encoder]] = {}


@dataclass(frozen=True)
class EncoderInfo:
    """One registry entry as ``list_encoders`` reports it."""

    name: str
    description: str
    weights_available: bool
    weights: str
    cpu_seconds_per_100: float | None = None  # measured by benchmarks/encoders.py (encoders/costs.py says where)
    gpu_seconds_per_100: float | None = None


def register_encoder(name: str, cls: Any, *, overwrite: bool = False, **defaults: Any) -> None:
    """Register an encoder under ``name``.

    Args:
        name: registry name (e.g. ``"my-encoder"``).
        cls: an ``Encoder`` subclass, or any callable ``images (n, C, H, W) -> features (n, d)`` (wrapped in
            ``CallableEncoder``; pass ``dim=`` and ``version=`` in ``defaults`` to make its id meaningful).
        overwrite: replace an existing entry instead of raising.
        defaults: keyword arguments passed to the class or wrapper by ``get_encoder``.
    """
    if not isinstance(name, str) or not name:
        raise InputError(f"name: expected a non-empty string, received {describe(name)}")
    if name in _REGISTRY and not overwrite:
        raise InputError(f"name: an encoder named {name!r} is already registered; pass overwrite=True to replace it")
    if inspect.isclass(cls) and issubclass(cls, Encoder):
        factory: Callable[..., Encoder] = lambda **kw: cls(**{**defaults, **kw})  # noqa: E731
        factory.encoder_class = cls  # type: ignore[attr-defined]
    elif callable(cls):
        from .callable import CallableEncoder

        fn = cls
        factory = lambda **kw: CallableEncoder(fn, name=name, **{**defaults, **kw})  # noqa: E731
        factory.encoder_class = CallableEncoder  # type: ignore[attr-defined]
    else:
        raise InputError(f"cls: expected an Encoder subclass or a callable images -> features, received {describe(cls)}")
    factory.encoder_defaults = defaults  # type: ignore[attr-defined]
    _REGISTRY[name] = factory


def get_encoder(name: str | Encoder, **kwargs: Any) -> Encoder:
    """Build the encoder registered as ``name`` (an ``Encoder`` instance is returned as is)."""
    if isinstance(name, Encoder):
        return name
    if name not in _REGISTRY:
        raise InputError(f"name: no encoder named {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**kwargs)


def registered_names() -> list[str]:
    """The names ``get_encoder`` accepts, sorted."""
    return sorted(_REGISTRY)


def list_encoders() -> list[EncoderInfo]:
    """Every registered encoder with whether its weights are available here, sorted by name."""
    infos = []
    for name in sorted(_REGISTRY):
        factory = _REGISTRY[name]
        cls = factory.encoder_class  # type: ignore[attr-defined]
        available, where = cls.weights_status(**factory.encoder_defaults)  # type: ignore[attr-defined]
        description = cls.description or (cls.__doc__ or "").strip().splitlines()[0]
        cost = COSTS.get(name, {})
        infos.append(EncoderInfo(name, description, available, where, cost.get("cpu"), cost.get("gpu")))
    return infos


def unregister_encoder(name: str) -> None:
    """Remove ``name`` from the registry (tests, plugins)."""
    _REGISTRY.pop(name, None)
