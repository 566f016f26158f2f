"""Champion vs challenger on the same held-out rows, and the promotion decision (issue 7).

:func:`compare` scores both models on the same recent labelled rows and tests the paired
difference, so that a retrained model is promoted only when it is better by more than
chance explains:

* classification, ``metric="accuracy"`` (default): McNemar's test on the discordant pairs
  (``b`` rows only the champion gets right, ``c`` rows only the challenger gets right);
  the exact two-sided binomial p-value when ``b + c < 25``, otherwise the chi-square
  statistic ``(|b - c| - 1)**2 / (b + c)`` with continuity correction; both equal to
  ``statsmodels.stats.contingency_tables.mcnemar(exact=..., correction=True)``;
* binary classification with scores (``champion_score`` / ``challenger_score``, the
  probability of the positive class, which is the larger label): ``metric="roc_auc"``
  decided by DeLong's test for two correlated AUCs (Sun & Xu's midrank algorithm), and
  ``metric="log_loss"`` decided by the paired bootstrap p-value;
* regression, ``metric="mse"`` (default) or ``"mae"``: the per-row loss differences,
  decided by the Wilcoxon signed-rank test (:func:`scipy.stats.wilcoxon`) with the
  paired t-test (:func:`scipy.stats.ttest_rel`) reported beside it.

Every comparison also carries a 95 % paired percentile bootstrap interval of the
difference (rows resampled with replacement, the same rows for both models; ``n_boot``
replicates from ``numpy.random.default_rng(seed)``) and the bootstrap p-value (the share
of replicates on the other side of 0 from the observed difference, doubled, floored at
``1 / (n_boot + 1)`` and capped at 1).

The ``difference`` is oriented so that positive means the challenger is better: the
accuracy or AUC gain, the log loss / MSE / MAE reduction. ``significant`` means
``p_value < alpha`` and ``difference > 0``.

:func:`decide` turns a comparison into an action by policy: ``"manual"`` never promotes
by itself (``"await_approval"`` for a significantly better challenger that meets the
constraints), ``"auto"`` promotes such a challenger.

This module needs numpy and scipy only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from tunelens.errors import InputError

__all__ = [
    "ACTIONS",
    "CLASSIFICATION_METRICS",
    "EXACT_BELOW",
    "INTERVAL_LEVEL",
    "POLICIES",
    "REGRESSION_METRICS",
    "TASKS",
    "Comparison",
    "Decision",
    "compare",
    "decide",
    "delong_paired",
    "mcnemar_p",
]

FloatArray = NDArray[np.float64]

#: Metrics per task; the first is the default.
CLASSIFICATION_METRICS: tuple[str, ...] = ("accuracy", "roc_auc", "log_loss")
REGRESSION_METRICS: tuple[str, ...] = ("mse", "mae")
TASKS: tuple[str, ...] = ("auto", "classification", "regression")
POLICIES: tuple[str, ...] = ("manual", "auto")
ACTIONS: tuple[str, ...] = ("promote", "await_approval", "keep_champion")
#: McNemar uses the exact binomial p-value when there are fewer discordant pairs.
EXACT_BELOW = 25
#: Level of the bootstrap interval of the difference.
INTERVAL_LEVEL = 0.95

_LOSSES = frozenset({"log_loss", "mse", "mae"})
_SCORE_METRICS = frozenset({"roc_auc", "log_loss"})
_TEST_NAMES = {
    "mcnemar_exact": "exact McNemar",
    "mcnemar_chi2": "McNemar",
    "delong": "DeLong",
    "bootstrap": "bootstrap",
    "wilcoxon": "Wilcoxon",
}
# Bootstrap index chunks hold at most this many indices (16 MiB of int64).
_CHUNK = 1 << 21


@dataclass(frozen=True)
class Comparison:
    """Outcome of :func:`compare`.

    Attributes:
        task: ``"classification"`` or ``"regression"``.
        metric: the metric compared.
        n: rows compared.
        champion: the champion's metric value on those rows.
        challenger: the challenger's metric value.
        difference: challenger minus champion, oriented so that positive is better (the
            accuracy or AUC gain, the loss reduction).
        interval: the 95 % paired bootstrap interval of ``difference``.
        p_value: two-sided p-value of the deciding test.
        test: the deciding test: ``"mcnemar_exact"``, ``"mcnemar_chi2"``, ``"delong"``,
            ``"bootstrap"`` or ``"wilcoxon"``.
        statistic: that test's statistic (McNemar: the smaller discordant count when
            exact, the chi-square otherwise; DeLong: z, positive when the challenger's
            AUC is larger; Wilcoxon: scipy's statistic; bootstrap: the difference).
        significant: ``p_value < alpha`` and ``difference > 0``.
        alpha: the significance level used.
        discordant: McNemar only: ``(b, c)``, rows only the champion gets right and rows
            only the challenger gets right; ``None`` otherwise.
        other_tests: p-values of the tests reported beside the deciding one:
            ``"bootstrap"`` always (for ``log_loss`` it is also the deciding one) and
            ``"ttest_rel"`` (the paired t-test) for regression.
        n_boot: bootstrap replicates.
        seed: seed of the bootstrap.
    """

    task: str
    metric: str
    n: int
    champion: float
    challenger: float
    difference: float
    interval: tuple[float, float]
    p_value: float
    test: str
    statistic: float
    significant: bool
    alpha: float
    discordant: tuple[int, int] | None = None
    other_tests: dict[str, float] = field(default_factory=dict)
    n_boot: int = 2000
    seed: int = 0

    @property
    def verdict(self) -> Literal["better", "worse", "no_difference"]:
        """``"better"`` when significant, ``"worse"`` when significantly worse."""
        if self.significant:
            return "better"
        if self.p_value < self.alpha and self.difference < 0:
            return "worse"
        return "no_difference"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (non-finite floats become ``None``)."""
        out: dict[str, Any] = {
            "task": self.task,
            "metric": self.metric,
            "n": self.n,
            "champion": _finite(self.champion),
            "challenger": _finite(self.challenger),
            "difference": _finite(self.difference),
            "interval": [_finite(self.interval[0]), _finite(self.interval[1])],
            "interval_level": INTERVAL_LEVEL,
            "p_value": _finite(self.p_value),
            "test": self.test,
            "statistic": _finite(self.statistic),
            "significant": bool(self.significant),
            "verdict": self.verdict,
            "alpha": self.alpha,
            "discordant": None
            if self.discordant is None
            else {"champion_only": self.discordant[0], "challenger_only": self.discordant[1]},
            "other_tests": {k: _finite(v) for k, v in self.other_tests.items()},
            "n_boot": self.n_boot,
            "seed": self.seed,
        }
        return out

    def summary(self) -> str:
        """One plain sentence with the numbers.

        The change in brackets is the metric's own change (challenger minus champion),
        so a loss that went down reads negative.
        """
        head = {
            "better": "challenger is better",
            "worse": "challenger is worse",
            "no_difference": "no significant difference",
        }[self.verdict]
        sign = -1.0 if self.metric in _LOSSES else 1.0
        change = sign * self.difference
        lo, hi = sorted((sign * self.interval[0], sign * self.interval[1]))
        fmt = _fmt_fn(self.metric)
        return (
            f"{head}: {self.metric} {fmt(self.challenger, False)} vs "
            f"{fmt(self.champion, False)} ({fmt(change, True)}, "
            f"{round(INTERVAL_LEVEL * 100)}% CI [{fmt(lo, True)}, {fmt(hi, True)}]), "
            f"{_TEST_NAMES.get(self.test, self.test)} p {_fmt_p(self.p_value)} "
            f"on {self.n:,} rows"
        )


@dataclass(frozen=True)
class Decision:
    """Outcome of :func:`decide`.

    Attributes:
        action: ``"promote"``, ``"await_approval"`` or ``"keep_champion"``.
        reason: plain words naming the numbers behind the action.
        comparison: the comparison decided on.
        policy: the policy applied.
        constraints_met: whether the challenger met the constraints.
        min_gain: the smallest difference worth acting on.
    """

    action: str
    reason: str
    comparison: Comparison
    policy: str
    constraints_met: bool = True
    min_gain: float = 0.0

    @property
    def promote(self) -> bool:
        """Whether the challenger replaces the champion now."""
        return self.action == "promote"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "action": self.action,
            "reason": self.reason,
            "policy": self.policy,
            "constraints_met": bool(self.constraints_met),
            "min_gain": _finite(self.min_gain),
            "comparison": self.comparison.to_dict(),
        }


# --------------------------------------------------------------------------- helpers


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _fmt_fn(metric: str) -> Any:
    def fmt(x: float, signed: bool) -> str:
        if not math.isfinite(x):
            return str(x)
        if metric in ("accuracy", "roc_auc", "log_loss"):
            return f"{x:+.3f}" if signed else f"{x:.3f}"
        return f"{x:+.4g}" if signed else f"{x:.4g}"

    return fmt


def _fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return "= n/a"
    if p < 1e-4:
        return "< 0.0001"
    return f"= {p:.2g}"


def _as_1d(values: ArrayLike, name: str) -> NDArray[Any]:
    try:
        a = np.asarray(values)
    except Exception as exc:  # ragged nested sequences and the like
        raise InputError(name, f"cannot be read as an array ({exc})", "pass a 1-D array") from exc
    if a.ndim != 1:
        raise InputError(
            name,
            f"must be one-dimensional, got shape {a.shape}",
            "pass one value per row (for scores: the probability of the positive class)",
        )
    if a.shape[0] == 0:
        raise InputError(name, "is empty", "pass at least one held-out row")
    if a.dtype.kind == "c":
        raise InputError(name, "holds complex numbers", "pass real labels or values")
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(
                name,
                f"holds {int(bad.sum())} NaN or infinite value(s) (first at row {i})",
                "drop or fill those rows in every array before comparing",
            )
    elif a.dtype.kind == "O":
        for i, v in enumerate(a.tolist()):
            if v is None or (isinstance(v, float) and not math.isfinite(v)):
                raise InputError(
                    name,
                    f"holds a missing value (None or NaN) at row {i}",
                    "drop or fill those rows in every array before comparing",
                )
    return a


def _numeric(a: NDArray[Any], name: str) -> FloatArray:
    if a.dtype.kind not in "biuf":
        try:
            out = a.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise InputError(name, "must be numeric", "pass numbers") from exc
        if not np.isfinite(out).all():
            raise InputError(name, "holds NaN or infinite values", "drop or fill those rows")
        return out
    return a.astype(np.float64)


def _integer_valued(a: NDArray[Any]) -> bool:
    if a.dtype.kind in "biuOUS":
        return True
    return bool(np.all(np.equal(np.mod(a, 1), 0)))


def _check_unseen(
    pred: NDArray[Any], name: str, y: NDArray[Any], other: NDArray[Any] | None
) -> None:
    known = set(np.unique(y).tolist())
    if other is not None:
        known |= set(np.unique(other).tolist())
    unseen = [v for v in np.unique(pred).tolist() if v not in known]
    if unseen:
        shown = ", ".join(repr(v) for v in unseen[:5])
        more = f" and {len(unseen) - 5} more" if len(unseen) > 5 else ""
        raise InputError(
            name,
            f"predicts label(s) {shown}{more} seen neither in `y_true` nor in the other "
            f"model's predictions (y_true labels: {sorted(map(repr, np.unique(y).tolist()))[:10]})",
            "encode both models' predictions with the labels of `y_true`",
        )


def _boot_chunks(n: int, n_boot: int, rng: np.random.Generator) -> Iterator[NDArray[np.intp]]:
    per = max(1, _CHUNK // n)
    done = 0
    while done < n_boot:
        k = min(per, n_boot - done)
        yield rng.integers(0, n, size=(k, n))
        done += k


def _boot_mean(d: FloatArray, n_boot: int, seed: int) -> FloatArray:
    """Row-bootstrap replicates of ``mean(d)``."""
    rng = np.random.default_rng(seed)
    parts = [d[idx].mean(axis=1) for idx in _boot_chunks(d.shape[0], n_boot, rng)]
    return np.concatenate(parts)


def _boot_p(observed: float, reps: FloatArray) -> float:
    """Two-sided bootstrap p-value: share on the other side of 0, doubled, floored."""
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return math.nan
    floor = 1.0 / (reps.size + 1)
    if observed > 0:
        share = float(np.mean(reps <= 0))
    elif observed < 0:
        share = float(np.mean(reps >= 0))
    else:
        return 1.0
    return float(min(1.0, max(floor, 2.0 * share)))


def _interval(reps: FloatArray) -> tuple[float, float]:
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return (math.nan, math.nan)
    tail = (1.0 - INTERVAL_LEVEL) / 2.0
    lo, hi = np.quantile(reps, [tail, 1.0 - tail])
    return (float(lo), float(hi))


def mcnemar_p(b: int, c: int) -> tuple[float, float, str]:
    """McNemar's two-sided p-value from the discordant counts ``b`` and ``c``.

    Returns ``(statistic, p_value, test)``: exact binomial (statistic ``min(b, c)``) when
    ``b + c < EXACT_BELOW``, else the continuity-corrected chi-square
    ``(|b - c| - 1)**2 / (b + c)`` on one degree of freedom, as statsmodels' ``mcnemar``.
    """
    total = b + c
    if total < EXACT_BELOW:
        if total == 0:
            return (0.0, 1.0, "mcnemar_exact")
        k = min(b, c)
        p = min(1.0, 2.0 * float(stats.binom.cdf(k, total, 0.5)))
        return (float(k), p, "mcnemar_exact")
    chi = (abs(b - c) - 1.0) ** 2 / total
    return (chi, float(stats.chi2.sf(chi, 1)), "mcnemar_chi2")


def delong_paired(pos: NDArray[np.bool_], a: FloatArray, b: FloatArray) -> tuple[float, float]:
    """DeLong's test that two correlated ROC AUCs on the same rows are equal.

    ``pos`` marks the positive rows; ``a`` and ``b`` are the two models' scores. Returns
    ``(z, p)``, ``z > 0`` when ``b`` has the larger AUC (challenger minus champion);
    ``(0, 1)`` for equal AUCs with zero variance, ``(+-inf, 0)`` for different ones;
    ``(nan, nan)`` when a class has fewer than two rows. The statistic is
    :func:`tunelens.quality.intervals.delong_test`'s, with the sign turned.
    """
    from tunelens.quality.intervals import delong_test

    m = int(pos.sum())
    if m < 2 or pos.shape[0] - m < 2:
        return (math.nan, math.nan)
    z, p = delong_test(pos.astype(np.int8), a, b)
    return (-z if z != 0 else 0.0, p)


def _auc_rows(pos: NDArray[np.bool_], s: FloatArray) -> FloatArray:
    """AUC of each row of ``s`` (``(k, n)``) against ``pos`` (``(k, n)``); NaN for one class."""
    r = stats.rankdata(s, axis=1)
    m = pos.sum(axis=1).astype(np.float64)
    neg = pos.shape[1] - m
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((r * pos).sum(axis=1) - m * (m + 1) / 2.0) / (m * neg)
    return np.asarray(np.where((m > 0) & (neg > 0), auc, np.nan), dtype=np.float64)


class _WeightedAUC:
    """AUC of one model's scores under row multiplicities (bootstrap counts).

    The scores are sorted once; each replicate then costs O(n): the counts of the
    positives and negatives are summed per distinct score (ties count one half).
    """

    def __init__(self, pos: NDArray[np.bool_], s: FloatArray) -> None:
        self.order = np.argsort(s, kind="stable")
        ss = s[self.order]
        self.starts = np.concatenate([[0], np.flatnonzero(np.diff(ss) != 0) + 1])
        self.pos = pos[self.order].astype(np.float64)

    def __call__(self, counts: FloatArray) -> FloatArray:
        w = counts[:, self.order]
        wp = w * self.pos
        wn = w - wp
        gp = np.add.reduceat(wp, self.starts, axis=1)
        gn = np.add.reduceat(wn, self.starts, axis=1)
        below = np.cumsum(gn, axis=1) - gn
        num = (gp * (below + 0.5 * gn)).sum(axis=1)
        den = gp.sum(axis=1) * gn.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = num / den
        return np.asarray(np.where(den > 0, auc, np.nan), dtype=np.float64)


def _boot_auc_diff(
    pos: NDArray[np.bool_], sa: FloatArray, sb: FloatArray, n_boot: int, seed: int
) -> FloatArray:
    """Row-bootstrap replicates of ``AUC(sb) - AUC(sa)`` (the same rows for both)."""
    n = pos.shape[0]
    auc_a, auc_b = _WeightedAUC(pos, sa), _WeightedAUC(pos, sb)
    rng = np.random.default_rng(seed)
    parts = []
    for idx in _boot_chunks(n, n_boot, rng):
        k = idx.shape[0]
        flat = (idx + n * np.arange(k)[:, None]).ravel()
        counts = np.bincount(flat, minlength=k * n).reshape(k, n).astype(np.float64)
        parts.append(auc_b(counts) - auc_a(counts))
    return np.concatenate(parts)


# --------------------------------------------------------------------------- compare


def _resolve_task(task: str, metric: str | None, arrays: list[NDArray[Any]]) -> tuple[str, str]:
    if not isinstance(task, str) or task not in TASKS:
        raise InputError("task", f"unknown task {task!r}", f"use one of {', '.join(TASKS)}")
    if metric is not None and (
        not isinstance(metric, str) or metric not in CLASSIFICATION_METRICS + REGRESSION_METRICS
    ):
        raise InputError(
            "metric",
            f"unknown metric {metric!r}",
            f"use one of {', '.join(CLASSIFICATION_METRICS + REGRESSION_METRICS)}",
        )
    if task == "auto":
        if metric is not None:
            task = "classification" if metric in CLASSIFICATION_METRICS else "regression"
        else:
            task = "classification" if all(_integer_valued(a) for a in arrays) else "regression"
    allowed = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    if metric is None:
        metric = allowed[0]
    if metric not in allowed:
        raise InputError(
            "metric",
            f"{metric!r} is not a {task} metric",
            f"use one of {', '.join(allowed)} or pass the matching `task`",
        )
    return task, metric


def compare(
    y_true: ArrayLike,
    champion_pred: ArrayLike | None,
    challenger_pred: ArrayLike | None,
    *,
    task: str = "auto",
    champion_score: ArrayLike | None = None,
    challenger_score: ArrayLike | None = None,
    metric: str | None = None,
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Test a challenger against the champion on the same held-out rows.

    Args:
        y_true: true labels or values of the held-out rows.
        champion_pred: the champion's predicted labels (classification) or values
            (regression); may be ``None`` for ``roc_auc`` / ``log_loss``.
        challenger_pred: the challenger's, same rows in the same order.
        task: ``"classification"``, ``"regression"`` or ``"auto"``: from ``metric`` when
            given, else classification when every array holds labels (booleans, strings,
            integers or integer-valued floats, as scikit-learn's ``type_of_target``) and
            regression otherwise; pass ``task="regression"`` for integer targets.
        champion_score: binary classification: the champion's probability of the positive
            class (the larger label of ``y_true``), needed for ``roc_auc`` / ``log_loss``.
        challenger_score: the challenger's.
        metric: ``"accuracy"`` (classification default), ``"roc_auc"``, ``"log_loss"``,
            ``"mse"`` (regression default) or ``"mae"``.
        alpha: significance level in (0, 1).
        n_boot: bootstrap replicates (>= 1).
        seed: seed of the bootstrap.

    Cost: McNemar's bootstrap is a multinomial draw of the three kinds of rows
    (negligible whatever ``n``); the other bootstraps draw ``n_boot * n`` row indices
    in bounded chunks (regression at 2,000 rows: tens of milliseconds; ``roc_auc`` sorts
    each model's scores once and costs O(n) per replicate: about 0.2 s at 2,000 rows,
    half a minute at 200,000 rows with the default ``n_boot``).

    Returns:
        A :class:`Comparison`.

    Raises:
        InputError: naming the field: empty or non-1-D arrays, different lengths, NaN or
            infinite values, a model predicting labels seen nowhere else, missing or
            invalid scores, an unknown task or metric, ``alpha`` outside (0, 1), a bad
            ``n_boot``.

    Example:
        >>> import numpy as np
        >>> y = np.array([0, 1] * 50)
        >>> champ = y.copy(); champ[:30] = 1 - champ[:30]
        >>> chal = y.copy(); chal[:5] = 1 - chal[:5]
        >>> c = compare(y, champ, chal)
        >>> c.test, c.discordant, c.significant
        ('mcnemar_chi2', (0, 25), True)
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha < 1.0:
        raise InputError("alpha", f"must lie strictly between 0 and 1, got {alpha!r}", "use 0.05")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise InputError("n_boot", f"must be a positive integer, got {n_boot!r}", "use 2000")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError("seed", f"must be an integer, got {seed!r}", "use 0")
    alpha, n_boot, seed = float(alpha), int(n_boot), int(seed)

    y = _as_1d(y_true, "y_true")
    named: dict[str, NDArray[Any]] = {}
    for name, value in (
        ("champion_pred", champion_pred),
        ("challenger_pred", challenger_pred),
        ("champion_score", champion_score),
        ("challenger_score", challenger_score),
    ):
        if value is not None:
            named[name] = _as_1d(value, name)
    for name, arr in named.items():
        if arr.shape[0] != y.shape[0]:
            raise InputError(
                name,
                f"has {arr.shape[0]} rows but `y_true` has {y.shape[0]}",
                "pass both models' outputs for the same held-out rows, in the same order",
            )
    preds = [named[k] for k in ("champion_pred", "challenger_pred") if k in named]
    task, metric = _resolve_task(task, metric, [y, *preds])

    if metric in _SCORE_METRICS:
        return _compare_scores(y, named, metric, alpha, n_boot, seed)
    for name in ("champion_pred", "challenger_pred"):
        if name not in named:
            raise InputError(name, f"is required for metric {metric!r}", "pass the predictions")
    if task == "classification":
        return _compare_accuracy(
            y, named["champion_pred"], named["challenger_pred"], alpha, n_boot, seed
        )
    return _compare_regression(
        y, named["champion_pred"], named["challenger_pred"], metric, alpha, n_boot, seed
    )


def _compare_accuracy(
    y: NDArray[Any],
    champ: NDArray[Any],
    chal: NDArray[Any],
    alpha: float,
    n_boot: int,
    seed: int,
) -> Comparison:
    _check_unseen(champ, "champion_pred", y, chal)
    _check_unseen(chal, "challenger_pred", y, champ)
    try:
        ok_a = np.asarray(champ == y, dtype=np.bool_)
        ok_b = np.asarray(chal == y, dtype=np.bool_)
    except (TypeError, ValueError) as exc:  # pragma: no cover - numpy returns arrays
        raise InputError("y_true", "cannot be compared with the predictions", "") from exc
    n = y.shape[0]
    b = int(np.sum(ok_a & ~ok_b))
    c = int(np.sum(~ok_a & ok_b))
    acc_a = float(ok_a.mean())
    acc_b = float(ok_b.mean())
    stat, p, test = mcnemar_p(b, c)
    # Row bootstrap of mean(ok_b - ok_a): only the counts of the three kinds of rows
    # matter, so a multinomial draw of (b, c, rest) is exactly the row resample.
    rng = np.random.default_rng(seed)
    probs = np.array([b / n, c / n, 0.0])
    probs[2] = max(0.0, 1.0 - probs[0] - probs[1])
    counts = rng.multinomial(n, probs / probs.sum(), size=n_boot)
    reps = (counts[:, 1] - counts[:, 0]) / n
    diff = acc_b - acc_a
    return Comparison(
        task="classification",
        metric="accuracy",
        n=n,
        champion=acc_a,
        challenger=acc_b,
        difference=diff,
        interval=_interval(reps),
        p_value=p,
        test=test,
        statistic=stat,
        significant=bool(p < alpha and diff > 0),
        alpha=alpha,
        discordant=(b, c),
        other_tests={"bootstrap": _boot_p(diff, reps)},
        n_boot=n_boot,
        seed=seed,
    )


def _compare_scores(
    y: NDArray[Any],
    named: dict[str, NDArray[Any]],
    metric: str,
    alpha: float,
    n_boot: int,
    seed: int,
) -> Comparison:
    for name in ("champion_score", "challenger_score"):
        if name not in named:
            raise InputError(
                name,
                f"is required for metric {metric!r}",
                "pass each model's probability of the positive class (the larger label)",
            )
    labels = np.unique(y)
    if labels.size != 2:
        raise InputError(
            "y_true",
            f"must hold exactly two classes for {metric!r}, got {labels.size}",
            "compare on rows with both classes, or use metric='accuracy'",
        )
    pos = np.asarray(y == labels[-1], dtype=np.bool_)
    if "champion_pred" in named and "challenger_pred" in named:
        _check_unseen(named["champion_pred"], "champion_pred", y, named["challenger_pred"])
        _check_unseen(named["challenger_pred"], "challenger_pred", y, named["champion_pred"])
    sa = _numeric(named["champion_score"], "champion_score")
    sb = _numeric(named["challenger_score"], "challenger_score")
    n = y.shape[0]
    other: dict[str, float] = {}
    if metric == "log_loss":
        for name, s in (("champion_score", sa), ("challenger_score", sb)):
            if s.min() < 0.0 or s.max() > 1.0:
                raise InputError(
                    name,
                    f"must be probabilities in [0, 1] for log_loss, got [{s.min():g}, {s.max():g}]",
                    "pass the probability of the positive class",
                )
        eps = float(np.finfo(np.float64).eps)
        la = -np.log(np.clip(np.where(pos, sa, 1.0 - sa), eps, 1.0))
        lb = -np.log(np.clip(np.where(pos, sb, 1.0 - sb), eps, 1.0))
        value_a, value_b = float(la.mean()), float(lb.mean())
        diff = value_a - value_b
        reps = _boot_mean(la - lb, n_boot, seed)
        p = _boot_p(diff, reps)
        stat, test = diff, "bootstrap"
    else:
        if int(pos.sum()) < 2 or int((~pos).sum()) < 2:
            raise InputError(
                "y_true",
                "needs at least two rows of each class for DeLong's test",
                "compare on more held-out rows",
            )
        auc = _auc_rows(np.stack([pos, pos]), np.stack([sa, sb]))
        value_a, value_b = float(auc[0]), float(auc[1])
        diff = value_b - value_a
        reps = _boot_auc_diff(pos, sa, sb, n_boot, seed)
        stat, p = delong_paired(pos, sa, sb)
        test = "delong"
        other["bootstrap"] = _boot_p(diff, reps)
    if test == "bootstrap":
        other["bootstrap"] = p
    return Comparison(
        task="classification",
        metric=metric,
        n=n,
        champion=value_a,
        challenger=value_b,
        difference=diff,
        interval=_interval(reps),
        p_value=p,
        test=test,
        statistic=stat,
        significant=bool(p < alpha and diff > 0),
        alpha=alpha,
        other_tests=other,
        n_boot=n_boot,
        seed=seed,
    )


def _compare_regression(
    y: NDArray[Any],
    champ: NDArray[Any],
    chal: NDArray[Any],
    metric: str,
    alpha: float,
    n_boot: int,
    seed: int,
) -> Comparison:
    t = _numeric(y, "y_true")
    a = _numeric(champ, "champion_pred")
    b = _numeric(chal, "challenger_pred")
    if metric == "mse":
        la, lb = (a - t) ** 2, (b - t) ** 2
    else:
        la, lb = np.abs(a - t), np.abs(b - t)
    d = la - lb  # positive: the challenger's loss is smaller
    diff = float(d.mean())
    if not np.any(d != 0):
        stat, p = 0.0, 1.0
        p_t = 1.0
    else:
        w = stats.wilcoxon(la, lb)
        stat, p = float(w.statistic), float(w.pvalue)
        # A constant non-zero difference (up to rounding): t is infinite.
        constant = float(np.ptp(d)) <= 1e-12 * float(np.max(np.abs(d)))
        p_t = 0.0 if constant else float(stats.ttest_rel(la, lb).pvalue)
    reps = _boot_mean(d, n_boot, seed)
    return Comparison(
        task="regression",
        metric=metric,
        n=t.shape[0],
        champion=float(la.mean()),
        challenger=float(lb.mean()),
        difference=diff,
        interval=_interval(reps),
        p_value=p,
        test="wilcoxon",
        statistic=stat,
        significant=bool(p < alpha and diff > 0),
        alpha=alpha,
        other_tests={"ttest_rel": p_t, "bootstrap": _boot_p(diff, reps)},
        n_boot=n_boot,
        seed=seed,
    )


# --------------------------------------------------------------------------- decide


def decide(
    comparison: Comparison,
    *,
    policy: str = "manual",
    constraints_met: bool = True,
    min_gain: float = 0.0,
) -> Decision:
    """Decide what to do with a challenger.

    ``"manual"`` never promotes by itself: ``"await_approval"`` when the challenger is
    significantly better by more than ``min_gain`` and meets the constraints, else
    ``"keep_champion"``. ``"auto"``: ``"promote"`` under the same conditions, else
    ``"keep_champion"``.

    Args:
        comparison: from :func:`compare`.
        policy: ``"manual"`` or ``"auto"``.
        constraints_met: whether the challenger meets the deployment constraints
            (latency, size, a metric floor...), measured elsewhere.
        min_gain: the smallest ``difference`` (metric units, positive is better) worth
            acting on, >= 0.

    Raises:
        InputError: an unknown ``policy`` or a negative or non-finite ``min_gain``.
    """
    if not isinstance(policy, str) or policy not in POLICIES:
        raise InputError(
            "policy", f"unknown policy {policy!r}", f"use one of {', '.join(POLICIES)}"
        )
    if not isinstance(comparison, Comparison):
        raise InputError(
            "comparison",
            f"must be a Comparison, got {type(comparison).__name__}",
            "pass the result of compare()",
        )
    if (
        isinstance(min_gain, bool)
        or not isinstance(min_gain, (int, float))
        or not math.isfinite(min_gain)
        or min_gain < 0
    ):
        raise InputError("min_gain", f"must be a finite number >= 0, got {min_gain!r}", "use 0")
    c = comparison
    fmt = _fmt_fn(c.metric)
    what = (
        f"{c.metric} {fmt(c.challenger, False)} vs {fmt(c.champion, False)}, "
        f"{'gain' if c.metric not in _LOSSES else 'reduction'} {fmt(c.difference, True)} "
        f"({round(INTERVAL_LEVEL * 100)}% CI [{fmt(c.interval[0], True)}, "
        f"{fmt(c.interval[1], True)}]), {_TEST_NAMES.get(c.test, c.test)} "
        f"p {_fmt_p(c.p_value)} on {c.n:,} rows"
    )
    action = "keep_champion"
    if not c.significant:
        if c.verdict == "worse":
            reason = f"the challenger is significantly worse: {what}"
        else:
            reason = f"no significant improvement at alpha {c.alpha:g}: {what}"
    elif c.difference <= min_gain:
        reason = (
            f"the challenger is significantly better but its gain {fmt(c.difference, True)} "
            f"is not more than min_gain {min_gain:g}: {what}"
        )
    elif not constraints_met:
        reason = f"the challenger is significantly better but misses the constraints: {what}"
    elif policy == "auto":
        action = "promote"
        reason = f"the challenger is significantly better and meets the constraints: {what}"
    else:
        action = "await_approval"
        reason = (
            "the challenger is significantly better and meets the constraints; policy "
            f"'manual' waits for a person to approve: {what}"
        )
    return Decision(
        action=action,
        reason=reason,
        comparison=c,
        policy=policy,
        constraints_met=bool(constraints_met),
        min_gain=float(min_gain),
    )
