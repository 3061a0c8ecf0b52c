import numpy as np
import pytest
import torch

import evolens
from evolens import InputError, Monitor, NotARunError, Probes, RunLockedError


def test_three_lines_record_snapshots_and_scalars(make_monitor, generator, probes):
    monitor = make_monitor(every=3)
    results = [monitor.step(step, loss=1.0 / (step + 1)) for step in range(10)]
    assert [r.step for r in results if r.captured] == [0, 3, 6, 9] == monitor.captured_steps
    assert all(r.alerts == [] and not r.should_pause for r in results)
    run = monitor.open()
    assert run.steps().tolist() == [0, 3, 6, 9]
    with torch.no_grad():
        expected = generator(probes.noise).numpy()
    np.testing.assert_allclose(run.samples(6), expected, rtol=0, atol=0)
    assert run.probe_ids(6).tolist() == probes.ids.tolist()
    assert run.labels(0).tolist() == [0, 1, 2, 0, 1, 2]
    assert run.scalars("loss")[0].tolist() == list(range(10))
    snap = run.snapshot(9)
    assert snap.seed == 7 and snap.capture_seconds > 0 and snap.versions["torch"] == torch.__version__
    assert run.config["probes"]["n"] == 6 and run.config["schedule"] == "Every(k=3, start=0)"


def test_sample_fn_may_return_labels_latents_and_more(make_monitor, generator):
    def sample_fn(p):
        return {"samples": generator(p.noise), "labels": torch.arange(6) % 2, "latents": p.noise, "score": torch.ones(6)}

    monitor = make_monitor(every=1, sample_fn=sample_fn)
    monitor.step(0)
    run = monitor.open()
    assert run.labels(0).tolist() == [0, 1, 0, 1, 0, 1]
    assert run.array(0, "latents").shape == (6, 8) and run.array(0, "score").tolist() == [1.0] * 6


def test_sampling_leaves_the_training_random_stream_untouched(make_monitor, generator):
    def draws(monitor=None):
        torch.manual_seed(0)
        np.random.seed(0)
        values = []
        for step in range(6):
            values.append((torch.rand(1).item(), np.random.rand()))
            if monitor is not None:
                monitor.step(step)
        return values

    def noisy_sample_fn(p):  # a sampler that draws from the global RNGs, like many DDPM samplers
        return generator(torch.randn(6, 8)) + float(np.random.rand())

    monitor = make_monitor(every=1, sample_fn=noisy_sample_fn)
    assert draws(monitor) == draws(None)
    run = monitor.open()
    # ... and it draws the same noise at every snapshot: the model does not change, so neither do samples.
    np.testing.assert_array_equal(run.samples(0), run.samples(5))


def test_model_is_sampled_in_eval_mode_and_restored(make_monitor, generator):
    modes = []

    def sample_fn(p):
        modes.append(generator.training)
        return generator(p.noise)

    generator.train()
    monitor = make_monitor(every=1, sample_fn=sample_fn, model=generator)
    monitor.step(0)
    assert modes == [False] and generator.training


def test_resume_skips_captured_steps(make_monitor):
    first = make_monitor(every=2)
    for step in range(5):
        first.step(step, loss=1.0)
    first.close()
    second = make_monitor(every=2)
    assert second.captured_steps == [0, 2, 4]
    assert [second.step(s, loss=2.0).captured for s in range(3, 8)] == [False, False, False, True, False]
    run = second.open()
    assert run.steps().tolist() == [0, 2, 4, 6]
    assert run.scalars("loss")[1].tolist() == [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    assert run.events(kind="resume")[0].step == 4


def test_resume_with_other_probes_is_refused_after_close(tmp_path, generator, probes):
    with Monitor(tmp_path / "r", lambda p: generator(p.noise), every=1, probes=probes) as monitor:
        monitor.step(0)
    other = Probes.from_noise(6, 8, seed=8)
    with pytest.raises(InputError, match="probes: expected the probes this run was captured with"):
        Monitor(tmp_path / "r", lambda p: generator(p.noise), every=1, probes=other)
    # The refused monitor released the run: the right probes can resume it.
    with Monitor(tmp_path / "r", lambda p: generator(p.noise), every=1, probes=probes) as monitor:
        assert monitor.step(1).captured


def test_second_live_writer_is_refused(make_monitor):
    make_monitor()
    with pytest.raises(RunLockedError, match="is being captured by pid"):
        make_monitor()


def test_non_increasing_steps(make_monitor):
    monitor = make_monitor()
    monitor.step(5)
    with pytest.raises(InputError, match=r"greater than the previous one \(5\), received 5"):
        monitor.step(5)
    with pytest.raises(InputError, match="received 3"):
        monitor.step(3)
    with pytest.raises(InputError, match="non-negative integer"):
        monitor.step(-1)
    with pytest.raises(InputError, match="received float"):
        monitor.step(6.0)


def test_wrong_sample_shape_vs_earlier_snapshots(make_monitor, generator):
    shapes = iter([(6, 1, 4, 4), (6, 1, 4, 5)])
    monitor = make_monitor(every=1, sample_fn=lambda p: torch.zeros(next(shapes)))
    monitor.step(0)
    with pytest.raises(InputError, match=r"samples: expected shape \(n, 1, 4, 4\) as in earlier snapshots.*\(6, 1, 4, 5\)"):
        monitor.step(1)
    assert monitor.open().steps().tolist() == [0]


def test_wrong_sample_shape_is_caught_across_a_resume(tmp_path, probes):
    with Monitor(tmp_path / "r", lambda p: torch.zeros(6, 1, 4, 4), every=1, probes=probes) as monitor:
        monitor.step(0)
    with Monitor(tmp_path / "r", lambda p: torch.zeros(6, 3, 4, 4), every=1, probes=probes) as monitor:
        with pytest.raises(InputError, match=r"\(n, 1, 4, 4\) as in earlier snapshots"):
            monitor.step(1)


@pytest.mark.parametrize(
    "output, match",
    [
        (torch.zeros(5, 1, 4, 4), r"expected 6 samples \(one per probe\)"),
        (torch.zeros(6), r"shape \(n, \.\.\.\)"),
        ({"images": torch.zeros(6, 1)}, "'samples' key"),
        ((torch.zeros(6, 2), torch.zeros(6), torch.zeros(6)), "tuple of 3"),
        ({"samples": torch.zeros(6, 2), "labels": torch.zeros(5)}, r"\['labels'\]: expected 6 rows"),
        (np.array([["a"]] * 6), "numeric"),
    ],
    ids=["count", "rank", "no-samples-key", "long-tuple", "label-count", "strings"],
)
def test_bad_sample_fn_output(make_monitor, output, match):
    monitor = make_monitor(every=1, sample_fn=lambda p: output)
    with pytest.raises(InputError, match=match):
        monitor.step(0)
    assert monitor.open().steps().tolist() == []


def test_nonfinite_samples_are_stored_and_flagged(make_monitor, generator):
    def sample_fn(p):
        out = generator(p.noise)
        out[0, 0, 0, 0] = float("nan")
        out[1, 0, 0, 0] = float("inf")
        return out

    monitor = make_monitor(every=1, sample_fn=sample_fn)
    with pytest.warns(RuntimeWarning, match="2 non-finite values"):
        monitor.step(0)
    run = monitor.open()
    assert np.isnan(run.samples(0)[0, 0, 0, 0]) and run.snapshot(0).n_nonfinite == 2
    (event,) = run.events(kind="nonfinite_samples")
    assert event.level == "warning" and event.step == 0 and event.data["n_nonfinite"] == 2


def test_nonfinite_scalar_warns_once_per_series(make_monitor):
    monitor = make_monitor(every=100)
    with pytest.warns(RuntimeWarning, match="'loss' is not finite"):
        monitor.step(1, loss=float("nan"))
    monitor.step(2, loss=float("nan"))
    run = monitor.open()
    assert len(run.events(kind="nonfinite_scalar")) == 1
    assert np.isnan(run.scalars("loss")[1]).all()


def test_log_and_snapshot_on_demand(make_monitor):
    monitor = make_monitor(every=100)
    with pytest.raises(InputError, match="has not been called"):
        monitor.log(test_loss=1.0)
    monitor.step(1, loss=3.0)
    monitor.log(test_loss=2.5)
    monitor.log(0, test_loss=2.9)
    assert monitor.snapshot(1) is True and monitor.snapshot(1) is False
    run = monitor.open()
    assert run.scalars("test_loss")[0].tolist() == [0, 1] and run.steps().tolist() == [1]


def test_checkpoints_are_referenced_by_path_and_hash(make_monitor, tmp_path, generator):
    def checkpoint(step):
        path = tmp_path / f"ckpt_{step}.pt"
        torch.save(generator.state_dict(), path)
        return path

    monitor = make_monitor(every=1, checkpoint=checkpoint)
    monitor.step(0)
    snap = monitor.open().snapshot(0)
    assert snap.checkpoint_path == str((tmp_path / "ckpt_0.pt").resolve())
    assert snap.checkpoint_hash == evolens.store.file_hash(tmp_path / "ckpt_0.pt")
    bad = make_monitor("bad", every=1, checkpoint=lambda step: tmp_path / "nope.pt")
    with pytest.raises(InputError, match="checkpoint: expected checkpoint\\(0\\) to return an existing file"):
        bad.step(0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sample_fn": "not callable"}, "sample_fn: expected a callable"),
        ({"probes": "probes"}, "probes: expected an evolens.Probes"),
        ({"every": 0}, "every: expected a positive integer"),
        ({"checkpoint": "ckpt.pt"}, "checkpoint: expected a callable"),
    ],
    ids=["sample_fn", "probes", "every", "checkpoint"],
)
def test_bad_monitor_arguments(tmp_path, kwargs, match):
    args = {"sample_fn": lambda p: None, **kwargs}
    with pytest.raises(InputError, match=match):
        Monitor(tmp_path / "r", **args)


def test_directory_that_is_not_a_run(tmp_path):
    (tmp_path / "data.csv").write_text("1,2")
    with pytest.raises(NotARunError, match="has files but no runs.sqlite"):
        Monitor(tmp_path, lambda p: None)


def test_shard_probes_in_one_process_samples_everything_here(make_monitor, generator, probes, tmp_path):
    monitor = make_monitor(every=1, shard_probes=True)
    monitor.step(0)
    with torch.no_grad():
        np.testing.assert_array_equal(monitor.open().samples(0), generator(probes.noise).numpy())
    with pytest.raises(InputError, match="shard_probes"):
        Monitor(tmp_path / "other", lambda p: torch.zeros(2, 3), shard_probes=True)
