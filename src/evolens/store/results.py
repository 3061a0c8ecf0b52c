"""Where a live worker claims snapshots and records what it found: one small interface, two implementations.

The worker's loop reads "claim, analyse, record" (``finished`` → ``claim`` → ``finish``, or ``release`` when the
analysis failed) and never asks where the claims live:

- ``LocalResults``: one host, nothing shared — every claim is granted, nothing was finished elsewhere (the run's
  own done-marks are the record). What ``Live(results=None)`` gives.
- ``SharedResults``: workers on several hosts share a PostgreSQL store (``results_db.ResultsDB``, connected on
  first use). When it cannot be reached or fails, each call answers as ``LocalResults`` would — the worker goes
  on alone, analysing every snapshot — ``on_unreachable`` is told once, and the store is tried again after
  ``retry_seconds``, not at every call (each could wait out a connection timeout).

``results_store(url, ...)`` picks one.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Protocol

from ..errors import EvolensError

__all__ = ["LocalResults", "ResultsStore", "SharedResults", "results_store"]

STORE_RETRY_SECONDS = 30.0  # a shared store that failed is tried again after this long


class ResultsStore(Protocol):
    """Claims and values of live analysis, by run (``Run.uid``), context (the worker's configuration) and step."""

    def finished(self, run_uid: str, context: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
        """``{step: {"values", "host", "pid"}}`` of the steps finished by any worker."""

    def claim(self, run_uid: str, run_name: str, context: Mapping[str, Any], step: int) -> bool:
        """Whether ``step`` is this worker's to analyse."""

    def finish(self, run_uid: str, context: Mapping[str, Any], step: int, values: Mapping[str, float]) -> Any:
        """Record ``step`` as done with ``values``."""

    def release(self, run_uid: str, context: Mapping[str, Any], step: int) -> None:
        """Give an unfinished claim back (its analysis failed here)."""

    def close(self) -> None:
        """Let go of any connection."""


class LocalResults:
    """One host: every claim granted, nothing finished elsewhere, nothing to record."""

    def finished(self, run_uid: str, context: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
        return {}

    def claim(self, run_uid: str, run_name: str, context: Mapping[str, Any], step: int) -> bool:
        return True

    def finish(self, run_uid: str, context: Mapping[str, Any], step: int, values: Mapping[str, float]) -> None:
        return None

    def release(self, run_uid: str, context: Mapping[str, Any], step: int) -> None:
        return None

    def close(self) -> None:
        return None


class SharedResults:
    """A PostgreSQL results store shared by hosts, answering as ``LocalResults`` while it cannot be used.

    Args:
        url: ``postgresql://…`` (``results_db.ResultsDB``).
        stale_after: seconds after which an unfinished claim is taken over.
        on_unreachable: called once, with the error, the first time the store cannot be used.
        retry_seconds: how long a failed store is left alone before it is tried again.
    """

    def __init__(self, url: str, *, stale_after: float = 600.0,
                 on_unreachable: Callable[[EvolensError], None] | None = None,
                 retry_seconds: float = STORE_RETRY_SECONDS) -> None:
        self.url, self.stale_after, self.retry_seconds = url, stale_after, retry_seconds
        self.on_unreachable = on_unreachable
        self._db: Any = None
        self._retry_at = 0.0
        self._told = False
        self._alone = LocalResults()

    def _call(self, method: str, *args: Any) -> Any:
        if self._db is None and time.monotonic() < self._retry_at:
            return getattr(self._alone, method)(*args)
        from .results_db import ResultsDB

        try:
            if self._db is None:
                self._db = ResultsDB(self.url, stale_after=self.stale_after)
            return getattr(self._db, method)(*args)
        except EvolensError as exc:
            self.close()
            self._retry_at = time.monotonic() + self.retry_seconds
            if not self._told:
                self._told = True
                if self.on_unreachable is not None:
                    self.on_unreachable(exc)
            return getattr(self._alone, method)(*args)

    def finished(self, run_uid: str, context: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
        return self._call("finished", run_uid, context)

    def claim(self, run_uid: str, run_name: str, context: Mapping[str, Any], step: int) -> bool:
        return self._call("claim", run_uid, run_name, context, step)

    def finish(self, run_uid: str, context: Mapping[str, Any], step: int, values: Mapping[str, float]) -> Any:
        return self._call("finish", run_uid, context, step, values)

    def release(self, run_uid: str, context: Mapping[str, Any], step: int) -> None:
        return self._call("release", run_uid, context, step)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def results_store(url: str | None, *, stale_after: float = 600.0,
                  on_unreachable: Callable[[EvolensError], None] | None = None) -> ResultsStore:
    """``LocalResults`` without a URL, else ``SharedResults(url, ...)``."""
    if url is None:
        return LocalResults()
    return SharedResults(url, stale_after=stale_after, on_unreachable=on_unreachable)
