"""What every experiment leaves behind: ``summary.json`` (numbers) and ``report.md`` (the table people read)."""

from __future__ import annotations

import json
from pathlib import Path


def write_summary(out: Path, summary: dict, markdown: str, progress: bool, what: str = "runs and summary") -> None:
    """Write ``out/summary.json`` and ``out/report.md``; print the table and the folder when ``progress``."""
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "report.md").write_text(markdown)
    if progress:
        print(markdown)
        print(f"{what} in {out}")
