"""CLIP and DINOv2 from a local Hugging Face model directory (transformers), never from the hub.

``clip``: image features are the projected CLIP image embeddings (L2-normalised, as CLIP compares them);
``encode_text`` embeds prompts with the text tower, and ``zero_shot`` labels images with prompts — the
attribute classifier the progressive-monitoring paper suggests next to the encoder. ``dinov2``: the CLS token
of the last layer (``pooler_output``), ImageNet normalisation. Images are resized to the model's input size
with bicubic interpolation (antialiased when shrinking); the mean/std come from the directory's
``preprocessor_config.json`` when present.

Needs ``pip install evolens[hf]`` (transformers). Directories: ``path=`` or ``$EVOLENS_WEIGHTS/<dirname>``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import EvolensError, InputError
from .base import Encoder
from .weights import WeightsNotFoundError, resolve_weights, weights_hash

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _transformers():
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - installed with [hf] and [dev]
        raise EvolensError("this encoder needs transformers: pip install 'evolens[hf]'") from exc
    return transformers


def _preprocessor_stats(folder: Path, mean, std) -> tuple[tuple[float, ...], tuple[float, ...]]:
    config = folder / "preprocessor_config.json"
    if config.is_file():
        data = json.loads(config.read_text())
        mean = tuple(data.get("image_mean", mean))
        std = tuple(data.get("image_std", std))
    return mean, std


class _HFEncoder(Encoder):
    dirnames: tuple[str, ...] = ()
    how_to_get = ""
    resize_mode = "bicubic"
    default_batch_size = 32

    def _resolve(self, path: str | os.PathLike | None) -> Path:
        return resolve_weights(self.dirnames, path=path, how_to_get=self.how_to_get, directory=True)

    def _load(self, path: str | os.PathLike | None, model_class: str, what: str) -> tuple[Any, Path]:
        """Resolve the directory and load ``transformers.<model_class>`` from it, offline, onto the device."""
        folder = self._resolve(path)
        try:
            model = getattr(_transformers(), model_class).from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise InputError(f"path: {str(folder)!r} is not a loadable {what} model directory ({exc})") from exc
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.weights_sha256 = weights_hash(folder)
        return model, folder

    @classmethod
    def weights_status(cls, path: str | os.PathLike | None = None, **_: object) -> tuple[bool, str]:
        try:
            found = resolve_weights(cls.dirnames, path=path, how_to_get=cls.how_to_get, directory=True)
        except WeightsNotFoundError as exc:
            return False, str(exc)
        return True, str(found)

    def preprocess(self, batch: torch.Tensor) -> torch.Tensor:
        return super().preprocess(batch).clamp(-10.0, 10.0)


class CLIPEncoder(_HFEncoder):
    """CLIP image embeddings (projected, L2-normalised) from a local directory; text tower for prompts."""

    name = "clip"
    description = "CLIP image/text embeddings (transformers; local model directory)"
    dirnames = ("clip", "clip-vit-base-patch32", "clip-vit-large-patch14")
    how_to_get = (
        "Save a CLIP model directory with transformers (CLIPModel.from_pretrained(...).save_pretrained(dir) and the "
        "same for CLIPTokenizer) on a machine with internet access and copy it here."
    )

    def __init__(self, path: str | os.PathLike | None = None, device: str | torch.device | None = None) -> None:
        super().__init__(device)
        model, folder = self._load(path, "CLIPModel", "CLIP")
        size = model.config.vision_config.image_size
        self.input_size = (size, size)
        self.mean, self.std = _preprocessor_stats(folder, CLIP_MEAN, CLIP_STD)
        self.dim = model.config.projection_dim
        self.folder = folder
        self._tokenizer = None

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        pooled = self.model.vision_model(pixel_values=batch).pooler_output
        return F.normalize(self.model.visual_projection(pooled), dim=-1)

    def tokenizer(self):
        """The CLIP tokenizer stored in the model directory."""
        if self._tokenizer is None:
            transformers = _transformers()
            try:
                self._tokenizer = transformers.AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
            except (OSError, ValueError) as exc:
                raise InputError(
                    f"path: {str(self.folder)!r} has no CLIP tokenizer files (vocab.json, merges.txt) for text prompts ({exc})"
                ) from exc
        return self._tokenizer

    def encode_text(self, prompts: Sequence[str]) -> np.ndarray:
        """Prompts → (n, dim) L2-normalised text embeddings, comparable with ``encode`` by dot product."""
        if isinstance(prompts, str) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise InputError(f"prompts: expected a non-empty list of strings, received {prompts!r}")
        tokens = self.tokenizer()(list(prompts), padding=True, truncation=True,
                                  max_length=self.model.config.text_config.max_position_embeddings,
                                  return_tensors="pt").to(self.device)
        with torch.inference_mode():
            pooled = self.model.text_model(input_ids=tokens["input_ids"],
                                           attention_mask=tokens["attention_mask"]).pooler_output
            return F.normalize(self.model.text_projection(pooled), dim=-1).float().cpu().numpy()

    def zero_shot(self, images: Any, prompts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Probabilities (n, len(prompts)) that each image matches each prompt (CLIP's logit scale, softmax)."""
        image_features = torch.from_numpy(self.encode(images, batch_size))
        text_features = torch.from_numpy(self.encode_text(prompts))
        scale = float(self.model.logit_scale.exp())
        return torch.softmax(scale * image_features @ text_features.T, dim=1).numpy()


class DINOv2Encoder(_HFEncoder):
    """DINOv2 CLS-token features from a local directory."""

    name = "dinov2"
    description = "DINOv2 CLS features (transformers; local model directory)"
    dirnames = ("dinov2", "dinov2-small", "dinov2-base", "dinov2-large")
    how_to_get = (
        "Save a DINOv2 model directory with transformers (AutoModel.from_pretrained('facebook/dinov2-base')"
        ".save_pretrained(dir)) on a machine with internet access and copy it here."
    )

    def __init__(self, path: str | os.PathLike | None = None, image_size: int = 224,
                 device: str | torch.device | None = None) -> None:
        super().__init__(device)
        model, folder = self._load(path, "AutoModel", "DINOv2")
        if model.config.model_type != "dinov2":
            raise InputError(f"path: expected a DINOv2 model directory, found model_type={model.config.model_type!r}")
        patch = model.config.patch_size
        side = max(patch, int(round(image_size / patch)) * patch)
        self.input_size = (side, side)
        self.mean, self.std = _preprocessor_stats(folder, IMAGENET_MEAN, IMAGENET_STD)
        self.dim = model.config.hidden_size

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=batch).pooler_output
