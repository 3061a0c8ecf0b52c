"""Kinds of derived arrays: what analyses compute from a run and keep in it, each under a typed key.

A derived array is stored in the ``derived`` table under (``kind``, ``encoder_id``, ``source``, ``params``,
``step``), not under a made-up content hash: every reader asks for exactly the kind it wants, and listing the
encoders of a run lists only real features. The kinds and what their key fields mean:

================================  ==========================================  ==============================  ======
kind                              array                                       source                          step
================================  ==========================================  ==============================  ======
``features``                      (n, d) float32 embedding of an image array  content hash of the images      --
``fid-statistics``                FID mean and covariance, packed (``FeatureStatistics.state()``)  reference images hash  --
``prdc-radii``                    (n,) squared k-NN radii (params: ``k``)     reference images hash           --
``cmmd-reference-term``           (1,) mean RBF kernel of the reference       reference images hash           --
``training-spacing``              (n,) distance of each reference item to its  reference images hash           --
                                  nearest other item (authenticity)
``heldout-nearest-train``         (m,) distance of each held-out item to its   reference images hash           --
                                  nearest reference item (params: ``heldout``,
                                  the held-out images hash)
``projection-coords``             (n, 2) map coordinates of one snapshot      projection id                   step
``projection-reference-coords``   (m, 2) map coordinates of reference points  projection id                   --
``projection-reference-labels``   (m,) labels of those reference points       projection id                   --
``projection-model``              the fitted map, serialised (uint8 bytes)    projection id                   --
``nearest-train``                 (n, k) distances (params ``part: distance``)  reference images hash         step
                                  or indices (``part: index``) of each
                                  sample's k nearest reference items
``attribute-labels``              (n,) int64 attribute of each sample, as     classifier id                   step
                                  the attribute classifier labelled it
================================  ==========================================  ==============================  ======

Per-class reference quantities carry ``{"class": c}`` in their parameters.
"""

from __future__ import annotations

from ..errors import InputError

FEATURES = "features"
FID_STATISTICS = "fid-statistics"
PRDC_RADII = "prdc-radii"
CMMD_REFERENCE_TERM = "cmmd-reference-term"
TRAINING_SPACING = "training-spacing"
HELDOUT_NEAREST_TRAIN = "heldout-nearest-train"
PROJECTION_COORDS = "projection-coords"
PROJECTION_REFERENCE_COORDS = "projection-reference-coords"
PROJECTION_REFERENCE_LABELS = "projection-reference-labels"
PROJECTION_MODEL = "projection-model"
NEAREST_TRAIN = "nearest-train"
ATTRIBUTE_LABELS = "attribute-labels"

DERIVED_KINDS = (FEATURES, FID_STATISTICS, PRDC_RADII, CMMD_REFERENCE_TERM, TRAINING_SPACING, HELDOUT_NEAREST_TRAIN,
                 PROJECTION_COORDS, PROJECTION_REFERENCE_COORDS, PROJECTION_REFERENCE_LABELS, PROJECTION_MODEL,
                 NEAREST_TRAIN, ATTRIBUTE_LABELS)


def check_kind(kind: object) -> str:
    """Return ``kind`` if it is one of ``DERIVED_KINDS``; raise InputError listing them otherwise."""
    if kind not in DERIVED_KINDS:
        raise InputError(f"kind: expected one of {list(DERIVED_KINDS)}, received {kind!r}")
    return kind  # type: ignore[return-value]
