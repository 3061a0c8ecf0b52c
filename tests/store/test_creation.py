"""Creating a run is atomic: a process killed at any point of creation leaves a directory that either is not
a run yet (and a new writer simply creates it there) or is a complete, resumable run."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import evolens
from evolens.store import RunWriter, is_run_dir

CHILD = Path(__file__).with_name("creation_child.py")


def _create(run_dir: Path, kill_at: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHILD), str(run_dir), str(kill_at)], capture_output=True, text=True,
                          timeout=120)


def _check_usable(run_dir: Path) -> str:
    """'new' when the directory is not a run yet, 'run' when it is one; either way a writer works there."""
    state = "run" if is_run_dir(run_dir) else "new"
    if state == "run":
        with evolens.open_run(run_dir) as run:  # a complete run: its row, config and schema are there
            assert run.name == "created" and run.config == {"lr": 0.1}
    with RunWriter(run_dir, kind="capture", name="created", config={"lr": 0.1}) as writer:
        writer.write_snapshot(0, {"samples": np.zeros((2, 3), np.float32)})
    with evolens.open_run(run_dir) as run:
        assert run.steps().tolist() == [0] and run.name == "created"
    leftovers = sorted(p.name for p in run_dir.iterdir())
    assert leftovers == ["arrays", "runs.sqlite", "writer.lock"] or leftovers == [
        "arrays", "runs.sqlite", "runs.sqlite-shm", "runs.sqlite-wal", "writer.lock"], leftovers
    return state


def test_a_kill_at_any_point_of_creation_leaves_no_half_run(tmp_path):
    done = _create(tmp_path / "probe", 0)
    assert done.returncode == 0, done.stderr
    total = int(done.stdout.split()[-1])
    assert total > 50  # the profile really sees creation
    points = sorted(set(np.linspace(1, total, 24).round().astype(int).tolist()))
    states = {}
    for k in points:
        run_dir = tmp_path / f"kill{k}"
        killed = _create(run_dir, k)
        assert killed.returncode == -signal.SIGKILL, (k, killed.stderr)
        states[k] = _check_usable(run_dir)
    # Early kills leave no run, late ones a complete run: both kinds of point were exercised.
    assert set(states.values()) == {"new", "run"}, states


@pytest.mark.parametrize("leftover", ["writer.lock", "runs.sqlite.creating-999999-abcd1234"])
def test_leftovers_of_a_killed_creation_do_not_block_a_new_run(tmp_path, leftover):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / leftover).write_text("")
    monitor = evolens.Monitor(run_dir, lambda p: p.noise, every=1, probes=evolens.Probes.from_noise(2, 3))
    monitor.step(0)
    monitor.close()
    assert sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("runs.sqlite-")) == [
        "arrays", "runs.sqlite", "writer.lock"]
