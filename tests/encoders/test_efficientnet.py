import numpy as np
import pytest
import torch

from evolens.encoders import EfficientNetLite0Encoder, WeightsNotFoundError, get_encoder

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def encoder():
    return get_encoder("efficientnet-lite0", device="cpu")


def test_shipped_weights_classify_a_cat_photo(encoder):
    from skimage.data import chelsea

    photo = chelsea().astype(np.float32).transpose(2, 0, 1)[None] / 255.0
    probabilities = torch.softmax(encoder.logits(torch.from_numpy(photo)), dim=1)[0]
    top = int(probabilities.argmax())
    assert top in CAT_CLASSES and float(probabilities[top]) > 0.5
    assert float(probabilities[sorted(CAT_CLASSES)].sum()) > 0.9


def test_features_are_batch_size_independent(encoder):
    images = np.random.default_rng(0).random((64, 3, 32, 32)).astype(np.float32)
    one = encoder.encode(images[:8], batch_size=1)
    many = encoder.encode(images, batch_size=64)[:8]
    assert one.shape == (8, 1280)
    np.testing.assert_allclose(one, many, rtol=1e-4, atol=1e-4)


def test_loads_other_weights_through_the_same_path(tmp_path):
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    path = tmp_path / "efficientnet-lite0-57934424.pth"
    torch.save(EfficientNet.from_name("efficientnet-lite0").state_dict(), path)
    random_encoder = EfficientNetLite0Encoder(path=tmp_path, device="cpu")
    shipped = get_encoder("efficientnet-lite0", device="cpu")
    assert random_encoder.id != shipped.id and random_encoder.id.startswith("efficientnet-lite0@")
    with pytest.raises(WeightsNotFoundError, match="efficientnet-lite0-57934424.pth"):
        EfficientNetLite0Encoder(path=tmp_path / "elsewhere", device="cpu")
