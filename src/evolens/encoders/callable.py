"""Any function ``images -> features`` as an encoder."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from .._validation import to_numpy
from ..errors import InputError
from .base import Encoder


class CallableEncoder(Encoder):
    """Wrap ``fn(batch) -> features``: batch is a float tensor (n, C, H, W) in [0, 1] on ``device``.

    Args:
        fn: the function; may return a tensor or an array of shape (n, dim).
        dim: feature dimension (inferred from a first call when None).
        name: name used in the id.
        version: bump it when ``fn`` changes, so cached features are not reused (the id is name + version).
        channels, input_size: optional conversions applied before ``fn``.
    """

    description = "any callable images → features (register_encoder(name, fn))"

    def __init__(
        self,
        fn: Callable[[torch.Tensor], Any],
        *,
        dim: int | None = None,
        name: str = "callable",
        version: str = "1",
        channels: int | None = None,
        input_size: tuple[int, int] | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__(device)
        if not callable(fn):
            raise InputError(f"fn: expected a callable images -> features, received {type(fn).__name__}")
        self.fn, self.name, self.version = fn, name, str(version)
        self.input_size = input_size
        self._channels = channels
        self.dim = int(dim) if dim is not None else 0

    def config_id(self) -> str:
        return f"v{self.version}"

    def preprocess(self, batch: torch.Tensor) -> torch.Tensor:
        if self._channels is not None:
            self.channels = self._channels
            return super().preprocess(batch)
        from .base import resize, to_unit_float

        batch = to_unit_float(batch)
        return resize(batch, self.input_size) if self.input_size else batch

    def encode(self, images: Any, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        if not self.dim:  # infer the dimension from the first image
            from .base import check_images

            first = check_images(images)[:1]
            first = first if isinstance(first, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(first))
            with torch.inference_mode():
                self.dim = int(self._forward(self.preprocess(first.to(self.device))).shape[1])
        return super().encode(images, batch_size, progress)

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        out = self.fn(batch)
        if not isinstance(out, torch.Tensor):
            out = torch.from_numpy(np.ascontiguousarray(to_numpy(out, "fn(images)")))
        if out.ndim != 2:
            raise InputError(f"fn(images): expected features of shape (n, dim), received shape={tuple(out.shape)}")
        return out
