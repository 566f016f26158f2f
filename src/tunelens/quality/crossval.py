"""Cross-validation with per-fold metrics and a test of whether the folds agree (issue 3).

:func:`cross_validate` fits a fresh clone of a scikit-learn compatible model on each
training part of a split (``sklearn.base.clone``; the splitting is scikit-learn's),
scores it on the held-out part with the metrics of :mod:`tunelens.metrics` (which
match scikit-learn's), and returns the per-fold values with their mean and standard
deviation (``ddof=1``) and the fit times.

An integer ``cv`` means ``StratifiedKFold(cv, shuffle=True, random_state=seed)`` for
classification and ``KFold(cv, shuffle=True, random_state=seed)`` for regression;
with ``groups`` it means ``StratifiedGroupKFold`` / ``GroupKFold`` (shuffled, same
seed), so that no group is split between training and test. Any scikit-learn
splitter object (``split(X, y, groups)`` and ``get_n_splits()``) may be given instead.

Do the folds disagree more than chance explains? Under exchangeable rows every fold
has the same expected error, so:

- classification: the folds x {correct, wrong} table of row counts is tested for
  homogeneity with Pearson's chi-square (``scipy.stats.chi2_contingency``); when an
  expected count is below 5 the p-value is a Monte Carlo exact one instead (9,999
  tables drawn from the multivariate hypergeometric law of the wrong counts given
  the margins, fixed seed);
- regression: the per-row absolute errors of the folds are compared with the
  Kruskal-Wallis test (``scipy.stats.kruskal``), robust to heavy-tailed errors.

The effect size is the share of the variance of the per-row errors explained by the
fold: ``chi2 / n`` (the eta-squared of the 0/1 error indicator) for classification,
``H / (n - 1)`` (the rank epsilon-squared) for regression. When ``p < alpha`` (0.01
by default) the result carries a ``"data_drift"`` :class:`~tunelens.findings.Finding`
(the folds behave as samples of different distributions: row order, groups or
duplicates leak into the split, or the model is unstable), with severity ``"high"``
from an effect of 0.06 (Cohen's medium eta-squared), ``"medium"`` from 0.01 (small),
``"low"`` below. The test counts rows, ignoring ``sample_weight``.

The PyTorch adapters :class:`TorchClassifier` and :class:`TorchRegressor` give a
``torch.nn.Module`` factory the scikit-learn fit/predict interface, so it goes
through the same function. torch is imported only when they are fitted.

Example:
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 3))
    >>> y = (X[:, 0] + 0.5 * rng.normal(size=300) > 0).astype(int)
    >>> result = cross_validate(LogisticRegression(), X, y, metrics=["accuracy", "roc_auc"])
    >>> result.task, len(result.folds), result.mean["accuracy"] > 0.8, result.findings
    ('binary', 5, True, ())
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.model_selection import (
    GroupKFold,
    KFold,
    StratifiedGroupKFold,
    StratifiedKFold,
)
from sklearn.utils.validation import check_is_fitted, has_fit_parameter

from tunelens.errors import InputError
from tunelens.findings import Finding, Severity
from tunelens.metrics import (
    accuracy_score,
    brier_score_loss,
    error_rate,
    f1_score,
    log_loss,
    mean_absolute_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)

__all__ = [
    "CLASSIFICATION_METRICS",
    "DEFAULT_ALPHA",
    "REGRESSION_METRICS",
    "CrossValidation",
    "FoldTest",
    "Task",
    "TorchClassifier",
    "TorchRegressor",
    "cross_validate",
]

Task = Literal["binary", "multiclass", "regression"]
TASKS: tuple[Task, ...] = ("binary", "multiclass", "regression")

#: Classification metrics; the last three need ``predict_proba`` (``brier``: binary only).
CLASSIFICATION_METRICS = (
    "accuracy",
    "error_rate",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "log_loss",
    "brier",
)
REGRESSION_METRICS = ("mae", "rmse", "r2")
_PROBA_METRICS = frozenset({"roc_auc", "log_loss", "brier"})

#: Significance level of the fold-disagreement test.
DEFAULT_ALPHA = 0.01
# Integer targets with more distinct values than this are taken for regression.
_MAX_CLASSES = 20
# Effect sizes (share of error variance explained by the fold) for severity.
_HIGH_EFFECT = 0.06
_MEDIUM_EFFECT = 0.01
_MC_TABLES = 9_999

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class FoldTest:
    """The test of homogeneity of the per-row errors across folds.

    Attributes:
        test: ``"chi2"`` (asymptotic), ``"chi2_exact"`` (Monte Carlo, small expected
            counts) or ``"kruskal"``.
        statistic: Pearson's chi-square or the Kruskal-Wallis H.
        p_value: the p-value (1.0 when every row has the same error).
        effect: the share of the variance of the per-row errors explained by the
            fold: ``chi2 / n`` or ``H / (n - 1)``.
    """

    test: str
    statistic: float
    p_value: float
    effect: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (NaN as None)."""
        return {
            "test": self.test,
            "statistic": _json_float(self.statistic),
            "p_value": _json_float(self.p_value),
            "effect": _json_float(self.effect),
        }


@dataclass(frozen=True)
class CrossValidation:
    """Result of :func:`cross_validate`.

    Attributes:
        task: ``"binary"``, ``"multiclass"`` or ``"regression"``.
        metrics: the metric names, in the order computed.
        folds: one ``{metric: value}`` dict per fold (NaN where undefined).
        fold_sizes: test rows of each fold.
        mean: per metric, the mean over folds (NaN if any fold is NaN).
        std: per metric, the standard deviation over folds with ``ddof=1``.
        fit_times: seconds spent in ``fit`` on each fold.
        score_times: seconds spent predicting and scoring each fold.
        splitter: ``repr`` of the splitter used.
        fold_test: the test of whether the folds' errors differ more than chance.
        findings: a ``"data_drift"`` finding when they do (``p < alpha``), else empty.
    """

    task: Task
    metrics: tuple[str, ...]
    folds: tuple[dict[str, float], ...]
    fold_sizes: tuple[int, ...]
    mean: dict[str, float]
    std: dict[str, float]
    fit_times: tuple[float, ...]
    score_times: tuple[float, ...]
    splitter: str
    fold_test: FoldTest
    findings: tuple[Finding, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: NaN and infinities become None.

        Example:
            >>> import json
            >>> import numpy as np
            >>> from sklearn.linear_model import Ridge
            >>> X = np.arange(40.0).reshape(20, 2)
            >>> out = cross_validate(Ridge(), X, X[:, 0] * 0.5 + 0.1, cv=2).to_dict()
            >>> sorted(out["mean"]), len(json.dumps(out)) > 0
            (['mae', 'r2', 'rmse'], True)
        """
        return {
            "task": self.task,
            "metrics": list(self.metrics),
            "splitter": self.splitter,
            "folds": [
                {
                    "fold": i,
                    "rows": int(size),
                    "fit_time": _json_float(fit),
                    "score_time": _json_float(score),
                    "metrics": {k: _json_float(v) for k, v in values.items()},
                }
                for i, (values, size, fit, score) in enumerate(
                    zip(self.folds, self.fold_sizes, self.fit_times, self.score_times, strict=True)
                )
            ],
            "mean": {k: _json_float(v) for k, v in self.mean.items()},
            "std": {k: _json_float(v) for k, v in self.std.items()},
            "fold_test": self.fold_test.to_dict(),
            "findings": [f.to_dict() for f in self.findings],
        }


def _json_float(value: float) -> float | None:
    v = float(value)
    return v if math.isfinite(v) else None


# --------------------------------------------------------------------------- validation


def _n_rows(X: Any) -> int:
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) >= 1:
        return int(shape[0])
    try:
        return len(X)
    except TypeError as exc:
        raise InputError("X", f"expected a table of rows, got {type(X).__name__}") from exc


def _rows(X: Any, idx: IntArray) -> Any:
    """The rows ``idx`` of a DataFrame, array, sparse matrix or list of rows."""
    if hasattr(X, "iloc"):
        return X.iloc[idx]
    if hasattr(X, "shape"):
        return X[idx]
    return np.asarray(X)[idx]


def _target(y: Any, n: int) -> npt.NDArray[Any]:
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise InputError("y", f"expected one value per row, got shape {arr.shape}")
    if arr.size != n:
        raise InputError("y", f"has {arr.size} values but X has {n} rows")
    if pd.isna(arr).any():
        raise InputError("y", "holds missing values (NaN or None)", "drop those rows first")
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        raise InputError("y", "holds infinite values", "drop those rows first")
    return arr


def _infer_task(y: npt.NDArray[Any], task: str | None) -> Task:
    numeric = y.dtype.kind in "iuf"
    try:
        classes = np.unique(y)
    except TypeError as exc:
        raise InputError("y", "holds values of mixed types that cannot be sorted") from exc
    if task is None:
        non_integer = y.dtype.kind == "f" and not np.all(np.mod(y, 1.0) == 0.0)
        if numeric and (non_integer or classes.size > _MAX_CLASSES):
            return "regression"
        task = "binary" if classes.size == 2 else "multiclass"
    if task not in TASKS:
        raise InputError("task", f"unknown task {task!r}", f"use one of {TASKS} or None")
    if task == "regression":
        if not numeric:
            raise InputError("y", f"regression needs numbers, got dtype {y.dtype}")
        return "regression"
    if classes.size < 2:
        raise InputError("y", f"has a single class ({classes[0]!r})", "classification needs two")
    if task == "binary" and classes.size != 2:
        raise InputError("task", f"'binary' but y has {classes.size} classes", "use 'multiclass'")
    if task == "multiclass" and classes.size < 3:
        raise InputError("task", "'multiclass' but y has 2 classes", "use 'binary'")
    return "binary" if task == "binary" else "multiclass"


def _resolve_metrics(metrics: Any, task: Task, model: Any) -> tuple[str, ...]:
    proba = hasattr(model, "predict_proba")
    if task == "regression":
        allowed: tuple[str, ...] = REGRESSION_METRICS
    else:
        allowed = tuple(m for m in CLASSIFICATION_METRICS if task == "binary" or m != "brier")
    if metrics is None:
        return tuple(m for m in allowed if proba or m not in _PROBA_METRICS)
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise InputError("metrics", "is empty", "pass None for every metric that applies")
    for name in names:
        if name not in (*CLASSIFICATION_METRICS, *REGRESSION_METRICS):
            known = (*CLASSIFICATION_METRICS, *REGRESSION_METRICS)
            raise InputError("metrics", f"unknown metric {name!r}", f"use names from {known}")
        if name not in allowed:
            raise InputError("metrics", f"{name!r} does not apply to {task}", f"use {allowed}")
        if name in _PROBA_METRICS and not proba:
            raise InputError(
                "metrics", f"{name!r} needs model.predict_proba, which the model lacks"
            )
    return tuple(dict.fromkeys(names))


def _splitter(cv: Any, task: Task, seed: int, groups: Any) -> Any:
    if isinstance(cv, bool):
        raise InputError("cv", "expected a number of folds >= 2 or a splitter, got a bool")
    if isinstance(cv, int | np.integer):
        k = int(cv)
        if k < 2:
            raise InputError("cv", f"needs at least 2 folds, got {k}")
        classify = task != "regression"
        if groups is not None:
            grouped = StratifiedGroupKFold if classify else GroupKFold
            return grouped(n_splits=k, shuffle=True, random_state=seed)
        plain = StratifiedKFold if classify else KFold
        return plain(n_splits=k, shuffle=True, random_state=seed)
    if not (hasattr(cv, "split") and hasattr(cv, "get_n_splits")):
        raise InputError(
            "cv", f"expected an int or a scikit-learn splitter, got {type(cv).__name__}"
        )
    return cv


def _split(splitter: Any, X: Any, y: Any, groups: Any, n: int) -> list[tuple[IntArray, IntArray]]:
    try:
        raw = list(splitter.split(X, y, groups))
    except ValueError as exc:
        raise InputError("cv", f"cannot split the data: {exc}") from exc
    if len(raw) < 2:
        raise InputError("cv", f"gave {len(raw)} split; need at least 2 folds")
    out: list[tuple[IntArray, IntArray]] = []
    for train, test in raw:
        tr, te = np.asarray(train, dtype=np.intp), np.asarray(test, dtype=np.intp)
        if tr.size == 0 or te.size == 0:
            raise InputError("cv", "gave a fold with no training or no test rows")
        if te.min() < 0 or te.max() >= n:
            raise InputError("cv", "gave row indices outside X")
        out.append((tr, te))
    return out


def _weights(sample_weight: Any, n: int, model: Any) -> FloatArray | None:
    if sample_weight is None:
        return None
    try:
        w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputError("sample_weight", "expected numbers, one per row") from exc
    if w.size != n:
        raise InputError("sample_weight", f"has {w.size} values but X has {n} rows")
    if not np.isfinite(w).all() or (w < 0).any():
        raise InputError("sample_weight", "must be finite and >= 0")
    if not has_fit_parameter(model, "sample_weight"):
        raise InputError("sample_weight", f"{type(model).__name__}.fit takes no sample_weight")
    return w


# ------------------------------------------------------------------------------ scoring


def _proba_matrix(model: Any, X: Any, classes: npt.NDArray[Any]) -> FloatArray:
    """``predict_proba`` with its columns moved to the order of all ``classes``.

    A class missing from a training fold gets a zero column.
    """
    raw = np.asarray(model.predict_proba(X), dtype=np.float64)
    if raw.ndim != 2:
        raise InputError("model", f"predict_proba returned shape {raw.shape}, expected (n, k)")
    fitted = np.asarray(getattr(model, "classes_", classes))
    if raw.shape[1] != fitted.size:
        raise InputError(
            "model", f"predict_proba gave {raw.shape[1]} columns for {fitted.size} classes"
        )
    if fitted.size == classes.size and np.array_equal(fitted, classes):
        return raw
    out = np.zeros((raw.shape[0], classes.size), dtype=np.float64)
    out[:, np.searchsorted(classes, fitted)] = raw
    return out


def _label(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _classification_scores(
    names: Sequence[str],
    y: npt.NDArray[Any],
    pred: npt.NDArray[Any],
    proba: FloatArray | None,
    classes: npt.NDArray[Any],
    w: FloatArray | None,
) -> dict[str, float]:
    binary = classes.size == 2
    prf: dict[str, Any] = (
        {"average": "binary", "pos_label": _label(classes[-1])} if binary else {"average": "macro"}
    )
    labels = classes.tolist()
    out: dict[str, float] = {}
    for name in names:
        if name == "accuracy":
            out[name] = accuracy_score(y, pred, sample_weight=w)
        elif name == "error_rate":
            out[name] = error_rate(y, pred, sample_weight=w)
        elif name == "precision":
            out[name] = precision_score(y, pred, sample_weight=w, **prf)
        elif name == "recall":
            out[name] = recall_score(y, pred, sample_weight=w, **prf)
        elif name == "f1":
            out[name] = f1_score(y, pred, sample_weight=w, **prf)
        else:
            assert proba is not None
            score = proba[:, 1] if binary else proba
            if name == "roc_auc":
                out[name] = roc_auc_score(y, score, sample_weight=w, labels=labels)
            elif name == "log_loss":
                out[name] = log_loss(y, proba, sample_weight=w, labels=labels)
            else:
                out[name] = brier_score_loss(y, score, sample_weight=w, labels=labels)
    return out


def _regression_scores(
    names: Sequence[str], y: FloatArray, pred: FloatArray, w: FloatArray | None
) -> dict[str, float]:
    funcs: dict[str, Callable[..., float]] = {
        "mae": mean_absolute_error,
        "rmse": root_mean_squared_error,
        "r2": r2_score,
    }
    return {name: float(funcs[name](y, pred, sample_weight=w)) for name in names}


# ---------------------------------------------------------------------- fold disagreement


def _chi2_test(wrong: IntArray, sizes: IntArray, seed: int) -> FoldTest:
    n = float(sizes.sum())
    total_wrong = int(wrong.sum())
    if total_wrong == 0 or total_wrong == int(n):
        return FoldTest("chi2", 0.0, 1.0, 0.0)
    table = np.column_stack([sizes - wrong, wrong])
    res = stats.chi2_contingency(table, correction=False)
    statistic = float(res.statistic)
    if float(np.min(res.expected_freq)) >= 5.0:
        return FoldTest("chi2", statistic, float(res.pvalue), statistic / n)
    # Small expected counts: the chi-square law is a poor guide, so compare with
    # tables drawn from the exact null (wrong counts given both margins).
    rng = np.random.default_rng(seed)
    sims = rng.multivariate_hypergeometric(sizes, total_wrong, size=_MC_TABLES).astype(np.float64)
    p_wrong = total_wrong / n
    exp_w = sizes * p_wrong
    exp_c = sizes * (1.0 - p_wrong)
    sim_stat = ((sims - exp_w) ** 2 / exp_w + (sims - exp_w) ** 2 / exp_c).sum(axis=1)
    hits = int(np.count_nonzero(sim_stat >= statistic * (1.0 - 1e-12)))
    return FoldTest("chi2_exact", statistic, (1.0 + hits) / (1.0 + _MC_TABLES), statistic / n)


def _kruskal_test(abs_errors: list[FloatArray]) -> FoldTest:
    n = sum(a.size for a in abs_errors)
    pooled = np.concatenate(abs_errors)
    if np.all(pooled == pooled[0]):
        return FoldTest("kruskal", 0.0, 1.0, 0.0)
    res = stats.kruskal(*abs_errors)
    h = float(res.statistic)
    return FoldTest("kruskal", h, float(res.pvalue), h / (n - 1.0))


def _severity(effect: float) -> Severity:
    if effect >= _HIGH_EFFECT:
        return "high"
    if effect >= _MEDIUM_EFFECT:
        return "medium"
    return "low"


def _fmt_p(p: float) -> str:
    return "p<1e-16" if p < 1e-16 else f"p={p:.1g}"


def _disagreement_finding(
    metric: str,
    per_fold: FloatArray,
    higher_is_better: bool,
    test: FoldTest,
    splitter: Any,
    grouped: bool,
) -> Finding:
    worst = int(np.argmin(per_fold) if higher_is_better else np.argmax(per_fold))
    test_name = "Kruskal-Wallis" if test.test == "kruskal" else "chi-square"
    evidence = (
        f"{metric} ranges {per_fold.min():.3g}-{per_fold.max():.3g} over {per_fold.size} folds "
        f"(worst: fold {worst}), {test_name} {_fmt_p(test.p_value)}; the fold explains "
        f"{100.0 * test.effect:.1f}% of the variance of the per-row errors"
    )
    steps: list[str] = []
    if getattr(splitter, "shuffle", True) is False:
        steps.append("shuffle the rows before splitting (e.g. KFold(shuffle=True)): their order")
        steps[-1] += " carries information, such as time or a sorted column"
    if not grouped:
        steps.append(
            "if rows come in groups (users, sessions, patients), split with GroupKFold "
            "on the grouping column"
        )
    steps.append("check for duplicated rows")
    steps.append("if the folds still differ, the model is unstable: regularise it or average seeds")
    return Finding(
        kind="data_drift",
        severity=_severity(test.effect),
        where=f"cross-validation folds ({splitter!r})",
        evidence=evidence,
        action="; ".join(steps),
    )


# ------------------------------------------------------------------------------- public


def cross_validate(
    model: Any,
    X: Any,
    y: Any,
    *,
    cv: int | Any = 5,
    metrics: str | Iterable[str] | None = None,
    task: Task | None = None,
    seed: int = 0,
    groups: Any = None,
    sample_weight: Any = None,
    alpha: float = DEFAULT_ALPHA,
) -> CrossValidation:
    """Cross-validate a model: per-fold metrics, their mean and spread, a fold test.

    Args:
        model: an unfitted scikit-learn compatible estimator (``fit``, ``predict``,
            ``get_params``), e.g. a scikit-learn model or pipeline, or
            :class:`TorchClassifier` / :class:`TorchRegressor`; cloned for each fold.
        X: the features: pandas DataFrame, numpy array, sparse matrix or list of rows.
        y: the targets, one per row, without missing values.
        cv: number of folds (>= 2), or a scikit-learn splitter object.
        metrics: metric names, or None for every one that applies: classification
            ``accuracy``, ``error_rate``, ``precision``, ``recall``, ``f1`` (binary:
            the larger label is positive; multiclass: macro average), and with
            ``predict_proba`` ``roc_auc``, ``log_loss``, ``brier`` (binary);
            regression ``mae``, ``rmse``, ``r2``.
        task: ``"binary"``, ``"multiclass"`` or ``"regression"``; None infers it:
            regression when ``y`` is numeric with non-integer values or more than 20
            distinct values, else binary or multiclass by the number of classes.
        seed: the shuffling seed of the default splitter (and of the exact test).
        groups: group labels, one per row, passed to the splitter; with an integer
            ``cv`` they select ``StratifiedGroupKFold`` / ``GroupKFold``.
        sample_weight: non-negative weights, one per row: passed to ``fit`` and to
            the metrics (the fold test counts rows).
        alpha: significance level of the fold-disagreement test, in (0, 1).

    Returns:
        A :class:`CrossValidation`.

    Raises:
        InputError: naming ``model``, ``X``, ``y``, ``cv``, ``metrics``, ``task``,
            ``groups``, ``sample_weight`` or ``alpha``.

    Example:
        >>> import numpy as np
        >>> from sklearn.linear_model import Ridge
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(200, 2))
        >>> y = X @ np.array([1.0, -2.0]) + 0.1 * rng.normal(size=200)
        >>> result = cross_validate(Ridge(), X, y, cv=4)
        >>> result.task, result.metrics, round(result.mean["r2"], 2)
        ('regression', ('mae', 'rmse', 'r2'), 1.0)
    """
    if not (callable(getattr(model, "fit", None)) and callable(getattr(model, "predict", None))):
        raise InputError("model", f"{type(model).__name__} has no fit and predict methods")
    if not callable(getattr(model, "get_params", None)):
        raise InputError(
            "model",
            f"{type(model).__name__} cannot be cloned per fold",
            "implement get_params/set_params (inherit sklearn.base.BaseEstimator)",
        )
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 < alpha < 1.0:
        raise InputError("alpha", f"must be a number in (0, 1), got {alpha!r}")
    n = _n_rows(X)
    if n < 2:
        raise InputError("X", f"has {n} rows; cross-validation needs at least 2")
    y_arr = _target(y, n)
    kind = _infer_task(y_arr, task)
    names = _resolve_metrics(metrics, kind, model)
    w = _weights(sample_weight, n, model)
    if groups is not None:
        g = np.asarray(groups)
        if g.ndim != 1 or g.size != n:
            raise InputError("groups", f"expected {n} group labels, one per row, got {g.shape}")
        if pd.isna(g).any():
            raise InputError("groups", "holds missing values")
        groups = g
    splitter = _splitter(cv, kind, seed, groups)
    splits = _split(splitter, X, y_arr, groups, n)

    classify = kind != "regression"
    classes = np.unique(y_arr) if classify else np.empty(0)
    y_fit = y_arr if classify else y_arr.astype(np.float64)
    need_proba = classify and any(m in _PROBA_METRICS for m in names)

    folds: list[dict[str, float]] = []
    sizes: list[int] = []
    fit_times: list[float] = []
    score_times: list[float] = []
    wrong: list[int] = []
    abs_errors: list[FloatArray] = []
    for train, test in splits:
        est = clone(model)
        fit_kw = {} if w is None else {"sample_weight": w[train]}
        started = time.perf_counter()
        est.fit(_rows(X, train), y_fit[train], **fit_kw)
        fit_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        X_test, y_test = _rows(X, test), y_fit[test]
        w_test = None if w is None else w[test]
        pred = np.asarray(est.predict(X_test)).reshape(-1)
        if pred.size != test.size:
            raise InputError("model", f"predict returned {pred.size} values for {test.size} rows")
        if classify:
            proba = _proba_matrix(est, X_test, classes) if need_proba else None
            folds.append(_classification_scores(names, y_test, pred, proba, classes, w_test))
            wrong.append(int(np.count_nonzero(pred != y_test)))
        else:
            pred_f = pred.astype(np.float64)
            folds.append(_regression_scores(names, y_test, pred_f, w_test))
            abs_errors.append(np.abs(pred_f - y_test))
        score_times.append(time.perf_counter() - started)
        sizes.append(int(test.size))

    table = np.asarray([[f[m] for m in names] for f in folds], dtype=np.float64)
    mean = dict(zip(names, table.mean(axis=0).tolist(), strict=True))
    std = dict(zip(names, table.std(axis=0, ddof=1).tolist(), strict=True))

    size_arr = np.asarray(sizes, dtype=np.intp)
    if classify:
        wrong_arr = np.asarray(wrong, dtype=np.intp)
        fold_test = _chi2_test(wrong_arr, size_arr, seed)
        per_fold = 1.0 - wrong_arr / size_arr
        label, higher = "accuracy", True
    else:
        fold_test = _kruskal_test(abs_errors)
        per_fold = np.asarray([a.mean() for a in abs_errors], dtype=np.float64)
        label, higher = "mae", False
    findings: tuple[Finding, ...] = ()
    if fold_test.p_value < alpha:
        findings = (
            _disagreement_finding(
                label, per_fold, higher, fold_test, splitter, grouped=groups is not None
            ),
        )
    return CrossValidation(
        task=kind,
        metrics=names,
        folds=tuple(folds),
        fold_sizes=tuple(sizes),
        mean=mean,
        std=std,
        fit_times=tuple(fit_times),
        score_times=tuple(score_times),
        splitter=repr(splitter),
        fold_test=fold_test,
        findings=findings,
    )


# ------------------------------------------------------------------------- torch adapter


def _torch() -> Any:
    try:
        return importlib.import_module("torch")
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "TorchClassifier and TorchRegressor need PyTorch: pip install torch"
        ) from exc


class _TorchEstimator(BaseEstimator):  # type: ignore[misc]
    """Shared fit loop of the torch adapters (mini-batch, shuffled, seeded)."""

    _OPTIMIZERS = ("adam", "sgd")

    def __init__(
        self,
        module_factory: Callable[[], Any],
        *,
        epochs: int = 20,
        lr: float = 1e-2,
        batch_size: int = 64,
        optimizer: str = "adam",
        weight_decay: float = 0.0,
        seed: int = 0,
        device: str | None = None,
    ) -> None:
        self.module_factory = module_factory
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.seed = seed
        self.device = device

    # subclasses: the training target tensor, the per-row loss, and the output check
    def _prepare_target(self, torch: Any, y: npt.NDArray[Any]) -> Any:
        raise NotImplementedError

    def _row_loss(self, torch: Any, out: Any, target: Any) -> Any:
        raise NotImplementedError

    def _check_params(self) -> None:
        if not callable(self.module_factory):
            raise InputError("module_factory", "expected a callable returning a torch.nn.Module")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise InputError("epochs", f"must be an integer >= 1, got {self.epochs!r}")
        if not self.lr > 0:
            raise InputError("lr", f"must be > 0, got {self.lr!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int):
            raise InputError("batch_size", f"must be an integer >= 1, got {self.batch_size!r}")
        if self.batch_size < 1:
            raise InputError("batch_size", f"must be an integer >= 1, got {self.batch_size!r}")
        if self.optimizer not in self._OPTIMIZERS:
            raise InputError(
                "optimizer", f"unknown optimizer {self.optimizer!r}", f"use {self._OPTIMIZERS}"
            )
        if not self.weight_decay >= 0:
            raise InputError("weight_decay", f"must be >= 0, got {self.weight_decay!r}")

    def _device(self, torch: Any) -> Any:
        if self.device is None:
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    @staticmethod
    def _features(X: Any) -> npt.NDArray[np.float32]:
        try:
            arr = np.asarray(X, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InputError("X", "the torch adapters need numeric features") from exc
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        return arr

    def _fit_module(self, X: Any, y: npt.NDArray[Any], sample_weight: Any) -> None:
        self._check_params()
        torch = _torch()
        dev = self._device(torch)
        x_np = self._features(X)
        n = x_np.shape[0]
        if y.shape[0] != n:
            raise InputError("y", f"has {y.shape[0]} values but X has {n} rows")
        x_all = torch.from_numpy(x_np)
        y_all = self._prepare_target(torch, y)
        w_all = (
            None
            if sample_weight is None
            else torch.as_tensor(np.asarray(sample_weight, dtype=np.float32).reshape(-1))
        )
        fork_devices: list[int] = []
        if dev.type == "cuda":
            fork_devices = [dev.index if dev.index is not None else torch.cuda.current_device()]
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(self.seed)
            module = self.module_factory()
            if not isinstance(module, torch.nn.Module):
                raise InputError(
                    "module_factory", f"returned {type(module).__name__}, not a torch.nn.Module"
                )
            module = module.to(dev)
            params = module.parameters()
            if self.optimizer == "adam":
                opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
            else:
                opt = torch.optim.SGD(
                    params, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay
                )
            gen = torch.Generator().manual_seed(self.seed)
            losses: list[float] = []
            module.train()
            for _ in range(self.epochs):
                order = torch.randperm(n, generator=gen)
                total, seen = 0.0, 0.0
                for start in range(0, n, self.batch_size):
                    idx = order[start : start + self.batch_size]
                    xb = x_all[idx].to(dev, non_blocking=True)
                    yb = y_all[idx].to(dev, non_blocking=True)
                    row_loss = self._row_loss(torch, module(xb), yb)
                    if w_all is None:
                        loss = row_loss.mean()
                        weight = float(idx.numel())
                    else:
                        wb = w_all[idx].to(dev, non_blocking=True)
                        weight = float(wb.sum())
                        if weight <= 0.0:
                            continue
                        loss = (row_loss * wb).sum() / weight
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * weight
                    seen += weight
                losses.append(total / seen if seen > 0 else math.nan)
        module.eval()
        self.module_ = module
        self.device_ = str(dev)
        self.loss_curve_ = losses
        self.n_features_in_ = int(x_np.shape[1]) if x_np.ndim == 2 else 1

    def _forward(self, X: Any) -> FloatArray:
        """Raw outputs of the fitted module, in batches, as float64 numpy."""
        check_is_fitted(self, "module_")
        torch = _torch()
        x_all = torch.from_numpy(self._features(X))
        dev = torch.device(self.device_)
        step = max(self.batch_size, 1024)
        parts: list[FloatArray] = []
        with torch.inference_mode():
            for start in range(0, x_all.shape[0], step):
                out = self.module_(x_all[start : start + step].to(dev))
                parts.append(np.asarray(out.detach().float().cpu().numpy(), dtype=np.float64))
        return np.concatenate(parts, axis=0) if parts else np.empty((0,), dtype=np.float64)


class TorchClassifier(ClassifierMixin, _TorchEstimator):  # type: ignore[misc]
    """A ``torch.nn.Module`` as a scikit-learn classifier (cross-entropy, mini-batches).

    The module maps a float32 batch ``(b, n_features)`` to logits ``(b, n_classes)``
    (or ``(b,)`` / ``(b, 1)`` for two classes, trained with a sigmoid). Classes are
    the sorted unique labels of ``y`` (``classes_``). Each ``fit`` calls
    ``module_factory()`` afresh under ``torch.manual_seed(seed)`` (the global RNG is
    restored afterwards), so clones and refits start from the same weights.

    Args:
        module_factory: builds a new, untrained ``torch.nn.Module``.
        epochs: passes over the data.
        lr: learning rate.
        batch_size: rows per step.
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9).
        weight_decay: L2 penalty of the optimizer.
        seed: seeds the initial weights and the batch order.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; None: CUDA when available.

    Example:
        >>> import torch  # doctest: +SKIP
        >>> clf = TorchClassifier(lambda: torch.nn.Linear(2, 2), epochs=5)  # doctest: +SKIP
        >>> clf.fit([[0.0, 1.0], [1.0, 0.0]], [0, 1]).predict([[1.0, 0.0]])  # doctest: +SKIP
        array([1])
    """

    def _prepare_target(self, torch: Any, y: npt.NDArray[Any]) -> Any:
        return torch.as_tensor(np.searchsorted(self.classes_, y).astype(np.int64))

    def _row_loss(self, torch: Any, out: Any, target: Any) -> Any:
        k = len(self.classes_)
        if out.ndim == 2 and out.shape[1] == k:
            return torch.nn.functional.cross_entropy(out, target, reduction="none")
        if k == 2 and (out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1)):
            return torch.nn.functional.binary_cross_entropy_with_logits(
                out.reshape(-1), target.to(out.dtype), reduction="none"
            )
        raise InputError(
            "module_factory", f"the module outputs shape {tuple(out.shape)} for {k} classes"
        )

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Self:
        """Train a fresh module on ``(X, y)``; returns ``self``."""
        y_arr = np.asarray(y).reshape(-1)
        self.classes_ = np.unique(y_arr)
        if self.classes_.size < 2:
            raise InputError("y", "has a single class; a classifier needs two")
        self._fit_module(X, y_arr, sample_weight)
        return self

    def predict_proba(self, X: Any) -> FloatArray:
        """Class probabilities ``(n, n_classes)``, columns in ``classes_`` order."""
        out = self._forward(X)
        if out.ndim == 1 or out.shape[1] == 1:
            p = 1.0 / (1.0 + np.exp(-out.reshape(-1)))
            return np.column_stack([1.0 - p, p])
        z = out - out.max(axis=1, keepdims=True)
        e = np.exp(z)
        proba: FloatArray = e / e.sum(axis=1, keepdims=True)
        return proba

    def predict(self, X: Any) -> npt.NDArray[Any]:
        """The most probable class of each row."""
        result: npt.NDArray[Any] = self.classes_[np.argmax(self.predict_proba(X), axis=1)]
        return result


class TorchRegressor(RegressorMixin, _TorchEstimator):  # type: ignore[misc]
    """A ``torch.nn.Module`` as a scikit-learn regressor (squared error, mini-batches).

    The module maps a float32 batch ``(b, n_features)`` to ``(b,)`` or ``(b, 1)``.
    Targets are used as given (scale them if they are large). Arguments as
    :class:`TorchClassifier`.

    Example:
        >>> import torch  # doctest: +SKIP
        >>> reg = TorchRegressor(lambda: torch.nn.Linear(1, 1), epochs=50)  # doctest: +SKIP
        >>> reg.fit([[0.0], [1.0]], [0.0, 2.0]).predict([[0.5]]).shape  # doctest: +SKIP
        (1,)
    """

    def _prepare_target(self, torch: Any, y: npt.NDArray[Any]) -> Any:
        try:
            return torch.as_tensor(np.asarray(y, dtype=np.float32))
        except (TypeError, ValueError) as exc:
            raise InputError("y", "a regressor needs numeric targets") from exc

    def _row_loss(self, torch: Any, out: Any, target: Any) -> Any:
        if not (out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1)):
            raise InputError(
                "module_factory", f"the module outputs shape {tuple(out.shape)}, expected (b, 1)"
            )
        return torch.nn.functional.mse_loss(out.reshape(-1), target, reduction="none")

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Self:
        """Train a fresh module on ``(X, y)``; returns ``self``."""
        self._fit_module(X, np.asarray(y).reshape(-1), sample_weight)
        return self

    def predict(self, X: Any) -> FloatArray:
        """Predicted values, shape ``(n,)``."""
        return self._forward(X).reshape(-1)
