"""A run exported to TensorBoard, read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import numpy as np
import pytest

from evolens import open_run
from evolens.cli import main
from evolens.integrations.tensorboard import export_tensorboard

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _read(logdir):
    accumulator = event_accumulator.EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0,
                                                                                 "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_export_reads_back_with_tensorboard(view_run, tmp_path):
    logdir = export_tensorboard(view_run, tmp_path / "tb")
    tb = _read(logdir)
    tags = tb.Tags()
    with open_run(view_run) as run:
        names = run.scalar_names()
        fid_name = next(n for n in names if n.startswith("quality/fid@"))
        steps, values = run.scalars(fid_name)
        n_snapshots = len(run.steps())
    assert set(names) <= set(tags["scalars"])
    read = tb.Scalars(fid_name)
    assert [e.step for e in read] == steps.tolist()
    np.testing.assert_allclose([e.value for e in read], values, rtol=1e-6)  # float32 in the event file
    images = tb.Images("samples")
    assert [e.step for e in images] == list(range(n_snapshots)) and images[0].width > 8
    texts = [e.tensor_proto.string_val[0].decode() for e in tb.Tensors("events/text_summary")]
    assert any("class 6 preservation below 0.6" in t for t in texts)
    assert any("intervention" in t and "added 20 thick sixes" in t for t in texts)
    # the embedding projector: features of the last snapshot, labels as metadata, samples as sprites
    config = (logdir / "projector_config.pbtxt").read_text()
    assert "sprite" in config and "metadata" in config
    (tensors,) = logdir.glob("*/*/tensors.tsv")  # <step>/<tag>/tensors.tsv
    assert len(tensors.read_text().splitlines()) == 30


def test_export_command(view_run, tmp_path, capsys):
    assert main(["export", "tensorboard", str(view_run), "--logdir", str(tmp_path / "tb")]) == 0
    assert "tensorboard --logdir" in capsys.readouterr().out
    assert main(["export", "tensorboard", str(tmp_path / "missing"), "--logdir", str(tmp_path / "x")]) == 2
