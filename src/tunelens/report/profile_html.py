"""A runtime profile (``tunelens profile --html``) as one self-contained HTML page:
totals, findings, the batch sweep and the per-layer table. No script, no network."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["render_profile_html"]

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1f2933;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #d9e2ec}
table{border-collapse:collapse;width:100%;margin:8px 0}
th,td{padding:4px 8px;border-bottom:1px solid #eef2f6;text-align:right}
th:first-child,td:first-child,td.l{text-align:left}
th{background:#f5f7fa}.high{color:#b42318}.medium{color:#b54708}.low{color:#175cd3}
code{font-size:12px}
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "—"
        if abs(value) >= 1e9:
            return f"{value / 1e9:.3g} G"
        if abs(value) >= 1e6:
            return f"{value / 1e6:.3g} M"
        return f"{value:.4g}"
    return str(value)


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "<p>None.</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            cls = ' class="l"' if isinstance(value, str) else ""
            cells.append(f"<td{cls}>{html.escape(_fmt(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def render_profile_html(doc: Mapping[str, Any]) -> str:
    """The page for a `Profile.to_dict()` document."""
    totals = doc.get("totals") or {}
    findings = doc.get("findings") or []
    layers = [r for r in doc.get("layers") or [] if isinstance(r, Mapping)]
    columns = [
        c
        for c in (
            "name",
            "type",
            "calls",
            "self_ms",
            "self_share",
            "total_ms",
            "flops",
            "params",
            "activation_bytes",
            "intensity",
            "bound",
        )
        if any(c in r for r in layers)
    ]
    sweep = doc.get("batch_sweep")
    sweep_rows = sweep if isinstance(sweep, list) else (sweep or {}).get("rows", [])
    sweep_cols = sorted({k for r in sweep_rows if isinstance(r, Mapping) for k in r})
    finding_rows = "".join(
        f'<tr><td class="l {html.escape(str(f.get("severity")))}">'
        f"{html.escape(str(f.get('severity')))}</td>"
        f'<td class="l"><code>{html.escape(str(f.get("kind")))}</code></td>'
        f'<td class="l">{html.escape(str(f.get("where")))}</td>'
        f'<td class="l">{html.escape(str(f.get("evidence")))}</td>'
        f'<td class="l">{html.escape(str(f.get("action")))}</td></tr>'
        for f in findings
        if isinstance(f, Mapping)
    )
    totals_rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in totals.items()
        if not isinstance(v, Mapping | list)
    )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\"><title>tunelens profile</title>"
        f"<style>{_CSS}</style></head><body><h1>tunelens profile</h1>"
        f"<h2>Totals</h2><table>{totals_rows}</table>"
        "<h2>Findings</h2>"
        + (
            "<table><tr><th>severity</th><th>kind</th><th>where</th><th>evidence</th>"
            f"<th>action</th></tr>{finding_rows}</table>"
            if finding_rows
            else "<p>None.</p>"
        )
        + "<h2>Batch sweep</h2>"
        + _table(sweep_rows, sweep_cols)
        + "<h2>Layers</h2>"
        + _table(layers, columns)
        + "</body></html>"
    )
