"""Weak slices: the feature conditions where the error rate or loss is worst (issue 3).

:func:`find_weak_slices` looks, without being told where, for conditions on the
features under which a per-row error indicator (metric ``"error_rate"``) or a per-row
loss (metric ``"loss"``) is worse than on the whole table:

- numeric features with more than 10 distinct values are cut into ``bins``
  quantile bins of the table itself (no reference needed); a condition reads
  ``"x3 in [0.12, 0.48)"`` (the last bin is closed: ``"x3 in [0.48, 2.9]"``);
- other features (strings, booleans, categoricals, numeric codes with at most 10
  distinct values) give one condition per value: ``"cat_2 = c7"``;
- missing values give their own condition: ``"x3 is missing"``;
- with ``max_order=2``, pairs (AND) of conditions on two different features: each of
  the ``pair_base`` strongest single conditions (largest test statistic) is crossed
  with every condition of every other feature, which bounds the work. A pair is kept
  only when it is also significantly worse than the rows of each of its two single
  conditions outside the pair (one-sided, Bonferroni over the pairs), so a pair does
  not merely restate a weak single condition.

Each condition with at least ``min_support`` rows (and at least 2 rows outside it) is
tested one-sided against the rows outside it: Fisher's exact test (the hypergeometric
tail, exact where a two-proportion z-test is too liberal for small slices at low error
rates) for 0/1 errors, Welch's t-test for losses. Benjamini-Hochberg over every tested condition
(singles and pairs) controls the false discovery rate at ``alpha``. Only significant
slices are returned, worst gap (slice value minus the whole table's value) first.

Example:
    >>> import numpy as np, pandas as pd
    >>> from tunelens.quality.slices import find_weak_slices
    >>> rng = np.random.default_rng(0)
    >>> frame = pd.DataFrame({"cat": rng.choice(["a", "b", "c"], 6000)})
    >>> errors = rng.random(6000) < np.where(frame["cat"] == "c", 0.4, 0.1)
    >>> top = find_weak_slices(frame, errors=errors)[0]
    >>> top.condition, top.metric, top.rows > 1500
    ('cat = c', 'error_rate', True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from tunelens.errors import InputError

__all__ = ["DEFAULT_BINS", "DEFAULT_PAIR_BASE", "METRICS", "Slice", "find_weak_slices"]

#: Quantile bins per numeric feature.
DEFAULT_BINS = 5
#: Strongest single conditions crossed with the other features when ``max_order=2``.
DEFAULT_PAIR_BASE = 10
METRICS = ("error_rate", "loss")
_MAX_CODES = 10

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class Slice:
    """One significantly weak slice.

    Attributes:
        feature: the feature name, or two names joined by ``" & "`` for a pair.
        condition: the condition, e.g. ``"cat = c7"`` or ``"cat = c3 & x1 in [1.2, 3.4]"``.
        rows: rows in the slice.
        metric: ``"error_rate"`` (0/1 errors) or ``"loss"`` (per-row losses).
        value: the mean error or loss in the slice.
        gap: ``value`` minus the mean over the whole table (positive: worse).
        p_value: one-sided p-value of the slice against the rows outside it.
        q_value: Benjamini-Hochberg adjusted p-value over all tested conditions.
        order: 1 for a single condition, 2 for a pair.
    """

    feature: str
    condition: str
    rows: int
    metric: str
    value: float
    gap: float
    p_value: float
    q_value: float
    order: int = 1

    def to_dict(self) -> dict[str, Any]:
        """The report JSON entry: ``{"feature", "condition", "rows", "metric", "value", "gap"}``."""
        return {
            "feature": self.feature,
            "condition": self.condition,
            "rows": int(self.rows),
            "metric": self.metric,
            "value": float(self.value),
            "gap": float(self.gap),
        }


@dataclass(frozen=True)
class _Feature:
    name: str
    codes: npt.NDArray[np.integer[Any]]  # one code per row, 0..len(labels)-1, compact
    labels: list[str]


def _compact(codes: npt.NDArray[np.integer[Any]], n_labels: int) -> npt.NDArray[np.integer[Any]]:
    """The smallest unsigned type that holds ``2 * code + 1`` (the pair search packs an
    error bit beside the code): one byte a row for up to 127 labels instead of eight."""
    if 2 * n_labels + 1 < 256:
        return codes.astype(np.uint8)
    if 2 * n_labels + 1 < 65536:
        return codes.astype(np.uint16)
    return codes.astype(np.int64)


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _more_distinct_than(ordered: FloatArray, k: int) -> bool:
    """Whether the sorted values hold more than ``k`` distinct values."""
    head = np.unique(ordered[np.linspace(0, ordered.size - 1, 4 * k + 2).astype(np.intp)])
    if head.size > k:  # evenly spaced order statistics already differ
        return True
    return int(np.count_nonzero(ordered[1:] != ordered[:-1])) + 1 > k


def _sorted_quantiles(ordered: FloatArray, qs: FloatArray) -> FloatArray:
    """``np.quantile(values, qs)`` (linear method) of sorted values, without a partition.

    Same arithmetic as NumPy: virtual index ``q * (n - 1)``, then its linear
    interpolation (``a + (b - a) t``, or ``b - (b - a)(1 - t)`` when ``t >= 0.5``).
    """
    n = ordered.size
    virtual = qs * (n - 1)
    below = np.floor(virtual)
    t = virtual - below
    lo = below.astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)
    a, b = ordered[lo], ordered[hi]
    diff = b - a
    out = a + diff * t
    upper = t >= 0.5
    out[upper] = b[upper] - diff[upper] * (1.0 - t[upper])
    return np.asarray(out, dtype=np.float64)


def _encode(name: str, column: pd.Series, bins: int) -> _Feature:
    """Codes per row and the condition text of each code."""
    dtype = column.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        raise InputError(
            f"frame[{name!r}]", f"dates and durations ({dtype}) are not supported", "convert first"
        )
    numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    if numeric:
        x = column.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = np.isnan(x)
        finite = x[~missing]
        if finite.size and not np.isfinite(finite).all():
            raise InputError(f"frame[{name!r}]", "holds infinite values", "drop or clip them")
        ordered = np.sort(finite)
        if ordered.size and _more_distinct_than(ordered, _MAX_CODES):
            qs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
            edges = np.unique(_sorted_quantiles(ordered, qs))
            # the bin is the number of edges at or below the value (a NaN: 0, moved below)
            bin_codes: npt.NDArray[np.integer[Any]] = np.zeros(
                x.size, dtype=np.uint8 if edges.size < 127 else np.intp
            )
            for edge in edges:
                bin_codes += x >= edge
            lo = [float(ordered[0]), *edges.tolist()]
            hi = [*edges.tolist(), float(ordered[-1])]
            labels = [
                f"{name} in [{_fmt(a)}, {_fmt(b)}{']' if i == len(edges) else ')'}"
                for i, (a, b) in enumerate(zip(lo, hi, strict=True))
            ]
            if missing.any():
                bin_codes[missing] = len(labels)
                labels.append(f"{name} is missing")
            return _Feature(name, _compact(bin_codes, len(labels)), labels)
    raw_codes, uniques = pd.factorize(column, use_na_sentinel=True)
    codes = np.asarray(raw_codes, dtype=np.intp)
    labels = [f"{name} = {u}" for u in uniques]
    if (codes < 0).any():
        codes = np.where(codes < 0, len(labels), codes)
        labels.append(f"{name} is missing")
    return _Feature(name, _compact(codes, len(labels)), labels)


def _test(
    n: FloatArray,
    s: FloatArray,
    ss: FloatArray,
    n0: FloatArray,
    s0: FloatArray,
    ss0: FloatArray,
    metric: str,
) -> tuple[FloatArray, FloatArray]:
    """One-sided test of group mean > rest mean; returns (statistic, p-value)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        m1 = s / n
        m0 = s0 / n0
        diff = m1 - m0
        if metric == "error_rate":
            p = (s + s0) / (n + n0)
            se = np.sqrt(p * (1.0 - p) * (1.0 / n + 1.0 / n0))
            z = diff / se
            # Fisher's exact test, one-sided: the z-test's normal tail is too small for
            # small slices at low error rates (skewed binomial), which inflates discoveries
            k, tot = np.rint(s), np.rint(n + n0)
            pv = stats.hypergeom.sf(k - 1.0, tot, np.rint(s + s0), np.rint(n))
        else:
            v1 = np.maximum(ss - n * m1 * m1, 0.0) / (n - 1.0)
            v0 = np.maximum(ss0 - n0 * m0 * m0, 0.0) / (n0 - 1.0)
            a, b = v1 / n, v0 / n0
            se = np.sqrt(a + b)
            z = diff / se
            df = (a + b) ** 2 / (a * a / (n - 1.0) + b * b / (n0 - 1.0))
            pv = stats.t.sf(z, np.where(np.isfinite(df), df, 1.0))
        zero = ~(se > 0)
        z = np.where(zero, np.where(diff > 0, np.inf, 0.0), z)
        pv = np.where(zero, np.where(diff > 0, 0.0, 1.0), pv)
    return np.asarray(z, dtype=np.float64), np.asarray(pv, dtype=np.float64)


def _bh(p: FloatArray) -> FloatArray:
    """Benjamini-Hochberg adjusted p-values (q-values)."""
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1.0)
    return out


def _check_errors(errors: Any, frame: pd.DataFrame, metric: str | None) -> tuple[FloatArray, str]:
    if isinstance(errors, str):
        if errors not in frame.columns:
            raise InputError("errors", f"no column {errors!r} in frame")
        errors = frame[errors]
    try:
        e = np.asarray(errors, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputError("errors", "expected numbers (0/1 errors or per-row losses)") from exc
    if e.size != len(frame):
        raise InputError("errors", f"has {e.size} values but frame has {len(frame)} rows")
    if not np.isfinite(e).all():
        raise InputError("errors", "holds NaN or infinite values", "drop those rows first")
    binary = bool(np.isin(e, (0.0, 1.0)).all())
    if metric is None:
        metric = "error_rate" if binary else "loss"
    elif metric not in METRICS:
        raise InputError("metric", f"unknown metric {metric!r}", f"use one of {METRICS}")
    elif metric == "error_rate" and not binary:
        raise InputError(
            "errors", "metric 'error_rate' needs 0/1 values", "pass metric='loss' for losses"
        )
    return e, metric


def find_weak_slices(
    frame: pd.DataFrame,
    *,
    errors: Any,
    features: Sequence[str] | None = None,
    min_support: int | None = None,
    max_order: int = 2,
    alpha: float = 0.05,
    top: int = 10,
    metric: str | None = None,
    bins: int = DEFAULT_BINS,
    pair_base: int = DEFAULT_PAIR_BASE,
) -> list[Slice]:
    """Find the feature conditions where errors or losses are significantly worst.

    Args:
        frame: the table of features (pandas DataFrame), one row per prediction.
        errors: per-row 0/1 error indicator or per-row loss, as an array of
            ``len(frame)`` values, or the name of a column of ``frame`` (then left out
            of the features).
        features: the columns to slice on; None: every column (but ``errors``).
        min_support: fewest rows a slice may have; None: ``max(30, ceil(1% of rows))``.
        max_order: 1 for single conditions, 2 to add pairs of them.
        alpha: the false discovery rate (Benjamini-Hochberg) over all tested conditions.
        top: most slices returned.
        metric: ``"error_rate"`` (errors must be 0/1) or ``"loss"``; None: ``"error_rate"``
            when every value is 0 or 1, ``"loss"`` otherwise.
        bins: quantile bins per numeric feature.
        pair_base: the strongest single conditions crossed with other features.

    Returns:
        Significant slices, largest ``gap`` first (ties: smaller p-value), at most ``top``.

    Raises:
        InputError: naming ``frame``, ``errors``, ``features``, ``min_support``,
            ``max_order``, ``alpha``, ``top``, ``metric``, ``bins`` or ``pair_base``.

    Example:
        >>> import pandas as pd
        >>> frame = pd.DataFrame({"g": ["a", "b"] * 100})
        >>> find_weak_slices(frame, errors=[0, 0] * 100)
        []
    """
    from tunelens.io import ParquetColumns

    if not isinstance(frame, pd.DataFrame | ParquetColumns):
        raise InputError("frame", f"expected a pandas DataFrame, got {type(frame).__name__}")
    if len(frame) == 0:
        raise InputError("frame", "has no rows")
    e, metric = _check_errors(errors, frame, metric)
    if features is None:
        names = [str(c) for c in frame.columns if not (isinstance(errors, str) and c == errors)]
    else:
        if isinstance(features, str):
            raise InputError("features", "expected a list of column names, got one string")
        names = list(features)
        unknown = [f for f in names if f not in frame.columns]
        if unknown:
            raise InputError("features", f"no such columns in frame: {unknown}")
    if not names:
        raise InputError("features", "no features to slice on")
    n_rows = len(frame)
    if min_support is None:
        min_support = max(30, math.ceil(0.01 * n_rows))
    if isinstance(min_support, bool) or not isinstance(min_support, int | np.integer):
        raise InputError("min_support", "expected an integer number of rows")
    if min_support < 1:
        raise InputError("min_support", f"must be >= 1, got {min_support}")
    if max_order not in (1, 2):
        raise InputError("max_order", f"must be 1 or 2, got {max_order}")
    if not 0.0 < alpha < 1.0:
        raise InputError("alpha", f"must be in (0, 1), got {alpha}")
    if top < 1:
        raise InputError("top", f"must be >= 1, got {top}")
    if bins < 2:
        raise InputError("bins", f"must be >= 2, got {bins}")
    if pair_base < 1:
        raise InputError("pair_base", f"must be >= 1, got {pair_base}")

    e2 = e * e
    binary_e = bool(np.array_equal(e2, e))  # 0/1 values: squares equal the values
    total_n, total_s, total_ss = float(n_rows), float(e.sum()), float(e2.sum())
    overall = total_s / total_n
    feats = [_encode(name, frame[name], bins) for name in names]

    # single conditions: per-code counts, sums, sums of squares by bincount
    rows_f: list[int] = []  # feature index
    rows_c: list[int] = []  # code
    cn: list[FloatArray] = []
    cs: list[FloatArray] = []
    css: list[FloatArray] = []
    for fi, f in enumerate(feats):
        k = len(f.labels)
        cn.append(np.bincount(f.codes, minlength=k).astype(np.float64))
        cs.append(np.asarray(np.bincount(f.codes, weights=e, minlength=k), dtype=np.float64))
        css.append(np.asarray(np.bincount(f.codes, weights=e2, minlength=k), dtype=np.float64))
        rows_f.extend([fi] * k)
        rows_c.extend(range(k))
    n1: FloatArray = np.concatenate(cn)
    s1: FloatArray = np.concatenate(cs)
    ss1: FloatArray = np.concatenate(css)
    fidx = np.asarray(rows_f, dtype=np.intp)
    cidx = np.asarray(rows_c, dtype=np.intp)
    keep = (n1 >= min_support) & (total_n - n1 >= 2)
    n1, s1, ss1, fidx, cidx = n1[keep], s1[keep], ss1[keep], fidx[keep], cidx[keep]
    z1, p1 = _test(n1, s1, ss1, total_n - n1, total_s - s1, total_ss - ss1, metric)

    # candidates: (feature label, condition, n, s, p, order, passes redundancy check)
    cand_feature: list[str] = [feats[f].name for f in fidx]
    cand_cond: list[str] = [feats[f].labels[c] for f, c in zip(fidx, cidx, strict=True)]
    cand_n: list[FloatArray] = [n1]
    cand_s: list[FloatArray] = [s1]
    cand_p: list[FloatArray] = [p1]
    cand_ok: list[npt.NDArray[np.bool_]] = [np.ones(n1.size, dtype=bool)]
    order_list: list[int] = [1] * n1.size

    if max_order == 2 and len(feats) > 1 and n1.size:
        strength = np.where(np.isfinite(z1), z1, np.finfo(np.float64).max)
        base = np.argsort(-strength, kind="stable")[:pair_base]
        base = base[strength[base] > 0]
        # single stats by (feature, code), for the redundancy check against the partner
        lookup = {
            (fi, c): (float(a), float(b), float(d))
            for fi, f in enumerate(feats)
            for c, a, b, d in zip(range(len(f.labels)), cn[fi], cs[fi], css[fi], strict=True)
        }
        seen: set[frozenset[tuple[int, int]]] = set()
        pn, ps, pss, an, as_, ass, bn, bs, bss = ([] for _ in range(9))
        pfeat, pcond = [], []
        # Compact copies of the codes make the row gathers below cheap; with 0/1 errors
        # one unweighted bincount of ``2 * code + error`` gives counts and sums at once.
        small = [f.codes for f in feats]
        e_u8 = e.astype(np.uint8) if binary_e else None
        for bi in base:
            fa, ca = int(fidx[bi]), int(cidx[bi])
            rows = np.flatnonzero(feats[fa].codes == ca)
            er, er2 = e[rows], e2[rows]
            er_u8 = None if e_u8 is None else e_u8[rows]
            na_, sa_, ssa_ = float(n1[bi]), float(s1[bi]), float(ss1[bi])
            for fb, g in enumerate(feats):
                if fb == fa:
                    continue
                k = len(g.labels)
                sub = small[fb][rows]
                if er_u8 is not None and sub.dtype == np.uint8:
                    sub <<= 1
                    sub |= er_u8
                    both = np.bincount(sub, minlength=2 * k)
                    cnt = both[0::2] + both[1::2]
                    sm = sq = both[1::2].astype(np.float64)
                else:
                    cnt = np.bincount(sub, minlength=k)
                    sm = np.asarray(np.bincount(sub, weights=er, minlength=k), dtype=np.float64)
                    sq = (
                        sm
                        if binary_e
                        else np.asarray(np.bincount(sub, weights=er2, minlength=k), np.float64)
                    )
                for cb in np.flatnonzero(cnt >= min_support):
                    key = frozenset({(fa, ca), (fb, int(cb))})
                    if key in seen or total_n - cnt[cb] < 2:
                        continue
                    seen.add(key)
                    nb_, sb_, ssb_ = lookup[(fb, int(cb))]
                    pn.append(float(cnt[cb]))
                    ps.append(float(sm[cb]))
                    pss.append(float(sq[cb]))
                    an.append(na_)
                    as_.append(sa_)
                    ass.append(ssa_)
                    bn.append(nb_)
                    bs.append(sb_)
                    bss.append(ssb_)
                    first, second = sorted([(fa, ca), (fb, int(cb))])
                    pfeat.append(f"{feats[first[0]].name} & {feats[second[0]].name}")
                    pcond.append(
                        f"{feats[first[0]].labels[first[1]]} & {feats[second[0]].labels[second[1]]}"
                    )
        if pn:
            P = [np.asarray(v, dtype=np.float64) for v in (pn, ps, pss, an, as_, ass, bn, bs, bss)]
            n2, s2, ss2, na2, sa2, ssa2, nb2, sb2, ssb2 = P
            _, p2 = _test(n2, s2, ss2, total_n - n2, total_s - s2, total_ss - ss2, metric)
            # the pair must beat the rest of each of its single conditions
            bonf = alpha / n2.size
            ok = np.ones(n2.size, dtype=bool)
            for pn_, ps_, pss_ in ((na2, sa2, ssa2), (nb2, sb2, ssb2)):
                rest_n = pn_ - n2
                valid = rest_n >= 2
                _, pr = _test(n2, s2, ss2, rest_n, ps_ - s2, pss_ - ss2, metric)
                ok &= valid & (pr < bonf)
            cand_feature.extend(pfeat)
            cand_cond.extend(pcond)
            cand_n.append(n2)
            cand_s.append(s2)
            cand_p.append(p2)
            cand_ok.append(ok)
            order_list.extend([2] * n2.size)

    n_all = np.concatenate(cand_n)
    s_all = np.concatenate(cand_s)
    p_all = np.concatenate(cand_p)
    ok_all = np.concatenate(cand_ok)
    q_all = _bh(p_all)
    value = s_all / np.maximum(n_all, 1.0)
    gap = value - overall
    hits = np.flatnonzero((q_all <= alpha) & ok_all & (gap > 0))
    hits = hits[np.lexsort((p_all[hits], -gap[hits]))][:top]
    return [
        Slice(
            feature=cand_feature[i],
            condition=cand_cond[i],
            rows=int(n_all[i]),
            metric=metric,
            value=float(value[i]),
            gap=float(gap[i]),
            p_value=float(p_all[i]),
            q_value=float(q_all[i]),
            order=order_list[i],
        )
        for i in hits
    ]
