"""Self-consuming (autophagous) training loops: retrain a generative model on its own samples, measure collapse.

Following Alemohammad et al. ("Self-consuming generative models go MAD", 2023), generation 0 is trained on real
data and every later generation g ≥ 1 on a data set that contains samples of generation g − 1:

- ``"fully-synthetic"``: only the previous generation's samples;
- ``"synthetic-augmented"``: the fixed real training set plus the previous generation's samples;
- ``"fresh-data"``: a fresh draw of real data (from ``real_sampler``) plus the previous generation's samples;
- ``"accumulate"``: the real data plus the samples of *every* earlier generation (Gerstgrasser et al. 2024:
  accumulating data, instead of replacing it, avoids collapse).

Knobs from the later literature: ``real_fraction`` (Bertrand et al. 2024: each generation trains on a set of the
real data's size of which this share is real, the rest synthetic), ``temperature`` (Alemohammad et al. 2023's
sampling bias: every generation's samples are pulled toward their mean by this factor, < 1 trading diversity for
quality as truncation does) and ``warm_start`` (each generation starts from the previous one's weights instead
of a fresh initialisation).

Each generation trains a *fresh* estimator (``trainer.fit``, an :class:`~evolens.collapse.MLETrainer` or
:class:`~evolens.collapse.PLETrainer`), and the loop records, per generation, the estimated parameters
(``model.describe()``), their error against ``true_params`` when given, and quality/diversity metrics of the
generation's samples against the real data (FID, precision/recall/density/coverage, sample spread, Vendi for
embeddings). With ``run_dir`` everything goes into an evolens run (step = generation): samples as snapshots,
metrics as scalars, the real data as the ``train`` reference, so ``evolens report`` shows collapse over generations.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .. import names as N
from ..analyses.attributes import classifier_id
from .._validation import check_array, check_int, check_seed
from ..errors import InputError
from ..metrics.quality import fid, prdc, vendi

__all__ = ["LOOP_MODES", "LoopResult", "SelfConsumingLoop", "parameter_error"]

LOOP_MODES = ("fully-synthetic", "synthetic-augmented", "fresh-data", "accumulate")


def parameter_error(estimated: Mapping[str, float], true: Mapping[str, float]) -> dict[str, float]:
    """Absolute error per parameter present in both dicts, plus ``"total"``: their root-mean-square."""
    keys = [k for k in true if k in estimated]
    if not keys:
        raise InputError(
            f"true_params: none of {sorted(true)} is among the estimated parameters {sorted(estimated)}"
        )
    errors = {k: abs(float(estimated[k]) - float(true[k])) for k in keys}
    errors["total"] = float(np.sqrt(np.mean([e**2 for e in errors.values()])))
    return errors


@dataclass
class LoopResult:
    """Per-generation records of a loop: ``rows[g]`` maps a name (``params/var``, ``quality/fid``, ...) to a float."""

    rows: list[dict[str, float]] = field(default_factory=list)
    run_dir: Path | None = None
    mode: str = "fully-synthetic"
    method: str = "mle"
    #: generation 0's fit on the real data (its hypernetwork is what a sensitivity check reads)
    first_fit: Any = None

    def series(self, name: str) -> np.ndarray:
        """(generations,) values of ``name``; NaN where a generation did not record it. ``name`` may leave out
        its context (``quality/fid`` for ``quality/fid@identity~train``)."""
        name = N.resolve_name(name, sorted({k for row in self.rows for k in row}))
        return np.array([row.get(name, np.nan) for row in self.rows], dtype=np.float64)

    @property
    def generations(self) -> int:
        return len(self.rows)

    @classmethod
    def from_run(cls, run_dir: str | Path) -> "LoopResult":
        """The records of a loop that ``SelfConsumingLoop(run_dir=...)`` wrote, read back from its run (one row
        per generation, every scalar it stored); ``first_fit`` is None (fits are not stored)."""
        from ..store import open_run

        with open_run(run_dir) as run:
            steps = [int(s) for s in run.steps()]
            rows: list[dict[str, float]] = [{} for _ in steps]
            for name in run.scalar_names():
                for step, value in zip(*run.scalars(name)):
                    if int(step) in steps:
                        rows[steps.index(int(step))][name] = float(value)
            config = run.config
        return cls(rows=rows, run_dir=Path(run_dir), mode=config.get("mode", "fully-synthetic"),
                   method=config.get("method", "mle"))


def _flatten(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1).astype(np.float64)


class SelfConsumingLoop:
    """Run ``generations`` rounds of fit → sample → refit on (partly) synthetic data.

    Args:
        trainer: an object with ``fit(x, seed=...) -> FitResult`` (``MLETrainer``/``PLETrainer``).
        real: (n, ...) real training data of generation 0 (and of every generation when synthetic-augmented).
        generations: number of generations G (g = 0 .. G − 1).
        mode: one of ``LOOP_MODES``.
        n_samples: samples drawn from each generation (default: n real).
        real_sampler: ``(n, rng) -> (n, ...)`` fresh real data; required for ``"fresh-data"``.
        features: ``(x) -> (n, d)`` feature map for the metrics (an evolens Encoder or a callable);
            default: the flattened data itself (right for low-dimensional data).
        true_params: the data distribution's parameters in ``describe()`` names, for ``param_error/*``.
        k: neighbourhood size of precision/recall/density/coverage.
        run_dir: write an evolens run there (optional); name, config: stored with it.
        seed: seeds every fit (seed + g) and every draw.
        progress: show a progress bar over generations.
        real_fraction: with ``"fully-synthetic"`` or ``"fresh-data"``: generations g >= 1 train on n_real items, this
            share of them real (drawn without replacement from the real set, or fresh from ``real_sampler``) and
            the rest drawn from the previous generation's samples.
        temperature: samples x of every generation become mean + temperature * (x - mean) (1: unbiased).
        warm_start: generation g >= 1 starts from generation g - 1's fitted weights (``trainer.fit(init=...)``).
    """

    def __init__(
        self,
        trainer: Any,
        real: Any,
        *,
        generations: int = 10,
        mode: str = "fully-synthetic",
        n_samples: int | None = None,
        real_sampler: Callable[[int, np.random.Generator], Any] | None = None,
        features: Callable[[np.ndarray], Any] | None = None,
        true_params: Mapping[str, float] | None = None,
        k: int = 5,
        run_dir: str | os.PathLike | None = None,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        seed: int = 0,
        progress: bool = True,
        real_fraction: float | None = None,
        temperature: float = 1.0,
        warm_start: bool = False,
    ) -> None:
        if not hasattr(trainer, "fit"):
            raise InputError(f"trainer: expected an object with fit(x, seed=...), received {type(trainer).__name__}")
        if not isinstance(mode, str) or mode not in LOOP_MODES:
            raise InputError(f"mode: expected one of {LOOP_MODES}, received {mode!r}")
        generations = check_int(generations, "generations", minimum=1)
        k = check_int(k, "k", minimum=1)
        seed = check_seed(seed)
        real_arr = check_array(real, "real", min_samples=2).astype(np.float32)
        if real_arr.ndim == 1:
            real_arr = real_arr[:, None]
        if real_arr.ndim < 2 or real_arr.shape[0] < 2:
            raise InputError(f"real: expected at least 2 samples, shape (n, ...), received shape={real_arr.shape}")
        if not np.isfinite(real_arr).all():
            raise InputError(f"real: expected finite values, received {int((~np.isfinite(real_arr)).sum())} NaN/inf")
        if mode == "fresh-data" and real_sampler is None:
            raise InputError("real_sampler: mode 'fresh-data' needs a callable (n, rng) -> fresh real data")
        if n_samples is not None:
            n_samples = check_int(n_samples, "n_samples", minimum=2)
        if real_fraction is not None:
            if mode not in ("fully-synthetic", "fresh-data"):
                raise InputError(f"real_fraction: expected with mode 'fully-synthetic' or 'fresh-data' (mode {mode!r} "
                                 "fixes its own mix), received real_fraction with it")
            if isinstance(real_fraction, bool) or not isinstance(real_fraction, (int, float)) or not 0 < real_fraction < 1:
                raise InputError(f"real_fraction: expected a share in (0, 1), received {real_fraction!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < np.inf:
            raise InputError(f"temperature: expected a positive finite number, received {temperature!r}")
        self.real_fraction, self.temperature, self.warm_start = real_fraction, float(temperature), bool(warm_start)
        self.trainer, self.real, self.mode = trainer, real_arr, mode
        self.generations = int(generations)
        self.n_samples = int(n_samples) if n_samples is not None else real_arr.shape[0]
        self.real_sampler, self.features = real_sampler, features
        self.true_params = dict(true_params) if true_params is not None else None
        self.k, self.seed, self.progress = int(k), int(seed), bool(progress)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.name, self.config = name, dict(config or {})

    def _features(self, x: np.ndarray) -> np.ndarray:
        if self.features is None:
            return _flatten(x)
        out = self.features(x)
        out = out.detach().cpu().numpy() if hasattr(out, "detach") else np.asarray(out)
        return out.reshape(out.shape[0], -1).astype(np.float64)

    @property
    def features_id(self) -> str:
        """The name of the feature space of the loop's metrics (``identity`` for the raw samples)."""
        if self.features is None:
            return "identity"
        return classifier_id(self.features)

    def _metrics(self, real_features: np.ndarray, samples: np.ndarray) -> dict[str, float]:
        fake = self._features(samples)
        values: dict[str, float] = {}

        def name(family: str, metric: str, reference: str | None = "train") -> str:
            return N.scalar_name(family, metric, encoder=self.features_id, reference=reference)

        if np.isfinite(fake).all():
            values[name(N.QUALITY, N.FID)] = fid(real_features, fake)
            k = min(self.k, real_features.shape[0] - 1, fake.shape[0] - 1)
            if k >= 1:
                scores = prdc(real_features, fake, k=k)
                values.update({name(N.QUALITY, metric): float(getattr(scores, metric))
                               for metric in (N.PRECISION, N.RECALL, N.DENSITY, N.COVERAGE)})
            values[name(N.DIVERSITY, N.STD, None)] = float(np.sqrt(fake.var(axis=0).mean()))
            if fake.shape[1] >= 8 and (np.linalg.norm(fake, axis=1) > 0).all():
                values[name(N.DIVERSITY, N.VENDI, None)] = vendi(fake)
        else:
            values[f"{N.QUALITY}/{N.NONFINITE_SAMPLES}"] = float((~np.isfinite(fake)).any(axis=1).sum())
        return values

    def _fresh_real(self, n: int, rng: np.random.Generator) -> np.ndarray:
        fresh = np.asarray(self.real_sampler(n, rng), dtype=np.float32)
        if fresh.shape[1:] != self.real.shape[1:]:
            raise InputError(f"real_sampler: expected samples of shape {self.real.shape[1:]}, received {fresh.shape}")
        return fresh

    def _training_set(self, g: int, past: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
        if g == 0 or not past:
            return self.real
        previous = past[-1]
        if self.real_fraction is not None:
            n = self.real.shape[0]
            n_real = int(round(self.real_fraction * n))
            real = (self._fresh_real(n_real, rng) if self.mode == "fresh-data"
                    else self.real[rng.choice(n, n_real, replace=False)])
            synthetic = previous[rng.choice(previous.shape[0], n - n_real, replace=previous.shape[0] < n - n_real)]
            return np.concatenate([real, synthetic.astype(np.float32)])
        if self.mode == "fully-synthetic":
            return previous
        if self.mode == "accumulate":
            return np.concatenate([self.real, *[p.astype(np.float32) for p in past]])
        if self.mode == "synthetic-augmented":
            return np.concatenate([self.real, previous.astype(np.float32)])
        return np.concatenate([self._fresh_real(self.real.shape[0], rng), previous.astype(np.float32)])

    def run(self) -> LoopResult:
        """Run every generation; return the per-generation records (and write the run when ``run_dir`` is set)."""
        writer = None
        if self.run_dir is not None:
            from ..store.writer import RunWriter

            config = {"kind": "self-consuming-loop", "mode": self.mode, "generations": self.generations,
                      "real_fraction": self.real_fraction, "temperature": self.temperature,
                      "warm_start": self.warm_start,
                      "method": getattr(self.trainer, "method", type(self.trainer).__name__),
                      "n_real": int(self.real.shape[0]), "n_samples": self.n_samples, "seed": self.seed,
                      **self.config}
            writer = RunWriter(self.run_dir, kind="capture", name=self.name, config=config)
            writer.write_reference("train", self.real)
        result = LoopResult(run_dir=self.run_dir, mode=self.mode, method=getattr(self.trainer, "method", "mle"))
        real_features = self._features(self.real)
        rng = np.random.default_rng(self.seed)
        past: list[np.ndarray] = []
        previous_fit = None
        try:
            for g in tqdm(range(self.generations), desc=f"{result.method} {self.mode}", disable=not self.progress):
                data = self._training_set(g, past, rng)
                start = time.perf_counter()
                if self.warm_start and previous_fit is not None:
                    fit = self.trainer.fit(data, seed=self.seed * 1000 + g, init=previous_fit.model)
                else:
                    fit = self.trainer.fit(data, seed=self.seed * 1000 + g)
                samples = fit.sample(self.n_samples, seed=self.seed * 1000 + 500 + g)
                if self.temperature != 1.0:  # sampling bias: pulled toward the mean (or pushed away, > 1)
                    mean = samples.mean(axis=0, keepdims=True)
                    samples = (mean + self.temperature * (samples - mean)).astype(samples.dtype)
                row: dict[str, float] = {"train/n": float(data.shape[0]), "train/seconds": time.perf_counter() - start}
                if fit.history.get("nll"):
                    row["train/nll"] = float(fit.history["nll"][-1])
                estimated = fit.parameters()
                row.update({f"{N.PARAMS}/{k}": float(v) for k, v in estimated.items()})
                if self.true_params is not None:
                    row.update({f"{N.PARAM_ERROR}/{k}": v for k, v in parameter_error(estimated, self.true_params).items()})
                row.update(self._metrics(real_features, samples))
                result.rows.append(row)
                if writer is not None:
                    stored = samples if samples.ndim >= 2 else samples[:, None]
                    writer.write_snapshot(g, {"samples": stored}, capture_seconds=time.perf_counter() - start,
                                          seed=self.seed * 1000 + 500 + g)
                    writer.write_scalars(g, row)
                    writer.write_event("generation", f"generation {g}: trained on {data.shape[0]} samples "
                                       f"({'real' if g == 0 else self.mode})", step=g)
                past = past + [samples] if self.mode == "accumulate" else [samples]  # keep only what is used
                previous_fit = fit
                if g == 0:
                    result.first_fit = fit
        finally:
            if writer is not None:
                writer.close()
        return result

