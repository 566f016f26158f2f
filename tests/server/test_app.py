"""The HTTP service through FastAPI's TestClient: ingestion, queries, errors, /metrics."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tunelens.server import Settings, create_app
from tunelens.store import DuckDBStore

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def _records(n: int, start: int = 0, *, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(start, start + n):
        p = float(rng.random())
        out.append(
            {
                "id": f"r{i}",
                "timestamp": (T0 + timedelta(seconds=i)).isoformat(),
                "prediction": int(p >= 0.5),
                "score": p,
                "latency_ms": float(rng.gamma(2.0, 2.0)),
                "features": {"age": float(rng.normal(40, 10)), "plan": ["a", "b"][i % 2]},
            }
        )
    return out


@pytest.fixture
def store(tmp_path: Path) -> DuckDBStore:
    s = DuckDBStore(tmp_path / "s.duckdb")
    yield s
    s.close()


def client_for(store: DuckDBStore, **settings: Any) -> TestClient:
    return TestClient(create_app(store, Settings(**settings)))


def test_predictions_and_labels_round_trip(store: DuckDBStore) -> None:
    with client_for(store) as client:
        r = client.post("/api/v1/models/churn/predictions", json={"records": _records(300)})
        assert r.status_code == 202, r.text
        assert r.json() == {"accepted": 300}
        labels = [{"id": f"r{i}", "label": i % 2} for i in range(0, 300, 3)]
        labels.append({"id": "never-predicted", "label": 1})
        r = client.post("/api/v1/models/churn/labels", json={"records": labels})
        assert r.status_code == 202 and r.json() == {"accepted": 101, "matched": 100}
        models = client.get("/api/v1/models").json()["models"]
        assert models[0]["name"] == "churn" and models[0]["task"] == "binary"
        assert models[0]["predictions"] == 300 and set(models[0]["features"]) == {"age", "plan"}
        metrics = client.get(
            "/api/v1/models/churn/metrics", params={"window": "1h", "since": T0.isoformat()}
        ).json()
        (window,) = metrics["windows"]
        assert window["rows"] == 300 and window["labelled_rows"] == 100
        assert 0.0 <= window["accuracy"] <= 1.0 and window["latency_p99"] > 0
    scanned = store.scan("churn")
    assert scanned.num_rows == 300 and scanned.column("label").null_count == 200


def test_columnar_bodies(store: DuckDBStore) -> None:
    n = 2000
    rng = np.random.default_rng(1)
    table = pa.table(
        {
            "id": [f"c{i}" for i in range(n)],
            "timestamp": pa.array(
                [T0 + timedelta(seconds=i) for i in range(n)], pa.timestamp("us", "UTC")
            ),
            "prediction": rng.integers(0, 3, n),
            "score_0": np.full(n, 0.2),
            "score_1": np.full(n, 0.3),
            "score_2": np.full(n, 0.5),
            "x": rng.normal(size=n),
        }
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    with client_for(store) as client:
        r = client.post(
            "/api/v1/models/m3/predictions",
            content=sink.getvalue().to_pybytes(),
            headers={"content-type": "application/vnd.apache.arrow.stream"},
        )
        assert r.status_code == 202 and r.json() == {"accepted": n}, r.text
        labels = pa.table({"id": [f"c{i}" for i in range(n)], "label": rng.integers(0, 3, n)})
        buf = io.BytesIO()
        pq.write_table(labels, buf)
        r = client.post(
            "/api/v1/models/m3/labels",
            content=buf.getvalue(),
            headers={"content-type": "application/vnd.apache.parquet"},
        )
        assert r.status_code == 202 and r.json() == {"accepted": n, "matched": n}, r.text
        r = client.post(
            "/api/v1/models/m3/labels",
            content=b"not parquet",
            headers={"content-type": "application/vnd.apache.parquet"},
        )
        assert r.status_code == 400 and "Parquet" in r.json()["error"]
        r = client.post(
            "/api/v1/models/m3/labels", content=b"a,b", headers={"content-type": "text/csv"}
        )
        assert r.status_code == 415
    assert store.get_model("m3") is not None and store.get_model("m3").task == "multiclass"


def test_invalid_fields_are_named(store: DuckDBStore) -> None:
    with client_for(store) as client:
        records = _records(3)
        del records[1]["prediction"]
        r = client.post("/api/v1/models/m/predictions", json={"records": records})
        assert r.status_code == 422
        body = r.json()
        assert body["error"].startswith("records[1].prediction")
        assert body["detail"][0]["field"] == "records[1].prediction"
        records = _records(3)
        records[2]["score"] = 1.5
        r = client.post("/api/v1/models/m/predictions", json={"records": records})
        assert r.status_code == 422 and "records[2].score" in r.json()["error"]
        r = client.post("/api/v1/models/m/predictions", json={"records": []})
        assert r.status_code == 422 and "records" in r.json()["error"]
        r = client.post("/api/v1/models/m/predictions", content=b"{not json")
        assert r.status_code == 400 and "JSON" in r.json()["error"]
        records = _records(2)
        records[1]["id"] = records[0]["id"]
        r = client.post("/api/v1/models/m/predictions", json={"records": records})
        assert r.status_code == 422 and "ids" in r.json()["error"]
        r = client.post("/api/v1/models/nobody/labels", json={"records": [{"id": 1, "label": 0}]})
        assert r.status_code == 404 and "nobody" in r.json()["error"]
        assert client.get("/api/v1/models/nobody/metrics").status_code == 404
        assert client.get("/api/v1/models/nobody/alerts").status_code == 404
    assert store.get_model("m") is None or store.count("m") == (0, 0)  # nothing written


def test_body_limit_and_token(store: DuckDBStore) -> None:
    with client_for(store, max_body_bytes=2000, token="s3cret") as client:
        big = {"records": _records(50)}
        headers = {"authorization": "Bearer s3cret"}
        assert (
            client.post("/api/v1/models/m/predictions", json=big, headers=headers).status_code
            == 413
        )
        small = {"records": _records(2)}
        r = client.post("/api/v1/models/m/predictions", json=small)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        r = client.post(
            "/api/v1/models/m/predictions", json=small, headers={"authorization": "Bearer nope"}
        )
        assert r.status_code == 401
        r = client.post("/api/v1/models/m/predictions", json=small, headers=headers)
        assert r.status_code == 202
        assert client.get("/api/v1/models").status_code == 200  # reads open by default
    with client_for(store, token="s3cret", protect_reads=True) as client:
        assert client.get("/api/v1/models").status_code == 401
        assert client.get("/api/v1/models", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "name", ['quote"d', "it's", "a/b/c", "x'); DROP TABLE models; --", "ünï ☃"]
)
def test_awkward_model_names_are_stored_verbatim(store: DuckDBStore, name: str) -> None:
    with client_for(store) as client:
        url = f"/api/v1/models/{quote(name, safe='')}/predictions"
        r = client.post(url, json={"records": _records(5)})
        assert r.status_code == 202, r.text
        names = [m["name"] for m in client.get("/api/v1/models").json()["models"]]
        assert names == [name]
        r = client.get(f"/api/v1/models/{quote(name, safe='')}/metrics")
        assert r.status_code == 200 and r.json()["model"] == name


def test_prometheus_metrics_parse_and_carry_every_model(store: DuckDBStore) -> None:
    now = datetime.now(UTC)
    with client_for(store, metrics_window="1h") as client:
        for model in ("alpha", "beta"):
            records = _records(200, seed=3)
            for r in records:
                r["timestamp"] = now.isoformat()
            assert (
                client.post(
                    f"/api/v1/models/{model}/predictions", json={"records": records}
                ).status_code
                == 202
            )
            labels = [{"id": r["id"], "label": r["prediction"]} for r in records[:100]]
            client.post(f"/api/v1/models/{model}/labels", json={"records": labels})
        text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    acc = {s.labels["model"]: s.value for s in families["tunelens_accuracy"].samples}
    assert acc == {"alpha": 1.0, "beta": 1.0}
    rows = {s.labels["model"]: s.value for s in families["tunelens_rows"].samples}
    assert rows == {"alpha": 200.0, "beta": 200.0}
    assert all(s.labels["version"] == "1" for s in families["tunelens_rows"].samples)
    requests = [s for s in families["tunelens_http_requests"].samples if s.name.endswith("_total")]
    assert any(s.labels["status"] == "202" for s in requests)
    assert "tunelens_http_request_duration_seconds" in families


def test_health_docs_and_openapi(store: DuckDBStore) -> None:
    with client_for(store) as client:
        assert client.get("/healthz").json()["status"] == "ok"
        assert client.get("/docs").status_code == 200
        spec = client.get("/openapi.json").json()
        paths = spec["paths"]
        assert "/api/v1/models/{model}/predictions" in paths
        content = paths["/api/v1/models/{model}/predictions"]["post"]["requestBody"]["content"]
        assert {"application/json", "application/vnd.apache.arrow.stream"} <= set(content)
        assert "PredictionBatch" in spec["components"]["schemas"]
        assert client.get("/static/plotly.min.js").status_code == 200
        assert client.get("/static/..%2Fapp.py").status_code == 404


def test_the_app_keeps_no_module_state(tmp_path: Path) -> None:
    a = DuckDBStore(tmp_path / "a.duckdb")
    b = DuckDBStore(tmp_path / "b.duckdb")
    with client_for(a) as ca, client_for(b) as cb:
        ca.post("/api/v1/models/only-a/predictions", json={"records": _records(3)})
        assert [m["name"] for m in cb.get("/api/v1/models").json()["models"]] == []
        assert json.loads(ca.get("/api/v1/models").text)["models"][0]["name"] == "only-a"
    a.close()
    b.close()


def test_reference_drift_and_report(store: DuckDBStore) -> None:
    rng = np.random.default_rng(5)
    n = 2000
    with client_for(store) as client:
        records = []
        for i in range(n):
            age = float(rng.normal(50, 10))  # shifted from the reference's 40
            p = 1 / (1 + np.exp(-(age - 45) / 5))
            records.append(
                {
                    "id": f"q{i}",
                    "timestamp": (T0 + timedelta(seconds=i)).isoformat(),
                    "prediction": int(p >= 0.5),
                    "score": float(p),
                    "features": {"age": age, "plan": ["a", "b"][i % 2]},
                }
            )
        assert (
            client.post("/api/v1/models/risk/predictions", json={"records": records}).status_code
            == 202
        )
        labels = [{"id": r["id"], "label": int(rng.random() < r["score"])} for r in records]
        client.post("/api/v1/models/risk/labels", json={"records": labels})
        empty = client.get("/api/v1/models/risk/drift").json()
        assert empty["reference"] is None and empty["features"] == {}
        assert client.get("/api/v1/models/risk/report").json()["report"] is None
        assert client.post("/api/v1/models/risk/report").status_code == 422

        age = rng.normal(40, 10, n)
        p = 1 / (1 + np.exp(-(age - 45) / 5))
        reference = pa.table(
            {
                "age": age,
                "plan": [["a", "b"][i % 2] for i in range(n)],
                "label": (rng.random(n) < p).astype(int),
                "prediction": (p >= 0.5).astype(int),
                "score": p,
            }
        )
        buf = io.BytesIO()
        pq.write_table(reference, buf)
        r = client.put(
            "/api/v1/models/risk/reference",
            content=buf.getvalue(),
            headers={"content-type": "application/vnd.apache.parquet"},
        )
        assert r.status_code == 201 and r.json()["rows"] == n, r.text
        drift = client.get("/api/v1/models/risk/drift").json()
        assert drift["reference"]["rows"] == n and drift["current"]["rows"] == n
        assert drift["features"]["age"]["drifted"] and not drift["features"]["plan"]["drifted"]
        assert drift["prediction"]["drifted"]
        r = client.post("/api/v1/models/risk/report")
        assert r.status_code == 201, r.text
        doc = r.json()["report"]
        assert doc["schema"] == "tunelens.report/1" and doc["rows"]["current"] == n
        assert doc["drift"]["features"]["age"]["drifted"]
        assert client.get("/api/v1/models/risk/report").json()["report"]["rows"] == doc["rows"]
        assert client.put("/api/v1/models/nobody/reference", content=b"x").status_code == 404


def test_rules_through_the_api(store: DuckDBStore) -> None:
    with client_for(store) as client:
        assert client.get("/api/v1/rules").json() == {"rules": []}
        rule = {"name": "acc", "kind": "threshold", "metric": "accuracy", "op": "<", "value": 0.9}
        r = client.put("/api/v1/rules", json={"rules": [rule]})
        assert r.status_code == 200 and r.json()["rules"][0]["name"] == "acc"
        assert [x["name"] for x in client.get("/api/v1/rules").json()["rules"]] == ["acc"]
        bad = client.put("/api/v1/rules", json={"rules": [{**rule, "metric": "acuracy"}]})
        assert bad.status_code == 422 and "acuracy" in bad.json()["error"]


def test_drift_and_reference_drop_rules_fire_in_the_server(store: DuckDBStore) -> None:
    from tunelens.monitor.alerts import rules_from_dicts
    from tunelens.server.alerting import AlertLoop

    rules = rules_from_dicts(
        [
            {"name": "drifted", "kind": "drift", "max_share": 0.3, "window": "1h"},
            {
                "name": "below reference",
                "kind": "drop",
                "metric": "accuracy",
                "drop": 0.05,
                "baseline": "reference",
                "window": "1h",
                "min_rows": 100,
            },
        ]
    )
    rng = np.random.default_rng(9)
    n = 1500
    # a complete hour, recent enough for the engine's lookback
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    with client_for(store, rules=list(rules), alert_interval_s=3600) as client:
        records = [
            {
                "id": f"d{i}",
                "timestamp": (start + timedelta(seconds=2 * i)).isoformat(),
                "prediction": 1,
                "score": 0.9,
                "features": {"age": float(rng.normal(60, 5))},
            }
            for i in range(n)
        ]
        client.post("/api/v1/models/risk/predictions", json={"records": records})
        labels = [{"id": r["id"], "label": int(rng.random() < 0.6)} for r in records]
        client.post("/api/v1/models/risk/labels", json={"records": labels})
        reference = pa.table(
            {
                "age": rng.normal(40, 5, n),
                "label": np.ones(n, dtype=int),
                "prediction": np.ones(n, dtype=int),
                "score": np.full(n, 0.9),
            }
        )
        buf = io.BytesIO()
        pq.write_table(reference, buf)
        client.put(
            "/api/v1/models/risk/reference",
            content=buf.getvalue(),
            headers={"content-type": "application/vnd.apache.parquet"},
        )
        service = client.app.app.state.service  # type: ignore[attr-defined]
        AlertLoop(service).evaluate_all(now=start + timedelta(hours=1, minutes=5))
        fired = {a.rule: a for a in store.list_alerts("risk")}
        assert set(fired) == {"drifted", "below reference"}, fired
        assert "accuracy" in fired["below reference"].evidence
        alerts = client.get("/api/v1/models/risk/alerts").json()["alerts"]
        assert {a["rule"] for a in alerts} == {"drifted", "below reference"}
