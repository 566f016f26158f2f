"""The dashboard in real headless Chromium (Debian's chromium driven by Playwright).

A real server runs on a background thread; the test posts a few hours of predictions and
labels whose accuracy drops in the later windows, opens ``/``, picks the model, checks
the charts are drawn with one point per window, that the degrading accuracy is flagged
first in the headline strip, switches the window picker, and saves a full-page screenshot
to ``docs/dashboard.png``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np
import pytest

from tunelens.monitor.alerts import rules_from_dicts
from tunelens.server import Settings, create_app
from tunelens.store import DuckDBStore

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
MODEL = 'team/fraud "v2"'  # a slash and quotes: URLs must encode it, HTML must escape it
HEALTHY = "churn"

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    uvicorn = pytest.importorskip("uvicorn")
    store = DuckDBStore(tmp_path / "dashboard.duckdb")
    rules = rules_from_dicts(
        [
            {
                "name": "accuracy-floor",
                "kind": "threshold",
                "metric": "accuracy",
                "op": "<",
                "value": 0.8,
                "window": "1h",
                "min_rows": 50,
            }
        ]
    )
    app = create_app(store, Settings(rules=rules, alert_interval_s=0.3))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
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
        store.close()


def _events(
    n: int, start: datetime, end: datetime, accuracy: Any, seed: int, prefix: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Predictions spread evenly over [start, end) and their labels."""
    rng = np.random.default_rng(seed)
    step = (end - start) / n
    predictions, labels = [], []
    for i in range(n):
        t = start + step * i
        truth = int(rng.random() < 0.5)
        right = rng.random() < accuracy(t)
        predicted = truth if right else 1 - truth
        score = float(np.clip(rng.normal(0.75, 0.12), 0.5, 1.0))
        predictions.append(
            {
                "id": f"{prefix}{i}",
                "timestamp": t.isoformat(),
                "prediction": predicted,
                "score": score if predicted == 1 else 1.0 - score,
                "latency_ms": float(rng.gamma(2.0, 3.0)),
                "features": {"amount": float(rng.lognormal(3, 1)), "country": "FR"},
            }
        )
        labels.append({"id": f"{prefix}{i}", "label": truth})
    return predictions, labels


def _post_events(base: str) -> datetime:
    import httpx

    now = datetime.now(UTC)
    start, end = now - timedelta(hours=5), now - timedelta(minutes=5)
    drop = now - timedelta(hours=2)
    with httpx.Client(base_url=base, timeout=30) as client:
        for name, accuracy, seed in (
            (HEALTHY, lambda t: 0.93, 1),
            (MODEL, lambda t: 0.93 if t < drop else 0.6, 2),
        ):
            predictions, labels = _events(1500, start, end, accuracy, seed, "p")
            url = f"/api/v1/models/{quote(name, safe='')}"
            r = client.post(f"{url}/predictions", json={"records": predictions})
            assert r.status_code == 202, r.text
            r = client.post(f"{url}/labels", json={"records": labels})
            assert r.status_code == 202 and r.json()["matched"] == len(labels), r.text
        # the alert loop evaluates every 0.3 s: wait for the accuracy floor to fire
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            alerts = client.get(f"/api/v1/models/{quote(MODEL, safe='')}/alerts").json()
            if alerts["alerts"]:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the accuracy alert did not fire")
    return now


def _api_points(base: str, window: str) -> int:
    import httpx

    since = (datetime.now(UTC) - timedelta(hours=24)).isoformat()
    r = httpx.get(
        f"{base}/api/v1/models/{quote(MODEL, safe='')}/metrics",
        params={"window": window, "since": since},
    )
    r.raise_for_status()
    return sum(1 for w in r.json()["windows"] if w["accuracy"] is not None)


DRIFT = {
    "model": MODEL,
    "reference": {"rows": 5000, "registered_at": "2026-01-01T00:00:00+00:00"},
    "current": {"rows": 1500, "since": None, "until": None},
    "features": {
        "country": {
            "method": "chi2",
            "statistic": 0.4,
            "p_value": 0.81,
            "drifted": False,
            "threshold": 0.05,
            "kind": "categorical",
            "psi": 0.001,
        },
        "amount": {
            "method": "ks",
            "statistic": 0.31,
            "p_value": 1e-9,
            "drifted": True,
            "threshold": 0.05,
            "kind": "numeric",
            "psi": 0.42,
        },
    },
    "share_drifted": 0.5,
    "dataset_drifted": True,
    "prediction": None,
}
REPORT = {
    "model": MODEL,
    "created_at": "2026-01-01T00:00:00+00:00",
    "report": {
        "schema": "tunelens.report/1",
        "task": "binary",
        "rows": {"reference": 5000, "current": 1500},
        "comparison": {
            "f1": {
                "reference": 0.9,
                "current": 0.89,
                "delta": -0.01,
                "significant": False,
                "worse": True,
                "method": "bootstrap",
            },
            "accuracy": {
                "reference": 0.93,
                "current": 0.6,
                "delta": -0.33,
                "significant": True,
                "worse": True,
                "method": "two-proportion z-test",
            },
        },
        "findings": [
            {
                "severity": "high",
                "kind": "drift",
                "where": "feature amount",
                "evidence": "KS 0.31, p < 0.001",
                "action": "check the upstream feed",
                "gain": None,
            }
        ],
    },
}

_POINTS = """() => {
  const trace = document.querySelector('#chart-accuracy .scatterlayer .trace');
  return trace ? trace.querySelectorAll('path.point').length : -1;
}"""

_DRAWN = """(window) => document.body.dataset.window === window
  && !document.body.hasAttribute('data-loading')
  && document.querySelector('#chart-accuracy .scatterlayer .trace path.point') !== null"""


def _assert_accuracy_flagged(page: Any) -> None:
    """The degrading accuracy is flagged, and the degrading metrics come first."""
    card = page.locator('#headline .card[data-metric="accuracy"]')
    assert card.get_attribute("data-status") == "degraded"
    statuses = page.locator("#headline .card").evaluate_all(
        "cards => cards.map(c => c.dataset.status)"
    )
    first_other = next((i for i, s in enumerate(statuses) if s != "degraded"), len(statuses))
    assert "degraded" not in statuses[first_other:]
    assert "degraded" in page.locator("#box-accuracy").get_attribute("class")
    assert "Accuracy" in page.locator("#headline-note").text_content()


def test_dashboard_in_chromium(server: str) -> None:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    _post_events(server)

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
                # the drift and report endpoints are optional: a 404 there is expected
                optional = where.split("?")[0].endswith(("/drift", "/report"))
                if optional and "404" in msg.text:
                    return
                console_errors.append(f"{msg.text} ({where})")

            page.on("console", on_console)
            page.on("pageerror", lambda exc: console_errors.append(f"page error: {exc}"))
            page.on("request", lambda req: requests.append(req.url))

            page.goto(server + "/")
            page.wait_for_selector("button.model-button")
            names = page.locator("button.model-button .model-name").all_text_contents()
            assert sorted(names) == sorted([HEALTHY, MODEL])  # shown as text, not HTML
            page.locator("button.model-button", has_text=MODEL).click()
            page.wait_for_function(
                "(name) => document.getElementById('model-title').textContent === name", arg=MODEL
            )
            page.wait_for_function(_DRAWN, arg="1h")

            # every window of the range is a point of the accuracy chart
            hourly = _api_points(server, "1h")
            assert hourly >= 5
            assert page.evaluate(_POINTS) == hourly
            assert page.locator("#quality-charts .js-plotly-plot").count() >= 5
            assert page.locator("#ops-charts .js-plotly-plot").count() >= 3

            _assert_accuracy_flagged(page)

            # the alert is in the history and drawn on the quality charts
            assert page.locator("#alerts tbody tr").count() >= 1
            assert "accuracy-floor" in page.locator("#alerts").text_content()
            shapes = page.evaluate(
                "() => document.getElementById('chart-accuracy').layout.shapes.length"
            )
            assert shapes >= 2  # the baseline and at least one alert marker
            assert "No reference registered" in page.locator("#drift").text_content()
            assert "No quality report yet" in page.locator("#report").text_content()
            assert "Updated at" in page.locator("#updated").text_content()

            # a finer window: the chart redraws with one point per 15 minutes
            page.select_option("#window", "15m")
            page.wait_for_function(_DRAWN, arg="15m")
            quarterly = _api_points(server, "15m")
            assert quarterly > hourly
            page.wait_for_function(f"() => ({_POINTS})() === {quarterly}")
            assert "window=15m" in page.url
            _assert_accuracy_flagged(page)

            page.click("#pause")
            assert page.get_attribute("#pause", "aria-pressed") == "true"
            page.click("#pause")

            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)

            # the URL hash selects a model and a window on its own
            page.goto(f"{server}/#model={quote(MODEL, safe='')}&window=6h&range=7d")
            page.reload()
            page.wait_for_function(_DRAWN, arg="6h")
            assert page.locator("#model-title").text_content() == MODEL
            assert page.input_value("#range") == "7d"

            # the drift and report sections render the documents the API is to serve
            page.route("**/drift?*", lambda route: route.fulfill(json=DRIFT))
            page.route("**/drift", lambda route: route.fulfill(json=DRIFT))
            page.route("**/report", lambda route: route.fulfill(json=REPORT))
            page.reload()
            page.wait_for_selector("#drift tbody tr")
            rows = page.locator("#drift tbody tr").all_text_contents()
            assert rows[0].startswith("amount") and "drifted" in rows[0]
            assert "stable" in rows[1]
            page.wait_for_selector("#report tbody tr.bad")
            assert "accuracy" in page.locator("#report tbody tr.bad").text_content()
            assert "check the upstream feed" in page.locator("#report").text_content()
        finally:
            browser.close()

    assert not console_errors, console_errors
    origin = urlsplit(server).netloc
    external = [
        u for u in requests if urlsplit(u).scheme != "data" and urlsplit(u).netloc != origin
    ]
    assert not external, external
    assert any(u.endswith("/static/plotly.min.js") for u in requests)
