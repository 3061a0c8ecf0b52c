"""Exact Euclidean distances in blocks: BLAS-bound, memory bounded by the block size, not by n².

Every nearest-neighbour metric (precision/recall, density/coverage, proximity to training data) reduces to
streaming over blocks of the pairwise squared-distance matrix ``|x|² + |y|² - 2 x·y`` (one GEMM per block, in
the inputs' dtype: float32 features use float32 GEMMs, twice as fast), so memory stays at
``row_block × col_block`` values however large the sets grow.

The expansion loses what the norms share: with a common offset (features around 1e4) a float32 |x|² carries
1e8 and the distances of order 1 vanish in its rounding. So

- both sets are first **centred** on one common point (the reference's mean, in float64): distances do not
  change, the norms shrink to the spread of the data;
- the distances a metric *returns* (the k nearest, a radius) are **recomputed exactly** as Σ (x - y)² in
  float64 for the selected pairs (a few more than k are selected, so a near-tie at the k-th place cannot drop the
  true neighbour);
- a comparison ``d(x, y) < r`` whose blocked value lies within the GEMM's rounding bound of ``r`` is **decided
  on the exact distance** (``strictly_within``): a fake row that duplicates a real row sits exactly at the
  real radii it ties with, and is counted as the ``prdc`` package counts it, whatever the rounding of the block.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

ROW_BLOCK = 1024
COL_BLOCK = 8192
EXACT_CHUNK = 2048  # (query, reference) pairs recomputed exactly at once: chunk × d float64 values in memory
EXTRA_CANDIDATES = 2  # neighbours selected beyond k before the exact recomputation picks the k
MAX_REFERENCE_BLOCK = 262_144  # reference rows searched at once (one centred copy of them in memory)


def row_sq_norms(x: np.ndarray) -> np.ndarray:
    """Squared L2 norm of each row (n,), accumulated in float64, returned in x's dtype."""
    return np.einsum("ij,ij->i", x, x, dtype=np.float64).astype(x.dtype, copy=False)


def centred_pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` (n, d), (m, d) shifted by the same point — ``y``'s mean, computed in float64 — in their
    dtype; pairwise distances are unchanged, the squared norms of the expansion lose the common offset."""
    centre = y.mean(axis=0, dtype=np.float64)
    if not np.any(centre):
        return x, y
    centre = centre.astype(x.dtype)
    centred_x = x - centre
    return centred_x, (centred_x if y is x else y - centre)


def sq_dist_block(x: np.ndarray, y: np.ndarray, x_sq: np.ndarray, y_sq: np.ndarray) -> np.ndarray:
    """Squared distances (len(x), len(y)) from precomputed squared norms, clipped at 0 (in place, one buffer)."""
    block = x @ y.T
    block *= -2.0
    block += x_sq[:, None]
    block += y_sq[None, :]
    np.maximum(block, 0.0, out=block)
    return block


def rounding_margin(x_sq: np.ndarray, y_sq: np.ndarray, dim: int, dtype: np.dtype) -> np.ndarray:
    """A bound on |blocked − exact| squared distance for rows with squared norms ``x_sq`` (n,), ``y_sq`` (m,):
    (n, m) in x_sq's dtype. The dot product of d terms errs by about sqrt(d) eps |x||y| ≤ sqrt(d) eps (|x|² +
    |y|²) / 2; the bound takes 4 sqrt(d) + 8 times eps (|x|² + |y|²) to cover the norms' own rounding."""
    eps = np.finfo(dtype).eps * (4.0 * np.sqrt(dim) + 8.0)
    margin = x_sq[:, None] + y_sq[None, :]
    margin *= eps
    return margin


def exact_sq_dist_pairs(x: np.ndarray, y: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Σ (x[i] - y[j])² in float64 for index arrays ``i``, ``j`` of one shape; same shape, float64."""
    i, j = np.asarray(i), np.asarray(j)
    flat_i, flat_j = i.reshape(-1), j.reshape(-1)
    out = np.empty(flat_i.shape[0], dtype=np.float64)
    for part in blocks(flat_i.shape[0], EXACT_CHUNK):
        # y may be a ShardedFeatures: y[rows] gathers those rows from its shards
        diff = x[flat_i[part]].astype(np.float64) - np.asarray(y[flat_j[part]], dtype=np.float64)
        out[part] = np.einsum("ij,ij->i", diff, diff)
    return out.reshape(i.shape)


def strictly_within(d2: np.ndarray, radii: np.ndarray, margin: np.ndarray, x: np.ndarray, y: np.ndarray,
                    x_offset: int, y_offset: int) -> np.ndarray:
    """``d2 < radii`` for a block d2 (n, m) of squared distances between ``x[x_offset:x_offset + n]`` and
    ``y[y_offset:y_offset + m]``, with ``radii`` broadcastable to (n, m) (exact squared radii): where the
    blocked value is within ``margin`` of the radius the exact distance decides. Returns bool (n, m)."""
    inside = d2 < radii
    unsure_i, unsure_j = np.nonzero(np.abs(d2 - radii) <= margin)
    if unsure_i.size:
        exact = exact_sq_dist_pairs(x, y, unsure_i + x_offset, unsure_j + y_offset)
        inside[unsure_i, unsure_j] = exact < np.broadcast_to(radii, d2.shape)[unsure_i, unsure_j]
    return inside


def blocks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` covering range(n)."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def kth_smallest_sq_dist(
    queries: np.ndarray, reference: np.ndarray, k: int, *, row_block: int = ROW_BLOCK, col_block: int = COL_BLOCK
) -> np.ndarray:
    """For each query row, the k-th smallest squared distance to the reference rows (k >= 1), exact, float64 (n_q,).

    When ``reference`` is ``queries`` the query itself counts (distance 0): pass k + 1 for "k-th neighbour".
    """
    distances, _ = knn_sq(queries, reference, k, row_block=row_block, col_block=col_block)
    return distances[:, -1]


def reference_blocks(reference, max_rows: int = MAX_REFERENCE_BLOCK) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, block)`` over the reference: shards of a ``ShardedFeatures`` one at a time (memory set by the
    shard, not the reference), slices of at most ``max_rows`` of an array (views: no copy)."""
    if hasattr(reference, "blocks"):
        yield from reference.blocks()
        return
    for part in blocks(reference.shape[0], max_rows):
        yield part.start, reference[part]


def torch_candidates(queries: np.ndarray, block: np.ndarray, wanted: int, *, row_block: int = ROW_BLOCK,
                     col_block: int = COL_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """The ``wanted`` nearest rows of ``block`` for each query by blocked (GEMM) squared distances of the
    centred sets: (approximate squared distances (n_q, wanted), indices into ``block``), unordered.

    Per column block ``torch.topk`` keeps the ``wanted`` smallest (parallel over rows) and merges them with the
    running best, so memory is one (row_block, col_block) block plus O(n_q · wanted) and a centred copy of
    ``block``.
    """
    n_q = queries.shape[0]
    centred_q, centred_r = centred_pair(queries, block)
    q_sq, r_sq = row_sq_norms(centred_q), row_sq_norms(centred_r)
    out_d = np.empty((n_q, wanted), dtype=q_sq.dtype)
    out_i = np.empty((n_q, wanted), dtype=np.int64)
    for rows in blocks(n_q, row_block):
        best_d = torch.empty((rows.stop - rows.start, 0), dtype=torch.from_numpy(q_sq[:1]).dtype)
        best_i = torch.empty((rows.stop - rows.start, 0), dtype=torch.int64)
        for cols in blocks(block.shape[0], col_block):
            part = torch.from_numpy(sq_dist_block(centred_q[rows], centred_r[cols], q_sq[rows], r_sq[cols]))
            keep = min(wanted, part.shape[1])
            values, index = torch.topk(part, keep, dim=1, largest=False, sorted=False)
            best_d = torch.cat([best_d, values], dim=1)
            best_i = torch.cat([best_i, index + cols.start], dim=1)
            if best_d.shape[1] > wanted:
                best_d, pick = torch.topk(best_d, wanted, dim=1, largest=False, sorted=False)
                best_i = torch.gather(best_i, 1, pick)
        out_d[rows], out_i[rows] = best_d.numpy(), best_i.numpy()
    return out_d, out_i


def merge_candidates(d_a: np.ndarray, i_a: np.ndarray, d_b: np.ndarray, i_b: np.ndarray,
                     wanted: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``wanted`` smallest of two candidate lists per row ((n, a) and (n, b) distances and indices)."""
    d, i = np.concatenate([d_a, d_b.astype(d_a.dtype, copy=False)], axis=1), np.concatenate([i_a, i_b], axis=1)
    if d.shape[1] <= wanted:
        return d, i
    pick = np.argpartition(d, wanted - 1, axis=1)[:, :wanted]
    return np.take_along_axis(d, pick, axis=1), np.take_along_axis(i, pick, axis=1)


def knn_sq(
    queries: np.ndarray, reference, k: int, *, row_block: int = ROW_BLOCK, col_block: int = COL_BLOCK,
    candidates=None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest reference rows of each query: (squared distances (n_q, k) ascending, exact float64; indices
    (n_q, k)).

    ``reference`` is an array or a ``ShardedFeatures``, read block by block (``reference_blocks``); per block
    ``candidates(queries, block, wanted)`` (default ``torch_candidates``; FAISS in ``metrics._faiss``) selects
    the k + 2 nearest by blocked distances, the survivors of all blocks are merged, their distances recomputed
    exactly (float64, rows gathered from the reference) and the k nearest kept (ties: the lower index first).
    """
    n_q, n_r = queries.shape[0], reference.shape[0]
    k = min(k, n_r)
    wanted = min(k + EXTRA_CANDIDATES, n_r)
    if candidates is None:
        def candidates(q, block, w):
            return torch_candidates(q, block, w, row_block=row_block, col_block=col_block)
    best_d = np.empty((n_q, 0), dtype=np.float64)
    best_i = np.empty((n_q, 0), dtype=np.int64)
    for offset, block in reference_blocks(reference):
        block = np.asarray(block, dtype=queries.dtype)
        d, i = candidates(queries, block, min(wanted, block.shape[0]))
        best_d, best_i = merge_candidates(best_d, best_i, d, i + offset, wanted)
    exact = np.empty(best_i.shape, dtype=np.float64)
    for rows in blocks(n_q, max(1, EXACT_CHUNK * 8 // max(wanted, 1))):
        rows_index = np.broadcast_to(np.arange(rows.start, rows.stop)[:, None], best_i[rows].shape)
        exact[rows] = exact_sq_dist_pairs(queries, reference, rows_index, best_i[rows])
    order = np.lexsort((best_i, exact), axis=1)[:, :k]  # by distance, then by index
    return np.take_along_axis(exact, order, axis=1), np.take_along_axis(best_i, order, axis=1)
