"""Every registered encoder meets the same contract: features of shape (n, dim) float32 that do not depend on
the batch size, the same features twice for the same images, and — for encoders with weights — a
``WeightsNotFoundError`` naming the missing file. Encoders with weights that no package ships are built from
weights of the real architecture made (randomly initialised and saved) here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evolens.encoders import WeightsNotFoundError, get_encoder, list_encoders

from .test_inception import random_weights  # noqa: F401  (module fixture: FID Inception-v3 weights file)


@pytest.fixture(scope="module")
def tiny_hf_dirs(tmp_path_factory):
    pytest.importorskip("transformers")
    from .test_hf import make_tiny_clip, make_tiny_dinov2

    root = tmp_path_factory.mktemp("hf")
    return {"clip": make_tiny_clip(root / "clip"), "dinov2": make_tiny_dinov2(root / "dinov2")}


# name -> (kwargs that load real-architecture weights, kwargs that point at missing weights or None, channels, size)
def _factories(random_weights, tiny_hf_dirs, tmp_path):
    missing = tmp_path / "nowhere"
    return {
        "efficientnet-lite0": ({}, {"path": missing / "efficientnet-lite0.pth"}, 3, 32),
        "inception-fid": ({"path": random_weights}, {"path": missing / random_weights.name}, 3, 32),
        "clip": ({"path": tiny_hf_dirs["clip"]}, {"path": missing / "clip"}, 3, 32),
        "dinov2": ({"path": tiny_hf_dirs["dinov2"], "image_size": 28}, {"path": missing / "dinov2"}, 3, 28),
        "pixels": ({}, None, 1, 8),
        "identity": ({}, None, 1, 8),
        "digits-cnn": ({}, {"path": missing}, 1, 28),
    }


BUILTINS = sorted(info.name for info in list_encoders())


@pytest.fixture
def factories(random_weights, tiny_hf_dirs, tmp_path):  # noqa: F811
    return _factories(random_weights, tiny_hf_dirs, tmp_path)


def test_every_registered_encoder_has_a_conformance_case(factories):
    assert sorted(factories) == BUILTINS


@pytest.mark.parametrize("name", BUILTINS)
def test_encoder_conformance(name, factories, monkeypatch):
    kwargs, missing, channels, size = factories[name]
    encoder = get_encoder(name, device="cpu", **kwargs)
    images = np.random.default_rng(0).random((10, channels, size, size)).astype(np.float32)
    whole = encoder.encode(images, batch_size=10)
    assert whole.shape == (10, encoder.dim) and whole.dtype == np.float32 and np.isfinite(whole).all()
    # batch-size independence (tolerance: float32 convolutions summed in another order)
    np.testing.assert_allclose(encoder.encode(images, batch_size=3), whole, rtol=1e-4, atol=1e-5)
    # determinism, also for a fresh instance of the same encoder
    np.testing.assert_array_equal(encoder.encode(images, batch_size=10), whole)
    again = get_encoder(name, device="cpu", **kwargs)
    assert again.id == encoder.id
    np.testing.assert_allclose(again.encode(images, batch_size=10), whole, rtol=1e-6, atol=1e-6)
    if missing is None:
        assert type(encoder).weights_status()[0]  # no weights needed
        return
    monkeypatch.delenv("EVOLENS_WEIGHTS", raising=False)
    with pytest.raises(WeightsNotFoundError, match="nowhere"):
        get_encoder(name, device="cpu", **missing)
