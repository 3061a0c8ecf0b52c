"""The run store: one self-describing directory per run (SQLite in WAL mode + content-addressed arrays).

``layout`` names every file and holds the schema; ``writer`` is the only code that writes; ``run`` reads (and
appends analysis results through a writer); ``derived`` lists the kinds of arrays analyses keep in a run.
"""

from .arrays import array_hash, file_hash
from .run import Event, Reference, Run, Snapshot, find_runs, is_run_dir, open_run, opened
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
    "opened",
]
