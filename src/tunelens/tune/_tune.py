"""``tune()``: Optuna-driven search with measured constraints and an honest recommendation."""

from __future__ import annotations

import math
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
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    root_mean_squared_error,
)
from tunelens.tune.spaces import Dist, default_space, validate_space

__all__ = ["Constraint", "TuneResult", "measure", "tune"]

_MEASURE_PREFIX = "tunelens.measure:"
_OPS: tuple[str, ...] = ("<=", ">=")
_PRUNERS: tuple[str, ...] = ("asha", "median", "none")
_DIRECTIONS: tuple[str, ...] = ("maximize", "minimize")
#: measurements tunelens takes itself on every trial of the estimator entry
BUILTIN_MEASUREMENTS: tuple[str, ...] = ("latency_p99_ms", "model_bytes")
_LATENCY_CALLS = 50

_Metric = Callable[[Any, Any], float]
#: metric name -> (function, higher is better)
_METRICS: dict[str, tuple[_Metric, bool]] = {
    "accuracy": (accuracy_score, True),
    "f1": (f1_score, True),
    "r2": (r2_score, True),
    "mae": (mean_absolute_error, False),
    "mse": (mean_squared_error, False),
    "rmse": (root_mean_squared_error, False),
}


@dataclass(frozen=True)
class Constraint:
    """``measurement op bound``, e.g. ``Constraint("latency_p99_ms", "<=", 20)``.

    ``name`` is a measurement (``latency_p99_ms``, ``model_bytes``, one set with
    :func:`measure`) or the metric name itself, which makes the constraint a floor/ceiling
    on the score.
    """

    name: str
    op: str
    bound: float

    def validate(self, index: int) -> None:
        where = f"constraints[{index}]"
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"{where}.name", "must be a non-empty string", "")
        if self.op not in _OPS:
            raise InputError(f"{where}.op", f"unknown operator {self.op!r}", f"use one of {_OPS}")
        if isinstance(self.bound, bool) or not isinstance(self.bound, int | float):
            raise InputError(f"{where}.bound", "must be a number", "")
        if not math.isfinite(self.bound):
            raise InputError(f"{where}.bound", "must be finite", "")

    def signed(self, value: float) -> float:
        """Optuna constraint value: ``<= 0`` satisfied, ``> 0`` violated by that much."""
        return value - self.bound if self.op == "<=" else self.bound - value

    def __str__(self) -> str:
        return f"{self.name} {self.op} {self.bound:g}"


def measure(trial: optuna.Trial, name: str, value: float) -> None:
    """Record a measurement (e.g. latency) on ``trial`` so constraints can use it."""
    trial.set_user_attr(_MEASURE_PREFIX + name, float(value))


def _measurements(trial: optuna.trial.FrozenTrial) -> dict[str, float]:
    n = len(_MEASURE_PREFIX)
    return {k[n:]: float(v) for k, v in trial.user_attrs.items() if k.startswith(_MEASURE_PREFIX)}


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _json_safe(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float):
        return _finite(x)
    if x is None or isinstance(x, bool | int | str):
        return x
    return repr(x)


@dataclass
class TuneResult:
    """Outcome of :func:`tune`.

    Attributes:
        study: the Optuna study (all trials, storage-backed when ``storage`` was given).
        best: the recommended trial as a dict (see ``trials``), or ``None`` if none completed.
        feasible: whether ``best`` meets every constraint.
        blocked_by: when not feasible, the constraints ``best`` violates, with numbers.
        trials: one dict per trial: number, state, value, params, measurements, feasible,
            violations (amount by which each constraint is missed, 0 when met).
        pareto: non-dominated feasible trials on (metric, first constraint's measurement).
        model: the recommended estimator refitted on the training split (estimator entry).
    """

    study: optuna.Study
    best: dict[str, Any] | None
    feasible: bool
    blocked_by: list[dict[str, Any]]
    trials: list[dict[str, Any]]
    pareto: list[dict[str, Any]]
    metric: str
    direction: str
    constraints: tuple[Constraint, ...] = ()
    model: Any = None
    space: dict[str, Dist] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view (no study or model objects)."""
        out = {
            "study_name": self.study.study_name,
            "metric": self.metric,
            "direction": self.direction,
            "constraints": [
                {"name": c.name, "op": c.op, "bound": c.bound} for c in self.constraints
            ],
            "space": {k: d.to_dict() for k, d in self.space.items()},
            "best": self.best,
            "feasible": self.feasible,
            "blocked_by": self.blocked_by,
            "pareto": [t["number"] for t in self.pareto],
            "trials": self.trials,
        }
        return dict(_json_safe(out))

    def summary(self) -> str:
        """Plain-text report."""
        states = [t["state"] for t in self.trials]
        lines = [
            f"tune: study {self.study.study_name!r}, {len(states)} trials "
            f"({states.count('COMPLETE')} complete, {states.count('PRUNED')} pruned, "
            f"{states.count('FAIL')} failed); {self.metric} ({self.direction})",
        ]
        if self.constraints:
            lines.append("constraints: " + ", ".join(str(c) for c in self.constraints))
        if self.best is None:
            lines.append("no trial completed: nothing to recommend")
            return "\n".join(lines)
        b = self.best
        lines.append(f"recommended: trial #{b['number']} {self.metric}={b['value']:.6g}")
        lines.append(f"  params: {b['params']}")
        if b["measurements"]:
            meas = ", ".join(f"{k}={v:.6g}" for k, v in b["measurements"].items())
            lines.append(f"  measurements: {meas}")
        if self.feasible:
            lines.append("  feasible: yes")
        else:
            lines.append("  feasible: NO - no trial met every constraint; this is the closest")
            for v in self.blocked_by:
                lines.append(
                    f"  blocked by {v['constraint']}: measured {v['value']}, "
                    f"misses by {v['violation']:.6g}"
                )
        if self.pareto:
            lines.append("pareto trials: " + ", ".join(f"#{t['number']}" for t in self.pareto))
        return "\n".join(lines)


# ---- input checks ----------------------------------------------------------------------------


def _check_choice(field_name: str, value: Any, accepted: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in accepted:
        raise InputError(field_name, f"unknown value {value!r}", f"use one of {list(accepted)}")
    return value


def _make_pruner(pruner: str | optuna.pruners.BasePruner) -> optuna.pruners.BasePruner:
    if isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    name = _check_choice("pruner", pruner, _PRUNERS)
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "median":
        return optuna.pruners.MedianPruner()
    return optuna.pruners.NopPruner()


def _check_constraints(
    constraints: Sequence[Constraint], known: Sequence[str] | None
) -> tuple[Constraint, ...]:
    if isinstance(constraints, Constraint):
        constraints = (constraints,)
    out = []
    for i, c in enumerate(constraints):
        if not isinstance(c, Constraint):
            raise InputError(
                f"constraints[{i}]",
                f"expected a Constraint, got {type(c).__name__}",
                'use Constraint("latency_p99_ms", "<=", 20)',
            )
        c.validate(i)
        if known is not None and c.name not in known:
            raise InputError(
                f"constraints[{i}].name", f"unknown measurement {c.name!r}", f"use one of {known}"
            )
        out.append(c)
    return tuple(out)


# ---- the estimator entry ---------------------------------------------------------------------


def _rows(X: Any, i: int) -> Any:
    if hasattr(X, "iloc"):
        return X.iloc[i : i + 1]
    return X[i : i + 1]


def _n_rows(X: Any) -> int:
    return int(X.shape[0]) if hasattr(X, "shape") else len(X)


def _latency_p99_ms(model: Any, X: Any, calls: int = _LATENCY_CALLS) -> float:
    n = _n_rows(X)
    times = []
    for k in range(calls):
        row = _rows(X, k % n)
        t0 = time.perf_counter()
        model.predict(row)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.percentile(times, 99))


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


def _estimator_objective(
    estimator: Any,
    space: dict[str, Dist],
    split: tuple[Any, Any, Any, Any],
    metric: _Metric,
    seed: int | None,
) -> Callable[[optuna.Trial], float]:
    X_tr, y_tr, X_va, y_va = split

    def objective(trial: optuna.Trial) -> float:
        params = {name: dist.suggest(trial, name) for name, dist in space.items()}
        model = _build(estimator, params, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. ConvergenceWarning at extreme C
            model.fit(X_tr, y_tr)
        score = float(metric(y_va, model.predict(X_va)))
        measure(trial, "model_bytes", len(pickle.dumps(model)))
        measure(trial, "latency_p99_ms", _latency_p99_ms(model, X_va))
        return score

    return objective


def _build(estimator: Any, params: dict[str, Any], seed: int | None) -> Any:
    from sklearn.base import clone

    model = clone(estimator)
    extra: dict[str, Any] = {}
    if seed is not None and model.get_params().get("random_state", 0) is None:
        extra["random_state"] = seed
    model.set_params(**params, **extra)
    return model


# ---- recommendation --------------------------------------------------------------------------


def _record(
    t: optuna.trial.FrozenTrial, constraints: tuple[Constraint, ...], metric: str
) -> dict[str, Any]:
    meas = _measurements(t)
    value = t.value if t.state == optuna.trial.TrialState.COMPLETE else None
    violations: dict[str, float] = {}
    for c in constraints:
        v = value if c.name == metric and c.name not in meas else meas.get(c.name)
        violations[str(c)] = math.inf if v is None else max(0.0, c.signed(v))
    complete = t.state == optuna.trial.TrialState.COMPLETE
    return {
        "number": t.number,
        "state": t.state.name,
        "value": value,
        "params": dict(t.params),
        "measurements": meas,
        "feasible": complete and all(v <= 0 for v in violations.values()),
        "violations": violations,
    }


def _total_violation(rec: dict[str, Any], constraints: tuple[Constraint, ...]) -> float:
    by_name = {str(c): c for c in constraints}
    total = 0.0
    for k, v in rec["violations"].items():
        if v > 0:
            total += float(v) / max(abs(by_name[k].bound), 1e-12)
    return total


def _pareto(
    feasible: list[dict[str, Any]], constraints: tuple[Constraint, ...], maximize: bool, metric: str
) -> list[dict[str, Any]]:
    if not constraints:
        return []
    c = constraints[0]

    def key(r: dict[str, Any]) -> tuple[float, float] | None:
        m = r["value"] if c.name == metric else r["measurements"].get(c.name)
        if m is None:
            return None
        # both coordinates as "larger is better"
        return (r["value"] if maximize else -r["value"], -m if c.op == "<=" else m)

    pts = [(r, k) for r in feasible if (k := key(r)) is not None]
    front = []
    for r, k in pts:
        dominated = any(
            o[0] >= k[0] and o[1] >= k[1] and (o[0] > k[0] or o[1] > k[1]) for _, o in pts
        )
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: r["number"])


# ---- public entry ----------------------------------------------------------------------------


def tune(
    objective_or_model: Callable[[optuna.Trial], float] | Any,
    *,
    data: Any = None,
    space: str | Mapping[str, Dist] = "auto",
    metric: str | None = None,
    direction: str = "maximize",
    constraints: Sequence[Constraint] = (),
    n_trials: int = 20,
    timeout: float | None = None,
    storage: str | optuna.storages.BaseStorage | None = None,
    study_name: str | None = None,
    pruner: str | optuna.pruners.BasePruner = "asha",
    seed: int | None = None,
) -> TuneResult:
    """Search hyper-parameters with Optuna under measured constraints.

    Two entries:

    * ``objective_or_model`` is a callable ``f(trial) -> float``: it is optimised as is; it
      may call ``trial.report``/``trial.should_prune`` (``pruner``: ``"asha"``,
      ``"median"``, ``"none"``) and :func:`measure` to record measurements for constraints.
    * ``objective_or_model`` is a scikit-learn estimator and ``data`` is ``(X, y)`` (a seeded
      25% holdout is used for validation) or ``(X_train, y_train, X_val, y_val)``: each trial
      fits a clone with parameters sampled from ``space`` (``"auto"``: the default space of
      :func:`tunelens.tune.spaces.default_space`) and scores ``metric`` (default accuracy for
      classifiers, r2 for regressors) on the validation split; ``model_bytes`` (pickled size)
      and ``latency_p99_ms`` (p99 of 50 single-row predicts) are measured on every trial.

    Infeasible trials are marked through ``trial.set_constraint`` (values <= 0 satisfied), so
    constraint-aware samplers see them. The recommendation is the best feasible trial; if none
    is feasible it is the trial with the least total (relative) violation, with
    ``feasible=False`` and ``blocked_by`` listing the missed constraints; no exception.

    Raises:
        InputError: unknown pruner, direction, metric, constraint operator or name, bad
            ``data`` or ``space``, ``n_trials`` < 1.
    """
    direction = _check_choice("direction", direction, _DIRECTIONS)
    maximize = direction == "maximize"
    pruner_obj = _make_pruner(pruner)
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise InputError("n_trials", f"must be a positive integer, got {n_trials!r}", "")
    if timeout is not None and not timeout > 0:
        raise InputError("timeout", f"must be > 0 seconds or None, got {timeout!r}", "")

    is_estimator = hasattr(objective_or_model, "fit") and hasattr(objective_or_model, "predict")
    chosen_space: dict[str, Dist] = {}
    split: tuple[Any, Any, Any, Any] | None = None
    estimator: Any = None
    if is_estimator:
        from sklearn.base import is_classifier

        estimator = objective_or_model
        classifier = bool(is_classifier(estimator))
        metric_name = metric if metric is not None else ("accuracy" if classifier else "r2")
        metric_name = _check_choice("metric", metric_name, list(_METRICS))
        metric_fn, higher_better = _METRICS[metric_name]
        if higher_better != maximize:
            want = "maximize" if higher_better else "minimize"
            raise InputError(
                "direction",
                f"{direction!r} does not fit metric {metric_name!r}",
                f"pass direction={want!r}",
            )
        if isinstance(space, str):
            _check_choice("space", space, ["auto"])
            chosen_space = default_space(estimator)
        else:
            chosen_space = validate_space(space, list(estimator.get_params()))
        cons = _check_constraints(constraints, [*BUILTIN_MEASUREMENTS, metric_name])
        split = _split_data(data, classifier, seed)
        objective = _estimator_objective(estimator, chosen_space, split, metric_fn, seed)
    elif callable(objective_or_model):
        if data is not None:
            raise InputError("data", "only used with an estimator", "drop data= for an objective")
        if not isinstance(space, str) or space != "auto":
            raise InputError("space", "only used with an estimator", "sample inside the objective")
        metric_name = metric if metric is not None else "value"
        if not isinstance(metric_name, str) or not metric_name:
            raise InputError("metric", "must be a non-empty string naming the objective value", "")
        cons = _check_constraints(constraints, None)
        objective = objective_or_model
    else:
        raise InputError(
            "objective_or_model",
            f"expected a callable or an estimator, got {type(objective_or_model).__name__}",
            "pass f(trial) -> float, or an estimator with data=(X, y)",
        )

    def wrapped(trial: optuna.Trial) -> float:
        value = float(objective(trial))
        meas = {
            k[len(_MEASURE_PREFIX) :]: float(v)
            for k, v in trial.user_attrs.items()
            if k.startswith(_MEASURE_PREFIX)
        }
        for c in cons:
            v = value if c.name == metric_name and c.name not in meas else meas.get(c.name)
            trial.set_constraint(str(c), math.inf if v is None else c.signed(v))
        return value

    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction="maximize" if maximize else "minimize",
        sampler=sampler,
        pruner=pruner_obj,
        load_if_exists=study_name is not None,
    )
    catch: tuple[type[Exception], ...] = (ValueError,) if is_estimator else ()
    study.optimize(wrapped, n_trials=n_trials, timeout=timeout, catch=catch)

    records = [_record(t, cons, metric_name) for t in study.trials]
    complete = [r for r in records if r["state"] == "COMPLETE" and r["value"] is not None]
    feasible = [r for r in complete if r["feasible"]]
    best: dict[str, Any] | None
    blocked: list[dict[str, Any]] = []
    sign = 1.0 if maximize else -1.0
    if feasible:
        best = max(feasible, key=lambda r: (sign * r["value"], -r["number"]))
    elif complete:
        best = min(complete, key=lambda r: (_total_violation(r, cons), -sign * r["value"]))
        for c in cons:
            amount = best["violations"][str(c)]
            if amount > 0:
                v = best["measurements"].get(
                    c.name, best["value"] if c.name == metric_name else None
                )
                blocked.append(
                    {
                        "constraint": str(c),
                        "name": c.name,
                        "op": c.op,
                        "bound": c.bound,
                        "value": v,
                        "violation": amount,
                    }
                )
    else:
        best = None

    model = None
    if is_estimator and best is not None and split is not None:
        params = {k: best["params"][k] for k in chosen_space if k in best["params"]}
        model = _build(estimator, params, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(split[0], split[1])

    return TuneResult(
        study=study,
        best=best,
        feasible=bool(feasible),
        blocked_by=blocked,
        trials=records,
        pareto=_pareto(feasible, cons, maximize, metric_name),
        metric=metric_name,
        direction=direction,
        constraints=cons,
        model=model,
        space=chosen_space,
    )
