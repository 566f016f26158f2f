"""The HTML rendering of the quality report: content, escaping, size, no network, atomicity."""

from __future__ import annotations

import base64
import copy
import gzip
import html
import json
import os
import pathlib
import re
import subprocess
import sys
from typing import Any

import plotly.offline
import pytest

from tunelens.report import html as report_html
from tunelens.report import render_html, write_html

SIZE_LIMIT = 2_500_000  # bytes
BLOB_RE = re.compile(r'(<script type="application/octet-stream"[^>]*>)([^<]*)(</script>)')
FIGURES_RE = re.compile(
    r'<script type="application/json" id="([^"]+)-figures">(.*?)</script>', re.S
)


def _outside_blob(page: str) -> str:
    """The page with the compressed plotly.js blob cut out."""
    return BLOB_RE.sub(r"\1\3", page)


def _figures(page: str) -> list[dict[str, Any]]:
    match = FIGURES_RE.search(page)
    if match is None:
        return []
    payload = json.loads(match.group(2))
    return list(payload["figures"])


def _significant_digits(x: float) -> int:
    mantissa = repr(abs(x)).split("e")[0].replace(".", "").lstrip("0").rstrip("0")
    return len(mantissa)


# ---------------------------------------------------------------- rendering


def test_renders_every_task(task_doc: tuple[str, dict[str, Any]], expected_figures: dict[str, int]):
    task, doc = task_doc
    page = render_html(doc)
    assert page.startswith("<!DOCTYPE html>")
    assert page.rstrip().endswith("</html>")
    assert '<meta charset="utf-8">' in page
    assert page.count('class="tunelens-report"') == 1
    assert f"<dd>{task}</dd>" in page
    assert page.count('class="tl-figure"') == expected_figures[task]
    assert f'data-figures="{expected_figures[task]}"' in page
    assert len(_figures(page)) == expected_figures[task]
    for section in ("tl-summary", "tl-findings", "tl-metrics", "tl-drift", "tl-slices"):
        assert f"tl-section {section}" in page


def test_sections_in_order(binary_doc: dict[str, Any]):
    page = render_html(binary_doc)
    markers = [
        'class="tl-header"',
        "tl-section tl-summary",
        "tl-section tl-findings",
        "tl-section tl-metrics",
        "tl-section tl-estimated",
        "tl-section tl-drift",
        "tl-section tl-slices",
        "tl-section tl-figures",
        "tl-block tl-threshold",
        'class="tl-footer"',
    ]
    positions = [page.index(m) for m in markers]
    assert positions == sorted(positions)


def test_header_and_summary(binary_doc: dict[str, Any]):
    page = render_html(binary_doc, title="Churn model <v2>")
    assert "<title>Churn model &lt;v2&gt;</title>" in page
    assert "<h1>Churn model &lt;v2&gt;</h1>" in page
    assert "reference 5,000 · current 4,000" in page
    assert "<code>label</code>" in page and "<code>predicted</code>" in page
    assert "3 findings (1 high, 1 medium, 1 low)." in page
    assert "Significantly worse on current data:" in page


def test_findings_ranked_as_given_and_coloured(binary_doc: dict[str, Any]):
    page = render_html(binary_doc)
    findings = binary_doc["findings"]
    positions = [page.index(html.escape(f["evidence"])) for f in findings]
    assert positions == sorted(positions)
    for f in findings:
        assert f'<tr class="tl-sev-{f["severity"]}">' in page
    # reverse the order: the page keeps the order it is given
    reversed_doc = dict(binary_doc, findings=findings[::-1])
    page = render_html(reversed_doc)
    positions = [page.index(html.escape(f["evidence"])) for f in findings]
    assert positions == sorted(positions, reverse=True)


def test_metrics_flag_significant_and_worse(binary_doc: dict[str, Any]):
    page = render_html(binary_doc)
    section = page[page.index("tl-section tl-metrics") : page.index("tl-section tl-estimated")]
    comparison = binary_doc["comparison"]
    flagged = {n for n, c in comparison.items() if c["significant"] and c["worse"]}
    assert flagged == {"accuracy", "error_rate", "roc_auc"}
    rows = re.findall(r"<tr( class=\"tl-flag\")?><td><code>([^<]+)</code>", section)
    assert {name for cls, name in rows if cls} == flagged
    assert {name for _, name in rows} == set(binary_doc["metrics"]["reference"])
    assert "significant, better" in section  # recall: significant but not worse
    # value [interval] and delta
    assert '0.912 <span class="tl-iv">[0.902, 0.922]</span>' in section
    assert "-0.069" in section
    # log_loss is null on current data
    assert "\u2014" in section


def test_drift_table_lists_every_feature(task_doc: tuple[str, dict[str, Any]]):
    _, doc = task_doc
    page = render_html(doc)
    section = page[page.index("tl-section tl-drift") :]
    section = section[: section.index("</section>")]
    for name, entry in doc["drift"]["features"].items():
        assert f"<td><code>{html.escape(name)}</code></td><td>{entry['kind']}</td>" in section
    assert "<h3>Prediction and target</h3>" in section
    assert "<h3>Multivariate check</h3>" in section
    assert "<dt>band</dt><dd>[0.97, 1.08]</dd>" in section
    drifted = sum(e["drifted"] for e in doc["drift"]["features"].values())
    assert f"{drifted} of {len(doc['drift']['features'])} features drifted" in section


def test_threshold_block(binary_doc: dict[str, Any]):
    page = render_html(binary_doc)
    block = page[page.index("tl-block tl-threshold") :]
    assert "at best-F1 threshold 0.37" in block
    assert "<td><code>recall</code></td><td>0.84</td><td>0.91</td><td>+0.07</td>" in block


def test_multiclass_per_class_and_confusion(multiclass_doc: dict[str, Any]):
    page = render_html(multiclass_doc)
    assert "tl-section tl-per-class" in page
    for label in multiclass_doc["classes"]:
        assert f"<code>{html.escape(label)}</code>" in page
    figures = _figures(page)
    heatmaps = [t for f in figures for t in f["data"] if t["type"] == "heatmap"]
    assert len(heatmaps) == 2
    n = len(multiclass_doc["classes"])
    assert all(len(t["z"]) == n and len(t["z"][0]) == n for t in heatmaps)


def test_calibration_shows_ece(binary_doc: dict[str, Any]):
    figures = _figures(render_html(binary_doc))
    calibration = [f for f in figures if f["layout"]["title"]["text"].startswith("Calibration")]
    assert len(calibration) == 1
    names = [t.get("name", "") for t in calibration[0]["data"]]
    assert "chance" in names  # the diagonal
    ece = binary_doc["curves"]["calibration"]["current"]["ece"]
    assert f"current (ECE {ece:.3g})" in names
    assert "ECE" in calibration[0]["layout"]["title"]["text"]


# ---------------------------------------------------------------- escaping


def test_user_text_is_escaped(task_doc: tuple[str, dict[str, Any]], hostile: tuple[str, str]):
    _, doc = task_doc
    page = render_html(doc)
    feature, label = hostile
    assert feature in doc["columns"]["features"]
    # nothing of the hostile strings survives unescaped, anywhere (figures' JSON included)
    assert feature not in page
    assert label not in page
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    for name in doc["columns"]["features"]:
        assert html.escape(name) in page
    for name in doc["drift"]["features"]:
        assert html.escape(name) in page
    for f in doc["findings"]:
        for key in ("where", "evidence", "action", "kind"):
            assert html.escape(f[key]) in page
    for s in doc["slices"]:
        assert html.escape(s["condition"]) in page
    # the only script elements are the renderer's own three
    assert len(re.findall(r"<script\b", page)) == 3


def test_figure_json_cannot_close_its_script(multiclass_doc: dict[str, Any]):
    doc = copy.deepcopy(multiclass_doc)
    doc["confusion"]["labels"][0] = "</script><script>alert(1)</script>"
    doc["classes"][0] = doc["confusion"]["labels"][0]
    page = render_html(doc)
    match = FIGURES_RE.search(page)
    assert match is not None
    assert "</" not in match.group(2)
    assert "<script>alert(1)" not in page


# ---------------------------------------------------------------- self-contained


def test_no_network_reference(task_doc: tuple[str, dict[str, Any]]):
    _, doc = task_doc
    page = render_html(doc)
    outside = _outside_blob(page)
    assert len(outside) < len(page) - 1_000_000  # the blob was there and is cut out
    lowered = outside.lower()
    for needle in ('src="http', "src='http", 'href="http', "href='http", "url(http", "@import"):
        assert needle not in lowered
    assert "http://" not in lowered and "https://" not in lowered
    assert "<link" not in lowered
    assert "mathjax" not in lowered
    assert "default-src 'none'" in page  # the page forbids itself any fetch


def test_embedded_plotly_is_the_installed_bundle(binary_doc: dict[str, Any]):
    page = render_html(binary_doc)
    match = BLOB_RE.search(page)
    assert match is not None
    source = gzip.decompress(base64.b64decode(match.group(2))).decode("utf-8")
    assert source == plotly.offline.get_plotlyjs()
    assert 'DecompressionStream("gzip")' in page
    # compressed once per process
    assert report_html._plotly_js_gzip_base64() is report_html._plotly_js_gzip_base64()


def test_size_under_limit(task_doc: tuple[str, dict[str, Any]]):
    _, doc = task_doc
    size = len(render_html(doc).encode("utf-8"))
    assert size < SIZE_LIMIT, f"{size / 1e6:.2f} MB"


def test_figures_rounded_and_capped(builders: dict[str, Any]):
    doc = builders["binary"](curve_points=20_000)
    page = render_html(doc)
    figures = _figures(page)
    roc = next(f for f in figures if f["layout"]["title"]["text"] == "ROC curve")
    curves = [t for t in roc["data"] if t.get("name") != "chance"]
    assert [len(t["x"]) for t in curves] == [report_html.MAX_TRACE_POINTS] * 2
    first = doc["curves"]["roc"]["reference"]
    assert curves[0]["x"][0] == first["fpr"][0] and curves[0]["x"][-1] == first["fpr"][-1]
    for f in figures:
        for t in f["data"]:
            for key in ("x", "y"):
                values = t.get(key) or []
                assert len(values) <= report_html.MAX_TRACE_POINTS
                for v in values:
                    if isinstance(v, float):
                        assert _significant_digits(v) <= report_html.SIGNIFICANT_DIGITS, v
    assert len(page.encode("utf-8")) < SIZE_LIMIT  # capped: 4 curves of 20 000 points still fit


def test_cap_trace_subsamples_evenly():
    trace = {"type": "scatter", "x": list(range(12_001)), "y": list(range(12_001)), "name": "a"}
    out = report_html._cap_trace(trace, cap=5000)
    assert len(out["x"]) == len(out["y"]) == 5000
    assert out["x"][0] == 0 and out["x"][-1] == 12_000
    steps = {b - a for a, b in zip(out["x"][:-1], out["x"][1:], strict=True)}
    assert steps <= {2, 3}
    assert report_html._cap_trace({"x": [1, 2]}, cap=5000) == {"x": [1, 2]}


def test_clean_rounds_and_drops_non_finite():
    out = report_html._clean({"a": [0.123456789, float("nan"), float("inf"), 3, True, None]})
    assert out == {"a": [0.123457, None, None, 3, True, None]}


# ---------------------------------------------------------------- missing and empty parts


OPTIONAL_KEYS = [
    "rows",
    "columns",
    "positive",
    "classes",
    "metrics",
    "intervals",
    "comparison",
    "per_class",
    "confusion",
    "curves",
    "threshold",
    "drift",
    "estimated",
    "slices",
    "findings",
    "timings",
]


@pytest.mark.parametrize("key", OPTIONAL_KEYS)
def test_null_or_absent_key_is_skipped(task_doc: tuple[str, dict[str, Any]], key: str):
    _, doc = task_doc
    render_html(dict(doc, **{key: None}))
    render_html({k: v for k, v in doc.items() if k != key})


def test_null_sub_blocks_are_skipped(binary_doc: dict[str, Any]):
    doc = copy.deepcopy(binary_doc)
    for name in doc["curves"]:
        doc["curves"][name] = None
    doc["drift"] |= {"prediction": None, "target": None, "multivariate": None, "features": {}}
    doc["estimated"] = {"current": {}, "intervals": {}, "realised": {}}
    doc["confusion"] = {"labels": ["0", "1"], "reference": [[1]], "current": None}
    doc["intervals"] = {"reference": {}, "current": {"accuracy": [None, 0.9]}}
    page = render_html(doc)
    assert 'data-figures="0"' in page
    assert 'class="tl-figure"' not in page
    assert "application/octet-stream" not in page  # no figure: plotly.js is not embedded
    assert "<h3>Prediction and target</h3>" not in page
    assert "<h3>Multivariate check</h3>" not in page
    assert "tl-section tl-estimated" not in page
    assert "0 of 0 features drifted" in page


def test_curve_sides_may_be_missing(binary_doc: dict[str, Any]):
    doc = copy.deepcopy(binary_doc)
    doc["curves"]["roc"]["reference"] = None
    doc["curves"]["pr"] = {"reference": {"recall": [], "precision": [], "ap": None}}
    doc["curves"]["calibration"]["current"] = {}
    doc["curves"]["score_distribution"]["current"] = None
    page = render_html(doc)
    titles = [f["layout"]["title"]["text"] for f in _figures(page)]
    assert "ROC curve" in titles
    assert "Precision-recall curve" not in titles
    assert any(t.startswith("Calibration") for t in titles)


def test_empty_lists_render(regression_doc: dict[str, Any]):
    page = render_html(regression_doc)
    assert regression_doc["findings"] == [] and regression_doc["slices"] == []
    assert "No findings." in page
    for key in ("tl-findings", "tl-slices"):
        section = page[page.index(f"tl-section {key}") :]
        assert '<p class="tl-empty">None.</p>' in section[: section.index("</section>")]


def test_minimal_and_odd_documents():
    for doc in (
        {},
        {"schema": "tunelens.report/1", "task": "binary"},
        {"task": "regression", "metrics": {"reference": {"mae": float("nan")}, "current": {}}},
        {"task": "binary", "curves": {"roc": {"reference": {"fpr": [0, 1], "tpr": [0]}}}},
        {"task": "binary", "findings": [{"severity": "urgent", "kind": None}], "slices": [{}]},
        {"task": "binary", "drift": {"features": {"a": None}}, "rows": {"reference": None}},
    ):
        page = render_html(doc)
        assert page.startswith("<!DOCTYPE html>")
    with pytest.raises(TypeError):
        render_html([])  # type: ignore[arg-type]


# ---------------------------------------------------------------- notebook fragments


def test_fragment_for_notebooks(binary_doc: dict[str, Any]):
    a = render_html(binary_doc, full_page=False)
    b = render_html(binary_doc, full_page=False)
    assert a.startswith('<div class="tunelens-report" id="tl-')
    assert a.endswith("</div>")
    assert not re.search(r"<(html|head|body|title|!DOCTYPE)\b", a, re.I)
    ids_a = re.findall(r'\bid="([^"]+)"', a)
    ids_b = re.findall(r'\bid="([^"]+)"', b)
    assert len(ids_a) == len(set(ids_a))
    assert not set(ids_a) & set(ids_b)  # unique per render
    root = ids_a[0]
    assert all(i.startswith(root) for i in ids_a)
    # every CSS rule is scoped to the report's div
    css = a[a.index("<style>") + 7 : a.index("</style>")]
    selectors = re.findall(r"(?:^|})([^{}]+)\{", css)
    assert selectors
    for group in selectors:
        for selector in group.split(","):
            assert selector.strip().startswith(".tunelens-report"), selector


# ---------------------------------------------------------------- write_html


def test_write_html(binary_doc: dict[str, Any], out_dir: pathlib.Path):
    target = out_dir / "report.html"
    written = write_html(binary_doc, str(target), title="x")
    assert written == target
    text = target.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "<title>x</title>" in text
    assert os.listdir(out_dir) == ["report.html"]
    assert target.stat().st_mode & 0o777 == 0o644
    target.chmod(0o600)
    write_html(binary_doc, target)
    assert target.stat().st_mode & 0o777 == 0o600  # an existing file keeps its mode


def _fail(*args: Any, **kwargs: Any) -> None:
    raise OSError("disk full")


@pytest.mark.parametrize("where", ["fsync", "replace", "render"])
@pytest.mark.parametrize("existing", [True, False])
def test_write_html_is_atomic(
    binary_doc: dict[str, Any],
    out_dir: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
    existing: bool,
):
    target = out_dir / "report.html"
    if existing:
        target.write_text("old report", encoding="utf-8")
    if where == "render":
        monkeypatch.setattr(report_html, "_metrics", _fail)
    else:
        # fsync fails after the text is written to the temporary file; replace at the end
        monkeypatch.setattr(report_html.os, where, _fail)
    with pytest.raises(OSError, match="disk full"):
        write_html(binary_doc, target)
    if existing:
        assert os.listdir(out_dir) == ["report.html"]
        assert target.read_text(encoding="utf-8") == "old report"
    else:
        assert os.listdir(out_dir) == []


def test_write_html_interrupted_midway(
    binary_doc: dict[str, Any], out_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
):
    """A failure half-way through writing (KeyboardInterrupt included) leaves nothing."""
    target = out_dir / "report.html"
    target.write_text("old report", encoding="utf-8")
    real_fdopen = os.fdopen
    seen: list[str] = []

    class HalfWriter:
        def __init__(self, fh: Any) -> None:
            self.fh = fh

        def __enter__(self) -> HalfWriter:
            return self

        def __exit__(self, *exc: object) -> None:
            self.fh.close()

        def write(self, text: str) -> int:
            self.fh.write(text[: len(text) // 2])
            self.fh.flush()
            seen.extend(os.listdir(out_dir))
            raise KeyboardInterrupt

    def fake_fdopen(fd: int, *args: Any, **kwargs: Any) -> HalfWriter:
        return HalfWriter(real_fdopen(fd, *args, **kwargs))

    monkeypatch.setattr(report_html.os, "fdopen", fake_fdopen)
    with pytest.raises(KeyboardInterrupt):
        write_html(binary_doc, target)
    assert len(seen) == 2  # the temporary file existed, beside the old report
    assert os.listdir(out_dir) == ["report.html"]
    assert target.read_text(encoding="utf-8") == "old report"


def test_import_is_light_and_independent_of_quality():
    """``import tunelens.report`` loads neither plotly (until a render) nor tunelens.quality."""
    code = (
        "import sys, tunelens.report; "
        "print(sorted(m for m in sys.modules if m.startswith(('plotly', 'tunelens.quality'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]"


def test_notes_are_listed_and_escaped(binary_doc: dict[str, Any]):
    """``notes`` (what analyse() skipped and why) is not in docs/report.md but is shown."""
    page = render_html(dict(binary_doc, notes=["no score: <curves> skipped", None]))
    assert "<li>no score: &lt;curves&gt; skipped</li>" in page
