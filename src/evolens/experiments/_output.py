"""What every experiment leaves behind: ``summary.json`` (numbers) and ``report.md`` (the table people read)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any


def write_summary(out: Path, summary: dict, markdown: str, progress: bool, what: str = "runs and summary") -> None:
    """Write ``out/summary.json`` and ``out/report.md``; print the table and the folder when ``progress``."""
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "report.md").write_text(markdown)
    if progress:
        print(markdown)
        print(f"{what} in {out}")


def finished_run(run_dir: Path, config: dict[str, Any], complete: Callable[[Any], bool],
                 read: Callable[[Any], Any]) -> Any:
    """``read(run)`` of the run at ``run_dir`` when it was written with ``config`` (every key equal) and
    ``complete(run)`` holds — an interrupted experiment resumes where it stopped —, else None (also for a run
    missing, half-created or damaged: it is run again)."""
    from ..store import open_run

    try:
        with open_run(run_dir) as run:
            if any(run.config.get(k) != v for k, v in config.items()) or not complete(run):
                return None
            return read(run)
    except Exception:  # noqa: BLE001 - missing, half-created or damaged: it is run again
        return None


def _single_threaded(fn: Callable[[Any], Any], job: Any) -> Any:
    import torch

    torch.set_num_threads(1)
    return fn(job)


def in_processes(fn: Callable[[Any], Any], jobs: Sequence[Any], *, workers: int | None, desc: str,
                 progress: bool) -> Iterator[Any]:
    """``fn(job)`` for every job in ``workers`` spawned processes (default one per CPU core), each with one torch
    thread — the experiments' models are too small for intra-op threads to pay off; results as they complete,
    with a progress bar. ``fn`` must be a module-level function (it is pickled)."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from functools import partial
    from multiprocessing import get_context

    from tqdm.auto import tqdm

    with ProcessPoolExecutor(max_workers=max(1, int(workers or os.cpu_count() or 1)),
                             mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(partial(_single_threaded, fn), job) for job in jobs]
        for future in tqdm(as_completed(futures), total=len(futures), desc=desc, disable=not progress):
            yield future.result()
