"""``tune()``: Optuna-driven search with measured constraints and an honest recommendation."""

from __future__ import annotations

import contextlib
import math
import pathlib
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import optuna

from tunelens.errors import InputError
from tunelens.tune.spaces import Dist, sklearn_auto_space, validate_space

__all__ = ["BUILTIN_MEASUREMENTS", "SCHEMA", "Constraint", "TuneResult", "measure", "tune"]

SCHEMA = "tunelens.tune/1"
_MEASURE_PREFIX = "tunelens.measure:"
_OPS: tuple[str, ...] = ("<=", ">=")
_PRUNERS: tuple[str, ...] = ("asha", "median", "none")
_DIRECTIONS: tuple[str, ...] = ("maximize", "minimize")
#: measurements tunelens takes itself on every trial of the model entries (PyTorch adds
#: ``flops`` and ``peak_memory_bytes``); all of them are "lower is better"
BUILTIN_MEASUREMENTS: tuple[str, ...] = (
    "latency_p50_ms",
    "latency_p99_ms",
    "model_bytes",
    "flops",
    "peak_memory_bytes",
)
TORCH_MEASUREMENTS = BUILTIN_MEASUREMENTS
#: relative tolerance of a ``priority`` given as a list: trials within 1% of the best on
#: one objective count as tied and the next objective decides
PRIORITY_TOLERANCE = 0.01
#: trials run when neither n_trials, timeout nor total_trials is given
DEFAULT_TRIALS = 20
EPOCHS_ATTR = "tunelens.epochs"
ITERATIONS_ATTR = "tunelens.iterations"
ERROR_ATTR = "tunelens.error"


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
        trials: one dict per trial: number, state, value (the first objective), values (all
            objectives), params, measurements, feasible, violations (amount by which each
            constraint is missed, 0 when met), compute (epochs or iterations trained).
        pareto: non-dominated feasible trials: on the objectives when there are several,
            else on (metric, first constraint's measurement).
        objectives: the objective names (the metric first) and ``directions`` theirs.
        explanation: what space was searched and why, one sentence each.
        model: the recommended model, trained (model entries; ``None`` for objectives).
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
    objectives: tuple[str, ...] = ()
    directions: tuple[str, ...] = ()
    priority: tuple[str, ...] = ()
    explanation: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view (schema ``tunelens.tune/1``; no study or model objects)."""
        out = {
            "schema": SCHEMA,
            "study_name": self.study.study_name,
            "metric": self.metric if len(self.objectives) <= 1 else list(self.objectives),
            "direction": self.direction if len(self.objectives) <= 1 else list(self.directions),
            "objectives": list(self.objectives) or [self.metric],
            "directions": list(self.directions) or [self.direction],
            "priority": list(self.priority),
            "constraints": [
                {"name": c.name, "op": c.op, "bound": c.bound} for c in self.constraints
            ],
            "space": {k: d.to_dict() for k, d in self.space.items()},
            "explanation": list(self.explanation),
            "best": self.best,
            "feasible": self.feasible,
            "blocked_by": self.blocked_by,
            "pareto": [t["number"] for t in self.pareto],
            "trials": self.trials,
        }
        return dict(_json_safe(out))

    def to_html(self, path: str | None = None) -> str:
        """The HTML report (optimisation history, importances, Pareto front, trials).

        Written atomically to ``path`` when given; the page is returned either way.
        """
        from tunelens.report.tune_html import render_tune_html

        page = render_tune_html(self.to_dict(), self.study)
        if path is not None:
            from tunelens._atomic import write_files

            write_files([(pathlib.Path(path), page.encode())])
        return page

    def summary(self) -> str:
        """Plain-text report."""
        states = [t["state"] for t in self.trials]
        objectives = ", ".join(
            f"{o} ({d})"
            for o, d in zip(
                self.objectives or (self.metric,), self.directions or (self.direction,), strict=True
            )
        )
        lines = [
            f"tune: study {self.study.study_name!r}, {len(states)} trials "
            f"({states.count('COMPLETE')} complete, {states.count('PRUNED')} pruned, "
            f"{states.count('FAIL')} failed); {objectives}",
        ]
        if self.constraints:
            lines.append("constraints: " + ", ".join(str(c) for c in self.constraints))
        lines.extend(f"space: {e}" for e in self.explanation)
        if self.best is None:
            lines.append("no trial completed: nothing to recommend")
            return "\n".join(lines)
        b = self.best
        if len(self.objectives) > 1:
            vals = ", ".join(
                f"{o}={v:.6g}" for o, v in zip(self.objectives, b["values"], strict=True)
            )
            lines.append(f"recommended: trial #{b['number']} {vals}")
            if self.priority:
                lines.append(f"  chosen from the Pareto front by priority {list(self.priority)}")
        else:
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


def _make_pruner(
    pruner: str | optuna.pruners.BasePruner, max_resource: int | None = None
) -> optuna.pruners.BasePruner:
    """The pruner; for ``"asha"`` and ``"median"`` no decision before a quarter of the steps.

    ``max_resource`` is the last step a trial reports (epochs, boosting stages, folds) where
    tunelens knows it: the first rung of successive halving (reduction factor 3) is then a
    quarter of it, since the ranking of learning curves after one step of twenty is mostly
    noise. For user objectives it is unknown and Optuna's ``"auto"`` rule applies.
    """
    if isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    name = _check_choice("pruner", pruner, _PRUNERS)
    warm = max(1, max_resource // 4) if max_resource else None
    if name == "asha":
        if warm is None:
            return optuna.pruners.SuccessiveHalvingPruner()
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=warm, reduction_factor=3)
    if name == "median":
        return optuna.pruners.MedianPruner(n_warmup_steps=warm or 0)
    return optuna.pruners.NopPruner()


def _check_constraints(
    constraints: Sequence[Constraint] | Constraint, known: Sequence[str] | None
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
                f"constraints[{i}].name",
                f"unknown measurement {c.name!r}",
                f"use one of {list(known)}",
            )
        out.append(c)
    return tuple(out)


def _names(metric: str | Sequence[str] | None) -> list[str] | None:
    if metric is None:
        return None
    if isinstance(metric, str):
        return [metric]
    names = list(metric)
    if not names or not all(isinstance(m, str) and m for m in names):
        raise InputError("metric", "must be a name or a non-empty list of names", "")
    if len(set(names)) != len(names):
        raise InputError("metric", f"repeated objective in {names}", "name each objective once")
    return names


def _directions(
    direction: str | Sequence[str] | None, inferred: Sequence[str], objectives: Sequence[str]
) -> list[str]:
    if direction is None:
        return list(inferred)
    given = [direction] if isinstance(direction, str) else list(direction)
    for i, d in enumerate(given):
        _check_choice(
            "direction" if isinstance(direction, str) else f"direction[{i}]", d, _DIRECTIONS
        )
    if len(given) != len(objectives):
        raise InputError(
            "direction",
            f"{len(given)} direction(s) for {len(objectives)} objective(s) {list(objectives)}",
            "give one direction per objective, or leave direction out to infer them",
        )
    return given


def _check_priority(
    priority: Sequence[str] | Mapping[str, float] | None, objectives: Sequence[str]
) -> tuple[tuple[str, ...], dict[str, float]]:
    if priority is None:
        return tuple(objectives), {}
    if isinstance(priority, str):
        priority = [priority]
    tolerances: dict[str, float] = {}
    if isinstance(priority, Mapping):
        for k, v in priority.items():
            if isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0:
                raise InputError(f"priority[{k!r}]", "tolerance must be a number >= 0", "")
            tolerances[str(k)] = float(v)
        names = list(priority)
    else:
        names = list(priority)
    for i, n in enumerate(names):
        if n not in objectives:
            raise InputError(
                f"priority[{i}]", f"{n!r} is not an objective", f"use one of {list(objectives)}"
            )
    rest = [o for o in objectives if o not in names]
    return tuple(names + rest), tolerances


# ---- recommendation --------------------------------------------------------------------------


def _record(
    t: optuna.trial.FrozenTrial,
    constraints: tuple[Constraint, ...],
    objectives: Sequence[str],
) -> dict[str, Any]:
    meas = _measurements(t)
    complete = t.state == optuna.trial.TrialState.COMPLETE
    values = list(t.values) if complete and t.values is not None else None
    value = values[0] if values else None
    by_name = dict(zip(objectives, values or [], strict=False))
    violations: dict[str, float] = {}
    for c in constraints:
        v = meas.get(c.name, by_name.get(c.name))
        violations[str(c)] = math.inf if v is None else max(0.0, c.signed(v))
    compute = t.user_attrs.get(EPOCHS_ATTR, t.user_attrs.get(ITERATIONS_ATTR))
    rec: dict[str, Any] = {
        "number": t.number,
        "state": t.state.name,
        "value": value,
        "values": values,
        "params": dict(t.params),
        "measurements": meas,
        "feasible": complete and all(v <= 0 for v in violations.values()),
        "violations": violations,
        "compute": compute,
    }
    if ERROR_ATTR in t.user_attrs:
        rec["error"] = t.user_attrs[ERROR_ATTR]
    return rec


def _total_violation(rec: dict[str, Any], constraints: tuple[Constraint, ...]) -> float:
    by_name = {str(c): c for c in constraints}
    total = 0.0
    for k, v in rec["violations"].items():
        if v > 0:
            total += float(v) / max(abs(by_name[k].bound), 1e-12)
    return total


def _non_dominated(
    points: Sequence[tuple[dict[str, Any], tuple[float, ...]]],
) -> list[dict[str, Any]]:
    """Records whose key (all coordinates "larger is better") no other key dominates."""
    front = []
    for r, k in points:
        dominated = any(
            all(a >= b for a, b in zip(o, k, strict=True)) and o != k for _, o in points
        )
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: r["number"])


def _pareto_single(
    feasible: list[dict[str, Any]], constraints: tuple[Constraint, ...], maximize: bool, metric: str
) -> list[dict[str, Any]]:
    """Single objective: the front of (metric, first constraint's measurement)."""
    if not constraints:
        return []
    c = constraints[0]
    pts = []
    for r in feasible:
        m = r["value"] if c.name == metric else r["measurements"].get(c.name)
        if m is not None:
            pts.append((r, (r["value"] if maximize else -r["value"], -m if c.op == "<=" else m)))
    return _non_dominated(pts)


def _pareto_multi(
    feasible: list[dict[str, Any]], directions: Sequence[str]
) -> list[dict[str, Any]]:
    pts = []
    for r in feasible:
        vals = r["values"]
        if vals is None or any(v is None or not math.isfinite(v) for v in vals):
            continue
        key = tuple(v if d == "maximize" else -v for v, d in zip(vals, directions, strict=True))
        pts.append((r, key))
    return _non_dominated(pts)


def _by_priority(
    front: list[dict[str, Any]],
    objectives: Sequence[str],
    directions: Sequence[str],
    priority: Sequence[str],
    tolerances: Mapping[str, float],
) -> dict[str, Any]:
    """Lexicographic choice: keep the trials tied (within tolerance) on each objective in turn."""
    pool = list(front)
    for name in priority:
        i = list(objectives).index(name)
        sign = 1.0 if directions[i] == "maximize" else -1.0
        best = max(sign * r["values"][i] for r in pool)
        tol = tolerances.get(name, PRIORITY_TOLERANCE * abs(best))
        pool = [r for r in pool if sign * r["values"][i] >= best - tol]
        if len(pool) == 1:
            break
    i0 = list(objectives).index(priority[-1])
    sign0 = 1.0 if directions[i0] == "maximize" else -1.0
    return max(pool, key=lambda r: (sign0 * r["values"][i0], -r["number"]))


def _blocked(
    best: dict[str, Any], constraints: tuple[Constraint, ...], objectives: Sequence[str]
) -> list[dict[str, Any]]:
    by_name = dict(zip(objectives, best["values"] or [], strict=False))
    out = []
    for c in constraints:
        amount = best["violations"][str(c)]
        if amount > 0:
            out.append(
                {
                    "constraint": str(c),
                    "name": c.name,
                    "op": c.op,
                    "bound": c.bound,
                    "value": best["measurements"].get(c.name, by_name.get(c.name)),
                    "violation": amount,
                }
            )
    return out


# ---- the search loop -------------------------------------------------------------------------


class _NoReportTrial:
    """A trial for multi-objective studies, where Optuna has no intermediate values.

    The model entries' training loops report every epoch for pruning; in a multi-objective
    study those calls become no-ops and nothing is pruned.
    """

    def __init__(self, trial: optuna.Trial) -> None:
        self._trial = trial

    def report(self, value: float, step: int) -> None:
        return None

    def should_prune(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)


@contextlib.contextmanager
def _no_lock() -> Iterator[None]:
    yield


def _is_torch_model(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _budget_spent(study: optuna.Study, total: int) -> bool:
    """Whether the study holds ``total`` started trials that did not fail (or ``total``
    failures).

    Failed trials (an exception, a dead worker) are replaced, so the workers complete
    exactly ``total`` trials between them; a study where everything fails stops too.
    """
    states = [t.state for t in study.get_trials(deepcopy=False)]
    failed = states.count(optuna.trial.TrialState.FAIL)
    # an enqueued trial (trial 0) waits for a worker to ask for it: it is not spent yet
    waiting = states.count(optuna.trial.TrialState.WAITING)
    return len(states) - failed - waiting >= total or failed >= total


_WAIT_S = 1.0


def _running(study: optuna.Study) -> frozenset[int]:
    return frozenset(
        t.number
        for t in study.get_trials(deepcopy=False)
        if t.state == optuna.trial.TrialState.RUNNING
    )


def _run(
    study: optuna.Study,
    run_one: Callable[[optuna.Trial], list[float]],
    *,
    n_trials: int | None,
    timeout: float | None,
    total_trials: int | None,
    lock: Callable[[], ContextManager[Any]],
    reraise: bool,
    progress: Callable[[dict[str, Any]], None] | None,
    single: bool,
) -> None:
    """Ask/tell loop: like ``study.optimize``, plus a study-wide trial budget under a lock.

    With a heartbeat-enabled RDB storage (``RDBStorage(heartbeat_interval=...)``, as
    ``tunelens tune`` opens it), each running trial beats, and trials whose worker died are
    failed once their grace period passes, so they neither block the budget nor count in it.
    """
    from optuna.storages._heartbeat import get_heartbeat_thread, is_heartbeat_enabled

    heartbeat = is_heartbeat_enabled(study._storage)
    grace = getattr(study._storage, "grace_period", None) or 60
    max_wait = 3.0 * float(grace)
    waited_on: frozenset[int] = frozenset()
    waiting_since = time.monotonic()
    started = time.monotonic()
    done = 0
    goal = total_trials if total_trials is not None else n_trials
    while True:
        if n_trials is not None and done >= n_trials:
            return
        if timeout is not None and time.monotonic() - started >= timeout:
            return
        with lock():
            if heartbeat:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(study)
            spent = total_trials is not None and _budget_spent(study, total_trials)
            running = _running(study) if spent and heartbeat else frozenset()
            if running != waited_on:
                waited_on, waiting_since = running, time.monotonic()
            if spent and (not running or time.monotonic() - waiting_since > max_wait):
                return
            if not spent:
                with warnings.catch_warnings():
                    # tunelens runs its own ask/tell loop and beats itself (below)
                    warnings.filterwarnings("ignore", message="Heartbeat of storage")
                    trial = study.ask()
                if heartbeat:  # at once: a trial killed before its first beat never goes stale
                    study._storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
        if spent:
            # a running trial may belong to a dead worker: wait until it finishes or its
            # heartbeat goes stale (then it fails and a replacement is needed); a trial
            # that never beat cannot go stale, so the wait ends after max_wait unchanged
            time.sleep(_WAIT_S)
            continue
        state = optuna.trial.TrialState.COMPLETE
        values: list[float] | None = None
        error: BaseException | None = None
        try:
            with get_heartbeat_thread(trial._trial_id, study._storage):
                values = run_one(trial)
            if any(not math.isfinite(v) for v in values):
                trial.set_user_attr(ERROR_ATTR, f"objective returned a non-finite value {values}")
                state, values = optuna.trial.TrialState.FAIL, None
        except optuna.TrialPruned:
            state = optuna.trial.TrialState.PRUNED
        except KeyboardInterrupt:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        except Exception as exc:
            trial.set_user_attr(ERROR_ATTR, f"{type(exc).__name__}: {exc}")
            state, error = optuna.trial.TrialState.FAIL, exc
        frozen = study.tell(trial, values, state=state)
        done += 1
        if error is not None and (reraise or isinstance(error, InputError)):
            raise error
        if progress is not None:
            best = None
            if single:
                with contextlib.suppress(ValueError):
                    best = study.best_value
            progress(
                {
                    "number": frozen.number,
                    "state": frozen.state.name,
                    "value": frozen.values[0] if frozen.values else None,
                    "done": done if total_trials is None else len(study.get_trials(deepcopy=False)),
                    "total": goal,
                    "best": best,
                }
            )


# ---- public entry ----------------------------------------------------------------------------


@dataclass
class _Task:
    objective: Callable[[optuna.Trial], Any]
    space: dict[str, Dist]
    metric: str
    higher_is_better: bool
    default_params: dict[str, Any]
    fit_best: Callable[[Mapping[str, Any], int], Any] | None
    measurements: tuple[str, ...] | None
    explanation: list[str]
    max_resource: int | None = None


def _model_task(
    model: Any,
    *,
    data: Any,
    space: str | Mapping[str, Dist],
    metric: str | None,
    seed: int | None,
    cv: int | None,
    findings: Sequence[Any],
    epochs: int | None,
    latency_batch: int,
    device: str | None = None,
) -> _Task:
    if hasattr(model, "fit") and hasattr(model, "predict") and not _is_torch_model(model):
        from tunelens.tune._sklearn import SKLEARN_MEASUREMENTS, sklearn_task

        if epochs is not None:
            raise InputError("epochs", "only used with PyTorch models", "drop epochs=")
        explanation: list[str] = []
        if isinstance(space, str):
            _check_choice("space", space, ["auto"])
            chosen, explanation = sklearn_auto_space(model, findings)
        else:
            chosen = validate_space(space, list(model.get_params()))
        sk = sklearn_task(
            model,
            data=data,
            space=chosen,
            metric=metric,
            seed=seed,
            cv=cv,
            latency_batch=latency_batch,
        )
        return _Task(
            sk.objective,
            chosen,
            sk.metric,
            sk.higher_is_better,
            sk.default_params,
            lambda params, _number: sk.fit_best(params),
            SKLEARN_MEASUREMENTS,
            explanation + sk.explanation,
            sk.max_resource,
        )
    if _is_torch_model(model) or callable(model):
        try:
            from tunelens.tune.torch_train import torch_task
        except ImportError as exc:  # pragma: no cover - torch is an optional extra
            raise InputError(
                "objective_or_model",
                f"PyTorch models need torch ({exc})",
                "pip install 'tunelens[torch]'",
            ) from exc
        if cv is not None:
            raise InputError("cv", "cross-validation is for scikit-learn estimators", "drop cv=")
        tt = torch_task(
            model,
            data=data,
            space=space,
            metric=metric,
            seed=seed,
            epochs=epochs,
            findings=tuple(findings),
            latency_batch=latency_batch,
            device=_torch_device(device),
        )
        return _Task(
            tt.objective,
            dict(tt.space),
            tt.metric,
            tt.higher_is_better,
            dict(tt.default_params),
            lambda params, number: tt.fit_best(params, number=number),
            TORCH_MEASUREMENTS,
            list(tt.explanation),
            int(tt.epochs),
        )
    raise InputError(
        "objective_or_model",
        f"expected a callable or a model, got {type(model).__name__}",
        "pass f(trial) -> float, a scikit-learn estimator, or a torch.nn.Module / factory",
    )


def tune(
    objective_or_model: Callable[[optuna.Trial], Any] | Any,
    *,
    data: Any = None,
    space: str | Mapping[str, Dist] = "auto",
    metric: str | Sequence[str] | None = None,
    direction: str | Sequence[str] | None = None,
    constraints: Sequence[Constraint] | Constraint = (),
    priority: Sequence[str] | Mapping[str, float] | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    storage: str | optuna.storages.BaseStorage | None = None,
    study_name: str | None = None,
    pruner: str | optuna.pruners.BasePruner = "asha",
    cv: int | None = None,
    seed: int | None = None,
    findings: Sequence[Any] = (),
    epochs: int | None = None,
    latency_batch: int = 1,
    total_trials: int | None = None,
    trial_lock: Callable[[], ContextManager[Any]] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    refit: bool = True,
    device: str | None = None,
) -> TuneResult:
    """Search hyper-parameters and training remedies with Optuna under measured constraints.

    Entries:

    * ``objective_or_model`` is a callable ``f(trial)`` and ``data`` is None: it is
      **maximised** unless ``direction="minimize"`` is given (Optuna's own default is to
      minimise: pass the direction for a loss); it may call ``trial.report`` /
      ``trial.should_prune`` (``pruner``: ``"asha"``, ``"median"``, ``"none"``) and
      :func:`measure` to record measurements for constraints.
      It returns a float, or one float per objective when ``metric`` names several.
    * a scikit-learn estimator with ``data=(X, y)`` (a seeded 25% holdout) or
      ``(X_train, y_train, X_val, y_val)``, or ``cv=k`` for k-fold scores: each trial fits a
      clone with parameters sampled from ``space`` (``"auto"``: the default space of the
      estimator, adjusted by ``findings``). Ensembles with ``warm_start`` are fitted in stages
      and pruned between stages. ``metric``: accuracy (default), f1, log_loss; r2
      (default), mae, mse, rmse.
    * a ``torch.nn.Module`` (each trial trains a copy, so pretrained weights are kept) or a
      factory returning one (``functools.partial(tunelens.tune.models.MLP, 64, 10)``), with
      ``data=(X, y)``, 4 arrays or ``(train_loader, val_loader)``: tunelens writes the
      training loop and searches the remedies of :mod:`tunelens.tune.remedies`
      (``space="auto"`` builds the space from the model and ``findings``, and says why in
      ``explanation``). ``epochs`` caps each trial's training (default 20).

    Model entries measure ``latency_p50_ms``/``latency_p99_ms`` (``latency_batch`` rows on
    this machine) and ``model_bytes`` on every trial (PyTorch adds ``flops`` and
    ``peak_memory_bytes``), and start from the model's own (or a known-good) configuration
    as trial 0. Constraints (``Constraint(name, op, bound)``) are set on each trial through
    ``trial.set_constraint`` so Optuna's samplers see them.

    With several objectives (``metric=("accuracy", "latency_p99_ms")``; the first a metric,
    the others metrics or measurements, directions inferred: measurements are minimised),
    the study is multi-objective (no pruning), ``pareto`` is the feasible front and the
    recommendation is chosen from it by ``priority``: a list of objective names taken
    lexicographically, trials within 1% of the best on one counting as tied, or a mapping
    name -> absolute tolerance. With one objective the recommendation is the best feasible
    trial. If no trial is feasible, it is the one with the least total (relative)
    violation, with ``feasible=False`` and ``blocked_by``; never an exception.

    ``n_trials`` is the number of trials this call runs (default 20 when neither it,
    ``timeout`` nor ``total_trials`` is given). ``total_trials`` stops when the study holds
    that many trials that did not fail, in all (workers sharing a study; a failed trial,
    e.g. one whose worker died, is replaced; everything failing stops at that many
    failures); ``trial_lock`` returns a context manager held around "count, then ask" so that
    concurrent workers create exactly ``total_trials``. ``progress(event)`` is called after
    each trial with ``number, state, value, done, total, best``. ``refit=False`` skips
    training the recommended model at the end (``result.model`` is then ``None``).
    ``device`` is where PyTorch entries train and are timed (``"cpu"``, ``"cuda"``,
    ``"cuda:1"``; default ``"cuda"`` when torch sees a GPU, else ``"cpu"``).

    Raises:
        InputError: unknown pruner, direction, metric, priority, constraint operator or name,
            bad ``data`` or ``space``, ``n_trials`` < 1.
    """
    _make_pruner(pruner)  # checks the name before any work
    for name, v in (("n_trials", n_trials), ("total_trials", total_trials)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise InputError(name, f"must be a positive integer or None, got {v!r}", "")
    if n_trials is None and timeout is None and total_trials is None:
        n_trials = DEFAULT_TRIALS
    if timeout is not None and not timeout > 0:
        raise InputError("timeout", f"must be > 0 seconds or None, got {timeout!r}", "")
    if isinstance(latency_batch, bool) or not isinstance(latency_batch, int) or latency_batch < 1:
        raise InputError("latency_batch", f"must be a positive integer, got {latency_batch!r}", "")
    names = _names(metric)
    user_objective = (
        data is None
        and callable(objective_or_model)
        and not (hasattr(objective_or_model, "fit") or _is_torch_model(objective_or_model))
    )

    explanation: list[str] = []
    task: _Task | None = None
    if user_objective:
        if not isinstance(space, str) or space != "auto":
            raise InputError("space", "only used with a model", "sample inside the objective")
        if cv is not None:
            raise InputError("cv", "only used with a scikit-learn estimator", "drop cv=")
        objectives = names or ["value"]
        directions = _directions(direction, ["maximize"] * len(objectives), objectives)
        cons = _check_constraints(constraints, None)
        objective = objective_or_model
    else:
        if not (callable(objective_or_model) or hasattr(objective_or_model, "fit")):
            raise InputError(
                "objective_or_model",
                f"expected a callable or a model, got {type(objective_or_model).__name__}",
                "pass f(trial) -> float, a scikit-learn estimator, or a torch.nn.Module/factory",
            )
        if data is None:
            raise InputError(
                "data", "a model needs data", "pass data=(X, y) or (X_tr, y_tr, X_va, y_va)"
            )
        first = names[0] if names else None
        task = _model_task(
            objective_or_model,
            data=data,
            space=space,
            metric=first,
            seed=seed,
            cv=cv,
            findings=findings,
            epochs=epochs,
            latency_batch=latency_batch,
            device=device,
        )
        objectives = [task.metric, *(names[1:] if names else [])]
        known = [*(task.measurements or ()), task.metric]
        for i, o in enumerate(objectives[1:], start=1):
            if o not in (task.measurements or ()):
                raise InputError(
                    f"metric[{i}]",
                    f"unknown objective {o!r}",
                    f"use a measurement: one of {list(task.measurements or ())}",
                )
        inferred = ["maximize" if task.higher_is_better else "minimize"] + ["minimize"] * (
            len(objectives) - 1
        )
        directions = _directions(direction, inferred, objectives)
        if directions[0] != inferred[0]:
            raise InputError(
                "direction",
                f"{directions[0]!r} does not fit metric {task.metric!r}",
                f"pass direction={inferred[0]!r} or leave it out",
            )
        cons = _check_constraints(constraints, known)
        objective = task.objective
        explanation = list(task.explanation)
    pruner_obj = _make_pruner(pruner, task.max_resource if task is not None else None)
    order, tolerances = _check_priority(priority, objectives)
    multi = len(objectives) > 1
    lock = trial_lock if trial_lock is not None else _no_lock

    def measured(trial: optuna.Trial) -> dict[str, float]:
        return {
            k[len(_MEASURE_PREFIX) :]: float(v)
            for k, v in trial.user_attrs.items()
            if k.startswith(_MEASURE_PREFIX)
        }

    def run_one(trial: optuna.Trial) -> list[float]:
        t: Any = _NoReportTrial(trial) if multi else trial
        try:
            result = objective(t)
        except optuna.TrialPruned:
            # what was measured before the pruner stopped it still tells the sampler
            # whether this region is feasible
            meas = measured(trial)
            for c in cons:
                if c.name in meas:
                    trial.set_constraint(str(c), c.signed(meas[c.name]))
            raise
        meas = measured(trial)
        if user_objective and multi:
            values = [float(v) for v in result]
            if len(values) != len(objectives):
                raise InputError(
                    "objective", f"returned {len(values)} values for objectives {objectives}", ""
                )
        else:
            values = [float(result)]
            for o in objectives[1:]:
                if o not in meas:
                    raise InputError(
                        f"metric[{objectives.index(o)}]", f"{o!r} was not measured", ""
                    )
                values.append(meas[o])
        by_name = dict(zip(objectives, values, strict=True))
        for c in cons:
            v = meas.get(c.name, by_name.get(c.name))
            trial.set_constraint(str(c), math.inf if v is None else c.signed(v))
        return values

    # Optuna's 10 random start-up trials suit budgets of hundreds; with tens of trials a
    # fifth of the budget (5 to 10) leaves more trials to the model of TPE.
    budget = total_trials or n_trials or 50
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(5, budget // 5)))
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        directions=cast(Any, directions),
        sampler=sampler,
        pruner=pruner_obj,
        load_if_exists=study_name is not None,
    )
    if task is not None and task.default_params:
        with lock():
            if not study.get_trials(deepcopy=False):
                study.enqueue_trial(task.default_params, skip_if_exists=True)
        shown = ", ".join(f"{k}={v}" for k, v in task.default_params.items())
        explanation.append(f"trial 0 starts from the model's own or a known-good setting: {shown}")
    _run(
        study,
        run_one,
        n_trials=n_trials,
        timeout=timeout,
        total_trials=total_trials,
        lock=lock,
        reraise=user_objective,
        progress=progress,
        single=not multi,
    )

    records = [_record(t, cons, objectives) for t in study.trials]
    complete = [r for r in records if r["state"] == "COMPLETE" and r["values"] is not None]
    feasible = [r for r in complete if r["feasible"]]
    maximize = directions[0] == "maximize"
    sign = 1.0 if maximize else -1.0
    best: dict[str, Any] | None = None
    blocked: list[dict[str, Any]] = []
    if multi:
        pareto = _pareto_multi(feasible, directions)
        if pareto:
            best = _by_priority(pareto, objectives, directions, order, tolerances)
    else:
        pareto = _pareto_single(feasible, cons, maximize, objectives[0])
        if feasible:
            best = max(feasible, key=lambda r: (sign * r["value"], -r["number"]))
    if best is None and complete:
        best = min(complete, key=lambda r: (_total_violation(r, cons), -sign * r["value"]))
        blocked = _blocked(best, cons, objectives)

    model = None
    if refit and task is not None and task.fit_best is not None and best is not None:
        params = {k: best["params"][k] for k in task.space if k in best["params"]}
        model = task.fit_best(params, best["number"])

    return TuneResult(
        study=study,
        best=best,
        feasible=bool(feasible),
        blocked_by=blocked,
        trials=records,
        pareto=pareto,
        metric=objectives[0],
        direction=directions[0],
        constraints=cons,
        model=model,
        space=task.space if task is not None else {},
        objectives=tuple(objectives),
        directions=tuple(directions),
        priority=order if multi else (),
        explanation=explanation,
    )


def _torch_device(device: str | None) -> Any:
    """``device`` for torch entries; None: the GPU when torch sees one, else the CPU."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(
            "device", f"is {device!r} ({exc})", "use 'cpu', 'cuda' or 'cuda:N'"
        ) from None
