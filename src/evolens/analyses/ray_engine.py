"""Embedding on Ray: image sets streamed through Ray Data, the encoder as an actor class (one per CPU or GPU slot).

``embed_sources(encoder, sources, ...)`` embeds any number of image sources — ``.npy`` files (a run's stored
arrays, or any file of (n, C, H, W) images, read through memory maps by the workers themselves), or lists of
image files (decoded by the workers with Pillow) — in one Ray Data pipeline:

    ray.data.from_numpy_refs(row ranges) → map_batches(EncoderActor, W actors)   (each actor reads its rows)

so the driver never holds the images, only the features it gathers (or streams into a folder of shards). The
results equal ``encoder.encode`` on one process up to float32 rounding of differently sized batches (tested at
atol 1e-5). ``ray.init`` is called with ``address`` (``"auto"`` or ``ray://…`` for a cluster) or, without one,
starts a local Ray with ``workers`` CPUs; a Ray already initialised in the process is used as it is.

Ray is optional: ``pip install evolens[ray]``.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError

__all__ = ["FileListSource", "NpySource", "embed_into_shards", "embed_sources", "image_files"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class NpySource:
    """Images (n, C, H, W) (or (n, H, W)) stored in one ``.npy`` file; ``n`` rows."""

    path: str
    n: int

    def read(self, rows: np.ndarray) -> np.ndarray:
        images = np.load(self.path, mmap_mode="r")
        return np.asarray(images[rows])

    def row_shape(self) -> tuple[int, ...]:
        return tuple(np.load(self.path, mmap_mode="r").shape[1:])


@dataclass(frozen=True)
class FileListSource:
    """Images in files (PNG, JPEG, …), all of one size, decoded to (C, H, W) float32 in [0, 1]."""

    paths: tuple[str, ...]
    n: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", len(self.paths))

    def read(self, rows: np.ndarray) -> np.ndarray:
        from PIL import Image

        out = []
        for row in rows.tolist():
            with Image.open(self.paths[row]) as image:
                array = np.asarray(image.convert("RGB" if image.mode not in ("L", "I;16") else "L"), dtype=np.float32)
            array = array / (65535.0 if array.max() > 255 else 255.0)
            out.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
        shapes = {a.shape for a in out}
        if len(shapes) > 1:
            raise InputError(f"source: expected images of one size in a folder, found {sorted(shapes)}; resize them "
                             "first")
        return np.stack(out)

    def row_shape(self) -> tuple[int, ...]:
        return tuple(self.read(np.array([0])).shape[1:])


def image_files(folder: str | os.PathLike) -> FileListSource:
    """Every image file directly in ``folder`` (sorted by name) as a source."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"folder: expected a directory of images, received {str(folder)!r}")
    paths = tuple(str(p) for p in sorted(root.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise InputError(f"folder: no image files ({', '.join(IMAGE_SUFFIXES)}) in {str(folder)!r}")
    return FileListSource(paths)


class _ReadRows:
    """Global row ids → the images of their sources (one image shape per pipeline); used inside each actor."""

    def __init__(self, sources_blob: bytes) -> None:
        self.sources = pickle.loads(sources_blob)
        self.offsets = np.concatenate([[0], np.cumsum([s.n for s in self.sources])]).astype(np.int64)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = np.asarray(batch["data"], dtype=np.int64)
        source = np.searchsorted(self.offsets, ids, side="right") - 1
        parts = [self.sources[int(i)].read(ids[source == i] - self.offsets[i]) for i in np.unique(source)]
        return {"id": ids, "images": np.concatenate(parts) if len(parts) > 1 else parts[0]}


class _EncoderActor:
    """Ray Data actor: holds one encoder (built once per actor) and the sources; reads the images of a batch of
    row ids itself (no image passes through the driver) and embeds them."""

    def __init__(self, encoder_blob: bytes, sources_blob: bytes, threads: int, batch_size: int | None,
                 on_gpu: bool = False) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.encoder = pickle.loads(encoder_blob)
        if on_gpu:  # Ray gave this actor a GPU (CUDA_VISIBLE_DEVICES names it): the encoder runs there
            self.encoder.to("cuda")
        self.read = _ReadRows(sources_blob)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = np.concatenate([np.arange(a, b) for a, b in np.asarray(batch["data"]).reshape(-1, 2).tolist()])
        rows = self.read({"data": ids})
        return {"id": rows["id"], "features": self.encoder.encode(rows["images"], self.batch_size)}


def _ray(address: str | None, workers: int | None):
    try:
        import ray
    except ImportError as exc:
        raise InputError("engine: 'ray' needs Ray; install evolens[ray] (ray[data])") from exc
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=workers or os.cpu_count() or 1, **kwargs)
        started = True
    return ray, started


def embed_sources(encoder: Any, sources: Sequence[NpySource | FileListSource], *, address: str | None = None,
                  workers: int | None = None, batch_size: int | None = None, progress: bool = True,
                  num_gpus_per_worker: float = 0.0, into: Any = None) -> list[np.ndarray] | None:
    """Embed every source with ``encoder`` on Ray: a list of (n_i, dim) float32 features in source order, or,
    with ``into`` (a ``ShardWriter``), the rows of all sources appended to it in order (returns None).

    Sources of one image shape go through one pipeline (rows of several sources share batches); each distinct
    shape gets its own.

    Args:
        encoder: an ``Encoder`` instance (pickled to each actor; weights are loaded where it was built).
        sources: ``NpySource`` / ``FileListSource`` items.
        address: a Ray cluster (``"auto"``, ``"ray://host:10001"``); None starts a local Ray.
        workers: encoder actors (default: the CPUs of a local Ray, or the cluster's GPUs/CPUs).
        batch_size: images per encoder call (default: the encoder's).
        num_gpus_per_worker: GPUs each actor takes (1 on a GPU cluster).
    """
    from .._validation import check_int, check_real

    if workers is not None:
        workers = check_int(workers, "workers", minimum=1)
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", minimum=1)
    num_gpus_per_worker = check_real(num_gpus_per_worker, "num_gpus_per_worker")
    if num_gpus_per_worker < 0:
        raise InputError(f"num_gpus_per_worker: expected a number >= 0, received {num_gpus_per_worker!r}")
    sources = list(sources)
    if not all(isinstance(s, (NpySource, FileListSource)) for s in sources):
        raise InputError(f"sources: expected NpySource / FileListSource items, received "
                         f"{[type(s).__name__ for s in sources]}")
    if not sources:
        return [] if into is None else None
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, source in enumerate(sources):
        groups.setdefault(source.row_shape(), []).append(i)
    if into is not None and len(groups) > 1:
        raise InputError(f"sources: shards hold rows of one image shape, received shapes {sorted(groups)}")
    ray, started = _ray(address, workers)
    results: list[np.ndarray | None] = [None] * len(sources)
    try:
        import ray.data

        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # rows come back in source order (shards stay in order)
        context.enable_progress_bars = progress
        resources = ray.cluster_resources()
        if workers is None:
            workers = int(resources.get("GPU", 0)) if num_gpus_per_worker else int(resources.get("CPU", 1))
        workers = max(1, int(workers))
        threads = max(1, int(resources.get("CPU", 1)) // workers)
        for members in groups.values():
            group = [sources[i] for i in members]
            features = _pipeline(ray, encoder, group, workers, threads, batch_size, num_gpus_per_worker)
            total = sum(s.n for s in group)
            out = None  # allocated at the first batch: some encoders know their dimension only once fitted
            seen = 0
            for part in features.iter_batches(batch_size=None, batch_format="numpy"):
                rows, values = np.asarray(part["id"]), np.asarray(part["features"], dtype=np.float32)
                if into is not None:
                    if rows[0] != seen or np.any(np.diff(rows) != 1):
                        raise RuntimeError("evolens: Ray returned rows out of order while writing shards")
                    into.append(values)
                else:
                    if out is None:
                        out = np.empty((total, values.shape[1]), dtype=np.float32)
                    out[rows] = values
                seen += len(rows)
            if seen != total:
                raise RuntimeError(f"evolens: Ray embedded {seen} of {total} rows")
            if out is not None:
                offsets = np.concatenate([[0], np.cumsum([s.n for s in group])])
                for i, a, b in zip(members, offsets[:-1], offsets[1:]):
                    results[i] = out[a:b]
    finally:
        if started:
            ray.shutdown()
    return None if into is not None else results  # type: ignore[return-value]


def _pipeline(ray: Any, encoder: Any, sources: list[Any], workers: int, threads: int, batch_size: int | None,
              num_gpus: float):
    """range(rows) → read rows (tasks) → encoder actors; the Ray dataset of {id, features} batches."""
    batch = int(batch_size or getattr(encoder, "default_batch_size", 64))
    total = sum(s.n for s in sources)
    # the work as one in-memory block per batch of rows, each its own object (from_numpy_refs): the actors
    # share the blocks out (from_items gave them one bundle: one actor busy), and no read task competes with the
    # actors for CPU slots (with ray.data.range the actors took every slot and the read tasks never ran)
    ranges = [np.array([[a, min(a + batch, total)]], dtype=np.int64) for a in range(0, total, batch)]
    chunks = ray.data.from_numpy_refs([ray.put(r) for r in ranges])
    return chunks.map_batches(_EncoderActor, fn_constructor_args=(pickle.dumps(encoder), pickle.dumps(sources),
                                                                  threads, batch_size, bool(num_gpus)),
                              compute=ray.data.ActorPoolStrategy(size=workers), batch_size=1, batch_format="numpy",
                              num_cpus=threads if not num_gpus else 1, num_gpus=num_gpus or None)


def embed_into_shards(encoder: Any, source: NpySource | FileListSource, writer: Any, *, engine: str = "local",
                      address: str | None = None, workers: int | None = None, batch_size: int | None = None,
                      progress: bool = True, description: str | None = None,
                      num_gpus_per_worker: float = 0.0) -> None:
    """Embed every image of ``source`` with ``encoder`` and append the features, in order, to ``writer`` (a
    ``ShardWriter``): in this process, 16 encoder batches at a time, or on Ray (``engine="ray"``, see
    ``embed_sources``). Memory: one chunk of images and its features, whatever the size of the source."""
    if engine == "ray":
        embed_sources(encoder, [source], address=address, workers=workers, batch_size=batch_size, progress=progress,
                      num_gpus_per_worker=num_gpus_per_worker, into=writer)
        return
    if engine != "local":
        raise InputError(f"engine: expected 'local' or 'ray', received {engine!r}")
    from tqdm.auto import tqdm

    chunk = (batch_size or encoder.default_batch_size) * 16
    for start in tqdm(range(0, source.n, chunk), desc=description or f"embedding ({encoder.name})", unit="chunk",
                      disable=not progress):
        writer.append(encoder.encode(source.read(np.arange(start, min(start + chunk, source.n))), batch_size))
