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
    if numeric and not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
                        or array.dtype == bool):
        raise InputError(f"{name}: expected a real numeric dtype (bool, integer or float), received "
                         f"dtype={array.dtype} shape={array.shape}")
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


MAX_SEED = 2**63 - 1  # what numpy, torch and the store all accept


def _plain_number(value: Any) -> Any:
    """A 0-d numpy/torch value as a Python number; anything else unchanged."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0 and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def check_int(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a Python int within [minimum, maximum] (bools refused); InputError naming ``name`` otherwise."""
    value = _plain_number(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name}: expected an integer{_bounds(minimum, maximum)}, received {describe(value)}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise InputError(f"{name}: expected an integer{_bounds(minimum, maximum)}, received {value}")
    return value


def check_real(value: Any, name: str, *, minimum: float | None = None, maximum: float | None = None,
               exclusive_minimum: bool = False, finite: bool = True) -> float:
    """``value`` as a Python float (finite unless ``finite=False``; NaN never) within the bounds; InputError
    naming ``name`` otherwise."""
    value = _plain_number(value)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{name}: expected a real number{_bounds(minimum, maximum, exclusive_minimum)}, received "
                         f"{describe(value)}")
    value = float(value)
    below = minimum is not None and (value <= minimum if exclusive_minimum else value < minimum)
    if np.isnan(value) or (finite and np.isinf(value)) or below or (maximum is not None and value > maximum):
        kind = "a finite real number" if finite else "a real number"
        raise InputError(f"{name}: expected {kind}{_bounds(minimum, maximum, exclusive_minimum)}, received {value!r}")
    return value


def check_positive(value: Any, name: str) -> float:
    """``value`` as a finite float > 0; InputError naming ``name`` otherwise."""
    return check_real(value, name, minimum=0.0, exclusive_minimum=True)


def check_seed(value: Any, name: str = "seed") -> int:
    """A random seed: an integer in [0, 2**63 - 1]; InputError naming ``name`` otherwise."""
    return check_int(value, name, minimum=0, maximum=MAX_SEED)


def _bounds(minimum: Any, maximum: Any, exclusive_minimum: bool = False) -> str:
    if minimum is not None and maximum is not None:
        return f" in {'(' if exclusive_minimum else '['}{minimum}, {maximum}]"
    if minimum is not None:
        return f" {'>' if exclusive_minimum else '>='} {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""


# -- argparse types: a bad command-line value is a usage error naming the option, not a traceback later ----------
def _argparse_number(kind: type, minimum: float | None, exclusive: bool, maximum: float | None, what: str):
    import argparse

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, received {text!r}") from None
        if kind is float and not np.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {what}, received {text!r}")
        if (minimum is not None and (value <= minimum if exclusive else value < minimum)) or \
                (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {what}, received {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


positive_int = _argparse_number(int, 1, False, None, "a positive integer")
non_negative_int = _argparse_number(int, 0, False, None, "an integer >= 0")
seed_int = _argparse_number(int, 0, False, MAX_SEED, "a seed in [0, 2**63 - 1]")
port_int = _argparse_number(int, 0, False, 65535, "a TCP port in 0..65535")
non_negative_float = _argparse_number(float, 0.0, False, None, "a finite number >= 0")
positive_float = _argparse_number(float, 0.0, True, None, "a positive finite number")
finite_float = _argparse_number(float, None, False, None, "a finite number")
unit_share = _argparse_number(float, 0.0, False, 1.0, "a number in [0, 1]")
