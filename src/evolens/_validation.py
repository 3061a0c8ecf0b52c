"""Input checks shared by every entry point, so that all errors read the same way.

Modelled on scikit-learn's ``check_array``: each helper names the argument, what was expected, and what it
found ("samples: expected a finite array, found 3 NaN values in shape=(64, 1, 28, 28)").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError


def describe(value: Any) -> str:
    """Short description of ``value`` for error messages: type, and shape/dtype for arrays."""
    if isinstance(value, np.ndarray):
        return f"ndarray shape={value.shape} dtype={value.dtype}"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{type(value).__name__} shape={tuple(value.shape)} dtype={value.dtype}"
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(value).__name__} {text}"


def to_numpy(value: Any, name: str) -> np.ndarray:
    """Convert a numpy array, torch tensor (any device, with or without grad) or sequence to numpy.

    Raises InputError naming ``name`` when the value is not array-like.
    """
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.startswith("torch"):
        tensor = value.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":
            tensor = tensor.float()  # numpy has no bfloat16
        return tensor.numpy()
    try:
        array = np.asarray(value)
    except Exception as exc:  # pragma: no cover - numpy's own message is kept below
        raise InputError(f"{name}: expected an array or tensor, received {describe(value)} ({exc})") from exc
    if array.dtype == object:
        raise InputError(f"{name}: expected a numeric array or tensor, received {describe(value)}")
    return array


def check_array(
    value: Any,
    name: str,
    *,
    ndim: int | tuple[int, ...] | None = None,
    min_samples: int = 0,
    numeric: bool = True,
) -> np.ndarray:
    """Return ``value`` as a numpy array after checking its rank, sample count and dtype.

    Args:
        value: array-like or torch tensor.
        name: argument name used in error messages.
        ndim: required number of dimensions (or a tuple of allowed ones); None accepts any.
        min_samples: minimum length of the first axis.
        numeric: require a bool/integer/floating dtype.
    """
    array = to_numpy(value, name)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if array.ndim not in allowed:
            expected = " or ".join(str(n) for n in allowed)
            raise InputError(f"{name}: expected an array with {expected} dimensions, received shape={array.shape}")
    if numeric and not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InputError(f"{name}: expected a numeric dtype, received dtype={array.dtype} shape={array.shape}")
    if array.ndim == 0 and min_samples > 0:
        raise InputError(f"{name}: expected at least {min_samples} sample(s), received a scalar")
    if min_samples and array.shape[0] < min_samples:
        raise InputError(
            f"{name}: found array with {array.shape[0]} sample(s) (shape={array.shape}) "
            f"while a minimum of {min_samples} is required"
        )
    return array


def count_nonfinite(array: np.ndarray) -> int:
    """Number of NaN or +/-inf entries in a numeric array (0 for integer/bool arrays)."""
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.complexfloating):
        return 0
    return int(array.size - np.count_nonzero(np.isfinite(array)))


def check_step(step: Any, name: str = "step") -> int:
    """Return ``step`` as a non-negative Python int; raise InputError otherwise."""
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        if hasattr(step, "item") and getattr(step, "ndim", None) == 0:
            step = step.item()
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
            raise InputError(f"{name}: expected a non-negative integer, received {describe(step)}")
    step = int(step)
    if step < 0 or step > MAX_STEP:
        raise InputError(f"{name}: expected a non-negative integer below 2**63, received {step}")
    return step


MAX_STEP = 2**63 - 1  # SQLite INTEGER


def check_name(value: Any, name: str) -> str:
    """Return ``value`` if it is a non-empty string; raise InputError naming ``name`` otherwise."""
    if not isinstance(value, str) or not value:
        raise InputError(f"{name}: expected a non-empty string, received {describe(value)}")
    return value
