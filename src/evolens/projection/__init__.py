"""The evolutionary map: one time-consistent 2-D layout of reference data and every snapshot, and its scores.

Fitting a map to a run and storing it is an analysis: ``evolens.analyses.projection``.
"""

from .evolutionary import LAYOUTS, EvolutionaryTSNE, NotFittedError
from .scores import knn_recall, map_scale, matched_indices, temporal_stability, trustworthiness
from .synthetic import planted_evolution

__all__ = [
    "EvolutionaryTSNE",
    "LAYOUTS",
    "NotFittedError",
    "knn_recall",
    "map_scale",
    "matched_indices",
    "planted_evolution",
    "temporal_stability",
    "trustworthiness",
]
