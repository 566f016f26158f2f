"""tunelens.quality.drift against SciPy, on injected drift, under the null, and at the edges."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp, wasserstein_distance

from tunelens.quality.drift import (
    DEFAULT_LARGE_N,
    DEFAULT_THRESHOLDS,
    ColumnDrift,
    DatasetDrift,
    column_drift,
    dataset_drift,
)

TOL = 1e-9


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=TOL, abs_tol=TOL)


# ------------------------------------------------------------------ parity with SciPy


@pytest.mark.parametrize("seed", range(6))
def test_ks_matches_scipy_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 40, size=int(rng.integers(20, 600))).astype(float)
    cur = rng.integers(0, 45, size=int(rng.integers(20, 600))).astype(float)
    got = column_drift(ref, cur, kind="numeric")
    want = ks_2samp(ref, cur)
    assert got.method == "ks"
    assert _close(got.statistic, float(want.statistic))
    assert got.p_value is not None and _close(got.p_value, float(want.pvalue))
    assert got.drifted == (want.pvalue < 0.05)


@pytest.mark.parametrize("seed", range(6))
def test_chi2_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 8))
    ref = rng.choice([f"c{i}" for i in range(k)], size=int(rng.integers(30, 900)))
    cur = rng.choice([f"c{i}" for i in range(1, k + 1)], size=int(rng.integers(30, 900)))
    got = column_drift(ref, cur)
    cats = sorted(set(ref) | set(cur))
    table = np.array([[np.sum(ref == c) for c in cats], [np.sum(cur == c) for c in cats]])
    want = chi2_contingency(table)
    assert got.method == "chi2" and got.kind == "categorical"
    assert _close(got.statistic, float(want.statistic))
    assert got.p_value is not None and _close(got.p_value, float(want.pvalue))


def test_chi2_two_categories_uses_scipy_default_correction() -> None:
    ref = ["a"] * 30 + ["b"] * 20
    cur = ["a"] * 20 + ["b"] * 30
    got = column_drift(ref, cur)
    want = chi2_contingency(np.array([[30, 20], [20, 30]]))  # Yates' correction on
    assert _close(got.statistic, float(want.statistic))
    assert got.p_value is not None and _close(got.p_value, float(want.pvalue))


def test_chi2_single_category_is_not_drift() -> None:
    got = column_drift(["a"] * 10, ["a"] * 20)
    assert got.statistic == 0.0 and got.p_value == 1.0 and not got.drifted


@pytest.mark.parametrize("seed", range(6))
def test_wasserstein_matches_scipy_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = np.round(rng.normal(size=int(rng.integers(1000, 3000))), 1)
    cur = np.round(rng.normal(0.3, 1.2, size=int(rng.integers(1000, 3000))), 1)
    got = column_drift(ref, cur)
    assert got.method == "wasserstein" and got.p_value is None
    want = wasserstein_distance(ref, cur) / np.std(ref)
    assert _close(got.statistic, float(want))
    assert got.psi is not None and got.psi > 0


@pytest.mark.parametrize("seed", range(4))
def test_wasserstein_equal_sizes_matches_scipy(seed: int) -> None:
    # One size on both sides takes the order-statistics path (no merge); ties included.
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1000, 3000))
    ref = np.round(rng.normal(size=n), 1)
    cur = np.round(rng.normal(0.2, 1.3, size=n), 1)
    got = column_drift(ref, cur)
    assert got.method == "wasserstein"
    assert _close(got.statistic, wasserstein_distance(ref, cur) / float(np.std(ref)))


def test_dataset_drift_threads_match_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    import tunelens.quality.drift as drift_module

    rng = np.random.default_rng(9)
    n = 30_000
    ref = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(5)})
    ref["c"] = pd.Categorical(rng.choice(["a", "b", "c"], n))
    cur = pd.DataFrame({f"x{i}": rng.normal(0.05 * i, size=n - 7) for i in range(5)})
    cur["c"] = pd.Categorical(rng.choice(["a", "b", "d"], n - 7))
    threaded = dataset_drift(ref, cur)
    monkeypatch.setattr(drift_module, "_MAX_WORKERS", 1)
    single = dataset_drift(ref, cur)
    assert threaded == single
    assert list(threaded.features) == list(ref.columns)
    for col in [f"x{i}" for i in range(5)]:
        want = wasserstein_distance(ref[col], cur[col]) / float(np.std(ref[col]))
        assert _close(threaded.features[col].statistic, want)


def test_wasserstein_forced_on_small_samples_matches_scipy() -> None:
    rng = np.random.default_rng(7)
    ref, cur = rng.exponential(size=37), rng.exponential(size=11)
    got = column_drift(ref, cur, method="wasserstein")
    assert _close(got.statistic, float(wasserstein_distance(ref, cur) / np.std(ref)))


def test_wasserstein_constant_reference_uses_the_floor() -> None:
    got = column_drift(np.full(2000, 3.0), np.full(2000, 3.5), kind="numeric")
    assert math.isfinite(got.statistic)
    assert _close(got.statistic, 0.5 / 1e-3) and got.drifted
    same = column_drift(np.full(2000, 3.0), np.full(2000, 3.0), kind="numeric")
    assert same.statistic == 0.0 and not same.drifted


@pytest.mark.parametrize("seed", range(6))
def test_jensenshannon_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cats = ["x", "y", "z", "w"]
    ref = rng.choice(cats[:3], size=int(rng.integers(1000, 4000)), p=[0.5, 0.3, 0.2])
    cur = rng.choice(cats, size=int(rng.integers(1000, 4000)))
    got = column_drift(ref, cur)
    p = np.array([np.mean(ref == c) for c in cats])
    q = np.array([np.mean(cur == c) for c in cats])
    assert got.method == "jensenshannon" and got.p_value is None
    assert _close(got.statistic, float(jensenshannon(p, q, base=2)))


def _psi_reference(ref: np.ndarray, cur: np.ndarray) -> float:
    """A slow, independent PSI: decile cut points, a value on a cut goes up."""
    edges = sorted(set(np.quantile(ref, [i / 10 for i in range(1, 10)]).tolist()))
    total = 0.0

    def share(x: np.ndarray, lo: float, hi: float) -> float:
        return max(float(np.mean((x >= lo) & (x < hi))), 1e-4)

    bounds = [-np.inf, *edges, np.inf]
    for lo, hi in itertools.pairwise(bounds):
        p, q = share(ref, lo, hi), share(cur, lo, hi)
        total += (q - p) * math.log(q / p)
    return total


@pytest.mark.parametrize("seed", range(4))
def test_psi_matches_a_direct_computation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 30, size=1500).astype(float)  # ties on the cut points
    cur = rng.integers(5, 60, size=1200).astype(float)  # and an empty bin or two
    got = column_drift(ref, cur, method="psi")
    assert got.method == "psi" and got.p_value is None
    assert got.psi == got.statistic
    assert _close(got.statistic, _psi_reference(ref, cur))
    assert got.drifted == (got.statistic >= 0.1)


# ------------------------------------------------------------------ power and the null


@pytest.mark.parametrize("n", [1_000, 100_000])
def test_mean_shift_of_a_fifth_std_is_found(n: int) -> None:
    rng = np.random.default_rng(n)
    ref, cur = rng.normal(size=n), rng.normal(0.2, 1.0, size=n)
    got = column_drift(ref, cur)
    assert got.method == "wasserstein" and got.drifted
    assert got.statistic == pytest.approx(0.2, abs=0.06)


def test_mean_shift_found_by_ks_on_small_samples() -> None:
    rng = np.random.default_rng(3)
    got = column_drift(rng.normal(size=300), rng.normal(0.5, 1.0, size=300))
    assert got.method == "ks" and got.drifted


@pytest.mark.parametrize("n", [1_000, 100_000])
def test_category_share_change_is_found(n: int) -> None:
    rng = np.random.default_rng(n + 1)
    ref = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    cur = rng.choice(["a", "b", "c"], size=n, p=[0.3, 0.5, 0.2])
    got = column_drift(ref, cur)
    assert got.method == "jensenshannon" and got.drifted
    small = column_drift(ref[:500], cur[:500])
    assert small.method == "chi2" and small.drifted


def test_ks_false_alarms_at_most_five_percent() -> None:
    alarms = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        alarms += column_drift(rng.normal(size=200), rng.normal(size=300)).drifted
    assert alarms <= 5


def test_chi2_false_alarms_are_rare() -> None:
    alarms = 0
    for seed in range(100):
        rng = np.random.default_rng(500 + seed)
        alarms += column_drift(rng.choice(list("abcd"), 300), rng.choice(list("abcd"), 200)).drifted
    assert alarms <= 10


def test_distances_never_alarm_on_one_distribution() -> None:
    for seed in range(100):
        rng = np.random.default_rng(10_000 + seed)
        num = column_drift(rng.normal(size=5000), rng.normal(size=6000))
        cat = column_drift(rng.choice(list("abcdef"), 1000), rng.choice(list("abcdef"), 1100))
        assert num.method == "wasserstein" and not num.drifted
        assert cat.method == "jensenshannon" and not cat.drifted


def test_wasserstein_false_alarms_are_rare_at_the_switch() -> None:
    # At n = 1000 the normalised distance of two samples of one normal averages about
    # 0.05, so the 0.1 threshold is crossed now and then (3 of these 100 seeds; 1 at
    # n = 2000; none at n = 5000, the test above).
    alarms = 0
    for seed in range(100):
        rng = np.random.default_rng(10_000 + seed)
        alarms += column_drift(rng.normal(size=1000), rng.normal(size=1200)).drifted
    assert alarms <= 5


# ------------------------------------------------------------------ the switch and inference


def test_switch_needs_both_samples_large() -> None:
    rng = np.random.default_rng(0)
    assert DEFAULT_LARGE_N == 1000
    a, b = rng.normal(size=1000), rng.normal(size=999)
    assert column_drift(a, b).method == "ks"
    assert column_drift(a, rng.normal(size=1000)).method == "wasserstein"
    assert column_drift(a, b, large_n=999).method == "wasserstein"
    assert column_drift(a[:10], b[:10], large_n=10).method == "wasserstein"


def test_kind_inference() -> None:
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 4, size=200)
    assert column_drift(codes, codes[::-1]).kind == "categorical"
    assert column_drift(codes, codes, kind="numeric").method == "ks"
    assert column_drift(rng.normal(size=50), rng.normal(size=50)).kind == "numeric"
    assert column_drift([1.0, 2.0, 3.0], [1.0, 2.0]).kind == "numeric"  # too few rows
    assert column_drift([True, False] * 20, [True] * 30).kind == "categorical"
    many = rng.integers(0, 100, size=500)
    assert column_drift(many, many).kind == "numeric"
    cat = pd.Series(["a", "b"] * 10, dtype="category")
    assert column_drift(cat, pd.Series(["b", "c"] * 10, dtype="category")).method == "chi2"
    assert column_drift(rng.normal(size=50), rng.normal(size=50), kind="categorical").method == (
        "chi2"
    )


def test_input_forms_and_missing_values() -> None:
    got = column_drift([1.0, None, 2.0, float("nan"), 3.0, 4.0], np.array([1.5, np.nan, 2.5]))
    assert (got.n_reference, got.missing_reference) == (4, 2)
    assert (got.n_current, got.missing_current) == (2, 1)
    ref = pa.chunked_array([["a", None, "b"], ["a", "c"]])
    cur = pa.array(["a", "b", None, None], type=pa.dictionary(pa.int8(), pa.string()))
    got = column_drift(ref, cur)
    assert got.kind == "categorical" and got.missing_reference == 1 and got.missing_current == 2
    nullable = pd.Series([1, 2, None, 4, 5, 6], dtype="Int64")
    got = column_drift(nullable, pa.array([2.0, 3.0, None, 9.0]), kind="numeric")
    assert got.method == "ks" and got.missing_reference == 1 and got.n_current == 3
    want = ks_2samp([1, 2, 4, 5, 6], [2.0, 3.0, 9.0])
    assert _close(got.statistic, float(want.statistic))


# ------------------------------------------------------------------ overrides and the dataset


def _frames(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "income": rng.lognormal(3, 1, n),
            "city": rng.choice(["x", "y", "z"], n),
            "plan": rng.choice(["free", "pro"], n),
        }
    )
    cur = pd.DataFrame(
        {
            "age": rng.normal(48, 10, n),  # drifted
            "income": rng.lognormal(3, 1, n),
            "city": rng.choice(["x", "y", "z"], n, p=[0.7, 0.2, 0.1]),  # drifted
            "plan": rng.choice(["free", "pro"], n),
        }
    )
    return ref, cur


def test_dataset_drift_and_json_contract() -> None:
    ref, cur = _frames()
    result = dataset_drift(ref, cur)
    assert isinstance(result, DatasetDrift)
    assert all(isinstance(d, ColumnDrift) for d in result.features.values())
    out = result.to_dict()
    assert set(out) == {"features", "share_drifted", "dataset_drifted"}
    assert list(out["features"]) == ["age", "income", "city", "plan"]
    for entry in out["features"].values():
        assert set(entry) == {"method", "statistic", "p_value", "drifted"}
        assert isinstance(entry["method"], str) and isinstance(entry["statistic"], float)
        assert entry["p_value"] is None or isinstance(entry["p_value"], float)
        assert isinstance(entry["drifted"], bool)
    assert out["features"]["age"]["drifted"] and out["features"]["city"]["drifted"]
    assert not out["features"]["income"]["drifted"]
    assert out["share_drifted"] == pytest.approx(0.5)
    assert out["dataset_drifted"] is True
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    assert dataset_drift(ref, cur, share=0.75).dataset_drifted is False


def test_dataset_drift_large_uses_distances_and_p_value_null() -> None:
    ref, cur = _frames(n=1500, seed=2)
    out = dataset_drift(pa.Table.from_pandas(ref), cur.to_dict(orient="list")).to_dict()
    assert out["features"]["age"]["method"] == "wasserstein"
    assert out["features"]["city"]["method"] == "jensenshannon"
    assert all(f["p_value"] is None for f in out["features"].values())
    json.dumps(out, allow_nan=False)


def test_per_column_overrides() -> None:
    ref, cur = _frames()
    result = dataset_drift(
        ref,
        cur,
        columns=["age", "income", "city"],
        per_column={
            "age": {"method": "psi", "threshold": 100.0},
            "income": {"method": "wasserstein"},
            "city": {"threshold": 1e-300},
        },
    )
    assert list(result.features) == ["age", "income", "city"]
    age = result.features["age"]
    assert age.method == "psi" and age.threshold == 100.0 and not age.drifted
    assert result.features["income"].method == "wasserstein"
    assert result.features["income"].threshold == DEFAULT_THRESHOLDS["wasserstein"]
    city = result.features["city"]
    assert city.method == "chi2" and city.threshold == 1e-300
    assert result.share_drifted == pytest.approx(city.drifted / 3)
    forced = dataset_drift(ref, cur, per_column={"plan": {"method": "jensenshannon"}})
    assert forced.features["plan"].method == "jensenshannon"
    kind = dataset_drift(ref, cur, per_column={"age": {"kind": "categorical"}})
    assert kind.features["age"].method == "chi2"
    large = dataset_drift(ref, cur, per_column={"age": {"large_n": 10}})
    assert large.features["age"].method == "wasserstein"
    assert dataset_drift(ref, cur, large_n=10).features["city"].method == "jensenshannon"


def test_default_thresholds() -> None:
    assert DEFAULT_THRESHOLDS == {
        "ks": 0.05,
        "chi2": 0.05,
        "wasserstein": 0.1,
        "psi": 0.1,
        "jensenshannon": 0.1,
    }


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"method": "anderson"}, "method"),
        ({"kind": "text"}, "kind"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": True}, "threshold"),
        ({"threshold": "0.1"}, "threshold"),
        ({"method": "wasserstein", "threshold": -1.0}, "threshold"),
        ({"method": "psi", "threshold": float("inf")}, "threshold"),
        ({"large_n": 0}, "large_n"),
        ({"large_n": 2.5}, "large_n"),
    ],
)
def test_bad_arguments_name_themselves(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name}: ") as info:
        column_drift([1.0, 2.0, 3.0], [1.0, 2.0, 4.0], **kwargs)  # type: ignore[arg-type]
    if name in ("method", "kind"):
        assert "use" in str(info.value)


def test_bad_method_lists_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match="ks, chi2, wasserstein, psi, jensenshannon"):
        column_drift([1.0], [2.0], method="t")


@pytest.mark.parametrize(
    ("ref", "cur", "kwargs", "name"),
    [
        ([], [1.0], {}, "reference"),
        ([1.0, 2.0], [None, float("nan")], {}, "current"),
        (["a", "b"], ["a"], {"method": "ks"}, "method"),
        (["a", "b"], ["a"], {"kind": "numeric"}, "reference"),
        ([1.0, 2.0, 3.0], ["a", "b"], {}, "current"),
        ([1.0, np.inf], [1.0], {}, "reference"),
        (np.zeros((3, 3)), [1.0], {}, "reference"),
        (5.0, [1.0], {}, "reference"),
    ],
)
def test_bad_columns_name_themselves(
    ref: object, cur: object, kwargs: dict[str, str], name: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{name}: "):
        column_drift(ref, cur, **kwargs)  # type: ignore[arg-type]


def test_dataset_bad_input_names_the_column_or_argument() -> None:
    ref, cur = _frames(n=50)
    with pytest.raises(ValueError, match=r"^current\['plan'\]: no such column"):
        dataset_drift(ref, cur.drop(columns="plan"))
    with pytest.raises(ValueError, match=r"^reference\['nope'\]"):
        dataset_drift(ref, cur, columns=["nope"])
    with pytest.raises(ValueError, match=r"^columns: "):
        dataset_drift(ref, cur, columns=[])
    with pytest.raises(ValueError, match=r"^per_column: .*'nope'"):
        dataset_drift(ref, cur, per_column={"nope": {"method": "ks"}})
    with pytest.raises(ValueError, match=r"^per_column\['age'\]: unknown keys \['alpha'\]"):
        dataset_drift(ref, cur, per_column={"age": {"alpha": 0.1}})
    with pytest.raises(ValueError, match=r"^per_column\['age'\]\.method: "):
        dataset_drift(ref, cur, per_column={"age": {"method": "t"}})
    with pytest.raises(ValueError, match=r"^per_column\['city'\]\.method: "):
        dataset_drift(ref, cur, per_column={"city": {"method": "ks"}})
    with pytest.raises(ValueError, match=r"^share: "):
        dataset_drift(ref, cur, share=0.0)
    with pytest.raises(ValueError, match=r"^large_n: "):
        dataset_drift(ref, cur, large_n=0)
    empty = cur.assign(age=np.nan)
    with pytest.raises(ValueError, match=r"^current\['age'\]: is empty"):
        dataset_drift(ref, empty)


def test_category_counts_agree_across_input_types() -> None:
    rng = np.random.default_rng(4)
    ref = rng.choice(["a", "b", "c"], 400)
    cur = rng.choice(["b", "c", "d"], 300)
    plain = column_drift(ref, cur)
    as_cat = column_drift(pd.Series(ref, dtype="category"), pd.Series(cur, dtype="category"))
    mixed = column_drift(pd.Series(ref, dtype="category"), list(cur))
    unused = pd.Categorical(ref, categories=["a", "b", "c", "zz"])  # unseen category dropped
    with_unused = column_drift(pd.Series(unused), pd.Series(cur, dtype="category"))
    for other in (as_cat, mixed, with_unused):
        assert _close(other.statistic, plain.statistic)
        assert other.p_value is not None and plain.p_value is not None
        assert _close(other.p_value, plain.p_value)
    odd = column_drift(
        pd.Series([1, 2] * 10, dtype="category"), pd.Series(["x"] * 5, dtype="category")
    )
    assert odd.method == "chi2" and odd.drifted
