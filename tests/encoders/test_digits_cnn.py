import numpy as np
import pytest

from evolens.data import digits, mnist
from evolens._paths import cache_dir
from evolens.encoders import DigitsCNNEncoder, WeightsNotFoundError, get_encoder


@pytest.fixture(scope="module")
def encoder():
    return get_encoder("digits-cnn", device="cpu")  # trains once into the session cache (~20 s)


def test_classifies_held_out_digits(encoder):
    heldout = mnist("heldout")
    accuracy = float((encoder.classify(heldout.images) == heldout.labels).mean())
    assert accuracy >= 0.95, accuracy
    assert encoder.encode(heldout.images[:5]).shape == (5, 128)


def test_other_image_sizes_are_resized(encoder):
    small = digits("heldout")
    assert encoder.classify(small.images).shape == (len(small),)


def test_weights_are_cached_and_reused(encoder):
    cached = list((cache_dir() / "digits-cnn").glob("digits-cnn-*-s0.pt"))
    assert len(cached) == 1 and encoder.weights_path == cached[0]
    again = get_encoder("digits-cnn", device="cpu")
    assert again.id == encoder.id


def test_load_by_path(encoder, tmp_path):
    target = tmp_path / "digits-cnn.pt"
    target.write_bytes(encoder.weights_path.read_bytes())
    assert DigitsCNNEncoder(path=tmp_path, device="cpu").id == encoder.id
    with pytest.raises(WeightsNotFoundError, match="digits-cnn.pt"):
        DigitsCNNEncoder(path=tmp_path / "none", device="cpu")


def test_features_are_batch_size_independent(encoder):
    images = mnist("heldout").images[:64]
    np.testing.assert_allclose(encoder.encode(images, batch_size=1), encoder.encode(images, batch_size=64),
                               rtol=1e-5, atol=1e-5)
