"""Proximity to the training data: nearest neighbours, copy rate, NN divergence, train/held-out gap, and the
two-model sample-split distance of the biased-generalization paper (arXiv 2603.03469).

Pure functions on arrays. Distances are exact Euclidean, computed in blocks over the reference set
(``_distances``), so memory stays flat however large the training set is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import check_array, check_int, check_positive, check_real, check_seed, count_nonfinite, describe
from ..errors import InputError
from ._distances import knn_sq
from .quality import _check_pair, check_features, is_blocked

__all__ = [
    "BACKENDS",
    "CTPartition",
    "NNDivergence",
    "approximate_nearest_neighbors",
    "choose_backend",
    "TrainHeldoutGap",
    "ct_partition",
    "authenticity",
    "authenticity_from_neighbors",
    "copy_rate",
    "copy_rate_from_distances",
    "data_copying_ct",
    "extraction_rate",
    "nn_divergence_bootstrap",
    "nn_divergence_edges",
    "nn_divergence_edges_from_distances",
    "nn_divergence_from_distances",
    "normalized_l2",
    "normalized_l2_from_distances",
    "nearest_neighbors",
    "nn_divergence",
    "sample_split_distance",
    "standardize_images",
    "train_heldout_gap",
    "training_spacing",
]


def _pair(queries: Any, reference: Any, q_name: str, r_name: str, min_reference: int = 1):
    # float32 features stay float32 (fast GEMMs); the reference follows the queries' dtype.
    return _check_pair(queries, reference, 1, None, names=(q_name, r_name), min_second=min_reference)


BACKENDS = ("auto", "torch", "faiss", "faiss-ivf", "faiss-hnsw")
# auto uses FAISS flat (when installed) for float32 searches of at least this many query × reference pairs: it
# is 2.4x faster than the torch path at 5,000 x 5,000 x 2,048 (benchmarks/metrics_peers.py); below, both take
# milliseconds and the torch path needs no extra package
FAISS_AUTO_MIN_PAIRS = 4_000_000


def _pair_or_sharded(queries: Any, reference: Any) -> tuple[np.ndarray, Any]:
    """Validate the queries and the reference (an array, or a blocked set too large for memory: a
    ``ShardedFeatures`` or a ``RowSelection`` of one)."""
    if not is_blocked(reference):
        return _pair(queries, reference, "queries", "reference")
    queries = check_features(queries, "queries", 1, None)
    if reference.shape[1] != queries.shape[1]:
        raise InputError(f"reference: expected {queries.shape[1]} feature dimensions like queries, received "
                         f"shape={reference.shape}")
    if reference.dtype != queries.dtype:  # the blocks follow the queries' dtype, as arrays do
        queries = queries.astype(np.promote_types(queries.dtype, reference.dtype))
    return queries, reference


def choose_backend(backend: str, queries: np.ndarray, reference: Any) -> str:
    """The backend ``nearest_neighbors`` uses: ``backend`` itself, or for ``"auto"`` FAISS flat when it is
    installed, the features are float32 and there are ≥ ``FAISS_AUTO_MIN_PAIRS`` pairs, else torch."""
    from . import _faiss

    if backend not in BACKENDS:
        raise InputError(f"backend: expected one of {list(BACKENDS)}, received {backend!r}")
    if backend != "auto":
        return backend
    large = queries.shape[0] * reference.shape[0] >= FAISS_AUTO_MIN_PAIRS
    return "faiss" if large and queries.dtype == np.float32 and _faiss.available() else "torch"


def nearest_neighbors(queries: Any, reference: Any, k: int = 1, *, backend: str = "auto"
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest reference rows of each query: (Euclidean distances (n_q, k) ascending, indices (n_q, k)).

    ``reference``: an (n, d) array or a ``evolens.store.shards.ShardedFeatures`` (a reference too large for
    memory, read shard by shard). ``backend``: ``"torch"`` (blocked GEMMs), ``"faiss"`` (FAISS flat, exact),
    ``"auto"`` (FAISS flat for large float32 searches when installed, see ``choose_backend``), or the approximate
    ``"faiss-ivf"`` / ``"faiss-hnsw"`` (see ``approximate_nearest_neighbors``, which also returns the recall).
    The exact backends return the same neighbours and distances: candidates are recomputed exactly in float64.
    Memory is set by the block (≤ 262,144 reference rows or one shard), not by the reference.
    """
    queries, reference = _pair_or_sharded(queries, reference)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= reference.shape[0]:
        raise InputError(f"k: expected 1 <= k <= {reference.shape[0]} (reference size), received {k!r}")
    chosen = choose_backend(backend, queries, reference)
    if chosen.startswith("faiss-"):
        distances, index, _ = approximate_nearest_neighbors(queries, reference, int(k), method=chosen[6:],
                                                            recall_sample=0)
        return distances, index
    from . import _faiss

    sq, index = knn_sq(queries, reference, int(k), candidates=_faiss.faiss_candidates if chosen == "faiss" else None)
    return np.sqrt(sq), index


def approximate_nearest_neighbors(queries: Any, reference: Any, k: int = 1, *, method: str = "ivf",
                                  recall_sample: int = 1000, seed: int = 0, **index_params: Any
                                  ) -> tuple[np.ndarray, np.ndarray, float]:
    """k nearest reference rows through a FAISS IVF-flat (``method="ivf"``) or HNSW-flat (``"hnsw"``) index, for
    references too large to search exactly (≥ 10 M rows): (Euclidean distances (n_q, k), indices (n_q, k) — -1
    where fewer than k were found —, recall@k against exact search on ``recall_sample`` queries (NaN for 0)).

    Distances of the neighbours found are exact (float64). ``index_params``: ``nlist``, ``nprobe`` (IVF),
    ``hnsw_m``, ``ef_search`` (HNSW). The index keeps every reference row in memory (n × d float32).
    """
    from . import _faiss

    queries, reference = _pair_or_sharded(queries, reference)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= reference.shape[0]:
        raise InputError(f"k: expected 1 <= k <= {reference.shape[0]} (reference size), received {k!r}")
    recall_sample = check_int(recall_sample, "recall_sample", minimum=0)
    sq, index, recall = _faiss.approximate_knn_sq(queries, reference, int(k), method=method,
                                                  recall_sample=recall_sample, seed=check_seed(seed),
                                                  **index_params)
    return np.sqrt(sq), index, recall


def copy_rate(generated: Any, train: Any, ratio: float = 1 / 3) -> float:
    """Share of generated samples whose nearest training sample is closer than ``ratio`` x the second nearest.

    The memorisation criterion of Yoon et al. 2023 / Carlini et al.: a sample much nearer to one training
    image than to any other is a copy of it.
    """
    ratio = check_real(ratio, "ratio")
    if not 0 < ratio < 1:
        raise InputError(f"ratio: expected a number in (0, 1), received {ratio!r}")
    generated, train = _pair(generated, train, "generated", "train", min_reference=2)
    distances, _ = nearest_neighbors(generated, train, k=2)
    return copy_rate_from_distances(distances, ratio)


def copy_rate_from_distances(distances: np.ndarray, ratio: float = 1 / 3) -> float:
    """``copy_rate`` from the (n, k >= 2) ascending nearest-training distances of the samples."""
    return float(np.mean(distances[:, 0] < ratio * distances[:, 1]))


def _nn_distances(generated: Any, train: Any, heldout: Any) -> tuple[np.ndarray, np.ndarray]:
    # A histogram of one distance says nothing: every set needs two samples.
    generated, train = _pair(generated, train, "generated", "train", min_reference=2)
    heldout, _ = _pair(heldout, train, "heldout", "train", min_reference=2)
    if generated.shape[0] < 2 or heldout.shape[0] < 2:
        raise InputError(f"generated, heldout: expected at least 2 samples each, received shape={generated.shape} "
                         f"and shape={heldout.shape}")
    return nearest_neighbors(generated, train, 1)[0][:, 0], nearest_neighbors(heldout, train, 1)[0][:, 0]


def _check_edges(edges: Any) -> np.ndarray:
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 3 or np.isnan(edges).any() or not np.all(np.diff(edges) > 0):
        raise InputError(f"edges: expected at least 3 strictly increasing bin edges, received {edges!r}")
    return edges


def _kl_histograms(d_gen: np.ndarray, d_test: np.ndarray, edges: np.ndarray, eps: float) -> float:
    p = np.histogram(d_gen, edges)[0] / d_gen.size
    q = np.histogram(d_test, edges)[0] / d_test.size
    p, q = np.clip(p, eps, None), np.clip(q, eps, None)
    return float(np.sum(p * np.log(p / q)))


def nn_divergence_edges(train: Any, heldout: Any, bins: int = 20) -> np.ndarray:
    """Bin edges for ``nn_divergence`` fixed once per analysis: the quantiles of the held-out items'
    nearest-training distances (each bin holds ~1/bins of fresh data), the outer edges opened to 0 and +inf so
    every distance falls in a bin. (bins + 1,) ascending; repeated quantiles are merged."""
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise InputError(f"bins: expected an integer >= 2, received {bins!r}")
    heldout, train = _pair_or_sharded(heldout, train)
    if heldout.shape[0] < 2:
        raise InputError(f"heldout: expected at least 2 samples, received shape={heldout.shape}")
    return nn_divergence_edges_from_distances(nearest_neighbors(heldout, train, 1)[0][:, 0], bins)


def nn_divergence_edges_from_distances(d_test: Any, bins: int = 20) -> np.ndarray:
    """``nn_divergence_edges`` from the held-out items' nearest-training distances ``d_test`` (n,), already
    searched (an analysis keeps them)."""
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise InputError(f"bins: expected an integer >= 2, received {bins!r}")
    d_test = check_array(d_test, "d_test", ndim=1)
    inner = np.unique(np.quantile(d_test, np.linspace(0, 1, int(bins) + 1)[1:-1]))
    inner = inner[inner > 0]
    return np.concatenate([[0.0], inner, [np.inf]])


def nn_divergence(generated: Any, train: Any, heldout: Any, bins: int = 20, eps: float = 1e-8, *,
                  edges: Any = None) -> float:
    """KL(P_gen || P_test) between histograms of nearest-training-sample distances (arXiv 2603.03469).

    P_gen: distances of generated samples to their nearest training sample; P_test: the same for held-out
    real samples. Probabilities are clipped at ``eps`` as in the paper. ~0 when generated samples relate to the
    training set like fresh data; large when they are copies of it (distances piled at 0).

    Bins: with ``edges`` (e.g. ``nn_divergence_edges``, or the paper's fixed support) the same bins at every
    snapshot, so values are comparable across training; without, ``bins`` equal-width bins over this call's
    pooled range (the bins then move between calls).
    """
    eps = check_positive(eps, "eps")
    bins = check_int(bins, "bins", minimum=2)
    d_gen, d_test = _nn_distances(generated, train, heldout)
    if edges is not None:
        return _kl_histograms(d_gen, d_test, _check_edges(edges), eps)
    edges = np.linspace(min(d_gen.min(), d_test.min()), max(d_gen.max(), d_test.max()) + 1e-12, bins + 1)
    return _kl_histograms(d_gen, d_test, edges, eps)


@dataclass(frozen=True)
class NNDivergence:
    """``nn_divergence`` with a percentile bootstrap confidence interval [low, high] at ``level``."""

    value: float
    low: float
    high: float
    level: float


def _check_bootstrap(n_bootstrap: Any, level: Any) -> None:
    check_int(n_bootstrap, "n_bootstrap", minimum=10)
    if check_real(level, "level") <= 0 or level >= 1:
        raise InputError(f"level: expected a number in (0, 1), received {level!r}")


def nn_divergence_bootstrap(generated: Any, train: Any, heldout: Any, *, edges: Any, n_bootstrap: int = 200,
                            level: float = 0.95, eps: float = 1e-8, seed: int = 0) -> NNDivergence:
    """``nn_divergence`` on fixed ``edges`` with a bootstrap CI: generated and held-out distances are resampled
    with replacement ``n_bootstrap`` times (the training set, whose nearest items define the distances, is
    fixed). With few samples the KL is dominated by empty bins clipped at ``eps``; the interval shows it."""
    _check_bootstrap(n_bootstrap, level)
    d_gen, d_test = _nn_distances(generated, train, heldout)
    return nn_divergence_from_distances(d_gen, d_test, edges=edges, n_bootstrap=n_bootstrap, level=level, eps=eps,
                                        seed=seed)


def nn_divergence_from_distances(d_gen: np.ndarray, d_test: np.ndarray, *, edges: Any, n_bootstrap: int = 200,
                                 level: float = 0.95, eps: float = 1e-8, seed: int = 0) -> NNDivergence:
    """``nn_divergence_bootstrap`` from the nearest-training distances of the samples (n,) and of the held-out
    items (m,): an analysis computes the held-out ones once for every snapshot."""
    _check_bootstrap(n_bootstrap, level)
    edges = _check_edges(edges)
    rng = np.random.default_rng(seed)
    draws = np.array([
        _kl_histograms(d_gen[rng.integers(0, d_gen.size, d_gen.size)], d_test[rng.integers(0, d_test.size, d_test.size)],
                       edges, eps)
        for _ in range(int(n_bootstrap))
    ])
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return NNDivergence(_kl_histograms(d_gen, d_test, edges, eps), float(low), float(high), float(level))


def authenticity(generated: Any, train: Any, *, train_spacing: Any = None) -> float:
    """Share of generated samples that are authentic (Alaa et al. 2022, as dgm-eval's ``authpct.py`` computes
    it, as a fraction instead of a percentage).

    For a generated sample, let d1 be its distance to its nearest training sample r, and d2 the distance of r
    to r's own nearest *other* training sample. The sample is authentic when d2 < d1: it is farther from the
    training data than the training data are from each other. Copies (d1 ~ 0) are never authentic; fresh
    samples from the data distribution are authentic about half of the time.

    ``train_spacing``: the (n_train,) d2 of every training sample (``training_spacing(train)``), to compute once
    when the same training set judges many snapshots.
    """
    generated, train = _pair(generated, train, "generated", "train", min_reference=2)
    d2 = training_spacing(train) if train_spacing is None else \
        check_array(train_spacing, "train_spacing", ndim=1).astype(np.float64)
    if d2.shape != (train.shape[0],) or count_nonfinite(d2) or np.any(d2 < 0):
        raise InputError(f"train_spacing: expected ({train.shape[0]},) finite distances >= 0 (training_spacing(train)), "
                         f"received {describe(train_spacing)}")
    d1, nearest = nearest_neighbors(generated, train, 1)
    return authenticity_from_neighbors(d1[:, 0], nearest[:, 0], d2)


def authenticity_from_neighbors(d1: np.ndarray, nearest: np.ndarray, train_spacing: np.ndarray) -> float:
    """``authenticity`` from each sample's distance (n,) to its nearest training item, that item's index (n,)
    and ``training_spacing`` (n_train,)."""
    return float(np.mean(train_spacing[nearest] < d1))


def training_spacing(train: Any) -> np.ndarray:
    """(n,) distance of every training sample to its nearest other training sample (exact twins: 0).

    ``train`` may be blocked (a ``ShardedFeatures``): each shard is searched against all of them, so memory
    stays at two shards (the time is still quadratic in n)."""
    if is_blocked(train):
        if train.shape[0] < 2:
            raise InputError(f"train: expected at least 2 samples, received shape={train.shape}")
        return np.concatenate([nearest_neighbors(block, train, 2)[0][:, 1] for _, block in train.blocks()])
    train = check_features(train, "train", min_samples=2)
    return nearest_neighbors(train, train, 2)[0][:, 1]  # the first neighbour is the point itself (or a twin)


CT_FIT_ROWS = 20_000  # rows C_T's PCA and k-means are fitted on for a training set read from shards (a seeded
                      # sample beyond: 20,000 x 512 float64 = 78 MiB, whatever the set's size)


@dataclass(frozen=True)
class CTPartition:
    """The cells of ``data_copying_ct``, fitted once on a training set (``ct_partition``): ``pca`` (or None),
    ``kmeans``, ``train_cells`` (n_train,) the cell of every training row, and — when ``ct_partition`` was given
    the held-out set — ``heldout_cells`` and ``heldout_nearest`` (each held-out row's distance to the nearest
    training row of its cell), which do not depend on the snapshot and are then not searched again."""

    pca: Any
    kmeans: Any
    n_cells: int
    n_train: int
    train_cells: np.ndarray | None = None
    heldout_cells: np.ndarray | None = None
    heldout_nearest: np.ndarray | None = None
    heldout_sum: float | None = None  # Σ of the held-out values: the set the two arrays above belong to

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x).astype(np.float64)
        return self.pca.transform(x) if self.pca is not None else x

    @property
    def cells_of_train(self) -> np.ndarray:
        return self.kmeans.labels_ if self.train_cells is None else self.train_cells


class _CellRows:
    """The training rows of one cell, projected, read a shard at a time (a blocked reference for ``knn_sq``)."""

    def __init__(self, train: Any, rows: np.ndarray, partition: CTPartition) -> None:
        self.train, self.rows, self.partition = train, rows, partition
        dim = partition.pca.n_components_ if partition.pca is not None else train.shape[1]
        self.shape = (int(rows.shape[0]), int(dim))

    def blocks(self):
        out = 0
        for offset, block in self.train.blocks():
            lo, hi = np.searchsorted(self.rows, [offset, offset + block.shape[0]])
            if hi > lo:
                yield out, self.partition.transform(np.asarray(block)[self.rows[lo:hi] - offset])
                out += hi - lo

    def __getitem__(self, index: Any) -> np.ndarray:
        return self.partition.transform(self.train.take(self.rows[np.asarray(index)]))


def _cell_nearest(queries: np.ndarray, train: Any, partition: CTPartition, cell: int) -> np.ndarray:
    """Distance (m,) of each projected query to the nearest training row of ``cell``."""
    rows = np.flatnonzero(partition.cells_of_train == cell)
    if is_blocked(train):
        return np.sqrt(knn_sq(queries, _CellRows(train, rows, partition), 1)[0][:, 0])
    return nearest_neighbors(queries, partition.transform(train[rows]), 1)[0][:, 0]


def _heldout_cells_and_nearest(heldout: Any, train: Any, partition: CTPartition) -> tuple[np.ndarray, np.ndarray]:
    """The cell of each held-out row and its distance to the nearest training row of that cell."""
    cells = np.empty(heldout.shape[0], dtype=np.int64)
    nearest = np.empty(heldout.shape[0])
    for offset, block in (heldout.blocks() if is_blocked(heldout) else [(0, heldout)]):
        reduced = partition.transform(block)
        block_cells = partition.kmeans.predict(reduced)
        cells[offset:offset + block.shape[0]] = block_cells
        for cell in np.unique(block_cells):
            inside = block_cells == cell
            nearest[offset + np.flatnonzero(inside)] = _cell_nearest(reduced[inside], train, partition, int(cell))
    return cells, nearest


def _fit_cells(rows: np.ndarray, n_cells: int, max_dim: int, seed: int) -> tuple[Any, Any]:
    """dgm-eval's fit: PCA to ``max_dim`` components when wider (scikit-learn's, seeded) and k-means with 10
    restarts on ``rows`` (n, d) float64; returns (pca or None, kmeans)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    # dgm-eval projects on 64 components; fewer training samples than that allow fewer (its PCA would fail)
    components = min(max_dim, rows.shape[0])
    pca = PCA(n_components=components, random_state=seed).fit(rows) if rows.shape[1] > components else None
    reduced = pca.transform(rows) if pca is not None else rows
    return pca, KMeans(n_clusters=int(n_cells), n_init=10, random_state=seed).fit(reduced)


def _ct_partition_blocked(train: Any, n_cells: int, max_dim: int, seed: int) -> CTPartition:
    """``ct_partition`` of a training set read from shards: PCA and k-means fitted as in memory on at most
    ``CT_FIT_ROWS`` rows (all of them below: the very cells of the in-memory path; a seeded sample above, where
    dgm-eval would fit on every row), then every row's cell predicted a shard at a time. Memory: the fit rows
    and one int per training row, never the whole set."""
    n = train.shape[0]
    fit = np.arange(n) if n <= CT_FIT_ROWS else np.sort(
        np.random.default_rng(seed).choice(n, CT_FIT_ROWS, replace=False))
    pca, kmeans = _fit_cells(np.asarray(train.take(fit), dtype=np.float64), n_cells, max_dim, seed)
    partition = CTPartition(pca, kmeans, n_cells, n)
    cells = np.empty(n, dtype=np.int32)
    for offset, block in train.blocks():
        cells[offset:offset + block.shape[0]] = kmeans.predict(partition.transform(block))
    return CTPartition(pca, kmeans, n_cells, n, train_cells=cells)


def ct_partition(train: Any, *, n_cells: int = 3, max_dim: int = 64, seed: int = 0,
                 heldout: Any = None) -> CTPartition:
    """PCA to ``max_dim`` dimensions (when wider) and k-means cells on ``train``, as ``data_copying_ct`` fits
    them; pass it as ``partition=`` to judge many snapshots against one training set. With ``heldout``, the
    held-out rows' cells and nearest-training distances are kept in it too (they do not change between
    snapshots). ``train`` and ``heldout`` may be read from shards (``ShardedFeatures``): see
    ``_ct_partition_blocked``."""
    if is_blocked(train):
        if isinstance(n_cells, bool) or not isinstance(n_cells, (int, np.integer)) or not 1 <= n_cells <= train.shape[0]:
            raise InputError(f"n_cells: expected an integer in [1, {train.shape[0]}], received {n_cells!r}")
        partition = _ct_partition_blocked(train, int(n_cells), check_int(max_dim, "max_dim", minimum=1),
                                          check_seed(seed))
        return _with_heldout(partition, train, heldout)
    train = check_features(train, "train", min_samples=2).astype(np.float64)
    if isinstance(n_cells, bool) or not isinstance(n_cells, (int, np.integer)) or not 1 <= n_cells <= train.shape[0]:
        raise InputError(f"n_cells: expected an integer in [1, {train.shape[0]}], received {n_cells!r}")
    pca, kmeans = _fit_cells(train, int(n_cells), max_dim, seed)
    return _with_heldout(CTPartition(pca, kmeans, int(n_cells), train.shape[0]), train, heldout)


def _with_heldout(partition: CTPartition, train: Any, heldout: Any) -> CTPartition:
    if heldout is None:
        return partition
    if not is_blocked(heldout):
        heldout, _ = _pair(heldout, np.zeros((2, train.shape[1])), "heldout", "train", min_reference=2)
    elif heldout.shape[1] != train.shape[1]:
        raise InputError(f"heldout: expected {train.shape[1]} feature dimensions like train, received "
                         f"shape={heldout.shape}")
    cells, nearest = _heldout_cells_and_nearest(heldout, train, partition)
    return CTPartition(partition.pca, partition.kmeans, partition.n_cells, partition.n_train, partition.train_cells,
                       cells, nearest, _value_sum(heldout))


def _value_sum(x: Any) -> float:
    """Σ of every value in float64 (an array, or a set read from shards): a cheap fingerprint of a held-out set."""
    if is_blocked(x):
        return float(sum(np.sum(block, dtype=np.float64) for _, block in x.blocks()))
    return float(np.sum(x, dtype=np.float64))


def data_copying_ct(generated: Any, train: Any, heldout: Any, *, n_cells: int = 3, tau: float | None = None,
                    max_dim: int = 64, seed: int = 0, partition: CTPartition | None = None) -> float:
    """The C_T data-copying statistic of Meehan et al. 2020, as dgm-eval's ``ct.py`` computes it.

    Features wider than ``max_dim`` are projected on the first ``max_dim`` principal components of the training
    set; k-means (``n_cells`` cells, 10 restarts, seeded) on the training set partitions the space. In each
    cell, the nearest-training-sample distances of generated (Q_m) and held-out (P_n) samples are compared by a
    Mann-Whitney U test, Z-scored under the null: Z = (U - (nm/2 - 0.5)) / sqrt(nm(n+m+1)/12). C_T is the
    average of the cells' Z weighted by their share of held-out samples, over the cells holding more than
    ``tau`` (default 20/m) of the generated samples.

    C_T << 0: generated samples are closer to the training data than fresh data is (data copying); >> 0:
    underfitting; ~0: neither. NaN when no cell holds enough generated samples.
    """
    from scipy.stats import mannwhitneyu

    if is_blocked(train) or is_blocked(heldout):  # read from shards (a named reference): never all in memory
        generated = check_features(generated, "generated", 1, None)
        for name, value in (("train", train), ("heldout", heldout)):
            if not is_blocked(value):
                value = check_features(value, name, 2, None)
            if value.shape[0] < 2 or value.shape[1] != generated.shape[1]:
                raise InputError(f"{name}: expected at least 2 samples of {generated.shape[1]} features like "
                                 f"generated, received shape={value.shape}")
    else:
        generated, train = _pair(generated, train, "generated", "train", min_reference=2)
        heldout, _ = _pair(heldout, train, "heldout", "train", min_reference=2)
    seed = check_seed(seed)
    n_cells = check_int(n_cells, "n_cells", minimum=1)
    max_dim = check_int(max_dim, "max_dim", minimum=1)
    m, n = generated.shape[0], heldout.shape[0]
    tau = 20 / m if tau is None else check_real(tau, "tau")
    if not 0 <= tau < 1:
        raise InputError(f"tau: expected a share in [0, 1), received {tau!r}")
    if partition is None:
        partition = ct_partition(train, n_cells=n_cells, max_dim=max_dim, seed=seed)
    elif not isinstance(partition, CTPartition) or partition.n_train != train.shape[0]:
        raise InputError(f"partition: expected ct_partition() of this training set ({train.shape[0]} rows), "
                         f"received {partition!r}")
    n_cells = partition.n_cells
    if partition.heldout_cells is not None and partition.heldout_cells.shape[0] == n \
            and partition.heldout_sum == _value_sum(heldout):
        p_cells, p_nearest = partition.heldout_cells, partition.heldout_nearest  # searched once, with the cells
    else:
        p_cells, p_nearest = _heldout_cells_and_nearest(heldout, train, partition)
    reduced = partition.transform(generated)
    q_cells = partition.kmeans.predict(reduced)
    t_counts = np.bincount(partition.cells_of_train, minlength=n_cells)
    z, p_share, q_share = np.zeros(n_cells), np.zeros(n_cells), np.zeros(n_cells)
    for cell in range(int(n_cells)):
        p_in, q_in = p_cells == cell, q_cells == cell
        p_share[cell], q_share[cell] = p_in.sum() / n, q_in.sum() / m
        if not p_in.any() or t_counts[cell] == 0:
            raise InputError(f"n_cells: cell {cell} of {n_cells} holds no held-out or no training sample; use fewer "
                             "cells or more held-out data")
        if not q_in.any():
            continue
        l_q = _cell_nearest(reduced[q_in], train, partition, cell)
        l_p = p_nearest[p_in]
        u = mannwhitneyu(l_q, l_p, alternative="less").statistic
        nq, np_ = l_q.size, l_p.size
        z[cell] = (u - (np_ * nq / 2 - 0.5)) / np.sqrt(np_ * nq * (np_ + nq + 1) / 12)
    kept = q_share > tau
    if not kept.any():
        return float("nan")
    return float(p_share[kept] @ z[kept] / p_share[kept].sum())


def normalized_l2(generated: Any, train: Any, *, n_neighbors: int = 50, alpha: float = 0.5) -> np.ndarray:
    """Carlini et al. 2023's normalised distance of each generated sample to its nearest training sample:
    l2(x_gen, x_nn) / (alpha * mean l2(x_gen, y) over the ``n_neighbors`` nearest training samples y). Small when
    a sample is much nearer to one training item than to its neighbourhood (an extracted copy). (n,) array."""
    check_int(n_neighbors, "n_neighbors", minimum=2)
    check_positive(alpha, "alpha")
    generated, train = _pair(generated, train, "generated", "train", min_reference=2)
    k = min(int(n_neighbors), train.shape[0])
    distances, _ = nearest_neighbors(generated, train, k)
    return normalized_l2_from_distances(distances, alpha)


def normalized_l2_from_distances(distances: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``normalized_l2`` from the (n, k) ascending distances to each sample's k nearest training items."""
    scale = alpha * distances.mean(axis=1)
    return np.where(scale > 0, distances[:, 0] / np.where(scale > 0, scale, 1.0), 0.0)


EXTRACTION_THRESHOLD = 1 / 3  # evolens's default threshold of Carlini et al.'s normalised l2


def extraction_rate(generated: Any, train: Any, *, threshold: float = EXTRACTION_THRESHOLD, n_neighbors: int = 50,
                    alpha: float = 0.5) -> float:
    """Share of generated samples whose ``normalized_l2`` is below ``threshold`` (Carlini et al. 2023's
    extraction criterion with their n = 50, alpha = 0.5; the paper sets the threshold per study, evolens's
    default 1/3 matches the copy criterion's ratio)."""
    check_positive(threshold, "threshold")
    return float(np.mean(normalized_l2(generated, train, n_neighbors=n_neighbors, alpha=alpha) < threshold))


@dataclass(frozen=True)
class TrainHeldoutGap:
    """Distances of generated samples to their nearest training vs nearest held-out sample (equal-size sets).

    ``ratio`` = median_to_train / median_to_heldout: ~1 for a model that generalises, < 1 when samples sit
    closer to the training data than to fresh data from the same distribution. ``closer_to_train`` is the
    share of samples whose nearest training sample is nearer than their nearest held-out one (~0.5 if fair).
    """

    median_to_train: float
    median_to_heldout: float
    ratio: float
    closer_to_train: float


def train_heldout_gap(generated: Any, train: Any, heldout: Any) -> TrainHeldoutGap:
    """Compare each generated sample's distance to the training set with its distance to a held-out set.

    Use sets of equal size: the nearest neighbour in a bigger set is nearer by chance alone, so a larger
    training set pushes ``ratio`` below 1 without any memorisation. (Subsampling the larger set instead would
    drop the very training images a model copied.) Raises InputError when the sizes differ by more than 10%.
    """
    generated, train = _pair(generated, train, "generated", "train")
    heldout, _ = _pair(heldout, train, "heldout", "train")
    if abs(train.shape[0] - heldout.shape[0]) > 0.1 * max(train.shape[0], heldout.shape[0]):
        raise InputError(
            f"heldout: expected about as many samples as train ({train.shape[0]}) for a fair comparison, "
            f"received {heldout.shape[0]}; compare with an equal-size subset of the training data"
        )
    to_train = nearest_neighbors(generated, train, 1)[0][:, 0]
    to_heldout = nearest_neighbors(generated, heldout, 1)[0][:, 0]
    m_train, m_heldout = float(np.median(to_train)), float(np.median(to_heldout))
    return TrainHeldoutGap(m_train, m_heldout, m_train / m_heldout if m_heldout > 0 else float("inf"),
                           float(np.mean(to_train < to_heldout)))


def standardize_images(images: Any, name: str = "images") -> np.ndarray:
    """Per-image, per-channel standardisation of (n, C, H, W) images, flattened to (n, C*H*W) float64.

    Constant channels (std 0) become zeros. This is the pixel space of the sample-split measure.
    """
    x = check_array(images, name, ndim=4, min_samples=1).astype(np.float64)
    if count_nonfinite(x):
        raise InputError(f"{name}: expected finite images, found {count_nonfinite(x)} NaN/inf values in shape={x.shape}")
    mean = x.mean(axis=(2, 3), keepdims=True)
    std = x.std(axis=(2, 3), keepdims=True)
    return np.where(std > 0, (x - mean) / np.where(std > 0, std, 1.0), 0.0).reshape(x.shape[0], -1)


def sample_split_distance(samples_a: Any, samples_b: Any, space: Any = "pixels", *, return_all: bool = False,
                          reduce: str = "median"):
    """Cosine distance (1 - cos) between probe-paired samples of two models (arXiv 2603.03469).

    Args:
        samples_a, samples_b: the two models' samples for the same probes, row i paired with row i.
            With ``space="pixels"``: images (n, C, H, W), standardised per image and channel first.
            With ``space="features"``: feature arrays (n, d), compared as they are.
            With an encoder instance (``evolens.encoders.get_encoder(name)``): images embedded by it, then
            compared (``analyses.split_distance`` resolves names).
        return_all: also return the per-pair distances.
        reduce: ``"median"`` of the per-pair distances (robust), or ``"mean"``: 1 - mean cosine, the paper's
            estimator (``sample_split_inference.py``: mean similarity over the samples of a model pair).

    0 for identical samples; ~1 for unrelated ones (cosine ~0); up to 2 for opposite ones.
    """
    if reduce not in ("median", "mean"):
        raise InputError(f"reduce: expected 'median' or 'mean', received {reduce!r}")
    if space == "pixels":
        a, b = standardize_images(samples_a, "samples_a"), standardize_images(samples_b, "samples_b")
    elif space == "features":
        a = check_features(samples_a, "samples_a", min_samples=1)
        b = check_features(samples_b, "samples_b", min_samples=1)
    elif not isinstance(space, (str, bytes)) and callable(getattr(space, "encode", None)):  # an encoder instance
        a = np.asarray(space.encode(samples_a), dtype=np.float64)
        b = np.asarray(space.encode(samples_b), dtype=np.float64)
    else:
        raise InputError(f"space: expected 'pixels', 'features' or an encoder instance (an object with "
                         f".encode(images); a name resolves with evolens.encoders.get_encoder), received {space!r}")
    if a.shape != b.shape:
        raise InputError(f"samples_b: expected shape {a.shape} to pair row by row with samples_a, received shape={b.shape}")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosine = np.where(norms > 0, np.einsum("ij,ij->i", a, b) / np.where(norms > 0, norms, 1.0), 0.0)
    distances = 1.0 - cosine
    value = float(np.median(distances)) if reduce == "median" else float(1.0 - np.mean(cosine))
    return (value, distances) if return_all else value
