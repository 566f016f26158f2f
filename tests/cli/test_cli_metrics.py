"""``tunelens metrics``: the windowed metrics as a table or JSON, checked against sklearn."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

Invoke = Callable[..., Any]
LOG = (
    "--model", "m", "--prediction", "pred", "--score", "proba", "--id", "req",
    "--timestamp", "ts", "--target", "label", "--latency", "ms",
)  # fmt: skip


@pytest.fixture
def store(cli: Invoke, tmp_path: Path, parquet_file: Path) -> Path:
    path = tmp_path / "s.duckdb"
    result = cli("log", "--store", path, *LOG, parquet_file)
    assert result.code == 0, result.err
    return path


def test_metrics_json_matches_sklearn_per_window(
    cli: Invoke, store: Path, frame: pd.DataFrame
) -> None:
    result = cli("metrics", "--store", store, "--model", "m", "--window", "1h", "--json")
    assert result.code == 0, result.err
    rows = json.loads(result.out)
    assert isinstance(rows, list) and len(rows) == 3
    hour = frame["ts"].dt.floor("1h")
    for row in rows:
        start = datetime.fromisoformat(row["window_start"])
        assert start.utcoffset() is not None and start.utcoffset().total_seconds() == 0
        part = frame[hour == pd.Timestamp(start)]
        assert row["rows"] == len(part) and row["labelled_rows"] == len(part)
        assert row["accuracy"] == pytest.approx(
            accuracy_score(part["label"], part["pred"]), abs=1e-12
        )
        # Window states keep a streaming (histogram) ROC state: AUC error bound 1e-3.
        assert row["roc_auc"] == pytest.approx(
            roc_auc_score(part["label"], part["proba"]), abs=1e-3
        )
        assert row["latency_p99"] is not None
        assert all(not (isinstance(v, float) and np.isnan(v)) for v in row.values())
    assert sum(row["rows"] for row in rows) == len(frame)


def test_metrics_since_until_and_nan_as_null(cli: Invoke, store: Path) -> None:
    result = cli(
        "metrics", "--store", store, "--model", "m", "--window", "1h", "--json",
        "--since", "2026-01-01T01:00:00Z", "--until", "2026-01-01T02:00:00+00:00",
    )  # fmt: skip
    assert result.code == 0, result.err
    rows = json.loads(result.out)
    assert [row["window_start"][:19] for row in rows] == ["2026-01-01T01:00:00"]
    assert rows[0]["cpu_percent"] is None  # no resource samples: null, not NaN


def test_metrics_table(cli: Invoke, store: Path) -> None:
    result = cli("metrics", "--store", store, "--model", "m", "--window", "1d")
    assert result.code == 0, result.err
    assert "2026-01-01 00:00" in result.out
    for header in ("rows", "accuracy", "roc auc", "latency p99"):
        assert header in result.out
    assert "600" in result.out
    result = cli("metrics", "--store", store, "--model", "m", "--columns", "rows,f1")
    assert result.code == 0 and "f1" in result.out and "accuracy" not in result.out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--window", "1x"), "window"),
        (("--window", "-1h"), "window"),
        (("--since", "yesterday"), "--since"),
        (("--columns", "nope"), "nope"),
        (("--since", "2026-01-02T00:00:00Z", "--until", "2026-01-01T00:00:00Z"), "until"),
    ],
)
def test_metrics_bad_input(cli: Invoke, store: Path, args: tuple[str, ...], needle: str) -> None:
    result = cli("metrics", "--store", store, "--model", "m", *args)
    assert result.code == 2, result.out
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]


def test_metrics_unknown_model_or_store(cli: Invoke, store: Path, tmp_path: Path) -> None:
    result = cli("metrics", "--store", store, "--model", "nope")
    assert result.code == 2 and "models in the store: m" in result.err
    result = cli("metrics", "--store", tmp_path / "missing.duckdb", "--model", "m")
    assert result.code == 2 and "no such store file" in result.err
    assert not (tmp_path / "missing.duckdb").exists()


def test_console_script_subprocess(store: Path) -> None:
    import subprocess
    import sys

    base = [sys.executable, "-m", "tunelens.cli", "metrics", "--store", str(store), "--model", "m"]
    done = subprocess.run([*base, "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 3
    done = subprocess.run([*base, "--window", "soon"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
