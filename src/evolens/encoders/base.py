"""The encoder interface: images in, one feature vector per image out, batched, on CPU or GPU.

Every encoder declares what it expects (input size, channels, normalisation) and what it returns (``dim``),
and has an ``id`` that includes a hash of its weights, so features cached under that id can never be mixed
with features from other weights. Images given to ``encode`` are (n, C, H, W) with C = 1 or 3, floats in
[0, 1] (or uint8 in [0, 255]); each encoder converts channels, resizes and normalises them itself.
"""

from __future__ import annotations

import abc
from typing import Any, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from .._validation import check_array, check_int, count_nonfinite
from .._device import default_device, resolve_device  # noqa: F401 - re-exported
from ..errors import InputError


def check_images(images: Any, name: str = "images") -> np.ndarray | torch.Tensor:
    """Check an image batch: (n, C, H, W), C in {1, 3}, finite; returns it unchanged (array or tensor)."""
    if isinstance(images, torch.Tensor):
        shape, finite = tuple(images.shape), bool(torch.isfinite(images).all()) if images.is_floating_point() else True
    else:
        images = check_array(images, name)
        shape, finite = images.shape, count_nonfinite(images) == 0
    if len(shape) != 4 or shape[1] not in (1, 3):
        raise InputError(f"{name}: expected images of shape (n, C, H, W) with C = 1 or 3, received shape={shape}")
    if shape[0] == 0:
        raise InputError(f"{name}: expected at least one image, received shape={shape}")
    if not finite:
        raise InputError(f"{name}: expected finite pixel values, found NaN or inf in shape={shape}")
    return images


def to_unit_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float32 [0, 1]; floats pass through as float32."""
    if batch.dtype == torch.uint8:
        return batch.float() / 255.0
    return batch.float()


def match_channels(batch: torch.Tensor, channels: int) -> torch.Tensor:
    """Repeat grayscale to RGB, or average RGB to grayscale, to get ``channels`` channels."""
    if batch.shape[1] == channels:
        return batch
    if channels == 3:
        return batch.expand(-1, 3, -1, -1)
    return batch.mean(dim=1, keepdim=True)


def resize(batch: torch.Tensor, size: Sequence[int], mode: str = "bilinear") -> torch.Tensor:
    """Resize (n, C, H, W) to ``size`` = (H', W'); antialiased when shrinking (as PIL does)."""
    size = tuple(int(s) for s in size)
    if tuple(batch.shape[-2:]) == size:
        return batch
    antialias = mode in ("bilinear", "bicubic") and (batch.shape[-2] > size[0] or batch.shape[-1] > size[1])
    return F.interpolate(batch, size=size, mode=mode, align_corners=False if mode != "nearest" else None,
                         antialias=antialias)


class Encoder(abc.ABC):
    """Base class of every encoder.

    Subclasses set ``name``, ``input_size`` ((H, W) or None for any), ``channels``, ``mean``/``std``
    (applied to [0, 1] pixels; None for none), ``dim``, ``weights_sha256`` (or ``config_id`` for encoders
    without weights), and implement ``_forward(batch) -> (n, dim)`` on preprocessed batches.
    """

    name: str = "encoder"
    description: str = ""
    input_size: tuple[int, int] | None = None
    channels: int = 3
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    dim: int = 0
    resize_mode: str = "bilinear"
    default_batch_size: int = 64

    def __init__(self, device: str | torch.device | None = None) -> None:
        self.device = resolve_device(device)
        self.weights_sha256: str | None = None
        self.calls = 0  # number of forward batches run (tests use it to prove caching)

    def to(self, device: str | torch.device) -> "Encoder":
        """Move to ``device`` (the encoder and every torch module it holds, e.g. on a Ray actor given a GPU);
        returns self. The features do not depend on the device beyond float rounding."""
        self.device = resolve_device(device)
        for value in vars(self).values():
            if isinstance(value, torch.nn.Module):
                value.to(self.device)
        return self

    @property
    def id(self) -> str:
        """Identity of the features: name + weights hash (+ configuration), stable across machines."""
        tag = self.weights_sha256[:16] if self.weights_sha256 else self.config_id()
        return f"{self.name}@{tag}"

    def config_id(self) -> str:
        """Identity of an encoder without weights (its configuration); subclasses override."""
        return "noweights"

    @classmethod
    def weights_status(cls, **kwargs: Any) -> tuple[bool, str]:
        """(available, where or why not) for ``evolens encoders``; default: no weights needed."""
        return True, "no weights needed"

    def preprocess(self, batch: torch.Tensor) -> torch.Tensor:
        """[0, 1] (or uint8) batch on the device → the network's input (channels, size, normalisation)."""
        batch = match_channels(to_unit_float(batch), self.channels)
        if self.input_size is not None:
            batch = resize(batch, self.input_size, self.resize_mode)
        if self.mean is not None:
            mean = torch.tensor(self.mean, device=batch.device).view(1, -1, 1, 1)
            std = torch.tensor(self.std, device=batch.device).view(1, -1, 1, 1)
            batch = (batch - mean) / std
        return batch

    @abc.abstractmethod
    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Preprocessed batch → (n, dim) features."""

    def encode(self, images: Any, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """Images (n, C, H, W) in [0, 1] (or uint8) → features (n, dim) float32, computed in batches."""
        images = check_images(images)
        batch_size = self.default_batch_size if batch_size is None else check_int(batch_size, "batch_size", minimum=1)
        from tqdm.auto import tqdm

        n = images.shape[0]
        out = np.empty((n, self.dim), dtype=np.float32)
        bar = tqdm(total=n, desc=f"embedding ({self.name})", unit="img", disable=not progress, leave=False)
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                chunk = images[start : start + batch_size]
                chunk = chunk if isinstance(chunk, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(chunk))
                features = self._forward(self.preprocess(chunk.to(self.device)))
                self.calls += 1
                if features.shape != (chunk.shape[0], self.dim):
                    raise RuntimeError(  # a defect of the encoder, not of the user's input
                        f"encoder {self.name} returned shape {tuple(features.shape)}, expected ({chunk.shape[0]}, {self.dim})"
                    )
                out[start : start + chunk.shape[0]] = features.float().cpu().numpy()
                bar.update(chunk.shape[0])
        bar.close()
        return out

    def __call__(self, images: Any, batch_size: int | None = None) -> np.ndarray:
        return self.encode(images, batch_size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, dim={self.dim}, device={str(self.device)!r})"


class TorchModuleEncoder(Encoder):
    """An encoder around a ``torch.nn.Module`` that maps preprocessed batches to (n, dim) features."""

    def __init__(self, module: torch.nn.Module, device: str | torch.device | None = None) -> None:
        super().__init__(device)
        self.module = module.to(self.device).eval().requires_grad_(False)

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.module(batch)


def describe_encoder_input(encoder: Encoder) -> dict[str, Any]:
    """JSON-serialisable summary of what an encoder expects and returns (stored with cached features)."""
    return {
        "name": encoder.name,
        "id": encoder.id,
        "input_size": list(encoder.input_size) if encoder.input_size else None,
        "channels": encoder.channels,
        "mean": list(encoder.mean) if encoder.mean else None,
        "std": list(encoder.std) if encoder.std else None,
        "dim": encoder.dim,
        "resize": encoder.resize_mode,
    }


__all__ = ["Encoder", "TorchModuleEncoder", "check_images", "default_device", "describe_encoder_input"]
