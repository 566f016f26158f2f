"""The written report in a real browser (headless Chromium through Playwright).

Checks that the page draws every figure from its embedded, compressed plotly.js, with no
console error, no page error and no request to anything but the file itself.
Skipped when Playwright or Debian's Chromium (/usr/bin/chromium) is missing.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from tunelens.report import render_html, write_html

CHROMIUM = pathlib.Path("/usr/bin/chromium")

try:
    from playwright.sync_api import Browser, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed"),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"{CHROMIUM} does not exist (apt install chromium)"
    ),
]

DRAW_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert sync_playwright is not None
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def _open(browser: Browser, url: str) -> tuple[Any, list[str], list[str], list[str]]:
    page = browser.new_page()
    console_errors: list[str] = []
    page_errors: list[str] = []
    requests: list[str] = []
    page.on(
        "console",
        lambda m: console_errors.append(m.text) if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url)
    return page, console_errors, page_errors, requests


_ALL_DRAWN = """
() => {
  const root = document.querySelector("div.tunelens-report");
  const figs = Array.from(root.querySelectorAll("div.tl-figure"));
  return root.getAttribute("data-drawn") !== null && figs.every(
    d => d.classList.contains("js-plotly-plot") && d.querySelector("svg.main-svg") !== null);
}
"""


def test_report_draws_offline(
    browser: Browser,
    task_doc: tuple[str, dict[str, Any]],
    expected_figures: dict[str, int],
    tmp_path: pathlib.Path,
) -> None:
    task, doc = task_doc
    path = write_html(doc, tmp_path / f"{task}.html").resolve()
    url = path.as_uri()
    page, console_errors, page_errors, requests = _open(browser, url)
    try:
        page.wait_for_function(_ALL_DRAWN, timeout=DRAW_TIMEOUT_MS)
        drawn = page.evaluate(
            "() => document.querySelectorAll('div.tl-figure.js-plotly-plot').length"
        )
        state = page.evaluate(
            "() => document.querySelector('div.tunelens-report').getAttribute('data-drawn')"
        )
        traces = page.evaluate(
            "() => Array.from(document.querySelectorAll('div.tl-figure'))"
            ".map(d => d.data ? d.data.length : 0)"
        )
    finally:
        page.close()
    assert state == "true"
    assert drawn == expected_figures[task]
    assert all(n > 0 for n in traces), traces
    assert console_errors == []
    assert page_errors == []
    assert requests == [url], f"requests beyond the file itself: {requests}"


def test_two_fragments_on_one_page(
    browser: Browser,
    binary_doc: dict[str, Any],
    regression_doc: dict[str, Any],
    expected_figures: dict[str, int],
    tmp_path: pathlib.Path,
) -> None:
    """As in a notebook: two reports inserted into one page share one plotly.js load.

    The page defines an AMD ``define`` as require.js does in Jupyter; plotly.js must still
    load as a global for the report, and ``define`` must be left as it was.
    """
    body = render_html(binary_doc, full_page=False) + render_html(regression_doc, full_page=False)
    amd = (
        "<script>window.amdCalls = 0; window.define = function () { window.amdCalls++; };"
        " window.define.amd = {};</script>"
    )
    path = tmp_path / "notebook.html"
    path.write_text(
        f'<!DOCTYPE html><html><head><meta charset="utf-8">{amd}</head><body>{body}</body></html>',
        encoding="utf-8",
    )
    url = path.resolve().as_uri()
    page, console_errors, page_errors, requests = _open(browser, url)
    try:
        page.wait_for_function(
            """() => Array.from(document.querySelectorAll("div.tunelens-report"))
                .every(r => r.getAttribute("data-drawn") === "true")""",
            timeout=DRAW_TIMEOUT_MS,
        )
        drawn = page.evaluate(
            "() => document.querySelectorAll('div.tl-figure.js-plotly-plot').length"
        )
        loads = page.evaluate("() => Object.keys(window.__tunelensPlotly || {}).length")
        amd = page.evaluate("() => [window.amdCalls, typeof window.define.amd]")
    finally:
        page.close()
    assert drawn == expected_figures["binary"] + expected_figures["regression"]
    assert loads == 1
    assert amd == [0, "object"]
    assert console_errors == [] and page_errors == []
    assert requests == [url]
