import numpy as np
import pytest
import torch

import evolens
from evolens import InputError, Monitor, Probes
from evolens.analysis import analyze_run
from evolens.cli import main
from evolens.encoders import PixelsEncoder
from evolens.metrics import fid, kid, prdc, vendi


@pytest.fixture
def digit_run(tmp_path):
    """Snapshots drift from noise (step 0) to real digits (step 2); the reference is other real digits."""
    from evolens.datasets import digits

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
    result = analyze_run(digit_run, encoder, progress=False)
    run = evolens.open_run(digit_run)
    ref = run.reference("train")
    ref_features = encoder.encode(ref.images)
    fake = encoder.encode(run.samples(2))
    values = result.values[2]
    # The run's reference statistics are streamed float64 sums: equal to np.cov to ~1e-9 relative.
    assert values["quality/fid"] == pytest.approx(fid(ref_features, fake), rel=1e-7)
    assert values["quality/kid"] == pytest.approx(kid(ref_features, fake)[0], rel=1e-9)
    assert values["quality/precision"] == prdc(ref_features, fake, 3).precision
    assert values["quality/coverage"] == prdc(ref_features, fake, 5).coverage
    assert values["quality/vendi"] == pytest.approx(vendi(fake), rel=1e-9)
    labels = run.labels(2)
    assert values["quality/fid/class=3"] == pytest.approx(
        fid(ref_features[ref.labels == 3], fake[labels == 3]), rel=1e-9)
    steps, stored = run.scalars("quality/fid/class=3")
    assert steps.tolist() == [0, 1, 2] and stored[2] == pytest.approx(values["quality/fid/class=3"])
    (event,) = run.events(kind="analysis")
    assert event.data["encoder_id"] == encoder.id and event.data["reference"] == "train"


def test_fid_falls_as_samples_approach_the_data(digit_run):
    result = analyze_run(digit_run, "pixels", device="cpu", progress=False, metrics=("fid", "prdc"))
    _, fids = result.series("quality/fid")
    _, precision = result.series("quality/precision")
    assert fids[0] > fids[1] > fids[2] and precision[2] > precision[0]


def test_second_analysis_reuses_cached_features(digit_run):
    encoder = PixelsEncoder(device="cpu")
    analyze_run(digit_run, encoder, progress=False, metrics=("fid",))
    calls = encoder.calls
    analyze_run(digit_run, encoder, progress=False, metrics=("fid",))
    assert encoder.calls == calls


def test_overall_only_and_errors(digit_run):
    result = analyze_run(digit_run, "pixels", by=None, metrics=("vendi",), device="cpu", progress=False, store=False)
    assert set(result.values[0]) == {"quality/vendi"}
    with pytest.raises(InputError, match=r"reference: no reference set 'heldout'"):
        analyze_run(digit_run, "pixels", reference="heldout", progress=False)
    with pytest.raises(InputError, match=r"metrics: expected a subset.*\['isc'\]"):
        analyze_run(digit_run, "pixels", metrics=("fid", "isc"), progress=False)
    with pytest.raises(InputError, match="by: expected 'label' or None"):
        analyze_run(digit_run, "pixels", by="attribute", progress=False)


def test_cli_analyze(digit_run, capsys):
    assert main(["analyze", str(digit_run), "--encoder", "pixels", "--metrics", "fid,vendi", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "quality/fid" in out and "per-class FID at the last snapshot" in out
    assert main(["analyze", str(digit_run), "--encoder", "nope", "--quiet"]) == 2


def test_analyze_attributes_with_a_classifier(digit_run):
    from evolens.analysis import analyze_attributes

    class ByBrightness:  # attribute: 1 if the image is bright on average, else 0
        def classify(self, images):
            return (np.asarray(images).reshape(len(images), -1).mean(axis=1) > 0.3).astype(np.int64)

    result = analyze_attributes(digit_run, ByBrightness(), majority=1, minority=0)
    run = evolens.open_run(digit_run)
    # Step 0 is uniform noise (mean 0.5, all bright); step 2 is real digits, distributed like the reference.
    assert result[0]["attr/share/value=1"] == 1.0 and result[0]["attr/rfair"] == float("inf")
    assert result[2]["attr/divergence_tv"] < result[0]["attr/divergence_tv"]
    reference = ByBrightness().classify(run.reference("train").images)
    expected = abs(np.mean(ByBrightness().classify(run.samples(2))) - reference.mean())
    assert result[2]["attr/divergence_tv"] == pytest.approx(expected)
    assert run.scalars("attr/divergence_tv")[0].tolist() == [0, 1, 2]
    assert "attr/target_success" in result[2]
