import sqlite3

import numpy as np
import pytest

from evolens import InputError, NotARunError, open_run
from evolens.store import RunWriter, find_runs


def _write_run(path, steps=(0, 10, 20)):
    with RunWriter(path, config={"lr": 1e-3}) as writer:
        for step in steps:
            samples = np.full((3, 1, 2, 2), step, dtype=np.float32)
            writer.write_snapshot(step, {"samples": samples, "probe_ids": np.array(["a", "b", "c"])},
                                  wall_time=1.0 + step, capture_seconds=0.01, seed=0)
            writer.write_scalars(step, {"loss": 1.0 / (step + 1)})
    return path


def test_roundtrip(tmp_path):
    run = open_run(_write_run(tmp_path / "r"))
    assert [s.step for s in run.snapshots()] == [0, 10, 20]
    assert run.steps().tolist() == [0, 10, 20]
    assert run.config == {"lr": 1e-3}
    np.testing.assert_array_equal(run.samples(10), np.full((3, 1, 2, 2), 10, np.float32))
    assert run.probe_ids(20).tolist() == ["a", "b", "c"]
    assert run.labels(20) is None
    snap = run.snapshot(10)
    assert snap.sample_shape == (1, 2, 2) and snap.n_samples == 3 and "numpy" in snap.versions
    steps, values = run.scalars("loss")
    assert steps.tolist() == [0, 10, 20]
    np.testing.assert_allclose(values, [1.0, 1 / 11, 1 / 21])
    run.close()


def test_unknown_step_and_scalar_name_the_known_ones(tmp_path):
    run = open_run(_write_run(tmp_path / "r"))
    with pytest.raises(InputError, match=r"no snapshot at step 5 .*\[0, 10, 20\]"):
        run.samples(5)
    with pytest.raises(InputError, match=r"no scalar series 'acc'.*\['loss'\]"):
        run.scalars("acc")
    with pytest.raises(InputError, match="has no array 'latents'"):
        run.array(0, "latents")
    with pytest.raises(InputError, match="non-negative integer"):
        run.samples(-1)


def test_later_session_supersedes_scalars_without_rewriting(tmp_path):
    path = _write_run(tmp_path / "r")
    with RunWriter(path) as writer:  # a resumed process logs step 10 again
        writer.write_scalars(10, {"loss": 7.0})
        writer.write_scalars(30, {"loss": 8.0})
    run = open_run(path)
    steps, values = run.scalars("loss")
    assert steps.tolist() == [0, 10, 20, 30]
    assert values.tolist() == [1.0, 7.0, 1 / 21, 8.0]
    raw = run._conn.execute("SELECT COUNT(*) FROM scalars WHERE name='loss'").fetchone()[0]
    assert raw == 5  # the superseded value is still on disk


def test_store_is_append_only(tmp_path):
    path = _write_run(tmp_path / "r")
    conn = sqlite3.connect(path / "runs.sqlite")
    for sql in ("UPDATE snapshots SET step = 99", "DELETE FROM scalars", "UPDATE runs SET name = 'x'"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(sql)
    conn.close()


def test_duplicate_snapshot_and_scalar_are_refused(tmp_path):
    path = _write_run(tmp_path / "r")
    with RunWriter(path) as writer:
        with pytest.raises(InputError, match="already stored"):
            writer.write_snapshot(10, {"samples": np.zeros((3, 1, 2, 2), np.float32)}, wall_time=0, capture_seconds=0)
        writer.write_scalars(40, {"loss": 1.0})
        with pytest.raises(InputError, match="already logged in this session"):
            writer.write_scalars(40, {"loss": 2.0})
        with pytest.raises(InputError, match="expected a real number"):
            writer.write_scalars(41, {"loss": "high"})
    assert open_run(path).steps().tolist() == [0, 10, 20]


def test_nan_scalars_round_trip(tmp_path):
    with RunWriter(tmp_path / "r") as writer:
        assert writer.write_scalars(0, {"loss": float("nan"), "acc": float("inf"), "ok": 1.0}) == ["loss", "acc"]
    run = open_run(tmp_path / "r")
    assert np.isnan(run.scalars("loss")[1][0]) and run.scalars("acc")[1][0] == np.inf


@pytest.mark.parametrize(
    "make, match",
    [
        pytest.param(lambda p: p / "missing", "no such directory", id="missing"),
        pytest.param(lambda p: p, "no runs.sqlite", id="plain-dir"),
        pytest.param(lambda p: (p / "runs.sqlite").write_bytes(b"not a database at all" * 100) and p, "not", id="garbage-db"),
    ],
)
def test_not_a_run(tmp_path, make, match):
    with pytest.raises(NotARunError, match=match):
        open_run(make(tmp_path))


def test_foreign_sqlite_is_not_a_run(tmp_path):
    conn = sqlite3.connect(tmp_path / "runs.sqlite")
    conn.execute("CREATE TABLE meta(key TEXT, value TEXT)")
    conn.execute("INSERT INTO meta VALUES ('format', 'something-else')")
    conn.commit()
    conn.close()
    with pytest.raises(NotARunError, match="meta.format"):
        open_run(tmp_path)


def test_writer_refuses_a_directory_with_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(NotARunError, match="has files but no runs.sqlite"):
        RunWriter(tmp_path)
    with pytest.raises(InputError, match="expected a directory"):
        RunWriter(tmp_path / "notes.txt")


def test_references_are_idempotent_and_never_replaced(tmp_path, rng):
    run = open_run(_write_run(tmp_path / "r"))
    images = rng.random((5, 1, 2, 2)).astype(np.float32)
    labels = np.arange(5)
    assert run.add_reference("train", images, labels, meta={"split": "train"}) is True
    assert run.add_reference("train", images.copy(), labels) is False
    with pytest.raises(InputError, match="other content"):
        run.add_reference("train", images + 1, labels)
    ref = run.reference("train")
    np.testing.assert_array_equal(ref.images, images)
    assert ref.labels.tolist() == labels.tolist() and ref.meta == {"split": "train"}
    with pytest.raises(InputError, match=r"labels: expected shape \(5,\)"):
        run.add_reference("test", images, np.arange(4))
    with pytest.raises(InputError, match="0 sample"):
        run.add_reference("empty", np.zeros((0, 1, 2, 2)))
    with pytest.raises(InputError, match=r"no reference 'val'.*\['train'\]"):
        run.reference("val")
    run.close()


def test_events_filter(tmp_path):
    run = open_run(_write_run(tmp_path / "r"))
    run.add_event("note", "hello", step=10)
    run.add_event("alert", "drift", level="alert", data={"metric": "fid"})
    assert [e.kind for e in run.events()] == ["capture_end", "note", "alert"]  # the writer closed cleanly
    assert run.events(level="alert")[0].data == {"metric": "fid"}
    with pytest.raises(InputError, match="level"):
        run.add_event("x", "y", level="loud")
    run.close()


def test_find_runs(tmp_path):
    _write_run(tmp_path / "a")
    _write_run(tmp_path / "group" / "b")
    (tmp_path / "empty").mkdir()
    assert find_runs(tmp_path) == [tmp_path / "a", tmp_path / "group" / "b"]
    with pytest.raises(InputError, match="expected a directory"):
        find_runs(tmp_path / "nope")
