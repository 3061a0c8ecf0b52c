import numpy as np
import pytest
import torch

import evolens
from evolens import InputError, Monitor, Probes
from evolens.analyses import embedding
from evolens.encoders import CallableEncoder, PixelsEncoder


@pytest.fixture
def run_dir(tmp_path):
    probes = Probes.from_noise(5, 16, seed=0)
    state = {"scale": 1.0}
    monitor = Monitor(tmp_path / "run", lambda p: state["scale"] * torch.sigmoid(p.noise).reshape(5, 1, 4, 4),
                      every=1, probes=probes)
    for step in range(3):
        state["scale"] = 1.0 - 0.1 * step
        monitor.step(step)
    monitor.add_reference("train", np.random.default_rng(0).random((20, 1, 4, 4)).astype(np.float32))
    monitor.close()
    return tmp_path / "run"


def counting_encoder():
    return CallableEncoder(lambda x: x.flatten(1)[:, :3] * 2.0, dim=3, name="first3", device="cpu")


def test_embeds_everything_once(run_dir):
    encoder = counting_encoder()
    first = embedding(run_dir, encoder=encoder, progress=False)
    assert sorted(first.snapshots) == [0, 1, 2] and list(first.references) == ["train"]
    assert first.computed == 4 and encoder.calls == 4
    run = evolens.open_run(run_dir)
    np.testing.assert_allclose(first.snapshots[1], run.samples(1).reshape(5, -1)[:, :3] * 2.0, rtol=1e-6)
    second = embedding(run_dir, encoder=encoder, progress=False)
    assert second.computed == 0 and encoder.calls == 4  # nothing embedded twice
    np.testing.assert_array_equal(second.snapshots[2], first.snapshots[2])
    assert run.feature_encoders() == [encoder.id]


def test_only_new_snapshots_are_embedded(run_dir):
    encoder = counting_encoder()
    embedding(run_dir, encoder=encoder, progress=False)
    monitor = Monitor(run_dir, lambda p: torch.zeros(5, 1, 4, 4), every=1, probes=Probes.from_noise(5, 16, seed=0))
    monitor.step(3)
    monitor.close()
    result = embedding(run_dir, encoder=encoder, progress=False)
    assert result.computed == 1 and sorted(result.snapshots) == [0, 1, 2, 3]


def test_other_encoder_ids_do_not_share_the_cache(run_dir):
    embedding(run_dir, encoder=counting_encoder(), progress=False)
    other = CallableEncoder(lambda x: x.flatten(1)[:, :3], dim=3, name="first3", version="2", device="cpu")
    assert embedding(run_dir, encoder=other, progress=False).computed == 4


def test_nonfinite_snapshots_are_skipped_with_a_warning(tmp_path):
    monitor = Monitor(tmp_path / "r", lambda p: torch.full((2, 1, 2, 2), float("nan")), every=1,
                      probes=Probes.from_noise(2, 3))
    with pytest.warns(RuntimeWarning):
        monitor.step(0)
    monitor.close()
    with pytest.warns(RuntimeWarning, match=r"steps \[0\] have non-finite samples"):
        result = embedding(tmp_path / "r", encoder=PixelsEncoder(device="cpu"), progress=False)
    assert result.skipped == [0] and result.snapshots == {}


def test_pca_pixels_fit_on_the_train_reference(run_dir):
    """With two references, the PCA is fitted on "train" — not on the first one stored ("aaa-other", whose
    pixels vary along other directions): the features equal a PCA fitted on train by hand."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(1)
    other = np.zeros((20, 1, 4, 4), np.float32)
    other[:, 0, 0, :] = rng.random((20, 4))  # varies only along the first row of pixels
    with evolens.open_run(run_dir) as run:
        run.add_reference("aaa-other", other)
        train = run.reference("train").images.reshape(20, -1)
    result = embedding(run_dir, encoder="pixels", pca=3, device="cpu", progress=False)
    assert result.references["train"].shape == (20, 3) and "pca3" in result.encoder_id
    expected = PCA(n_components=3, random_state=0).fit(train).transform(train)
    got = np.asarray(result.references["train"], dtype=np.float64)
    for j in range(3):  # components are defined up to sign
        assert min(np.abs(got[:, j] - expected[:, j]).max(), np.abs(got[:, j] + expected[:, j]).max()) < 1e-4


def test_selected_steps_and_errors(run_dir):
    result = embedding(run_dir, encoder=counting_encoder(), steps=[2], reference=False, progress=False)
    assert list(result.snapshots) == [2] and result.references == {}
    with pytest.raises(InputError, match=r"steps: no snapshots at \[7\]"):
        embedding(run_dir, encoder=counting_encoder(), steps=[7], progress=False)
    with pytest.raises(InputError, match="no reference sets \\['val'\\]"):
        embedding(run_dir, encoder=counting_encoder(), reference=["val"], progress=False)
