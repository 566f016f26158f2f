"""Regression metrics with a numerically stable, mergeable state."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from tunelens.metrics._validation import (
    FORMAT_VERSION,
    as_float,
    check_header,
    check_same_length,
    check_weights,
    safe_div,
    warn_undefined,
)

_EPS = float(np.finfo(np.float64).eps)


class RegressionState:
    """MAE, MSE, RMSE, R² and MAPE from weighted sums.

    Errors are summed per row (no cancellation). For R² the spread of ``y_true`` is
    kept as a weighted mean and centred sum of squares (``M2``) merged with Chan's
    formula; the mean is stored relative to a shift (the first target seen), so data
    with a large offset (``1e6 + N(0, 1)``) keeps its digits through merges.

    Example:
        >>> s = RegressionState()
        >>> s.update([3.0, -0.5, 2.0, 7.0], [2.5, 0.0, 2.0, 8.0])
        >>> s.compute()["mae"]
        0.5
    """

    def __init__(self) -> None:
        self._n = 0
        self._w = 0.0
        self._abs = 0.0
        self._sq = 0.0
        self._ape = 0.0
        self._shift = 0.0
        self._mean = 0.0  # weighted mean of y_true - shift
        self._m2 = 0.0

    def update(
        self,
        y_true: ArrayLike,
        y_pred: ArrayLike,
        sample_weight: ArrayLike | None = None,
        *,
        validate: bool = True,
    ) -> None:
        """Add a batch of targets and predictions.

        ``validate=False`` skips the boundary checks (lengths, finiteness,
        weights), for callers that validated the data already (the monitor validates at
        log time); on valid data the result is the same.
        """
        yt = as_float(y_true, "y_true", validate=validate)
        yp = as_float(y_pred, "y_pred", validate=validate)
        n = check_same_length(y_true=yt, y_pred=yp) if validate else int(yt.shape[0])
        w = check_weights(sample_weight, n, validate=validate)
        if n == 0:
            return
        if self._n == 0:
            self._shift = float(yt[0])
        err = yp - yt
        a = np.abs(err)
        ape = a / np.maximum(np.abs(yt), _EPS)
        if w is None:
            bw = float(n)
            b_abs, b_sq, b_ape = float(a.sum()), float(err @ err), float(ape.sum())
            ys = yt - self._shift
            b_mean = float(ys.mean())
            d = ys - b_mean
            b_m2 = float(d @ d)
        else:
            bw = float(w.sum())
            b_abs, b_sq, b_ape = float(a @ w), float((err * err) @ w), float(ape @ w)
            ys = yt - self._shift
            b_mean = float((ys @ w) / bw) if bw > 0 else 0.0
            d = ys - b_mean
            b_m2 = float((d * d) @ w)
        self._combine(n, bw, b_abs, b_sq, b_ape, b_mean, b_m2)

    def _combine(
        self, n: int, w: float, s_abs: float, s_sq: float, s_ape: float, mean: float, m2: float
    ) -> None:
        total = self._w + w
        if total > 0:
            delta = mean - self._mean
            self._m2 += m2 + delta * delta * self._w * w / total
            self._mean += delta * w / total
        self._n += n
        self._w = total
        self._abs += s_abs
        self._sq += s_sq
        self._ape += s_ape

    def merge(self, other: RegressionState) -> None:
        """Add another state (Chan's parallel update for the target spread)."""
        if not isinstance(other, RegressionState):
            raise ValueError(f"cannot merge RegressionState with {type(other).__name__}")
        if other._n == 0:
            return
        if self._n == 0:
            self._shift = other._shift
        # re-express the other mean against our shift; the shifts are close, so exact
        mean = (other._shift - self._shift) + other._mean
        self._combine(other._n, other._w, other._abs, other._sq, other._ape, mean, other._m2)

    def compute(self) -> dict[str, float]:
        """``{"mae", "mse", "rmse", "r2", "mape"}``; NaN with a warning where undefined."""
        mse = safe_div(self._sq, self._w)
        out = {
            "mae": safe_div(self._abs, self._w),
            "mse": mse,
            "rmse": float(np.sqrt(mse)),
            "r2": self.r2(warn=False),
            "mape": safe_div(self._ape, self._w),
        }
        bad = [k for k, v in out.items() if v != v]
        if bad:
            warn_undefined(f"{', '.join(bad)} undefined (no samples or constant target); NaN")
        return out

    def r2(self, *, warn: bool = True) -> float:
        """Coefficient of determination; NaN if fewer than two rows or a constant target."""
        if self._n < 2 or self._w == 0 or self._m2 == 0:
            if warn:
                warn_undefined("R^2 is undefined for < 2 samples or a constant target; NaN")
            return float("nan")
        return 1.0 - self._sq / self._m2

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; restore with :meth:`from_dict`."""
        return {
            "type": "RegressionState",
            "version": FORMAT_VERSION,
            "rows": self._n,
            "weight": self._w,
            "abs_sum": self._abs,
            "sq_sum": self._sq,
            "ape_sum": self._ape,
            "shift": self._shift,
            "mean_true": self._mean,
            "m2_true": self._m2,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RegressionState:
        """Rebuild a state from :meth:`to_dict` output."""
        check_header(d, "RegressionState")
        s = cls()
        s._n = int(d["rows"])
        s._w, s._abs, s._sq = float(d["weight"]), float(d["abs_sum"]), float(d["sq_sum"])
        s._ape, s._mean, s._m2 = float(d["ape_sum"]), float(d["mean_true"]), float(d["m2_true"])
        s._shift = float(d["shift"])
        return s

    def copy(self) -> RegressionState:
        """An independent copy."""
        return RegressionState.from_dict(self.to_dict())


def _reg(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None) -> RegressionState:
    s = RegressionState()
    s.update(y_true, y_pred, sample_weight)
    return s


def _value(s: RegressionState, key: str) -> float:
    v = s.compute()[key] if s._w == 0 else None
    if v is not None:
        return v
    if key == "r2":
        return s.r2()
    total = {"mae": s._abs, "mse": s._sq, "mape": s._ape}
    if key == "rmse":
        return float(np.sqrt(s._sq / s._w))
    return total[key] / s._w


def mean_absolute_error(
    y_true: ArrayLike, y_pred: ArrayLike, *, sample_weight: ArrayLike | None = None
) -> float:
    """Mean absolute error.

    Example:
        >>> mean_absolute_error([3.0, -0.5, 2.0, 7.0], [2.5, 0.0, 2.0, 8.0])
        0.5
    """
    return _value(_reg(y_true, y_pred, sample_weight), "mae")


def mean_squared_error(
    y_true: ArrayLike, y_pred: ArrayLike, *, sample_weight: ArrayLike | None = None
) -> float:
    """Mean squared error.

    Example:
        >>> mean_squared_error([3.0, -0.5, 2.0, 7.0], [2.5, 0.0, 2.0, 8.0])
        0.375
    """
    return _value(_reg(y_true, y_pred, sample_weight), "mse")


def root_mean_squared_error(
    y_true: ArrayLike, y_pred: ArrayLike, *, sample_weight: ArrayLike | None = None
) -> float:
    """Square root of the mean squared error.

    Example:
        >>> round(root_mean_squared_error([3.0, -0.5, 2.0, 7.0], [2.5, 0.0, 2.0, 8.0]), 4)
        0.6124
    """
    return _value(_reg(y_true, y_pred, sample_weight), "rmse")


def r2_score(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    sample_weight: ArrayLike | None = None,
    force_finite: bool = True,
) -> float:
    """Coefficient of determination, as scikit-learn's ``r2_score``.

    For a constant ``y_true`` R^2 is undefined: with ``force_finite=True``
    (default, as scikit-learn) it is 1.0 for a perfect prediction and 0.0
    otherwise; with ``force_finite=False`` NaN (perfect) or ``-inf`` (not), with
    an :class:`UndefinedMetricWarning`. Fewer than two samples give NaN with a
    warning (scikit-learn does the same; for empty input it raises). The
    :class:`RegressionState` ``compute()`` reports NaN for a constant target.

    Example:
        >>> round(r2_score([3.0, -0.5, 2.0, 7.0], [2.5, 0.0, 2.0, 8.0]), 4)
        0.9486
        >>> r2_score([1.0, 1.0], [1.0, 2.0])
        0.0
    """
    s = _reg(y_true, y_pred, sample_weight)
    if s._n >= 2 and s._w > 0 and s._m2 == 0:
        perfect = s._sq == 0
        if force_finite:
            return 1.0 if perfect else 0.0
        warn_undefined("R^2 is undefined for a constant target; returning NaN or -inf")
        return float("nan") if perfect else float("-inf")
    return _value(s, "r2")


def mean_absolute_percentage_error(
    y_true: ArrayLike, y_pred: ArrayLike, *, sample_weight: ArrayLike | None = None
) -> float:
    """Mean of ``|y_pred - y_true| / max(|y_true|, eps)`` (a fraction, as scikit-learn).

    Example:
        >>> mean_absolute_percentage_error([1.0, 2.0], [1.5, 2.0])
        0.25
    """
    return _value(_reg(y_true, y_pred, sample_weight), "mape")
