"""The deploy/ files (Grafana dashboard, Prometheus rules and scrape config) read only the
metrics and labels that a running server's ``/metrics`` exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tunelens.server import create_app
from tunelens.server.prometheus import EXPORTED
from tunelens.store import DuckDBStore

try:
    import yaml
except ImportError:  # pragma: no cover - yaml comes with the dev extra
    yaml = None

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "tunelens.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
SCRAPE = DEPLOY / "prometheus" / "prometheus.yml"

#: Labels that Prometheus attaches to every scraped series.
TARGET_LABELS = {"job", "instance"}
#: Series that Prometheus makes itself, with their labels.
PROMETHEUS_SERIES = {"up": TARGET_LABELS}

_NAME = re.compile(r"\btunelens_[a-z0-9_]+")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_LEGEND = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
_TEMPLATE_LABEL = re.compile(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)")
_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


# ------------------------------------------------------------------- what /metrics exports


def _records(n: int, *, regression: bool = False) -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat()
    out = []
    for i in range(n):
        p = ((i * 37) % 100) / 100
        record: dict[str, Any] = {"id": f"r{i}", "timestamp": now, "latency_ms": 1.0 + i % 7}
        if regression:
            record["prediction"] = 10.0 * p
        else:
            record.update(prediction=int(p >= 0.5), score=p)
        out.append(record)
    return out


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Every series name (and family name) that /metrics exports -> its label names."""
    store = DuckDBStore(tmp_path_factory.mktemp("deploy") / "s.duckdb")
    try:
        with TestClient(create_app(store)) as client:
            for model, regression in (("alpha", False), ("beta", True)):
                records = _records(120, regression=regression)
                r = client.post(f"/api/v1/models/{model}/predictions", json={"records": records})
                assert r.status_code == 202, r.text
                labels = [
                    {"id": rec["id"], "label": rec["prediction"] if i % 3 else 0}
                    for i, rec in enumerate(records[:60])
                ]
                r = client.post(f"/api/v1/models/{model}/labels", json={"records": labels})
                assert r.status_code == 202, r.text
            assert client.get("/api/v1/models/nobody/metrics").status_code == 404
            text = client.get("/metrics").text
    finally:
        store.close()
    families = list(text_string_to_metric_families(text))
    out: dict[str, set[str]] = {}
    empty = []
    for family in families:
        if not family.samples:
            empty.append(family.name)
            continue
        out.setdefault(family.name, set())
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
            out[family.name].update(sample.labels)
    window_labels = out["tunelens_rows"]
    assert window_labels == {"model", "version", "window"}
    for name in empty:  # e.g. resources, logged by the Python monitor only
        assert name.removeprefix("tunelens_") in EXPORTED, name
        out[name] = set(window_labels)
    return {name: labels | TARGET_LABELS for name, labels in out.items()}


def test_metrics_cover_both_models_and_the_server(exposed: dict[str, set[str]]) -> None:
    for name in EXPORTED:
        assert f"tunelens_{name}" in exposed
    assert {"method", "route", "status"} <= exposed["tunelens_http_requests_total"]
    assert "le" in exposed["tunelens_http_request_duration_seconds_bucket"]
    assert {"model", "kind"} <= exposed["tunelens_ingested_rows_total"]


# ---------------------------------------------------------------------------- PromQL checks


def _balanced(text: str, open_at: int) -> str:
    """The text inside the parenthesis that opens at ``open_at``."""
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[open_at + 1 : i]
    raise AssertionError(f"unbalanced parentheses in {text!r}")


def _argument(expr: str, clause: re.Match[str]) -> str:
    """The argument of an aggregation's ``by``/``without`` clause, prefix or suffix form."""
    rest = clause.end()
    while rest < len(expr) and expr[rest].isspace():
        rest += 1
    if rest < len(expr) and expr[rest] == "(":
        return _balanced(expr, rest)
    close = clause.start() - 1
    while close >= 0 and expr[close].isspace():
        close -= 1
    assert close >= 0 and expr[close] == ")", f"no aggregation argument for {clause[0]!r}"
    depth = 0
    for i in range(close, -1, -1):
        depth += {")": 1, "(": -1}.get(expr[i], 0)
        if depth == 0:
            return expr[i + 1 : close]
    raise AssertionError(f"unbalanced parentheses in {expr!r}")


def _labels(names: str) -> set[str]:
    return {label.strip() for label in names.split(",") if label.strip()}


def check_promql(expr: str, exposed: dict[str, set[str]]) -> tuple[set[str], set[str]]:
    """Assert that ``expr`` uses only exported metrics and labels; return the metrics it
    reads and the labels its result may carry."""
    bare = _STRING.sub('""', expr)
    metrics = set(_NAME.findall(bare))
    assert metrics or "up{" in bare.replace(" ", ""), f"no tunelens metric in {expr!r}"
    for name in metrics:
        assert name in exposed, f"{name} (in {expr!r}) is not on /metrics"
    for selector in _SELECTOR.finditer(bare):
        name, matchers = selector.groups()
        known = exposed.get(name, PROMETHEUS_SERIES.get(name))
        assert known is not None, f"{name} (in {expr!r}) is not on /metrics"
        for label in _MATCHER.findall(matchers):
            assert label in known, f"{name} has no label {label!r} (in {expr!r})"
    grouped: set[str] = set()
    for clause in _GROUPING.finditer(bare):
        kind, names = clause.groups()
        labels = _labels(names)
        scope = _argument(bare, clause) if kind in ("by", "without") else bare
        for name in set(_NAME.findall(scope)):
            missing = labels - exposed[name]
            assert not missing, f"{name} has no label {missing} (in {expr!r})"
        if kind == "by":
            grouped |= labels
    result = set().union(*(exposed[m] for m in metrics)) if metrics else set(TARGET_LABELS)
    return metrics, (grouped or result)


# ----------------------------------------------------------------------------- dashboard


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def test_dashboard_is_importable(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "tunelens" and dashboard["title"] == "tunelens"
    assert dashboard["schemaVersion"] >= 36 and dashboard.get("id") is None
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    model = variables["model"]
    assert model["type"] == "query" and model["multi"] and model["includeAll"]
    assert model["datasource"]["uid"] == "${datasource}"
    panels = list(_panels(dashboard["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    rows = {p["title"] for p in panels if p["type"] == "row"}
    assert {"Quality", "Traffic", "Latency", "Resources", "Server"} <= rows
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24 and pos["h"] > 0, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                other = cells.setdefault((x, y), panel["title"])
                assert other == panel["title"], f"{panel['title']} overlaps {other}"
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{panel['title']} has no unit"
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]


def test_dashboard_queries_read_exported_metrics(
    dashboard: dict[str, Any], exposed: dict[str, set[str]]
) -> None:
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        query = query["query"] if isinstance(query, dict) else query
        found = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
        assert found, query
        assert found[2] in exposed[found[1]], query
    read: set[str] = set()
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            expr = target["expr"]
            metrics, labels = check_promql(expr, exposed)
            if any("model" in exposed[m] for m in metrics):
                assert 'model=~"$model"' in expr, f"{panel['title']} ignores $model"
            read |= metrics
            legend = set(_LEGEND.findall(target.get("legendFormat", "")))
            assert legend <= labels, f"{panel['title']}: legend uses {legend - labels}"
    wanted = {
        "accuracy",
        "f1",
        "roc_auc",
        "error_rate",
        "log_loss",
        "rows",
        "labelled_rows",
        "throughput",
        "latency_p50",
        "latency_p99",
        "cpu_percent",
        "rss_bytes",
        "gpu_util_percent",
        "gpu_memory_bytes",
    }
    assert {f"tunelens_{m}" for m in wanted} <= read
    assert {
        "tunelens_ingested_rows_total",
        "tunelens_http_requests_total",
        "tunelens_http_request_duration_seconds_bucket",
    } <= read


# ----------------------------------------------------------------------------- alert rules


def _rules_without_yaml(text: str) -> list[dict[str, Any]]:
    """A minimal reading of the rules (alert, expr, for) for when PyYAML is missing."""
    rules: list[dict[str, Any]] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        found = re.match(r"^(\s*(?:- )?)(alert|expr|for):\s*(.*)$", line)
        if not found:
            continue
        indent, key, value = found.groups()  # the key's column is len(indent)
        if key == "alert":
            rules.append({})
        if value in (">-", ">", "|", "|-"):
            block = []
            for more in lines[i + 1 :]:
                if more.strip() and len(more) - len(more.lstrip()) <= len(indent):
                    break
                block.append(more.strip())
            value = " ".join(b for b in block if b)
        value = value.strip()
        if len(value) > 1 and value[0] == value[-1] == '"':
            value = value[1:-1]
        rules[-1][key] = value
    return rules


def _alert_rules() -> list[dict[str, Any]]:
    text = ALERTS.read_text(encoding="utf-8")
    if yaml is None:
        return _rules_without_yaml(text)
    doc = yaml.safe_load(text)
    assert set(doc) == {"groups"}
    rules = []
    names = [g["name"] for g in doc["groups"]]
    assert len(names) == len(set(names)), "group names repeat"
    for group in doc["groups"]:
        assert set(group) <= {"name", "rules", "interval", "limit", "query_offset"}
        assert group["rules"], group["name"]
        rules.extend(group["rules"])
    return rules


def test_alert_rules_are_well_formed() -> None:
    rules = _alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), "alert names repeat"
    for rule in rules:
        assert _DURATION.match(str(rule["for"])), rule["alert"]
        if yaml is None:
            continue
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
        assert all(isinstance(v, str) for v in rule["annotations"].values())


def test_alert_rules_read_exported_metrics(exposed: dict[str, set[str]]) -> None:
    rules = _alert_rules()
    exprs = {r["alert"]: " ".join(str(r["expr"]).split()) for r in rules}
    for rule in rules:
        _, labels = check_promql(str(rule["expr"]), exposed)
        used = set(_TEMPLATE_LABEL.findall(json.dumps(rule.get("annotations", {}))))
        assert used <= labels, f"{rule['alert']} annotations use {used - labels}"
    assert "tunelens_accuracy < 0.9 and tunelens_labelled_rows >= 500" in exprs.values()
    assert any("tunelens_latency_p99 > 50" in e for e in exprs.values())
    assert any('status=~"5.."' in e and "> 0.01" in e for e in exprs.values())
    assert any("tunelens_f1 offset 1d" in e and "0.95" in e for e in exprs.values())
    assert any('kind="predictions"' in e and "[15m]" in e for e in exprs.values())


def test_scrape_config_points_at_the_server_and_the_rules() -> None:
    text = SCRAPE.read_text(encoding="utf-8")
    if yaml is None:
        assert "localhost:8000" in text and "alerts.yml" in text
        return
    doc = yaml.safe_load(text)
    for rule_file in doc["rule_files"]:
        assert (SCRAPE.parent / rule_file).is_file(), rule_file
    (job,) = [j for j in doc["scrape_configs"] if j["job_name"] == "tunelens"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job.get("scrape_interval", doc["global"]["scrape_interval"]) == "15s"
    assert job["static_configs"][0]["targets"] == ["localhost:8000"]
    # the rules that select on the job name it as the scrape config does
    for job_name in re.findall(r'job="([^"]+)"', ALERTS.read_text(encoding="utf-8")):
        assert job_name == "tunelens"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules_and_config() -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None
    for args in (["check", "rules", str(ALERTS)], ["check", "config", str(SCRAPE)]):
        done = subprocess.run(
            [promtool, *args], capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
