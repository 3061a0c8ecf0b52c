"""EvolutionaryTSNE: one time-consistent 2-D map of reference data and every snapshot (EvolvED, arXiv 2406.17462).

The objective has the three terms of EvolvED:

1. **t-SNE** over all points jointly (reference data and every snapshot's samples): perplexity-based
   affinities on the features, Student-t similarities on the map. Built from openTSNE: its affinities, its
   FFT-interpolated gradient and its optimiser (momentum, gains, early exaggeration) — the well-kept part.
2. **Displacement** (weight ``displacement_weight``): keeps the points of one snapshot together — a vertical
   band per snapshot (``layout="rectilinear"``, snapshot order left to right, reference data in the first
   band) or a ring (``"radial"``, reference data at the centre, later snapshots on larger rings). ``"free"``
   has no band: snapshots share one map and overlap where their samples are alike.
3. **Instance alignment** (weight ``alignment_weight``): the same instance (probe id) in consecutive snapshots
   is pulled to the same place, so a point's motion on the map is the model's change, not optimiser noise.

Terms 2 and 3 are quadratic penalties whose gradients (scaled by 1/N like the t-SNE gradient, and by a
stiffness that keeps openTSNE's momentum-and-gains optimiser stable for weights up to ~4) are added to
openTSNE's through its ``negative_gradient_method`` hook, so the optimiser needs no changes. Bands and rings
are placed after early exaggeration, from the spread of the map at that point, and then stay fixed (targets
that followed the map's size would feed back into it). ``extend``
places a new snapshot against the fitted map with openTSNE's partial embedding (the fitted points stay
fixed), initialised at the previous positions of its instances and pulled by the same alignment term.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

from .._validation import check_array, describe
from ..errors import EvolensError, InputError
from .scores import knn_recall, map_scale, matched_indices, temporal_stability, trustworthiness

LAYOUTS = ("free", "rectilinear", "radial")
_STIFFNESS = 0.05  # gradient scale of the penalties: weight 1 moves a point ~5% of the way per iteration


class NotFittedError(EvolensError, _SklearnNotFittedError):
    """A map was used (``extend``, ``scores``) before ``fit``; also scikit-learn's ``NotFittedError``."""


class _Objective:
    """openTSNE's FFT gradient plus the penalties of ``model`` (a class, not a closure, so a fitted map pickles)."""

    def __init__(self, model: "EvolutionaryTSNE", group: np.ndarray, pairs, fixed_targets=None,
                 n_total: int | None = None) -> None:
        self.model, self.group, self.pairs, self.fixed_targets, self.n_total = model, group, pairs, fixed_targets, n_total

    def __call__(self, embedding, P, dof, bh_params=None, fft_params=None, reference_embedding=None, n_jobs=1,
                 should_eval_error=False, **_):
        from openTSNE.tsne import kl_divergence_fft

        error, gradient = kl_divergence_fft(embedding, P, dof, fft_params, reference_embedding=reference_embedding,
                                            should_eval_error=should_eval_error, n_jobs=n_jobs)
        total = self.n_total or embedding.shape[0]
        gradient += self.model._extra_gradient(np.asarray(embedding), self.group, self.pairs, self.fixed_targets, total)
        return error, gradient


class EvolutionaryTSNE(BaseEstimator):
    """Time-consistent t-SNE of snapshots (and reference data) in one 2-D map.

    Follows scikit-learn's estimator contract: ``__init__`` only stores parameters (``get_params``/``clone``
    work), learned attributes end in ``_``, ``fit`` returns self, and using an unfitted map raises
    ``NotFittedError``. ``to_bytes``/``from_bytes`` (and ``save``/``load``) keep a fitted map across processes,
    so ``extend`` works after a restart.

    Args:
        layout: ``"free"``, ``"rectilinear"`` or ``"radial"`` (see module docstring).
        perplexity: t-SNE perplexity (openTSNE affinities).
        alignment_weight: weight of the instance-alignment term (0 disables it).
        displacement_weight: weight of the band/ring term (ignored for ``"free"``).
        band_spacing: distance between bands/rings in units of the map's spread across the band.
        n_iter: iterations after early exaggeration; ``early_exaggeration_iter`` before, at ``exaggeration``.
        pca_components: features with more dimensions are first projected on this many principal components
            (the usual t-SNE preprocessing; it makes the neighbour search ~5x faster); None disables it.
        random_state: seed of the initialisation and the neighbour search.
        n_jobs: threads for openTSNE.

    Learned attributes: ``embedding_`` (list of (n_t, 2) arrays, one per snapshot), ``reference_embedding_``
    ((m, 2) or None), ``instance_ids_`` (list of id arrays).
    """

    def __init__(
        self,
        layout: str = "free",
        *,
        perplexity: float = 30.0,
        alignment_weight: float = 1.0,
        displacement_weight: float = 1.0,
        band_spacing: float = 1.5,
        n_iter: int = 250,
        early_exaggeration_iter: int = 100,
        exaggeration: float = 12.0,
        pca_components: int | None = 50,
        random_state: int = 0,
        n_jobs: int = -1,
    ) -> None:
        self.layout = layout
        self.perplexity = perplexity
        self.alignment_weight = alignment_weight
        self.displacement_weight = displacement_weight
        self.band_spacing = band_spacing
        self.n_iter = n_iter
        self.early_exaggeration_iter = early_exaggeration_iter
        self.exaggeration = exaggeration
        self.pca_components = pca_components
        self.random_state = random_state
        self.n_jobs = n_jobs

    # -- validation ---------------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.layout not in LAYOUTS:
            raise InputError(f"layout: expected one of {LAYOUTS}, received {self.layout!r}")
        for name in ("alignment_weight", "displacement_weight"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise InputError(f"{name}: expected a non-negative number, received {describe(value)}")
        if self.band_spacing <= 0:
            raise InputError(f"band_spacing: expected a positive number, received {self.band_spacing!r}")

    @staticmethod
    def _check_snapshots(snapshots: Sequence[Any], instance_ids: Sequence[Any]) -> tuple[list, list, int]:
        if not isinstance(snapshots, (list, tuple)) or not snapshots:
            raise InputError(f"snapshots: expected a non-empty list of (n_t, d) feature arrays, received {describe(snapshots)}")
        if not isinstance(instance_ids, (list, tuple)) or len(instance_ids) != len(snapshots):
            raise InputError(
                f"instance_ids: expected one id array per snapshot ({len(snapshots)}), received {describe(instance_ids)}"
            )
        feats, ids = [], []
        dim = None
        for t, (x, i) in enumerate(zip(snapshots, instance_ids)):
            x = check_array(x, f"snapshots[{t}]", ndim=2, min_samples=1)
            if not np.isfinite(x).all():
                raise InputError(f"snapshots[{t}]: expected finite features, found NaN/inf in shape={x.shape}")
            dim = x.shape[1] if dim is None else dim
            if x.shape[1] != dim:
                raise InputError(f"snapshots[{t}]: expected {dim} feature dimensions, received shape={x.shape}")
            i = np.asarray(i)
            if i.shape != (x.shape[0],):
                raise InputError(f"instance_ids[{t}]: expected shape ({x.shape[0]},), received shape={i.shape}")
            feats.append(np.asarray(x, dtype=np.float32))
            ids.append(i)
        return feats, ids, dim

    # -- the extra terms ------------------------------------------------------------------------------
    def _targets(self, group: np.ndarray) -> np.ndarray | None:
        """Band (x coordinate) or ring (radius) target of every point, once the band scale is fixed."""
        if self.layout == "free" or self.displacement_weight == 0 or getattr(self, "_band_scale", None) is None:
            return None
        if self.layout == "rectilinear":
            return (group - (self._n_groups - 1) / 2.0) * self.band_spacing * 2.0 * self._band_scale
        return group * self.band_spacing * self._band_scale  # group 0 (reference) at the centre

    def _extra_gradient(self, embedding: np.ndarray, group: np.ndarray, pairs: list[tuple[np.ndarray, np.ndarray]],
                        fixed_targets: tuple[np.ndarray, np.ndarray] | None, n_total: int) -> np.ndarray:
        gradient = np.zeros_like(embedding)
        scale = _STIFFNESS * 2.0 / n_total
        if self.alignment_weight > 0:
            w = self.alignment_weight * scale
            for a, b in pairs:  # indices are unique within a pair: plain fancy-index updates are exact
                diff = w * (embedding[a] - embedding[b])
                gradient[a] += diff
                gradient[b] -= diff
            if fixed_targets is not None:
                rows, targets = fixed_targets
                gradient[rows] += w * (embedding[rows] - targets)
        targets = self._targets(group)
        if targets is not None:
            w = self.displacement_weight * scale
            if self.layout == "rectilinear":
                gradient[:, 0] += w * (embedding[:, 0] - targets)
            else:
                centred = embedding - self._centre
                radius = np.linalg.norm(centred, axis=1, keepdims=True) + 1e-12
                gradient += w * (radius - targets[:, None]) * centred / radius
        return gradient

    def _objective(self, group: np.ndarray, pairs, fixed_targets=None, n_total: int | None = None) -> _Objective:
        return _Objective(self, group, pairs, fixed_targets, n_total)

    # -- fitting --------------------------------------------------------------------------------------
    def fit(self, snapshots: Sequence[Any], instance_ids: Sequence[Any], reference: Any = None) -> "EvolutionaryTSNE":
        """Lay out all snapshots (list of (n_t, d) features) and optional reference data ((m, d)) on one map.

        ``instance_ids[t]`` (n_t,) names the instance (probe) of each row; equal ids are aligned across
        consecutive snapshots. Returns self.
        """
        import openTSNE
        from openTSNE import affinity, initialization

        self._check_params()
        feats, ids, dim = self._check_snapshots(snapshots, instance_ids)
        ref = None
        if reference is not None:
            ref = check_array(reference, "reference", ndim=2, min_samples=1)
            if ref.shape[1] != dim:
                raise InputError(f"reference: expected {dim} feature dimensions like the snapshots, received shape={ref.shape}")
            ref = np.asarray(ref, dtype=np.float32)
        blocks = ([ref] if ref is not None else []) + feats
        x_all = np.concatenate(blocks)
        if x_all.shape[0] < 3 * self.perplexity + 2:
            raise InputError(
                f"snapshots: expected at least {int(3 * self.perplexity) + 2} points in all for perplexity "
                f"{self.perplexity}, received {x_all.shape[0]}; lower perplexity"
            )
        offsets = np.cumsum([0] + [b.shape[0] for b in blocks])
        first = 1 if ref is not None else 0
        # Group of each point: reference is group 0 in radial/rectilinear layouts; snapshots follow.
        group = np.concatenate([np.full(b.shape[0], g + (0 if ref is not None else 1), dtype=np.float64)
                                for g, b in enumerate(blocks)])
        self._n_groups = len(blocks) + (0 if ref is not None else 1)
        if self.layout == "rectilinear" and ref is None:
            group -= 1.0
            self._n_groups -= 1
        pairs = []
        for t in range(len(feats) - 1):
            a, b = matched_indices(ids[t], ids[t + 1])
            pairs.append((a + offsets[first + t], b + offsets[first + t + 1]))
        self._pca = None
        if self.pca_components is not None and x_all.shape[1] > self.pca_components:
            from sklearn.decomposition import PCA

            self._pca = PCA(n_components=self.pca_components, random_state=self.random_state).fit(x_all)
            x_all = self._pca.transform(x_all).astype(np.float32)
        # Exact neighbours (openTSNE's scikit-learn index): on <= 50-d inputs faster here than its
        # approximate Annoy index (3.1 s vs 6.0 s for 20,000 points on 2 cores) and deterministic.
        affinities = affinity.PerplexityBasedNN(x_all, perplexity=self.perplexity, method="exact",
                                                n_jobs=self.n_jobs, random_state=self.random_state, verbose=False)
        init = initialization.pca(x_all, random_state=self.random_state)
        objective = self._objective(group, pairs)
        embedding = openTSNE.TSNEEmbedding(init, affinities, negative_gradient_method=objective,
                                           n_jobs=self.n_jobs, random_state=self.random_state)
        self._band_scale = None
        embedding = embedding.optimize(n_iter=self.early_exaggeration_iter, exaggeration=self.exaggeration,
                                       momentum=0.5)
        coords = np.asarray(embedding)
        self._centre = coords.mean(axis=0)
        if self.layout == "rectilinear":
            self._band_scale = float(coords[:, 1].std()) + 1e-12
        else:
            self._band_scale = float(np.sqrt(((coords - self._centre) ** 2).sum(axis=1).mean())) / 2.0 + 1e-12
        embedding = embedding.optimize(n_iter=self.n_iter, exaggeration=1.0, momentum=0.8)
        self._tsne = embedding
        self._group = group
        coords = np.asarray(embedding)
        self.reference_embedding_ = coords[: offsets[1]].copy() if ref is not None else None
        self.embedding_ = [coords[offsets[first + t]: offsets[first + t + 1]].copy() for t in range(len(feats))]
        self.instance_ids_ = ids
        self._features = feats
        self._reference_features = ref
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "embedding_"):
            raise NotFittedError("EvolutionaryTSNE: this map is not fitted yet; call fit(snapshots, instance_ids) "
                                 "first, or load a fitted one with EvolutionaryTSNE.load / from_bytes")

    # -- persistence ----------------------------------------------------------------------------------
    def to_bytes(self) -> np.ndarray:
        """The fitted map, serialised with pickle, as a uint8 array (what a run stores)."""
        import pickle

        self._check_fitted()
        return np.frombuffer(pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8).copy()

    @classmethod
    def from_bytes(cls, blob: Any) -> "EvolutionaryTSNE":
        """A map from ``to_bytes()``. Unpickling runs code: load only maps you (or a run you trust) wrote."""
        import pickle

        model = pickle.loads(np.asarray(blob, dtype=np.uint8).tobytes())
        if not isinstance(model, cls):
            raise InputError(f"blob: expected a serialised {cls.__name__}, received a {type(model).__name__}")
        return model

    def save(self, path: Any) -> None:
        """Write the fitted map to ``path`` (see ``to_bytes``)."""
        with open(path, "wb") as handle:
            handle.write(self.to_bytes().tobytes())

    @classmethod
    def load(cls, path: Any) -> "EvolutionaryTSNE":
        """Read a map written by ``save`` (trusted files only: it is a pickle)."""
        with open(path, "rb") as handle:
            return cls.from_bytes(np.frombuffer(handle.read(), dtype=np.uint8))

    def extend(self, new_snapshot: Any, instance_ids: Any, *, n_iter: int = 150) -> np.ndarray:
        """Place a new snapshot (n, d) on the fitted map without moving any earlier point; returns (n, 2).

        Every point starts at the median of its neighbours on the fitted map (openTSNE's partial embedding);
        instances seen in the last snapshot are pulled towards their previous positions by the alignment term.
        The result is appended to ``embedding_``.
        """
        self._check_fitted()
        feats, ids, _ = self._check_snapshots([new_snapshot], [instance_ids])
        x, new_ids = feats[0], ids[0]
        if x.shape[1] != self._features[0].shape[1]:
            raise InputError(f"new_snapshot: expected {self._features[0].shape[1]} feature dimensions, received shape={x.shape}")
        reduced = self._pca.transform(x).astype(np.float32) if self._pca is not None else x
        # Start at the median of each point's neighbours on the fixed map (where its features say it belongs);
        # instances seen in the last snapshot are then pulled towards their previous positions.
        partial = self._tsne.prepare_partial(reduced, initialization="median", k=min(25, self._tsne.shape[0] - 1))
        a, b = matched_indices(self.instance_ids_[-1], new_ids)
        group = np.full(x.shape[0], float(self._n_groups), dtype=np.float64)
        fixed = (b, self.embedding_[-1][a]) if a.size else None
        self._n_groups += 1
        # Partial affinities are normalised per new point, so the penalties use per-point scale (n_total=1).
        objective = self._objective(group, [], fixed_targets=fixed, n_total=1)
        if self._tsne.interp_coeffs is None:
            # openTSNE prepares the fixed map's interpolation grid only for its own FFT objective.
            self._tsne.prepare_interpolation_grid()
        partial = partial.optimize(n_iter=n_iter, negative_gradient_method=objective, learning_rate=0.1,
                                   momentum=0.8, max_grad_norm=0.25)
        coords = np.asarray(partial).copy()
        self.embedding_.append(coords)
        self.instance_ids_.append(new_ids)
        self._features.append(x)
        return coords

    # -- scores ---------------------------------------------------------------------------------------
    def scores(self, k: int = 10) -> dict[str, float]:
        """Neighbourhood preservation per snapshot (k-NN recall, trustworthiness; means over snapshots) and
        temporal stability (on the free coordinates: both for ``free``, y for ``rectilinear``, the angle
        times the mean radius for ``radial``)."""
        self._check_fitted()
        recalls, trusts = [], []
        for x, y in zip(self._features, self.embedding_):
            if x.shape[0] > 2 * k + 1:
                recalls.append(knn_recall(x, y, k))
                trusts.append(trustworthiness(x, y, k))
        free = [self.free_coordinates(e) for e in self.embedding_]
        out = {
            "knn_recall": float(np.mean(recalls)) if recalls else float("nan"),
            "trustworthiness": float(np.mean(trusts)) if trusts else float("nan"),
        }
        if len(self.embedding_) > 1:
            out["temporal_stability"] = temporal_stability(free, self.instance_ids_, scale=map_scale(free))
        return out

    def free_coordinates(self, embedding: np.ndarray) -> np.ndarray:
        """The coordinates of a snapshot that its band/ring does not fix (for stability scores)."""
        embedding = np.asarray(embedding)
        if self.layout == "free":
            return embedding
        if self.layout == "rectilinear":
            return embedding[:, 1:2]
        centre = np.concatenate(self.embedding_).mean(axis=0)
        centred = embedding - centre
        angle = np.arctan2(centred[:, 1], centred[:, 0])
        radius = np.linalg.norm(np.concatenate(self.embedding_) - centre, axis=1).mean()
        return np.stack([np.cos(angle), np.sin(angle)], axis=1) * radius
