"""Runs and shared storage: detect a network filesystem, publish a run for other machines, mirror it onto theirs.

SQLite's WAL mode — what lets the training write while workers and dashboards read — keeps its index in shared
memory, which exists only on one host; over NFS, SMB, Lustre or a FUSE mount, processes on *different* hosts
cannot share it, and their file locks may not be honoured. Measured on a real network filesystem (two sshfs
mounts of one share as two hosts, ``benchmarks/shared_storage.py``): two writers in WAL mode committed 8,000 rows
and 4,000 were there afterwards, with no error and ``integrity_check`` ok; in rollback-journal mode writers saw
"disk I/O error" and "database disk image is malformed" and rows went missing; the live worker's ``flock`` was
taken on both hosts at once. So evolens keeps this division (docs/architecture.md, "Past one machine"):

- **the training host keeps the run on a local disk**; the Monitor, the live worker and a local dashboard share
  it there as usual. A writer that finds its run on a network filesystem warns once (``network_filesystem``):
  it works while every process that opens the run is on that host, and nowhere else;
- **other machines read a published copy**: ``publish(run, dest)`` (``evolens publish RUN DEST [--every S]``)
  takes a consistent snapshot of the database with SQLite's online backup (it never blocks the writer), turns
  it into a rollback-journal database that readers open ``immutable`` (no locks, no shared memory, no side
  files), copies only the array files the destination lacks (content-addressed: never rewritten), and puts
  the database in place last — under a file name of its own, ``runs.sqlite`` a symlink renamed onto it — so a
  reader sees the previous or the new copy, never a mix, even through a client's stale page cache;
- **other machines analyse a copy of their own**: ``mirror(source, dest)`` (``evolens mirror SOURCE DEST
  [--every S]``) keeps a writable copy on their local disk up to date with the published one (new snapshots and
  reference sets appended, their own analyses kept), and live workers on several hosts share the work and the
  values through a store made for concurrent writers, PostgreSQL (``evolens.store.results_db``,
  ``evolens watch COPY --results postgresql://…``).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path

from ..errors import InputError
from . import events, layout
from .files import NETWORK_FILESYSTEMS, atomic_write, filesystem_type, network_filesystem  # noqa: F401 - re-exported

__all__ = ["MIRROR_EVENT", "NETWORK_FILESYSTEMS", "filesystem_type", "mirror", "network_filesystem", "publish"]

VERSIONS_DIR = ".published"  # the copy's database versions; runs.sqlite is a symlink to the newest
VERSION_GRACE_SECONDS = 600.0


def publish(run_dir: str | os.PathLike, dest: str | os.PathLike) -> dict[str, int]:
    """Copy the run at ``run_dir`` to ``dest`` as a read-only run other hosts can open: a consistent snapshot of
    the database (online backup, rollback journal), the array files ``dest`` lacks, the database put into
    place last. Run it again to bring ``dest`` up to date. Returns ``{"arrays_copied", "arrays_total", "bytes",
    "published_at"}``. Checkpoints, reports and logs stay with the run (the copy is for reading and analysing its
    snapshots; the snapshot rows still name the checkpoints' paths and hashes).
    """
    source, target = Path(run_dir), Path(dest)
    if not layout.db_path(source).is_file():
        raise InputError(f"run_dir: expected an evolens run directory, received {str(run_dir)!r}")
    if target.resolve() == source.resolve():
        raise InputError(f"dest: expected a folder other than the run itself, received {str(dest)!r}")
    target.mkdir(parents=True, exist_ok=True)
    versions = target / VERSIONS_DIR
    versions.mkdir(exist_ok=True)
    tmp_db = versions / f".publishing-{os.getpid()}"
    src = sqlite3.connect(f"{layout.db_path(source).resolve().as_uri()}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(tmp_db)
        try:
            src.backup(dst)  # pages copied in steps; a writer committing meanwhile restarts it (never blocked)
            dst.execute("PRAGMA journal_mode=DELETE")  # no WAL, no shared memory: readers open it immutable
            arrays = [row[0] for row in dst.execute("SELECT path FROM arrays")]
        finally:
            dst.close()
    finally:
        src.close()
    copied = nbytes = 0
    try:
        for rel in arrays:
            out = target / rel
            if out.is_file() and out.stat().st_size == (source / rel).stat().st_size:
                continue
            with open(source / rel, "rb") as original:
                atomic_write(out, lambda handle: shutil.copyfileobj(original, handle, 1 << 20))
            copied += 1
            nbytes += out.stat().st_size
        with open(tmp_db, "rb") as handle:
            os.fsync(handle.fileno())
        # last, the copy's database (naming only arrays already there) under a name of its own, never rewritten,
        # and runs.sqlite pointed at it by renaming a symlink over it (atomic): a reader on another host that
        # caches the old file's pages can never read them as the new file's (measured on sshfs: replacing the
        # file itself gave "database disk image is malformed" to 10 of 54 reads during republishing)
        version = versions / f"{time.time_ns()}-{os.getpid()}.sqlite"
        os.replace(tmp_db, version)
        link = target / f".{layout.DB_NAME}.link-{os.getpid()}"
        link.unlink(missing_ok=True)
        try:
            os.symlink(os.path.relpath(version, target), link)
        except OSError:  # a filesystem without symlinks (some SMB shares): the file itself, renamed into place
            os.replace(version, layout.db_path(target))
        else:
            os.replace(link, layout.db_path(target))
    finally:
        tmp_db.unlink(missing_ok=True)
    _drop_old_versions(versions, keep_seconds=VERSION_GRACE_SECONDS)
    return {"arrays_copied": copied, "arrays_total": len(arrays), "bytes": nbytes, "published_at": int(time.time())}


def _drop_old_versions(versions: Path, keep_seconds: float) -> None:
    """Remove published database versions older than ``keep_seconds`` (a reader that opened one has that long
    to finish), always keeping the newest two."""
    files = sorted(versions.glob("*.sqlite"), key=lambda f: int(f.name.split("-")[0]))
    now = time.time_ns()
    for old in files[:-2]:
        if now - int(old.name.split("-")[0]) > keep_seconds * 1e9:
            old.unlink(missing_ok=True)


MIRROR_EVENT = events.MIRROR  # written by ``mirror`` after each pass: data {"capture_running": bool, "source": path}


def mirror(source: str | os.PathLike, dest: str | os.PathLike) -> dict[str, int]:
    """Keep ``dest`` — a writable copy of a run on this host's disk — up to date with ``source`` (the run, or a
    copy ``publish`` keeps on a network filesystem): the first call copies the whole run (``publish``, then
    made an ordinary writable run); later calls append the snapshots and reference sets ``source`` has and
    ``dest`` lacks, and keep everything written to ``dest`` since (the analyses of this host's live worker).
    Each pass records whether ``source``'s capture is still running (an event ``mirror``), which a live worker on
    ``dest`` follows. The copy keeps the run's identity (``Run.uid``), so workers on several hosts share one
    results store (``evolens.store.results_db``). Returns ``{"snapshots_copied", "references_copied"}``."""
    from .run import is_run_dir, open_run
    from .writer import RunWriter

    source, target = Path(source), Path(dest)
    if not is_run_dir(source):
        raise InputError(f"source: expected an evolens run or a published copy, received {str(source)!r}")
    if target.resolve() == source.resolve():
        raise InputError(f"dest: expected a folder other than the source, received {str(dest)!r}")

    # read before copying: a capture that ends after this read leaves its last snapshots for the next pass,
    # never a copy that says "ended" without them
    with open_run(source) as origin:
        running = events.capture_running(origin)
    counts = {"snapshots_copied": 0, "references_copied": 0}
    if not is_run_dir(target):
        if target.exists() and any(target.iterdir()):
            raise InputError(f"dest: expected a new folder or a mirror made earlier, received {str(dest)!r} "
                             "(not empty, not a run)")
        publish(source, target)
        _make_writable(target)
        with open_run(target) as run:
            counts["snapshots_copied"] = len(run.steps())
            counts["references_copied"] = len(run.reference_names())
    else:
        with open_run(source) as origin, open_run(target) as copy:
            if origin.uid != copy.uid:
                raise InputError(f"dest: {str(dest)!r} is a copy of another run (uid {copy.uid}, source {origin.uid})")
            have, refs = set(copy.steps().tolist()), set(copy.reference_names())
            new_steps = [s for s in origin.steps().tolist() if s not in have]
            new_refs = [name for name in origin.reference_names() if name not in refs]
            if new_steps or new_refs:
                writer = RunWriter(target, kind="analysis", create=False)
                try:
                    for name in new_refs:  # the images linked or copied as a file, never loaded
                        digest = origin.reference_hash(name)
                        reference = origin.reference(name, mmap=True)
                        writer.write_reference_file(name, origin.array_file(digest), digest, reference.labels,
                                                    reference.meta)
                    for step in new_steps:
                        snap = origin.snapshot(step)
                        arrays = {key: origin._load(digest) for key, digest in snap.arrays.items()}
                        writer.write_snapshot(step, arrays, wall_time=snap.wall_time,
                                              capture_seconds=snap.capture_seconds, seed=snap.seed,
                                              checkpoint_path=snap.checkpoint_path,
                                              checkpoint_hash=snap.checkpoint_hash, extra=snap.extra)
                finally:
                    writer.close()
            counts = {"snapshots_copied": len(new_steps), "references_copied": len(new_refs)}
    with open_run(target) as copy:
        copy.add_event(MIRROR_EVENT, f"mirrored {counts['snapshots_copied']} snapshots from {source}",
                       data={"capture_running": running, "source": str(source), **counts})
    return counts


def _make_writable(target: Path) -> None:
    """Turn a published copy into an ordinary run: its newest database version becomes ``runs.sqlite`` (WAL, as
    evolens creates runs), the versions folder goes."""
    db = layout.db_path(target)
    if db.is_symlink():
        version = db.resolve()
        db.unlink()
        os.replace(version, db)
    shutil.rmtree(target / VERSIONS_DIR, ignore_errors=True)
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
