"""Two runs with shared probes whose samples agree early and diverge later (a planted biased phase)."""

import numpy as np
import pytest
import torch

import evolens
from evolens import InputError, Monitor, Probes
from evolens.analyses import group_members, link_runs, split

SPLIT_DISTANCE = "proximity/split_distance@pixels"


def make_split_runs(tmp_path, n_steps=12, turn=5, loss_min=9):
    rng = np.random.default_rng(0)
    probes = Probes.from_noise(32, 4, seed=3)
    base = rng.random((32, 1, 8, 8))
    private = [rng.random((32, 1, 8, 8)) for _ in range(2)]
    paths = []
    for r in range(2):
        def sample_fn(p, r=r):
            step = state["step"]
            noise_level = abs(step - turn) / n_steps  # both models closest to the shared image at `turn`
            return torch.from_numpy((1 - noise_level) * base + noise_level * private[r]).float()

        state = {}
        path = tmp_path / f"split{r}"
        with Monitor(path, sample_fn, every=1, probes=probes) as monitor:
            for step in range(n_steps):
                state["step"] = step
                monitor.step(step, heldout_loss=1.0 + 0.01 * (step - loss_min) ** 2 + 0.001 * r)
        paths.append(path)
    return paths


def test_planted_phase_is_found_and_stored(tmp_path):
    paths = make_split_runs(tmp_path)
    result = split(paths)
    assert result.computed == list(range(12)) and result.steps.tolist() == list(range(12))
    assert int(result.steps[np.argmin(result.distance)]) == 5
    assert result.report.tau_cos == 5 and result.report.tau_loss == 9 and result.report.biased_phase == (5, 9)
    assert result.report.onset_step is not None and 5 < result.report.onset_step < 9
    run = evolens.open_run(paths[1])
    steps, stored = run.scalars(SPLIT_DISTANCE)
    np.testing.assert_allclose(stored, result.distance)
    (alert,) = run.events(kind="biased_generalization_onset")
    assert alert.level == "alert" and alert.step == result.report.onset_step
    assert run.events(kind="split_analysis")[0].data["tau_loss"] == 9
    np.testing.assert_allclose(result.series("proximity/split_distance")[1], result.distance)
    run.close()
    again = split(paths)  # idempotent: read back, nothing written
    assert again.computed == [] and again.report == result.report
    np.testing.assert_array_equal(again.distance, result.distance)
    with evolens.open_run(paths[0]) as run:
        assert len(run.events(kind="split_analysis")) == 1


def test_probe_order_does_not_matter(tmp_path):
    """One run stored again with its probes in another order (samples and probe ids permuted together): the
    pairing is by probe id, so the split distance is the same; pairing by row would change it."""
    from evolens.store.run import open_run
    from evolens.store.writer import RunWriter

    paths = make_split_runs(tmp_path)
    first = split(paths)
    order = np.random.default_rng(1).permutation(32)
    shuffled = tmp_path / "split1-shuffled"
    with open_run(paths[1]) as source, RunWriter(shuffled, name="split1-shuffled") as writer:
        for step in source.steps().tolist():
            writer.write_snapshot(step, {"samples": source.samples(step)[order],
                                         "probe_ids": source.probe_ids(step)[order]})
            writer.write_scalars(step, {"heldout_loss": float(source.scalars("heldout_loss")[1][step])})
        assert not np.array_equal(source.probe_ids(0), open_run(shuffled).probe_ids(0))  # really another order
    second = split([shuffled, paths[0]])  # and the pair reversed: the distance is symmetric
    assert second.computed == first.computed
    np.testing.assert_allclose(first.distance, second.distance, rtol=1e-12)
    by_row = [np.median(1 - np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))
              for a, b in ((_standardised(paths[0], 3), _standardised(shuffled, 3)),)]
    assert abs(by_row[0] - first.distance[3]) > 0.01  # a row pairing would have given another value


def _standardised(path, step):
    from evolens.metrics.proximity import standardize_images
    from evolens.store.run import open_run

    with open_run(path) as run:
        return standardize_images(run.samples(step))


def test_link_runs(tmp_path):
    paths = make_split_runs(tmp_path)
    link_runs(paths, "celeba-splits")
    assert group_members(paths[0]) == [p.resolve() for p in paths]
    with pytest.raises(InputError, match="no run group 'other'"):
        group_members(paths[0], "other")


def test_errors(tmp_path):
    paths = make_split_runs(tmp_path, n_steps=3)
    with pytest.raises(InputError, match="at least 2 runs"):
        split(paths[:1])
    with Monitor(tmp_path / "other", lambda p: torch.zeros(32, 1, 8, 8), every=1,
                 probes=Probes.from_noise(32, 4, seed=9)) as monitor:
        monitor.step(0)
    with pytest.raises(InputError, match="lacks probes"):
        split([paths[0], tmp_path / "other"])
