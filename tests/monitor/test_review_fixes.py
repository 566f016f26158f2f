"""Regression tests of review fixes: class growth, merges across class counts, typed
labels, int features with NaN, score column counts, numeric timestamps, wording."""

from __future__ import annotations

import base64
import json
import warnings
import zlib
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression

from tunelens.errors import InputError
from tunelens.metrics import MulticlassRankingState
from tunelens.monitor import Monitor
from tunelens.monitor._inputs import coerce_features, coerce_timestamps, map_to_classes
from tunelens.monitor._states import WindowAccumulator, metric_columns
from tunelens.store import Store

DAY0 = datetime(2026, 3, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
COUNT_BASED = [
    "rows",
    "labelled_rows",
    "accuracy",
    "error_rate",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_micro",
    "f1_weighted",
    "recall_weighted",
]


def _proba(rng: np.random.Generator, y: np.ndarray, k: int) -> np.ndarray:
    logits = rng.normal(size=(len(y), k))
    logits[np.arange(len(y)), np.minimum(y, k - 1)] += 1.5
    p: np.ndarray = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    return p


def _log_hour(
    mon: Monitor, rng: np.random.Generator, hour: int, n: int, first_id: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log n 3-class predictions (3 score columns) in one hour; label them all."""
    ids = np.arange(first_id, first_id + n)
    y = rng.integers(0, 3, n)
    p = _proba(rng, y, 3)
    ts = [DAY0 + hour * HOUR + timedelta(seconds=int(s)) for s in rng.integers(0, 3600, n)]
    mon.log(ids, None, p.argmax(axis=1), scores=p, latency_ms=1.0, timestamps=ts)
    mon.log_labels(ids, y)
    return ids, y, p


# ---------------------------------------------------------------- fix 1: class growth


def test_unseen_label_class_keeps_probabilistic_metrics_and_3_column_scores(
    store: Store,
) -> None:
    rng = np.random.default_rng(1)
    mon = Monitor("grow", store, resources=False)
    ids0, y0, p0 = _log_hour(mon, rng, 0, 200, 0)
    y0[0] = 3
    mon.log_labels([int(ids0[0])], [3])  # a class the model does not know
    assert mon.record is not None and mon.record.classes == (0, 1, 2, 3)
    # predict_proba of the 3-class model still fits: padded with P(class 3) = 0.
    _, y1, p1 = _log_hour(mon, rng, 1, 200, 1000)
    table = mon.metrics("1h")
    assert len(table) == 2
    for row, y, p in ((table.iloc[0], y0, p0), (table.iloc[1], y1, p1)):
        padded = np.column_stack([p, np.zeros(len(p))])
        assert row["accuracy"] == pytest.approx(np.mean(p.argmax(axis=1) == y))
        assert row["log_loss"] == pytest.approx(
            skm.log_loss(y, padded, labels=[0, 1, 2, 3]), rel=1e-9
        )
        assert row["brier"] == pytest.approx(np.mean(((padded - np.eye(4)[y]) ** 2).sum(axis=1)))
        assert np.isfinite(row["roc_auc"]) and np.isfinite(row["ece"])
    stored = store.scan("grow", columns=["score_0", "score_3"]).to_pydict()
    assert stored["score_3"][:200].count(None) == 200  # rows logged before the growth
    assert set(stored["score_3"][200:]) == {0.0}  # padded


def test_wrap_seeds_string_classes_from_a_sklearn_estimator(store: Store) -> None:
    rng = np.random.default_rng(2)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    y = np.repeat(np.array(["ant", "bee", "cat"]), 50)
    X = centres[np.repeat(np.arange(3), 50)] + rng.normal(scale=0.5, size=(150, 2))
    model = LogisticRegression().fit(X, y)
    mon = Monitor("strings", store, resources=False)
    predict = mon.wrap(model.predict, proba_fn=model.predict_proba, flush_s=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = predict(X[:5])  # every prediction is "ant": it alone would not fit 3 columns
        assert set(out.tolist()) == {"ant"}
        predict(X[50:55])
    assert predict.logged == 2
    assert mon.record is not None
    assert mon.record.task == "multiclass" and mon.record.classes == ("ant", "bee", "cat")
    scores = store.scan("strings", columns=["score_1"]).column("score_1").to_numpy()
    np.testing.assert_allclose(scores[5:], model.predict_proba(X[50:55])[:, 1])


# ---------------------------------------------------------------- fix 2: merge across K


def test_summary_merges_windows_of_different_class_counts(store: Store) -> None:
    rng = np.random.default_rng(3)
    mon = Monitor("mixed", store, resources=False)
    _log_hour(mon, rng, 0, 300, 0)
    _log_hour(mon, rng, 1, 300, 1000)
    mon.metrics("1h")  # windows 0 and 1 stored with 3 classes
    ids2, _, _ = _log_hour(mon, rng, 2, 300, 2000)
    mon.log_labels(ids2[:5], [3, 3, 3, 3, 3])  # grows to 4 classes
    mon.metrics("1h", since=DAY0 + 2 * HOUR, until=DAY0 + 3 * HOUR)
    states = store.get_window_states("mixed", 3600)
    assert [s.states["n_classes"] for s in states] == [3, 3, 4]
    merged = mon.summary(DAY0, DAY0 + 3 * HOUR)
    one_pass = mon.metrics("1d").iloc[0]
    for name in COUNT_BASED:
        assert merged[name] == pytest.approx(one_pass[name], rel=1e-12), name
    for name in ("log_loss", "brier", "ece", "roc_auc", "roc_auc_weighted", "pr_auc"):
        assert merged[name] == pytest.approx(one_pass[name], rel=1e-9), name


# ---------------------------------------------------------------- fix 3: roc_auc_weighted


def test_multiclass_columns_include_weighted_roc_auc(store: Store) -> None:
    assert metric_columns("multiclass")[-17:-11] == [
        "roc_auc",
        "roc_auc_weighted",
        "pr_auc",
        "log_loss",
        "brier",
        "ece",
    ]
    assert "roc_auc_weighted" not in metric_columns("binary")
    rng = np.random.default_rng(4)
    mon = Monitor("weighted", store, resources=False)
    y = rng.choice(3, size=2000, p=[0.6, 0.3, 0.1])
    p = _proba(rng, y, 3)
    mon.log(np.arange(2000), None, p.argmax(axis=1), scores=p, timestamps=DAY0)
    mon.log_labels(np.arange(2000), y)
    row = mon.metrics("1h").iloc[0]
    want = skm.roc_auc_score(y, p, multi_class="ovr", average="weighted")
    assert row["roc_auc_weighted"] == pytest.approx(want, abs=5e-3)
    assert row["roc_auc_weighted"] != pytest.approx(row["roc_auc"], abs=1e-6)


# ---------------------------------------------------------------- fix 4: typed labels


def test_labels_of_another_type_than_the_classes_name_value_and_classes(store: Store) -> None:
    mon = Monitor("typed", store, resources=False)
    mon.log([1, 2], None, [0, 1], scores=[0.2, 0.7])
    with pytest.raises(InputError) as info:
        mon.log_labels([1], ["maybe"])
    assert info.value.field == "labels"
    assert "'maybe' (str) at index 0 is not of the model's class type int" in str(info.value)
    assert "classes are [0, 1]" in str(info.value)
    with pytest.raises(InputError, match=r"predictions: 'maybe' \(str\) at index 0 .* int"):
        mon.log([3], None, ["maybe"])
    with pytest.raises(InputError, match=r"labels: 0\.5 \(float\) at index 1 .*type int"):
        mon.log_labels([1, 2], [1.0, 0.5])
    assert mon.log_labels([1, 2], [1.0, 0.0]) == (2, 2)  # whole floats are fine
    assert store.count("typed") == (2, 2)
    with pytest.raises(InputError, match=r"labels: 1 \(int\) at index 0 .*type str"):
        map_to_classes(pa.array([1, 0]), ("a", "b"), "labels")
    # digit strings of known int classes (and back) still map, but make no new class
    assert map_to_classes(pa.array(["1", "0"]), (0, 1), "labels")[0].tolist() == [1, 0]
    assert map_to_classes(pa.array([1, 0]), ("0", "1"), "labels")[0].tolist() == [1, 0]
    with pytest.raises(InputError, match=r"labels: '2' \(str\) at index 1 .*type int"):
        map_to_classes(pa.array(["1", "2"]), (0, 1), "labels")
    with pytest.raises(InputError, match=r"labels: 'maybe' \(str\) at index 1 "):
        map_to_classes(pa.array(["1", "maybe"]), (0, 1), "labels")


# ---------------------------------------------------------------- fix 5: int features


def test_int_feature_accepts_nan_and_whole_floats(store: Store) -> None:
    mon = Monitor("ages", store, resources=False)
    mon.log([1, 2], pd.DataFrame({"age": [30, 40]}), [0, 1])
    mon.log([3, 4], pd.DataFrame({"age": [np.nan, 41]}), [0, 1])
    mon.log([5], {"age": [42.0]}, [1])
    assert mon.record is not None and mon.record.features == {"age": "int"}
    assert store.scan("ages", columns=["f:age"]).column("f:age").to_pylist() == [
        30,
        40,
        None,
        41,
        42,
    ]
    with pytest.raises(InputError) as info:
        mon.log([6, 7], pd.DataFrame({"age": [43.0, 43.5]}), [0, 1])
    assert info.value.field == "features['age']"
    assert "43.5 at index 1 is not a whole number" in str(info.value)
    columns, _ = coerce_features({"n": [1.0, None]}, 2, {"n": "int"})
    assert columns["n"].type == pa.int64() and columns["n"].to_pylist() == [1, None]


def test_wrap_keeps_logging_features_after_one_mismatching_batch(store: Store) -> None:
    mon = Monitor("schema", store, resources=False)
    predict = mon.wrap(lambda X: (X["age"].to_numpy() > 35).astype(int), flush_s=0)
    predict(pd.DataFrame({"age": [30, 40]}))
    with pytest.warns(RuntimeWarning, match="features not logged for this call"):
        predict(pd.DataFrame({"age": [30.5, 40.0]}))
    predict(pd.DataFrame({"age": [50, 20]}))
    assert predict.logged == 3
    ages = store.scan("schema", columns=["f:age"]).column("f:age").to_pylist()
    assert ages == [30, 40, None, None, 50, 20]
    cube = mon.wrap(lambda X: np.zeros(len(X), dtype=int), flush_s=0)
    with pytest.warns(RuntimeWarning, match="not tabular"):
        cube(np.zeros((2, 2, 2)))
    assert cube._features_ok is False


# ---------------------------------------------------------------- fix 6: score columns


def test_too_few_or_too_many_score_columns_name_the_expected_count(store: Store) -> None:
    mon = Monitor("cols", store, resources=False, task="multiclass", classes=[0, 1, 2])
    with pytest.raises(InputError) as info:
        mon.log([1], None, [0], scores=[[0.3, 0.12]])
    message = str(info.value)
    assert message.startswith("scores: the row at index 0 sums to 0.42, not 1")
    assert "2 columns given, the model has 3 classes [0, 1, 2]" in message
    assert "expected 3 columns" in message
    with pytest.raises(InputError, match=r"scores: has 4 columns but 3 classes are known"):
        mon.log([1], None, [0], scores=[[0.25, 0.25, 0.25, 0.25]])
    assert mon.log([1], None, [0], scores=[[0.6, 0.4]]) == 1  # the first 2 classes
    assert store.scan("cols", columns=["score_2"]).column("score_2").to_pylist() == [0.0]


# ---------------------------------------------------------------- fix 7: epoch numbers


def test_numeric_timestamps_are_epoch_seconds_and_milliseconds_are_refused() -> None:
    seconds = DAY0.timestamp()
    assert coerce_timestamps([seconds, seconds + 1], 2).to_pylist() == [
        DAY0,
        DAY0 + timedelta(seconds=1),
    ]
    assert coerce_timestamps(int(seconds), 2).to_pylist() == [DAY0, DAY0]
    with pytest.raises(InputError) as info:
        coerce_timestamps(np.array([seconds, seconds * 1000]), 2)
    assert info.value.field == "timestamps"
    assert "at index 1 is not a time from 1970 to 2200 in epoch seconds" in str(info.value)
    assert "ISO-8601" in str(info.value)
    with pytest.raises(InputError, match="at index 0"):
        coerce_timestamps([-5, 1], 2)
    with pytest.raises(InputError, match="at index 0"):
        coerce_timestamps(seconds * 1e6, 2)


def test_millisecond_timestamps_write_nothing(store: Store) -> None:
    mon = Monitor("ms", store, resources=False, task="binary", classes=[0, 1])
    with pytest.raises(InputError, match="timestamps: "):
        mon.log([1, 2], None, [0, 1], timestamps=[1.77e12, 1.77e12])
    assert store.get_model("ms") is None or store.count("ms") == (0, 0)


# ---------------------------------------------------------------- fix 8: "at index N"


def test_monitor_errors_name_rows_as_at_index(store: Store) -> None:
    mon = Monitor("idx", store, resources=False, task="multiclass", classes=[0.0, 1.0, 2.0])
    with pytest.raises(InputError, match=r"^predictions: NaN at index 3; "):
        mon.log([1, 2, 3, 4], None, [0.0, 1.0, 2.0, np.nan])
    with pytest.raises(InputError, match=r"^labels: missing at index 1; "):
        mon.log_labels([1, 2], [1.0, None])
    with pytest.raises(InputError, match=r"^ids: no id at index 2; "):
        mon.log(["a", "b", None], None, [0.0, 1.0, 2.0])


# ---------------------------------------------------------------- fix 9: stale summary


def test_summary_follows_late_labels_and_rescans_only_changed_windows(store: Store) -> None:
    rng = np.random.default_rng(9)
    mon = Monitor("late", store, resources=False)
    for hour in range(4):
        _log_hour(mon, rng, hour, 200, 1000 * hour)
    mon.metrics("1h")  # stores the four closed windows with their marks
    scans: list[tuple[object, object]] = []
    scan = store.scan

    def counting_scan(model: str, **kwargs: object) -> pa.Table:
        scans.append((kwargs.get("since"), kwargs.get("until")))
        return scan(model, **kwargs)  # type: ignore[arg-type]

    store.scan = counting_scan  # type: ignore[method-assign]
    try:
        before = mon.summary(DAY0, DAY0 + 4 * HOUR)
        assert scans == []  # every stored state is current: nothing rescanned
        mon.log_labels(list(range(1000, 1100)), [2] * 100)  # late relabels in hour 1
        after = mon.summary(DAY0, DAY0 + 4 * HOUR)
        assert scans == [(DAY0 + HOUR, DAY0 + 2 * HOUR)]  # only the changed window
    finally:
        store.scan = scan  # type: ignore[method-assign]
    one_pass = mon.metrics("1d").iloc[0]
    assert after["accuracy"] != before["accuracy"]
    for name in COUNT_BASED:
        assert after[name] == pytest.approx(one_pass[name], rel=1e-12), name
    for name in ("log_loss", "brier", "ece", "roc_auc", "pr_auc"):
        assert after[name] == pytest.approx(one_pass[name], rel=1e-9), name
    # a range cut inside a window, and an open-ended one, equal one pass too
    cut = mon.summary(DAY0 + 30 * timedelta(minutes=1), DAY0 + 3 * HOUR)
    direct = mon.metrics("1d", since=DAY0 + 30 * timedelta(minutes=1), until=DAY0 + 3 * HOUR)
    assert cut["rows"] == direct["rows"].iloc[0]
    assert cut["accuracy"] == pytest.approx(direct["accuracy"].iloc[0], rel=1e-12)


def test_summary_rescans_separated_stale_windows_one_run_each(store: Store) -> None:
    rng = np.random.default_rng(10)
    mon = Monitor("runs", store, resources=False)
    for hour in range(5):
        _log_hour(mon, rng, hour, 100, 1000 * hour)
    mon.metrics("1h")  # stores the five closed windows with their marks
    mon.log_labels(list(range(1000, 1050)), [2] * 50)  # late relabels in hour 1
    mon.log_labels(list(range(3000, 3050)), [0] * 50)  # and in hour 3; hour 2 current
    scans: list[tuple[object, object]] = []
    scan, scan_resources = store.scan, store.scan_resources

    def counting_scan(model: str, **kwargs: object) -> pa.Table:
        scans.append((kwargs.get("since"), kwargs.get("until")))
        return scan(model, **kwargs)  # type: ignore[arg-type]

    resource_scans: list[tuple[object, object]] = []

    def counting_resources(model: str, **kwargs: object) -> pa.Table:
        resource_scans.append((kwargs.get("since"), kwargs.get("until")))
        return scan_resources(model, **kwargs)  # type: ignore[arg-type]

    store.scan = counting_scan  # type: ignore[method-assign]
    store.scan_resources = counting_resources  # type: ignore[method-assign]
    try:
        merged = mon.summary(DAY0, DAY0 + 5 * HOUR)
    finally:
        store.scan, store.scan_resources = scan, scan_resources  # type: ignore[method-assign]
    expected = [(DAY0 + HOUR, DAY0 + 2 * HOUR), (DAY0 + 3 * HOUR, DAY0 + 4 * HOUR)]
    assert scans == expected
    assert resource_scans == expected
    one_pass = mon.metrics("1d").iloc[0]
    for name in COUNT_BASED:
        assert merged[name] == pytest.approx(one_pass[name], rel=1e-12), name
    for name in ("log_loss", "brier", "ece", "roc_auc", "pr_auc"):
        assert merged[name] == pytest.approx(one_pass[name], rel=1e-9), name
    # the rescanned windows were stored again: a second summary scans nothing
    scans.clear()
    store.scan = counting_scan  # type: ignore[method-assign]
    try:
        assert mon.summary(DAY0, DAY0 + 5 * HOUR)["accuracy"] == merged["accuracy"]
    finally:
        store.scan = scan  # type: ignore[method-assign]
    assert scans == []


# ---------------------------------------------------------------- states: no re-validation


def test_scores_accepted_at_log_time_raise_no_warning_in_metrics(store: Store) -> None:
    rng = np.random.default_rng(11)
    mon = Monitor("sums", store, resources=False)
    y = rng.integers(0, 3, 500)
    p = _proba(rng, y, 3)
    p[:, 0] += 1e-7  # rows sum to 1 + 1e-7: within the 1e-6 that log() accepts
    assert np.all(np.abs(p.sum(axis=1) - 1.0) > 5e-8)
    mon.log(np.arange(500), None, p.argmax(axis=1), scores=p, latency_ms=1.0, timestamps=DAY0)
    mon.log_labels(np.arange(500), y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = mon.metrics("1h").iloc[0]
        merged = mon.summary(DAY0, DAY0 + HOUR)
    assert row["log_loss"] == pytest.approx(np.mean(-np.log(p[np.arange(500), y])), rel=1e-9)
    assert merged["log_loss"] == pytest.approx(row["log_loss"], rel=1e-12)


def _old_packed(obj: object) -> object:
    """A state dict as the monitor stored it before the states deflated their own
    arrays: plain ``data``, deflated into ``zdata`` over 1024 base64 characters."""
    if isinstance(obj, dict):
        if "dtype" in obj and ("data" in obj or "zdata" in obj):
            rest = {k: v for k, v in obj.items() if k not in ("data", "zdata")}
            raw = (
                zlib.decompress(base64.b64decode(obj["zdata"]))
                if "zdata" in obj
                else base64.b64decode(obj["data"])
            )
            data = base64.b64encode(raw).decode("ascii")
            if len(data) > 1024:
                packed = zlib.compress(raw, 1)
                return rest | {"zdata": base64.b64encode(packed).decode("ascii")}
            return rest | {"data": data}
        return {k: _old_packed(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_old_packed(v) for v in obj]
    return obj


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_window_states_stored_with_deflated_arrays_still_read(task: str) -> None:
    rng = np.random.default_rng(12)
    n, k = 400, (2 if task == "binary" else 3)
    acc = WindowAccumulator(task, k, 3600)
    y = rng.integers(0, k, n)
    latency = rng.uniform(0.5, 50.0, n)
    if task == "regression":
        acc.update(
            rng.normal(size=n), rng.normal(size=n), np.ones(n, bool), None, latency, np.ones(n)
        )
    else:
        p = _proba(rng, y, k)
        scores = p[:, 1] if task == "binary" else p
        labelled = rng.random(n) < 0.8
        acc.update(p.argmax(axis=1), y, labelled, scores, latency, np.ones(n))
    acc.mark = (n, 7)
    old = _old_packed(json.loads(json.dumps(acc.to_states())))
    assert isinstance(old, dict)
    assert "zdata" in json.dumps(old)  # the latency sketch's counts at least
    if task != "regression":
        assert '"data"' in json.dumps(old)  # and small arrays in the plain form
    back = WindowAccumulator.from_states(old)
    assert back.mark == (n, 7)
    want, got = acc.values(1e9), back.values(1e9)
    assert want.keys() == got.keys()
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=1e-12, nan_ok=True), name


def test_a_class_index_beyond_the_record_read_before_the_scan_raises(store: Store) -> None:
    rng = np.random.default_rng(13)
    mon = Monitor("race", store, resources=False)
    _log_hour(mon, rng, 0, 100, 0)
    record = mon.record
    assert record is not None and record.classes == (0, 1, 2)
    # As if a concurrent writer added class 2 after the record was read.
    stale = record.evolve(classes=(0, 1))
    with pytest.raises(ValueError, match=r"class indices in 0\.\.1"):
        mon._scan_windows(3600, None, None, stale)
    assert len(mon._scan_windows(3600, None, None, record)) == 1


def test_log_with_labels_is_all_or_nothing(store: Store) -> None:
    mon = Monitor("both", store, resources=False, task="binary", classes=[0, 1])
    rows, got, hit = mon.log_with_labels(
        [1, 2, 3], None, [0, 1, 1], [0, None, 1], scores=[0.2, 0.7, 0.9]
    )
    assert (rows, got, hit) == (3, 2, 2)
    assert store.scan("both")["label"].to_pylist() == [0, None, 1]
    with pytest.raises(InputError, match=r"labels: 'x' \(str\) at index 1"):
        mon.log_with_labels([4, 5, 6], None, [0, 1, 1], ["0", None, "x"])
    assert store.count("both") == (3, 2)  # the bad call wrote neither rows nor labels
    with pytest.raises(InputError, match="labels: has 2 rows"):
        mon.log_with_labels([7, 8, 9], None, [0, 1, 1], [0, 1])
    assert store.count("both") == (3, 2)


def test_text_labels_of_whole_numbers_map_to_int_classes(store: Store) -> None:
    mon = Monitor("text", store, resources=False, task="binary", classes=[0, 1])
    mon.log([1, 2], None, [0, 1])
    assert mon.log_labels([1, 2], ["1.0", "0"]) == (2, 2)  # how a CSV may spell them
    assert store.scan("text")["label"].to_pylist() == [1, 0]
    with pytest.raises(InputError, match=r"'0\.5' \(str\) at index 1"):
        mon.log_labels([1, 2], ["1.0", "0.5"])


def test_summary_recomputes_windows_stored_in_another_layout(store: Store) -> None:
    rng = np.random.default_rng(5)
    mon = Monitor("layout", store, resources=False)
    for hour in range(3):
        _log_hour(mon, rng, hour, 200, 1000 * hour)
    mon.metrics("1h")
    old = store.get_window_states("layout", 3600)
    # as an older tunelens stored it: equal-width ranking bins, no layout key
    state = old[1].states
    state.pop("layout")
    state["ranking"] = MulticlassRankingState(
        n_classes=3, mode="streaming", n_bins=1024, scale="linear"
    ).to_dict()
    store.put_window_states([old[1]])
    merged = mon.summary(DAY0, DAY0 + 3 * HOUR)  # would not merge: scales differ
    one_pass = mon.metrics("1d").iloc[0]
    assert merged["roc_auc"] == pytest.approx(one_pass["roc_auc"], rel=1e-9)
    assert store.get_window_states("layout", 3600)[1].states["layout"] is not None
