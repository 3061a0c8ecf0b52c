"""Where evolens keeps files outside run directories (cache of trained helper models and parsed data)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """evolens' cache directory: ``$EVOLENS_CACHE``, else ``$XDG_CACHE_HOME/evolens``, else ``~/.cache/evolens``."""
    if os.environ.get("EVOLENS_CACHE"):
        return Path(os.environ["EVOLENS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "evolens"
