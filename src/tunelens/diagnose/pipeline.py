"""Runtime profile of a fitted scikit-learn pipeline: the time of each step, and why.

`profile_pipeline` measures, for each batch size of a sweep:

- per step: the time of its ``transform`` (the final estimator's ``predict``,
  ``predict_proba``, ``decision_function`` or ``transform``: ``method``), median and
  inter-quartile range over repeats, in ms and as a share of the end-to-end time. Each
  step is timed on the output of the step before it, computed once. The transformers
  inside a ``ColumnTransformer``, a ``FeatureUnion`` or a nested ``Pipeline`` get rows of
  their own (``depth`` 1 and more, ``parent`` set); the composite's row holds their time
  plus its own (column selection, stacking);
- the end-to-end time of ``getattr(pipeline, method)(X)``, measured directly, and an
  explicit ``(unattributed)`` row: the difference between it and the top-level steps, the
  Python glue of the pipeline (input validation, conversions, routing). The top-level
  steps and that row add up to the end-to-end time;
- throughput per batch size and the batch size past which it grows less than 10%;
- `Finding`s: a step that holds most of the latency at the smallest batch, glue that
  dominates, per-call overhead that batching would amortise, a missed latency objective.

A bare estimator is profiled as a one-step pipeline. Batches of ``b`` rows are the rows
of ``X`` repeated in order. scikit-learn is imported when the function is called.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tunelens.diagnose.runtime import _json_safe, _pct, _severity, _stats
from tunelens.errors import InputError
from tunelens.findings import Finding

__all__ = ["METHODS", "UNATTRIBUTED", "PipelineProfile", "profile_pipeline"]

#: The methods of the final estimator that can be profiled.
METHODS: tuple[str, ...] = ("predict", "predict_proba", "decision_function", "transform")
#: The batch sweep "saturates" where the next batch size gains less than this.
KNEE_GAIN = 0.10
#: A step "holds most of the latency" from this share of the end-to-end time.
DOMINANT_SHARE = 0.40
#: Glue between steps is worth a finding from this share.
GLUE_SHARE = 0.30
#: Throughput must grow at least this much with batching for a ``batching`` finding.
BATCHING_RATIO = 1.5
UNATTRIBUTED = "(unattributed)"
_WARMUP = 2

#: Remedies for steps that dominate latency, by estimator class name.
_ACTIONS: dict[str, str] = {
    "OneHotEncoder": (
        "cache encoders or use OneHotEncoder(sparse_output=True); encode categories once "
        "upstream (integer codes) and keep the encoder out of the serving path"
    ),
    "OrdinalEncoder": "encode categories once upstream (integer codes) and cache the mapping",
    "TargetEncoder": "precompute the encoding as a lookup table outside the pipeline",
    "ColumnTransformer": (
        "pass a numpy array rather than a DataFrame, drop unused columns, or merge "
        "transformers that share columns"
    ),
    "FeatureUnion": "drop or merge branches that add little; set n_jobs=None for small batches",
    "PCA": "lower n_components, or fold the projection into the next linear step",
    "PolynomialFeatures": "lower degree or use interaction_only=True",
    "KNNImputer": "use SimpleImputer, or fewer n_neighbors",
    "IterativeImputer": "use SimpleImputer at serving time",
    "FunctionTransformer": "vectorise the function (numpy over the whole batch, no Python loop)",
    "RandomForestClassifier": (
        "fewer or shallower trees (n_estimators, max_depth); n_jobs=None for single rows"
    ),
    "RandomForestRegressor": (
        "fewer or shallower trees (n_estimators, max_depth); n_jobs=None for single rows"
    ),
    "ExtraTreesClassifier": "fewer or shallower trees (n_estimators, max_depth)",
    "ExtraTreesRegressor": "fewer or shallower trees (n_estimators, max_depth)",
    "GradientBoostingClassifier": "fewer trees (n_estimators) or HistGradientBoosting",
    "GradientBoostingRegressor": "fewer trees (n_estimators) or HistGradientBoosting",
    "HistGradientBoostingClassifier": "fewer iterations (max_iter) or shallower trees",
    "HistGradientBoostingRegressor": "fewer iterations (max_iter) or shallower trees",
    "KNeighborsClassifier": "algorithm='kd_tree' or 'ball_tree', or an approximate index",
    "KNeighborsRegressor": "algorithm='kd_tree' or 'ball_tree', or an approximate index",
    "SVC": "a linear model or a kernel approximation (Nystroem) with fewer support vectors",
    "SVR": "a linear model or a kernel approximation (Nystroem) with fewer support vectors",
    "MLPClassifier": "fewer or narrower hidden layers (tune: hidden_layer_sizes)",
    "MLPRegressor": "fewer or narrower hidden layers (tune: hidden_layer_sizes)",
}
_DEFAULT_ACTION = "make the step cheaper, or precompute its output outside the serving path"


# --------------------------------------------------------------------------- result
@dataclass(frozen=True)
class PipelineProfile:
    """What `profile_pipeline` measured.

    Attributes:
        steps: one row per step in pipeline order (children of composite steps follow
            their parent), then the ``(unattributed)`` row. Each row has ``name``
            (``outer__inner`` for children), ``type``, ``depth``, ``parent``, ``leaf``,
            ``method``, ``ms`` / ``iqr_ms`` / ``share`` at the smallest batch, and
            ``per_batch``: the same per batch size. Top-level rows (``depth`` 0) and the
            ``(unattributed)`` row add up to the end-to-end time.
        totals: ``method``, ``batch_sizes``, ``repeats``, ``rows`` (of ``X``) and
            ``per_batch``: ``end_to_end_ms`` (median and ``iqr``), ``attributed_ms``
            (top-level steps), ``unattributed_ms`` and ``unattributed_share``.
        batch_sweep: ``points`` (one per batch size: latency median, p90, IQR,
            throughput in rows per second, time per row) and ``saturates_at``.
        findings: ranked by expected saving (share of latency), largest first.
    """

    steps: list[dict[str, Any]]
    totals: dict[str, Any]
    batch_sweep: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary (non-finite numbers become ``None``)."""
        out = {
            "steps": self.steps,
            "totals": self.totals,
            "batch_sweep": self.batch_sweep,
            "findings": [f.to_dict() for f in self.findings],
        }
        safe: dict[str, Any] = _json_safe(out)
        return safe

    def to_json(self, indent: int | None = 2) -> str:
        """`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def step(self, name: str) -> dict[str, Any]:
        """The row of the step called ``name`` (``KeyError`` if there is none)."""
        for row in self.steps:
            if row["name"] == name:
                return row
        raise KeyError(name)


# --------------------------------------------------------------------------- helpers


def _time_ms(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t0) / 1e6


def _n_rows(X: Any) -> int:
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) >= 1:
        return int(shape[0])
    return len(X)


def _n_cols(X: Any) -> int | None:
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) == 2:
        return int(shape[1])
    return None


def _rows(X: Any, batch: int) -> Any:
    """``batch`` rows of ``X``: its rows repeated in order."""
    from sklearn.utils import _safe_indexing

    idx = np.arange(batch) % _n_rows(X)
    return _safe_indexing(X, idx, axis=0)


# --------------------------------------------------------------------------- validation
def _validate(
    pipeline: Any,
    X: Any,
    batch_sizes: Sequence[int],
    repeats: int,
    method: str,
    slo_ms: float | None,
) -> list[int]:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    if method not in METHODS:
        raise InputError("method", f"{method!r} is not supported", f"use one of {list(METHODS)}")
    if not hasattr(pipeline, "fit"):
        raise InputError(
            "pipeline",
            f"{type(pipeline).__name__} is not a scikit-learn estimator",
            "pass a fitted sklearn Pipeline or estimator",
        )
    if not hasattr(pipeline, method):
        raise InputError(
            "method",
            f"{type(pipeline).__name__} has no {method}()",
            "pick a method the final estimator has",
        )
    try:
        check_is_fitted(pipeline)
    except NotFittedError as exc:
        raise InputError(
            "pipeline", f"{type(pipeline).__name__} is not fitted", "call fit(X, y) first"
        ) from exc
    if isinstance(repeats, bool) or not isinstance(repeats, int | np.integer) or repeats < 1:
        raise InputError("repeats", f"must be a positive integer, got {repeats!r}")
    sizes: list[int] = []
    for b in batch_sizes:
        if isinstance(b, bool) or not isinstance(b, int | np.integer) or b < 1:
            raise InputError("batch_sizes", f"must be positive integers, got {b!r}")
        sizes.append(int(b))
    if not sizes:
        raise InputError("batch_sizes", "is empty", "give at least one batch size, e.g. (1, 32)")
    if slo_ms is not None and not (isinstance(slo_ms, int | float) and slo_ms > 0):
        raise InputError("slo_ms", f"must be a positive number of ms, got {slo_ms!r}")
    if getattr(X, "ndim", 2) != 2 and not isinstance(X, list):
        raise InputError("X", f"must be 2-D (rows x columns), got {X.ndim} dimensions")
    try:
        n = _n_rows(X)
    except TypeError as exc:
        raise InputError("X", "is not a table", "pass a 2-D array or a DataFrame") from exc
    if n == 0:
        raise InputError("X", "has no rows", "pass at least one row")
    expected = getattr(pipeline, "n_features_in_", None)
    cols = _n_cols(X)
    if expected is not None and cols is not None and cols != int(expected):
        raise InputError(
            "X",
            f"has {cols} columns but the pipeline was fitted on {int(expected)}",
            "pass the same columns as at fit time",
        )
    names = getattr(pipeline, "feature_names_in_", None)
    columns = getattr(X, "columns", None)
    if names is not None and columns is not None:
        missing = [str(c) for c in names if c not in set(columns)]
        if missing:
            raise InputError(
                "X", f"lacks columns the pipeline was fitted on: {missing[:5]}", "add them"
            )
    return sorted(set(sizes))


# --------------------------------------------------------------------------- structure
@dataclass
class _Node:
    """One timed call: a step (or a child of a composite step) on its input."""

    name: str
    estimator: Any
    method: str
    depth: int
    parent: str | None
    children: list[_Node] = field(default_factory=list)


def _top_steps(pipeline: Any, method: str) -> list[_Node]:
    from sklearn.pipeline import Pipeline

    if isinstance(pipeline, Pipeline):
        steps = list(pipeline.steps)
    else:
        steps = [(type(pipeline).__name__, pipeline)]
    nodes = []
    for i, (name, est) in enumerate(steps):
        last = i == len(steps) - 1
        nodes.append(_node(str(name), est, method if last else "transform", 0, None))
    return nodes


def _node(name: str, est: Any, method: str, depth: int, parent: str | None) -> _Node:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import FeatureUnion, Pipeline

    node = _Node(name, est, method, depth, parent)
    if method != "transform" and not isinstance(est, Pipeline):
        return node
    if isinstance(est, ColumnTransformer):
        for sub, trans, _cols in getattr(est, "transformers_", []):
            if isinstance(trans, str):  # "drop" / "passthrough"
                continue
            node.children.append(_node(f"{name}__{sub}", trans, "transform", depth + 1, name))
    elif isinstance(est, FeatureUnion):
        for sub, trans in est.transformer_list:
            if isinstance(trans, str) or trans is None:
                continue
            node.children.append(_node(f"{name}__{sub}", trans, "transform", depth + 1, name))
    elif isinstance(est, Pipeline):
        for i, (sub, trans) in enumerate(est.steps):
            if isinstance(trans, str) or trans is None:
                continue
            sub_method = method if i == len(est.steps) - 1 else "transform"
            node.children.append(_node(f"{name}__{sub}", trans, sub_method, depth + 1, name))
    return node


def _type_name(est: Any) -> str:
    if isinstance(est, str) or est is None:
        return "passthrough"
    return type(est).__name__


def _call(est: Any, method: str, X: Any) -> Any:
    if isinstance(est, str) or est is None:  # "passthrough"
        return X
    return getattr(est, method)(X)


def _child_inputs(node: _Node, X: Any) -> list[Any] | None:
    """The input of each child of a composite step, or ``None`` where it cannot be had."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import FeatureUnion, Pipeline
    from sklearn.utils import _safe_indexing

    est = node.estimator
    if isinstance(est, ColumnTransformer):
        inputs = []
        for _sub, trans, cols in est.transformers_:
            if isinstance(trans, str):
                continue
            sel = cols(X) if callable(cols) else cols
            inputs.append(_safe_indexing(X, sel, axis=1))
        return inputs
    if isinstance(est, FeatureUnion):
        return [X for _ in node.children]
    if isinstance(est, Pipeline):
        inputs = []
        current = X
        for child in node.children:
            inputs.append(current)
            if child.method == "transform":
                current = _call(child.estimator, "transform", current)
        return inputs
    return None


def _plan(nodes: list[_Node], X: Any) -> list[tuple[_Node, Callable[[], Any]]]:
    """Every node with a zero-argument call on its (precomputed) input, in order."""
    out: list[tuple[_Node, Callable[[], Any]]] = []

    def visit(node: _Node, x: Any) -> None:
        def call(est: Any = node.estimator, m: str = node.method, x: Any = x) -> Any:
            return _call(est, m, x)

        out.append((node, call))
        if node.children:
            try:
                inputs = _child_inputs(node, x)
            except Exception:  # column selection we cannot replay: keep the parent only
                inputs = None
            if inputs is not None:
                for child, cx in zip(node.children, inputs, strict=True):
                    visit(child, cx)

    current = X
    for node in nodes:
        visit(node, current)
        if node.method == "transform" and node is not nodes[-1]:
            current = _call(node.estimator, "transform", current)
    return out


# --------------------------------------------------------------------------- measure
def _measure(
    pipeline: Any, X: Any, nodes: list[_Node], method: str, batch: int, repeats: int
) -> tuple[list[tuple[_Node, dict[str, float]]], dict[str, float], list[float]]:
    xb = _rows(X, batch)
    plan = _plan(nodes, xb)

    def end_to_end() -> Any:
        return getattr(pipeline, method)(xb)

    for _ in range(_WARMUP):
        end_to_end()
        for _, fn in plan:
            fn()
    e2e: list[float] = []
    per: list[list[float]] = [[] for _ in plan]
    for _ in range(repeats):  # interleaved, so that drift hits all alike
        e2e.append(_time_ms(end_to_end))
        for i, (_, fn) in enumerate(plan):
            per[i].append(_time_ms(fn))
    return [(node, _stats(t)) for (node, _), t in zip(plan, per, strict=True)], _stats(e2e), e2e


def _knee(points: list[dict[str, Any]]) -> int | None:
    saturates_at = points[-1]["batch_size"] if points else None
    for here, nxt in itertools.pairwise(points):
        if nxt["throughput_per_s"] < (1 + KNEE_GAIN) * here["throughput_per_s"]:
            saturates_at = here["batch_size"]
            break
    return saturates_at


def _add_self_times(rows: dict[str, dict[str, Any]], order: list[str]) -> None:
    """``self_ms`` / ``self_share`` per batch: a composite step's time less its children's
    (column selection, stacking); a leaf's own time."""
    for name in order:
        row = rows[name]
        kids = [rows[n] for n in order if rows[n]["parent"] == name]
        for point in row["per_batch"]:
            b = point["batch_size"]
            child_ms = sum(q["ms"] for k in kids for q in k["per_batch"] if q["batch_size"] == b)
            point["self_ms"] = point["ms"] - child_ms
            point["self_share"] = (
                point["share"] * (point["self_ms"] / point["ms"]) if point["ms"] > 0 else 0.0
            )


# --------------------------------------------------------------------------- findings
def _findings(
    steps: list[dict[str, Any]],
    totals: dict[str, Any],
    sweep: dict[str, Any],
    slo_ms: float | None,
) -> list[Finding]:
    out: list[Finding] = []
    first_total = totals["per_batch"][0]
    batch = first_total["batch_size"]
    points = sweep["points"]

    # the step whose own time holds most of the latency at the smallest batch
    leaves = [r for r in steps if r["name"] != UNATTRIBUTED]
    if leaves:
        top = max(leaves, key=lambda r: r["self_share"])
        share = float(top["self_share"])
        if share >= DOMINANT_SHARE:
            gain = 0.5 * share
            per_row = [p["self_ms"] / p["batch_size"] for p in top["per_batch"]]
            amortised = len(per_row) >= 2 and per_row[-1] > 0 and per_row[0] / per_row[-1] >= 5
            kind = "overhead_bound" if amortised else "compute_bound"
            why = (
                f"its time per row falls {per_row[0] / per_row[-1]:.0f}x with batching, so "
                "most of it is per-call overhead"
                if amortised
                else "its time grows with the rows it gets: the work itself is the cost"
            )
            action = _ACTIONS.get(top["type"], _DEFAULT_ACTION)
            out.append(
                Finding(
                    kind,
                    _severity(gain),
                    top["name"],
                    f"`{top['name']}` ({top['type']}.{top['method']}"
                    f"{'' if top['leaf'] else ', outside its transformers'}) takes "
                    f"{_pct(share)} of latency at batch {batch} ({top['self_ms']:.3f} of "
                    f"{first_total['end_to_end_ms']:.3f} ms): {why}",
                    action,
                    gain=gain,
                )
            )

    # Python glue between the steps
    glue = float(first_total["unattributed_share"])
    if glue >= GLUE_SHARE:
        gain = 0.5 * glue
        out.append(
            Finding(
                "overhead_bound",
                _severity(gain),
                "(pipeline)",
                f"{_pct(glue)} of latency at batch {batch} "
                f"({first_total['unattributed_ms']:.3f} ms) is spent outside the steps, in "
                "the pipeline's input validation and conversions",
                "skip repeated checks with sklearn.set_config(assume_finite=True), pass a "
                "numpy array rather than a DataFrame, or call the steps directly",
                gain=gain,
            )
        )

    # per-call overhead that batching amortises
    if len(points) >= 2:
        first, best = points[0], max(points, key=lambda p: p["throughput_per_s"])
        if first["throughput_per_s"] > 0 and best["batch_size"] != first["batch_size"]:
            ratio = best["throughput_per_s"] / first["throughput_per_s"]
            if ratio >= BATCHING_RATIO:
                gain = 1.0 - 1.0 / ratio
                out.append(
                    Finding(
                        "batching",
                        _severity(gain),
                        f"batch {first['batch_size']} -> {best['batch_size']}",
                        f"per-call overhead dominates at batch {first['batch_size']}: "
                        f"throughput grows {ratio:.1f}x from batch {first['batch_size']} "
                        f"({first['throughput_per_s']:.0f} rows/s) to {best['batch_size']} "
                        f"({best['throughput_per_s']:.0f} rows/s); it saturates at batch "
                        f"{sweep.get('saturates_at')}: batch requests",
                        f"batch requests (tune: batch_size={sweep.get('saturates_at')})",
                        gain=gain,
                    )
                )

    if slo_ms is not None and points:
        first = points[0]
        if first["latency_p90_ms"] > slo_ms:
            gain = 1.0 - slo_ms / first["latency_p90_ms"]
            worst = max(leaves, key=lambda r: r["self_share"]) if leaves else None
            hint = f"; `{worst['name']}` holds {_pct(worst['self_share'])}" if worst else ""
            out.append(
                Finding(
                    "latency_slo",
                    "high",
                    f"batch {first['batch_size']}",
                    f"p90 latency {first['latency_p90_ms']:.3f} ms exceeds the "
                    f"{slo_ms:.3f} ms objective{hint}",
                    "tune(objective='latency') with the findings above as remedies",
                    gain=gain,
                )
            )
    return sorted(out, key=lambda f: -(f.gain or 0.0))


# --------------------------------------------------------------------------- profile
def profile_pipeline(
    pipeline: Any,
    X: Any,
    *,
    batch_sizes: Sequence[int] = (1, 32, 1024),
    repeats: int = 20,
    method: str = "predict",
    slo_ms: float | None = None,
) -> PipelineProfile:
    """Time each step of a fitted scikit-learn pipeline, per batch size, with findings.

    Args:
        pipeline: a fitted ``sklearn.pipeline.Pipeline`` (``ColumnTransformer``,
            ``FeatureUnion`` and nested pipelines inside are broken down), or a fitted
            bare estimator, profiled as a one-step pipeline.
        X: input rows (array, DataFrame or sparse matrix) with the columns seen at fit
            time; batches repeat its rows as needed.
        batch_sizes: the rows per call of the sweep; the smallest one is the latency
            case the findings speak about.
        repeats: timed calls per step and batch size (after two warm-up calls).
        method: the final estimator's method: ``"predict"``, ``"predict_proba"``,
            ``"decision_function"`` or ``"transform"``.
        slo_ms: a p90 latency objective at the smallest batch; a ``latency_slo``
            finding when it is missed.

    Returns:
        A `PipelineProfile`.

    Raises:
        InputError: an unfitted pipeline, ``X`` with the wrong columns or no rows, an
            unknown ``method``, non-positive ``batch_sizes`` or ``repeats``.

    Example:
        >>> from sklearn.pipeline import make_pipeline
        >>> from sklearn.preprocessing import StandardScaler
        >>> from sklearn.linear_model import LogisticRegression
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(64, 4)); y = X[:, 0] > 0
        >>> pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
        >>> prof = profile_pipeline(pipe, X, batch_sizes=(1, 32), repeats=3)
        >>> [r["name"] for r in prof.steps]
        ['standardscaler', 'logisticregression', '(unattributed)']
    """
    from sklearn.exceptions import NotFittedError

    sizes = _validate(pipeline, X, batch_sizes, repeats, method, slo_ms)
    nodes = _top_steps(pipeline, method)
    try:
        _call(pipeline, method, _rows(X, 1))
    except NotFittedError as exc:
        raise InputError(
            "pipeline", f"a step is not fitted: {exc}", "call fit(X, y) first"
        ) from exc
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise InputError(
            "X", f"{type(pipeline).__name__}.{method} fails on it: {exc}", "check its columns"
        ) from exc

    rows: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    per_batch_totals: list[dict[str, Any]] = []
    points: list[dict[str, Any]] = []
    for b in sizes:
        measured, e2e, e2e_times = _measure(pipeline, X, nodes, method, b, int(repeats))
        total_ms = e2e["median"]
        attributed = 0.0
        for node, st in measured:
            if node.name not in rows:
                order.append(node.name)
                rows[node.name] = {
                    "name": node.name,
                    "type": _type_name(node.estimator),
                    "depth": node.depth,
                    "parent": node.parent,
                    "leaf": not node.children,
                    "method": node.method,
                    "per_batch": [],
                }
            share = st["median"] / total_ms if total_ms > 0 else 0.0
            rows[node.name]["per_batch"].append(
                {"batch_size": b, "ms": st["median"], "iqr_ms": st["iqr"], "share": share}
            )
            if node.depth == 0:
                attributed += st["median"]
        unattributed = total_ms - attributed
        per_batch_totals.append(
            {
                "batch_size": b,
                "end_to_end_ms": total_ms,
                "end_to_end_iqr_ms": e2e["iqr"],
                "attributed_ms": attributed,
                "unattributed_ms": unattributed,
                "unattributed_share": unattributed / total_ms if total_ms > 0 else 0.0,
            }
        )
        points.append(
            {
                "batch_size": b,
                "latency_ms": total_ms,
                "latency_p90_ms": e2e["p90"],
                "latency_iqr_ms": e2e["iqr"],
                "throughput_per_s": b / (total_ms / 1e3) if total_ms > 0 else 0.0,
                "ms_per_row": total_ms / b,
                "samples": len(e2e_times),
            }
        )

    _add_self_times(rows, order)
    steps: list[dict[str, Any]] = []
    for name in order:
        row = rows[name]
        first = row["per_batch"][0]
        steps.append(
            {
                **row,
                "ms": first["ms"],
                "iqr_ms": first["iqr_ms"],
                "share": first["share"],
                "self_ms": first["self_ms"],
                "self_share": first["self_share"],
            }
        )
    glue_rows = [
        {
            "batch_size": t["batch_size"],
            "ms": t["unattributed_ms"],
            "iqr_ms": None,
            "share": t["unattributed_share"],
            "self_ms": t["unattributed_ms"],
            "self_share": t["unattributed_share"],
        }
        for t in per_batch_totals
    ]
    steps.append(
        {
            "name": UNATTRIBUTED,
            "type": "(glue)",
            "depth": 0,
            "parent": None,
            "leaf": True,
            "method": method,
            "per_batch": glue_rows,
            "ms": glue_rows[0]["ms"],
            "iqr_ms": None,
            "share": glue_rows[0]["share"],
            "self_ms": glue_rows[0]["ms"],
            "self_share": glue_rows[0]["share"],
        }
    )
    totals: dict[str, Any] = {
        "pipeline": type(pipeline).__name__,
        "method": method,
        "batch_sizes": sizes,
        "repeats": int(repeats),
        "rows": _n_rows(X),
        "per_batch": per_batch_totals,
    }
    sweep: dict[str, Any] = {"points": points, "saturates_at": _knee(points)}
    findings = _findings(steps, totals, sweep, slo_ms)
    return PipelineProfile(steps=steps, totals=totals, batch_sweep=sweep, findings=findings)
