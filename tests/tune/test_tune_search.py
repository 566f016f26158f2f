"""tune(): several objectives and priority, staged pruning of ensembles, cv, budgets, findings."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import optuna
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score

from tunelens.errors import InputError
from tunelens.findings import Finding
from tunelens.tune import Constraint, Dist, measure, tune
from tunelens.tune._tune import _by_priority, _pareto_multi

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def cancer() -> tuple[Any, Any]:
    X, y = load_breast_cancer(return_X_y=True)
    return X, y


def _two(trial: optuna.Trial) -> tuple[float, float]:
    x = trial.suggest_float("x", 0.0, 1.0)
    y = trial.suggest_float("y", 0.0, 1.0)
    return 1 - (x - 0.3) ** 2 - 0.1 * y, x + y  # "accuracy" up, "latency" down


def _brute_front(recs: list[dict[str, Any]]) -> set[int]:
    out = set()
    for r in recs:
        a, lat = r["values"]
        if not any(
            (o["values"][0] >= a and o["values"][1] <= lat) and o["values"] != r["values"]
            for o in recs
        ):
            out.add(r["number"])
    return out


def test_multi_objective_front_is_the_non_dominated_set() -> None:
    res = tune(
        _two,
        metric=["accuracy", "latency"],
        direction=["maximize", "minimize"],
        n_trials=30,
        seed=0,
    )
    complete = [t for t in res.trials if t["state"] == "COMPLETE"]
    assert len(complete) == 30
    assert {t["number"] for t in res.pareto} == _brute_front(complete)
    assert res.best is not None and res.best["number"] in {t["number"] for t in res.pareto}
    # default priority = objectives in order: the most accurate front trial (1% ties)
    top = max(t["values"][0] for t in res.pareto)
    assert res.best["values"][0] >= top - 0.01 * abs(top)
    d = res.to_dict()
    json.dumps(d)
    assert d["schema"] == "tunelens.tune/1"
    assert d["objectives"] == ["accuracy", "latency"] and d["metric"] == ["accuracy", "latency"]
    assert "Pareto front by priority" in res.summary()


def test_priority_picks_by_stated_order() -> None:
    front = [
        {"number": 0, "values": [0.95, 9.0]},
        {"number": 1, "values": [0.949, 3.0]},
        {"number": 2, "values": [0.90, 1.0]},
    ]
    objs, dirs = ["accuracy", "latency"], ["maximize", "minimize"]
    # accuracy first with 1% relative ties: 0.949 ties with 0.95, latency then decides
    assert _by_priority(front, objs, dirs, objs, {})["number"] == 1
    # exact accuracy first: no tie
    assert _by_priority(front, objs, dirs, objs, {"accuracy": 0.0})["number"] == 0
    # latency first
    assert _by_priority(front, objs, dirs, ["latency", "accuracy"], {})["number"] == 2
    # the front helper agrees on a dominated point
    recs = [dict(r, feasible=True) for r in front] + [{"number": 3, "values": [0.89, 2.0]}]
    assert [r["number"] for r in _pareto_multi(recs, dirs)] == [0, 1, 2]


def test_estimator_accuracy_and_latency_with_priority(cancer: tuple[Any, Any]) -> None:
    base = RandomForestClassifier(random_state=0)
    res = tune(
        base,
        data=cancer,
        metric=("accuracy", "model_bytes"),
        priority={"model_bytes": 0.0},
        n_trials=8,
        seed=2,
    )
    assert res.directions == ("maximize", "minimize")
    assert all(t["state"] != "PRUNED" for t in res.trials)  # no pruning with two objectives
    assert res.best is not None
    front_sizes = [t["measurements"]["model_bytes"] for t in res.pareto]
    assert res.best["measurements"]["model_bytes"] == min(front_sizes)
    assert res.best["values"][1] == res.best["measurements"]["model_bytes"]
    assert res.model is not None and res.model.n_estimators == res.best["params"]["n_estimators"]


def test_recommended_meets_constraints_whenever_some_trial_does() -> None:
    def f(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 0.0, 1.0)
        measure(trial, "mem", 100 * x)
        return x, 1 - x

    res = tune(f, metric=["a", "b"], constraints=[Constraint("mem", "<=", 40)], n_trials=25, seed=3)
    ok = [t for t in res.trials if t["feasible"]]
    assert ok and res.feasible
    assert res.best is not None and res.best["measurements"]["mem"] <= 40
    assert all(t["measurements"]["mem"] <= 40 for t in res.pareto)
    # impossible: the closest, said plainly, no exception
    res2 = tune(f, metric=["a", "b"], constraints=[Constraint("mem", "<=", -1)], n_trials=5, seed=3)
    assert not res2.feasible and res2.best is not None and res2.pareto == []
    closest = min(t["measurements"]["mem"] for t in res2.trials)
    assert res2.best["measurements"]["mem"] == closest
    assert res2.blocked_by[0]["name"] == "mem"


def test_staged_boosting_prunes_and_counts_iterations(cancer: tuple[Any, Any]) -> None:
    base = HistGradientBoostingClassifier(max_iter=64, early_stopping=False, random_state=0)
    space = {"learning_rate": Dist.real(1e-4, 0.5, log=True)}
    res = tune(base, data=cancer, space=space, n_trials=16, seed=0)
    pruned = [t for t in res.trials if t["state"] == "PRUNED"]
    complete = [t for t in res.trials if t["state"] == "COMPLETE"]
    assert pruned, "ASHA should stop some poor learning rates early"
    assert all(t["compute"] < 64 for t in pruned)
    assert all(t["compute"] == 64 for t in complete)
    # staged fitting gives the model a direct fit gives
    X, y = cancer
    from sklearn.model_selection import train_test_split

    X_tr, X_va, y_tr, y_va = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    assert res.best is not None
    direct = HistGradientBoostingClassifier(
        max_iter=64, early_stopping=False, random_state=0, **res.best["params"]
    ).fit(X_tr, y_tr)
    assert float((direct.predict(X_va) == y_va).mean()) == pytest.approx(res.best["value"])
    assert "warm-started stages" in " ".join(res.explanation)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_cv_score_equals_sklearn(cancer: tuple[Any, Any]) -> None:
    X, y = cancer
    base = LogisticRegression(max_iter=500)
    res = tune(base, data=(X, y), cv=3, space={"C": Dist.choice(0.01, 1.0)}, n_trials=2, seed=0)
    from sklearn.model_selection import train_test_split

    X_tr, X_va, y_tr, y_va = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    X_all, y_all = np.concatenate([X_tr, X_va]), np.concatenate([y_tr, y_va])
    for t in res.trials:
        want = cross_val_score(
            LogisticRegression(max_iter=500, C=t["params"]["C"]),
            X_all,
            y_all,
            cv=StratifiedKFold(3, shuffle=True, random_state=0),
        ).mean()
        assert t["value"] == pytest.approx(want, abs=1e-12)


def test_total_trials_and_progress() -> None:
    events: list[dict[str, Any]] = []
    storage = optuna.storages.InMemoryStorage()

    def f(trial: optuna.Trial) -> float:
        return trial.suggest_float("x", 0, 1)

    tune(f, n_trials=None, total_trials=5, storage=storage, study_name="s", progress=events.append)
    assert [e["done"] for e in events] == [1, 2, 3, 4, 5]
    assert events[-1]["total"] == 5
    assert events[-1]["best"] == max(e["value"] for e in events)
    # a second worker on the same study finds the budget spent
    res = tune(f, n_trials=None, total_trials=5, storage=storage, study_name="s")
    assert len(res.trials) == 5


def test_trial_zero_is_the_estimators_own_setting(cancer: tuple[Any, Any]) -> None:
    base = LogisticRegression(C=3.0, max_iter=300)
    res = tune(base, data=cancer, n_trials=2, seed=0)
    assert res.trials[0]["params"] == {"C": 3.0}
    assert any("C=3.0" in e for e in res.explanation)


def test_overfitting_finding_moves_the_space(cancer: tuple[Any, Any]) -> None:
    f = Finding("overfitting", "high", "training", "val loss rises", "regularise")
    res = tune(
        HistGradientBoostingClassifier(max_iter=20),
        data=cancer,
        findings=[f, {"kind": "exploding_gradients"}],
        n_trials=2,
        seed=0,
    )
    assert res.space["l2_regularization"].low == pytest.approx(1e-2)
    assert res.space["learning_rate"].high == pytest.approx(0.1)
    text = " ".join(res.explanation)
    assert "overfitting finding" in text and "exploding_gradients" in text


def test_failed_and_non_finite_trials_do_not_stop_a_model_search(cancer: tuple[Any, Any]) -> None:
    # l1 penalty with the default lbfgs solver raises inside fit: the trial fails, the
    # search goes on and the error is kept on the record
    space = {"penalty": Dist.choice("l1", "l2"), "C": Dist.real(0.1, 1.0)}
    res = tune(LogisticRegression(max_iter=300), data=cancer, space=space, n_trials=6, seed=1)
    states = {t["state"] for t in res.trials}
    failed = [t for t in res.trials if t["state"] == "FAIL"]
    assert "COMPLETE" in states
    for t in failed:
        assert t["params"]["penalty"] == "l1" and "error" in t

    def nan(trial: optuna.Trial) -> float:
        return float("nan") if trial.suggest_int("k", 0, 1) else 1.0

    res2 = tune(nan, n_trials=6, seed=0)
    assert {t["state"] for t in res2.trials} <= {"COMPLETE", "FAIL"}
    assert res2.best is not None and res2.best["value"] == 1.0


def test_user_objective_errors_propagate() -> None:
    def boom(trial: optuna.Trial) -> float:
        raise RuntimeError("user bug")

    with pytest.raises(RuntimeError, match="user bug"):
        tune(boom, n_trials=2)
    with pytest.raises(InputError) as err:
        tune(_two, metric=["a", "b"], direction=["maximize"], n_trials=1)
    assert err.value.field == "direction"


def test_brute_force_front_helper() -> None:
    # (accuracy up, latency down): (2, 1) dominates (1, 1) and (2, 2)
    recs = [{"number": i, "values": list(v)} for i, v in enumerate([(1, 1), (2, 2), (2, 1)])]
    assert _brute_front(recs) == {2}


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_dead_workers_trial_is_failed_and_replaced(tmp_path: Any) -> None:
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1, grace_period=1
    )
    study = optuna.create_study(storage=storage, study_name="s")
    dead = study.ask()  # a worker started this trial, beat once, then died
    storage.record_heartbeat(dead._trial_id)
    # the survivor starts at once: when the budget looks spent it waits for the dead
    # trial's heartbeat to go stale rather than ending the study one trial short

    def f(trial: optuna.Trial) -> float:
        return trial.suggest_float("x", 0, 1)

    res = tune(f, n_trials=None, total_trials=3, storage=storage, study_name="s")
    states = [t["state"] for t in res.trials]
    assert states[0] == "FAIL" and states[1:] == ["COMPLETE"] * 3
    # everything failing stops at the budget rather than looping
    boom_calls: list[int] = []

    def boom(trial: optuna.Trial) -> float:
        boom_calls.append(trial.number)
        raise RuntimeError("always")

    with pytest.raises(RuntimeError):
        tune(boom, n_trials=None, total_trials=2, storage=storage, study_name="t")


def test_values_the_estimator_refuses_are_input_errors(cancer: tuple[Any, Any]) -> None:
    from sklearn.tree import DecisionTreeClassifier

    with pytest.raises(InputError) as err:
        tune(DecisionTreeClassifier(), data=cancer, space={"max_depth": Dist.integer(-5, -1)})
    assert err.value.field == "space['max_depth']" and "-5" in str(err.value)
    with pytest.raises(InputError) as err:
        tune(LogisticRegression(), data=cancer, space={"C": Dist.choice(1.0, "big")})
    assert err.value.field == "space['C']" and "'big'" in str(err.value)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_cv_refits_on_every_row_and_refuses_a_fixed_split(cancer: tuple[Any, Any]) -> None:
    X, y = cancer
    res = tune(
        LogisticRegression(max_iter=300),
        data=(X, y),
        cv=3,
        space={"C": Dist.choice(0.5)},
        n_trials=1,
    )
    from sklearn.model_selection import train_test_split

    X_tr, X_va, y_tr, y_va = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    full = LogisticRegression(max_iter=300, C=0.5).fit(
        np.concatenate([X_tr, X_va]), np.concatenate([y_tr, y_va])
    )
    np.testing.assert_allclose(res.model.coef_, full.coef_)
    with pytest.raises(InputError) as err:
        tune(LogisticRegression(), data=(X[:400], y[:400], X[400:], y[400:]), cv=3, n_trials=1)
    assert err.value.field == "data"
