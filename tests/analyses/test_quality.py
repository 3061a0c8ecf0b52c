import numpy as np
import pytest
import torch

import evolens
from evolens import InputError, Monitor, Probes
from evolens import analyses
from evolens.cli import main
from evolens.encoders import PixelsEncoder
from evolens.metrics import fid, kid, prdc, vendi
from evolens.names import parse_name


@pytest.fixture
def digit_run(tmp_path):
    """Snapshots drift from noise (step 0) to real digits (step 2); the reference is other real digits."""
    from evolens.data import digits

    data = digits("all")
    reference, pool = data.subset(np.arange(0, 1200)), data.subset(np.arange(1200, 1797))
    rng = np.random.default_rng(0)
    chosen = np.concatenate([np.flatnonzero(pool.labels == c)[:10] for c in range(10)])
    real_like, labels = pool.images[chosen], pool.labels[chosen]
    noise = rng.random(real_like.shape).astype(np.float32)
    frames = {0: noise, 1: 0.5 * noise + 0.5 * real_like, 2: real_like}
    probes = Probes.from_noise(100, 4, labels=labels)
    state = {}
    monitor = Monitor(tmp_path / "run", lambda p: torch.from_numpy(frames[state["step"]]), every=1, probes=probes)
    for step in range(3):
        state["step"] = step
        monitor.step(step)
    monitor.add_reference("train", reference.images, reference.labels)
    monitor.close()
    return tmp_path / "run"


def test_metrics_equal_the_pure_functions_and_are_stored(digit_run):
    encoder = PixelsEncoder(device="cpu")
    result = analyses.quality(digit_run, encoder=encoder, progress=False)
    run = evolens.open_run(digit_run)
    ref = run.reference("train")
    ref_features = encoder.encode(ref.images)
    fake = encoder.encode(run.samples(2))
    values = result.values[2]
    ctx = f"@{encoder.id}~train"
    # The run's reference statistics are streamed float64 sums: equal to np.cov to ~1e-9 relative.
    assert values["quality/fid" + ctx] == pytest.approx(fid(ref_features, fake), rel=1e-7)
    assert values["quality/kid" + ctx] == pytest.approx(kid(ref_features, fake)[0], rel=1e-9)
    assert values["quality/precision" + ctx] == prdc(ref_features, fake, 3).precision
    assert values["quality/coverage" + ctx] == prdc(ref_features, fake, 5).coverage
    assert values["quality/vendi" + ctx] == pytest.approx(vendi(fake), rel=1e-9)
    labels = run.labels(2)
    assert values["quality/fid/class=3" + ctx] == pytest.approx(
        fid(ref_features[ref.labels == 3], fake[labels == 3]), rel=1e-9)
    steps, stored = run.scalars("quality/fid/class=3")  # the context may be left out when there is one
    assert steps.tolist() == [0, 1, 2] and stored[2] == pytest.approx(values["quality/fid/class=3" + ctx])
    (event,) = run.events(kind="analysis")
    assert event.data["encoder"] == encoder.id and event.data["reference"] == "train"


def test_fid_falls_as_samples_approach_the_data(digit_run):
    result = analyses.quality(digit_run, encoder="pixels", device="cpu", progress=False, metrics=("fid", "prdc"))
    _, fids = result.series("quality/fid")
    _, precision = result.series("quality/precision")
    assert fids[0] > fids[1] > fids[2] and precision[2] > precision[0]


def _row_counts(run_dir) -> dict[str, int]:
    import sqlite3

    conn = sqlite3.connect(run_dir / "runs.sqlite")
    counts = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
              for t in ("scalars", "derived", "events", "analysis_steps", "arrays")}
    conn.close()
    return counts


def test_a_second_analysis_computes_nothing(digit_run):
    encoder = PixelsEncoder(device="cpu")
    first = analyses.quality(digit_run, encoder=encoder, progress=False, metrics=("fid", "prdc"))
    calls, counts = encoder.calls, _row_counts(digit_run)
    second = analyses.quality(digit_run, encoder=encoder, progress=False, metrics=("fid", "prdc"))
    assert encoder.calls == calls and second.computed == [] and first.computed == [0, 1, 2]
    # Nothing at all is written: no scalar, no derived array, no event, not even a new array file.
    assert _row_counts(digit_run) == counts
    assert second.names() == first.names()
    for name in first.names():
        assert np.allclose(second.series(name)[1], first.series(name)[1], equal_nan=True)
    # Only a new step is computed: a third snapshot-set request with one step already done computes nothing.
    third = analyses.quality(digit_run, encoder=encoder, progress=False, metrics=("fid", "prdc"), steps=[1])
    assert third.computed == [] and list(third.values) == [1]


def test_two_encoders_keep_two_labelled_series(digit_run):
    """Analysing one run with two encoders keeps both series; each name says which encoder produced it."""
    a = analyses.quality(digit_run, encoder=PixelsEncoder(device="cpu"), progress=False, metrics=("fid",), by=None)
    b = analyses.quality(digit_run, encoder=PixelsEncoder(size=4, device="cpu"), progress=False, metrics=("fid",),
                         by=None)
    assert a.encoder_id != b.encoder_id
    run = evolens.open_run(digit_run)
    fids = [n for n in run.scalar_names() if n.startswith("quality/fid")]
    assert sorted(fids) == sorted([f"quality/fid@{a.encoder_id}~train", f"quality/fid@{b.encoder_id}~train"])
    assert np.allclose(run.scalars(fids[0])[1], (a if a.encoder_id in fids[0] else b).series("quality/fid")[1])
    assert not np.allclose(a.series("quality/fid")[1], b.series("quality/fid")[1])
    with pytest.raises(InputError, match="ambiguous"):
        run.scalars("quality/fid")
    run.close()


def test_overall_only_and_errors(digit_run):
    result = analyses.quality(digit_run, encoder="pixels", by=None, metrics=("vendi",), device="cpu", progress=False)
    assert [parse_name(n).base for n in result.values[0]] == ["quality/vendi"]
    with pytest.raises(InputError, match=r"reference: no reference set 'heldout'"):
        analyses.quality(digit_run, encoder="pixels", reference="heldout", progress=False)
    with pytest.raises(InputError, match=r"metrics: expected a subset.*'isc'"):
        analyses.quality(digit_run, encoder="pixels", metrics=("fid", "isc"), progress=False)
    with pytest.raises(InputError, match="by: expected 'label' or None"):
        analyses.quality(digit_run, encoder="pixels", by="attribute", progress=False)
    with pytest.raises(InputError, match=r"steps: no snapshots at \[7\]"):
        analyses.quality(digit_run, encoder="pixels", steps=[7], progress=False)


def test_cli_analyze(digit_run, capsys):
    assert main(["analyze", str(digit_run), "--encoder", "pixels", "--metrics", "fid,vendi", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "quality/fid " in out and "quality/vendi" in out and "3 computed now" in out
    assert main(["analyze", str(digit_run), "--encoder", "pixels", "--metrics", "fid,vendi", "--quiet"]) == 0
    assert "0 computed now, the rest read back" in capsys.readouterr().out
    assert main(["analyze", str(digit_run), "--encoder", "nope", "--quiet"]) == 2


def test_analyze_attributes_with_a_classifier(digit_run):
    class ByBrightness:  # attribute: 1 if the image is bright on average, else 0
        def classify(self, images):
            return (np.asarray(images).reshape(len(images), -1).mean(axis=1) > 0.3).astype(np.int64)

    found = analyses.attributes(digit_run, classifier=ByBrightness(), majority=1, minority=0)
    result = {step: {parse_name(n).base: v for n, v in row.items()} for step, row in found.values.items()}
    assert all(n.endswith("@ByBrightness~train") for n in found.names())
    run = evolens.open_run(digit_run)
    # Step 0 is uniform noise (mean 0.5, all bright); step 2 is real digits, distributed like the reference.
    assert result[0]["attr/share/value=1"] == 1.0 and result[0]["attr/rfair"] == float("inf")
    assert result[2]["attr/divergence_tv"] < result[0]["attr/divergence_tv"]
    reference = ByBrightness().classify(run.reference("train").images)
    expected = abs(np.mean(ByBrightness().classify(run.samples(2))) - reference.mean())
    assert result[2]["attr/divergence_tv"] == pytest.approx(expected)
    assert run.scalars("attr/divergence_tv")[0].tolist() == [0, 1, 2]
    assert "attr/target_success" in result[2]
    again = analyses.attributes(digit_run, classifier=ByBrightness(), majority=1, minority=0)
    assert again.computed == [] and again.values == found.values
    # each sample's attribute is kept, so the map can be coloured by it
    from evolens.views.data import sample_attributes

    for step in (0, 2):
        stored = sample_attributes(run, step)["ByBrightness attribute"]
        assert stored.tolist() == ByBrightness().classify(run.samples(step)).tolist()
