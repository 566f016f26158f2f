"""Per-window metric states: updated from contiguous row slices, merged, serialised.

A `WindowAccumulator` holds every state a window needs for its task (confusion matrix,
ranking, probabilistic and calibration states, or regression sums; a latency sketch;
row, busy-time and resource sums). Its ``to_states`` output is what the store keeps
beside the values, so any longer range re-aggregates exactly by merging.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from tunelens.metrics import (
    BinaryRankingState,
    CalibrationState,
    ClassificationState,
    MulticlassRankingState,
    ProbabilisticState,
    QuantileSketch,
    RegressionState,
    UndefinedMetricWarning,
    state_from_dict,
)

__all__ = ["WindowAccumulator", "metric_columns"]

_BINARY = ("accuracy", "error_rate", "precision", "recall", "f1")
_AVERAGED = tuple(
    f"{m}_{avg}" for avg in ("macro", "micro", "weighted") for m in ("precision", "recall", "f1")
)
_PROBABILISTIC = ("roc_auc", "pr_auc", "log_loss", "brier", "ece")
#: Multiclass: one-vs-rest ROC AUC, macro and prevalence-weighted (scikit-learn's
#: ``multi_class="ovr"`` with ``average="macro"`` / ``"weighted"``).
_MULTICLASS_PROBABILISTIC = ("roc_auc", "roc_auc_weighted", "pr_auc", "log_loss", "brier", "ece")
_REGRESSION = ("mae", "rmse", "r2", "mape")
_ALWAYS = (
    "latency_p50",
    "latency_p90",
    "latency_p99",
    "latency_p999",
    "latency_mean",
    "throughput",
    "flops_per_s",
    "cpu_percent",
    "rss_bytes",
    "gpu_util_percent",
    "gpu_memory_bytes",
)
_QUANTILES = {
    "p50": "latency_p50",
    "p90": "latency_p90",
    "p99": "latency_p99",
    "p999": "latency_p999",
}
NAN = float("nan")
#: Histogram bins of the streaming ROC/PR states kept per window: a stored state is
#: 2 x bins float64 per class, so 4096 bins keep a binary window under 100 kB of JSON
#: (AUC error below ~1e-4 for scores that are not piled into a few bins).
RANKING_BINS = 4096
MULTICLASS_RANKING_BINS = 4096
#: How a window's states are laid out (ranking bins and their scale). A stored window of
#: another layout cannot merge with new ones: `Monitor.summary` recomputes it.
LAYOUT = f"ranking=streaming/mixed/{RANKING_BINS}/{MULTICLASS_RANKING_BINS}"


def metric_columns(task: str) -> list[str]:
    """Columns of the metrics table for a task, in order."""
    if task == "regression":
        labelled: tuple[str, ...] = _REGRESSION
    elif task == "multiclass":
        labelled = _BINARY + _AVERAGED + _MULTICLASS_PROBABILISTIC
    else:
        labelled = _BINARY + _PROBABILISTIC
    return ["rows", "labelled_rows", *labelled, *_ALWAYS]


def _new_counts() -> dict[str, float]:
    return {
        "rows": 0.0,
        "labelled_rows": 0.0,
        "seconds": 0.0,
        "busy_s": 0.0,
        "timed_rows": 0.0,
        "cpu_sum": 0.0,
        "cpu_n": 0.0,
        "rss_max": NAN,
        "gpu_util_sum": 0.0,
        "gpu_util_n": 0.0,
        "gpu_memory_max": NAN,
    }


def _nanmax(a: float, b: float) -> float:
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return max(a, b)


class WindowAccumulator:
    """Every state of one window, or of a merge of windows.

    Args:
        task: ``"binary"``, ``"multiclass"`` or ``"regression"``.
        n_classes: classes of a classification model.
        seconds: the window's width (throughput is rows per second of it).

    Attributes:
        mark: ``(rows, latest label seq)`` of the scan the window was computed from
            (`tunelens.store.Store.window_marks`), or None; a stored window whose mark
            no longer matches the store's is stale.
    """

    def __init__(self, task: str, n_classes: int, seconds: float) -> None:
        self.mark: tuple[int, int] | None = None
        self.layout: str | None = LAYOUT
        self.task = task
        self.n_classes = n_classes
        self.counts = _new_counts()
        self.counts["seconds"] = float(seconds)
        self.states: dict[str, Any] = {"latency": QuantileSketch(relative_accuracy=0.01)}
        if task == "regression":
            self.states["regression"] = RegressionState()
        else:
            self.states["confusion"] = ClassificationState(labels=list(range(n_classes)))
            self.states["proba"] = ProbabilisticState(n_classes=n_classes)
            self.states["calibration"] = CalibrationState(n_bins=10)
            self.states["ranking"] = (
                BinaryRankingState(mode="streaming", n_bins=RANKING_BINS)
                if task == "binary"
                else MulticlassRankingState(
                    n_classes=n_classes, mode="streaming", n_bins=MULTICLASS_RANKING_BINS
                )
            )

    def update(
        self,
        prediction: npt.NDArray[Any],
        label: npt.NDArray[Any],
        labelled: npt.NDArray[np.bool_],
        scores: npt.NDArray[np.float64] | None,
        latency_ms: npt.NDArray[np.float64],
        batch_size: npt.NDArray[Any],
    ) -> None:
        """Add one window's rows (contiguous slices of the scanned columns).

        The monitor validated every value at log time (class indices, finite values,
        scores in [0, 1] whose rows sum to 1 within its tolerance), so the metric states
        skip their own checks; only the latency sketch keeps its finiteness check, as
        an infinite latency is accepted at log time.

        Args:
            prediction: class indices or regression values.
            label: labels (class indices or values); only rows where ``labelled``.
            labelled: which rows have a label.
            scores: binary P(positive) (n,), multiclass (n, K), NaN where missing; or None.
            latency_ms: call latency, NaN where unknown.
            batch_size: rows of the call that produced each row.
        """
        n = len(prediction)
        self.counts["rows"] += n
        timed = ~np.isnan(latency_ms)
        n_timed = int(timed.sum())
        if n_timed:
            lat = latency_ms[timed] if n_timed < n else latency_ms
            self.states["latency"].update(lat)
            bs = batch_size[timed] if n_timed < n else batch_size
            self.counts["busy_s"] += float(np.sum(lat / bs)) / 1000.0
            self.counts["timed_rows"] += n_timed
        n_lab = int(labelled.sum())
        if not n_lab:
            return
        self.counts["labelled_rows"] += n_lab
        if n_lab < n:
            prediction, label = prediction[labelled], label[labelled]
            scores = None if scores is None else scores[labelled]
        if self.task == "regression":
            self.states["regression"].update(label, prediction, validate=False)
            return
        true_idx = label.astype(np.int64, copy=False)
        self.states["confusion"].update_codes(true_idx, prediction, self.n_classes, validate=False)
        if scores is None:
            return
        if scores.ndim == 1:
            scored = ~np.isnan(scores)
        else:
            # A row is scored when its first column is; a later column that is null
            # belongs to a class added after the row was logged: probability 0.
            nan = np.isnan(scores)
            scored = ~nan[:, 0]
            if nan.any():
                scores = np.where(nan, 0.0, scores)
        if not scored.all():
            true_idx, scores = true_idx[scored], scores[scored]
        if len(true_idx) == 0:
            return
        if self.task == "binary":
            positive = true_idx == 1
            self.states["ranking"].update(positive, scores, validate=False)
            self.states["proba"].update(true_idx, scores, validate=False)
            self.states["calibration"].update(positive, scores, validate=False)
        else:
            self.states["ranking"].update(true_idx, scores, validate=False)
            self.states["proba"].update(true_idx, scores, validate=False)
            top = np.argmax(scores, axis=1)
            self.states["calibration"].update(
                top == true_idx, scores[np.arange(len(top)), top], validate=False
            )

    def add_resources(
        self,
        cpu: npt.NDArray[np.float64],
        rss: npt.NDArray[np.float64],
        gpu_util: npt.NDArray[np.float64],
        gpu_memory: npt.NDArray[np.float64],
    ) -> None:
        """Add resource samples of the window (NaN where a reading is missing)."""
        c = self.counts
        ok = ~np.isnan(cpu)
        c["cpu_sum"] += float(cpu[ok].sum())
        c["cpu_n"] += int(ok.sum())
        if (~np.isnan(rss)).any():
            c["rss_max"] = _nanmax(c["rss_max"], float(np.nanmax(rss)))
        ok = ~np.isnan(gpu_util)
        c["gpu_util_sum"] += float(gpu_util[ok].sum())
        c["gpu_util_n"] += int(ok.sum())
        if (~np.isnan(gpu_memory)).any():
            c["gpu_memory_max"] = _nanmax(c["gpu_memory_max"], float(np.nanmax(gpu_memory)))

    def grow(self, n_classes: int) -> None:
        """Widen a classification window to ``n_classes`` (classes are append-only).

        Its rows get probability 0 for the added classes, as a one-pass computation
        over rows logged before those classes existed would give them: the confusion
        matrix and the log-loss/Brier sums are unchanged, and each added class's
        one-vs-rest ranking holds every scored row as a negative at score 0.
        """
        if self.task == "regression" or n_classes <= self.n_classes:
            return
        confusion = ClassificationState(labels=list(range(n_classes)))
        if "confusion" in self.states:
            confusion.merge(self.states["confusion"])
        self.states["confusion"] = confusion
        for name in ("proba", "ranking"):
            state = self.states.get(name)
            if state is not None and getattr(state, "n_classes", n_classes) < n_classes:
                state.grow(n_classes)  # ProbabilisticState, MulticlassRankingState
        self.n_classes = n_classes

    def copy(self) -> WindowAccumulator:
        """An independent copy."""
        acc = WindowAccumulator.__new__(WindowAccumulator)
        acc.task, acc.n_classes = self.task, self.n_classes
        acc.counts = dict(self.counts)
        acc.states = {name: state.copy() for name, state in self.states.items()}
        return acc

    def merge(self, other: WindowAccumulator) -> None:
        """Add another window's states into this one (widening the one with fewer
        classes first, see `grow`)."""
        if other.n_classes != self.n_classes:
            if other.n_classes < self.n_classes:
                other = other.copy()
                other.grow(self.n_classes)
            else:
                self.grow(other.n_classes)
        for key in (
            "rows",
            "labelled_rows",
            "seconds",
            "busy_s",
            "timed_rows",
            "cpu_sum",
            "cpu_n",
            "gpu_util_sum",
            "gpu_util_n",
        ):
            self.counts[key] += other.counts[key]
        for key in ("rss_max", "gpu_memory_max"):
            self.counts[key] = _nanmax(self.counts[key], other.counts[key])
        for name, state in other.states.items():
            if name in self.states:
                self.states[name].merge(state)
            else:
                self.states[name] = state.copy()

    def values(self, flops_per_prediction: float | None) -> dict[str, float]:
        """Every metric of the task, NaN where undefined."""
        c = self.counts
        out = dict.fromkeys(metric_columns(self.task), NAN)
        out["rows"] = c["rows"]
        out["labelled_rows"] = c["labelled_rows"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            if c["labelled_rows"] > 0:
                for name, state in self.states.items():
                    if name == "latency":
                        continue
                    for key, value in state.compute().items():
                        if key in out and key not in ("rows", "labelled_rows"):
                            out[key] = float(value)
            if c["timed_rows"] > 0:
                sketch = self.states["latency"].compute()
                for key, column in _QUANTILES.items():
                    out[column] = float(sketch[key])
                out["latency_mean"] = float(sketch["sum"]) / float(sketch["count"])
        out["throughput"] = c["rows"] / c["seconds"] if c["seconds"] > 0 else NAN
        if flops_per_prediction is not None and c["busy_s"] > 0:
            out["flops_per_s"] = flops_per_prediction * c["timed_rows"] / c["busy_s"]
        if c["cpu_n"]:
            out["cpu_percent"] = c["cpu_sum"] / c["cpu_n"]
        out["rss_bytes"] = c["rss_max"]
        if c["gpu_util_n"]:
            out["gpu_util_percent"] = c["gpu_util_sum"] / c["gpu_util_n"]
        out["gpu_memory_bytes"] = c["gpu_memory_max"]
        return out

    def to_states(self) -> dict[str, Any]:
        """JSON-safe states: ``{name: state.to_dict()}`` plus a ``counts`` dict."""
        # Arrays over 768 bytes are deflated under ``zdata`` by the states themselves
        # (a window's ROC histogram is thousands of mostly-empty bins).
        states: dict[str, Any] = {name: s.to_dict() for name, s in self.states.items()}
        states["counts"] = {k: (None if math.isnan(v) else v) for k, v in self.counts.items()}
        states["task"] = self.task
        states["n_classes"] = self.n_classes
        if self.mark is not None:
            states["mark"] = list(self.mark)
        states["layout"] = self.layout
        return states

    @classmethod
    def from_states(cls, states: Mapping[str, Any]) -> WindowAccumulator:
        """Rebuild from `to_states` output."""
        acc = cls.__new__(cls)
        acc.task = str(states["task"])
        acc.n_classes = int(states["n_classes"])
        acc.counts = _new_counts()
        for key, value in states["counts"].items():
            acc.counts[key] = NAN if value is None else float(value)
        acc.states = {
            name: state_from_dict(d)
            for name, d in states.items()
            if name not in ("counts", "task", "n_classes", "mark", "layout")
        }
        acc.layout = states.get("layout")
        acc.mark = None if states.get("mark") is None else tuple(states["mark"])
        return acc
