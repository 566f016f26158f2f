"""Tests of tunelens.diagnose.sensitivity (issue 5, item 4)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LinearRegression, LogisticRegression

from tunelens.diagnose.sensitivity import Sensitivity, sensitivity
from tunelens.errors import InputError

TRUE = {"x0", "x3", "x7"}
NAMES = [f"x{j}" for j in range(10)]


def _data(n: int = 2000, seed: int = 0, classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """10 features; the target depends on x0, x3 and x7 only."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 10))
    signal = 2.5 * X[:, 0] - 2.0 * X[:, 3] + 1.5 * X[:, 7] + 0.3 * rng.normal(size=n)
    if classes == 2:
        return X, (signal > 0).astype(int)
    cuts = np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1])
    return X, np.digitize(signal, cuts)


@pytest.fixture(scope="module")
def logistic() -> tuple[LogisticRegression, np.ndarray, np.ndarray]:
    X, y = _data()
    return LogisticRegression().fit(X[:1000], y[:1000]), X[1000:], y[1000:]


def test_three_true_features_rank_first_logistic(logistic) -> None:
    model, X, y = logistic
    s = sensitivity(model, X, y, n_repeats=5, seed=0)
    assert isinstance(s, Sensitivity)
    assert set(s.ranking()[:3]) == TRUE
    assert set(s.perturbation.index[:3]) == TRUE
    assert s.saliency is None
    imp = s.importances
    assert list(imp.columns) == ["mean", "std", "lo", "hi", "rank"]
    for name in TRUE:
        assert imp.loc[name, "lo"] > 0
        assert imp.loc[name, "lo"] <= imp.loc[name, "mean"] <= imp.loc[name, "hi"]
    assert s.metric == "accuracy" and s.task == "classification"


def test_three_true_features_rank_first_forest() -> None:
    X, y = _data()
    frame = pd.DataFrame(X, columns=NAMES)
    rf = RandomForestClassifier(n_estimators=40, max_depth=8, random_state=0)
    rf.fit(frame.iloc[:1000], y[:1000])
    s = sensitivity(rf, frame.iloc[1000:], y[1000:], n_repeats=3, metric="roc_auc")
    assert set(s.ranking()[:3]) == TRUE
    assert set(s.perturbation.index[:3]) == TRUE


@pytest.mark.parametrize(
    ("metric", "scoring"), [("auto", None), ("log_loss", "neg_log_loss"), ("roc_auc", "roc_auc")]
)
def test_equals_sklearn_permutation_importance(logistic, metric: str, scoring: str | None) -> None:
    model, X, y = logistic
    s = sensitivity(model, X, y, n_repeats=4, seed=3, metric=metric)
    ref = permutation_importance(model, X, y, scoring=scoring, n_repeats=4, random_state=3)
    ours = s.importances.loc[NAMES]
    np.testing.assert_allclose(ours["mean"], ref.importances_mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours["std"], ref.importances_std, rtol=0, atol=1e-12)


@pytest.mark.parametrize("metric", ["accuracy", "log_loss", "roc_auc"])
def test_predict_function_path_matches_estimator_path(logistic, metric: str) -> None:
    """Our own loop draws the same shuffles as scikit-learn: equal on the same model."""
    model, X, y = logistic
    via_fn = sensitivity(model.predict_proba, X, y, n_repeats=4, seed=1, metric=metric)
    via_est = sensitivity(model, X, y, n_repeats=4, seed=1, metric=metric)
    a = via_fn.importances.loc[NAMES, "mean"].to_numpy()
    b = via_est.importances.loc[NAMES, "mean"].to_numpy()
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)
    assert set(via_fn.ranking()[:3]) == TRUE


def test_label_only_predict_function(logistic) -> None:
    model, X, y = logistic
    s = sensitivity(model.predict, X, y, n_repeats=3)
    assert set(s.ranking()[:3]) == TRUE
    assert set(s.perturbation.index[:3]) == TRUE  # share of flipped predictions
    assert s.label_errors.empty
    with pytest.raises(InputError) as err:
        sensitivity(model.predict, X, y, metric="log_loss")
    assert err.value.field == "metric"


def test_regression_and_dataframe_names() -> None:
    X, _ = _data(n=600)
    rng = np.random.default_rng(1)
    y = 3 * X[:, 0] - 2 * X[:, 3] + X[:, 7] + 0.1 * rng.normal(size=len(X))
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(10)])
    model = LinearRegression().fit(frame, y)
    s = sensitivity(model, frame, y, metric="mae", n_repeats=3)
    assert s.ranking()[:3] == ["f0", "f3", "f7"]
    ref = permutation_importance(
        model, frame, y, scoring="neg_mean_absolute_error", n_repeats=3, random_state=0
    )
    np.testing.assert_allclose(
        s.importances.loc[list(frame.columns), "mean"], ref.importances_mean, atol=1e-12
    )
    # predict function on the same model: identical
    fn = sensitivity(model.predict, frame, y, metric="mae", n_repeats=3)
    np.testing.assert_allclose(
        fn.importances.loc[list(frame.columns), "mean"], ref.importances_mean, atol=1e-9
    )
    assert s.worst_rows["loss"].is_monotonic_decreasing
    assert len(s.worst_rows) == 20
    # linear model: change per unit of noise ~ |coef| * std * sqrt(2/pi)
    assert s.perturbation.loc["f0", "per_unit"] == pytest.approx(3 * np.sqrt(2 / np.pi), rel=0.1)


def test_label_errors_found_and_finding() -> None:
    """5 % of labels flipped; the model is fit on the first half, checked on the second."""
    X, y = _data(seed=1)
    rng = np.random.default_rng(11)
    flipped = rng.choice(len(y), size=len(y) // 20, replace=False)
    noisy = y.copy()
    noisy[flipped] = 1 - noisy[flipped]
    model = LogisticRegression().fit(X[:1000], noisy[:1000])
    s = sensitivity(model, X[1000:], noisy[1000:], n_repeats=2)
    found = set(s.label_errors["row"].tolist())
    flipped = flipped[flipped >= 1000] - 1000
    hits = len(found & set(flipped.tolist()))
    precision, recall = hits / max(len(found), 1), hits / len(flipped)
    print(f"label errors: found {len(found)}, precision {precision:.2f}, recall {recall:.2f}")
    assert precision > 0.6 and recall > 0.6
    assert s.label_errors["margin"].is_monotonic_decreasing
    kinds = [f.kind for f in s.findings]
    assert "label_errors" in kinds
    finding = s.findings[kinds.index("label_errors")]
    first = s.label_errors.iloc[0]
    assert f"{len(found)} rows look mislabelled (first: row {int(first['row'])}" in finding.evidence
    assert finding.action == "review and relabel these rows"
    json.dumps(s.to_dict())


def test_label_errors_multiclass() -> None:
    X, y = _data(seed=2, classes=4)
    rng = np.random.default_rng(3)
    flipped = rng.choice(len(y), size=len(y) // 20, replace=False)
    noisy = y.copy()
    noisy[flipped] = (noisy[flipped] + 2) % 4  # far-away classes: clearly wrong
    model = LogisticRegression(max_iter=500).fit(X, noisy)
    s = sensitivity(model, X, noisy, n_repeats=1)
    found = set(s.label_errors["row"].tolist())
    hits = len(found & set(flipped.tolist()))
    assert hits / max(len(found), 1) > 0.6 and hits / len(flipped) > 0.6
    assert np.isnan(s.importances["lo"]).all()  # one repeat: no interval
    json.dumps(s.to_dict())


def test_drifted_feature_finding(logistic) -> None:
    model, X, y = logistic
    s = sensitivity(model, X, y, drifted=["x3"])
    drift = [f for f in s.findings if f.kind == "data_drift"]
    assert len(drift) == 1
    f = drift[0]
    assert f.where == "feature x3" and "x3" in f.evidence and "drifted in production" in f.evidence
    assert f"importance {s.importances.loc['x3', 'mean']:.2f}" in f.evidence
    assert f.action.startswith("retrain on recent data or reduce reliance")
    assert f.severity == "high"
    # a drifted feature the model ignores is not a finding
    quiet = sensitivity(model, X, y, drifted=["x5"])
    assert not [f for f in quiet.findings if f.kind == "data_drift"]


def test_bad_input_names_the_field(logistic) -> None:
    model, X, y = logistic
    cases = [
        ({"y": y[:-1]}, "y"),
        ({"metric": "bogus"}, "metric"),
        ({"metric": "r2"}, "metric"),
        ({"drifted": ["nope"]}, "drifted"),
        ({"n_repeats": 0}, "n_repeats"),
        ({"noise": 0.0}, "noise"),
        ({"feature_names": ["a"]}, "feature_names"),
        ({"X": X[:, 0]}, "X"),
    ]
    for kwargs, field in cases:
        args = {"X": X, "y": y, **kwargs}
        with pytest.raises(InputError) as err:
            sensitivity(model, args.pop("X"), args.pop("y"), **args)
        assert err.value.field == field, kwargs
    with pytest.raises(InputError) as err:
        sensitivity(object(), X, y)
    assert err.value.field == "model_or_predict_fn"


def test_module_imports_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import tunelens.diagnose.sensitivity as m\n"
        "assert callable(m.sensitivity)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_torch_mlp_saliency() -> None:
    torch = pytest.importorskip("torch")
    X, y = _data(n=1500, seed=4)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    opt = torch.optim.Adam(net.parameters(), lr=0.03)
    xt = torch.as_tensor(X[:1000], dtype=torch.float32)
    yt = torch.as_tensor(y[:1000])
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    s = sensitivity(net, X[1000:], y[1000:], n_repeats=3, metric="log_loss")
    assert s.saliency is not None
    assert set(s.saliency.index[:3]) == TRUE
    assert set(s.ranking()[:3]) == TRUE
    assert net.training  # mode restored
    json.dumps(s.to_dict())


def test_torch_regression_output() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 4))
    y = 2.0 * X[:, 1] - X[:, 2]
    net = torch.nn.Linear(4, 1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[0.0, 2.0, -1.0, 0.0]]))
        net.bias.zero_()
    s = sensitivity(net, X, y, n_repeats=2)
    assert s.task == "regression" and s.metric == "r2"
    assert s.saliency is not None
    np.testing.assert_allclose(s.saliency.loc[["x0", "x1", "x2", "x3"], "saliency"], [0, 2, 1, 0])
    assert s.ranking()[:2] == ["x1", "x2"]


def test_predict_function_task_inference() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    counts = rng.poisson(np.exp(1.0 + 0.5 * X[:, 0]))  # integer regression target
    s = sensitivity(lambda a: np.exp(1.0 + 0.5 * a[:, 0]), X, counts, n_repeats=2)
    assert s.task == "regression" and s.ranking()[0] == "x0"
    y = (X[:, 1] > 0).astype(int)
    p = sensitivity(lambda a: 1 / (1 + np.exp(-4 * a[:, 1])), X, y, metric="roc_auc")
    assert p.task == "classification" and p.ranking()[0] == "x1"
