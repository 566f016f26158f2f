"""Drift and quality reports of a served model against its registered reference.

The reference is a table the user registers (``PUT /api/v1/models/{model}/reference``,
kept in the store as Parquet): the model's feature columns, and for quality reports the
true ``label``, the ``prediction`` and the ``score`` (binary) or ``score_<k>`` columns
(multiclass, in the model's class order), with labels and predictions as the class
labels themselves. The current data come from the store's scan of ``[since, until)``.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

import pandas as pd

from tunelens.errors import InputError
from tunelens.store import FEATURE_PREFIX, ModelRecord, Store

__all__ = ["drift_document", "reference_metrics", "report_document"]


def _reference(store: Store, model: str) -> tuple[pd.DataFrame, datetime] | None:
    found = store.get_blob(model, "reference")
    if found is None:
        return None
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(found[0])).to_pandas(), found[1]


def _score_columns(record: ModelRecord) -> list[str]:
    if record.task == "binary":
        return ["score"]
    if record.task == "multiclass":
        return [f"score_{k}" for k in range(len(record.classes))]
    return []


def _current(
    store: Store,
    record: ModelRecord,
    features: list[str],
    since: datetime | None,
    until: datetime | None,
    *,
    with_labels: bool,
) -> pd.DataFrame:
    columns = [FEATURE_PREFIX + f for f in features] + ["prediction"] + _score_columns(record)
    table = store.scan(record.name, since=since, until=until, columns=columns)
    frame: pd.DataFrame = table.to_pandas()
    frame.columns = [
        c[len(FEATURE_PREFIX) :] if c.startswith(FEATURE_PREFIX) else c for c in frame.columns
    ]
    if record.task != "regression":
        from tunelens.monitor._inputs import decode_classes

        frame = decode_classes(frame, list(record.classes))
    if with_labels:
        labelled: pd.DataFrame = frame[frame["label"].notna()].reset_index(drop=True)
        return labelled
    return frame


def _entry(d: Any) -> dict[str, Any]:
    out: dict[str, Any] = d.to_dict()
    out.update({"threshold": float(d.threshold), "kind": d.kind, "psi": d.psi})
    return out


def drift_document(
    store: Store, record: ModelRecord, since: datetime | None, until: datetime | None
) -> dict[str, Any]:
    """Per-feature drift of ``[since, until)`` against the reference (null without one)."""
    from tunelens.quality.drift import column_drift, dataset_drift

    found = _reference(store, record.name)
    empty: dict[str, Any] = {
        "model": record.name,
        "reference": None,
        "current": {"rows": 0, "since": _iso(since), "until": _iso(until)},
        "features": {},
        "share_drifted": None,
        "dataset_drifted": None,
        "prediction": None,
    }
    if found is None:
        return empty
    ref, registered = found
    empty["reference"] = {"rows": len(ref), "registered_at": registered.isoformat()}
    features = [f for f in record.features if f in ref.columns]
    cur = _current(store, record, features, since, until, with_labels=False)
    empty["current"]["rows"] = len(cur)
    if not features or cur.empty:
        return empty
    drift = dataset_drift(ref[features], cur[features])
    doc = {
        **empty,
        "features": {name: _entry(d) for name, d in drift.features.items()},
        "share_drifted": float(drift.share_drifted),
        "dataset_drifted": bool(drift.dataset_drifted),
    }
    if "score" in ref.columns and "score" in cur.columns and cur["score"].notna().any():
        doc["prediction"] = _entry(
            column_drift(ref["score"].dropna(), cur["score"].dropna(), kind="numeric")
        )
    return doc


def reference_metrics(store: Store, record: ModelRecord) -> dict[str, float] | None:
    """Accuracy, F1, ... (or MAE, RMSE, R2) of the reference table, or None when it has
    no ``label`` and ``prediction`` columns (or there is no reference)."""
    import math

    from tunelens.metrics import (
        classification_metrics,
        mean_absolute_error,
        r2_score,
        root_mean_squared_error,
    )

    found = _reference(store, record.name)
    if found is None:
        return None
    ref, _ = found
    if "label" not in ref.columns or "prediction" not in ref.columns:
        return None
    ref = ref[ref["label"].notna() & ref["prediction"].notna()]
    if ref.empty:
        return None
    if record.task == "regression":
        y, p = ref["label"].to_numpy(float), ref["prediction"].to_numpy(float)
        values = {
            "mae": mean_absolute_error(y, p),
            "rmse": root_mean_squared_error(y, p),
            "r2": r2_score(y, p),
        }
    else:
        scores = [c for c in _score_columns(record) if c in ref.columns]
        score: Any = None
        if len(scores) == 1:
            score = ref[scores[0]].to_numpy(float)
        elif scores:
            score = ref[scores].to_numpy(float)
        positive = record.classes[1] if record.task == "binary" and record.classes else None
        values = classification_metrics(
            ref["label"].to_numpy(), ref["prediction"].to_numpy(), score, positive=positive
        )
    return {k: float(v) for k, v in values.items() if math.isfinite(float(v))}


def report_document(
    store: Store, record: ModelRecord, since: datetime | None, until: datetime | None
) -> dict[str, Any]:
    """The quality report of the labelled rows of ``[since, until)`` against the reference."""
    from tunelens.quality import analyse

    found = _reference(store, record.name)
    if found is None:
        raise InputError(
            "reference",
            f"model {record.name!r} has no reference",
            "register one with PUT /api/v1/models/{model}/reference",
        )
    ref, _ = found
    for column in ("label", "prediction"):
        if column not in ref.columns:
            raise InputError(
                f"reference[{column!r}]",
                "no such column",
                "a reference for quality reports holds label and prediction columns",
            )
    features = [f for f in record.features if f in ref.columns]
    scores = [c for c in _score_columns(record) if c in ref.columns]
    cur = _current(store, record, features, since, until, with_labels=True)
    if cur.empty:
        raise InputError(
            "current", "no labelled predictions in the range", "wait for labels or widen it"
        )
    report = analyse(
        ref,
        cur,
        target="label",
        prediction="prediction",
        score=scores or None,
        task=record.task,
        features=features,
    )
    return report.to_dict()


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
