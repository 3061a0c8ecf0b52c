"""Every code line of the README runs as written: each python block (the example scripts aside, which
tests/test_examples.py runs) is executed in order in one namespace, given only the names the README leaves to
the reader (a generator, its data, a training step), and every dotted ``evolens.…`` name written inline resolves."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import evolens

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def readme_blocks() -> list[str]:
    """The README's python blocks that are not example scripts, in order."""
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    return [block for block in blocks if not re.match(r"# examples/\S+\.py", block)]


def inline_names() -> set[str]:
    """Every dotted name ``evolens.a.b`` (called or not) the README writes in inline code."""
    names = set()
    for code in re.findall(r"`([^`\n]+)`", README):
        names.update(re.findall(r"\bevolens(?:\.\w+)+", code))
    return names


def _resolve(dotted: str):
    import importlib

    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        if not hasattr(obj, part):  # a submodule not imported yet: import it, then read it as an attribute
            importlib.import_module(".".join(parts[: i + 1]))
        obj = getattr(obj, part)
    return obj


def test_every_inline_evolens_name_resolves_as_written():
    names = inline_names()
    assert "evolens.analyses.nearest_training" in names and len(names) > 10
    for name in sorted(names):
        _resolve(name)


def test_the_attribute_path_of_a_function_named_like_its_module_fails():
    """What the README wrote before, which the check above must catch: the function shadows its module."""
    with pytest.raises((AttributeError, ImportError)):
        _resolve("evolens.analyses.proximity.nearest_training")


class Generator(torch.nn.Module):
    """A small untrained generator of 1×28×28 images in [0, 1] from (noise, labels)."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(latent_dim + 10, 28 * 28), torch.nn.Sigmoid())

    def forward(self, noise, labels):
        onehot = torch.nn.functional.one_hot(torch.as_tensor(labels).long(), 10).float()
        return self.net(torch.cat([torch.as_tensor(noise).float(), onehot], 1)).reshape(-1, 1, 28, 28)


@pytest.mark.slow
def test_every_readme_block_runs_as_written(tmp_path, monkeypatch):
    from evolens.data import mnist
    from evolens.encoders import get_encoder

    monkeypatch.chdir(tmp_path)
    train, held = mnist("train"), mnist("heldout")
    generator = Generator(8)
    probes = evolens.Probes.from_noise(64, 8, seed=0, num_classes=10)
    classifier = get_encoder("digits-cnn")
    namespace = {
        # what the README leaves to the reader: a model, its data, one training step
        "latent_dim": 8, "generator": generator, "loader": range(501), "train_step": lambda batch: 0.5,
        "train_images": train.images[:500], "train_labels": train.labels[:500],
        "images": train.images[:16], "x": np.random.default_rng(0).normal(size=(60, 2)),
        "run_dir": "runs/exp2", "probes": probes, "classifier": classifier, "source_labels": np.asarray(probes.labels),
        "sample_fn": lambda p: generator(p.noise, p.labels), "save_checkpoint": None,
    }
    blocks = readme_blocks()
    assert len(blocks) >= 6
    for number, block in enumerate(blocks):
        if "runs/exp1" in block and number > 0:  # the run the first block wrote, with a held-out set beside it
            with evolens.open_run("runs/exp1") as run:
                run.add_reference("heldout", held.images[:500], labels=held.labels[:500])
        try:
            exec(compile(block, f"README python block {number + 1}", "exec"), namespace)
        finally:
            monitor = namespace.pop("monitor", None)
            if monitor is not None:  # the README's loop stops; the script that holds it would exit
                monitor.close()
    with evolens.open_run("runs/exp1") as run:
        assert run.steps().tolist() == [0, 500]
        assert any(name.startswith("quality/fid") for name in run.scalar_names())
    assert (tmp_path / "map.html").stat().st_size > 10_000
