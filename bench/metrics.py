"""Benchmarks of tunelens' metric, ingestion and query paths against the obvious baseline.

Run ``python bench/metrics.py`` (full sizes, a few minutes) or ``--quick`` (small sizes,
seconds). Prints the machine, the versions and one table per part:

(a) the full exact binary metric set, ``classification_metrics(..., mode="exact")`` and
    ``mode="streaming"``, against the eight separate scikit-learn calls, values checked;
(b) streaming ROC AUC update throughput (rows/s);
(c) ``Monitor.log`` of rows with 20 float features into a fresh DuckDB file (rows/s);
(d) a 24-window ``Monitor.metrics(window="1h")`` query over stored, labelled events
    (seconds), loaded through the store directly in big batches.

Every time is the median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

TARGETS = {
    "metrics_speedup_1e7": 3.0,
    "auc_update_rows_per_s": 50e6,
    "log_rows_per_s": 500e3,
    "query_seconds": 2.0,
}
AGREE_TOL = 1e-9
SKLEARN_KEYS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
)


def _rows(text: str) -> list[int]:
    return [int(float(part)) for part in text.split(",") if part.strip()]


def _median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def _header() -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"date     {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine  {_cpu_model()}, {cores} cores usable ({os.cpu_count()} online)")
    print(
        f"python   {platform.python_version()}; "
        + ", ".join(
            f"{name} {_version(name)}"
            for name in ("tunelens", "numpy", "scikit-learn", "pandas", "pyarrow", "duckdb")
        )
    )
    print()


def _table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(title)
    print("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  " + "  ".join("-" * w for w in widths))
    for row in rows:
        print("  " + "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    print()


def _binary_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = (rng.random(n) < 0.3).astype(np.int64)
    logits = rng.normal(0, 1.5, n) + 1.2 * y_true
    y_score = 1 / (1 + np.exp(-logits))
    y_pred = (y_score >= 0.5).astype(np.int64)
    return y_true, y_pred, y_score


def _sklearn_set(y_true: np.ndarray, y_pred: np.ndarray, y_score: np.ndarray) -> dict[str, float]:
    from sklearn import metrics as m

    return {
        "accuracy": m.accuracy_score(y_true, y_pred),
        "precision": m.precision_score(y_true, y_pred),
        "recall": m.recall_score(y_true, y_pred),
        "f1": m.f1_score(y_true, y_pred),
        "roc_auc": m.roc_auc_score(y_true, y_score),
        "pr_auc": m.average_precision_score(y_true, y_score),
        "log_loss": m.log_loss(y_true, y_score),
        "brier": m.brier_score_loss(y_true, y_score),
    }


def _separate_set(y_true: np.ndarray, y_pred: np.ndarray, y_score: np.ndarray) -> dict[str, float]:
    """The eight tunelens functional twins called one by one, like the sklearn calls."""
    from tunelens import metrics as m

    return {
        "accuracy": m.accuracy_score(y_true, y_pred),
        "precision": m.precision_score(y_true, y_pred),
        "recall": m.recall_score(y_true, y_pred),
        "f1": m.f1_score(y_true, y_pred),
        "roc_auc": m.roc_auc_score(y_true, y_score),
        "pr_auc": m.average_precision_score(y_true, y_score),
        "log_loss": m.log_loss(y_true, y_score),
        "brier": m.brier_score_loss(y_true, y_score),
    }


MODES: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, float]]] = {
    "exact": lambda *d: _one_pass(*d, mode="exact"),
    "streaming": lambda *d: _one_pass(*d, mode="streaming"),
    "8 calls": _separate_set,
}


def _one_pass(*data: np.ndarray, mode: str) -> dict[str, float]:
    from tunelens.metrics import classification_metrics

    return classification_metrics(*data, mode=mode)


def bench_metric_set(sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    """(a) tunelens exact/streaming metric set vs the separate sklearn calls."""
    out = []
    rows = []
    warm = _binary_data(1_000)  # imports and first-call set-up are not timed
    _sklearn_set(*warm)
    for run in MODES.values():
        run(*warm)
    for n in sizes:
        y_true, y_pred, y_score = _binary_data(n)
        data = (y_true, y_pred, y_score)
        t_sk, ref = _median_time(lambda data=data: _sklearn_set(*data), repeats)
        for mode, run in MODES.items():
            t_tl, got = _median_time(lambda run=run, data=data: run(*data), repeats)
            diffs = {key: abs(float(got[key]) - float(ref[key])) for key in SKLEARN_KEYS}
            worst = max(diffs, key=lambda key: diffs[key])
            exact_keys = [
                k for k in SKLEARN_KEYS if mode != "streaming" or k not in ("roc_auc", "pr_auc")
            ]
            agree = all(diffs[k] <= AGREE_TOL for k in exact_keys)
            out.append({"rows": n, "mode": mode, "sklearn_s": t_sk, "tunelens_s": t_tl, **diffs})
            rows.append(
                [
                    f"{n:.0e}",
                    mode,
                    f"{t_sk:.3f}",
                    f"{t_tl:.3f}",
                    f"{t_sk / t_tl:.1f}x",
                    f"{diffs[worst]:.1e} ({worst})",
                    "yes" if agree else "NO",
                ]
            )
    _table(
        "(a) full binary metric set: tunelens.metrics.classification_metrics vs 8 sklearn calls"
        f"  [target >= {TARGETS['metrics_speedup_1e7']:.0f}x at 1e7, exact]",
        ["rows", "mode", "sklearn s", "tunelens s", "speedup", "max |diff|", "agree 1e-9*"],
        rows,
    )
    print("  * streaming: threshold metrics, log_loss and brier must agree to 1e-9; ROC AUC and")
    print("    PR AUC are histogram approximations (their difference is shown, not required).")
    print("  exact and streaming build each state once (one pass for the whole set); '8 calls'")
    print("  calls tunelens' functional twins one by one, exactly as the sklearn column does.")
    print()
    return out


def bench_auc_update(rows: int, repeats: int) -> float:
    """(b) streaming AUC state update throughput, rows per second."""
    from tunelens.metrics import BinaryRankingState

    chunk = min(rows, 1_000_000)
    y_true, _, y_score = _binary_data(chunk, seed=1)
    y_bool = y_true.astype(bool)
    steps = max(1, rows // chunk)

    def run() -> float:
        state = BinaryRankingState(mode="streaming")
        for _ in range(steps):
            state.update(y_bool, y_score)
        return state.roc_auc()  # any deferred work is inside the timing

    seconds, _ = _median_time(run, repeats)
    rate = steps * chunk / seconds
    _table(
        "(b) streaming ROC AUC update"
        f"  [target >= {TARGETS['auc_update_rows_per_s'] / 1e6:.0f}M rows/s]",
        ["rows", "chunk", "seconds", "rows/s"],
        [[f"{steps * chunk:.0e}", f"{chunk:.0e}", f"{seconds:.3f}", f"{rate / 1e6:.1f}M"]],
    )
    return rate


@contextlib.contextmanager
def _tmpdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tunelens-bench-") as name:
        yield Path(name)


def bench_log(rows: int, repeats: int, features: int = 20) -> float:
    """(c) Monitor.log of ``rows`` rows with ``features`` float features, fresh file."""
    import pandas as pd

    from tunelens.monitor import Monitor

    rng = np.random.default_rng(2)
    frame = pd.DataFrame(
        rng.normal(size=(rows, features)), columns=[f"x{i}" for i in range(features)]
    )
    _, y_pred, y_score = _binary_data(rows, seed=2)
    ids = np.char.add("r", np.arange(rows).astype(str))
    latency = rng.gamma(2.0, 2.0, rows)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    stamps = pd.date_range(start, periods=rows, freq="10ms", tz="UTC")
    times = []
    for attempt in range(repeats):
        with _tmpdir() as tmp:
            with Monitor(
                f"bench-{attempt}", store=tmp / "log.duckdb", task="binary", resources=False
            ) as monitor:
                started = time.perf_counter()
                done = monitor.log(
                    ids, frame, y_pred, scores=y_score, latency_ms=latency, timestamps=stamps
                )
                times.append(time.perf_counter() - started)
            assert done == rows, (done, rows)
    seconds = statistics.median(times)
    rate = rows / seconds
    _table(
        "(c) Monitor.log into a fresh DuckDB file"
        f"  [target >= {TARGETS['log_rows_per_s'] / 1e3:.0f}k rows/s]",
        ["rows", "features", "seconds", "rows/s"],
        [[f"{rows:.0e}", str(features), f"{seconds:.3f}", f"{rate / 1e3:.0f}k"]],
    )
    return rate


def _load_events(store: Any, model: str, rows: int, start: datetime, hours: int) -> None:
    import pyarrow as pa

    chunk = 2_000_000
    rng = np.random.default_rng(3)
    span_us = hours * 3600 * 1_000_000
    base_us = int(start.timestamp() * 1_000_000)
    for lo in range(0, rows, chunk):
        n = min(chunk, rows - lo)
        y_true, y_pred, y_score = _binary_data(n, seed=lo)
        offsets = np.sort(rng.integers(0, span_us, n))
        ids = pa.array(np.char.add("e", np.arange(lo, lo + n).astype(str)), type=pa.string())
        stamps = pa.array(base_us + offsets, type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))
        predictions = pa.table(
            {
                "id": ids,
                "timestamp": stamps,
                "version": pa.array(["1"] * n, type=pa.string()),
                "prediction": pa.array(y_pred.astype(np.int32)),
                "score": pa.array(y_score),
                "latency_ms": pa.array(rng.gamma(2.0, 2.0, n)),
                "batch_size": pa.array(np.ones(n, dtype=np.int32)),
            }
        )
        store.append_predictions(model, predictions)
        labels = pa.table(
            {
                "id": ids,
                "label": pa.array(y_true.astype(np.int32)),
                "timestamp": stamps,
            }
        )
        store.append_labels(model, labels)


def bench_query(rows: int, repeats: int, hours: int = 24) -> float:
    """(d) Monitor.metrics(window="1h") over ``rows`` labelled events in ``hours`` windows."""
    from tunelens.monitor import Monitor
    from tunelens.store import ModelRecord, open_store

    start = datetime(2026, 1, 1, tzinfo=UTC)
    with _tmpdir() as tmp:
        store = open_store(tmp / "query.duckdb")
        try:
            store.put_model(ModelRecord("bench", "binary", classes=(0, 1)))
            started = time.perf_counter()
            _load_events(store, "bench", rows, start, hours)
            load_s = time.perf_counter() - started
            monitor = Monitor("bench", store=store, resources=False)
            end = start + timedelta(hours=hours)
            first_s, frame = _median_time(
                lambda: monitor.metrics(window="1h", since=start, until=end), 1
            )
            again_s, frame = _median_time(
                lambda: monitor.metrics(window="1h", since=start, until=end), repeats
            )
            monitor.close()
        finally:
            store.close()
    windows = len(frame)
    _table(
        "(d) Monitor.metrics(window='1h') over stored labelled events"
        f"  [target <= {TARGETS['query_seconds']:.0f} s]",
        ["rows", "windows", "load s", "first query s", "repeat query s"],
        [[f"{rows:.0e}", str(windows), f"{load_s:.1f}", f"{first_s:.3f}", f"{again_s:.3f}"]],
    )
    return first_s


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the parts asked for, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1e6,1e7", help="sizes for (a), comma-separated")
    parser.add_argument("--log-rows", default="1e6", help="rows for (c)")
    parser.add_argument("--query-rows", default="1e7", help="stored events for (d)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each")
    parser.add_argument("--only", default="a,b,c,d", help="parts to run, comma-separated (a,b,c,d)")
    args = parser.parse_args(argv)
    sizes = _rows(args.rows)
    log_rows = int(float(args.log_rows))
    query_rows = int(float(args.query_rows))
    repeats = max(1, args.repeats)
    if args.quick:
        sizes, log_rows, query_rows, repeats = [100_000, 1_000_000], 100_000, 500_000, 1
    parts = set(_rows_parts(args.only))
    _header()
    if "a" in parts:
        bench_metric_set(sizes, repeats)
    if "b" in parts:
        bench_auc_update(max(sizes[-1], 10_000_000) if not args.quick else 2_000_000, repeats)
    if "c" in parts:
        bench_log(log_rows, repeats)
    if "d" in parts:
        bench_query(query_rows, repeats)
    return 0


def _rows_parts(text: str) -> list[str]:
    return [part.strip().lower() for part in text.split(",") if part.strip()]


if __name__ == "__main__":
    sys.exit(main())
