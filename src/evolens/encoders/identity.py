"""The ``identity`` encoder: samples as they are, flattened to vectors — for models whose samples are not images
(points of a density model, tabular rows, latent vectors) and for self-consuming loops."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._validation import check_array, count_nonfinite
from ..errors import InputError
from .base import Encoder


class IdentityEncoder(Encoder):
    """Any samples (n, ...) → (n, prod(...)) float32, unchanged."""

    name = "identity"
    description = "samples flattened to vectors, unchanged (any shape); no weights"
    default_batch_size = 1 << 16

    def __init__(self, device: str | torch.device | None = None) -> None:
        super().__init__(device)

    @property
    def id(self) -> str:
        return self.name

    def encode(self, images: Any, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """(n, ...) numeric → (n, d) float32 (d the product of the sample shape)."""
        x = check_array(images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else images,
                        "samples", min_samples=1)
        if x.ndim == 1:
            x = x[:, None]
        if count_nonfinite(x):
            raise InputError(f"samples: expected finite values, found NaN or inf in shape={x.shape}")
        self.calls += 1
        flat = x.reshape(x.shape[0], -1).astype(np.float32, copy=True)
        self.dim = flat.shape[1]
        return flat

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:  # pragma: no cover - encode does the work
        return batch.flatten(1)
