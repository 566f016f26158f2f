"""The quality report: one call that joins metrics, intervals, curves, drift, label-free
estimates and slices into ranked findings (issue 3, ``tunelens.report/1``).

:func:`analyse` compares a *current* table (recent traffic) with a *reference* table
(the data the model was validated on), both holding the true label, the model's
prediction, optionally its scores, and the features:

1. **Metrics with 95% intervals** for both tables: accuracy and error rate (Wilson),
   precision and recall of the positive class (Wilson on their own denominators), F1
   and the macro averages (a bootstrap of the confusion matrix: multinomial resamples
   of its cells, exactly a row bootstrap for these metrics), ROC AUC (DeLong; for
   multiclass the macro average of one-vs-rest DeLong variances, treated as
   independent), average precision (the logit interval of Boyd et al. 2013), log loss
   and Brier score (normal interval of the mean per-row loss); regression MAE
   (normal), RMSE (normal on the MSE, square-rooted), R2 (delta method). A difference
   between reference and current is *significant* when ``|delta| > z * sqrt(se_ref^2
   + se_cur^2)``, the standard errors read off the intervals (half-width / z).
2. **Curves and tables**: ROC and precision-recall curves (thinned to at most 1000
   points), the reliability diagram and ECE (10 equal-width bins), the confusion
   matrices, score histograms by true class, the F1-maximising threshold and what it
   would change; for regression a sample of residuals against predictions and the
   error histogram.
3. **Drift** of every feature (:func:`tunelens.quality.drift.dataset_drift`), of the
   prediction (of the score, when there is one) and of the target, and one
   multivariate check (:mod:`tunelens.quality.multivariate`).
4. **Label-free estimates** of the current performance
   (:mod:`tunelens.quality.estimate`: binary and multiclass from the scores, regression
   MAE from a model of the error), beside the realised values.
5. **Weak slices** of the current data (:func:`tunelens.quality.slices.find_weak_slices`).
6. **Findings** ranked by severity, in plain words with the numbers and an action.

Example:
    >>> import numpy as np, pandas as pd
    >>> from tunelens.quality import analyse
    >>> rng = np.random.default_rng(0)
    >>> def table(n, shift):
    ...     x = rng.normal(shift, 1, n)
    ...     p = 1 / (1 + np.exp(-2 * x))
    ...     y = (rng.random(n) < p).astype(int)
    ...     return pd.DataFrame({"x": x, "y": y, "p": p, "pred": (p >= 0.5).astype(int)})
    >>> report = analyse(table(3000, 0.0), table(3000, 1.0), target="y", prediction="pred",
    ...                  score="p")
    >>> report.task, report.drift.features["x"].drifted
    ('binary', True)
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from tunelens._atomic import write_files
from tunelens.errors import InputError
from tunelens.findings import Finding, rank
from tunelens.metrics import (
    UndefinedMetricWarning,
    classification_metrics,
    confusion_matrix,
    mean_absolute_error,
    r2_score,
    root_mean_squared_error,
)
from tunelens.quality._tables import as_frame
from tunelens.quality.drift import ColumnDrift, DatasetDrift, column_drift, dataset_drift
from tunelens.quality.estimate import (
    EstimatedMetric,
    estimate_binary,
    estimate_multiclass,
    estimate_regression_mae,
)
from tunelens.quality.intervals import (
    average_precision_interval,
    confusion_bootstrap,
    delong_auc,
    mean_interval,
    ratio_of_means_interval,
    wilson_interval,
)
from tunelens.quality.multivariate import (
    MultivariateDrift,
    domain_classifier_drift,
    reconstruction_drift,
)
from tunelens.quality.slices import Slice, find_weak_slices

__all__ = ["SCHEMA", "MetricComparison", "QualityReport", "analyse"]

SCHEMA = "tunelens.report/1"
Task = Literal["binary", "multiclass", "regression"]
FloatArray = npt.NDArray[np.float64]

CLASSIFICATION_METRICS = (
    "accuracy",
    "error_rate",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
)
REGRESSION_METRICS = ("mae", "rmse", "r2")
#: Metrics where a larger value is worse.
LOWER_IS_BETTER = frozenset({"error_rate", "log_loss", "brier", "mae", "rmse"})
#: Metrics whose drop makes a headline finding.
_HEADLINE = ("accuracy", "f1", "roc_auc", "mae", "rmse", "r2")
_MAX_CURVE_POINTS = 1000
_RESIDUAL_SAMPLE = 2000
_HIST_BINS = 40
_CAL_BINS = 10
_N_BOOT = 2000
_EPS = float(np.finfo(np.float64).eps)


# ---------------------------------------------------------------- the report


@dataclass(frozen=True)
class MetricComparison:
    """A metric on the reference and the current data, and whether it changed.

    Attributes:
        metric: the metric name.
        reference: its reference value (NaN when undefined).
        current: its current value.
        delta: ``current - reference``.
        significant: ``|delta| > z * sqrt(se_ref^2 + se_cur^2)``.
        worse: the change is for the worse (up for losses, down otherwise).
        method: how the intervals were computed.
        p_value: two-sided normal p-value of the difference (NaN when undefined).
    """

    metric: str
    reference: float
    current: float
    delta: float
    significant: bool
    worse: bool
    method: str
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        """The report JSON ``comparison`` entry (without the metric name)."""
        return {
            "reference": _num(self.reference),
            "current": _num(self.current),
            "delta": _num(self.delta),
            "significant": bool(self.significant),
            "worse": bool(self.worse),
            "method": self.method,
            "p_value": _num(self.p_value),
        }


@dataclass(frozen=True)
class QualityReport:
    """The result of :func:`analyse`; plain data, see ``docs/report.md`` for the JSON.

    Attributes:
        task: ``"binary"``, ``"multiclass"`` or ``"regression"``.
        rows: ``{"reference": n, "current": n}``.
        columns: the target, prediction, score and feature columns used.
        positive: the positive class (binary), else None.
        classes: every class (classification), else None.
        metrics: ``{"reference": {...}, "current": {...}}``; current is empty without
            current labels.
        intervals: the 95% (or ``confidence``) intervals, same layout, ``(lo, hi)``.
        comparison: one entry per metric defined on both sides.
        per_class: multiclass precision, recall, F1 and support per class.
        confusion: ``{"labels", "reference", "current"}`` counts.
        curves: ROC, PR, calibration, score distribution, residuals, error distribution.
        threshold: the F1-maximising threshold block (binary with a score).
        drift: per-feature drift and the share drifted.
        prediction_drift: drift of the score (or of the predicted label).
        target_drift: drift of the target (None without current labels).
        multivariate: the multivariate drift check, or None.
        estimated: label-free estimates of the current performance, or None.
        slices: the weakest significant slices of the current data.
        findings: ranked findings.
        notes: caveats met while computing (e.g. a check skipped and why).
        timings: seconds per step.
    """

    task: Task
    rows: dict[str, int]
    columns: dict[str, Any]
    positive: Any
    classes: tuple[Any, ...] | None
    metrics: dict[str, dict[str, float]]
    intervals: dict[str, dict[str, tuple[float, float]]]
    comparison: tuple[MetricComparison, ...]
    per_class: dict[str, dict[str, dict[str, float]]] | None
    confusion: dict[str, Any] | None
    curves: dict[str, Any]
    threshold: dict[str, Any] | None
    drift: DatasetDrift | None
    prediction_drift: ColumnDrift | None
    target_drift: ColumnDrift | None
    multivariate: MultivariateDrift | None
    estimated: dict[str, EstimatedMetric] | None
    slices: tuple[Slice, ...]
    findings: tuple[Finding, ...]
    notes: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The ``tunelens.report/1`` document: JSON types only, NaN as None."""
        drift: dict[str, Any] | None = None
        if self.drift is not None:
            drift = {
                "features": {name: _drift_entry(d) for name, d in self.drift.features.items()},
                "share_drifted": float(self.drift.share_drifted),
                "dataset_drifted": bool(self.drift.dataset_drifted),
            }
        else:
            drift = {"features": {}, "share_drifted": 0.0, "dataset_drifted": False}
        drift["prediction"] = (
            None if self.prediction_drift is None else _drift_entry(self.prediction_drift)
        )
        drift["target"] = None if self.target_drift is None else _drift_entry(self.target_drift)
        drift["multivariate"] = None if self.multivariate is None else self.multivariate.to_dict()
        estimated: dict[str, Any] | None = None
        if self.estimated is not None:
            current = self.metrics.get("current", {})
            estimated = {
                "current": {k: _num(v.value) for k, v in self.estimated.items()},
                "intervals": {k: [_num(v.lo), _num(v.hi)] for k, v in self.estimated.items()},
                "realised": {k: _num(current[k]) for k in self.estimated if k in current},
            }
        doc: dict[str, Any] = {
            "schema": SCHEMA,
            "task": self.task,
            "rows": dict(self.rows),
            "columns": self.columns,
            "positive": None if self.positive is None else _label(self.positive),
            "classes": None if self.classes is None else [_label(c) for c in self.classes],
            "metrics": {side: _nums(values) for side, values in self.metrics.items()},
            "intervals": {
                side: {k: [_num(lo), _num(hi)] for k, (lo, hi) in values.items()}
                for side, values in self.intervals.items()
            },
            "comparison": {c.metric: c.to_dict() for c in self.comparison},
            "per_class": None
            if self.per_class is None
            else {
                side: {cls: _nums(v) for cls, v in table.items()}
                for side, table in self.per_class.items()
            },
            "confusion": self.confusion,
            "curves": self.curves,
            "threshold": self.threshold,
            "drift": drift,
            "estimated": estimated,
            "slices": [
                {**s.to_dict(), "p_value": _num(s.p_value), "q_value": _num(s.q_value)}
                for s in self.slices
            ],
            "findings": [
                {**f.to_dict(), "gain": None if f.gain is None else _num(f.gain)}
                for f in self.findings
            ],
            "notes": list(self.notes),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }
        cleaned: dict[str, Any] = _clean(doc)
        return cleaned

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 2) -> str:
        """The JSON text of :meth:`to_dict`; also written atomically to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            write_files([(Path(path), text.encode("utf-8"))])
        return text

    def to_html(self, path: str | Path) -> Path:
        """Write the self-contained HTML page (no network request) to ``path``, atomically."""
        from tunelens.report.html import write_html

        return write_html(self.to_dict(), path)

    def _repr_html_(self) -> str:
        from tunelens.report.html import render_html

        return render_html(self.to_dict(), full_page=False)


def _num(x: Any) -> float | None:
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def _nums(values: Mapping[str, Any]) -> dict[str, float | None]:
    return {k: _num(v) for k, v in values.items()}


def _label(x: Any) -> str:
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def _clean(x: Any) -> Any:
    """NaN/inf to None, numpy scalars and arrays to Python, tuples to lists."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        v = float(x)
        return v if math.isfinite(v) else None
    return x


def _drift_entry(d: ColumnDrift) -> dict[str, Any]:
    return {
        **d.to_dict(),
        "threshold": float(d.threshold),
        "kind": d.kind,
        "psi": None if d.psi is None else _num(d.psi),
    }


# ---------------------------------------------------------------- inputs


def _load(data: Any, name: str) -> pd.DataFrame:
    if isinstance(data, str | os.PathLike):
        from tunelens.io import ParquetColumns, open_table, read_table

        if open_table(Path(data)).format == "parquet":
            lazy = ParquetColumns(Path(data))
            lazy.attrs[_ROW_BASE] = 1
            return as_frame(lazy, name)
        loaded = as_frame(read_table(Path(data)), name)
        loaded.attrs[_ROW_BASE] = 1  # error messages count data rows of the file from 1
        return loaded
    frame = as_frame(data, name)
    if frame.columns.duplicated().any():
        dup = frame.columns[frame.columns.duplicated()][0]
        raise InputError(name, f"column {dup!r} appears twice", "give every column a distinct name")
    return frame


def _require(frame: pd.DataFrame, col: str, side: str, role: str) -> None:
    if col not in frame.columns:
        shown = ", ".join(map(str, list(frame.columns)[:20]))
        raise InputError(
            f"{side}[{col!r}]",
            f"no such column (the {role})",
            f"columns are: {shown}",
        )


_ROW_BASE = "tunelens_row_base"


def _first_bad(mask: npt.NDArray[np.bool_], frame: pd.DataFrame) -> int:
    """The first flagged row: a 0-based position in a table, a 1-based data row of a file."""
    return int(np.flatnonzero(mask)[0]) + int(frame.attrs.get(_ROW_BASE, 0))


def _labels(frame: pd.DataFrame, col: str, side: str, role: str) -> npt.NDArray[Any]:
    series = frame[col]
    na = series.isna().to_numpy()
    if na.any():
        raise InputError(
            f"{side}[{col!r}]",
            f"{int(na.sum())} missing {role} values (first at row {_first_bad(na, frame)})",
            f"drop the rows without a {role} or fill them",
        )
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.to_numpy(dtype=np.int64)
    if pd.api.types.is_float_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            bad = ~np.isfinite(values)
            raise InputError(
                f"{side}[{col!r}]",
                f"holds an infinite value at row {_first_bad(bad, frame)}",
                f"give finite {role} values",
            )
        if np.all(values == np.round(values)):
            return values.astype(np.int64)
        return values
    if pd.api.types.is_integer_dtype(series.dtype):
        return series.to_numpy(dtype=np.int64)
    return series.astype(str).to_numpy(dtype=object)


def _numbers(frame: pd.DataFrame, col: str, side: str, role: str) -> FloatArray:
    series = frame[col]
    if pd.api.types.is_bool_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64)
    elif pd.api.types.is_numeric_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        coerced = pd.to_numeric(series, errors="coerce")
        text = coerced.isna().to_numpy() & series.notna().to_numpy()
        if text.any():
            i = int(np.flatnonzero(text)[0])
            raise InputError(
                f"{side}[{col!r}]",
                f"holds text ({series.iloc[i]!r} at row {_first_bad(text, frame)}), "
                "expected numbers",
                f"give the {role} as numbers",
            )
        values = coerced.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        what = "missing" if np.isnan(values[i]) else "infinite"
        raise InputError(
            f"{side}[{col!r}]",
            f"{int(bad.sum())} {what} {role} values (first at row {_first_bad(bad, frame)})",
            f"give a finite {role} on every row",
        )
    return values


def _infer_task(y_ref: npt.NDArray[Any], classes: list[Any]) -> Task:
    if y_ref.dtype.kind == "f":
        return "regression"
    return "binary" if len(classes) <= 2 else "multiclass"


@dataclass
class _Side:
    name: str
    n: int
    y: npt.NDArray[Any] | None
    pred: npt.NDArray[Any]
    score: FloatArray | None  # (n,) binary positive-class score, (n, K) multiclass


# ---------------------------------------------------------------- metrics


def _se(lo: float, hi: float, z: float) -> float:
    return (hi - lo) / (2.0 * z)


def _per_row_log_loss(y_bin: FloatArray, p: FloatArray) -> FloatArray:
    q = np.clip(p, _EPS, 1.0 - _EPS)
    out: FloatArray = -(y_bin * np.log(q) + (1.0 - y_bin) * np.log1p(-q))
    return out


def _f1_from_counts(c: FloatArray, pos: int) -> FloatArray:
    tp = c[:, pos, pos]
    fp = c[:, :, pos].sum(axis=1) - tp
    fn = c[:, pos, :].sum(axis=1) - tp
    out: FloatArray = 2 * tp / (2 * tp + fp + fn)
    return out


def _macro(c: FloatArray, which: str) -> FloatArray:
    tp = np.diagonal(c, axis1=1, axis2=2)
    if which == "precision":
        den = c.sum(axis=1)
    elif which == "recall":
        den = c.sum(axis=2)
    else:
        den = (c.sum(axis=1) + c.sum(axis=2)) / 2.0
    ratio = np.where(den > 0, tp / np.where(den > 0, den, 1.0), 0.0)
    out: FloatArray = ratio.mean(axis=1)
    return out


def _classification_block(
    side: _Side,
    task: Task,
    classes: list[Any],
    positive: Any,
    confidence: float,
    seed: int,
) -> tuple[dict[str, float], dict[str, tuple[float, float]], dict[str, str], FloatArray]:
    """Metrics, intervals, interval methods and the confusion matrix of one side."""
    assert side.y is not None
    y, pred = side.y, side.pred
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        all_metrics = classification_metrics(
            y, pred, side.score, positive=positive if task == "binary" else None
        )
    metrics = {k: float(all_metrics[k]) for k in CLASSIFICATION_METRICS if k in all_metrics}
    cm = np.asarray(confusion_matrix(y, pred, labels=np.asarray(classes, dtype=object)), float)
    n = float(cm.sum())
    intervals: dict[str, tuple[float, float]] = {}
    methods: dict[str, str] = {}
    correct = float(np.trace(cm))
    intervals["accuracy"] = wilson_interval(correct, n, confidence=confidence)
    lo, hi = wilson_interval(n - correct, n, confidence=confidence)
    intervals["error_rate"] = (lo, hi)
    methods["accuracy"] = methods["error_rate"] = "wilson"
    if task == "binary":
        pos = classes.index(positive)
        tp = cm[pos, pos]
        predicted_pos = cm[:, pos].sum()
        actual_pos = cm[pos, :].sum()
        intervals["precision"] = wilson_interval(tp, predicted_pos, confidence=confidence)
        intervals["recall"] = wilson_interval(tp, actual_pos, confidence=confidence)
        methods["precision"] = methods["recall"] = "wilson"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            intervals["f1"] = confusion_bootstrap(
                cm,
                lambda c: _f1_from_counts(c, pos),
                n_boot=_N_BOOT,
                confidence=confidence,
                seed=seed,
            )
        methods["f1"] = "confusion bootstrap"
    else:
        for name in ("precision", "recall", "f1"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                intervals[name] = confusion_bootstrap(
                    cm,
                    lambda c, w=name: _macro(c, w),  # type: ignore[misc]
                    n_boot=_N_BOOT,
                    confidence=confidence,
                    seed=seed,
                )
            methods[name] = "confusion bootstrap"
    if side.score is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            if task == "binary":
                y_bin = (y == positive).astype(np.float64)
                s = side.score
                if "roc_auc" in metrics:
                    _, lo, hi, _ = delong_auc(y_bin, s, confidence=confidence)
                    intervals["roc_auc"] = (lo, hi)
                    methods["roc_auc"] = "delong"
                if "pr_auc" in metrics:
                    intervals["pr_auc"] = average_precision_interval(
                        metrics["pr_auc"], int(y_bin.sum()), confidence=confidence
                    )
                    methods["pr_auc"] = "logit"
                if "log_loss" in metrics:
                    intervals["log_loss"] = _centred(
                        _per_row_log_loss(y_bin, s), metrics["log_loss"], confidence
                    )
                    methods["log_loss"] = "normal"
                if "brier" in metrics:
                    intervals["brier"] = _centred((s - y_bin) ** 2, metrics["brier"], confidence)
                    methods["brier"] = "normal"
            else:
                P = side.score
                onehot = (y[:, None] == np.asarray(classes, dtype=object)[None, :]).astype(float)
                if "roc_auc" in metrics:
                    variances = []
                    for k in range(len(classes)):
                        _, _, _, v = delong_auc(onehot[:, k], P[:, k], confidence=confidence)
                        variances.append(v)
                    se = math.sqrt(float(np.nansum(variances))) / len(classes)
                    auc = metrics["roc_auc"]
                    intervals["roc_auc"] = (max(0.0, auc - z * se), min(1.0, auc + z * se))
                    methods["roc_auc"] = "delong (macro, classes independent)"
                if "log_loss" in metrics:
                    p_true = np.clip((P * onehot).sum(axis=1), _EPS, 1.0)
                    intervals["log_loss"] = _centred(
                        -np.log(p_true), metrics["log_loss"], confidence
                    )
                    methods["log_loss"] = "normal"
                if "brier" in metrics:
                    rows = ((P - onehot) ** 2).sum(axis=1)
                    intervals["brier"] = _centred(rows, metrics["brier"], confidence)
                    methods["brier"] = "normal"
    return metrics, intervals, methods, cm


def _centred(rows: FloatArray, value: float, confidence: float) -> tuple[float, float]:
    """The normal interval of a mean of per-row values, scaled and centred on ``value``.

    The per-row values may differ from the metric's own definition by a constant factor
    (a multiclass Brier score's normalisation, clipping); the spread is rescaled so the
    interval is centred on the metric.
    """
    lo, hi = mean_interval(rows, confidence=confidence)
    mean = float(rows.mean())
    scale = value / mean if mean > 0 and math.isfinite(value) else 1.0
    half = (hi - lo) / 2.0 * scale
    return (value - half, value + half)


def _regression_block(
    side: _Side, confidence: float
) -> tuple[dict[str, float], dict[str, tuple[float, float]], dict[str, str]]:
    assert side.y is not None
    y = side.y.astype(np.float64)
    pred = side.pred.astype(np.float64)
    err = y - pred
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        metrics = {
            "mae": float(mean_absolute_error(y, pred)),
            "rmse": float(root_mean_squared_error(y, pred)),
            "r2": float(r2_score(y, pred)),
        }
        intervals: dict[str, tuple[float, float]] = {}
        intervals["mae"] = mean_interval(np.abs(err), confidence=confidence)
        lo, hi = mean_interval(err**2, confidence=confidence)
        intervals["rmse"] = (math.sqrt(max(lo, 0.0)), math.sqrt(max(hi, 0.0)))
        _, rlo, rhi = ratio_of_means_interval(err**2, (y - y.mean()) ** 2, confidence=confidence)
        intervals["r2"] = (1.0 - rhi, 1.0 - rlo)
    methods = {"mae": "normal", "rmse": "normal (MSE, square-rooted)", "r2": "delta method"}
    return metrics, intervals, methods


def _compare(
    ref: Mapping[str, float],
    cur: Mapping[str, float],
    ref_iv: Mapping[str, tuple[float, float]],
    cur_iv: Mapping[str, tuple[float, float]],
    methods: Mapping[str, str],
    confidence: float,
) -> tuple[MetricComparison, ...]:
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    out = []
    for name, r in ref.items():
        if name not in cur:
            continue
        c = cur[name]
        delta = c - r
        se = math.nan
        if name in ref_iv and name in cur_iv:
            se = math.hypot(_se(*ref_iv[name], z), _se(*cur_iv[name], z))
        if math.isfinite(delta) and math.isfinite(se) and se > 0:
            zz = abs(delta) / se
            p = float(2.0 * stats.norm.sf(zz))
            significant = zz > z
        else:
            p = math.nan
            significant = bool(math.isfinite(delta) and se == 0 and delta != 0)
        worse = bool(delta > 0) if name in LOWER_IS_BETTER else bool(delta < 0)
        out.append(
            MetricComparison(
                metric=name,
                reference=r,
                current=c,
                delta=delta,
                significant=bool(significant),
                worse=worse and math.isfinite(delta) and delta != 0,
                method=methods.get(name, "interval"),
                p_value=p,
            )
        )
    return tuple(out)


# ---------------------------------------------------------------- curves


def _thin(*arrays: FloatArray, limit: int = _MAX_CURVE_POINTS) -> list[list[float]]:
    """Keep at most ``limit`` points, evenly spaced, always the first and the last."""
    n = arrays[0].size
    if n > limit:
        idx = np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))
        arrays = tuple(a[idx] for a in arrays)
    return [[float(f"{v:.6g}") for v in a.tolist()] for a in arrays]


def _counts_by_threshold(
    y_bin: FloatArray, s: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Every distinct score as a threshold (descending) with the positives and negatives
    scoring at or above it: scikit-learn's ``_binary_clf_curve``, from two value sorts."""
    pos = y_bin > 0.5
    ps, ns = np.sort(s[pos]), np.sort(s[~pos])
    thresholds = np.unique(np.concatenate([ps, ns]))[::-1]
    tps = (ps.size - np.searchsorted(ps, thresholds, side="left")).astype(np.float64)
    fps = (ns.size - np.searchsorted(ns, thresholds, side="left")).astype(np.float64)
    return thresholds, tps, fps


def _binary_curves(
    y_bin: FloatArray, s: FloatArray, counts: tuple[FloatArray, FloatArray, FloatArray]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if 0 < y_bin.sum() < y_bin.size:
        _, tps, fps = counts
        fpr = np.concatenate([[0.0], fps / fps[-1]])
        tpr = np.concatenate([[0.0], tps / tps[-1]])
        auc = float(np.trapezoid(tpr, fpr))
        fx, ty = _thin(fpr, tpr)
        out["roc"] = {"fpr": fx, "tpr": ty, "auc": auc}
        precision = tps / (tps + fps)
        recall = tps / tps[-1]
        # average precision = sum (R_n - R_{n-1}) P_n (scikit-learn's step sum)
        ap = float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))
        # drawn as scikit-learn returns it: recall falling to 0 where precision is 1
        rx, py = _thin(
            np.concatenate([recall[::-1], [0.0]]), np.concatenate([precision[::-1], [1.0]])
        )
        out["pr"] = {"recall": rx, "precision": py, "ap": ap}
    if s.size and s.min() >= 0.0 and s.max() <= 1.0 and 0 < y_bin.sum() < y_bin.size:
        # 10 equal-width bins, a value on an inner edge in the lower bin (as
        # tunelens.metrics.expected_calibration_error and scikit-learn bin)
        edges = np.linspace(0.0, 1.0, _CAL_BINS + 1)
        idx = np.searchsorted(edges[1:-1], s, side="left")
        count = np.bincount(idx, minlength=_CAL_BINS)
        sum_p = np.bincount(idx, weights=s, minlength=_CAL_BINS)
        sum_y = np.bincount(idx, weights=y_bin, minlength=_CAL_BINS)
        keep = count > 0
        mean_p = sum_p[keep] / count[keep]
        frac = sum_y[keep] / count[keep]
        ece = float(np.sum(count[keep] * np.abs(frac - mean_p)) / s.size)
        out["calibration"] = {
            "mean_predicted": mean_p.tolist(),
            "fraction_positive": frac.tolist(),
            "count": count[keep].astype(int).tolist(),
            "ece": ece,
        }
    return out


def _counts_at(y_bin: FloatArray, s: FloatArray, t: float) -> dict[str, float]:
    yhat = s >= t
    pos = y_bin > 0.5
    tp = float(np.count_nonzero(yhat & pos))
    fp = float(np.count_nonzero(yhat & ~pos))
    fn = float(np.count_nonzero(~yhat & pos))
    tn = float(y_bin.size) - tp - fp - fn
    return {
        "precision": tp / (tp + fp) if tp + fp else math.nan,
        "recall": tp / (tp + fn) if tp + fn else math.nan,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan,
        "accuracy": (tp + tn) / y_bin.size if y_bin.size else math.nan,
        "predicted_positive": tp + fp,
    }


def _threshold_block(
    y_bin: FloatArray,
    s: FloatArray,
    threshold: float,
    counts: tuple[FloatArray, FloatArray, FloatArray],
) -> dict[str, Any] | None:
    if not 0 < y_bin.sum() < y_bin.size:
        return None
    thresholds, tps, fps = counts
    f1 = 2 * tps / (tps + fps + tps[-1])
    best = float(thresholds[int(np.argmax(f1))])
    return {
        "threshold": float(threshold),
        "best_threshold": best,
        "at_threshold": _counts_at(y_bin, s, threshold),
        "at_best": _counts_at(y_bin, s, best),
    }


def _histograms(
    values: Mapping[str, FloatArray], groups: Mapping[str, npt.NDArray[Any] | None]
) -> dict[str, Any]:
    """Histograms of each side's values on shared edges, by group label (or "all")."""
    pooled = np.concatenate([v for v in values.values() if v.size])
    lo, hi = (
        np.quantile(pooled, [0.001, 0.999]) if pooled.size > 1000 else (pooled.min(), pooled.max())
    )
    if not hi > lo:
        lo, hi = float(pooled.min()) - 0.5, float(pooled.max()) + 0.5
    edges = np.linspace(float(lo), float(hi), _HIST_BINS + 1)
    out: dict[str, Any] = {"edges": [float(f"{e:.6g}") for e in edges]}
    for side, v in values.items():
        idx = np.clip(np.searchsorted(edges[1:-1], v, side="right"), 0, _HIST_BINS - 1)
        g = groups.get(side)
        if g is None:
            out[side] = {"all": np.bincount(idx, minlength=_HIST_BINS).tolist()}
        else:
            codes, uniques = pd.factorize(g, sort=True)
            flat = np.bincount(codes * _HIST_BINS + idx, minlength=len(uniques) * _HIST_BINS)
            table = flat.reshape(len(uniques), _HIST_BINS)
            out[side] = {_label(u): table[i].tolist() for i, u in enumerate(uniques)}
    return out


# ---------------------------------------------------------------- findings


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x:.3f}" if abs(x) < 1000 else f"{x:,.0f}"


def _severity_of_drop(
    name: str, delta: float, reference: float
) -> Literal["high", "medium", "low"]:
    if name in ("mae", "rmse"):
        rel = abs(delta) / abs(reference) if reference else math.inf
        return "high" if rel >= 0.2 else "medium" if rel >= 0.05 else "low"
    if abs(delta) >= 0.05:
        return "high"
    return "medium" if abs(delta) >= 0.02 else "low"


def _findings(
    task: Task,
    comparison: Sequence[MetricComparison],
    intervals_cur: Mapping[str, tuple[float, float]],
    drift: DatasetDrift | None,
    prediction_drift: ColumnDrift | None,
    multivariate: MultivariateDrift | None,
    estimated: Mapping[str, EstimatedMetric] | None,
    ref_metrics: Mapping[str, float],
    slices: Sequence[Slice],
    curves: Mapping[str, Any],
    has_labels: bool,
) -> list[Finding]:
    out: list[Finding] = []
    drifted = (
        sorted(
            ((n, d) for n, d in drift.features.items() if d.drifted),
            key=lambda item: -_drift_strength(item[1]),
        )
        if drift is not None
        else []
    )
    drift_text = ""
    if drift is not None and drift.features:
        if drifted:
            name, d = drifted[0]
            drift_text = (
                f"; {len(drifted)} of {len(drift.features)} features drifted, strongest "
                f"{name} ({_method_text(d)})"
            )
        else:
            drift_text = f"; none of {len(drift.features)} features drifted"
    slice_text = ""
    if slices:
        s = slices[0]
        what = "error" if s.metric == "error_rate" else "loss"
        value = f"{s.value:.0%}" if s.metric == "error_rate" else _fmt(s.value)
        slice_text = f"; worst slice {s.condition}, {what} {value} on {s.rows:,} rows"
    action = "retrain with recent labelled data (tune on the current window and the reference)"
    if slices:
        action += f", or add a feature that separates {slices[0].condition}"
    for c in comparison:
        if c.metric not in _HEADLINE or not (c.significant and c.worse):
            continue
        lo, hi = intervals_cur.get(c.metric, (math.nan, math.nan))
        verb = "rose" if c.metric in LOWER_IS_BETTER else "fell"
        out.append(
            Finding(
                kind="metric_drop",
                severity=_severity_of_drop(c.metric, c.delta, c.reference),
                where=f"current data, {c.metric}",
                evidence=(
                    f"{c.metric} {verb} from {_fmt(c.reference)} to {_fmt(c.current)} "
                    f"(interval {_fmt(lo)}-{_fmt(hi)}, p={c.p_value:.2g})" + drift_text + slice_text
                ),
                action=action,
                gain=abs(c.delta),
            )
        )
    if estimated is not None and not has_labels:
        for name, est in estimated.items():
            ref = ref_metrics.get(name, math.nan)
            higher_better = name not in LOWER_IS_BETTER and name != "mae"
            dropped = est.hi < ref if higher_better else est.lo > ref
            if name in ("accuracy", "roc_auc", "f1", "mae") and dropped:
                delta = est.value - ref
                out.append(
                    Finding(
                        kind="metric_drop",
                        severity=_severity_of_drop(name, delta, ref),
                        where=f"current data, estimated {name} (no labels yet)",
                        evidence=(
                            f"estimated {name} {_fmt(est.value)} (interval {_fmt(est.lo)}-"
                            f"{_fmt(est.hi)}) against {_fmt(ref)} on the reference" + drift_text
                        ),
                        action="collect labels for the current data and retrain with them; "
                        "meanwhile watch the drifted features",
                        gain=abs(delta),
                    )
                )
    if drifted:
        assert drift is not None
        names = ", ".join(f"{n} ({_method_text(d)})" for n, d in drifted[:5])
        more = f" and {len(drifted) - 5} more" if len(drifted) > 5 else ""
        out.append(
            Finding(
                kind="data_drift",
                severity="high" if drift.dataset_drifted else "medium",
                where=", ".join(n for n, _ in drifted[:5]) + (", ..." if more else ""),
                evidence=(
                    f"{len(drifted)} of {len(drift.features)} features drifted "
                    f"(share {drift.share_drifted:.2f}): {names}{more}"
                ),
                action="retrain on data that covers the current distribution "
                "(weight recent rows), or check the upstream pipeline of these features",
            )
        )
    if multivariate is not None and multivariate.drifted:
        what = (
            f"PCA reconstruction error {_fmt(multivariate.statistic)} outside the reference "
            f"band {_fmt(multivariate.lower or math.nan)}-{_fmt(multivariate.upper or math.nan)}"
            if multivariate.method == "pca_reconstruction"
            else f"a classifier tells current from reference rows with AUC "
            f"{_fmt(multivariate.statistic)} (threshold {_fmt(multivariate.upper or math.nan)})"
        )
        alone = (
            "the relations between features changed although no single feature drifted"
            if not drifted
            else "the joint distribution of the features changed"
        )
        out.append(
            Finding(
                kind="data_drift",
                severity="medium",
                where="joint distribution of "
                + ", ".join(multivariate.columns[:6])
                + (", ..." if len(multivariate.columns) > 6 else ""),
                evidence=f"{alone}: {what}",
                action="retrain on recent data; look for a changed correlation between features",
            )
        )
    if prediction_drift is not None and prediction_drift.drifted:
        out.append(
            Finding(
                kind="prediction_drift",
                severity="medium",
                where="model output",
                evidence=f"the model's outputs drifted ({_method_text(prediction_drift)})",
                action="check the drifted inputs; if labels confirm a drop, retrain on recent data",
            )
        )
    for s in slices[:3]:
        what = "error rate" if s.metric == "error_rate" else "mean loss"
        value = f"{s.value:.1%}" if s.metric == "error_rate" else _fmt(s.value)
        whole = s.value - s.gap
        whole_text = f"{whole:.1%}" if s.metric == "error_rate" else _fmt(whole)
        out.append(
            Finding(
                kind="weak_slice",
                severity=_slice_severity(s),
                where=s.condition,
                evidence=(
                    f"{what} {value} on {s.rows:,} rows against {whole_text} overall "
                    f"(q={s.q_value:.2g})"
                ),
                action=f"add training data or a feature for {s.condition}; "
                "consider a separate threshold or model for this slice",
                gain=s.gap,
            )
        )
    cal = curves.get("calibration")
    if task == "binary" and isinstance(cal, Mapping) and "current" in cal:
        ece = float(cal["current"]["ece"])
        ref_ece = float(cal["reference"]["ece"]) if "reference" in cal else math.nan
        if ece >= 0.05 and not ece <= 1.5 * ref_ece:
            out.append(
                Finding(
                    kind="calibration",
                    severity="high" if ece >= 0.1 else "medium",
                    where="current data, predicted probabilities",
                    evidence=f"expected calibration error {ece:.3f} "
                    f"(reference {_fmt(ref_ece)}, 10 bins)",
                    action="recalibrate the scores on recent labelled data "
                    "(isotonic or Platt scaling)",
                )
            )
    return rank(out)


def _slice_severity(s: Slice) -> Literal["high", "medium", "low"]:
    """By the gap: absolute for error rates, relative to the overall mean for losses."""
    gap = s.gap if s.metric == "error_rate" else s.gap / max(abs(s.value - s.gap), 1e-12) / 2
    return "high" if gap >= 0.15 else "medium" if gap >= 0.08 else "low"


def _drift_strength(d: ColumnDrift) -> float:
    if d.p_value is not None:
        return -math.log10(max(d.p_value, 1e-300)) / 300.0 + d.statistic * 1e-6
    return d.statistic / max(d.threshold, 1e-12)


def _method_text(d: ColumnDrift) -> str:
    names = {
        "ks": "KS",
        "chi2": "chi-square",
        "wasserstein": "Wasserstein",
        "psi": "PSI",
        "jensenshannon": "Jensen-Shannon",
    }
    text = f"{names.get(d.method, d.method)} {d.statistic:.3g}"
    if d.p_value is not None:
        text += f", p={d.p_value:.2g}"
    return text


# ---------------------------------------------------------------- analyse


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t


def _score_columns(score: str | Sequence[str] | None) -> list[str]:
    if score is None:
        return []
    if isinstance(score, str):
        return [s.strip() for s in score.split(",") if s.strip()] if "," in score else [score]
    cols = [str(s) for s in score]
    if not cols:
        raise InputError("score", "is an empty list", "give a column name or None")
    return cols


def analyse(
    reference: Any,
    current: Any,
    *,
    target: str,
    prediction: str,
    score: str | Sequence[str] | None = None,
    task: Task | None = None,
    features: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    positive: Any = None,
    threshold: float = 0.5,
    current_labels: bool = True,
    drift_options: Mapping[str, Mapping[str, Any]] | None = None,
    large_n: int = 1000,
    drift_share: float = 0.5,
    multivariate: Literal["pca", "domain_classifier"] | None = "pca",
    estimate: bool = True,
    slices: bool = True,
    max_slices: int = 10,
    confidence: float = 0.95,
    seed: int = 0,
) -> QualityReport:
    """Analyse a model's quality on ``current`` against ``reference``.

    Args:
        reference: the reference table: a pandas DataFrame, a pyarrow Table, or the
            path of a CSV or Parquet file; it must hold labels.
        current: the current table, same forms.
        target: the true label column.
        prediction: the predicted label (or predicted value for regression) column.
        score: binary: the column of the positive class's score (any monotone score;
            probabilities in [0, 1] add log loss, Brier and calibration); multiclass:
            one column per class in sorted class order, as a list or a comma-separated
            string. None: no score-based metrics, curves or estimates.
        task: ``"binary"``, ``"multiclass"`` or ``"regression"``; None infers it from
            the reference target (non-integer floats: regression; else by the classes).
        features: the feature columns; None: every other column of the reference
            (not the target, prediction, score or ``exclude`` columns, nor dates).
        exclude: columns that are not features (ids, timestamps).
        positive: the positive class of a binary task; None: the larger label.
        threshold: the decision threshold on the score that the prediction column is
            assumed to follow (for the label-free estimate and the threshold block).
        current_labels: False when the current data has no labels yet: then only the
            estimates, drift and curves of the reference are reported.
        drift_options: per-column drift overrides (``kind``, ``method``,
            ``threshold``, ``large_n``), see :func:`tunelens.quality.drift.dataset_drift`.
        large_n: sample size at which drift switches from p-value tests to distances.
        drift_share: share of drifted features at which the dataset counts as drifted.
        multivariate: ``"pca"`` (reconstruction error), ``"domain_classifier"`` or None.
        estimate: compute label-free estimates of the current performance.
        slices: search the current data for weak slices (needs current labels).
        max_slices: most slices reported.
        confidence: the level of every interval.
        seed: seeds every random step (bootstrap, subsampling); results are
            deterministic.

    Returns:
        A :class:`QualityReport`.

    Raises:
        InputError: naming the table and column at fault: a missing column, a missing
            or infinite label, text in a score column, a class in the current labels
            that the reference never shows, an empty table, a bad argument.
    """
    timer = _Timer()
    started = time.perf_counter()
    if not 0.0 < float(confidence) < 1.0:
        raise InputError("confidence", f"expected 0 < confidence < 1, got {confidence!r}")
    if task is not None and task not in ("binary", "multiclass", "regression"):
        raise InputError("task", f"unknown task {task!r}", "use binary, multiclass or regression")
    if multivariate not in ("pca", "domain_classifier", None):
        raise InputError(
            "multivariate",
            f"unknown check {multivariate!r}",
            "use 'pca', 'domain_classifier' or None",
        )
    with timer.step("load"):
        ref_df = _load(reference, "reference")
        cur_df = _load(current, "current")
    for frame, where in ((ref_df, "reference"), (cur_df, "current")):
        if len(frame) == 0:
            raise InputError(where, "has no rows", "give a table with at least one row")
    score_cols = _score_columns(score)
    _require(ref_df, target, "reference", "target")
    if current_labels:
        _require(cur_df, target, "current", "target")
    for frame, where in ((ref_df, "reference"), (cur_df, "current")):
        _require(frame, prediction, where, "prediction")
        for col in score_cols:
            _require(frame, col, where, "score")
    notes: list[str] = []

    # ---- labels, predictions, task, classes
    with timer.step("validate"):
        y_ref = _labels(ref_df, target, "reference", "target")
        y_cur = _labels(cur_df, target, "current", "target") if current_labels else None
        if task is None and _looks_continuous(ref_df[target], y_ref):
            task = "regression"
        if task == "regression":
            y_ref = _numbers(ref_df, target, "reference", "target")
            if current_labels:
                y_cur = _numbers(cur_df, target, "current", "target")
            p_ref = _numbers(ref_df, prediction, "reference", "prediction")
            p_cur = _numbers(cur_df, prediction, "current", "prediction")
            classes: list[Any] = []
        else:
            if y_ref.dtype.kind == "f":
                raise InputError(
                    f"reference[{target!r}]",
                    f"task={task!r} but the target holds non-integer numbers",
                    "use task='regression' or give class labels",
                )
            p_ref = _labels(ref_df, prediction, "reference", "prediction")
            p_cur = _labels(cur_df, prediction, "current", "prediction")
            y_ref, p_ref, p_cur, y_cur = _common_label_type(y_ref, p_ref, p_cur, y_cur)
            ref_classes = set(pd.unique(y_ref).tolist())
            if y_cur is not None:
                unseen = sorted(set(pd.unique(y_cur).tolist()) - ref_classes, key=str)
                if unseen:
                    raise InputError(
                        f"current[{target!r}]",
                        f"classes {unseen} never appear in the reference labels",
                        "give a reference that has labelled rows of every class, "
                        "or drop those rows",
                    )
            seen = (
                set(ref_classes) | set(pd.unique(p_ref).tolist()) | set(pd.unique(p_cur).tolist())
            )
            classes = sorted(seen, key=_sort_key)
            inferred: Task = "binary" if len(classes) <= 2 else "multiclass"
            if task is None:
                task = inferred
            elif task == "binary" and inferred == "multiclass":
                raise InputError(
                    "task",
                    f"task='binary' but the labels and predictions hold {len(classes)} classes",
                    "use task='multiclass'",
                )
        if task == "binary":
            positive = classes[-1] if positive is None else _match_label(positive, classes)
            if len(classes) == 1:
                notes.append("only one class appears; ROC AUC and curves are undefined")
        elif positive is not None and task == "regression":
            raise InputError("positive", "applies to binary tasks only")
        s_ref, s_cur = _scores(ref_df, cur_df, score_cols, task, classes, positive)
    assert task is not None
    ref = _Side("reference", len(ref_df), y_ref, p_ref, s_ref)
    cur = _Side("current", len(cur_df), y_cur, p_cur, s_cur)
    has_labels = y_cur is not None

    # ---- metrics and intervals, curves and the threshold (one job on the pool below)
    metrics: dict[str, dict[str, float]] = {}
    intervals: dict[str, dict[str, tuple[float, float]]] = {}
    methods: dict[str, str] = {}
    confusion: dict[str, Any] | None = None
    per_class: dict[str, dict[str, dict[str, float]]] | None = None
    comparison: tuple[MetricComparison, ...] = ()
    curves: dict[str, Any] = {
        "roc": None,
        "pr": None,
        "calibration": None,
        "score_distribution": None,
        "residuals": None,
        "error_distribution": None,
    }
    threshold_block: dict[str, Any] | None = None
    sides = [ref, cur] if has_labels else [ref]
    curve_notes: list[str] = []

    def run_metrics_and_curves() -> None:
        nonlocal confusion, per_class, comparison, threshold_block
        with timer.step("metrics"):
            cms: dict[str, FloatArray] = {}
            for side in sides:
                if task == "regression":
                    m, iv, meth = _regression_block(side, confidence)
                else:
                    m, iv, meth, cm = _classification_block(
                        side, task, classes, positive, confidence, seed
                    )
                    cms[side.name] = cm
                metrics[side.name] = m
                intervals[side.name] = iv
                methods.update(meth)
            if task != "regression":
                confusion = {"labels": [_label(c) for c in classes]}
                for name, cm in cms.items():
                    confusion[name] = cm.astype(np.int64).tolist()
            if task == "multiclass":
                per_class = {name: _per_class(cm, classes) for name, cm in cms.items()}
            comparison = (
                _compare(
                    metrics["reference"],
                    metrics["current"],
                    intervals["reference"],
                    intervals["current"],
                    methods,
                    confidence,
                )
                if has_labels
                else ()
            )
            if not has_labels:
                metrics["current"] = {}
                intervals["current"] = {}

        # ---- curves and the threshold
        with timer.step("curves"):
            if task == "binary" and s_ref is not None and s_cur is not None:
                per_side: dict[str, dict[str, Any]] = {}
                side_counts: dict[str, tuple[FloatArray, FloatArray, FloatArray]] = {}
                for side in sides:
                    assert side.y is not None and side.score is not None
                    y_side = (side.y == positive).astype(np.float64)
                    side_counts[side.name] = _counts_by_threshold(y_side, side.score)
                    per_side[side.name] = _binary_curves(y_side, side.score, side_counts[side.name])
                for key in ("roc", "pr", "calibration"):
                    got = {name: c[key] for name, c in per_side.items() if key in c}
                    curves[key] = got or None
                curves["score_distribution"] = _histograms(
                    {"reference": s_ref, "current": s_cur},
                    {"reference": y_ref, "current": y_cur},
                )
                if has_labels:
                    assert y_cur is not None
                    threshold_block = _threshold_block(
                        (y_cur == positive).astype(np.float64),
                        s_cur,
                        threshold,
                        side_counts["current"],
                    )
                del side_counts  # 3 arrays of up to n values per side
                disagree = float(np.mean((s_cur >= threshold) != (p_cur == positive)))
                if disagree > 0.005:
                    curve_notes.append(
                        f"the prediction column differs from score >= {threshold:g} on "
                        f"{disagree:.1%} of current rows; estimates assume that rule "
                        "(set `threshold`)"
                    )
            elif task == "regression":
                rng = np.random.default_rng(seed)
                residuals: dict[str, Any] = {}
                errors: dict[str, FloatArray] = {}
                for side in sides:
                    assert side.y is not None
                    err = side.y.astype(np.float64) - side.pred.astype(np.float64)
                    errors[side.name] = err
                    take = (
                        np.sort(rng.choice(side.n, _RESIDUAL_SAMPLE, replace=False))
                        if side.n > _RESIDUAL_SAMPLE
                        else np.arange(side.n)
                    )
                    pr, rs = _thin(side.pred[take].astype(np.float64), err[take], limit=10**9)
                    residuals[side.name] = {"prediction": pr, "residual": rs}
                curves["residuals"] = residuals
                hist = _histograms(errors, {})
                curves["error_distribution"] = {
                    "edges": hist["edges"],
                    **{name: hist[name]["all"] for name in errors},
                }

    # ---- drift
    excluded = {target, prediction, *score_cols, *exclude}
    feature_cols = _feature_columns(ref_df, cur_df, features, excluded, notes)
    # The four analyses below are independent; they run on two threads (their numpy,
    # SciPy and Arrow work releases the GIL), each step's notes kept in a fixed order.
    step_notes: dict[str, list[str]] = {k: [] for k in ("drift", "mv", "estimate", "slices")}

    def run_drift() -> tuple[DatasetDrift | None, ColumnDrift | None, ColumnDrift | None]:
        with timer.step("drift"):
            drift = None
            if feature_cols:
                drift = dataset_drift(
                    ref_df,
                    cur_df,
                    columns=feature_cols,
                    per_column=drift_options,
                    share=drift_share,
                    large_n=large_n,
                )
            if task == "binary" and s_ref is not None and s_cur is not None:
                prediction_drift = column_drift(s_ref, s_cur, kind="numeric", large_n=large_n)
            else:
                kind = "numeric" if task == "regression" else "categorical"
                prediction_drift = column_drift(p_ref, p_cur, kind=kind, large_n=large_n)
            target_drift = None
            if y_cur is not None:
                kind = "numeric" if task == "regression" else "categorical"
                target_drift = column_drift(y_ref, y_cur, kind=kind, large_n=large_n)
        return drift, prediction_drift, target_drift

    numeric = [c for c in feature_cols if _kind(ref_df, c) == "number"]

    def run_multivariate() -> MultivariateDrift | None:
        with timer.step("multivariate"):
            if multivariate is not None and len(numeric) >= 2:
                check: Callable[..., MultivariateDrift] = (
                    reconstruction_drift if multivariate == "pca" else domain_classifier_drift
                )
                try:
                    return check(ref_df, cur_df, columns=numeric, seed=seed)
                except InputError as exc:
                    step_notes["mv"].append(f"multivariate drift skipped: {exc}")
            elif multivariate is not None:
                step_notes["mv"].append("multivariate drift skipped: fewer than 2 numeric features")
        return None

    def run_estimate() -> dict[str, EstimatedMetric] | None:
        with timer.step("estimate"):
            return _estimates(
                task,
                estimate,
                y_ref,
                p_ref,
                p_cur,
                s_ref,
                s_cur,
                classes,
                positive,
                threshold,
                confidence,
                seed,
                ref_df,
                cur_df,
                numeric,
                step_notes["estimate"],
            )

    def run_slices() -> list[Slice]:
        with timer.step("slices"):
            if not (slices and y_cur is not None and feature_cols):
                return []
            if task == "regression":
                errs: FloatArray = np.abs(y_cur - p_cur.astype(np.float64))
                metric = "loss"
            else:
                errs = (y_cur != p_cur).astype(np.float64)
                metric = "error_rate"
            if not 0 < np.count_nonzero(errs) < errs.size:
                return []
            return find_weak_slices(
                cur_df, errors=errs, features=feature_cols, top=max_slices, metric=metric
            )

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="tunelens-analyse") as pool:
        slices_job = pool.submit(run_slices)
        metrics_job = pool.submit(run_metrics_and_curves)
        drift_job = pool.submit(run_drift)
        mv_job = pool.submit(run_multivariate)
        estimate_job = pool.submit(run_estimate)
        drift, prediction_drift, target_drift = drift_job.result()
        mv = mv_job.result()
        estimated = estimate_job.result()
        found = slices_job.result()
        metrics_job.result()
    notes.extend(curve_notes)
    for key in ("drift", "mv", "estimate", "slices"):
        notes.extend(step_notes[key])

    with timer.step("findings"):
        findings = _findings(
            task,
            comparison,
            intervals.get("current", {}),
            drift,
            prediction_drift,
            mv,
            estimated,
            metrics["reference"],
            found,
            curves,
            has_labels,
        )
    # the steps after curves overlap on two threads: the total is the wall time
    timer.timings["total"] = time.perf_counter() - started
    columns = {
        "target": target,
        "prediction": prediction,
        "score": score_cols or None,
        "features": list(feature_cols),
    }
    return QualityReport(
        task=task,
        rows={"reference": len(ref_df), "current": len(cur_df)},
        columns=columns,
        positive=positive if task == "binary" else None,
        classes=tuple(classes) if task != "regression" else None,
        metrics=metrics,
        intervals=intervals,
        comparison=comparison,
        per_class=per_class,
        confusion=confusion,
        curves=curves,
        threshold=threshold_block,
        drift=drift,
        prediction_drift=prediction_drift,
        target_drift=target_drift,
        multivariate=mv,
        estimated=estimated,
        slices=tuple(found),
        findings=tuple(findings),
        notes=tuple(notes),
        timings=timer.timings,
    )


def _estimates(
    task: Task,
    estimate: bool,
    y_ref: npt.NDArray[Any],
    p_ref: npt.NDArray[Any],
    p_cur: npt.NDArray[Any],
    s_ref: FloatArray | None,
    s_cur: FloatArray | None,
    classes: list[Any],
    positive: Any,
    threshold: float,
    confidence: float,
    seed: int,
    ref_df: pd.DataFrame,
    cur_df: pd.DataFrame,
    numeric: list[str],
    notes: list[str],
) -> dict[str, EstimatedMetric] | None:
    """The label-free estimates of the current performance, or None (with a note)."""
    if not estimate:
        return None
    if task == "binary" and s_ref is not None and s_cur is not None:
        y_bin = (y_ref == positive).astype(np.float64)
        if 0 < y_bin.sum() < y_bin.size:
            return estimate_binary(
                y_bin, s_ref, s_cur, threshold=threshold, confidence=confidence, seed=seed
            )
        notes.append("label-free estimate skipped: the reference has one class")
    elif task == "regression":
        X_ref = ref_df[numeric].to_numpy(dtype=np.float64, na_value=np.nan)
        X_cur = cur_df[numeric].to_numpy(dtype=np.float64, na_value=np.nan)
        try:
            return {
                "mae": estimate_regression_mae(
                    X_ref, y_ref, p_ref, X_cur, p_cur, confidence=confidence, seed=seed
                )
            }
        except (InputError, ValueError) as exc:
            notes.append(f"label-free MAE estimate skipped: {exc}")
    elif task == "multiclass" and s_ref is not None and s_cur is not None:
        present = set(pd.unique(y_ref).tolist())
        if all(c in present for c in classes):
            return estimate_multiclass(
                y_ref,
                s_ref,
                s_cur,
                classes=np.asarray(classes, dtype=object),
                current_pred=p_cur,
                confidence=confidence,
                seed=seed,
            )
        notes.append(
            "label-free estimate skipped: a class is predicted but never a reference label"
        )
    return None


def _looks_continuous(series: pd.Series, values: npt.NDArray[Any]) -> bool:
    """A float target is a regression target when it has non-integer values or more
    than 20 distinct values; integer, boolean and text targets are class labels."""
    if not pd.api.types.is_float_dtype(series.dtype):
        return False
    return values.dtype.kind == "f" or int(pd.Series(values).nunique()) > 20


def _sort_key(x: Any) -> tuple[int, Any]:
    return (0, x) if isinstance(x, int | float | np.number) else (1, str(x))


def _common_label_type(
    y_ref: npt.NDArray[Any],
    p_ref: npt.NDArray[Any],
    p_cur: npt.NDArray[Any],
    y_cur: npt.NDArray[Any] | None,
) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any] | None]:
    """Labels as one type: all integers, or all strings when any column holds text."""
    arrays = [y_ref, p_ref, p_cur] + ([y_cur] if y_cur is not None else [])
    if all(a.dtype.kind in "iub" for a in arrays):
        return y_ref, p_ref, p_cur, y_cur
    conv = [np.asarray([_label(v) for v in a], dtype=object) for a in arrays]
    return conv[0], conv[1], conv[2], conv[3] if y_cur is not None else None


def _match_label(positive: Any, classes: list[Any]) -> Any:
    if positive in classes:
        return positive
    for c in classes:
        if _label(c) == _label(positive):
            return c
    raise InputError(
        "positive", f"{positive!r} is not one of the classes {classes}", "name one of them"
    )


def _scores(
    ref_df: pd.DataFrame,
    cur_df: pd.DataFrame,
    cols: list[str],
    task: Task,
    classes: list[Any],
    positive: Any,
) -> tuple[FloatArray | None, FloatArray | None]:
    if not cols:
        return None, None
    if task == "regression":
        raise InputError("score", "applies to classification tasks", "leave it out for regression")
    out: list[FloatArray] = []
    for frame, side in ((ref_df, "reference"), (cur_df, "current")):
        mats = [_numbers(frame, c, side, "score") for c in cols]
        if task == "binary":
            if len(cols) == 1:
                out.append(mats[0])
            elif len(cols) == len(classes) == 2:
                out.append(mats[classes.index(positive)])
            else:
                raise InputError(
                    "score",
                    f"a binary task takes one score column (or one per class), got {len(cols)}",
                    "give the positive class's probability",
                )
        else:
            if len(cols) != len(classes):
                raise InputError(
                    "score",
                    f"{len(cols)} score columns for {len(classes)} classes {classes}",
                    "give one column per class, in sorted class order",
                )
            out.append(np.column_stack(mats))
    return out[0], out[1]


def _kind(frame: pd.DataFrame, col: str) -> str:
    """``"number"``, ``"date"`` or ``"other"`` for a column, without reading a lazy one."""
    from tunelens.io import ParquetColumns

    if isinstance(frame, ParquetColumns):
        import pyarrow as pa

        t = frame.arrow_type(col)
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
            return "number"
        if pa.types.is_temporal(t):
            return "date"
        return "other"
    dtype = frame[col].dtype
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        return "date"
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        return "number"
    return "other"


def _feature_columns(
    ref_df: pd.DataFrame,
    cur_df: pd.DataFrame,
    features: Sequence[str] | None,
    excluded: set[str],
    notes: list[str],
) -> list[str]:
    if features is not None:
        cols = [str(c) for c in features]
        for c in cols:
            _require(ref_df, c, "reference", "feature")
            _require(cur_df, c, "current", "feature")
        return cols
    cols = []
    skipped = []
    for c in ref_df.columns:
        if c in excluded:
            continue
        if _kind(ref_df, str(c)) == "date":
            skipped.append(str(c))
            continue
        if c not in cur_df.columns:
            raise InputError(
                f"current[{c!r}]",
                "no such column (a feature of the reference)",
                "give the same feature columns in both tables, or pass features=/exclude=",
            )
        cols.append(str(c))
    if skipped:
        notes.append(f"date columns are not features: {', '.join(skipped)}")
    return cols


def _per_class(cm: FloatArray, classes: list[Any]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for k, c in enumerate(classes):
        tp = cm[k, k]
        pred = cm[:, k].sum()
        true = cm[k, :].sum()
        out[_label(c)] = {
            "precision": tp / pred if pred else math.nan,
            "recall": tp / true if true else math.nan,
            "f1": 2 * tp / (pred + true) if pred + true else math.nan,
            "support": float(true),
        }
    return out
