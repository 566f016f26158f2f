"""Sensitivity analysis of a trained model: what it leans on and which rows it fights.

:func:`sensitivity` takes a scikit-learn estimator, a plain predict function or a
PyTorch ``nn.Module`` with labelled data and returns a :class:`Sensitivity`:

- **permutation importance** of every feature for the chosen metric: the drop of the
  score when the feature's column is shuffled, with mean, standard deviation and a 95 %
  t-interval over ``n_repeats`` shuffles. For scikit-learn estimators this *is*
  ``sklearn.inspection.permutation_importance`` (same scorer, ``random_state=seed``);
  for predict functions and torch modules our own loop draws the shuffles exactly as
  scikit-learn does (one seed drawn from ``RandomState(seed)``, then one fresh
  ``RandomState`` per column shuffling an index in place, cumulatively), so both paths
  agree to rounding on the same model;
- **perturbation sensitivity**: Gaussian noise of ``noise`` x the feature's standard
  deviation is added to one numeric feature at a time; the mean absolute change of the
  output (probability of the predicted class, or the regression output) divided by
  ``noise`` is the change per standard deviation of that feature;
- **gradient saliency** for torch models: mean ``|d output / d input|`` per feature
  (output: the logit of the predicted class, or the regression output);
- **rows**: per-row loss (log loss with probabilities, 0/1 loss without, squared error
  for regression) and the ``top_rows`` worst; likely **label errors** in the style of
  confident learning (Northcutt et al. 2021, cleanlab's ``find_label_issues``): the
  threshold of class ``k`` is the mean predicted probability of ``k`` among rows
  labelled ``k``; a row is suspect when its given label's probability is below that
  label's threshold while another class is above its own threshold, ranked by the
  margin between the two. Use held-out (or cross-validated) predictions: a model
  that memorised its training labels cannot flag them.

Example:
    >>> import numpy as np
    >>> from sklearn.linear_model import LinearRegression
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 3))
    >>> y = 2 * X[:, 1] + 0.1 * rng.normal(size=300)
    >>> s = sensitivity(LinearRegression().fit(X, y), X, y, n_repeats=3)
    >>> s.importances.index[0]
    'x1'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from tunelens.errors import InputError
from tunelens.findings import Finding, rank

__all__ = ["METRICS", "Sensitivity", "sensitivity"]

FloatArray = npt.NDArray[np.float64]
Task = Literal["auto", "classification", "regression"]

#: Metric name -> (scikit-learn scoring name, sign, needs probabilities, task).
#: Scores are "greater is better": losses enter negated, as scikit-learn's ``neg_*``.
METRICS: dict[str, tuple[str, int, bool, str]] = {
    "accuracy": ("accuracy", 1, False, "classification"),
    "roc_auc": ("roc_auc", 1, True, "classification"),
    "log_loss": ("neg_log_loss", -1, True, "classification"),
    "r2": ("r2", 1, False, "regression"),
    "mae": ("neg_mean_absolute_error", -1, False, "regression"),
    "mse": ("neg_mean_squared_error", -1, False, "regression"),
    "rmse": ("neg_root_mean_squared_error", -1, False, "regression"),
}

_DRIFT_ACTION = "retrain on recent data or reduce reliance (regularise, drop/replace the feature)"
_LABEL_ACTION = "review and relabel these rows"
_EPS = 1e-15


@dataclass(frozen=True)
class Sensitivity:
    """What a model leans on, and the rows it gets most wrong.

    Attributes:
        metric: the metric the importances are measured with (a score: higher is
            better; losses are reported as the increase of the loss).
        importances: one row per feature, ranked: ``mean`` (drop of the score when the
            feature is shuffled), ``std`` (over repeats, ``ddof=0`` as scikit-learn),
            ``lo``/``hi`` (95 % t-interval of the mean) and ``rank``.
        perturbation: one row per numeric feature, ranked: ``change`` (mean absolute
            change of the output under noise of ``noise`` x the feature's std) and
            ``per_unit`` (``change / noise``: per standard deviation of the feature).
        saliency: per-feature mean absolute gradient (torch models), else None.
        worst_rows: the ``top_rows`` rows with the highest loss.
        label_errors: likely mislabelled rows, most confident first (classification
            with probabilities; empty otherwise).
        findings: ranked :class:`~tunelens.findings.Finding` list.
    """

    metric: str
    task: str
    n_rows: int
    importances: pd.DataFrame
    perturbation: pd.DataFrame
    saliency: pd.DataFrame | None
    worst_rows: pd.DataFrame
    label_errors: pd.DataFrame
    findings: list[Finding] = field(default_factory=list)

    def ranking(self) -> list[str]:
        """Feature names by permutation importance, most important first."""
        return [str(name) for name in self.importances.index]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary (NaN and infinities become None)."""
        return {
            "metric": self.metric,
            "task": self.task,
            "n_rows": self.n_rows,
            "importances": _frame_records(self.importances, "feature"),
            "perturbation": _frame_records(self.perturbation, "feature"),
            "saliency": None if self.saliency is None else _frame_records(self.saliency, "feature"),
            "worst_rows": _frame_records(self.worst_rows, None),
            "label_errors": _frame_records(self.label_errors, None),
            "findings": [f.to_dict() for f in self.findings],
        }


# --------------------------------------------------------------------------- model


class _Model:
    """A uniform view of an estimator, a predict function or a torch module."""

    def __init__(
        self,
        raw: Any,
        task: str,
        classes: np.ndarray[Any, Any] | None,
        proba: Callable[[Any], FloatArray] | None,
        predict: Callable[[Any], np.ndarray[Any, Any]],
        torch_module: Any = None,
        sklearn: bool = False,
    ) -> None:
        self.raw = raw
        self.task = task
        self.classes = classes
        self.proba = proba
        self.predict = predict
        self.torch_module = torch_module
        self.sklearn = sklearn

    def output(self, X: Any) -> tuple[np.ndarray[Any, Any], FloatArray | None]:
        """Predicted labels (or values) and probabilities (or None)."""
        if self.proba is not None:
            p = self.proba(X)
            assert self.classes is not None
            return self.classes[np.argmax(p, axis=1)], p
        return np.asarray(self.predict(X)), None


def _is_torch_module(obj: Any) -> bool:
    return any(
        c.__name__ == "Module" and c.__module__.startswith("torch.nn") for c in type(obj).__mro__
    )


def _is_sklearn_estimator(obj: Any) -> bool:
    return hasattr(obj, "fit") and hasattr(obj, "predict") and hasattr(obj, "get_params")


def _guess_task(y: np.ndarray[Any, Any]) -> str:
    if y.dtype.kind in "biuOUSb":
        if y.dtype.kind in "iu" and len(np.unique(y)) > max(20, int(0.5 * len(y))):
            return "regression"
        return "classification"
    return "regression"


def _as_proba(out: np.ndarray[Any, Any], n_classes: int, *, logits: bool) -> FloatArray:
    a = np.asarray(out, dtype=np.float64)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim == 1:
        p1 = 1.0 / (1.0 + np.exp(-a)) if logits else a
        return np.column_stack([1.0 - p1, p1])
    if logits:
        z = a - a.max(axis=1, keepdims=True)
        e = np.exp(z)
        return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)
    return a


def _wrap(model: Any, X: Any, y: np.ndarray[Any, Any], task: Task) -> _Model:
    if _is_torch_module(model):
        return _wrap_torch(model, X, y, task)
    if _is_sklearn_estimator(model):
        from sklearn.base import is_classifier

        est_task = "classification" if is_classifier(model) else "regression"
        if task != "auto" and task != est_task:
            raise InputError(
                "task", f"{task!r} contradicts the estimator, which is a {est_task} model"
            )
        if est_task == "classification":
            classes = np.asarray(model.classes_)
            proba = None
            if hasattr(model, "predict_proba"):

                def proba(data: Any) -> FloatArray:
                    return np.asarray(model.predict_proba(data), dtype=np.float64)

            return _Model(model, est_task, classes, proba, model.predict, sklearn=True)
        return _Model(model, est_task, None, None, model.predict, sklearn=True)
    if not callable(model):
        raise InputError(
            "model_or_predict_fn",
            f"{type(model).__name__} is neither an estimator, a callable nor a torch module",
            "pass a fitted estimator, a function X -> predictions, or an nn.Module",
        )
    probe = np.asarray(model(X))
    if probe.shape[:1] != (len(y),):
        raise InputError(
            "model_or_predict_fn",
            f"returned {probe.shape[0] if probe.ndim else 0} outputs for {len(y)} rows",
            "the function must return one prediction (or probability row) per row",
        )
    resolved = task if task != "auto" else _guess_task(y)
    if probe.ndim == 2 and probe.shape[1] > 1:
        resolved = "classification"
    if resolved == "classification":
        labels = np.unique(y)
        if probe.ndim == 2 and probe.shape[1] > 1:
            classes = labels if len(labels) == probe.shape[1] else np.arange(probe.shape[1])

            def proba_fn(data: Any) -> FloatArray:
                return np.asarray(model(data), dtype=np.float64)

            return _Model(model, "classification", classes, proba_fn, model)
        if probe.dtype.kind == "f" and not np.all(np.isin(probe, labels)):
            in_unit = bool(np.all((probe >= 0) & (probe <= 1)))
            if len(labels) > 2 or not in_unit:
                return _Model(model, "regression", None, None, model)

            # one score per row in [0, 1]: probability of the positive class
            def proba1(data: Any) -> FloatArray:
                return _as_proba(np.asarray(model(data)), 2, logits=False)

            return _Model(model, "classification", labels, proba1, model)
        return _Model(model, "classification", labels, None, model)
    return _Model(model, "regression", None, None, model)


def _wrap_torch(module: Any, X: Any, y: np.ndarray[Any, Any], task: Task) -> _Model:
    import torch

    def forward(data: Any) -> FloatArray:
        arr = _to_float(data)
        was_training = module.training
        module.eval()
        outs = []
        try:
            with torch.no_grad():
                for start in range(0, len(arr), 4096):
                    batch = torch.as_tensor(arr[start : start + 4096], dtype=torch.float32)
                    outs.append(module(batch).detach().double().cpu().numpy())
        finally:
            module.train(was_training)
        return np.concatenate(outs, axis=0) if outs else np.empty((0, 1))

    probe = forward(X[:2] if not isinstance(X, pd.DataFrame) else X.iloc[:2])
    width = 1 if probe.ndim == 1 else probe.shape[1]
    resolved = task
    if resolved == "auto":
        labels = np.unique(y)
        if width > 1 or (y.dtype.kind in "biub" and set(labels.tolist()) <= {0, 1}):
            resolved = "classification"
        else:
            resolved = "regression"
    if resolved == "classification":
        labels = np.unique(y)
        n_classes = max(width, 2)
        classes = labels if len(labels) == n_classes else np.arange(n_classes)

        def proba(data: Any) -> FloatArray:
            return _as_proba(forward(data), n_classes, logits=True)

        return _Model(module, "classification", classes, proba, proba, torch_module=module)

    def predict(data: Any) -> np.ndarray[Any, Any]:
        out = forward(data)
        return out.reshape(len(out), -1)[:, 0] if out.ndim > 1 else out

    return _Model(module, "regression", None, None, predict, torch_module=module)


# --------------------------------------------------------------------------- data


def _to_float(X: Any) -> FloatArray:
    if isinstance(X, pd.DataFrame):
        return np.asarray(X.to_numpy(dtype=np.float64), dtype=np.float64)
    return np.asarray(X, dtype=np.float64)


def _n_cols(X: Any) -> int:
    return int(X.shape[1])


def _copy(X: Any) -> Any:
    return X.copy()


def _set_col(X: Any, j: int, values: Any) -> None:
    if isinstance(X, pd.DataFrame):
        X[X.columns[j]] = values
    else:
        X[:, j] = values


def _get_col(X: Any, j: int) -> np.ndarray[Any, Any]:
    if isinstance(X, pd.DataFrame):
        return np.asarray(X.iloc[:, j].to_numpy())
    return np.asarray(X[:, j])


# --------------------------------------------------------------------------- scoring


def _score(metric: str, model: _Model, X: Any, y: np.ndarray[Any, Any]) -> float:
    from tunelens import metrics as m

    pred, proba = model.output(X)
    if metric == "accuracy":
        return float(np.mean(pred == y))
    if metric == "roc_auc":
        assert proba is not None and model.classes is not None
        if proba.shape[1] == 2:
            return float(m.roc_auc_score(y == model.classes[1], proba[:, 1]))
        return float(m.roc_auc_score(y, proba, labels=model.classes))
    if metric == "log_loss":
        assert proba is not None and model.classes is not None
        return -float(m.log_loss(y, proba, labels=model.classes))
    yt = y.astype(np.float64)
    yp = np.asarray(pred, dtype=np.float64).reshape(len(yt))
    if metric == "r2":
        return float(m.r2_score(yt, yp))
    if metric == "mae":
        return -float(m.mean_absolute_error(yt, yp))
    if metric == "mse":
        return -float(m.mean_squared_error(yt, yp))
    return -float(m.root_mean_squared_error(yt, yp))


def _own_permutation(
    model: _Model, X: Any, y: np.ndarray[Any, Any], metric: str, n_repeats: int, seed: int
) -> tuple[float, FloatArray]:
    """Shuffles drawn exactly as ``sklearn.inspection.permutation_importance``."""
    baseline = _score(metric, model, X, y)
    random_seed = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    n = len(y)
    scores = np.empty((_n_cols(X), n_repeats))
    for j in range(_n_cols(X)):
        rs = np.random.RandomState(random_seed)
        X_perm = _copy(X)
        idx = np.arange(n)
        for r in range(n_repeats):
            rs.shuffle(idx)
            col = _get_col(X_perm, j)[idx]
            _set_col(X_perm, j, col)
            scores[j, r] = _score(metric, model, X_perm, y)
    return baseline, scores


def _importances(
    model: _Model,
    X: Any,
    y: np.ndarray[Any, Any],
    metric: str,
    n_repeats: int,
    seed: int,
    names: list[str],
) -> pd.DataFrame:
    from scipy import stats

    if model.sklearn:
        from sklearn.inspection import permutation_importance

        scoring = None if metric == "auto" else METRICS[metric][0]
        if scoring == "roc_auc" and model.classes is not None and len(model.classes) > 2:
            scoring = "roc_auc_ovr"
        result = permutation_importance(
            model.raw, X, y, scoring=scoring, n_repeats=n_repeats, random_state=seed
        )
        raw = np.asarray(result.importances, dtype=np.float64)
    else:
        baseline, scores = _own_permutation(model, X, y, metric, n_repeats, seed)
        raw = baseline - scores
    mean = raw.mean(axis=1)
    std = raw.std(axis=1)
    if n_repeats > 1:
        half = stats.t.ppf(0.975, n_repeats - 1) * raw.std(axis=1, ddof=1) / math.sqrt(n_repeats)
    else:
        half = np.full(len(mean), np.nan)
    frame = pd.DataFrame(
        {"mean": mean, "std": std, "lo": mean - half, "hi": mean + half},
        index=pd.Index(names, name="feature"),
    )
    frame = frame.sort_values("mean", ascending=False, kind="stable")
    frame["rank"] = np.arange(1, len(frame) + 1)
    return frame


def _output_signal(
    model: _Model, X: Any, ref_class: np.ndarray[Any, Any] | None
) -> np.ndarray[Any, Any]:
    pred, proba = model.output(X)
    if proba is not None and ref_class is not None:
        return np.asarray(proba[np.arange(len(proba)), ref_class], dtype=np.float64)
    if model.task == "classification":
        return np.asarray(pred).astype(str).astype(object)
    return np.asarray(pred, dtype=np.float64).reshape(len(pred))


def _perturbation(
    model: _Model, X: Any, names: list[str], noise: float, n_repeats: int, seed: int
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    _, proba = model.output(X)
    ref_class = np.argmax(proba, axis=1) if proba is not None else None
    base = _output_signal(model, X, ref_class)
    rows: list[dict[str, Any]] = []
    for j, name in enumerate(names):
        col = _get_col(X, j)
        if col.dtype.kind not in "fiub":
            continue
        colf = col.astype(np.float64)
        sd = float(np.nanstd(colf))
        if not math.isfinite(sd) or sd == 0.0:
            rows.append({"feature": name, "change": 0.0, "per_unit": 0.0})
            continue
        changes = []
        for _ in range(max(1, n_repeats)):
            Xn = _copy(X)
            _set_col(Xn, j, colf + rng.normal(0.0, noise * sd, len(colf)))
            out = _output_signal(model, Xn, ref_class)
            if out.dtype == object:
                changes.append(float(np.mean(out != base)))
            else:
                changes.append(float(np.mean(np.abs(out - base))))
        change = float(np.mean(changes))
        rows.append({"feature": name, "change": change, "per_unit": change / noise})
    frame = pd.DataFrame(rows, columns=["feature", "change", "per_unit"]).set_index("feature")
    return frame.sort_values("per_unit", ascending=False, kind="stable")


def _saliency(model: _Model, X: Any, names: list[str], batch_size: int = 1024) -> pd.DataFrame:
    import torch

    module = model.torch_module
    arr = _to_float(X)
    total = np.zeros(arr.shape[1])
    was_training = module.training
    module.eval()
    try:
        for start in range(0, len(arr), batch_size):
            xb = torch.as_tensor(arr[start : start + batch_size], dtype=torch.float32)
            xb.requires_grad_(True)
            out = module(xb)
            if out.ndim == 2 and out.shape[1] > 1:
                chosen = out.gather(1, out.argmax(dim=1, keepdim=True)).sum()
            else:
                chosen = out.sum()
            (grad,) = torch.autograd.grad(chosen, xb)
            total += grad.abs().sum(dim=0).double().cpu().numpy()
    finally:
        module.train(was_training)
    mean = total / max(len(arr), 1)
    frame = pd.DataFrame({"saliency": mean}, index=pd.Index(names, name="feature"))
    return frame.sort_values("saliency", ascending=False, kind="stable")


# --------------------------------------------------------------------------- rows


def _row_frames(
    model: _Model, X: Any, y: np.ndarray[Any, Any], top_rows: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    pred, proba = model.output(X)
    n = len(y)
    index = X.index if isinstance(X, pd.DataFrame) else pd.RangeIndex(n)
    label_errors = pd.DataFrame(
        columns=["row", "index", "given", "suggested", "p_given", "p_suggested", "margin"]
    )
    if model.task == "classification":
        if proba is not None:
            assert model.classes is not None
            classes = model.classes
            pos = {c: i for i, c in enumerate(classes.tolist())}
            given_idx = np.array([pos.get(v, -1) for v in y.tolist()])
            known = given_idx >= 0
            p_given = np.where(known, proba[np.arange(n), np.maximum(given_idx, 0)], 0.0)
            loss = -np.log(np.clip(p_given, _EPS, 1.0))
            label_errors = _confident_learning(proba, given_idx, classes, index)
        else:
            p_given = np.full(n, np.nan)
            loss = (np.asarray(pred) != y).astype(np.float64)
        worst = pd.DataFrame(
            {
                "row": np.arange(n),
                "index": np.asarray(index),
                "given": y,
                "predicted": pred,
                "p_given": p_given,
                "loss": loss,
            }
        )
    else:
        yp = np.asarray(pred, dtype=np.float64).reshape(n)
        err = yp - y.astype(np.float64)
        worst = pd.DataFrame(
            {
                "row": np.arange(n),
                "index": np.asarray(index),
                "given": y,
                "predicted": yp,
                "abs_error": np.abs(err),
                "loss": err**2,
            }
        )
    worst = worst.sort_values("loss", ascending=False, kind="stable").head(top_rows)
    return worst.reset_index(drop=True), label_errors


def _confident_learning(
    proba: FloatArray, given_idx: np.ndarray[Any, Any], classes: np.ndarray[Any, Any], index: Any
) -> pd.DataFrame:
    k = proba.shape[1]
    thresholds = np.full(k, np.inf)
    for c in range(k):
        mask = given_idx == c
        if mask.any():
            thresholds[c] = float(proba[mask, c].mean())
    rows = np.flatnonzero(given_idx >= 0)
    g = given_idx[rows]
    p_g = proba[rows, g]
    above = proba[rows] >= thresholds[None, :]
    above[np.arange(len(rows)), g] = False
    candidate = np.where(above, proba[rows], -np.inf)
    other = np.argmax(candidate, axis=1)
    p_o = candidate[np.arange(len(rows)), other]
    suspect = (p_g < thresholds[g]) & np.isfinite(p_o)
    sel = rows[suspect]
    margin = p_o[suspect] - p_g[suspect]
    frame = pd.DataFrame(
        {
            "row": sel,
            "index": np.asarray(index)[sel],
            "given": classes[given_idx[sel]],
            "suggested": classes[other[suspect]],
            "p_given": p_g[suspect],
            "p_suggested": p_o[suspect],
            "margin": margin,
        }
    )
    return frame.sort_values("margin", ascending=False, kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- findings


def _findings(
    importances: pd.DataFrame,
    drifted: Sequence[str],
    label_errors: pd.DataFrame,
    n_rows: int,
    metric: str,
) -> list[Finding]:
    out: list[Finding] = []
    positive = importances["mean"].clip(lower=0.0)
    total = float(positive.sum())
    means = importances["mean"].to_numpy(dtype=np.float64)
    los = importances["lo"].to_numpy(dtype=np.float64)
    for name in drifted:
        pos = [str(v) for v in importances.index].index(name)
        mean = float(means[pos])
        lo = float(los[pos])
        place = pos + 1
        significant = lo > 0 if math.isfinite(lo) else mean > 0
        if not significant or mean <= 0:
            continue
        share = mean / total if total > 0 else 0.0
        severity: Literal["high", "medium", "low"] = (
            "high" if share >= 0.2 else "medium" if share >= 0.05 else "low"
        )
        out.append(
            Finding(
                "data_drift",
                severity,
                f"feature {name}",
                f"the model leans on {name} (importance {mean:.2f}, rank {place} of "
                f"{len(importances)}, {share:.0%} of the total, metric {metric}) that drifted "
                "in production",
                _DRIFT_ACTION,
                gain=mean,
            )
        )
    if len(label_errors):
        first = {c: label_errors[c].iloc[0] for c in label_errors.columns}
        count = len(label_errors)
        frac = count / max(n_rows, 1)
        severity = "high" if frac >= 0.02 else "medium" if frac >= 0.005 else "low"
        shown = ", ".join(str(int(r)) for r in label_errors["row"].head(10))
        out.append(
            Finding(
                "label_errors",
                severity,
                f"rows {shown}" + (" ..." if count > 10 else ""),
                f"{count} rows look mislabelled (first: row {int(first['row'])}, given "
                f"{first['given']}, model says {first['suggested']} with "
                f"p={float(first['p_suggested']):.2f}); {frac:.1%} of {n_rows} rows",
                _LABEL_ACTION,
                gain=frac,
            )
        )
    return rank(out)


# --------------------------------------------------------------------------- API


def sensitivity(
    model_or_predict_fn: Any,
    X: Any,
    y: Any,
    *,
    metric: str = "auto",
    n_repeats: int = 5,
    seed: int = 0,
    noise: float = 0.1,
    drifted: Iterable[str] | None = None,
    top_rows: int = 20,
    feature_names: Sequence[str] | None = None,
    task: Task = "auto",
) -> Sensitivity:
    """Permutation importance, perturbation sensitivity, saliency and suspicious rows.

    Args:
        model_or_predict_fn: a fitted scikit-learn estimator (``predict`` and, for
            classifiers, ``predict_proba``), a function ``X -> predictions`` (labels,
            regression values, or an ``(n, K)`` probability matrix whose columns are the
            sorted labels of ``y``), or a torch ``nn.Module`` (float tensor in; ``(n, K)``
            logits for classification, ``(n,)``/``(n, 1)`` for regression or a binary
            logit when ``y`` is 0/1).
        X: ``(n, p)`` array or DataFrame (passed to the model as given).
        y: the ``n`` labels or targets.
        metric: ``"auto"`` (the estimator's ``score``: accuracy or R^2), or one of
            :data:`METRICS`.
        n_repeats: shuffles per feature (and noise draws per feature).
        seed: seeds the shuffles (as ``random_state`` of scikit-learn) and the noise.
        noise: the noise scale as a fraction of each feature's standard deviation.
        drifted: names of features that drifted in production (e.g. from a quality
            report); a significant reliance on one becomes a ``data_drift`` finding.
        top_rows: how many of the highest-loss rows to keep.
        feature_names: names of the columns of an array ``X`` (default ``x0, x1, ...``;
            a DataFrame's columns otherwise).
        task: ``"classification"``/``"regression"`` for predict functions and torch
            modules when the labels are ambiguous; estimators say it themselves.

    Raises:
        InputError: mismatched lengths, unknown metric or feature, bad settings.
    """
    if isinstance(X, pd.DataFrame):
        names = [str(c) for c in X.columns]
        if feature_names is not None and list(feature_names) != names:
            raise InputError("feature_names", "differs from the DataFrame's columns")
    else:
        X = np.asarray(X)
        if X.ndim != 2:
            raise InputError("X", f"must be 2-D (rows x features), got shape {X.shape}")
        names = (
            [str(c) for c in feature_names]
            if feature_names is not None
            else [f"x{j}" for j in range(X.shape[1])]
        )
    if len(names) != X.shape[1]:
        raise InputError("feature_names", f"has {len(names)} names for {X.shape[1]} columns of X")
    if len(set(names)) != len(names):
        raise InputError("feature_names", "contains duplicates")
    y_arr = np.asarray(y.to_numpy() if isinstance(y, pd.Series) else y)
    if y_arr.ndim != 1:
        raise InputError("y", f"must be 1-D, got shape {y_arr.shape}")
    if len(y_arr) != X.shape[0]:
        raise InputError("y", f"has {len(y_arr)} rows but X has {X.shape[0]}")
    if len(y_arr) < 2:
        raise InputError("X", "needs at least 2 rows")
    if metric != "auto" and metric not in METRICS:
        raise InputError("metric", f"unknown metric {metric!r}", f"use one of {sorted(METRICS)}")
    if not isinstance(n_repeats, int) or n_repeats < 1:
        raise InputError("n_repeats", f"must be a positive integer, got {n_repeats!r}")
    if not (isinstance(noise, (int, float)) and noise > 0 and math.isfinite(noise)):
        raise InputError("noise", f"must be a positive number, got {noise!r}")
    if task not in ("auto", "classification", "regression"):
        raise InputError("task", f"unknown task {task!r}")
    drifted_list = [str(d) for d in drifted] if drifted is not None else []
    unknown = [d for d in drifted_list if d not in names]
    if unknown:
        raise InputError("drifted", f"unknown features {unknown}", f"use names among {names}")

    model = _wrap(model_or_predict_fn, X, y_arr, task)
    resolved = metric
    if metric == "auto":
        resolved = "accuracy" if model.task == "classification" else "r2"
    if METRICS[resolved][3] != model.task:
        raise InputError("metric", f"{resolved!r} does not fit a {model.task} model")
    if METRICS[resolved][2] and model.proba is None:
        raise InputError("metric", f"{resolved!r} needs probabilities, the model gives labels only")

    imp = _importances(
        model, X, y_arr, metric if model.sklearn else resolved, n_repeats, seed, names
    )
    pert = _perturbation(model, X, names, float(noise), n_repeats, seed)
    sal = _saliency(model, X, names) if model.torch_module is not None else None
    worst, label_errors = _row_frames(model, X, y_arr, top_rows)
    findings = _findings(imp, drifted_list, label_errors, len(y_arr), resolved)
    return Sensitivity(
        metric=resolved,
        task=model.task,
        n_rows=len(y_arr),
        importances=imp,
        perturbation=pert,
        saliency=sal,
        worst_rows=worst,
        label_errors=label_errors,
        findings=findings,
    )


def _json_value(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    return str(v)


def _frame_records(frame: pd.DataFrame, index_name: str | None) -> list[dict[str, Any]]:
    data = frame.reset_index() if index_name is not None else frame
    return [
        {str(k): _json_value(v) for k, v in rec.items()} for rec in data.to_dict(orient="records")
    ]
