"""The demo: drift, alert, report, loop, shadow, promotion and recovery, on shipped data."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from rich.console import Console

from tunelens.demo import DEMO_MODEL, DEMO_REPORT, DEMO_STORE, DemoResult, run
from tunelens.errors import InputError
from tunelens.monitor import Monitor
from tunelens.store import open_store
from tunelens.store.versions import VersionRegistry

#: a shorter story with every step: 8 days of 2,000 requests, 5 tuning trials
QUICK: dict[str, Any] = {"days": 8, "cases_per_day": 2_000, "n_trials": 5}


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoResult, str]:
    out = tmp_path_factory.mktemp("demo")
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, highlight=False, soft_wrap=False)
    return run(out, console=console, **QUICK), buffer.getvalue()


def _accuracy(store_path: Path, since: Any, until: Any) -> float:
    with Monitor(DEMO_MODEL, store=store_path, resources=False) as monitor:
        return float(monitor.summary(since=since, until=until, window="1h")["accuracy"])


@pytest.mark.slow
def test_the_loop_recovers_most_of_the_accuracy_the_drift_cost(
    quick: tuple[DemoResult, str],
) -> None:
    result, _ = quick
    end = result.drift_start + pd.Timedelta(days=QUICK["days"])  # beyond the last request
    assert result.promoted_at is not None and result.promoted_at > result.drift_start
    # The numbers, read back from the store as a user would.
    before = _accuracy(result.store_path, None, result.drift_start)
    drifted = _accuracy(result.store_path, result.drift_start, result.promoted_at)
    after = _accuracy(result.store_path, result.promoted_at, end)
    assert (before, drifted, after) == pytest.approx(
        (result.accuracy_before, result.accuracy_drifted, result.accuracy_recovered)
    )
    assert before > 0.95 and before - drifted >= 0.1, (before, drifted)
    recovery = (after - drifted) / (before - drifted)
    assert result.recovery == pytest.approx(recovery)
    assert recovery >= 0.8, (before, drifted, after)


@pytest.mark.slow
def test_the_store_records_the_alert_the_run_and_the_promotion(
    quick: tuple[DemoResult, str],
) -> None:
    result, _ = quick
    store = open_store(str(result.store_path))
    try:
        registry = VersionRegistry(store, DEMO_MODEL)
        champion = registry.champion()
        assert champion is not None and champion.version != "1"
        assert champion.version == result.promoted == result.challenger == result.champion
        assert [v.version for v in registry.lineage(champion.version)] == [champion.version, "1"]
        assert registry.history()[-1].reason.startswith("shadow: ")

        alerts = store.list_alerts(DEMO_MODEL)
        assert result.alert is not None and result.alert.id in {a.id for a in alerts}
        fired = next(a for a in alerts if a.id == result.alert.id)
        assert fired.rule == "accuracy-drop" and fired.fired_at > result.drift_start
        assert fired.window_start is not None and fired.window_start >= result.drift_start
        assert fired.state == "resolved"  # the new champion's windows cleared it

        found = store.get_blob(DEMO_MODEL, "loop")
        assert found is not None
        runs = json.loads(found[0])["runs"]
        assert [r["run"] for r in runs] == [result.loop_run]
        record = runs[0]
        assert record["trigger"]["kind"] == "alert"
        assert record["trigger"]["alert_id"] == result.alert.id
        assert record["shadow"]["promoted"] and record["shadow"]["rows"] >= 400
        assert record["shadow"]["comparison"]["p_value"] < 0.01
        assert record["compress"]["applied"] is False
        assert record["tune"]["feasible"]
        # the challenger was logged on the shadow traffic under its own name
        assert any(m.name == f"{DEMO_MODEL}@{result.challenger}" for m in store.list_models())
    finally:
        store.close()


@pytest.mark.slow
def test_the_report_names_the_size_measurements_and_the_summary_is_printed(
    quick: tuple[DemoResult, str],
) -> None:
    result, out = quick
    assert result.report_path == result.store_path.parent / DEMO_REPORT
    page = result.report_path.read_text()
    assert "mean_radius" in page and "worst_area" in page
    # the strongest drifted measurements are the outlines' size, as the update changed
    assert set(result.drifted_features[:9]) == {
        f"{part}_{size}" if part != "error" else f"{size}_error"
        for part in ("mean", "worst", "error")
        for size in ("radius", "perimeter", "area")
    }
    summary = out[out.index("tunelens demo: summary") :]
    assert f"{result.accuracy_before:.3f}" in summary
    assert f"{result.accuracy_drifted:.3f}" in summary
    assert f"{result.accuracy_recovered:.3f}" in summary
    assert f"{result.recovery:.0%}" in summary
    assert "mean_radius" in summary and str(result.loop_run) in summary
    assert f"tunelens serve --store {result.store_path}" in summary
    for step in ("alert FIRING", "report", "loop run", "shadow verdict", "promoted"):
        assert step in out, step
    assert "no compression needed" in out
    assert out.index("alert FIRING") < out.index("shadow verdict") < out.index("promoted")


@pytest.mark.slow
def test_demo_is_deterministic(tmp_path: Path, quick: tuple[DemoResult, str]) -> None:
    first, _ = quick
    second = run(tmp_path / "b", quiet=True, **QUICK)
    columns = ["rows", "labelled_rows", "accuracy", "roc_auc", "log_loss"]
    pd.testing.assert_frame_equal(first.metrics[columns], second.metrics[columns])
    assert first.promoted_at == second.promoted_at
    assert first.recovery == second.recovery and not math.isnan(first.recovery)


def test_too_short_a_demo_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        run(tmp_path, quiet=True, days=3)
    assert err.value.field == "days"
    with pytest.raises(InputError) as err:
        run(tmp_path, quiet=True, cases_per_day=100)
    assert err.value.field == "cases_per_day"
    assert not (tmp_path / DEMO_STORE).exists()


@pytest.mark.slow
def test_demo_command_prints_the_story_and_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tunelens.cli import run as cli

    code = cli(["demo", "--out", str(tmp_path), "--days", "8", "--cases", "2000", "--trials", "5"])
    out = capsys.readouterr().out
    assert code == 0
    assert "alert FIRING" in out and "promoted" in out
    assert "tunelens demo: summary" in out and "of the accuracy lost to the drift recovered" in out
    assert str(tmp_path.resolve() / DEMO_STORE) in out
    assert (tmp_path / DEMO_REPORT).exists()


def test_demo_command_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tunelens.cli import run as cli

    code = cli(["demo", "--out", str(tmp_path), "--days", "2"])
    assert code == 2
    assert "days" in capsys.readouterr().err
