"""Content-addressed, atomically written ``.npy`` files.

An array is named by the SHA-256 of its dtype, shape and bytes, so the same content is stored once and a
name always means the same content. Files are written to a temporary name in the destination folder,
flushed and fsynced, then renamed into place: a reader (or a process that restarts after a kill) sees either
the whole file or no file, never a partial one. Nothing is ever rewritten.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import InputError, StoreIntegrityError
from .layout import ARRAYS_DIR, array_relative_path

_TMP_MARK = ".tmp-"


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


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - alive, owned by someone else
        return True
    return True


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
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.parent / f"{digest}{_TMP_MARK}{os.getpid()}"
            try:
                with open(tmp, "wb") as handle:
                    np.save(handle, array, allow_pickle=False)
                    handle.flush()
                    if self.fsync:
                        os.fsync(handle.fileno())
                os.replace(tmp, target)
            finally:
                if tmp.exists():
                    tmp.unlink()
        return StoredArray(digest, rel, tuple(array.shape), array.dtype.str, int(array.nbytes))

    def get(self, rel_path: str, *, mmap: bool = False, verify_hash: str | None = None) -> np.ndarray:
        """Load the array stored at ``rel_path``; with ``verify_hash`` check its content hash too."""
        path = self.run_dir / rel_path
        if not path.is_file():
            raise StoreIntegrityError(f"array file {str(path)!r} is indexed in the run but missing on disk")
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        if verify_hash is not None and array_hash(np.asarray(array)) != verify_hash:
            raise StoreIntegrityError(f"array file {str(path)!r} does not match its content hash {verify_hash}")
        return array

    def remove_stale_temporaries(self) -> int:
        """Delete temporary files left by writers that died mid-write; return how many were removed."""
        root = self.run_dir / ARRAYS_DIR
        return remove_dead_temporaries(root.glob(f"*/*{_TMP_MARK}*"), _TMP_MARK) if root.is_dir() else 0


def remove_dead_temporaries(paths: Iterable[Path], mark: str) -> int:
    """Delete the files among ``paths`` named ``<anything><mark><pid>[-<anything>]`` whose process ``pid`` is no
    longer alive (temporaries of killed writers); return how many were removed."""
    removed = 0
    for tmp in paths:
        try:
            pid = int(tmp.name.rsplit(mark, 1)[1].split("-", 1)[0])
        except ValueError:
            continue
        if not pid_alive(pid):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed
