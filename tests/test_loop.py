"""The closed loop's first increment: analyse, plan, tune, check, record (scikit-learn)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from tunelens.errors import InputError
from tunelens.loop import Loop
from tunelens.monitor import Monitor
from tunelens.store import open_store

optuna.logging.set_verbosity(optuna.logging.WARNING)
FEATURES = ["x0", "x1", "x2"]


def _frame(rng: np.random.Generator, n: int, w: np.ndarray, noise: bool = False) -> pd.DataFrame:
    X = rng.normal(size=(n, 3))
    y = (X @ w + 0.3 * rng.normal(size=n) > 0).astype(int)
    if noise:
        y = rng.integers(0, 2, size=n)
    frame = pd.DataFrame(X, columns=FEATURES)
    frame["y"] = y
    return frame


def _serve(tmp_path: Path, shifted: bool, noise: bool) -> tuple[Monitor, Any, pd.DataFrame]:
    rng = np.random.default_rng(0)
    w_old, w_new = np.array([2.0, 0.0, 0.5]), np.array([0.0, 2.0, 0.5])
    reference = _frame(rng, 2000, w_old)
    champion = LogisticRegression().fit(reference[FEATURES], reference["y"])
    recent = _frame(rng, 1500, w_new if shifted else w_old, noise=noise)
    store = open_store(str(tmp_path / "loop.duckdb"))
    mon = Monitor("m", store, resources=False)
    ids = [f"r{i}" for i in range(len(recent))]
    mon.log(ids, recent[FEATURES], champion.predict(recent[FEATURES]))
    mon.log_labels(ids, recent["y"].to_numpy())
    return mon, champion, reference


def _loop(mon: Monitor, champion: Any, reference: pd.DataFrame, **kw: Any) -> Loop:
    return Loop(
        mon,
        trainer=LogisticRegression(),
        champion=champion,
        reference=reference,
        target="y",
        n_trials=4,
        **kw,
    )


def test_a_concept_shift_is_found_fixed_checked_and_promoted(tmp_path: Path) -> None:
    mon, champion, reference = _serve(tmp_path, shifted=True, noise=False)
    loop = _loop(mon, champion, reference, policy="auto")
    run = loop.run()
    kinds = {f["kind"] for f in run.findings}
    assert "metric_drop" in kinds
    assert run.comparison["significant"] and run.comparison["difference"] > 0.05
    assert run.promoted and run.decision["action"] == "promote"
    reg = loop.registry
    assert reg.champion().version == run.challenger  # type: ignore[union-attr]
    assert [v.version for v in reg.lineage(run.challenger)] == [run.challenger, "1"]
    assert loop.runs()[-1]["run"] == run.run and loop.runs()[-1]["schema"] == "tunelens.loop/1"
    assert run.plan["holdout_rows"] == 450
    assert "recent rows only" in run.plan["data_rule"] and run.plan["reference_rows"] == 0
    # the challenger recovers at least 80% of the accuracy the shift cost, on fresh traffic
    rng = np.random.default_rng(11)
    before = _frame(rng, 4000, np.array([2.0, 0.0, 0.5]))
    after = _frame(rng, 4000, np.array([0.0, 2.0, 0.5]))
    acc_before = float((champion.predict(before[FEATURES]) == before["y"]).mean())
    acc_drift = float((champion.predict(after[FEATURES]) == after["y"]).mean())
    acc_new = float((run.model.predict(after[FEATURES].to_numpy()) == after["y"]).mean())
    assert (acc_new - acc_drift) / (acc_before - acc_drift) >= 0.8
    assert "challenger" in run.summary()
    mon.close()
    mon.store.close()


def test_pure_label_noise_is_never_promoted(tmp_path: Path) -> None:
    mon, champion, reference = _serve(tmp_path, shifted=False, noise=True)
    loop = _loop(mon, champion, reference, policy="auto")
    run = loop.run()
    assert not run.promoted and run.decision["action"] == "keep_champion"
    assert loop.registry.champion().version == "1"  # type: ignore[union-attr]
    mon.close()
    mon.store.close()


def test_manual_policy_waits_for_approval(tmp_path: Path) -> None:
    mon, champion, reference = _serve(tmp_path, shifted=True, noise=False)
    run = _loop(mon, champion, reference).run()
    assert not run.promoted and run.decision["action"] == "await_approval"
    mon.close()
    mon.store.close()


def test_bad_input(tmp_path: Path) -> None:
    mon, champion, reference = _serve(tmp_path, shifted=False, noise=False)
    with pytest.raises(InputError) as err:
        _loop(mon, champion, reference, policy="yolo")
    assert err.value.field == "policy"
    with pytest.raises(InputError) as err:
        _loop(mon, champion, reference.drop(columns="y"))
    assert err.value.field == "reference"
    with pytest.raises(InputError) as err:
        _loop(mon, champion, reference, min_recent=10_000).run()
    assert err.value.field == "since"
    mon.close()
    mon.store.close()


def test_shadow_stage_decides_on_fresh_traffic(tmp_path: Path) -> None:
    mon, champion, reference = _serve(tmp_path, shifted=True, noise=False)
    loop = _loop(mon, champion, reference, policy="auto", shadow_rows=300)
    run = loop.run()
    # significantly better offline, but not promoted before the shadow stage
    assert run.decision["action"] == "promote" and not run.promoted
    assert loop.registry.champion().version == "1"  # type: ignore[union-attr]
    fresh = _frame(np.random.default_rng(7), 400, np.array([0.0, 2.0, 0.5]))
    ids: list[str] = []
    with loop.start_shadow(run) as shadow:
        for start in range(0, 400, 20):
            batch = fresh.iloc[start : start + 20]
            answer = shadow(batch[FEATURES])
            np.testing.assert_array_equal(answer, champion.predict(batch[FEATURES]))
            ids += shadow.last_ids
        with pytest.raises(InputError) as err:
            loop.conclude(run, shadow)  # no labels yet
        assert err.value.field == "shadow"
        shadow.log_labels(ids, fresh["y"].to_numpy())
        out = loop.conclude(run, shadow)
    assert out["rows"] == 400 and out["comparison"]["significant"]
    assert out["promoted"] and loop.registry.champion().version == run.challenger  # type: ignore[union-attr]
    assert len(loop.runs()) == 1  # the run's record gained its shadow result in place
    assert loop.runs()[-1]["shadow"]["decision"]["action"] == "promote"
    mon.close()
    mon.store.close()
