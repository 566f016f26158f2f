"""Quick timing smokes (the real acceptance numbers come from the bench)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tunelens.monitor import Monitor
from tunelens.store import Store


@pytest.mark.slow
def test_log_a_million_rows_with_20_features_quickly(store: Store) -> None:
    rng = np.random.default_rng(0)
    n = 1_000_000
    X = rng.random((n, 20))
    p = rng.random(n)
    mon = Monitor("fast", store, resources=False)
    mon.log(np.arange(10) + n, X[:10], (p[:10] > 0.5).astype(int), p[:10], latency_ms=1.0)
    start = time.perf_counter()
    assert mon.log(np.arange(n), X, (p > 0.5).astype(int), p, latency_ms=5.0) == n
    elapsed = time.perf_counter() - start
    print(f"log: {n / elapsed:,.0f} rows/s")
    # the goal is 500k rows/s on a quiet machine; CI machines are shared, so be lenient
    assert n / elapsed > 150_000
    start = time.perf_counter()
    table = mon.metrics("1h")
    print(f"metrics over 1e6 rows: {time.perf_counter() - start:.2f}s")
    assert table["rows"].sum() == n + 10


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
    assert store.count("threads")[0] == 4 * 25 * 4
