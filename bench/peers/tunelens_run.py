"""tunelens: `tunelens.quality.analyse` with its HTML and JSON written.

Unlike the other children this one runs in the project's own .venv. Run by
bench/report.py; see bench/peers/_common.py.
"""

from __future__ import annotations

import os
from typing import Any

from _common import PEER_PACKAGES, run_child, versions_of


def _imports() -> dict[str, str]:
    global analyse
    from tunelens.quality import analyse

    return versions_of("tunelens", *PEER_PACKAGES, "duckdb", "plotly")


def _work(args: Any, reference: Any, current: Any) -> dict[str, Any]:
    report = analyse(
        reference, current, target=args.target, prediction=args.prediction, score=args.score
    )
    html = os.path.join(args.outdir, "tunelens.html")
    report.to_html(html)
    text = report.to_json()
    doc = report.to_dict()
    out: dict[str, Any] = {"html_bytes": os.path.getsize(html), "json_bytes": len(text)}
    estimated = doc.get("estimated") or {}
    out["estimate"] = estimated.get("current")
    out["estimate_interval"] = estimated.get("intervals")
    drift = doc.get("drift") or {}
    out["univariate_drifted"] = sorted(
        name for name, entry in (drift.get("features") or {}).items() if entry.get("drifted")
    )
    mv = drift.get("multivariate")
    if mv:
        out["multivariate"] = {k: mv.get(k) for k in ("method", "statistic", "upper", "drifted")}
    out["timings"] = doc.get("timings")
    return out


if __name__ == "__main__":
    run_child("tunelens", _imports, _work)
