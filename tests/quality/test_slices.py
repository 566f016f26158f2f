"""tunelens.quality.slices: planted weak slices are found, the null gives none, edges."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tunelens.errors import InputError
from tunelens.quality.slices import Slice, _bh, find_weak_slices

DESIGN_KEYS = {"feature", "condition", "rows", "metric", "value", "gap"}


def _frame(rng: np.random.Generator, n: int, n_num: int = 3, n_cat: int = 3) -> pd.DataFrame:
    data: dict[str, object] = {f"x{i}": rng.normal(size=n) for i in range(n_num)}
    for i in range(n_cat):
        data[f"cat_{i}"] = rng.choice([f"c{j}" for j in range(8)], size=n)
    return pd.DataFrame(data)


# ----------------------------------------------------------------------- planted slices


def test_planted_category_ranked_first() -> None:
    rng = np.random.default_rng(1)
    frame = _frame(rng, 20_000)
    p = np.where(frame["cat_1"] == "c7", 0.4, 0.1)
    errors = (rng.random(len(frame)) < p).astype(int)
    found = find_weak_slices(frame, errors=errors)
    assert found
    first = found[0]
    assert (first.feature, first.condition, first.order) == ("cat_1", "cat_1 = c7", 1)
    assert first.metric == "error_rate"
    assert first.rows == int((frame["cat_1"] == "c7").sum())
    assert first.value == pytest.approx(errors[frame["cat_1"] == "c7"].mean())
    assert first.gap == pytest.approx(first.value - errors.mean())
    assert 0.25 < first.gap < 0.33
    assert first.q_value <= 0.05 and first.p_value <= first.q_value


def test_planted_numeric_range_ranked_first() -> None:
    rng = np.random.default_rng(2)
    frame = _frame(rng, 20_000)
    x = frame["x2"].to_numpy()
    hi = np.quantile(x, 0.8)
    errors = (rng.random(len(frame)) < np.where(x >= hi, 0.4, 0.1)).astype(int)
    found = find_weak_slices(frame, errors=errors)
    first = found[0]
    assert first.feature == "x2" and first.order == 1
    assert first.condition.startswith("x2 in [") and first.condition.endswith("]")
    lo_text = first.condition.split("[")[1].split(",")[0]
    assert float(lo_text) == pytest.approx(hi, rel=1e-3)
    assert first.rows == pytest.approx(4000, abs=2)


def test_planted_pair_ranked_first() -> None:
    rng = np.random.default_rng(3)
    frame = _frame(rng, 40_000)
    x1 = frame["x1"].to_numpy()
    inside = (frame["cat_0"] == "c3").to_numpy() & (x1 >= np.quantile(x1, 0.8))
    errors = (rng.random(len(frame)) < np.where(inside, 0.5, 0.1)).astype(int)
    found = find_weak_slices(frame, errors=errors)
    first = found[0]
    assert first.order == 2
    assert set(first.feature.split(" & ")) == {"cat_0", "x1"}
    assert "cat_0 = c3" in first.condition and "x1 in [" in first.condition
    assert first.rows == pytest.approx(inside.sum(), rel=0.05)
    # no pair that only restates the weak pair with a noise feature
    for s in found:
        if s.order == 2:
            assert {"cat_0", "x1"} == set(s.feature.split(" & "))
    assert first.to_dict()["feature"] == first.feature
    no_pairs = find_weak_slices(frame, errors=errors, max_order=1)
    assert all(s.order == 1 for s in no_pairs)


def test_planted_loss_slice_and_welch_p_value() -> None:
    rng = np.random.default_rng(4)
    frame = _frame(rng, 10_000)
    bad = (frame["cat_2"] == "c5").to_numpy()
    loss = rng.exponential(np.where(bad, 1.6, 1.0))
    found = find_weak_slices(frame, errors=loss, max_order=1)
    first = found[0]
    assert first.metric == "loss" and first.condition == "cat_2 = c5"
    want = stats.ttest_ind(loss[bad], loss[~bad], equal_var=False, alternative="greater")
    assert math.isclose(first.p_value, float(want.pvalue), rel_tol=1e-6, abs_tol=1e-300)
    assert first.value == pytest.approx(loss[bad].mean())


def test_error_rate_p_value_is_fisher_exact() -> None:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"g": rng.choice(["a", "b", "c", "d"], size=3000)})
    errors = (rng.random(3000) < np.where(frame["g"] == "a", 0.2, 0.1)).astype(int)
    found = find_weak_slices(frame, errors=errors, max_order=1)
    s = next(x for x in found if x.condition == "g = a")
    inside = (frame["g"] == "a").to_numpy()
    table = [
        [int(errors[inside].sum()), int((1 - errors[inside]).sum())],
        [int(errors[~inside].sum()), int((1 - errors[~inside]).sum())],
    ]
    want = stats.fisher_exact(table, alternative="greater").pvalue
    assert s.p_value == pytest.approx(float(want), rel=1e-6)


def test_bh_matches_scipy() -> None:
    rng = np.random.default_rng(6)
    p = rng.random(200) ** 3
    np.testing.assert_allclose(_bh(p), stats.false_discovery_control(p), rtol=1e-12)


# ------------------------------------------------------------------------- under the null


def test_uniform_error_gives_nothing_in_most_seeds() -> None:
    empty = 0
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        frame = _frame(rng, 5_000, n_num=4, n_cat=3)
        errors = (rng.random(len(frame)) < 0.1).astype(int)
        empty += not find_weak_slices(frame, errors=errors)
    assert empty >= 18


def test_uniform_loss_gives_nothing_in_most_seeds() -> None:
    empty = 0
    for seed in range(20):
        rng = np.random.default_rng(200 + seed)
        frame = _frame(rng, 3_000, n_num=3, n_cat=2)
        empty += not find_weak_slices(frame, errors=rng.exponential(size=len(frame)))
    assert empty >= 18


# --------------------------------------------------------------------- support and output


def test_min_support_respected() -> None:
    rng = np.random.default_rng(7)
    n = 5_000
    g = np.array(["common"] * n, dtype=object)
    g[:20] = "rare"
    frame = pd.DataFrame({"g": g, "x": rng.normal(size=n)})
    errors = (rng.random(n) < 0.1).astype(int)
    errors[:20] = 1
    default = find_weak_slices(frame, errors=errors)  # default min_support: max(30, 50) = 50
    assert all(s.rows >= 50 for s in default)
    assert not any(s.condition == "g = rare" for s in default)
    small = find_weak_slices(frame, errors=errors, min_support=10)
    assert small[0].condition == "g = rare" and small[0].rows == 20
    big = find_weak_slices(frame, errors=errors, min_support=1200)
    assert all(s.rows >= 1200 for s in big)


def test_to_dict_has_design_keys_and_serialises() -> None:
    rng = np.random.default_rng(8)
    frame = _frame(rng, 20_000)
    errors = (rng.random(len(frame)) < np.where(frame["cat_1"] == "c7", 0.4, 0.1)).astype(int)
    found = find_weak_slices(frame, errors=errors, top=3)
    assert 1 <= len(found) <= 3
    for s in found:
        d = s.to_dict()
        assert set(d) == DESIGN_KEYS
        assert isinstance(d["rows"], int) and isinstance(d["value"], float)
        json.dumps(d)
    gaps = [s.gap for s in found]
    assert gaps == sorted(gaps, reverse=True)
    pair = Slice("a & b", "a = 1 & b = 2", 40, "error_rate", 0.5, 0.3, 0.001, 0.01, order=2)
    assert pair.to_dict()["feature"] == "a & b"


def test_missing_values_and_errors_column_by_name() -> None:
    rng = np.random.default_rng(9)
    n = 10_000
    x = rng.normal(size=n)
    miss = rng.random(n) < 0.1
    x[miss] = np.nan
    errors = (rng.random(n) < np.where(miss, 0.4, 0.1)).astype(int)
    frame = pd.DataFrame({"x": x, "err": errors, "k": rng.integers(0, 3, size=n)})
    found = find_weak_slices(frame, errors="err")
    assert found[0].condition == "x is missing"
    assert all("err" not in s.feature for s in found)
    assert find_weak_slices(frame, errors=errors.astype(bool), features=["x"])[0].metric == (
        "error_rate"
    )


def test_scale_is_vectorised() -> None:
    rng = np.random.default_rng(10)
    n = 200_000
    frame = _frame(rng, n, n_num=20, n_cat=5)
    errors = (rng.random(n) < 0.1).astype(int)
    start = time.perf_counter()
    find_weak_slices(frame, errors=errors)
    assert time.perf_counter() - start < 5.0


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"errors": [0, 1, 0]}, "errors"),
        ({"errors": np.full(100, 0.5), "metric": "error_rate"}, "errors"),
        ({"errors": np.r_[np.zeros(99), np.nan]}, "errors"),
        ({"errors": "nope"}, "errors"),
        ({"errors": np.zeros(100), "features": []}, "features"),
        ({"errors": np.zeros(100), "features": ["missing"]}, "features"),
        ({"errors": np.zeros(100), "features": "a"}, "features"),
        ({"errors": np.zeros(100), "metric": "auc"}, "metric"),
        ({"errors": np.zeros(100), "max_order": 3}, "max_order"),
        ({"errors": np.zeros(100), "alpha": 0.0}, "alpha"),
        ({"errors": np.zeros(100), "top": 0}, "top"),
        ({"errors": np.zeros(100), "min_support": 0}, "min_support"),
    ],
)
def test_bad_input_names_the_argument(kwargs: dict[str, object], field: str) -> None:
    frame = pd.DataFrame({"a": np.arange(100.0), "b": ["u", "v"] * 50})
    with pytest.raises(InputError) as info:
        find_weak_slices(frame, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_no_feature_columns_and_not_a_frame() -> None:
    frame = pd.DataFrame({"err": [0, 1] * 50})
    with pytest.raises(InputError) as info:
        find_weak_slices(frame, errors="err")
    assert info.value.field == "features"
    with pytest.raises(InputError) as info:
        find_weak_slices([[1, 2]], errors=[0])  # type: ignore[arg-type]
    assert info.value.field == "frame"
