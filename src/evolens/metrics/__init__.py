"""Metrics: pure functions on feature or label arrays, no state and no I/O — ``quality`` (FID, KID, PRDC,
CMMD, Vendi), ``proximity`` (nearest neighbours, copying, the sample-split distance) and ``attributes``
(distributions, divergences, preservation, RFair). Reference-side stages are named by what goes in and what comes
out: ``fid_statistics`` → ``fid_from_statistics``, ``prdc_radii`` → ``prdc(real_radii=...)``,
``cmmd_reference_term`` → ``cmmd(real_term=...)``. Applying them to a run is ``evolens.analyses``."""

from .attributes import (
    attribute_distribution,
    attribute_divergence,
    kl_divergence,
    labels_from_classifier,
    labels_from_prompts,
    preservation_rate,
    rfair,
    target_success_rate,
    total_variation,
)

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
    cmmd,
    cmmd_reference_term,
    density_coverage,
    fid_statistics,
    fid,
    fid_from_statistics,
    kid,
    prdc,
    precision_recall,
    prdc_radii,
    vendi,
)

__all__ = [
    "attribute_distribution",
    "attribute_divergence",
    "kl_divergence",
    "labels_from_classifier",
    "labels_from_prompts",
    "preservation_rate",
    "rfair",
    "target_success_rate",
    "total_variation",
    "TrainHeldoutGap",
    "copy_rate",
    "nearest_neighbors",
    "nn_divergence",
    "sample_split_distance",
    "standardize_images",
    "train_heldout_gap",
    "FeatureStatistics",
    "PRDC",
    "cmmd",
    "cmmd_reference_term",
    "density_coverage",
    "fid_statistics",
    "fid",
    "fid_from_statistics",
    "kid",
    "prdc",
    "precision_recall",
    "prdc_radii",
    "vendi",
]
