"""Encoders: images → feature vectors, offline, with a registry and cached embedding of whole runs.

Built in: ``efficientnet-lite0`` (default; weights ship with pip), ``inception-fid`` (FID Inception-v3, local
weights), ``clip`` and ``dinov2`` (local Hugging Face directories), ``pixels``, ``identity`` (any samples as
vectors), ``digits-cnn`` (trained in place on MNIST, cached). Any callable ``images -> features`` can be
registered with ``register_encoder``. Embedding a whole run is an analysis: ``evolens.analyses.embedding``.
"""

from .base import Encoder, TorchModuleEncoder, default_device
from .callable import CallableEncoder
from .digits_cnn import DigitsCNNEncoder
from .efficientnet import EfficientNetLite0Encoder
from .identity import IdentityEncoder
from .hf import CLIPEncoder, DINOv2Encoder
from .inception import FIDInceptionV3, InceptionFIDEncoder
from .pixels import PixelsEncoder
from .registry import EncoderInfo, get_encoder, list_encoders, register_encoder, unregister_encoder
from .weights import ENV_WEIGHTS, WeightsNotFoundError, resolve_weights

DEFAULT_ENCODER = "efficientnet-lite0"

for _cls in (EfficientNetLite0Encoder, InceptionFIDEncoder, CLIPEncoder, DINOv2Encoder, PixelsEncoder, IdentityEncoder,
             DigitsCNNEncoder):
    register_encoder(_cls.name, _cls)

__all__ = [
    "CLIPEncoder",
    "CallableEncoder",
    "DEFAULT_ENCODER",
    "DINOv2Encoder",
    "DigitsCNNEncoder",
    "ENV_WEIGHTS",
    "EfficientNetLite0Encoder",
    "Encoder",
    "EncoderInfo",
    "FIDInceptionV3",
    "IdentityEncoder",
    "InceptionFIDEncoder",
    "PixelsEncoder",
    "TorchModuleEncoder",
    "WeightsNotFoundError",
    "default_device",
    "get_encoder",
    "list_encoders",
    "register_encoder",
    "resolve_weights",
    "unregister_encoder",
]
