"""PLE — penalised likelihood estimation with a dataset→weights hypernetwork (arXiv 2405.13977).

``PLETrainer`` and ``MLETrainer`` estimate the same density models (:class:`Gaussian`, :class:`GaussianMixture`,
:class:`VAE`, or any module with ``nll``/``rsample``) with one interface; :mod:`evolens.collapse.loops` retrains them on
their own samples to measure collapse.
"""

from .hypernetwork import Hypernetwork, call_with, parameter_shapes
from .models import VAE, DensityModel, Gaussian, GaussianMixture
from .estimators import PENALTIES, BiasCorrectedMLETrainer, FitResult, MLETrainer, PLETrainer, linear_warmup, ple_penalty
from .diagnostics import HypernetworkSensitivity, hypernetwork_sensitivity

__all__ = [
    "BiasCorrectedMLETrainer",
    "PENALTIES",
    "DensityModel",
    "FitResult",
    "Gaussian",
    "GaussianMixture",
    "Hypernetwork",
    "HypernetworkSensitivity",
    "MLETrainer",
    "PLETrainer",
    "VAE",
    "call_with",
    "hypernetwork_sensitivity",
    "linear_warmup",
    "parameter_shapes",
    "ple_penalty",
]
