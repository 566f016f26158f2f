"""The dashboard's "Model versions and loop runs" section in real headless Chromium.

`build_loop_story` writes a store holding the whole closed-loop story of one model: hours
of served predictions with late labels whose accuracy drops when the relation between the
features and the label shifts, an accuracy alert firing on it, and a real `tunelens.Loop`
run started by that alert that tunes a challenger and promotes it. The test serves that
store, opens the dashboard, checks the promotion and trigger markers on the accuracy
chart, the run's card (trigger, decision) and the version list against the registry, and
saves a full-page screenshot to ``docs/dashboard-loop.png``. The demo's store
(`tunelens demo`) can replace `build_loop_story` once it leaves the same records.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np
import pandas as pd
import pytest

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard-loop.png"
MODEL = 'team/fraud "v2"'  # a slash and quotes: URLs must encode it, HTML must escape it
FEATURES = ["amount", "tenure", "visits"]
RULE = "accuracy-floor"

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class LoopStory:
    """What `build_loop_story` left in the store, read back from the store's records."""

    store: Path
    model: str
    champion: str  # the registry's champion after the run
    previous: str  # the champion before it
    run: str
    action: str  # the run's decision
    promoted: bool
    alert_rule: str | None  # the rule of the alert that started the run (None: manual)


def _traffic(rng: np.random.Generator, n: int, w: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    X = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=FEATURES)
    y = (X.to_numpy() @ w + 0.3 * rng.normal(size=n) > 0).astype(int)
    return X, y


def build_loop_story(path: Path, *, n_trials: int = 4) -> LoopStory:
    """Write the closed-loop story of `MODEL` into a new DuckDB store at ``path``.

    Six hours of traffic, the last 2.5 of them under a shifted relation (the champion's
    accuracy falls from about 0.95 to about 0.5); the accuracy floor fires on it; the loop
    runs on the rows since the shift, started by that alert, with policy "auto".
    """
    import optuna
    from sklearn.linear_model import LogisticRegression

    from tunelens.loop import Loop
    from tunelens.monitor import Monitor
    from tunelens.monitor.alerts import AlertEngine, rules_from_dicts
    from tunelens.store import DuckDBStore
    from tunelens.store.versions import VersionRegistry

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(3)
    w_old, w_new = np.array([2.0, 0.0, 0.5]), np.array([0.0, 2.0, 0.5])
    X_ref, y_ref = _traffic(rng, 2000, w_old)
    reference = X_ref.assign(y=y_ref)
    champion = LogisticRegression().fit(X_ref, y_ref)

    now = datetime.now(UTC)
    start, end, shift = (
        now - timedelta(hours=6),
        now - timedelta(minutes=2),
        now - timedelta(hours=2.5),
    )
    n = 3600
    stamps = [start + (end - start) * i / n for i in range(n)]
    shifted = np.array([t >= shift for t in stamps])
    X, y_before = _traffic(rng, n, w_old)
    y_after = (X.to_numpy() @ w_new + 0.3 * rng.normal(size=n) > 0).astype(int)
    y = np.where(shifted, y_after, y_before)

    store = DuckDBStore(path)
    monitor = Monitor(MODEL, store, resources=False)
    try:
        ids = [f"p{i}" for i in range(n)]
        monitor.log(
            ids,
            X,
            champion.predict(X),
            scores=champion.predict_proba(X)[:, 1],
            latency_ms=rng.gamma(2.0, 3.0, size=n),
            timestamps=stamps,
        )
        monitor.log_labels(ids, y)
        monitor.flush()

        rule = {
            "name": RULE,
            "kind": "threshold",
            "metric": "accuracy",
            "op": "<",
            "value": 0.8,
            "window": "1h",
            "min_rows": 50,
        }
        fired = AlertEngine(store, rules_from_dicts([rule])).evaluate(MODEL, now=now)
        alert = next(e for e in fired if e.rule == RULE and e.state == "firing")

        loop = Loop(
            monitor,
            trainer=LogisticRegression(),
            champion=champion,
            reference=reference,
            target="y",
            n_trials=n_trials,
            policy="auto",
        )
        run = loop.on_alert(alert, since=shift)

        registry = VersionRegistry(store, MODEL)
        current = registry.champion()
        assert current is not None
        stored = store.get_blob(MODEL, "loop")
        assert stored is not None
        (record,) = json.loads(stored[0])["runs"]
        trigger = record.get("trigger") or {}
        return LoopStory(
            store=path,
            model=MODEL,
            champion=current.version,
            previous=str(record["champion"]),
            run=str(record["run"]),
            action=str(record["decision"]["action"]),
            promoted=bool(record["promoted"]) and run.promoted,
            alert_rule=trigger.get("rule") if trigger.get("kind") == "alert" else None,
        )
    finally:
        monitor.close()
        store.close()


@pytest.fixture
def story(tmp_path: Path) -> LoopStory:
    return build_loop_story(tmp_path / "loop.duckdb")


@contextlib.contextmanager
def _serving(store: Path) -> Iterator[str]:
    """Serve the store at ``store`` on a free port; yields the base URL."""
    uvicorn = pytest.importorskip("uvicorn")
    from tunelens.server import create_app

    app = create_app(str(store))  # the app opens the store and closes it at shutdown
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def server(story: LoopStory) -> Iterator[str]:
    with _serving(story.store) as base:
        yield base


_READY = """() => !document.body.hasAttribute('data-loading')
  && !document.getElementById('loop-section').hidden
  && document.querySelector('#loop-runs .run-card') !== null
  && document.querySelector('#chart-accuracy .scatterlayer .trace path.point') !== null"""

_ANNOTATIONS = """() => (document.getElementById('chart-accuracy').layout.annotations || [])
  .map(a => a.text)"""

HOSTILE = '<img src=x onerror="window.__pwned=1"> &amp; <b>co</b>'


def test_loop_section_in_chromium(story: LoopStory, server: str) -> None:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    # the story's premise: the loop promoted a challenger over the imported champion
    assert story.promoted and story.action == "promote" and story.champion != story.previous
    assert story.alert_rule == RULE

    console_errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})

            def on_console(msg: Any) -> None:
                if msg.type != "error":
                    return
                where = (msg.location or {}).get("url", "")
                # no reference was registered: the drift endpoint may answer 404
                if where.split("?")[0].endswith(("/drift", "/report")) and "404" in msg.text:
                    return
                console_errors.append(f"{msg.text} ({where})")

            page.on("console", on_console)
            page.on("pageerror", lambda exc: console_errors.append(f"page error: {exc}"))
            page.on("request", lambda req: requests.append(req.url))

            page.goto(f"{server}/#model={quote(MODEL, safe='')}&window=1h&range=24h")
            page.wait_for_function(_READY)
            assert page.locator("#model-title").text_content() == MODEL

            # (a) markers on the accuracy chart: both promotions, labelled with the version
            texts = page.evaluate(_ANNOTATIONS)
            assert f"▲ promoted {story.champion}" in texts, texts
            assert f"▲ promoted {story.previous}" in texts, texts
            assert not page.locator("#quality-legend-loop").is_hidden()
            shown = page.locator("#chart-accuracy .annotation-text").all_text_contents()
            assert f"▲ promoted {story.champion}" in shown
            assert f"⚑ {story.alert_rule} → loop run" in texts, texts  # started the run

            # the summary names the registry's champion
            assert page.locator("#loop-champion").text_content() == story.champion

            # (b) the run's card: trigger, plan, check and decision
            card = page.locator(f'#loop-runs .run-card[data-run="{story.run}"]')
            assert card.count() == 1
            assert card.get_attribute("data-action") == story.action
            assert card.get_attribute("data-promoted") == "true"
            text = card.text_content() or ""
            trigger = card.locator(".trigger-text").text_content() or ""
            assert trigger.startswith(f"alert {story.alert_rule} fired") and "accuracy" in trigger
            assert "recent rows only" in card.locator(".plan-text").text_content()
            assert f"Promoted: {story.champion} replaced {story.previous}." in text
            assert card.locator("[data-action='promote']").count() >= 1
            offline = card.locator("tbody tr").first.text_content() or ""
            assert offline.startswith("offline") and "accuracy" in offline

            # (c) the versions, newest first, the champion marked, with its lineage
            rows = page.locator("#versions tbody tr")
            assert rows.count() == 2
            first = rows.nth(0).locator("td").all_text_contents()
            assert first[0] == f"{story.champion} champion" and first[1] == story.previous
            assert first[2] == "tune"
            assert "champion" in (rows.nth(0).get_attribute("class") or "")
            second = rows.nth(1).locator("td").all_text_contents()
            assert second[0] == story.previous and second[2] == "import"
            lineage = page.locator("#versions .lineage").text_content()
            assert lineage == f"Lineage of the champion: {story.champion} ← {story.previous}"
            events = page.locator("#version-events tbody tr").all_text_contents()
            assert len(events) == 2 and story.champion in events[0]

            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)

            # user data is shown as text, on the page and in the chart labels
            at = datetime.now(UTC) - timedelta(minutes=30)
            hostile_versions = {
                "schema": "tunelens.versions/1",
                "model": MODEL,
                "champion": HOSTILE,
                "versions": [
                    {
                        "version": HOSTILE,
                        "created": at.isoformat(),
                        "source": "tune",
                        "parent": None,
                        "run": "r1",
                        "metrics": {"accuracy": 0.9},
                        "artifact": None,
                        "note": HOSTILE,
                    },
                ],
                "events": [
                    {
                        "at": at.isoformat(),
                        "action": "promote",
                        "version": HOSTILE,
                        "previous": None,
                        "reason": HOSTILE,
                        "decision": None,
                    },
                ],
            }
            hostile_loop = {
                "schema": "tunelens.loop/1",
                "model": MODEL,
                "runs": [
                    {
                        "run": "r1",
                        "started": at.isoformat(),
                        "trigger": {
                            "kind": "alert",
                            "rule": HOSTILE,
                            "evidence": HOSTILE,
                            "fired_at": at.isoformat(),
                            "severity": "high",
                        },
                        "findings": [
                            {
                                "kind": "drift",
                                "severity": "high",
                                "where": HOSTILE,
                                "evidence": HOSTILE,
                            }
                        ],
                        "decision": {"action": "keep_champion", "reason": HOSTILE},
                        "promoted": False,
                    },
                    {  # an older run, missing most keys, whose challenger won in shadow
                        "run": "r0",
                        "started": (at - timedelta(hours=1)).isoformat(),
                        "comparison": {"metric": "accuracy", "champion": 0.8, "challenger": 0.9},
                        "decision": {"action": "promote", "reason": "better offline"},
                        "promoted": False,
                        "shadow": {
                            "rows": 400,
                            "comparison": {
                                "metric": "accuracy",
                                "champion": 0.61,
                                "challenger": 0.92,
                                "difference": 0.31,
                                "p_value": 1e-12,
                                "test": "mcnemar_chi2",
                                "n": 400,
                            },
                            "decision": {"action": "promote", "reason": "better in shadow"},
                            "promoted": True,
                        },
                    },
                ],
            }
            page.route("**/versions", lambda route: route.fulfill(json=hostile_versions))
            page.route("**/loop", lambda route: route.fulfill(json=hostile_loop))
            page.reload()
            page.wait_for_function(
                "(v) => document.getElementById('loop-champion')?.textContent === v",
                arg=HOSTILE,
            )
            page.wait_for_function(_READY)
            assert page.locator("#loop-section img").count() == 0
            assert page.evaluate("() => window.__pwned === undefined")
            cards = page.locator("#loop-runs .run-card")
            assert cards.evaluate_all("cs => cs.map(c => c.dataset.run)") == ["r1", "r0"]
            assert HOSTILE in (cards.nth(0).locator(".trigger-text").text_content() or "")
            assert cards.nth(0).get_attribute("data-action") == "keep_champion"
            assert cards.nth(1).get_attribute("data-promoted") == "true"
            shadow_row = cards.nth(1).locator("tbody tr").nth(1).locator("td")
            assert shadow_row.all_text_contents()[:6] == [
                "shadow (400 live rows)",
                "accuracy",
                "0.610",
                "0.920",
                "+0.310",
                "<0.001",
            ]
            assert "manual" not in (cards.nth(1).locator(".trigger-text").text_content() or "")
            shown = page.locator("#chart-accuracy .annotation-text").all_text_contents()
            assert f"▲ promoted {HOSTILE}" in shown, shown
        finally:
            browser.close()

    assert not console_errors, console_errors
    origin = urlsplit(server).netloc
    external = [
        u for u in requests if urlsplit(u).scheme != "data" and urlsplit(u).netloc != origin
    ]
    assert not external, external


def test_loop_section_is_hidden_without_records(tmp_path: Path) -> None:
    """A model without versions or runs shows no loop section (and no legend for it)."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from tunelens.monitor import Monitor
    from tunelens.store import DuckDBStore

    path = tmp_path / "plain.duckdb"
    store = DuckDBStore(path)
    monitor = Monitor(MODEL, store, resources=False)
    monitor.log(["a", "b"], {"amount": [1.0, 2.0]}, [0, 1])
    monitor.log_labels(["a", "b"], [0, 0])
    monitor.close()
    store.close()
    with _serving(path) as base, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(f"{base}/#model={quote(MODEL, safe='')}")
            page.wait_for_function(
                "() => document.getElementById('updated').textContent.startsWith('Updated')"
            )
            assert page.locator("#model-title").text_content() == MODEL
            assert page.locator("#loop-section").is_hidden()
            assert page.locator("#quality-legend-loop").is_hidden()
        finally:
            browser.close()


DEMO_SCREENSHOT = SCREENSHOT.with_name("demo-dashboard.png")
DEMO_REPORT_SCREENSHOT = SCREENSHOT.with_name("demo-report.png")
DEMO_ACCURACY_SCREENSHOT = SCREENSHOT.with_name("demo-accuracy.png")
DEMO_LOOP_SCREENSHOT = SCREENSHOT.with_name("demo-loop.png")


def test_the_demo_story_in_chromium(tmp_path: Path) -> None:
    """The store `tunelens demo` leaves opens in `tunelens serve`: the README's screenshots."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from tunelens.demo import DEMO_MODEL
    from tunelens.demo import run as run_demo

    result = run_demo(tmp_path / "demo", quiet=True, days=8, cases_per_day=2_000, n_trials=5)
    assert result.promoted and result.recovery >= 0.8
    errors: list[str] = []
    with _serving(result.store_path) as base, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.goto(f"{base}/#model={quote(DEMO_MODEL, safe='')}&window=1d&range=all")
            page.wait_for_function(_READY)
            assert page.locator("#loop-champion").text_content() == result.champion
            texts = page.evaluate(_ANNOTATIONS)
            assert f"▲ promoted {result.champion}" in texts, texts
            assert any(t.startswith("⚑ accuracy-drop") for t in texts), texts
            card = page.locator(f'#loop-runs .run-card[data-run="{result.loop_run}"]')
            assert card.get_attribute("data-action") == "promote"
            assert "shadow" in (card.text_content() or "").lower()
            assert not errors, errors
            page.screenshot(path=str(DEMO_SCREENSHOT), full_page=True)
            page.locator("#chart-accuracy").screenshot(path=str(DEMO_ACCURACY_SCREENSHOT))
            page.locator("#loop-section").screenshot(path=str(DEMO_LOOP_SCREENSHOT))
            # the quality report the demo wrote, as a reader opens it
            page.goto(result.report_path.resolve().as_uri())
            page.wait_for_load_state("load")
            page.set_viewport_size({"width": 1280, "height": 1600})
            page.screenshot(path=str(DEMO_REPORT_SCREENSHOT))
        finally:
            browser.close()
