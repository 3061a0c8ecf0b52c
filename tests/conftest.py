"""Shared fixtures: small generators and sample functions that make real runs quickly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evolens import Monitor, Probes


class TinyGenerator(torch.nn.Module):
    """Noise (n, 8) → images (n, 1, 4, 4) in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).reshape(-1, 1, 4, 4)


@pytest.fixture
def generator() -> TinyGenerator:
    return TinyGenerator()


@pytest.fixture
def probes() -> Probes:
    return Probes.from_noise(6, 8, seed=7, num_classes=3)


@pytest.fixture
def make_monitor(tmp_path, generator, probes):
    """Factory: a Monitor on ``tmp_path / name`` sampling the tiny generator; closed after the test."""
    made = []

    def factory(name: str = "run", every=2, sample_fn=None, **kwargs) -> Monitor:
        fn = sample_fn or (lambda p: generator(p.noise))
        monitor = Monitor(tmp_path / name, fn, every=every, probes=kwargs.pop("probes", probes), **kwargs)
        made.append(monitor)
        return monitor

    yield factory
    for monitor in made:
        monitor.close()


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Keep the user's cache untouched: digits-cnn weights and parsed data go to a per-session folder."""
    import os

    folder = tmp_path_factory.mktemp("evolens-cache")
    previous = os.environ.get("EVOLENS_CACHE")
    os.environ["EVOLENS_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("EVOLENS_CACHE", None)
    else:
        os.environ["EVOLENS_CACHE"] = previous


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
