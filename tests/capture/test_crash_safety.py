"""A process killed (SIGKILL) while it writes snapshots leaves a run that opens with every finished snapshot
and no partial one; restarting the script resumes the same run without duplicating steps."""

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import evolens

CHILD = Path(__file__).with_name("crash_child.py")


def _start(run_dir, first, last, kill_at=None):
    args = [sys.executable, str(CHILD), str(run_dir), str(first), str(last)]
    if kill_at is not None:
        args.append(str(kill_at))
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _assert_complete(run_dir):
    """Every snapshot of the run is whole: its arrays exist, have the right shape, match their hashes."""
    run = evolens.open_run(run_dir)
    steps = run.steps().tolist()
    for snap in run.snapshots():
        for name, digest in snap.arrays.items():
            row = run._conn.execute("SELECT path FROM arrays WHERE hash = ?", (digest,)).fetchone()
            run._arrays.get(row[0], verify_hash=digest)
        assert run.samples(snap.step).shape == (16, 3, 32, 32)
        assert run.probe_ids(snap.step).shape == (16,)
    run.close()
    return steps


def test_sigkill_inside_the_snapshot_transaction_leaves_no_partial_snapshot(tmp_path):
    run_dir = tmp_path / "run"
    proc = _start(run_dir, 0, 10, kill_at=4)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err
    assert out.split() == ["captured", "0", "captured", "1", "captured", "2", "captured", "3"]
    assert _assert_complete(run_dir) == [0, 1, 2, 3]
    # The arrays of step 4 reached the disk before the kill, but no snapshot references them.
    files = {f.stem for f in (run_dir / "arrays").rglob("*.npy")}
    run = evolens.open_run(run_dir)
    indexed = {row[0] for row in run._conn.execute("SELECT hash FROM arrays")}
    run.close()
    assert len(indexed) == 5  # samples of steps 0-3 + the probe ids they share
    assert len(files - indexed) == 1  # step 4's samples: on disk, unreferenced


@pytest.mark.parametrize("seed", [0, 1, 2], ids=lambda s: f"kill-time-{s}")
def test_sigkill_at_a_random_moment(tmp_path, seed):
    run_dir = tmp_path / "run"
    proc = _start(run_dir, 0, 100_000)
    seen = 0
    while seen < 3:  # let it capture a few snapshots, then kill it at a random instant
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        seen += line.startswith("captured")
    time.sleep(random.Random(seed).uniform(0.0, 0.05))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    steps = _assert_complete(run_dir)
    assert steps == list(range(len(steps))) and len(steps) >= 3


def test_resume_after_kill_continues_the_same_run(tmp_path):
    run_dir = tmp_path / "run"
    proc = _start(run_dir, 0, 10, kill_at=4)
    proc.communicate(timeout=120)
    # The restarted script starts again from step 2 (its last checkpoint, say) and runs to step 7.
    proc = _start(run_dir, 2, 7)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.split()[-1] == "done"
    assert "captured 2" not in out and "captured 3" not in out  # already captured before the kill
    assert _assert_complete(run_dir) == list(range(8))
    run = evolens.open_run(run_dir)
    steps, values = run.scalars("loss")
    assert steps.tolist() == list(range(8)) and values.tolist() == [float(s) for s in range(8)]
    # the killed session left no capture_end; the resumed one closed cleanly
    assert [(e.kind, e.session_id) for e in run.events()] == [("resume", 2), ("capture_end", 2)]
    assert [s["kind"] for s in run.sessions()] == ["capture", "capture"]
    # Resumed snapshots are recorded by the second session.
    assert {s.step: s.session_id for s in run.snapshots()}[5] == run.sessions()[1]["id"]
    run.close()


def test_reader_sees_only_whole_snapshots_while_the_writer_runs(tmp_path):
    run_dir = tmp_path / "run"
    proc = _start(run_dir, 0, 60)
    try:
        while not (run_dir / "runs.sqlite").exists():
            time.sleep(0.01)
        time.sleep(0.2)
        reads = 0
        deadline = time.time() + 20
        while proc.poll() is None and time.time() < deadline:
            run = evolens.open_run(run_dir)
            for step in run.steps()[-3:]:
                assert np.isfinite(run.samples(int(step))).all()
                reads += 1
            run.close()
        assert reads > 0
    finally:
        proc.kill()
        proc.wait()
