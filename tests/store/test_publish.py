"""Shared storage: network filesystems are recognised from mountinfo, and a published copy of a live run opens
read-only (no WAL, no side files), equals the run, and catches up when published again."""

from __future__ import annotations

import os
import threading
import warnings

import numpy as np
import pytest

from evolens.cli import main
from evolens.errors import InputError
from evolens.store import publish as P
from evolens.store.run import open_run
from evolens.store.writer import RunWriter

MOUNTINFO = """\
22 1 0:21 / / rw,relatime - ext4 /dev/vda rw
30 22 0:40 / /mnt/shared rw,relatime - nfs4 server:/export rw,vers=4.2
31 22 0:41 / /mnt/shared/local\\040disk rw - xfs /dev/vdb rw
32 22 0:42 / /home/me/remote rw - fuse.sshfs me@host:/ rw
33 22 0:43 / /scratch rw - lustre 10.0.0.1@tcp:/fs rw
34 22 0:44 / /données/équipe rw - nfs4 server:/équipe rw
35 22 0:45 / /odd\\134dir rw - cifs //host/share rw
36 22 0:46 / /stray\\ rw - ext4 /dev/vdc rw
"""


@pytest.mark.parametrize("path, expected, network", [
    ("/mnt/shared/runs/a", "nfs4", True), ("/mnt/shared/local disk/run", "xfs", False),
    ("/home/me/remote/run", "fuse.sshfs", True), ("/scratch/x", "lustre", True), ("/work/run", "ext4", False),
    ("/données/équipe/runs/a", "nfs4", True),  # UTF-8 mount points as the kernel writes them
    ("/odd\\dir/run", "cifs", True),  # an octal-escaped backslash
    ("/stray\\/run", "ext4", False),  # a backslash that is no escape is kept, and breaks nothing
])
def test_network_filesystems_from_mountinfo(path, expected, network):
    assert P.filesystem_type(path, MOUNTINFO) == expected
    assert (P.network_filesystem(path, mountinfo=MOUNTINFO) is not None) is network


def test_this_machines_temporary_folder_is_local(tmp_path):
    assert P.filesystem_type(tmp_path) is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a capture on local disk does not warn
        with RunWriter(tmp_path / "run", name="r") as writer:
            writer.write_snapshot(0, {"samples": np.zeros((2, 3), np.float32)})


def test_a_writer_on_a_network_filesystem_warns_once(tmp_path, monkeypatch):
    from evolens.store import files

    monkeypatch.setattr(files, "filesystem_type", lambda path, mountinfo=None: "nfs4")
    with pytest.warns(RuntimeWarning, match="network filesystem .nfs4.*evolens publish"):
        with RunWriter(tmp_path / "run", name="r"):
            pass
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with RunWriter(tmp_path / "run"):
            pass


def test_publish_a_run_while_it_is_written(tmp_path):
    run_dir, dest = tmp_path / "run", tmp_path / "published"
    stop = threading.Event()
    with RunWriter(run_dir, name="live") as writer:
        for step in range(5):
            writer.write_snapshot(step, {"samples": np.full((4, 2), step, np.float32)})
            writer.write_scalars(step, {"loss": float(step)})

        def keep_writing():
            step = 5
            while not stop.is_set() and step < 400:
                writer.write_snapshot(step, {"samples": np.full((4, 2), step, np.float32)})
                writer.write_scalars(step, {"loss": float(step)})
                step += 1

        thread = threading.Thread(target=keep_writing)
        thread.start()
        try:
            first = P.publish(run_dir, dest)  # while the writer commits: never blocks it, always consistent
        finally:
            stop.set()
            thread.join()
        assert first["arrays_copied"] == first["arrays_total"] >= 5
        assert sorted(os.listdir(dest)) == [".published", "arrays", "runs.sqlite"]  # no -wal, no -shm
        # the database under a name of its own, runs.sqlite a symlink to it (a republish never rewrites a file)
        assert (dest / "runs.sqlite").is_symlink() and [f.suffix for f in (dest / ".published").iterdir()] == [".sqlite"]
        with open_run(dest) as copy:
            steps = copy.steps().tolist()
            assert steps == list(range(len(steps))) and len(steps) >= 5
            for step in steps:  # every snapshot the copy names has its arrays, with their content
                np.testing.assert_array_equal(copy.samples(step), np.full((4, 2), step, np.float32))
            assert copy.scalars("loss")[0].tolist() == steps
        assert sorted(os.listdir(dest)) == [".published", "arrays", "runs.sqlite"]  # reading created nothing
        assert len(list((dest / ".published").iterdir())) == 1
        # published again: only the new arrays are copied, the copy has everything
        again = P.publish(run_dir, dest)
        assert again["arrays_copied"] == again["arrays_total"] - first["arrays_total"]
    with open_run(dest) as copy, open_run(run_dir) as run:
        assert copy.steps().tolist() == run.steps().tolist()
    with pytest.raises(InputError, match="run_dir"):
        P.publish(tmp_path / "nothing", dest)
    assert main(["publish", str(run_dir), str(tmp_path / "cli-copy")]) == 0
    assert main(["publish", str(run_dir), str(run_dir)]) == 2


def test_publish_and_mirror_where_symlinks_are_refused(tmp_path, monkeypatch):
    """A share without symlinks (some SMB mounts): the published database is renamed into place itself, and a
    mirror made from it is an ordinary run."""
    from evolens.store.publish import mirror

    run_dir = tmp_path / "run"
    with RunWriter(run_dir, name="r") as writer:
        writer.write_snapshot(0, {"samples": np.zeros((4, 2), np.float32)})

    def refuse(*args, **kwargs):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "symlink", refuse)
    P.publish(run_dir, tmp_path / "published")
    P.publish(run_dir, tmp_path / "published")  # again, over the file
    assert not (tmp_path / "published" / "runs.sqlite").is_symlink()
    with open_run(tmp_path / "published") as copy:
        assert copy.steps().tolist() == [0]
    mirror(tmp_path / "published", tmp_path / "mine")
    with open_run(tmp_path / "mine") as copy:
        assert copy.steps().tolist() == [0] and not (tmp_path / "mine" / ".published").exists()
