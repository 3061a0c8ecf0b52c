import numpy as np
import pytest

from evolens import InputError
from evolens.metrics import (
    copy_rate,
    nearest_neighbors,
    nn_divergence,
    sample_split_distance,
    standardize_images,
    train_heldout_gap,
)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_nearest_neighbors_equal_brute_force(rng, dtype):
    queries = rng.standard_normal((300, 24)).astype(dtype)
    reference = rng.standard_normal((2500, 24)).astype(dtype)
    distances, index = nearest_neighbors(queries, reference, k=5)
    full = np.linalg.norm(queries[:, None].astype(np.float64) - reference[None].astype(np.float64), axis=-1)
    expected_index = np.argsort(full, axis=1)[:, :5]
    np.testing.assert_array_equal(index, expected_index)
    np.testing.assert_allclose(distances, np.take_along_axis(full, expected_index, 1),
                               rtol=1e-4 if dtype == np.float32 else 1e-10)


def test_nearest_neighbors_match_scikit_learn(rng):
    from sklearn.neighbors import NearestNeighbors

    queries, reference = rng.standard_normal((100, 8)), rng.standard_normal((700, 8))
    distances, index = nearest_neighbors(queries, reference, k=3)
    sk_distances, sk_index = NearestNeighbors(n_neighbors=3, algorithm="brute").fit(reference).kneighbors(queries)
    np.testing.assert_array_equal(index, sk_index)
    np.testing.assert_allclose(distances, sk_distances, rtol=1e-9)


def test_copy_rate(rng):
    train = rng.standard_normal((500, 16))
    assert copy_rate(rng.standard_normal((200, 16)), train) == 0.0
    copies = train[:100] + 1e-3 * rng.standard_normal((100, 16))
    assert copy_rate(np.vstack([copies, rng.standard_normal((100, 16))]), train) == pytest.approx(0.5)


def test_nn_divergence_separates_fresh_samples_from_copies(rng):
    train, heldout = rng.standard_normal((3000, 16)), rng.standard_normal((1000, 16))
    fresh = rng.standard_normal((1000, 16))
    copies = train[:1000] + 1e-3 * rng.standard_normal((1000, 16))
    assert nn_divergence(fresh, train, heldout) < 0.1
    assert nn_divergence(copies, train, heldout) > 5.0
    # Definition check on a hand-made case: all generated distances in one bin, test spread over two.
    gen = np.array([[0.0], [0.0]])
    tr = np.array([[0.1], [5.0]])
    ho = np.array([[0.1], [1.0]])  # NN distances 0.0 and 0.9; generated: 0.1, 0.1
    p = np.array([1.0, 1e-8])
    q = np.array([0.5, 0.5])
    assert nn_divergence(gen, tr, ho, bins=2) == pytest.approx(np.sum(p * np.log(p / q)), rel=1e-6)


def test_train_heldout_gap(rng):
    train, heldout = rng.standard_normal((800, 16)), rng.standard_normal((800, 16))
    fair = train_heldout_gap(rng.standard_normal((400, 16)), train, heldout)
    assert fair.ratio == pytest.approx(1.0, abs=0.05) and fair.closer_to_train == pytest.approx(0.5, abs=0.08)
    memorised = train_heldout_gap(train[:400] + 0.01, train, heldout)
    assert memorised.ratio < 0.1 and memorised.closer_to_train == 1.0
    with pytest.raises(InputError, match="about as many samples as train"):
        train_heldout_gap(train[:10], train, heldout[:100])


def test_sample_split_distance(rng):
    images = rng.random((64, 1, 8, 8))
    assert sample_split_distance(images, images) == 0.0
    assert sample_split_distance(images, 3.0 * images + 2.0) == pytest.approx(0.0, abs=1e-12)  # standardised
    unrelated = sample_split_distance(images, rng.random((64, 1, 8, 8)))
    assert unrelated == pytest.approx(1.0, abs=0.1)
    assert sample_split_distance(images, 1.0 - images) == pytest.approx(2.0)
    median, each = sample_split_distance(images[:, 0].reshape(64, -1), images[:, 0].reshape(64, -1),
                                         space="features", return_all=True)
    assert median == 0.0 and each.shape == (64,)
    with pytest.raises(InputError, match="pair row by row"):
        sample_split_distance(images, images[:10])


def test_standardize_images_per_channel(rng):
    images = rng.random((3, 2, 4, 4)) * 10 + 5
    images[0, 1] = 7.0  # a constant channel
    flat = standardize_images(images).reshape(3, 2, 16)
    np.testing.assert_allclose(flat[1:].mean(axis=2), 0.0, atol=1e-12)
    np.testing.assert_allclose(flat[1:].std(axis=2), 1.0, rtol=1e-12)
    assert (flat[0, 1] == 0).all()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda r: nearest_neighbors(r, r[:, :3]), r"reference: expected 6 feature dimensions like queries"),
        (lambda r: nearest_neighbors(r, r, k=0), r"k: expected 1 <= k <= 20"),
        (lambda r: copy_rate(r, r, ratio=1.5), r"ratio: expected a number in \(0, 1\)"),
        (lambda r: nn_divergence(r, r, r, bins=1), "bins: expected an integer >= 2"),
        (lambda r: nearest_neighbors(np.full_like(r, np.nan), r), "finite"),
    ],
    ids=["dims", "k", "ratio", "bins", "nan"],
)
def test_errors(call, match):
    with pytest.raises(InputError, match=match):
        call(np.random.default_rng(0).standard_normal((20, 6)))
