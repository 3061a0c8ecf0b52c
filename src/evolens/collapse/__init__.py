"""PLE — penalised likelihood estimation with a dataset→weights hypernetwork (arXiv 2405.13977).

``PLETrainer`` and ``MLETrainer`` estimate the same density models (:class:`Gaussian`, :class:`GaussianMixture`,
:class:`VAE`, or any module with ``nll``/``rsample``) with one interface; :mod:`evolens.collapse.loops` retrains them on
their own samples to measure collapse.
"""

from .hypernetwork import HYPERNETWORKS, Hypernetwork, call_with, parameter_shapes
from .models import VAE, DensityModel, Gaussian, GaussianMixture
from .estimators import (INPUTS, PENALTIES, BiasCorrectedMLETrainer, FitResult, MLETrainer, PLETrainer, TunedMLETrainer,
                         linear_warmup, mean_nll, ple_penalty)
from .diagnostics import HypernetworkSensitivity, hypernetwork_sensitivity, plain_estimator

__all__ = [
    "BiasCorrectedMLETrainer",
    "HYPERNETWORKS",
    "INPUTS",
    "PENALTIES",
    "DensityModel",
    "FitResult",
    "Gaussian",
    "GaussianMixture",
    "Hypernetwork",
    "HypernetworkSensitivity",
    "MLETrainer",
    "PLETrainer",
    "TunedMLETrainer",
    "VAE",
    "call_with",
    "hypernetwork_sensitivity",
    "linear_warmup",
    "mean_nll",
    "parameter_shapes",
    "plain_estimator",
    "ple_penalty",
]
