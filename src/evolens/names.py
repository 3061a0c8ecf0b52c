"""Scalar names: one convention for every series evolens writes, and the constants that spell them.

A name is ``<family>/<metric>[/class=<c>][@<encoder id>][~<reference>]``:

- ``quality/fid@pixels@native-cnative~train``: FID under the ``pixels`` encoder against the ``train`` reference;
- ``quality/fid/class=3@digits-cnn@1a2b~train``: the same for the samples and reference images of class 3;
- ``attr/preservation/class=6``, ``loss``, ``heldout_loss``: no encoder or reference involved.

The metric comes before the class, so ``quality/fid/class=3`` sits next to ``quality/fid``; the context comes
last, so two encoders or references never write the same series, and the views can label each curve with
what produced it. Readers may leave the context out when only one context has the metric
(``resolve_name``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from .errors import InputError

# families
QUALITY = "quality"
PROXIMITY = "proximity"
ATTRIBUTES = "attr"
PARAMS = "params"
PARAM_ERROR = "param_error"
FAIRNESS = "fairness"  # summary ratios of the PLE fairness experiment

# quality metrics
FID, KID, KID_STD = "fid", "kid", "kid_std"
PRECISION, RECALL, DENSITY, COVERAGE = "precision", "recall", "density", "coverage"
VENDI, CMMD = "vendi", "cmmd"
DIVERSITY = "diversity"  # family of spread measures of the samples alone (self-consuming loops)
STD = "std"
NONFINITE_SAMPLES = "nonfinite_samples"

# proximity (memorisation) metrics
COPY_RATE = "copy_rate"
NN_DISTANCE_TRAIN = "nn_distance_train"
NN_DISTANCE_HELDOUT = "nn_distance_heldout"
NN_RATIO = "nn_ratio"  # median distance to train / to held-out: < 1 when samples sit closer to the training data
CLOSER_TO_TRAIN = "closer_to_train"  # share of samples nearer to a training than to a held-out sample (~0.5 fair)
NN_DIVERGENCE = "nn_divergence"
NN_DIVERGENCE_LOW, NN_DIVERGENCE_HIGH = "nn_divergence_low", "nn_divergence_high"  # 95% bootstrap interval
AUTHENTICITY = "authenticity"  # Alaa et al. 2022: share of samples farther from the data than its own spacing
DATA_COPYING_CT = "data_copying_ct"  # Meehan et al. 2020: Z statistic, << 0 data copying, >> 0 underfitting
EXTRACTION_RATE = "extraction_rate"  # Carlini et al. 2023: share with normalised l2 below the threshold
SPLIT_DISTANCE = "split_distance"  # median over probes of (1 - cos) between two models' paired samples
SPLIT_DISTANCE_MEAN = "split_distance_mean"  # 1 - mean cos: the paper's reduction
SCORE_AGREEMENT_TRAIN = "score_agreement_train"  # cosine of two models' ε-predictions on A's training images
SCORE_AGREEMENT_TEST = "score_agreement_test"

# attribute metrics
SHARE = "share"
DIVERGENCE_TV = "divergence_tv"
DIVERGENCE_TV_BY_CLASS = "divergence_tv_by_class"
TARGET_SUCCESS = "target_success"
PRESERVATION = "preservation"
RFAIR = "rfair"
AMPLIFICATION = "amplification"  # RFair / R_I: > 1 when the model amplifies the imbalance of its training data
FID_RATIO = "fid_ratio"

# series a training script logs
LOSS = "loss"
HELDOUT_LOSS = "heldout_loss"

# Which way is better, for the views' titles.
LOWER_IS_BETTER = frozenset({FID, KID, CMMD, COPY_RATE, NN_DIVERGENCE, EXTRACTION_RATE, CLOSER_TO_TRAIN, DIVERGENCE_TV,
                             DIVERGENCE_TV_BY_CLASS, LOSS, HELDOUT_LOSS, NONFINITE_SAMPLES})
HIGHER_IS_BETTER = frozenset({PRECISION, RECALL, DENSITY, COVERAGE, VENDI, TARGET_SUCCESS, PRESERVATION,
                              NN_DISTANCE_TRAIN, NN_RATIO, AUTHENTICITY})


@dataclass(frozen=True)
class ScalarName:
    """The parts of a scalar name; ``base`` is the name without its context."""

    base: str
    family: str | None
    metric: str
    cls: str | None
    encoder: str | None
    reference: str | None

    @property
    def context(self) -> str:
        """``"<encoder> vs <reference>"`` (either part may be missing), for labels; "" without context."""
        return " vs ".join(p for p in (self.encoder, self.reference) if p)


def _check_part(value: Any, name: str, forbidden: str) -> str:
    text = str(value)
    if not text or any(ch in text for ch in forbidden):
        raise InputError(f"{name}: expected a non-empty name without any of {list(forbidden)}, received {text!r}")
    return text


def scalar_name(family: str, metric: str, *, cls: Any = None, encoder: str | None = None,
                reference: str | None = None) -> str:
    """Compose a scalar name, e.g. ``scalar_name("quality", "fid", cls=3, encoder="pixels@x", reference="train")``
    → ``"quality/fid/class=3@pixels@x~train"``."""
    name = f"{_check_part(family, 'family', '/@~')}/{_check_part(metric, 'metric', '@~')}"
    if cls is not None:
        name += f"/class={_check_part(cls, 'cls', '/@~')}"
    if encoder is not None:
        name += f"@{_check_part(encoder, 'encoder', '~')}"
    if reference is not None:
        name += f"~{_check_part(reference, 'reference', '~')}"
    return name


def parse_name(name: str) -> ScalarName:
    """Split a scalar name into its parts (see the module docstring); names without ``/`` have no family."""
    base, _, context = name.partition("@")
    if "~" in base:  # a reference without an encoder
        base, _, reference = base.partition("~")
        encoder = None
    else:
        encoder, _, reference = context.rpartition("~") if "~" in context else (context, "", "")
        encoder = encoder or None
    cls = None
    parts = base.split("/")
    if len(parts) >= 3 and parts[-1].startswith("class="):
        cls = parts[-1][len("class="):]
        parts = parts[:-1]
    family = parts[0] if len(parts) > 1 else None
    metric = "/".join(parts[1:]) if len(parts) > 1 else parts[0]
    return ScalarName(base, family, metric, cls, encoder, reference or None)


def resolve_name(name: str, known: Iterable[str], run: str = "") -> str:
    """``name`` if it is known; else the one known name whose context-free base is ``name``. Raises InputError
    when no name or several (then the context must be given) match, listing the candidates."""
    known = list(known)
    if not isinstance(name, str) or not name:
        raise InputError(f"name: expected a scalar name, received {name!r}")
    if name in known:
        return name
    matches = [k for k in known if parse_name(k).base == name]
    if len(matches) == 1:
        return matches[0]
    where = f" in run {run!r}" if run else ""
    if matches:
        raise InputError(f"name: {name!r} is ambiguous{where}: it was computed in several contexts {matches}; "
                         "give the full name")
    raise InputError(f"name: no scalar series {name!r}{where}; known: {known}")


__all__ = ["ScalarName", "parse_name", "resolve_name", "scalar_name"]
