import numpy as np
import pytest
import torch

from evolens import InputError
from evolens.encoders import ENV_WEIGHTS, InceptionFIDEncoder, WeightsNotFoundError, get_encoder
from evolens.encoders.inception import FIDInceptionV3, resize_tf1_bilinear

from .reference_tools import torch_fidelity_module

pytestmark = pytest.mark.slow  # experiments, the demo and the Inception network: make test, not test-fast


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """FID Inception-v3 weights of the real layout, randomly initialised (batch-norm statistics included)."""
    torch.manual_seed(0)
    model = FIDInceptionV3()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
    path = tmp_path_factory.mktemp("weights") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(model.state_dict(), path)
    return path


def test_features_match_torch_fidelity(random_weights):
    reference_module = torch_fidelity_module("feature_extractor_inceptionv3")
    reference = reference_module.FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(random_weights)
    )
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    (expected,) = reference(images)
    encoder = InceptionFIDEncoder(path=random_weights, device="cpu")
    ours = encoder.encode(images.numpy().astype(np.float32) / 255.0)
    np.testing.assert_allclose(ours, expected.numpy(), rtol=1e-4, atol=1e-6)
    # Grayscale input is replicated to RGB, as torch-fidelity's users must do themselves.
    gray = images[:, :1]
    (expected_gray,) = reference(gray.expand(-1, 3, -1, -1).contiguous())
    np.testing.assert_allclose(encoder.encode(gray), expected_gray.numpy(), rtol=1e-4, atol=1e-6)


def test_tf1_resize_matches_torch_fidelity():
    interpolate = torch_fidelity_module("interpolate_compat_tensorflow").interpolate_bilinear_2d_like_tensorflow1x
    pixels = torch.rand(2, 3, 28, 28, generator=torch.Generator().manual_seed(0)) * 255
    for size in [(299, 299), (17, 40)]:
        expected = interpolate(pixels, size=size, align_corners=False)
        torch.testing.assert_close(resize_tf1_bilinear(pixels, size), expected, rtol=0, atol=1e-3)  # of 255


def test_batch_size_does_not_change_features(random_weights):
    encoder = InceptionFIDEncoder(path=random_weights, device="cpu")
    images = np.random.default_rng(0).random((4, 3, 20, 20)).astype(np.float32)
    np.testing.assert_allclose(encoder.encode(images, batch_size=1), encoder.encode(images, batch_size=4),
                               rtol=1e-5, atol=1e-6)


def _ramp(n: int = 16) -> np.ndarray:
    """(1, 3, n, n) images whose value rises linearly along the width, inside [0, 1] (uint8-exact steps)."""
    values = np.linspace(40, 190, n) / 255.0  # steps of 10: integers, exactly linear
    return np.broadcast_to(values, (1, 3, n, n)).astype(np.float32).copy()


def _ramp_at_output_pixels(n: int, out: int) -> np.ndarray:
    """Where each output pixel centre falls on the input's ramp (align_corners=False: x_in = (j + ½)·n/out − ½),
    in the same units as the ramp (0–255); both bicubic (Keys, a = −0.5) and bilinear reproduce a linear
    function exactly away from the borders."""
    x_in = (np.arange(out) + 0.5) * n / out - 0.5
    values = np.linspace(40, 190, n)
    return np.interp(x_in, np.arange(n), values)


@pytest.mark.parametrize("policy", ["pil-bicubic", "torch-bilinear"])
def test_other_resize_policies_resize_as_their_peers(random_weights, policy):
    """Each policy's preprocessing, checked on a closed form: a linear ramp resized to 299 stays the linear
    ramp (in the interior, where neither kernel sees the border); then the values are scaled as the peer scales
    them — clean-fid's (x − 128)/128 of uint8-valued pixels for pil-bicubic, torch's 2x − 1 for torch-bilinear."""
    encoder = InceptionFIDEncoder(path=random_weights, resize=policy, device="cpu")
    assert policy in encoder.id
    ramp = _ramp()
    batch = encoder.preprocess(torch.from_numpy(ramp))
    assert tuple(batch.shape) == (1, 3, 299, 299)
    expected = _ramp_at_output_pixels(16, 299)
    interior = slice(40, 259)
    if policy == "pil-bicubic":
        got = batch[0, 0, 150].numpy() * 128.0 + 128.0
    else:
        got = (batch[0, 0, 150].numpy() + 1.0) / 2.0 * 255.0
    np.testing.assert_allclose(got[interior], expected[interior], atol=1e-2)
    # the two policies really differ where the kernels differ (a step edge): bicubic overshoots, bilinear not
    step = np.zeros((1, 3, 16, 16), np.float32)
    step[..., 8:] = 200 / 255
    edge_bicubic = InceptionFIDEncoder(path=random_weights, resize="pil-bicubic", device="cpu").preprocess(
        torch.from_numpy(step))[0, 0, 150].numpy() * 128.0 + 128.0
    edge_bilinear = (InceptionFIDEncoder(path=random_weights, resize="torch-bilinear", device="cpu").preprocess(
        torch.from_numpy(step))[0, 0, 150].numpy() + 1.0) / 2.0 * 255.0
    assert edge_bilinear.max() <= 200.0 + 1e-3 and edge_bicubic.max() > 200.5  # clipped at 255, not at 200
    features = encoder.encode(np.random.default_rng(0).random((2, 3, 16, 16)).astype(np.float32))
    assert features.shape == (2, 2048) and np.isfinite(features).all()


def test_weights_from_env_dir(random_weights, monkeypatch):
    monkeypatch.setenv(ENV_WEIGHTS, str(random_weights.parent))
    assert get_encoder("inception-fid", device="cpu").weights_sha256 is not None
    assert InceptionFIDEncoder.weights_status()[0]


def test_missing_and_wrong_weights(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_WEIGHTS, raising=False)
    with pytest.raises(WeightsNotFoundError, match="pt_inception-2015-12-05-6726825d.pth"):
        InceptionFIDEncoder(device="cpu")
    wrong = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(InputError, match="does not hold FID Inception-v3 weights"):
        InceptionFIDEncoder(path=wrong, device="cpu")
    with pytest.raises(InputError, match="resize: expected one of"):
        InceptionFIDEncoder(path=wrong, resize="lanczos", device="cpu")
