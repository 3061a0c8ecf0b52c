"""Runs written by evolens 0.1 (schema 1, derived arrays under made-up keys in ``features``) still open: they
are upgraded once, in one transaction, and read like new runs. ``data/run-v0.1.tar.gz`` was written by
evolens 0.1.0 (commit 9b343a9): 3 snapshots, a labelled reference, quality scalars and a projection."""

from __future__ import annotations

import sqlite3
import tarfile
from pathlib import Path

import numpy as np
import pytest

import evolens
from evolens import analyses
from evolens.store import RunWriter
from evolens.views import data as views

ARCHIVE = Path(__file__).with_name("data") / "run-v0.1.tar.gz"


@pytest.fixture
def old_run(tmp_path) -> Path:
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "run-v0.1"


def _schema_version(run_dir: Path) -> int:
    conn = sqlite3.connect(run_dir / "runs.sqlite")
    try:
        return int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
    finally:
        conn.close()


def test_a_0_1_run_opens_and_reads_as_before(old_run):
    assert _schema_version(old_run) == 1
    with evolens.open_run(old_run) as run:
        assert run.name == "v0.1 run" and run.config["lr"] == 0.01
        assert run.steps().tolist() == [0, 2, 4]
        assert run.samples(2).shape == (12, 1, 4, 4) and run.probe_ids(0).shape == (12,)
        assert run.reference("train").images.shape == (40, 1, 4, 4)
        steps, fid = run.scalars("quality/fid")  # 0.1 names (no context) still read
        assert steps.tolist() == [0, 2, 4] and np.isfinite(fid).all()
        # Only real features are listed as encoders; 0.1's FID statistics and map keys became typed rows.
        assert run.feature_encoders() == ["pixels@native-cnative"]
        assert [e.kind for e in run.events(kind="intervention")] == ["intervention"]
    assert _schema_version(old_run) == 2


def test_a_0_1_projection_is_readable_by_the_views(old_run):
    stored = analyses.load_projection(old_run)
    assert stored.steps == [0, 2, 4] and stored.coords[4].shape == (12, 2)
    assert stored.reference_coords.shape == (20, 2) and stored.reference_labels.shape == (20,)
    with evolens.open_run(old_run) as run:
        meta = views.projection_meta(run)
        assert meta["projection_id"] == stored.projection_id and len(meta["bounds"]) == 4
        points = views.projection_points(run, meta, 2)
        assert len(points["x"]) == 12


def test_a_0_1_run_can_be_resumed_and_analysed(old_run):
    with RunWriter(old_run, kind="capture") as writer:
        writer.write_snapshot(6, {"samples": np.zeros((12, 1, 4, 4), np.float32),
                                  "probe_ids": evolens.open_run(old_run).probe_ids(0)})
    result = analyses.quality(old_run, encoder="pixels", metrics=("fid",), by=None, progress=False)
    assert sorted(result.values) == [0, 2, 4, 6]
    # The 0.1 FID statistics of the reference were migrated and are reused, not recomputed.
    with evolens.open_run(old_run) as run:
        assert "quality/fid@pixels@native-cnative~train" in run.scalar_names()
