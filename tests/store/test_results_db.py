"""Live workers on several hosts: each on its own copy of the run (``evolens mirror``), sharing claims and values
through a real PostgreSQL server that the test starts on loopback (skipped, with the reason, where PostgreSQL or
psycopg is not installed)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from evolens.analyses import Live, LiveWorker
from evolens.cli import main
from evolens.data import digits
from evolens.detect import Threshold
from evolens.errors import InputError
from evolens.store.publish import mirror, publish
from evolens.store.results_db import ResultsDB, ResultsStoreError, local_server, postgres_binaries
from evolens.store.run import open_run
from evolens.store.writer import RunWriter

pytestmark = pytest.mark.slow
DATA = digits("train")
STEPS = 24  # snapshots: enough that both workers are up before the first has analysed them all


def _skip_reason() -> str | None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'evolens[postgres]')"
    if postgres_binaries() is None:
        return "PostgreSQL's server programs are not installed (Debian: apt-get install postgresql)"
    return None


@pytest.fixture(scope="module")
def server():
    reason = _skip_reason()
    if reason and os.environ.get("EVOLENS_REQUIRE_POSTGRES"):  # make test: the server must be there
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)
    with local_server() as url:
        yield url


def _live(url, **kwargs):
    """The Live of ``evolens watch RUN --encoder pixels --analyses quality`` (the same context: the same work)."""
    return Live(encoder="pixels", analyses=("quality",), results=url, poll_seconds=0.05, **kwargs)


def _training_run(path, steps):
    """A finished capture of ``steps`` snapshots (the last ones collapsed onto one digit) and its reference."""
    with RunWriter(path, name="shared-run") as writer:
        writer.write_reference("train", DATA.images[:300], DATA.labels[:300])
        for step in range(steps):
            index = np.arange(40) + 40 * step if step < steps - 2 else np.zeros(40, dtype=int)
            writer.write_snapshot(step, {"samples": DATA.images[index]})
    return path


def test_claims_are_taken_once_and_stale_ones_taken_over(server):
    with ResultsDB(server, stale_after=0.2) as db:
        context = {"case": "claims"}
        assert db.claim("run-a", "a", context, 1) is True
        assert db.claim("run-a", "a", context, 1) is False  # ours already: another caller would not get it
        import time

        time.sleep(0.4)
        assert db.claim("run-a", "a", context, 1) is True  # unfinished past stale_after: taken over
        assert db.finish("run-a", context, 1, {"x": 1.5, "gap": float("nan")})
        assert db.claim("run-a", "a", context, 1) is False  # finished: never again
        time.sleep(0.4)
        assert db.claim("run-a", "a", context, 1) is False
        finished = db.finished("run-a", context)
        assert finished[1]["values"]["x"] == 1.5 and np.isnan(finished[1]["values"]["gap"])
        assert db.claim("run-a", "a", context, 2) and db.claims("run-a")[1]["done_at"] is None
        db.release("run-a", context, 2)
        assert [c["step"] for c in db.claims("run-a")] == [1]
    with pytest.raises(InputError, match="results: expected a postgresql:// URL"):
        ResultsDB("sqlite:///x.db")
    with pytest.raises(ResultsStoreError, match=r"evolens:\*\*\*@127.0.0.1:1/"):  # the password never shown
        ResultsDB("postgresql://evolens:secret@127.0.0.1:1/postgres", connect_timeout=1)


def test_workers_on_two_hosts_share_the_snapshots_through_postgres(tmp_path, server):
    """Two workers on two mirrored copies analyse every snapshot once between them; the training host's worker
    then imports all values (computing none), checks its rules on them and raises the alert; the values equal a
    worker's alone."""
    source = _training_run(tmp_path / "train-host", steps=STEPS)
    published = tmp_path / "shared-fs" / "run"
    publish(source, published)
    copies = [tmp_path / f"host-{h}" / "run" for h in "ab"]
    for copy in copies:
        assert mirror(published, copy) == {"snapshots_copied": STEPS, "references_copied": 1}
    with open_run(source) as run, open_run(copies[0]) as copy:
        assert copy.uid == run.uid and copy.steps().tolist() == list(range(STEPS))
    # two worker processes, as on two hosts: evolens watch COPY --results URL
    workers = [subprocess.Popen([sys.executable, "-m", "evolens.cli", "watch", str(copy), "--encoder", "pixels",
                                 "--analyses", "quality", "--results", server], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for copy in copies]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    # each copy counts the steps it analysed and the ones it imported: all of them
    assert [re.search(r"analysed (\d+) snapshots", out).group(1) for out, _ in outputs] == [str(STEPS)] * 2, outputs
    with ResultsDB(server) as db, open_run(source) as run:
        claims = db.claims(run.uid)
        assert [c["step"] for c in claims] == list(range(STEPS)) and all(c["done_at"] for c in claims)
        assert {c["pid"] for c in claims} <= {worker.pid for worker in workers}
    for copy in copies:  # both copies hold every value, whoever computed it
        with open_run(copy) as run:
            assert run.scalars(next(n for n in run.scalar_names() if n.startswith("quality/fid@")))[0].tolist() \
                == list(range(STEPS))
    # the training host: everything is imported, nothing computed here; its rule fires on the imported values
    rule = Threshold("quality/vendi", below=2.0)
    home = LiveWorker(source, _live(server, rules=[rule]))
    assert home.run(timeout=60) == STEPS
    with open_run(source) as run:
        assert run.analysed_steps("quality", {}) == set()  # no analysis ran here
        imported = [e for e in run.events(kind="analysis") if e.data.get("host")]
        assert len(imported) == STEPS
        alerts = run.events(level="alert")
        assert [e.kind for e in alerts] == ["alert:threshold:quality/vendi"] and alerts[0].step == STEPS - 2
        names = [n for n in run.scalar_names() if n.startswith("quality/")]
        shared = {n: run.scalars(n)[1] for n in names}
    # the same values as one worker alone on a copy of its own
    alone = tmp_path / "alone"
    mirror(published, alone)
    LiveWorker(alone, _live(None)).run(timeout=60)
    with open_run(alone) as run:
        for name, values in shared.items():
            np.testing.assert_allclose(run.scalars(name)[1], values, rtol=1e-12)


def test_a_mirror_follows_its_source_and_keeps_its_own_writes(tmp_path):
    source = tmp_path / "run"
    writer = RunWriter(source, name="growing")
    writer.write_reference("train", DATA.images[:50])
    for step in range(3):
        writer.write_snapshot(step, {"samples": DATA.images[step * 10:step * 10 + 10]})
    copy = tmp_path / "copy"
    assert mirror(source, copy)["snapshots_copied"] == 3
    with open_run(copy) as run:
        run.add_scalars(0, {"quality/x": 1.0})  # a worker's write on the copy
        from evolens.analyses.live import capture_running

        assert capture_running(run)  # the source's capture is still open
    for step in range(3, 5):
        writer.write_snapshot(step, {"samples": DATA.images[step * 10:step * 10 + 10]})
    writer.write_reference("heldout", DATA.images[100:150])
    writer.close()
    assert main(["mirror", str(source), str(copy)]) == 0
    with open_run(copy) as run:
        assert run.steps().tolist() == [0, 1, 2, 3, 4] and run.reference_names() == ["heldout", "train"]
        np.testing.assert_array_equal(run.samples(4), DATA.images[40:50])
        assert run.scalars("quality/x")[1].tolist() == [1.0]  # kept
        assert not capture_running(run)  # the source's capture ended
    with RunWriter(tmp_path / "other", name="other") as other:
        other.write_snapshot(0, {"samples": DATA.images[:2]})
    with pytest.raises(InputError, match="copy of another run"):
        mirror(tmp_path / "other", copy)
    with pytest.raises(InputError, match="source"):
        mirror(tmp_path / "missing", tmp_path / "x")


def test_a_worker_whose_results_store_is_unreachable_analyses_alone(tmp_path, monkeypatch):
    from evolens.store import results_db

    attempts = []
    original = results_db.ResultsDB.__init__
    monkeypatch.setattr(results_db.ResultsDB, "__init__",
                        lambda self, *a, **kw: attempts.append(1) or original(self, *a, **kw))
    source = _training_run(tmp_path / "run", steps=3)
    worker = LiveWorker(source, _live("postgresql://evolens@127.0.0.1:1/postgres"))
    assert worker.run(timeout=60) == 3
    assert len(attempts) == 1  # not tried again at every call: each could wait out a connection timeout
    with open_run(source) as run:
        assert run.analysed_steps("live", _live(None).context()) == {0, 1, 2}
        warnings = [e for e in run.events(kind="analysis_error") if "results store unreachable" in e.message]
        assert len(warnings) == 1  # said once, not at every snapshot
    with pytest.raises(InputError, match="results: expected None or a postgresql:// URL"):
        _live("mysql://x")
