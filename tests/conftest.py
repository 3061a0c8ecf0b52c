"""Shared fixtures: small generators and sample functions that make real runs quickly."""

from __future__ import annotations

from pathlib import Path

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


TEST_CACHE = Path(__file__).parent / "artifacts" / "evolens-cache"


@pytest.fixture(scope="session", autouse=True)
def isolated_cache():
    """Keep the user's cache untouched: digits-cnn weights and parsed data go to ``tests/artifacts`` (ignored by
    git), kept between test sessions so digits-cnn trains once per checkout, not once per session."""
    import os

    folder = TEST_CACHE
    folder.mkdir(parents=True, exist_ok=True)
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


# -- a complete small run for the report, API and browser tests ------------------------------------------------
from evolens.data import digits  # noqa: E402


def make_view_run(root: Path, name: str = "demo-like", steps: int = 6, seed: int = 0) -> Path:
    """A run whose samples (sklearn digits, 1x8x8) sharpen from noise towards their class over the steps."""
    data = digits("train")
    images, labels = data.images, data.labels
    per_class = {c: images[labels == c] for c in range(10)}
    probes = Probes.from_noise(30, 8, seed=seed, num_classes=10)
    state = {"t": 0.0}
    rng = np.random.default_rng(seed)

    def sample_fn(p: Probes) -> dict:
        y = p.labels.numpy()
        clean = np.stack([per_class[int(c)][i % len(per_class[int(c)])] for i, c in enumerate(y)])
        noise = np.random.default_rng(1).random(clean.shape).astype(np.float32)
        t = state["t"]
        # a per-sample attribute logged with the samples (the map can be coloured by it)
        return {"samples": torch.from_numpy(((1 - t) * noise + t * clean).astype(np.float32)), "labels": p.labels,
                "stroke": torch.from_numpy((y % 3).astype(np.int64))}

    run_dir = root / name
    with Monitor(run_dir, sample_fn, every=1, probes=probes, name=name, config={"lr": 1e-3, "model": "toy"}) as monitor:
        monitor.add_reference("train", images[:300], labels[:300])
        for step in range(steps):
            state["t"] = step / max(1, steps - 1)
            monitor.log(step, **{"loss/train": float(2.0 - step * 0.2 + rng.normal(0, 0.05))})
            monitor.step(step)
            if step == 2:
                monitor.event("alert", "class 6 preservation below 0.6", step=step, level="alert")
            if step == 3:
                monitor.record_intervention("added 20 thick sixes", step=step)
    from evolens import analyses

    analyses.quality(run_dir, encoder="pixels", metrics=("fid",), progress=False)
    analyses.projection(run_dir, encoder="pixels", max_reference=120, progress=False, n_iter=150)
    return run_dir


@pytest.fixture(scope="session")
def view_root(tmp_path_factory) -> Path:
    """A folder holding two runs (``demo-like`` and ``other``), built once per session; tests only read it."""
    root = tmp_path_factory.mktemp("views")
    make_view_run(root, "demo-like", seed=0)
    make_view_run(root / "group", "other", steps=4, seed=1)
    return root


@pytest.fixture(scope="session")
def view_run(view_root) -> Path:
    return view_root / "demo-like"
