"""Evidently 0.7: Report([ClassificationPreset(), DataDriftPreset()]) run and saved as HTML.

Run by bench/report.py inside bench/.peers-venv; see bench/peers/_common.py for the
arguments and the result file.
"""

from __future__ import annotations

import os
import time
from typing import Any

from _common import PEER_PACKAGES, _step, run_child, versions_of


def _imports() -> dict[str, str]:
    global Dataset, DataDefinition, BinaryClassification, Report
    global ClassificationPreset, DataDriftPreset
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset, DataDriftPreset

    return versions_of("evidently", *PEER_PACKAGES)


def _work(args: Any, reference: Any, current: Any) -> dict[str, Any]:
    definition = DataDefinition(
        numerical_columns=list(args.numerical),
        categorical_columns=list(args.categorical),
        classification=[
            BinaryClassification(
                target=args.target,
                prediction_labels=args.prediction,
                prediction_probas=args.score,
                pos_label=1,
            )
        ],
    )
    steps: dict[str, float] = {}
    t = time.perf_counter()
    ref = Dataset.from_pandas(reference, data_definition=definition)
    cur = Dataset.from_pandas(current, data_definition=definition)
    t = _step(steps, "datasets", t)
    report = Report([ClassificationPreset(), DataDriftPreset()])
    snapshot = report.run(cur, ref)
    t = _step(steps, "run", t)
    html = os.path.join(args.outdir, "evidently.html")
    snapshot.save_html(html)
    t = _step(steps, "html", t)
    text = snapshot.json()
    _step(steps, "json", t)
    out: dict[str, Any] = {"html_bytes": os.path.getsize(html), "json_bytes": len(text)}
    out["steps"] = steps
    drifted = []
    for m in snapshot.dict()["metrics"]:
        cfg = m.get("config", {})
        kind = cfg.get("type", "")
        value = m.get("value")
        threshold = float(cfg.get("threshold") or 0.1)
        if kind.endswith(":ValueDrift") and value is not None and float(value) >= threshold:
            drifted.append(cfg["column"])
        if cfg.get("type", "").endswith(":RocAuc"):
            out["roc_auc"] = m.get("value")
    out["univariate_drifted"] = drifted
    return out


if __name__ == "__main__":
    run_child("evidently", _imports, _work)
