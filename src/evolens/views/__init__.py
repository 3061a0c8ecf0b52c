"""Views of runs, read-only: one data layer (``data``), the one-file HTML report (``report``), the live dashboard
(``server``, ``page``), the shared map renderer (``assets``) and image grids (``grid``)."""

from .figures import projection_figure
from .grid import images_to_grid, png_bytes, save_png
from .report import build_report, write_report
from .server import create_app

__all__ = ["build_report", "create_app", "images_to_grid", "png_bytes", "projection_figure", "save_png",
           "write_report"]
