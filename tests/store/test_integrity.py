"""The read side of the store under damage and restriction: readers create nothing in a run, read runs on
read-only media, name damaged arrays and database pages with a typed error; the report and the dashboard go
on; the same content written again repairs a damaged file; ``evolens verify`` and ``evolens gc``."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from evolens import open_run
from evolens.cli import main
from evolens.errors import EvolensError, StoreIntegrityError
from evolens.store.arrays import ArrayStore
from evolens.store.maintenance import collect_garbage, verify_run
from evolens.store.writer import RunWriter


def make_run(path: Path, steps: int = 3) -> Path:
    rng = np.random.default_rng(0)
    with RunWriter(path, name="integrity") as writer:
        writer.write_reference("train", rng.random((20, 1, 8, 8), dtype=np.float32), np.arange(20) % 4)
        for step in range(steps):
            writer.write_snapshot(step, {"samples": rng.random((16, 1, 8, 8), dtype=np.float32),
                                         "labels": np.arange(16) % 4})
            writer.write_scalars(step, {"loss": 1.0 / (step + 1)})
    return path


def samples_file(run_dir: Path, step: int) -> Path:
    with open_run(run_dir) as run:
        digest = run.snapshot(step).arrays["samples"]
    return next((run_dir / "arrays").glob(f"*/{digest}.npy"))


def listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_readers_create_nothing_in_a_run(tmp_path):
    run_dir = make_run(tmp_path / "run")
    before = listing(run_dir)
    with open_run(run_dir) as run:
        run.samples(1), run.scalars("loss"), run.events(), run.reference("train")
    assert verify_run(run_dir).ok
    assert listing(run_dir) == before  # no -wal, no -shm, nothing


@pytest.fixture
def read_only(tmp_path):
    """A run directory on a read-only medium: a read-only bind mount as root, else chmod a-w."""
    source = make_run(tmp_path / "source")
    if os.geteuid() != 0:
        for p in [source, *source.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
        yield source
        for p in [source, *source.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
        return
    target = tmp_path / "mounted"
    target.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True).returncode == 0 \
        and subprocess.run(["mount", "-o", "remount,ro,bind", str(target)], capture_output=True).returncode == 0
    if not mounted:
        subprocess.run(["umount", str(target)], capture_output=True)
        pytest.skip("root without mount rights: no read-only medium to test on")
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=False)


def test_a_run_on_a_read_only_medium_is_read(read_only):
    with pytest.raises(OSError):
        (read_only / "probe").write_text("x")  # the medium really is read-only
    with open_run(read_only) as run:
        assert run.samples(2).shape == (16, 1, 8, 8) and run.scalars("loss")[0].tolist() == [0, 1, 2]
    assert main(["verify", str(read_only), "--quiet"]) == 0


def test_a_damaged_array_is_a_typed_error_and_the_report_and_dashboard_go_on(tmp_path):
    from fastapi.testclient import TestClient

    from evolens.views.report import write_report
    from evolens.views.server import create_app

    run_dir = make_run(tmp_path / "run")
    damaged = samples_file(run_dir, 1)
    good = np.load(damaged)
    data = bytearray(damaged.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte in the pixels: loads fine, wrong content
    damaged.write_bytes(bytes(data))
    with open_run(run_dir) as run:
        with pytest.raises(StoreIntegrityError, match=damaged.name):
            run.samples(1)
        assert run.samples(2).shape == (16, 1, 8, 8)  # the others still read
    report = write_report([run_dir], tmp_path / "report.html")
    assert "damaged" in report.read_text()
    client = TestClient(create_app(run_dir), base_url="http://127.0.0.1")
    answer = client.get("/api/runs/_/samples/1.png")
    assert answer.status_code == 422 and "damaged" in answer.json()["detail"]
    for url in ("/api/runs/_/samples/2.png", "/api/runs/_/steps", "/api/runs/_/scalars", "/api/runs"):
        assert client.get(url).status_code == 200, url
    # `evolens verify` names it and fails
    result = verify_run(run_dir)
    assert not result.ok and [Path(p).name for p, _ in result.damaged] == [damaged.name]
    assert main(["verify", str(run_dir), "--quiet"]) == 1
    # the same content written again replaces the damaged file
    ArrayStore(run_dir).put(good)
    with open_run(run_dir) as run:
        np.testing.assert_array_equal(run.samples(1), good)
    assert verify_run(run_dir).ok


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbled"])
def test_unloadable_arrays_are_typed_errors(tmp_path, damage):
    run_dir = make_run(tmp_path / "run")
    path = samples_file(run_dir, 0)
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbled": b"\x93NUMPY" + os.urandom(200)}[damage])
    with open_run(run_dir) as run, pytest.raises(StoreIntegrityError, match="damaged"):
        run.samples(0)


def test_a_damaged_database_page_is_a_typed_error(tmp_path):
    run_dir = make_run(tmp_path / "run", steps=40)
    db = run_dir / "runs.sqlite"
    data = bytearray(db.read_bytes())
    page = 4096
    for offset in range(2 * page, len(data), page):  # every page after the schema: headers garbled
        data[offset:offset + 16] = os.urandom(16)
    db.write_bytes(bytes(data))
    with pytest.raises(EvolensError):  # NotARunError or StoreIntegrityError: typed, naming the database
        with open_run(run_dir) as run:
            run.steps(), run.scalars("loss"), run.events(), [run.samples(s) for s in run.steps()]
    assert main(["verify", str(run_dir), "--quiet"]) in (1, 2)


def test_gc_removes_orphans_and_dead_temporaries_but_not_a_live_writers_files(tmp_path):
    run_dir = make_run(tmp_path / "run")
    store = ArrayStore(run_dir)
    orphan = run_dir / store.put(np.arange(7)).path  # a file whose row was never committed
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    fresh = run_dir / store.put(np.arange(9)).path  # a live writer's, just written
    dead = orphan.parent / f"{'0' * 64}.tmp-999999999"  # the temporary of a killed add_reference
    dead.write_bytes(b"partial")
    mine = orphan.parent / f"{'1' * 64}.tmp-{os.getpid()}"  # a live process's temporary
    mine.write_bytes(b"in progress")
    assert collect_garbage(run_dir, dry_run=True).orphans == [str(orphan.relative_to(run_dir))]
    assert orphan.exists()
    report = collect_garbage(run_dir)
    assert report.orphans == [str(orphan.relative_to(run_dir))] and report.temporaries == 1
    assert not orphan.exists() and not dead.exists() and fresh.exists() and mine.exists()
    assert verify_run(run_dir).ok  # nothing indexed was touched
    assert main(["gc", str(run_dir), "--grace", "0"]) == 0 and not fresh.exists()
    mine.unlink()


def test_a_reader_opened_on_a_closed_run_follows_a_writer_that_starts_later(tmp_path):
    run_dir = make_run(tmp_path / "run", steps=2)
    with open_run(run_dir) as run:
        assert run.steps().tolist() == [0, 1]
        with RunWriter(run_dir, create=False) as writer:
            writer.write_snapshot(5, {"samples": np.zeros((16, 1, 8, 8), np.float32)})
            assert run.steps().tolist() == [0, 1, 5]  # the writer's commit, seen through its WAL
        assert run.steps().tolist() == [0, 1, 5]
