"""Streaming (histogram) ranking accuracy on a million rows, skewed scores included."""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np
import pytest
import sklearn.metrics as skm

from tunelens.metrics import BinaryRankingState, MulticlassRankingState, roc_auc_score

N = 1_000_000
CASES = ("rare_low_scores", "near_one", "well_separated", "uniform", "default_logistic")
# cases that need the default (mixed) scale at the default bin count
TIGHT_CASES = ("clustered_0.01", "clustered_0.003", "clustered_0.001", "log_uniform")
ALL_CASES = CASES + TIGHT_CASES


def _sigmoid(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


@functools.cache
def _binary_case(name: str) -> tuple[Any, Any, float, float]:
    rng = np.random.default_rng(ALL_CASES.index(name))
    if name.startswith("clustered_"):  # 0.5 + sd * N(0, 1), positives shifted by sd / 2
        sd = float(name.split("_")[1])
        y = rng.random(N) < 0.5
        s = np.clip(0.5 + sd * (rng.standard_normal(N) + 0.5 * y), 0.0, 1.0)
    elif name == "log_uniform":  # scores log-uniform over 1e-12..0.1, P(y) grows with log(s)
        e = rng.uniform(-12.0, -1.0, N)
        s = 10.0**e
        y = rng.random(N) < 0.05 * (e + 12.0) / 11.0
    elif name == "rare_low_scores":  # 0.2% positives, scores around 1e-5
        y = rng.random(N) < 0.002
        s = _sigmoid(-12 + 4 * y + 2 * rng.standard_normal(N))
    elif name == "near_one":  # everything above 0.99
        y = rng.random(N) < 0.5
        s = _sigmoid(12 + 1.5 * y + 2 * rng.standard_normal(N))
    elif name == "well_separated":  # AUC about 0.999
        y = rng.random(N) < 0.3
        s = _sigmoid(-2 + 4.4 * y + rng.standard_normal(N))
    elif name == "uniform":
        y = rng.random(N) < 0.3
        u = rng.random(N)
        s = np.where(y, u**0.7, u)
    else:
        y = rng.random(N) < 0.3
        s = _sigmoid(rng.standard_normal(N) + 1.2 * y)
    return y, s, float(skm.roc_auc_score(y, s)), float(skm.average_precision_score(y, s))


def _streamed(case: str, n_bins: int, scale: str = "mixed") -> tuple[BinaryRankingState, Any]:
    y, s, auc, ap = _binary_case(case)
    st = BinaryRankingState(mode="streaming", n_bins=n_bins, scale=scale)  # type: ignore[arg-type]
    for chunk in np.array_split(np.arange(N), 5):
        st.update(y[chunk], s[chunk])
    return st, (auc, ap)


@pytest.mark.parametrize("n_bins", [65536, 4096, 16384])
@pytest.mark.parametrize("case", CASES)
def test_streaming_auc_within_1e3_on_skewed_scores(case: str, n_bins: int) -> None:
    st, (auc, ap) = _streamed(case, n_bins)
    assert st.scale == "mixed"  # the default
    err = abs(st.roc_auc() - auc)
    assert err <= 1e-3, (case, n_bins, err)
    assert err <= st.auc_error_bound() + 1e-12
    # average precision uses the bin edges as thresholds: a small bias, reported here
    assert abs(st.average_precision() - ap) <= 2e-3


@pytest.mark.parametrize("case", TIGHT_CASES)
def test_default_scale_and_bins_within_1e3_on_clustered_and_tiny_scores(case: str) -> None:
    st = BinaryRankingState(mode="streaming")
    y, s, auc, _ = _binary_case(case)
    for chunk in np.array_split(np.arange(N), 5):
        st.update(y[chunk], s[chunk])
    err = abs(st.roc_auc() - auc)
    assert err <= 1e-3, (case, err)
    assert err <= st.auc_error_bound() + 1e-12


@pytest.mark.parametrize("scale", ["mixed", "logit", "linear"])
@pytest.mark.parametrize("n_bins", [4096, 65536])
@pytest.mark.parametrize("case", ALL_CASES)
def test_error_never_exceeds_the_bound(case: str, n_bins: int, scale: str) -> None:
    st, (auc, _) = _streamed(case, n_bins, scale)
    assert abs(st.roc_auc() - auc) <= st.auc_error_bound() + 1e-12


@pytest.mark.parametrize("sd", ["0.01", "0.003"])
def test_mixed_beats_logit_on_clustered_scores(sd: str) -> None:
    mixed, (auc, _) = _streamed(f"clustered_{sd}", 4096)
    logit, _ = _streamed(f"clustered_{sd}", 4096, "logit")
    assert abs(mixed.roc_auc() - auc) * 5 < abs(logit.roc_auc() - auc)


@pytest.mark.parametrize("n_bins", [1, 7, 4096, 65536])
def test_mixed_edges_invert_the_map(n_bins: int) -> None:
    from tunelens.metrics._ranking import _logit_bins, _mixed_edges, _mixed_map

    edges = _mixed_edges(n_bins)
    # non-decreasing: the few top bins that no double below 1 reaches share 1.0's edge
    assert edges[0] == 0.0 and np.all(np.diff(edges) >= 0)
    k = np.arange(1, n_bins)
    inner = edges[1:] < 0.999  # above, the doubles themselves are coarser than the bins
    assert np.all(np.diff(edges[edges < 0.999]) > 0)
    np.testing.assert_allclose(_mixed_map(edges[1:][inner]), (k / n_bins)[inner], atol=1e-12)
    # each edge is the smallest score binned at or above its bin
    no = np.zeros(n_bins - 1, dtype=bool)
    assert np.all(_logit_bins(edges[1:], no, n_bins, mixed=True) >= k)
    assert np.all(_logit_bins(np.nextafter(edges[1:], 0.0), no, n_bins, mixed=True) < k)
    assert _mixed_edges(n_bins) is edges  # cached


def test_well_separated_case_is_near_0999() -> None:
    assert 0.998 < _binary_case("well_separated")[2] < 0.9995


@pytest.mark.parametrize("case", ["rare_low_scores", "near_one"])
def test_linear_scale_keeps_the_old_behaviour(case: str) -> None:
    y, s, auc, _ = _binary_case(case)
    lin = BinaryRankingState(mode="streaming", n_bins=4096, scale="linear")
    lin.update(y, s)
    assert abs(lin.roc_auc() - auc) <= lin.auc_error_bound() + 1e-12
    assert abs(lin.roc_auc() - auc) > 1e-2  # why linear is not the default


def test_scale_round_trips_and_old_dicts_read_as_linear() -> None:
    y, s = np.array([0, 1, 0, 1]), np.array([0.1, 0.8, 0.3, 0.6])
    for scale in ("mixed", "logit", "linear"):
        st = BinaryRankingState(mode="streaming", n_bins=64, scale=scale)
        st.update(y, s)
        back = BinaryRankingState.from_dict(json.loads(json.dumps(st.to_dict())))
        assert back.scale == scale
        assert back.roc_auc() == st.roc_auc()
    old = BinaryRankingState(mode="streaming", n_bins=64, scale="linear")
    old.update(y, s)
    d = old.to_dict()
    del d["scale"]
    assert BinaryRankingState.from_dict(d).scale == "linear"
    m = MulticlassRankingState(3, mode="streaming", n_bins=64, scale="linear").to_dict()
    del m["scale"]
    assert MulticlassRankingState.from_dict(m).scale == "linear"


def test_scale_mismatch_refuses_to_merge() -> None:
    a = BinaryRankingState(mode="streaming", n_bins=64)
    with pytest.raises(ValueError, match="scale"):
        a.merge(BinaryRankingState(mode="streaming", n_bins=64, scale="linear"))
    with pytest.raises(ValueError, match="scale"):
        BinaryRankingState(mode="streaming", scale="log")  # type: ignore[arg-type]


def test_logit_bins_extremes_and_curves() -> None:
    y = np.array([0, 1, 0, 1, 0, 1])
    s = np.array([0.0, 1.0, 1e-12, 1 - 1e-12, 0.5, 0.5])
    st = BinaryRankingState(mode="streaming", n_bins=128)
    st.update(y, s)
    assert st.roc_auc() == pytest.approx(skm.roc_auc_score(y, s))
    fpr, tpr, thr = st.roc_curve()
    assert fpr[-1] == tpr[-1] == 1.0
    assert thr[-1] == 0.0 and np.all(np.diff(thr[1:]) < 0)
    p, r, _ = st.precision_recall_curve()
    assert r[0] == 1.0 and p[-1] == 1.0


@functools.cache
def _multiclass_case(name: str) -> tuple[Any, Any, float, float]:
    rng = np.random.default_rng(10 + len(name))
    k = 4
    if name == "rare_class_low_scores":
        y = rng.choice(k, size=N, p=[0.598, 0.3, 0.1, 0.002])
        logits = rng.standard_normal((N, k)) * 2.0
        logits[:, 3] -= 10.0
    else:  # confident model: most probabilities near 0 or 1
        y = rng.integers(0, k, N)
        logits = rng.standard_normal((N, k)) * 2.0
    logits[np.arange(N), y] += 4.0
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    auc = float(skm.roc_auc_score(y, p, multi_class="ovr"))
    ap = float(np.mean([skm.average_precision_score(y == c, p[:, c]) for c in range(k)]))
    return y, p, auc, ap


@pytest.mark.parametrize("n_bins", [65536, 4096, 16384])
@pytest.mark.parametrize("case", ["rare_class_low_scores", "confident"])
def test_streaming_multiclass_auc_within_1e3(case: str, n_bins: int) -> None:
    y, p, auc, ap = _multiclass_case(case)
    st = MulticlassRankingState(4, mode="streaming", n_bins=n_bins)
    for chunk in np.array_split(np.arange(N), 3):
        st.update(y[chunk], p[chunk])
    got = st.compute()
    err = abs(got["roc_auc"] - auc)
    assert err <= 1e-3, (case, n_bins, err)
    bound = float(np.mean([b.auc_error_bound() for b in st.per_class_states]))
    assert err <= bound + 1e-12
    assert abs(got["pr_auc"] - ap) <= 2e-3


def test_functional_streaming_uses_mixed_by_default() -> None:
    y, s, auc, _ = _binary_case("rare_low_scores")
    got = roc_auc_score(y, s, mode="streaming", n_bins=4096)
    assert abs(got - auc) <= 1e-3
    lin = roc_auc_score(y, s, mode="streaming", n_bins=4096, scale="linear")
    assert abs(lin - auc) > 1e-2
    st = BinaryRankingState(mode="streaming", n_bins=4096)
    st.update(y, s)
    assert got == st.roc_auc()
