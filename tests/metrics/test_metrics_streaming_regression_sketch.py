"""Accuracy of the fixed-memory modes, numerical stability and the quantile sketch."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sklearn.metrics as skm

import tunelens.metrics as tm
from tunelens.metrics import BinaryRankingState, QuantileSketch, RegressionState


def test_streaming_auc_within_1e3_on_a_million_rows() -> None:
    rng = np.random.default_rng(42)
    n = 1_000_000
    y = rng.random(n) < 0.3
    score = 1.0 / (1.0 + np.exp(-(rng.normal(size=n) + 1.2 * y)))
    exact = skm.roc_auc_score(y, score)
    state = BinaryRankingState(mode="streaming")
    for chunk in np.array_split(np.arange(n), 7):
        state.update(y[chunk], score[chunk])
    approx = state.roc_auc()
    bound = state.auc_error_bound()
    assert abs(approx - exact) <= bound <= 1e-3
    assert state._hist.nbytes == 2 * 65536 * 8  # memory independent of rows
    ap = state.average_precision()
    assert abs(ap - skm.average_precision_score(y, score)) < 1e-3


def test_exact_mode_equals_sklearn_on_many_rows_with_ties() -> None:
    rng = np.random.default_rng(8)
    n = 300_000
    y = rng.random(n) < 0.2
    score = np.round(np.clip(rng.normal(0.4 + 0.2 * y, 0.2), 0, 1), 3)
    w = rng.integers(0, 5, n).astype(float)
    for sw in (None, w):
        state = BinaryRankingState()
        for chunk in np.array_split(np.arange(n), 9):
            state.update(y[chunk], score[chunk], None if sw is None else sw[chunk])
        assert state.roc_auc() == pytest.approx(
            skm.roc_auc_score(y, score, sample_weight=sw), abs=1e-12
        )
        assert state.average_precision() == pytest.approx(
            skm.average_precision_score(y, score, sample_weight=sw), abs=1e-12
        )


def test_streaming_bound_holds_on_coarse_bins() -> None:
    rng = np.random.default_rng(1)
    y = rng.random(5000) < 0.5
    score = np.clip(rng.normal(0.5 + 0.1 * y, 0.2), 0, 1)
    st = BinaryRankingState(mode="streaming", n_bins=16)
    st.update(y, score)
    assert abs(st.roc_auc() - skm.roc_auc_score(y, score)) <= st.auc_error_bound()


def test_streaming_scores_at_edges_and_weights() -> None:
    y = np.array([0, 1, 0, 1, 1])
    s = np.array([0.0, 1.0, 0.5, 0.5, 1.0])
    w = np.array([1.0, 2.0, 0.5, 1.0, 0.0])
    st = BinaryRankingState(mode="streaming", n_bins=4)
    st.update(y, s, w)
    # scores fall on distinct bins except the 0.5 tie, which streaming also ties
    assert st.roc_auc() == pytest.approx(skm.roc_auc_score(y, s, sample_weight=w))


def test_streaming_classification_metrics_close_to_exact() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 20000)
    s = np.clip(rng.random(20000) * 0.7 + 0.3 * y, 0, 1)
    exact = tm.classification_metrics(y, (s > 0.5).astype(int), s)
    approx = tm.classification_metrics(y, (s > 0.5).astype(int), s, mode="streaming")
    assert abs(exact["roc_auc"] - approx["roc_auc"]) < 1e-3
    assert abs(exact["pr_auc"] - approx["pr_auc"]) < 1e-2
    assert exact["log_loss"] == approx["log_loss"]


def test_regression_stable_with_large_mean() -> None:
    rng = np.random.default_rng(0)
    n = 100_000
    yt = 1e6 + rng.normal(size=n)
    yp = yt + 0.5 * rng.normal(size=n)
    whole = RegressionState()
    whole.update(yt, yp)
    merged = RegressionState()
    for chunk in np.array_split(np.arange(n), 13):
        part = RegressionState()
        part.update(yt[chunk], yp[chunk])
        merged.merge(part)
    expected = skm.r2_score(yt, yp)
    assert whole.compute()["r2"] == pytest.approx(expected, abs=1e-9)
    assert merged.compute()["r2"] == pytest.approx(expected, abs=1e-9)
    # a naive sum of squares (sum y^2 - (sum y)^2 / n) loses most digits here
    true_ss = ((yt - yt.mean()) ** 2).sum()
    assert abs(merged._m2 - true_ss) / true_ss < 1e-9


def test_regression_weighted_large_mean_matches_sklearn() -> None:
    rng = np.random.default_rng(5)
    yt = 1e6 + rng.normal(size=5000)
    yp = yt + rng.normal(size=5000)
    w = rng.random(5000)
    st = RegressionState()
    for chunk in np.array_split(np.arange(5000), 4):
        st.update(yt[chunk], yp[chunk], w[chunk])
    out = st.compute()
    assert out["r2"] == pytest.approx(skm.r2_score(yt, yp, sample_weight=w), abs=1e-9)
    assert out["mse"] == pytest.approx(skm.mean_squared_error(yt, yp, sample_weight=w), rel=1e-9)


def _exact_quantile(v: np.ndarray, q: float) -> float:
    return float(np.quantile(v, q, method="inverted_cdf"))


@pytest.mark.parametrize("accuracy", [0.01, 0.05])
def test_sketch_relative_error_on_lognormal(accuracy: float) -> None:
    rng = np.random.default_rng(7)
    v = rng.lognormal(3.0, 1.5, 200_000)
    v[:1000] = 0.0
    parts = np.array_split(rng.permutation(v), 5)
    merged = QuantileSketch(accuracy)
    for p in parts:
        s = QuantileSketch(accuracy)
        s.update(p)
        merged.merge(s)
    one = QuantileSketch(accuracy)
    one.update(v)
    for q in (0.0, 0.001, 0.1, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0):
        exact = _exact_quantile(v, q)
        for sk in (one, merged):
            est = sk.quantile(q)
            assert abs(est - exact) <= accuracy * exact * (1 + 1e-9), (q, est, exact)
    assert one.count == merged.count == v.size
    assert merged.sum == pytest.approx(v.sum(), rel=1e-12)
    out = merged.compute()
    assert set(out) == {"count", "sum", "p50", "p90", "p99", "p999"}


def test_sketch_memory_is_bounded() -> None:
    s = QuantileSketch(0.01, max_buckets=256)
    s.update(np.geomspace(1e-9, 1e12, 100_000))
    assert s._counts.size <= 256
    est = s.quantile(0.99)
    exact = _exact_quantile(np.geomspace(1e-9, 1e12, 100_000), 0.99)
    assert abs(est - exact) <= 0.01 * exact * (1 + 1e-9)


def test_functional_twins_use_state_code_path() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        st = BinaryRankingState()
        st.update([0, 1, 1, 0], [0.1, 0.8, 0.4, 0.5])
        assert tm.roc_auc_score([0, 1, 1, 0], [0.1, 0.8, 0.4, 0.5]) == st.roc_auc()


@pytest.mark.parametrize("weighted", [False, True])
def test_state_curves_equal_sklearn_after_merge(weighted: bool) -> None:
    rng = np.random.default_rng(21)
    n = 2000
    y = rng.integers(0, 2, n)
    s = np.round(rng.random(n), 2)
    w = rng.integers(0, 4, n).astype(float) if weighted else None
    merged = BinaryRankingState()
    for chunk in np.array_split(rng.permutation(n), 6):
        part = BinaryRankingState()
        part.update(y[chunk], s[chunk], None if w is None else w[chunk])
        merged.merge(part)
    for ours, expected in zip(
        merged.roc_curve(),
        skm.roc_curve(y, s, sample_weight=w, drop_intermediate=False),
        strict=True,
    ):
        np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)
    for ours, expected in zip(
        merged.precision_recall_curve(),
        skm.precision_recall_curve(y, s, sample_weight=w),
        strict=True,
    ):
        np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)
