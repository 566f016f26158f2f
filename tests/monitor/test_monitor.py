"""Monitor: logging, validation, task inference, windowed metrics against scikit-learn."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn import metrics as skm

from tunelens.errors import InputError
from tunelens.monitor import Monitor
from tunelens.store import Store

DAY0 = datetime(2026, 3, 1, tzinfo=UTC)


def _times(rng: np.random.Generator, n: int, hours: int) -> np.ndarray:
    micros = np.sort(rng.integers(0, hours * 3_600_000_000, n))
    return np.datetime64("2026-03-01T00:00:00", "us") + micros.astype("timedelta64[us]")


def _window_of(ts: np.ndarray) -> np.ndarray:
    return ts.astype("datetime64[h]")


def test_binary_windows_match_sklearn(store: Store) -> None:
    rng = np.random.default_rng(0)
    n = 3000
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1)
    pred = (p > 0.5).astype(int)
    lat = rng.lognormal(1.0, 0.5, n)
    ts = _times(rng, n, 3)
    labelled = rng.random(n) < 0.7
    mon = Monitor("bin", store, resources=False, flops_per_prediction=1e9)
    assert mon.log(np.arange(n), rng.random((n, 4)), pred, p, lat, ts, batch_size=1) == n
    assert mon.record is not None and mon.record.task == "binary"
    assert mon.record.classes == (0, 1)
    assert mon.log_labels(np.flatnonzero(labelled), y[labelled]) == (labelled.sum(),) * 2
    table = mon.metrics("1h")
    assert table.index.name == "window_start"
    assert list(table.index) == [pd.Timestamp(DAY0 + timedelta(hours=h)) for h in range(3)]
    for h, (start, row) in enumerate(table.iterrows()):
        sel = _window_of(ts) == np.datetime64(f"2026-03-01T{h:02d}", "h")
        lab = sel & labelled
        assert row["rows"] == sel.sum() and row["labelled_rows"] == lab.sum()
        yt, yp, ps = y[lab], pred[lab], p[lab]
        assert row["accuracy"] == pytest.approx(skm.accuracy_score(yt, yp), abs=1e-12)
        assert row["error_rate"] == pytest.approx(1 - skm.accuracy_score(yt, yp), abs=1e-12)
        assert row["precision"] == pytest.approx(skm.precision_score(yt, yp), abs=1e-12)
        assert row["recall"] == pytest.approx(skm.recall_score(yt, yp), abs=1e-12)
        assert row["f1"] == pytest.approx(skm.f1_score(yt, yp), abs=1e-12)
        assert row["log_loss"] == pytest.approx(skm.log_loss(yt, ps, labels=[0, 1]), rel=1e-9)
        assert row["brier"] == pytest.approx(skm.brier_score_loss(yt, ps), rel=1e-9)
        assert row["roc_auc"] == pytest.approx(skm.roc_auc_score(yt, ps), abs=2e-3)
        assert row["pr_auc"] == pytest.approx(skm.average_precision_score(yt, ps), abs=2e-2)
        for q, col in ((0.5, "latency_p50"), (0.9, "latency_p90"), (0.99, "latency_p99")):
            want = np.quantile(lat[sel], q, method="inverted_cdf")
            assert row[col] == pytest.approx(want, rel=0.0101)
        assert row["latency_mean"] == pytest.approx(lat[sel].mean(), rel=1e-12)
        assert row["throughput"] == pytest.approx(sel.sum() / 3600)
        busy = lat[sel].sum() / 1000
        assert row["flops_per_s"] == pytest.approx(1e9 * sel.sum() / busy, rel=1e-9)
        assert np.isnan(row["gpu_util_percent"]) and np.isnan(row["cpu_percent"])
        assert start.tzinfo is not None


def test_ece_matches_a_direct_binning(store: Store) -> None:
    rng = np.random.default_rng(5)
    n = 2000
    p = rng.random(n)
    y = (rng.random(n) < p**2).astype(int)
    mon = Monitor("cal", store, resources=False)
    mon.log(np.arange(n), None, (p > 0.5).astype(int), p, timestamps=DAY0)
    mon.log_labels(np.arange(n), y)
    row = mon.metrics("1d").iloc[0]
    bins = np.minimum((p * 10).astype(int), 9)
    ece = sum(
        abs(p[bins == b].mean() - y[bins == b].mean()) * (bins == b).sum() / n
        for b in range(10)
        if (bins == b).any()
    )
    assert row["ece"] == pytest.approx(ece, abs=1e-9)


def test_multiclass_string_classes_match_sklearn(store: Store) -> None:
    rng = np.random.default_rng(1)
    n, k = 2000, 3
    names = np.array(["cat", "ant", "bee"])
    y = rng.integers(0, k, n)
    raw = rng.random((n, k)) + 1.5 * np.eye(k)[y]
    proba = raw / raw.sum(axis=1, keepdims=True)
    # sorted classes are (ant, bee, cat): reorder the columns to that order
    order = np.argsort(names)
    pred_idx = proba.argmax(axis=1)
    mon = Monitor("multi", store, resources=False, classes=sorted(names.tolist()))
    sorted_names = np.array(sorted(names))
    inverse = np.argsort(order)
    y_sorted, pred_sorted = inverse[y], inverse[pred_idx]
    proba_sorted = proba[:, order]
    ts = _times(rng, n, 2)
    mon.log([f"id{i}" for i in range(n)], None, sorted_names[pred_sorted], proba_sorted, 2.0, ts)
    mon.log_labels(pd.Series([f"id{i}" for i in range(n)]), sorted_names[y_sorted])
    assert mon.record is not None and mon.record.task == "multiclass"
    assert mon.record.classes == ("ant", "bee", "cat")
    table = mon.metrics("1h")
    assert len(table) == 2
    for h in range(2):
        sel = _window_of(ts) == np.datetime64(f"2026-03-01T{h:02d}", "h")
        row = table.iloc[h]
        yt, yp = y_sorted[sel], pred_sorted[sel]
        assert row["accuracy"] == pytest.approx(skm.accuracy_score(yt, yp), abs=1e-12)
        for avg in ("macro", "micro", "weighted"):
            assert row[f"f1_{avg}"] == pytest.approx(skm.f1_score(yt, yp, average=avg), abs=1e-12)
            want = skm.precision_score(yt, yp, average=avg)
            assert row[f"precision_{avg}"] == pytest.approx(want, abs=1e-12)
        assert row["f1"] == pytest.approx(skm.f1_score(yt, yp, average="macro"), abs=1e-12)
        assert row["log_loss"] == pytest.approx(skm.log_loss(yt, proba_sorted[sel]), rel=1e-9)
        want_auc = skm.roc_auc_score(yt, proba_sorted[sel], multi_class="ovr")
        assert row["roc_auc"] == pytest.approx(want_auc, abs=5e-3)
        assert row["latency_p50"] == pytest.approx(2.0, rel=0.0101)


def test_regression_windows_match_sklearn(store: Store) -> None:
    rng = np.random.default_rng(2)
    n = 1500
    truth = rng.normal(10, 2, n)
    pred = truth + rng.normal(0, 1, n)
    ts = _times(rng, n, 2)
    mon = Monitor("reg", store, resources=False)
    mon.log(pa.array(np.arange(n)), pd.DataFrame({"a": rng.random(n)}), pred, timestamps=ts)
    assert mon.record is not None and mon.record.task == "regression"
    mon.log_labels(np.arange(n), truth)
    table = mon.metrics("1h")
    for h in range(2):
        sel = _window_of(ts) == np.datetime64(f"2026-03-01T{h:02d}", "h")
        row = table.iloc[h]
        assert row["mae"] == pytest.approx(skm.mean_absolute_error(truth[sel], pred[sel]))
        assert row["rmse"] == pytest.approx(skm.root_mean_squared_error(truth[sel], pred[sel]))
        assert row["r2"] == pytest.approx(skm.r2_score(truth[sel], pred[sel]))
        want = skm.mean_absolute_percentage_error(truth[sel], pred[sel])
        assert row["mape"] == pytest.approx(want)
        assert np.isnan(row["latency_p50"])
    assert "accuracy" not in table.columns


def test_windows_without_labels_are_nan_and_quiet(store: Store) -> None:
    mon = Monitor("quiet", store, resources=False)
    mon.log([1, 2], None, [0, 1], [0.2, 0.7], timestamps=[DAY0, DAY0 + timedelta(hours=1)])
    mon.log_labels([1], [0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = mon.metrics("1h")
    assert table["labelled_rows"].tolist() == [1, 0]
    assert table.iloc[0]["accuracy"] == 1.0
    assert table.iloc[1][["accuracy", "roc_auc", "log_loss", "ece"]].isna().all()
    assert np.isnan(table.iloc[0]["roc_auc"])  # one class only: undefined, no warning


def test_since_until_and_window_forms(store: Store) -> None:
    mon = Monitor("range", store, resources=False)
    stamps = [DAY0 + timedelta(minutes=m) for m in range(0, 180, 10)]
    mon.log(range(len(stamps)), None, [0, 1] * 9, timestamps=stamps)
    assert len(mon.metrics("1H")) == 3
    assert len(mon.metrics("15m")) == 12
    assert mon.metrics("1d")["rows"].tolist() == [18]
    part = mon.metrics("1h", since=DAY0 + timedelta(minutes=30), until="2026-03-01T02:00")
    assert part["rows"].tolist() == [3, 6]
    with pytest.raises(InputError, match=r"window: .*accepted|window: .*use one of"):
        mon.metrics("fortnight")
    empty = Monitor("nothing", store, resources=False).metrics("1h")
    assert len(empty) == 0 and "rows" in empty.columns


def _count(store: Store, model: str) -> int:
    return store.count(model)[0] if store.get_model(model) is not None else 0


@pytest.mark.parametrize(
    ("kwargs", "field", "where"),
    [
        ({"ids": [1, 2]}, "ids", "has 2 rows"),
        ({"ids": [1, None, 3]}, "ids", "at index 1"),
        ({"ids": [1, 2, 1]}, "ids", "id '1' at index 2 repeats"),
        ({"scores": [0.1, 1.5, 0.2]}, "scores", "at index 1"),
        ({"scores": [[0.5, 0.5], [0.6, 0.6], [0.5, 0.5]]}, "scores", "at index 1 sums to 1.2"),
        ({"predictions": [0.0, np.nan, 1.0]}, "predictions", "at index 1"),
        ({"features": {"a": [1.0, 2.0]}}, "features['a']", "has 2 rows"),
        ({"latency_ms": [1.0, -2.0, 1.0]}, "latency_ms", "at index 1"),
        ({"timestamps": ["2026-01-01", None, "2026-01-01"]}, "timestamps", "at index 1"),
    ],
)
def test_bad_batches_name_the_argument_and_write_nothing(
    store: Store, kwargs: dict[str, Any], field: str, where: str
) -> None:
    mon = Monitor("bad", store, resources=False, task="binary", classes=[0, 1])
    mon.log([100], None, [1], [0.9])
    call: dict[str, Any] = {"ids": [1, 2, 3], "features": None, "predictions": [0, 1, 1]}
    call["scores"] = [0.1, 0.8, 0.7]
    call.update(kwargs)
    with pytest.raises(InputError) as info:
        mon.log(**call)
    assert info.value.field == field
    assert where in str(info.value)
    assert _count(store, "bad") == 1


def test_nan_regression_predictions_are_refused(store: Store) -> None:
    mon = Monitor("nanreg", store, resources=False, task="regression")
    with pytest.raises(InputError, match=r"predictions: nan at index 2"):
        mon.log([1, 2, 3], None, [1.0, 2.0, np.nan])
    assert store.count("nanreg") == (0, 0)


@pytest.mark.parametrize(
    ("predictions", "scores", "task", "classes"),
    [
        ([0, 1, 1], [0.2, 0.8, 0.6], "binary", (0, 1)),
        ([1, 1, 1], [0.7, 0.8, 0.6], "binary", (0, 1)),
        ([0, 1, 1], [[0.8, 0.2], [0.1, 0.9], [0.3, 0.7]], "binary", (0, 1)),
        ([0, 2, 1], None, "multiclass", (0, 1, 2)),
        ([0, 1, 0], [[0.7, 0.2, 0.1]] * 3, "multiclass", (0, 1, 2)),
        (["no", "yes", "no"], None, "binary", ("no", "yes")),
        ([True, False, True], None, "binary", (False, True)),
        ([0.5, 1.5, 2.5], None, "regression", ()),
        ([1, 0, 1], None, "binary", (0, 1)),
    ],
)
def test_task_and_classes_are_inferred(
    store: Store, predictions: list[Any], scores: Any, task: str, classes: tuple[Any, ...]
) -> None:
    mon = Monitor("infer", store, resources=False)
    assert mon.record is None
    mon.log([1, 2, 3], None, predictions, scores)
    assert mon.record is not None
    assert (mon.record.task, mon.record.classes) == (task, classes)
    stored = store.get_model("infer")
    assert stored is not None and stored.task == task


def test_binary_positive_class_is_the_larger_label(store: Store) -> None:
    mon = Monitor("spam", store, resources=False)
    mon.log(["a", "b", "c", "d"], None, ["spam", "ham", "spam", "ham"], [0.9, 0.2, 0.6, 0.4])
    mon.log_labels(["a", "b", "c", "d"], ["spam", "ham", "ham", "ham"])
    row = mon.metrics("1d").iloc[0]
    assert mon.record is not None and mon.record.classes == ("ham", "spam")
    assert row["precision"] == 0.5 and row["recall"] == 1.0  # of "spam"
    scan = store.scan("spam", columns=["id", "prediction", "score"])
    assert scan.column("prediction").to_pylist() == [1, 0, 1, 0]


def test_one_string_class_with_scores_asks_for_classes(store: Store) -> None:
    mon = Monitor("one", store, resources=False)
    with pytest.raises(InputError, match="classes"):
        mon.log([1], None, ["spam"], [0.9])


def test_new_classes_extend_the_record(store: Store) -> None:
    mon = Monitor("grow", store, resources=False)
    mon.log([1, 2, 3], None, ["b", "a", "c"])
    assert mon.record is not None and mon.record.classes == ("a", "b", "c")
    mon.log([4, 5], None, ["d", "a"])
    assert mon.record.classes == ("a", "b", "c", "d")
    assert mon.log_labels([1, 2, 3, 9], ["b", "e", "a", "a"]) == (4, 3)
    assert mon.record.classes == ("a", "b", "c", "d", "e")
    assert store.get_model("grow").classes == ("a", "b", "c", "d", "e")  # type: ignore[union-attr]
    table = store.scan("grow", columns=["id", "prediction"])
    assert dict(zip(table["id"].to_pylist(), table["label"].to_pylist(), strict=True)) == {
        "1": 1,
        "2": 4,
        "3": 0,
        "4": None,
        "5": None,
    }
    with pytest.raises(InputError, match="binary"):
        b = Monitor("bin3", store, resources=False, task="binary")
        b.log([1, 2, 3], None, [0, 1, 2])


def test_existing_record_wins_and_conflicts_are_refused(store_path: str) -> None:
    with Monitor("keep", store_path, resources=False, classes=["x", "y"]) as mon:
        mon.log([1, 2], {"f": [1.0, 2.0]}, ["x", "y"], [0.3, 0.6])
    with Monitor("keep", store_path, resources=False) as again:
        assert again.record is not None and again.record.classes == ("x", "y")
        again.log([3], {"f": [3]}, ["y"], [0.9])  # int feature cast to the stored float
        assert again.store.count("keep") == (3, 0)
    with pytest.raises(InputError, match="task"):
        Monitor("keep", store_path, resources=False, task="regression")


def test_labels_before_any_prediction_need_a_task(store: Store) -> None:
    with pytest.raises(InputError, match="labels"):
        Monitor("early", store, resources=False).log_labels([1], [0])
    mon = Monitor("early2", store, resources=False, task="binary", classes=[0, 1])
    assert mon.log_labels([1], [1]) == (1, 0)
    mon.log([1], None, [1], [0.8])
    assert store.scan("early2")["label"].to_pylist() == [1]


def test_merged_hourly_states_equal_one_daily_pass(store: Store) -> None:
    rng = np.random.default_rng(3)
    n = 5000
    y = rng.integers(0, 2, n)
    p = np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1)
    ts = _times(rng, n, 24)
    mon = Monitor("merge", store, resources=False, flops_per_prediction=2e6)
    mon.log(np.arange(n), None, (p > 0.5).astype(int), p, rng.gamma(2.0, 3.0, n), ts)
    mon.log_labels(np.arange(0, n, 2), y[::2])
    hourly = mon.metrics("1h")
    assert len(hourly) == 24
    stored = store.get_window_states("merge", 3600)
    assert len(stored) == 24
    assert stored[3].values["rows"] == hourly["rows"].iloc[3]
    assert len(json.dumps(stored[3].states)) < 20_000  # histograms are stored deflated
    merged = mon.summary(DAY0, DAY0 + timedelta(days=1), window="1h")
    again = mon.merged(stored)
    daily = mon.metrics("1d").iloc[0]
    assert set(merged) == set(daily.index)
    for key, value in daily.items():
        assert merged[key] == pytest.approx(value, rel=1e-9, nan_ok=True), key
        assert again[key] == pytest.approx(value, rel=1e-9, nan_ok=True), key
    assert merged["rows"] == n and merged["labelled_rows"] == len(y[::2])


def test_partial_and_open_windows_are_not_stored(store: Store) -> None:
    mon = Monitor("open", store, resources=False)
    now = datetime.now(UTC)
    mon.log([1, 2], None, [0, 1], timestamps=[DAY0 + timedelta(minutes=5), now])
    mon.metrics("1h", since=DAY0 + timedelta(minutes=1))
    assert store.get_window_states("open", 3600) == []  # first partial, last still open
    mon.metrics("1h")
    starts = [w.start for w in store.get_window_states("open", 3600)]
    assert starts == [DAY0]


def test_metrics_of_the_doc_example_are_exact(store: Store) -> None:
    mon = Monitor("doc", store, resources=False)
    mon.log([1, 2, 3], {"age": [31, 45, 27]}, [0, 1, 1], scores=[0.2, 0.9, 0.6], latency_ms=4.0)
    mon.log_labels([1, 2, 3], [0, 1, 0])
    row = mon.metrics("1h").iloc[-1]
    assert row["accuracy"] == pytest.approx(2 / 3)
    assert row["latency_p50"] == pytest.approx(4.0, rel=0.0101)


def test_closed_monitor_refuses_work(store_path: str) -> None:
    mon = Monitor("closed", store_path, resources=False)
    mon.close()
    mon.close()
    with pytest.raises(InputError, match="monitor: is closed"):
        mon.log([1], None, [1])
