"""A monitored model's classes may grow (appended at the end): states of K and K+1 merge."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunelens.metrics import (
    ClassificationState,
    MulticlassRankingState,
    ProbabilisticState,
    UndefinedMetricWarning,
    state_from_dict,
)


def _proba(rng: np.random.Generator, n: int, k: int) -> np.ndarray[Any, Any]:
    p = rng.random((n, k)) + 0.01
    return np.asarray(p / p.sum(axis=1, keepdims=True))


def _compute(s: Any) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        out: dict[str, Any] = s.compute()
    return out


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=1e-12, nan_ok=True), key


def _json(s: Any) -> Any:
    return state_from_dict(json.loads(json.dumps(s.to_dict())))


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(2, 5),
    n_small=st.integers(0, 60),
    n_big=st.integers(0, 60),
    seed=st.integers(0, 2**31 - 1),
    weighted=st.booleans(),
    mode=st.sampled_from(["exact", "streaming"]),
    small_first=st.booleans(),
    via_json=st.booleans(),
)
def test_states_of_k_and_k_plus_1_merge_to_one_pass(
    k: int,
    n_small: int,
    n_big: int,
    seed: int,
    weighted: bool,
    mode: str,
    small_first: bool,
    via_json: bool,
) -> None:
    rng = np.random.default_rng(seed)
    # the K-state only sees classes < K (true and predicted) and K score columns
    t1, p1 = rng.integers(0, k, n_small), rng.integers(0, k, n_small)
    t2, p2 = rng.integers(0, k + 1, n_big), rng.integers(0, k + 1, n_big)
    s1, s2 = _proba(rng, n_small, k), _proba(rng, n_big, k + 1)
    w1 = rng.integers(0, 4, n_small).astype(float) if weighted else None
    w2 = rng.integers(0, 4, n_big).astype(float) if weighted else None
    s1_padded = np.hstack([s1, np.zeros((n_small, 1))])
    t, p, s = np.concatenate([t1, t2]), np.concatenate([p1, p2]), np.vstack([s1_padded, s2])
    w = None if w1 is None or w2 is None else np.concatenate([w1, w2])

    def build(kind: str, kk: int) -> Any:
        if kind == "cm":
            return ClassificationState(labels=list(range(kk)))
        if kind == "rank":
            return MulticlassRankingState(kk, mode=mode, n_bins=256)  # type: ignore[arg-type]
        return ProbabilisticState(kk)

    for kind in ("cm", "rank", "proba"):
        small, big, one = build(kind, k), build(kind, k + 1), build(kind, k + 1)
        if kind == "cm":
            small.update_codes(t1, p1, k, w1)
            big.update_codes(t2, p2, k + 1, w2)
            one.update_codes(t, p, k + 1, w)
        else:
            small.update(t1, s1, w1)
            big.update(t2, s2, w2)
            one.update(t, s, w)
        if via_json:
            small, big = _json(small), _json(big)
        a, b = (small, big) if small_first else (big, small)
        a.merge(b)
        _same(_compute(a), _compute(one))
        if kind == "cm":
            assert a.labels == list(range(k + 1))
            np.testing.assert_array_equal(a.confusion_matrix(), one.confusion_matrix())
        else:
            assert a.n_classes == k + 1
        _same(_compute(_json(a)), _compute(one))


def test_update_codes_grows_a_fixed_state() -> None:
    s = ClassificationState(labels=[0, 1])
    s.update_codes([0, 1], [1, 1], 2)
    s.update_codes([2, 0], [2, 2], 3)
    assert s.labels == [0, 1, 2]
    assert s.confusion_matrix().tolist() == [[0, 1, 1], [0, 1, 0], [0, 0, 1]]


def test_update_codes_out_of_range_names_n_classes() -> None:
    s = ClassificationState(labels=[0, 1])
    with pytest.raises(ValueError, match="n_classes=2"):
        s.update_codes([0, 2], [0, 1], 2)


def test_fixed_labels_only_grow_at_the_end() -> None:
    a = ClassificationState(labels=["b", "c"])
    a.merge(ClassificationState(labels=["b", "c", "d"]))
    assert a.labels == ["b", "c", "d"]
    with pytest.raises(ValueError, match="after the existing"):
        a.merge(ClassificationState(labels=["a", "b"]))
    with pytest.raises(ValueError, match="not in `labels`"):
        ClassificationState(labels=[0, 1]).update([0, 2], [0, 1])  # update stays strict


def test_grow_methods() -> None:
    c = ClassificationState(labels=[0, 1])
    c.grow(4)
    assert c.labels == [0, 1, 2, 3]
    r = MulticlassRankingState(3)
    r.update([0, 1, 2], [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
    r.grow(4)
    assert r.n_classes == 4 and r.per_class_states[3].totals() == (0.0, 3.0)
    with pytest.raises(ValueError, match="shrink"):
        r.grow(2)
    p = ProbabilisticState(2)
    p.grow(3)
    assert p.n_classes == 3
    with pytest.raises(ValueError, match="shrink"):
        p.grow(2)
