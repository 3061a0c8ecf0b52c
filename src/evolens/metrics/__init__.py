"""Metrics: pure functions on feature arrays. ``quality`` now; proximity, attributes and collapse follow."""

from .quality import (
    PRDC,
    FeatureStatistics,
    check_features,
    cmmd,
    cmmd_real_term,
    density_coverage,
    features_to_stats,
    fid,
    fid_from_stats,
    kid,
    prdc,
    precision_recall,
    real_radii_sq,
    vendi,
)

__all__ = [
    "FeatureStatistics",
    "PRDC",
    "check_features",
    "cmmd",
    "cmmd_real_term",
    "density_coverage",
    "features_to_stats",
    "fid",
    "fid_from_stats",
    "kid",
    "prdc",
    "precision_recall",
    "real_radii_sq",
    "vendi",
]
