"""Intervals of the report: Wilson, DeLong and the bootstrap against oracles and coverage."""

from __future__ import annotations

import doctest
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import roc_auc_score

import tunelens.quality.intervals as intervals_module
from tunelens.metrics import UndefinedMetricWarning, f1_score
from tunelens.quality.intervals import (
    bootstrap_interval,
    delong_auc,
    delong_test,
    proportion_intervals,
    wilson_interval,
)

# ---------------------------------------------------------------- slow DeLong oracle


def _slow_placements(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's placement values from the O(m n) kernel psi (ties count one half)."""
    x = s[y == y.max()]
    z = s[y != y.max()]
    psi = (x[:, None] > z[None, :]).astype(float) + 0.5 * (x[:, None] == z[None, :])
    return psi.mean(axis=1), psi.mean(axis=0)


def _slow_delong(y: np.ndarray, scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and the DeLong covariance matrix, written straight from the 1988 formula."""
    v10s, v01s, aucs = [], [], []
    for s in scores:
        v10, v01 = _slow_placements(y, s)
        v10s.append(v10)
        v01s.append(v01)
        aucs.append(v10.mean())
    k = len(scores)
    m, n = len(v10s[0]), len(v01s[0])
    cov = np.empty((k, k))
    for r in range(k):
        for c in range(k):
            s10 = np.sum((v10s[r] - aucs[r]) * (v10s[c] - aucs[c])) / (m - 1)
            s01 = np.sum((v01s[r] - aucs[r]) * (v01s[c] - aucs[c])) / (n - 1)
            cov[r, c] = s10 / m + s01 / n
    return np.array(aucs), cov


def _tied_data(seed: int, n: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    a = np.round(rng.normal(size=n) + y, 1)  # rounding makes ties
    b = rng.integers(0, 5, n).astype(float) + 0.5 * y
    return y, a, b


# ---------------------------------------------------------------- Wilson


@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
def test_wilson_equals_scipy(confidence: float) -> None:
    for n in (1, 2, 7, 30, 100, 1001):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            ci = stats.binomtest(k, n).proportion_ci(confidence, method="wilson")
            lo, hi = wilson_interval(k, n, confidence=confidence)
            assert lo == pytest.approx(ci.low, abs=1e-12)
            assert hi == pytest.approx(ci.high, abs=1e-12)


def test_wilson_weighted_counts_and_edges() -> None:
    lo, hi = wilson_interval(12.5, 20.25)
    assert 0.0 < lo < 12.5 / 20.25 < hi < 1.0
    # a weighted count halfway between two integers gives an interval in between
    lo0, _ = wilson_interval(12, 20.25)
    lo1, _ = wilson_interval(13, 20.25)
    assert lo0 < lo < lo1
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == 1.0


@pytest.mark.parametrize(
    ("k", "n", "match"),
    [(-1, 5, "successes"), (6, 5, "successes"), (1, -2, "n"), (math.nan, 5, "finite")],
)
def test_wilson_rejects_bad_counts(k: float, n: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        wilson_interval(k, n)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5, -0.1, math.nan, True, "0.95"])
def test_bad_confidence_names_the_argument(confidence: object) -> None:
    y = [0, 1, 0, 1]
    for call in (
        lambda: wilson_interval(1, 2, confidence=confidence),  # type: ignore[arg-type]
        lambda: proportion_intervals(y, y, confidence=confidence),  # type: ignore[arg-type]
        lambda: delong_auc(y, [0.1, 0.2, 0.3, 0.4], confidence=confidence),  # type: ignore[arg-type]
        lambda: bootstrap_interval(np.mean, y, confidence=confidence),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValueError, match="`confidence`"):
            call()


def test_wilson_coverage() -> None:
    p, n = 0.9, 100
    hits = 0
    for seed in range(200):
        k = int(np.random.default_rng(seed).binomial(n, p))
        lo, hi = wilson_interval(k, n)
        hits += lo <= p <= hi
    assert 0.90 <= hits / 200 <= 0.99


# ---------------------------------------------------------------- proportions


def test_proportion_intervals_binary_counts() -> None:
    y_true = np.array([0, 1, 1, 0, 1, 1, 0, 0, 1, 1])
    y_pred = np.array([0, 1, 0, 0, 1, 1, 1, 0, 1, 0])
    iv = proportion_intervals(y_true, y_pred)
    # correct 7 of 10; tp 4; predicted positive 5; truly positive 6
    assert iv["accuracy"] == wilson_interval(7, 10)
    assert iv["error_rate"] == wilson_interval(3, 10)
    assert iv["precision"] == wilson_interval(4, 5)
    assert iv["recall"] == wilson_interval(4, 6)
    # the positive class flips with `positive`
    neg = proportion_intervals(list(y_true), list(y_pred), positive=0)
    assert neg["precision"] == wilson_interval(3, 5)
    assert neg["recall"] == wilson_interval(3, 4)


def test_proportion_intervals_string_labels_weights_and_multiclass() -> None:
    t = ["b", "a", "b", "b"]
    p = ["b", "a", "a", "b"]
    iv = proportion_intervals(t, p)  # positive is the larger label "b"
    assert iv["precision"] == wilson_interval(2, 2)
    assert iv["recall"] == wilson_interval(2, 3)
    w = [1.0, 2.0, 0.5, 1.5]
    wiv = proportion_intervals(t, p, sample_weight=w)
    assert wiv["accuracy"] == wilson_interval(4.5, 5.0)
    assert wiv["recall"] == wilson_interval(2.5, 3.0)
    multi = proportion_intervals([0, 1, 2, 2], [0, 2, 2, 1])
    assert set(multi) == {"accuracy", "error_rate"}
    assert multi["accuracy"] == wilson_interval(2, 4)
    one = proportion_intervals([0, 1, 2, 2], [0, 2, 2, 1], positive=2)
    assert one["recall"] == wilson_interval(1, 2)


def test_proportion_intervals_errors_and_undefined() -> None:
    with pytest.raises(ValueError, match="y_pred"):
        proportion_intervals([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="positive"):
        proportion_intervals([0, 1], [0, 1], positive=7)
    with pytest.warns(UndefinedMetricWarning, match="precision"):
        iv = proportion_intervals([0, 1], [0, 0], positive=1)
    assert all(math.isnan(v) for v in iv["precision"])
    assert iv["recall"] == wilson_interval(0, 1)


# ---------------------------------------------------------------- DeLong


@pytest.mark.parametrize("seed", range(8))
def test_delong_matches_sklearn_and_slow_formula(seed: int) -> None:
    y, a, b = _tied_data(seed)
    for s in (a, b):
        auc, lo, hi, var = delong_auc(y, s)
        assert auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        slow_auc, slow_cov = _slow_delong(y, [s])
        assert auc == pytest.approx(slow_auc[0], abs=1e-12)
        assert var == pytest.approx(slow_cov[0, 0], rel=1e-10, abs=1e-15)
        half = stats.norm.ppf(0.975) * math.sqrt(var)
        assert lo == pytest.approx(max(0.0, auc - half), abs=1e-12)
        assert hi == pytest.approx(min(1.0, auc + half), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 4)), min_size=4, max_size=30).filter(
        lambda rows: 2 <= sum(r[0] for r in rows) <= len(rows) - 2
    )
)
def test_delong_variance_property(rows: list[tuple[bool, int]]) -> None:
    y = np.array([r[0] for r in rows], dtype=int)
    s = np.array([r[1] for r in rows], dtype=float)  # heavy ties
    auc, _, _, var = delong_auc(y, s)
    slow_auc, slow_cov = _slow_delong(y, [s])
    assert auc == pytest.approx(slow_auc[0], abs=1e-12)
    assert var == pytest.approx(slow_cov[0, 0], rel=1e-9, abs=1e-15)


def test_delong_labels_lists_and_clipping() -> None:
    y = ["neg", "pos", "pos", "neg", "pos", "neg"]
    s = [0.1, 0.9, 0.8, 0.2, 0.7, 0.3]  # perfectly separated
    auc, lo, hi, var = delong_auc(y, s)
    assert (auc, lo, hi, var) == (1.0, 1.0, 1.0, 0.0)
    y2 = [0, 1, 1, 0, 1, 0, 1, 0]
    s2 = [0.1, 0.9, 0.8, 0.2, 0.15, 0.3, 0.25, 0.05]
    auc2, lo2, hi2, _ = delong_auc(y2, s2)
    assert 0.0 <= lo2 < auc2 <= hi2 == 1.0


def test_delong_undefined_and_errors() -> None:
    with pytest.warns(UndefinedMetricWarning, match="one class"):
        out = delong_auc([1, 1, 1], [0.1, 0.2, 0.3])
    assert all(math.isnan(v) for v in out)
    with pytest.warns(UndefinedMetricWarning, match="single row"):
        auc, lo, hi, var = delong_auc([0, 1, 1], [0.1, 0.2, 0.3])
    assert auc == 1.0 and math.isnan(lo) and math.isnan(hi) and math.isnan(var)
    with pytest.warns(UndefinedMetricWarning):
        z, p = delong_test([0, 0], [0.1, 0.2], [0.3, 0.4])
    assert math.isnan(z) and math.isnan(p)
    with pytest.raises(ValueError, match="same number"):
        delong_auc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="same number"):
        delong_test([0, 1, 1], [0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ValueError, match="two classes"):
        delong_auc([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="y_score"):
        delong_auc([0, 1, 1], [0.1, math.nan, 0.3])


@pytest.mark.parametrize("seed", range(6))
def test_delong_test_matches_slow_formula(seed: int) -> None:
    y, a, b = _tied_data(seed, n=80)
    aucs, cov = _slow_delong(y, [a, b])
    z_ref = (aucs[0] - aucs[1]) / math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    z, p = delong_test(y, a, b)
    assert z == pytest.approx(z_ref, rel=1e-9)
    assert p == pytest.approx(2 * stats.norm.sf(abs(z_ref)), rel=1e-9)
    z_swap, p_swap = delong_test(y, b, a)
    assert z_swap == pytest.approx(-z) and p_swap == pytest.approx(p)


def test_delong_test_identical_and_separated() -> None:
    y, a, _ = _tied_data(1)
    assert delong_test(y, a, a) == (0.0, 1.0)
    yy = np.array([0, 0, 0, 1, 1, 1])
    perfect = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert delong_test(yy, perfect, perfect + 1.0) == (0.0, 1.0)


def test_delong_coverage_binormal() -> None:
    mu = 1.0
    true_auc = float(stats.norm.cdf(mu / math.sqrt(2.0)))
    y = np.repeat([0, 1], 100)
    hits = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        s = rng.normal(size=200) + mu * y
        _, lo, hi, _ = delong_auc(y, s)
        hits += lo <= true_auc <= hi
    assert 0.90 <= hits / 200 <= 0.99


# ---------------------------------------------------------------- bootstrap


def _mean(x: np.ndarray) -> np.ndarray:
    return np.asarray(x.mean(axis=1))


def test_bootstrap_deterministic_and_seeded() -> None:
    x = np.random.default_rng(3).normal(size=300)
    a = bootstrap_interval(_mean, x, n_boot=300, seed=5, vectorized=True)
    b = bootstrap_interval(_mean, x, n_boot=300, seed=5, vectorized=True)
    c = bootstrap_interval(_mean, x, n_boot=300, seed=6, vectorized=True)
    assert a == b and a != c
    # the per-replicate path draws the same resamples
    d = bootstrap_interval(np.mean, list(x), n_boot=300, seed=5)
    assert d == pytest.approx(a, abs=1e-12)


def test_bootstrap_chunks_bound_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(0).normal(size=100)
    calls: list[int] = []

    def metric(v: np.ndarray) -> np.ndarray:
        calls.append(v.shape[0])
        return np.asarray(v.mean(axis=1))

    monkeypatch.setattr(intervals_module, "_MAX_CHUNK_ELEMENTS", 1000)
    lo, hi = bootstrap_interval(metric, x, n_boot=95, vectorized=True)
    assert calls == [10] * 9 + [5]
    assert lo < x.mean() < hi


def test_bootstrap_coverage_of_the_mean() -> None:
    p, n = 0.3, 100
    hits = 0
    for seed in range(200):
        x = np.random.default_rng(seed).binomial(1, p, size=n).astype(float)
        lo, hi = bootstrap_interval(_mean, x, n_boot=200, seed=seed, vectorized=True)
        hits += lo <= p <= hi
    assert 0.90 <= hits / 200 <= 0.99


def test_bootstrap_agrees_with_wilson_for_accuracy() -> None:
    rng = np.random.default_rng(11)
    n = 2000
    y = rng.integers(0, 2, n)
    pred = np.where(rng.random(n) < 0.85, y, 1 - y)

    def acc(t: np.ndarray, q: np.ndarray) -> np.ndarray:
        return np.asarray((t == q).mean(axis=1))

    lo, hi = bootstrap_interval(acc, y, pred, n_boot=1000, vectorized=True)
    w_lo, w_hi = wilson_interval(int((y == pred).sum()), n)
    assert lo == pytest.approx(w_lo, abs=0.005)
    assert hi == pytest.approx(w_hi, abs=0.005)


def test_bootstrap_with_library_metric_and_weights() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    pred = np.where(rng.random(200) < 0.8, y, 1 - y)
    w = rng.random(200) + 0.5
    point = f1_score(y, pred, sample_weight=w)
    lo, hi = bootstrap_interval(f1_score, y, pred, n_boot=100, sample_weight=w)
    assert lo < point < hi

    def weighted_mean(v: np.ndarray, *, sample_weight: np.ndarray) -> np.ndarray:
        return np.asarray((v * sample_weight).sum(axis=1) / sample_weight.sum(axis=1))

    x = rng.normal(size=200)
    v_lo, v_hi = bootstrap_interval(weighted_mean, x, sample_weight=w, vectorized=True)
    s_lo, s_hi = bootstrap_interval(
        lambda v, sample_weight: np.average(v, weights=sample_weight), x, sample_weight=w
    )
    assert (v_lo, v_hi) == pytest.approx((s_lo, s_hi), abs=1e-12)


def test_bootstrap_drops_non_finite_replicates() -> None:
    y = np.array([0] * 19 + [1])
    s = np.linspace(0, 1, 20)
    with pytest.warns(UndefinedMetricWarning, match="dropped"):
        lo, hi = bootstrap_interval(roc_auc_score_nan, y, s, n_boot=200)
    assert 0.0 <= lo <= hi <= 1.0


def roc_auc_score_nan(y: np.ndarray, s: np.ndarray) -> float:
    """sklearn's AUC, NaN when a resample has one class."""
    if np.unique(y).size < 2:
        return math.nan
    return float(roc_auc_score(y, s))


def test_bootstrap_errors() -> None:
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_interval(np.mean, [1.0, 2.0], n_boot=0)
    with pytest.raises(ValueError, match="arrays"):
        bootstrap_interval(np.mean)
    with pytest.raises(ValueError, match="same number"):
        bootstrap_interval(np.mean, [1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="sample_weight"):
        bootstrap_interval(np.mean, [1.0, 2.0], sample_weight=[1.0])
    with pytest.raises(ValueError, match="one value per replicate"):
        bootstrap_interval(lambda v: v.mean(), [1.0, 2.0], vectorized=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UndefinedMetricWarning, match="no rows"):
            bootstrap_interval(np.mean, [])


def test_docstring_examples_run() -> None:
    result = doctest.testmod(intervals_module)
    assert result.failed == 0 and result.attempted > 0
