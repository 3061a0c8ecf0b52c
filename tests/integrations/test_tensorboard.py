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


def test_monitor_mirrors_the_run_into_tensorboard_live(tmp_path):
    import glob

    import torch

    import evolens
    from evolens.analyses import Live
    from evolens.data import digits
    from evolens.detect import Threshold

    data = digits("train")

    def sample_fn(p):
        return torch.from_numpy(data.images[:20])

    def signal(monitor, step, arrays):
        return {"signal": float(step)}

    live = Live(encoder="pixels", analyses=("quality",), metrics=("fid",), by=None, max_lag=0)
    monitor = evolens.Monitor(tmp_path / "run", sample_fn, every=3, probes=evolens.Probes.from_noise(20, 2),
                              tensorboard=tmp_path / "tb", on_snapshot=[signal], analyze=live,
                              rules=[Threshold("signal", above=4)])
    monitor.add_reference("train", data.images[:200], data.labels[:200])
    for step in range(8):
        monitor.step(step, loss=1.0 / (step + 1))
        if step == 3:  # while training runs, the scalars are in the event file already
            monitor._writer.mirrors[0]._writer.flush()
            assert [e.step for e in _read(tmp_path / "tb").Scalars("loss")] == [0, 1, 2, 3]
    monitor.close()
    assert monitor.wait_for_analysis(timeout=120)
    assert len(glob.glob(str(tmp_path / "tb" / "events.out.tfevents.*"))) == 2  # the Monitor's and the worker's
    tb = _read(tmp_path / "tb")
    assert [e.step for e in tb.Scalars("loss")] == list(range(8))
    np.testing.assert_allclose([e.value for e in tb.Scalars("loss")], [1 / (s + 1) for s in range(8)], rtol=1e-6)
    assert [e.step for e in tb.Images("samples")] == [0, 3, 6]
    assert [e.value for e in tb.Scalars("signal")] == [0.0, 3.0, 6.0]
    with evolens.open_run(tmp_path / "run") as run:
        fid = next(n for n in run.scalar_names() if n.startswith("quality/fid"))
        steps, values = run.scalars(fid)
    assert [e.step for e in tb.Scalars(fid)] == steps.tolist() == [0, 3, 6]  # the worker's scalars
    np.testing.assert_allclose([e.value for e in tb.Scalars(fid)], values, rtol=1e-6)
    texts = [e.tensor_proto.string_val[0].decode() for e in tb.Tensors("events/text_summary")]
    assert any("alert:threshold:signal" in t for t in texts)


def test_a_failing_mirror_never_stops_the_training(tmp_path):
    import torch

    import evolens

    class Broken:
        def scalars(self, step, values):
            raise OSError(28, "No space left on device")

        snapshot = event = scalars

        def close(self):
            raise OSError(28, "No space left on device")

    monitor = evolens.Monitor(tmp_path / "run", lambda p: torch.zeros(4, 3), every=2,
                              probes=evolens.Probes.from_noise(4, 2))
    monitor._writer.add_mirror(Broken())
    with pytest.warns(RuntimeWarning, match="stopped mirroring"):
        for step in range(5):
            monitor.step(step, loss=float(step))
    monitor.close()
    with open_run(tmp_path / "run") as run:
        assert run.scalars("loss")[0].tolist() == list(range(5)) and run.steps().tolist() == [0, 2, 4]
    with pytest.raises(evolens.InputError, match="tensorboard"):
        evolens.Monitor(tmp_path / "other", lambda p: torch.zeros(4, 3), tensorboard=3)
