"""Metrics: pure functions on feature arrays: ``quality`` and ``proximity``; attributes and collapse follow."""

from .proximity import (
    TrainHeldoutGap,
    copy_rate,
    nearest_neighbors,
    nn_divergence,
    sample_split_distance,
    standardize_images,
    train_heldout_gap,
)

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
    "TrainHeldoutGap",
    "copy_rate",
    "nearest_neighbors",
    "nn_divergence",
    "sample_split_distance",
    "standardize_images",
    "train_heldout_gap",
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
