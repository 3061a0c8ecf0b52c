"""Typed exceptions that evolens raises for user-facing problems.

Every error names the argument at fault, what was expected and what was received (with ``shape=`` for
arrays), so that a user can fix the call without reading evolens' source.
"""

from __future__ import annotations

__all__ = [
    "EvolensError",
    "InputError",
    "NotARunError",
    "RunLockedError",
    "StoreIntegrityError",
]


class EvolensError(Exception):
    """Base class of every error evolens raises on purpose."""


class InputError(EvolensError, ValueError):
    """An argument has the wrong type, shape, value or order."""


class NotARunError(EvolensError, FileNotFoundError):
    """A path does not hold an evolens run (no ``runs.sqlite`` with the evolens schema)."""


class RunLockedError(EvolensError, RuntimeError):
    """Another live process is already capturing into this run directory."""


class StoreIntegrityError(EvolensError, RuntimeError):
    """The run store contradicts itself (e.g. an indexed array file is missing or has the wrong hash)."""
