"""Confidence intervals for the report's metrics (issue 3, report JSON ``"intervals"``).

Exact or analytic where one exists, a bootstrap otherwise:

- :func:`wilson_interval`: the Wilson score interval of a proportion (equal to
  ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``);
- :func:`proportion_intervals`: Wilson intervals of accuracy, error rate, precision
  and recall on their own denominators;
- :func:`delong_auc`: the ROC AUC with DeLong's variance, computed in O(n log n)
  from midranks (Sun & Xu 2014), and :func:`delong_test` for two correlated AUCs
  on the same rows (champion vs challenger);
- :func:`bootstrap_interval`: a percentile bootstrap with a fixed seed for the
  metrics without an analytic interval;
- :func:`confusion_bootstrap`: the same bootstrap for every metric that is a function
  of the confusion matrix (F1, macro precision/recall/F1), drawn as multinomial
  resamples of the K x K cell counts, which is exactly a row bootstrap for these
  metrics and costs nothing per row;
- :func:`mean_interval`: the normal (central limit) interval of a mean of per-row
  values (log loss, Brier, MAE), and :func:`ratio_of_means_interval` (R2 by the
  delta method);
- :func:`average_precision_interval`: the logit interval of average precision
  (Boyd, Eng & Page 2013).

Undefined intervals are ``(nan, nan)`` with an
:class:`~tunelens.metrics.UndefinedMetricWarning`; bad arguments raise ``ValueError``
naming the argument.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special, stats

from tunelens.metrics._validation import (
    UndefinedMetricWarning,
    as_float,
    check_labels,
    check_same_length,
    check_weights,
)

__all__ = [
    "average_precision_interval",
    "bootstrap_interval",
    "confusion_bootstrap",
    "delong_auc",
    "delong_test",
    "mean_interval",
    "proportion_intervals",
    "ratio_of_means_interval",
    "wilson_interval",
]

FloatArray = NDArray[np.float64]

# Bootstrap index matrices are drawn in chunks of at most this many indices
# (2**22 int64 indices = 32 MiB), whatever ``n_boot`` and the row count.
_MAX_CHUNK_ELEMENTS = 1 << 22


def _warn(message: str) -> None:
    warnings.warn(message, UndefinedMetricWarning, stacklevel=3)


def _z(confidence: float) -> float:
    """Validate ``confidence`` and return the two-sided normal quantile."""
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float, np.floating)):
        raise ValueError(f"`confidence` must be a number in (0, 1), got {confidence!r}")
    c = float(confidence)
    if not (0.0 < c < 1.0):
        raise ValueError(f"`confidence` must be in (0, 1), got {confidence!r}")
    return float(special.ndtri(0.5 + 0.5 * c))


def wilson_interval(successes: float, n: float, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n``.

    Counts may be weighted (floats). For integer counts the result equals
    ``scipy.stats.binomtest(k, n).proportion_ci(confidence, method="wilson")``:
    the lower end is exactly 0 when ``successes == 0`` and the upper end exactly 1
    when ``successes == n``.

    Args:
        successes: Number (or total weight) of successes, ``0 <= successes <= n``.
        n: Number (or total weight) of trials, ``>= 0``.
        confidence: Two-sided confidence level in (0, 1).

    Returns:
        ``(lo, hi)``; ``(nan, nan)`` when ``n == 0``.

    Raises:
        ValueError: If a count is negative, not finite, or ``successes > n``, or
            ``confidence`` is not in (0, 1).

    Example:
        >>> lo, hi = wilson_interval(90, 100)
        >>> round(lo, 4), round(hi, 4)
        (0.8256, 0.9448)
    """
    z = _z(confidence)
    k, m = float(successes), float(n)
    if not (math.isfinite(k) and math.isfinite(m)):
        raise ValueError(f"`successes` and `n` must be finite, got {successes!r}, {n!r}")
    if m < 0 or k < 0:
        raise ValueError(f"`successes` and `n` must be >= 0, got {successes!r}, {n!r}")
    if k > m:
        raise ValueError(f"`successes` ({successes!r}) must not exceed `n` ({n!r})")
    if m == 0:
        return (math.nan, math.nan)
    p = k / m
    q = 1.0 - p
    denom = 2.0 * (m + z**2)
    center = (2.0 * m * p + z**2) / denom
    delta = z / denom * math.sqrt(4.0 * m * p * q + z**2)
    lo = 0.0 if k == 0 else max(0.0, center - delta)
    hi = 1.0 if k == m else min(1.0, center + delta)
    return (lo, hi)


def _label_list(values: NDArray[Any]) -> list[Any]:
    return [v.item() if isinstance(v, np.generic) else v for v in values.tolist()]


def proportion_intervals(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    positive: Any = None,
    sample_weight: ArrayLike | None = None,
    confidence: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Wilson intervals of accuracy, error rate and (binary) precision and recall.

    Accuracy and error rate are proportions of all rows; precision is a proportion
    of the rows predicted positive, recall of the rows truly positive. With more than
    two labels (and no ``positive``) only accuracy and error rate are returned: macro
    precision and recall are means of proportions, for :func:`bootstrap_interval`.
    With ``sample_weight`` the counts are weighted totals.

    Args:
        y_true: True labels.
        y_pred: Predicted labels, same length.
        positive: The positive class; by default the larger of two labels (1 for
            0/1 labels), as scikit-learn.
        sample_weight: Optional non-negative weights, one per row.
        confidence: Two-sided confidence level in (0, 1).

    Returns:
        ``{"accuracy": (lo, hi), "error_rate": ..., "precision": ..., "recall": ...}``;
        an interval is ``(nan, nan)`` (with a warning) when its denominator is 0.

    Raises:
        ValueError: On mismatched lengths, bad labels or weights, a ``positive`` that
            is not a label, or a bad ``confidence``.

    Example:
        >>> iv = proportion_intervals([0, 1, 1, 0, 1], [0, 1, 0, 0, 1])
        >>> sorted(iv)
        ['accuracy', 'error_rate', 'precision', 'recall']
        >>> iv["precision"][1]
        1.0
    """
    _z(confidence)
    t = check_labels(y_true, "y_true")
    p = check_labels(y_pred, "y_pred")
    n = check_same_length(y_true=t, y_pred=p)
    w = check_weights(sample_weight, n)
    ones = np.ones(n) if w is None else w
    total = float(ones.sum())
    correct = float(ones[t == p].sum()) if n else 0.0
    out: dict[str, tuple[float, float]] = {}
    if total == 0:
        _warn("accuracy interval undefined: no rows (or zero total weight)")
    out["accuracy"] = wilson_interval(min(correct, total), total, confidence=confidence)
    out["error_rate"] = wilson_interval(max(total - correct, 0.0), total, confidence=confidence)
    labels = _label_list(np.unique(np.concatenate([t, p]))) if n else []
    if positive is None:
        if len(labels) > 2:
            return out
        if not labels:
            return out
        positive = labels[-1]
    elif n and positive not in labels:
        raise ValueError(f"`positive` {positive!r} is not one of the labels {labels!r}")
    is_pos_true = t == positive
    is_pos_pred = p == positive
    tp = float(ones[is_pos_true & is_pos_pred].sum())
    pred_pos = float(ones[is_pos_pred].sum())
    true_pos = float(ones[is_pos_true].sum())
    if pred_pos == 0:
        _warn("precision interval undefined: no row predicted positive")
    if true_pos == 0:
        _warn("recall interval undefined: no positive row")
    out["precision"] = wilson_interval(min(tp, pred_pos), pred_pos, confidence=confidence)
    out["recall"] = wilson_interval(min(tp, true_pos), true_pos, confidence=confidence)
    return out


def _binary_split(y_true: ArrayLike, n: int) -> NDArray[np.bool_] | None:
    """Boolean positive mask (positive = larger label); None if one class only."""
    t = check_labels(y_true, "y_true")
    if t.shape[0] != n:
        raise ValueError(
            f"`y_score` has {n} rows but `y_true` has {t.shape[0]}: "
            "expected the same number of samples"
        )
    labels = np.unique(t)
    if labels.size > 2:
        raise ValueError(f"`y_true` must hold two classes for DeLong, got {labels.size}")
    if labels.size < 2:
        return None
    return np.asarray(t == labels[-1], dtype=np.bool_)


def _placements(
    pos: NDArray[np.bool_], scores: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Fast DeLong (Sun & Xu 2014): AUCs and placement values of ``k`` score rows.

    ``scores`` is ``(k, n)``; returns ``auc (k,)``, ``v10 (k, m)`` (per positive) and
    ``v01 (k, n_neg)`` (per negative), all from midranks in O(k n log n).
    """
    x = scores[:, pos]
    y = scores[:, ~pos]
    m, nn = x.shape[1], y.shape[1]
    if scores.shape[0] == 1 and m and nn:
        # One score row: the placements need not stay aligned with the rows (only their
        # mean and variance are used), so both classes are sorted (a fast value sort)
        # and each placement counts the other class below it, ties counting one half.
        xs, ys = np.sort(x[0]), np.sort(y[0])
        below_x = np.searchsorted(ys, xs, side="left") + np.searchsorted(ys, xs, side="right")
        below_y = np.searchsorted(xs, ys, side="left") + np.searchsorted(xs, ys, side="right")
        v10_1 = below_x / (2.0 * nn)
        v01_1 = 1.0 - below_y / (2.0 * m)
        return np.asarray([v10_1.mean()]), v10_1[None, :], v01_1[None, :]
    tx = stats.rankdata(x, axis=1)
    ty = stats.rankdata(y, axis=1)
    tz = stats.rankdata(np.concatenate([x, y], axis=1), axis=1)
    auc = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * nn)
    v10 = (tz[:, :m] - tx) / nn
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return np.asarray(auc, dtype=np.float64), v10, v01


def _delong_cov(v10: FloatArray, v01: FloatArray) -> FloatArray:
    """DeLong covariance ``S10 / m + S01 / n`` of the AUCs (``(k, k)``)."""
    m, nn = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10, ddof=1))
    s01 = np.atleast_2d(np.cov(v01, ddof=1))
    return np.asarray(s10 / m + s01 / nn, dtype=np.float64)


def _scores(y_score: ArrayLike, name: str) -> FloatArray:
    return as_float(y_score, name)


def delong_auc(
    y_true: ArrayLike, y_score: ArrayLike, *, confidence: float = 0.95
) -> tuple[float, float, float, float]:
    """ROC AUC with DeLong's variance and normal interval.

    Uses the fast algorithm of Sun & Xu (2014): the placement values of DeLong,
    DeLong & Clarke-Pearson (1988) come from midranks (ties count one half), so the
    cost is one sort, O(n log n), instead of O(n_pos * n_neg). The AUC equals
    scikit-learn's ``roc_auc_score``. The interval ``auc +- z * sqrt(variance)`` is
    clipped to [0, 1]; with perfectly separated scores the variance is 0 and the
    interval collapses to the AUC.

    Args:
        y_true: Two classes; the positive class is the larger label.
        y_score: Scores, higher meaning more positive, same length.
        confidence: Two-sided confidence level in (0, 1).

    Returns:
        ``(auc, lo, hi, variance)``. All NaN (with a warning) when ``y_true`` has one
        class; the AUC alone is defined when a class has a single row (the variance
        and interval are then NaN, with a warning).

    Raises:
        ValueError: On mismatched lengths, more than two classes, non-finite scores or
            a bad ``confidence``.

    Example:
        >>> auc, lo, hi, var = delong_auc([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
        >>> round(auc, 4), 0.0 <= lo <= auc <= hi <= 1.0
        (0.8889, True)
    """
    z = _z(confidence)
    s = _scores(y_score, "y_score")
    pos = _binary_split(y_true, s.shape[0])
    if pos is None:
        _warn("ROC AUC undefined: `y_true` has only one class")
        return (math.nan, math.nan, math.nan, math.nan)
    auc_arr, v10, v01 = _placements(pos, s[None, :])
    auc = float(auc_arr[0])
    if v10.shape[1] < 2 or v01.shape[1] < 2:
        _warn("DeLong variance undefined: a class has a single row")
        return (auc, math.nan, math.nan, math.nan)
    var = float(_delong_cov(v10, v01)[0, 0])
    half = z * math.sqrt(max(var, 0.0))
    return (auc, max(0.0, auc - half), min(1.0, auc + half), var)


def delong_test(y_true: ArrayLike, score_a: ArrayLike, score_b: ArrayLike) -> tuple[float, float]:
    """DeLong's test that two correlated ROC AUCs (same rows, same labels) are equal.

    ``z = (auc_a - auc_b) / sqrt(var_a + var_b - 2 cov_ab)`` with the DeLong
    covariance, and a two-sided normal p-value. Used to compare a champion and a
    challenger scored on the same data.

    Args:
        y_true: Two classes; the positive class is the larger label.
        score_a: Scores of model A.
        score_b: Scores of model B, same length.

    Returns:
        ``(z, p_value)``; positive ``z`` means A has the larger AUC. When the
        difference has zero variance: ``(0.0, 1.0)`` for equal AUCs, else
        ``(+-inf, 0.0)``. ``(nan, nan)`` with a warning when ``y_true`` has one class
        or a class has a single row.

    Raises:
        ValueError: On mismatched lengths, more than two classes or non-finite scores.

    Example:
        >>> y = [0, 0, 1, 1, 0, 1, 0, 1]
        >>> z, p = delong_test(y, [0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.3, 0.7],
        ...                    [0.5, 0.4, 0.3, 0.6, 0.2, 0.1, 0.7, 0.8])
        >>> z > 0, 0.0 < p < 1.0
        (True, True)
    """
    a = _scores(score_a, "score_a")
    b = _scores(score_b, "score_b")
    check_same_length(score_a=a, score_b=b)
    pos = _binary_split(y_true, a.shape[0])
    if pos is None:
        _warn("DeLong test undefined: `y_true` has only one class")
        return (math.nan, math.nan)
    auc, v10, v01 = _placements(pos, np.stack([a, b]))
    if v10.shape[1] < 2 or v01.shape[1] < 2:
        _warn("DeLong test undefined: a class has a single row")
        return (math.nan, math.nan)
    cov = _delong_cov(v10, v01)
    diff = float(auc[0] - auc[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    # Zero up to rounding (e.g. identical or perfectly separating scores).
    if var <= 1e-12 * max(float(cov[0, 0] + cov[1, 1]), 1e-300):
        if diff == 0.0:
            return (0.0, 1.0)
        return (math.copysign(math.inf, diff), 0.0)
    zval = diff / math.sqrt(var)
    return (zval, float(2.0 * stats.norm.sf(abs(zval))))


def bootstrap_interval(
    metric: Callable[..., Any],
    *arrays: ArrayLike,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    sample_weight: ArrayLike | None = None,
    vectorized: bool = False,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric(*arrays)`` with a fixed seed.

    Rows are resampled with replacement (the same rows across all ``arrays`` and
    ``sample_weight``). Index matrices ``(chunk, n)`` are drawn from
    ``numpy.random.default_rng(seed)`` in chunks of at most 2**22 indices (32 MiB),
    so memory stays bounded whatever ``n_boot``; the result depends only on the
    inputs, ``n_boot`` and ``seed``.

    Cost: ``n_boot * n`` random indices plus ``n_boot`` metric evaluations on ``n``
    rows. With ``vectorized=True`` the metric is called once per chunk on 2-D arrays
    ``(chunk, n, ...)`` and must reduce the row axis (axis 1) to one value per
    replicate, e.g. ``lambda t, p: (t == p).mean(axis=1)``: about as fast as numpy
    allows (n=2000, n_boot=1000 in a few tens of ms). Otherwise it is called per
    replicate on 1-D arrays (any ``tunelens.metrics`` function works, with
    ``sample_weight=`` passed as a keyword when given), costing ``n_boot`` times one
    evaluation.

    Replicates where the metric is not finite (e.g. an AUC on a resample with one
    class) are dropped with a warning.

    Args:
        metric: ``metric(*arrays[, sample_weight=w]) -> float`` (or per-replicate
            values when ``vectorized``).
        *arrays: One or more arrays with the same number of rows.
        n_boot: Number of bootstrap replicates, >= 1.
        confidence: Two-sided confidence level in (0, 1).
        seed: Seed of the random generator.
        sample_weight: Optional weights, resampled with the rows.
        vectorized: Whether ``metric`` takes 2-D (replicate, row) arrays.

    Returns:
        ``(lo, hi)``, the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
        quantiles of the replicates; ``(nan, nan)`` with a warning when there are no
        rows or no finite replicate.

    Raises:
        ValueError: On no arrays, mismatched lengths, bad ``n_boot`` or ``confidence``.

    Example:
        >>> import numpy as np
        >>> x = np.arange(100.0)
        >>> lo, hi = bootstrap_interval(lambda v: v.mean(axis=1), x, n_boot=200,
        ...                             vectorized=True)
        >>> bool(lo < x.mean() < hi)
        True
    """
    _z(confidence)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"`n_boot` must be a positive integer, got {n_boot!r}")
    if not arrays:
        raise ValueError("`arrays` must hold at least one array for the metric")
    arrs = [np.asarray(a) for a in arrays]
    for i, a in enumerate(arrs):
        if a.ndim == 0:
            raise ValueError(f"`arrays[{i}]` must have a row axis, got a scalar")
    n = check_same_length(**{f"arrays[{i}]": a for i, a in enumerate(arrs)})
    w = check_weights(sample_weight, n)
    if n == 0:
        _warn("bootstrap interval undefined: no rows")
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    chunk = max(1, min(int(n_boot), _MAX_CHUNK_ELEMENTS // n))
    values = np.empty(int(n_boot), dtype=np.float64)
    done = 0
    while done < n_boot:
        c = min(chunk, int(n_boot) - done)
        idx = rng.integers(0, n, size=(c, n))
        if vectorized:
            kw: dict[str, Any] = {} if w is None else {"sample_weight": w[idx]}
            res = np.asarray(metric(*(a[idx] for a in arrs), **kw), dtype=np.float64)
            if res.shape != (c,):
                raise ValueError(
                    f"a vectorized `metric` must return one value per replicate ({c},), "
                    f"got shape {res.shape}"
                )
            values[done : done + c] = res
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                for r in range(c):
                    row = idx[r]
                    kw = {} if w is None else {"sample_weight": w[row]}
                    values[done + r] = float(metric(*(a[row] for a in arrs), **kw))
        done += c
    finite = values[np.isfinite(values)]
    if finite.size < values.size:
        _warn(
            f"{values.size - finite.size} of {values.size} bootstrap replicates gave a "
            "non-finite metric and were dropped"
        )
    if finite.size == 0:
        return (math.nan, math.nan)
    alpha = 1.0 - float(confidence)
    lo, hi = np.quantile(finite, [alpha / 2.0, 1.0 - alpha / 2.0])
    return (float(lo), float(hi))


def confusion_bootstrap(
    confusion: ArrayLike,
    metric: Callable[[FloatArray], FloatArray],
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap of a confusion-matrix metric from the cell counts alone.

    Resampling ``n`` rows with replacement and tallying them is the same as one
    multinomial draw of ``n`` over the cells with the observed shares, so for any
    metric that depends on the rows only through their confusion matrix (precision,
    recall, F1, their macro averages, accuracy) this equals :func:`bootstrap_interval`
    on the rows in distribution, at a cost independent of the row count.

    Args:
        confusion: ``(K, K)`` counts (rows true, columns predicted), integers.
        metric: takes ``(n_boot, K, K)`` resampled counts and returns ``(n_boot,)``
            values; non-finite replicates are dropped.
        n_boot: Replicates, >= 1.
        confidence: Two-sided level in (0, 1).
        seed: Seed of the generator.

    Returns:
        ``(lo, hi)`` percentile interval; ``(nan, nan)`` with a warning when no
        replicate is finite or there are no rows.

    Example:
        >>> import numpy as np
        >>> acc = lambda c: np.trace(c, axis1=1, axis2=2) / c.sum(axis=(1, 2))
        >>> lo, hi = confusion_bootstrap([[40, 10], [5, 45]], acc)
        >>> bool(lo < 0.85 < hi)
        True
    """
    _z(confidence)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"`n_boot` must be a positive integer, got {n_boot!r}")
    cm = np.asarray(confusion, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"`confusion` must be a square matrix, got shape {cm.shape}")
    if (cm < 0).any() or not np.isfinite(cm).all():
        raise ValueError("`confusion` must hold non-negative finite counts")
    n = round(float(cm.sum()))
    if n == 0:
        _warn("bootstrap interval undefined: no rows")
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, (cm / cm.sum()).ravel(), size=int(n_boot))
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.asarray(
            metric(draws.reshape(int(n_boot), *cm.shape).astype(np.float64)), dtype=np.float64
        )
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        _warn("bootstrap interval undefined: no finite replicate")
        return (math.nan, math.nan)
    alpha = 1.0 - float(confidence)
    lo, hi = np.quantile(finite, [alpha / 2.0, 1.0 - alpha / 2.0])
    return (float(lo), float(hi))


def mean_interval(values: ArrayLike, *, confidence: float = 0.95) -> tuple[float, float]:
    """Normal interval of the mean of per-row values: ``mean +- z * sd / sqrt(n)``.

    The central limit interval for a mean loss (log loss, Brier score, absolute
    error); ``sd`` with ``ddof=1``. ``(nan, nan)`` with a warning for fewer than 2 rows.

    Example:
        >>> lo, hi = mean_interval([1.0, 2.0, 3.0, 4.0])
        >>> round(lo, 3), round(hi, 3)
        (1.235, 3.765)
    """
    z = _z(confidence)
    x = as_float(values, "values")
    if x.ndim != 1:
        raise ValueError(f"`values` must be one-dimensional, got shape {x.shape}")
    if x.size < 2:
        _warn("mean interval undefined: fewer than 2 rows")
        return (math.nan, math.nan)
    m = float(x.mean())
    se = float(x.std(ddof=1)) / math.sqrt(x.size)
    return (m - z * se, m + z * se)


def ratio_of_means_interval(
    num: ArrayLike, den: ArrayLike, *, confidence: float = 0.95
) -> tuple[float, float, float]:
    """``mean(num) / mean(den)`` with a delta-method normal interval.

    ``Var(a/b) ~ (Var(a) / b^2 - 2 a Cov(a, b) / b^3 + a^2 Var(b) / b^4) / n`` for the
    per-row values' sample moments. R2 is ``1 - mean(squared error) / mean((y -
    mean(y))^2)``, so its interval is one minus this interval reversed.

    Returns:
        ``(ratio, lo, hi)``; NaNs with a warning when ``mean(den)`` is 0 or n < 2.
    """
    z = _z(confidence)
    a = as_float(num, "num")
    b = as_float(den, "den")
    check_same_length(num=a, den=b)
    if a.size < 2 or float(b.mean()) == 0.0:
        _warn("ratio interval undefined: fewer than 2 rows or a zero denominator")
        return (math.nan, math.nan, math.nan)
    ma, mb = float(a.mean()), float(b.mean())
    cov = np.cov(a, b, ddof=1)
    var = (cov[0, 0] / mb**2 - 2 * ma * cov[0, 1] / mb**3 + ma**2 * cov[1, 1] / mb**4) / a.size
    se = math.sqrt(max(float(var), 0.0))
    r = ma / mb
    return (r, r - z * se, r + z * se)


def average_precision_interval(
    ap: float, n_positive: int, *, confidence: float = 0.95
) -> tuple[float, float]:
    """Logit interval of average precision (Boyd, Eng & Page, ECML 2013).

    ``logit(AP) +- z / sqrt(n_pos * AP * (1 - AP))``, mapped back through the logistic
    function, so it stays inside (0, 1). Boyd et al. found it among the best-covering
    of the cheap intervals for the area under the PR curve.

    Example:
        >>> lo, hi = average_precision_interval(0.8, 400)
        >>> round(lo, 3), round(hi, 3)
        (0.758, 0.836)
    """
    z = _z(confidence)
    if not math.isfinite(ap) or n_positive < 1:
        return (math.nan, math.nan)
    if ap <= 0.0 or ap >= 1.0:
        return (float(ap), float(ap))
    centre = math.log(ap / (1.0 - ap))
    half = z / math.sqrt(n_positive * ap * (1.0 - ap))
    return (float(special.expit(centre - half)), float(special.expit(centre + half)))
