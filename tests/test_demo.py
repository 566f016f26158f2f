"""The demo: real model, simulated production, drift that clearly lowers accuracy."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tunelens.demo import DEMO_MODEL, run
from tunelens.monitor import Monitor


@pytest.mark.slow
def test_demo_drift_lowers_accuracy(tmp_path: Path) -> None:
    result = run(tmp_path, quiet=True)
    assert result.store_path.exists() and result.store_path.parent == tmp_path.resolve()
    assert result.predictions >= 50_000
    assert 0 < result.matched == result.labels < result.predictions  # late and missing labels

    # Read the metrics back from the store, as a user would.
    with Monitor(DEMO_MODEL, store=result.store_path, resources=False) as monitor:
        frame = monitor.metrics(window="1d")
    if "window_start" not in frame.columns:
        frame = frame.reset_index()
    starts = pd.to_datetime(frame["window_start"], utc=True)
    drifted = (starts >= pd.Timestamp(result.drift_start)).to_numpy()
    assert drifted.any() and (~drifted).any()
    before = frame.loc[~drifted, "accuracy"].mean()
    after = frame.loc[drifted, "accuracy"].dropna().mean()
    assert before - after >= 0.1, (before, after)
    assert before > 0.9
    # Labels arrive late: the last day is the least labelled.
    labelled = frame["labelled_rows"].to_numpy()
    assert labelled[-1] < labelled[0]
    assert frame["latency_p99"].notna().all()


@pytest.mark.slow
def test_demo_is_deterministic(tmp_path: Path) -> None:
    first = run(tmp_path / "a", quiet=True, days=2, cases_per_day=2_000)
    second = run(tmp_path / "b", quiet=True, days=2, cases_per_day=2_000)
    columns = ["rows", "labelled_rows", "accuracy", "roc_auc", "log_loss"]
    pd.testing.assert_frame_equal(first.metrics[columns], second.metrics[columns])


def test_demo_command_prints_table_and_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tunelens.cli import run as cli

    code = cli(["demo", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "accuracy" in out and "roc auc" in out
    assert str(tmp_path.resolve() / "tunelens-demo.duckdb") in out
