"""Views of a run: image grids now; the static HTML report and plots build on these."""

from .grid import images_to_grid, save_png

__all__ = ["images_to_grid", "save_png"]
