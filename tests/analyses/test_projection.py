import numpy as np
import pytest
import torch

import evolens
from evolens import InputError, Monitor, Probes
from evolens.encoders import PixelsEncoder
from evolens.analyses import load_projection, projection
from evolens.views import projection_figure


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    from evolens.data import digits

    data = digits("all")
    path = tmp_path_factory.mktemp("runs") / "run"
    probes = Probes.from_noise(60, 4, labels=data.labels[:60])
    state = {}
    monitor = Monitor(path, lambda p: torch.from_numpy(state["frame"]), every=1, probes=probes)
    rng = np.random.default_rng(0)
    for step in range(4):
        mix = step / 3
        state["frame"] = (mix * data.images[:60] + (1 - mix) * rng.random((60, 1, 8, 8))).astype(np.float32)
        monitor.step(step)
    monitor.add_reference("train", data.images[100:700], data.labels[100:700])
    monitor.close()
    return path


def test_project_run_stores_a_readable_map(small_run):
    result = projection(small_run, encoder=PixelsEncoder(device="cpu"), max_reference=300, perplexity=10, progress=False)
    assert result.steps == [0, 1, 2, 3] and result.coords[2].shape == (60, 2)
    assert result.reference_coords.shape == (300, 2) and result.reference_labels.shape == (300,)
    assert {"knn_recall", "trustworthiness", "temporal_stability"} <= set(result.scores)
    loaded = load_projection(small_run)
    assert loaded.projection_id == result.projection_id and loaded.layout == "free"
    np.testing.assert_array_equal(loaded.coords[3], result.coords[3])
    np.testing.assert_array_equal(loaded.reference_labels, result.reference_labels)
    assert loaded.labels[0].tolist() == evolens.open_run(small_run).labels(0).tolist()
    event = evolens.open_run(small_run).events(kind="projection")[-1]
    assert event.data["encoder_id"] == result.encoder_id


def test_figure_has_one_frame_per_snapshot_and_a_slider(small_run):
    projection(small_run, encoder=PixelsEncoder(device="cpu"), max_reference=200, perplexity=10, progress=False)
    figure = projection_figure(load_projection(small_run))
    assert [frame.name for frame in figure.frames] == ["0", "1", "2", "3"]
    assert len(figure.layout.sliders[0].steps) == 4
    assert figure.data[0].name == "reference data" and figure.data[1].name == "samples at step 0"
    html = figure.to_html(include_plotlyjs=False)
    assert "samples at step 3" in html


def test_errors(small_run, tmp_path):
    with pytest.raises(InputError, match="no reference set 'heldout'"):
        projection(small_run, encoder=PixelsEncoder(device="cpu"), reference="heldout", progress=False)
    with Monitor(tmp_path / "empty", lambda p: p.noise, every=1, probes=Probes.from_noise(3, 2)):
        pass
    with pytest.raises(InputError, match="no stored projection"):
        load_projection(tmp_path / "empty")


def test_projection_is_idempotent_and_its_map_can_be_extended_later(small_run):
    from evolens.analyses.embedding import embedding
    from evolens.analyses.projection import load_projection_model

    encoder = PixelsEncoder(device="cpu")
    first = projection(small_run, encoder=encoder, max_reference=150, perplexity=10, n_iter=80, progress=False)
    calls = encoder.calls
    with evolens.open_run(small_run) as run:
        n_events = len(run.events())
    second = projection(small_run, encoder=encoder, max_reference=150, perplexity=10, n_iter=80, progress=False)
    assert first.computed and not second.computed and encoder.calls == calls
    assert second.projection_id == first.projection_id
    np.testing.assert_array_equal(second.coords[2], first.coords[2])
    with evolens.open_run(small_run) as run:
        assert len(run.events()) == n_events
    model = load_projection_model(small_run, first.projection_id)  # as a restarted worker would
    np.testing.assert_allclose(model.embedding_[3], first.coords[3], atol=1e-6)
    features = embedding(small_run, encoder=encoder, steps=[3], reference=False, progress=False).snapshots[3]
    with evolens.open_run(small_run) as run:
        placed = model.extend(features, run.probe_ids(3))
    assert placed.shape == (60, 2) and np.isfinite(placed).all()
