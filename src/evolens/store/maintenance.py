"""Checking and tidying a run directory: ``verify_run`` (``evolens verify RUN``) and ``collect_garbage``
(``evolens gc RUN``).

``verify_run`` re-reads every indexed array and recomputes its content hash (the name it is stored under), checks
the referenced checkpoints exist and runs SQLite's ``quick_check`` on the database — read-only, creating nothing.
A damaged array is repaired by writing the same content again (``ArrayStore.put`` replaces a damaged file).

``collect_garbage`` removes what no reader can reach: array files no database row names (left by a writer killed
between writing a file and committing its row) and temporaries of dead writers. It is safe while a run is live:
temporaries are removed only when their process is gone, and an unindexed array only when it is older than
``grace_seconds`` (a live writer commits its row within milliseconds of the file).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .._validation import check_real
from .arrays import ArrayStore, verify_file
from .layout import ARRAYS_DIR, remove_stale_creations
from .run import Run, opened

__all__ = ["GarbageReport", "VerifyReport", "collect_garbage", "verify_run"]


@dataclass
class VerifyReport:
    """What ``verify_run`` found: ``arrays`` checked, ``damaged`` (relative path, problem), missing checkpoints
    and the database's own check (``"ok"`` or SQLite's message)."""

    run: str
    arrays: int = 0
    damaged: list[tuple[str, str]] = field(default_factory=list)
    missing_checkpoints: list[str] = field(default_factory=list)
    database: str = "ok"

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.missing_checkpoints and self.database == "ok"


@dataclass
class GarbageReport:
    """What ``collect_garbage`` removed (or would remove with ``dry_run``): unindexed array files and temporaries,
    and the bytes they held."""

    orphans: list[str] = field(default_factory=list)
    temporaries: int = 0
    bytes: int = 0


def verify_run(run: Run | str | os.PathLike, *, progress: bool = False) -> VerifyReport:
    """Recompute the hash of every array of ``run`` and check its database; never raises for damage found."""
    from tqdm.auto import tqdm

    with opened(run) as run:
        report = VerifyReport(str(run.path))
        try:
            rows = run._conn.execute("SELECT hash, path FROM arrays").fetchall()
            check = run._conn.execute("PRAGMA quick_check").fetchall()
            report.database = "ok" if check == [("ok",)] else "; ".join(str(r[0]) for r in check[:5])
            checkpoints = [r[0] for r in run._conn.execute(
                "SELECT checkpoint_path FROM snapshots WHERE checkpoint_path IS NOT NULL").fetchall()]
        except Exception as exc:  # a damaged page: say so, check the files we can still list
            report.database = str(exc)
            rows, checkpoints = [], []
        for digest, rel in tqdm(rows, desc="verifying arrays", disable=not progress, leave=False):
            report.arrays += 1
            problem = verify_file(run.path / rel, digest)
            if problem is not None:
                report.damaged.append((rel, problem))
        report.missing_checkpoints = [p for p in checkpoints
                                      if not (Path(p) if Path(p).is_absolute() else run.path / p).exists()]
    return report


def collect_garbage(run: Run | str | os.PathLike, *, grace_seconds: float = 900.0,
                    dry_run: bool = False) -> GarbageReport:
    """Remove array files no row of ``run`` indexes (older than ``grace_seconds``) and dead writers'
    temporaries; with ``dry_run`` only list them."""
    grace_seconds = check_real(grace_seconds, "grace_seconds", minimum=0.0)
    with opened(run) as run:
        indexed = {Path(r[0]).name for r in run._conn.execute("SELECT path FROM arrays").fetchall()}
        root = run.path
    report = GarbageReport()
    now = time.time()
    folder = root / ARRAYS_DIR
    for path in sorted(folder.glob("*/*.npy")) if folder.is_dir() else []:
        stat = path.stat()
        if path.name not in indexed and now - stat.st_mtime > grace_seconds:
            report.orphans.append(str(path.relative_to(root)))
            report.bytes += stat.st_size
            if not dry_run:
                path.unlink(missing_ok=True)
    if not dry_run:
        report.temporaries = ArrayStore(root).remove_stale_temporaries() + remove_stale_creations(root)
    return report
