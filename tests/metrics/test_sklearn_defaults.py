"""The functional twins match scikit-learn 1.9 called with its default arguments."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
import sklearn.metrics as skm
from sklearn.exceptions import UndefinedMetricWarning as SkUndefinedMetricWarning

import tunelens.metrics as tm
from tunelens.metrics import UndefinedMetricWarning

PRF = ("precision_score", "recall_score", "f1_score")
AVERAGES = ("binary", "macro", "micro", "weighted", None)
ZERO_DIVISIONS: tuple[Any, ...] = ("warn", np.nan, 0.0, 1.0)
# (y_true, y_pred, labels) with zero divisions of every kind
ILL_DEFINED: list[tuple[list[Any], list[Any], list[Any] | None]] = [
    ([0, 0, 1, 1], [0, 0, 0, 0], None),  # class 1 never predicted
    ([0, 0, 0, 0], [0, 0, 1, 1], None),  # class 1 never true
    ([0, 0, 0], [0, 0, 0], None),  # positive class absent everywhere
    ([0, 1, 2, 2], [0, 1, 1, 1], None),  # class 2 never predicted (multiclass)
    ([0, 1, 1], [0, 1, 0], [0, 1, 2]),  # labels= names an absent class
    (["a", "b", "b"], ["a", "a", "a"], None),
]


def _call(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = fn(*args, **kwargs)
        except ValueError as exc:
            return ("error", str(exc)), []
    names = [type(w.message).__name__ for w in caught]
    return value, names


def _equal(a: Any, b: Any) -> bool:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a.shape == b.shape and bool(np.allclose(a, b, equal_nan=True, rtol=1e-12))


@pytest.mark.parametrize("zero_division", ZERO_DIVISIONS, ids=str)
@pytest.mark.parametrize("average", AVERAGES, ids=str)
@pytest.mark.parametrize("case", range(len(ILL_DEFINED)))
@pytest.mark.parametrize("name", PRF)
def test_prf_zero_division_like_sklearn(
    name: str, case: int, average: str | None, zero_division: Any
) -> None:
    y_true, y_pred, labels = ILL_DEFINED[case]
    kw: dict[str, Any] = {"average": average, "labels": labels}
    if not (isinstance(zero_division, str) and zero_division == "warn"):
        kw["zero_division"] = zero_division  # "warn" is the default: pass nothing
    expected, sk_warned = _call(getattr(skm, name), y_true, y_pred, **kw)
    if average == "binary" and isinstance(y_true[0], str):
        kw["pos_label"] = "b"
        expected, sk_warned = _call(getattr(skm, name), y_true, y_pred, **kw)
    if isinstance(expected, tuple):  # scikit-learn refuses (e.g. binary on multiclass)
        with pytest.raises(ValueError):
            getattr(tm, name)(y_true, y_pred, **kw)
        return
    got, ours_warned = _call(getattr(tm, name), y_true, y_pred, **kw)
    assert _equal(got, expected), (got, expected)
    if "UndefinedMetricWarning" in sk_warned:
        assert "UndefinedMetricWarning" in ours_warned
    if bool(np.any(np.isnan(np.asarray(got, dtype=float)))):
        assert "UndefinedMetricWarning" in ours_warned  # every undefined result warns


@pytest.mark.parametrize("zero_division", ZERO_DIVISIONS, ids=str)
@pytest.mark.parametrize("average", AVERAGES, ids=str)
@pytest.mark.parametrize("name", PRF)
def test_empty_input_is_nan_with_a_warning(
    name: str, average: str | None, zero_division: Any
) -> None:
    with pytest.warns(UndefinedMetricWarning):
        got = getattr(tm, name)([], [], average=average, zero_division=zero_division)
    if average is None:
        assert np.asarray(got).shape == (0,)
    else:
        assert math.isnan(got)


def test_defaults_are_sklearn_defaults() -> None:
    y_true, y_pred = [0, 1, 2, 2], [0, 1, 1, 1]
    for name in PRF:
        for avg in ("macro", "weighted", "micro"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected = getattr(skm, name)(y_true, y_pred, average=avg)
                got = getattr(tm, name)(y_true, y_pred, average=avg)
            assert got == pytest.approx(expected)
    with pytest.warns(UndefinedMetricWarning):
        assert tm.precision_score([0, 0, 1, 1], [0, 0, 0, 0]) == 0.0
    with pytest.raises(ValueError, match="zero_division"):
        tm.f1_score([0, 1], [0, 1], zero_division=0.5)


def test_states_keep_nan_for_undefined_values() -> None:
    s = tm.ClassificationState()
    s.update([0, 0, 1, 1], [0, 0, 0, 0])
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(s.compute()["precision"])


@pytest.mark.parametrize("average", ["macro", "weighted"])
@pytest.mark.parametrize("weighted", [False, True])
def test_multiclass_roc_auc_with_absent_class_like_sklearn(average: str, weighted: bool) -> None:
    p = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.3, 0.2], [0.1, 0.8, 0.1]])
    y = [0, 1, 0, 1]
    kw: dict[str, Any] = {"average": average, "labels": [0, 1, 2]}
    if weighted:
        kw["sample_weight"] = [1.0, 2.0, 0.5, 1.0]
    with pytest.warns(SkUndefinedMetricWarning):
        expected = skm.roc_auc_score(y, p, multi_class="ovr", **kw)
    with pytest.warns(UndefinedMetricWarning):
        got = tm.roc_auc_score(y, p, **kw)
    assert got == pytest.approx(expected, nan_ok=True)
    assert math.isnan(got) == (average == "macro")
    # the state (what the monitor uses) skips the undefined class instead
    st = tm.MulticlassRankingState(3)
    st.update(y, p, kw.get("sample_weight"))
    with pytest.warns(UndefinedMetricWarning):
        assert st.roc_auc(average) == 1.0  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("y_true", "y_prob", "labels"),
    [
        ([1, 1], [0.2, 0.1], [1, 2]),
        (["a", "a"], [0.2, 0.1], ["a", "b"]),
        (["b", "a", "b"], [0.2, 0.1, 0.7], ["a", "b"]),
        ([2, 2, 1], [0.9, 0.6, 0.3], [1, 2]),
        ([0, 0], [0.3, 0.1], [0, 1]),
    ],
)
def test_log_loss_and_brier_use_labels_for_1d_probabilities(
    y_true: list[Any], y_prob: list[float], labels: list[Any]
) -> None:
    expected = skm.log_loss(y_true, y_prob, labels=labels)
    assert tm.log_loss(y_true, y_prob, labels=labels) == pytest.approx(expected, abs=1e-12)
    # scikit-learn ignores `labels` for 1-D brier input; ours = its pos_label=max(labels)
    expected_b = skm.brier_score_loss(y_true, y_prob, pos_label=max(labels))
    got_b = tm.brier_score_loss(y_true, y_prob, labels=labels)
    assert got_b == pytest.approx(expected_b, abs=1e-12)


def test_log_loss_reviewer_example() -> None:
    assert tm.log_loss([1, 1], [0.2, 0.1], labels=[1, 2]) == pytest.approx(0.164252033486018)
    assert tm.log_loss(["a", "a"], [0.2, 0.1], labels=["a", "b"]) == pytest.approx(
        0.164252033486018
    )


def test_1d_probabilities_with_bad_labels_raise() -> None:
    with pytest.raises(ValueError, match="exactly 2"):
        tm.log_loss([1, 1], [0.2, 0.1], labels=[1, 2, 3])
    with pytest.raises(ValueError, match="not in `labels`"):
        tm.log_loss([1, 3], [0.2, 0.1], labels=[1, 2])
