"""Encoder throughput: evolens' batched ``encode`` against calling the same torch module directly in a loop.

For every encoder whose weights are available here, embeds the same images (a) through ``Encoder.encode``
and (b) through a hand-written loop over the same module with the same preprocessing (channel repeat,
resize, normalisation) written directly in torch, and prints images/s of each and their ratio.
Target: evolens / direct >= 0.95 (evolens adds no overhead).

    python benchmarks/encoders.py [--n 256] [--batch-size 64] [--write]

``--write`` also records each encoder's seconds per 100 images on this device in ``src/evolens/encoders/costs.py``
(CPU figures on a CPU machine, GPU figures where CUDA is present; the other kind is kept), which
``evolens encoders`` prints.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.nn import functional as F

from evolens.encoders import get_encoder, list_encoders


def _direct(encoder, images: torch.Tensor, batch_size: int) -> None:
    """The reference: a plain loop over the module, preprocessing inlined."""
    name = encoder.name
    with torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].to(encoder.device)
            if name == "pixels":
                x.flatten(1).float().cpu().numpy().copy()  # a new float32 array, as encode returns
                continue
            if name == "digits-cnn":
                encoder.model.features(x).cpu()
                continue
            x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
            if name == "inception-fid":
                x = (torch.round(x * 255.0) - 128.0) / 128.0
                x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
                encoder.model(x).cpu()
                continue
            x = F.interpolate(x, size=encoder.input_size, mode=encoder.resize_mode, align_corners=False,
                              antialias=x.shape[-1] > encoder.input_size[-1])
            mean = torch.tensor(encoder.mean, device=x.device).view(1, -1, 1, 1)
            std = torch.tensor(encoder.std, device=x.device).view(1, -1, 1, 1)
            x = (x - mean) / std
            if name == "efficientnet-lite0":
                encoder.model.extract_features(x).mean(dim=(2, 3)).cpu()
            else:
                encoder._forward(x).cpu()


def _best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="record seconds per 100 images in encoders/costs.py")
    args = parser.parse_args()
    measured: dict[str, float] = {}
    rng = np.random.default_rng(0)
    print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, torch threads {torch.get_num_threads()}, "
          f"{args.n} images, batch {args.batch_size}, best of {args.repeats}")
    print(f"{'encoder':20s} {'input':>12s} {'evolens img/s':>14s} {'direct img/s':>13s} {'ratio':>7s}")
    for info in list_encoders():
        if not info.weights_available:
            print(f"{info.name:20s} skipped: weights not available here")
            continue
        encoder = get_encoder(info.name)
        shape = (1, 28, 28) if info.name in ("digits-cnn", "pixels") else (3, 64, 64)
        # Pixels take microseconds per batch: time 100x more images so the figure is not timer noise.
        n = {"inception-fid": min(args.n, 64), "pixels": 100 * args.n}.get(info.name, args.n)
        images = rng.random((n, *shape)).astype(np.float32)
        tensor = torch.from_numpy(images)
        encoder.encode(images[: args.batch_size], args.batch_size)  # warm-up
        ours = _best_of(lambda: encoder.encode(images, args.batch_size), args.repeats)
        direct = _best_of(lambda: _direct(encoder, tensor, args.batch_size), args.repeats)
        print(f"{info.name:20s} {'x'.join(map(str, shape)):>12s} {n / ours:14.1f} {n / direct:13.1f} "
              f"{direct / ours:7.3f}")
        measured[info.name] = 100 * ours / n
    if args.write:
        _write_costs(measured, "gpu" if torch.cuda.is_available() else "cpu", args.batch_size)


def _write_costs(measured: dict[str, float], kind: str, batch_size: int) -> None:
    """Rewrite ``evolens/encoders/costs.py`` with this run's seconds per 100 images (kind "cpu" or "gpu")."""
    import datetime as dt
    import os
    import platform
    import pprint

    from evolens.encoders import costs

    table = {name: dict(entry) for name, entry in costs.COSTS.items()}
    for name, seconds in measured.items():
        table.setdefault(name, {})[kind] = float(f"{seconds:.3g}")
    where = (torch.cuda.get_device_name(0) if kind == "gpu" else
             f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
             f"torch {torch.get_num_threads()} threads")
    stamp = f"{kind}: {where}, batch {batch_size}, {dt.date.today().isoformat()}"
    notes = dict(costs.MEASURED_ON) if isinstance(costs.MEASURED_ON, dict) else {}
    notes[kind] = stamp
    head = costs.__doc__
    text = (f'"""{head}"""\n\nMEASURED_ON = {pprint.pformat(notes, width=110)}\n'
            f"COSTS: dict[str, dict[str, float]] = {pprint.pformat(table, width=110)}\n")
    with open(costs.__file__, "w", encoding="utf-8") as handle:
        handle.write(text)
    print(f"wrote {costs.__file__}")


if __name__ == "__main__":
    main()
