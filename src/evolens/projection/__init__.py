"""Time-consistent ("evolutionary") 2-D maps of reference data and snapshots, and their quality scores."""

from .evolutionary import LAYOUTS, EvolutionaryTSNE
from .quality import knn_recall, map_scale, matched_indices, temporal_stability, trustworthiness
from .run import Projection, load_projection, project_run, projection_figure
from .synthetic import planted_evolution

__all__ = [
    "EvolutionaryTSNE",
    "LAYOUTS",
    "Projection",
    "knn_recall",
    "map_scale",
    "matched_indices",
    "load_projection",
    "planted_evolution",
    "project_run",
    "projection_figure",
    "temporal_stability",
    "trustworthiness",
]
