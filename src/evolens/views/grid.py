"""Sample grids: many small images tiled into one picture, the way people look at generated samples."""

from __future__ import annotations

import math
import os

import numpy as np

from .._validation import check_array, check_int
from ..errors import InputError


def images_to_grid(images: np.ndarray, ncol: int | None = None, pad: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tile images (n, C, H, W) with values in [0, 1] into one uint8 picture (rows, cols, C) with C in {1, 3}.

    Non-finite values are drawn as mid-grey so a diverged sample is visible rather than an error.
    ``ncol`` defaults to ceil(sqrt(n)).
    """
    images = check_array(images, "images", ndim=4, min_samples=1).astype(np.float32)
    n, channels, height, width = images.shape
    if channels not in (1, 3):
        raise InputError(f"images: expected 1 or 3 channels in shape (n, C, H, W), received shape={images.shape}")
    ncol = math.ceil(math.sqrt(n)) if ncol is None else check_int(ncol, "ncol", minimum=1)
    pad = check_int(pad, "pad", minimum=0)
    nrow = math.ceil(n / ncol)
    images = np.where(np.isfinite(images), images, 0.5).clip(0.0, 1.0)
    grid = np.full((channels, nrow * (height + pad) + pad, ncol * (width + pad) + pad), pad_value, np.float32)
    for i in range(n):
        r, c = divmod(i, ncol)
        top, left = pad + r * (height + pad), pad + c * (width + pad)
        grid[:, top : top + height, left : left + width] = images[i]
    return (grid.transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)


def png_bytes(picture: np.ndarray, scale: int = 1) -> bytes:
    """PNG encoding of a uint8 picture (rows, cols, C), upscaled by an integer ``scale`` (nearest)."""
    import io

    from PIL import Image

    picture = check_array(picture, "picture", ndim=(2, 3))
    if picture.dtype != np.uint8:
        raise InputError(f"picture: expected a uint8 picture (images_to_grid's output), received dtype={picture.dtype}")
    scale = check_int(scale, "scale", minimum=1, maximum=64)
    if picture.shape[0] * picture.shape[1] * scale**2 > 2**28:
        raise InputError(f"scale: expected a picture of at most 2**28 pixels once upscaled, received scale={scale} for "
                         f"shape={picture.shape}")
    if picture.ndim == 3 and picture.shape[2] == 1:
        picture = picture[:, :, 0]
    if scale > 1:
        picture = picture.repeat(scale, axis=0).repeat(scale, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def save_png(picture: np.ndarray, path: str | os.PathLike, scale: int = 1) -> str:
    """Write a uint8 picture (rows, cols, C) as PNG, upscaled by an integer ``scale`` (nearest); return the path."""
    with open(path, "wb") as handle:
        handle.write(png_bytes(picture, scale))
    return str(path)
