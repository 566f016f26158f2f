"""Large and concurrent batches stay correct (speed itself is measured by bench/metrics.py)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tunelens.monitor import Monitor
from tunelens.store import Store


@pytest.mark.slow
def test_log_a_million_rows_with_20_features(store: Store) -> None:
    rng = np.random.default_rng(0)
    n = 1_000_000
    X = rng.random((n, 20))
    p = rng.random(n)
    mon = Monitor("fast", store, resources=False)
    mon.log(np.arange(10) + n, X[:10], (p[:10] > 0.5).astype(int), p[:10], latency_ms=1.0)
    assert mon.log(np.arange(n), X, (p > 0.5).astype(int), p, latency_ms=5.0) == n
    table = mon.metrics("1h")
    assert table["rows"].sum() == n + 10
    assert table["latency_p50"].iloc[-1] == pytest.approx(5.0, rel=0.01)


def test_wrapped_predictions_from_many_threads(store: Store) -> None:
    mon = Monitor("threads", store, resources=False, task="binary", classes=[0, 1])
    predict = mon.wrap(lambda X: (np.asarray(X)[:, 0] > 0).astype(int))

    def work() -> None:
        for _ in range(25):
            predict(np.random.default_rng().normal(size=(4, 3)))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    predict.flush()
    assert store.count("threads")[0] == 4 * 25 * 4
