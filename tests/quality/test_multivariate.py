"""tunelens.quality.multivariate: a correlation-only change, no drift, a mean shift, bad input."""

from __future__ import annotations

import doctest
import json
from collections.abc import Iterator
from functools import cache

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

import tunelens.quality.multivariate as mv
from tunelens.errors import InputError
from tunelens.quality.drift import dataset_drift
from tunelens.quality.multivariate import (
    MultivariateDrift,
    domain_classifier_drift,
    reconstruction_drift,
)

N = 10_000


@pytest.fixture(autouse=True)
def _one_openmp_thread() -> Iterator[None]:
    # HistGradientBoosting's OpenMP threads spin badly on a busy 2-core machine
    # (seconds become minutes); one thread is fast and deterministic here.
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@cache
def _frame(n: int, rho: float, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Two features with correlation rho, three independent ones, all N(0, 1)."""
    rng = np.random.default_rng(seed)
    pair = rng.multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]], size=n)
    other = rng.normal(size=(n, 3))
    df = pd.DataFrame(np.column_stack([pair, other]), columns=["a", "b", "c", "d", "e"])
    df["a"] += shift
    return df


# ------------------------------------------------------------- correlation-only change


def test_correlation_flip_shows_in_no_single_column() -> None:
    drift = dataset_drift(_frame(N, 0.8, 0), _frame(N, -0.8, 1))
    assert not any(d.drifted for d in drift.features.values())
    assert drift.share_drifted == 0.0


def test_correlation_flip_caught_by_reconstruction() -> None:
    d = reconstruction_drift(_frame(N, 0.8, 0), _frame(N, -0.8, 1))
    assert d.method == "pca_reconstruction"
    assert d.drifted
    assert d.reference_error is not None and d.upper is not None and d.lower is not None
    assert d.lower < d.reference_error < d.upper < d.statistic
    assert d.columns == ("a", "b", "c", "d", "e")
    assert d.n_reference == N and d.n_current == N
    assert d.n_components is not None and 1 <= d.n_components < 5


def test_correlation_flip_caught_by_domain_classifier() -> None:
    d = domain_classifier_drift(_frame(N, 0.8, 0), _frame(N, -0.8, 1))
    assert d.method == "domain_classifier"
    assert d.drifted and d.statistic > 0.8
    assert d.upper == 0.55 and d.lower is None and d.reference_error is None


# ------------------------------------------------------------- no drift


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_distribution_not_flagged_by_reconstruction(seed: int) -> None:
    d = reconstruction_drift(_frame(N, 0.8, 0), _frame(N, 0.8, 100 + seed), seed=seed)
    assert not d.drifted, d


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_distribution_not_flagged_by_domain_classifier(seed: int) -> None:
    d = domain_classifier_drift(_frame(N, 0.8, 0), _frame(N, 0.8, 100 + seed), seed=seed)
    assert not d.drifted, d
    assert abs(d.statistic - 0.5) < 0.03


def test_same_distribution_large_and_wide_not_flagged() -> None:
    # 2e5 x 20 isotropic rows: the held-out half keeps PCA's in-sample bias out
    rng = np.random.default_rng(7)
    ref, cur = rng.normal(size=(200_000, 20)), rng.normal(size=(200_000, 20))
    assert not reconstruction_drift(ref, cur).drifted


def test_unequal_sizes_not_flagged() -> None:
    for n_cur in (50, 500):
        d = reconstruction_drift(_frame(N, 0.8, 0), _frame(n_cur, 0.8, 55))
        assert not d.drifted, (n_cur, d)


# ------------------------------------------------------------- mean shift


def test_mean_shift_caught_by_both() -> None:
    ref, cur = _frame(N, 0.8, 0), _frame(N, 0.8, 1, shift=1.0)
    assert reconstruction_drift(ref, cur).drifted
    assert domain_classifier_drift(ref, cur).drifted


# ------------------------------------------------------------- output and input forms


def test_to_dict_is_json() -> None:
    ref, cur = _frame(2000, 0.8, 0), _frame(2000, -0.8, 1)
    for d in (reconstruction_drift(ref, cur), domain_classifier_drift(ref, cur)):
        assert isinstance(d, MultivariateDrift)
        out = json.loads(json.dumps(d.to_dict()))
        assert set(out) == {
            "method",
            "statistic",
            "reference_error",
            "lower",
            "upper",
            "drifted",
            "columns",
            "n_reference",
            "n_current",
            "n_components",
        }
        assert out["drifted"] is True and out["columns"] == ["a", "b", "c", "d", "e"]


def test_result_is_frozen() -> None:
    d = reconstruction_drift(_frame(2000, 0.8, 0), _frame(2000, 0.8, 1))
    with pytest.raises(AttributeError):
        d.drifted = True  # type: ignore[misc]


def test_non_numeric_columns_skipped_and_nan_tolerated() -> None:
    ref = _frame(2000, 0.8, 0).assign(city=["x", "y"] * 1000)
    cur = _frame(2000, -0.8, 1).assign(city=["y"] * 2000)
    ref.loc[::50, "c"] = np.nan
    cur.loc[::40, "d"] = np.nan
    for check in (reconstruction_drift, domain_classifier_drift):
        d = check(ref, cur)
        assert "city" not in d.columns and d.drifted


def test_named_columns_and_arrays() -> None:
    ref, cur = _frame(2000, 0.8, 0), _frame(2000, -0.8, 1)
    d = reconstruction_drift(ref, cur, columns=["c", "d", "e"])
    assert d.columns == ("c", "d", "e") and not d.drifted
    assert reconstruction_drift(ref.to_numpy(), cur.to_numpy()).drifted
    one = reconstruction_drift(ref[["a"]], cur[["a"]])
    assert one.n_components == 0 and not one.drifted


def test_reproducible_with_seed() -> None:
    ref, cur = _frame(2000, 0.8, 0), _frame(2000, 0.8, 1)
    assert reconstruction_drift(ref, cur, seed=4) == reconstruction_drift(ref, cur, seed=4)
    assert domain_classifier_drift(ref, cur, seed=4) == domain_classifier_drift(ref, cur, seed=4)


def test_max_rows_subsamples() -> None:
    d = domain_classifier_drift(_frame(2000, 0.8, 0), _frame(3000, 0.8, 1), max_rows=500)
    assert d.n_reference == 500 and d.n_current == 500


# ------------------------------------------------------------- bad input


CHECKS = [reconstruction_drift, domain_classifier_drift]


@pytest.mark.parametrize("check", CHECKS)
def test_no_numeric_columns(check: object) -> None:
    ref = pd.DataFrame({"s": ["a", "b"] * 100})
    with pytest.raises(InputError) as info:
        check(ref, ref)  # type: ignore[operator]
    assert info.value.field == "reference" and "numeric" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("check", CHECKS)
def test_missing_column(check: object) -> None:
    ref = _frame(500, 0.8, 0)
    with pytest.raises(InputError, match=r"current\['e'\]"):
        check(ref, ref.drop(columns="e"))  # type: ignore[operator]
    with pytest.raises(InputError, match=r"reference\['z'\]"):
        check(ref, ref, columns=["a", "z"])  # type: ignore[operator]
    with pytest.raises(InputError, match=r"reference\['s'\]"):
        check(ref.assign(s="x"), ref.assign(s="x"), columns=["a", "s"])  # type: ignore[operator]


@pytest.mark.parametrize("check", CHECKS)
def test_too_few_rows(check: object) -> None:
    ref = _frame(500, 0.8, 0)
    with pytest.raises(InputError) as info:
        check(ref.head(5), ref)  # type: ignore[operator]
    assert info.value.field == "reference" and "too few" in str(info.value)
    with pytest.raises(InputError) as info:
        check(ref, ref.head(3))  # type: ignore[operator]
    assert info.value.field == "current"


def test_bad_arguments() -> None:
    ref = _frame(500, 0.8, 0)
    bad: list[tuple[dict[str, object], str]] = [
        ({"variance": 1.0}, "variance"),
        ({"variance": 0}, "variance"),
        ({"n_chunks": 1}, "n_chunks"),
        ({"seed": -1}, "seed"),
        ({"columns": "a"}, "columns"),
        ({"columns": []}, "columns"),
    ]
    for kwargs, field in bad:
        with pytest.raises(InputError) as info:
            reconstruction_drift(ref, ref, **kwargs)  # type: ignore[arg-type]
        assert info.value.field == field
    for kwargs, field in [
        ({"threshold": 0.5}, "threshold"),
        ({"cv": 1}, "cv"),
        ({"max_rows": 0}, "max_rows"),
    ]:
        with pytest.raises(InputError) as info:
            domain_classifier_drift(ref, ref, **kwargs)  # type: ignore[arg-type]
        assert info.value.field == field
    inf = ref.copy()
    inf.loc[3, "b"] = np.inf
    with pytest.raises(InputError, match=r"current\['b'\].*infinite"):
        reconstruction_drift(ref, inf)


def test_docstring_examples_run() -> None:
    result = doctest.testmod(mv, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 3 and result.failed == 0
