"""The bad-input battery: every public entry point and CLI argument, given what it must refuse, raises a typed
evolens error (``EvolensError``; ``InputError`` for arguments) naming the argument — never a segfault, a
silent answer, an untyped error or a traceback on the command line."""

from __future__ import annotations

import io
import re
from contextlib import redirect_stderr, redirect_stdout
from functools import partial

import numpy as np
import pytest

from evolens.errors import EvolensError

RNG = np.random.default_rng(0)
A = RNG.standard_normal((30, 4))
B = RNG.standard_normal((30, 4)) + 0.3
NAN = A.copy()
NAN[3, 1] = np.nan
INF = A.copy()
INF[0, 0] = np.inf
COMPLEX = A.astype(np.complex128)
OBJECT = np.array([[object()] * 4] * 30, dtype=object)
IMAGES = RNG.random((12, 1, 8, 8)).astype(np.float32)
LABELS = np.arange(12) % 3

BAD_INTS = [0, -1, 2.5, "3", True, None, float("nan")]
BAD_POSITIVE = [0, -1.0, float("nan"), float("inf"), "1", None, True]
BAD_ARRAYS = [NAN, INF, COMPLEX, OBJECT, A[0], A[:1, :0], "features", None]

CASES: list = []


def case(fn, name: str, *values, named: str | None = None, label: str | None = None, **fixed):
    """One case per value: ``fn(**fixed, name=value)`` must raise an evolens error naming ``named`` (default
    ``name``: the argument)."""
    label = label or getattr(fn, "__qualname__", getattr(fn, "__name__", repr(fn)))
    for value in values:
        CASES.append(pytest.param(partial(fn, **fixed, **{name: value}), named or name,
                                  id=f"{label}-{name}={str(value)[:24]!s}"))


def m():
    import evolens.metrics as metrics

    return metrics


def build_api_cases() -> None:
    import evolens.metrics as M
    from evolens.capture import AtSteps, Every, LogSpaced, Probes
    from evolens.collapse import (BiasCorrectedMLETrainer, Gaussian, GaussianMixture, MLETrainer, PLETrainer,
                                  TunedMLETrainer, VAE, linear_warmup)
    from evolens.collapse.loops import SelfConsumingLoop
    from evolens.detect import BiasedGeneralizationOnset, Threshold, Trend
    from evolens.encoders import PixelsEncoder, get_encoder
    from evolens.projection import EvolutionaryTSNE, knn_recall, temporal_stability, trustworthiness
    from evolens.store import find_runs, open_run
    from evolens.views import images_to_grid, png_bytes, write_report

    # -- quality metrics
    for fn in (M.fid, M.cmmd, M.prdc, M.precision_recall, M.density_coverage):
        case(fn, "real", *BAD_ARRAYS, fake=B)
        case(fn, "fake", NAN, INF, COMPLEX, B[:, :3], real=A)
    case(M.kid, "real", *BAD_ARRAYS, fake=B)
    case(M.kid, "subsets", *BAD_INTS, real=A, fake=B)
    case(M.kid, "subset_size", 1, -3, 2.5, "10", real=A, fake=B)
    case(M.kid, "degree", 0, -1, 1.5, real=A, fake=B)
    case(M.kid, "gamma", 0, -1.0, float("nan"), float("inf"), real=A, fake=B)
    case(M.kid, "coef0", float("nan"), float("inf"), "1", real=A, fake=B)
    case(M.kid, "seed", -1, 2**70, 1.5, real=A, fake=B)
    case(M.prdc, "k", *BAD_INTS, 30, real=A, fake=B)
    case(M.prdc, "real_radii", np.ones(5), -np.ones(30), np.full(30, np.nan), real=A, fake=B)
    case(M.prdc, "row_block", 0, -5, 1.5, real=A, fake=B)
    case(M.cmmd, "sigma", *BAD_POSITIVE, real=A, fake=B)
    case(M.cmmd, "scale", 0, float("nan"), float("inf"), "1", real=A, fake=B)
    case(M.cmmd, "real_term", float("nan"), -1.0, "x", real=A, fake=B)
    case(M.vendi, "features", *BAD_ARRAYS)
    case(M.vendi, "q", -1, float("nan"), float("-inf"), "2", None, features=A)
    case(M.fid_statistics, "features", *BAD_ARRAYS)
    case(M.fid_from_statistics, "sigma1", -np.eye(4), np.full((4, 4), np.nan), np.eye(3), np.ones((4, 4)) + np.eye(4) * [0, 0, 0, -5],
         mu1=np.zeros(4), mu2=np.zeros(4), sigma2=np.eye(4))
    case(M.fid_from_statistics, "sigma2", -np.eye(4), np.array([[1, 2, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]),
         mu1=np.zeros(4), mu2=np.zeros(4), sigma1=np.eye(4))
    case(M.fid_from_statistics, "mu2", np.zeros(3), np.full(4, np.inf), mu1=np.zeros(4), sigma1=np.eye(4), sigma2=np.eye(4))
    case(M.FeatureStatistics, "dim", 0, -1, 2.5, "4")
    case(M.FeatureStatistics.from_state, "state", np.zeros((3, 4)), np.full((7, 4), np.nan), "x")
    # -- proximity metrics
    case(M.nearest_neighbors, "queries", *BAD_ARRAYS, reference=B)
    case(M.nearest_neighbors, "k", *BAD_INTS, 31, queries=A, reference=B)
    case(M.copy_rate, "ratio", 0, -0.5, float("nan"), float("inf"), "x", generated=A, train=B)
    case(M.copy_rate, "generated", NAN, COMPLEX, A[:, :2], train=B)
    case(M.nn_divergence, "bins", *BAD_INTS, generated=A, train=B, heldout=A + 1)
    case(M.nn_divergence, "eps", 0, -1.0, float("nan"), generated=A, train=B, heldout=A + 1)
    case(M.nn_divergence_bootstrap, "n_bootstrap", 0, -1, 1.5, generated=A, train=B, heldout=A + 1,
         edges=np.linspace(0, 5, 6))
    case(M.nn_divergence_bootstrap, "level", 0, 1, 1.5, float("nan"), generated=A, train=B, heldout=A + 1,
         edges=np.linspace(0, 5, 6))
    case(M.nn_divergence_bootstrap, "edges", np.array([1.0]), np.array([3.0, 1.0, 2.0]), np.array([0, np.nan]),
         generated=A, train=B, heldout=A + 1)
    case(M.data_copying_ct, "n_cells", *BAD_INTS, generated=A, train=B, heldout=A + 1)
    case(M.data_copying_ct, "seed", -1, 2**70, generated=A, train=B, heldout=A + 1)
    case(M.normalized_l2, "n_neighbors", *BAD_INTS, generated=A, train=B)
    case(M.normalized_l2, "alpha", 0, -1.0, float("nan"), generated=A, train=B)
    case(M.extraction_rate, "threshold", 0, -1.0, float("nan"), generated=A, train=B)
    case(M.authenticity, "train_spacing", np.ones(3), -np.ones(30), generated=A, train=B)
    case(M.train_heldout_gap, "heldout", NAN, COMPLEX, A[:, :1], generated=A, train=B)
    case(M.sample_split_distance, "space", "nonsense", 3, samples_a=IMAGES, samples_b=IMAGES)
    case(M.sample_split_distance, "reduce", "nonsense", 3, samples_a=IMAGES, samples_b=IMAGES)
    case(M.standardize_images, "images", IMAGES[0, 0], np.full((3, 1, 4, 4), np.nan), "x")
    # -- attribute metrics
    case(M.rfair, "majority", "a", 1.5, None, labels=LABELS, minority=1)
    case(M.rfair, "minority", "b", 0, labels=LABELS, majority=0)
    case(M.rfair, "labels", np.array([0.5, 1.5]), np.array([]), "x", majority=0, minority=1)
    case(M.preservation_rate, "output", LABELS[:5], np.array(["a"] * 12), source=LABELS)
    case(M.attribute_distribution, "n_values", 0, -1, 1, 1.5, labels=LABELS)
    case(M.attribute_distribution, "labels", np.array([-1, 2]), np.array([0.5]), LABELS[None])
    case(M.attribute_divergence, "metric", "nonsense", 3, generated=LABELS, reference=LABELS)
    case(M.kl_divergence, "eps", 0, -1.0, float("nan"), p=np.array([0.5, 0.5]), q=np.array([0.5, 0.5]))
    case(M.total_variation, "q", np.array([0.5, 0.6]), np.array([-0.5, 1.5]), np.array([1.0]),
         p=np.array([0.5, 0.5]))
    # -- capture
    case(Probes.from_noise, "n", *BAD_INTS, shape=8)
    case(Probes.from_noise, "seed", -1, 2**70, 1.5, "0", n=4, shape=8)
    case(Probes.from_noise, "shape", 0, -3, (4, 0), "x", n=4)
    case(Probes.from_noise, "num_classes", 0, -2, 1.5, n=4, shape=8)
    case(Probes.from_images, "images", IMAGES[0, 0, 0], np.full((2, 1, 4, 4), np.nan), COMPLEX, "x")
    case(Probes.from_images, "labels", LABELS[:3], np.array(["a"] * 12), images=IMAGES)
    case(Probes.from_images, "ids", ["a"] * 12, ["x"], images=IMAGES)
    case(Every, "k", *BAD_INTS, named="every")  # Monitor(every=...) builds it: the message names what users pass
    case(Every, "start", -1, 1.5, "0", k=2)
    case(LogSpaced, "per_decade", *BAD_INTS)
    case(AtSteps, "steps", [-1], [1.5], ["a"], 3)
    # -- collapse
    case(Gaussian, "dim", *BAD_INTS)
    case(GaussianMixture, "k", *BAD_INTS)
    case(GaussianMixture, "tau", *BAD_POSITIVE)
    case(VAE, "latent_dim", *BAD_INTS)
    case(MLETrainer, "steps", *BAD_INTS, model=Gaussian(1))
    case(MLETrainer, "lr", *BAD_POSITIVE, model=Gaussian(1))
    case(MLETrainer, "batch_size", 0, -1, 1.5, model=Gaussian(1))
    case(PLETrainer, "lam", -1.0, float("nan"), float("inf"), "0.1", model=Gaussian(1))
    case(PLETrainer, "penalty", "nonsense", 3, model=Gaussian(1))
    case(PLETrainer, "hypernetwork", "nonsense", 3, None, model=Gaussian(1))
    case(PLETrainer, "input", "nonsense", 3, model=Gaussian(1))
    case(PLETrainer, "across_sets", "yes", 1, None, model=Gaussian(1))
    case(TunedMLETrainer, "lrs", (), "0.1", (0.1, -1.0), (float("nan"),), model=Gaussian(1))
    case(BiasCorrectedMLETrainer, "correction", "nonsense", None, model=Gaussian(1))
    case(BiasCorrectedMLETrainer, "replicates", *BAD_INTS, model=Gaussian(1))
    case(linear_warmup, "warmup_steps", -1, 1.5, "3")
    loop = partial(SelfConsumingLoop, MLETrainer(Gaussian(1), steps=5))
    case(loop, "generations", *BAD_INTS, real=A[:, :1], label="SelfConsumingLoop")
    case(loop, "mode", "nonsense", 3, real=A[:, :1], label="SelfConsumingLoop")
    case(loop, "k", 0, -1, 1.5, real=A[:, :1], label="SelfConsumingLoop")
    case(loop, "n_samples", 0, -1, 1.5, real=A[:, :1], label="SelfConsumingLoop")
    case(loop, "temperature", *BAD_POSITIVE, real=A[:, :1], label="SelfConsumingLoop")
    case(loop, "real", NAN[:, 1:2], COMPLEX[:, :1], "x", label="SelfConsumingLoop")
    # -- detect
    case(Threshold, "above", float("nan"), "1", metric="m")
    case(Threshold, "metric", "", 3, None, above=1.0)
    case(Threshold, "min_step", -1, 1.5, metric="m", above=1.0)
    case(Trend, "direction", "sideways", 1, metric="m")
    case(Trend, "snapshots", 0, 1, -2, 1.5, metric="m")
    case(Trend, "min_change", -1.0, float("nan"), metric="m")
    case(BiasedGeneralizationOnset, "margin", -0.1, float("nan"), float("inf"))
    case(BiasedGeneralizationOnset, "patience", 0, -1, 1.5)
    # -- projection
    snaps, ids = [A, B], [np.arange(30), np.arange(30)]
    for name, values in {"perplexity": BAD_POSITIVE, "alignment_weight": [-1.0, float("nan"), float("inf")],
                         "exaggeration": [0, -1.0, float("nan"), float("inf")], "n_iter": [0, -1, 1.5],
                         "band_spacing": [0, -1.0, float("inf"), float("nan")], "affinities": ["nonsense", 3],
                         "layout": ["nonsense", 3], "random_state": [-1, 2**70, "0"],
                         "pca_components": [0, -1, "many"]}.items():
        case(lambda **kw: EvolutionaryTSNE(**{"perplexity": 5.0, "n_iter": 50, **kw}).fit(snaps, ids), name, *values,
             label="EvolutionaryTSNE")
    case(lambda snapshots: EvolutionaryTSNE(n_iter=50, perplexity=5.0).fit(snapshots, ids), "snapshots",
         [NAN, B], [COMPLEX, B], [A, B[:, :2]], [], label="EvolutionaryTSNE.fit")
    case(lambda instance_ids: EvolutionaryTSNE(n_iter=50, perplexity=5.0).fit(snaps, instance_ids), "instance_ids",
         [np.arange(3), np.arange(30)], [np.zeros(30), np.arange(30)], label="EvolutionaryTSNE.fit")
    case(knn_recall, "k", *BAD_INTS, 30, features=A, embedding=A[:, :2])
    case(trustworthiness, "embedding", A[:5, :2], NAN[:, :2], features=A)
    case(temporal_stability, "instance_ids", [np.arange(3), np.arange(30)], [np.arange(30)],
         embeddings=[A[:, :2], B[:, :2]])
    # -- encoders
    case(get_encoder, "name", "nonsense", 3, None, "")
    case(PixelsEncoder, "size", 0, -2, (0, 4), "x")
    case(PixelsEncoder, "pca", 0, -1, 1.5)
    case(lambda images: PixelsEncoder().encode(images), "images", np.full((2, 1, 4, 4), np.nan), COMPLEX, "x",
         IMAGES[0, 0, 0], label="PixelsEncoder.encode")
    case(lambda batch_size: PixelsEncoder().encode(IMAGES, batch_size=batch_size), "batch_size", 0, -1, 1.5,
         label="PixelsEncoder.encode")
    # -- store and views
    case(open_run, "path", None, 3, "/nonexistent/run", "", named="path|run")
    case(find_runs, "root", None, "/nonexistent")
    case(find_runs, "max_depth", -1, 1.5, "2", root=".")
    case(images_to_grid, "images", np.zeros((2, 3)), np.zeros((2, 2, 4, 4)), "x")  # NaN pixels are drawn grey
    case(images_to_grid, "ncol", 0, -1, 1.5, images=IMAGES)
    case(png_bytes, "scale", 0, -1, 1.5, 10**6, picture=np.zeros((4, 4, 3), np.uint8))
    case(png_bytes, "picture", np.zeros((4, 4, 3)), np.zeros(4, np.uint8), "x")
    case(write_report, "runs", [], None)
    case(write_report, "runs", "/nonexistent/run", named="run")  # one run directory: the message names it so


build_api_cases()


def names_argument(message: str, argument: str) -> bool:
    """Whether ``message`` names ``argument`` as an argument — ``argument:`` (evolens's "name: expected …"),
    ``argument=``, ``--argument`` or ``'argument'`` — as a whole word, so a short name (``k``, ``n``, ``run``) is
    not found inside other words ("top-k", "run directory")."""
    word = re.escape(argument)
    return re.search(rf"(?<![\w.-])(--{word}(?![\w-])|{word}(\[\d*\])?\s*[:=])|'[^'\s]*{word}'|like {word}\b",
                     message) is not None


def test_names_argument_is_strict():
    assert names_argument("k: expected an int ≥ 1, received 0", "k")
    assert names_argument("error: argument --every: invalid positive_float value: '0'", "every")
    assert not names_argument("the top-k neighbours of run 'x' are missing", "k")
    assert not names_argument("expected a run directory, received 'x'", "run")
    assert not names_argument("no nested k_max: 3", "k")
    assert names_argument("snapshots[1]: expected 4 feature dimensions", "snapshots")
    assert names_argument("path: expected the weights file at '/tmp/x/missing.pt'", "missing.pt")


@pytest.mark.parametrize("call, argument", CASES)
def test_api_refuses_bad_input_with_a_typed_error(call, argument):
    with pytest.raises(EvolensError) as info:
        call()
    assert any(names_argument(str(info.value), name) for name in argument.split("|")), \
        f"the error does not name {argument!r}: {info.value}"


def run_cli(argv: list[str]) -> tuple[int, str]:
    from evolens.cli import main

    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse's own usage errors
            rc = exc.code
    return rc, err.getvalue()


CLI_CASES = [
    # (argv with RUN for the run directory and DIR for an empty directory, the argument the error must name)
    (["show", "DIR/missing"], "run"),
    (["show", "DIR"], "run"),
    (["runs", "DIR/missing"], "root"),
    (["embed", "RUN", "--batch-size", "0"], "batch-size"),
    (["embed", "RUN", "--batch-size", "-3"], "batch-size"),
    (["embed", "RUN", "--batch-size", "x"], "batch-size"),
    (["embed", "RUN", "--encoder", "nonsense"], "encoder"),
    (["embed", "RUN", "--encoder", "efficientnet-lite0", "--weights", "DIR/missing.pt"], "missing.pt"),
    (["analyze", "RUN", "--encoder", "pixels", "--reference", "nonsense"], "reference"),
    (["analyze", "RUN", "--encoder", "pixels", "--metrics", "nonsense"], "metrics"),
    (["analyze", "RUN", "--encoder", "pixels", "--metrics", ""], "metrics"),
    (["proximity", "RUN", "--reference", "nonsense"], "reference"),
    (["watch", "DIR/missing"], "path"),
    (["watch", "RUN", "--analyses", "nonsense"], "analyses"),
    (["watch", "RUN", "--analyses", "attributes"], "classifier"),
    (["watch", "RUN", "--rules", "DIR/missing.json"], "rules"),
    (["export", "tensorboard", "RUN"], "logdir"),
    (["export", "wandb", "RUN"], "dir"),
    (["export", "tensorboard", "DIR/missing", "--logdir", "DIR/tb"], "run"),
    (["export", "nonsense", "RUN"], "format"),
    (["report", "DIR/missing"], "run"),
    (["report", "RUN", "-o", "DIR"], "output"),
    (["compare", "RUN", "DIR/missing"], "run"),
    (["serve", "RUN", "--port", "70000"], "port"),
    (["serve", "RUN", "--port", "-1"], "port"),
    (["serve", "DIR/missing"], "run_dir"),
    (["experiment", "nonsense"], "name"),
    (["demo", "--device", "tpu"], "device"),
    (["demo", "--epochs", "0"], "epochs"),
    (["demo", "--epochs", "-2"], "epochs"),
    (["experiment", "ple-gmm", "--seeds", "-1"], "seeds"),
    (["experiment", "ple-gmm", "--steps", "0"], "steps"),
    (["experiment", "ple-fairness", "--steps", "0"], "steps"),
    (["experiment", "ple-fairness", "--ratios", "0"], "ratios"),
    (["experiment", "ple-loops", "--generations", "0"], "generations"),
    (["experiment", "attribute-bias", "--steps", "0"], "steps"),
    (["experiment", "attribute-bias", "--every", "0"], "every"),
    (["experiment", "attribute-bias", "--threshold", "nan"], "threshold"),
    (["experiment", "biased-generalization", "--epochs", "0"], "epochs"),
]


@pytest.fixture(scope="module")
def cli_paths(view_run, tmp_path_factory):
    return str(view_run), str(tmp_path_factory.mktemp("cli-bad"))


@pytest.mark.parametrize("argv, argument", CLI_CASES, ids=[" ".join(a) for a, _ in CLI_CASES])
def test_cli_refuses_bad_input_with_a_clear_error(cli_paths, argv, argument):
    run, empty = cli_paths
    argv = [a.replace("RUN", run).replace("DIR", empty) for a in argv]
    before = sorted(p.name for p in __import__("pathlib").Path(empty).iterdir())
    rc, err = run_cli(argv)
    assert rc == 2, (rc, err)
    assert "Traceback" not in err and "error" in err, err
    assert names_argument(err, argument.lstrip("-")), f"the message does not name {argument!r}: {err}"
    after = sorted(p.name for p in __import__("pathlib").Path(empty).iterdir())
    assert after == before  # nothing left behind (no temporary report file)


def test_the_battery_is_large():
    assert len(CASES) + len(CLI_CASES) >= 250
