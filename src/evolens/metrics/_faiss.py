"""FAISS for nearest neighbours: exact flat search per reference block, and IVF / HNSW indexes for references
too large to search exactly (≥ 10 M rows), with their recall measured against exact search on a sample.

FAISS is optional (``pip install evolens[faiss]``, or ``faiss-gpu``); ``available()`` says whether it imports.
Whatever FAISS returns is a candidate list: the distances evolens reports are recomputed exactly in float64
(``_distances.knn_sq``), so FAISS flat gives the same neighbours and distances as the torch path.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InputError
from ._distances import blocks, centred_pair, exact_sq_dist_pairs, knn_sq, reference_blocks

__all__ = ["APPROXIMATE_METHODS", "approximate_knn_sq", "available", "faiss_candidates"]

APPROXIMATE_METHODS = ("ivf", "hnsw")


def available() -> bool:
    """Whether FAISS (faiss-cpu or faiss-gpu) can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss():
    try:
        import faiss
    except ImportError as exc:
        raise InputError("backend: 'faiss' needs the faiss package; install evolens[faiss] (faiss-cpu) or "
                         "faiss-gpu, or use backend='torch'") from exc
    return faiss


def faiss_candidates(queries: np.ndarray, block: np.ndarray, wanted: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``wanted`` nearest rows of ``block`` for each query by FAISS's exact flat L2 search of the centred sets
    (float32): (approximate squared distances (n_q, wanted), indices into ``block``)."""
    faiss = _faiss()
    centred_q, centred_b = centred_pair(queries, block)
    d, i = faiss.knn(np.ascontiguousarray(centred_q, dtype=np.float32),
                     np.ascontiguousarray(centred_b, dtype=np.float32), wanted)
    return d.astype(np.float64), i.astype(np.int64)


def _sample_rows(reference: Any, n: int, seed: int) -> np.ndarray:
    rows = np.sort(np.random.default_rng(seed).choice(reference.shape[0], min(n, reference.shape[0]), replace=False))
    return np.asarray(reference[rows], dtype=np.float32)


def _build_index(reference: Any, method: str, seed: int, nlist: int | None, hnsw_m: int) -> tuple[Any, np.ndarray]:
    """An IVF-flat or HNSW-flat index over every reference block (centred on a sample's mean); returns it and the
    centre."""
    faiss = _faiss()
    n, d = reference.shape
    sample = _sample_rows(reference, 100_000, seed)
    centre = sample.mean(axis=0, dtype=np.float64).astype(np.float32)
    if method == "ivf":
        nlist = nlist or int(min(65_536, max(16, 4 * math.sqrt(n))))
        quantizer = faiss.IndexFlatL2(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist)
        index.cp.seed = seed
        index.train(np.ascontiguousarray(sample[: max(39 * nlist, 1)] - centre))
    else:
        index = faiss.IndexHNSWFlat(d, hnsw_m)
    for _, block in reference_blocks(reference):
        index.add(np.ascontiguousarray(np.asarray(block, dtype=np.float32) - centre))
    return index, centre


def approximate_knn_sq(queries: np.ndarray, reference: Any, k: int, *, method: str = "ivf",
                       nprobe: int | None = None, ef_search: int = 128, nlist: int | None = None, hnsw_m: int = 32,
                       recall_sample: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """Approximate k nearest reference rows with a FAISS IVF-flat (``method="ivf"``) or HNSW-flat (``"hnsw"``)
    index: (squared distances (n_q, k) ascending, recomputed exactly in float64; indices (n_q, k); recall@k).

    The index holds every reference row (in memory: n × d float32); the recall is the share of the exact k
    nearest (``knn_sq``, exact search) found, over ``recall_sample`` queries drawn with ``seed`` (0 skips it:
    recall NaN). IVF: ``nlist`` lists (default 4 √n), ``nprobe`` of them searched (default nlist / 16, ≥ 8);
    HNSW: ``hnsw_m`` links, ``ef_search`` candidates per search.
    """
    if method not in APPROXIMATE_METHODS:
        raise InputError(f"method: expected one of {list(APPROXIMATE_METHODS)}, received {method!r}")
    n_q, n_r = queries.shape[0], reference.shape[0]
    k = min(k, n_r)
    index, centre = _build_index(reference, method, seed, nlist, hnsw_m)
    if method == "ivf":
        index.nprobe = nprobe or max(8, index.nlist // 16)
    else:
        index.hnsw.efSearch = max(ef_search, k + 2)
    wanted = min(k + 2, n_r)
    candidates = np.empty((n_q, wanted), dtype=np.int64)
    for rows in blocks(n_q, 65_536):
        _, found = index.search(np.ascontiguousarray(np.asarray(queries[rows], dtype=np.float32) - centre), wanted)
        candidates[rows] = found
    missing = candidates < 0  # fewer than `wanted` found in the probed lists
    safe = np.where(missing, 0, candidates)
    rows_index = np.broadcast_to(np.arange(n_q)[:, None], safe.shape)
    exact = exact_sq_dist_pairs(queries, reference, rows_index, safe)
    exact[missing] = np.inf
    order = np.lexsort((safe, exact), axis=1)[:, :k]
    sq, idx = np.take_along_axis(exact, order, axis=1), np.take_along_axis(safe, order, axis=1)
    idx[~np.isfinite(sq)] = -1
    recall = float("nan")
    if recall_sample:
        pick = np.sort(np.random.default_rng(seed).choice(n_q, min(recall_sample, n_q), replace=False))
        _, truth = knn_sq(queries[pick], reference, k, candidates=faiss_candidates)
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(truth.tolist(), idx[pick].tolist())]))
    return sq, idx, recall
