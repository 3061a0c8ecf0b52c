import numpy as np
import pytest
import torch

from evolens import InputError, Probes


def test_noise_probes_are_reproducible_and_ids_stable():
    a, b = Probes.from_noise(10, (2, 3), seed=5), Probes.from_noise(10, (2, 3), seed=5)
    assert torch.equal(a.noise, b.noise) and a.noise.shape == (10, 2, 3)
    assert a.ids.tolist() == [f"noise:s5:{i}" for i in range(10)]
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != Probes.from_noise(10, (2, 3), seed=6).fingerprint()
    # Independent of the global RNG state.
    torch.manual_seed(123)
    assert torch.equal(Probes.from_noise(10, (2, 3), seed=5).noise, a.noise)


def test_num_classes_cycles_labels():
    probes = Probes.from_noise(7, 4, num_classes=3)
    assert probes.labels.tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert probes.describe()["labels"] == [0, 1, 2]


def test_noise_sequence_for_stochastic_samplers():
    probes = Probes.from_noise(4, 8, seed=1)
    assert torch.equal(probes.noise_at(10), probes.noise_at(10))
    assert not torch.equal(probes.noise_at(10), probes.noise_at(11))
    assert probes.noise_at(3, shape=(2, 2)).shape == (4, 2, 2)
    g1, g2 = probes.generator(), probes.generator()
    assert torch.equal(torch.randn(5, generator=g1), torch.randn(5, generator=g2))


def test_image_probes(rng):
    images = rng.random((5, 1, 6, 6)).astype(np.float32)
    probes = Probes.from_images(images, labels=[1, 0, 1, 0, 1])
    assert probes.n == 5 and probes.ids[0] == "image:0" and probes.images.shape == (5, 1, 6, 6)
    assert probes.noise_at(0).shape == (5, 1, 6, 6)


def test_to_device_keeps_ids_and_values():
    probes = Probes.from_noise(3, 2, num_classes=2)
    moved = probes.to("cpu")
    assert moved.ids is probes.ids and torch.equal(moved.noise, probes.noise)
    assert moved.fingerprint() == probes.fingerprint()


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: Probes.from_noise(0, 4), "positive integer number of probes"),
        (lambda: Probes.from_noise(3, (4, 0)), "shape: expected a positive integer"),
        (lambda: Probes.from_noise(3, 4, labels=[0, 1, 2], num_classes=3), "at most one"),
        (lambda: Probes(["a", "a"]), "unique"),
        (lambda: Probes(["a", "b"], labels=[0, 1, 2]), r"expected 2 rows.*shape=\(3,\)"),
        (lambda: Probes(["a"], noise=[[float("nan")]]), "finite"),
        (lambda: Probes.from_images(np.zeros((2, 3, 4))), "4 dimensions"),
        (lambda: Probes([], noise=None), "non-empty"),
    ],
    ids=["zero-n", "zero-dim", "labels-twice", "dup-ids", "label-count", "nan-noise", "image-rank", "no-ids"],
)
def test_bad_probes(build, match):
    with pytest.raises(InputError, match=match):
        build()


def test_take_and_shard_keep_each_probes_noise_and_streams():
    full = Probes.from_noise(7, (2, 3), seed=5, num_classes=3)
    part = full.take([4, 1])
    assert part.ids.tolist() == [full.ids[4], full.ids[1]] and part.labels.tolist() == [1, 1]
    assert torch.equal(part.noise, full.noise[[4, 1]])
    assert torch.equal(part.noise_at(9), full.noise_at(9)[[4, 1]])  # per-step noise: the same rows
    assert torch.equal(part.take([1]).noise_at(2), full.noise_at(2)[[1]])
    draws = [torch.randn(3, generator=g) for g in full.generators()]
    assert torch.equal(torch.randn(3, generator=part.generators()[0]), draws[4])
    assert not torch.equal(draws[0], draws[1])
    shards = [full.shard(rank, 3) for rank in range(3)]
    assert [s.n for s in shards] == [3, 2, 2]
    assert sum((s.ids.tolist() for s in shards), []) == full.ids.tolist()
    for bad in (dict(rank=3, world_size=3), dict(rank=0, world_size=8), dict(rank=-1, world_size=2)):
        with pytest.raises(InputError, match="rank|world_size"):
            full.shard(**bad)
    with pytest.raises(InputError, match="indices"):
        full.take([7])
    with pytest.raises(InputError, match="indices"):
        full.take([])
