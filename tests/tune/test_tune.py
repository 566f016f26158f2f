"""tunelens.tune: Optuna-driven search with constraints."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from tunelens.errors import InputError
from tunelens.tune import Constraint, Dist, default_space, measure, tune

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _curve(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    value = 0.0
    for step in range(1, 21):
        value = x * (1 - 0.5**step)
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return value


def test_objective_with_asha_prunes() -> None:
    res = tune(_curve, n_trials=30, pruner="asha", seed=0)
    states = [t["state"] for t in res.trials]
    assert "PRUNED" in states
    assert res.best is not None and res.feasible
    assert res.best["value"] == max(t["value"] for t in res.trials if t["value"] is not None)
    json.dumps(res.to_dict())
    assert "pruned" in res.summary()


def test_objective_measurements_and_constraint() -> None:
    def f(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        measure(trial, "cost", x * 10)
        return x

    res = tune(f, constraints=[Constraint("cost", "<=", 5)], n_trials=15, seed=1, pruner="none")
    assert res.feasible and res.best is not None
    assert res.best["measurements"]["cost"] <= 5
    assert res.best["params"]["x"] <= 0.5
    # Optuna itself sees the constraint
    ft = res.study.trials[res.best["number"]]
    assert all(v <= 0 for v in ft.constraints.values())
    assert res.pareto and all(t["feasible"] for t in res.pareto)


@pytest.fixture(scope="module")
def cancer() -> tuple[Any, Any]:
    X, y = load_breast_cancer(return_X_y=True)
    return X, y


def _default_score(model: Any, data: tuple[Any, Any]) -> float:
    res = tune(model, data=data, space={"C": Dist.choice(model.C)}, n_trials=1, seed=0)
    assert res.best is not None
    return float(res.best["value"])


def test_logistic_regression_beats_default_and_uses_sampled_c(cancer: tuple[Any, Any]) -> None:
    base = LogisticRegression(C=1e-3, max_iter=200)
    default = _default_score(base, cancer)
    res = tune(base, data=cancer, n_trials=12, seed=0)
    assert res.best is not None and res.feasible
    assert res.best["value"] > default
    assert res.model is not None
    assert res.best["params"]["C"] == res.model.C
    # the sampled C was really used in each trial: all C values differ and scores vary
    cs = [t["params"]["C"] for t in res.trials]
    assert len(set(cs)) == len(cs)
    assert {"latency_p99_ms", "model_bytes"} <= set(res.best["measurements"])


def test_random_forest_classifier_beats_default(cancer: tuple[Any, Any]) -> None:
    X, y = cancer
    base = RandomForestClassifier(n_estimators=5, max_depth=1, random_state=0)
    base.fit(X[:400], y[:400])
    from tunelens.metrics import accuracy_score

    default = accuracy_score(y[400:], base.predict(X[400:]))
    res = tune(base, data=(X[:400], y[:400], X[400:], y[400:]), n_trials=8, seed=0)
    assert res.best is not None
    assert res.best["value"] > default
    assert res.model.n_estimators == res.best["params"]["n_estimators"]
    assert set(default_space(base)) == {
        "n_estimators",
        "max_depth",
        "min_samples_leaf",
        "max_features",
    }


def test_regression_metric_default_r2() -> None:
    from sklearn.linear_model import Ridge

    X, y = load_diabetes(return_X_y=True)
    res = tune(Ridge(), data=(X, y), n_trials=5, seed=0)
    assert res.metric == "r2" and res.best is not None and res.best["value"] > 0.2


def test_latency_constraint_some_trials_meet(cancer: tuple[Any, Any]) -> None:
    base = RandomForestClassifier(random_state=0)
    # a latency budget that small forests meet and large ones do not (median of a probe run)
    probe = tune(base, data=cancer, n_trials=8, seed=3)
    lats = sorted(
        t["measurements"]["latency_p99_ms"] for t in probe.trials if t["state"] == "COMPLETE"
    )
    bound = lats[len(lats) // 2]
    res = tune(
        base,
        data=cancer,
        n_trials=8,
        seed=3,
        constraints=[
            Constraint("latency_p99_ms", "<=", bound),
            Constraint("model_bytes", "<=", 1e9),
        ],
    )
    assert res.feasible and res.best is not None
    assert res.best["measurements"]["latency_p99_ms"] <= bound
    assert any(not t["feasible"] for t in res.trials)
    assert not res.blocked_by
    assert all(t["feasible"] for t in res.pareto)


def test_impossible_constraint_gives_closest_trial(cancer: tuple[Any, Any]) -> None:
    res = tune(
        LogisticRegression(max_iter=200),
        data=cancer,
        n_trials=5,
        seed=0,
        constraints=[Constraint("latency_p99_ms", "<=", 1e-9)],
    )
    assert res.feasible is False
    assert res.best is not None
    lat = [t["measurements"]["latency_p99_ms"] for t in res.trials if t["measurements"]]
    assert res.best["measurements"]["latency_p99_ms"] == min(lat)
    assert res.blocked_by[0]["name"] == "latency_p99_ms"
    assert res.blocked_by[0]["value"] > 1e-9 and res.blocked_by[0]["violation"] > 0
    assert "blocked by latency_p99_ms" in res.summary()
    d = res.to_dict()
    json.dumps(d)
    assert d["feasible"] is False


def test_metric_floor_constraint(cancer: tuple[Any, Any]) -> None:
    res = tune(
        LogisticRegression(max_iter=200),
        data=cancer,
        n_trials=4,
        seed=0,
        constraints=[Constraint("accuracy", ">=", 1.01)],
    )
    assert not res.feasible and res.blocked_by[0]["name"] == "accuracy"


def test_sqlite_storage_round_trip(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    res = tune(_curve, n_trials=6, storage=url, study_name="s1", seed=0, pruner="none")
    loaded = optuna.load_study(study_name="s1", storage=url)
    assert len(loaded.trials) == 6
    assert [t.params for t in loaded.trials] == [t["params"] for t in res.trials]
    # resuming appends to the same study
    res2 = tune(_curve, n_trials=2, storage=url, study_name="s1", seed=1, pruner="none")
    assert len(res2.trials) == 8


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"pruner": "hyperband2"}, "pruner"),
        ({"direction": "up"}, "direction"),
        ({"metric": "auc_roc_magic"}, "metric"),
        ({"space": {"C": Dist.real(10.0, 1.0)}}, "space['C']"),
        ({"space": {"nope": Dist.real(1.0, 10.0)}}, "space['nope']"),
        ({"constraints": [Constraint("latency_p99_ms", "<>", 1)]}, "constraints[0].op"),
        ({"constraints": [Constraint("gpu_watts", "<=", 1)]}, "constraints[0].name"),
        ({"n_trials": 0}, "n_trials"),
        ({"data": (1, 2, 3)}, "data"),
        ({"metric": "mae"}, "metric"),
        ({"metric": "accuracy", "direction": "minimize"}, "direction"),
        ({"metric": ["accuracy", "gpu_watts"]}, "metric[1]"),
        ({"metric": ["accuracy", "latency_p99_ms"], "priority": ["speed"]}, "priority[0]"),
        ({"cv": 1}, "cv"),
        ({"latency_batch": 0}, "latency_batch"),
    ],
)
def test_bad_inputs_name_the_field(
    cancer: tuple[Any, Any], kwargs: dict[str, Any], field: str
) -> None:
    args: dict[str, Any] = {"data": cancer, "n_trials": 1, **kwargs}
    with pytest.raises(InputError) as err:
        tune(LogisticRegression(), **args)
    assert err.value.field == field


def test_unknown_estimator_space_and_bad_objective() -> None:
    from sklearn.neighbors import KNeighborsClassifier

    X, y = load_breast_cancer(return_X_y=True)
    with pytest.raises(InputError, match="space"):
        tune(KNeighborsClassifier(), data=(X, y), n_trials=1)
    with pytest.raises(InputError) as err:
        tune(42, n_trials=1)
    assert err.value.field == "objective_or_model"
    assert math.isfinite(Dist.real(1e-3, 1.0, log=True).high or 0)


def test_a_pipeline_is_tuned_through_its_last_step() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from tunelens.tune import sklearn_auto_space

    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    space, why = sklearn_auto_space(pipe)
    assert set(space) == {"logisticregression__" + k for k in default_space(LogisticRegression())}
    assert "last step 'logisticregression'" in why[0]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)) * [1, 100, 0.01, 1]
    y = (X[:, 0] + X[:, 1] / 100 > 0).astype(int)
    result = tune(pipe, data=(X, y), n_trials=4, seed=0)
    c = result.model.get_params()["logisticregression__C"]
    assert c == result.best["params"]["logisticregression__C"]  # the sampled value reached it
    assert result.model.steps[0][0] == "standardscaler" and result.best["value"] > 0.9


def test_a_budget_of_one_trial_runs_the_enqueued_first_trial() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] > 0).astype(int)
    # trial 0 (the estimator's own setting) waits in the queue: it is not yet spent
    result = tune(LogisticRegression(), data=(X, y), n_trials=None, total_trials=1, seed=0)
    assert [t["state"] for t in result.trials] == ["COMPLETE"] and result.model is not None
