"""The FID Inception-v3: the network and preprocessing behind the FID numbers papers report.

Architecture: Inception-v3 as ported from TensorFlow's 2015-12-05 graph (``pt_inception-2015-12-05-6726825d.pth``
of pytorch-fid, ``weights-inception-2015-12-05-6726825d.pth`` of torch-fidelity; same tensors, same keys):
torchvision's Inception3 with the TF-compatible blocks (average pools that exclude padding, a max pool in the
last block) and a 1,008-way classifier. Written here without torchvision, which cannot be installed beside
the CPU torch wheel. Features are the 2,048-d pool3 activations.

Preprocessing (the resize policy matters, see clean-fid, Parmar et al. 2022):

- ``"tf1-bilinear"`` (default): what the original TensorFlow FID code and torch-fidelity compute. Images are
  quantised to uint8 (as when saved to PNG), resized to 299x299 with TensorFlow 1.x bilinear interpolation
  (``align_corners=False``, no half-pixel centres), and scaled by (x - 128) / 128. FID values are
  comparable with the TTUR reference implementation and torch-fidelity.
- ``"pil-bicubic"``: clean-fid's "clean" mode: PIL bicubic resize of each uint8 channel in float mode.
- ``"torch-bilinear"``: pytorch-fid: ``F.interpolate(bilinear, align_corners=False)`` on [0, 1] images, 2x - 1.

Weights are not on PyPI: pass ``path=`` or put the file in ``$EVOLENS_WEIGHTS``.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InputError
from .base import Encoder, match_channels, to_unit_float
from .weights import WeightsNotFoundError, resolve_weights, weights_hash

FILENAMES = ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth")
HOW_TO_GET = (
    "Download pt_inception-2015-12-05-6726825d.pth from the pytorch-fid releases (fid_weights) on a machine with "
    "internet access and copy it here."
)
RESIZE_POLICIES = ("tf1-bilinear", "pil-bicubic", "torch-bilinear")


class BasicConv2d(nn.Module):
    """Convolution (no bias) + batch norm (eps 1e-3) + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's average pool ignores the padding: count_include_pad=False.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool(x)),
        ], 1)


class InceptionB(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], 1)


class InceptionC(nn.Module):
    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dbl = self.branch7x7dbl_3(self.branch7x7dbl_2(self.branch7x7dbl_1(x)))
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            self.branch7x7dbl_5(self.branch7x7dbl_4(dbl)),
            self.branch_pool(_avg_pool(x)),
        ], 1)


class InceptionD(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x)))
        return torch.cat([
            self.branch3x3_2(self.branch3x3_1(x)),
            self.branch7x7x3_4(b7),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], 1)


class InceptionE(nn.Module):
    """Last blocks; ``pool="avg"`` for Mixed_7b, ``"max"`` for Mixed_7c (as in the TF graph)."""

    def __init__(self, in_channels: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = _avg_pool(x) if self.pool == "avg" else F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(dbl), self.branch3x3dbl_3b(dbl),
            self.branch_pool(pooled),
        ], 1)


class FIDInceptionV3(nn.Module):
    """Inception-v3 with the TF-2015-12-05 blocks; input (n, 3, 299, 299) scaled to [-1, 1].

    ``forward`` returns the 2,048-d pool3 features; ``logits`` the 1,008-way classifier output.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """pool3 features (n, 2048) → classifier logits (n, 1008)."""
        return self.fc(features)


def _tf1_bilinear_matrix(in_size: int, out_size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # TensorFlow 1.x resize_bilinear, align_corners=False: source = dst * in/out (no half-pixel offset).
    scale = in_size / out_size
    src = torch.arange(out_size, dtype=torch.float64) * scale
    top = src.floor().long()
    bottom = torch.clamp(top + 1, max=in_size - 1)
    lerp = src - top
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    rows = torch.arange(out_size)
    matrix[rows, top] += 1.0 - lerp
    matrix[rows, bottom] += lerp
    return matrix.to(dtype=dtype, device=device)


def resize_tf1_bilinear(batch: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TensorFlow 1.x bilinear resize (align_corners=False) of (n, C, H, W) floats, as separable matmuls.

    Agrees with torch-fidelity's ``interpolate_bilinear_2d_like_tensorflow1x`` to float32 rounding; a matmul
    per axis is BLAS-bound and several times faster than gather-based interpolation at 299x299.
    """
    rows = _tf1_bilinear_matrix(batch.shape[-2], size[0], batch.dtype, batch.device)
    cols = _tf1_bilinear_matrix(batch.shape[-1], size[1], batch.dtype, batch.device)
    return rows @ batch @ cols.T


def resize_pil_bicubic(batch: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """clean-fid's resize: each channel of each uint8-valued image through PIL bicubic in float ('F') mode, then
    clipped to [0, 255] as clean-fid clips (bicubic overshoots at edges)."""
    from PIL import Image

    array = batch.detach().cpu().numpy().astype(np.float32)
    out = np.empty(array.shape[:2] + tuple(size), dtype=np.float32)
    for i in range(array.shape[0]):
        for c in range(array.shape[1]):
            image = Image.fromarray(array[i, c], mode="F")
            out[i, c] = np.asarray(image.resize((size[1], size[0]), resample=Image.BICUBIC), dtype=np.float32)
    np.clip(out, 0.0, 255.0, out=out)
    return torch.from_numpy(out).to(batch.device)


class InceptionFIDEncoder(Encoder):
    """FID Inception-v3 pool3 features (2,048-d); weights from a local file."""

    name = "inception-fid"
    description = "FID Inception-v3 pool3, 2048-d (pt_inception-2015-12-05 weights, local file)"
    input_size = (299, 299)
    channels = 3
    dim = 2048
    default_batch_size = 32

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        resize: str = "tf1-bilinear",
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__(device)
        if resize not in RESIZE_POLICIES:
            raise InputError(f"resize: expected one of {RESIZE_POLICIES}, received {resize!r}")
        self.resize_mode = resize
        weights = resolve_weights(FILENAMES, path=path, how_to_get=HOW_TO_GET)
        model = FIDInceptionV3()
        state = torch.load(weights, map_location="cpu", weights_only=True)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise InputError(
                f"path: {str(weights)!r} does not hold FID Inception-v3 weights (pt_inception-2015-12-05 layout): {exc}"
            ) from exc
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.weights_sha256 = weights_hash(weights)

    def config_id(self) -> str:  # pragma: no cover - weights always present
        return self.resize_mode

    @property
    def id(self) -> str:
        return f"{self.name}@{self.weights_sha256[:16]}-{self.resize_mode}"

    @classmethod
    def weights_status(cls, path: str | os.PathLike | None = None, **_: object) -> tuple[bool, str]:
        try:
            return True, str(resolve_weights(FILENAMES, path=path, how_to_get=HOW_TO_GET))
        except WeightsNotFoundError as exc:
            return False, str(exc)

    def preprocess(self, batch: torch.Tensor) -> torch.Tensor:
        batch = match_channels(to_unit_float(batch), 3)
        if self.resize_mode == "torch-bilinear":
            batch = F.interpolate(batch, size=self.input_size, mode="bilinear", align_corners=False)
            return 2.0 * batch - 1.0
        pixels = torch.round(batch.clamp(0.0, 1.0) * 255.0)  # quantise as an 8-bit image file would
        if self.resize_mode == "tf1-bilinear":
            pixels = resize_tf1_bilinear(pixels, self.input_size)
        else:
            pixels = resize_pil_bicubic(pixels, self.input_size)
        return (pixels - 128.0) / 128.0

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)
