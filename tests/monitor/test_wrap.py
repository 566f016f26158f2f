"""Monitor.wrap: timing, sampling, ids, scores, and never breaking the prediction."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
import pytest

from tunelens.errors import InputError
from tunelens.monitor import Monitor
from tunelens.store import Store


class Model:
    """A tiny sklearn-like classifier: P(1) = sigmoid(x0)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-np.asarray(X)[:, 0]))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predict classes."""
        time.sleep(self.delay_s)
        return (np.asarray(X)[:, 0] > 0).astype(int)


def test_wrapped_calls_are_logged_with_latency_ids_and_scores(store: Store) -> None:
    model = Model(delay_s=0.02)
    mon = Monitor("wrapped", store, resources=False)
    predict = mon.wrap(model.predict, proba_fn=model.predict_proba)
    assert predict.__doc__ == "Predict classes."
    X = np.array([[1.0, 2.0], [-1.0, 0.5], [3.0, 0.0]])
    out = predict(X)
    np.testing.assert_array_equal(out, [1, 0, 1])
    assert predict.last_ids is not None and len(predict.last_ids) == 3
    assert len(set(predict.last_ids.tolist())) == 3
    mon.log_labels(predict.last_ids, [1, 1, 1])
    assert predict.flush() == 3
    table = store.scan("wrapped")
    assert table.num_rows == 3
    assert table["id"].to_pylist() == predict.last_ids.tolist()
    assert table["label"].to_pylist() == [1, 1, 1]
    lat = table["latency_ms"].to_pylist()
    assert lat[0] == lat[1] == lat[2] and 20.0 <= lat[0] < 2000.0
    assert table["batch_size"].to_pylist() == [3, 3, 3]
    np.testing.assert_allclose(table["score"].to_numpy(), model.predict_proba(X)[:, 1])
    assert table["f:f1"].to_pylist() == [2.0, 0.5, 0.0]
    row = mon.metrics("1h").iloc[-1]
    assert row["accuracy"] == pytest.approx(2 / 3)
    assert row["flops_per_s"] != row["flops_per_s"]  # NaN: FLOPs unknown


def test_sampling_logs_about_the_requested_fraction(store: Store) -> None:
    mon = Monitor("sampled", store, resources=False, task="binary", classes=[0, 1])
    predict = mon.wrap(lambda X: np.zeros(len(X), dtype=int), sample=0.3, seed=7)
    logged = 0
    for _ in range(400):
        predict(np.ones((2, 1)))
        logged += predict.last_ids is not None
    assert predict.calls == 400 and predict.logged == logged
    assert 0.22 < logged / 400 < 0.38
    predict.flush()
    assert store.count("sampled")[0] == 2 * logged
    never = mon.wrap(lambda X: [1] * len(X), sample=0.0)
    never([[1.0]])
    assert never.last_ids is None
    with pytest.raises(InputError, match="sample"):
        mon.wrap(lambda X: X, sample=1.5)


def test_logging_failures_only_warn(store_path: str) -> None:
    mon = Monitor("fragile", store_path, resources=False)
    predict = mon.wrap(lambda X: np.array([0.5] * len(X)), proba_fn=lambda X: [[2.0]] * len(X))
    with pytest.warns(RuntimeWarning, match="not logged"):
        out = predict(np.ones((2, 2)))
    np.testing.assert_array_equal(out, [0.5, 0.5])
    mon.close()
    with pytest.warns(RuntimeWarning, match="not logged"):
        assert predict(np.ones((1, 2))).tolist() == [0.5]


def test_non_tabular_inputs_are_logged_without_features(store: Store) -> None:
    mon = Monitor("images", store, resources=False)
    predict = mon.wrap(lambda X: np.arange(len(X)) % 2)
    with pytest.warns(RuntimeWarning, match="not tabular"):
        predict(np.zeros((4, 3, 8, 8)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict(np.zeros((2, 3, 8, 8)))
    predict.flush()
    assert store.count("images")[0] == 6


def test_id_fn_and_dataframe_inputs(store: Store) -> None:
    mon = Monitor("ids", store, resources=False)
    frame = pd.DataFrame({"key": ["a", "b"], "x": [0.1, -0.2]})
    predict = mon.wrap(lambda df: (df["x"] > 0).to_numpy(), id_fn=lambda df: df["key"])
    predict(frame)
    assert predict.last_ids is not None and predict.last_ids.tolist() == ["a", "b"]
    predict.flush()
    table = store.scan("ids")
    assert table["id"].to_pylist() == ["a", "b"]
    assert table["f:key"].to_pylist() == ["a", "b"]


def test_wrapped_calls_are_written_in_the_background_in_batches(store: Store) -> None:
    mon = Monitor("batched", store, resources=False, task="binary", classes=[0, 1])
    writes: list[int] = []
    append = store.append_predictions

    def counting_append(model: str, table: object) -> int:
        n = append(model, table)  # type: ignore[arg-type]
        writes.append(n)
        return n

    store.append_predictions = counting_append  # type: ignore[method-assign]
    predict = mon.wrap(lambda X: (np.asarray(X)[:, 0] > 0).astype(int), flush_s=0.2)
    try:
        for _ in range(50):
            predict(np.ones((4, 2)))
        assert store.count("batched")[0] < 200  # nothing waited on a write
        deadline = time.monotonic() + 5.0
        while store.count("batched")[0] < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.count("batched")[0] == 200  # written by the writer, unasked
        assert 1 <= len(writes) < 50 and sum(writes) == 200
    finally:
        store.append_predictions = append  # type: ignore[method-assign]
    predict(np.ones((3, 2)))
    assert mon.metrics("1h")["rows"].sum() == 203  # metrics() flushes first


def test_close_writes_pending_rows_and_sync_mode_writes_in_the_call(store_path: str) -> None:
    mon = Monitor("closing", store_path, resources=False, task="binary", classes=[0, 1])
    lazy = mon.wrap(lambda X: np.zeros(len(X), dtype=int), flush_s=3600.0)
    eager = mon.wrap(lambda X: np.ones(len(X), dtype=int), flush_s=0)
    lazy(np.ones((5, 1)))
    eager(np.ones((2, 1)))
    assert mon.store.count("closing")[0] == 2  # only the synchronous call so far
    mon.close()
    with Monitor("closing", store_path, resources=False) as again:
        assert again.store.count("closing")[0] == 7
    with pytest.raises(InputError, match="flush_s"):
        Monitor("x", store_path, resources=False).wrap(lambda X: X, flush_s=-1)
