"""`analyse`: the quality report, checked against scikit-learn, SciPy and simulation."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats
from sklearn import metrics as skm

from tunelens.errors import InputError
from tunelens.metrics import expected_calibration_error
from tunelens.quality import SCHEMA, analyse


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def binary_table(
    n: int,
    seed: int,
    *,
    shift: float = 0.0,
    flip: float = 0.0,
    weak_category: str | None = None,
) -> pd.DataFrame:
    """Features x0..x3 (numeric), c0 (categorical); the score is the true probability.

    ``shift`` moves x0 (covariate shift: P(y | x) unchanged); ``flip`` flips that share
    of labels (a real drop); ``weak_category`` flips 40% of the labels in c0 == it.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    x[:, 0] += shift
    c0 = rng.choice(["a", "b", "c", "d"], n)
    p = _sigmoid(1.5 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2])
    y = (rng.random(n) < p).astype(int)
    if flip:
        y = np.where(rng.random(n) < flip, 1 - y, y)
    if weak_category is not None:
        hit = (c0 == weak_category) & (rng.random(n) < 0.4)
        y = np.where(hit, 1 - y, y)
    frame = pd.DataFrame(x, columns=["x0", "x1", "x2", "x3"])
    frame["c0"] = c0
    frame["y"] = y
    frame["score"] = p
    frame["pred"] = (p >= 0.5).astype(int)
    return frame


def multiclass_table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    logits = np.column_stack([x[:, 0], x[:, 1], -x[:, 0] - x[:, 1]]) * 1.5
    P = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in P])
    frame = pd.DataFrame(x, columns=["x0", "x1", "x2"])
    frame["y"] = np.array(["cat", "dog", "fox"])[y]
    frame["pred"] = np.array(["cat", "dog", "fox"])[P.argmax(axis=1)]
    for k, name in enumerate(["p_cat", "p_dog", "p_fox"]):
        frame[name] = P[:, k]
    return frame


def regression_table(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, size=(n, 3))
    y = 2 * x[:, 0] - x[:, 1] + rng.normal(0, 0.5 + 0.3 * np.abs(x[:, 2]), n)
    pred = 2 * x[:, 0] - x[:, 1]
    frame = pd.DataFrame(x, columns=["x0", "x1", "x2"])
    frame["y"] = y
    frame["pred"] = pred
    return frame


# ---------------------------------------------------------------- values


@pytest.mark.parametrize("n", [400, 5000])
def test_binary_metrics_equal_scikit_learn(n: int) -> None:
    ref, cur = binary_table(n, 1), binary_table(n, 2, shift=0.7, flip=0.1)
    report = analyse(ref, cur, target="y", prediction="pred", score="score")
    assert report.task == "binary" and report.positive == 1
    for side, frame in (("reference", ref), ("current", cur)):
        got = report.metrics[side]
        y, pred, s = frame["y"], frame["pred"], frame["score"]
        expected = {
            "accuracy": skm.accuracy_score(y, pred),
            "error_rate": 1 - skm.accuracy_score(y, pred),
            "precision": skm.precision_score(y, pred),
            "recall": skm.recall_score(y, pred),
            "f1": skm.f1_score(y, pred),
            "roc_auc": skm.roc_auc_score(y, s),
            "pr_auc": skm.average_precision_score(y, s),
            "log_loss": skm.log_loss(y, s),
            "brier": skm.brier_score_loss(y, s),
        }
        assert set(got) == set(expected)
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, abs=1e-9), (side, name)
    doc = report.to_dict()
    cm = skm.confusion_matrix(cur["y"], cur["pred"])
    assert doc["confusion"]["current"] == cm.tolist()
    assert doc["confusion"]["labels"] == ["0", "1"]


def test_multiclass_metrics_equal_scikit_learn() -> None:
    ref, cur = multiclass_table(3000, 1), multiclass_table(2000, 2)
    cols = ["p_cat", "p_dog", "p_fox"]
    report = analyse(ref, cur, target="y", prediction="pred", score=cols)
    assert report.task == "multiclass"
    assert report.classes == ("cat", "dog", "fox")
    got = report.metrics["current"]
    y, pred, P = cur["y"], cur["pred"], cur[cols].to_numpy()
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-9)
    for name, fn in (
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ):
        assert got[name] == pytest.approx(fn(y, pred, average="macro"), abs=1e-9)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, P, multi_class="ovr"), abs=1e-9)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, P), abs=1e-9)
    doc = report.to_dict()
    per = doc["per_class"]["current"]
    sk = skm.precision_recall_fscore_support(y, pred, labels=["cat", "dog", "fox"])
    for k, label in enumerate(["cat", "dog", "fox"]):
        assert per[label]["precision"] == pytest.approx(sk[0][k], abs=1e-12)
        assert per[label]["recall"] == pytest.approx(sk[1][k], abs=1e-12)
        assert per[label]["f1"] == pytest.approx(sk[2][k], abs=1e-12)
        assert per[label]["support"] == sk[3][k]
    for name, (lo, hi) in report.intervals["current"].items():
        assert lo <= got[name] + 1e-12 and got[name] <= hi + 1e-12, name
    json.dumps(doc, allow_nan=False)


def test_a_single_score_column_is_refused_for_multiclass() -> None:
    ref = multiclass_table(300, 1)
    with pytest.raises(InputError, match="score"):
        analyse(ref, ref, target="y", prediction="pred", score="p_cat")


def test_regression_metrics_equal_scikit_learn() -> None:
    ref, cur = regression_table(3000, 1), regression_table(3000, 2, shift=0.5)
    report = analyse(ref, cur, target="y", prediction="pred")
    assert report.task == "regression"
    got = report.metrics["current"]
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(cur.y, cur.pred), abs=1e-9)
    assert got["rmse"] == pytest.approx(skm.root_mean_squared_error(cur.y, cur.pred), abs=1e-9)
    assert got["r2"] == pytest.approx(skm.r2_score(cur.y, cur.pred), abs=1e-9)
    doc = report.to_dict()
    assert doc["confusion"] is None and doc["curves"]["roc"] is None
    res = doc["curves"]["residuals"]["current"]
    assert len(res["prediction"]) == len(res["residual"]) == 2000
    dist = doc["curves"]["error_distribution"]
    assert sum(dist["current"]) == 3000 and len(dist["edges"]) == len(dist["current"]) + 1
    assert "mae" in doc["estimated"]["current"]
    # the MAE model sees the heteroscedastic noise: its estimate is close to the truth
    assert doc["estimated"]["current"]["mae"] == pytest.approx(got["mae"], rel=0.1)


def test_drift_statistics_equal_scipy() -> None:
    rng = np.random.default_rng(3)
    small_ref = pd.DataFrame({"x": rng.normal(size=300), "c": rng.choice(list("abc"), 300)})
    small_cur = pd.DataFrame(
        {"x": rng.normal(0.3, size=200), "c": rng.choice(list("abc"), 200, p=[0.5, 0.3, 0.2])}
    )
    for frame in (small_ref, small_cur):
        frame["y"] = rng.integers(0, 2, len(frame))
        frame["pred"] = rng.integers(0, 2, len(frame))
    report = analyse(small_ref, small_cur, target="y", prediction="pred")
    assert report.drift is not None
    x, c = report.drift.features["x"], report.drift.features["c"]
    ks = stats.ks_2samp(small_ref.x, small_cur.x)
    assert (x.method, x.statistic, x.p_value) == (
        "ks",
        pytest.approx(ks.statistic, abs=1e-9),
        pytest.approx(ks.pvalue, abs=1e-9),
    )
    table = np.array(
        [[(small_ref.c == k).sum() for k in "abc"], [(small_cur.c == k).sum() for k in "abc"]]
    )
    chi = stats.chi2_contingency(table)
    assert c.method == "chi2"
    assert c.statistic == pytest.approx(chi.statistic, abs=1e-9)
    assert c.p_value == pytest.approx(chi.pvalue, abs=1e-9)

    big_ref, big_cur = binary_table(5000, 1), binary_table(4000, 2, shift=0.4)
    report = analyse(big_ref, big_cur, target="y", prediction="pred", score="score")
    assert report.drift is not None
    w = report.drift.features["x0"]
    expected = stats.wasserstein_distance(big_ref.x0, big_cur.x0) / np.std(big_ref.x0)
    assert w.method == "wasserstein" and w.statistic == pytest.approx(expected, abs=1e-9)
    assert report.drift.features["x0"].drifted
    assert not any(report.drift.features[k].drifted for k in ("x1", "x2", "x3", "c0"))
    doc = report.to_dict()
    assert doc["drift"]["prediction"]["drifted"]  # the score moves with x0
    assert doc["drift"]["target"]["method"] == "jensenshannon"


# ---------------------------------------------------------------- the document


def _check_schema(doc: dict[str, Any]) -> None:
    assert doc["schema"] == SCHEMA == "tunelens.report/1"
    assert doc["task"] in ("binary", "multiclass", "regression")
    assert set(doc["rows"]) == {"reference", "current"}
    assert set(doc["metrics"]) == {"reference", "current"}
    assert set(doc["intervals"]) >= {"current"}
    for name, (lo, hi) in doc["intervals"]["current"].items():
        assert lo is None or hi is None or lo <= hi, name
    drift = doc["drift"]
    assert {"features", "share_drifted", "dataset_drifted"} <= set(drift)
    for entry in drift["features"].values():
        assert {"method", "statistic", "p_value", "drifted"} <= set(entry)
        assert isinstance(entry["drifted"], bool)
    for s in doc["slices"]:
        assert {"feature", "condition", "rows", "metric", "value", "gap"} <= set(s)
    for f in doc["findings"]:
        assert f["severity"] in ("high", "medium", "low")
        assert {"kind", "where", "evidence", "action"} <= set(f)
    json.loads(json.dumps(doc, allow_nan=False))


def test_the_document_follows_the_schema_for_every_task() -> None:
    docs = [
        analyse(
            binary_table(2000, 1),
            binary_table(2000, 2),
            target="y",
            prediction="pred",
            score="score",
        ).to_dict(),
        analyse(
            multiclass_table(800, 1),
            multiclass_table(800, 2),
            target="y",
            prediction="pred",
            score="p_cat,p_dog,p_fox",
        ).to_dict(),
        analyse(
            regression_table(2000, 1), regression_table(2000, 2), target="y", prediction="pred"
        ).to_dict(),
    ]
    for doc in docs:
        _check_schema(doc)
    assert docs[0]["estimated"] is not None and docs[1]["estimated"] is not None
    assert set(docs[1]["estimated"]["realised"]) == {
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
    }


def test_to_json_round_trips_and_writes_atomically(tmp_path: Any) -> None:
    report = analyse(
        binary_table(1500, 1), binary_table(1500, 2), target="y", prediction="pred", score="score"
    )
    path = tmp_path / "out" / "r.json"
    text = report.to_json(path)
    assert json.loads(path.read_text()) == json.loads(text) == report.to_dict()
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]


def test_inputs_as_parquet_csv_and_arrow_give_the_same_report(tmp_path: Any) -> None:
    ref, cur = binary_table(1200, 1), binary_table(1000, 2, shift=0.5)
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_csv(tmp_path / "cur.csv", index=False)
    a = analyse(ref, cur, target="y", prediction="pred", score="score").to_dict()
    b = analyse(
        tmp_path / "ref.parquet",
        str(tmp_path / "cur.csv"),
        target="y",
        prediction="pred",
        score="score",
    ).to_dict()
    c = analyse(
        pa.Table.from_pandas(ref),
        pa.Table.from_pandas(cur),
        target="y",
        prediction="pred",
        score="score",
    ).to_dict()
    for other in (b, c):
        assert other["metrics"] == a["metrics"]
        assert other["drift"]["features"].keys() == a["drift"]["features"].keys()
        for name, entry in a["drift"]["features"].items():
            assert other["drift"]["features"][name]["statistic"] == pytest.approx(
                entry["statistic"], rel=1e-9
            )


# ---------------------------------------------------------------- intervals, comparisons


def _truth(n: int = 400_000) -> dict[str, float]:
    big = binary_table(n, 999)
    y, pred, s = big["y"], big["pred"], big["score"]
    return {
        "accuracy": skm.accuracy_score(y, pred),
        "f1": skm.f1_score(y, pred),
        "roc_auc": skm.roc_auc_score(y, s),
        "log_loss": skm.log_loss(y, s),
        "brier": skm.brier_score_loss(y, s),
        "pr_auc": skm.average_precision_score(y, s),
    }


@pytest.mark.slow
def test_intervals_cover_the_population_value() -> None:
    truth = _truth()
    hits = dict.fromkeys(truth, 0)
    seeds = 150
    for seed in range(seeds):
        report = analyse(
            binary_table(300, seed),
            binary_table(600, 10_000 + seed),
            target="y",
            prediction="pred",
            score="score",
            estimate=False,
            slices=False,
            multivariate=None,
        )
        for name, value in truth.items():
            lo, hi = report.intervals["current"][name]
            hits[name] += lo <= value <= hi
    for name, count in hits.items():
        # nominal 95%: 150 draws give 0.95 +- 0.036 (two standard errors)
        assert 0.89 <= count / seeds <= 0.995, (name, count / seeds)


def test_no_significant_difference_between_samples_of_one_distribution() -> None:
    flagged = 0
    for seed in range(40):
        report = analyse(
            binary_table(1000, seed),
            binary_table(1000, 500 + seed),
            target="y",
            prediction="pred",
            score="score",
            estimate=False,
            slices=False,
            multivariate=None,
        )
        flagged += any(c.significant for c in report.comparison if c.metric == "accuracy")
        assert not [f for f in report.findings if f.kind == "metric_drop" and f.severity == "high"]
    assert flagged <= 5  # about 5% expected


def test_a_real_drop_is_flagged_with_a_finding_that_has_the_numbers() -> None:
    ref, cur = binary_table(8000, 1), binary_table(8000, 2, flip=0.15, weak_category="c")
    report = analyse(ref, cur, target="y", prediction="pred", score="score")
    acc = next(c for c in report.comparison if c.metric == "accuracy")
    assert acc.significant and acc.worse and acc.delta < -0.1
    drop = [f for f in report.findings if f.kind == "metric_drop"]
    assert drop and drop[0].severity == "high" and report.findings[0].kind == "metric_drop"
    text = next(f for f in drop if "accuracy" in f.where).evidence
    assert f"{acc.reference:.3f}" in text and f"{acc.current:.3f}" in text
    assert "worst slice c0 = c" in text
    slices = [s for s in report.slices if s.condition == "c0 = c"]
    assert slices and slices[0].gap > 0.08
    assert any(f.kind == "weak_slice" and f.where == "c0 = c" for f in report.findings)


# ---------------------------------------------------------------- curves and threshold


def test_curves_are_thinned_and_right() -> None:
    ref, cur = binary_table(20_000, 1), binary_table(20_000, 2)
    doc = analyse(ref, cur, target="y", prediction="pred", score="score").to_dict()
    roc = doc["curves"]["roc"]["current"]
    assert len(roc["fpr"]) <= 1000
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0, 0, 1, 1)
    assert roc["auc"] == pytest.approx(skm.roc_auc_score(cur.y, cur.score), abs=1e-9)
    pr = doc["curves"]["pr"]["current"]
    assert len(pr["recall"]) <= 1000
    assert pr["ap"] == pytest.approx(skm.average_precision_score(cur.y, cur.score), abs=1e-9)
    cal = doc["curves"]["calibration"]["current"]
    assert sum(cal["count"]) == 20_000
    # the score is the true probability: the reliability diagram hugs the diagonal
    gaps = np.abs(np.array(cal["mean_predicted"]) - np.array(cal["fraction_positive"]))
    assert float(np.average(gaps, weights=cal["count"])) < 0.02
    assert cal["ece"] == pytest.approx(float(np.average(gaps, weights=cal["count"])), abs=1e-9)
    assert cal["ece"] == pytest.approx(
        expected_calibration_error(cur.y, cur.score, n_bins=10), abs=1e-12
    )
    dist = doc["curves"]["score_distribution"]
    assert sum(sum(v) for v in dist["current"].values()) == 20_000
    assert set(dist["current"]) == {"0", "1"}
    t = doc["threshold"]
    pred_best = (cur.score >= t["best_threshold"]).astype(int)
    assert t["at_best"]["f1"] == pytest.approx(skm.f1_score(cur.y, pred_best), abs=1e-12)
    assert t["at_threshold"]["f1"] == pytest.approx(skm.f1_score(cur.y, cur.pred), abs=1e-12)
    assert t["at_best"]["f1"] >= t["at_threshold"]["f1"]


def test_miscalibrated_scores_give_a_calibration_finding() -> None:
    ref, cur = binary_table(6000, 1), binary_table(6000, 2)
    cur["score"] = cur["score"] ** 3  # far too low everywhere
    cur["pred"] = (cur["score"] >= 0.5).astype(int)
    report = analyse(ref, cur, target="y", prediction="pred", score="score")
    assert any(f.kind == "calibration" for f in report.findings)


# ---------------------------------------------------------------- label-free estimates


@pytest.mark.slow
@pytest.mark.parametrize("n", [100_000])
def test_estimates_track_realised_values_under_covariate_shift(n: int) -> None:
    ref, cur = binary_table(n, 1), binary_table(n, 2, shift=0.8)
    doc = analyse(ref, cur, target="y", prediction="pred", score="score", slices=False).to_dict()
    est, real = doc["estimated"]["current"], doc["estimated"]["realised"]
    for name in ("accuracy", "roc_auc"):
        assert abs(est[name] - real[name]) <= 0.02, name
    # and the shift is visible: the realised accuracy moved by more than that
    assert abs(real["accuracy"] - doc["metrics"]["reference"]["accuracy"]) > 0.02


def test_without_current_labels_the_estimates_stand_alone() -> None:
    ref, cur = binary_table(4000, 1), binary_table(4000, 2, shift=0.8).drop(columns="y")
    report = analyse(ref, cur, target="y", prediction="pred", score="score", current_labels=False)
    doc = report.to_dict()
    assert doc["metrics"]["current"] == {} and doc["comparison"] == {}
    assert doc["estimated"]["realised"] == {}
    assert set(doc["estimated"]["current"]) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert doc["drift"]["target"] is None and doc["slices"] == []
    assert doc["drift"]["features"]["x0"]["drifted"]


# ---------------------------------------------------------------- multivariate


def test_a_correlation_only_change_is_caught_by_the_multivariate_check() -> None:
    rng = np.random.default_rng(5)

    def table(n: int, rho: float) -> pd.DataFrame:
        cov = np.eye(4)
        cov[0, 1] = cov[1, 0] = rho
        cov[2, 3] = cov[3, 2] = rho
        x = rng.multivariate_normal(np.zeros(4), cov, size=n)
        frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
        frame["y"] = (x[:, 0] > 0).astype(int)
        frame["pred"] = (x[:, 0] > 0.1).astype(int)
        return frame

    report = analyse(table(20_000, 0.8), table(20_000, -0.8), target="y", prediction="pred")
    assert report.drift is not None
    assert not any(d.drifted for d in report.drift.features.values())
    assert report.multivariate is not None and report.multivariate.drifted
    finding = next(f for f in report.findings if f.kind == "data_drift")
    assert "no single feature drifted" in finding.evidence


# ---------------------------------------------------------------- bad input


def _bad(ref: pd.DataFrame, cur: pd.DataFrame, **kwargs: Any) -> InputError:
    args: dict[str, Any] = {"target": "y", "prediction": "pred", "score": "score"} | kwargs
    with pytest.raises(InputError) as info:
        analyse(ref, cur, **args)
    return info.value


def test_bad_input_names_the_table_and_the_column() -> None:
    ref, cur = binary_table(200, 1), binary_table(200, 2)
    err = _bad(ref, cur.drop(columns="score"))
    assert err.field == "current['score']" and "no such column" in err.problem
    err = _bad(ref, cur, target="label")
    assert err.field == "reference['label']"
    nan_target = cur.astype({"y": float})
    nan_target.loc[17, "y"] = np.nan
    err = _bad(ref, nan_target)
    assert err.field == "current['y']" and "row 17" in err.problem
    text_score = cur.astype({"score": object})
    text_score.loc[3, "score"] = "high"
    err = _bad(ref, text_score)
    assert err.field == "current['score']" and "'high'" in err.problem
    unseen = cur.copy()
    unseen.loc[:5, "y"] = 7
    err = _bad(ref, unseen, score=None)
    assert err.field == "current['y']" and "[7]" in err.problem
    err = _bad(ref, cur.iloc[:0])
    assert err.field == "current" and "no rows" in err.problem
    err = _bad(ref, cur, positive=5)
    assert err.field == "positive"
    err = _bad(ref, cur, task="ordinal")
    assert err.field == "task"


def test_a_missing_feature_in_current_is_named() -> None:
    ref, cur = binary_table(200, 1), binary_table(200, 2)
    err = _bad(ref, cur.drop(columns="x3"))
    assert err.field == "current['x3']"
    report = analyse(ref, cur.drop(columns="x3"), target="y", prediction="pred", exclude=["x3"])
    assert "x3" not in report.columns["features"]


def test_labels_of_mixed_types_and_string_classes() -> None:
    ref, cur = binary_table(500, 1), binary_table(500, 2)
    for frame in (ref, cur):
        frame["y"] = np.where(frame["y"] == 1, "churn", "stay")
        frame["pred"] = np.where(frame["pred"] == 1, "churn", "stay")
    report = analyse(ref, cur, target="y", prediction="pred", score="score", positive="churn")
    assert report.positive == "churn"
    y = cur["y"]
    assert report.metrics["current"]["precision"] == pytest.approx(
        skm.precision_score(y, cur["pred"], pos_label="churn"), abs=1e-12
    )
    assert report.metrics["current"]["roc_auc"] == pytest.approx(
        skm.roc_auc_score(y == "churn", cur["score"]), abs=1e-12
    )
    assert math.isfinite(report.metrics["current"]["log_loss"])


def test_parquet_columns_read_one_column_at_a_time(tmp_path: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from tunelens.io import ParquetColumns

    frame = binary_table(5000, 3)
    frame.to_parquet(tmp_path / "t.parquet")
    lazy = ParquetColumns(tmp_path / "t.parquet")
    assert len(lazy) == 5000 and list(lazy.columns) == list(frame.columns)
    assert "x0" in lazy and "nope" not in lazy
    pd.testing.assert_series_equal(lazy["x1"], frame["x1"], check_names=True)
    assert lazy["c0"].dtype == "category"
    assert list(lazy["c0"].astype(str)) == list(frame["c0"])
    both = lazy[["x0", "y"]]
    assert list(both.columns) == ["x0", "y"] and both["y"].sum() == frame["y"].sum()
    with ThreadPoolExecutor(4) as pool:
        sums = list(pool.map(lambda c: float(lazy[c].sum()), ["x0", "x1", "x2", "x3"] * 5))
    assert sums[:4] == [float(frame[c].sum()) for c in ["x0", "x1", "x2", "x3"]]
    with pytest.raises(KeyError):
        lazy["nope"]
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="not a Parquet file"):
        ParquetColumns(tmp_path / "t.csv")
    # a report from the path equals the report from the frame
    cur = binary_table(4000, 4, shift=0.5)
    a = analyse(frame, cur, target="y", prediction="pred", score="score").to_dict()
    b = analyse(tmp_path / "t.parquet", cur, target="y", prediction="pred", score="score")
    assert b.to_dict()["metrics"] == a["metrics"]
    assert b.to_dict()["drift"]["features"]["c0"] == a["drift"]["features"]["c0"]


def test_calibrated_scores_are_not_recalibrated() -> None:
    from tunelens.quality.estimate import needs_calibration

    ref = binary_table(20_000, 1)
    assert not needs_calibration(ref["y"], ref["score"])
    assert needs_calibration(ref["y"], ref["score"] ** 3)
    assert needs_calibration(ref["y"], ref["score"] * 4 - 1)  # not probabilities
