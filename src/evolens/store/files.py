"""The store's file helpers, on the ground of the store: one atomic write, process liveness, the temporaries of
killed writers, and which filesystem holds a path.

Every file evolens writes whole (arrays, shards, manifests, the report, caches of data and trained encoders) goes
through ``atomic_write``: written to a temporary name in the destination folder, flushed and fsynced, then
renamed into place, so a reader — or a process that restarts after a kill — sees the old file or the new one,
never a part. Temporaries carry their writer's pid (``<name>.tmp-<pid>…``) so ``remove_dead_temporaries`` can
tell a killed writer's leftover from a live writer's file in progress. This module imports nothing of evolens.
"""

from __future__ import annotations

import os
import re
import uuid
import warnings
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

__all__ = ["NETWORK_FILESYSTEMS", "TMP_MARK", "atomic_write", "produce_once", "filesystem_type", "fsync_dir", "network_filesystem",
           "pid_alive", "remove_dead_temporaries", "temporary_path"]

TMP_MARK = ".tmp-"  # a temporary's name: <target name><TMP_MARK><pid>-<random>


def temporary_path(path: str | os.PathLike, mark: str = TMP_MARK) -> Path:
    """A fresh temporary name beside ``path`` carrying this process's pid (``remove_dead_temporaries`` parses it)."""
    path = Path(path)
    return path.with_name(f"{path.name}{mark}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object] | bytes | str, *,
                 fsync: bool = True) -> Path:
    """Write the file ``path`` whole or not at all: ``write`` (a function given the open binary handle, or the
    bytes, or a str written as UTF-8) fills a temporary beside it, which is flushed, fsynced (``fsync=False``
    skips it: survives a killed process, not an OS crash) and renamed over ``path``. The temporary never stays
    behind, also when ``write`` raises (a full disk). Creates the parent folder. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as handle:
            if callable(write):
                write(handle)
            else:
                handle.write(write.encode("utf-8") if isinstance(write, str) else write)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def produce_once(path: str | os.PathLike, produce: Callable[[BinaryIO], object], *,
                 valid: Callable[[Path], bool] | None = None) -> Path:
    """The file ``path``, produced by ``produce`` (given the open binary handle of a temporary) once per machine:
    under an exclusive lock on ``<path>.lock``, so processes asking at the same time wait for the one that
    produces it and all read the same file (an encoder trained on first use gets one id in every process, not
    one per process that trained it). A file present already is returned at once; ``valid`` (a check of an
    existing file) may reject a damaged one, which is produced again. Written with ``atomic_write``."""
    import fcntl

    path = Path(path)
    if path.is_file() and (valid is None or valid(path)):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file closes, also when the process dies
        try:
            if not (path.is_file() and (valid is None or valid(path))):  # another process may have made it
                atomic_write(path, produce)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    return path


def fsync_dir(folder: str | os.PathLike) -> None:
    """fsync a folder, so a rename or link made in it survives an OS crash (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (one owned by another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - alive, owned by someone else
        return True
    return True


def remove_dead_temporaries(paths: Iterable[Path], mark: str = TMP_MARK) -> int:
    """Delete the files among ``paths`` named ``<anything><mark><pid>[-<anything>]`` whose process ``pid`` is no
    longer alive (temporaries of killed writers); return how many were removed."""
    removed = 0
    for tmp in paths:
        try:
            pid = int(tmp.name.rsplit(mark, 1)[1].split("-", 1)[0].split(".", 1)[0])
        except (ValueError, IndexError):
            continue
        if not pid_alive(pid):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


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
