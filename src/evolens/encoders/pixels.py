"""Pixels as features: resized, flattened, optionally projected on principal components.

The baseline every image metric should be compared with, and the space the biased-generalization paper uses
(cosine similarity of standardised pixels). With ``pca=k`` the encoder must be ``fit`` on reference images
first (scikit-learn's PCA); the fitted components are part of its id.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._validation import check_int
from ..errors import InputError
from ..store.arrays import array_hash
from .base import Encoder, check_images


class PixelsEncoder(Encoder):
    """Resized, flattened pixels in [0, 1] (optionally PCA-projected)."""

    name = "pixels"
    description = "resized, flattened pixels (optional PCA); no weights"
    default_batch_size = 1024

    def __init__(
        self,
        size: tuple[int, int] | int | None = None,
        channels: int | None = None,
        pca: int | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__(device)
        if size is not None:
            sizes = (size, size) if isinstance(size, (int, np.integer)) and not isinstance(size, bool) else size
            if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__") or len(tuple(sizes)) != 2:
                raise InputError(f"size: expected None, an integer or (height, width), received {size!r}")
            size = tuple(check_int(s, "size", minimum=1) for s in sizes)
        self.input_size = size
        self._channels = None if channels is None else check_int(channels, "channels", minimum=1)
        self.pca = None if pca is None else check_int(pca, "pca", minimum=1)
        self._pca_model = None
        self._input_shape: tuple[int, ...] | None = None

    def config_id(self) -> str:
        size = "x".join(map(str, self.input_size)) if self.input_size else "native"
        tag = f"{size}-c{self._channels or 'native'}"
        if self.pca is not None:
            if self._pca_model is None:
                raise InputError("pca: the encoder must be fit on reference images before use (call .fit(images))")
            tag += f"-pca{self.pca}-{array_hash(self._pca_model.components_.astype(np.float32))[:12]}"
        return tag

    @property
    def needs_fit(self) -> bool:
        """True while a PCA projection still has to be fitted."""
        return self.pca is not None and self._pca_model is None

    def preprocess(self, batch: torch.Tensor) -> torch.Tensor:
        self.channels = self._channels or batch.shape[1]
        return super().preprocess(batch)

    def _flat(self, images: Any) -> np.ndarray:
        images = check_images(images)
        tensor = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
        with torch.inference_mode():
            return self.preprocess(tensor.to(self.device)).flatten(1).cpu().numpy()

    def fit(self, images: Any) -> "PixelsEncoder":
        """Fit the PCA (when ``pca`` is set) on reference images (n, C, H, W); returns self."""
        if self.pca is None:
            return self
        from sklearn.decomposition import PCA

        flat = self._flat(images)
        if not 1 <= self.pca <= min(flat.shape):
            raise InputError(f"pca: expected 1 <= pca <= min(n, d) = {min(flat.shape)}, received {self.pca}")
        self._pca_model = PCA(n_components=self.pca, random_state=0).fit(flat)
        return self

    def encode(self, images: Any, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        images = check_images(images)
        if batch_size is not None:
            check_int(batch_size, "batch_size", minimum=1)
        shape = tuple(images.shape[1:])
        c = self._channels or shape[0]
        h, w = self.input_size or shape[1:]
        self.dim = self.pca if self.pca is not None else c * h * w
        if self.needs_fit:
            raise InputError("pca: the encoder must be fit on reference images before use (call .fit(images))")
        if self.pca is None and self.input_size in (None, tuple(shape[1:])) and c == shape[0] \
                and isinstance(images, np.ndarray):
            # Nothing to compute: one vectorised copy beats the batched torch path ~10x.
            self.calls += 1
            flat = images.reshape(images.shape[0], -1)
            return flat.astype(np.float32) / 255.0 if images.dtype == np.uint8 else flat.astype(np.float32, copy=True)
        return super().encode(images, batch_size, progress)

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        flat = batch.flatten(1)
        if self._pca_model is None:
            return flat
        mean = torch.as_tensor(self._pca_model.mean_, dtype=flat.dtype, device=flat.device)
        components = torch.as_tensor(self._pca_model.components_, dtype=flat.dtype, device=flat.device)
        return (flat - mean) @ components.T
