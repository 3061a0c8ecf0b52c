"""Runs and shared storage: detect a network filesystem, and publish a run as a read-only copy other machines read.

SQLite's WAL mode — what lets the training write while workers and dashboards read — keeps its index in shared
memory, which exists only on one host; over NFS, SMB, Lustre or a FUSE mount, processes on *different* hosts
cannot share it, and their file locks may not be honoured. So evolens keeps this division (docs/architecture.md,
"Past one machine"):

- **the training host keeps the run on a local disk**; the Monitor, the live worker and a local dashboard share
  it there as usual. A writer that finds its run on a network filesystem warns once (``network_filesystem``):
  it works while every process that opens the run is on that host, and nowhere else;
- **other machines read a published copy**: ``publish(run, dest)`` (``evolens publish RUN DEST [--every S]``)
  takes a consistent snapshot of the database with SQLite's online backup (it never blocks the writer), turns
  it into a rollback-journal database that readers open ``immutable`` (no locks, no shared memory, no side
  files), copies only the array files the destination lacks (content-addressed: never rewritten), and renames
  the database into place last, so a reader sees the previous or the new copy, never a mix.
- analysis results from other machines go into their own run (or a results store on their disk); a second
  live worker on the same run from another host is refused where the lock works and must not be started where
  it does not.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import time
import warnings
from pathlib import Path

from ..errors import InputError
from . import layout

__all__ = ["NETWORK_FILESYSTEMS", "filesystem_type", "network_filesystem", "publish"]

# filesystem types (as /proc/self/mountinfo names them) where processes on different hosts share files
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "ceph", "glusterfs", "lustre", "gpfs", "beegfs", "9p",
    "afs", "ocfs2", "gfs2", "fuse.sshfs", "fuse.gcsfuse", "fuse.s3fs", "fuse.rclone", "fuse.juicefs",
    "fuse.glusterfs", "fuse.cephfs", "fuse.lustre", "fuse.blobfuse", "fuse.goofys", "fuse.mountpoint-s3",
})

_warned: set[str] = set()


def _unescape(field: str) -> str:
    """A mountinfo path field: the kernel writes space, tab, newline and backslash as three-digit octal escapes
    (``\\040``…); everything else, UTF-8 included, is as it is (unicode_escape mangled non-ASCII mount points and
    raised on a lone backslash — in a check that runs when a capture opens)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def filesystem_type(path: str | os.PathLike, mountinfo: str | None = None) -> str | None:
    """The type of the filesystem holding ``path`` (``"ext4"``, ``"nfs4"``, ``"fuse.sshfs"``…), from
    ``/proc/self/mountinfo`` (or the text given); None where it cannot be read (not Linux)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return None
    target = Path(path).resolve()  # symlinks of the existing part followed; a missing tail kept as written
    best, best_type = -1, None
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or not tail:
            continue
        mount_point = Path(_unescape(fields[4]))
        fs_type = tail[0]
        if (target == mount_point or mount_point in target.parents) and len(mount_point.parts) > best:
            best, best_type = len(mount_point.parts), fs_type
    return best_type


def network_filesystem(path: str | os.PathLike, *, warn: bool = False, mountinfo: str | None = None) -> str | None:
    """The network filesystem type holding ``path``, or None for a local one. With ``warn``, warn once per path
    that other hosts must read a published copy (``evolens publish``)."""
    fs_type = filesystem_type(path, mountinfo)
    if fs_type is None or (fs_type not in NETWORK_FILESYSTEMS and not fs_type.startswith("nfs")):
        return None
    key = str(Path(path).resolve())
    if warn and key not in _warned:
        _warned.add(key)
        warnings.warn(f"evolens: run {key!r} is on a network filesystem ({fs_type}). SQLite's WAL works only while "
                      "every process that opens the run is on this host; let other machines read a copy made with "
                      "`evolens publish RUN DEST` (see docs/architecture.md, 'Past one machine').",
                      RuntimeWarning, stacklevel=3)
    return fs_type


def publish(run_dir: str | os.PathLike, dest: str | os.PathLike) -> dict[str, int]:
    """Copy the run at ``run_dir`` to ``dest`` as a read-only run other hosts can open: a consistent snapshot of
    the database (online backup, rollback journal), the array files ``dest`` lacks, the database renamed into
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
    tmp_db = target / f".{layout.DB_NAME}.publishing-{os.getpid()}"
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
            out.parent.mkdir(parents=True, exist_ok=True)
            partial = out.with_name(out.name + f".tmp-{os.getpid()}")
            shutil.copyfile(source / rel, partial)
            with open(partial, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(partial, out)
            copied += 1
            nbytes += out.stat().st_size
        with open(tmp_db, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_db, layout.db_path(target))  # last: the copy's database names only arrays already there
    finally:
        tmp_db.unlink(missing_ok=True)
    return {"arrays_copied": copied, "arrays_total": len(arrays), "bytes": nbytes, "published_at": int(time.time())}
