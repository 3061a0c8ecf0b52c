"""EvolutionaryTSNE on synthetic snapshots with a planted evolution (clusters appear, split and drift)."""

import numpy as np
import pytest

from evolens import InputError
from evolens.projection import (
    NotFittedError,
    EvolutionaryTSNE,
    knn_recall,
    planted_evolution,
    temporal_stability,
    trustworthiness,
)


@pytest.fixture(scope="module")
def planted():
    return planted_evolution(n_snapshots=5, n_points=240, dim=24, seed=0)


@pytest.fixture(scope="module")
def fitted(planted):
    snapshots, ids, _, reference = planted
    return {w: EvolutionaryTSNE(alignment_weight=w, random_state=0).fit(snapshots, ids, reference=reference)
            for w in (0.0, 1.0)}


def test_alignment_makes_the_map_temporally_stable(fitted):
    loose, aligned = fitted[0.0].scores(), fitted[1.0].scores()
    # Instances move less between snapshots with the alignment term: at least halved on this data.
    assert aligned["temporal_stability"] < 0.5 * loose["temporal_stability"]


def test_neighbourhoods_are_preserved(fitted):
    scores = fitted[1.0].scores()
    assert scores["trustworthiness"] > 0.85, scores
    assert scores["knn_recall"] > 0.2, scores  # random maps score k/n ~ 0.04 here


def test_reference_and_snapshots_share_the_map(fitted, planted):
    model = fitted[1.0]
    snapshots, _, labels, reference = planted
    assert model.reference_embedding_.shape == (reference.shape[0], 2)
    assert [e.shape for e in model.embedding_] == [(240, 2)] * 5
    # The last snapshot is near the data: its points' nearest reference points sit close on the map too.
    last = model.embedding_[-1]
    gaps = np.linalg.norm(last[:, None] - model.reference_embedding_[None], axis=-1).min(axis=1)
    first = np.linalg.norm(model.embedding_[0][:, None] - model.reference_embedding_[None], axis=-1).min(axis=1)
    assert np.median(gaps) < np.median(first)


def test_extend_leaves_earlier_points_unchanged(planted):
    snapshots, ids, _, reference = planted
    model = EvolutionaryTSNE(random_state=0).fit(snapshots[:4], ids[:4], reference=reference)
    before = [e.copy() for e in model.embedding_]
    before_ref = model.reference_embedding_.copy()
    placed = model.extend(snapshots[4], ids[4])
    assert placed.shape == (240, 2) and np.isfinite(placed).all()
    assert all(np.array_equal(a, b) for a, b in zip(before, model.embedding_[:4]))
    assert np.array_equal(before_ref, model.reference_embedding_)
    assert len(model.embedding_) == 5
    # A snapshot equal to the last one lands much nearer to it than the untrained first snapshot does.
    again = model.extend(snapshots[4], ids[4])
    unrelated = model.extend(snapshots[0], ids[0])
    assert np.linalg.norm(again - placed, axis=1).mean() < 0.5 * np.linalg.norm(unrelated - again, axis=1).mean()


@pytest.mark.parametrize("layout", ["rectilinear", "radial"])
def test_banded_layouts_order_the_snapshots(planted, layout):
    snapshots, ids, _, reference = planted
    model = EvolutionaryTSNE(layout=layout, random_state=0).fit(snapshots, ids, reference=reference)
    if layout == "rectilinear":
        position = [e[:, 0].mean() for e in model.embedding_]
    else:
        centre = model._centre
        position = [np.linalg.norm(e - centre, axis=1).mean() for e in model.embedding_]
    assert np.all(np.diff(position) > 0), position  # bands left to right, rings inside out
    assert model.scores()["trustworthiness"] > 0.8


def test_quality_functions():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 5))
    assert knn_recall(x, x[:, :2] * 0 + x[:, :2], k=5) < 1.0
    assert knn_recall(np.c_[x[:, :2], np.zeros((200, 3))], x[:, :2], k=5) == pytest.approx(1.0)
    assert trustworthiness(np.c_[x[:, :2], np.zeros((200, 3))], x[:, :2], k=5) == pytest.approx(1.0)
    embeddings = [x[:, :2], x[:, :2] + 1.0]
    ids = [np.arange(200), np.arange(200)]
    scale = np.sqrt(((np.concatenate(embeddings) - np.concatenate(embeddings).mean(0)) ** 2).sum(1).mean())
    assert temporal_stability(embeddings, ids) == pytest.approx(np.sqrt(2) / scale)
    assert temporal_stability([x[:, :2], x[:, :2]], ids) == 0.0


@pytest.mark.parametrize(
    "kwargs, call, match",
    [
        ({"layout": "spiral"}, None, "layout: expected one of"),
        ({"alignment_weight": -1}, None, "alignment_weight: expected a finite non-negative number"),
        ({"alignment_weight": float("inf")}, None, "alignment_weight: expected a finite"),
        ({"exaggeration": float("nan")}, None, "exaggeration: expected a finite positive"),
        ({"layout": "radial", "band_spacing": float("inf")}, None, "band_spacing: expected a finite positive"),
        ({"n_iter": -1}, None, "n_iter: expected an integer"),
        ({"affinities": "global"}, None, "affinities: expected one of"),
        ({"pca_components": 1}, None, "pca_components: expected"),
        ({}, lambda m, s, i: m.fit(s, i[:2]), r"instance_ids: expected one id array per snapshot \(3\)"),
        ({}, lambda m, s, i: m.fit([s[0], s[1][:, :3]], i[:2]), r"snapshots\[1\]: expected 24 feature dimensions"),
        ({}, lambda m, s, i: m.fit([np.full_like(s[0], np.nan)], i[:1]), "finite"),
        ({}, lambda m, s, i: m.fit(s[:1], [i[0][:5]]), r"instance_ids\[0\]: expected shape \(240,\)"),
        ({}, lambda m, s, i: m.extend(s[0], i[0]), "call fit"),
        ({"perplexity": 300}, None, "lower perplexity"),
    ],
    ids=["layout", "weight", "weight-inf", "exaggeration-nan", "band-inf", "n-iter", "affinities", "pca", "ids-count", "dims", "nan", "ids-shape", "extend-before-fit", "too-few-points"],
)
def test_bad_input(planted, kwargs, call, match):
    snapshots, ids, _, _ = planted
    model = EvolutionaryTSNE(**kwargs)
    with pytest.raises((InputError, NotFittedError), match=match):
        if call is None:
            model.fit(snapshots[:3], ids[:3])
        else:
            call(model, snapshots[:3], ids[:3])


def test_follows_the_scikit_learn_estimator_contract():
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError as SklearnNotFittedError

    model = EvolutionaryTSNE(layout="radial", perplexity=12.0, random_state=3)
    assert model.get_params()["perplexity"] == 12.0 and model.get_params()["layout"] == "radial"
    copy = clone(model)
    assert copy.get_params() == model.get_params() and not hasattr(copy, "embedding_")
    with pytest.raises(SklearnNotFittedError, match="not fitted"):
        copy.scores()


def test_a_saved_map_extends_after_a_restart(planted, tmp_path):
    """A map saved and loaded (as a new process would) places a new snapshot exactly where the original does."""
    snapshots, ids, _, reference = planted
    model = EvolutionaryTSNE(random_state=0, n_iter=100).fit(snapshots[:4], ids[:4], reference=reference)
    model.save(tmp_path / "map.pkl")
    restarted = EvolutionaryTSNE.load(tmp_path / "map.pkl")
    np.testing.assert_array_equal(restarted.embedding_[3], model.embedding_[3])
    placed = model.extend(snapshots[4], ids[4])
    again = restarted.extend(snapshots[4], ids[4])
    np.testing.assert_allclose(again, placed, atol=1e-6)
    with pytest.raises(InputError, match="expected a serialised EvolutionaryTSNE"):
        import pickle

        EvolutionaryTSNE.from_bytes(np.frombuffer(pickle.dumps({"not": "a map"}), dtype=np.uint8))


def test_per_snapshot_affinities_are_independent_tsnes_when_nothing_ties_them(planted):
    """With no alignment, no bands and no reference, the per-snapshot objective is T independent t-SNEs: its KL
    per snapshot and its neighbourhoods match openTSNE run on each snapshot alone."""
    import openTSNE

    snapshots, ids, _, _ = planted
    model = EvolutionaryTSNE(affinities="per-snapshot", alignment_weight=0.0, n_iter=500,
                             early_exaggeration_iter=250, random_state=0).fit(snapshots[:3], ids[:3])
    alone = [openTSNE.TSNE(random_state=0, n_jobs=1, negative_gradient_method="bh").fit(x) for x in snapshots[:3]]
    reference_kl = np.mean([e.kl_divergence for e in alone])
    assert model.loss_terms_["kl"] == pytest.approx(reference_kl, rel=0.15)
    ours = np.mean([knn_recall(x, y, 10) for x, y in zip(snapshots[:3], model.embedding_)])
    theirs = np.mean([knn_recall(x, np.asarray(e), 10) for x, e in zip(snapshots[:3], alone)])
    assert ours > 0.85 * theirs, (ours, theirs)
    assert model.loss_terms_["alignment"] == 0.0 and model.loss_terms_["displacement"] == 0.0


@pytest.mark.parametrize("layout", ["rectilinear", "radial"])
def test_per_snapshot_map_keeps_bands_aligns_on_the_free_coordinate_and_extends(planted, layout):
    snapshots, ids, _, reference = planted
    model = EvolutionaryTSNE(layout=layout, affinities="per-snapshot", random_state=0,
                             n_iter=150).fit(snapshots[:4], ids[:4], reference=reference)
    scores = model.scores()
    assert scores["band_conformity"] > 0.9, scores  # each snapshot readable as its own band / ring
    assert set(model.loss_terms_) == {"kl", "displacement", "alignment"} and model.loss_terms_["kl"] > 0
    # the alignment gradient never pushes along the coordinate the band fixes
    vectors = np.random.default_rng(0).normal(size=(50, 2))
    at = model.embedding_[1][:50]
    free = model._free_part(vectors, at)
    if layout == "rectilinear":
        assert np.all(free[:, 0] == 0)
    else:
        radial = (at - model._centre) / np.linalg.norm(at - model._centre, axis=1, keepdims=True)
        assert np.abs((free * radial).sum(axis=1)).max() < 1e-9
    before = [e.copy() for e in model.embedding_]
    placed = model.extend(snapshots[4], ids[4], n_iter=50)
    assert placed.shape == (240, 2) and np.isfinite(placed).all()
    assert all(np.array_equal(a, b) for a, b in zip(before, model.embedding_[:4]))
    assert model.band_conformity() > 0.85  # the extended snapshot lands in a band of its own, next in order
    if layout == "rectilinear":
        assert placed[:, 0].mean() > model.embedding_[3][:, 0].mean()


def test_a_map_pickled_before_per_snapshot_affinities_still_extends_and_scores(planted):
    """Runs store fitted maps; one written by the previous version lacks the attributes added with the
    per-snapshot mode and must load as the joint map it was."""
    snapshots, ids, _, reference = planted
    model = EvolutionaryTSNE(layout="rectilinear", random_state=0, n_iter=50).fit(snapshots[:3], ids[:3],
                                                                                  reference=reference)
    for name in ("affinities", "reference_affinities", "_blocks", "_reference_reduced", "_band_origin"):
        del model.__dict__[name]
    old = EvolutionaryTSNE.from_bytes(model.to_bytes())
    assert old.get_params()["affinities"] == "joint"
    placed = old.extend(snapshots[3], ids[3], n_iter=20)
    assert placed.shape == (240, 2) and np.isfinite(placed).all()
    assert 0 <= old.scores()["band_conformity"] <= 1
