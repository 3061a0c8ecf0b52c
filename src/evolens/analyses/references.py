"""Adding a named reference: store the images once (``evolens.store.references``), embed them into shards and
compute what every run that uses them would otherwise compute of the reference alone — FID statistics and the
k-NN radii of precision/recall, density/coverage and authenticity. It lives above the store because it runs an
encoder and the metrics; the store only keeps and finds what it computed."""

from __future__ import annotations

import os
import shutil
from typing import Any

import numpy as np

from ..encoders.registry import get_encoder
from ..metrics.quality import DENSITY_COVERAGE_K, PRECISION_RECALL_K, FeatureStatistics, knn_radii
from ..store.derived import FID_STATISTICS, PRDC_RADII, TRAINING_SPACING
from ..store.references import NamedReference, store_named_reference
from ..store.run import open_run
from ..store.shards import DEFAULT_SHARD_ROWS, ShardWriter
from .ray_engine import NpySource, embed_into_shards

__all__ = ["add_named_reference"]


def add_named_reference(name: str, images: Any, labels: Any = None, *, encoder: Any = "efficientnet-lite0",
                        store: str | os.PathLike | None = None, batch_size: int | None = None,
                        engine: str = "local", address: str | None = None, workers: int | None = None,
                        progress: bool = True, shard_rows: int = DEFAULT_SHARD_ROWS, radii: bool = True,
                        gpus_per_worker: float = 0.0, **encoder_kwargs: Any) -> NamedReference:
    """Store ``images`` (n, C, H, W) (and ``labels`` (n,)) as the reference ``name`` (once; the same content again
    is a no-op, other content under the name an InputError) and their features under ``encoder`` in shards,
    with FID statistics and (``radii``) the k-NN radii of precision/recall and density/coverage — a search of
    every shard against the shards, quadratic in n: pass False for a very large set whose PRDC no run needs
    (a run computes them on first use and stores them here). An encoder already stored is not embedded again.
    ``engine="ray"`` embeds on Ray (``gpus_per_worker``: one actor per GPU). Returns the ``NamedReference``."""
    reference = store_named_reference(name, images, labels, store=store)
    encoder = get_encoder(encoder, **encoder_kwargs)
    if encoder.id in reference.encoders():
        return reference
    folder = reference.features_folder(encoder.id)
    if folder.exists():  # a killed earlier attempt (no event was written): start over
        shutil.rmtree(folder)
    writer = ShardWriter(folder, shard_rows=shard_rows)
    stored = reference.images
    embed_into_shards(encoder, NpySource(str(stored.filename), len(stored)), writer, engine=engine, address=address,
                      workers=workers, batch_size=batch_size, progress=progress,
                      description=f"embedding {name} ({encoder.name})", num_gpus_per_worker=gpus_per_worker)
    features = writer.close()
    statistics = FeatureStatistics().update_blocks(block for _, block in features.blocks())  # one shard at a time
    with open_run(reference.path) as run:
        run.add_derived(FID_STATISTICS, statistics.state(), encoder_id=encoder.id, source=reference.content_hash)
    ks = [k for k in (1, PRECISION_RECALL_K, DENSITY_COVERAGE_K) if k < features.shape[0]] if radii else []
    if ks:  # one neighbour search of every shard: the PRDC radii and the spacing authenticity judges by
        for k, value in knn_radii(features, ks).items():
            if k == 1:
                reference.add_derived(TRAINING_SPACING, np.sqrt(value), encoder_id=encoder.id,
                                      meta={"reference": name})
            else:
                reference.add_derived(PRDC_RADII, value, encoder_id=encoder.id, params={"k": k},
                                      meta={"reference": name})
    reference.record_features(encoder.id, features)
    return reference
