"""Live analysis: every snapshot judged while the model trains, verdicts that pause the loop, a worker that can
be killed at any moment and started again."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import evolens
from evolens import InputError, analyses
from evolens.analyses import Live, LiveWorker
from evolens.analyses.live import start_worker
from evolens.data import digits
from evolens.detect import Threshold
from evolens.store import RunWriter

DATA = digits("train")


def collapsing_sampler(collapse_at: int):
    """40 different digits per snapshot until ``collapse_at``; then the same digit 40 times (mode collapse)."""
    state = {"step": 0}
    jitter = np.random.default_rng(1).random((40, 1, 8, 8)).astype(np.float32) * 0.01

    def sample_fn(p):
        index = np.arange(40) if state["step"] < collapse_at else np.zeros(40, dtype=int)
        return torch.from_numpy(DATA.images[index] + jitter)

    return state, sample_fn


def test_a_planted_collapse_pauses_training_at_its_snapshot(tmp_path):
    live = Live(encoder="pixels", analyses=("quality", "proximity", "map"), metrics=("fid", "vendi", "prdc"),
                rules=[Threshold("quality/vendi", below=2.0, pause=True)], max_lag=0, map_after=2,
                map_params={"n_iter": 60})
    state, sample_fn = collapsing_sampler(collapse_at=12)
    monitor = evolens.Monitor(tmp_path / "run", sample_fn, every=2, analyze=live,
                              probes=evolens.Probes.from_noise(40, 4, seed=0, num_classes=10))
    monitor.add_reference("train", DATA.images[:300], DATA.labels[:300])
    paused_at = None
    for step in range(40):
        state["step"] = step
        result = monitor.step(step, loss=1.0 / (step + 1))
        if result.should_pause:
            paused_at, alerts = step, result.alerts
            break
    # max_lag=0: the verdict on the first collapsed snapshot arrives at that very step
    assert paused_at == 12, paused_at
    assert [a.rule for a in alerts] == ["threshold:quality/vendi"] and alerts[0].step == 12
    monitor.close()
    assert monitor.wait_for_analysis(timeout=120)
    run = evolens.open_run(tmp_path / "run")
    assert [e.kind for e in run.events(level="alert")] == ["alert:threshold:quality/vendi"]
    assert [e.step for e in run.events(kind="pause")] == [12]
    steps = run.steps().tolist()
    assert steps == list(range(0, 13, 2)) and run.analysed_steps("live", live.context()) == set(steps)
    # the map grew snapshot by snapshot: fitted on the first two, extended with every later one
    assert analyses.load_projection(run).steps == steps
    # every snapshot's metrics equal an offline analysis of the same snapshots in a fresh run, to 1e-9
    with RunWriter(tmp_path / "offline") as writer:
        writer.write_reference("train", run.reference("train").images, run.reference("train").labels)
        for step in steps:
            writer.write_snapshot(step, {"samples": run.samples(step), "probe_ids": run.probe_ids(step),
                                         "labels": run.labels(step)})
    offline = analyses.quality(tmp_path / "offline", encoder="pixels", metrics=("fid", "vendi", "prdc"),
                               progress=False)
    assert offline.computed == steps
    for name in offline.names():
        live_steps, live_values = run.scalars(name)
        off_steps, off_values = offline.series(name)
        assert live_steps.tolist() == off_steps.tolist(), name
        np.testing.assert_allclose(live_values, off_values, rtol=1e-9, atol=1e-12, err_msg=name)
    run.close()


def test_a_failing_analysis_becomes_an_event_and_training_goes_on(tmp_path):
    live = Live(encoder="pixels", analyses=("quality",), metrics=("fid",), reference="train", max_lag=0)
    monitor = evolens.Monitor(tmp_path / "run", lambda p: torch.full((4, 1, 8, 8), float("nan")), every=1,
                              analyze=live, probes=evolens.Probes.from_noise(4, 2))
    monitor.add_reference("train", DATA.images[:50])
    with pytest.warns(RuntimeWarning, match="non-finite"):
        for step in range(3):
            monitor.step(step)
    monitor.close()
    assert monitor.wait_for_analysis(timeout=120)
    with evolens.open_run(tmp_path / "run") as run:
        assert run.steps().tolist() == [0, 1, 2] and run.analysed_steps("live", live.context()) == {0, 1, 2}


def test_an_analysis_that_raises_becomes_an_error_event_and_the_worker_goes_on(tmp_path):
    """The exception path itself: the encoder raises on one snapshot's samples (all-white images) inside the
    analysis; the worker records an ``analysis_error`` event with the traceback, marks the step done, and
    analyses the snapshots before and after it."""
    from evolens.encoders.callable import CallableEncoder

    def flaky(images):
        images = np.asarray(images, dtype=np.float32)
        if images.min() == 1.0:
            raise RuntimeError("the encoder failed on white images")
        return images.reshape(len(images), -1)

    with RunWriter(tmp_path / "run") as writer:
        writer.write_reference("train", DATA.images[:50])
        writer.write_snapshot(0, {"samples": DATA.images[50:54]})
        writer.write_snapshot(1, {"samples": np.ones_like(DATA.images[54:58])})
        writer.write_snapshot(2, {"samples": DATA.images[58:62]})
    encoder = CallableEncoder(flaky, name="flaky", dim=64)
    live = Live(encoder=encoder, analyses=("quality",), metrics=("fid",), reference="train")
    worker = LiveWorker(tmp_path / "run", live)
    try:
        assert worker.poll() == 3
    finally:
        worker.release()
    with evolens.open_run(tmp_path / "run") as run:
        (error,) = run.events(kind="analysis_error")
        assert error.step == 1 and error.level == "error" and "failed on white images" in error.message
        assert "Traceback" in error.data["traceback"]
        assert run.analysed_steps("live", live.context()) == {0, 1, 2}
        fid = next(name for name in run.scalar_names() if name.startswith("quality/fid"))
        assert run.scalars(fid)[0].tolist() == [0, 2]


def test_a_warm_worker_prepares_the_reference_side_once_and_gives_the_cold_values(tmp_path, monkeypatch):
    """Two stages: the live worker keeps each analysis's prepared reference side (here the C_T cells, fitted by
    ``ct_partition``) across snapshots — one preparation for five snapshots, not five — and its values equal
    those of the batch analysis run cold on a copy of the run."""
    import shutil

    from evolens.metrics import proximity as P

    run_dir = _finished_run(tmp_path, 5)
    with RunWriter(run_dir, kind="analysis", create=False) as writer:
        writer.write_reference("heldout", DATA.images[400:800], DATA.labels[400:800])
    cold = shutil.copytree(run_dir, tmp_path / "cold")
    fits = []
    partition = P.ct_partition

    def counted(*args, **kwargs):
        fits.append(1)
        return partition(*args, **kwargs)

    monkeypatch.setattr(P, "ct_partition", counted)
    live = Live(encoder="pixels", analyses=("proximity",), reference="train", heldout="heldout")
    worker = LiveWorker(run_dir, live)
    try:
        assert worker.poll() == 5  # one analysis call per snapshot, as while training
    finally:
        worker.release()
    assert len(fits) == 1, len(fits)
    batch = analyses.proximity(cold, encoder="pixels", reference="train", heldout="heldout")
    with evolens.open_run(run_dir) as run:
        for name in (n for n in run.scalar_names() if n.startswith("proximity/")):
            np.testing.assert_allclose(run.scalars(name)[1], batch.series(name)[1], rtol=1e-6, err_msg=name)


def _finished_run(root: Path, n_steps: int) -> Path:
    rng = np.random.default_rng(0)
    with RunWriter(root / "run") as writer:
        writer.write_reference("train", DATA.images[:400], DATA.labels[:400])
        for step in range(n_steps):
            noise = rng.random((60, 1, 8, 8)).astype(np.float32)
            mix = step / n_steps
            writer.write_snapshot(step, {"samples": mix * DATA.images[:60] + (1 - mix) * noise,
                                         "labels": DATA.labels[:60]})
    return root / "run"


def _scalar_rows_per_step(run_dir: Path) -> list[tuple]:
    conn = sqlite3.connect(run_dir / "runs.sqlite")
    try:
        return conn.execute("SELECT name, step, COUNT(*) FROM scalars GROUP BY name, step").fetchall()
    finally:
        conn.close()


@pytest.mark.slow
def test_killing_the_worker_at_random_moments_analyses_every_snapshot_once(tmp_path):
    n = 300
    run_dir = _finished_run(tmp_path, n_steps=n)
    live = Live(encoder="pixels", analyses=("quality", "proximity"), metrics=("fid", "kid", "vendi"))
    moments = random.Random(0)

    def analysed() -> int:
        with evolens.open_run(run_dir) as run:
            return len(run.analysed_steps("live", live.context()))

    kills, progress = 0, []
    while kills < 20 and (not progress or progress[-1] < n):
        before = analysed()
        process = start_worker(run_dir, live)
        # kill only once the worker is at work (its imports take 1.5 s on an idle machine, much longer on a
        # loaded one), at a random moment after that
        deadline = time.monotonic() + 120
        while process.poll() is None and analysed() <= before and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(moments.uniform(0.0, 0.6))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(timeout=60)
        progress.append(analysed())
    # the kills landed while there was work: the worker's progress was cut at several different points
    assert progress[0] < n and len({p for p in progress if 0 < p < n}) >= 3, progress
    LiveWorker(run_dir, live).run(timeout=300)
    with evolens.open_run(run_dir) as run:
        assert run.analysed_steps("live", live.context()) == set(range(n))
        assert run.analysed_steps("quality", {"encoder": "pixels@native-cnative", "reference": "train",
                                              "metrics": ["fid", "kid", "vendi"], "by": "label"}) == set(range(n))
        names = [n for n in run.scalar_names() if n.startswith(("quality/", "proximity/"))]
    rows = _scalar_rows_per_step(run_dir)
    assert all(count == 1 for _, _, count in rows), [r for r in rows if r[2] != 1]  # none written twice
    per_name = {}
    for name, step, _ in rows:
        per_name.setdefault(name, set()).add(step)
    overall = [n for n in names if "/class=" not in n]
    assert overall and all(per_name[name] == set(range(n)) for name in overall)  # none missed


TRAINER = r"""
import sys, time
import numpy as np, torch
import evolens
from evolens.analyses import Live
from evolens.data import digits
data = digits("train")
live = Live(encoder="pixels", analyses=("quality",), metrics=("fid", "vendi"))
monitor = evolens.Monitor(sys.argv[1], lambda p: torch.from_numpy(data.images[:20] * (0.5 + 0.5 * np.random.rand())),
                          every=1, analyze=live, probes=evolens.Probes.from_noise(20, 2))
monitor.add_reference("train", data.images[:100], data.labels[:100])
for step in range(100000):
    monitor.step(step)
    print("step", step, flush=True)
    time.sleep(0.05)
"""


@pytest.mark.slow
def test_a_killed_trainer_leaves_a_worker_that_finishes_what_was_captured(tmp_path):
    run_dir = tmp_path / "run"
    trainer = subprocess.Popen([sys.executable, "-c", TRAINER, str(run_dir)], stdout=subprocess.PIPE, text=True)
    seen = 0
    while seen < 15:
        line = trainer.stdout.readline()
        assert line, "the trainer died"
        seen += line.startswith("step")
    trainer.send_signal(signal.SIGKILL)
    trainer.wait(timeout=60)
    live = Live(encoder="pixels", analyses=("quality",), metrics=("fid", "vendi"))
    deadline = time.time() + 120
    with evolens.open_run(run_dir) as run:
        captured = set(run.steps().tolist())
        while run.analysed_steps("live", live.context()) != captured and time.time() < deadline:
            time.sleep(0.2)  # the orphaned worker goes on by itself
        assert run.analysed_steps("live", live.context()) == captured
    assert all(count == 1 for _, _, count in _scalar_rows_per_step(run_dir))
    # and it has exited: the capture is over (the trainer's process is dead) and nothing is pending
    for _ in range(100):
        if not (run_dir / "analysis.lock").exists() or _lock_free(run_dir):
            break
        time.sleep(0.1)
    assert _lock_free(run_dir)


def _lock_free(run_dir: Path) -> bool:
    import fcntl

    with open(run_dir / "analysis.lock", "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return True


def test_one_worker_per_run_and_bad_configuration(tmp_path):
    run_dir = _finished_run(tmp_path, n_steps=2)
    live = Live(encoder="pixels", analyses=("quality",), metrics=("fid",))
    first = LiveWorker(run_dir, live)
    first.acquire()
    with pytest.raises(evolens.RunLockedError, match="another live worker"):
        LiveWorker(run_dir, live).acquire()
    first.release()
    assert LiveWorker(run_dir, live).run(timeout=60) == 2
    with pytest.raises(InputError, match="analyses: expected a non-empty subset"):
        Live(analyses=("fid",))
    with pytest.raises(InputError, match="classifier: the 'attributes' analysis needs a classifier"):
        Live(analyses=("attributes",))
    with pytest.raises(InputError, match="max_lag"):
        Live(max_lag=-1)
    with pytest.raises(InputError, match="analyze: expected None or an evolens.analyses.Live"):
        evolens.Monitor(tmp_path / "m", lambda p: p.noise, analyze="quality")


def test_evolens_watch_command(tmp_path, capsys):
    import json

    from evolens.cli import main

    run_dir = _finished_run(tmp_path / "runs", n_steps=4)
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([{"rule": "threshold", "metric": "quality/fid", "below": 1e9}]))
    assert main(["watch", str(tmp_path / "runs"), "--encoder", "pixels", "--analyses", "quality",
                 "--rules", str(rules), "--quiet"]) == 0
    assert "analysed 4 snapshots in 1 run(s)" in capsys.readouterr().out
    with evolens.open_run(run_dir) as run:
        assert any(n.startswith("quality/fid@pixels") for n in run.scalar_names())
        assert [e.step for e in run.events(level="alert")] == [0]  # the rule fired on the first snapshot
    # run again: nothing left to do
    assert main(["watch", str(run_dir), "--encoder", "pixels", "--analyses", "quality", "--quiet"]) == 0
    assert "analysed 0 snapshots" in capsys.readouterr().out
    rules.write_text("{}")
    assert main(["watch", str(run_dir), "--rules", str(rules)]) == 2
    assert "--rules: expected a JSON list" in capsys.readouterr().err


def test_a_stuck_worker_does_not_stall_training(tmp_path, monkeypatch):
    """max_lag waits only while the worker makes progress: a worker process that is alive but never analyses
    costs max_wait at a snapshot, then an analysis_lagging warning, and training goes on."""
    from evolens.analyses import live as live_module

    run_dir = tmp_path / "run"
    started = []

    def idle_worker(run_dir_, live_):  # a live but idle process: the stuck worker
        process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        started.append(process)
        return process

    monkeypatch.setattr(live_module, "start_worker", idle_worker)
    live = Live(encoder="pixels", analyses=("quality",), metrics=("fid",), max_lag=0, max_wait=0.3)
    monitor = evolens.Monitor(run_dir, lambda p: p.noise, every=1, analyze=live, probes=evolens.Probes.from_noise(4, 3))
    monitor.add_reference("train", np.zeros((4, 3), np.float32))
    start = time.monotonic()
    for step in range(3):
        monitor.step(step)
    assert time.monotonic() - start < 5  # ~0.3 s per snapshot, not forever
    with evolens.open_run(run_dir) as run:
        assert [e.kind for e in run.events(kind="analysis_lagging")] == ["analysis_lagging"] * 3
    monitor.close()
    started[0].kill()
