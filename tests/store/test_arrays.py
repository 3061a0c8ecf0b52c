import os

import numpy as np
import pytest

from evolens.errors import InputError, StoreIntegrityError
from evolens.store.arrays import ArrayStore, array_hash, file_hash


def test_hash_depends_on_content_not_layout(rng):
    a = rng.standard_normal((5, 7)).astype(np.float32)
    assert array_hash(a) == array_hash(np.asfortranarray(a))
    assert array_hash(a) != array_hash(a.astype(np.float64))
    assert array_hash(a) != array_hash(a.reshape(7, 5))
    b = a.copy()
    b[0, 0] += 1
    assert array_hash(a) != array_hash(b)


def test_put_get_roundtrip_and_dedupe(tmp_path, rng):
    store = ArrayStore(tmp_path)
    a = rng.standard_normal((3, 1, 4, 4)).astype(np.float32)
    rec = store.put(a)
    again = store.put(a.copy())
    assert rec == again
    assert rec.path == f"arrays/{rec.hash[:2]}/{rec.hash}.npy"
    np.testing.assert_array_equal(store.get(rec.path, verify_hash=rec.hash), a)
    assert len(list((tmp_path / "arrays").rglob("*.npy"))) == 1
    assert not list((tmp_path / "arrays").rglob("*.tmp-*"))


def test_strings_store_without_pickle(tmp_path):
    store = ArrayStore(tmp_path)
    ids = np.array(["noise:s0:0", "noise:s0:1"])
    rec = store.put(ids)
    assert store.get(rec.path).tolist() == ids.tolist()


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(InputError, match="dtype=object"):
        ArrayStore(tmp_path).put(np.array([{"a": 1}], dtype=object), name="extra")


def test_tampered_file_is_detected(tmp_path, rng):
    store = ArrayStore(tmp_path)
    rec = store.put(rng.standard_normal(10))
    np.save(tmp_path / rec.path, np.zeros(10))
    with pytest.raises(StoreIntegrityError, match="damaged: its content does not match its hash"):
        store.get(rec.path, verify_hash=rec.hash)
    (tmp_path / rec.path).unlink()
    with pytest.raises(StoreIntegrityError, match="missing on disk"):
        store.get(rec.path)


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    folder = tmp_path / "arrays" / "ab"
    folder.mkdir(parents=True)
    dead = folder / "abcd.tmp-999999999"  # no such pid
    live = folder / f"abce.tmp-{os.getpid()}"
    dead.write_bytes(b"partial")
    live.write_bytes(b"in progress")
    assert ArrayStore(tmp_path).remove_stale_temporaries() == 1
    assert not dead.exists() and live.exists()


def test_file_hash_matches_hashlib(tmp_path):
    import hashlib

    path = tmp_path / "ckpt.pt"
    payload = os.urandom(3 * (1 << 20) + 17)  # spans several read chunks
    path.write_bytes(payload)
    assert file_hash(path) == hashlib.sha256(payload).hexdigest()
