"""Per-column drift of a current sample against a reference sample.

The building block of the report's ``"drift"`` block (issue 3). Each column gets one
test, picked by its kind and by the sample sizes:

============  =======================================  ==========================
kind          small samples (either < ``large_n``)     large (both >= ``large_n``)
============  =======================================  ==========================
numeric       ``"ks"``: two-sample Kolmogorov-Smirnov  ``"wasserstein"``: normalised
              (``scipy.stats.ks_2samp``), drifted      Wasserstein distance, drifted
              when ``p < 0.05``                        when ``>= 0.1`` (PSI beside it)
categorical   ``"chi2"``: chi-square on the 2 x k      ``"jensenshannon"``: Jensen-
              table of counts, drifted when            Shannon distance (base 2),
              ``p < 0.05``                             drifted when ``>= 0.1``
============  =======================================  ==========================

``large_n`` defaults to 1000, the switch Evidently uses: on large samples p-values
flag differences too small to matter, so a distance with a fixed threshold is used.
Near the switch the distance threshold is not free of false alarms: two samples of
one normal distribution of 1000 rows each have a normalised Wasserstein distance of
about 0.05 on average and cross 0.1 in roughly 3% of draws (1% at 2000 rows, none
seen at 5000). Any column can be forced to ``"ks"``, ``"wasserstein"``, ``"psi"``, ``"chi2"`` or
``"jensenshannon"`` and given its own threshold.

Definitions:

- ``"wasserstein"``: ``scipy.stats.wasserstein_distance(reference, current)`` divided
  by the population standard deviation (``ddof=0``) of the reference, floored at
  ``1e-3`` as Evidently does, so a constant reference does not divide by zero.
- ``"psi"``: population stability index over 10 bins cut at the reference deciles
  (repeated cut points merged; a value on a cut point goes to the upper bin); empty
  bins get a share of ``1e-4`` so the logarithm stays finite:
  ``sum((cur - ref) * ln(cur / ref))``. Default threshold 0.1.
- ``"chi2"``: ``scipy.stats.chi2_contingency`` on the counts of every category seen in
  either sample (Yates' correction as SciPy's default: only when there are two
  categories).
- ``"jensenshannon"``: ``scipy.spatial.distance.jensenshannon`` of the two category
  frequency vectors with ``base=2``, so it lies in [0, 1].

Kind inference (``kind=None``): strings, booleans, pandas categoricals and other
objects are categorical; numbers are numeric, except that a numeric reference with at
most 10 distinct values, each seen twice on average (``distinct * 2 <= rows``), is
categorical (codes, counts, ratings). NaN and None are dropped and counted as missing;
infinite values are rejected.

Example:
    >>> import numpy as np
    >>> from tunelens.quality.drift import column_drift
    >>> rng = np.random.default_rng(0)
    >>> d = column_drift(rng.normal(size=500), rng.normal(1.0, size=500))
    >>> d.method, d.drifted
    ('ks', True)
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.api.types import union_categoricals

from tunelens.errors import InputError
from tunelens.quality._tables import as_frame

__all__ = [
    "DEFAULT_LARGE_N",
    "DEFAULT_THRESHOLDS",
    "METHODS",
    "ColumnDrift",
    "DatasetDrift",
    "column_drift",
    "dataset_drift",
]

Kind = Literal["numeric", "categorical"]

#: Both samples at least this large switch to the distance methods.
DEFAULT_LARGE_N = 1000
#: Default threshold per method: a p-value bound for ``ks``/``chi2`` (drifted when
#: ``p < threshold``), a distance bound for the others (drifted when ``>= threshold``).
DEFAULT_THRESHOLDS: dict[str, float] = {
    "ks": 0.05,
    "chi2": 0.05,
    "wasserstein": 0.1,
    "psi": 0.1,
    "jensenshannon": 0.1,
}
METHODS = tuple(DEFAULT_THRESHOLDS)
_P_VALUE_METHODS = frozenset({"ks", "chi2"})
_NUMERIC_METHODS = frozenset({"ks", "wasserstein", "psi"})
_KINDS = ("numeric", "categorical")
_MAX_CATEGORY_CODES = 10
_PSI_BINS = 10
_PSI_EPS = 1e-4
_STD_FLOOR = 1e-3
_OVERRIDE_KEYS = ("kind", "method", "threshold", "large_n")
_MAX_WORKERS = 4  # threads for the columns of dataset_drift
_PARALLEL_MIN_ROWS = 20_000  # below this the columns run in the calling thread


@dataclass(frozen=True)
class ColumnDrift:
    """The drift test of one column.

    Attributes:
        method: the test used: ``"ks"``, ``"wasserstein"``, ``"psi"``, ``"chi2"`` or
            ``"jensenshannon"``.
        statistic: the test statistic or distance.
        p_value: the p-value for ``ks`` and ``chi2``; None for distances.
        drifted: ``p_value < threshold`` for tests, ``statistic >= threshold`` for
            distances.
        threshold: the threshold applied.
        kind: ``"numeric"`` or ``"categorical"``.
        n_reference: reference values used (missing ones dropped).
        n_current: current values used.
        missing_reference: NaN/None values dropped from the reference.
        missing_current: NaN/None values dropped from the current sample.
        psi: the population stability index, reported beside ``"wasserstein"`` (and
            equal to ``statistic`` for ``"psi"``); None otherwise.
    """

    method: str
    statistic: float
    p_value: float | None
    drifted: bool
    threshold: float
    kind: str
    n_reference: int
    n_current: int
    missing_reference: int = 0
    missing_current: int = 0
    psi: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report JSON entry: ``{"method", "statistic", "p_value", "drifted"}``."""
        return {
            "method": self.method,
            "statistic": float(self.statistic),
            "p_value": None if self.p_value is None else float(self.p_value),
            "drifted": bool(self.drifted),
        }


@dataclass(frozen=True)
class DatasetDrift:
    """Drift of every compared column and the share that drifted.

    Attributes:
        features: column name -> its :class:`ColumnDrift`, in column order.
        share_drifted: drifted columns / compared columns.
        dataset_drifted: ``share_drifted >= share``.
        share: the share threshold applied.
    """

    features: dict[str, ColumnDrift]
    share_drifted: float
    dataset_drifted: bool
    share: float = field(default=0.5)

    def to_dict(self) -> dict[str, Any]:
        """The report JSON ``"drift"`` block.

        Returns:
            ``{"features": {NAME: {"method", "statistic", "p_value", "drifted"}},
            "share_drifted": float, "dataset_drifted": bool}``; ``json.dumps`` works.
        """
        return {
            "features": {name: d.to_dict() for name, d in self.features.items()},
            "share_drifted": float(self.share_drifted),
            "dataset_drifted": bool(self.dataset_drifted),
        }


# ---------------------------------------------------------------- input handling


@dataclass(frozen=True)
class _Column:
    kind: Kind
    values: npt.NDArray[np.float64] | pd.Series  # float64 array if numeric
    missing: int


def _as_series_or_array(values: Any, name: str) -> pd.Series | np.ndarray:
    if isinstance(values, pd.Series):
        return values
    if isinstance(values, pd.DataFrame):
        if values.shape[1] != 1:
            raise InputError(name, f"expected one column, got a table of {values.shape[1]}")
        return values.iloc[:, 0]
    if hasattr(values, "to_pandas") and not isinstance(values, np.ndarray):
        converted = values.to_pandas()  # pyarrow Array / ChunkedArray, polars Series
        if isinstance(converted, pd.DataFrame):
            return _as_series_or_array(converted, name)
        return pd.Series(converted)
    if isinstance(values, np.ndarray):
        arr = values
    elif isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InputError(name, f"expected a column of values, got {type(values).__name__}")
    else:
        arr = np.asarray(list(values) if not hasattr(values, "__len__") else values)
    if arr.ndim != 1:
        if arr.ndim == 2 and 1 in arr.shape:
            arr = arr.reshape(-1)
        else:
            raise InputError(name, f"expected one column, got an array of shape {arr.shape}")
    return arr


def _prepare(values: Any, name: str, kind: str | None) -> _Column:
    """Drop missing values, reject infinities, decide the kind."""
    data = _as_series_or_array(values, name)
    if (
        isinstance(data, pd.Series)
        and isinstance(data.dtype, np.dtype)
        and data.dtype.kind in "fiu"
    ):
        data = data.to_numpy()  # plain numpy-backed numbers: skip the pandas path
    if isinstance(data, np.ndarray) and data.dtype.kind in "fiu":
        arr = data.astype(np.float64, copy=False)
        nan = np.isnan(arr)
        missing = int(nan.sum())
        if missing:
            arr = arr[~nan]
        numeric = True
        cat_values: pd.Series | None = None
    else:
        series = data if isinstance(data, pd.Series) else pd.Series(data, dtype=None)
        if series.dtype == object:
            inferred = pd.api.types.infer_dtype(series, skipna=True)
            if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
                series = pd.to_numeric(series)
        na = series.isna()
        missing = int(na.sum())
        if missing:
            series = series[~na.to_numpy()]
        dtype = series.dtype
        if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
            raise InputError(
                name, f"dates and durations ({dtype}) are not supported", "convert to numbers first"
            )
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            arr = series.to_numpy(dtype=np.float64)
            numeric = True
            cat_values = None
        else:
            numeric = False
            cat_values = series
            arr = np.empty(0)
    if numeric:
        if not np.isfinite(arr).all():
            raise InputError(name, "holds infinite values", "drop or clip them first")
        if kind == "categorical":
            return _Column("categorical", pd.Series(arr), missing)
        return _Column("numeric", arr, missing)
    assert cat_values is not None
    if kind == "numeric":
        raise InputError(
            name, f"kind='numeric' but the values are not numbers (dtype {cat_values.dtype})"
        )
    return _Column("categorical", cat_values, missing)


def _looks_categorical(arr: npt.NDArray[np.float64]) -> bool:
    """At most 10 distinct values, each seen twice on average."""
    n = arr.size
    if n < 2:
        return False
    head = pd.unique(arr[: 20 * _MAX_CATEGORY_CODES])
    if head.size > _MAX_CATEGORY_CODES:
        return False
    distinct = int(pd.Series(arr).nunique())
    return distinct <= _MAX_CATEGORY_CODES and distinct * 2 <= n


# ---------------------------------------------------------------- the statistics


def _ks(ref: npt.NDArray[np.float64], cur: npt.NDArray[np.float64]) -> tuple[float, float]:
    from scipy.stats import ks_2samp

    res = ks_2samp(ref, cur)
    return float(res.statistic), float(res.pvalue)


def _wasserstein_sorted(
    ref_sorted: npt.NDArray[np.float64], cur_sorted: npt.NDArray[np.float64]
) -> float:
    """1-Wasserstein distance, the integral of |F_ref - F_cur| (SciPy's formula).

    Both samples come sorted; a stable sort of their concatenation is a linear merge
    (timsort sees two runs) that keeps every reference value ahead of an equal current
    one. The reference count at or below each pooled value is the running count of
    reference origins, exact at the end of every run of ties, which is the only place
    where the step width is non-zero; the current count is ``position + 1 - reference
    count``.

    With samples of one size the distance is the mean absolute difference of the order
    statistics (the integral of |Q_ref - Q_cur| over the quantile level: the same number
    up to rounding), which needs no merge.
    """
    n_ref = ref_sorted.size
    if n_ref == cur_sorted.size:
        diff = np.subtract(ref_sorted, cur_sorted)
        np.abs(diff, out=diff)
        return float(diff.sum() / n_ref)
    pooled = np.concatenate([ref_sorted, cur_sorted])
    origin = np.argsort(pooled, kind="stable")
    pooled = pooled[origin]
    deltas = np.diff(pooled)
    del pooled
    ref_count = np.cumsum(origin[:-1] < n_ref, dtype=np.int64)
    del origin
    cur_count = np.arange(1, deltas.size + 1, dtype=np.int64)
    cur_count -= ref_count
    gap = ref_count / n_ref
    gap -= cur_count / cur_sorted.size
    np.abs(gap, out=gap)
    return float(np.dot(gap, deltas))


def _psi_sorted(ref_sorted: npt.NDArray[np.float64], cur_sorted: npt.NDArray[np.float64]) -> float:
    """PSI over the reference deciles; a value on a cut point goes to the upper bin."""
    edges = np.quantile(ref_sorted, np.linspace(0.0, 1.0, _PSI_BINS + 1)[1:-1])
    edges = np.unique(edges)
    ref_lt = np.searchsorted(ref_sorted, edges, side="left")
    ref_counts = np.diff(np.concatenate([[0], ref_lt, [ref_sorted.size]]))
    cur_lt = np.searchsorted(cur_sorted, edges, side="left")
    cur_counts = np.diff(np.concatenate([[0], cur_lt, [cur_sorted.size]]))
    p = np.maximum(ref_counts / ref_sorted.size, _PSI_EPS)
    q = np.maximum(cur_counts / cur_sorted.size, _PSI_EPS)
    return float(np.sum((q - p) * np.log(q / p)))


def _category_counts(
    ref: pd.Series, cur: pd.Series
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Counts of every category seen in either sample (missing values already dropped)."""
    codes: npt.NDArray[np.intp] | None = None
    k = 0
    if isinstance(ref.dtype, pd.CategoricalDtype) and isinstance(cur.dtype, pd.CategoricalDtype):
        try:
            combined = union_categoricals([ref.array, cur.array], ignore_order=True)
        except TypeError:  # categories of different types
            pass
        else:
            codes, k = np.asarray(combined.codes, dtype=np.intp), len(combined.categories)
    if codes is None:
        pooled = pd.concat([ref, cur], ignore_index=True)
        raw, uniques = pd.factorize(pooled)
        codes, k = np.asarray(raw, dtype=np.intp), len(uniques)
    r = np.bincount(codes[: len(ref)], minlength=k).astype(np.int64)
    c = np.bincount(codes[len(ref) :], minlength=k).astype(np.int64)
    seen = (r + c) > 0
    return r[seen], c[seen]


def _check_method(method: str | None) -> None:
    if method is not None and method not in METHODS:
        raise InputError("method", f"unknown method {method!r}", f"use one of {', '.join(METHODS)}")


def _check_kind(kind: str | None) -> None:
    if kind is not None and kind not in _KINDS:
        raise InputError("kind", f"unknown kind {kind!r}", "use 'numeric', 'categorical' or None")


def _check_threshold(threshold: float | None, method: str) -> float:
    if threshold is None:
        return DEFAULT_THRESHOLDS[method]
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.number):
        raise InputError("threshold", f"expected a number, got {threshold!r}")
    t = float(threshold)
    if method in _P_VALUE_METHODS:
        if not 0.0 < t < 1.0:
            raise InputError(
                "threshold", f"{t!r} is not a p-value bound for {method!r}", "use 0 < threshold < 1"
            )
    elif not (math.isfinite(t) and t > 0.0):
        raise InputError(
            "threshold",
            f"{t!r} is not a distance bound for {method!r}",
            "use a finite threshold > 0",
        )
    return t


def _check_large_n(large_n: int) -> int:
    if isinstance(large_n, bool) or not isinstance(large_n, int | np.integer) or large_n < 1:
        raise InputError("large_n", f"expected an integer >= 1, got {large_n!r}")
    return int(large_n)


def column_drift(
    reference: Any,
    current: Any,
    *,
    kind: str | None = None,
    method: str | None = None,
    threshold: float | None = None,
    large_n: int = DEFAULT_LARGE_N,
) -> ColumnDrift:
    """Test one column of current data for drift against the reference.

    Args:
        reference: reference values (numpy, pandas, pyarrow or a list); NaN/None dropped.
        current: current values, same forms.
        kind: ``"numeric"``, ``"categorical"`` or None to infer (see the module doc).
        method: force ``"ks"``, ``"wasserstein"``, ``"psi"``, ``"chi2"`` or
            ``"jensenshannon"``; None picks by kind and sample sizes.
        threshold: p-value bound (``ks``, ``chi2``; drifted when ``p < threshold``) or
            distance bound (drifted when ``statistic >= threshold``); None for the
            method's default in :data:`DEFAULT_THRESHOLDS`. It applies to whichever
            method runs, so pair it with ``method`` when samples may cross the switch.
        large_n: when both samples have at least this many values the distance
            methods are used (default 1000, as Evidently).

    Returns:
        A :class:`ColumnDrift`.

    Raises:
        InputError: (a ValueError) naming ``reference``/``current`` when a column is
            empty, infinite or of the wrong kind, or ``kind``/``method``/``threshold``/
            ``large_n`` when those are invalid.

    Example:
        >>> column_drift(["a", "b"] * 50, ["a"] * 60 + ["b"] * 40).method
        'chi2'
    """
    return _column_drift(
        reference,
        current,
        kind=kind,
        method=method,
        threshold=threshold,
        large_n=large_n,
        names=("reference", "current"),
    )


def _column_drift(
    reference: Any,
    current: Any,
    *,
    kind: str | None,
    method: str | None,
    threshold: float | None,
    large_n: int,
    names: tuple[str, str],
) -> ColumnDrift:
    _check_kind(kind)
    _check_method(method)
    large_n = _check_large_n(large_n)
    if method is not None:
        _check_threshold(threshold, method)
    ref = _prepare(reference, names[0], kind)
    if ref.kind == "numeric" and kind is None and method not in _NUMERIC_METHODS:
        assert isinstance(ref.values, np.ndarray)
        if _looks_categorical(ref.values):
            ref = _Column("categorical", pd.Series(ref.values), ref.missing)
    cur = _prepare(current, names[1], ref.kind)
    for col, name in ((ref, names[0]), (cur, names[1])):
        if len(col.values) == 0:
            raise InputError(name, "is empty (no values after dropping NaN/None)")
    n_ref, n_cur = len(ref.values), len(cur.values)
    large = n_ref >= large_n and n_cur >= large_n
    if method is None:
        if ref.kind == "numeric":
            method = "wasserstein" if large else "ks"
        else:
            method = "jensenshannon" if large else "chi2"
    elif method in _NUMERIC_METHODS and ref.kind != "numeric":
        raise InputError(
            "method",
            f"{method!r} needs numeric values but {names[0]} is categorical",
            "use 'chi2' or 'jensenshannon'",
        )
    t = _check_threshold(threshold, method)

    p_value: float | None = None
    psi: float | None = None
    if method in _NUMERIC_METHODS:
        r = np.asarray(ref.values, dtype=np.float64)
        c = np.asarray(cur.values, dtype=np.float64)
        if method == "ks":
            statistic, p_value = _ks(r, c)
        else:
            r_sorted, c_sorted = np.sort(r), np.sort(c)
            psi = _psi_sorted(r_sorted, c_sorted)
            if method == "psi":
                statistic = psi
            else:
                scale = max(float(np.std(r)), _STD_FLOOR)
                statistic = _wasserstein_sorted(r_sorted, c_sorted) / scale
    else:
        r_s = ref.values if isinstance(ref.values, pd.Series) else pd.Series(ref.values)
        c_s = cur.values if isinstance(cur.values, pd.Series) else pd.Series(cur.values)
        rc, cc = _category_counts(r_s, c_s)
        if method == "chi2":
            from scipy.stats import chi2_contingency

            res = chi2_contingency(np.vstack([rc, cc]))
            statistic, p_value = float(res.statistic), float(res.pvalue)
        else:
            from scipy.spatial.distance import jensenshannon

            statistic = float(jensenshannon(rc / n_ref, cc / n_cur, base=2))
    drifted = p_value < t if p_value is not None else statistic >= t
    return ColumnDrift(
        method=method,
        statistic=float(statistic),
        p_value=p_value,
        drifted=bool(drifted),
        threshold=t,
        kind=ref.kind,
        n_reference=n_ref,
        n_current=n_cur,
        missing_reference=ref.missing,
        missing_current=cur.missing,
        psi=psi,
    )


def dataset_drift(
    reference: Any,
    current: Any,
    *,
    columns: Iterable[str] | None = None,
    per_column: Mapping[str, Mapping[str, Any]] | None = None,
    share: float = 0.5,
    large_n: int = DEFAULT_LARGE_N,
) -> DatasetDrift:
    """Test every column for drift and the dataset as the share of drifted columns.

    Args:
        reference: reference table (pandas DataFrame, pyarrow Table, or anything
            ``pandas.DataFrame()`` accepts).
        current: current table, same forms.
        columns: columns to compare; None for every column of the reference.
        per_column: column name -> overrides among ``kind``, ``method``,
            ``threshold`` and ``large_n`` (see :func:`column_drift`).
        share: the dataset drifted when at least this share of columns did
            (default 0.5, as Evidently).
        large_n: default sample size for the switch to distances.

    Returns:
        A :class:`DatasetDrift`; ``to_dict()`` is the report's ``"drift"`` block.

    Raises:
        InputError: (a ValueError) naming a column missing from either table, an
            empty column, a bad override, or ``share``/``columns``.

    Example:
        >>> import pandas as pd
        >>> ref = pd.DataFrame({"x": range(100), "c": ["a", "b"] * 50})
        >>> cur = pd.DataFrame({"x": range(50, 150), "c": ["a", "b"] * 50})
        >>> dataset_drift(ref, cur).to_dict()["share_drifted"]
        0.5
    """
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0.0 < share <= 1.0:
        raise InputError("share", f"expected 0 < share <= 1, got {share!r}")
    large_n = _check_large_n(large_n)
    ref_df = as_frame(reference, "reference")
    cur_df = as_frame(current, "current")
    names = list(ref_df.columns) if columns is None else list(columns)
    if not names:
        raise InputError("columns", "no columns to compare")
    if len(set(names)) != len(names):
        raise InputError("columns", "lists a column twice")
    for col in names:
        if col not in ref_df.columns:
            raise InputError(
                f"reference[{col!r}]", "no such column", f"columns: {list(ref_df.columns)}"
            )
        if col not in cur_df.columns:
            raise InputError(f"current[{col!r}]", "no such column in the current data")
    overrides = dict(per_column or {})
    for col, opts in overrides.items():
        if col not in names:
            raise InputError("per_column", f"names {col!r}, which is not compared")
        if not isinstance(opts, Mapping):
            raise InputError(f"per_column[{col!r}]", "expected a mapping of overrides")
        bad = sorted(set(opts) - set(_OVERRIDE_KEYS))
        if bad:
            raise InputError(
                f"per_column[{col!r}]", f"unknown keys {bad}", f"use {', '.join(_OVERRIDE_KEYS)}"
            )

    def one(col: Any) -> ColumnDrift:
        opts = overrides.get(col, {})
        try:
            return _column_drift(
                ref_df[col],
                cur_df[col],
                kind=opts.get("kind"),
                method=opts.get("method"),
                threshold=opts.get("threshold"),
                large_n=opts.get("large_n", large_n),
                names=(f"reference[{col!r}]", f"current[{col!r}]"),
            )
        except InputError as exc:
            if exc.field in ("kind", "method", "threshold", "large_n"):
                raise InputError(f"per_column[{col!r}].{exc.field}", exc.problem, exc.fix) from exc
            raise

    # Columns are independent and the heavy work (sorting, merging) releases the GIL, so
    # they run on a few threads; results are collected in column order, and the first
    # failing column (in order) raises, exactly as a sequential loop would.
    workers = min(_MAX_WORKERS, os.cpu_count() or 1, len(names))
    rows = min(len(ref_df), len(cur_df))
    if workers > 1 and rows >= _PARALLEL_MIN_ROWS:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(one, names))
    else:
        results = [one(col) for col in names]
    features = {str(col): res for col, res in zip(names, results, strict=True)}
    drifted = sum(d.drifted for d in features.values())
    share_drifted = drifted / len(features)
    return DatasetDrift(
        features=features,
        share_drifted=share_drifted,
        dataset_drifted=share_drifted >= share,
        share=float(share),
    )
