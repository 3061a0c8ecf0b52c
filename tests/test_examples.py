"""The README's stack examples are the scripts in examples/, word for word, and each runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import evolens

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def readme_scripts() -> dict[str, str]:
    """{examples/<name>.py: code} for every README python block that starts with its file name."""
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    return {m.group(1): block for block in blocks if (m := re.match(r"# (examples/\S+\.py)", block))}


def test_readme_blocks_are_the_example_scripts():
    scripts = readme_scripts()
    assert set(scripts) >= {"examples/lightning_train.py", "examples/diffusers_train.py"}
    for path, block in scripts.items():
        assert (ROOT / path).read_text() == block, f"README block differs from {path}"
    for command in re.findall(r"examples/\w+\.py", README):  # every script the README names exists
        assert (ROOT / command).is_file(), command


def _run(script: str, run_dir: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(ROOT / script), str(run_dir)], capture_output=True, text=True,
                          timeout=300, cwd=run_dir.parent, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_the_lightning_example_runs_as_written(tmp_path):
    pytest.importorskip("pytorch_lightning")
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    _run("examples/lightning_train.py", tmp_path / "run")
    with evolens.open_run(tmp_path / "run") as run:
        assert run.steps().tolist() == [0, 50, 100, 150, 200]
        steps, loss = run.scalars("loss")
        assert steps.tolist() == list(range(1, 201)) and loss[-20:].mean() < loss[:20].mean()
        assert run.reference_names() == ["train"]
    tb = event_accumulator.EventAccumulator(str(tmp_path / "run-tensorboard"), size_guidance={"scalars": 0})
    tb.Reload()
    assert len(tb.Scalars("loss")) == 200


@pytest.mark.slow
def test_the_diffusers_example_runs_as_written(tmp_path):
    pytest.importorskip("diffusers")
    _run("examples/diffusers_train.py", tmp_path / "run")
    with evolens.open_run(tmp_path / "run") as run:
        assert run.steps().tolist() == [0, 40, 80, 120]
        samples = run.samples(120)
        assert samples.shape == (32, 1, 8, 8) and np.isfinite(samples).all()
        assert 0.0 <= samples.min() and samples.max() <= 1.0
        assert len(run.scalars("loss")[0]) == 121
