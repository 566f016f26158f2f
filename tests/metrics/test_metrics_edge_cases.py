"""Undefined metrics give NaN with a warning; bad input gives a ValueError naming it."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
import sklearn.metrics as skm

import tunelens.metrics as tm
from tunelens.metrics import (
    BinaryRankingState,
    CalibrationState,
    ClassificationState,
    MulticlassRankingState,
    ProbabilisticState,
    QuantileSketch,
    RegressionState,
    UndefinedMetricWarning,
)


def _nan_with_warning(fn: Any, *args: Any, **kwargs: Any) -> None:
    with pytest.warns(UndefinedMetricWarning):
        value = fn(*args, **kwargs)
    assert math.isnan(value)


def test_warning_is_a_user_warning() -> None:
    assert issubclass(UndefinedMetricWarning, UserWarning)


def test_roc_auc_one_class_is_nan_like_sklearn() -> None:
    y, s = [1, 1, 1], [0.2, 0.5, 0.9]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(skm.roc_auc_score(y, s))  # scikit-learn 1.9 also returns NaN
    _nan_with_warning(tm.roc_auc_score, y, s)
    _nan_with_warning(tm.roc_auc_score, [0, 0], [0.1, 0.2])


def test_average_precision_without_positives_is_zero_like_sklearn() -> None:
    y, s = [0, 0, 0], [0.1, 0.5, 0.7]
    with pytest.warns(UserWarning, match="No positive class found") as ours:
        got = tm.average_precision_score(y, s)
    with pytest.warns(UserWarning, match="No positive class found") as theirs:
        expected = skm.average_precision_score(y, s)
    assert got == expected == 0.0
    assert str(ours[0].message) == str(theirs[0].message)
    for mode in ("exact", "streaming"):  # the state keeps NaN (monitor windows)
        st = tm.BinaryRankingState(mode=mode)  # type: ignore[arg-type]
        st.update(np.array(y), np.array(s))
        with pytest.warns(tm.UndefinedMetricWarning):
            assert math.isnan(st.average_precision())


@pytest.mark.parametrize("average", ["macro", "weighted"])
def test_average_precision_class_of_zero_weight_counts_as_zero(average: str) -> None:
    y = [1, 2, 2, 0, 0]
    p = np.array(
        [[0.6, 0.2, 0.2], [0.4, 0.2, 0.4], [0, 0.5, 0.5], [0.25, 0.5, 0.25], [0.5, 0, 0.5]]
    )
    w = [1, 0, 0, 2, 0]
    with pytest.warns(UserWarning):
        got = tm.average_precision_score(y, p, sample_weight=w, average=average)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = skm.average_precision_score(y, p, sample_weight=w, average=average)
    assert got == pytest.approx(expected, abs=1e-12)
    if average == "macro":
        assert got == pytest.approx(1 / 3)
    st = tm.MulticlassRankingState(3)
    st.update([1, 2, 2, 0, 0], p, w)
    with pytest.warns(tm.UndefinedMetricWarning):
        assert st.compute()["pr_auc"] == pytest.approx(0.5)  # the state skips the class


def test_classification_metrics_follows_sklearn_defaults() -> None:
    with pytest.warns(tm.UndefinedMetricWarning, match="zero division"):
        m = tm.classification_metrics([0, 0, 1], [0, 0, 0], [0.1, 0.2, 0.3])
    assert m["precision"] == 0.0
    with pytest.warns(tm.UndefinedMetricWarning, match="zero division"):
        m = tm.classification_metrics([0, 0, 1, 2], [0, 0, 0, 2])
    assert m["precision_macro"] == pytest.approx(
        skm.precision_score([0, 0, 1, 2], [0, 0, 0, 2], average="macro", zero_division=0)
    )
    assert m["precision_weighted"] == pytest.approx(0.5833333333333333)
    assert m["precision_micro"] == 0.75
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = tm.classification_metrics([0, 0, 1, 2], [0, 0, 0, 2], zero_division=1)
    assert m["precision_macro"] == pytest.approx(0.8888888888888888)
    with pytest.warns(tm.UndefinedMetricWarning):
        m = tm.classification_metrics([0, 0, 1, 2], [0, 0, 0, 2], zero_division=np.nan)
    assert m["precision_macro"] == pytest.approx(0.8333333333333333)  # NaN skipped, as sklearn
    with pytest.raises(ValueError, match="zero_division"):
        tm.classification_metrics([0, 1], [0, 1], zero_division=0.5)


def test_average_precision_without_negatives_is_one() -> None:
    assert tm.average_precision_score([1, 1], [0.1, 0.5]) == 1.0


@pytest.mark.parametrize(
    "fn",
    [tm.accuracy_score, tm.error_rate],
)
def test_empty_classification_is_nan(fn: Any) -> None:
    _nan_with_warning(fn, [], [])


@pytest.mark.parametrize(
    "fn",
    [
        tm.mean_absolute_error,
        tm.mean_squared_error,
        tm.root_mean_squared_error,
        tm.r2_score,
        tm.mean_absolute_percentage_error,
    ],
)
def test_empty_regression_is_nan(fn: Any) -> None:
    _nan_with_warning(fn, [], [])


def test_empty_ranking_probabilistic_and_calibration_are_nan() -> None:
    _nan_with_warning(tm.roc_auc_score, [], [])
    _nan_with_warning(tm.average_precision_score, [], [])
    _nan_with_warning(tm.log_loss, np.array([], dtype=int), np.array([]))
    _nan_with_warning(tm.brier_score_loss, np.array([], dtype=int), np.array([]))
    _nan_with_warning(tm.expected_calibration_error, np.array([], dtype=int), np.array([]))


@pytest.mark.parametrize(
    "state",
    [
        ClassificationState(),
        BinaryRankingState(),
        BinaryRankingState(mode="streaming"),
        MulticlassRankingState(3),
        ProbabilisticState(2),
        CalibrationState(),
        RegressionState(),
        QuantileSketch(),
    ],
    ids=lambda s: type(s).__name__,
)
def test_empty_state_computes_nan_with_warning(state: Any) -> None:
    with pytest.warns(UndefinedMetricWarning):
        out = state.compute()
    assert out
    assert all(math.isnan(v) for k, v in out.items() if k not in ("count", "sum"))


@pytest.mark.parametrize("fn", ["precision_score", "recall_score", "f1_score"])
def test_zero_division_matches_sklearn_nan(fn: str) -> None:
    y_true, y_pred = [0, 0, 1, 1], [0, 0, 0, 0]  # nothing predicted positive
    expected = getattr(skm, fn)(y_true, y_pred, zero_division=np.nan)
    if math.isnan(expected):
        _nan_with_warning(getattr(tm, fn), y_true, y_pred, zero_division=np.nan)
    else:
        assert getattr(tm, fn)(y_true, y_pred, zero_division=np.nan) == expected
    y_true, y_pred = [0, 0, 0], [0, 0, 0]  # positive class absent everywhere
    expected = getattr(skm, fn)(y_true, y_pred, zero_division=np.nan)
    assert math.isnan(expected)
    _nan_with_warning(getattr(tm, fn), y_true, y_pred, zero_division=np.nan)


def test_macro_ignores_undefined_classes_like_sklearn() -> None:
    y_true, y_pred = [0, 1, 2, 2], [0, 1, 1, 1]
    for avg in ("macro", "weighted", "micro"):
        expected = skm.precision_score(y_true, y_pred, average=avg, zero_division=np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = tm.precision_score(y_true, y_pred, average=avg, zero_division=np.nan)
            assert got == pytest.approx(expected)


def test_r2_constant_target_like_sklearn() -> None:
    for y_pred in ([1.0, 2.0, 3.0], [1.0, 1.0, 1.0]):
        for force_finite in (True, False):
            kw = {"force_finite": force_finite}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected = skm.r2_score([1.0, 1.0, 1.0], y_pred, **kw)
            if force_finite:
                assert tm.r2_score([1.0, 1.0, 1.0], y_pred, **kw) == expected
            else:
                with pytest.warns(UndefinedMetricWarning):
                    got = tm.r2_score([1.0, 1.0, 1.0], y_pred, **kw)
                assert got == expected or (math.isnan(got) and math.isnan(expected))
    assert tm.r2_score([1.0, 1.0], [1.0, 2.0]) == 0.0
    assert tm.r2_score([1.0, 1.0], [1.0, 1.0]) == 1.0
    _nan_with_warning(tm.r2_score, [1.0], [2.0])
    s = RegressionState()  # the state keeps NaN for a constant target
    s.update([1.0, 1.0], [1.0, 2.0])
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(s.compute()["r2"])


def test_binary_average_rejects_multiclass() -> None:
    with pytest.raises(ValueError, match="average"):
        tm.precision_score([0, 1, 2], [0, 1, 2])


BAD_INPUTS: list[tuple[Any, tuple[Any, ...], dict[str, Any], str]] = [
    (tm.accuracy_score, ([0, 1, 1], [0, 1]), {}, "y_pred"),
    (tm.accuracy_score, ([0.0, np.nan], [0, 1]), {}, "y_true"),
    (tm.accuracy_score, ([0, 1], [0, 1]), {"sample_weight": [1.0, -1.0]}, "sample_weight"),
    (tm.accuracy_score, ([0, 1], [0, 1]), {"sample_weight": [1.0]}, "sample_weight"),
    (tm.accuracy_score, ([0, 1], [0, 1]), {"sample_weight": [1.0, np.nan]}, "sample_weight"),
    (tm.accuracy_score, ([0, 1], ["a", "b"]), {}, "y_pred"),
    (tm.roc_auc_score, ([0, 1], [0.1, np.inf]), {}, "y_score"),
    (tm.roc_auc_score, ([0, 1], [0.1, np.nan]), {}, "y_score"),
    (tm.roc_auc_score, ([0, 1, 1], [0.1, 0.2]), {}, "y_score"),
    (tm.roc_auc_score, ([0, 1], [0.1, 1.5]), {"mode": "streaming"}, "y_score"),
    (tm.roc_auc_score, ([0, 1], [-0.1, 0.5]), {"mode": "streaming"}, "y_score"),
    (tm.roc_auc_score, ([0, 1, 2], [[0.5, 0.5, 0.5]] * 3), {}, "scores"),
    (tm.roc_auc_score, ([0, 1, 2], [[0.5, 0.5]] * 3), {}, "y_true"),
    (tm.roc_auc_score, ([0, 1, 2], [0.1, 0.2, 0.3]), {}, "y_true"),
    (tm.roc_auc_score, ([0, 1], [0.1, 0.2]), {"mode": "fast"}, "mode"),
    (tm.log_loss, ([0, 1], [0.1, 1.2]), {}, "y_proba"),
    (tm.log_loss, ([0, 1], [-0.1, 0.5]), {}, "y_proba"),
    (tm.log_loss, ([0, 1, 2], [[0.2, 0.8]] * 3), {}, "y_true"),
    (tm.brier_score_loss, ([0, 1], [0.1, np.nan]), {}, "y_proba"),
    (tm.mean_absolute_error, ([1.0, np.nan], [1.0, 2.0]), {}, "y_true"),
    (tm.mean_absolute_error, ([1.0, 2.0], [1.0, np.inf]), {}, "y_pred"),
    (tm.mean_absolute_error, ([1.0, 2.0], [1.0]), {}, "y_pred"),
    (tm.mean_absolute_error, (["a"], [1.0]), {}, "y_true"),
    (tm.calibration_curve, ([0, 1], [0.1, 1.1]), {}, "y_prob"),
]


@pytest.mark.parametrize(("fn", "args", "kwargs", "name"), BAD_INPUTS)
def test_bad_input_names_the_argument(
    fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        fn(*args, **kwargs)


def test_states_validate_their_inputs() -> None:
    with pytest.raises(ValueError, match="y_true"):
        BinaryRankingState().update([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="true_idx"):
        MulticlassRankingState(3).update([0, 3], [[1, 0, 0], [0, 1, 0]])
    with pytest.raises(ValueError, match="scores"):
        MulticlassRankingState(3).update([0, 1], [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="proba"):
        ProbabilisticState(3).update([0, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="pred_idx"):
        ClassificationState().update_codes([0, 1], [0, 5], 3)
    with pytest.raises(ValueError, match="values"):
        QuantileSketch().update([1.0, -2.0])
    with pytest.raises(ValueError, match="labels"):
        ClassificationState(labels=[0, 1]).update([0, 2], [0, 1])


def test_proba_rows_not_summing_to_one_warn_like_sklearn() -> None:
    with pytest.warns(UserWarning, match="sum to one"):
        ProbabilisticState(3).update([0, 1], [[0.5, 0.2, 0.2], [0.1, 0.1, 0.1]])


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (BinaryRankingState(), BinaryRankingState(mode="streaming")),
        (BinaryRankingState(mode="streaming"), BinaryRankingState(mode="streaming", n_bins=8)),
        (
            BinaryRankingState(mode="streaming"),
            BinaryRankingState(mode="streaming", scale="linear"),
        ),
        (
            MulticlassRankingState(3, mode="streaming"),
            MulticlassRankingState(4, mode="streaming", n_bins=8),
        ),
        (
            MulticlassRankingState(3, mode="streaming"),
            MulticlassRankingState(3, mode="streaming", scale="linear"),
        ),
        (ProbabilisticState(2), RegressionState()),
        (ClassificationState(labels=[1, 2]), ClassificationState(labels=[0, 1, 2])),
        (CalibrationState(10), CalibrationState(5)),
        (QuantileSketch(0.01), QuantileSketch(0.02)),
        (ClassificationState(), RegressionState()),
        (RegressionState(), ClassificationState()),
    ],
)
def test_incompatible_merge_raises(a: Any, b: Any) -> None:
    with pytest.raises(ValueError):
        a.merge(b)


def test_label_sets_union_sorted_on_merge() -> None:
    a, b = ClassificationState(), ClassificationState()
    a.update(["cat", "dog"], ["cat", "cat"])
    b.update(["ant", "dog"], ["dog", "eel"])
    a.merge(b)
    assert a.labels == ["ant", "cat", "dog", "eel"]
    y_true = ["cat", "dog", "ant", "dog"]
    y_pred = ["cat", "cat", "dog", "eel"]
    np.testing.assert_array_equal(a.confusion_matrix(), skm.confusion_matrix(y_true, y_pred))
    mixed = ClassificationState()
    mixed.update([0, 1], [0, 1])
    with pytest.raises(ValueError, match="numbers or all strings"):
        mixed.update(["a", "b"], ["a", "b"])


def test_update_codes_equals_update() -> None:
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 4, 500).astype(np.int32), rng.integers(0, 4, 500).astype(np.int32)
    a, b = ClassificationState(), ClassificationState()
    a.update(t, p)
    b.update_codes(t, p, 4)
    np.testing.assert_array_equal(a.confusion_matrix(), b.confusion_matrix())
    assert a.compute() == b.compute()


def test_binary_summary_uses_positive_class() -> None:
    s = ClassificationState()
    s.update(["no", "yes", "yes", "no"], ["yes", "yes", "no", "no"])
    out = s.compute()
    assert out["precision"] == skm.precision_score(
        ["no", "yes", "yes", "no"], ["yes", "yes", "no", "no"], pos_label="yes"
    )
    assert s.compute(positive="no")["recall"] == 0.5
    per = s.per_class()
    assert set(per) == {"no", "yes"} and per["yes"]["support"] == 2


def test_multiclass_summary_is_macro() -> None:
    s = ClassificationState()
    y_true, y_pred = [0, 1, 2, 2, 1], [0, 2, 2, 1, 1]
    s.update(y_true, y_pred)
    assert s.compute()["f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))


def test_multiclass_ranking_skips_absent_class_with_warning() -> None:
    s = MulticlassRankingState(3)
    s.update([0, 1, 0, 1], [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.3, 0.6, 0.1]])
    with pytest.warns(UndefinedMetricWarning):
        out = s.compute()
    assert out["roc_auc"] == pytest.approx(1.0)


def test_from_dict_rejects_unknown_type_and_version() -> None:
    with pytest.raises(ValueError, match="unknown"):
        tm.state_from_dict({"type": "Nope"})
    d = RegressionState().to_dict()
    d["version"] = 99
    with pytest.raises(ValueError, match="version"):
        tm.state_from_dict(d)


def test_copy_is_independent() -> None:
    a = BinaryRankingState()
    a.update([0, 1], [0.2, 0.8])
    b = a.copy()
    b.update([1, 0], [0.1, 0.9])
    assert a.roc_auc() == 1.0 and b.roc_auc() == 0.25


def test_to_dict_is_json_with_type_and_version() -> None:
    import json

    for state in (ClassificationState(), BinaryRankingState(), RegressionState()):
        d = json.loads(json.dumps(state.to_dict()))
        assert d["type"] == type(state).__name__ and d["version"] == 1


def test_functional_defaults_follow_sklearn_pos_label() -> None:
    rng = np.random.default_rng(11)
    y = rng.integers(1, 3, 200)  # labels {1, 2}: scikit-learn's default pos_label=1
    p = rng.integers(1, 3, 200)
    s = np.round(rng.random(200), 2)
    for fn in ("precision_score", "recall_score", "f1_score"):
        assert getattr(tm, fn)(y, p) == pytest.approx(getattr(skm, fn)(y, p), abs=1e-12)
    assert tm.average_precision_score(y, s) == pytest.approx(
        skm.average_precision_score(y, s), abs=1e-12
    )
    assert tm.roc_auc_score(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert tm.brier_score_loss(y, s) == pytest.approx(skm.brier_score_loss(y, s), abs=1e-12)
    assert tm.log_loss(y, s) == pytest.approx(skm.log_loss(y, s), abs=1e-12)
    fpr, tpr, thr = tm.roc_curve(y, s, pos_label=2)
    efpr, etpr, ethr = skm.roc_curve(y, s, pos_label=2)
    np.testing.assert_allclose(fpr, efpr)
    np.testing.assert_allclose(tpr, etpr)
    np.testing.assert_allclose(thr, ethr)


def test_labels_argument_selects_and_orders_like_sklearn() -> None:
    rng = np.random.default_rng(2)
    names = np.array(["a", "b", "c", "d"])
    y, p = names[rng.integers(0, 4, 300)], names[rng.integers(0, 4, 300)]
    w = rng.random(300)
    sel = ["d", "b", "zz"]
    np.testing.assert_allclose(
        tm.confusion_matrix(y, p, labels=sel, sample_weight=w),
        skm.confusion_matrix(y, p, labels=sel, sample_weight=w),
    )
    for fn in ("precision_score", "recall_score", "f1_score"):
        for avg in ("macro", "micro", "weighted", None):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ours = getattr(tm, fn)(y, p, average=avg, labels=sel[:2], sample_weight=w)
                expected = getattr(skm, fn)(
                    y, p, average=avg, labels=sel[:2], sample_weight=w, zero_division=np.nan
                )
            np.testing.assert_allclose(ours, expected, rtol=1e-12)


def test_sklearn_keyword_arguments_are_accepted() -> None:
    rng = np.random.default_rng(4)
    y, p = rng.integers(0, 3, 100), rng.integers(0, 2, 100)
    w = rng.random(100)
    for zd in (0.0, 1.0, np.nan):
        for avg in ("macro", "weighted", "micro"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ours = tm.precision_score(y, p, average=avg, zero_division=zd, sample_weight=w)
            expected = skm.precision_score(y, p, average=avg, zero_division=zd, sample_weight=w)
            assert ours == pytest.approx(expected, abs=1e-12, nan_ok=True)
    assert tm.accuracy_score(y, p, normalize=False, sample_weight=w) == pytest.approx(
        skm.accuracy_score(y, p, normalize=False, sample_weight=w)
    )
    yb = rng.integers(0, 2, 100)
    s = np.round(rng.random(100), 2)
    assert tm.log_loss(yb, s, normalize=False, sample_weight=w) == pytest.approx(
        skm.log_loss(yb, s, normalize=False, sample_weight=w)
    )
    for half in (True, False, "auto"):
        assert tm.brier_score_loss(yb, s, scale_by_half=half) == pytest.approx(
            skm.brier_score_loss(yb, s, scale_by_half=half)
        )
    proba = rng.dirichlet(np.ones(3), 100)
    assert tm.roc_auc_score(y, proba, multi_class="ovr", sample_weight=w) == pytest.approx(
        skm.roc_auc_score(y, proba, multi_class="ovr", sample_weight=w)
    )
    for half in (True, False):
        assert tm.brier_score_loss(y, proba, scale_by_half=half) == pytest.approx(
            skm.brier_score_loss(y, proba, scale_by_half=half)
        )
    with pytest.raises(ValueError, match="multi_class"):
        tm.roc_auc_score(y, proba, multi_class="ovo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="zero_division"):
        tm.recall_score(y, p, average="macro", zero_division=0.5)


def test_metrics_imports_numpy_only() -> None:
    import ast
    from pathlib import Path

    package = Path(tm.__file__).parent
    allowed = {"numpy", "__future__", "typing", "base64", "warnings", "math", "collections", "zlib"}
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in allowed or name.startswith("tunelens.metrics"), (path.name, name)


_E, _EI, _E2 = np.array([]), np.array([], dtype=int), np.zeros((0, 3))
EMPTY_CALLS: dict[str, list[tuple[Any, ...]]] = {
    "accuracy_score": [(_EI, _EI)],
    "error_rate": [(_EI, _EI)],
    "precision_score": [(_EI, _EI)],
    "recall_score": [(_EI, _EI)],
    "f1_score": [(_EI, _EI)],
    "confusion_matrix": [(_EI, _EI)],
    "roc_auc_score": [(_EI, _E), (_EI, _E2)],
    "average_precision_score": [(_EI, _E), (_EI, _E2)],
    "roc_curve": [(_EI, _E)],
    "precision_recall_curve": [(_EI, _E)],
    "log_loss": [(_EI, _E), (_EI, _E2)],
    "brier_score_loss": [(_EI, _E), (_EI, _E2)],
    "calibration_curve": [(_EI, _E)],
    "expected_calibration_error": [(_EI, _E)],
    "mean_absolute_error": [(_E, _E)],
    "mean_squared_error": [(_E, _E)],
    "root_mean_squared_error": [(_E, _E)],
    "r2_score": [(_E, _E)],
    "mean_absolute_percentage_error": [(_E, _E)],
    "classification_metrics": [(_EI, _EI, _E), (_EI, _EI, _E2), (_EI, None, _E)],
}


def test_every_public_metric_has_an_empty_input_case() -> None:
    from tunelens.testing.metrics import public_metric_functions

    assert public_metric_functions() <= set(EMPTY_CALLS)


@pytest.mark.parametrize(
    ("name", "args"), [(k, a) for k, calls in EMPTY_CALLS.items() for a in calls]
)
def test_empty_input_never_crashes(name: str, args: tuple[Any, ...]) -> None:
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        result = getattr(tm, name)(*args)
    if isinstance(result, float):
        assert math.isnan(result)
    elif isinstance(result, dict):
        assert all(math.isnan(v) for v in result.values())
