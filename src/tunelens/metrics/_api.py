"""One-pass convenience API and state deserialisation."""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from tunelens.metrics._classification import (
    ClassificationState,
    _default_positive,
    zero_division_value,
)
from tunelens.metrics._probabilistic import CalibrationState, ProbabilisticState
from tunelens.metrics._ranking import (
    DEFAULT_BINS,
    DEFAULT_SCALE,
    BinaryRankingState,
    MulticlassRankingState,
    Scale,
    _sklearn_average_precision,
    _sklearn_ovr_average,
    binary_from_labels,
    multiclass_indices,
)
from tunelens.metrics._regression import RegressionState
from tunelens.metrics._sketch import QuantileSketch
from tunelens.metrics._validation import (
    UndefinedMetricWarning,
    as_float,
    check_labels,
    check_same_length,
    check_weights,
)

State = (
    ClassificationState
    | BinaryRankingState
    | MulticlassRankingState
    | ProbabilisticState
    | CalibrationState
    | RegressionState
    | QuantileSketch
)

_TYPES: dict[str, Any] = {
    cls.__name__: cls
    for cls in (
        ClassificationState,
        BinaryRankingState,
        MulticlassRankingState,
        ProbabilisticState,
        CalibrationState,
        RegressionState,
        QuantileSketch,
    )
}


def state_from_dict(d: dict[str, Any]) -> State:
    """Rebuild any metric state from its ``to_dict()`` form, dispatching on ``d["type"]``.

    Args:
        d: The output of a state's ``to_dict()`` (after a JSON round-trip if you like).

    Returns:
        A new state equal to the one serialised.

    Raises:
        ValueError: When the type is unknown or the format version unsupported.

    Example:
        >>> s = RegressionState()
        >>> s.update([1.0, 2.0], [1.0, 3.0])
        >>> state_from_dict(s.to_dict()).compute()["mae"]
        0.5
    """
    if not isinstance(d, dict) or "type" not in d:
        raise ValueError("expected a serialised metric state: a dict with a 'type' key")
    cls = _TYPES.get(d["type"])
    if cls is None:
        raise ValueError(
            f"unknown metric state type {d['type']!r}; expected one of {sorted(_TYPES)}"
        )
    state: State = cls.from_dict(d)
    return state


def classification_metrics(
    y_true: ArrayLike,
    y_pred: ArrayLike | None = None,
    y_score: ArrayLike | None = None,
    *,
    sample_weight: ArrayLike | None = None,
    mode: Literal["exact", "streaming"] = "exact",
    positive: Any = None,
    n_bins: int = DEFAULT_BINS,
    scale: Scale = DEFAULT_SCALE,
    zero_division: float | str = "warn",
) -> dict[str, float]:
    """The whole classification metric set in one pass, each state built once.

    With ``y_pred``: accuracy, error_rate, precision, recall, f1 (of the positive
    class for binary targets, macro for multiclass) and their macro/micro/weighted
    averages. With ``y_score`` (``(n,)`` scores of the positive class, or an
    ``(n, K)`` probability matrix with columns in sorted label order): roc_auc and
    pr_auc (average precision), plus log_loss and brier when the scores are
    probabilities in ``[0, 1]`` (and roc_auc_weighted for multiclass).

    Every value equals the matching scikit-learn 1.9 call with its default
    arguments (``precision_score(..., pos_label=positive)``, ``f1_score(...,
    average="macro")``, ``roc_auc_score(..., multi_class="ovr")``,
    ``average_precision_score``, ...; ``error_rate`` is ``1 - accuracy``), as the
    functional twins: a zero-division ratio is ``zero_division`` (0.0 with a warning
    by default) and averages include it, and average precision without positives
    is 0.0 with scikit-learn's warning. The states' ``compute()`` keep NaN for
    those instead. Only what scikit-learn refuses (empty input, a single class for
    ROC AUC) is NaN here.

    Args:
        y_true: True labels (ints, strings or bools).
        y_pred: Predicted labels, or None to skip the confusion-matrix metrics.
        y_score: Positive-class scores ``(n,)`` or class probabilities ``(n, K)``.
        sample_weight: Non-negative weights, one per row.
        mode: ``"exact"`` (equal to scikit-learn) or ``"streaming"`` (fixed-memory
            histogram ranking; scores must lie in ``[0, 1]``).
        positive: The positive class for binary summaries; default 1 for 0/1
            labels, else the larger label.
        n_bins: Histogram bins of streaming mode.
        scale: Bin scale of streaming mode: ``"mixed"`` (the default: half equal-width,
            half equal in log-odds), ``"logit"`` (equal in log-odds) or ``"linear"``
            (equal over ``[0, 1]``).
        zero_division: ``"warn"`` (0.0 with a warning, scikit-learn's default),
            ``np.nan``, 0 or 1: the value of precision, recall or F1 with a zero
            denominator.

    Returns:
        Metric name to value; undefined values are NaN (with an
        :class:`UndefinedMetricWarning`).

    Raises:
        ValueError: On mismatched lengths, NaN labels, non-finite scores, negative
            weights or a score matrix whose width does not match the classes.

    Example:
        >>> m = classification_metrics([0, 1, 1, 0], [0, 1, 0, 0], [0.2, 0.9, 0.4, 0.1])
        >>> m["accuracy"], m["roc_auc"]
        (0.75, 1.0)
    """
    zd = zero_division_value(zero_division)
    yt = check_labels(y_true, "y_true")
    w = check_weights(sample_weight, yt.shape[0])
    out: dict[str, float] = {}
    labels: list[Any] | None = None
    if y_pred is not None:
        cs = ClassificationState()
        cs.update(yt, y_pred, w)
        out.update(_sklearn_prf(cs, positive, zd, zero_division))
        labels = cs.labels
    if y_score is None:
        return out
    s = as_float(y_score, "y_score", ndim=None)
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    check_same_length(y_true=yt, y_score=s)
    in_unit = bool(s.size == 0 or (float(s.min()) >= 0.0 and float(s.max()) <= 1.0))
    if s.ndim == 1:
        pos = positive
        if pos is None and labels is not None and len(labels) <= 2:
            pos = _default_positive(labels)
        y = binary_from_labels(yt, pos)
        rank = BinaryRankingState(mode=mode, n_bins=n_bins, scale=scale)
        rank._update_checked(y, s, w)
        p, n = rank.totals()
        if p > 0 and n > 0:
            out.update(rank.compute())  # one shared pass for both
        else:
            out["roc_auc"] = rank.roc_auc()
            out["pr_auc"] = _sklearn_average_precision(rank)
        if in_unit:
            prob = ProbabilisticState(2)
            prob.update(y, s, w)
            out.update(prob.compute())
        return out
    if s.ndim != 2:
        raise ValueError(f"`y_score` must be 1-D or 2-D, got shape {s.shape}")
    k = s.shape[1]
    col_labels = labels if labels is not None and len(labels) == k else None
    idx, _ = multiclass_indices(yt, k, None if col_labels is None else np.asarray(col_labels))
    mrank = MulticlassRankingState(k, mode=mode, n_bins=n_bins, scale=scale)
    mrank.update(idx, s, w)
    per_class = mrank._per_class("auc")  # once for both averages
    out["roc_auc"] = _sklearn_ovr_average(mrank, "macro", per_class)
    with warnings.catch_warnings():  # warned once, just above
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        out["roc_auc_weighted"] = (
            _sklearn_ovr_average(mrank, "weighted", per_class)
            if sum(mrank.per_class_states[0].totals()) > 0
            else float("nan")  # empty input (scikit-learn raises)
        )
    out["pr_auc"] = _sklearn_average_precision(mrank, "macro")
    if in_unit:
        mprob = ProbabilisticState(k)
        mprob.update(idx, s, w)
        out.update(mprob.compute())
    return out


_PRF_KEYS = tuple(
    f"{m}{a}" for a in ("", "_macro", "_micro", "_weighted") for m in ("precision", "recall", "f1")
)


def _sklearn_prf(
    cs: ClassificationState, positive: Any, zd: float, zero_division: float | str
) -> dict[str, float]:
    """``cs.compute()`` with precision, recall and F1 as scikit-learn's defaults."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UndefinedMetricWarning)
        out = cs.compute(positive)  # NaN where a ratio divides by zero
    if not cs.labels:  # empty input: NaN (scikit-learn raises)
        if caught:
            warnings.warn(caught[0].message, UndefinedMetricWarning, stacklevel=3)
        return out
    per_class = dict(zip(("precision", "recall", "f1"), cs.prf(None), strict=True))
    bad = {m for m, v in per_class.items() if bool(np.isnan(v).any())}  # macro/weighted
    binary = positive is not None or len(cs.labels) <= 2
    averaged = {f"{m}{a}" for m in bad for a in ("_macro", "_weighted", "_" if binary else "")}
    ill = [k for k in _PRF_KEYS if out[k] != out[k] or k in averaged]
    if not ill:
        return out
    if binary:
        pos = _default_positive(cs.labels) if positive is None else positive
        p, r, f = cs.prf(None, labels=np.asarray([pos]), zero_division=zd)
        out["precision"], out["recall"], out["f1"] = float(p[0]), float(r[0]), float(f[0])
    else:
        out["precision"], out["recall"], out["f1"] = cs.prf("macro", zero_division=zd)
    for avg in ("macro", "micro", "weighted"):
        p_, r_, f_ = cs.prf(avg, zero_division=zd)
        out[f"precision_{avg}"], out[f"recall_{avg}"], out[f"f1_{avg}"] = p_, r_, f_
    if zero_division == "warn" or zd != zd:
        warnings.warn(
            f"{', '.join(ill)} ill-defined (zero division) and set to "
            f"{'NaN' if zd != zd else zd}; use `zero_division` to control this",
            UndefinedMetricWarning,
            stacklevel=3,
        )
    return out
