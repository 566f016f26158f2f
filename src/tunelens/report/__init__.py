"""Rendering of reports: self-contained HTML pages (plotly figures inline, no network).

`render_html` turns a ``tunelens.report/1`` document (docs/report.md) into one HTML
page, or into a fragment for a notebook; `write_html` writes that page atomically.
This package depends on plotly only; it never imports `tunelens.quality`.
"""

from __future__ import annotations

from tunelens.report.html import render_html, write_html

__all__ = ["render_html", "write_html"]
