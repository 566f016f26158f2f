"""Merging states over any partition equals one pass; every state survives JSON."""

from __future__ import annotations

import itertools
import json
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tunelens.metrics import (
    BinaryRankingState,
    CalibrationState,
    ClassificationState,
    MulticlassRankingState,
    ProbabilisticState,
    QuantileSketch,
    RegressionState,
    state_from_dict,
)
from tunelens.testing.metrics import assert_same

SETTINGS = settings(max_examples=100, deadline=None)


@st.composite
def partitioned(draw: st.DrawFn, max_n: int = 60) -> tuple[int, list[int], int, bool]:
    """Row count, sorted cut points, a data seed and whether to use weights."""
    n = draw(st.integers(0, max_n))
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=6)))
    seed = draw(st.integers(0, 2**32 - 1))
    weighted = draw(st.booleans())
    return n, cuts, seed, weighted


def _parts(n: int, cuts: list[int]) -> list[slice]:
    bounds = [0, *cuts, n]
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


def _compute(state: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = dict(state.compute())
        if isinstance(state, BinaryRankingState):
            out["roc_curve"] = state.roc_curve()
            out["pr_curve"] = state.precision_recall_curve()
        if isinstance(state, ClassificationState):
            out["labels"] = state.labels
            out["cm"] = state.confusion_matrix()
        if isinstance(state, CalibrationState):
            out["curve"] = state.curve()
    return out


def _same(a: dict[str, Any], b: dict[str, Any], tol: float = 1e-9) -> None:
    assert set(a) == set(b)
    for k in a:
        if k == "labels":
            assert a[k] == b[k]
        else:
            assert_same(a[k], b[k], tol=tol, what=k)


def _roundtrip(state: Any) -> Any:
    return state_from_dict(json.loads(json.dumps(state.to_dict())))


def _check(
    make: Callable[[], Any],
    update: Callable[[Any, slice, np.ndarray | None], None],
    n: int,
    cuts: list[int],
    w: np.ndarray | None,
) -> None:
    whole = make()
    update(whole, slice(0, n), w)
    merged = make()
    for sl in _parts(n, cuts):
        part = make()
        update(part, sl, w)
        merged.merge(_roundtrip(part))  # the parts travel through JSON first
    _same(_compute(merged), _compute(whole))
    _same(_compute(_roundtrip(whole)), _compute(whole), tol=0.0)  # bit-identical
    _same(_compute(whole.copy()), _compute(whole), tol=0.0)


def _weights(rng: np.random.Generator, n: int, weighted: bool) -> np.ndarray | None:
    return rng.integers(0, 4, n).astype(float) if weighted else None


@SETTINGS
@given(partitioned(), st.sampled_from(["int", "str"]))
def test_classification_merge(p: tuple[int, list[int], int, bool], kind: str) -> None:
    n, cuts, seed, weighted = p
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 5))
    yt, yp = rng.integers(0, k, n), rng.integers(0, k, n)
    if kind == "str":
        names = np.array(["ant", "bee", "cat", "dog", "eel"])
        yt, yp = names[yt], names[yp]
    _check(
        ClassificationState,
        lambda s, sl, w: s.update(yt[sl], yp[sl], None if w is None else w[sl]),
        n,
        cuts,
        _weights(rng, n, weighted),
    )


@SETTINGS
@given(partitioned())
def test_classification_codes_merge(p: tuple[int, list[int], int, bool]) -> None:
    n, cuts, seed, weighted = p
    rng = np.random.default_rng(seed)
    yt, yp = rng.integers(0, 3, n), rng.integers(0, 3, n)
    _check(
        ClassificationState,
        lambda s, sl, w: s.update_codes(yt[sl], yp[sl], 3, None if w is None else w[sl]),
        n,
        cuts,
        _weights(rng, n, weighted),
    )


@SETTINGS
@given(partitioned(), st.sampled_from(["exact", "streaming"]))
def test_binary_ranking_merge(p: tuple[int, list[int], int, bool], mode: str) -> None:
    n, cuts, seed, weighted = p
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.round(rng.random(n), 1)
    _check(
        lambda: BinaryRankingState(mode=mode, n_bins=64),  # type: ignore[arg-type]
        lambda st_, sl, w: st_.update(y[sl], s[sl], None if w is None else w[sl]),
        n,
        cuts,
        _weights(rng, n, weighted),
    )


@SETTINGS
@given(partitioned(), st.sampled_from(["exact", "streaming"]))
def test_multiclass_ranking_merge(p: tuple[int, list[int], int, bool], mode: str) -> None:
    n, cuts, seed, weighted = p
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    c = rng.integers(1, 4, (n, 3)).astype(float)
    proba = c / c.sum(axis=1, keepdims=True)
    _check(
        lambda: MulticlassRankingState(3, mode=mode, n_bins=32),  # type: ignore[arg-type]
        lambda st_, sl, w: st_.update(y[sl], proba[sl], None if w is None else w[sl]),
        n,
        cuts,
        _weights(rng, n, weighted),
    )


@SETTINGS
@given(partitioned(), st.sampled_from([2, 4]))
def test_probabilistic_merge(p: tuple[int, list[int], int, bool], k: int) -> None:
    n, cuts, seed, weighted = p
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    if k == 2:
        proba: np.ndarray = np.round(rng.random(n), 2)
    else:
        c = rng.integers(0, 4, (n, k)).astype(float) + 0.5
        proba = c / c.sum(axis=1, keepdims=True)
    _check(
        lambda: ProbabilisticState(k),
        lambda st_, sl, w: st_.update(y[sl], proba[sl], None if w is None else w[sl]),
        n,
        cuts,
        _weights(rng, n, weighted),
    )


@SETTINGS
@given(partitioned())
def test_calibration_merge(p: tuple[int, list[int], int, bool]) -> None:
    n, cuts, seed, weighted = p
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    prob = np.round(rng.random(n), 1)
    _check(
        lambda: CalibrationState(10),
        lambda st_, sl, w: st_.update(y[sl], prob[sl], None if w is None else w[sl]),
        n,
        cuts,
        _weights(rng, n, weighted),
    )


@SETTINGS
@given(partitioned(), st.sampled_from([0.0, 1e6]))
def test_regression_merge(p: tuple[int, list[int], int, bool], offset: float) -> None:
    n, cuts, seed, weighted = p
    rng = np.random.default_rng(seed)
    yt = offset + np.round(rng.normal(size=n), 1)
    yp = yt + np.round(rng.normal(size=n), 1)
    _check(
        RegressionState,
        lambda st_, sl, w: st_.update(yt[sl], yp[sl], None if w is None else w[sl]),
        n,
        cuts,
        _weights(rng, n, weighted),
    )


@SETTINGS
@given(partitioned(max_n=300))
def test_sketch_merge(p: tuple[int, list[int], int, bool]) -> None:
    n, cuts, seed, _ = p
    rng = np.random.default_rng(seed)
    v = rng.lognormal(2.0, 1.5, n)
    v[rng.random(n) < 0.1] = 0.0
    _check(
        lambda: QuantileSketch(0.01, max_buckets=4096),
        lambda st_, sl, w: st_.update(v[sl]),
        n,
        cuts,
        None,
    )


@SETTINGS
@given(st.integers(0, 2**32 - 1))
def test_ranking_many_small_updates_equal_one(seed: int) -> None:
    # many small updates exercise the lazy consolidation path
    rng = np.random.default_rng(seed)
    n = 3000
    y = rng.integers(0, 2, n)
    s = np.round(rng.random(n), 3)
    one = BinaryRankingState()
    one.update(y, s)
    many = BinaryRankingState()
    for sl in np.array_split(np.arange(n), 50):
        many.update(y[sl], s[sl])
    _same(_compute(many), _compute(one))
