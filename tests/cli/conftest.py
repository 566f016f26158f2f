"""Fixtures for the CLI tests: prediction tables on disk and an in-process runner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tunelens.cli import run


@dataclass
class Result:
    """What one CLI invocation returned."""

    code: int
    out: str
    err: str


Invoke = Callable[..., Result]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Invoke:
    """Run ``tunelens ARGS`` in-process; returns exit code, stdout and stderr."""

    def invoke(*args: str | Path) -> Result:
        capsys.readouterr()
        code = run([str(arg) for arg in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


def predictions_frame(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """``n`` binary predictions over 3 hours of 2026-01-01, with labels and features."""
    rng = np.random.default_rng(seed)
    target = (rng.random(n) < 0.4).astype(np.int64)
    score = np.clip(0.5 * target + rng.random(n) * 0.6 + 0.0, 0, 1)
    start = pd.Timestamp("2026-01-01T00:00:00Z")
    return pd.DataFrame(
        {
            "req": [f"r{i}" for i in range(n)],
            "ts": start + pd.to_timedelta(np.sort(rng.uniform(0, 3 * 3600, n)), unit="s"),
            "pred": (score >= 0.5).astype(np.int64),
            "proba": score,
            "label": target,
            "ms": rng.gamma(2.0, 3.0, n),
            "age": rng.integers(18, 90, n),
            "income": rng.normal(50_000, 10_000, n),
        }
    )


@pytest.fixture
def frame() -> pd.DataFrame:
    """The default prediction table."""
    return predictions_frame()


@pytest.fixture
def csv_file(tmp_path: Path, frame: pd.DataFrame) -> Path:
    """The table as CSV (ISO-8601 timestamps)."""
    path = tmp_path / "preds.csv"
    out = frame.copy()
    out["ts"] = out["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    out.to_csv(path, index=False)
    return path


@pytest.fixture
def parquet_file(tmp_path: Path, frame: pd.DataFrame) -> Path:
    """The table as Parquet."""
    path = tmp_path / "preds.parquet"
    frame.to_parquet(path, index=False)
    return path
