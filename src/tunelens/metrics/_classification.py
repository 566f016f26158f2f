"""Confusion-matrix metrics: accuracy, precision, recall, F1 and their averages."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tunelens.metrics._validation import (
    FORMAT_VERSION,
    FloatArray,
    as_1d,
    check_header,
    check_labels,
    check_same_length,
    check_weights,
    decode_array,
    encode_array,
    safe_div,
    warn_undefined,
)

Label = Any
Average = Literal["binary", "macro", "micro", "weighted"] | None

# Above this many distinct integer values the bincount fast path would waste memory.
_MAX_DENSE_RANGE = 1024


def _to_python_labels(values: NDArray[Any]) -> list[Label]:
    if values.dtype == np.bool_:
        values = values.astype(np.int64)
    return list(values.tolist())


def _sorted_union(a: list[Label], b: list[Label]) -> list[Label]:
    try:
        return sorted(set(a) | set(b))
    except TypeError as exc:
        raise ValueError(
            f"class labels must be all numbers or all strings, got a mix: {a[:3]!r} and {b[:3]!r}"
        ) from exc


def _encode_pair(
    y_true: NDArray[Any], y_pred: NDArray[Any], w: FloatArray | None
) -> tuple[list[Label], FloatArray]:
    """Return the labels present in either array and their local confusion matrix."""
    kinds = {y_true.dtype.kind, y_pred.dtype.kind}
    if kinds <= {"b", "i", "u"} and y_true.size:
        yt = y_true.view(np.uint8) if y_true.dtype == np.bool_ else y_true
        yp = y_pred.view(np.uint8) if y_pred.dtype == np.bool_ else y_pred
        lo = int(min(yt.min(), yp.min()))
        hi = int(max(yt.max(), yp.max()))
        r = hi - lo + 1
        if r <= _MAX_DENSE_RANGE:
            if lo == 0 and r <= 2 and yt.dtype.itemsize == 1:
                key = yt.astype(np.intp)
                key *= r
                key += yp
            else:
                key = yt.astype(np.intp) - lo
                key *= r
                key += yp
                key -= lo
            full = np.bincount(key, weights=w, minlength=r * r).astype(np.float64)
            full = full.reshape(r, r)
            if w is not None and bool((w == 0).any()):
                seen = np.bincount(key, minlength=r * r).reshape(r, r) > 0
            else:
                seen = full > 0
            present = seen.any(axis=0) | seen.any(axis=1)
            idx = np.flatnonzero(present)
            labels = (idx + lo).tolist()
            if y_true.dtype == np.bool_ and y_pred.dtype == np.bool_:
                labels = [int(v) for v in labels]
            return labels, full[np.ix_(idx, idx)]
    numeric = {"b", "i", "u", "f"}
    if (y_true.dtype.kind in numeric) != (y_pred.dtype.kind in numeric) and y_true.size:
        raise ValueError(
            "`y_true` and `y_pred` must both hold numbers or both hold strings, "
            f"got dtypes {y_true.dtype} and {y_pred.dtype}"
        )
    both = np.concatenate([y_true, y_pred])
    if both.dtype == np.bool_:
        both = both.astype(np.int64)
    try:
        uniq, inv = np.unique(both, return_inverse=True)
    except TypeError as exc:
        raise ValueError(
            "class labels must be all numbers or all strings, got a mix in `y_true`/`y_pred`"
        ) from exc
    k = uniq.shape[0]
    n = y_true.shape[0]
    key = inv[:n] * k + inv[n:]
    cm = np.bincount(key, weights=w, minlength=k * k).astype(np.float64).reshape(k, k)
    return _to_python_labels(uniq), cm


def _nanaverage(values: FloatArray, weights: FloatArray | None = None) -> float:
    """Mean ignoring NaN entries, like scikit-learn's ``_nanaverage``."""
    mask = np.isnan(values)
    if values.size == 0 or mask.all():
        return float("nan")
    v = values[~mask]
    if weights is None:
        return float(v.mean())
    ww = weights[~mask]
    total = ww.sum()
    if total == 0:
        return float(v.mean())
    return float((v * ww).sum() / total)


def _divide(num: FloatArray, den: FloatArray, zero_division: float = np.nan) -> FloatArray:
    out = np.full(num.shape, zero_division, dtype=np.float64)
    ok = den != 0
    out[ok] = num[ok] / den[ok]
    return out


def _per_class_prf(cm: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    tp = np.diag(cm).astype(np.float64)
    pred = cm.sum(axis=0)
    true = cm.sum(axis=1)
    return _divide(tp, pred), _divide(tp, true), _divide(2 * tp, true + pred), true


def _default_positive(labels: list[Label]) -> Label | None:
    """The positive class for binary summaries: 1 for 0/1 labels, else the larger label."""
    if len(labels) > 2 or not labels:
        return None
    if all(isinstance(v, (int, float)) and v in (0, 1) for v in labels):
        return 1
    return labels[-1]


def sklearn_positive(labels: list[Label]) -> Label:
    """scikit-learn's ``pos_label=1`` default, extended: with two labels and no 1, the larger."""
    if len(labels) == 2 and 1 not in labels:
        return labels[-1]
    return 1


class ClassificationState:
    """Mergeable confusion matrix over class labels.

    Labels may be ints or strings. With ``labels=None`` the label set grows on
    update and stays sorted, like scikit-learn; merging states with different
    label sets unions them. Weighted counts are kept as float64 sums.

    With ``labels=`` the set is fixed for :meth:`update` (other labels raise), but
    a model's classes may grow at the end: :meth:`merge` with a state whose labels
    extend these (so that these stay a prefix of the sorted union, e.g. ``0..K-1``
    and ``0..K``), and :meth:`update_codes` with a larger ``n_classes``, widen the
    matrix with zero rows and columns; the result has the larger label set.

    Example:
        >>> s = ClassificationState()
        >>> s.update([0, 1, 1, 0], [0, 1, 0, 0])
        >>> round(s.compute()["accuracy"], 2)
        0.75
    """

    def __init__(self, *, labels: ArrayLike | None = None) -> None:
        self._fixed = labels is not None
        self._labels: list[Label] = []
        self._weighted = False
        if labels is not None:
            lab = check_labels(labels, "labels")
            uniq = np.unique(lab)
            if uniq.shape[0] != lab.shape[0]:
                raise ValueError("`labels` must not contain duplicates")
            self._labels = _to_python_labels(uniq)
        k = len(self._labels)
        self._cm: FloatArray = np.zeros((k, k), dtype=np.float64)

    @property
    def labels(self) -> list[Label]:
        """Sorted class labels seen so far (or given)."""
        return list(self._labels)

    def _add(self, labels: list[Label], cm: FloatArray, *, may_grow: bool = False) -> None:
        if labels == self._labels:
            self._cm += cm
            return
        union = _sorted_union(self._labels, labels)
        if self._fixed and len(union) != len(self._labels):
            extra = sorted(set(union) - set(self._labels), key=str)
            if not may_grow:
                raise ValueError(f"`y_true`/`y_pred` contain labels {extra[:5]!r} not in `labels`")
            if union[: len(self._labels)] != self._labels:
                raise ValueError(
                    f"cannot grow the fixed labels {self._labels[:5]!r} by {extra[:5]!r}: "
                    "new classes must come after the existing ones (sort at the end)"
                )
        pos = {lab: i for i, lab in enumerate(union)}
        new = np.zeros((len(union), len(union)), dtype=np.float64)
        ia = [pos[v] for v in self._labels]
        ib = [pos[v] for v in labels]
        new[np.ix_(ia, ia)] += self._cm
        new[np.ix_(ib, ib)] += cm
        self._labels, self._cm = union, new

    def update(
        self,
        y_true: ArrayLike,
        y_pred: ArrayLike,
        sample_weight: ArrayLike | None = None,
        *,
        validate: bool = True,
    ) -> None:
        """Add a batch of true and predicted labels.

        ``validate=False`` skips the boundary checks (lengths, finiteness, labels,
        weights), for callers that validated the data already (the monitor validates at
        log time); on valid data the result is the same.
        """
        yt = check_labels(y_true, "y_true", validate=validate)
        yp = check_labels(y_pred, "y_pred", validate=validate)
        n = check_same_length(y_true=yt, y_pred=yp) if validate else int(yt.shape[0])
        w = check_weights(sample_weight, n, validate=validate)
        self._weighted |= w is not None
        if n == 0:
            return
        labels, cm = _encode_pair(yt, yp, w)
        self._add(labels, cm)

    def update_codes(
        self,
        true_idx: ArrayLike,
        pred_idx: ArrayLike,
        n_classes: int,
        sample_weight: ArrayLike | None = None,
        *,
        validate: bool = True,
    ) -> None:
        """Fast path: add class indices ``0..n_classes-1`` (labels are those indices).

        A state that holds fewer classes (``labels=range(K)`` with ``K < n_classes``)
        grows to ``n_classes``: new classes are appended with zero counts. An index
        outside ``0..n_classes-1`` raises ValueError.

        ``validate=False`` skips the boundary checks (lengths, finiteness, indices,
        weights), for callers that validated the data already (the monitor validates at
        log time); on valid data the result is the same.
        """
        n_classes = int(n_classes)
        t = as_1d(true_idx, "true_idx")
        p = as_1d(pred_idx, "pred_idx")
        n = check_same_length(true_idx=t, pred_idx=p) if validate else int(t.shape[0])
        w = check_weights(sample_weight, n, validate=validate)
        if validate:
            for name, arr in (("true_idx", t), ("pred_idx", p)):
                if arr.dtype.kind not in "iu":
                    raise ValueError(f"`{name}` must hold integer class indices, got {arr.dtype}")
                if n and (arr.min() < 0 or arr.max() >= n_classes):
                    raise ValueError(
                        f"`{name}` must hold class indices in 0..{n_classes - 1} "
                        f"(n_classes={n_classes}), got values in {arr.min()}..{arr.max()}"
                    )
        self._weighted |= w is not None
        key = t.astype(np.intp) * n_classes
        key += p
        cm = np.bincount(key, weights=w, minlength=n_classes * n_classes)
        self._add(
            list(range(n_classes)),
            cm.astype(np.float64).reshape(n_classes, n_classes),
            may_grow=True,
        )

    def grow(self, n_classes: int) -> None:
        """Widen a state of class indices to ``0..n_classes-1`` (zero counts for new ones)."""
        k = int(n_classes)
        self._add(list(range(k)), np.zeros((k, k)), may_grow=True)

    def merge(self, other: ClassificationState) -> None:
        """Add another state's counts into this one (label sets are unioned).

        A state with fixed ``labels`` grows only when its labels stay a prefix of
        the union (new classes at the end); otherwise ValueError.
        """
        if not isinstance(other, ClassificationState):
            raise ValueError(f"cannot merge ClassificationState with {type(other).__name__}")
        self._add(list(other._labels), other._cm, may_grow=True)
        self._weighted |= other._weighted

    def confusion_matrix(self) -> NDArray[Any]:
        """Rows are true labels, columns predicted, in :attr:`labels` order."""
        if not self._weighted and np.all(self._cm == np.round(self._cm)):
            return self._cm.astype(np.int64)
        return self._cm.copy()

    def per_class(self) -> dict[Label, dict[str, float]]:
        """Precision, recall, F1 and support of every class (NaN where undefined)."""
        p, r, f, s = _per_class_prf(self._cm)
        return {
            lab: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": float(s[i]),
            }
            for i, lab in enumerate(self._labels)
        }

    def _select(self, labels: ArrayLike | None) -> FloatArray:
        """The confusion statistics ``[tp, predicted, true]`` per label (3, L)."""
        cm = self._cm
        full = np.stack([np.diag(cm), cm.sum(axis=0), cm.sum(axis=1)]).astype(np.float64)
        if labels is None:
            return full
        pos = {lab: i for i, lab in enumerate(self._labels)}
        wanted = _to_python_labels(np.asarray(labels))
        out = np.zeros((3, len(wanted)))
        for j, lab in enumerate(wanted):
            if lab in pos:
                out[:, j] = full[:, pos[lab]]
        return out

    def prf(
        self,
        average: Average,
        positive: Label | None = None,
        labels: ArrayLike | None = None,
        *,
        zero_division: float = np.nan,
    ) -> tuple[Any, Any, Any]:
        """Precision, recall and F1 with a scikit-learn ``average`` (no warning).

        ``labels`` restricts the per-class values and the averages to those labels
        (in that order), as scikit-learn's ``labels`` argument; ``zero_division`` is
        the value of a ratio with a zero denominator (NaN by default).
        """
        if average == "binary":
            if len(self._labels) > 2:
                raise ValueError(
                    "Target is multiclass but average='binary'; choose another `average`"
                )
            pos = _default_positive(self._labels) if positive is None else positive
            if pos not in self._labels:
                z = float(zero_division)
                return z, z, z
            labels = np.asarray([pos])
        tp, pred, true = self._select(labels)
        if average == "micro":
            tp, pred, true = tp.sum(keepdims=True), pred.sum(keepdims=True), true.sum(keepdims=True)
        zd = zero_division
        p, r, f = _divide(tp, pred, zd), _divide(tp, true, zd), _divide(2 * tp, true + pred, zd)
        if average is None:
            return p, r, f
        if average in ("binary", "micro"):
            return float(p[0]), float(r[0]), float(f[0])
        if average == "macro":
            return _nanaverage(p), _nanaverage(r), _nanaverage(f)
        if average == "weighted":
            return _nanaverage(p, true), _nanaverage(r, true), _nanaverage(f, true)
        raise ValueError(
            f"`average` must be one of 'binary', 'macro', 'micro', 'weighted', None; "
            f"got {average!r}"
        )

    def compute(self, positive: Label | None = None) -> dict[str, float]:
        """All summary metrics.

        ``precision``/``recall``/``f1`` are those of ``positive`` when given or when
        there are at most two labels (default: 1 for 0/1 labels, else the larger
        label), and macro averages otherwise.
        """
        cm = self._cm
        total = float(cm.sum())
        correct = float(np.trace(cm))
        out: dict[str, float] = {
            "accuracy": safe_div(correct, total),
            "error_rate": safe_div(total - correct, total),
        }
        if positive is not None or len(self._labels) <= 2:
            pos = _default_positive(self._labels) if positive is None else positive
            if pos is not None and pos in self._labels:
                i = self._labels.index(pos)
                p, r, f, _ = _per_class_prf(cm)
                out["precision"], out["recall"], out["f1"] = float(p[i]), float(r[i]), float(f[i])
            else:
                out["precision"] = out["recall"] = out["f1"] = float("nan")
        else:
            out["precision"], out["recall"], out["f1"] = self.prf("macro")
        averages: tuple[Average, ...] = ("macro", "micro", "weighted")
        for avg in averages:
            p_, r_, f_ = self.prf(avg)
            out[f"precision_{avg}"], out[f"recall_{avg}"], out[f"f1_{avg}"] = p_, r_, f_
        bad = [k for k, v in out.items() if v != v]
        if bad:
            warn_undefined(f"{', '.join(bad)} undefined (no samples, or zero division); set to NaN")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; restore with :meth:`from_dict`."""
        return {
            "type": "ClassificationState",
            "version": FORMAT_VERSION,
            "labels": list(self._labels),
            "fixed": self._fixed,
            "weighted": self._weighted,
            "cm": encode_array(self._cm),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassificationState:
        """Rebuild a state from :meth:`to_dict` output."""
        check_header(d, "ClassificationState")
        s = cls()
        s._labels = list(d["labels"])
        s._fixed = bool(d["fixed"])
        s._weighted = bool(d["weighted"])
        s._cm = decode_array(d["cm"]).astype(np.float64)
        return s

    def copy(self) -> ClassificationState:
        """An independent copy."""
        s = ClassificationState()
        s._labels = list(self._labels)
        s._fixed = self._fixed
        s._weighted = self._weighted
        s._cm = self._cm.copy()
        return s


def _state(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    sample_weight: ArrayLike | None,
    labels: ArrayLike | None = None,
) -> ClassificationState:
    s = ClassificationState(labels=labels)
    s.update(y_true, y_pred, sample_weight)
    return s


def accuracy_score(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    normalize: bool = True,
    sample_weight: ArrayLike | None = None,
) -> float:
    """Fraction (weighted) of correct predictions; NaN with a warning when empty.

    With ``normalize=False`` the (weighted) count of correct predictions.

    Example:
        >>> accuracy_score([0, 1, 1, 0], [0, 1, 0, 0])
        0.75
    """
    s = _state(y_true, y_pred, sample_weight)
    total = float(s._cm.sum())
    if not normalize:
        return float(np.trace(s._cm))
    if total == 0:
        warn_undefined("accuracy is undefined for empty input; returning NaN")
    return safe_div(float(np.trace(s._cm)), total)


def error_rate(
    y_true: ArrayLike, y_pred: ArrayLike, *, sample_weight: ArrayLike | None = None
) -> float:
    """Fraction (weighted) of wrong predictions, ``1 - accuracy``.

    Example:
        >>> error_rate([0, 1, 1, 0], [0, 1, 0, 0])
        0.25
    """
    s = _state(y_true, y_pred, sample_weight)
    total = float(s._cm.sum())
    if total == 0:
        warn_undefined("error_rate is undefined for empty input; returning NaN")
    return safe_div(total - float(np.trace(s._cm)), total)


def zero_division_value(zero_division: float | str) -> float:
    """The value of a zero-denominator ratio for scikit-learn's ``zero_division``."""
    if isinstance(zero_division, str):
        if zero_division != "warn":
            raise ValueError(
                f"`zero_division` must be 'warn', np.nan, 0 or 1, got {zero_division!r}"
            )
        return 0.0
    if zero_division != zero_division or zero_division in (0.0, 1.0):
        return float(zero_division)
    raise ValueError(f"`zero_division` must be 'warn', np.nan, 0 or 1, got {zero_division!r}")


def _prf_metric(
    which: int,
    name: str,
    y_true: ArrayLike,
    y_pred: ArrayLike,
    average: Average,
    pos_label: Label | None,
    labels: ArrayLike | None,
    sample_weight: ArrayLike | None,
    zero_division: float | str,
) -> Any:
    s = _state(y_true, y_pred, sample_weight)
    if average == "binary" and pos_label is None:
        pos_label = sklearn_positive(s.labels)
    zd = zero_division_value(zero_division)
    probe_average: Average = None if average in ("macro", "weighted") else average
    ill_defined = bool(np.any(np.isnan(s.prf(probe_average, pos_label, labels)[which])))
    value = s.prf(average, pos_label, labels, zero_division=zd)[which]
    if not s.labels:  # no samples: NaN whatever zero_division says (scikit-learn raises)
        warn_undefined(f"{name} is undefined for empty input; returning NaN")
        return value if average is None else float("nan")
    if bool(np.any(np.isnan(value))):
        warn_undefined(f"{name} is undefined (zero division); returning NaN")
    elif ill_defined and (zero_division == "warn" or zd != zd):
        warn_undefined(
            f"{name} is ill-defined (zero division) for some labels and set to "
            f"{'NaN' if zd != zd else zd}; use `zero_division` to control this"
        )
    return value if average is None else float(value)


def precision_score(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    average: Average = "binary",
    pos_label: Label | None = None,
    labels: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    zero_division: float | str = "warn",
) -> Any:
    """Precision ``tp / (tp + fp)``, like scikit-learn's ``precision_score``.

    ``pos_label=None`` means 1, as scikit-learn (or the larger label when there are
    two labels and neither is 1). ``average=None`` returns one value per label.

    ``zero_division`` is the value of a ratio with a zero denominator, as
    scikit-learn: ``"warn"`` (default) gives 0.0 with an
    :class:`UndefinedMetricWarning`, ``0`` or ``1`` give that value silently (all
    three count in the macro and weighted averages), ``np.nan`` gives NaN with a
    warning and leaves the label out of the averages (what the states'
    ``compute()`` report). Deliberate difference: empty input returns NaN with a
    warning for every ``average`` and ``zero_division`` (an empty array for
    ``average=None``), where scikit-learn raises.

    Example:
        >>> precision_score([0, 1, 1, 0], [1, 1, 0, 0])
        0.5
    """
    return _prf_metric(
        0, "precision", y_true, y_pred, average, pos_label, labels, sample_weight, zero_division
    )


def recall_score(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    average: Average = "binary",
    pos_label: Label | None = None,
    labels: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    zero_division: float | str = "warn",
) -> Any:
    """Recall ``tp / (tp + fn)``, like scikit-learn's ``recall_score``.

    Arguments and the ``zero_division`` rules are those of :func:`precision_score`.

    Example:
        >>> recall_score([0, 1, 1, 0], [1, 1, 0, 0])
        0.5
    """
    return _prf_metric(
        1, "recall", y_true, y_pred, average, pos_label, labels, sample_weight, zero_division
    )


def f1_score(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    average: Average = "binary",
    pos_label: Label | None = None,
    labels: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    zero_division: float | str = "warn",
) -> Any:
    """F1 ``2 tp / (2 tp + fp + fn)``, like scikit-learn's ``f1_score``.

    Arguments and the ``zero_division`` rules are those of :func:`precision_score`.

    Example:
        >>> f1_score([0, 1, 1, 0], [1, 1, 0, 0])
        0.5
    """
    return _prf_metric(
        2, "f1", y_true, y_pred, average, pos_label, labels, sample_weight, zero_division
    )


def confusion_matrix(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    labels: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
) -> NDArray[Any]:
    """Confusion matrix (rows true, columns predicted) over the sorted labels.

    ``labels`` picks and orders the rows and columns, as scikit-learn.

    Example:
        >>> confusion_matrix([0, 1, 1], [0, 1, 0]).tolist()
        [[1, 0], [1, 1]]
    """
    s = _state(y_true, y_pred, sample_weight)
    cm = s.confusion_matrix()
    if labels is None:
        return cm
    pos = {lab: i for i, lab in enumerate(s.labels)}
    wanted = _to_python_labels(check_labels(labels, "labels"))
    out = np.zeros((len(wanted), len(wanted)), dtype=cm.dtype)
    idx = [(j, pos[lab]) for j, lab in enumerate(wanted) if lab in pos]
    if idx:
        dst, src = (list(t) for t in zip(*idx, strict=True))
        out[np.ix_(dst, dst)] = cm[np.ix_(src, src)]
    return out
