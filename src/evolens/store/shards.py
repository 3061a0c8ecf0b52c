"""Feature arrays too large for memory: rows split over ``.npy`` shards in one folder, read one shard at a time.

A folder of shards holds ``shard-00000.npy``, ``shard-00001.npy``, … (each ``(rows, d)``, the same dtype and ``d``)
and ``shards.json`` (``n``, ``d``, ``dtype``, the rows of each shard, and the row mean in float64, which the
distance code uses to centre). A shard file is written to a temporary name, fsynced and renamed into place, and
``shards.json`` is rewritten (the same way) after every shard: a writer killed at any moment leaves a folder that
reads as the shards completed before it. ``ShardedFeatures`` never holds more than one shard (plus what a caller
gathers), so a k-NN search over a million reference rows runs in memory set by the shard size, not the reference.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .._validation import describe
from ..errors import InputError
from .files import atomic_write

__all__ = ["DEFAULT_SHARD_ROWS", "RowSelection", "ShardWriter", "ShardedFeatures", "is_shard_dir"]

DEFAULT_SHARD_ROWS = 65_536  # 128 MiB of 512-d float32 per shard
MANIFEST = "shards.json"


def is_shard_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder of feature shards (has a ``shards.json``)."""
    return (Path(path) / MANIFEST).is_file()


class ShardWriter:
    """Append rows to a folder of shards: ``append(block)`` any number of rows at a time; full shards of
    ``shard_rows`` rows are written as they fill, the rest on ``close()`` (or leaving the ``with`` block).

    Args:
        folder: created if missing; must not already hold shards.
        shard_rows: rows per shard file.
    """

    def __init__(self, folder: str | os.PathLike, shard_rows: int = DEFAULT_SHARD_ROWS) -> None:
        from .._validation import check_positive

        self.folder = Path(folder)
        self.shard_rows = int(check_positive(shard_rows, "shard_rows"))
        if is_shard_dir(self.folder):
            raise InputError(f"folder: expected a new folder for feature shards, {str(self.folder)!r} already holds "
                             "some")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0
        self._rows: list[int] = []
        self._sum: np.ndarray | None = None
        self._dtype: np.dtype | None = None
        self._d: int | None = None

    def append(self, block: Any) -> None:
        """Append ``block`` (rows, d) — the same d and dtype as the rows before."""
        array = np.asarray(block)
        if array.ndim != 2 or array.shape[0] == 0 or not np.issubdtype(array.dtype, np.floating):
            raise InputError(f"block: expected a (rows, d) float array with rows >= 1, received {describe(block)}")
        if self._d is None:
            self._d, self._dtype = array.shape[1], array.dtype
            self._sum = np.zeros(self._d, dtype=np.float64)
        elif array.shape[1] != self._d or array.dtype != self._dtype:
            raise InputError(f"block: expected (rows, {self._d}) {self._dtype} like the rows before, received "
                             f"shape={array.shape} dtype={array.dtype}")
        self._sum += array.sum(axis=0, dtype=np.float64)
        self._pending.append(array)
        self._pending_rows += array.shape[0]
        while self._pending_rows >= self.shard_rows:
            self._flush(self.shard_rows)

    def _flush(self, rows: int) -> None:
        joined = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        shard, rest = joined[:rows], joined[rows:]
        path = self.folder / f"shard-{len(self._rows):05d}.npy"
        atomic_write(path, lambda handle: np.save(handle, np.ascontiguousarray(shard)))
        self._rows.append(int(shard.shape[0]))
        self._pending = [rest] if rest.shape[0] else []
        self._pending_rows = int(rest.shape[0])
        self._write_manifest()

    def _write_manifest(self) -> None:
        n = sum(self._rows)
        manifest = {"n": n, "d": self._d, "dtype": str(self._dtype), "rows": self._rows,
                    "mean": (self._sum / max(n, 1)).tolist() if n and self._pending_rows == 0 else None}
        atomic_write(self.folder / MANIFEST, lambda handle: handle.write(json.dumps(manifest).encode()))

    def close(self) -> "ShardedFeatures":
        """Write what is left and return the finished folder for reading."""
        if self._pending_rows:
            self._flush(self._pending_rows)
        if self._d is None:
            raise InputError("block: no rows were appended; a folder of shards needs at least one")
        self._write_manifest()
        return ShardedFeatures(self.folder)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, kind, *rest: object) -> None:
        if kind is None:
            self.close()


class ShardedFeatures:
    """A (n, d) feature array kept in shards on disk: ``shape``, ``dtype``, ``mean`` (float64, None for a folder
    a writer has not finished), ``blocks()`` one shard at a time, ``take(rows)`` to gather rows, ``load()`` for
    all (small sets only)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        if not is_shard_dir(self.folder):
            raise InputError(f"folder: expected a folder of feature shards with {MANIFEST}, received "
                             f"{str(folder)!r}")
        manifest = json.loads((self.folder / MANIFEST).read_text())
        self.rows: list[int] = [int(r) for r in manifest["rows"]]
        self.dtype = np.dtype(manifest["dtype"])
        self.shape = (int(manifest["n"]), int(manifest["d"]))
        self.mean = None if manifest.get("mean") is None else np.asarray(manifest["mean"], dtype=np.float64)
        self.offsets = np.concatenate([[0], np.cumsum(self.rows)]).astype(np.int64)

    ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def shard_path(self, i: int) -> Path:
        return self.folder / f"shard-{i:05d}.npy"

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, shard array)`` for every shard, in order; one shard in memory at a time."""
        for i, start in enumerate(self.offsets[:-1]):
            yield int(start), np.load(self.shard_path(i))

    def take(self, rows: Any) -> np.ndarray:
        """The rows at ``rows`` (any shape of int indices) → ``rows.shape + (d,)``, read through memory maps."""
        index = np.asarray(rows, dtype=np.int64)
        flat = index.reshape(-1)
        if flat.size and (flat.min() < 0 or flat.max() >= self.shape[0]):
            raise InputError(f"rows: expected indices in [0, {self.shape[0]}), received {flat.min()}..{flat.max()}")
        out = np.empty((flat.size, self.shape[1]), dtype=self.dtype)
        shard = np.searchsorted(self.offsets, flat, side="right") - 1
        for i in np.unique(shard):
            where = np.flatnonzero(shard == i)
            mapped = np.load(self.shard_path(int(i)), mmap_mode="r")
            out[where] = mapped[flat[where] - self.offsets[i]]
            del mapped
        return out.reshape(index.shape + (self.shape[1],))

    def __getitem__(self, rows: Any) -> np.ndarray:
        """``features[index_array]``: the rows at those indices (``take``); a boolean mask (n,), slices and
        scalars too."""
        if isinstance(rows, slice):
            return self.take(np.arange(self.shape[0])[rows])
        index = np.asarray(rows)
        if index.dtype == bool:
            if index.shape != (self.shape[0],):
                raise InputError(f"rows: expected a boolean mask of shape ({self.shape[0]},), received "
                                 f"shape={index.shape}")
            return self.take(np.flatnonzero(index))
        if index.size and not np.issubdtype(index.dtype, np.integer):
            raise InputError(f"rows: expected integer indices or a boolean mask, received dtype={index.dtype}")
        return self.take(index)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """``np.asarray(features)``: every row loaded (code that needs the whole array in memory)."""
        array = self.load()
        return array if dtype is None else array.astype(dtype, copy=False)

    def load(self) -> np.ndarray:
        """Every row in one array (n, d): for sets that fit in memory."""
        return np.concatenate([block for _, block in self.blocks()])

    def all_finite(self) -> bool:
        """Whether every value is finite: read off the stored float64 row mean (a sum is finite iff every term
        is), else one pass over the shards."""
        if self.mean is not None:
            return bool(np.isfinite(self.mean).all())
        return all(np.isfinite(np.sum(block, dtype=np.float64)) for _, block in self.blocks())

    def select(self, mask: Any) -> "RowSelection":
        """The rows where the boolean ``mask`` (n,) is true, as a sharded array of their own (one class of a
        reference): nothing is read until its blocks are."""
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != (self.shape[0],):
            raise InputError(f"mask: expected a boolean mask of shape ({self.shape[0]},), received {describe(mask)}")
        return RowSelection(self, np.flatnonzero(mask))

    def __repr__(self) -> str:
        return f"ShardedFeatures({str(self.folder)!r}, shape={self.shape}, dtype={self.dtype}, shards={len(self.rows)})"


class RowSelection:
    """Some rows of a ``ShardedFeatures`` (``parent_rows``, ascending), read like one: ``shape``, ``dtype``,
    ``blocks()`` (the selected rows of one shard at a time, numbered within the selection), ``take`` /
    ``[rows]``, ``load()``. ``mean`` is None (computed by whoever needs it, in one pass)."""

    ndim = 2
    mean = None

    def __init__(self, parent: ShardedFeatures, parent_rows: np.ndarray) -> None:
        self.parent = parent
        self.parent_rows = np.asarray(parent_rows, dtype=np.int64)
        self.shape = (int(self.parent_rows.shape[0]), parent.shape[1])
        self.dtype = parent.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row within the selection, selected rows of one shard)`` for every shard holding some."""
        bounds = np.searchsorted(self.parent_rows, self.parent.offsets)
        for i in range(len(self.parent.rows)):
            first, last = int(bounds[i]), int(bounds[i + 1])
            if last > first:
                mapped = np.load(self.parent.shard_path(i), mmap_mode="r")
                yield first, np.asarray(mapped[self.parent_rows[first:last] - self.parent.offsets[i]])
                del mapped

    def take(self, rows: Any) -> np.ndarray:
        """The selected rows at ``rows`` (int indices into the selection) → ``rows.shape + (d,)``."""
        index = np.asarray(rows, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= self.shape[0]):
            raise InputError(f"rows: expected indices in [0, {self.shape[0]}), received {index.min()}..{index.max()}")
        return self.parent.take(self.parent_rows[index])

    def __getitem__(self, rows: Any) -> np.ndarray:
        if isinstance(rows, slice):
            return self.take(np.arange(self.shape[0])[rows])
        index = np.asarray(rows)
        if index.dtype == bool:
            return self.take(np.flatnonzero(index))
        return self.take(index)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self.load()
        return array if dtype is None else array.astype(dtype, copy=False)

    def load(self) -> np.ndarray:
        """Every selected row in one array (m, d)."""
        return self.take(np.arange(self.shape[0]))

    def all_finite(self) -> bool:
        """Whether every selected value is finite (at once when the whole parent is)."""
        return self.parent.all_finite() or all(np.isfinite(np.sum(block, dtype=np.float64))
                                                for _, block in self.blocks())

    def __repr__(self) -> str:
        return f"RowSelection({self.parent!r}, rows={self.shape[0]})"
