"""Ranking metrics (ROC AUC, average precision, curves) in exact and streaming modes."""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tunelens.metrics._classification import sklearn_positive
from tunelens.metrics._validation import (
    FORMAT_VERSION,
    FloatArray,
    UndefinedMetricWarning,
    as_float,
    binary_targets,
    check_header,
    check_labels,
    check_same_length,
    check_weights,
    class_indices,
    decode_array,
    encode_array,
    warn_undefined,
)

Mode = Literal["exact", "streaming"]
Scale = Literal["mixed", "logit", "linear"]
DEFAULT_BINS = 65536
DEFAULT_SCALE: Scale = "mixed"
# Half-width of the log-odds range binned by ``scale="logit"``: logit(1e-9) = -20.72,
# so only scores below about 1e-9 (or above 1 - 1e-9) share the end bins.
LOGIT_RANGE = 20.7
# Half-width of the log-odds part of ``scale="mixed"``: logit(1e-16) = -36.84, and
# ``1 - p`` cannot resolve scores closer to 1 than about 1.1e-16 anyway, so the
# log-odds half of the map stays informative for scores down to 1e-16.
MIXED_LOGIT_RANGE = 36.8
_EMPTY = np.zeros(0, dtype=np.float64)


def _check_mode(mode: str, n_bins: int, scale: str = DEFAULT_SCALE) -> None:
    if mode not in ("exact", "streaming"):
        raise ValueError(f"`mode` must be 'exact' or 'streaming', got {mode!r}")
    if int(n_bins) < 1:
        raise ValueError(f"`n_bins` must be a positive integer, got {n_bins!r}")
    if scale not in ("mixed", "logit", "linear"):
        raise ValueError(f"`scale` must be 'mixed', 'logit' or 'linear', got {scale!r}")


def _logit_bins(
    s: FloatArray, y: NDArray[np.bool_], nb: int, *, mixed: bool = False
) -> NDArray[np.intp]:
    """``bin + n_bins * label`` with bins equal in log-odds (or the mixed scale).

    ``t = log(p / (1 - p))`` (one division and one log, in a single scratch array),
    ``bin = floor((t + L) / (2L) * n_bins)`` clipped to ``[0, n_bins - 1]``
    (``L = LOGIT_RANGE``). With ``mixed=True`` the map is
    ``T(p) = p / 2 + (clip(t, -M, M) + M) / (4M)`` (``M = MIXED_LOGIT_RANGE``) and
    ``bin = floor(T * n_bins)``: half linear, half log-odds, so a bin is at most twice
    as wide as the narrower of the linear and the logit bins at any score. Both maps
    are monotone in ``p`` (0 and 1 land in the end bins), so ranks, the half credit
    within a bin and :meth:`BinaryRankingState.auc_error_bound` stay valid.
    """
    q = 1.0 - s
    with np.errstate(divide="ignore"):
        np.divide(s, q, out=q)  # odds; p = 1 gives inf
        np.log(q, out=q)  # p = 0 gives -inf
    if mixed:  # (clip(t) + L) / (2L) + p, times n_bins / 2, all in the one scratch array
        np.clip(q, -MIXED_LOGIT_RANGE, MIXED_LOGIT_RANGE, out=q)
        q *= 1.0 / (2.0 * MIXED_LOGIT_RANGE)
        q += 0.5
        q += s
        q *= nb / 2.0
    else:
        q *= nb / (2.0 * LOGIT_RANGE)
        q += nb / 2.0
    np.clip(q, 0.0, nb - 0.5, out=q)
    key = q.astype(np.intp)
    key += y * nb
    return key


def _mixed_map(p: FloatArray) -> FloatArray:
    """``T(p)`` of ``scale="mixed"`` (see :func:`_logit_bins`), in ``[0, 1]``."""
    with np.errstate(divide="ignore"):
        t = np.log(p / (1.0 - p))
    t = np.clip(t, -MIXED_LOGIT_RANGE, MIXED_LOGIT_RANGE)
    out: FloatArray = 0.5 * p + (t + MIXED_LOGIT_RANGE) / (4.0 * MIXED_LOGIT_RANGE)
    return out


_MIXED_EDGES: dict[int, FloatArray] = {}


def _mixed_edges(nb: int) -> FloatArray:
    """Lower edges of the ``scale="mixed"`` bins ``0..n_bins - 1`` as scores (cached).

    ``T`` has no closed-form inverse: a vectorised bisection over all edges at once on
    the bit patterns of the non-negative doubles (ordered as the doubles), so each edge
    is exactly the smallest double that :func:`_logit_bins` puts in its bin (about 62
    halvings); an empty bin (possible with few bins) shares the next bin's edge.
    """
    edges = _MIXED_EDGES.get(nb)
    if edges is None:
        target = np.arange(nb, dtype=np.intp)
        lo = np.zeros(nb, dtype=np.int64)  # 0.0: bin 0, below every target but the first
        hi = np.full(nb, np.float64(1.0).view(np.int64), dtype=np.int64)  # 1.0: top bin
        no_label = np.zeros(nb, dtype=np.bool_)
        while bool(np.any(hi - lo > 1)):
            mid = lo + (hi - lo) // 2
            up = _logit_bins(mid.view(np.float64), no_label, nb, mixed=True) >= target
            hi = np.where(up, mid, hi)
            lo = np.where(up, lo, mid)
        edges = hi.view(np.float64).copy()
        edges[0] = 0.0
        edges.flags.writeable = False
        if len(_MIXED_EDGES) >= 8:
            _MIXED_EDGES.clear()
        _MIXED_EDGES[nb] = edges
    return edges


def _bin_edges(nz: NDArray[np.intp], nb: int, scale: str) -> FloatArray:
    """Lower edges (as scores) of the bins ``nz``; the first bin starts at 0."""
    if scale == "linear":
        return nz / float(nb)
    if scale == "mixed":
        return _mixed_edges(nb)[nz]
    t = nz * (2.0 * LOGIT_RANGE / nb) - LOGIT_RANGE
    edges: FloatArray = 1.0 / (1.0 + np.exp(-t))
    edges[nz == 0] = 0.0
    return edges


def _unique_sorted(sv: FloatArray, sw: FloatArray | None) -> tuple[FloatArray, FloatArray]:
    """Unique values of an ascending array with the (weighted) count of each."""
    n = sv.shape[0]
    if n == 0:
        return _EMPTY, _EMPTY
    flag = np.empty(n, dtype=np.bool_)
    flag[0] = True
    np.not_equal(sv[1:], sv[:-1], out=flag[1:])
    if sw is None and bool(flag.all()):  # all distinct (continuous scores): skip the gather
        return sv, np.ones(n, dtype=np.float64)
    idx = np.flatnonzero(flag)
    if sw is None:
        counts = np.diff(np.append(idx, n)).astype(np.float64)
    else:
        counts = np.add.reduceat(sw, idx)
    return sv[idx], counts


def _summarise(v: FloatArray, w: FloatArray | None) -> tuple[FloatArray, FloatArray]:
    if w is None:
        return _unique_sorted(np.sort(v), None)
    order = np.argsort(v)  # ties are summed, so stability is not needed (and 4x slower)
    return _unique_sorted(v[order], w[order])


def _combine(parts: list[tuple[FloatArray, FloatArray]]) -> tuple[FloatArray, FloatArray]:
    parts = [p for p in parts if p[0].shape[0]]
    if not parts:
        return _EMPTY, _EMPTY
    if len(parts) == 1:
        return parts[0]
    v = np.concatenate([p[0] for p in parts])
    w = np.concatenate([p[1] for p in parts])
    order = np.argsort(v, kind="stable")  # runs are sorted: the merge is cheap
    return _unique_sorted(v[order], w[order])


def _auc_aligned(pw: FloatArray, nw: FloatArray) -> float:
    """AUC from per-value positive/negative weights in ascending score order."""
    p, n = float(pw.sum()), float(nw.sum())
    below = np.cumsum(nw) - nw
    return float((pw * (below + 0.5 * nw)).sum() / (p * n))


def _ap_aligned(pw: FloatArray, nw: FloatArray) -> float:
    """Average precision (step integral, as scikit-learn) in ascending score order."""
    p, n = float(pw.sum()), float(nw.sum())
    tps = p - (np.cumsum(pw) - pw)
    fps = n - (np.cumsum(nw) - nw)
    m = pw > 0
    return float(max(0.0, (pw[m] * (tps[m] / (tps[m] + fps[m]))).sum() / p))


def _drop_collinear(fps: FloatArray, tps: FloatArray) -> NDArray[np.intp]:
    keep = np.concatenate([[True], np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), [True]])
    return np.flatnonzero(keep)


class BinaryRankingState:
    """ROC AUC, average precision and their curves for a binary target.

    Two modes:

    * ``"exact"``: the sufficient statistic is, for each class, the sorted unique
      scores with the (weighted) count at each; merging is their union. Results
      equal scikit-learn's, ties included. Memory grows with the number of
      distinct scores.
    * ``"streaming"``: a fixed histogram of ``n_bins`` bins per class (memory
      independent of the row count; scores must lie in ``[0, 1]``). With
      ``scale="mixed"`` (default) a score's bin is ``floor(T(p) * n_bins)`` with
      ``T(p) = p / 2 + (clip(logit(p), -36.8, 36.8) + 36.8) / 73.6``: half equal-width,
      half equal in log-odds, so a bin is at most twice as wide as the narrower of
      the two at any score, and both scores crowding near 0 or 1 (rare events, down
      to about 1e-16) and scores clustered tightly around one value keep their
      resolution. ``scale="logit"`` bins log-odds alone over ``[-20.7, 20.7]``
      (coarse near 0.5: about ten times wider than equal-width bins there);
      ``scale="linear"`` uses equal bins over ``[0, 1]`` (the format before the
      option existed; coarse near 0 and 1). Pairs in the same
      bin get half credit, so the AUC error is at most :meth:`auc_error_bound`
      ``= 0.5 * sum_b pos_b * neg_b / (P * N)``; on a million rows with the default
      65536 mixed bins it measured below 1e-3 for uniform scores, scores near 1,
      well-separated models, 0.2% positives with scores around 1e-5, log-uniform
      scores over 1e-12..0.1 and scores clustered around 0.5 with a spread of 0.01
      down to 0.001 (the last needs many bins: about 2e-3 at 4096). Average
      precision and the curves use the bin lower edges (as scores) as thresholds.

    Example:
        >>> s = BinaryRankingState()
        >>> s.update([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        >>> s.roc_auc()
        0.75
    """

    def __init__(
        self, *, mode: Mode = "exact", n_bins: int = DEFAULT_BINS, scale: Scale = DEFAULT_SCALE
    ) -> None:
        _check_mode(mode, n_bins, scale)
        self.mode: Mode = mode
        self.n_bins = int(n_bins)
        self.scale: Scale = scale
        self._pos: tuple[FloatArray, FloatArray] = (_EMPTY, _EMPTY)
        self._neg: tuple[FloatArray, FloatArray] = (_EMPTY, _EMPTY)
        self._pending_pos: list[tuple[FloatArray, FloatArray]] = []
        self._pending_neg: list[tuple[FloatArray, FloatArray]] = []
        self._pending_size = 0
        self._hist: FloatArray = (
            np.zeros((2, self.n_bins), dtype=np.float64) if mode == "streaming" else _EMPTY
        )

    # -- update ---------------------------------------------------------------------------
    def update(
        self,
        y_true: ArrayLike,
        y_score: ArrayLike,
        sample_weight: ArrayLike | None = None,
        *,
        validate: bool = True,
    ) -> None:
        """Add a batch: ``y_true`` bool or 0/1, ``y_score`` real scores.

        ``validate=False`` skips the boundary checks (lengths, finiteness, ``[0, 1]`` in
        streaming mode, weights), for callers that validated the data already (the
        monitor validates at log time); on valid data the result is the same.
        """
        y = binary_targets(y_true, "y_true", validate=validate)
        s = as_float(y_score, "y_score", validate=validate)
        n = check_same_length(y_true=y, y_score=s) if validate else int(y.shape[0])
        w = check_weights(sample_weight, n, validate=validate)
        self._update_checked(y, s, w, validate=validate)

    def _update_checked(
        self,
        y: NDArray[np.bool_],
        s: FloatArray,
        w: FloatArray | None,
        *,
        validate: bool = True,
    ) -> None:
        if s.shape[0] == 0:
            return
        if self.mode == "streaming":
            self._update_hist(y, s, w, validate=validate)
            return
        if w is not None and not bool(w.all()):
            keep = w != 0
            y, s, w = y[keep], s[keep], w[keep]
        pos = _summarise(s[y], None if w is None else w[y])
        neg = _summarise(s[~y], None if w is None else w[~y])
        self._add_summaries(pos, neg)

    def _add_summaries(
        self, pos: tuple[FloatArray, FloatArray], neg: tuple[FloatArray, FloatArray]
    ) -> None:
        if self._pos[0].shape[0] + self._neg[0].shape[0] == 0 and not self._pending_size:
            self._pos, self._neg = pos, neg
            return
        self._pending_pos.append(pos)
        self._pending_neg.append(neg)
        self._pending_size += pos[0].shape[0] + neg[0].shape[0]
        if self._pending_size > self._pos[0].shape[0] + self._neg[0].shape[0] + 65536:
            self._consolidate()

    def _update_hist(
        self, y: NDArray[np.bool_], s: FloatArray, w: FloatArray | None, *, validate: bool = True
    ) -> None:
        if validate:
            lo, hi = float(s.min()), float(s.max())
            if not (lo >= 0.0 and hi <= 1.0):
                raise ValueError(
                    f"`y_score` must lie in [0, 1] in streaming mode, got values in [{lo}, {hi}]"
                )
        nb = self.n_bins
        if self.scale != "linear":
            key = _logit_bins(s, y, nb, mixed=self.scale == "mixed")
            self._hist += np.bincount(key, weights=w, minlength=2 * nb).reshape(2, nb)
            return
        # one multiply, one cast, one bincount of (bin + (n_bins + 1) * label); a score
        # of exactly 1.0 lands in the spare bin n_bins, folded into the top bin below.
        f = s * float(nb)
        f += y * float(nb + 1)
        key = f.astype(np.intp)
        h = np.bincount(key, weights=w, minlength=2 * (nb + 1)).reshape(2, nb + 1)
        h[:, nb - 1] += h[:, nb]
        self._hist += h[:, :nb]

    def _consolidate(self) -> None:
        if self._pending_size or self._pending_pos:
            self._pos = _combine([self._pos, *self._pending_pos])
            self._neg = _combine([self._neg, *self._pending_neg])
            self._pending_pos, self._pending_neg, self._pending_size = [], [], 0

    def merge(self, other: BinaryRankingState) -> None:
        """Add another state's statistics; mode, bins and (streaming) scale must match."""
        if not isinstance(other, BinaryRankingState):
            raise ValueError(f"cannot merge BinaryRankingState with {type(other).__name__}")
        if self._config() != other._config():
            raise ValueError(
                f"cannot merge BinaryRankingState(mode={other.mode!r}, n_bins={other.n_bins}, "
                f"scale={other.scale!r}) into mode={self.mode!r}, n_bins={self.n_bins}, "
                f"scale={self.scale!r}"
            )
        if self.mode == "streaming":
            self._hist += other._hist
            return
        other._consolidate()
        self._add_summaries(other._pos, other._neg)

    def _config(self) -> tuple[str, int, str]:
        # the scale only matters for the histogram: exact states merge whatever it says
        return (self.mode, self.n_bins, self.scale if self.mode == "streaming" else "")

    def _add_negatives_at_zero(self, weight: float) -> None:
        """Add ``weight`` negatives with score 0 (a class column padded with zeros)."""
        if weight <= 0:
            return
        if self.mode == "streaming":
            self._hist[0, 0] += weight
            return
        self._add_summaries((_EMPTY, _EMPTY), (np.zeros(1), np.array([float(weight)])))

    # -- statistics -----------------------------------------------------------------------
    def _table(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Ascending unique thresholds with positive and negative weights at each."""
        if self.mode == "streaming":
            nz = np.flatnonzero(self._hist.sum(axis=0))
            edges = _bin_edges(nz, self.n_bins, self.scale)
            return edges, self._hist[1, nz].copy(), self._hist[0, nz].copy()
        self._consolidate()
        pv, pw = self._pos
        nv, nw = self._neg
        u, inv = np.unique(np.concatenate([pv, nv]), return_inverse=True)
        k = u.shape[0]
        m = pv.shape[0]
        pos = np.bincount(inv[:m], weights=pw, minlength=k).astype(np.float64)
        neg = np.bincount(inv[m:], weights=nw, minlength=k).astype(np.float64)
        return u.astype(np.float64), pos, neg

    def totals(self) -> tuple[float, float]:
        """Total (weighted) positives and negatives."""
        if self.mode == "streaming":
            return float(self._hist[1].sum()), float(self._hist[0].sum())
        self._consolidate()
        return float(self._pos[1].sum()), float(self._neg[1].sum())

    def roc_auc(self) -> float:
        """Area under the ROC curve; NaN with a warning if a class is missing."""
        p, n = self.totals()
        if p == 0 or n == 0:
            warn_undefined("Only one class is present: ROC AUC is undefined; returning NaN")
            return float("nan")
        if self.mode == "streaming":
            return _auc_aligned(self._hist[1], self._hist[0])
        return self._exact(with_auc=True)[0]

    def _exact(self, *, with_auc: bool = False, with_ap: bool = False) -> tuple[float, float]:
        """Exact AUC and/or AP from the per-class unique scores (one shared search)."""
        p, n = self.totals()
        pv, pw = self._pos
        nv, nw = self._neg
        cum = np.concatenate([[0.0], np.cumsum(nw)])
        below = cum[np.searchsorted(nv, pv, "left")]  # negative weight with score < v
        auc = ap = float("nan")
        if with_auc:
            upto = cum[np.searchsorted(nv, pv, "right")]
            auc = float((pw * (below + 0.5 * (upto - below))).sum() / (p * n))
        if with_ap:
            fps = n - below
            tps = p - (np.cumsum(pw) - pw)
            ap = float(max(0.0, (pw * (tps / (tps + fps))).sum() / p))
        return auc, ap

    def auc_error_bound(self) -> float:
        """Worst-case absolute AUC error of streaming mode (0 in exact mode)."""
        if self.mode == "exact":
            return 0.0
        p, n = self.totals()
        if p == 0 or n == 0:
            return float("nan")
        return float(0.5 * (self._hist[1] * self._hist[0]).sum() / (p * n))

    def average_precision(self) -> float:
        """Average precision (scikit-learn's step integral); NaN without positives."""
        p, _ = self.totals()
        if p == 0:
            warn_undefined("No positive samples: average precision is undefined; returning NaN")
            return float("nan")
        if self.mode == "streaming":
            return _ap_aligned(self._hist[1], self._hist[0])
        return self._exact(with_ap=True)[1]

    def _cumulative(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        u, pw, nw = self._table()
        return np.cumsum(nw[::-1]), np.cumsum(pw[::-1]), u[::-1].copy()

    def roc_curve(
        self, *, drop_intermediate: bool = False
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``(fpr, tpr, thresholds)`` as scikit-learn's ``roc_curve``.

        The default keeps every threshold (scikit-learn's ``drop_intermediate=False``).
        """
        fps, tps, thr = self._cumulative()
        if drop_intermediate and fps.shape[0] > 2:
            keep = _drop_collinear(fps, tps)
            fps, tps, thr = fps[keep], tps[keep], thr[keep]
        fps = np.concatenate([[0.0], fps])
        tps = np.concatenate([[0.0], tps])
        thr = np.concatenate([[np.inf], thr])
        if fps[-1] <= 0:
            warn_undefined("No negative samples: false positive rate is undefined (NaN)")
            fpr = np.full(fps.shape, np.nan)
        else:
            fpr = fps / fps[-1]
        if tps[-1] <= 0:
            warn_undefined("No positive samples: true positive rate is undefined (NaN)")
            tpr = np.full(tps.shape, np.nan)
        else:
            tpr = tps / tps[-1]
        return fpr, tpr, thr

    def precision_recall_curve(
        self, *, drop_intermediate: bool = False
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``(precision, recall, thresholds)`` as scikit-learn's ``precision_recall_curve``."""
        fps, tps, thr = self._cumulative()
        if drop_intermediate and fps.shape[0] > 2:
            keep = np.flatnonzero(
                np.concatenate([[True], np.logical_or(np.diff(tps[:-1]), np.diff(tps[1:])), [True]])
            )
            fps, tps, thr = fps[keep], tps[keep], thr[keep]
        ps = tps + fps
        precision = np.divide(tps, ps, out=np.zeros_like(tps), where=ps != 0)
        if tps.shape[0] == 0 or tps[-1] == 0:
            warn_undefined("No positive samples: recall is set to one for all thresholds")
            recall = np.ones_like(tps)
        else:
            recall = tps / tps[-1]
        return (
            np.concatenate([precision[::-1], [1.0]]),
            np.concatenate([recall[::-1], [0.0]]),
            thr[::-1].copy(),
        )

    def compute(self) -> dict[str, float]:
        """``{"roc_auc", "pr_auc"}`` (pr_auc is average precision)."""
        p, n = self.totals()
        if self.mode == "exact" and p > 0 and n > 0:
            auc, ap = self._exact(with_auc=True, with_ap=True)
            return {"roc_auc": auc, "pr_auc": ap}
        return {"roc_auc": self.roc_auc(), "pr_auc": self.average_precision()}

    # -- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; restore with :meth:`from_dict`."""
        d: dict[str, Any] = {
            "type": "BinaryRankingState",
            "version": FORMAT_VERSION,
            "mode": self.mode,
            "n_bins": self.n_bins,
            "scale": self.scale,
        }
        if self.mode == "streaming":
            d["hist"] = encode_array(self._hist)
        else:
            self._consolidate()
            d["pos_values"], d["pos_weights"] = map(encode_array, self._pos)
            d["neg_values"], d["neg_weights"] = map(encode_array, self._neg)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BinaryRankingState:
        """Rebuild a state from :meth:`to_dict` output."""
        check_header(d, "BinaryRankingState")
        # states written before the option existed used linear bins
        s = cls(mode=d["mode"], n_bins=int(d["n_bins"]), scale=d.get("scale", "linear"))
        if s.mode == "streaming":
            s._hist = decode_array(d["hist"]).astype(np.float64)
        else:
            s._pos = (decode_array(d["pos_values"]), decode_array(d["pos_weights"]))
            s._neg = (decode_array(d["neg_values"]), decode_array(d["neg_weights"]))
        return s

    def copy(self) -> BinaryRankingState:
        """An independent copy."""
        self._consolidate()
        s = BinaryRankingState(mode=self.mode, n_bins=self.n_bins, scale=self.scale)
        s._pos = (self._pos[0].copy(), self._pos[1].copy())
        s._neg = (self._neg[0].copy(), self._neg[1].copy())
        s._hist = self._hist.copy()
        return s


def check_proba_rows(scores: FloatArray, name: str) -> None:
    """Rows must sum to one, as scikit-learn requires for multiclass ROC AUC."""
    if scores.shape[0] and not np.allclose(1.0, scores.sum(axis=1)):
        raise ValueError(
            f"`{name}` rows must be probabilities that sum to 1 over classes "
            "(as scikit-learn requires for multiclass ROC AUC)"
        )


def _nan_classes(vals: FloatArray) -> list[int]:
    """Indices of the classes whose per-class value is undefined (NaN)."""
    bad: list[int] = np.flatnonzero(np.isnan(vals)).tolist()
    return bad


def _nanmean(values: FloatArray, weights: FloatArray | None = None) -> float:
    m = ~np.isnan(values)
    if not m.any():
        return float("nan")
    if weights is None:
        return float(values[m].mean())
    w = weights[m]
    return float((values[m] * w).sum() / w.sum()) if w.sum() > 0 else float("nan")


class MulticlassRankingState:
    """One-vs-rest ROC AUC and average precision over ``n_classes`` score columns.

    Each class keeps a :class:`BinaryRankingState` (class ``k`` against the rest).
    ``roc_auc`` is the macro mean over classes, ``roc_auc_weighted`` weights by class
    prevalence (both equal scikit-learn's ``multi_class="ovr"``), ``pr_auc`` is the
    macro mean of average precision. Classes whose value is undefined (absent, or
    every sample) are skipped with an :class:`UndefinedMetricWarning`.

    The class count may grow (new classes appended at the end): :meth:`merge`
    accepts a state with another ``n_classes`` and the result has the larger
    count, as if the smaller state's score matrix had been padded with zero
    columns (its rows become negatives with score 0 for the new classes), so the
    merge equals one pass over the zero-padded data. :meth:`grow` does the same
    in place.

    Example:
        >>> s = MulticlassRankingState(3)
        >>> s.update([0, 1, 2], [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
        >>> s.compute()["roc_auc"]
        1.0
    """

    def __init__(
        self,
        n_classes: int,
        *,
        mode: Mode = "exact",
        n_bins: int = DEFAULT_BINS,
        scale: Scale = DEFAULT_SCALE,
    ):
        if int(n_classes) < 2:
            raise ValueError(f"`n_classes` must be at least 2, got {n_classes!r}")
        _check_mode(mode, n_bins, scale)
        self.n_classes = int(n_classes)
        self.mode: Mode = mode
        self.n_bins = int(n_bins)
        self.scale: Scale = scale
        self._states = [self._new_binary() for _ in range(self.n_classes)]

    def _new_binary(self) -> BinaryRankingState:
        return BinaryRankingState(mode=self.mode, n_bins=self.n_bins, scale=self.scale)

    def grow(self, n_classes: int) -> None:
        """Widen to ``n_classes`` (new classes at the end; past rows score 0 on them)."""
        n_classes = int(n_classes)
        if n_classes < self.n_classes:
            raise ValueError(
                f"cannot shrink MulticlassRankingState from n_classes={self.n_classes} "
                f"to {n_classes}"
            )
        if n_classes == self.n_classes:
            return
        p, n = self._states[0].totals()
        for _ in range(n_classes - self.n_classes):
            st = self._new_binary()
            st._add_negatives_at_zero(p + n)
            self._states.append(st)
        self.n_classes = n_classes

    @property
    def per_class_states(self) -> list[BinaryRankingState]:
        """The one-vs-rest binary states, class ``k`` at index ``k``."""
        return self._states

    def update(
        self,
        true_idx: ArrayLike,
        scores: ArrayLike,
        sample_weight: ArrayLike | None = None,
        *,
        validate: bool = True,
    ) -> None:
        """Add a batch: class indices ``0..n_classes-1`` and an ``(n, n_classes)`` score matrix.

        ``validate=False`` skips the boundary checks (lengths, finiteness, indices,
        ``[0, 1]`` in streaming mode, row sums, weights), for callers that validated the
        data already (the monitor validates at log time); on valid data the result is
        the same.
        """
        t = class_indices(true_idx, self.n_classes, "true_idx", validate=validate)
        s = as_float(scores, "scores", ndim=2, validate=validate)
        if s.shape[1] != self.n_classes:
            raise ValueError(
                f"`scores` must have {self.n_classes} columns (one per class), got {s.shape[1]}"
            )
        n = check_same_length(true_idx=t, scores=s) if validate else int(t.shape[0])
        w = check_weights(sample_weight, n, validate=validate)
        if validate:
            check_proba_rows(s, "scores")
        for k, st in enumerate(self._states):
            st._update_checked(t == k, np.ascontiguousarray(s[:, k]), w, validate=validate)

    def merge(self, other: MulticlassRankingState) -> None:
        """Add another state's statistics.

        Mode, bins and scale must match; a different ``n_classes`` is padded (see the
        class docstring) and the result has the larger count.
        """
        if not isinstance(other, MulticlassRankingState):
            raise ValueError(f"cannot merge MulticlassRankingState with {type(other).__name__}")
        if self._states[0]._config() != other._states[0]._config():
            raise ValueError(
                "cannot merge MulticlassRankingState with a different mode, n_bins or scale: "
                f"got mode={other.mode!r}, n_bins={other.n_bins}, scale={other.scale!r}, "
                f"expected mode={self.mode!r}, n_bins={self.n_bins}, scale={self.scale!r}"
            )
        if other.n_classes > self.n_classes:
            self.grow(other.n_classes)
        elif other.n_classes < self.n_classes:
            other = other.copy()
            other.grow(self.n_classes)
        for a, b in zip(self._states, other._states, strict=True):
            a.merge(b)

    def _per_class(self, which: str) -> tuple[FloatArray, FloatArray]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            vals = np.array(
                [st.roc_auc() if which == "auc" else st.average_precision() for st in self._states]
            )
        prevalence = np.array([st.totals()[0] for st in self._states])
        return vals, prevalence

    def roc_auc(self, average: Literal["macro", "weighted"] | None = "macro") -> Any:
        """One-vs-rest ROC AUC: ``"macro"``, ``"weighted"`` or ``None`` (per class)."""
        vals, prev = self._per_class("auc")
        return self._average(vals, prev, average, "ROC AUC")

    def average_precision(self, average: Literal["macro", "weighted"] | None = "macro") -> Any:
        """One-vs-rest average precision: ``"macro"``, ``"weighted"`` or ``None``."""
        vals, prev = self._per_class("ap")
        return self._average(vals, prev, average, "average precision")

    @staticmethod
    def _average(vals: FloatArray, prev: FloatArray, average: str | None, name: str) -> Any:
        bad = _nan_classes(vals)
        if bad:
            warn_undefined(f"{name} undefined for classes {bad} (absent or every sample)")
        if average is None:
            return vals
        if average == "macro":
            return _nanmean(vals)
        if average == "weighted":
            return _nanmean(vals, prev)
        raise ValueError(f"`average` must be 'macro', 'weighted' or None, got {average!r}")

    def compute(self) -> dict[str, float]:
        """``{"roc_auc", "roc_auc_weighted", "pr_auc"}``."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UndefinedMetricWarning)
            auc, prev = self._per_class("auc")  # once for both averages
            out = {
                "roc_auc": float(self._average(auc, prev, "macro", "ROC AUC")),
                "roc_auc_weighted": float(self._average(auc, prev, "weighted", "ROC AUC")),
                "pr_auc": float(self.average_precision("macro")),
            }
        if caught:
            warn_undefined(str(caught[0].message))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; restore with :meth:`from_dict`."""
        return {
            "type": "MulticlassRankingState",
            "version": FORMAT_VERSION,
            "n_classes": self.n_classes,
            "mode": self.mode,
            "n_bins": self.n_bins,
            "scale": self.scale,
            "classes": [st.to_dict() for st in self._states],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MulticlassRankingState:
        """Rebuild a state from :meth:`to_dict` output."""
        check_header(d, "MulticlassRankingState")
        s = cls(
            int(d["n_classes"]),
            mode=d["mode"],
            n_bins=int(d["n_bins"]),
            scale=d.get("scale", "linear"),
        )
        s._states = [BinaryRankingState.from_dict(x) for x in d["classes"]]
        return s

    def copy(self) -> MulticlassRankingState:
        """An independent copy."""
        s = MulticlassRankingState(
            self.n_classes, mode=self.mode, n_bins=self.n_bins, scale=self.scale
        )
        s._states = [st.copy() for st in self._states]
        return s


# -- label handling for the functional API ----------------------------------------------------
def binary_from_labels(
    y_true: ArrayLike, pos_label: Any = None, name: str = "y_true"
) -> NDArray[np.bool_]:
    """Map binary labels to bool: ``pos_label``, else 1 for 0/1 labels, else the larger."""
    y = check_labels(y_true, name)
    if pos_label is not None:
        return np.asarray(y == pos_label, dtype=np.bool_)
    if y.dtype == np.bool_:
        return y
    if y.dtype.kind in "iu" and y.size:
        lo, hi = y.min(), y.max()
        if hi <= 1 and lo >= 0:
            return y.astype(np.bool_)
        hit: NDArray[np.bool_] = np.asarray(y == hi, dtype=np.bool_)
        if lo == hi or bool(np.all(hit | (y == lo))):
            return hit
    classes = np.unique(y)
    if classes.shape[0] > 2:
        raise ValueError(
            f"`{name}` must be binary for 1-D scores, got {classes.shape[0]} classes; "
            "pass an (n, n_classes) score matrix for multiclass"
        )
    if classes.shape[0] == 0:
        return np.zeros(0, dtype=np.bool_)
    if classes.shape[0] == 1 and set(classes.tolist()) <= {0, 1}:
        return np.asarray(y == 1, dtype=np.bool_)
    return np.asarray(y == classes[-1], dtype=np.bool_)


def multiclass_indices(
    y_true: ArrayLike, n_columns: int, labels: ArrayLike | None, name: str = "y_true"
) -> tuple[NDArray[np.intp], NDArray[Any]]:
    """Map labels to column indices (sorted ``labels``, else the sorted labels of y_true)."""
    y = check_labels(y_true, name)
    if y.size == 0 and labels is None:
        return np.zeros(0, dtype=np.intp), np.arange(n_columns)
    classes = np.unique(y) if labels is None else np.asarray(labels)
    if labels is not None and not np.array_equal(np.unique(classes), classes):
        raise ValueError("`labels` must be sorted and unique")
    if classes.shape[0] != n_columns:
        raise ValueError(
            f"`{name}` has {classes.shape[0]} classes but the scores have {n_columns} columns; "
            "pass `labels` to name the columns"
        )
    idx = np.searchsorted(classes, y)
    idx = np.minimum(idx, n_columns - 1)
    if y.size and not np.all(classes[idx] == y):
        raise ValueError(f"`{name}` contains labels that are not in `labels`")
    return idx.astype(np.intp), classes


def _ranking_input(
    y_true: ArrayLike,
    y_score: ArrayLike,
    sample_weight: ArrayLike | None,
    labels: ArrayLike | None,
    mode: Mode,
    n_bins: int,
    scale: Scale = DEFAULT_SCALE,
) -> BinaryRankingState | MulticlassRankingState:
    s = as_float(y_score, "y_score", ndim=None)
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim == 1:
        y = binary_from_labels(y_true)
        st = BinaryRankingState(mode=mode, n_bins=n_bins, scale=scale)
        n = check_same_length(y_true=y, y_score=s)
        st._update_checked(y, s, check_weights(sample_weight, n))
        return st
    if s.ndim != 2:
        raise ValueError(f"`y_score` must be 1-D or 2-D, got shape {s.shape}")
    if s.shape[1] == 2:
        idx, _ = multiclass_indices(y_true, 2, labels)
        st = BinaryRankingState(mode=mode, n_bins=n_bins, scale=scale)
        n = check_same_length(y_true=idx, y_score=s)
        st._update_checked(idx == 1, np.ascontiguousarray(s[:, 1]), check_weights(sample_weight, n))
        return st
    idx, _ = multiclass_indices(y_true, s.shape[1], labels)
    mst = MulticlassRankingState(s.shape[1], mode=mode, n_bins=n_bins, scale=scale)
    mst.update(idx, s, sample_weight)
    return mst


def roc_auc_score(
    y_true: ArrayLike,
    y_score: ArrayLike,
    *,
    average: Literal["macro", "weighted"] = "macro",
    sample_weight: ArrayLike | None = None,
    labels: ArrayLike | None = None,
    multi_class: Literal["ovr", "raise"] = "ovr",
    mode: Mode = "exact",
    n_bins: int = DEFAULT_BINS,
    scale: Scale = DEFAULT_SCALE,
) -> float:
    """Area under the ROC curve; binary (1-D scores) or one-vs-rest multiclass (2-D).

    Equals scikit-learn's ``roc_auc_score`` (``multi_class="ovr"`` for 2-D scores) in
    exact mode. NaN with :class:`UndefinedMetricWarning` when only one class is present.
    For multiclass input with a class absent from ``y_true`` (possible with
    ``labels``), the per-class AUC of that class is NaN, so the ``"macro"`` average
    is NaN and ``"weighted"`` leaves it out (weight 0), both with a warning, exactly
    as scikit-learn 1.9; :class:`MulticlassRankingState` instead skips undefined
    classes in both averages (what a monitor wants for a window missing a class).

    Args:
        y_true: True labels; for 1-D scores the positive class is the larger label.
        y_score: Scores ``(n,)`` or class probabilities ``(n, K)`` (columns in sorted
            label order, or the order of ``labels``).
        average: ``"macro"`` or ``"weighted"`` (by class prevalence), multiclass only.
        sample_weight: Non-negative weights, one per row.
        labels: The class labels of the score columns.
        multi_class: ``"ovr"``; ``"raise"`` refuses multiclass input, as scikit-learn.
        mode: ``"exact"`` or ``"streaming"`` (see :class:`BinaryRankingState`).
        n_bins: Histogram bins of streaming mode.
        scale: Bin scale of streaming mode, ``"mixed"``, ``"logit"`` or ``"linear"``.

    Returns:
        The area under the ROC curve, or NaN when undefined.

    Example:
        >>> roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75
    """
    if multi_class not in ("ovr", "raise"):
        raise ValueError(f"`multi_class` must be 'ovr' (one-vs-rest), got {multi_class!r}")
    st = _ranking_input(y_true, y_score, sample_weight, labels, mode, n_bins, scale)
    if isinstance(st, MulticlassRankingState):
        if multi_class == "raise":
            raise ValueError("multiclass `y_true` needs multi_class='ovr'")
        return _sklearn_ovr_average(st, average)
    return st.roc_auc()


def _sklearn_ovr_average(
    st: MulticlassRankingState,
    average: str,
    per_class: tuple[FloatArray, FloatArray] | None = None,
) -> float:
    """scikit-learn 1.9's one-vs-rest average, undefined (NaN) classes included.

    ``"macro"`` is the plain mean, so one undefined class makes it NaN;
    ``"weighted"`` weights by class prevalence and a class absent from ``y_true``
    has weight 0 (its NaN counts as 0), so it is left out; zero total weight gives
    0.0. Both warn, as scikit-learn, when a class is undefined.
    """
    if average not in ("macro", "weighted"):
        raise ValueError(f"`average` must be 'macro' or 'weighted', got {average!r}")
    vals, prev = st._per_class("auc") if per_class is None else per_class
    vals = vals.copy()
    bad = _nan_classes(vals)
    if bad:
        warn_undefined(
            f"Only one class is present in y_true for the one-vs-rest classes {bad}: "
            "ROC AUC is not defined for them (NaN)"
        )
    if average == "macro":
        return float(vals.mean())
    if np.isclose(prev.sum(), 0.0):
        return 0.0
    vals[prev == 0] = 0.0
    return float(np.average(vals, weights=prev))


def average_precision_score(
    y_true: ArrayLike,
    y_score: ArrayLike,
    *,
    average: Literal["macro", "weighted"] = "macro",
    sample_weight: ArrayLike | None = None,
    labels: ArrayLike | None = None,
    pos_label: Any = None,
    mode: Mode = "exact",
    n_bins: int = DEFAULT_BINS,
    scale: Scale = DEFAULT_SCALE,
) -> float:
    """Average precision (area under the step PR curve), binary or one-vs-rest.

    For binary targets ``pos_label=None`` means 1, as scikit-learn (or the larger
    label when there are two labels and neither is 1). As scikit-learn 1.9, a
    target without positives gives 0.0 with a ``UserWarning`` (recall is set to one
    for all thresholds), and so does each such one-vs-rest class (e.g. one whose
    samples all have weight 0) inside the ``"macro"`` and ``"weighted"`` averages;
    the states' ``average_precision()`` return NaN instead. Empty input is NaN.

    Example:
        >>> round(average_precision_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 4)
        0.8333
    """
    y = check_labels(y_true, "y_true")
    if np.ndim(y_score) == 1 and y.dtype != np.bool_:
        if pos_label is None:
            pos_label = sklearn_positive(np.unique(y).tolist())
        y = np.asarray(y == pos_label, dtype=np.bool_)
    st = _ranking_input(y, y_score, sample_weight, labels, mode, n_bins, scale)
    return _sklearn_average_precision(st, average)


_NO_POSITIVES = "No positive class found in y_true, recall is set to one for all thresholds."


def _sklearn_average_precision(
    st: BinaryRankingState | MulticlassRankingState, average: str = "macro"
) -> float:
    """scikit-learn 1.9's average precision from a state.

    A (one-vs-rest) class without positives but with some samples counts as 0.0
    with scikit-learn's ``UserWarning`` (its recall is set to one everywhere), in
    the binary case and in both averages; empty input stays NaN (scikit-learn
    raises).
    """
    if isinstance(st, BinaryRankingState):
        p, n = st.totals()
        if p == 0 and n > 0:
            warnings.warn(_NO_POSITIVES, UserWarning, stacklevel=3)
            return 0.0
        return st.average_precision()
    if average not in ("macro", "weighted"):
        raise ValueError(f"`average` must be 'macro' or 'weighted', got {average!r}")
    vals, prev = st._per_class("ap")
    totals = sum(st.per_class_states[0].totals())
    if totals == 0:
        warn_undefined("average precision is undefined for empty input; returning NaN")
        return float("nan")
    if bool(np.isnan(vals).any()):
        warnings.warn(_NO_POSITIVES, UserWarning, stacklevel=3)
        vals = np.where(np.isnan(vals), 0.0, vals)
    if average == "macro":
        return float(vals.mean())
    return float(np.average(vals, weights=prev))


def _exact_binary(
    y_true: ArrayLike, y_score: ArrayLike, pos_label: Any, sample_weight: ArrayLike | None
) -> BinaryRankingState:
    """An exact-mode state of binary labels (``pos_label`` as scikit-learn) and 1-D scores."""
    st = BinaryRankingState()
    st.update(binary_from_labels(y_true, pos_label), y_score, sample_weight)
    return st


def roc_curve(
    y_true: ArrayLike,
    y_score: ArrayLike,
    *,
    pos_label: Any = None,
    sample_weight: ArrayLike | None = None,
    drop_intermediate: bool = True,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(fpr, tpr, thresholds)`` exactly as scikit-learn's ``roc_curve``.

    Example:
        >>> fpr, tpr, thr = roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        >>> tpr.tolist()
        [0.0, 0.5, 0.5, 1.0, 1.0]
    """
    st = _exact_binary(y_true, y_score, pos_label, sample_weight)
    return st.roc_curve(drop_intermediate=drop_intermediate)


def precision_recall_curve(
    y_true: ArrayLike,
    y_score: ArrayLike,
    *,
    pos_label: Any = None,
    sample_weight: ArrayLike | None = None,
    drop_intermediate: bool = False,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(precision, recall, thresholds)`` exactly as scikit-learn's.

    Example:
        >>> p, r, t = precision_recall_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        >>> r.tolist()
        [1.0, 1.0, 0.5, 0.5, 0.0]
    """
    st = _exact_binary(y_true, y_score, pos_label, sample_weight)
    return st.precision_recall_curve(drop_intermediate=drop_intermediate)
