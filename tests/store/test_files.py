"""The store's file helpers: one atomic write (whole or nothing), produced-once files shared by processes."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evolens.store.files import TMP_MARK, atomic_write, produce_once, remove_dead_temporaries


def test_atomic_write_replaces_whole_or_leaves_the_old_file(tmp_path):
    path = tmp_path / "sub" / "file.bin"
    atomic_write(path, b"first")
    assert path.read_bytes() == b"first"
    atomic_write(path, "second, as UTF-8 é")
    assert path.read_text(encoding="utf-8") == "second, as UTF-8 é"

    def fails_midway(handle):
        handle.write(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(path, fails_midway)
    assert path.read_text(encoding="utf-8") == "second, as UTF-8 é"  # the old file, whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.bin"]  # no temporary left behind


def test_dead_writers_temporaries_are_removed_live_ones_kept(tmp_path):
    dead = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(0,))
    dead.start()
    dead.join()
    (tmp_path / f"a.npy{TMP_MARK}{dead.pid}-abcd1234").write_bytes(b"x")
    (tmp_path / f"b.npy{TMP_MARK}{os.getpid()}-abcd1234").write_bytes(b"x")
    assert remove_dead_temporaries(tmp_path.iterdir()) == 1
    assert [p.name.split(".")[0] for p in tmp_path.iterdir()] == ["b"]


PRODUCER = """
import os, sys, time
import torch
from evolens.store.files import produce_once

path, threads, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
torch.set_num_threads(threads)

def produce(handle):
    with open(log, "a") as out:
        out.write(f"{os.getpid()}\\n")
    time.sleep(1.0)  # long enough for the other process to ask meanwhile
    handle.write(f"made by {os.getpid()} on {torch.get_num_threads()} threads".encode())

produce_once(path, produce)
"""


def test_two_processes_at_once_produce_the_file_once_and_read_the_same(tmp_path):
    """Two processes with different torch thread counts (what made digits-cnn's weights differ) ask for the same
    cached file at the same moment: one produces it, the other waits and reads that one."""
    path, log = tmp_path / "cache" / "weights.pt", tmp_path / "produced.log"
    workers = [subprocess.Popen([sys.executable, "-c", PRODUCER, str(path), str(threads), str(log)])
               for threads in (1, 2)]
    assert [worker.wait(120) for worker in workers] == [0, 0]
    producers = log.read_text().split()
    assert len(producers) == 1, producers
    assert path.read_text().startswith(f"made by {producers[0]} ")
    assert not [p for p in path.parent.iterdir() if TMP_MARK in p.name]
    # asked again, the file is there: nothing is produced
    produce_once(path, lambda handle: pytest.fail("produced a file that exists"))
    # a damaged file is produced again when ``valid`` rejects it
    Path(path).write_bytes(b"")
    produce_once(path, lambda handle: handle.write(b"fresh"), valid=lambda p: p.stat().st_size > 0)
    assert path.read_bytes() == b"fresh"
