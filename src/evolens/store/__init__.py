"""The run store: one self-describing directory per run (SQLite in WAL mode + content-addressed arrays)."""

from .arrays import array_hash, file_hash
from .reader import Event, Reference, Run, Snapshot, find_runs, is_run_dir, open_run
from .writer import RunWriter

__all__ = [
    "Event",
    "Reference",
    "Run",
    "RunWriter",
    "Snapshot",
    "array_hash",
    "file_hash",
    "find_runs",
    "is_run_dir",
    "open_run",
]
