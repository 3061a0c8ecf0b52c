"""The store's incremental and aggregate reads (what the dashboard polls) against plain full reads."""

from __future__ import annotations

import numpy as np
import pytest

from evolens.errors import InputError
from evolens.store.run import open_run
from evolens.store.writer import RunWriter


@pytest.fixture()
def resumed_run(tmp_path):
    """Two sessions: the second (a resume) logs steps 4 and 5 again with other values and goes on to 9."""
    run_dir = tmp_path / "run"
    with RunWriter(run_dir, name="r") as w:
        for step in range(6):
            w.write_snapshot(step, {"samples": np.full((3, 2), step, np.float32)})
            w.write_scalars(step, {"loss": float(step), "quality/fid@enc~train": 10.0 - step, "b": 1.0})
            w.write_event("alert" if step == 3 else "note", f"e{step}", step=step,
                          level="alert" if step == 3 else "info")
    with RunWriter(run_dir) as w:
        for step in range(4, 10):
            if step > 5:
                w.write_snapshot(step, {"samples": np.full((3, 2), step, np.float32)})
            w.write_scalars(step, {"loss": 100.0 + step, "c": float("nan")})
        w.write_event("projection", "map", data={"projection_id": "p", "steps": [0, 1, 2]})
    return run_dir


def test_a_resumed_step_reads_the_newest_sessions_value(resumed_run):
    with open_run(resumed_run) as run:
        steps, values = run.scalars("loss")
        assert steps.tolist() == list(range(10))
        assert values.tolist() == [0, 1, 2, 3, 104, 105, 106, 107, 108, 109]
        # the same with a SQL reference (the newest session per step)
        expected = run._conn.execute(
            "SELECT step, value FROM scalars s WHERE name = 'loss' AND session_id = (SELECT MAX(session_id) "
            "FROM scalars t WHERE t.name = s.name AND t.step = s.step) ORDER BY step").fetchall()
        assert list(zip(steps.tolist(), values.tolist())) == [(a, b) for a, b in expected]


def test_since_returns_exactly_the_later_points(resumed_run):
    with open_run(resumed_run) as run:
        full_steps, full_values = run.scalars("loss")
        for since in (-1, 0, 3, 4, 9, 50):
            steps, values = run.scalars("loss", since=since)
            assert steps.tolist() == [s for s in full_steps.tolist() if s > since]
            assert values.tolist() == [v for s, v in zip(full_steps.tolist(), full_values.tolist()) if s > since]
        assert run.scalars("quality/fid", since=2)[0].tolist() == [3, 4, 5]  # context left out: still resolved
        with pytest.raises(InputError, match="name: no scalar series"):
            run.scalars("nope", since=2)
        assert run.steps(since=4).tolist() == [5, 6, 7, 8, 9] and run.steps().tolist() == list(range(10))
        events = run.events()
        assert [e.id for e in run.events(since_id=events[2].id)] == [e.id for e in events[3:]]
        assert run.events(since_id=events[-1].id) == []


def test_scalar_names_skip_scan_equals_distinct(resumed_run, tmp_path):
    with open_run(resumed_run) as run:
        distinct = [r[0] for r in run._conn.execute("SELECT DISTINCT name FROM scalars ORDER BY name")]
        assert run.scalar_names() == distinct == ["b", "c", "loss", "quality/fid@enc~train"]
    with RunWriter(tmp_path / "empty", name="e"):
        pass
    with open_run(tmp_path / "empty") as run:
        assert run.scalar_names() == []
        assert run.snapshot_overview() == {"n": 0, "first_step": None, "last_step": None, "n_nonfinite": 0,
                                           "sample_shape": None}
        assert run.event_overview()["n"] == len(run.events()) and run.event_overview()["projection"] is None


def test_overviews_count_what_the_full_reads_hold(resumed_run):
    with open_run(resumed_run) as run:
        snaps, events = run.snapshots(), run.events()
        overview = run.snapshot_overview()
        assert overview == {"n": len(snaps), "first_step": snaps[0].step, "last_step": snaps[-1].step,
                            "n_nonfinite": sum(s.n_nonfinite for s in snaps), "sample_shape": snaps[0].sample_shape}
        ev = run.event_overview()
        assert ev["n"] == len(events) and ev["last_id"] == events[-1].id
        assert ev["n_alerts"] == sum(e.level in ("alert", "warning") for e in events) == 1
        assert ev["projection"]["steps"] == [0, 1, 2]


def test_scalar_last_steps_are_each_series_maximum(resumed_run):
    with open_run(resumed_run) as run:
        expected = dict(run._conn.execute("SELECT name, MAX(step) FROM scalars GROUP BY name ORDER BY name"))
        assert run.scalar_last_steps() == expected == {"b": 5, "c": 9, "loss": 9, "quality/fid@enc~train": 5}
