"""Which torch device a computation runs on: one check shared by the encoders, the estimators and the experiments
(on the ground: it imports only torch and the errors)."""

from __future__ import annotations

from typing import Any

import torch

from .errors import InputError

__all__ = ["default_device", "resolve_device"]


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: Any, name: str = "device") -> torch.device:
    """``device`` (None, a string such as "cpu" or "cuda:0", or a ``torch.device``) as a ``torch.device`` this
    machine has; None gives ``default_device()``. InputError naming ``name`` for an unknown or absent device."""
    if device is None:
        return default_device()
    if not isinstance(device, (str, torch.device)):
        raise InputError(f"{name}: expected None, a device string such as 'cpu' or 'cuda', or a torch.device, "
                         f"received {device!r}")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise InputError(f"{name}: expected a torch device such as 'cpu', 'cuda' or 'cuda:1', received {device!r}") from None
    if resolved.type == "cuda":
        available = torch.cuda.device_count()
        if available == 0 or (resolved.index is not None and resolved.index >= available):
            raise InputError(f"{name}: {device!r} is not on this machine ({available} CUDA device(s))")
    elif resolved.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise InputError(f"{name}: {device!r} is not available on this machine")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"{name}: expected 'cpu', 'cuda' or 'mps', received {device!r}")
    return resolved
