"""Experiments: the demo and CPU-sized reproductions of the papers' claims, one registry for all of them.

Each experiment is a module with ``main(argv) -> exit status`` that writes runs, figures and a summary. The
``evolens experiment NAME`` and ``evolens demo`` commands and ``python -m evolens.experiments NAME`` all run
them through ``run_experiment``.
"""

from __future__ import annotations

import importlib
from typing import Sequence

from ..errors import InputError

__all__ = ["EXPERIMENTS", "run_experiment"]

EXPERIMENTS = {
    "demo": ("evolens.experiments.demo", "train a small conditional VAE on MNIST-5k under live monitoring"),
    "biased-generalization": ("evolens.experiments.biased_generalization",
                              "two DDPMs on disjoint digit splits: split distance vs test loss (arXiv 2603.03469)"),
    "attribute-bias": ("evolens.experiments.attribute_bias",
                       "pause an image translator when a class loses its attribute, add data, resume (arXiv 2412.12755)"),
    "ple-loops": ("evolens.experiments.ple_loops", "self-consuming loops, every PLE arm (arXiv 2405.13977)"),
    "ple-gmm": ("evolens.experiments.ple_gmm", "GMM estimation vs sample size and imbalance, every PLE arm"),
    "ple-fairness": ("evolens.experiments.ple_fairness", "imbalanced MNIST VAE: RFair under every PLE arm"),
}


def run_experiment(name: str, argv: Sequence[str] | None = None) -> int:
    """Run the experiment ``name`` with command-line options ``argv``; returns its exit status."""
    if name not in EXPERIMENTS:
        raise InputError(f"name: expected one of {sorted(EXPERIMENTS)}, received {name!r}")
    module = importlib.import_module(EXPERIMENTS[name][0])
    return int(module.main(list(argv or [])) or 0)
