"""Analyses: apply the pure metric functions to a run and store what they find in it.

Every analysis has one signature, ``analysis(run, *, encoder=..., reference=..., steps=None, ...)``: it takes a
``Run`` or a run directory (and closes what it opens), processes only the snapshots it is given (all by
default), is idempotent (a step already analysed with the same encoder, reference and parameters is read
back, not recomputed), stores its numbers as scalars named with their context (``evolens.names``), and
returns a result with ``.series(name)``.

- ``embedding``: features of snapshots and reference sets (cached per content and encoder);
- ``quality``: FID, KID, precision/recall/density/coverage, Vendi, CMMD, overall and per class;
- ``proximity``: copy rate, nearest-neighbour distance to train vs held-out, NN divergence (memorisation);
- ``attributes``: attribute shares, divergence from the reference, target success, RFair;
- ``split``: the biased-generalization split distance between runs on disjoint splits (takes a list of runs);
- ``projection``: the evolutionary map of every snapshot and the reference data.

The functions carry the names of their modules (``evolens.analyses.proximity`` is the function): reach the
modules' other functions through the package (``analyses.nearest_training``, ``analyses.load_projection_model``)
or ``from evolens.analyses.proximity import …``.

``Live`` runs them on every new snapshot while the model trains (``Monitor(analyze=Live(...))`` or
``evolens watch``), with rules whose alerts reach the training loop.
"""

from ._base import AnalysisResult
from .attributes import attributes
from .embedding import RunEmbedding, embedding
from .live import Live, LiveWorker, watch
from .projection import Projection, load_projection, load_projection_model, projection
from .proximity import nearest_training, proximity
from .quality import QUALITY_METRICS, quality
from .split import SplitAnalysis, group_members, link_runs, split

__all__ = [
    "AnalysisResult",
    "Live",
    "LiveWorker",
    "Projection",
    "QUALITY_METRICS",
    "RunEmbedding",
    "SplitAnalysis",
    "attributes",
    "embedding",
    "group_members",
    "link_runs",
    "load_projection",
    "load_projection_model",
    "nearest_training",
    "projection",
    "proximity",
    "quality",
    "split",
    "watch",
]
