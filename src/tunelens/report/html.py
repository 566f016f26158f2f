"""The quality report (``tunelens.report/1``, docs/report.md) as one self-contained HTML page.

`render_html(doc)` returns the page as text; `write_html(doc, path)` writes it atomically.
The page makes no network request of any kind: the tables are plain HTML, the figures are
plotly figures whose JSON is inline, and plotly.js itself is embedded gzip-compressed and
base64-encoded (about 1.9 MB instead of 4.8 MB) and decompressed in the browser with
``DecompressionStream('gzip')`` before the figures are drawn.

With ``full_page=False`` the result is one ``<div class="tunelens-report">`` with scoped
CSS and ids unique to the render, so that it can be inserted into an existing page such as
a Jupyter notebook (``_repr_html_``).

Every section tolerates its key being absent or ``null`` and its lists being empty; all text
taken from the document (feature names, class labels, findings) is HTML-escaped.
"""

from __future__ import annotations

import base64
import functools
import gzip
import html
import itertools
import json
import math
import os
import pathlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["MAX_TRACE_POINTS", "SIGNIFICANT_DIGITS", "render_html", "write_html"]

#: Any single trace is thinned to at most this many points (even subsampling).
MAX_TRACE_POINTS = 5000
#: Floats in the figures' JSON are rounded to this many significant digits.
SIGNIFICANT_DIGITS = 6

_SIDES = ("reference", "current")
_SIDE_COLOURS = {"reference": "#4c6ef5", "current": "#e8590c"}
_CLASS_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
_SEVERITIES = ("high", "medium", "low")
_METRIC_ORDER = (
    "accuracy",
    "error_rate",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "mae",
    "rmse",
    "r2",
)
_DASH = "\u2014"  # shown for a missing or undefined value
_FIGURE_HEIGHT = 400


# ---------------------------------------------------------------- public API


def render_html(doc: Mapping[str, Any], *, title: str | None = None, full_page: bool = True) -> str:
    """Render a ``tunelens.report/1`` document as HTML.

    Args:
        doc: the report document (``QualityReport.to_dict()``, docs/report.md). Keys may be
            absent or ``null``; their sections are then left out.
        title: the page heading; by default ``"tunelens quality report (TASK)"``.
        full_page: ``True`` for a whole page (``<!DOCTYPE html>``, ``<head>``, ``<body>``);
            ``False`` for a single ``<div class="tunelens-report">`` to insert into an
            existing page, e.g. a notebook cell's output.

    Returns:
        The HTML text. It loads nothing over the network.

    Example:
        >>> page = render_html({"schema": "tunelens.report/1", "task": "binary"})
        >>> page.startswith("<!DOCTYPE html>")
        True
    """
    if not isinstance(doc, Mapping):
        raise TypeError(f"render_html expects the report document (a mapping), got {type(doc)}")
    task = _text(doc.get("task")) or "unknown task"
    heading = title if title is not None else f"tunelens quality report ({task})"
    uid = f"tl-{uuid.uuid4().hex[:12]}"
    figures = _Figures(uid)
    curves = _mapping(doc.get("curves"))

    body = [
        _header(doc, heading),
        _summary(doc),
        _findings(doc),
        _metrics(doc),
        _per_class(doc),
        _estimated(doc),
        _drift(doc),
        _slices(doc),
    ]
    plots = [
        figures.add(_fig_roc(curves), "ROC curve"),
        figures.add(_fig_pr(curves), "Precision-recall curve"),
        figures.add(_fig_calibration(curves), "Calibration"),
        figures.add(_fig_confusion(doc), "Confusion matrices"),
        figures.add(_fig_score_distribution(doc, curves), "Score distribution by class"),
        _threshold(doc),
        figures.add(_fig_residuals(curves), "Residuals"),
        figures.add(_fig_error_distribution(curves), "Error distribution"),
    ]
    plots = [p for p in plots if p]
    if plots:
        body.append(_section("figures", "Figures", "".join(plots)))
    body.append(_timings(doc))
    body.append(figures.scripts())

    return _page("".join(b for b in body if b), heading, uid, len(figures), full_page)


def _page(body: str, heading: str, uid: str, n_figures: int, full_page: bool, css: str = "") -> str:
    """``body`` in the scoped report ``<div>``; with ``full_page`` a whole document with CSP."""
    div = (
        f'<div class="tunelens-report" id="{uid}" data-figures="{n_figures}">'
        f"<style>{_CSS}{css}</style>{body}</div>"
    )
    if not full_page:
        return div
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(heading)}</title></head>\n<body>{div}</body></html>\n"
    )


def write_html(
    doc: Mapping[str, Any], path: str | os.PathLike[str], *, title: str | None = None
) -> pathlib.Path:
    """Write `render_html(doc)` to ``path`` atomically (`tunelens._atomic.write_files`):
    ``path`` is either untouched or complete, and on any error no temporary file is
    left and the error propagates.

    Returns:
        ``path`` as a `pathlib.Path`.
    """
    from tunelens._atomic import write_files

    target = pathlib.Path(path)
    write_files([(target, render_html(doc, title=title).encode("utf-8"))])
    return target


# ---------------------------------------------------------------- value helpers


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _seq(value: object) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def _float(value: object) -> float | None:
    """A finite float, or None for null, NaN, infinities, booleans and non-numbers."""
    if value is None or isinstance(value, bool | str):
        return None
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _num(value: object, digits: int = 4) -> str:
    x = _float(value)
    if x is None:
        return _DASH
    if isinstance(value, int) and abs(x) < 1e15:
        return f"{value:,}"
    return f"{x:.{digits}g}"


def _count(value: object) -> str:
    x = _float(value)
    if x is None:
        return _DASH
    return f"{round(x):,}" if x == round(x) else f"{x:.4g}"


def _signed(value: object, digits: int = 3) -> str:
    x = _float(value)
    return _DASH if x is None else f"{x:+.{digits}g}"


def _diff(before: object, after: object) -> float | None:
    """``after - before`` when both are finite numbers."""
    a, b = _float(before), _float(after)
    return None if a is None or b is None else b - a


def _pct(value: object) -> str:
    x = _float(value)
    return _DASH if x is None else f"{100 * x:.1f}%"


def _yes_no(value: object) -> str:
    if value is None:
        return _DASH
    return "yes" if value else "no"


def _interval(value: object) -> tuple[float, float] | None:
    pair = _seq(value)
    if len(pair) != 2:
        return None
    lo, hi = _float(pair[0]), _float(pair[1])
    return None if lo is None or hi is None else (lo, hi)


def _with_interval(value: object, interval: object) -> str:
    iv = _interval(interval)
    out = _esc(_num(value))
    if iv is not None:
        out += f' <span class="tl-iv">[{_esc(_num(iv[0], 3))}, {_esc(_num(iv[1], 3))}]</span>'
    return out


def _metric_names(*blocks: Mapping[str, Any]) -> list[str]:
    seen: dict[str, None] = {}
    for block in blocks:
        for name in block:
            seen[str(name)] = None
    known = [n for n in _METRIC_ORDER if n in seen]
    return known + [n for n in seen if n not in _METRIC_ORDER]


# ---------------------------------------------------------------- HTML helpers


def _section(key: str, title: str, body: str, note: str = "") -> str:
    note_html = f'<p class="tl-note">{note}</p>' if note else ""
    return f'<section class="tl-section tl-{key}"><h2>{_esc(title)}</h2>{note_html}{body}</section>'


def _table(headers: Sequence[str], rows: Iterable[tuple[Sequence[str], str]], cls: str = "") -> str:
    """A table; ``rows`` are (already escaped cells, row class)."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = []
    for cells, row_cls in rows:
        attr = f' class="{row_cls}"' if row_cls else ""
        body.append(f"<tr{attr}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    if not body:
        return '<p class="tl-empty">None.</p>'
    return (
        f'<div class="tl-scroll"><table class="tl-table {cls}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _dl(items: Iterable[tuple[str, str]]) -> str:
    """A definition list; values are already escaped."""
    return (
        '<dl class="tl-dl">'
        + "".join(f"<dt>{_esc(k)}</dt><dd>{v}</dd>" for k, v in items)
        + "</dl>"
    )


def _names(values: Sequence[Any], limit: int = 30) -> str:
    if not values:
        return _DASH
    shown = ", ".join(f"<code>{_esc(v)}</code>" for v in values[:limit])
    if len(values) <= limit:
        return shown
    rest = ", ".join(f"<code>{_esc(v)}</code>" for v in values[limit:])
    return f"{shown} <details><summary>and {len(values) - limit} more</summary>{rest}</details>"


# ---------------------------------------------------------------- sections


def _header(doc: Mapping[str, Any], heading: str) -> str:
    rows = _mapping(doc.get("rows"))
    columns = _mapping(doc.get("columns"))
    items: list[tuple[str, str]] = [("task", _esc(_text(doc.get("task")) or _DASH))]
    if rows:
        items.append(
            (
                "rows",
                f"reference {_esc(_count(rows.get('reference')))} · "
                f"current {_esc(_count(rows.get('current')))}",
            )
        )
    if columns:
        for key in ("target", "prediction"):
            if columns.get(key) is not None:
                items.append((key, f"<code>{_esc(columns[key])}</code>"))
        score = _seq(columns.get("score"))
        items.append(("score", _names(score) if score else "none"))
        features = _seq(columns.get("features"))
        items.append((f"features ({len(features)})", _names(features)))
    if doc.get("positive") is not None:
        items.append(("positive class", f"<code>{_esc(doc['positive'])}</code>"))
    classes = _seq(doc.get("classes"))
    if classes:
        items.append((f"classes ({len(classes)})", _names(classes)))
    return f'<header class="tl-header"><h1>{_esc(heading)}</h1>{_dl(items)}</header>'


def _summary(doc: Mapping[str, Any]) -> str:
    points: list[str] = []
    findings = [_mapping(f) for f in _seq(doc.get("findings"))]
    if findings:
        counts = {s: sum(1 for f in findings if f.get("severity") == s) for s in _SEVERITIES}
        parts = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        points.append(f"{len(findings)} finding{'s' if len(findings) != 1 else ''} ({parts}).")
    elif "findings" in doc:
        points.append("No findings.")
    comparison = _mapping(doc.get("comparison"))
    worse = [
        n
        for n, c in comparison.items()
        if _mapping(c).get("significant") and _mapping(c).get("worse")
    ]
    if worse:
        listed = ", ".join(
            f"<code>{_esc(n)}</code> {_esc(_num(_mapping(comparison[n]).get('reference'), 3))}"
            f" \u2192 {_esc(_num(_mapping(comparison[n]).get('current'), 3))}"
            for n in worse
        )
        points.append(f"Significantly worse on current data: {listed}.")
    elif comparison:
        points.append("No metric is significantly worse on current data.")
    drift = _mapping(doc.get("drift"))
    features = _mapping(drift.get("features"))
    if features:
        drifted = sum(1 for d in features.values() if _mapping(d).get("drifted"))
        points.append(
            f"{drifted} of {len(features)} features drifted "
            f"({_esc(_pct(drift.get('share_drifted')))}); dataset drift: "
            f"<b>{_yes_no(drift.get('dataset_drifted'))}</b>."
        )
    for key, label in (("prediction", "Prediction"), ("target", "Target")):
        entry = _mapping(drift.get(key))
        if entry:
            points.append(f"{label} drift: <b>{_yes_no(entry.get('drifted'))}</b>.")
    multi = _mapping(drift.get("multivariate"))
    if multi:
        points.append(
            f"Multivariate drift ({_esc(_text(multi.get('method')))}): "
            f"<b>{_yes_no(multi.get('drifted'))}</b>."
        )
    estimated = _mapping(doc.get("estimated"))
    est_current = _mapping(estimated.get("current"))
    realised = _mapping(estimated.get("realised"))
    for name in _metric_names(est_current)[:1]:
        text = (
            f"Estimated <code>{_esc(name)}</code> without labels: {_esc(_num(est_current[name]))}"
        )
        if _float(realised.get(name)) is not None:
            text += f" (realised {_esc(_num(realised[name]))})"
        points.append(text + ".")
    slices = [_mapping(s) for s in _seq(doc.get("slices"))]
    if slices:
        s = slices[0]
        points.append(
            f"Weakest slice: <code>{_esc(_text(s.get('condition')))}</code> "
            f"({_esc(_text(s.get('metric')))} {_esc(_num(s.get('value'), 3))}, "
            f"gap {_esc(_signed(s.get('gap')))}, {_esc(_count(s.get('rows')))} rows)."
        )
    notes = [_text(n) for n in _seq(doc.get("notes")) if n is not None]
    if not points and not notes:
        return ""
    body = "<ul>" + "".join(f"<li>{p}</li>" for p in points) + "</ul>" if points else ""
    if notes:
        body += '<h3>Notes</h3><ul class="tl-notes">'
        body += "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul>"
    return _section("summary", "Summary", body)


def _findings(doc: Mapping[str, Any]) -> str:
    if "findings" not in doc:
        return ""
    rows = []
    for raw in _seq(doc.get("findings")):
        f = _mapping(raw)
        severity = _text(f.get("severity"))
        sev_cls = f"tl-sev-{severity}" if severity in _SEVERITIES else ""
        rows.append(
            (
                [
                    f'<span class="tl-badge {sev_cls}">{_esc(severity or _DASH)}</span>',
                    f"<code>{_esc(_text(f.get('kind')))}</code>",
                    _esc(_text(f.get("where"))),
                    _esc(_text(f.get("evidence"))),
                    _esc(_text(f.get("action"))),
                    _esc(_num(f.get("gain"), 3)),
                ],
                sev_cls,
            )
        )
    table = _table(["severity", "kind", "where", "evidence", "action", "gain"], rows, "tl-find")
    return _section("findings", "Findings", table, "Ranked by severity, then expected gain.")


def _metrics(doc: Mapping[str, Any]) -> str:
    metrics = _mapping(doc.get("metrics"))
    intervals = _mapping(doc.get("intervals"))
    comparison = _mapping(doc.get("comparison"))
    ref, cur = _mapping(metrics.get("reference")), _mapping(metrics.get("current"))
    ref_iv, cur_iv = _mapping(intervals.get("reference")), _mapping(intervals.get("current"))
    names = _metric_names(ref, cur, comparison)
    if not names:
        return ""
    rows = []
    for name in names:
        comp = _mapping(comparison.get(name))
        ref_value = ref.get(name, comp.get("reference"))
        cur_value = cur.get(name, comp.get("current"))
        delta = comp.get("delta")
        if delta is None:
            delta = _diff(ref_value, cur_value)
        flagged = bool(comp.get("significant")) and bool(comp.get("worse"))
        if flagged:
            status = '<span class="tl-badge tl-sev-high">worse</span>'
        elif comp.get("significant"):
            status = "significant, better"
        elif comp:
            status = "not significant"
        else:
            status = _DASH
        rows.append(
            (
                [
                    f"<code>{_esc(name)}</code>",
                    _with_interval(ref_value, ref_iv.get(name)),
                    _with_interval(cur_value, cur_iv.get(name)),
                    _esc(_signed(delta)),
                    status,
                    _esc(_text(comp.get("method")) or _DASH),
                ],
                "tl-flag" if flagged else "",
            )
        )
    table = _table(
        ["metric", "reference [95% interval]", "current [95% interval]", "delta", "change", "test"],
        rows,
    )
    return _section(
        "metrics",
        "Metrics",
        table,
        "Flagged rows are significantly worse on current data than on reference data.",
    )


def _per_class(doc: Mapping[str, Any]) -> str:
    per_class = _mapping(doc.get("per_class"))
    ref, cur = _mapping(per_class.get("reference")), _mapping(per_class.get("current"))
    labels = list(dict.fromkeys([*ref, *cur]))
    if not labels:
        return ""
    rows = []
    for label in labels:
        r, c = _mapping(ref.get(label)), _mapping(cur.get(label))
        delta = _diff(r.get("f1"), c.get("f1"))
        rows.append(
            (
                [
                    f"<code>{_esc(label)}</code>",
                    *(
                        _esc(_num(side.get(k), 3))
                        for k in ("precision", "recall", "f1")
                        for side in (r, c)
                    ),
                    _esc(_signed(delta)),
                    _esc(_count(r.get("support"))),
                    _esc(_count(c.get("support"))),
                ],
                "",
            )
        )
    headers = [
        "class",
        "precision ref",
        "precision cur",
        "recall ref",
        "recall cur",
        "f1 ref",
        "f1 cur",
        "f1 delta",
        "support ref",
        "support cur",
    ]
    return _section("per-class", "Per class", _table(headers, rows))


def _estimated(doc: Mapping[str, Any]) -> str:
    estimated = _mapping(doc.get("estimated"))
    current = _mapping(estimated.get("current"))
    intervals = _mapping(estimated.get("intervals"))
    realised = _mapping(estimated.get("realised"))
    names = _metric_names(current, realised)
    if not names:
        return ""
    rows = []
    for name in names:
        est, real = current.get(name), realised.get(name)
        iv = _interval(intervals.get(name))
        diff = _diff(est, real)
        inside, real_value = _DASH, _float(real)
        if iv is not None and real_value is not None:
            inside = "yes" if iv[0] <= real_value <= iv[1] else "no"
        rows.append(
            (
                [
                    f"<code>{_esc(name)}</code>",
                    _with_interval(est, intervals.get(name)),
                    _esc(_num(real)),
                    _esc(_signed(diff)),
                    inside,
                ],
                "tl-flag" if inside == "no" else "",
            )
        )
    table = _table(
        ["metric", "estimated [interval]", "realised", "realised \u2212 estimated", "inside"],
        rows,
    )
    return _section(
        "estimated",
        "Estimated vs realised",
        table,
        "Estimated on current data without its labels; realised with them.",
    )


def _drift_cells(d: Mapping[str, Any]) -> list[str]:
    return [
        _esc(_text(d.get("kind")) or _DASH),
        _esc(_text(d.get("method")) or _DASH),
        _esc(_num(d.get("statistic"))),
        _esc(_num(d.get("p_value"), 3)),
        _esc(_num(d.get("threshold"), 3)),
        _esc(_num(d.get("psi"), 3)),
        '<span class="tl-badge tl-sev-high">drifted</span>' if d.get("drifted") else "no",
    ]


_DRIFT_HEADERS = ["kind", "method", "statistic", "p-value", "threshold", "PSI", "drifted"]


def _drift(doc: Mapping[str, Any]) -> str:
    drift = _mapping(doc.get("drift"))
    if not drift:
        return ""
    parts = []
    features = _mapping(drift.get("features"))
    if "features" in drift or "share_drifted" in drift:
        drifted = sum(1 for d in features.values() if _mapping(d).get("drifted"))
        parts.append(
            f"<p>{drifted} of {len(features)} features drifted "
            f"(share {_esc(_pct(drift.get('share_drifted')))}); dataset drift: "
            f"<b>{_yes_no(drift.get('dataset_drifted'))}</b>.</p>"
        )
        rows = [
            (
                [f"<code>{_esc(name)}</code>", *_drift_cells(_mapping(d))],
                "tl-flag" if _mapping(d).get("drifted") else "",
            )
            for name, d in features.items()
        ]
        parts.append(_table(["feature", *_DRIFT_HEADERS], rows))
    outputs = [
        (label, _mapping(drift.get(key)))
        for key, label in (("prediction", "prediction"), ("target", "target"))
        if _mapping(drift.get(key))
    ]
    if outputs:
        rows = [
            ([_esc(label), *_drift_cells(d)], "tl-flag" if d.get("drifted") else "")
            for label, d in outputs
        ]
        parts.append("<h3>Prediction and target</h3>" + _table(["column", *_DRIFT_HEADERS], rows))
    multi = _mapping(drift.get("multivariate"))
    if multi:
        lo, hi = multi.get("lower"), multi.get("upper")
        band = _DASH
        if _float(lo) is not None or _float(hi) is not None:
            band = f"[{_esc(_num(lo))}, {_esc(_num(hi))}]"
        columns = _seq(multi.get("columns"))
        items = [
            ("method", _esc(_text(multi.get("method")) or _DASH)),
            ("statistic (current)", _esc(_num(multi.get("statistic")))),
            ("reference", _esc(_num(multi.get("reference_error")))),
            ("band", band),
            (
                "drifted",
                '<span class="tl-badge tl-sev-high">drifted</span>'
                if multi.get("drifted")
                else _yes_no(multi.get("drifted")),
            ),
            ("components", _esc(_count(multi.get("n_components")))),
            (
                "rows",
                f"reference {_esc(_count(multi.get('n_reference')))} · "
                f"current {_esc(_count(multi.get('n_current')))}",
            ),
            (f"columns ({len(columns)})", _names(columns)),
        ]
        parts.append("<h3>Multivariate check</h3>" + _dl(items))
    if not parts:
        return ""
    return _section("drift", "Drift", "".join(parts))


def _slices(doc: Mapping[str, Any]) -> str:
    if "slices" not in doc:
        return ""
    rows = []
    for raw in _seq(doc.get("slices")):
        s = _mapping(raw)
        rows.append(
            (
                [
                    f"<code>{_esc(_text(s.get('feature')))}</code>",
                    _esc(_text(s.get("condition"))),
                    _esc(_count(s.get("rows"))),
                    _esc(_text(s.get("metric")) or _DASH),
                    _esc(_num(s.get("value"))),
                    _esc(_signed(s.get("gap"))),
                    _esc(_num(s.get("p_value"), 3)),
                ],
                "",
            )
        )
    table = _table(["feature", "condition", "rows", "metric", "value", "gap", "p-value"], rows)
    return _section("slices", "Weak slices", table, "Gap: the slice's metric minus the overall.")


def _threshold(doc: Mapping[str, Any]) -> str:
    block = _mapping(doc.get("threshold"))
    if not block:
        return ""
    at_t, at_best = _mapping(block.get("at_threshold")), _mapping(block.get("at_best"))
    rows = []
    for name in ("precision", "recall", "f1", "accuracy"):
        a, b = at_t.get(name), at_best.get(name)
        diff = _diff(a, b)
        rows.append(
            (
                [f"<code>{name}</code>", _esc(_num(a)), _esc(_num(b)), _esc(_signed(diff))],
                "",
            )
        )
    t, best = _num(block.get("threshold"), 3), _num(block.get("best_threshold"), 3)
    table = _table(["metric", f"at threshold {t}", f"at best-F1 threshold {best}", "change"], rows)
    note = (
        f"Moving the decision threshold on the positive score from {_esc(t)} to {_esc(best)} "
        "(the threshold of best F1) changes the metrics as follows."
    )
    return (
        f'<div class="tl-block tl-threshold"><h3>Decision threshold</h3>'
        f'<p class="tl-note">{note}</p>{table}</div>'
    )


def _timings(doc: Mapping[str, Any]) -> str:
    timings = _mapping(doc.get("timings"))
    rows = [([_esc(k), _esc(_num(v, 3))], "") for k, v in timings.items()]
    schema = _esc(_text(doc.get("schema")) or "tunelens.report/1")
    inner = ""
    if rows:
        table = _table(["step", "seconds"], rows)
        inner = f"<details><summary>Timings</summary>{table}</details>"
    return f'<footer class="tl-footer">{inner}<p>{schema} · rendered by tunelens</p></footer>'


# ---------------------------------------------------------------- figures


def _floats(values: object) -> list[float | None]:
    return [_float(v) for v in _seq(values)]


def _thin_indices(n: int, cap: int = MAX_TRACE_POINTS) -> list[int]:
    """``cap`` evenly spaced indices of ``range(n)``, first and last included."""
    if n <= cap:
        return list(range(n))
    return [round(i * (n - 1) / (cap - 1)) for i in range(cap)]


def _xy(xs: object, ys: object) -> tuple[list[float | None], list[float | None]]:
    x, y = _floats(xs), _floats(ys)
    n = min(len(x), len(y))
    idx = _thin_indices(n)
    return [x[i] for i in idx], [y[i] for i in idx]


def _centres(edges: object) -> tuple[list[float], list[float]]:
    """Bin centres and widths from bin edges."""
    e = [v for v in _floats(edges) if v is not None]
    pairs = list(itertools.pairwise(e))
    return [(a + b) / 2 for a, b in pairs], [b - a for a, b in pairs]


def _label(value: object) -> str:
    """A user string as plotly text: plotly renders a little HTML, so escape it."""
    return html.escape(str(value), quote=False)


def _layout(fig: Any, title: str, xaxis: str, yaxis: str, **kw: Any) -> Any:
    fig.update_layout(
        title={"text": title, "x": 0.02, "xanchor": "left"},
        xaxis_title=xaxis,
        yaxis_title=yaxis,
        height=_FIGURE_HEIGHT,
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        legend={"orientation": "h", "y": -0.18},
        **kw,
    )
    return fig


@functools.cache
def _go() -> Any:
    """`plotly.graph_objects`, imported on first use: importing this module stays light."""
    import plotly.graph_objects as go  # type: ignore[import-untyped, unused-ignore]

    return go


def _make_subplots(**kwargs: Any) -> Any:
    from plotly.subplots import make_subplots  # type: ignore[import-untyped, unused-ignore]

    return make_subplots(**kwargs)


def _diagonal() -> Any:
    return _go().Scatter(
        x=[0, 1],
        y=[0, 1],
        mode="lines",
        name="chance",
        line={"color": "#adb5bd", "dash": "dash", "width": 1},
        hoverinfo="skip",
    )


def _fig_curve(
    curves: Mapping[str, Any],
    key: str,
    axes: tuple[str, str],
    stat: tuple[str, str],
    title: str,
    labels: tuple[str, str],
    diagonal: bool,
) -> Any:
    """One curve per side (ROC or PR), the summary statistic in the legend."""
    block = _mapping(curves.get(key))
    traces = []
    for side in _SIDES:
        c = _mapping(block.get(side))
        x, y = _xy(c.get(axes[0]), c.get(axes[1]))
        if x:
            traces.append(
                _go().Scatter(
                    x=x,
                    y=y,
                    mode="lines",
                    name=f"{side} ({stat[1]} {_num(c.get(stat[0]), 3)})",
                    line={"color": _SIDE_COLOURS[side]},
                )
            )
    if not traces:
        return None
    fig = _go().Figure([_diagonal(), *traces] if diagonal else traces)
    return _layout(fig, title, labels[0], labels[1], yaxis_range=[0, 1.02])


def _fig_roc(curves: Mapping[str, Any]) -> Any:
    return _fig_curve(
        curves,
        "roc",
        ("fpr", "tpr"),
        ("auc", "AUC"),
        "ROC curve",
        ("false positive rate", "true positive rate"),
        diagonal=True,
    )


def _fig_pr(curves: Mapping[str, Any]) -> Any:
    return _fig_curve(
        curves,
        "pr",
        ("recall", "precision"),
        ("ap", "AP"),
        "Precision-recall curve",
        ("recall", "precision"),
        diagonal=False,
    )


def _fig_calibration(curves: Mapping[str, Any]) -> Any:
    cal = _mapping(curves.get("calibration"))
    traces = []
    eces = []
    for side in _SIDES:
        c = _mapping(cal.get(side))
        x, y = _xy(c.get("mean_predicted"), c.get("fraction_positive"))
        if not x:
            continue
        counts = [_float(v) for v in _seq(c.get("count"))]
        ece = _num(c.get("ece"), 3)
        eces.append(f"{side} {ece}")
        trace: dict[str, Any] = {
            "x": x,
            "y": y,
            "mode": "lines+markers",
            "name": f"{side} (ECE {ece})",
            "line": {"color": _SIDE_COLOURS[side]},
        }
        if len(counts) == len(x):
            trace["customdata"] = counts
            trace["hovertemplate"] = (
                "predicted %{x:.3f}<br>observed %{y:.3f}<br>rows %{customdata}"
                f"<extra>{side}</extra>"
            )
        traces.append(_go().Scatter(**trace))
    if not traces:
        return None
    fig = _go().Figure([_diagonal(), *traces])
    return _layout(
        fig,
        "Calibration (reliability diagram); ECE " + ", ".join(eces),
        "mean predicted probability",
        "fraction positive",
        xaxis_range=[0, 1],
        yaxis_range=[0, 1.02],
    )


def _matrix(value: object, n: int) -> list[list[float | None]] | None:
    rows = [_floats(r) for r in _seq(value)]
    if len(rows) != n or any(len(r) != n for r in rows):
        return None
    return rows


def _fig_confusion(doc: Mapping[str, Any]) -> Any:
    confusion = _mapping(doc.get("confusion"))
    labels = [_label(v) for v in _seq(confusion.get("labels"))]
    n = len(labels)
    matrices = [(side, _matrix(confusion.get(side), n)) for side in _SIDES]
    present = [(side, m) for side, m in matrices if m is not None]
    if not n or not present:
        return None
    fig = _make_subplots(rows=1, cols=len(present), subplot_titles=[side for side, _ in present])
    for col, (side, m) in enumerate(present, start=1):
        share = []
        for row in m:
            total = sum(v for v in row if v is not None)
            share.append([None if v is None or not total else v / total for v in row])
        fig.add_trace(
            _go().Heatmap(
                z=share,
                x=labels,
                y=labels,
                text=[[_count(v) for v in row] for row in m],
                texttemplate="%{text}",
                colorscale="Blues",
                zmin=0,
                zmax=1,
                showscale=col == len(present),
                colorbar={"title": {"text": "share of true"}},
                name=side,
                hovertemplate=(
                    "true %{y}<br>predicted %{x}<br>rows %{text}<br>share of true %{z:.1%}"
                    f"<extra>{side}</extra>"
                ),
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(type="category", title_text="predicted", row=1, col=col)
        fig.update_yaxes(
            type="category", autorange="reversed", showticklabels=col == 1, row=1, col=col
        )
    fig.update_yaxes(title_text="true", row=1, col=1)
    height = max(_FIGURE_HEIGHT, min(900, 120 + 28 * n))
    fig.update_layout(
        title={"text": "Confusion matrices (rows: true class)", "x": 0.02, "xanchor": "left"},
        height=height,
        margin={"l": 70, "r": 20, "t": 70, "b": 60},
    )
    return fig


def _fig_score_distribution(doc: Mapping[str, Any], curves: Mapping[str, Any]) -> Any:
    dist = _mapping(curves.get("score_distribution"))
    centres, widths = _centres(dist.get("edges"))
    if not centres:
        return None
    sides = [s for s in _SIDES if _mapping(dist.get(s))]
    if not sides:
        return None
    classes = list(dict.fromkeys(str(c) for s in sides for c in _mapping(dist.get(s))))
    colours = {c: _CLASS_COLOURS[i % len(_CLASS_COLOURS)] for i, c in enumerate(classes)}
    fig = _make_subplots(rows=1, cols=len(sides), subplot_titles=sides, shared_yaxes=False)
    for col, side in enumerate(sides, start=1):
        for cls, counts in _mapping(dist.get(side)).items():
            y = _floats(counts)
            if len(y) != len(centres):
                continue
            fig.add_trace(
                _go().Bar(
                    x=centres,
                    y=y,
                    width=widths,
                    name=f"true {_label(cls)}",
                    legendgroup=str(cls),
                    showlegend=col == 1,
                    marker={"color": colours[str(cls)]},
                    opacity=0.6,
                    hovertemplate=f"score %{{x:.3f}}<br>rows %{{y}}<extra>{_label(cls)}</extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="score", row=1, col=col)
    fig.update_yaxes(title_text="rows", row=1, col=1)
    title = "Score distribution by true class"
    if doc.get("positive") is not None:
        title += f" (score of class {_label(doc['positive'])})"
    fig.update_layout(
        title={"text": title, "x": 0.02, "xanchor": "left"},
        barmode="overlay",
        height=_FIGURE_HEIGHT,
        margin={"l": 60, "r": 20, "t": 70, "b": 50},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def _fig_residuals(curves: Mapping[str, Any]) -> Any:
    res = _mapping(curves.get("residuals"))
    traces = []
    for side in _SIDES:
        c = _mapping(res.get(side))
        x, y = _xy(c.get("prediction"), c.get("residual"))
        if x:
            traces.append(
                _go().Scatter(
                    x=x,
                    y=y,
                    mode="markers",
                    name=side,
                    marker={"color": _SIDE_COLOURS[side], "size": 4, "opacity": 0.5},
                )
            )
    if not traces:
        return None
    fig = _go().Figure(traces)
    fig.add_hline(y=0, line={"color": "#495057", "width": 1})
    return _layout(fig, "Residuals by prediction", "prediction", "residual")


def _fig_error_distribution(curves: Mapping[str, Any]) -> Any:
    dist = _mapping(curves.get("error_distribution"))
    centres, widths = _centres(dist.get("edges"))
    if not centres:
        return None
    traces = []
    for side in _SIDES:
        counts = _floats(dist.get(side))
        if len(counts) != len(centres):
            continue
        total = sum(v for v in counts if v is not None)
        share = [None if v is None or not total else v / total for v in counts]
        traces.append(
            _go().Bar(
                x=centres,
                y=share,
                width=widths,
                customdata=counts,
                name=side,
                marker={"color": _SIDE_COLOURS[side]},
                opacity=0.55,
                hovertemplate=(
                    "error %{x:.4g}<br>share %{y:.2%}<br>rows %{customdata}"
                    f"<extra>{side}</extra>"
                ),
            )
        )
    if not traces:
        return None
    fig = _go().Figure(traces)
    return _layout(fig, "Error distribution", "error", "share of rows", barmode="overlay")


def _clean(obj: Any) -> Any:
    """Plain JSON values: floats rounded to `SIGNIFICANT_DIGITS`, non-finite to null."""
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return None
        return float(f"{obj:.{SIGNIFICANT_DIGITS}g}")
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return _clean(obj.tolist())
    if hasattr(obj, "item"):
        return _clean(obj.item())
    return str(obj)


_ARRAY_KEYS = ("x", "y", "text", "customdata", "hovertext", "width")


def _cap_trace(trace: dict[str, Any], cap: int = MAX_TRACE_POINTS) -> dict[str, Any]:
    """Thin a trace's point arrays to at most ``cap`` points by even subsampling."""
    lengths = [len(trace[k]) for k in _ARRAY_KEYS if isinstance(trace.get(k), list)]
    n = max(lengths, default=0)
    if n <= cap or trace.get("type") == "heatmap":
        return trace
    idx = _thin_indices(n, cap)
    out = dict(trace)
    for key in _ARRAY_KEYS:
        value = out.get(key)
        if isinstance(value, list) and len(value) == n:
            out[key] = [value[i] for i in idx]
    marker = out.get("marker")
    if isinstance(marker, dict):
        marker = dict(marker)
        for key in ("color", "size", "opacity"):
            value = marker.get(key)
            if isinstance(value, list) and len(value) == n:
                marker[key] = [value[i] for i in idx]
        out["marker"] = marker
    return out


def _script_json(value: Any) -> str:
    """JSON text that is safe inside a ``<script>`` element."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return (
        text.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


@functools.cache
def _plotly_js_gzip_base64() -> str:
    """plotly.js, gzip-compressed and base64-encoded; computed once per process."""
    import plotly.offline  # type: ignore[import-untyped, unused-ignore]

    source = str(plotly.offline.get_plotlyjs()).encode("utf-8")
    return base64.b64encode(gzip.compress(source, compresslevel=6, mtime=0)).decode("ascii")


@functools.cache
def _plotly_js_version() -> str:
    import plotly.offline  # type: ignore[import-untyped, unused-ignore]

    try:
        return str(plotly.offline.get_plotlyjs_version())
    except Exception:  # pragma: no cover - very old plotly
        return "unknown"


class _Figures:
    """Collects the figures of one render and writes the scripts that draw them."""

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.figures: list[dict[str, Any]] = []
        self.template: Any = None

    def __len__(self) -> int:
        return len(self.figures)

    def add(self, fig: Any, label: str) -> str:
        if fig is None:
            return ""
        spec = fig.to_plotly_json()
        layout = dict(spec.get("layout", {}))
        template = layout.pop("template", None)
        if self.template is None and template is not None:
            self.template = _clean(template)
        div_id = f"{self.uid}-fig-{len(self.figures)}"
        self.figures.append(
            {
                "id": div_id,
                "data": [_cap_trace(_clean(t)) for t in spec.get("data", [])],
                "layout": _clean(layout),
            }
        )
        return (
            f'<div class="tl-figure" id="{div_id}" role="img" aria-label="{_esc(label)}">'
            '<p class="tl-loading">Drawing figure\u2026</p></div>'
        )

    def scripts(self) -> str:
        if not self.figures:
            return ""
        payload = {
            "figures": self.figures,
            "template": self.template,
            "config": {"responsive": True, "displaylogo": False},
        }
        script = (
            _LOADER_JS.replace("__ROOT__", self.uid)
            .replace("__VERSION__", _plotly_js_version())
            .replace("__BLOB__", f"{self.uid}-plotlyjs")
            .replace("__DATA__", f"{self.uid}-figures")
        )
        return (
            f'<script type="application/json" id="{self.uid}-figures">'
            f"{_script_json(payload)}</script>"
            f'<script type="application/octet-stream" id="{self.uid}-plotlyjs" '
            f'data-encoding="gzip+base64">{_plotly_js_gzip_base64()}</script>'
            f"<script>{script}</script>"
        )


# Draws the figures once plotly.js is available: the embedded copy is decompressed
# (once per page, shared by every report on it) and run as an inline script; `define`
# is hidden meanwhile so that require.js (Jupyter) does not capture it as a module.
_LOADER_JS = """
(function () {
  "use strict";
  var me = document.currentScript;
  var root = (me && me.closest && me.closest("div.tunelens-report")) ||
    document.getElementById("__ROOT__");
  if (!root) { return; }
  var VERSION = "__VERSION__";
  function find(id) { return root.querySelector("#" + id) || document.getElementById(id); }
  function loadPlotly() {
    if (window.Plotly && window.Plotly.version === VERSION) {
      return Promise.resolve(window.Plotly);
    }
    var cache = window.__tunelensPlotly = window.__tunelensPlotly || {};
    if (!cache[VERSION]) {
      cache[VERSION] = (async function () {
        if (typeof DecompressionStream === "undefined") {
          throw new Error("this browser has no DecompressionStream; open the report " +
            "in a current browser to see the figures");
        }
        var b64 = find("__BLOB__").textContent.trim();
        var bin = atob(b64);
        var bytes = new Uint8Array(bin.length);
        for (var i = 0; i < bin.length; i++) { bytes[i] = bin.charCodeAt(i); }
        var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
        var code = await new Response(stream).text();
        var previous = window.Plotly;
        var define = window.define;
        window.define = undefined;
        try {
          var s = document.createElement("script");
          s.text = code;
          (document.head || document.documentElement).appendChild(s);
        } finally {
          window.define = define;
        }
        var loaded = window.Plotly;
        if (!loaded || loaded === previous) { throw new Error("plotly.js did not load"); }
        if (previous !== undefined) { window.Plotly = previous; }
        return loaded;
      })();
    }
    return cache[VERSION];
  }
  var payload = JSON.parse(find("__DATA__").textContent);
  loadPlotly().then(function (Plotly) {
    return Promise.all(payload.figures.map(function (f) {
      var div = find(f.id);
      div.textContent = "";
      var layout = f.layout;
      if (payload.template) { layout.template = payload.template; }
      return Plotly.newPlot(div, f.data, layout, payload.config);
    }));
  }).then(function () {
    root.setAttribute("data-drawn", "true");
  }).catch(function (err) {
    root.setAttribute("data-drawn", "failed");
    payload.figures.forEach(function (f) {
      var div = find(f.id);
      if (div) { div.textContent = "The figure could not be drawn: " + err; }
    });
    console.error("tunelens report: the figures could not be drawn", err);
  });
})();
"""

_CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'unsafe-inline'; img-src data: blob:; font-src data:"
)

_CSS = """
.tunelens-report{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:#212529;line-height:1.45;max-width:1200px;margin:0 auto;padding:0 16px 24px;
font-size:14px;background:#fff}
.tunelens-report h1{font-size:1.6em;margin:.6em 0 .3em}
.tunelens-report h2{font-size:1.25em;margin:1.4em 0 .4em;padding-bottom:.2em;
border-bottom:1px solid #dee2e6}
.tunelens-report h3{font-size:1.05em;margin:1em 0 .3em}
.tunelens-report code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
font-size:.92em;background:#f1f3f5;padding:0 .25em;border-radius:3px}
.tunelens-report .tl-dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em;
margin:.4em 0}
.tunelens-report .tl-dl dt{font-weight:600;color:#495057}
.tunelens-report .tl-dl dd{margin:0}
.tunelens-report .tl-note{color:#6c757d;margin:.2em 0 .5em}
.tunelens-report .tl-empty{color:#6c757d;font-style:italic}
.tunelens-report .tl-scroll{overflow-x:auto}
.tunelens-report table.tl-table{border-collapse:collapse;width:100%;margin:.3em 0 .8em}
.tunelens-report .tl-table th,.tunelens-report .tl-table td{border-bottom:1px solid #e9ecef;
padding:.3em .6em;text-align:left;vertical-align:top}
.tunelens-report .tl-table th{background:#f8f9fa;font-weight:600}
.tunelens-report .tl-table tr.tl-flag td{background:#fff5f5}
.tunelens-report .tl-iv{color:#6c757d;font-size:.9em}
.tunelens-report .tl-badge{display:inline-block;padding:0 .5em;border-radius:8px;
font-size:.85em;font-weight:600;background:#e9ecef;color:#495057}
.tunelens-report .tl-badge.tl-sev-high{background:#ffe3e3;color:#c92a2a}
.tunelens-report .tl-badge.tl-sev-medium{background:#fff3bf;color:#a0620a}
.tunelens-report .tl-badge.tl-sev-low{background:#e7f5ff;color:#1864ab}
.tunelens-report .tl-find tr.tl-sev-high td:first-child{border-left:4px solid #e03131}
.tunelens-report .tl-find tr.tl-sev-medium td:first-child{border-left:4px solid #f59f00}
.tunelens-report .tl-find tr.tl-sev-low td:first-child{border-left:4px solid #339af0}
.tunelens-report .tl-figure{min-height:120px;margin:.6em 0 1.2em}
.tunelens-report .tl-loading{color:#adb5bd}
.tunelens-report .tl-block{margin:.6em 0 1.2em}
.tunelens-report .tl-footer{margin-top:2em;color:#868e96;font-size:.9em}
""".replace("\n", "")
