"""Content-addressed, atomically written ``.npy`` files.

An array is named by the SHA-256 of its dtype, shape and bytes, so the same content is stored once and a
name always means the same content. Files are written to a temporary name in the destination folder,
flushed and fsynced, then renamed into place: a reader (or a process that restarts after a kill) sees either
the whole file or no file, never a partial one.

Reads are verified: the first time a process reads a file (per path, size and mtime) its content hash is
recomputed and compared with its name; a file that fails to load or to match is a ``StoreIntegrityError``
naming it. A damaged file is the one case where a file is rewritten: ``put`` of the same content replaces it.
``verify_file`` checks one file; ``evolens verify RUN`` checks every file of a run.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, StoreIntegrityError
from .files import TMP_MARK, atomic_write, remove_dead_temporaries, temporary_path
from .layout import ARRAYS_DIR, array_relative_path

_verified: set[tuple[str, int, int]] = set()  # (path, size, mtime_ns) of files whose hash this process checked


@dataclass(frozen=True)
class StoredArray:
    """Where and what one stored array is: ``hash`` (hex SHA-256), ``path`` relative to the run directory."""

    hash: str
    path: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int


def array_hash(array: np.ndarray) -> str:
    """Hex SHA-256 of an array's dtype, shape and C-order bytes (independent of memory layout)."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256()
    digest.update(f"{array.dtype.str}|{array.shape}|".encode())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def file_hash(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (used for checkpoints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


class ArrayStore:
    """Write and read content-addressed arrays under ``<run_dir>/arrays``.

    Args:
        run_dir: the run directory; array paths are stored relative to it so a run can be moved.
        fsync: fsync each file before the rename (survives an OS crash, costs ~1 ms per file).
    """

    def __init__(self, run_dir: Path, fsync: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.fsync = fsync


    def put(self, array: np.ndarray, name: str = "array") -> StoredArray:
        """Store ``array`` (any shape, numeric, bool or fixed-width string dtype) and return its record.

        Raises InputError for object arrays, which could only be stored with pickle.
        """
        array = np.ascontiguousarray(array)
        if array.dtype.hasobject:
            raise InputError(f"{name}: expected a numeric, bool or string array, received dtype=object shape={array.shape}")
        digest = array_hash(array)
        rel = array_relative_path(digest)
        target = self.run_dir / rel
        if not target.exists() or not _intact(target, digest):  # new content, or a damaged copy to replace
            atomic_write(target, lambda handle: np.save(handle, array, allow_pickle=False), fsync=self.fsync)
        return StoredArray(digest, rel, tuple(array.shape), array.dtype.str, int(array.nbytes))

    def put_file(self, source: str | os.PathLike, digest: str) -> StoredArray:
        """Store the ``.npy`` file ``source`` whose content hash is ``digest`` (another store's verified
        content-addressed file, e.g. a named reference's images) without loading it: a hard link where both are
        on one filesystem (no byte copied; content-addressed files are never rewritten), else a copy in chunks.
        Returns its record (shape and dtype read from the file's header)."""
        source = Path(source)
        header = np.load(source, mmap_mode="r", allow_pickle=False)
        record = StoredArray(digest, array_relative_path(digest), tuple(header.shape), header.dtype.str,
                             int(header.nbytes))
        del header
        target = self.run_dir / record.path
        if target.exists() and _intact(target, digest):
            return record
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_path(target)
        try:
            try:
                os.link(source, tmp)
            except OSError:  # another filesystem, or links not supported: copy, a chunk at a time
                import shutil

                shutil.copyfile(source, tmp)
                if self.fsync:
                    with open(tmp, "rb") as handle:
                        os.fsync(handle.fileno())
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
        return record

    def get(self, rel_path: str, *, mmap: bool = False, verify_hash: str | None = None) -> np.ndarray:
        """Load the array stored at ``rel_path``; with ``verify_hash`` check its content hash too."""
        path = self.run_dir / rel_path
        if not path.is_file():
            raise StoreIntegrityError(f"array file {str(path)!r} is indexed in the run but missing on disk")
        expected = verify_hash or Path(rel_path).stem
        try:
            stat = path.stat()
            key = (str(path), stat.st_size, stat.st_mtime_ns)
            array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
            if key not in _verified or verify_hash is not None:
                if array_hash(np.asarray(array)) != expected:
                    raise StoreIntegrityError(f"array file {str(path)!r} is damaged: its content does not match "
                                              f"its hash {expected[:16]}… (run `evolens verify` on the run)")
                _verified.add(key)
        except StoreIntegrityError:
            raise
        except (OSError, ValueError, EOFError) as exc:  # truncated, empty or garbled .npy
            raise StoreIntegrityError(f"array file {str(path)!r} is damaged: it does not load ({exc})") from None
        return array

    def remove_stale_temporaries(self) -> int:
        """Delete temporary files left by writers that died mid-write; return how many were removed."""
        root = self.run_dir / ARRAYS_DIR
        return remove_dead_temporaries(root.glob(f"*/*{TMP_MARK}*"), TMP_MARK) if root.is_dir() else 0


def verify_file(path: Path, digest: str) -> str | None:
    """None when the ``.npy`` file at ``path`` loads and its content hashes to ``digest``; else what is wrong."""
    if not path.is_file():
        return "missing"
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        return f"does not load ({exc})"
    if array_hash(array) != digest:
        return "content does not match its hash"
    return None


def _intact(path: Path, digest: str) -> bool:
    """Whether an existing file holds the content named ``digest`` (read once per process); False when it has
    gone since it was seen (``evolens gc`` removing an orphan): the caller then writes it."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return False
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key in _verified:
        return True
    if verify_file(path, digest) is None:
        _verified.add(key)
        return True
    return False
