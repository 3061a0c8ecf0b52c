"""``digits-cnn``: a small MNIST classifier trained in place, whose penultimate layer is the digits feature space.

For MNIST-scale experiments an ImageNet network is the wrong ruler; the standard is a classifier trained on
the digits themselves (its penultimate activations for FID-style metrics, its head for class labels). The
network trains on the MNIST train split that ``evolens.data.mnist`` provides (CPU, ~20 s) and its weights
are cached under the user cache directory keyed by the data hash and the seed, so it is trained once per
machine. ``path=`` loads given weights instead (no training).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._paths import cache_dir
from ..store.arrays import array_hash
from ..store.files import produce_once
from .base import Encoder
from .weights import weights_hash

logger = logging.getLogger(__name__)


class DigitsNet(nn.Module):
    """(n, 1, 28, 28) digits → 128-d features → 10 logits."""

    def __init__(self, dim: int = 128) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 14x14
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 7x7
            nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * 49, dim), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.25), nn.Linear(dim, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_digits_net(
    images: np.ndarray, labels: np.ndarray, *, seed: int = 0, epochs: int = 12, batch_size: int = 128
) -> DigitsNet:
    """Train ``DigitsNet`` on (n, 1, 28, 28) images in [0, 1] with int labels (Adam, small shifts as augmentation)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = DigitsNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)), torch.from_numpy(np.asarray(labels))
    model.train()
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=generator)
        for start in range(0, x.shape[0], batch_size):
            index = order[start : start + batch_size]
            batch = x[index]
            shift = torch.randint(-2, 3, (2,), generator=generator).tolist()
            batch = torch.roll(batch, shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(model(batch), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


class DigitsCNNEncoder(Encoder):
    """Penultimate (128-d) features of a digits classifier trained on MNIST; ``classify`` gives labels."""

    name = "digits-cnn"
    description = "MNIST classifier trained in place (cached); 128-d penultimate features + digit labels"
    input_size = (28, 28)
    channels = 1
    dim = 128
    default_batch_size = 512

    def __init__(self, path: str | os.PathLike | None = None, seed: int = 0, device: str | torch.device | None = None) -> None:
        super().__init__(device)
        if path is not None:
            from .weights import resolve_weights

            weights = resolve_weights("digits-cnn.pt", path=path, how_to_get="Train it with get_encoder('digits-cnn').")
        else:
            weights = self._cached_or_trained(seed)
        model = DigitsNet()
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.weights_path = Path(weights)
        self.weights_sha256 = weights_hash(weights)

    @staticmethod
    def is_cached(seed: int = 0) -> bool:
        """Whether weights trained with ``seed`` are cached on this machine (any MNIST source), without loading data."""
        return any((cache_dir() / "digits-cnn").glob(f"digits-cnn-*-s{seed}.pt"))

    @staticmethod
    def _cached_or_trained(seed: int) -> Path:
        from ..data import mnist

        train = mnist("train", seed=0)
        key = f"{array_hash(train.images)[:12]}-{array_hash(train.labels)[:8]}-s{seed}"
        path = cache_dir() / "digits-cnn" / f"digits-cnn-{key}.pt"

        def train_and_save(handle) -> None:
            logger.info("evolens: training digits-cnn on %s (%d images), cached at %s", train.source, len(train), path)
            torch.save(train_digits_net(train.images, train.labels, seed=seed).state_dict(), handle)

        # once per machine: processes asking at once (the demo and its live worker) wait for the one that trains,
        # so all load the same weights and give one id (the weights depend on the torch thread count)
        return produce_once(path, train_and_save)

    @classmethod
    def weights_status(cls, path: str | os.PathLike | None = None, **_: object) -> tuple[bool, str]:
        if path is not None:
            return Path(path).is_file(), str(path)
        return True, f"trained on first use, cached in {cache_dir() / 'digits-cnn'}"

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.features(batch)

    def logits(self, images, batch_size: int = 512) -> np.ndarray:
        """Class logits (n, 10) for images (n, C, H, W) in [0, 1]."""
        features = torch.from_numpy(self.encode(images, batch_size)).to(self.device)
        with torch.inference_mode():
            return self.model.head(features).cpu().numpy()

    def classify(self, images, batch_size: int = 512) -> np.ndarray:
        """Predicted digit (n,) int64 for images (n, C, H, W) in [0, 1]."""
        return self.logits(images, batch_size).argmax(axis=1).astype(np.int64)
