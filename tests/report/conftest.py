"""Hand-built ``tunelens.report/1`` documents (docs/report.md) for the HTML renderer.

The documents follow docs/report.md key for key, with realistic sizes (ROC and PR curves
of 2000 points, 2000 residuals per side, 40-bin histograms), and carry hostile user data
(a feature name and a class label containing markup) to check escaping.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

HOSTILE = '<script>alert("x")</script>&<b>'
HOSTILE_CLASS = "<img src=x onerror=alert(1)>"

Builder = Callable[..., dict[str, Any]]


def _r(x: float) -> float:
    return float(x)


def _interval(value: float, half: float) -> list[float]:
    return [_r(value - half), _r(value + half)]


def _features(n: int) -> list[str]:
    names = [f"feature_{i:02d}" for i in range(n - 2)]
    return [*names, "city & region", HOSTILE]


def _drift_entry(rng: np.random.Generator, name: str, drifted: bool) -> dict[str, Any]:
    categorical = name.startswith("city")
    p = float(rng.uniform(1e-6, 0.01)) if drifted else float(rng.uniform(0.06, 0.9))
    return {
        "method": "chi2" if categorical else "ks",
        "statistic": float(rng.uniform(0.01, 0.4)),
        "p_value": p,
        "drifted": drifted,
        "threshold": 0.05,
        "kind": "categorical" if categorical else "numeric",
        "psi": float(rng.uniform(0.0, 0.4)),
    }


def _drift(rng: np.random.Generator, features: list[str]) -> dict[str, Any]:
    entries = {name: _drift_entry(rng, name, i % 4 == 0) for i, name in enumerate(features)}
    entries[HOSTILE]["drifted"] = True
    share = sum(e["drifted"] for e in entries.values()) / len(entries)
    return {
        "features": entries,
        "share_drifted": share,
        "dataset_drifted": share >= 0.5,
        "prediction": _drift_entry(rng, "prediction", True),
        "target": _drift_entry(rng, "target", False),
        "multivariate": {
            "method": "pca_reconstruction",
            "statistic": 1.31,
            "reference_error": 1.02,
            "lower": 0.97,
            "upper": 1.08,
            "drifted": True,
            "columns": features[:-1],
            "n_reference": 5000,
            "n_current": 4000,
            "n_components": 6,
        },
    }


def _findings() -> list[dict[str, Any]]:
    return [
        {
            "severity": "high",
            "kind": "metric_drop",
            "where": "overall",
            "evidence": "accuracy 0.91 -> 0.84 (delta -0.07, p < 0.001) <significant>",
            "action": "retrain on recent data",
            "gain": 0.07,
        },
        {
            "severity": "medium",
            "kind": "data_drift",
            "where": f"feature {HOSTILE}",
            "evidence": "KS 0.31, p 1e-6 & PSI 0.28",
            "action": "check the upstream pipeline of this column",
            "gain": None,
        },
        {
            "severity": "low",
            "kind": "weak_slice",
            "where": "city & region = 'north'",
            "evidence": "error rate 0.31 vs 0.16 overall, 412 rows",
            "action": "add training data for this slice",
            "gain": 0.01,
        },
    ]


def _slices() -> list[dict[str, Any]]:
    return [
        {
            "feature": HOSTILE,
            "condition": f"{HOSTILE} > 3.5",
            "rows": 412,
            "metric": "error_rate",
            "value": 0.31,
            "gap": 0.15,
            "p_value": 1.2e-5,
        },
        {
            "feature": "city & region",
            "condition": "city & region = 'north'",
            "rows": 803,
            "metric": "error_rate",
            "value": 0.24,
            "gap": 0.08,
            "p_value": 0.003,
        },
    ]


def _roc(rng: np.random.Generator, n: int, strength: float) -> dict[str, Any]:
    fpr = np.sort(np.concatenate([[0.0, 1.0], rng.uniform(0, 1, n - 2)]))
    tpr = fpr ** (1.0 / strength)
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "auc": auc}


def _pr(rng: np.random.Generator, n: int, base: float) -> dict[str, Any]:
    recall = np.sort(rng.uniform(0, 1, n))[::-1]
    precision = np.clip(base + (1 - base) * (1 - recall**2) + rng.normal(0, 0.01, n), 0, 1)
    return {"recall": recall.tolist(), "precision": precision.tolist(), "ap": 0.81}


def _calibration(rng: np.random.Generator, bins: int, bias: float) -> dict[str, Any]:
    mean = (np.arange(bins) + 0.5) / bins
    frac = np.clip(mean + bias * np.sin(np.pi * mean) + rng.normal(0, 0.01, bins), 0, 1)
    count = rng.integers(50, 800, bins)
    ece = float(np.sum(count * np.abs(frac - mean)) / count.sum())
    return {
        "mean_predicted": mean.tolist(),
        "fraction_positive": frac.tolist(),
        "count": count.tolist(),
        "ece": ece,
    }


def _score_distribution(
    rng: np.random.Generator, classes: list[str], bins: int = 40
) -> dict[str, Any]:
    edges = np.linspace(0, 1, bins + 1)
    return {
        "edges": edges.tolist(),
        "reference": {c: rng.integers(0, 300, bins).tolist() for c in classes},
        "current": {c: rng.integers(0, 250, bins).tolist() for c in classes},
    }


def _comparison(
    ref: dict[str, float | None], cur: dict[str, float | None], worse_names: set[str]
) -> dict[str, Any]:
    out = {}
    for name in ref:
        r, c = ref[name], cur[name]
        out[name] = {
            "reference": r,
            "current": c,
            "delta": None if r is None or c is None else c - r,
            "significant": name in worse_names or name == "recall",
            "worse": name in worse_names,
            "method": "two-proportion z" if name in ("accuracy", "error_rate") else "bootstrap",
        }
    return out


def _base(task: str, features: list[str], score: list[str] | None) -> dict[str, Any]:
    return {
        "schema": "tunelens.report/1",
        "task": task,
        "rows": {"reference": 5000, "current": 4000},
        "columns": {
            "target": "label",
            "prediction": "predicted",
            "score": score,
            "features": features,
        },
    }


def make_binary(curve_points: int = 2000, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    features = _features(20)
    classes = ["0", "1"]
    ref: dict[str, float | None] = {
        "accuracy": 0.912,
        "error_rate": 0.088,
        "precision": 0.87,
        "recall": 0.81,
        "f1": 0.839,
        "roc_auc": 0.951,
        "pr_auc": 0.88,
        "log_loss": 0.23,
        "brier": 0.071,
    }
    cur: dict[str, float | None] = {
        "accuracy": 0.843,
        "error_rate": 0.157,
        "precision": 0.8,
        "recall": 0.84,
        "f1": 0.82,
        "roc_auc": 0.902,
        "pr_auc": 0.8,
        "log_loss": None,
        "brier": 0.11,
    }
    doc = _base("binary", features, ["p1"])
    doc |= {
        "positive": "1",
        "classes": classes,
        "metrics": {"reference": ref, "current": cur},
        "intervals": {
            "reference": {k: _interval(v, 0.01) for k, v in ref.items() if v is not None},
            "current": {k: _interval(v, 0.012) for k, v in cur.items() if v is not None},
        },
        "comparison": _comparison(ref, cur, {"accuracy", "error_rate", "roc_auc"}),
        "per_class": None,
        "confusion": {
            "labels": classes,
            "reference": [[3100, 220], [220, 1460]],
            "current": [[2300, 380], [250, 1070]],
        },
        "curves": {
            "roc": {
                "reference": _roc(rng, curve_points, 3.0),
                "current": _roc(rng, curve_points, 2.2),
            },
            "pr": {
                "reference": _pr(rng, curve_points, 0.34),
                "current": _pr(rng, curve_points, 0.3),
            },
            "calibration": {
                "reference": _calibration(rng, 15, 0.02),
                "current": _calibration(rng, 15, 0.08),
            },
            "score_distribution": _score_distribution(rng, classes),
            "residuals": None,
            "error_distribution": None,
        },
        "threshold": {
            "threshold": 0.5,
            "best_threshold": 0.37,
            "at_threshold": {"precision": 0.8, "recall": 0.84, "f1": 0.82, "accuracy": 0.843},
            "at_best": {"precision": 0.76, "recall": 0.91, "f1": 0.83, "accuracy": 0.85},
        },
        "drift": _drift(rng, features),
        "estimated": {
            "current": {"accuracy": 0.86, "roc_auc": 0.91},
            "intervals": {"accuracy": [0.85, 0.87], "roc_auc": [0.895, 0.925]},
            "realised": {"accuracy": 0.843, "roc_auc": 0.902},
        },
        "slices": _slices(),
        "findings": _findings(),
        "timings": {"metrics": 0.12, "drift": 0.4, "slices": 1.3},
    }
    return doc


def make_multiclass(seed: int = 1) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    features = _features(12)
    classes = ["cat", "dog", "fish & chips", HOSTILE_CLASS]
    k = len(classes)
    names = ["accuracy", "error_rate", "precision", "recall", "f1", "log_loss", "brier"]
    ref: dict[str, float | None] = {n: float(rng.uniform(0.5, 0.95)) for n in names}
    cur: dict[str, float | None] = {n: float(rng.uniform(0.4, 0.9)) for n in names}
    ref["roc_auc"], cur["roc_auc"] = None, None

    def per_class() -> dict[str, Any]:
        return {
            c: {
                "precision": float(rng.uniform(0.5, 1)),
                "recall": float(rng.uniform(0.5, 1)),
                "f1": float(rng.uniform(0.5, 1)),
                "support": int(rng.integers(100, 2000)),
            }
            for c in classes
        }

    def matrix() -> list[list[int]]:
        m = rng.integers(0, 80, (k, k)) + np.diag(rng.integers(600, 1200, k))
        return [[int(v) for v in row] for row in m]

    doc = _base("multiclass", features, [f"p_{c}" for c in classes])
    doc |= {
        "positive": None,
        "classes": classes,
        "metrics": {"reference": ref, "current": cur},
        "intervals": {
            "reference": {k_: _interval(v, 0.02) for k_, v in ref.items() if v is not None},
            "current": {k_: _interval(v, 0.02) for k_, v in cur.items() if v is not None},
        },
        "comparison": _comparison(ref, cur, {"f1"}),
        "per_class": {"reference": per_class(), "current": per_class()},
        "confusion": {"labels": classes, "reference": matrix(), "current": matrix()},
        "curves": {
            "roc": None,
            "pr": None,
            "calibration": None,
            "score_distribution": _score_distribution(rng, classes),
            "residuals": None,
            "error_distribution": None,
        },
        "threshold": None,
        "drift": _drift(rng, features),
        "estimated": {
            "current": {"accuracy": 0.7},
            "intervals": {"accuracy": [0.68, 0.72]},
            "realised": {"accuracy": 0.75},
        },
        "slices": _slices(),
        "findings": _findings(),
        "timings": {"metrics": 0.2},
    }
    return doc


def make_regression(sample: int = 2000, seed: int = 2) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    features = _features(15)
    ref: dict[str, float | None] = {"mae": 1.21, "rmse": 1.62, "r2": 0.83}
    cur: dict[str, float | None] = {"mae": 1.55, "rmse": 2.1, "r2": 0.74}

    def residuals(scale: float) -> dict[str, Any]:
        prediction = rng.normal(10, 3, sample)
        return {
            "prediction": prediction.tolist(),
            "residual": rng.normal(0, scale, sample).tolist(),
        }

    edges = np.linspace(-6, 6, 41)
    doc = _base("regression", features, None)
    doc |= {
        "positive": None,
        "classes": None,
        "metrics": {"reference": ref, "current": cur},
        "intervals": {
            "reference": {k: _interval(v, 0.05) for k, v in ref.items() if v is not None},
            "current": {k: _interval(v, 0.06) for k, v in cur.items() if v is not None},
        },
        "comparison": _comparison(ref, cur, {"mae", "rmse"}),
        "per_class": None,
        "confusion": None,
        "curves": {
            "roc": None,
            "pr": None,
            "calibration": None,
            "score_distribution": None,
            "residuals": {"reference": residuals(1.5), "current": residuals(2.0)},
            "error_distribution": {
                "edges": edges.tolist(),
                "reference": rng.integers(0, 400, 40).tolist(),
                "current": rng.integers(0, 300, 40).tolist(),
            },
        },
        "threshold": None,
        "drift": _drift(rng, features),
        "estimated": {
            "current": {"mae": 1.4, "rmse": 1.9},
            "intervals": {"mae": [1.3, 1.5], "rmse": [1.8, 2.0]},
            "realised": {"mae": 1.55, "rmse": 2.1},
        },
        "slices": [],
        "findings": [],
        "timings": {},
    }
    doc["drift"]["target"] = None
    return doc


#: task -> (builder, number of figures its page draws)
EXPECTED_FIGURES = {"binary": 5, "multiclass": 2, "regression": 2}
BUILDERS: dict[str, Builder] = {
    "binary": make_binary,
    "multiclass": make_multiclass,
    "regression": make_regression,
}


def _json_roundtrip(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as `report.to_json()` would give it back: plain JSON types only."""
    return dict(json.loads(json.dumps(doc, allow_nan=False)))


@pytest.fixture(params=sorted(BUILDERS))
def task_doc(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """(task, document) for each task."""
    task = str(request.param)
    return task, _json_roundtrip(BUILDERS[task]())


@pytest.fixture
def binary_doc() -> dict[str, Any]:
    return _json_roundtrip(make_binary())


@pytest.fixture
def multiclass_doc() -> dict[str, Any]:
    return _json_roundtrip(make_multiclass())


@pytest.fixture
def regression_doc() -> dict[str, Any]:
    return _json_roundtrip(make_regression())


@pytest.fixture
def builders() -> dict[str, Builder]:
    """task -> the document builder, for documents of other sizes."""
    return dict(BUILDERS)


@pytest.fixture
def expected_figures() -> dict[str, int]:
    return dict(EXPECTED_FIGURES)


@pytest.fixture
def hostile() -> tuple[str, str]:
    """(hostile feature name, hostile class label) used in the documents."""
    return HOSTILE, HOSTILE_CLASS


@pytest.fixture
def out_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    d = tmp_path / "out"
    d.mkdir()
    return d
