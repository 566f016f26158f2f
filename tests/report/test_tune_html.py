"""HTML pages of tuning (``tunelens.tune/1``) and compression (``tunelens.compress/1``) results.

The tuning documents come from real, tiny ``tunelens.tune`` runs; the compression document
is hand-built to the ``tunelens.compress/1`` schema. Checks the numbers on the page, the
figures' data, escaping of hostile strings, that nothing refers to the network, atomic
writes, and (when Debian's Chromium is present) that the page draws with no console error.
"""

from __future__ import annotations

import copy
import html
import json
import os
import pathlib
import re
import subprocess
import sys
from typing import Any

import optuna
import pytest

from tunelens.report import tune_html
from tunelens.report.html import _num
from tunelens.report.tune_html import (
    render_compress_html,
    render_tune_html,
    write_compress_html,
    write_tune_html,
)
from tunelens.tune import Constraint, measure, tune

optuna.logging.set_verbosity(optuna.logging.WARNING)

HOSTILE = '<script>alert("x")</script>&<b>'
HOSTILE_IMG = "<img src=x onerror=alert(1)>"
BLOB_RE = re.compile(r'(<script type="application/octet-stream"[^>]*>)([^<]*)(</script>)')
FIGURES_RE = re.compile(
    r'<script type="application/json" id="([^"]+)-figures">(.*?)</script>', re.S
)
CHROMIUM = pathlib.Path("/usr/bin/chromium")


def _outside_blob(page: str) -> str:
    return BLOB_RE.sub(r"\1\3", page)


def _figures(page: str) -> list[dict[str, Any]]:
    match = FIGURES_RE.search(page)
    return [] if match is None else list(json.loads(match.group(2))["figures"])


def _figure(page: str, title_start: str) -> dict[str, Any]:
    return next(f for f in _figures(page) if f["layout"]["title"]["text"].startswith(title_start))


def _section(page: str, key: str) -> str:
    start = page.index(f"tl-section tl-{key}")
    return page[start : page.index("</section>", start)]


def _objective(trial: optuna.Trial) -> float:
    """A curve over 5 "epochs" that ASHA can prune; cost is a measurement for a constraint."""
    x = trial.suggest_float("x", 0.0, 1.0)
    kind = trial.suggest_categorical("kind", ["plain", HOSTILE])
    measure(trial, "cost", 10 * x)
    value = 0.0
    for epoch in range(1, 6):
        value = x * (1 - 0.5**epoch) + (0.05 if kind == "plain" else 0.0)
        trial.set_user_attr("tunelens.epochs", epoch)
        trial.report(value, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return value


@pytest.fixture(scope="module")
def tuned() -> Any:
    return tune(
        _objective,
        constraints=[Constraint("cost", "<=", 6)],
        n_trials=6,
        seed=0,
        study_name=f"study {HOSTILE}",
    )


@pytest.fixture(scope="module")
def tuned_multi() -> Any:
    def two(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 0.0, 1.0)
        y = trial.suggest_float("y", 0.0, 1.0)
        return x + 0.1 * y, 1.0 + 5 * x * x

    return tune(
        two,
        metric=["accuracy", "latency_ms"],
        direction=["maximize", "minimize"],
        n_trials=6,
        seed=1,
        pruner="none",
    )


@pytest.fixture()
def compress_doc() -> dict[str, Any]:
    chosen = {
        "name": "int8 dynamic",
        "method": "quantize_dynamic",
        "settings": {"dtype": "qint8"},
        "runtime": "torch",
        "metric": 0.9690,
        "drop": 0.0022,
        "latency_p50_ms": 0.61,
        "latency_p99_ms": 1.13,
        "model_bytes": 345_678,
        "speedup": 2.049,
        "size_ratio": 3.571,
        "feasible": True,
        "why_not": None,
    }
    return {
        "schema": "tunelens.compress/1",
        "metric": "accuracy",
        "max_drop": 0.01,
        "constraints": [{"name": "latency_p99_ms", "op": "<=", "bound": 2.0}],
        "baseline": {
            "name": "original",
            "runtime": "torch",
            "metric": 0.9712,
            "latency_p50_ms": 1.25,
            "latency_p99_ms": 2.5,
            "model_bytes": 1_234_567,
        },
        "chosen": chosen,
        "improved": True,
        "notes": ["export skipped: onnxruntime is not installed"],
        "candidates": [
            chosen,
            {
                "name": f"prune 70% {HOSTILE_IMG}",
                "method": "prune",
                "settings": {"amount": 0.7},
                "runtime": "torch",
                "metric": 0.9301,
                "drop": 0.0411,
                "latency_p50_ms": 1.21,
                "latency_p99_ms": 2.43,
                "model_bytes": 1_234_000,
                "speedup": 1.033,
                "size_ratio": 1.0005,
                "feasible": False,
                "why_not": f"accuracy drop 0.0411 > max_drop 0.01 {HOSTILE}",
            },
            {
                "name": "distil width 32",
                "method": "distill",
                "settings": {"width": 32},
                "runtime": "torch",
                "metric": 0.9650,
                "drop": 0.0062,
                "latency_p50_ms": 0.42,
                "latency_p99_ms": 0.97,
                "model_bytes": 98_765,
                "speedup": 2.976,
                "size_ratio": 12.5,
                "feasible": True,
                "why_not": "slower than int8 dynamic at equal accuracy? no: lower accuracy",
            },
        ],
    }


# ---------------------------------------------------------------- tune page


def test_tune_page_summary_and_table(tuned: Any) -> None:
    doc = tuned.to_dict()
    page = render_tune_html(doc, tuned.study)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    trials = doc["trials"]
    states = [t["state"] for t in trials]
    assert len(trials) == 6 and "PRUNED" in states  # ASHA pruned some of the six
    assert f"<dd>6 ({states.count('COMPLETE')} complete, {states.count('PRUNED')} pruned)" in page
    best = doc["best"]
    summary = _section(page, "summary")
    assert f"trial <b>#{best['number']}</b>" in summary
    assert f"<b>{_num(best['value'], 6)}</b>" in summary
    if doc["feasible"]:
        assert "Feasible</span>: it meets every constraint" in summary
        assert best["measurements"]["cost"] <= 6
    else:
        assert "Not feasible" in summary and "Blocked by" in summary
    assert "cost &lt;= 6" in page  # the constraint, escaped
    table = _section(page, "trials")
    rows = re.findall(r"<tr(?: class=\"([^\"]*)\")?><td>(\d+)</td>", table)
    assert [int(n) for _, n in rows] == [t["number"] for t in trials]
    assert dict((int(n), cls) for cls, n in rows)[best["number"]] == "tl-chosen"
    for t in trials:
        if t["state"] == "COMPLETE":
            assert f"<td>{_num(t['value'], 6)}</td>" in table
        assert f"<td>{_num(t['params']['x'])}</td>" in table
        assert t["compute"] is not None
    # epochs trained: complete trials ran all 5, pruned ones fewer; the total is in the header
    assert all(t["compute"] == 5 for t in trials if t["state"] == "COMPLETE")
    assert any(t["compute"] < 5 for t in trials if t["state"] == "PRUNED")
    total = sum(t["compute"] for t in trials)
    assert f"<dd>{total:,}</dd>" in page


def test_tune_history_figure(tuned: Any) -> None:
    doc = tuned.to_dict()
    page = render_tune_html(doc, tuned.study)
    fig = _figure(page, "Optimisation history")
    by_name = {t["name"]: t for t in fig["data"]}
    complete = {t["number"]: t["value"] for t in doc["trials"] if t["state"] == "COMPLETE"}
    points: dict[int, float] = {}
    for name in ("complete, feasible", "complete, infeasible"):
        if name in by_name:
            points |= dict(zip(by_name[name]["x"], by_name[name]["y"], strict=True))
    assert points.keys() == complete.keys()
    for number, value in complete.items():
        assert points[number] == pytest.approx(value, rel=1e-5)
    pruned = [t["number"] for t in doc["trials"] if t["state"] == "PRUNED"]
    assert by_name["pruned"]["x"] == pruned
    # with the study, pruned trials sit at their last reported value
    for number, y in zip(by_name["pruned"]["x"], by_name["pruned"]["y"], strict=True):
        frozen = tuned.study.trials[number]
        last = frozen.intermediate_values[max(frozen.intermediate_values)]
        assert y == pytest.approx(last, rel=1e-5)
    best_line = next(t for t in fig["data"] if t["name"].startswith("best so far"))
    assert best_line["y"] == sorted(best_line["y"])  # maximise: never goes down
    feasible = [t["value"] for t in doc["trials"] if t["state"] == "COMPLETE" and t["feasible"]]
    if feasible:
        assert best_line["y"][-1] == pytest.approx(max(feasible), rel=1e-5)


def test_tune_importances_from_study_and_fallback(tuned: Any) -> None:
    doc = tuned.to_dict()
    with_study = _section(render_tune_html(doc, tuned.study), "importances")
    assert "optuna.importance.get_param_importances" in with_study
    expected = optuna.importance.get_param_importances(tuned.study)
    for name, value in expected.items():
        assert f"<td><code>{html.escape(name)}</code></td><td>{_num(value, 3)}</td>" in with_study
    without = _section(render_tune_html(doc), "importances")
    assert "rank correlation" in without and "optuna.importance" not in without
    assert "<code>x</code>" in without and "<code>kind</code>" in without


def test_fallback_importance_ranks_the_parameter_that_matters() -> None:
    trials = [
        {
            "number": i,
            "state": "COMPLETE",
            "value": x,
            "params": {"x": x, "noise": n},
            "feasible": True,
        }
        for i, (x, n) in enumerate([(0.1, 3), (0.5, 1), (0.3, 2), (0.9, 2), (0.7, 1), (0.2, 3)])
    ]
    page = render_tune_html({"metric": "accuracy", "trials": trials, "best": trials[3]})
    section = _section(page, "importances")
    assert section.index("<code>x</code>") < section.index("<code>noise</code>")
    assert "<td><code>x</code></td><td>" in section
    fig = _figure(page, "Parameter importances")
    bars = fig["data"][0]
    values = dict(zip(bars["y"], bars["x"], strict=True))
    assert values["x"] > values["noise"] and sum(values.values()) == pytest.approx(1.0, abs=1e-4)


def test_importances_absent_says_why() -> None:
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    doc = {
        "metric": "value",
        "direction": "minimize",
        "trials": [
            {"number": 0, "state": "COMPLETE", "value": study.trials[0].value, "params": {}}
        ],
    }
    section = _section(render_tune_html(doc, study), "importances")
    assert "only 1 complete trial(s) in the study" in section
    assert 'class="tl-figure"' not in section


def test_tune_pareto_single_objective_against_constraint(tuned: Any) -> None:
    doc = tuned.to_dict()
    page = render_tune_html(doc, tuned.study)
    fig = _figure(page, "Pareto front")
    xs = {n: t["measurements"]["cost"] for t in doc["trials"] for n in [t["number"]]}
    for trace in fig["data"]:
        if trace.get("customdata"):
            for number, x in zip(trace["customdata"], trace["x"], strict=True):
                assert x == pytest.approx(xs[number], rel=1e-5)
    front = next((t for t in fig["data"] if t["name"] == "Pareto front"), None)
    assert sorted(front["customdata"] if front else []) == sorted(doc["pareto"])
    assert fig["layout"]["shapes"][0]["x0"] == 6  # the constraint's bound


def test_tune_multi_objective(tuned_multi: Any) -> None:
    doc = tuned_multi.to_dict()
    assert doc["objectives"] == ["accuracy", "latency_ms"]
    page = render_tune_html(doc, tuned_multi.study)
    assert "<code>accuracy</code> (maximize), <code>latency_ms</code> (minimize)" in page
    history = _figure(page, "Optimisation history")
    assert len([t for t in history["data"] if t["name"].startswith("best so far")]) == 2
    pareto = _figure(page, "Pareto front")
    front = next(t for t in pareto["data"] if t["name"] == "Pareto front")
    assert sorted(front["customdata"]) == sorted(doc["pareto"])
    values = {t["number"]: t["values"] for t in doc["trials"]}
    for number, x, y in zip(front["customdata"], front["x"], front["y"], strict=True):
        assert (x, y) == (
            pytest.approx(values[number][0], rel=1e-5),
            pytest.approx(values[number][1], rel=1e-5),
        )
    importances = _section(page, "importances")
    assert "<th>accuracy</th><th>latency_ms</th>" in importances
    table = _section(page, "trials")
    for v in values.values():
        assert f"<td>{_num(v[1], 6)}</td>" in table


def test_tune_estimator_entry_shows_space_and_explanation() -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    res = tune(LogisticRegression(max_iter=200), data=(X, y), n_trials=4, seed=0)
    doc = res.to_dict()
    page = render_tune_html(doc, res.study)
    header = page[page.index('class="tl-header"') : page.index("</header>")]
    for name in doc["space"]:
        assert f"<code>{html.escape(name)}</code>" in header
    for sentence in doc["explanation"]:
        assert f"<li>{html.escape(sentence)}</li>" in page
    table = _section(page, "trials")
    assert "latency_p99_ms" in table and "model_bytes" in table
    for t in doc["trials"]:  # sizes are whole numbers, shown with thousands separators
        if t["state"] == "COMPLETE":
            assert f"<td>{int(t['measurements']['model_bytes']):,}</td>" in table


def test_tune_hostile_strings_are_escaped(tuned: Any) -> None:
    doc = copy.deepcopy(tuned.to_dict())
    doc["explanation"] = [f"because {HOSTILE_IMG}"]
    doc["constraints"][0]["name"] = HOSTILE_IMG
    page = render_tune_html(doc, tuned.study)
    assert HOSTILE not in page and HOSTILE_IMG not in page
    assert "<script>alert" not in page
    assert html.escape(f"study {HOSTILE}") in page  # the study name
    assert html.escape(HOSTILE) in _section(page, "trials")  # a categorical choice
    assert f"<li>because {html.escape(HOSTILE_IMG)}</li>" in page
    match = FIGURES_RE.search(page)
    assert match is not None and "</" not in match.group(2)
    assert len(re.findall(r"<script\b", page)) == 3  # the renderer's own three


@pytest.mark.parametrize("render", ["tune", "compress"])
def test_no_network_reference(tuned: Any, compress_doc: dict[str, Any], render: str) -> None:
    if render == "tune":
        page = render_tune_html(tuned.to_dict(), tuned.study)
    else:
        page = render_compress_html(compress_doc)
    outside = _outside_blob(page)
    assert len(outside) < len(page) - 1_000_000  # plotly.js was embedded and is cut out
    lowered = outside.lower()
    assert "http://" not in lowered and "https://" not in lowered
    assert "<link" not in lowered and "@import" not in lowered
    assert "default-src 'none'" in page


def test_tune_minimal_and_odd_documents() -> None:
    docs: tuple[dict[str, Any], ...] = (
        {},
        {"trials": []},
        {"best": None, "trials": [{"number": 0, "state": "FAIL", "error": "boom <x>"}]},
        {"metric": ["a", "b"], "direction": ["maximize"], "trials": [{"state": "COMPLETE"}]},
        {"trials": [{"number": 0, "state": "COMPLETE", "value": float("nan"), "params": None}]},
        {"constraints": [{"name": "c"}], "blocked_by": [{"constraint": None}], "pareto": [None]},
    )
    for doc in docs:
        page = render_tune_html(doc)
        assert page.startswith("<!DOCTYPE html>")
    page = render_tune_html({"best": None, "trials": [{"number": 0, "state": "FAIL"}]})
    assert "No trial completed" in page and "No complete trial to draw" in page
    fail = render_tune_html({"trials": [{"number": 0, "state": "FAIL", "error": "boom <x>"}]})
    assert "fail (boom &lt;x&gt;)" in fail
    with pytest.raises(TypeError):
        render_tune_html([])  # type: ignore[arg-type]
    fragment = render_tune_html({}, full_page=False)
    assert fragment.startswith('<div class="tunelens-report"') and "<html" not in fragment


# ---------------------------------------------------------------- compress page


def test_compress_page(compress_doc: dict[str, Any]) -> None:
    page = render_compress_html(compress_doc)
    summary = _section(page, "summary")
    assert "<code>int8 dynamic</code> (quantize_dynamic, torch)" in summary
    assert "<li>export skipped: onnxruntime is not installed</li>" in summary
    assert "<code>latency_p99_ms &lt;= 2</code>" in page  # the constraint, in the header
    table = _section(page, "candidates")
    rows = re.findall(r"<tr(?: class=\"([^\"]*)\")?>(.*?)</tr>", table)
    body = rows[1:]  # the header row first
    assert len(body) == 4  # baseline + 3 candidates
    assert body[0][1].startswith("<td><b>original</b></td>")
    assert "<td>0.9712</td>" in body[0][1] and "<td>1,234,567</td>" in body[0][1]
    chosen = [r for cls, r in body if cls == "tl-chosen"]
    assert len(chosen) == 1 and "int8 dynamic" in chosen[0] and "(chosen)" in chosen[0]
    for number in ("0.969", "0.0022", "0.61", "1.13", "345,678", "2.05", "3.57", "torch"):
        assert f"<td>{number}</td>" in chosen[0]
    infeasible = [r for cls, r in body if cls == "tl-flag"]
    assert len(infeasible) == 1
    assert html.escape(compress_doc["candidates"][1]["why_not"]) in infeasible[0]
    assert "lower accuracy" in table  # the why_not of a feasible one not chosen
    # a feasible candidate with an empty why_not is compared with the chosen one
    doc = copy.deepcopy(compress_doc)
    doc["candidates"][2]["why_not"] = ""
    table = _section(render_compress_html(doc), "candidates")
    assert "<td>feasible; not chosen</td>" in table  # faster and smaller: another reason
    doc["candidates"][2] |= {"latency_p50_ms": 0.75}
    table = _section(render_compress_html(doc), "candidates")
    assert "feasible, but slower than the chosen one (p50 0.75 vs 0.61 ms)" in table
    assert "<th>why not chosen</th>" in table


def test_compress_figure(compress_doc: dict[str, Any]) -> None:
    page = render_compress_html(compress_doc)
    fig = _figure(page, "Metric, latency and size")
    chosen = [t for t in fig["data"] if t["name"] == "chosen"]
    assert [(t["x"][0], t["y"][0]) for t in chosen] == [(0.61, 0.969), (345678, 0.969)]
    assert chosen[0]["marker"]["symbol"] == "star"
    base = [t for t in fig["data"] if t["name"] == "original"]
    assert base[0]["x"] == [1.25] and base[0]["y"] == [0.9712]
    assert fig["layout"]["shapes"][0]["y0"] == pytest.approx(0.9712 - 0.01)
    texts = [s for t in fig["data"] for s in t.get("text", [])]
    assert html.escape(f"prune 70% {HOSTILE_IMG}", quote=False) in texts


def test_compress_nothing_chosen_and_escaping(compress_doc: dict[str, Any]) -> None:
    # as compress() reports it: chosen is the original's record, with what it misses
    original = dict(compress_doc["baseline"], why_not="latency_p99_ms 2.5 > 2", feasible=False)
    doc = dict(compress_doc, chosen=original, improved=False)
    doc["candidates"] = [c for c in doc["candidates"] if c["name"] != "int8 dynamic"]
    doc["candidates"][1] = dict(doc["candidates"][1], feasible=False)
    page = render_compress_html(doc)
    assert "No candidate chosen</span>: none kept the metric within" in page
    assert "The original itself misses: latency_p99_ms 2.5 &gt; 2." in page
    assert 'class="tl-chosen"' not in page
    assert HOSTILE not in page and HOSTILE_IMG not in page
    assert html.escape(f"prune 70% {HOSTILE_IMG}") in page
    assert len(re.findall(r"<script\b", page)) == 3


def test_compress_minimal_documents() -> None:
    docs: tuple[dict[str, Any], ...] = (
        {},
        {"candidates": []},
        {"baseline": None, "chosen": "x", "candidates": [{"name": "x", "metric": None}]},
        {"candidates": [{"name": "a", "metric": 1.0, "latency_p99_ms": float("inf")}]},
    )
    for doc in docs:
        page = render_compress_html(doc)
        assert page.startswith("<!DOCTYPE html>")
    assert 'data-figures="0"' in render_compress_html({})
    with pytest.raises(TypeError):
        render_compress_html("nope")  # type: ignore[arg-type]


# ---------------------------------------------------------------- writing


def test_write_pages(tuned: Any, compress_doc: dict[str, Any], tmp_path: pathlib.Path) -> None:
    a = write_tune_html(tuned.to_dict(), tmp_path / "out" / "tune.html", tuned.study)
    b = write_compress_html(compress_doc, str(tmp_path / "out" / "compress.html"))
    assert a == tmp_path / "out" / "tune.html" and b == tmp_path / "out" / "compress.html"
    assert a.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert "int8 dynamic" in b.read_text(encoding="utf-8")
    assert sorted(os.listdir(tmp_path / "out")) == ["compress.html", "tune.html"]


def test_write_is_atomic(
    compress_doc: dict[str, Any], tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "compress.html"
    target.write_text("old", encoding="utf-8")

    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(tune_html, "_compress_table", fail)
    with pytest.raises(OSError, match="disk full"):
        write_compress_html(compress_doc, target)
    assert target.read_text(encoding="utf-8") == "old"
    monkeypatch.undo()
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_compress_html(compress_doc, target)
    assert os.listdir(tmp_path) == ["compress.html"]
    assert target.read_text(encoding="utf-8") == "old"


# ---------------------------------------------------------------- in a browser


def _draw_in_chromium(browser: Any, path: pathlib.Path) -> None:
    """Open ``path``; every figure must draw, with no error and no request but the file."""
    url = path.resolve().as_uri()
    page = browser.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.goto(url)
        page.wait_for_function(
            "() => document.querySelector('div.tunelens-report')"
            ".getAttribute('data-drawn') !== null",
            timeout=30_000,
        )
        state = page.evaluate(
            "() => document.querySelector('div.tunelens-report').getAttribute('data-drawn')"
        )
        drawn = page.evaluate(
            "() => document.querySelectorAll('div.tl-figure.js-plotly-plot').length"
        )
        expected = page.evaluate("() => document.querySelectorAll('div.tl-figure').length")
    finally:
        page.close()
    assert state == "true", path
    assert drawn == expected > 0
    assert errors == [], errors
    assert requests == [url], requests


@pytest.mark.slow
@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} does not exist (apt install chromium)"
)
def test_pages_draw_in_chromium(
    tuned: Any, tuned_multi: Any, compress_doc: dict[str, Any], tmp_path: pathlib.Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    pages = [
        write_tune_html(tuned.to_dict(), tmp_path / "tune.html", tuned.study),
        write_tune_html(tuned_multi.to_dict(), tmp_path / "multi.html", tuned_multi.study),
        write_compress_html(compress_doc, tmp_path / "compress.html"),
    ]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            for path in pages:
                _draw_in_chromium(browser, path)
        finally:
            browser.close()


def test_history_best_line_over_all_trials_when_none_is_feasible() -> None:
    trials = [
        {"number": i, "state": "COMPLETE", "value": v, "params": {"x": v}, "feasible": False}
        for i, v in enumerate([0.5, 0.3, 0.8, 0.6])
    ]
    doc = {
        "metric": "accuracy",
        "constraints": [{"name": "latency_p99_ms", "op": "<=", "bound": 1.0}],
        "trials": trials,
        "best": trials[2],
        "feasible": False,
        "blocked_by": [
            {"constraint": "latency_p99_ms <= 1", "value": 2.5, "bound": 1.0, "violation": 1.5}
        ],
    }
    page = render_tune_html(doc)
    fig = _figure(page, "Optimisation history")
    line = next(t for t in fig["data"] if t["name"].startswith("best so far"))
    assert line["name"] == "best so far" and line["y"] == [0.5, 0.5, 0.8, 0.8]
    summary = _section(page, "summary")
    assert "Not feasible" in summary
    assert (
        "<td><code>latency_p99_ms &lt;= 1</code></td><td>2.5</td><td>1</td><td>1.5</td>" in summary
    )


def test_import_is_light() -> None:
    """Importing the renderers loads neither plotly nor optuna (until a render)."""
    code = (
        "import sys, tunelens.report.tune_html; "
        "print(sorted(m for m in sys.modules if m.startswith(('plotly', 'optuna', 'torch'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]"


def test_compress_page_from_a_real_compress_run() -> None:
    torch = pytest.importorskip("torch", reason="compress() needs PyTorch")
    from sklearn.datasets import load_digits

    from tunelens.tune import compress
    from tunelens.tune.models import MLP

    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype("float32")
    torch.manual_seed(0)
    model = MLP(64, 10, width=32, depth=1)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(40):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.tensor(X)), torch.tensor(y)).backward()
        opt.step()
    res = compress(model.eval(), data=(X, y), max_drop=0.02, methods=["quantize_dynamic"])
    doc = res.to_dict()
    page = render_compress_html(doc)
    table = _section(page, "candidates")
    assert len(re.findall(r"<tr", table)) == len(doc["candidates"]) + 2  # header + original
    for c in doc["candidates"]:
        assert html.escape(c["name"]) in table
        if c["metric"] is not None:
            assert f"<td>{c['model_bytes']:,}</td>" in table
    assert f"<td>{doc['baseline']['model_bytes']:,}</td>" in table
    if doc["improved"]:
        assert f"<code>{html.escape(doc['chosen']['name'])}</code> <b>(chosen)</b>" in table
        fig = _figure(page, "Metric, latency and size")
        star = next(t for t in fig["data"] if t["name"] == "chosen")
        assert star["y"][0] == pytest.approx(doc["chosen"]["metric"], rel=1e-5)
    else:
        assert "No candidate chosen" in page
