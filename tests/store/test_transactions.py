"""No failed write leaves the run locked: an exception injected into every write path of the store is rolled
back, and the next write — from the same object and from another process — succeeds."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import evolens
from evolens import InputError
from evolens.store import RunWriter
from evolens.store.derived import FEATURES


class Injected(RuntimeError):
    pass


class FailingConnection:
    """Forwards to a real connection, raising ``Injected`` at the first INSERT (inside the transaction)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn, self.armed = conn, True

    def _maybe_fail(self, sql: str) -> None:
        if self.armed and sql.lstrip().upper().startswith("INSERT"):
            self.armed = False
            raise Injected(sql.split("(")[0])

    def execute(self, sql, *args):
        self._maybe_fail(sql)
        return self._conn.execute(sql, *args)

    def executemany(self, sql, *args):
        self._maybe_fail(sql)
        return self._conn.executemany(sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


rng = np.random.default_rng(0)
WRITES = {
    "snapshot": lambda w, i: w.write_snapshot(100 + i, {"samples": rng.random((3, 2), dtype=np.float32)}),
    "scalars": lambda w, i: w.write_scalars(100 + i, {"loss": 1.0}),
    "event": lambda w, i: w.write_event("note", "hello", step=i),
    "reference": lambda w, i: w.write_reference(f"ref{i}", rng.random((4, 2))),
    "derived": lambda w, i: w.write_derived(FEATURES, rng.random((4, 2)), encoder_id="e", source=f"s{i}"),
    "analysis-step": lambda w, i: w.write_analysis_step("quality", {"encoder": "e"}, 100 + i, {"q/x@e": 1.0}),
}

OTHER_PROCESS = textwrap.dedent("""
    import sys
    from evolens.store import RunWriter
    from evolens.store import layout
    layout.BUSY_TIMEOUT_MS = 2000  # fail fast if the database were still locked
    with RunWriter(sys.argv[1], kind="analysis", create=False) as w:
        w.write_scalars(7, {"from_other_process": 1.0})
    print("ok")
""")


@pytest.fixture
def run_dir(tmp_path):
    with RunWriter(tmp_path / "run") as writer:
        writer.write_snapshot(0, {"samples": np.zeros((3, 2), np.float32)})
    return tmp_path / "run"


@pytest.mark.parametrize("path", sorted(WRITES), ids=str)
@pytest.mark.parametrize("kind", ["capture", "analysis"])
def test_an_exception_inside_any_write_is_rolled_back(run_dir, path, kind):
    writer = RunWriter(run_dir, kind=kind, create=False)
    real = writer.conn
    writer.conn = FailingConnection(real)
    with pytest.raises(Injected):
        WRITES[path](writer, 1)
    assert not real.in_transaction  # nothing holds the write lock
    # The next write from the same object succeeds, every path of it.
    for i, other in enumerate(sorted(WRITES)):
        WRITES[other](writer, 10 + i)
    # And so does a write from another process while this writer is still open.
    done = subprocess.run([sys.executable, "-c", OTHER_PROCESS, str(run_dir)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    writer.close()
    with evolens.open_run(run_dir) as run:
        assert run.scalars("from_other_process")[0].tolist() == [7]
        assert 100 + 1 not in run.steps().tolist() or path != "snapshot"  # the failed snapshot is not there


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda w: w.write_event("k", None), "message: expected a string"),
        (lambda w: w.write_event(None, "m"), "kind: expected a non-empty string"),
        (lambda w: w.write_event("k", "m", level="loud"), "level: expected one of"),
        (lambda w: w.write_scalars(2**63, {"loss": 1.0}), "step: expected a non-negative integer below 2\\*\\*63"),
        (lambda w: w.write_scalars(1, {"loss": "high"}), "loss: expected a real number"),
        (lambda w: w.write_event("k", "m", data={"x": object()}), "data: expected JSON-serialisable"),
        (lambda w: w.write_snapshot(1, {"samples": np.zeros(3)}), "samples: expected shape \\(n, ...\\)"),
        (lambda w: w.write_snapshot(1, {"samples": np.zeros((3, 2)), "labels": np.zeros(2)}),
         "arrays\\['labels'\\]: expected 3 rows"),
        (lambda w: w.write_snapshot(1, {"samples": np.zeros((2, 2)), "probe_ids": ["a", "a"]}), "distinct ids"),
        (lambda w: w.write_snapshot(0, {"samples": np.zeros((3, 2))}), "already stored"),
        (lambda w: w.write_derived("fidstats", np.zeros(2)), "kind: expected one of"),
    ],
    ids=["event-message-none", "event-kind-none", "level", "step-2**63", "scalar-string", "data-object",
         "samples-1d", "labels-rows", "duplicate-ids", "duplicate-step", "derived-kind"],
)
def test_bad_writes_are_typed_errors_and_leave_no_transaction(run_dir, call, match):
    with RunWriter(run_dir, kind="analysis", create=False) as writer:
        with pytest.raises(InputError, match=match):
            call(writer)
        assert not writer.conn.in_transaction
        writer.write_event("after", "the next write works")


def test_run_and_monitor_bad_events_do_not_lock_the_run(tmp_path):
    """The 0.1 failures: Run.add_event("k", None), monitor.event(None, None) and a step of 2**63 used to leave a
    transaction open, so the next monitor.step() in another process hung ~30 s and raised 'database is locked'."""
    monitor = evolens.Monitor(tmp_path / "run", lambda p: p.noise, every=1, probes=evolens.Probes.from_noise(3, 2))
    monitor.step(0, loss=1.0)
    run = evolens.open_run(tmp_path / "run")
    with pytest.raises(InputError):
        run.add_event("k", None)
    with pytest.raises(InputError):
        monitor.event(None, None)
    with pytest.raises(InputError):
        run.add_scalars(2**63, {"x": 1.0})
    monitor.step(1, loss=0.5)  # the training loop goes on
    run.add_event("k", "fine")
    assert run.scalars("loss")[0].tolist() == [0, 1]
    run.close()
    monitor.close()


def test_generated_probe_ids_for_writers_without_probes(tmp_path):
    with RunWriter(tmp_path / "loop") as writer:
        stored = writer.write_snapshot(0, {"samples": np.zeros((4, 1), np.float32)})
    assert stored["probe_ids"].tolist() == ["sample:0", "sample:1", "sample:2", "sample:3"]
    with evolens.open_run(tmp_path / "loop") as run:
        assert run.probe_ids(0).tolist() == stored["probe_ids"].tolist()
