"""`tunelens loop`: run, resume, approve, roll back, status, alerts and config errors."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from tests.cli.conftest import Invoke
from tunelens.loop import Loop
from tunelens.monitor import Monitor
from tunelens.store import AlertEvent, open_store
from tunelens.store.versions import VersionRegistry

FEATURES = ["x0", "x1", "x2"]
W_OLD, W_NEW = np.array([2.0, 0.0, 0.5]), np.array([0.0, 2.0, 0.5])
ROWS = 1500
STAMPS = pd.date_range("2026-03-02", periods=ROWS, freq="min", tz="UTC")


def _frame(rng: np.random.Generator, n: int, w: np.ndarray) -> pd.DataFrame:
    X = rng.normal(size=(n, 3))
    frame = pd.DataFrame(X, columns=FEATURES)
    frame["y"] = (X @ w + 0.3 * rng.normal(size=n) > 0).astype(int)
    return frame


def _config(folder: Path, *, extra: str = "", name: str = "loop.toml", **keys: str) -> Path:
    """A loop config in ``folder``; ``keys`` add or replace [loop] keys (raw TOML values)."""
    loop = {
        "trainer": '"sklearn.linear_model:LogisticRegression"',
        "trainer_params": "{ max_iter = 500 }",
        "reference": '"reference.parquet"',
        "target": '"y"',
        "policy": '"auto"',
        "n_trials": "3",
        **keys,
    }
    path = folder / name
    path.write_text("[loop]\n" + "".join(f"{k} = {v}\n" for k, v in loop.items()) + extra)
    return path


def _serve(
    folder: Path, *, register: bool = True, url: str | None = None
) -> tuple[str, LogisticRegression]:
    """A store (a DuckDB file in ``folder``, or ``url``) whose model "m" served 1500
    labelled rows after a concept shift."""
    rng = np.random.default_rng(0)
    reference = _frame(rng, 2000, W_OLD)
    champion = LogisticRegression().fit(reference[FEATURES], reference["y"])
    recent = _frame(rng, ROWS, W_NEW)
    path = url or str(folder / "loop.duckdb")
    with open_store(path) as store:
        mon = Monitor("m", store, resources=False)
        ids = [f"r{i}" for i in range(ROWS)]
        mon.log(ids, recent[FEATURES], champion.predict(recent[FEATURES]), timestamps=STAMPS)
        mon.log_labels(ids, recent["y"].to_numpy())
        if register:  # registers and saves version "1", as a loop that ran before would
            Loop(
                mon,
                trainer=LogisticRegression(),
                champion=champion,
                reference=reference,
                target="y",
            )
        mon.close()
    reference.to_parquet(folder / "reference.parquet")
    with (folder / "model.pkl").open("wb") as handle:
        pickle.dump(champion, handle)
    return path, champion


def _registry(path: str, model: str = "m") -> dict[str, Any]:
    with open_store(path) as store:
        return VersionRegistry(store, model).to_dict()


def _runs(path: str) -> list[dict[str, Any]]:
    with open_store(path) as store:
        found = store.get_blob("m", "loop")
    return list(json.loads(found[0])["runs"]) if found else []


def test_auto_run_promotes_then_status_lists_it_and_rollback_returns_to_1(
    tmp_path: Path, cli: Invoke
) -> None:
    store, _ = _serve(tmp_path)
    config = _config(tmp_path)
    out = tmp_path / "run.json"
    done = cli("loop", "--store", store, "--model", "m", "--config", config, "--json", out)
    assert done.code == 0, done.err
    doc = json.loads(out.read_text())
    assert doc["schema"] == "tunelens.loop/1" and doc["trigger"]["kind"] == "manual"
    assert doc["decision"]["action"] == "promote" and doc["promoted"] is True
    assert doc["rows"]["recent"] == ROWS and doc["champion"] == "1"
    challenger = doc["challenger"]
    assert challenger.startswith("1.") and _registry(store)["champion"] == challenger
    assert "metric_drop" in done.out  # the findings were printed
    assert "plan" in done.out and "recent rows only" in done.out
    assert f"promoted: version {challenger} now serves m (was 1)" in done.out
    assert (tmp_path / "loop.duckdb.optuna.db").exists()  # storage "auto": beside the store

    status = tmp_path / "status.json"
    shown = cli("loop", "--store", store, "--model", "m", "--status", "--json", status)
    assert shown.code == 0, shown.err
    marked = [line for line in shown.out.splitlines() if challenger in line and "tune" in line]
    assert len(marked) == 1 and "*" in marked[0]  # the champion's row is marked
    one = [line for line in shown.out.splitlines() if "│ 1 " in line or "| 1 " in line]
    assert one and "*" not in one[0]
    recorded = json.loads(status.read_text())
    assert recorded["champion"] == challenger
    assert [r["run"] for r in recorded["runs"]] == [doc["run"]]
    assert recorded["runs"][0]["promoted"] is True

    back = cli(
        "loop", "--store", store, "--model", "m", "--config", config,
        "--rollback", "--reason", "latency regression",
    )  # fmt: skip
    assert back.code == 0, back.err
    assert f"rolled back to version 1: champion of m is now 1 (was {challenger})" in back.out
    registry = _registry(store)
    assert registry["champion"] == "1"
    assert registry["events"][-1]["action"] == "rollback"
    assert registry["events"][-1]["reason"] == "latency regression"


def test_manual_policy_waits_then_approve_promotes(tmp_path: Path, cli: Invoke) -> None:
    store, _ = _serve(tmp_path)
    config = _config(tmp_path, policy='"manual"')
    out = tmp_path / "run.json"
    done = cli("loop", "--store", store, "--model", "m", "--config", config, "--json", out)
    assert done.code == 0, done.err
    doc = json.loads(out.read_text())
    challenger = doc["challenger"]
    assert doc["decision"]["action"] == "await_approval" and doc["promoted"] is False
    assert _registry(store)["champion"] == "1"
    assert f"--approve {challenger}" in done.out

    approved = cli(
        "loop", "--store", store, "--model", "m", "--config", config,
        "--approve", challenger, "--reason", "reviewed",
    )  # fmt: skip
    assert approved.code == 0, approved.err
    assert f"promoted version {challenger}" in approved.out
    registry = _registry(store)
    assert registry["champion"] == challenger
    assert registry["events"][-1]["reason"] == "reviewed"
    run = _runs(store)[-1]
    assert run["promoted"] is True and run["approved"] == "reviewed"
    # nothing waits any more: a bare --approve is bad input
    again = cli("loop", "--store", store, "--model", "m", "--config", config, "--approve")
    assert again.code == 2 and "no loop run awaits approval" in again.err


def test_on_alert_runs_only_while_an_alert_fires(tmp_path: Path, cli: Invoke) -> None:
    store, _ = _serve(tmp_path)
    config = _config(tmp_path, policy='"manual"')
    args = ["loop", "--store", store, "--model", "m", "--config", config, "--on-alert"]
    with open_store(store) as st:  # a resolved alert does not start a run
        st.put_alert(
            AlertEvent(
                id="old",
                model="m",
                rule="accuracy-drop",
                state="resolved",
                fired_at=datetime(2026, 3, 1, tzinfo=UTC),
                resolved_at=datetime(2026, 3, 1, 6, tzinfo=UTC),
            )
        )
    idle = cli(*args)
    assert idle.code == 0, idle.err
    assert "no alert fires for model m" in idle.out
    assert _runs(store) == []

    with open_store(store) as st:
        st.put_alert(
            AlertEvent(
                id="a-1",
                model="m",
                rule="accuracy-drop",
                state="firing",
                fired_at=datetime(2026, 3, 3, tzinfo=UTC),
                window_start=STAMPS[300].to_pydatetime(),
                evidence="accuracy 0.60 < 0.90",
            )
        )
    out = tmp_path / "run.json"
    fired = cli(*args, "--json", out)
    assert fired.code == 0, fired.err
    assert "alert accuracy-drop (high)" in fired.out
    doc = json.loads(out.read_text())
    assert doc["trigger"]["kind"] == "alert" and doc["trigger"]["alert_id"] == "a-1"
    assert doc["rows"]["recent"] == ROWS - 300  # from the window that fired it
    runs = _runs(store)
    assert len(runs) == 1 and runs[0]["trigger"]["rule"] == "accuracy-drop"


@pytest.mark.parametrize("start", [None, 500])
def test_an_unfinished_run_is_resumed_and_said_so(
    tmp_path: Path, cli: Invoke, start: int | None
) -> None:
    store, _ = _serve(tmp_path)
    config = _config(tmp_path, policy='"manual"')
    stopped = {
        "schema": "tunelens.loop/1",
        "run": "feedc0ffee00",
        "started": "2026-03-04T10:00:00+00:00",
        "finished": None,
        "status": "tuning",
        "since": None if start is None else str(STAMPS[start]),
        "trigger": {"kind": "manual"},
    }
    with open_store(store) as st:  # what a run killed mid-tuning leaves behind
        st.put_blob(
            "m", "loop", json.dumps({"schema": "tunelens.loop/1", "runs": [stopped]}).encode()
        )
    out = tmp_path / "run.json"
    done = cli("loop", "--store", store, "--model", "m", "--config", config, "--json", out)
    assert done.code == 0, done.err
    assert "resuming run feedc0ffee00 (stopped while tuning" in done.out
    doc = json.loads(out.read_text())
    assert doc["run"] == "feedc0ffee00" and doc["status"] == "done"
    assert doc["rows"]["recent"] == ROWS - (start or 0)  # the stored range
    assert [r["run"] for r in _runs(store)] == ["feedc0ffee00"]


def test_the_first_run_takes_the_champion_from_the_config(tmp_path: Path, cli: Invoke) -> None:
    store, champion = _serve(tmp_path, register=False)
    # no champion recorded and none in the config: one line naming the key
    bare = cli("loop", "--store", store, "--model", "m", "--config", _config(tmp_path))
    assert bare.code == 2
    assert bare.err.startswith("error: loop.champion: no champion is recorded for model 'm'")
    assert len(bare.err.strip().splitlines()) == 1
    # too few labelled rows: exit 2, nothing tuned
    config = _config(tmp_path, champion='"model.pkl"', min_recent="5000")
    few = cli("loop", "--store", store, "--model", "m", "--config", config)
    assert few.code == 2 and "only 1500 labelled rows" in few.err
    # the champion file was registered as version 1 with its model saved
    assert "registered model.pkl as version 1" in few.out
    registry = _registry(store)
    assert registry["champion"] == "1" and registry["versions"][0]["artifact"]
    with open_store(store) as st:
        saved = VersionRegistry(st, "m").load_model("1")
    X = np.random.default_rng(1).normal(size=(50, 3))
    np.testing.assert_array_equal(
        saved.predict(pd.DataFrame(X, columns=FEATURES)),
        champion.predict(pd.DataFrame(X, columns=FEATURES)),
    )


BAD_CONFIGS = [
    ({"policy": "'yolo'"}, "loop.policy: unknown value 'yolo'; use one of manual, auto"),
    ({"n_trails": "3"}, "loop.n_trails: unknown key; use one of trainer, trainer_params,"),
    ({"n_trials": "'many'"}, "loop.n_trials: must be an integer, got a string"),
    ({"holdout": "0.95"}, "loop.holdout: is 0.95; use a share in [0.05, 0.9]"),
    ({"trainer": "'sklearn.linear_model:Nope'"}, "loop.trainer: 'sklearn.linear_model' has no"),
    ({"trainer_params": "{ max_iters = 3 }"}, "loop.trainer_params.max_iters: not a parameter"),
    ({"target": "'label'"}, "loop.target: reference.parquet has no column 'label'; use one of"),
    ({"reference": "'gone.parquet'"}, "loop.reference: no such file 'gone.parquet'"),
    ({"storage": "'redis://x'"}, "loop.storage: "),
    ({"since": "'yesterday'"}, "loop.since: expected an ISO-8601 time"),
    ({"extra": "[tune]\nx = 1\n"}, "tune: unknown top-level table; use one of loop, constraints"),
    (
        {"extra": "[[constraints]]\nname = 'latency_p99_ms'\nop = '<'\nbound = 20\n"},
        "constraints[0].op: unknown value '<'; use one of <=, >=",
    ),
    (
        {"extra": "[[constraints]]\nname = 'speed'\nop = '<='\nbound = 20\n"},
        "constraints[0].name: unknown measurement 'speed'; use one of accuracy,",
    ),
]


@pytest.mark.parametrize(("keys", "message"), BAD_CONFIGS)
def test_a_bad_config_is_one_line_naming_the_key(
    tmp_path: Path, cli: Invoke, keys: dict[str, str], message: str
) -> None:
    pd.DataFrame({"x0": [0.0, 1.0], "y": [0, 1]}).to_parquet(tmp_path / "reference.parquet")
    config = _config(tmp_path, name="bad.toml", **keys)
    # the config is checked before the store is opened: no store file is needed
    done = cli("loop", "--store", tmp_path / "none.duckdb", "--model", "m", "--config", config)
    assert done.code == 2
    assert done.err.startswith("error: " + message), done.err
    assert len(done.err.strip().splitlines()) == 1


def test_other_bad_input(tmp_path: Path, cli: Invoke) -> None:
    store, _ = _serve(tmp_path)
    config = _config(tmp_path)
    base = ["loop", "--store", store, "--config", config]
    unknown = cli(*base, "--model", "nope")
    assert (
        unknown.code == 2
        and "--model nope: not in this store; models in the store: m" in unknown.err
    )
    missing = cli("loop", "--store", store, "--model", "m", "--config", tmp_path / "no.toml")
    assert missing.code == 2 and "no such config file" in missing.err
    no_config = cli("loop", "--store", store, "--model", "m")
    assert no_config.code == 2 and "--config: missing" in no_config.err
    both = cli(*base, "--model", "m", "--rollback", "--status")
    assert both.code == 2 and "--rollback --status: are separate actions" in both.err
    stray = cli(*base, "--model", "m", "1.abc")
    assert stray.code == 2 and "VERSION 1.abc: is only read with --approve" in stray.err
    no_store = cli("loop", "--store", tmp_path / "x.duckdb", "--model", "m", "--config", config)
    assert no_store.code == 2 and "no such store file" in no_store.err
    nothing = cli(*base, "--model", "m", "--rollback")  # only version 1 ever served
    assert nothing.code == 2 and "there is no earlier champion" in nothing.err
    assert _runs(store) == []
    shown = cli("loop", "--store", store, "--model", "m", "--status")
    assert shown.code == 0, shown.err
    assert "m: champion 1, 1 version, 0 loop runs" in shown.out
    assert "no loop run recorded" in shown.out


def test_a_store_held_by_another_process_is_named(tmp_path: Path, cli: Invoke) -> None:
    store, _ = _serve(tmp_path)
    config = _config(tmp_path)
    holder = textwrap.dedent(
        f"""
        import sys, time, duckdb
        con = duckdb.connect({store!r})
        print("held", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        done = cli("loop", "--store", store, "--model", "m", "--config", config)
        assert done.code == 2
        assert "in use by another process" in done.err
        assert len(done.err.strip().splitlines()) == 1
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.slow
def test_the_shipped_example_runs_and_waits_for_approval(tmp_path: Path, cli: Invoke) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "loop"
    made = subprocess.run(
        [sys.executable, str(example / "make_store.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    config = tmp_path / "loop.toml"  # the shipped config, with fewer trials
    config.write_text(config.read_text().replace("n_trials = 20", "n_trials = 4"))
    store = str(tmp_path / "loop.duckdb")
    out = tmp_path / "run.json"
    args = ["loop", "--store", store, "--model", "biopsy", "--config", config]
    done = cli(*args, "--json", out)
    assert done.code == 0, done.err
    doc = json.loads(out.read_text())
    assert "registered model.pkl as version 1" in done.out
    assert any(f["kind"] == "metric_drop" for f in doc["findings"])
    sizes = ("radius", "perimeter", "area")  # the measurements the update widened
    drifted = [f["where"] for f in doc["localisation"] if f["kind"] == "data_drift"]
    assert drifted and any(s in drifted[0] for s in sizes)
    assert doc["decision"]["action"] == "await_approval" and doc["tune"]["feasible"]
    assert doc["comparison"]["challenger"] > doc["comparison"]["champion"] + 0.1
    approved = cli(*args, "--approve")
    assert approved.code == 0, approved.err
    assert _registry(store, "biopsy")["champion"] == doc["challenger"]


PG_URL = os.environ.get("TUNELENS_TEST_POSTGRES", "")


@pytest.mark.skipif(not PG_URL, reason="set TUNELENS_TEST_POSTGRES to run the PostgreSQL test")
def test_a_postgres_store_keeps_the_runs_and_the_study(tmp_path: Path, cli: Invoke) -> None:
    psycopg = pytest.importorskip("psycopg")
    schema = f"tl_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as con:
        con.execute(f'CREATE SCHEMA "{schema}"')
    try:
        sep = "&" if "?" in PG_URL else "?"
        url = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"  # a schema of its own
        _serve(tmp_path, register=False, url=url)
        config = _config(tmp_path, champion='"model.pkl"')
        out = tmp_path / "run.json"
        done = cli("loop", "--store", url, "--model", "m", "--config", config, "--json", out)
        assert done.code == 0, done.err
        doc = json.loads(out.read_text())
        assert doc["promoted"] and doc["tune"]["complete"] == 3
        assert _registry(url)["champion"] == doc["challenger"]
        with psycopg.connect(PG_URL, autocommit=True) as con:  # storage "auto": same database
            found = con.execute(f'SELECT study_name FROM "{schema}".studies').fetchall()
        assert [row[0] for row in found] == [doc["tune"]["study"]]
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as con:
            con.execute(f'DROP SCHEMA "{schema}" CASCADE')
