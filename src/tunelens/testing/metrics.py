"""Every public metric of :mod:`tunelens.metrics` beside its scikit-learn oracle.

The registry :data:`METRIC_CASES` is the contract: each case says which task it
covers (binary, multiclass, regression), whether it takes sample weights and label
strings, and how to call our function and the oracle on the same data. Tests run
every case on random data with many ties (:func:`make_data`) and compare with
:func:`assert_same`. A public function of :mod:`tunelens.metrics` that is missing
from the registry (and from :data:`NOT_METRICS`) fails the test suite.

scikit-learn is imported lazily so that importing this module stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

import tunelens.metrics as tm

Task = Literal["binary", "multiclass", "regression"]

#: Public callables of tunelens.metrics that are not metrics (no oracle).
NOT_METRICS = frozenset({"state_from_dict"})

TOLERANCE = 1e-9


@dataclass(frozen=True)
class MetricData:
    """One random data set for a task: labels, predictions, scores and weights."""

    task: Task
    y_true: NDArray[Any]
    y_pred: NDArray[Any]
    y_score: NDArray[np.float64]  # (n,) positive-class probability, or (n, K) probabilities
    sample_weight: NDArray[np.float64] | None
    pos_label: Any
    classes: NDArray[Any]


def make_data(
    rng: np.random.Generator,
    task: Task,
    *,
    n: int = 200,
    n_classes: int = 3,
    weights: Literal[None, "int", "float"] = None,
    string_labels: bool = False,
) -> MetricData:
    """Random data with many ties: scores on a 0.01 grid, integer (some zero) weights."""
    w: NDArray[np.float64] | None = None
    if weights == "int":
        w = rng.integers(0, 4, n).astype(np.float64)
        w[:2] = 1.0
    elif weights == "float":
        w = np.round(rng.random(n) * 3, 3)
    if task == "regression":
        yt = np.round(rng.normal(5.0, 10.0, n), 1)
        yp = yt + np.round(rng.normal(0.0, 3.0, n), 1)
        return MetricData(task, yt, yp, yp.astype(np.float64), w, None, np.zeros(0))
    k = 2 if task == "binary" else n_classes
    idx = rng.integers(0, k, n)
    idx[:k] = np.arange(k)  # every class present
    counts = rng.integers(0, 4, (n, k)).astype(np.float64)
    counts[np.arange(n), idx] += rng.integers(0, 4, n)  # informative but noisy
    counts[counts.sum(axis=1) == 0, 0] = 1.0
    proba = counts / counts.sum(axis=1, keepdims=True)
    pred_idx = np.where(rng.random(n) < 0.7, proba.argmax(axis=1), rng.integers(0, k, n))
    names: NDArray[Any] = (
        np.array([f"c{i}" for i in range(k)]) if string_labels else np.arange(k) * 2 + 1
    )
    if task == "binary":
        score = np.round(proba[:, 1], 2)
        return MetricData(task, names[idx], names[pred_idx], score, w, names[1], names)
    return MetricData(task, names[idx], names[pred_idx], proba, w, None, names)


@dataclass(frozen=True)
class MetricCase:
    """One metric (or one setting of it) and its oracle."""

    name: str  # the public name in tunelens.metrics
    variant: str
    tasks: tuple[Task, ...]
    ours: Callable[[MetricData], Any]
    oracle: Callable[[MetricData], Any]
    weighted: bool = True
    string_labels: bool = True

    @property
    def id(self) -> str:
        """Readable test id."""
        return f"{self.name}[{self.variant}]" if self.variant else self.name


def assert_same(ours: Any, expected: Any, *, tol: float = TOLERANCE, what: str = "") -> None:
    """Equal within ``tol`` (absolute or relative); NaN equals NaN; recurses into tuples/dicts."""
    if isinstance(expected, dict):
        for key, value in expected.items():
            assert key in ours, f"{what}: key {key!r} missing"
            assert_same(ours[key], value, tol=tol, what=f"{what}[{key}]")
        return
    if isinstance(expected, tuple):
        assert len(ours) == len(expected), f"{what}: {len(ours)} parts, expected {len(expected)}"
        for i, (a, b) in enumerate(zip(ours, expected, strict=True)):
            assert_same(a, b, tol=tol, what=f"{what}[{i}]")
        return
    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    assert a.shape == b.shape, f"{what}: shape {a.shape}, expected {b.shape}"
    ok = np.isclose(a, b, rtol=tol, atol=tol, equal_nan=True) | (a == b)
    assert bool(np.all(ok)), f"{what}: got {a}, expected {b}"


def _kw(d: MetricData) -> dict[str, Any]:
    return {} if d.sample_weight is None else {"sample_weight": d.sample_weight}


def _sk() -> Any:
    import sklearn.metrics as skm

    return skm


def _with_avg(fn: Callable[[MetricData, str], Any], avg: str, d: MetricData) -> Any:
    return fn(d, avg)


#: ``zero_division`` settings compared with scikit-learn: its default ("warn",
#: passed to neither side), and the explicit values.
ZERO_DIVISIONS: tuple[tuple[str, Any], ...] = (
    ("", None),
    ("zd_nan", np.nan),
    ("zd_0", 0.0),
    ("zd_1", 1.0),
)


def _prf_call(fn: Any, zd: Any, avg: str, d: MetricData) -> Any:
    kwargs: dict[str, Any] = {"average": avg, **_kw(d)}
    if avg == "binary":
        kwargs["pos_label"] = d.pos_label
    if zd is not None:
        kwargs["zero_division"] = zd
    return fn(d.y_true, d.y_pred, **kwargs)


def _sk_prf(name: str, zd: Any, avg: str, d: MetricData) -> Any:
    return _prf_call(getattr(_sk(), name), zd, avg, d)


def _prf_cases() -> list[MetricCase]:
    cases = []
    for name in ("precision_score", "recall_score", "f1_score"):
        for suffix, zd in ZERO_DIVISIONS:
            for avg in ("binary", "macro", "micro", "weighted"):
                tasks: tuple[Task, ...] = (
                    ("binary",) if avg == "binary" else ("binary", "multiclass")
                )
                cases.append(
                    MetricCase(
                        name,
                        f"{avg}-{suffix}" if suffix else avg,
                        tasks,
                        partial(_prf_call, getattr(tm, name), zd, avg),
                        partial(_sk_prf, name, zd, avg),
                    )
                )
    return cases


def _ovr_ours(avg: str, d: MetricData) -> Any:
    return tm.roc_auc_score(d.y_true, d.y_score, average=avg, **_kw(d))  # type: ignore[arg-type]


def _ovr_oracle(avg: str, d: MetricData) -> Any:
    return _sk().roc_auc_score(d.y_true, d.y_score, multi_class="ovr", average=avg, **_kw(d))


def _with_absent_class(d: MetricData) -> tuple[NDArray[np.float64], list[Any]]:
    """Scores with one more column (all zero) for a class that never occurs."""
    extra: Any = "zz" if d.classes.dtype.kind in "US" else int(d.classes.max()) + 100
    scores = np.hstack([d.y_score, np.zeros((d.y_score.shape[0], 1))])
    return scores, [*d.classes.tolist(), extra]


def _ovr_absent_ours(avg: str, d: MetricData) -> Any:
    scores, labels = _with_absent_class(d)
    return tm.roc_auc_score(
        d.y_true,
        scores,
        average=avg,  # type: ignore[arg-type]
        labels=labels,
        **_kw(d),
    )


def _ovr_absent_oracle(avg: str, d: MetricData) -> Any:
    scores, labels = _with_absent_class(d)
    return _sk().roc_auc_score(
        d.y_true, scores, multi_class="ovr", average=avg, labels=labels, **_kw(d)
    )


def _calibration_ours(n_bins: int, d: MetricData) -> Any:
    return tm.calibration_curve(d.y_true, d.y_score, pos_label=d.pos_label, n_bins=n_bins)


def _xy(d: MetricData) -> tuple[Any, Any]:
    return d.y_true, d.y_score


def _ap_weightless_ours(avg: str, d: MetricData) -> Any:
    e = _last_class_weightless(d)
    return tm.average_precision_score(
        e.y_true,
        e.y_score,
        average=avg,  # type: ignore[arg-type]
        sample_weight=e.sample_weight,
    )


def _ap_weightless_oracle(avg: str, d: MetricData) -> Any:
    e = _last_class_weightless(d)
    return _sk().average_precision_score(
        e.y_true, e.y_score, average=avg, sample_weight=e.sample_weight
    )


def _ranking_cases() -> list[MetricCase]:
    cases = [
        MetricCase(
            "roc_auc_score",
            "binary",
            ("binary",),
            lambda d: tm.roc_auc_score(d.y_true, d.y_score, **_kw(d)),
            lambda d: _sk().roc_auc_score(d.y_true, d.y_score, **_kw(d)),
        ),
        MetricCase(
            "average_precision_score",
            "binary",
            ("binary",),
            lambda d: tm.average_precision_score(
                d.y_true, d.y_score, pos_label=d.pos_label, **_kw(d)
            ),
            lambda d: _sk().average_precision_score(
                d.y_true, d.y_score, pos_label=d.pos_label, **_kw(d)
            ),
        ),
        MetricCase(
            "average_precision_score",
            "macro",
            ("multiclass",),
            lambda d: tm.average_precision_score(d.y_true, d.y_score, **_kw(d)),
            lambda d: _sk().average_precision_score(d.y_true, d.y_score, **_kw(d)),
        ),
        MetricCase(
            "average_precision_score",
            "no_positives",
            ("binary",),
            lambda d: tm.average_precision_score(
                *_xy(_no_positives(d)), pos_label=d.pos_label, **_kw(d)
            ),
            lambda d: _sk().average_precision_score(
                *_xy(_no_positives(d)), pos_label=d.pos_label, **_kw(d)
            ),
        ),
        *[
            MetricCase(
                "average_precision_score",
                f"{avg}_weightless_class",
                ("multiclass",),
                partial(_ap_weightless_ours, avg),
                partial(_ap_weightless_oracle, avg),
            )
            for avg in ("macro", "weighted")
        ],
        MetricCase(
            "roc_curve",
            "drop_intermediate",
            ("binary",),
            lambda d: tm.roc_curve(d.y_true, d.y_score, pos_label=d.pos_label, **_kw(d)),
            lambda d: _sk().roc_curve(d.y_true, d.y_score, pos_label=d.pos_label, **_kw(d)),
        ),
        MetricCase(
            "roc_curve",
            "all_thresholds",
            ("binary",),
            lambda d: tm.roc_curve(
                d.y_true, d.y_score, pos_label=d.pos_label, drop_intermediate=False, **_kw(d)
            ),
            lambda d: _sk().roc_curve(
                d.y_true, d.y_score, pos_label=d.pos_label, drop_intermediate=False, **_kw(d)
            ),
        ),
        MetricCase(
            "precision_recall_curve",
            "",
            ("binary",),
            lambda d: tm.precision_recall_curve(
                d.y_true, d.y_score, pos_label=d.pos_label, **_kw(d)
            ),
            lambda d: _sk().precision_recall_curve(
                d.y_true, d.y_score, pos_label=d.pos_label, **_kw(d)
            ),
        ),
    ]
    for avg in ("macro", "weighted"):
        cases.append(
            MetricCase(
                "roc_auc_score",
                f"ovr_{avg}",
                ("multiclass",),
                partial(_ovr_ours, avg),
                partial(_ovr_oracle, avg),
            )
        )
        cases.append(
            MetricCase(
                "roc_auc_score",
                f"ovr_{avg}_absent_class",
                ("multiclass",),
                partial(_ovr_absent_ours, avg),
                partial(_ovr_absent_oracle, avg),
            )
        )
    return cases


def _calibration_oracle(d: MetricData, n_bins: int) -> float:
    from sklearn.calibration import calibration_curve

    y = d.y_true == d.pos_label
    pt, pp = calibration_curve(y, d.y_score, n_bins=n_bins)
    ids = np.searchsorted(np.linspace(0, 1, n_bins + 1)[1:-1], d.y_score)
    counts = np.bincount(ids, minlength=n_bins)
    counts = counts[counts > 0]
    return float((counts * np.abs(pt - pp)).sum() / counts.sum())


def _one_predicted_class(d: MetricData) -> MetricData:
    """Every prediction the first class: precision of the others divides by zero."""
    return replace(d, y_pred=np.full_like(d.y_pred, d.classes[0]))


def _last_class_weightless(d: MetricData) -> MetricData:
    """The last class's samples get weight 0 (unweighted data: all others weight 1)."""
    w = np.ones(len(d.y_true)) if d.sample_weight is None else d.sample_weight.copy()
    w[d.y_true == d.classes[-1]] = 0.0
    return replace(d, sample_weight=w)


def _no_positives(d: MetricData) -> MetricData:
    """Binary data whose labels are all the negative class."""
    return replace(d, y_true=np.full_like(d.y_true, d.classes[0]))


def _classification_metrics_ours(d: MetricData) -> dict[str, float]:
    return tm.classification_metrics(d.y_true, d.y_pred, d.y_score, sample_weight=d.sample_weight)


def _classification_metrics_oracle(d: MetricData) -> dict[str, float]:
    """scikit-learn's default arguments for every key (``zero_division="warn"``)."""
    skm = _sk()
    kw = _kw(d)
    out: dict[str, float] = {"accuracy": skm.accuracy_score(d.y_true, d.y_pred, **kw)}
    out["error_rate"] = 1.0 - out["accuracy"]
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(d.y_true, d.y_pred, average=avg, **kw)
        out[f"precision_{avg}"], out[f"recall_{avg}"], out[f"f1_{avg}"] = p, r, f
    if d.task == "binary":
        p, r, f, _ = skm.precision_recall_fscore_support(
            d.y_true, d.y_pred, average="binary", pos_label=d.pos_label, **kw
        )
        out["precision"], out["recall"], out["f1"] = p, r, f
        out["roc_auc"] = skm.roc_auc_score(d.y_true, d.y_score, **kw)
        out["pr_auc"] = skm.average_precision_score(
            d.y_true, d.y_score, pos_label=d.pos_label, **kw
        )
        out["log_loss"] = skm.log_loss(d.y_true, d.y_score, **kw)
        out["brier"] = skm.brier_score_loss(d.y_true, d.y_score, pos_label=d.pos_label, **kw)
    else:
        out["precision"], out["recall"], out["f1"] = (
            out["precision_macro"],
            out["recall_macro"],
            out["f1_macro"],
        )
        out["roc_auc"] = skm.roc_auc_score(d.y_true, d.y_score, multi_class="ovr", **kw)
        out["roc_auc_weighted"] = skm.roc_auc_score(
            d.y_true, d.y_score, multi_class="ovr", average="weighted", **kw
        )
        out["pr_auc"] = skm.average_precision_score(d.y_true, d.y_score, **kw)
        out["log_loss"] = skm.log_loss(d.y_true, d.y_score, **kw)
        out["brier"] = skm.brier_score_loss(d.y_true, d.y_score, labels=d.classes, **kw)
    return out


def _regression_case(name: str) -> MetricCase:
    return MetricCase(
        name,
        "",
        ("regression",),
        lambda d: getattr(tm, name)(d.y_true, d.y_pred, **_kw(d)),
        lambda d: getattr(_sk(), name)(d.y_true, d.y_pred, **_kw(d)),
    )


def _build() -> list[MetricCase]:
    both: tuple[Task, ...] = ("binary", "multiclass")
    cases = [
        MetricCase(
            "accuracy_score",
            "",
            both,
            lambda d: tm.accuracy_score(d.y_true, d.y_pred, **_kw(d)),
            lambda d: _sk().accuracy_score(d.y_true, d.y_pred, **_kw(d)),
        ),
        MetricCase(
            "error_rate",
            "",
            both,
            lambda d: tm.error_rate(d.y_true, d.y_pred, **_kw(d)),
            lambda d: 1.0 - _sk().accuracy_score(d.y_true, d.y_pred, **_kw(d)),
        ),
        MetricCase(
            "confusion_matrix",
            "",
            both,
            lambda d: tm.confusion_matrix(d.y_true, d.y_pred, **_kw(d)),
            lambda d: _sk().confusion_matrix(d.y_true, d.y_pred, **_kw(d)),
        ),
        *_prf_cases(),
        *_ranking_cases(),
        MetricCase(
            "log_loss",
            "",
            both,
            lambda d: tm.log_loss(d.y_true, d.y_score, **_kw(d)),
            lambda d: _sk().log_loss(d.y_true, d.y_score, **_kw(d)),
        ),
        MetricCase(
            "log_loss",
            "labels_1d",
            ("binary",),
            lambda d: tm.log_loss(d.y_true, d.y_score, labels=d.classes, **_kw(d)),
            lambda d: _sk().log_loss(d.y_true, d.y_score, labels=d.classes, **_kw(d)),
        ),
        MetricCase(
            # deliberate difference: scikit-learn ignores `labels` for 1-D scores; ours
            # makes the larger label positive, i.e. scikit-learn's pos_label=max(labels)
            "brier_score_loss",
            "labels_1d",
            ("binary",),
            lambda d: tm.brier_score_loss(d.y_true, d.y_score, labels=d.classes, **_kw(d)),
            lambda d: _sk().brier_score_loss(
                d.y_true, d.y_score, pos_label=d.classes[-1], **_kw(d)
            ),
        ),
        MetricCase(
            "brier_score_loss",
            "",
            both,
            lambda d: tm.brier_score_loss(d.y_true, d.y_score, pos_label=d.pos_label, **_kw(d)),
            lambda d: _sk().brier_score_loss(
                d.y_true,
                d.y_score,
                pos_label=d.pos_label,
                labels=None if d.task == "binary" else d.classes,
                **_kw(d),
            ),
        ),
        *[
            MetricCase(
                "calibration_curve",
                f"bins{nb}",
                ("binary",),
                partial(_calibration_ours, nb),
                partial(_calibration_curve_oracle, nb),
                weighted=False,
            )
            for nb in (5, 10)
        ],
        MetricCase(
            "expected_calibration_error",
            "",
            ("binary",),
            lambda d: tm.expected_calibration_error(d.y_true, d.y_score, pos_label=d.pos_label),
            lambda d: _calibration_oracle(d, 10),
            weighted=False,
        ),
        MetricCase(
            "classification_metrics",
            "",
            both,
            _classification_metrics_ours,
            _classification_metrics_oracle,
        ),
        MetricCase(
            "classification_metrics",
            "zero_division",
            both,
            lambda d: _classification_metrics_ours(_one_predicted_class(d)),
            lambda d: _classification_metrics_oracle(_one_predicted_class(d)),
        ),
        MetricCase(
            "classification_metrics",
            "weightless_class",
            ("multiclass",),
            lambda d: _classification_metrics_ours(_last_class_weightless(d)),
            lambda d: _classification_metrics_oracle(_last_class_weightless(d)),
        ),
        *[
            _regression_case(name)
            for name in (
                "mean_absolute_error",
                "mean_squared_error",
                "root_mean_squared_error",
                "r2_score",
                "mean_absolute_percentage_error",
            )
        ],
    ]
    return cases


def _calibration_curve_oracle(n_bins: int, d: MetricData) -> tuple[Any, Any]:
    from sklearn.calibration import calibration_curve

    pt, pp = calibration_curve(d.y_true, d.y_score, pos_label=d.pos_label, n_bins=n_bins)
    return pt, pp


#: Every metric case; tests are parametrised over it.
METRIC_CASES: list[MetricCase] = _build()


def public_metric_functions() -> set[str]:
    """Public non-class callables of :mod:`tunelens.metrics` that need an oracle."""
    names = set()
    for name in tm.__all__:
        obj = getattr(tm, name)
        if callable(obj) and not isinstance(obj, type) and name not in NOT_METRICS:
            names.add(name)
    return names


def registered_names() -> set[str]:
    """Names covered by :data:`METRIC_CASES`."""
    return {c.name for c in METRIC_CASES}


def check_case(case: MetricCase, data: MetricData) -> None:
    """Run one case on one data set and compare with its oracle."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = case.oracle(data)
    ours = case.ours(data)
    if isinstance(expected, float) and math.isnan(expected):
        assert isinstance(ours, float) and math.isnan(ours), f"{case.id}: {ours} != NaN"
        return
    assert_same(ours, expected, what=case.id)
