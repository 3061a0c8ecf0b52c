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


def test_the_reference_side_is_searched_once_not_per_snapshot(copying_run, monkeypatch):
    """A live worker analyses one snapshot per call: the training spacing and the held-out items' distances to
    the training set are stored at the first call and read at the next (the same values as a fresh search)."""
    from evolens.metrics import proximity as P
    from evolens.store.derived import HELDOUT_NEAREST_TRAIN, TRAINING_SPACING

    run_dir, _ = copying_run
    calls = []
    for name in ("training_spacing", "nearest_neighbors"):
        original = getattr(P, name)
        monkeypatch.setattr(P, name, lambda *a, _o=original, _n=name, **kw: calls.append(_n) or _o(*a, **kw))
    analyses.proximity(run_dir, encoder="pixels", steps=[0])
    first = list(calls)
    assert first.count("training_spacing") == 1
    calls.clear()
    analyses.proximity(run_dir, encoder="pixels", steps=[1])
    assert "training_spacing" not in calls
    # only the snapshot's own searches: two fewer (the spacing's search of train in train, and the held-out set's)
    assert calls.count("nearest_neighbors") == first.count("nearest_neighbors") - 2
    with open_run(run_dir) as run:
        train, held = DATA.images[:400].reshape(400, -1), DATA.images[600:1000].reshape(400, -1)
        (encoder_id, source, _), = run.derived_keys(TRAINING_SPACING)
        spacing = run.derived(TRAINING_SPACING, encoder_id=encoder_id, source=source)
        np.testing.assert_allclose(spacing, np.sort(np.linalg.norm(train[:, None] - train[None], axis=2), 1)[:, 1],
                                   rtol=1e-6)
        d_held = run.derived(HELDOUT_NEAREST_TRAIN, encoder_id=encoder_id, source=source,
                             params={"heldout": run.reference_hash("heldout")})
        np.testing.assert_allclose(d_held, np.linalg.norm(held[:, None] - train[None], axis=2).min(1), rtol=1e-6)
