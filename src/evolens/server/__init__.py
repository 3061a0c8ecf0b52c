"""Live dashboard (``evolens serve``): a read-only FastAPI app over a folder of runs; see :mod:`.app`."""

from .app import create_app, run_ids

__all__ = ["create_app", "run_ids"]
