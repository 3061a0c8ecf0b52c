"""Embedding on a real local Ray (``ray.init(num_cpus=2)``): the same features as one process, for a run and for
a .npy file written to shards through the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from evolens import analyses
from evolens.cli import main
from evolens.data import mnist
from evolens.encoders import get_encoder
from evolens.errors import InputError
from evolens.store.derived import FEATURES
from evolens.store.run import open_run
from evolens.store.shards import ShardedFeatures
from evolens.store.writer import RunWriter

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

TOLERANCE = 1e-5  # float32 rounding: another batch composition and thread count change GEMM reduction orders


@pytest.fixture(scope="module")
def encoder():
    return get_encoder("digits-cnn", device="cpu")  # a real trained CNN (cached once per checkout)


def _run(path, data, n_steps: int = 4):
    with RunWriter(path, name=path.name) as writer:
        for step in range(n_steps):
            writer.write_snapshot(step, {"samples": data.images[step * 50:(step + 1) * 50]})
        writer.write_reference("train", data.images[200:700], data.labels[200:700])
    return path


def test_ray_embedding_of_a_run_equals_the_local_one(tmp_path, encoder):
    data = mnist("train")
    on_ray, local = _run(tmp_path / "ray", data), _run(tmp_path / "local", data)
    got = analyses.embedding(on_ray, encoder=encoder, engine="ray", workers=2, progress=False)
    expected = analyses.embedding(local, encoder=encoder, progress=False)
    assert got.computed == expected.computed == 5  # 4 snapshots and the reference, all embedded now
    for step, features in expected.snapshots.items():
        np.testing.assert_allclose(got.snapshots[step], features, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(got.references["train"], expected.references["train"], atol=TOLERANCE, rtol=0)
    with open_run(on_ray) as run:  # stored in the run like local features: read back, not embedded again
        stored = run.derived(FEATURES, encoder_id=encoder.id, source=run.reference_hash("train"))
        np.testing.assert_array_equal(stored, got.references["train"])
    again = analyses.embedding(on_ray, encoder=encoder, engine="ray", progress=False)
    assert again.computed == 0
    with pytest.raises(InputError, match="engine: expected one of"):
        analyses.embedding(on_ray, encoder=encoder, engine="dask")


def test_cli_embeds_a_npy_file_into_shards_on_ray(tmp_path, encoder):
    images = mnist("train").images[:700]
    np.save(tmp_path / "images.npy", images)
    assert main(["embed", str(tmp_path / "images.npy"), "--encoder", "digits-cnn", "--engine", "ray",
                 "--workers", "2", "--batch-size", "64", "--out", str(tmp_path / "shards"), "--quiet"]) == 0
    assert main(["embed", str(tmp_path / "images.npy"), "--encoder", "digits-cnn", "--batch-size", "64",
                 "--out", str(tmp_path / "local"), "--quiet"]) == 0
    on_ray, local = ShardedFeatures(tmp_path / "shards"), ShardedFeatures(tmp_path / "local")
    assert on_ray.shape == local.shape == (700, encoder.dim)
    np.testing.assert_allclose(on_ray.load(), local.load(), atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(local.load(), encoder.encode(images), atol=TOLERANCE, rtol=0)
    assert main(["embed", str(tmp_path / "images.npy"), "--out", str(tmp_path / "shards"), "--quiet"]) == 2
    assert main(["embed", str(tmp_path / "images.npy"), "--quiet"]) == 2  # --out missing


def test_bad_ray_arguments_are_typed_errors_before_ray_starts(tmp_path):
    from evolens.analyses.ray_engine import NpySource, embed_sources

    np.save(tmp_path / "x.npy", np.zeros((4, 1, 8, 8), np.float32))
    source = NpySource(str(tmp_path / "x.npy"), 4)
    encoder = get_encoder("pixels")
    for kwargs, message in (({"workers": 0}, "workers"), ({"workers": "two"}, "workers"),
                            ({"batch_size": -1}, "batch_size"), ({"num_gpus_per_worker": -1}, "num_gpus_per_worker")):
        with pytest.raises(InputError, match=message):
            embed_sources(encoder, [source], **kwargs)
    with pytest.raises(InputError, match="sources: expected NpySource"):
        embed_sources(encoder, ["x.npy"])
    with pytest.raises(InputError, match="workers"):
        analyses.embedding(tmp_path, encoder="pixels", engine="ray", workers=0)
    assert not ray.is_initialized()
