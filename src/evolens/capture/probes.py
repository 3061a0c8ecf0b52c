"""Probes: the fixed inputs that make snapshots comparable.

A generative model is sampled at every snapshot from the *same* inputs, so differences between snapshots are
differences in the model, not in the noise. A probe keeps its id across snapshots. Three kinds cover the
usual models: fixed noise vectors (GANs, VAEs, flows), fixed noise plus a fixed per-step noise sequence for
stochastic samplers (DDPM: ``noise_at(t)`` or ``generator()``), fixed conditioning labels, and fixed source
images for image-to-image models.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .._validation import check_array, check_seed, describe
from ..errors import InputError

_SEED_STRIDE = 1_000_003  # a prime: (seed, t) pairs map to distinct generator seeds for any t < stride


def _mix_seed(seed: int, t: int) -> int:
    return (seed * _SEED_STRIDE + t + 1) % (2**63 - 1)


def _id_seed(seed: int, probe_id: str) -> int:
    """A generator seed from the probe seed and one probe's id: the same for that probe in any subset."""
    import hashlib

    digest = int.from_bytes(hashlib.sha256(f"{seed}:{probe_id}".encode()).digest()[:8], "little")
    return digest % (2**63 - 1)


class Probes:
    """A fixed set of ``n`` probe inputs with stable ids.

    Attributes:
        ids: (n,) unicode array of probe ids, stable across snapshots and resumes.
        noise: (n, *noise_shape) float32 tensor or None.
        labels: (n,) int64 tensor of conditioning labels or None.
        images: (n, C, H, W) float32 tensor of source images or None.
        seed: the seed the noise was drawn from (also seeds the global RNG while sampling).

    Build them with ``Probes.from_noise``, ``Probes.from_images`` or the constructor.
    """

    def __init__(
        self,
        ids: Sequence[str] | np.ndarray,
        *,
        noise: Any = None,
        labels: Any = None,
        images: Any = None,
        seed: int = 0,
    ) -> None:
        ids = np.asarray(ids)
        if ids.ndim != 1 or ids.shape[0] == 0:
            raise InputError(f"ids: expected a non-empty 1-d sequence of probe ids, received shape={ids.shape}")
        self.ids = ids.astype(str)
        if len(set(self.ids.tolist())) != len(self.ids):
            raise InputError("ids: expected unique probe ids, received duplicates")
        n = len(self.ids)
        self.noise = self._tensor(noise, "noise", n, torch.float32)
        self.labels = self._tensor(labels, "labels", n, torch.int64)
        if self.labels is not None and self.labels.ndim != 1:
            raise InputError(f"labels: expected shape ({n},), received shape={tuple(self.labels.shape)}")
        self.images = self._tensor(images, "images", n, torch.float32)
        self.seed = check_seed(seed)
        self._rows: np.ndarray | None = None  # rows of the probes this set was taken from (see ``take``)
        self._source_n = n

    @staticmethod
    def _tensor(value: Any, name: str, n: int, dtype: torch.dtype) -> torch.Tensor | None:
        if value is None:
            return None
        if not isinstance(value, torch.Tensor):
            value = torch.as_tensor(check_array(value, name, min_samples=1))
        if value.ndim == 0 or value.shape[0] != n:
            raise InputError(f"{name}: expected {n} rows (one per probe id), received shape={tuple(value.shape)}")
        if not torch.isfinite(value.float()).all():
            raise InputError(f"{name}: expected finite values, received NaN or inf in shape={tuple(value.shape)}")
        return value.detach().to(dtype=dtype, device="cpu").clone()

    @classmethod
    def from_noise(
        cls,
        n: int,
        shape: int | Sequence[int],
        *,
        seed: int = 0,
        labels: Any = None,
        num_classes: int | None = None,
    ) -> "Probes":
        """``n`` fixed standard-normal noise vectors of ``shape`` drawn from ``seed``.

        Args:
            n: number of probes (>= 1).
            shape: shape of one noise input, e.g. 128 or (4, 8, 8).
            seed: seed of the draw; the same seed gives the same noise on every machine (torch CPU generator).
            labels: optional (n,) fixed conditioning labels.
            num_classes: shortcut for class-conditional models: labels ``arange(n) % num_classes``.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InputError(f"n: expected a positive integer number of probes, received {describe(n)}")
        seed = check_seed(seed)
        shape = (shape,) if isinstance(shape, (int, np.integer)) else shape
        if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__") or not tuple(shape) or any(
                isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in tuple(shape)):
            raise InputError(f"shape: expected a positive integer or a tuple of them, received {describe(shape)}")
        shape = tuple(int(s) for s in shape)
        if labels is not None and num_classes is not None:
            raise InputError("labels, num_classes: expected at most one of them, received both")
        if num_classes is not None:
            if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
                raise InputError(f"num_classes: expected a positive integer, received {describe(num_classes)}")
            labels = np.arange(n) % num_classes
        generator = torch.Generator().manual_seed(int(seed))
        noise = torch.randn((int(n), *map(int, shape)), generator=generator)
        ids = [f"noise:s{seed}:{i}" for i in range(int(n))]
        return cls(ids, noise=noise, labels=labels, seed=int(seed))

    @classmethod
    def from_images(
        cls, images: Any, *, labels: Any = None, ids: Sequence[str] | None = None, seed: int = 0
    ) -> "Probes":
        """Fixed source images (n, C, H, W) for image-to-image models, optionally with target labels."""
        images = check_array(images, "images", ndim=4, min_samples=1)
        ids = ids if ids is not None else [f"image:{i}" for i in range(images.shape[0])]
        if isinstance(ids, (str, bytes)) or len(ids) != images.shape[0]:
            raise InputError(f"ids: expected {images.shape[0]} probe ids (one per image), received {describe(ids)}")
        return cls(ids, images=images, labels=labels, seed=seed)

    @property
    def n(self) -> int:
        """Number of probes."""
        return len(self.ids)

    def __len__(self) -> int:
        return self.n

    def generator(self, device: str | torch.device = "cpu") -> torch.Generator:
        """A fresh generator seeded from the probe seed: the same random stream at every snapshot.

        What a batch draws from one generator depends on the batch size, so a subset of the probes (``take``,
        ``Monitor(shard_probes=True)``) draws different numbers; ``generators()`` and ``noise_at`` do not."""
        return torch.Generator(device=device).manual_seed(_mix_seed(self.seed, 0))

    def generators(self, device: str | torch.device = "cpu") -> list[torch.Generator]:
        """One fresh generator per probe, seeded from the probe seed and the probe's id.

        Each probe's random stream is its own: the same at every snapshot and whichever other probes are
        sampled with it (a subset, a shard on another rank). Diffusers' ``randn_tensor`` and schedulers' ``step``
        accept such a list (one row drawn from each generator)."""
        return [torch.Generator(device=device).manual_seed(_id_seed(self.seed, str(i))) for i in self.ids.tolist()]

    def take(self, indices: Sequence[int] | np.ndarray | slice) -> "Probes":
        """The probes at ``indices`` (ids, noise, labels, images), keeping the seed; ``noise_at`` and
        ``generators`` of the subset give exactly the rows the full set gives for those probes."""
        rows = np.arange(self.n)[indices] if isinstance(indices, slice) else np.asarray(indices)
        if rows.ndim != 1 or rows.size == 0 or not np.issubdtype(rows.dtype, np.integer) \
                or rows.min() < -self.n or rows.max() >= self.n:
            raise InputError(f"indices: expected a non-empty 1-d list of rows in [0, {self.n}), received {describe(indices)}")
        rows = rows % self.n
        index = torch.from_numpy(rows)
        subset = object.__new__(Probes)
        subset.ids, subset.seed = self.ids[rows], self.seed
        subset.noise = None if self.noise is None else self.noise[index.to(self.noise.device)]
        subset.labels = None if self.labels is None else self.labels[index.to(self.labels.device)]
        subset.images = None if self.images is None else self.images[index.to(self.images.device)]
        subset._rows = rows if self._rows is None else self._rows[rows]
        subset._source_n = self._source_n
        return subset

    def shard(self, rank: int, world_size: int) -> "Probes":
        """This rank's contiguous share of the probes (``np.array_split`` order: concatenating the shards of
        ranks 0..world_size-1 gives the probes back in order)."""
        for name, value in (("world_size", world_size), ("rank", rank)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise InputError(f"{name}: expected an integer, received {describe(value)}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise InputError(f"rank: expected 0 <= rank < world_size ({world_size}), received {rank}")
        if world_size > self.n:
            raise InputError(f"world_size: expected at most one rank per probe ({self.n} probes), received {world_size}")
        return self.take(np.array_split(np.arange(self.n), world_size)[rank])

    def noise_at(self, t: int, shape: Sequence[int] | None = None, device: str | torch.device = "cpu") -> torch.Tensor:
        """Fixed noise for sampler step ``t``: shape (n, *shape), identical at every snapshot.

        For stochastic samplers (DDPM's reverse-process noise): draw step t's noise from here and the paired
        samples of two models, or of two snapshots, share the whole noise sequence. ``shape`` defaults to the
        probe noise shape (or the image shape).
        """
        if shape is None:
            base = self.noise if self.noise is not None else self.images
            if base is None:
                raise InputError("shape: expected a shape, since these probes have neither noise nor images")
            shape = tuple(base.shape[1:])
        generator = torch.Generator().manual_seed(_mix_seed(self.seed, int(t) + 1))
        noise = torch.randn((self._source_n, *shape), generator=generator)
        if self._rows is not None:  # a subset: the rows the full set draws for these probes
            noise = noise[torch.from_numpy(self._rows)]
        return noise.to(device)

    def to(self, device: str | torch.device) -> "Probes":
        """A copy with the tensors on ``device`` (ids and seed unchanged)."""
        moved = object.__new__(Probes)
        moved.ids, moved.seed = self.ids, self.seed
        moved.noise = None if self.noise is None else self.noise.to(device)
        moved.labels = None if self.labels is None else self.labels.to(device)
        moved.images = None if self.images is None else self.images.to(device)
        moved._rows, moved._source_n = self._rows, self._source_n
        return moved

    def fingerprint(self) -> str:
        """Content hash of ids, noise, labels and images: equal fingerprints mean identical probes."""
        from ..store.arrays import array_hash

        parts = [array_hash(self.ids), str(self.seed)]
        for tensor in (self.noise, self.labels, self.images):
            parts.append("-" if tensor is None else array_hash(tensor.numpy()))
        return array_hash(np.array(parts))

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable summary stored in the run config."""

        def shape(t: torch.Tensor | None) -> list[int] | None:
            return None if t is None else list(t.shape)

        return {
            "n": self.n,
            "seed": self.seed,
            "noise_shape": shape(self.noise),
            "labels": None if self.labels is None else sorted(set(self.labels.tolist())),
            "image_shape": shape(self.images),
            "fingerprint": self.fingerprint(),
        }

    def __repr__(self) -> str:
        return f"Probes(n={self.n}, seed={self.seed}, noise={shape_of(self.noise)}, labels={self.labels is not None}, images={shape_of(self.images)})"


def shape_of(tensor: torch.Tensor | None) -> tuple[int, ...] | None:
    """Shape of a tensor as a tuple, or None."""
    return None if tensor is None else tuple(tensor.shape)
