"""Time-consistent ("evolutionary") 2-D maps of reference data and snapshots, and their quality scores."""

from .evolutionary import LAYOUTS, EvolutionaryTSNE
from .quality import knn_recall, map_scale, matched_indices, temporal_stability, trustworthiness
from .synthetic import planted_evolution

__all__ = [
    "EvolutionaryTSNE",
    "LAYOUTS",
    "knn_recall",
    "map_scale",
    "matched_indices",
    "planted_evolution",
    "temporal_stability",
    "trustworthiness",
]
