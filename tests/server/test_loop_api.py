"""The closed loop's records over HTTP: ``GET …/versions`` and ``GET …/loop``."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import optuna
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression

from tunelens.loop import Loop
from tunelens.monitor import Monitor
from tunelens.server import Settings, create_app
from tunelens.store import DuckDBStore
from tunelens.store.versions import VersionRegistry

optuna.logging.set_verbosity(optuna.logging.WARNING)
MODEL = 'team/fraud "v2"'  # a slash and quotes: the routes take the encoded name
FEATURES = ["x0", "x1", "x2"]


def _url(model: str, tail: str) -> str:
    return f"/api/v1/models/{quote(model, safe='')}/{tail}"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    s = DuckDBStore(tmp_path / "loop.duckdb")
    yield s
    s.close()


def _frame(rng: np.random.Generator, n: int, w: np.ndarray) -> pd.DataFrame:
    X = rng.normal(size=(n, 3))
    frame = pd.DataFrame(X, columns=FEATURES)
    frame["y"] = (X @ w + 0.3 * rng.normal(size=n) > 0).astype(int)
    return frame


def _serve_shifted(store: DuckDBStore) -> tuple[Monitor, Any, pd.DataFrame]:
    """A champion trained on one relation, serving traffic that follows another."""
    rng = np.random.default_rng(0)
    reference = _frame(rng, 2000, np.array([2.0, 0.0, 0.5]))
    champion = LogisticRegression().fit(reference[FEATURES], reference["y"])
    recent = _frame(rng, 1500, np.array([0.0, 2.0, 0.5]))
    monitor = Monitor(MODEL, store, resources=False)
    ids = [f"r{i}" for i in range(len(recent))]
    monitor.log(ids, recent[FEATURES], champion.predict(recent[FEATURES]))
    monitor.log_labels(ids, recent["y"].to_numpy())
    monitor.flush()
    return monitor, champion, reference


def test_unknown_model_is_404_with_the_error_shape(store: DuckDBStore) -> None:
    with TestClient(create_app(store)) as client:
        for tail in ("versions", "loop"):
            r = client.get(_url("nobody", tail))
            assert r.status_code == 404, r.text
            body = r.json()
            assert set(body) == {"error", "detail"} and "'nobody'" in body["error"]


def test_a_model_without_loop_records_has_empty_documents(store: DuckDBStore) -> None:
    monitor = Monitor(MODEL, store, resources=False)
    monitor.log(["a", "b"], {"x0": [0.1, 0.2]}, [0, 1])
    monitor.flush()
    with TestClient(create_app(store)) as client:
        versions = client.get(_url(MODEL, "versions"))
        assert versions.status_code == 200, versions.text
        assert versions.json() == {
            "schema": "tunelens.versions/1",
            "model": MODEL,
            "versions": [],
            "events": [],
            "champion": None,
        }
        loop = client.get(_url(MODEL, "loop"))
        assert loop.status_code == 200, loop.text
        assert loop.json() == {"schema": "tunelens.loop/1", "model": MODEL, "runs": []}
    monitor.close()


def test_a_real_loop_run_is_served(store: DuckDBStore) -> None:
    monitor, champion, reference = _serve_shifted(store)
    loop = Loop(
        monitor,
        trainer=LogisticRegression(),
        champion=champion,
        reference=reference,
        target="y",
        n_trials=4,
        policy="auto",
    )
    run = loop.run()
    assert run.promoted  # the scenario's premise: a concept shift the challenger fixes
    with TestClient(create_app(store)) as client:
        versions = client.get(_url(MODEL, "versions")).json()
        loop_doc = client.get(_url(MODEL, "loop")).json()
    assert versions["schema"] == "tunelens.versions/1" and versions["model"] == MODEL
    assert versions["champion"] == run.challenger != "1"
    by_name = {v["version"]: v for v in versions["versions"]}
    assert set(by_name) == {"1", run.challenger}
    assert by_name[run.challenger]["parent"] == "1"
    assert by_name[run.challenger]["source"] == "tune"
    assert by_name[run.challenger]["run"] == run.run
    metric = "holdout_" + run.comparison["metric"]
    assert by_name[run.challenger]["metrics"][metric] == pytest.approx(run.comparison["challenger"])
    assert [(e["action"], e["version"]) for e in versions["events"]] == [
        ("promote", "1"),
        ("promote", run.challenger),
    ]
    assert versions["events"][-1]["previous"] == "1"
    assert versions["events"][-1]["decision"]["action"] == "promote"
    # the same document the registry reads
    assert versions == json.loads(json.dumps(VersionRegistry(store, MODEL).to_dict()))

    assert loop_doc["schema"] == "tunelens.loop/1" and loop_doc["model"] == MODEL
    (served,) = loop_doc["runs"]
    assert served["run"] == run.run and served["challenger"] == run.challenger
    assert served["decision"]["action"] == "promote" and served["promoted"] is True
    assert served["comparison"]["p_value"] == pytest.approx(run.comparison["p_value"])
    assert served["comparison"]["difference"] > 0.05
    assert "recent rows only" in served["plan"]["data_rule"]
    assert any(f["kind"] == "metric_drop" for f in served["findings"])
    monitor.close()


def _run_doc(run: str, started: str, **extra: Any) -> dict[str, Any]:
    """A run of the documented shape, as an older loop might have written it."""
    return {
        "schema": "tunelens.loop/1",
        "run": run,
        "started": started,
        "rows": {"recent": 800, "reference": 2000},
        "findings": [],
        "plan": {"data_rule": "the reference and the recent rows"},
        "comparison": {
            "metric": "accuracy",
            "champion": 0.81,
            "challenger": 0.8,
            "difference": -0.01,
            "p_value": math.nan,  # stored by json.dumps as NaN: served as null
            "test": "mcnemar",
            "summary": "no significant difference",
        },
        "decision": {"action": "keep_champion", "reason": "not significantly better"},
        "champion": "1",
        "challenger": f"1.{run}",
        "promoted": False,
        **extra,
    }


def test_stored_runs_are_served_oldest_first_and_json_safe(store: DuckDBStore) -> None:
    monitor = Monitor(MODEL, store, resources=False)
    monitor.log(["a"], {"x0": [0.1]}, [0])
    monitor.flush()
    trigger = {
        "kind": "alert",
        "alert_id": "a1",
        "rule": "accuracy-floor",
        "fired_at": "2026-01-05T12:00:00+00:00",
        "severity": "high",
        "evidence": 'accuracy 0.61 < 0.8 over <1h> "window"',
        "window_start": "2026-01-05T11:00:00+00:00",
    }
    runs = [
        _run_doc("aaa", "2026-01-05T12:01:00+00:00", trigger=trigger),
        _run_doc("bbb", "2026-01-06T12:01:00+00:00"),  # older record: no trigger, no status
    ]
    store.put_blob(MODEL, "loop", json.dumps({"schema": "tunelens.loop/1", "runs": runs}).encode())
    with TestClient(create_app(store)) as client:
        r = client.get(_url(MODEL, "loop"))
    assert r.status_code == 200, r.text
    served = r.json()["runs"]
    assert [s["run"] for s in served] == ["aaa", "bbb"]
    assert served[0]["trigger"] == trigger  # user text comes back verbatim
    assert served[0]["comparison"]["p_value"] is None
    assert "trigger" not in served[1] and served[1]["comparison"]["difference"] == -0.01
    monitor.close()


def test_reads_need_the_token_when_reads_are_protected(store: DuckDBStore) -> None:
    monitor = Monitor(MODEL, store, resources=False)
    monitor.log(["a"], {"x0": [0.1]}, [0])
    monitor.flush()
    app = create_app(store, Settings(token="s3cret", protect_reads=True))
    with TestClient(app) as client:
        for tail in ("versions", "loop"):
            assert client.get(_url(MODEL, tail)).status_code == 401
            ok = client.get(_url(MODEL, tail), headers={"Authorization": "Bearer s3cret"})
            assert ok.status_code == 200, ok.text
    monitor.close()


def test_the_routes_are_in_the_openapi_schema(store: DuckDBStore) -> None:
    with TestClient(create_app(store)) as client:
        paths = client.get("/openapi.json").json()["paths"]
    for tail in ("versions", "loop"):
        operation = paths[f"/api/v1/models/{{model}}/{tail}"]["get"]
        assert operation["tags"] == ["read"]
        assert "404" in operation["responses"]
