import numpy as np
import pytest

from evolens.cli import main
from evolens.store import RunWriter


@pytest.fixture
def runs_dir(tmp_path):
    for name in ("a", "b"):
        with RunWriter(tmp_path / name) as writer:
            for step in (0, 5):
                writer.write_snapshot(step, {"samples": np.full((2, 1, 2, 2), step, np.float32)},
                                      wall_time=1.0, capture_seconds=0.002)
                writer.write_scalars(step, {"loss": 2.0 - step / 10})
            writer.write_event("nonfinite_scalar", "loss went NaN", step=5, level="warning")
    return tmp_path


def test_runs_lists_every_run(runs_dir, capsys):
    assert main(["runs", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["path", "name", "created", "snapshots"]
    assert str(runs_dir / "a") in out and str(runs_dir / "b") in out


def test_runs_on_an_empty_directory(tmp_path, capsys):
    assert main(["runs", str(tmp_path)]) == 0
    assert "no evolens runs" in capsys.readouterr().out


def test_show(runs_dir, capsys):
    assert main(["show", str(runs_dir / "a")]) == 0
    out = capsys.readouterr().out
    assert "2 snapshots" in out and "loss" in out and "1.5" in out and "loss went NaN" in out


def test_show_on_a_non_run_exits_2_with_a_message(tmp_path, capsys):
    assert main(["show", str(tmp_path)]) == 2
    assert "error: run: expected an evolens run directory" in capsys.readouterr().err


def test_console_script_is_installed():
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("evolens")
    exe = str(exe) if exe.exists() else shutil.which("evolens")
    assert exe, "the evolens console script is not installed"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    assert "runs" in out and "show" in out and "demo" in out


def test_encoders_lists_weight_status(capsys):
    assert main(["encoders"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet-lite0" in out and "inception-fid" in out and "pixels" in out
    row = next(line for line in out.splitlines() if line.startswith("efficientnet-lite0"))
    assert row.split()[1] == "yes"


def test_embed_twice_uses_the_cache(runs_dir, capsys):
    assert main(["embed", str(runs_dir / "a"), "--encoder", "pixels", "--quiet"]) == 0
    assert "2 computed, 0 cached" in capsys.readouterr().out
    assert main(["embed", str(runs_dir / "a"), "--encoder", "pixels", "--quiet"]) == 0
    assert "0 computed, 2 cached" in capsys.readouterr().out


def test_proximity_command_and_experiment_registry(runs_dir, capsys):
    import subprocess
    import sys

    run = runs_dir / "a"
    with RunWriter(run, kind="analysis", create=False) as writer:
        writer.write_reference("train", np.random.default_rng(0).random((6, 1, 2, 2)).astype(np.float32))
    assert main(["proximity", str(run), "--encoder", "pixels", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "proximity/copy_rate" in out and "proximity/nn_distance_train" in out and "2 computed now" in out
    assert main(["proximity", str(run), "--encoder", "pixels", "--heldout", "val", "--quiet"]) == 2
    assert "heldout: no reference set 'val'" in capsys.readouterr().err
    # one registry behind `evolens experiment`, `evolens demo` and `python -m evolens.experiments`
    from evolens.experiments import EXPERIMENTS

    listed = subprocess.run([sys.executable, "-m", "evolens.experiments", "--help"], capture_output=True, text=True)
    assert listed.returncode == 0 and all(name in listed.stdout for name in EXPERIMENTS)
    helped = subprocess.run([sys.executable, "-m", "evolens.cli", "demo", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--no-analysis" in helped.stdout
