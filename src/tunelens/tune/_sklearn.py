"""The scikit-learn entry of :func:`tunelens.tune.tune`: split, staged fit with pruning, measure.

Ensemble estimators that support ``warm_start`` (histogram and classic gradient boosting,
random forests, extra trees) are fitted in stages: after each stage the validation score is
reported to the pruner, so a poor configuration stops after a fraction of its trees. The
number of trees or boosting iterations actually built is the trial's compute, recorded as
``trial.user_attrs["tunelens.iterations"]``.
"""

from __future__ import annotations

import pickle
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from tunelens.errors import InputError
from tunelens.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    root_mean_squared_error,
)
from tunelens.tune.spaces import Dist

__all__ = [
    "ITERATIONS_ATTR",
    "SKLEARN_MEASUREMENTS",
    "SKLEARN_METRICS",
    "SklearnTask",
    "latency_ms",
    "sklearn_task",
]

ITERATIONS_ATTR = "tunelens.iterations"
#: measurements the estimator entry takes on every complete trial
SKLEARN_MEASUREMENTS: tuple[str, ...] = ("latency_p50_ms", "latency_p99_ms", "model_bytes")
_LATENCY_CALLS = 50
_STAGES = 8

_Metric = Callable[[Any, Any], float]
#: metric name -> (function of (y_true, prediction), higher is better, needs probabilities)
SKLEARN_METRICS: dict[str, tuple[_Metric, bool, bool]] = {
    "accuracy": (accuracy_score, True, False),
    "f1": (lambda y, p: _f1(y, p), True, False),
    "log_loss": (log_loss, False, True),
    "r2": (r2_score, True, False),
    "mae": (mean_absolute_error, False, False),
    "mse": (mean_squared_error, False, False),
    "rmse": (root_mean_squared_error, False, False),
}
_CLASSIFICATION_METRICS = ("accuracy", "f1", "log_loss")

#: estimator class name -> the parameter that counts its stages (trees, iterations)
_STAGED: dict[str, str] = {
    "HistGradientBoostingClassifier": "max_iter",
    "HistGradientBoostingRegressor": "max_iter",
    "GradientBoostingClassifier": "n_estimators",
    "GradientBoostingRegressor": "n_estimators",
    "RandomForestClassifier": "n_estimators",
    "RandomForestRegressor": "n_estimators",
    "ExtraTreesClassifier": "n_estimators",
    "ExtraTreesRegressor": "n_estimators",
}


def _f1(y: Any, p: Any) -> float:
    """Binary F1 of the larger label for two classes, macro F1 otherwise."""
    labels = np.unique(np.concatenate([np.asarray(y), np.asarray(p)]))
    if len(labels) == 2:
        return float(f1_score(y, p, average="binary", pos_label=labels[-1]))
    return float(f1_score(y, p, average="macro"))


def _rows(X: Any, i: int, n: int) -> Any:
    if hasattr(X, "iloc"):
        return X.iloc[i : i + n]
    return X[i : i + n]


def _n_rows(X: Any) -> int:
    return int(X.shape[0]) if hasattr(X, "shape") else len(X)


def latency_ms(
    predict: Callable[[Any], Any], X: Any, *, batch: int = 1, calls: int = _LATENCY_CALLS
) -> tuple[float, float]:
    """p50 and p99 in milliseconds of ``predict`` on ``batch`` rows of ``X`` (after a warm-up)."""
    n = _n_rows(X)
    batch = max(1, min(batch, n))
    predict(_rows(X, 0, batch))
    times = []
    for k in range(calls):
        start = (k * batch) % max(1, n - batch + 1)
        row = _rows(X, start, batch)
        t0 = time.perf_counter()
        predict(row)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def _split_data(data: Any, classifier: bool, seed: int | None) -> tuple[Any, Any, Any, Any]:
    if not isinstance(data, tuple | list) or len(data) not in (2, 4):
        raise InputError(
            "data", "must be (X, y) or (X_train, y_train, X_val, y_val)", "pass a 2- or 4-tuple"
        )
    if len(data) == 4:
        return data[0], data[1], data[2], data[3]
    from sklearn.model_selection import train_test_split

    X, y = data
    rs = 0 if seed is None else seed
    try:
        parts = train_test_split(
            X, y, test_size=0.25, random_state=rs, stratify=y if classifier else None
        )
    except ValueError:  # stratification impossible (e.g. a class with one row)
        parts = train_test_split(X, y, test_size=0.25, random_state=rs)
    X_tr, X_va, y_tr, y_va = parts
    return X_tr, y_tr, X_va, y_va


def build_estimator(estimator: Any, params: Mapping[str, Any], seed: int | None) -> Any:
    """A clone of ``estimator`` with ``params`` (and ``random_state=seed`` where it was None)."""
    from sklearn.base import clone

    model = clone(estimator)
    extra: dict[str, Any] = {}
    if seed is not None and model.get_params().get("random_state", 0) is None:
        extra["random_state"] = seed
    model.set_params(**params, **extra)
    return model


def _built(model: Any) -> int:
    """Trees or boosting iterations a fitted ensemble holds."""
    n_iter = getattr(model, "n_iter_", None)
    if isinstance(n_iter, int | np.integer):
        return int(n_iter)
    if hasattr(model, "estimators_"):
        return len(model.estimators_)
    return 1


@dataclass
class SklearnTask:
    """What :func:`tune` needs from the estimator entry."""

    objective: Callable[[optuna.Trial], float]
    space: dict[str, Dist]
    metric: str
    higher_is_better: bool
    default_params: dict[str, Any]
    fit_best: Callable[[Mapping[str, Any]], Any]
    explanation: list[str] = field(default_factory=list)
    #: the last step the objective reports to the pruner (None: it reports nothing)
    max_resource: int | None = None


def _score(model: Any, metric: str, X: Any, y: Any) -> float:
    fn, _, proba = SKLEARN_METRICS[metric]
    if proba:
        if not hasattr(model, "predict_proba"):
            raise InputError(
                "metric", f"{metric!r} needs predict_proba", "use accuracy or f1 instead"
            )
        return float(log_loss(y, model.predict_proba(X), labels=model.classes_))
    return float(fn(y, model.predict(X)))


def _default_params(estimator: Any, space: Mapping[str, Dist]) -> dict[str, Any]:
    """The estimator's own settings, where they lie inside the space (trial 0's start)."""
    own = estimator.get_params()
    out: dict[str, Any] = {}
    for name, dist in space.items():
        value = own.get(name)
        if dist.kind == "categorical":
            if value in dist.choices:
                out[name] = value
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        assert dist.low is not None and dist.high is not None
        if dist.low <= value <= dist.high and (dist.kind == "float" or float(value).is_integer()):
            out[name] = int(value) if dist.kind == "int" else float(value)
    return out


def sklearn_task(
    estimator: Any,
    *,
    data: Any,
    space: dict[str, Dist],
    metric: str | None,
    seed: int | None,
    cv: int | None = None,
    latency_batch: int = 1,
    measurements: Sequence[str] = SKLEARN_MEASUREMENTS,
) -> SklearnTask:
    """Build the objective of one scikit-learn search (see :func:`tunelens.tune.tune`)."""
    from sklearn.base import is_classifier

    from tunelens.tune._tune import measure

    classifier = bool(is_classifier(estimator))
    metric_name = metric if metric is not None else ("accuracy" if classifier else "r2")
    accepted = [m for m in SKLEARN_METRICS if (m in _CLASSIFICATION_METRICS) == classifier]
    if metric_name not in accepted:
        raise InputError("metric", f"unknown metric {metric_name!r}", f"use one of {accepted}")
    higher = SKLEARN_METRICS[metric_name][1]
    if cv is not None and (isinstance(cv, bool) or not isinstance(cv, int) or cv < 2):
        raise InputError("cv", f"must be an integer >= 2 or None, got {cv!r}", "")
    if cv is not None and isinstance(data, tuple | list) and len(data) == 4:
        raise InputError(
            "data", "cv=k folds (X, y) itself", "pass data=(X, y), or drop cv= to use the split"
        )
    _check_values(estimator, space)
    split = _split_data(data, classifier, seed)
    X_tr, y_tr, X_va, y_va = split
    stage_param = _STAGED.get(type(estimator).__name__)
    want = set(measurements)

    def measure_all(trial: optuna.Trial, model: Any) -> None:
        if "model_bytes" in want:
            measure(trial, "model_bytes", len(pickle.dumps(model)))
        if want & {"latency_p50_ms", "latency_p99_ms"}:
            p50, p99 = latency_ms(model.predict, X_va, batch=latency_batch)
            measure(trial, "latency_p50_ms", p50)
            measure(trial, "latency_p99_ms", p99)

    def fit_quiet(model: Any, X: Any, y: Any) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. ConvergenceWarning at extreme C
            model.fit(X, y)

    def objective_cv(trial: optuna.Trial) -> float:
        from sklearn.model_selection import KFold, StratifiedKFold

        params = {name: dist.suggest(trial, name) for name, dist in space.items()}
        X_all = _concat(X_tr, X_va)
        y_all = _concat(y_tr, y_va)
        splitter = (StratifiedKFold if classifier else KFold)(
            n_splits=int(cv or 0), shuffle=True, random_state=0 if seed is None else seed
        )
        scores: list[float] = []
        iterations = 0
        model: Any = None
        for fold, (tr, va) in enumerate(splitter.split(X_all, y_all), start=1):
            model = build_estimator(estimator, params, seed)
            fit_quiet(model, _take(X_all, tr), _take(y_all, tr))
            iterations += _built(model)
            scores.append(_score(model, metric_name, _take(X_all, va), _take(y_all, va)))
            trial.set_user_attr(ITERATIONS_ATTR, iterations)
            trial.report(float(np.mean(scores)), fold)
            if trial.should_prune():
                raise optuna.TrialPruned()
        trial.set_user_attr("tunelens.cv_scores", scores)
        measure_all(trial, model)
        return float(np.mean(scores))

    def objective_staged(trial: optuna.Trial) -> float:
        assert stage_param is not None
        params = {name: dist.suggest(trial, name) for name, dist in space.items()}
        model = build_estimator(estimator, params, seed)
        total = int(model.get_params()[stage_param])
        stages = sorted({max(1, round(total * (k + 1) / _STAGES)) for k in range(_STAGES)})
        model.set_params(warm_start=True)
        score = float("nan")
        for step, upto in enumerate(stages, start=1):
            model.set_params(**{stage_param: upto})
            fit_quiet(model, X_tr, y_tr)
            trial.set_user_attr(ITERATIONS_ATTR, _built(model))
            score = _score(model, metric_name, X_va, y_va)
            if step < len(stages):
                trial.report(score, step)
                if trial.should_prune():
                    raise optuna.TrialPruned()
            if _built(model) < upto:  # the estimator stopped early on its own
                break
        measure_all(trial, model)
        return score

    def objective_plain(trial: optuna.Trial) -> float:
        params = {name: dist.suggest(trial, name) for name, dist in space.items()}
        model = build_estimator(estimator, params, seed)
        fit_quiet(model, X_tr, y_tr)
        trial.set_user_attr(ITERATIONS_ATTR, _built(model))
        score = _score(model, metric_name, X_va, y_va)
        measure_all(trial, model)
        return score

    staged_ok = stage_param is not None and "warm_start" in estimator.get_params()
    objective: Callable[[optuna.Trial], float]
    explanation: list[str] = []
    if cv is not None:
        objective = objective_cv
        explanation.append(f"{cv}-fold cross-validation of every trial; pruned between folds")
    elif staged_ok:
        objective = objective_staged
        explanation.append(
            f"{type(estimator).__name__} is fitted in {_STAGES} warm-started stages of "
            f"{stage_param}; the validation score after each stage goes to the pruner"
        )
    else:
        objective = objective_plain

    def fit_best(params: Mapping[str, Any]) -> Any:
        """The recommended model, fitted on what its score came from (all rows under cv)."""
        model = build_estimator(estimator, dict(params), seed)
        if cv is not None:
            fit_quiet(model, _concat(X_tr, X_va), _concat(y_tr, y_va))
        else:
            fit_quiet(model, X_tr, y_tr)
        return model

    return SklearnTask(
        objective=objective,
        space=space,
        metric=metric_name,
        higher_is_better=higher,
        default_params=_default_params(estimator, space),
        fit_best=fit_best,
        explanation=explanation,
        max_resource=int(cv) if cv is not None else (_STAGES - 1 if staged_ok else None),
    )


def _check_values(estimator: Any, space: Mapping[str, Dist]) -> None:
    """Every end of each range and every choice must be a value the estimator accepts.

    Raises:
        InputError: naming ``space[name]``, the value and scikit-learn's own constraint.
    """
    from sklearn.base import clone

    for name, dist in space.items():
        if dist.kind == "categorical":
            values: list[Any] = list(dist.choices)
        else:
            assert dist.low is not None and dist.high is not None
            cast = int if dist.kind == "int" else float
            values = [cast(dist.low), cast(dist.high)]
        for value in values:
            model = clone(estimator).set_params(**{name: value})
            validate = getattr(model, "_validate_params", None)
            if validate is None:  # an estimator outside scikit-learn's validation
                return
            try:
                validate()
            except (ValueError, TypeError) as exc:
                detail = " ".join(str(exc).split())
                raise InputError(
                    f"space[{name!r}]",
                    f"{value!r} is not accepted by {type(estimator).__name__}: {detail}",
                    "give a range or choices the estimator accepts",
                ) from None


def _concat(a: Any, b: Any) -> Any:
    if hasattr(a, "iloc"):
        import pandas as pd

        return pd.concat([a, b], ignore_index=True)
    return np.concatenate([np.asarray(a), np.asarray(b)])


def _take(a: Any, idx: Any) -> Any:
    return a.iloc[idx] if hasattr(a, "iloc") else a[idx]
