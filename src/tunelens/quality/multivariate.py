"""Multivariate drift: changes in the joint distribution that no single column shows.

Per-column tests (:mod:`tunelens.quality.drift`) compare marginals, so they miss a
change in correlations: two features correlated at +0.8 in the reference and -0.8
in the current data have identical marginals. The two checks here look at the rows
as a whole (issue 3):

- :func:`reconstruction_drift` (``method="pca_reconstruction"``), NannyML's data
  reconstruction approach. The reference rows are shuffled (seeded) and split in
  two halves: the first fits the model, the second (held out) measures the
  reference error, so the reference and the current errors are both measured on
  rows the model never saw (a PCA scores its own training rows better; on 1e6 x 20
  rows of one distribution that in-sample bias alone is larger than the band). On
  the fitting half the numeric columns are standardised by their mean and standard
  deviation (a constant column is divided by 1), missing values become the mean (0
  after standardising), and a PCA (the eigenvectors of the covariance matrix, as
  ``sklearn.decomposition.PCA(svd_solver="covariance_eigh")``) keeps the fewest
  components that explain ``variance`` of the variance. A fitting half of more than
  200 000 rows is used through a seeded random subsample of 200 000 of its rows
  (the means, standard deviations and covariances of a few dozen columns are pinned
  down by 2e5 rows to well below the band's width; every held-out and current row is
  still scored). A row's reconstruction
  error is the Euclidean distance between the standardised row and its projection
  back from those components; the statistic is the mean over the current rows.
  When the correlation structure changes, current rows leave the reference's
  principal subspace and the error grows.

  Threshold, from the reference's own variability: the held-out half is dealt into
  ``n_chunks`` chunks and the standard deviation ``s`` of the chunk mean errors is
  taken. A chunk of ``m`` rows has a mean error with standard deviation about
  ``s``, so a mean over ``n`` rows has ``s * sqrt(m / n)``. The band is
  ``reference_error ± 3 * s * sqrt(m) * sqrt(1 / n_held_out + 1 / n_current)``:
  NannyML's "mean ± 3 standard deviations of the chunk errors", scaled to the size
  of the current sample and to the uncertainty of the reference mean itself (when
  the current sample is one chunk long it is NannyML's band, widened by
  ``sqrt(1 + 1 / n_chunks)``). Drifted when the current error is outside the band.
  The spread comes from only ``n_chunks`` chunk means, so the band has heavier
  tails than a normal 3-sigma band: over 100 draws of one distribution (5 columns)
  it flagged 0 of 100 at 10 000 vs 10 000 rows, 2 at 1 000 vs 1 000 and 3 at
  10 000 vs 100; raise ``n_chunks`` for a steadier band.
  The check is blind to changes that stay inside the kept subspace (for example a
  mean shift along a principal direction); the domain classifier is not.

- :func:`domain_classifier_drift` (``method="domain_classifier"``): a
  ``HistGradientBoostingClassifier`` learns to tell reference rows (label 0) from
  current rows (label 1); each sample is first subsampled (seeded) to ``max_rows``.
  The statistic is the stratified ``cv``-fold cross-validated ROC AUC. If the two
  samples come from one distribution no classifier beats chance and the AUC is
  about 0.5; drifted when ``AUC >= threshold`` (0.55 by default). Why 0.55: under
  no drift the AUC of a held-out fold has a standard deviation of about
  ``sqrt((n0 + n1 + 1) / (12 * n0 * n1))`` (Mann-Whitney), 0.004 with 10 000 rows on
  each side and 0.018 with 500, so 0.55 is far beyond chance at the sizes a report
  sees (and cross-validation averages the folds), while a classifier that ranks a
  random current row above a random reference row only 55% of the time marks a
  shift small enough to ignore; Evidently and NannyML users commonly read AUC above
  0.55 as a detectable shift. Below about 1 000 rows a side expect false alarms
  (over 20 draws of one distribution, 5 columns: largest AUC 0.54 at 1 000 rows,
  0.61 at 200). Missing values go to the trees as they are (HGB
  handles NaN).

Columns: by default every numeric column of the reference (booleans count as
numbers, 0/1); other columns (strings, categoricals, dates) are skipped, so a
change in a categorical column is left to the per-column tests. Named ``columns``
must be numeric. Infinite values are rejected.

Example:
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> ref = pd.DataFrame(rng.multivariate_normal([0, 0], [[1, .8], [.8, 1]], 2000), columns=["a", "b"])
    >>> cur = pd.DataFrame(rng.multivariate_normal([0, 0], [[1, -.8], [-.8, 1]], 2000), columns=["a", "b"])
    >>> reconstruction_drift(ref, cur).drifted
    True
"""  # noqa: E501

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from tunelens.errors import InputError
from tunelens.quality._tables import as_frame

__all__ = [
    "MIN_ROWS",
    "MultivariateDrift",
    "domain_classifier_drift",
    "reconstruction_drift",
]

#: Each sample needs at least this many rows (and the reference this many per chunk).
MIN_ROWS = 10
_BLOCK = 262_144  # rows per block when computing reconstruction errors
#: The PCA is fitted on at most this many rows of the reference's fitting half.
_FIT_MAX_ROWS = 200_000


@dataclass(frozen=True)
class MultivariateDrift:
    """The result of one multivariate drift check.

    Attributes:
        method: ``"pca_reconstruction"`` or ``"domain_classifier"``.
        statistic: the current mean reconstruction error, or the cross-validated
            ROC AUC.
        reference_error: the reference's mean reconstruction error; None for the
            domain classifier.
        lower: lower end of the no-drift band; None for the domain classifier.
        upper: upper end of the band; for the domain classifier the AUC threshold.
        drifted: statistic outside ``[lower, upper]``; for the domain classifier
            ``statistic >= upper``.
        columns: the columns used, in order.
        n_reference: reference rows used (for the PCA check, half fitted the model
            and half set the band).
        n_current: current rows used.
        n_components: PCA components kept; None for the domain classifier.
    """

    method: str
    statistic: float
    reference_error: float | None
    lower: float | None
    upper: float | None
    drifted: bool
    columns: tuple[str, ...]
    n_reference: int
    n_current: int
    n_components: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: every field, ``columns`` as a list; ``json.dumps`` works."""

        def opt(x: float | None) -> float | None:
            return None if x is None else float(x)

        return {
            "method": self.method,
            "statistic": float(self.statistic),
            "reference_error": opt(self.reference_error),
            "lower": opt(self.lower),
            "upper": opt(self.upper),
            "drifted": bool(self.drifted),
            "columns": [str(c) for c in self.columns],
            "n_reference": int(self.n_reference),
            "n_current": int(self.n_current),
            "n_components": None if self.n_components is None else int(self.n_components),
        }


# ---------------------------------------------------------------- input handling


def _is_numeric(series: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(series.dtype))


def _matrices(
    reference: Any,
    current: Any,
    columns: Iterable[str] | None,
    max_rows: int | None = None,
    seed: int = 0,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], tuple[str, ...]]:
    """Float matrices of the compared columns (NaN kept), after every check; each side
    subsampled (seeded, rows kept in order) to ``max_rows`` when it has more."""
    ref_df = as_frame(reference, "reference")
    cur_df = as_frame(current, "current")
    if columns is None:
        names = [c for c in ref_df.columns if _is_numeric(ref_df[c])]
        if not names:
            raise InputError(
                "reference",
                "has no numeric columns",
                "pass a table with numeric features or name them in columns",
            )
    else:
        if isinstance(columns, str):
            raise InputError("columns", "expected a list of column names, got a string")
        names = list(columns)
        if not names:
            raise InputError("columns", "no columns to compare")
        if len(set(names)) != len(names):
            raise InputError("columns", "lists a column twice")
        for col in names:
            if col not in ref_df.columns:
                raise InputError(
                    f"reference[{col!r}]", "no such column", f"columns: {list(ref_df.columns)}"
                )
    for col in names:
        if col not in cur_df.columns:
            raise InputError(f"current[{col!r}]", "no such column in the current data")
    mats: list[npt.NDArray[np.float64]] = []
    rng = np.random.default_rng(seed)
    for df, name in ((ref_df, "reference"), (cur_df, "current")):
        n = len(df)
        take = None
        if max_rows is not None and n > max_rows:
            take = np.sort(rng.choice(n, max_rows, replace=False))
        # column by column into a column-major matrix: each copy is contiguous
        cols = np.empty((len(names), n if take is None else take.size), dtype=np.float64)
        for j, col in enumerate(names):
            series = df[col]  # read once (a lazy table decodes it here)
            if not _is_numeric(series):
                raise InputError(
                    f"{name}[{col!r}]",
                    f"is not numeric (dtype {series.dtype})",
                    "multivariate checks use numeric columns only; encode it first",
                )
            values = series.to_numpy(dtype=np.float64, na_value=np.nan)
            cols[j] = values if take is None else values[take]
        mat = cols.T
        if np.isinf(cols).any():
            bad = names[int(np.argwhere(np.isinf(cols))[0, 0])]
            raise InputError(f"{name}[{bad!r}]", "holds infinite values", "drop or clip them first")
        mats.append(mat)
    return mats[0], mats[1], tuple(str(c) for c in names)


def _check_rows(n: int, name: str, need: int) -> None:
    if n < need:
        raise InputError(name, f"has {n} rows, too few", f"need at least {need}")


def _check_int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise InputError(name, f"expected an integer >= {low}, got {value!r}")
    return int(value)


# ---------------------------------------------------------------- PCA reconstruction


def _row_errors(
    x: npt.NDArray[np.float64],
    center: npt.NDArray[np.float64],
    scale: npt.NDArray[np.float64],
    mean: npt.NDArray[np.float64],
    rest: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Distance of each standardised row to its PCA reconstruction, in row blocks.

    ``rest`` holds, as columns, the orthonormal directions the kept components leave
    out, so the residual's length is that of the projection on them:
    ``|| (z - mean) @ rest ||`` with ``z = (x - center) / scale`` (a missing value: 0);
    standardising and centring fold into one matrix product and an offset.
    """
    out = np.empty(x.shape[0], dtype=np.float64)
    if rest.shape[1] == 0:
        out.fill(0.0)
        return out
    weights = rest / scale[:, None]
    offset = (center / scale + mean) @ rest
    for start in range(0, x.shape[0], _BLOCK):
        block = x[start : start + _BLOCK]
        proj = block @ weights
        if np.isnan(proj).any():  # a missing value (NaN spreads into its row's product)
            proj = np.where(np.isnan(block), center, block) @ weights  # standardised to 0
        proj -= offset
        out[start : start + _BLOCK] = np.sqrt(np.einsum("ij,ij->i", proj, proj))
    return out


def _principal_axes(
    z: npt.NDArray[np.float64], variance: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], int]:
    """PCA of ``z`` as scikit-learn's ``PCA(n_components=variance, svd_solver=
    "covariance_eigh")``: the mean, every eigenvector of the covariance matrix as a
    column (largest eigenvalue first) and how many of them to keep (the fewest whose
    explained variance ratio sums to more than ``variance``)."""
    n = z.shape[0]
    mean = z.mean(axis=0)
    cov = z.T @ z
    cov -= n * np.outer(mean, mean)
    cov /= n - 1
    eigval, eigvec = np.linalg.eigh(cov)
    eigval, eigvec = eigval[::-1], eigvec[:, ::-1]
    eigval = np.maximum(eigval, 0.0)
    ratio = eigval / eigval.sum()
    keep = int(np.searchsorted(np.cumsum(ratio), variance, side="right")) + 1
    return mean, eigvec, min(keep, z.shape[1])


def _reconstruction_errors(
    ref: npt.NDArray[np.float64], cur: npt.NDArray[np.float64], variance: float, seed: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], int]:
    """Held-out reference errors (shuffled order), current errors, components kept."""
    order = np.random.default_rng(seed).permutation(ref.shape[0])
    n_fit = ref.shape[0] // 2
    fit = ref[np.sort(order[: min(n_fit, _FIT_MAX_ROWS)])]
    center = np.nanmean(fit, axis=0)
    center = np.where(np.isnan(center), 0.0, center)  # a column that is all NaN
    scale = np.nanstd(fit, axis=0)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    z_fit = (fit - center) / scale
    z_fit[np.isnan(z_fit)] = 0.0
    del fit
    d = z_fit.shape[1]
    if d == 1 or not np.any(z_fit):
        # one column (or no variation): no subspace to leave, keep no component
        mean, axes, kept = np.zeros(d), np.eye(d), 0
    else:
        mean, axes, kept = _principal_axes(z_fit, variance)
    del z_fit
    rest = np.ascontiguousarray(axes[:, kept:])
    # the held-out half keeps its shuffled order: the chunks below are random rows
    err_ref = _row_errors(ref, center, scale, mean, rest)[order[n_fit:]]
    err_cur = _row_errors(cur, center, scale, mean, rest)
    return err_ref, err_cur, kept


def reconstruction_drift(
    reference: Any,
    current: Any,
    *,
    columns: Iterable[str] | None = None,
    variance: float = 0.65,
    n_chunks: int = 10,
    seed: int = 0,
    max_rows: int | None = 200_000,
) -> MultivariateDrift:
    """Multivariate drift by PCA reconstruction error (NannyML's data reconstruction).

    See the module doc for the standardisation, the error and the band. A sample of
    more than ``max_rows`` rows is first subsampled to ``max_rows`` (seeded): the mean
    reconstruction error of 200 000 rows is already known to about 0.2% of its spread,
    and the band is computed for the rows actually used, so the test stays valid and
    loses almost no power, while time and memory stop growing with the table.

    Args:
        reference: reference table (pandas DataFrame, pyarrow Table, or anything
            ``pandas.DataFrame()`` accepts).
        current: current table, same forms.
        columns: numeric columns to use; None for every numeric column of the
            reference (other columns are skipped).
        variance: share of the reference variance the kept components explain,
            ``0 < variance < 1`` (default 0.65, as NannyML).
        n_chunks: reference chunks whose spread sets the band (default 10).
        seed: seeds the split of the reference into fitting and held-out halves.
        max_rows: rows used per side at most (None: every row).

    Returns:
        A :class:`MultivariateDrift` with ``method="pca_reconstruction"``.

    Raises:
        InputError: (a ValueError) naming ``reference``/``current`` (no numeric
            columns, too few rows, infinite values), a missing or non-numeric
            column, or ``columns``/``variance``/``n_chunks``/``seed`` when invalid.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(1)
        >>> x = rng.normal(size=(1000, 3))
        >>> reconstruction_drift(x, rng.normal(size=(1000, 3))).drifted
        False
    """
    if (
        isinstance(variance, bool)
        or not isinstance(variance, int | float | np.floating)
        or not 0.0 < float(variance) < 1.0
    ):
        raise InputError("variance", f"expected 0 < variance < 1, got {variance!r}")
    n_chunks = _check_int(n_chunks, "n_chunks", 2)
    seed = _check_int(seed, "seed", 0)
    if max_rows is not None:
        max_rows = _check_int(max_rows, "max_rows", 4 * max(MIN_ROWS, n_chunks))
    ref, cur, names = _matrices(reference, current, columns, max_rows, seed)
    _check_rows(ref.shape[0], "reference", max(2 * MIN_ROWS, 4 * n_chunks))
    _check_rows(cur.shape[0], "current", MIN_ROWS)

    # The products here are tall and thin (rows x a few dozen columns): memory-bound,
    # so one BLAS thread is as fast as many, and many spin badly on a busy machine.
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    with threadpool_limits(limits=1, user_api="blas"):
        err_ref, err_cur, kept = _reconstruction_errors(ref, cur, float(variance), seed)

    n_ref, n_cur = err_ref.size, err_cur.size
    chunk_means = np.array([c.mean() for c in np.array_split(err_ref, n_chunks)])
    chunk_rows = n_ref / n_chunks
    spread = float(np.std(chunk_means, ddof=1)) * math.sqrt(chunk_rows)
    half = 3.0 * spread * math.sqrt(1.0 / n_ref + 1.0 / n_cur)
    reference_error = float(err_ref.mean())
    statistic = float(err_cur.mean())
    lower, upper = reference_error - half, reference_error + half
    return MultivariateDrift(
        method="pca_reconstruction",
        statistic=statistic,
        reference_error=reference_error,
        lower=lower,
        upper=upper,
        drifted=bool(statistic < lower or statistic > upper),
        columns=names,
        n_reference=int(ref.shape[0]),
        n_current=n_cur,
        n_components=kept,
    )


# ---------------------------------------------------------------- domain classifier


def domain_classifier_drift(
    reference: Any,
    current: Any,
    *,
    columns: Iterable[str] | None = None,
    cv: int = 3,
    threshold: float = 0.55,
    max_rows: int = 50_000,
    seed: int = 0,
) -> MultivariateDrift:
    """Multivariate drift by how well a classifier tells current rows from reference rows.

    See the module doc for the classifier and why the threshold is 0.55.

    Args:
        reference: reference table (pandas DataFrame, pyarrow Table, or anything
            ``pandas.DataFrame()`` accepts).
        current: current table, same forms.
        columns: numeric columns to use; None for every numeric column of the
            reference (other columns are skipped).
        cv: stratified cross-validation folds (default 3).
        threshold: drifted when the cross-validated ROC AUC is at least this,
            ``0.5 < threshold <= 1`` (default 0.55).
        max_rows: each sample is subsampled to at most this many rows (default 50 000).
        seed: seeds the subsampling, the folds and the classifier.

    Returns:
        A :class:`MultivariateDrift` with ``method="domain_classifier"``, the AUC as
        ``statistic`` and the threshold as ``upper``.

    Raises:
        InputError: (a ValueError) naming ``reference``/``current`` (no numeric
            columns, too few rows, infinite values), a missing or non-numeric
            column, or ``columns``/``cv``/``threshold``/``max_rows``/``seed``.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(2)
        >>> d = domain_classifier_drift(rng.normal(size=(500, 2)), rng.normal(1, size=(500, 2)))
        >>> d.method, d.drifted
        ('domain_classifier', True)
    """
    cv = _check_int(cv, "cv", 2)
    max_rows = _check_int(max_rows, "max_rows", MIN_ROWS)
    seed = _check_int(seed, "seed", 0)
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float | np.floating)
        or not 0.5 < float(threshold) <= 1.0
    ):
        raise InputError("threshold", f"expected 0.5 < threshold <= 1, got {threshold!r}")
    ref, cur, names = _matrices(reference, current, columns)
    need = max(MIN_ROWS, cv)
    _check_rows(ref.shape[0], "reference", need)
    _check_rows(cur.shape[0], "current", need)

    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    rng = np.random.default_rng(seed)
    if ref.shape[0] > max_rows:
        ref = ref[np.sort(rng.choice(ref.shape[0], max_rows, replace=False))]
    if cur.shape[0] > max_rows:
        cur = cur[np.sort(rng.choice(cur.shape[0], max_rows, replace=False))]
    x = np.vstack([ref, cur])
    y = np.concatenate([np.zeros(ref.shape[0], np.int8), np.ones(cur.shape[0], np.int8)])
    model = HistGradientBoostingClassifier(random_state=seed)
    folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    scores = cross_val_score(model, x, y, cv=folds, scoring="roc_auc")
    auc = float(np.mean(scores))
    return MultivariateDrift(
        method="domain_classifier",
        statistic=auc,
        reference_error=None,
        lower=None,
        upper=float(threshold),
        drifted=bool(auc >= float(threshold)),
        columns=names,
        n_reference=int(ref.shape[0]),
        n_current=int(cur.shape[0]),
        n_components=None,
    )
