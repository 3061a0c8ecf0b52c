"""The proximity analysis on a run whose later snapshots copy the training set: every memorisation metric moves
the way its definition says, the bins of the NN divergence stay fixed, and each sample's nearest training items
are stored as evidence."""

from __future__ import annotations

import numpy as np
import pytest

from evolens import analyses, names as N, open_run
from evolens.analyses.proximity import NEAREST_K, nearest_training
from evolens.data import digits
from evolens.store import RunWriter

DATA = digits("train")


@pytest.fixture
def copying_run(tmp_path):
    """Step 0: 80 held-out digits (fresh samples); step 1: 80 training digits with faint noise (copies)."""
    train, fresh = DATA.images[:400], DATA.images[1000:1080]
    held = DATA.images[600:1000]
    rng = np.random.default_rng(0)
    copied_rows = rng.choice(400, 80, replace=False)
    copies = train[copied_rows] + rng.normal(scale=1e-3, size=(80, 1, 8, 8)).astype(np.float32)
    with RunWriter(tmp_path / "run") as writer:
        writer.write_reference("train", train)
        writer.write_reference("heldout", held)
        writer.write_snapshot(0, {"samples": fresh})
        writer.write_snapshot(1, {"samples": copies})
    return tmp_path / "run", copied_rows


def test_memorisation_metrics_and_evidence(copying_run):
    run_dir, copied_rows = copying_run
    result = analyses.proximity(run_dir, encoder="pixels")

    def value(metric, step):
        return result.values[step][N.scalar_name(N.PROXIMITY, metric, encoder=result.encoder_id, reference="train")]

    assert value(N.COPY_RATE, 0) < 0.1 and value(N.COPY_RATE, 1) == 1.0
    assert value(N.AUTHENTICITY, 0) > 0.3 and value(N.AUTHENTICITY, 1) == 0.0
    assert value(N.EXTRACTION_RATE, 0) < 0.1 and value(N.EXTRACTION_RATE, 1) == 1.0
    assert abs(value(N.DATA_COPYING_CT, 0)) < 4 and value(N.DATA_COPYING_CT, 1) < -5
    for step in (0, 1):
        assert value(N.NN_DIVERGENCE_LOW, step) <= value(N.NN_DIVERGENCE, step) <= value(N.NN_DIVERGENCE_HIGH, step)
    assert value(N.NN_DIVERGENCE_HIGH, 0) < value(N.NN_DIVERGENCE_LOW, 1)
    distances, indices = nearest_training(run_dir, 1)
    assert distances.shape == indices.shape == (80, NEAREST_K)
    assert indices[:, 0].tolist() == copied_rows.tolist() and (distances[:, 0] < 0.01).all()
    assert (np.diff(distances, axis=1) >= 0).all()
    assert nearest_training(run_dir, 0, encoder="pixels")[1].shape == (80, NEAREST_K)


def test_read_back_and_small_snapshots_skip_ct(tmp_path):
    with RunWriter(tmp_path / "run") as writer:
        writer.write_reference("train", DATA.images[:200])
        writer.write_reference("heldout", DATA.images[200:400])
        writer.write_snapshot(0, {"samples": DATA.images[500:520]})
    first = analyses.proximity(tmp_path / "run")
    assert "data_copying_ct" in first.skipped and "60" in first.skipped["data_copying_ct"]
    again = analyses.proximity(tmp_path / "run")
    assert again.computed == [] and again.values == first.values
    with open_run(tmp_path / "run") as run:
        assert nearest_training(run, 0) is not None
