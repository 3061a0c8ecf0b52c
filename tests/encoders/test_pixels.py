import numpy as np
import pytest
from sklearn.decomposition import PCA

from evolens import InputError
from evolens.encoders import PixelsEncoder


def test_flattened_pixels_are_exact(rng):
    images = rng.random((6, 3, 5, 4)).astype(np.float32)
    np.testing.assert_array_equal(PixelsEncoder(device="cpu").encode(images), images.reshape(6, -1))


def test_uint8_images_are_scaled(rng):
    images = rng.integers(0, 256, (3, 1, 4, 4)).astype(np.uint8)
    np.testing.assert_allclose(PixelsEncoder(device="cpu").encode(images), images.reshape(3, -1) / 255.0, rtol=1e-6)


def test_pca_matches_scikit_learn(rng):
    reference = rng.random((200, 1, 8, 8)).astype(np.float32)
    queries = rng.random((20, 1, 8, 8)).astype(np.float32)
    encoder = PixelsEncoder(pca=5, device="cpu")
    assert encoder.needs_fit
    with pytest.raises(InputError, match="must be fit"):
        encoder.encode(queries)
    encoder.fit(reference)
    expected = PCA(n_components=5, random_state=0).fit(reference.reshape(200, -1)).transform(queries.reshape(20, -1))
    np.testing.assert_allclose(encoder.encode(queries), expected, rtol=1e-4, atol=1e-5)
    assert "pca5" in encoder.id
    with pytest.raises(InputError, match="pca: expected 1 <= pca"):
        PixelsEncoder(pca=500, device="cpu").fit(reference)


def test_resize_and_channels(rng):
    encoder = PixelsEncoder(size=4, channels=1, device="cpu")
    images = rng.random((2, 3, 8, 8)).astype(np.float32)
    assert encoder.encode(images).shape == (2, 16) and encoder.id == "pixels@4x4-c1"
