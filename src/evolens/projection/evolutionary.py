"""EvolutionaryTSNE: one time-consistent 2-D map of reference data and every snapshot (EvolvED, arXiv 2406.17462).

The objective has the three terms of EvolvED:

1. **t-SNE within each snapshot** (``affinities="per-snapshot"``, EvolvED's semantic term):
   every snapshot has its own perplexity affinities P_t and its own Student-t similarities Q_t, normalised over
   that snapshot alone, and the map minimises Σ_t (n_t / N) KL(P_t ‖ Q_t). Reference data joins every
   snapshot's block (P and Q over reference ∪ snapshot t), so a sample lies next to the data it resembles;
   ``reference_affinities="block"`` makes the reference a block of its own instead (measured worse, see
   docs/architecture.md). ``affinities="joint"`` (the default, v0.1's map; faster, see docs/architecture.md)
   computes one P and Q over all points at once: cross-snapshot attractions then pull a sample towards its
   look-alikes in other snapshots. Built from openTSNE:
   its affinities, its FFT-interpolated gradient (called once per block) and its optimiser (momentum, gains,
   early exaggeration) — the well-kept part.
2. **Displacement** (weight ``displacement_weight``): keeps the points of one snapshot together — a vertical
   band per snapshot (``layout="rectilinear"``, snapshot order left to right, reference data in the first
   band) or a ring (``"radial"``, reference data at the centre, later snapshots on larger rings). ``"free"``
   has no band: snapshots share one map and overlap where their samples are alike.
3. **Instance alignment** (weight ``alignment_weight``): the same instance (probe id) in consecutive snapshots
   is pulled to the same place, so a point's motion on the map is the model's change, not optimiser noise. It
   acts on the free coordinates only (y in a rectilinear layout, the angle in a radial one), never against the
   band or ring that term 2 fixes.

Terms 2 and 3 are quadratic penalties whose gradients (scaled by 1/N like the t-SNE gradient, and by a
stiffness that keeps openTSNE's momentum-and-gains optimiser stable for weights up to ~4) are added to
openTSNE's through its ``negative_gradient_method`` hook, so the optimiser needs no changes. Bands and rings
are placed after early exaggeration, from the spread of the map at that point, and then stay fixed (targets
that followed the map's size would feed back into it). After ``fit``, ``loss_terms_`` holds each term's value
and ``scores()`` a band/ring conformity. ``extend`` places a new snapshot on the fitted map without moving
any earlier point: its own block (with the reference, fixed) in per-snapshot mode, openTSNE's partial
embedding in joint mode; initialised at the previous positions of its instances and pulled by the same
alignment term.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

from .._validation import check_array, check_seed, describe
from ..errors import EvolensError, InputError
from .scores import knn_recall, map_scale, matched_indices, temporal_stability, trustworthiness

LAYOUTS = ("free", "rectilinear", "radial")
AFFINITIES = ("per-snapshot", "joint")
REFERENCE_AFFINITIES = ("joined", "block")
_STIFFNESS = 0.05  # gradient scale of the penalties: weight 1 moves a point ~5% of the way per iteration


class NotFittedError(EvolensError, _SklearnNotFittedError):
    """A map was used (``extend``, ``scores``) before ``fit``; also scikit-learn's ``NotFittedError``."""


class _Block:
    """One block of the per-snapshot t-SNE term: ``rows`` of the optimised embedding, its affinities ``P`` (sums
    to 1) and its ``weight`` (a number, or one per row); ``fixed`` (m, 2) are map positions of fixed points (the
    reference in ``extend``) that come first in the block's P and Q but receive no gradient."""

    def __init__(self, rows: np.ndarray, P: Any, weight: Any, fixed: np.ndarray | None = None) -> None:
        self.rows, self.P, self.fixed = rows, P, fixed
        self.weight = np.asarray(weight, dtype=np.float64)


def _sum_of_blocks(blocks: list[_Block], n: int) -> Any:
    """(n, n) sparse sum of the blocks' affinities placed at their rows (what openTSNE holds as P: it scales it
    in place for exaggeration, which is how the objective learns the factor)."""
    import scipy.sparse as sp

    rows, cols, values = [], [], []
    for block in blocks:
        coo = block.P.tocoo()
        rows.append(block.rows[coo.row])
        cols.append(block.rows[coo.col])
        values.append(coo.data * block.rows.size)
    if not rows:
        return sp.csr_matrix(np.ones((n, n)) - np.eye(n))
    return sp.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))


#: blocks up to this size take openTSNE's Barnes-Hut gradient, larger ones its FFT interpolation (openTSNE's own
#: "auto" threshold). Measured per call on 2 cores: 240 points 9 ms BH vs 86 ms FFT, 2,000 points 35 vs 87 ms,
#: 4,000 points 40 vs 113 ms — the FFT grid has a fixed cost that small blocks do not amortise.
_BARNES_HUT_MAX = 10_000


def _blockwise_kl(embedding: np.ndarray, blocks: list[_Block], exaggeration: float, dof: float, fft_params: dict,
                  should_eval_error: bool, n_jobs: int, bh_params: dict | None = None) -> tuple[float, np.ndarray]:
    """Σ_b weight_b · KL(P_b ‖ Q_b) and its gradient: openTSNE's gradient computed on each block alone, so Q is
    normalised within the block (EvolvED's per-iteration semantic term)."""
    from openTSNE.tsne import kl_divergence_bh, kl_divergence_fft

    gradient = np.zeros_like(embedding)
    error = 0.0
    for block in blocks:
        points = embedding[block.rows]
        m = 0 if block.fixed is None else block.fixed.shape[0]
        if m:
            points = np.concatenate([block.fixed, points])
        P = block.P * exaggeration if exaggeration != 1 else block.P
        if points.shape[0] <= _BARNES_HUT_MAX:
            err, grad = kl_divergence_bh(np.ascontiguousarray(points), P, dof, bh_params or {"theta": 0.5},
                                         should_eval_error=should_eval_error, n_jobs=n_jobs)
        else:
            err, grad = kl_divergence_fft(np.ascontiguousarray(points), P, dof, fft_params,
                                          should_eval_error=should_eval_error, n_jobs=n_jobs)
        gradient[block.rows] += (block.weight[:, None] if block.weight.ndim else block.weight) * grad[m:]
        if should_eval_error:
            error += float(block.weight.mean()) * float(err)
    return error, gradient


class _Objective:
    """openTSNE's FFT gradient (joint, or per block) plus the penalties of ``model`` (a class, not a closure, so a
    fitted map pickles)."""

    def __init__(self, model: "EvolutionaryTSNE", group: np.ndarray, pairs, fixed_targets=None,
                 n_total: int | None = None, blocks: list[_Block] | None = None) -> None:
        self.model, self.group, self.pairs, self.fixed_targets, self.n_total = model, group, pairs, fixed_targets, n_total
        self.blocks = blocks

    def __call__(self, embedding, P, dof, bh_params=None, fft_params=None, reference_embedding=None, n_jobs=1,
                 should_eval_error=False, **_):
        from openTSNE.tsne import kl_divergence_fft

        embedding = np.asarray(embedding)
        if self.blocks is None:
            error, gradient = kl_divergence_fft(embedding, P, dof, fft_params, reference_embedding=reference_embedding,
                                                should_eval_error=should_eval_error, n_jobs=n_jobs)
        else:
            # openTSNE hands over its P (the weighted sum of the blocks, total 1) exaggerated in place
            # (P *= exaggeration): the sum says by how much. It corrects the error for exaggeration itself.
            exaggeration = round(float(P.data.sum()), 6)
            error, gradient = _blockwise_kl(embedding, self.blocks, exaggeration, dof, fft_params,
                                            should_eval_error, n_jobs, bh_params)
        total = self.n_total or embedding.shape[0]
        gradient += self.model._extra_gradient(embedding, self.group, self.pairs, self.fixed_targets, total)
        return error, gradient


class EvolutionaryTSNE(BaseEstimator):
    """Time-consistent t-SNE of snapshots (and reference data) in one 2-D map.

    Follows scikit-learn's estimator contract: ``__init__`` only stores parameters (``get_params``/``clone``
    work), learned attributes end in ``_``, ``fit`` returns self, and using an unfitted map raises
    ``NotFittedError``. ``to_bytes``/``from_bytes`` (and ``save``/``load``) keep a fitted map across processes,
    so ``extend`` works after a restart.

    Args:
        layout: ``"free"``, ``"rectilinear"`` or ``"radial"`` (see module docstring).
        affinities: ``"per-snapshot"`` (EvolvED: P and Q within each snapshot) or ``"joint"`` (default: one P and
            Q over all points, v0.1's map).
        reference_affinities: per-snapshot mode only: ``"joined"`` (the reference takes part in every snapshot's
            block) or ``"block"`` (the reference is a block of its own).
        perplexity: t-SNE perplexity (openTSNE affinities; lowered for a block with fewer than 3 × perplexity
            points).
        alignment_weight: weight of the instance-alignment term (0 disables it).
        displacement_weight: weight of the band/ring term (ignored for ``"free"``).
        band_spacing: distance between bands/rings in units of the map's spread across the band.
        n_iter: iterations after early exaggeration; ``early_exaggeration_iter`` before, at ``exaggeration``.
        pca_components: features with more dimensions are first projected on this many principal components
            (the usual t-SNE preprocessing; it makes the joint neighbour search ~5x faster); None disables it;
            ``"auto"``: 50 in joint mode, none per snapshot (the blocks are small enough for exact neighbours on
            the full features, and PCA to 50 cost k-NN recall: 0.164 against 0.216 on 128-d planted data).
        random_state: seed of the initialisation and the neighbour search.
        n_jobs: threads for openTSNE.

    Learned attributes: ``embedding_`` (list of (n_t, 2) arrays, one per snapshot), ``reference_embedding_``
    ((m, 2) or None), ``instance_ids_`` (list of id arrays), ``loss_terms_`` (the value of each term of the
    objective at the fitted map: ``kl`` — Σ_t (n_t/N) KL(P_t‖Q_t), or the joint KL —, ``displacement`` and
    ``alignment`` — the penalties as optimised, weight × stiffness / N × sum of squares).
    """

    def __init__(
        self,
        layout: str = "free",
        *,
        affinities: str = "joint",
        reference_affinities: str = "joined",
        perplexity: float = 30.0,
        alignment_weight: float = 1.0,
        displacement_weight: float = 1.0,
        band_spacing: float = 1.5,
        n_iter: int = 250,
        early_exaggeration_iter: int = 100,
        exaggeration: float = 12.0,
        pca_components: int | str | None = "auto",
        random_state: int = 0,
        n_jobs: int = -1,
    ) -> None:
        self.layout = layout
        self.affinities = affinities
        self.reference_affinities = reference_affinities
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
        check_seed(self.random_state, "random_state")
        if self.layout not in LAYOUTS:
            raise InputError(f"layout: expected one of {LAYOUTS}, received {self.layout!r}")
        if self.affinities not in AFFINITIES:
            raise InputError(f"affinities: expected one of {AFFINITIES}, received {self.affinities!r}")
        if self.reference_affinities not in REFERENCE_AFFINITIES:
            raise InputError(f"reference_affinities: expected one of {REFERENCE_AFFINITIES}, "
                             f"received {self.reference_affinities!r}")
        # non-finite weights or scales reach openTSNE's compiled gradient as inf/NaN coordinates, which crash
        # the interpreter there: refuse them here
        for name in ("alignment_weight", "displacement_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < np.inf:
                raise InputError(f"{name}: expected a finite non-negative number, received {describe(value)}")
        for name in ("band_spacing", "perplexity", "exaggeration"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < np.inf:
                raise InputError(f"{name}: expected a finite positive number, received {describe(value)}")
        pca = self.pca_components
        if not (pca is None or pca == "auto" or (isinstance(pca, (int, np.integer)) and not isinstance(pca, bool)
                                                 and pca >= 2)):
            raise InputError(f"pca_components: expected None, 'auto' or an integer ≥ 2, received {describe(pca)}")
        for name, low in (("n_iter", 1), ("early_exaggeration_iter", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise InputError(f"{name}: expected an integer ≥ {low}, received {describe(value)}")

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
            if np.unique(i).size != i.size:  # alignment matches rows by id: a repeated id is ambiguous
                raise InputError(f"instance_ids[{t}]: expected unique ids within a snapshot, received "
                                 f"{i.size - np.unique(i).size} repeated")
            feats.append(np.asarray(x, dtype=np.float32))
            ids.append(i)
        return feats, ids, dim

    # -- the extra terms ------------------------------------------------------------------------------
    def _banded(self) -> bool:
        """Whether bands/rings are in force: a banded layout with a displacement weight, bands placed."""
        return (self.layout != "free" and self.displacement_weight > 0
                and getattr(self, "_band_scale", None) is not None)

    def _targets(self, group: np.ndarray) -> np.ndarray | None:
        """Band (x coordinate) or ring (radius) target of every point, once the band scale is fixed."""
        if not self._banded():
            return None
        if self.layout == "rectilinear":
            # the origin is fixed at fit time: bands added by extend go on to the right at the same spacing
            return (group - self._band_origin) * self.band_spacing * 2.0 * self._band_scale
        return group * self.band_spacing * self._band_scale  # group 0 (reference) at the centre

    def _extra_gradient(self, embedding: np.ndarray, group: np.ndarray, pairs: list[tuple[np.ndarray, np.ndarray]],
                        fixed_targets: tuple[np.ndarray, np.ndarray] | None, n_total: int) -> np.ndarray:
        gradient = np.zeros_like(embedding)
        scale = _STIFFNESS * 2.0 / n_total
        if self.alignment_weight > 0:
            w = self.alignment_weight * scale
            for a, b in pairs:  # indices are unique within a pair: plain fancy-index updates are exact
                diff = w * (embedding[a] - embedding[b])
                gradient[a] += self._free_part(diff, embedding[a])
                gradient[b] -= self._free_part(diff, embedding[b])
            if fixed_targets is not None:
                rows, targets = fixed_targets
                gradient[rows] += self._free_part(w * (embedding[rows] - targets), embedding[rows])
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

    def _free_part(self, vectors: np.ndarray, at: np.ndarray) -> np.ndarray:
        """The part of gradient ``vectors`` (n, 2) along the free coordinates of points ``at`` (n, 2): y in a
        rectilinear layout, the tangent of the ring in a radial one (once the bands are placed); all of it
        otherwise."""
        if not self._banded():
            return vectors
        if self.layout == "rectilinear":
            return np.column_stack([np.zeros(len(vectors)), vectors[:, 1]])
        radial = at - self._centre
        radial /= np.linalg.norm(radial, axis=1, keepdims=True) + 1e-12
        return vectors - (vectors * radial).sum(axis=1, keepdims=True) * radial

    def _objective(self, group: np.ndarray, pairs, fixed_targets=None, n_total: int | None = None,
                   blocks: list[_Block] | None = None) -> _Objective:
        return _Objective(self, group, pairs, fixed_targets, n_total, blocks)

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
        components = self.pca_components
        if components == "auto":
            components = 50 if self.affinities == "joint" else None
        if components is not None and x_all.shape[1] > components:
            from sklearn.decomposition import PCA

            self._pca = PCA(n_components=components, random_state=self.random_state).fit(x_all)
            x_all = self._pca.transform(x_all).astype(np.float32)
        init = initialization.pca(x_all, random_state=self.random_state)
        if self.affinities == "joint":
            affinities = self._affinities(x_all)
            blocks = None
        else:
            blocks = self._snapshot_blocks(x_all, offsets, first)
            affinities = affinity.PrecomputedAffinities(_sum_of_blocks(blocks, x_all.shape[0]), normalize=True)
        self._blocks = blocks
        objective = self._objective(group, pairs, blocks=blocks)
        embedding = openTSNE.TSNEEmbedding(init, affinities, negative_gradient_method=objective,
                                           n_jobs=self.n_jobs, random_state=self.random_state)
        self._band_scale = None
        embedding = embedding.optimize(n_iter=self.early_exaggeration_iter, exaggeration=self.exaggeration,
                                       momentum=0.5)
        coords = np.asarray(embedding)
        self._centre = coords.mean(axis=0)
        self._band_origin = (self._n_groups - 1) / 2.0
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
        self._reference_reduced = x_all[: offsets[1]] if ref is not None else None
        self.loss_terms_ = self._loss_terms(coords, group, pairs)
        return self

    # -- affinities -----------------------------------------------------------------------------------
    def _affinities(self, x: np.ndarray) -> Any:
        """openTSNE perplexity affinities of ``x`` (n, d), perplexity lowered to (n − 1) / 3 for small sets."""
        from openTSNE import affinity

        # Exact neighbours (openTSNE's scikit-learn index): on <= 50-d inputs faster here than its
        # approximate Annoy index (3.1 s vs 6.0 s for 20,000 points on 2 cores) and deterministic.
        perplexity = min(float(self.perplexity), (x.shape[0] - 1) / 3.0)
        return affinity.PerplexityBasedNN(x, perplexity=perplexity, method="exact", n_jobs=self.n_jobs,
                                          random_state=self.random_state, verbose=False)

    def _snapshot_blocks(self, x_all: np.ndarray, offsets: np.ndarray, first: int) -> list[_Block]:
        """One block per snapshot (with the reference rows first when ``reference_affinities="joined"``), and a
        block of the reference alone in ``"block"`` mode. Row weights make every point's gradient O(1/N), as in
        a joint t-SNE of N points: block rows × |block| / N, reference rows shared by T blocks divided by T."""
        n_total = x_all.shape[0]
        ref_rows = np.arange(offsets[1]) if first else np.arange(0)
        joined = first and self.reference_affinities == "joined"
        snapshot_rows = [np.arange(offsets[first + t], offsets[first + t + 1]) for t in range(len(offsets) - 1 - first)]
        members = [np.concatenate([ref_rows, rows]) if joined else rows for rows in snapshot_rows]
        if first and not joined:
            members.insert(0, ref_rows)
        blocks = []
        for rows in members:
            if rows.size < 4:  # too few points for a t-SNE of their own: alignment and bands still place them
                continue
            weight = np.full(rows.size, rows.size / n_total)
            if joined:
                weight[: ref_rows.size] /= len(snapshot_rows)
            blocks.append(_Block(rows, self._affinities(x_all[rows]).P, weight))
        return blocks

    def _loss_terms(self, coords: np.ndarray, group: np.ndarray, pairs) -> dict[str, float]:
        """Each term of the objective at ``coords``: the t-SNE KL (blocks weighted by their share of the rows),
        and the displacement and alignment penalties (weight × stiffness / N × sum of squared distances along
        the coordinates they act on)."""
        from openTSNE.tsne import kl_divergence_fft

        fft = {"n_interpolation_points": 3, "min_num_intervals": 50, "ints_in_interval": 1}
        if self._blocks is None:
            kl = float(kl_divergence_fft(coords, self._tsne.affinities.P, 1, fft, should_eval_error=True)[0])
        else:
            sizes = np.array([b.rows.size for b in self._blocks], dtype=float)
            shares = [_Block(b.rows, b.P, share) for b, share in zip(self._blocks, sizes / sizes.sum())]
            kl = _blockwise_kl(coords, shares, 1.0, 1, fft, True, self.n_jobs)[0]
        scale = _STIFFNESS / coords.shape[0]
        offset = self._band_offset(coords, group)
        displacement = 0.0 if offset is None else float(self.displacement_weight * scale * (offset**2).sum())
        alignment = 0.0
        for a, b in pairs:
            diff = self._free_part(coords[a] - coords[b], coords[a])
            alignment += float(self.alignment_weight * scale * (diff**2).sum())
        return {"kl": float(kl), "displacement": displacement, "alignment": alignment}

    def _check_fitted(self) -> None:
        if not hasattr(self, "embedding_"):
            raise NotFittedError("EvolutionaryTSNE: this map is not fitted yet; call fit(snapshots, instance_ids) "
                                 "first, or load a fitted one with EvolutionaryTSNE.load / from_bytes")

    # -- persistence ----------------------------------------------------------------------------------
    def __setstate__(self, state: dict) -> None:
        """Maps pickled before per-snapshot affinities (stored in older runs) were joint maps whose band origin
        followed the group count: give them those values so ``extend`` and ``scores`` keep working."""
        defaults = {"affinities": "joint", "reference_affinities": "joined", "_blocks": None,
                    "_reference_reduced": None}
        if "_n_groups" in state and "_band_origin" not in state:
            defaults["_band_origin"] = (state["_n_groups"] - 1) / 2.0
        super().__setstate__(defaults | state)

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

        Per-snapshot mode: the snapshot's own t-SNE block (with the fitted reference, fixed, when joined), its
        band/ring and the alignment term, starting at its instances' previous positions. Joint mode: openTSNE's
        partial embedding (every point starts at the median of its neighbours on the fitted map), pulled
        towards the instances' previous positions by the alignment term. Appended to ``embedding_``.
        """
        self._check_fitted()
        feats, ids, _ = self._check_snapshots([new_snapshot], [instance_ids])
        x, new_ids = feats[0], ids[0]
        if x.shape[1] != self._features[0].shape[1]:
            raise InputError(f"new_snapshot: expected {self._features[0].shape[1]} feature dimensions, received shape={x.shape}")
        reduced = self._pca.transform(x).astype(np.float32) if self._pca is not None else x
        a, b = matched_indices(self.instance_ids_[-1], new_ids)
        group = np.full(x.shape[0], float(self._n_groups), dtype=np.float64)
        fixed = (b, self.embedding_[-1][a]) if a.size else None
        if self._blocks is not None:
            partial = self._extend_block(reduced, group, fixed, a, b, n_iter)
        else:
            # Start at the median of each point's neighbours on the fixed map (where its features say it
            # belongs); instances seen in the last snapshot are then pulled towards their previous positions.
            partial = self._tsne.prepare_partial(reduced, initialization="median",
                                                 k=min(25, self._tsne.shape[0] - 1))
            # Partial affinities are normalised per new point, so the penalties use per-point scale (n_total=1).
            objective = self._objective(group, [], fixed_targets=fixed, n_total=1)
            if self._tsne.interp_coeffs is None:
                # openTSNE prepares the fixed map's interpolation grid only for its own FFT objective.
                self._tsne.prepare_interpolation_grid()
            partial = partial.optimize(n_iter=n_iter, negative_gradient_method=objective, learning_rate=0.1,
                                       momentum=0.8, max_grad_norm=0.25)
        self._n_groups += 1
        coords = np.asarray(partial).copy()
        self.embedding_.append(coords)
        self.instance_ids_.append(new_ids)
        self._features.append(x)
        return coords

    def _extend_block(self, reduced: np.ndarray, group: np.ndarray, fixed, a: np.ndarray, b: np.ndarray,
                      n_iter: int) -> Any:
        """Per-snapshot mode: optimise the new snapshot's own block (the fitted reference in it, fixed, when
        joined) with the band/ring and alignment terms; earlier points never move. Starts at the previous
        positions of its instances (others at their nearest previous neighbour's), moved to the new band."""
        import openTSNE
        import scipy.sparse as sp
        from openTSNE import affinity
        from sklearn.neighbors import NearestNeighbors

        n = reduced.shape[0]
        previous = self.embedding_[-1]
        last = self._features[-1]
        last = self._pca.transform(last).astype(np.float32) if self._pca is not None else last
        nearest = NearestNeighbors(n_neighbors=1).fit(last).kneighbors(reduced, return_distance=False)[:, 0]
        init = previous[nearest].astype(np.float64)
        init[b] = previous[a]
        targets = self._targets(group)
        if targets is not None and self.layout == "rectilinear":
            init[:, 0] = targets
        elif targets is not None:
            direction = init - self._centre
            direction /= np.linalg.norm(direction, axis=1, keepdims=True) + 1e-12
            init = self._centre + direction * targets[:, None]
        init += np.random.default_rng(self.random_state).normal(0, 1e-4 * self._band_scale, init.shape)
        ref = self._reference_reduced if self.reference_affinities == "joined" else None
        block_features = reduced if ref is None else np.concatenate([ref, reduced])
        m = 0 if ref is None else ref.shape[0]
        blocks = []
        if block_features.shape[0] >= 4:
            P = self._affinities(block_features).P
            blocks.append(_Block(np.arange(n), P, block_features.shape[0] / n,
                                 fixed=self.reference_embedding_ if m else None))
        # A partial embedding against the previous snapshot (fixed), because openTSNE re-centres a full
        # embedding at every step, which would drag the new band back to the middle of the map. Its P only
        # carries the exaggeration factor to the objective (sum 1); the blocks hold the real affinities.
        # openTSNE also confines new points to the box of the fixed embedding's interpolation grid: let that
        # box span the whole map and the new band (with room around it)
        span = np.concatenate([*self.embedding_, init] + ([self.reference_embedding_] if m else []))
        span = np.concatenate([span, span.mean(axis=0) + 1.5 * (span - span.mean(axis=0))])
        carrier = sp.csr_matrix((np.full(n, 1.0 / n), (np.arange(n), np.zeros(n, dtype=int))),
                                shape=(n, span.shape[0]))
        anchor = openTSNE.TSNEEmbedding(np.ascontiguousarray(span, dtype=np.float64),
                                        affinity.PrecomputedAffinities(sp.eye(span.shape[0], format="csr")))
        anchor.prepare_interpolation_grid()  # openTSNE's partial optimiser asks for it whatever the gradient
        embedding = openTSNE.PartialTSNEEmbedding(init, anchor, carrier,
                                                  negative_gradient_method=self._objective(group, [], fixed, n, blocks),
                                                  n_jobs=self.n_jobs)
        return embedding.optimize(n_iter=n_iter, exaggeration=1.0, momentum=0.8)

    # -- scores ---------------------------------------------------------------------------------------
    def scores(self, k: int = 10) -> dict[str, float]:
        """Neighbourhood preservation per snapshot (k-NN recall, trustworthiness; means over snapshots) and
        temporal stability (on the free coordinates: both for ``free``, y for ``rectilinear``, the angle
        times the mean radius for ``radial``), and for banded layouts ``band_conformity``."""
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
        if self._banded():  # no NaN in what runs store as JSON
            out["band_conformity"] = self.band_conformity()
        if len(self.embedding_) > 1:
            out["temporal_stability"] = temporal_stability(free, self.instance_ids_, scale=map_scale(free))
        return out

    def band_conformity(self) -> float:
        """Share of snapshot points inside their own band or ring: within half the gap between neighbouring
        targets of their own (x for ``rectilinear``, the radius for ``radial``). 1 means every snapshot is
        readable as a band; NaN for the ``free`` layout or a zero ``displacement_weight``."""
        self._check_fitted()
        if not self._banded():
            return float("nan")
        # snapshot t is group first + t: reference (or the empty centre of the rings) is group 0, except in a
        # rectilinear map without reference, whose first band is the first snapshot
        first = 0 if self.layout == "rectilinear" and self.reference_embedding_ is None else 1
        half = self.band_spacing * self._band_scale / (1.0 if self.layout == "rectilinear" else 2.0)
        inside = [np.abs(self._band_offset(coords, np.full(len(coords), float(first + t)))) < half
                  for t, coords in enumerate(self.embedding_)]
        return float(np.concatenate(inside).mean())

    def _band_offset(self, coords: np.ndarray, group: np.ndarray) -> np.ndarray | None:
        """(n,) signed distance of each point from its band (x) or ring (radius) target; None when unbanded."""
        targets = self._targets(group)
        if targets is None:
            return None
        if self.layout == "rectilinear":
            return coords[:, 0] - targets
        return np.linalg.norm(coords - self._centre, axis=1) - targets

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
