"""What `Monitor.wrap` adds to each prediction call of a live model (issue 1's hot path).

A scikit-learn logistic regression on 30 float features is called on request batches of 1,
8 and 64 rows, bare and through ``Monitor.wrap`` (every call logged: features, prediction,
scores, measured latency; written by the background writer). Prints the median time per
call of each (bare = ``predict`` and ``predict_proba``, the model work a logged call does)
and the overhead (the logging itself), and the same wrap with the DataFrame fast path of
``tunelens.monitor._inputs`` turned off (``pa.Table.from_pandas`` per call, as before
2026-11-27), so one run shows what the fast path saves.

Usage: ``python bench/wrap.py [--calls 400]``. A few seconds.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

import tunelens.monitor._inputs as inputs
from tunelens.monitor import Monitor


def _per_call_ms(fn: Callable[[Any], Any], frames: list[pd.DataFrame]) -> float:
    times = []
    for frame in frames:
        start = time.perf_counter()
        fn(frame)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(30)]
    X = pd.DataFrame(rng.normal(size=(2000, 30)), columns=names)
    model = LogisticRegression().fit(X, (X["f0"] + X["f1"] > 0).astype(int))
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC | {platform.processor() or platform.machine()}"
        f" | load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{'rows':>5} {'bare ms':>8} {'wrap ms':>8} {'overhead':>9} {'no-fast ms':>10} {'saved':>6}"
    )
    fast = inputs._numeric_frame_columns
    with tempfile.TemporaryDirectory() as tmp:
        for rows in (1, 8, 64):
            frames = [
                pd.DataFrame(rng.normal(size=(rows, 30)), columns=names) for _ in range(args.calls)
            ]
            # the same model work as a logged call: predict, then predict_proba for the scores
            bare = _per_call_ms(lambda f: (model.predict(f), model.predict_proba(f)), frames)
            timings = {}
            for label, path in (("fast", fast), ("slow", lambda frame: None)):
                inputs._numeric_frame_columns = path  # type: ignore[assignment]
                store = os.path.join(tmp, f"{label}-{rows}.duckdb")
                with Monitor("m", store, resources=False) as mon:
                    wrapped = mon.wrap(model.predict, proba_fn=model.predict_proba)
                    wrapped(frames[0])  # the schema is learnt on the first call
                    timings[label] = _per_call_ms(wrapped, frames)
            inputs._numeric_frame_columns = fast
            print(
                f"{rows:>5} {bare:>8.3f} {timings['fast']:>8.3f} {timings['fast'] - bare:>8.3f}ms"
                f" {timings['slow']:>10.3f} {timings['slow'] / timings['fast']:>5.1f}x"
            )


if __name__ == "__main__":
    main()
