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
from evolens.analyses.references import add_named_reference
from evolens.encoders.pixels import PixelsEncoder
from evolens.store.references import (NAMED_REFERENCE, NamedReference, find_shared_features, named_references,
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
                 "--encoder", "pixels", "--store", store, "--quiet", "--no-radii"]) == 0
    assert main(["reference", "list", "--store", store]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "300" in out and "pixels" in out
    with RunWriter(tmp_path / "run", name="run") as writer:
        writer.write_snapshot(0, {"samples": data.images[400:420]})
    assert main(["reference", "use", str(tmp_path / "run"), "digits", "--as", "train", "--store", store]) == 0
    reference = NamedReference(tmp_path / "store" / "digits")
    np.testing.assert_array_equal(reference.labels, data.labels[:300])
    from evolens.store.derived import PRDC_RADII

    assert reference.derived(PRDC_RADII, encoder_id=reference.encoders()[0], params={"k": 3}) is None  # --no-radii
    assert main(["reference", "add", "x", str(tmp_path / "missing.npy"), "--store", store, "--quiet"]) == 2


def _proximity_run(path, data, reference_rows: int, store=None, shard_rows: int = 1000):
    """A run of 3 snapshots (one of them copies of training digits) whose 'train' and 'heldout' references are
    either stored in the run (store None) or used from named references in ``store``."""
    from evolens.data import mnist

    train, held = data.images[:reference_rows], mnist("heldout").images[:300]
    with RunWriter(path, name=path.name) as writer:
        writer.write_snapshot(0, {"samples": mnist("heldout").images[400:460]})
        writer.write_snapshot(1, {"samples": data.images[:60]})  # copies of training items
        writer.write_snapshot(2, {"samples": mnist("heldout").images[500:560]})
        if store is None:
            writer.write_reference("train", train)
            writer.write_reference("heldout", held)
    if store is not None:
        for name, images in (("train", train), ("heldout", held)):
            add_named_reference(f"{name}-{reference_rows}", images, encoder="pixels", store=store,
                                shard_rows=shard_rows, progress=False)
            use_named_reference(path, f"{name}-{reference_rows}", as_name=name, store=store)
    return path


def test_proximity_against_a_named_reference_equals_a_local_one_in_flat_memory(tmp_path, monkeypatch):
    """The proximity analysis reads a named reference's shards where it searches them: the same nearest
    neighbours, copy rate, authenticity, C_T and evidence as with features in memory, and its traced memory does
    not grow with the reference (4x more rows, same shard size)."""
    import tracemalloc

    from evolens.data import mnist
    from evolens.store.run import open_run

    data = mnist("train")
    store = tmp_path / "store"
    monkeypatch.setenv("EVOLENS_REFERENCES", str(store))
    local = analyses.proximity(_proximity_run(tmp_path / "local", data, 1000), encoder="pixels", progress=False)
    shared = analyses.proximity(_proximity_run(tmp_path / "shared", data, 1000, store), encoder="pixels",
                                progress=False)
    assert shared.skipped == local.skipped and "data_copying_ct" not in shared.skipped
    for step, row in local.values.items():
        assert any("data_copying_ct" in name for name in row)
        # C_T too: below CT_FIT_ROWS its PCA and k-means are fitted on the same rows as in memory
        assert shared.values[step] == pytest.approx(row, rel=1e-9, abs=1e-12), step
    assert local.values[1][next(k for k in local.values[1] if "copy_rate" in k)] == 1.0
    with open_run(tmp_path / "local") as a, open_run(tmp_path / "shared") as b:
        from evolens.store.derived import NEAREST_TRAIN

        for step in range(3):
            key = dict(params={"k": 5, "part": "index"}, step=step)
            (enc, src, _), = [k for k in a.derived_keys(NEAREST_TRAIN) if k[2] == step]
            np.testing.assert_array_equal(a.derived(NEAREST_TRAIN, encoder_id=enc, source=src, **key),
                                          b.derived(NEAREST_TRAIN, encoder_id=enc, source=src, **key))
    from evolens.metrics import proximity as P

    monkeypatch.setattr(P, "CT_FIT_ROWS", 500)  # C_T's cells fitted on 500 sampled rows: memory set by those
    peaks = {}
    for rows in (1000, 4000):
        run = _proximity_run(tmp_path / f"grow{rows}", data, rows, store)
        tracemalloc.start()
        analyses.proximity(run, encoder="pixels", progress=False)
        peaks[rows] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    shard_bytes = 1000 * 784 * 4
    assert peaks[4000] - peaks[1000] < 1.5 * shard_bytes, peaks  # 3,000 more rows would be 3 shards


@pytest.mark.parametrize("metrics", [("fid",), ("fid", "kid", "prdc", "cmmd")])
def test_quality_against_a_named_reference_equals_a_local_one(tmp_path, monkeypatch, metrics):
    """Every metric reads the shards one at a time (per class through selections of the shards) and equals the
    local run's value."""
    data = digits("train")
    store = tmp_path / "store"
    monkeypatch.setenv("EVOLENS_REFERENCES", str(store))
    runs = {}
    for kind in ("local", "shared"):
        with RunWriter(tmp_path / kind, name=kind) as writer:
            for step in range(2):
                writer.write_snapshot(step, {"samples": data.images[900 + 60 * step:960 + 60 * step],
                                             "labels": data.labels[900 + 60 * step:960 + 60 * step]})
            if kind == "local":
                writer.write_reference("train", data.images[:800], data.labels[:800])
        if kind == "shared":
            add_named_reference("digits-800", data.images[:800], data.labels[:800], encoder="pixels", store=store,
                                shard_rows=300, progress=False)
            use_named_reference(tmp_path / kind, "digits-800", as_name="train")
        runs[kind] = analyses.quality(tmp_path / kind, encoder="pixels", metrics=metrics, progress=False)
    assert runs["shared"].values.keys() == runs["local"].values.keys()
    for step, row in runs["local"].values.items():
        assert any("/class=" in name for name in row)  # per-class values were computed on both sides
        # FID: the stored statistics' eigen path against the local run's cross-product one (fewer samples than
        # dimensions): both exact, they agree to 1e-6. KID: float32 kernels of each subset against the local
        # run's whole-kernel tiles (cheaper for 800 rows), summed in float64: 1e-5. The rest is the same
        # arithmetic, block by block: 1e-9.
        for name, value in row.items():
            tolerance = 1e-6 if "/fid" in name else 1e-5 if "/kid" in name else 1e-9
            assert runs["shared"].values[step][name] == pytest.approx(value, rel=tolerance, abs=1e-9), (step, name)


def test_reference_side_quantities_live_in_the_named_reference(tmp_path, monkeypatch):
    """k-NN radii are stored when the reference is added; what a run computes of the reference alone (per-class
    statistics and radii, the CMMD term) is stored in the named reference, and a second run computes none of it."""
    from evolens.metrics import quality as Q
    from evolens.store.derived import CMMD_REFERENCE_TERM, FID_STATISTICS, PRDC_RADII
    from evolens.store.run import open_run

    data = digits("train")
    store = tmp_path / "store"
    monkeypatch.setenv("EVOLENS_REFERENCES", str(store))
    reference = add_named_reference("digits-500", data.images[:500], data.labels[:500], encoder="pixels",
                                    store=store, shard_rows=128, progress=False)
    encoder_id = reference.encoders()[0]
    features = reference.features(encoder_id).load()
    for k in (3, 5):
        np.testing.assert_allclose(reference.derived(PRDC_RADII, encoder_id=encoder_id, params={"k": k}),
                                   Q.prdc_radii(features, k), rtol=1e-12)
    from evolens.metrics.proximity import training_spacing
    from evolens.store.derived import TRAINING_SPACING

    np.testing.assert_allclose(reference.derived(TRAINING_SPACING, encoder_id=encoder_id),
                               training_spacing(features), rtol=1e-12)  # from the same search
    for name in ("a", "b"):
        with RunWriter(tmp_path / name, name=name) as writer:
            writer.write_snapshot(0, {"samples": data.images[900:960], "labels": data.labels[900:960]})
        use_named_reference(tmp_path / name, "digits-500", as_name="train")
    first = analyses.quality(tmp_path / "a", encoder="pixels", metrics=("fid", "prdc", "cmmd"), progress=False)
    assert reference.derived(CMMD_REFERENCE_TERM, encoder_id=encoder_id) is not None
    assert reference.derived(FID_STATISTICS, encoder_id=encoder_id, params={"class": 3}) is not None
    assert reference.derived(PRDC_RADII, encoder_id=encoder_id, params={"class": 3, "k": 5}) is not None
    with open_run(tmp_path / "a") as run:
        assert run.derived_keys(PRDC_RADII) == [] and run.derived_keys(FID_STATISTICS) == []
    calls = []
    for name in ("knn_radii", "cmmd_reference_term", "_statistics"):
        module = Q if name != "_statistics" else __import__("evolens.analyses.quality", fromlist=["x"])
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _o=original, _n=name, **kw: calls.append(_n) or _o(*a, **kw))
    second = analyses.quality(tmp_path / "b", encoder="pixels", metrics=("fid", "prdc", "cmmd"), progress=False)
    assert calls == [] and second.values == first.values


def test_quality_against_a_named_reference_in_flat_memory(tmp_path, monkeypatch):
    """FID, KID, PRDC and CMMD against a named reference 4x larger (same shard size): traced memory grows by
    less than one shard."""
    import tracemalloc

    from evolens.data import mnist

    data, held = mnist("train"), mnist("heldout")
    store = tmp_path / "store"
    monkeypatch.setenv("EVOLENS_REFERENCES", str(store))
    peaks = {}
    order = np.random.default_rng(0).permutation(4000)  # mnist("train") is sorted by class
    for rows in (1000, 4000):
        add_named_reference(f"mnist-{rows}", data.images[order[:rows]], data.labels[order[:rows]], encoder="pixels",
                            store=store, shard_rows=500, progress=False)
        with RunWriter(tmp_path / f"run{rows}", name="run") as writer:
            writer.write_snapshot(0, {"samples": held.images[::10], "labels": held.labels[::10]})
        use_named_reference(tmp_path / f"run{rows}", f"mnist-{rows}", as_name="train")
        analyses.embedding(tmp_path / f"run{rows}", encoder="pixels", progress=False)
        tracemalloc.start()
        result = analyses.quality(tmp_path / f"run{rows}", encoder="pixels", progress=False)
        peaks[rows] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert any("/precision/class=" in name for name in result.values[0])
    shard_bytes = 500 * 784 * 4
    assert peaks[4000] - peaks[1000] < shard_bytes, peaks  # loading the 3,000 more rows would be 6 shards


def test_using_a_named_reference_links_its_images_without_loading_them(tmp_path, monkeypatch):
    """``reference use``: the run's images file is a hard link to the stored one (no byte copied, nothing
    loaded: traced memory far below the images' size); across filesystems a chunked copy (os.link refused)."""
    import os
    import tracemalloc

    from evolens.data import mnist
    from evolens.store.run import open_run

    data = mnist("train")
    store = tmp_path / "store"
    reference = add_named_reference("mnist", data.images, data.labels, encoder="pixels", store=store,
                                    radii=False, progress=False)
    for name, link_works in (("linked", True), ("copied", False)):
        with RunWriter(tmp_path / name, name=name) as writer:
            writer.write_snapshot(0, {"samples": data.images[:4]})
        if not link_works:
            def refuse(*args, **kwargs):
                raise OSError(18, "Invalid cross-device link")

            monkeypatch.setattr(os, "link", refuse)
        tracemalloc.start()
        use_named_reference(tmp_path / name, "mnist", as_name="train", store=store)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < data.images.nbytes / 4, (name, peak)  # 12.5 MB of images, never in memory
        with open_run(tmp_path / name) as run:
            stored = run.array_file(run.reference_hash("train"))
            same_inode = os.stat(stored).st_ino == os.stat(reference.images_file).st_ino
            assert same_inode == link_works, name
            np.testing.assert_array_equal(run.reference("train", mmap=True).images, data.images)
            np.testing.assert_array_equal(run.reference_labels("train"), data.labels)


def test_views_of_a_large_reference_read_only_the_rows_they_show(tmp_path, monkeypatch):
    """The memorisation gallery shows each sample's nearest training images: it reads those rows from the
    memory-mapped reference, not the whole set (traced memory far below its size), and shows the same images."""
    import tracemalloc

    from evolens.data import mnist
    from evolens.views.data import memorisation_gallery, reference_images_at

    data = mnist("train")
    store = tmp_path / "store"
    monkeypatch.setenv("EVOLENS_REFERENCES", str(store))
    add_named_reference("mnist", data.images, encoder="pixels", store=store, radii=False, progress=False)
    with RunWriter(tmp_path / "run", name="run") as writer:
        writer.write_snapshot(0, {"samples": data.images[100:140]})  # copies: their neighbours are themselves
    use_named_reference(tmp_path / "run", "mnist", as_name="train")
    analyses.proximity(tmp_path / "run", encoder="pixels", heldout=None)
    from evolens.store.run import open_run

    with open_run(tmp_path / "run") as run:
        tracemalloc.start()
        gallery = memorisation_gallery(run, 0, max_samples=10, k=3)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < data.images.nbytes / 4, peak
        assert len(gallery["items"]) == 10
        assert all(item["neighbours"][0]["distance"] == 0.0 for item in gallery["items"])
        assert {item["neighbours"][0]["index"] for item in gallery["items"]} <= set(range(100, 140))
        shown = reference_images_at(run, "train", [105, -1, 10**9, 7])
        assert sorted(shown) == [7, 105]
        np.testing.assert_array_equal(shown[105], data.images[105])


def test_reference_use_with_store_then_analyze_embeds_no_reference_image(tmp_path, monkeypatch):
    """``evolens reference use RUN NAME --store DIR`` records the reference by identity, so ``evolens analyze RUN``
    reads its features from DIR — also when DIR is not the default store (the default here is another, empty
    folder): the images embedded are the snapshots' only, counted at the encoder."""
    data = digits("train")
    store, elsewhere = tmp_path / "my-references", tmp_path / "default-store"
    monkeypatch.setenv("EVOLENS_REFERENCES", str(elsewhere))
    embedded: list[int] = []
    encode = PixelsEncoder.encode

    def counted(self, images, batch_size=None, progress=False):
        embedded.append(len(images))
        return encode(self, images, batch_size, progress)

    monkeypatch.setattr(PixelsEncoder, "encode", counted)
    images = data.images[:500]
    np.save(tmp_path / "train.npy", images)
    assert main(["reference", "add", "digits-500", str(tmp_path / "train.npy"), "--encoder", "pixels",
                 "--store", str(store), "--quiet"]) == 0
    assert sum(embedded) == 500  # the reference, embedded once into the store
    with RunWriter(tmp_path / "run", name="run") as writer:
        for step in (0, 10):
            writer.write_snapshot(step, {"samples": data.images[600 + step:640 + step]})
    assert main(["reference", "use", str(tmp_path / "run"), "digits-500", "--as", "train",
                 "--store", str(store)]) == 0
    from evolens.store.run import open_run

    with open_run(tmp_path / "run") as run:
        record = run.reference_meta("train")[NAMED_REFERENCE]
        assert record == {"name": "digits-500", "store": str(store.resolve()),
                          "content_hash": NamedReference(store / "digits-500").content_hash}
    embedded.clear()
    assert main(["analyze", str(tmp_path / "run"), "--encoder", "pixels", "--reference", "train", "--quiet"]) == 0
    assert embedded == [40, 40]  # two snapshots of 40 samples; not one reference image
    with open_run(tmp_path / "run") as run:
        fid = run.scalars(next(n for n in run.scalar_names() if n.startswith("quality/fid")))[1]
    assert fid.shape == (2,) and np.isfinite(fid).all()
