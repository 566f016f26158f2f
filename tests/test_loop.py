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
    # the process dies here; a new one picks the run up from the store and concludes it
    again = Loop(
        mon,
        trainer=LogisticRegression(),
        reference=reference,
        target="y",
        policy="auto",
        shadow_rows=300,
    )
    assert again.champion_version == "1"
    resumed = again.get_run()
    assert resumed.run == run.run and resumed.status == "shadow" and not resumed.promoted
    X = fresh[FEATURES].to_numpy()
    np.testing.assert_array_equal(resumed.model.predict(X), run.model.predict(X))
    with again.start_shadow(resumed) as shadow:
        out = again.conclude(resumed, shadow)  # the rows logged before the crash count
    loop = again
    assert out["rows"] == 400 and out["comparison"]["significant"]
    assert out["promoted"] and loop.registry.champion().version == run.challenger  # type: ignore[union-attr]
    assert len(loop.runs()) == 1  # the run's record gained its shadow result in place
    assert loop.runs()[-1]["shadow"]["decision"]["action"] == "promote"
    assert loop.runs()[-1]["status"] == "done" and loop.runs()[-1]["finished"]
    mon.close()
    mon.store.close()


def test_manual_approval_then_rollback_swap_the_served_model(tmp_path: Path) -> None:
    mon, champion, reference = _serve(tmp_path, shifted=True, noise=False)
    loop = _loop(mon, champion, reference)
    run = loop.run()
    assert run.decision["action"] == "await_approval"
    assert loop.approve(reason="reviewed by the on-call") == run.challenger
    fresh = _frame(np.random.default_rng(5), 300, np.array([0.0, 2.0, 0.5]))
    X = fresh[FEATURES].to_numpy()
    # the champion is now the challenger's saved model, loaded back from the store
    np.testing.assert_array_equal(loop.champion.predict(X), run.model.predict(X))
    assert loop.runs()[-1]["promoted"] and loop.runs()[-1]["approved"] == "reviewed by the on-call"
    # a loop opened later on the same store serves the recorded champion without being told
    again = Loop(mon, trainer=LogisticRegression(), reference=reference, target="y")
    assert again.champion_version == run.challenger
    np.testing.assert_array_equal(again.champion.predict(X), run.model.predict(X))
    assert again.rollback(reason="latency regression") == "1"
    np.testing.assert_array_equal(
        again.champion.predict(fresh[FEATURES]), champion.predict(fresh[FEATURES])
    )
    assert loop.registry.champion().version == "1"  # type: ignore[union-attr]
    with pytest.raises(InputError) as err:
        again.approve()  # nothing waits any more
    assert err.value.field == "version"
    mon.close()
    mon.store.close()


def test_no_champion_anywhere_is_a_clear_error(tmp_path: Path) -> None:
    mon, _, reference = _serve(tmp_path, shifted=False, noise=False)
    with pytest.raises(InputError) as err:
        Loop(mon, trainer=LogisticRegression(), reference=reference, target="y")
    assert err.value.field == "champion"
    mon.close()
    mon.store.close()


def test_an_alert_starts_a_run_that_localises_the_drifted_feature(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from tunelens.store import AlertEvent
    from tunelens.tune import Constraint

    rng = np.random.default_rng(3)
    w = np.array([2.0, 0.0, 0.5])
    reference = _frame(rng, 2000, w)
    champion = LogisticRegression().fit(reference[FEATURES], reference["y"])
    recent = _frame(rng, 1200, w)
    shifted = recent[FEATURES].copy()
    shifted["x0"] = shifted["x0"] + 1.5  # a sensor offset: x0 drifts, the labels do not
    mon = Monitor("m", open_store(str(tmp_path / "a.duckdb")), resources=False)
    ids = [f"r{i}" for i in range(len(recent))]
    stamps = pd.date_range("2026-03-02", periods=len(recent), freq="min", tz="UTC")
    mon.log(ids, shifted, champion.predict(shifted), timestamps=stamps)
    mon.log_labels(ids, recent["y"].to_numpy())
    event = AlertEvent(
        id="a-1",
        model="m",
        rule="accuracy-drop",
        state="firing",
        fired_at=datetime(2026, 3, 3, tzinfo=UTC),
        window_start=stamps[200].to_pydatetime(),
        evidence="accuracy 0.80 < 0.90",
    )
    # an impossible latency objective: the champion breaks it, localisation says so
    loop = _loop(
        mon,
        champion,
        reference,
        constraints=[Constraint("latency_p99_ms", "<=", 1e-6)],
        clock=lambda: datetime(2026, 3, 3, 12, tzinfo=UTC),  # a replay's own time
    )
    assert loop.pending_alert() is None  # not stored yet
    mon.store.put_alert(event)
    assert loop.pending_alert(rules=["latency"]) is None
    assert loop.pending_alert().id == "a-1"
    run = loop.on_alert(loop.pending_alert())
    assert loop.pending_alert() is None  # handled: a second call starts nothing
    assert run.trigger["kind"] == "alert" and run.trigger["alert_id"] == "a-1"
    assert run.trigger["rule"] == "accuracy-drop" and run.since is not None
    assert run.started.startswith("2026-03-03T12:00") and run.finished == run.started
    assert loop.registry.get(run.challenger).created.startswith("2026-03-03T12:00")
    assert run.rows["recent"] == len(recent) - 200  # the window the alert named, on
    where = [(f["kind"], f["where"]) for f in run.localisation]
    assert ("data_drift", "feature x0") in where  # the model leans on x0, which drifted
    assert all(w != ("data_drift", "feature x1") for w in where)  # x1 carries no weight
    assert any(k == "latency_slo" for k, _ in where)
    assert run.compress["applied"] is False and "PyTorch" in run.compress["why"]
    assert not run.tune["feasible"] and not run.promoted
    mon.close()
    mon.store.close()


def test_a_trainer_that_never_fits_is_named(tmp_path: Path) -> None:
    mon, champion, reference = _serve(tmp_path, shifted=True, noise=False)

    class Broken(LogisticRegression):
        def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Broken:
            raise ValueError("solver exploded")

    loop = Loop(
        mon, trainer=Broken(), champion=champion, reference=reference, target="y", n_trials=2
    )
    with pytest.raises(InputError) as err:
        loop.run()
    assert err.value.field == "trainer" and "solver exploded" in str(err.value)
    mon.close()
    mon.store.close()


def test_correlated_drifted_features_are_localised_as_a_group(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)

    def frame(n: int, shift: float = 0.0) -> pd.DataFrame:
        size = rng.normal(size=n)
        out = pd.DataFrame(
            {
                "x0": size + 0.05 * rng.normal(size=n) + shift,  # three measurements of one
                "x1": size + 0.05 * rng.normal(size=n) + shift,  # size, as radius, perimeter
                "x2": size + 0.05 * rng.normal(size=n) + shift,  # and area are
            }
        )
        out["y"] = (size + 0.3 * rng.normal(size=n) > 0).astype(int)
        return out

    reference = frame(2000)
    champion = LogisticRegression().fit(reference[FEATURES], reference["y"])
    recent = frame(1000)
    shifted = frame(1000, shift=1.0)[FEATURES]
    mon = Monitor("m", open_store(str(tmp_path / "g.duckdb")), resources=False)
    ids = [f"r{i}" for i in range(1000)]
    mon.log(ids, shifted, champion.predict(shifted))
    mon.log_labels(ids, recent["y"].to_numpy())
    run = _loop(mon, champion, reference).run()
    group = [f for f in run.localisation if f["where"].endswith("(together)")]
    assert len(group) == 1 and group[0]["kind"] == "data_drift", run.localisation
    assert group[0]["where"] == "features x0, x1, x2 (together)"
    assert group[0]["gain"] > 0.2  # the model's whole signal sits in the group
    mon.close()
    mon.store.close()
