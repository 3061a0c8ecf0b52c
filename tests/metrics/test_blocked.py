"""Metrics whose real side is read a shard at a time (a named reference too large for memory) equal the same
metrics on the array in memory; a selection of shard rows (one class) reads like an array of its own."""

from __future__ import annotations

import numpy as np
import pytest

from evolens.errors import InputError
from evolens.metrics import quality as Q
from evolens.store.shards import ShardedFeatures, ShardWriter


def sharded(folder, array, shard_rows):
    with ShardWriter(folder, shard_rows=shard_rows) as writer:
        for start in range(0, len(array), 77):  # appended in pieces that do not line up with the shards
            writer.append(array[start:start + 77])
    return ShardedFeatures(folder)


@pytest.fixture
def sets(tmp_path):
    rng = np.random.default_rng(3)
    real = (rng.normal(size=(700, 24)) + 40.0).astype(np.float32)  # a common offset, as encoders give
    fake = (rng.normal(size=(90, 24)) * 1.1 + 40.2).astype(np.float32)
    fake[:10] = real[100:110]  # copies: ties with the real radii, decided on exact distances
    return real, fake, sharded(tmp_path / "real", real, shard_rows=256)


def test_a_row_selection_reads_like_the_selected_array(sets):
    real, _, shards = sets
    mask = (np.arange(700) % 3 == 0) | (np.arange(700) > 600)
    selection = shards.select(mask)
    assert selection.shape == (int(mask.sum()), 24) and selection.dtype == np.float32
    np.testing.assert_array_equal(selection.load(), real[mask])
    joined = np.concatenate([block for _, block in selection.blocks()])
    starts = [start for start, _ in selection.blocks()]
    np.testing.assert_array_equal(joined, real[mask])
    assert starts[0] == 0 and len(starts) == 3  # one block per shard holding selected rows
    np.testing.assert_array_equal(selection[[5, 0, 7]], real[mask][[5, 0, 7]])
    assert selection.all_finite()
    with pytest.raises(InputError, match="mask"):
        shards.select(np.ones(5, dtype=bool))
    with pytest.raises(InputError, match="rows"):
        selection.take([len(selection)])


def test_blocked_real_side_equals_the_array(sets):
    real, fake, shards = sets
    for k in (3, 5):
        radii = Q.prdc_radii(shards, k)
        np.testing.assert_allclose(radii, Q.prdc_radii(real, k), rtol=1e-12)
        expected = Q.prdc(real, fake, k)
        assert Q.prdc(shards, fake, k) == expected
        assert Q.prdc(shards, fake, k, real_radii=radii) == expected
    assert expected.precision >= 10 / 90  # the copies sit inside real balls
    both = Q.knn_radii(shards, (3, 5))
    np.testing.assert_allclose(both[3], Q.prdc_radii(real, 3), rtol=1e-12)
    # KID over subsets: the same draws, the real rows gathered from the shards (float32 kernels, float64 sums);
    # 5 subsets of 60 from 700: the array path also takes the subset path, so the arithmetic is the same
    assert Q.kid(shards, fake, subsets=5, subset_size=60) == Q.kid(real, fake, subsets=5, subset_size=60)
    # with 100 subsets the array path computes the whole kernel once (cheaper): float32 rounding apart
    assert Q.kid(shards, fake)[0] == pytest.approx(Q.kid(real, fake)[0], rel=1e-4)
    term = Q.cmmd_reference_term(shards)
    assert term == pytest.approx(Q.cmmd_reference_term(real), rel=1e-10)
    assert Q.cmmd(shards, fake) == pytest.approx(Q.cmmd(real, fake), rel=1e-9)
    assert Q.cmmd(shards, fake, real_term=term) == pytest.approx(Q.cmmd(real, fake), rel=1e-9)
    mask = np.arange(700) % 2 == 0
    np.testing.assert_allclose(Q.prdc_radii(shards.select(mask), 3), Q.prdc_radii(real[mask], 3), rtol=1e-12)
    assert Q.prdc(shards.select(mask), fake, 3) == Q.prdc(real[mask], fake, 3)
    assert Q.cmmd(shards.select(mask), fake) == pytest.approx(Q.cmmd(real[mask], fake), rel=1e-9)


def test_blocked_real_side_is_checked_like_an_array(tmp_path, sets):
    _, fake, shards = sets
    with pytest.raises(InputError, match="fake: expected 24 feature dimensions"):
        Q.prdc(shards, fake[:, :5], 3)
    bad = np.ones((50, 24), dtype=np.float32)
    bad[7, 3] = np.nan
    with pytest.raises(InputError, match="real: expected finite"):
        Q.kid(sharded(tmp_path / "bad", bad, 20), fake)
    with pytest.raises(InputError, match="k: expected k < "):
        Q.prdc_radii(sharded(tmp_path / "few", np.ones((3, 24), dtype=np.float32), 2), 3)


@pytest.mark.parametrize("d", [24, 80])  # 80: through dgm-eval's PCA to 64 dimensions
def test_data_copying_ct_over_shards_equals_memory(tmp_path, monkeypatch, d):
    from evolens.metrics import proximity as P

    rng = np.random.default_rng(d)
    train = rng.normal(size=(600, d)).astype(np.float32)
    held = rng.normal(size=(300, d)).astype(np.float32)
    fresh = rng.normal(size=(200, d)).astype(np.float32)
    copies = train[:200] + rng.normal(scale=1e-3, size=(200, d)).astype(np.float32)
    shards = sharded(tmp_path / "train", train, shard_rows=128)
    held_shards = sharded(tmp_path / "held", held, shard_rows=128)
    for gen in (fresh, copies):
        expected = P.data_copying_ct(gen, train, held)
        assert P.data_copying_ct(gen, shards, held) == pytest.approx(expected, abs=1e-9)
        assert P.data_copying_ct(gen, shards, held_shards) == pytest.approx(expected, abs=1e-9)
        # the held-out side searched once, with the cells, for every later snapshot
        partition = P.ct_partition(shards, heldout=held_shards)
        assert partition.heldout_nearest.shape == (300,)
        assert P.data_copying_ct(gen, shards, held_shards, partition=partition) == pytest.approx(expected, abs=1e-9)
        with pytest.raises(InputError, match="partition"):
            P.data_copying_ct(gen, train[:500], held, partition=partition)
    assert P.data_copying_ct(copies, shards, held) < -10 < P.data_copying_ct(fresh, shards, held) < 3
    # beyond CT_FIT_ROWS the cells are fitted on a seeded sample: the verdict stands
    monkeypatch.setattr(P, "CT_FIT_ROWS", 200)
    assert P.data_copying_ct(copies, shards, held) < -10 < P.data_copying_ct(fresh, shards, held) < 3
    other = held + 1.0  # a held-out set of the same size, other values: its own search, not the cached one
    assert P.data_copying_ct(fresh, shards, other, partition=P.ct_partition(shards, heldout=held)) == \
        pytest.approx(P.data_copying_ct(fresh, shards, other, partition=P.ct_partition(shards)), abs=1e-12)
