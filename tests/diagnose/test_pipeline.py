"""Pipeline profile (issue 5, item 1): time per scikit-learn step, the table adds up,
findings, JSON, bad input."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tunelens.diagnose.pipeline import UNATTRIBUTED, PipelineProfile, profile_pipeline
from tunelens.errors import InputError

pd = pytest.importorskip("pandas")

RNG = np.random.default_rng(0)
X_NUM = RNG.normal(size=(200, 6))
Y = (X_NUM[:, 0] + 0.5 * X_NUM[:, 1] > 0).astype(int)


class Sleepy(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """A deliberately slow, stateless transformer."""

    def __init__(self, seconds: float = 0.02) -> None:
        self.seconds = seconds

    def fit(self, X: Any, y: Any = None) -> Sleepy:
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X: Any) -> Any:
        time.sleep(self.seconds)
        return X


def numeric_pipeline() -> Pipeline:
    return Pipeline(
        [("scale", StandardScaler()), ("pca", PCA(n_components=3)), ("clf", LogisticRegression())]
    ).fit(X_NUM, Y)


def frame() -> Any:
    return pd.DataFrame(
        {
            "city": RNG.choice(list("abcdefgh"), 200),
            "color": RNG.choice(["red", "green", "blue"], 200),
            "x1": RNG.normal(size=200),
            "x2": RNG.normal(size=200),
        }
    )


def column_pipeline(df: Any) -> Pipeline:
    pre = ColumnTransformer(
        [
            ("onehot", OneHotEncoder(handle_unknown="ignore"), ["city", "color"]),
            ("num", StandardScaler(), ["x1", "x2"]),
        ]
    )
    clf = RandomForestClassifier(n_estimators=3, max_depth=4, random_state=0)
    return Pipeline([("pre", pre), ("rf", clf)]).fit(df, Y)


def assert_adds_up(prof: PipelineProfile) -> None:
    top = [r for r in prof.steps if r["depth"] == 0]
    for i, tot in enumerate(prof.totals["per_batch"]):
        shares = sum(r["per_batch"][i]["share"] for r in top)
        assert shares == pytest.approx(1.0, abs=0.05)
        ms = sum(r["per_batch"][i]["ms"] for r in top)
        assert ms == pytest.approx(tot["end_to_end_ms"], rel=0.05)


# --------------------------------------------------------------------------- structure
def test_numeric_pipeline_rows_and_totals() -> None:
    prof = profile_pipeline(numeric_pipeline(), X_NUM, batch_sizes=(1, 32, 256), repeats=7)
    names = [r["name"] for r in prof.steps]
    assert names == ["scale", "pca", "clf", UNATTRIBUTED]
    assert prof.step("clf")["method"] == "predict"
    assert prof.step("pca")["method"] == "transform"
    for row in prof.steps[:-1]:
        assert [p["batch_size"] for p in row["per_batch"]] == [1, 32, 256]
        assert all(p["ms"] > 0 and p["iqr_ms"] >= 0 for p in row["per_batch"])
    assert_adds_up(prof)
    points = prof.batch_sweep["points"]
    assert [p["batch_size"] for p in points] == [1, 32, 256]
    assert all(p["throughput_per_s"] > 0 for p in points)
    assert prof.batch_sweep["saturates_at"] in (1, 32, 256)
    assert prof.totals["method"] == "predict"


def test_column_transformer_children_and_json() -> None:
    df = frame()
    prof = profile_pipeline(
        column_pipeline(df), df, batch_sizes=(1, 64), repeats=5, method="predict_proba"
    )
    names = [r["name"] for r in prof.steps]
    assert names == ["pre", "pre__onehot", "pre__num", "rf", UNATTRIBUTED]
    onehot = prof.step("pre__onehot")
    assert onehot["depth"] == 1 and onehot["parent"] == "pre" and onehot["leaf"]
    assert onehot["type"] == "OneHotEncoder"
    pre = prof.step("pre")
    assert not pre["leaf"]
    assert pre["self_ms"] == pytest.approx(
        pre["ms"] - onehot["ms"] - prof.step("pre__num")["ms"], abs=1e-9
    )
    assert prof.step("rf")["method"] == "predict_proba"
    assert_adds_up(prof)
    text = json.dumps(prof.to_dict(), allow_nan=False)
    back = json.loads(text)
    assert set(back) == {"steps", "totals", "batch_sweep", "findings"}
    assert json.loads(prof.to_json())["steps"][0]["name"] == "pre"


def test_feature_union_and_bare_estimator() -> None:
    union = FeatureUnion([("pca", PCA(n_components=2)), ("scale", StandardScaler())])
    pipe = Pipeline([("feats", union), ("clf", LogisticRegression())]).fit(X_NUM, Y)
    prof = profile_pipeline(pipe, X_NUM, batch_sizes=(1, 16), repeats=3)
    assert [r["name"] for r in prof.steps] == [
        "feats",
        "feats__pca",
        "feats__scale",
        "clf",
        UNATTRIBUTED,
    ]
    bare = LogisticRegression().fit(X_NUM, Y)
    prof = profile_pipeline(bare, X_NUM, batch_sizes=(1, 16), repeats=3, method="decision_function")
    assert [r["name"] for r in prof.steps] == ["LogisticRegression", UNATTRIBUTED]
    assert_adds_up(prof)


# --------------------------------------------------------------------------- findings
def test_batching_finding_when_per_call_overhead_dominates() -> None:
    prof = profile_pipeline(numeric_pipeline(), X_NUM, batch_sizes=(1, 512), repeats=5)
    kinds = [f.kind for f in prof.findings]
    assert "batching" in kinds
    finding = next(f for f in prof.findings if f.kind == "batching")
    assert "batch requests" in finding.evidence
    assert finding.gain is not None and finding.gain > 0.5


def test_slow_step_named_as_dominant() -> None:
    pipe = Pipeline(
        [("scale", StandardScaler()), ("slow", Sleepy()), ("clf", LogisticRegression())]
    ).fit(X_NUM, Y)
    prof = profile_pipeline(pipe, X_NUM, batch_sizes=(1, 8), repeats=9, slo_ms=1.0)
    rows = [r for r in prof.steps if r["name"] != UNATTRIBUTED]
    assert max(rows, key=lambda r: r["self_share"])["name"] == "slow"
    dominant = [f for f in prof.findings if f.where == "slow"]
    assert dominant, prof.findings
    assert dominant[0].kind in ("compute_bound", "overhead_bound")
    assert "`slow` (Sleepy.transform) takes" in dominant[0].evidence
    slo = [f for f in prof.findings if f.kind == "latency_slo"]
    assert slo and "`slow`" in slo[0].evidence
    gains = [f.gain or 0.0 for f in prof.findings]
    assert gains == sorted(gains, reverse=True)


def test_dominant_step_inside_column_transformer() -> None:
    df = frame()
    pre = ColumnTransformer(
        [("slow", Sleepy(), ["x1", "x2"]), ("onehot", OneHotEncoder(), ["city", "color"])]
    )
    pipe = Pipeline([("pre", pre), ("clf", LogisticRegression())]).fit(df, Y)
    prof = profile_pipeline(pipe, df, batch_sizes=(1,), repeats=9)
    assert any(f.where == "pre__slow" for f in prof.findings), prof.findings


# --------------------------------------------------------------------------- bad input
def test_unfitted_pipeline_raises() -> None:
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())])
    with pytest.raises(InputError) as info:
        profile_pipeline(pipe, X_NUM, repeats=1)
    assert info.value.field == "pipeline"


def test_wrong_number_of_columns_raises() -> None:
    with pytest.raises(InputError) as info:
        profile_pipeline(numeric_pipeline(), X_NUM[:, :4], repeats=1)
    assert info.value.field == "X"
    assert "4 columns" in str(info.value)


def test_missing_dataframe_column_raises() -> None:
    df = frame()
    pipe = column_pipeline(df)
    with pytest.raises(InputError) as info:
        profile_pipeline(pipe, df.drop(columns=["city"]).assign(extra=1.0), repeats=1)
    assert info.value.field == "X"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"method": "score"}, "method"),
        ({"batch_sizes": (0, 8)}, "batch_sizes"),
        ({"batch_sizes": ()}, "batch_sizes"),
        ({"repeats": 0}, "repeats"),
        ({"slo_ms": -1.0}, "slo_ms"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as info:
        profile_pipeline(numeric_pipeline(), X_NUM, **kwargs)
    assert info.value.field == field


def test_empty_x_raises() -> None:
    with pytest.raises(InputError) as info:
        profile_pipeline(numeric_pipeline(), X_NUM[:0], repeats=1)
    assert info.value.field == "X"


def test_nested_pipeline_and_passthrough() -> None:
    inner = Pipeline([("scale", StandardScaler()), ("pca", PCA(n_components=2))])
    pipe = Pipeline([("inner", inner), ("skip", "passthrough"), ("clf", LogisticRegression())]).fit(
        X_NUM, Y
    )
    prof = profile_pipeline(pipe, X_NUM, batch_sizes=(1, 8), repeats=3)
    rows = [(r["name"], r["type"], r["depth"]) for r in prof.steps]
    assert rows == [
        ("inner", "Pipeline", 0),
        ("inner__scale", "StandardScaler", 1),
        ("inner__pca", "PCA", 1),
        ("skip", "passthrough", 0),
        ("clf", "LogisticRegression", 0),
        (UNATTRIBUTED, "(glue)", 0),
    ]
    assert_adds_up(prof)
