"""Nearest neighbours past one machine's memory: FAISS flat and the torch path against brute force, references
kept in shards on disk, approximate indexes and their recall, and memory flat in the reference size."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from evolens.errors import InputError
from evolens.metrics import _faiss
from evolens.metrics._distances import COL_BLOCK
from evolens.metrics.proximity import (FAISS_AUTO_MIN_PAIRS, approximate_nearest_neighbors, choose_backend,
                                       copy_rate, nearest_neighbors)
from evolens.store.shards import ShardedFeatures, ShardWriter

faiss = pytest.importorskip("faiss")


def brute_force(queries: np.ndarray, reference: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest by a full float64 distance matrix (scipy), ties broken by the lower index."""
    d = cdist(queries.astype(np.float64), reference.astype(np.float64))
    order = np.lexsort((np.broadcast_to(np.arange(d.shape[1]), d.shape), d), axis=1)[:, :k]
    return np.take_along_axis(d, order, axis=1), order


def clustered(n: int, d: int, seed: int, offset: float = 0.0, clusters: int = 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (clusters, d))
    return (centres[rng.integers(0, clusters, n)] + rng.normal(0, 1, (n, d)) + offset).astype(np.float32)


def shards_of(folder, array: np.ndarray, shard_rows: int, append_rows: int = 97) -> ShardedFeatures:
    with ShardWriter(folder, shard_rows=shard_rows) as writer:
        for start in range(0, len(array), append_rows):
            writer.append(array[start:start + append_rows])
    return ShardedFeatures(folder)


@pytest.mark.parametrize("offset", [0.0, 1e4])  # features far from the origin: the centring keeps them exact
def test_faiss_flat_torch_and_shards_equal_brute_force(tmp_path, offset):
    queries, reference = clustered(300, 48, 0, offset), clustered(2500, 48, 1, offset)
    reference[100] = queries[3]  # an exact copy (distance 0) and a duplicated reference row (a tie)
    reference[2000] = reference[7]
    expected_d, expected_i = brute_force(queries, reference, 5)
    sharded = shards_of(tmp_path / "shards", reference, shard_rows=600)
    for backend in ("torch", "faiss"):
        for ref in (reference, sharded):
            d, i = nearest_neighbors(queries, ref, 5, backend=backend)
            np.testing.assert_array_equal(i, expected_i)
            np.testing.assert_allclose(d, expected_d, rtol=1e-9, atol=1e-9)
    assert nearest_neighbors(queries, reference, 1, backend="faiss")[0][3, 0] == 0.0
    assert (expected_i[:, :2] == [7, 2000]).all(axis=1).sum() == (expected_i[:, 0] == 7).sum()  # ties: lower first


def test_auto_picks_faiss_only_for_large_float32_searches():
    small = np.zeros((10, 4), np.float32)
    large_q, large_r = np.zeros((2000, 4), np.float32), np.zeros((FAISS_AUTO_MIN_PAIRS // 2000, 4), np.float32)
    assert choose_backend("auto", small, small) == "torch"
    assert choose_backend("auto", large_q, large_r) == ("faiss" if _faiss.available() else "torch")
    assert choose_backend("auto", large_q.astype(np.float64), large_r.astype(np.float64)) == "torch"
    with pytest.raises(InputError, match="backend: expected one of"):
        nearest_neighbors(small, small, 1, backend="annoy")


def test_copy_rate_is_the_same_through_faiss(tmp_path):
    train = clustered(3000, 32, 2)
    generated = np.concatenate([train[:50] + 1e-3, clustered(450, 32, 3)])  # 50 near-copies
    assert copy_rate(generated, train) == pytest.approx(copy_rate(generated.astype(np.float64), train))
    d_torch, _ = nearest_neighbors(generated, train, 2, backend="torch")
    d_faiss, _ = nearest_neighbors(generated, train, 2, backend="faiss")
    np.testing.assert_array_equal(d_torch, d_faiss)


def test_approximate_indexes_report_their_recall_against_exact(tmp_path):
    queries, reference = clustered(400, 32, 4), clustered(20_000, 32, 5, clusters=200)
    _, exact_i = brute_force(queries, reference, 5)
    for method, params in (("hnsw", {}), ("ivf", {}), ("ivf", {"nlist": 64, "nprobe": 64})):
        d, i, recall = approximate_nearest_neighbors(queries, reference, 5, method=method, recall_sample=400,
                                                     **params)
        found = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(i.tolist(), exact_i.tolist())])
        assert recall == pytest.approx(found)  # the reported recall is the true one (every query sampled)
        exact_d = np.sqrt(((queries[:, None, :].astype(np.float64) - reference[i].astype(np.float64)) ** 2).sum(-1))
        np.testing.assert_allclose(d, exact_d, rtol=1e-9)  # the distances of what was found are exact
        if params.get("nprobe") == params.get("nlist", -1):  # every list probed: IVF-flat is exact search
            assert recall == 1.0
        else:
            assert recall > 0.5, (method, recall)
    sharded = shards_of(tmp_path / "s", reference, shard_rows=5000, append_rows=4000)
    _, i_sharded, recall = approximate_nearest_neighbors(queries, sharded, 5, method="hnsw", recall_sample=100)
    assert 0 < recall <= 1 and i_sharded.shape == (400, 5)
    with pytest.raises(InputError, match="method"):
        approximate_nearest_neighbors(queries, reference, 5, method="lsh")


def test_memory_is_flat_in_the_reference_size(tmp_path):
    """Peak traced memory of a k-NN search over a sharded reference is set by the shard, not the reference: a 4x
    larger reference (same shard size) raises the peak by well under what one more copy of it would take."""
    queries = clustered(500, 64, 6)
    peaks = {}
    for n in (20_000, 80_000):
        reference = shards_of(tmp_path / f"r{n}", clustered(n, 64, 7), shard_rows=10_000, append_rows=10_000)
        for backend in ("torch", "faiss"):
            tracemalloc.start()
            nearest_neighbors(queries, reference, 3, backend=backend)
            peaks[n, backend] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    shard_bytes = 10_000 * 64 * 4
    for backend in ("torch", "faiss"):
        growth = peaks[80_000, backend] - peaks[20_000, backend]
        assert growth < 0.25 * shard_bytes, (backend, peaks)  # 60,000 more rows would be 6 shards' worth
        # one shard, its centred copy, one (queries x COL_BLOCK) distance block: nothing of the reference's size
        assert peaks[80_000, backend] < 3 * shard_bytes + 2 * 500 * COL_BLOCK * 4, (backend, peaks)


def test_shards_round_trip_and_gather(tmp_path):
    array = clustered(1000, 8, 8)
    sharded = shards_of(tmp_path / "a", array, shard_rows=300, append_rows=77)
    assert sharded.shape == (1000, 8) and sharded.rows == [300, 300, 300, 100]
    np.testing.assert_array_equal(sharded.load(), array)
    np.testing.assert_allclose(sharded.mean, array.mean(axis=0, dtype=np.float64))
    rows = np.array([[999, 0], [299, 300]])
    np.testing.assert_array_equal(sharded[rows], array[rows])
    np.testing.assert_array_equal(sharded[5:8], array[5:8])
    mask = np.arange(1000) % 7 == 3  # a boolean mask selects rows (it is not read as indices 0 and 1)
    np.testing.assert_array_equal(sharded[mask], array[mask])
    with pytest.raises(InputError, match="boolean mask of shape"):
        sharded[mask[:10]]
    with pytest.raises(InputError, match="integer indices"):
        sharded[np.array([0.5])]
    with pytest.raises(InputError, match="rows: expected indices"):
        sharded.take([1000])
    with pytest.raises(InputError, match="already holds"):
        ShardWriter(tmp_path / "a")
    writer = ShardWriter(tmp_path / "b", shard_rows=100)
    with pytest.raises(InputError, match=r"block: expected \(rows, 8\)"):
        writer.append(array[:10])
        writer.append(array[:10, :4])
    # a writer killed after two full shards: the folder reads as those two
    writer.append(array[:200])
    partial = ShardedFeatures(tmp_path / "b")
    assert partial.shape == (200, 8) and partial.mean is None
    np.testing.assert_array_equal(partial.load(), np.concatenate([array[:10], array[:190]]))
    with pytest.raises(InputError, match="reference: expected 5 feature dimensions like queries"):
        nearest_neighbors(np.zeros((3, 5), np.float32), sharded, 1)
