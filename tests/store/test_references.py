"""Named references stored once outside any run: embedded once, used by two runs, statistics streamed."""

from __future__ import annotations

import numpy as np
import pytest

from evolens import analyses
from evolens.cli import main
from evolens.data import digits
from evolens.encoders import get_encoder
from evolens.errors import InputError
from evolens.metrics.quality import FeatureStatistics
from evolens.store.references import (NamedReference, add_named_reference, find_shared_features, named_references,
                                      use_named_reference)
from evolens.store.writer import RunWriter


def counting_pixels():
    """The pixels encoder, counting the images it embeds (to see that a shared reference is embedded once)."""
    encoder = get_encoder("pixels")
    encoder.images = 0
    encode = encoder.encode

    def counted(images, batch_size=None, progress=False):
        encoder.images += len(images)
        return encode(images, batch_size, progress)

    encoder.encode = counted
    return encoder


def test_a_named_reference_used_by_two_runs_is_embedded_once(tmp_path):
    data = digits("train")
    encoder = counting_pixels()
    store = tmp_path / "store"
    reference = add_named_reference("digits-train", data.images[:600], data.labels[:600], encoder=encoder,
                                    store=store, batch_size=50, progress=False)
    assert encoder.images == 600 and reference.encoders() == [encoder.id]
    features = reference.features(encoder.id)
    assert features.shape == (600, 64) and len(features.rows) == 1
    np.testing.assert_allclose(features.load(), get_encoder("pixels").encode(data.images[:600]), atol=1e-6)
    # FID statistics streamed over the shards equal the ones of all features at once
    state = FeatureStatistics.from_state(reference.fid_statistics(encoder.id))
    expected = FeatureStatistics().update(features.load())
    np.testing.assert_allclose(state.mean, expected.mean, atol=1e-9)
    np.testing.assert_allclose(state.cov, expected.cov, atol=1e-9)
    # adding it again (same content, same encoder) embeds nothing; other content under the name is refused
    add_named_reference("digits-train", data.images[:600], data.labels[:600], encoder=encoder, store=store,
                        progress=False)
    assert encoder.images == 600
    with pytest.raises(InputError, match="other content"):
        add_named_reference("digits-train", data.images[:500], encoder=encoder, store=store, progress=False)
    # two runs use it: their snapshots are embedded, the reference never again
    import os

    os.environ["EVOLENS_REFERENCES"] = str(store)
    try:
        for name in ("a", "b"):
            with RunWriter(tmp_path / name, name=name) as writer:
                writer.write_snapshot(0, {"samples": data.images[700:740]})
            assert use_named_reference(tmp_path / name, "digits-train", as_name="train") == "train"
            result = analyses.embedding(tmp_path / name, encoder=encoder, progress=False)
            np.testing.assert_array_equal(result.references["train"], features.load())
            assert result.computed == 1  # the snapshot only
        assert encoder.images == 600 + 2 * 40
        assert find_shared_features(reference.content_hash, encoder.id).shape == (600, 64)
        assert find_shared_features(reference.content_hash, "nope") is None
        with pytest.raises(InputError, match="no stored reference 'nope'"):
            use_named_reference(tmp_path / "a", "nope")
    finally:
        del os.environ["EVOLENS_REFERENCES"]
    assert [r.name for r in named_references(store)] == ["digits-train"]


def test_cli_reference_add_list_use(tmp_path, capsys):
    data = digits("train")
    np.save(tmp_path / "images.npy", data.images[:300])
    np.save(tmp_path / "labels.npy", data.labels[:300])
    store = str(tmp_path / "store")
    assert main(["reference", "add", "digits", str(tmp_path / "images.npy"), "--labels", str(tmp_path / "labels.npy"),
                 "--encoder", "pixels", "--store", store, "--quiet"]) == 0
    assert main(["reference", "list", "--store", store]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "300" in out and "pixels" in out
    with RunWriter(tmp_path / "run", name="run") as writer:
        writer.write_snapshot(0, {"samples": data.images[400:420]})
    assert main(["reference", "use", str(tmp_path / "run"), "digits", "--as", "train", "--store", store]) == 0
    reference = NamedReference(tmp_path / "store" / "digits")
    np.testing.assert_array_equal(reference.labels, data.labels[:300])
    assert main(["reference", "add", "x", str(tmp_path / "missing.npy"), "--store", store, "--quiet"]) == 2
