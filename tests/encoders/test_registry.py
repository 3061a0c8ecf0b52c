import numpy as np
import pytest
import torch

from evolens import InputError
from evolens.encoders import (
    CallableEncoder,
    PixelsEncoder,
    get_encoder,
    list_encoders,
    register_encoder,
    unregister_encoder,
)


def test_builtins_are_listed_with_weight_status():
    infos = {info.name: info for info in list_encoders()}
    assert {"efficientnet-lite0", "inception-fid", "clip", "dinov2", "pixels", "digits-cnn"} <= set(infos)
    assert infos["efficientnet-lite0"].weights_available and infos["pixels"].weights_available


def test_register_a_callable():
    register_encoder("mean-color", lambda x: x.mean(dim=(2, 3)), version="2")
    try:
        encoder = get_encoder("mean-color")
        assert isinstance(encoder, CallableEncoder) and encoder.id == "mean-color@v2"
        images = np.random.default_rng(0).random((5, 3, 4, 4)).astype(np.float32)
        np.testing.assert_allclose(encoder.encode(images), images.mean(axis=(2, 3)), rtol=1e-6)
        assert encoder.dim == 3
        with pytest.raises(InputError, match="already registered"):
            register_encoder("mean-color", lambda x: x)
    finally:
        unregister_encoder("mean-color")


def test_register_a_class_with_defaults():
    register_encoder("pixels-8", PixelsEncoder, size=8)
    try:
        encoder = get_encoder("pixels-8", device="cpu")
        assert encoder.encode(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 64)
    finally:
        unregister_encoder("pixels-8")


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: get_encoder("nope"), r"no encoder named 'nope'; registered: \["),
        (lambda: register_encoder("", lambda x: x), "non-empty string"),
        (lambda: register_encoder("x", 42), "Encoder subclass or a callable"),
    ],
    ids=["unknown", "empty-name", "not-callable"],
)
def test_registry_errors(call, match):
    with pytest.raises(InputError, match=match):
        call()


@pytest.mark.parametrize(
    "images, match",
    [
        (np.zeros((2, 2, 4, 4)), r"C = 1 or 3, received shape=\(2, 2, 4, 4\)"),
        (np.zeros((2, 4, 4)), "shape \\(n, C, H, W\\)"),
        (np.zeros((0, 3, 4, 4)), "at least one image"),
        (np.full((1, 3, 4, 4), np.nan), "finite"),
        (torch.full((1, 3, 4, 4), float("inf")), "finite"),
    ],
    ids=["channels", "rank", "empty", "nan", "inf-tensor"],
)
def test_bad_images(images, match):
    with pytest.raises(InputError, match=match):
        PixelsEncoder(device="cpu").encode(images)


def test_callable_must_return_2d():
    encoder = CallableEncoder(lambda x: x, dim=3, device="cpu")
    with pytest.raises(InputError, match=r"fn\(images\): expected features of shape \(n, dim\)"):
        encoder.encode(np.zeros((1, 3, 2, 2), np.float32))


def test_an_encoder_moves_to_a_device_with_its_modules():
    """``Encoder.to`` (what a Ray actor given a GPU calls): the device and every module it holds move; the
    features stay; a device the machine lacks is refused by name."""
    import torch

    from evolens.data import digits
    from evolens.errors import InputError

    encoder = get_encoder("digits-cnn")
    images = digits("train").images[:20]
    before = encoder.encode(images)
    assert encoder.to("cpu") is encoder and encoder.device == torch.device("cpu")
    modules = [v for v in vars(encoder).values() if isinstance(v, torch.nn.Module)]
    assert modules and all(p.device.type == "cpu" for m in modules for p in m.parameters())
    np.testing.assert_array_equal(encoder.encode(images), before)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="device: 'cuda' is not"):
            encoder.to("cuda")
