"""NannyML: CBPE + UnivariateDriftCalculator + DataReconstructionDriftCalculator.

Each calculator is fitted on the reference set and run on the current set. CBPE uses one
chunk per set (chunk_number=1), so its estimate is for the whole current set; the two drift
calculators keep NannyML's default chunking (10 chunks per set), because their alert
thresholds come from the spread over the reference chunks and are meaningless with one
(every column alerts). A column counts as drifted when any current chunk alerts. Run by
bench/report.py inside bench/.peers-venv; see bench/peers/_common.py.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from _common import PEER_PACKAGES, _step, run_child, versions_of

CBPE_METRICS = ["roc_auc", "accuracy", "f1", "precision", "recall"]
# BENCH_NANNYML_DRIFT_CHUNKS=N gives the drift calculators chunk_number=N instead.
DRIFT_CHUNKS = int(os.environ.get("BENCH_NANNYML_DRIFT_CHUNKS", "0")) or None


def _imports() -> dict[str, str]:
    global nml
    import nannyml as nml

    return versions_of("nannyml", *PEER_PACKAGES)


def _value(df: Any, metric: str, field: str = "value") -> float | None:
    """The one chunk's value from a NannyML result frame with (metric, field) columns."""
    rows = df[df[("chunk", "period")] == "analysis"]
    v = float(rows[(metric, field)].iloc[0])
    return None if math.isnan(v) else v


def _work(args: Any, reference: Any, current: Any) -> dict[str, Any]:
    features = [*args.numerical, *args.categorical]
    out: dict[str, Any] = {}
    steps: dict[str, float] = {}
    t = time.perf_counter()

    cbpe = nml.CBPE(
        y_pred_proba=args.score,
        y_pred=args.prediction,
        y_true=args.target,
        problem_type="classification_binary",
        metrics=CBPE_METRICS,
        chunk_number=1,
    )
    cbpe.fit(reference)
    est = cbpe.estimate(current.drop(columns=[args.target])).to_df()
    t = _step(steps, "cbpe", t)
    out["estimate"] = {m: _value(est, m) for m in CBPE_METRICS}
    out["estimate_interval"] = {
        m: [
            _value(est, m, "lower_confidence_boundary"),
            _value(est, m, "upper_confidence_boundary"),
        ]
        for m in CBPE_METRICS
    }

    uni = nml.UnivariateDriftCalculator(
        column_names=features,
        treat_as_categorical=args.categorical,
        chunk_number=DRIFT_CHUNKS,
    )
    uni.fit(reference)
    udf = uni.calculate(current).filter(period="analysis").to_df()
    t = _step(steps, "univariate", t)
    drifted = []
    for col in features:
        for method in ("jensen_shannon", "chi2", "kolmogorov_smirnov", "l_infinity"):
            key = (col, method, "alert")
            if key in udf.columns and bool(udf[key].any()):
                drifted.append(col)
                break
    out["univariate_drifted"] = drifted
    out["univariate_methods"] = sorted({c[1] for c in udf.columns if c[0] in features})

    drd = nml.DataReconstructionDriftCalculator(column_names=features, chunk_number=DRIFT_CHUNKS)
    drd.fit(reference)
    mdf = drd.calculate(current).filter(period="analysis").to_df()
    _step(steps, "multivariate", t)
    out["steps"] = steps
    col = "reconstruction_error"
    out["multivariate"] = {
        "chunks": len(mdf),
        "max_value": float(mdf[(col, "value")].max()),
        "upper_threshold": _nan_none(mdf[(col, "upper_threshold")].iloc[0]),
        "alert": bool(mdf[(col, "alert")].any()),
    }
    return out


def _nan_none(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


if __name__ == "__main__":
    run_child("nannyml", _imports, _work)
