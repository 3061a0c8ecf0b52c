import pytest
import numpy as np

import evolens
from evolens import analyses
from evolens.experiments.demo import train_demo
from evolens.experiments.models import ConditionalVAE, vae_loss

pytestmark = pytest.mark.slow  # experiments, the demo and the Inception network: make test, not test-fast


def test_vae_loss_matches_its_definition():
    import torch

    torch.manual_seed(0)
    model = ConditionalVAE()
    x = torch.rand(4, 1, 28, 28)
    y = torch.tensor([0, 1, 2, 3])
    logits, mu, logvar = model(x, y)
    bce = -(x * torch.log(torch.sigmoid(logits)) + (1 - x) * torch.log(1 - torch.sigmoid(logits))).sum() / 4
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum() / 4
    torch.testing.assert_close(vae_loss(logits, x, mu, logvar), bce + kl, rtol=1e-4, atol=1e-3)


def test_short_demo_leaves_a_complete_run(tmp_path):
    result = train_demo(tmp_path / "demo", epochs=1, max_steps=12, every=5, progress=False, checkpoint_every=10)
    assert result.steps == 12 and np.isfinite(result.train_loss)
    run = evolens.open_run(tmp_path / "demo")
    assert run.steps().tolist() == [0, 5, 10, 11]
    assert run.samples(10).shape == (100, 1, 28, 28)
    assert run.labels(10).tolist() == [i % 10 for i in range(100)]
    assert run.array(0, "latents").shape == (100, 16)
    assert run.snapshot(10).checkpoint_hash is not None and run.snapshot(5).checkpoint_path is None
    assert sorted(run.reference_names()) == ["heldout", "train"]
    assert run.reference("train").images.shape == (4000, 1, 28, 28)
    assert run.scalars("loss")[0].tolist() == list(range(12))
    assert run.scalars("heldout_loss")[0].tolist() == [11]
    assert len(list((tmp_path / "demo" / "report").glob("*.png"))) == 2


def test_the_demo_command_trains_analyses_and_reports(tmp_path, capsys):
    """`evolens demo` end to end at toy size: a run with quality and proximity series, a map and a report."""
    from evolens.cli import main

    assert main(["demo", "--out", str(tmp_path), "--epochs", "1", "--every", "10", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "FID vs the training digits" in out and "memorisation at the end: copy rate" in out
    assert "map quality: knn_recall" in out
    (run_dir,) = tmp_path.iterdir()
    assert (run_dir / "report.html").stat().st_size > 1_000_000
    with evolens.open_run(run_dir) as run:
        names = run.scalar_names()
        assert any(n.startswith("quality/fid@digits-cnn@") for n in names)
        assert any(n.startswith("proximity/copy_rate@digits-cnn@") for n in names)
        # the live worker fitted the map on the first snapshots and extended it with every later one
        assert analyses.load_projection(run).steps == run.steps().tolist()
        assert run.analysed_steps_any("live") == set(run.steps().tolist())
