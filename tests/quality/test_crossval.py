"""tunelens.quality.crossval: per-fold metrics equal scikit-learn's, the fold test, torch."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import model_selection
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

from tunelens.errors import InputError
from tunelens.findings import KINDS
from tunelens.metrics import accuracy_score, f1_score
from tunelens.quality.crossval import (
    CrossValidation,
    TorchClassifier,
    TorchRegressor,
    _chi2_test,
    cross_validate,
)


def _binary(seed: int, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (X[:, 0] - 0.5 * X[:, 1] + rng.normal(size=n) > 0).astype(int)
    return X, y


def _regression(seed: int, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, X @ np.array([1.0, 2.0, 0.0]) + rng.normal(size=n)


def _sklearn(model: Any, X: Any, y: Any, cv: Any, scoring: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = model_selection.cross_validate(model, X, y, cv=cv, scoring=scoring)
    return out


# ------------------------------------------------------------- equal to scikit-learn


def test_binary_per_fold_metrics_equal_sklearn() -> None:
    X, y = _binary(0)
    splitter = StratifiedKFold(5, shuffle=True, random_state=0)
    ours = cross_validate(LogisticRegression(), X, y)  # cv=5 means that splitter
    assert ours.task == "binary"
    assert ours.metrics == (
        "accuracy",
        "error_rate",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "log_loss",
        "brier",
    )
    scoring = {
        "accuracy": "accuracy",
        "precision": "precision",
        "recall": "recall",
        "f1": "f1",
        "roc_auc": "roc_auc",
        "log_loss": "neg_log_loss",
        "brier": "neg_brier_score",
    }
    ref = _sklearn(LogisticRegression(), X, y, splitter, scoring)
    sign = {"log_loss": -1.0, "brier": -1.0}
    for name in scoring:
        expected = sign.get(name, 1.0) * ref[f"test_{name}"]
        got = np.array([f[name] for f in ours.folds])
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9, err_msg=name)
    np.testing.assert_allclose(
        [f["error_rate"] for f in ours.folds], 1.0 - ref["test_accuracy"], atol=1e-9
    )
    assert ours.fold_sizes == tuple(len(te) for _, te in splitter.split(X, y))
    assert len(ours.fit_times) == 5 and all(t >= 0 for t in ours.fit_times)


def test_multiclass_per_fold_metrics_equal_sklearn_on_a_dataframe() -> None:
    rng = np.random.default_rng(1)
    n = 450
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    score = frame["a"] + 0.5 * frame["b"] + 0.7 * rng.normal(size=n)
    y = np.where(score < -0.5, "low", np.where(score < 0.5, "mid", "high"))
    ours = cross_validate(LogisticRegression(), frame, pd.Series(y), cv=4, seed=3)
    assert ours.task == "multiclass"
    assert "brier" not in ours.metrics
    splitter = StratifiedKFold(4, shuffle=True, random_state=3)
    scoring = {
        "accuracy": "accuracy",
        "precision": "precision_macro",
        "recall": "recall_macro",
        "f1": "f1_macro",
        "roc_auc": "roc_auc_ovr",
        "log_loss": "neg_log_loss",
    }
    ref = _sklearn(LogisticRegression(), frame, y, splitter, scoring)
    for name in scoring:
        expected = (-1.0 if name == "log_loss" else 1.0) * ref[f"test_{name}"]
        got = np.array([f[name] for f in ours.folds])
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9, err_msg=name)


def test_regression_per_fold_metrics_equal_sklearn_and_mean_std() -> None:
    X, y = _regression(2, 500)
    ours = cross_validate(Ridge(), X, y, cv=5, seed=7)
    assert ours.task == "regression" and ours.metrics == ("mae", "rmse", "r2")
    splitter = KFold(5, shuffle=True, random_state=7)
    scoring = {
        "mae": "neg_mean_absolute_error",
        "rmse": "neg_root_mean_squared_error",
        "r2": "r2",
    }
    ref = _sklearn(Ridge(), X, y, splitter, scoring)
    for name in scoring:
        expected = (1.0 if name == "r2" else -1.0) * ref[f"test_{name}"]
        got = np.array([f[name] for f in ours.folds])
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9, err_msg=name)
        assert ours.mean[name] == pytest.approx(float(np.mean(expected)), abs=1e-12)
        assert ours.std[name] == pytest.approx(float(np.std(expected, ddof=1)), abs=1e-12)


def test_splitter_object_and_groups_are_used() -> None:
    X, y = _regression(3, 200)
    groups = np.repeat(np.arange(20), 10)
    splitter = GroupKFold(4)
    ours = cross_validate(LinearRegression(), X, y, cv=splitter, groups=groups, metrics="mae")
    ref = model_selection.cross_validate(
        LinearRegression(),
        X,
        y,
        cv=splitter,
        groups=groups,
        scoring="neg_mean_absolute_error",
    )
    np.testing.assert_allclose([f["mae"] for f in ours.folds], -ref["test_score"], atol=1e-9)
    # an int cv with groups keeps every group on one side of each split
    grouped = cross_validate(LinearRegression(), X, y, cv=4, groups=groups)
    assert "GroupKFold" in grouped.splitter and sum(grouped.fold_sizes) == 200


def test_sample_weight_goes_to_fit_and_metrics() -> None:
    X, y = _binary(4, 300)
    w = np.random.default_rng(0).uniform(0.2, 3.0, size=y.size)
    ours = cross_validate(
        LogisticRegression(), X, y, cv=3, metrics=["accuracy", "f1"], sample_weight=w
    )
    splitter = StratifiedKFold(3, shuffle=True, random_state=0)
    for fold, (train, test) in zip(ours.folds, splitter.split(X, y), strict=True):
        model = LogisticRegression().fit(X[train], y[train], sample_weight=w[train])
        pred = model.predict(X[test])
        assert fold["accuracy"] == pytest.approx(
            accuracy_score(y[test], pred, sample_weight=w[test]), abs=1e-12
        )
        assert fold["f1"] == pytest.approx(f1_score(y[test], pred, sample_weight=w[test]))
    ones = cross_validate(LogisticRegression(), X, y, cv=3, sample_weight=np.ones(y.size))
    plain = cross_validate(LogisticRegression(), X, y, cv=3)
    assert ones.mean == pytest.approx(plain.mean)


def test_proba_columns_follow_all_classes_when_a_training_fold_lacks_one() -> None:
    # class 2 has two rows: KFold without shuffle leaves it out of one training part
    X = np.arange(40, dtype=float).reshape(-1, 1)
    y = np.array([0, 1] * 19 + [2, 2])
    result = cross_validate(
        DecisionTreeClassifier(random_state=0),
        X,
        y,
        cv=KFold(2),
        metrics=["accuracy", "log_loss"],
        task="multiclass",
    )
    assert len(result.folds) == 2 and math.isfinite(result.folds[0]["log_loss"])


# ------------------------------------------------------------------ task and metrics


@pytest.mark.parametrize(
    ("y", "task"),
    [
        (np.array([0, 1] * 50), "binary"),
        (np.array(["a", "b", "c", "d"] * 25), "multiclass"),
        (np.array([0.0, 1.0, 2.0] * 33 + [1.0]), "multiclass"),
        (np.linspace(0.0, 1.0, 100), "regression"),
        (np.arange(100), "regression"),  # many distinct integers
        (np.array([True, False] * 50), "binary"),
        (np.array(["no", "yes"] * 50, dtype=object), "binary"),
    ],
)
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_task_is_inferred(y: np.ndarray, task: str) -> None:
    X = np.random.default_rng(0).normal(size=(y.size, 2))
    model = Ridge() if task == "regression" else DecisionTreeClassifier(max_depth=2)
    assert cross_validate(model, X, y, cv=2).task == task


def test_defaults_skip_probability_metrics_without_predict_proba() -> None:
    X, y = _binary(5, 200)
    result = cross_validate(LinearSVC(), X, y, cv=3)
    assert result.metrics == ("accuracy", "error_rate", "precision", "recall", "f1")


def test_mean_is_nan_when_a_fold_is_undefined_and_json_is_safe() -> None:
    # one fold's test part holds a single class: its ROC AUC is undefined
    X = np.arange(40, dtype=float).reshape(-1, 1)
    y = np.array([0] * 10 + [0, 1] * 15)
    with pytest.warns(UserWarning):
        result = cross_validate(LogisticRegression(), X, y, cv=KFold(4), metrics=["roc_auc"])
    assert math.isnan(result.folds[0]["roc_auc"]) and math.isnan(result.mean["roc_auc"])
    out = result.to_dict()
    text = json.dumps(out, allow_nan=False)
    assert out["mean"]["roc_auc"] is None and out["folds"][0]["metrics"]["roc_auc"] is None
    assert json.loads(text)["task"] == "binary"
    assert set(out) == {
        "task",
        "metrics",
        "splitter",
        "folds",
        "mean",
        "std",
        "fold_test",
        "findings",
    }


# ------------------------------------------------------------------ fold disagreement


def _sorted_binary(seed: int, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    # label noise grows with x1, and rows are sorted by x1: unshuffled folds differ
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    X = X[np.argsort(X[:, 1])]
    y = (X[:, 0] + np.exp(X[:, 1]) * rng.normal(size=n) > 0).astype(int)
    return X, y


def _sorted_regression(seed: int, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    X = X[np.argsort(X[:, 1])]
    return X, X[:, 0] + np.exp(X[:, 1]) * rng.normal(size=n)


def test_finding_fires_when_sorted_rows_make_folds_differ_classification() -> None:
    X, y = _sorted_binary(0)
    result = cross_validate(LogisticRegression(), X, y, cv=KFold(5), metrics="accuracy")
    assert result.fold_test.test == "chi2" and result.fold_test.p_value < 0.01
    (finding,) = result.findings
    assert finding.kind == "data_drift" and finding.kind in KINDS
    assert finding.severity in ("medium", "high")
    assert "accuracy ranges" in finding.evidence and "over 5 folds" in finding.evidence
    assert "chi-square p=" in finding.evidence
    assert "shuffle" in finding.action and "GroupKFold" in finding.action
    assert "KFold" in finding.where
    # the default (shuffled, stratified) split of the same rows agrees
    assert cross_validate(LogisticRegression(), X, y, metrics="accuracy").findings == ()


def test_finding_fires_when_sorted_rows_make_folds_differ_regression() -> None:
    X, y = _sorted_regression(0)
    result = cross_validate(Ridge(), X, y, cv=KFold(5))
    assert result.fold_test.test == "kruskal"
    (finding,) = result.findings
    assert finding.severity == "high" and "mae ranges" in finding.evidence
    assert "Kruskal-Wallis" in finding.evidence
    assert result.to_dict()["findings"][0]["kind"] == "data_drift"
    assert cross_validate(Ridge(), X, y, cv=5).findings == ()


def test_finding_is_rare_on_exchangeable_data() -> None:
    fired_c = fired_r = 0
    for seed in range(20):
        X, y = _binary(100 + seed, 300)
        fired_c += bool(
            cross_validate(LogisticRegression(), X, y, seed=seed, metrics="accuracy").findings
        )
        Xr, yr = _regression(200 + seed, 300)
        fired_r += bool(cross_validate(Ridge(), Xr, yr, seed=seed, metrics="mae").findings)
    assert fired_c <= 1 and fired_r <= 1


def test_alpha_controls_the_finding() -> None:
    X, y = _sorted_binary(1, 300)
    loose = cross_validate(LogisticRegression(), X, y, cv=KFold(5), metrics="accuracy")
    strict = cross_validate(
        LogisticRegression(), X, y, cv=KFold(5), metrics="accuracy", alpha=1e-300
    )
    assert len(loose.findings) == 1 and strict.findings == ()
    assert loose.fold_test == strict.fold_test


def test_small_expected_counts_use_a_monte_carlo_exact_test() -> None:
    sizes = np.full(5, 20, dtype=np.intp)
    # all 4 errors in one fold of 5 x 20 rows: the most extreme table, exact
    # p = 5 * C(20, 4) / C(100, 4)
    exact = 5 * math.comb(20, 4) / math.comb(100, 4)
    test = _chi2_test(np.array([0, 0, 0, 0, 4], dtype=np.intp), sizes, seed=0)
    assert test.test == "chi2_exact" and abs(test.p_value - exact) < 0.003
    spread = _chi2_test(np.array([1, 1, 1, 1, 0], dtype=np.intp), sizes, seed=0)
    assert spread.test == "chi2_exact" and spread.p_value > 0.5
    big = _chi2_test(np.array([10, 12, 9, 11, 30], dtype=np.intp), sizes * 5, seed=0)
    table = np.column_stack([sizes * 5 - [10, 12, 9, 11, 30], [10, 12, 9, 11, 30]])
    ref = stats.chi2_contingency(table, correction=False)
    assert big.test == "chi2" and big.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert big.effect == pytest.approx(ref.statistic / 500, rel=1e-12)
    assert _chi2_test(np.zeros(5, dtype=np.intp), sizes, seed=0).p_value == 1.0


# ------------------------------------------------------------------------- bad input


def test_bad_input_names_the_field() -> None:
    X, y = _binary(6, 100)
    model = LogisticRegression()
    cases: list[tuple[str, dict[str, Any], Any, Any]] = [
        ("y", {}, X, y[:-1]),
        ("cv", {"cv": 1}, X, y),
        ("cv", {"cv": True}, X, y),
        ("cv", {"cv": "five"}, X, y),
        ("metrics", {"metrics": ["accuracy", "auc"]}, X, y),
        ("metrics", {"metrics": "rmse"}, X, y),
        ("metrics", {"metrics": []}, X, y),
        ("y", {}, X, np.where(np.arange(100) == 3, np.nan, y.astype(float))),
        ("y", {}, X, np.zeros(100, dtype=int)),
        ("task", {"task": "ranking"}, X, y),
        ("task", {"task": "multiclass"}, X, y),
        ("sample_weight", {"sample_weight": np.ones(99)}, X, y),
        ("sample_weight", {"sample_weight": -np.ones(100)}, X, y),
        ("groups", {"groups": np.arange(99)}, X, y),
        ("alpha", {"alpha": 1.5}, X, y),
        ("cv", {"cv": 200}, X, y),
    ]
    for field, kwargs, X_, y_ in cases:
        with pytest.raises(InputError) as info:
            cross_validate(model, X_, y_, **kwargs)
        assert info.value.field == field, (field, kwargs)
    with pytest.raises(InputError, match="predict_proba") as info:
        cross_validate(LinearSVC(), X, y, metrics="roc_auc")
    assert info.value.field == "metrics"
    with pytest.raises(InputError) as info:
        cross_validate(object(), X, y)
    assert info.value.field == "model"


def test_model_without_get_params_is_refused() -> None:
    class Bare:
        def fit(self, X: Any, y: Any) -> Bare:
            return self

        def predict(self, X: Any) -> np.ndarray:
            return np.zeros(len(X), dtype=int)

    X, y = _binary(7, 60)
    with pytest.raises(InputError, match="get_params") as info:
        cross_validate(Bare(), X, y)
    assert info.value.field == "model"


def test_model_without_sample_weight_in_fit_is_refused() -> None:
    class NoWeights(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
        def fit(self, X: Any, y: Any) -> NoWeights:
            self.classes_ = np.unique(y)
            return self

        def predict(self, X: Any) -> np.ndarray:
            return np.full(len(X), self.classes_[0])

    X, y = _binary(8, 60)
    with pytest.raises(InputError) as info:
        cross_validate(NoWeights(), X, y, sample_weight=np.ones(60))
    assert info.value.field == "sample_weight"


def test_import_does_not_pull_in_torch() -> None:
    code = "import sys, tunelens.quality.crossval; print('torch' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "False"


def test_result_is_frozen() -> None:
    X, y = _regression(9, 60)
    result = cross_validate(Ridge(), X, y, cv=3)
    assert isinstance(result, CrossValidation)
    with pytest.raises(AttributeError):
        result.task = "binary"  # type: ignore[misc]


# ----------------------------------------------------------------------------- torch


@pytest.fixture
def torch() -> Any:
    torch = pytest.importorskip("torch")
    # tiny networks: extra threads only contend with one another on a shared CPU
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(before)


def _mlp(torch: Any, n_in: int, n_out: int) -> Any:
    return torch.nn.Sequential(
        torch.nn.Linear(n_in, 16), torch.nn.ReLU(), torch.nn.Linear(16, n_out)
    )


def test_torch_classifier_learns_a_separable_problem_through_cross_validate(torch: Any) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2))
    y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    clf = TorchClassifier(
        lambda: _mlp(torch, 2, 2), epochs=15, lr=0.02, batch_size=32, device="cpu"
    )
    result = cross_validate(clf, X, y, metrics=["accuracy", "roc_auc", "log_loss"])
    assert result.task == "binary" and result.mean["accuracy"] > 0.9
    assert result.mean["roc_auc"] > 0.95
    fitted = clone(clf).fit(X, y)
    proba = fitted.predict_proba(X[:10])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert set(fitted.predict(X)) <= {"no", "yes"}
    assert len(fitted.loss_curve_) == 15 and fitted.loss_curve_[-1] < fitted.loss_curve_[0]


def test_torch_adapters_clone_are_deterministic_and_take_weights(torch: Any) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] > 0).astype(int)
    clf = TorchClassifier(lambda: _mlp(torch, 3, 1), epochs=5, optimizer="sgd", lr=0.05, seed=3)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params() and twin is not clf
    a = clf.fit(X, y).predict_proba(X)
    b = twin.fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)  # one output column: sigmoid, same seed
    weighted = clone(clf).fit(X, y, sample_weight=np.linspace(0.1, 2.0, 200))
    assert weighted.predict_proba(X).shape == (200, 2)


def test_torch_regressor_through_cross_validate(torch: Any) -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 2))
    y = X @ np.array([1.5, -1.0]) + 0.1 * rng.normal(size=300)
    reg = TorchRegressor(lambda: _mlp(torch, 2, 1), epochs=30, lr=0.02, batch_size=32)
    result = cross_validate(reg, pd.DataFrame(X, columns=["a", "b"]), y, cv=3)
    assert result.task == "regression" and result.mean["r2"] > 0.9


def test_torch_bad_parameters_name_the_field(torch: Any) -> None:
    X = np.zeros((10, 2))
    y = np.array([0, 1] * 5)
    for kwargs, field in [
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0.0}, "lr"),
    ]:
        with pytest.raises(InputError) as info:
            TorchClassifier(lambda: _mlp(torch, 2, 2), **kwargs).fit(X, y)
        assert info.value.field == field
    with pytest.raises(InputError) as info:
        TorchClassifier(lambda: _mlp(torch, 2, 3)).fit(X, y)
    assert info.value.field == "module_factory"
    with pytest.raises(InputError) as info:
        TorchClassifier(lambda: "not a module").fit(X, y)
    assert info.value.field == "module_factory"
