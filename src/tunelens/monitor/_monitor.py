"""`Monitor`: log live predictions and late labels, and read metrics over time windows."""

from __future__ import annotations

import functools
import os
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tunelens.errors import InputError
from tunelens.monitor._inputs import (
    check_score_columns,
    coerce_batch_size,
    coerce_classes,
    coerce_features,
    coerce_ids,
    coerce_latency,
    coerce_scores,
    coerce_timestamps,
    float_values,
    map_to_classes,
    new_ids,
    regression_values,
    to_arrow_1d,
)
from tunelens.monitor._resources import ResourceSampler
from tunelens.monitor._windows import parse_window, to_utc, window_slices
from tunelens.monitor._writer import BatchWriter
from tunelens.store import FEATURE_PREFIX, ModelRecord, Store, WindowState, open_store

__all__ = ["Monitor", "WrappedPredict"]

_TASKS = ("binary", "multiclass", "regression")


def _is_integral(array: pa.Array) -> bool:
    return bool(pa.types.is_integer(array.type) or pa.types.is_boolean(array.type))


class Monitor:
    """Logs a model's predictions, labels and resource use to a store; reads metrics.

    Args:
        model: the model's name.
        store: a `Store`, a path or URL for `tunelens.store.open_store`, or None
            (``$TUNELENS_STORE``, else ``tunelens.duckdb``). A store the monitor opened
            is closed by `close`; a `Store` object passed in is left open.
        task: ``"binary"``, ``"multiclass"`` or ``"regression"``; inferred from the
            first `log` when the model is new. For a stored model its record wins and
            a different ``task`` raises `InputError`.
        classes: class labels in index order; by default taken (sorted) from the data
            and extended when new labels appear. For binary models ``classes[1]`` is
            the positive class (the larger label, as in scikit-learn).
        version: the model version written with each prediction (default: the stored
            one, or ``"1"`` for a new model).
        features: optional feature schema (name -> ``"float"``, ``"int"``, ``"bool"``,
            ``"string"`` or ``"timestamp"``); otherwise learnt from the logged data.
        flops_per_prediction: forward FLOPs of one prediction; gives ``flops_per_s``.
        resources: sample CPU, memory and GPU use on a daemon thread.
        resource_interval_s: seconds between resource samples.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "m.duckdb")
        >>> with Monitor("churn", path, resources=False) as mon:
        ...     mon.log([1, 2, 3], {"age": [31, 45, 27]}, [0, 1, 1],
        ...             scores=[0.2, 0.9, 0.6], latency_ms=4.0)
        ...     mon.log_labels([1, 2, 3], [0, 1, 0])
        ...     table = mon.metrics("1h")
        3
        (3, 3)
        >>> float(table["accuracy"].iloc[0])
        0.6666666666666666
    """

    def __init__(
        self,
        model: str,
        store: Store | str | os.PathLike[str] | None = None,
        *,
        task: str | None = None,
        classes: Sequence[Any] | None = None,
        version: str | None = None,
        features: Mapping[str, str] | None = None,
        flops_per_prediction: float | None = None,
        resources: bool = True,
        resource_interval_s: float = 1.0,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise InputError("model", f"is {model!r}", "give the model's name as a string")
        if task is not None and task not in _TASKS:
            raise InputError("task", f"is {task!r}", f"give one of {', '.join(_TASKS)}")
        if flops_per_prediction is not None and not flops_per_prediction > 0:
            raise InputError(
                "flops_per_prediction", f"is {flops_per_prediction!r}", "give FLOPs > 0"
            )
        if resource_interval_s <= 0:
            raise InputError(
                "resource_interval_s", f"is {resource_interval_s!r}", "give seconds > 0"
            )
        self.model = model
        self._owns_store = not isinstance(store, Store)
        self.store: Store = open_store(store)
        self._lock = threading.RLock()
        self._closed = False
        self._sampler: ResourceSampler | None = None
        self._writers: list[BatchWriter] = []
        self._task = task
        self._new_version = "1"
        self._new_features: dict[str, str] = {}
        self._new_flops: float | None = None
        self._classes = None if classes is None else coerce_classes(classes)
        self._record: ModelRecord | None = None
        try:
            self._register(version, features, flops_per_prediction)
            if resources:
                self._sampler = ResourceSampler(
                    model, self._write_resources, interval_s=resource_interval_s
                )
                self._sampler.start()
        except BaseException:
            if self._owns_store:
                self.store.close()
            raise

    # ------------------------------------------------------------------ record

    def _register(
        self,
        version: str | None,
        features: Mapping[str, str] | None,
        flops: float | None,
    ) -> None:
        """Set `record` from the store, updated with what was given (new models are
        written once the task is known)."""
        existing = self.store.get_model(self.model)
        if existing is not None:
            if self._task is not None and self._task != existing.task:
                raise InputError(
                    "task",
                    f"is {self._task!r} but the store has {self.model!r} as {existing.task!r}",
                    "drop task= or use another model name",
                )
            changes: dict[str, Any] = {}
            if version is not None and version != existing.version:
                changes["version"] = version
            if flops is not None and flops != existing.flops_per_prediction:
                changes["flops_per_prediction"] = float(flops)
            if features:
                merged: dict[str, Any] = dict(existing.features)
                merged.update({k: v for k, v in features.items() if k not in merged})
                if merged != existing.features:
                    changes["features"] = merged
            known = tuple(existing.classes)
            given = self._classes or ()
            if len(given) > len(known) and given[: len(known)] == known:
                changes["classes"] = given
            self._record = self.store.put_model(existing.evolve(**changes)) if changes else existing
            return
        self._new_version = version or "1"
        self._new_features = dict(features or {})
        self._new_flops = None if flops is None else float(flops)
        if self._task is None:
            return  # inferred from the first batch
        classes = self._classes or ()
        self._check_classes(self._task, classes, "classes")
        self._update_record(
            self._task, classes, self._new_version, self._new_features, self._new_flops
        )

    @staticmethod
    def _check_classes(task: str, classes: Sequence[Any], field: str) -> None:
        if task == "binary" and len(classes) > 2:
            raise InputError(
                field,
                f"holds {len(classes)} classes ({list(classes)[:5]!r}...) but the model is binary",
                "use task='multiclass' or give two classes",
            )

    @property
    def record(self) -> ModelRecord | None:
        """The model's stored record (None until the task is known)."""
        return self._record

    # ------------------------------------------------------------------ logging

    def _infer_task(self, predictions: pa.Array, scores: npt.NDArray[np.float64] | None) -> str:
        if scores is not None:
            if scores.ndim == 2:
                return "binary" if scores.shape[1] == 2 else "multiclass"
            return "binary"
        if pa.types.is_floating(predictions.type):
            return "regression"
        classes = self._classes
        if classes is None:
            classes = tuple(pc.unique(predictions).to_pylist())
        return "multiclass" if len(classes) > 2 else "binary"

    def _initial_classes(
        self, task: str, predictions: pa.Array, scores: npt.NDArray[np.float64] | None
    ) -> tuple[Any, ...]:
        """Classes for a model that has none yet: 0/1 (or range(K)) for integer labels."""
        if pa.types.is_boolean(predictions.type):
            return (False, True)
        if not _is_integral(predictions) and not pa.types.is_floating(predictions.type):
            return ()
        width = 2 if task == "binary" else (scores.shape[1] if scores is not None else 0)
        if width and len(predictions):
            values = predictions.to_numpy(zero_copy_only=False)
            if not np.isnan(values.astype(np.float64)).any():
                lo, hi = values.min(), values.max()
                if lo >= 0 and hi < width and np.all(values == np.round(values)):
                    if pa.types.is_floating(predictions.type):
                        return tuple(float(k) for k in range(width))
                    return tuple(range(width))
        return ()

    def _resolve(
        self, predictions: pa.Array, scores: npt.NDArray[np.float64] | None
    ) -> tuple[str, tuple[Any, ...], str, dict[str, str], float | None]:
        record = self._record
        if record is not None:
            return (
                record.task,
                tuple(record.classes),
                record.version,
                dict(record.features),
                record.flops_per_prediction,
            )
        task = self._task or self._infer_task(predictions, scores)
        classes: tuple[Any, ...] = self._classes or ()
        if task != "regression" and not classes:
            classes = self._initial_classes(task, predictions, scores)
        return task, classes, self._new_version, self._new_features, self._new_flops

    def log(
        self,
        ids: Any,
        features: Any,
        predictions: Any,
        scores: Any = None,
        latency_ms: Any = None,
        timestamps: Any = None,
        *,
        batch_size: Any = None,
        _generated: bool = False,
    ) -> int:
        """Log a batch of predictions; returns the rows written once they are durable.

        Args:
            ids: one id per prediction (ints or strings; unique within the batch);
                labels are joined on them.
            features: DataFrame, arrow Table, dict of columns, 2-D array (columns
                ``f0..``) or None.
            predictions: predicted class labels, or values for regression.
            scores: binary: P(positive class) as a 1-D array or an (n, 2) array;
                multiclass: (n, K) probabilities in class order. Rows must sum to 1.
                Classes only grow (new ones are appended); a matrix with fewer
                columns, k < K, holds the first k classes and the rest get
                probability 0 (a model that does not know them), so
                ``predict_proba`` output keeps fitting after a label of an unseen
                class arrives.
            latency_ms: the call's latency (a number for the whole batch) or one per row.
            timestamps: one per row or one for all; default now. Naive times are UTC.
            batch_size: rows of the call that produced each row. Default: the batch
                length when ``latency_ms`` is one number, else 1 (per-row latencies).

        Returns:
            The number of rows written.

        Raises:
            InputError: lengths differ, scores outside [0, 1] or not summing to 1, NaN
                predictions, missing or repeated ids; nothing is written.
        """
        table = self._prepare(
            ids, features, predictions, scores, latency_ms, timestamps, batch_size, _generated
        )
        return self.store.append_predictions(self.model, table)

    def _prepare(
        self,
        ids: Any,
        features: Any,
        predictions: Any,
        scores: Any,
        latency_ms: Any,
        timestamps: Any,
        batch_size: Any,
        generated: bool,
    ) -> pa.Table:
        """Validate a batch and build its canonical table (registering new classes
        and features); writes no prediction row."""
        self._check_open()
        pred = to_arrow_1d(predictions, "predictions")
        n = len(pred)
        id_array = coerce_ids(ids, n, unique=not generated)
        score_array = coerce_scores(scores, n, check_sums=False)
        latency = coerce_latency(latency_ms, n)
        per_call = latency_ms is not None and np.ndim(latency_ms) == 0
        sizes = coerce_batch_size(batch_size, n, n if per_call else 1)
        stamps = coerce_timestamps(timestamps, n)
        with self._lock:
            task, classes, version, known, flops = self._resolve(pred, score_array)
            columns: dict[str, pa.Array] = {"id": id_array, "timestamp": stamps}
            if task == "regression":
                columns["prediction"] = regression_values(pred, "predictions")
                if score_array is not None:
                    raise InputError("scores", "given for a regression model", "drop scores=")
            else:
                index, classes = map_to_classes(pred, classes, "predictions")
                self._check_classes(task, classes, "predictions")
                columns["prediction"] = pa.array(index)
                if score_array is not None:
                    columns.update(self._score_columns(task, classes, score_array))
            columns["latency_ms"] = latency
            columns["batch_size"] = sizes
            feature_columns, schema = coerce_features(features, n, known)
            for name, array in feature_columns.items():
                columns[FEATURE_PREFIX + name] = array
            table = pa.table(columns)
            self._update_record(task, classes, version, schema, flops)
            assert self._record is not None
            return table

    def _update_record(
        self,
        task: str,
        classes: tuple[Any, ...],
        version: str,
        features: dict[str, str],
        flops: float | None,
    ) -> None:
        record = self._record
        if record is None:
            self._record = self.store.put_model(
                ModelRecord(
                    self.model,
                    task,  # type: ignore[arg-type]
                    version=version,
                    classes=classes,
                    features=features,  # type: ignore[arg-type]
                    flops_per_prediction=flops,
                )
            )
            self._task = task
        elif tuple(record.classes) != classes or record.features != features:
            self._record = self.store.put_model(record.evolve(classes=classes, features=features))

    def _seed_classes(self, classes: Any) -> None:
        """Take ``classes`` (an estimator's ``classes_``, in its ``predict_proba``
        column order) when the model has none yet; otherwise do nothing."""
        with self._lock:
            record = self._record
            if self._classes or (record is not None and record.classes):
                return
            if record is not None and record.task == "regression":
                return
            try:
                seeded = coerce_classes(classes)
            except InputError:
                return
            if len(seeded) < 2:
                return
            if record is None:
                self._classes = seeded
            else:
                self._record = self.store.put_model(record.evolve(classes=seeded))

    @staticmethod
    def _score_columns(
        task: str, classes: tuple[Any, ...], scores: npt.NDArray[np.float64]
    ) -> dict[str, pa.Array]:
        if task == "binary":
            if len(classes) != 2:
                raise InputError(
                    "classes",
                    f"only {list(classes)!r} known, so the positive class of the scores is unclear",
                    "pass classes=[negative, positive] to Monitor",
                )
            if scores.ndim == 2:
                if scores.shape[1] != 2:
                    raise InputError(
                        "scores",
                        f"has {scores.shape[1]} columns for a binary model",
                        "give P(positive) or (n, 2)",
                    )
                check_score_columns(scores, classes)
                return {"score": pa.array(np.ascontiguousarray(scores[:, 1]))}
            return {"score": pa.array(scores)}
        if scores.ndim != 2:
            raise InputError(
                "scores", "is 1-D for a multiclass model", "give (n, classes) probabilities"
            )
        # k <= K columns: the first k classes; later ones (classes the scoring model
        # does not know, e.g. first seen in a label) get probability 0.
        check_score_columns(scores, classes)
        cols = np.ascontiguousarray(scores.T)
        out = {f"score_{k}": pa.array(cols[k]) for k in range(cols.shape[0])}
        if cols.shape[0] < len(classes):
            zeros = pa.array(np.zeros(scores.shape[0]))
            out.update({f"score_{k}": zeros for k in range(cols.shape[0], len(classes))})
        return out

    def log_with_labels(
        self,
        ids: Any,
        features: Any,
        predictions: Any,
        labels: Any,
        scores: Any = None,
        latency_ms: Any = None,
        timestamps: Any = None,
        *,
        batch_size: Any = None,
    ) -> tuple[int, int, int]:
        """Log predictions and, where known, their true labels, all or nothing.

        For tables that hold the target beside the prediction (a backfill, an offline
        evaluation). Both are validated before either is written, so bad labels never
        leave their predictions behind.

        Args:
            ids, features, predictions, scores, latency_ms, timestamps, batch_size: as
                `log`.
            labels: one per row; None or NaN where the label is not known (not logged).

        Returns:
            ``(rows, labels accepted, labels matched)``.

        Raises:
            InputError: as `log` and `log_labels`; nothing is written.
        """
        table = self._prepare(
            ids, features, predictions, scores, latency_ms, timestamps, batch_size, False
        )
        values = to_arrow_1d(labels, "labels")
        if len(values) != table.num_rows:
            raise InputError(
                "labels",
                f"has {len(values)} rows but predictions have {table.num_rows}",
                "give one label (or None) per prediction",
            )
        known = pc.is_valid(values)
        if pa.types.is_floating(values.type):
            known = pc.and_(known, pc.invert(pc.is_nan(values)))
        label_table = self._prepare_labels(
            pc.filter(table.column("id"), known), pc.filter(values, known), None
        )
        rows = self.store.append_predictions(self.model, table)
        if label_table.num_rows == 0:
            return rows, 0, 0
        accepted, matched = self.store.append_labels(self.model, label_table)
        return rows, accepted, matched

    def log_labels(self, ids: Any, labels: Any, timestamps: Any = None) -> tuple[int, int]:
        """Log true labels, joined to predictions by id (they may arrive in any order).

        Args:
            ids: the prediction ids.
            labels: the true labels (class labels, or values for regression). A class
                never seen before is valid data: it extends the model's classes.
            timestamps: when the labels arrived; default now.

        Returns:
            ``(accepted, matched)``: rows written, and how many match a logged prediction.
        """
        table = self._prepare_labels(ids, labels, timestamps)
        return self.store.append_labels(self.model, table)

    def _prepare_labels(self, ids: Any, labels: Any, timestamps: Any) -> pa.Table:
        """Validate labels and build their canonical table (extending the classes with
        new ones); writes no label."""
        self._check_open()
        values = to_arrow_1d(labels, "labels")
        n = len(values)
        id_array = coerce_ids(ids, n)
        stamps = coerce_timestamps(timestamps, n)
        with self._lock:
            record = self._record
            if record is None:
                raise InputError(
                    "labels",
                    f"model {self.model!r} has no task yet",
                    "log predictions first, or pass task= to Monitor",
                )
            if record.task == "regression":
                label = regression_values(values, "labels")
            else:
                index, classes = map_to_classes(values, record.classes, "labels")
                self._check_classes(record.task, classes, "labels")
                if classes != tuple(record.classes):
                    self._record = self.store.put_model(record.evolve(classes=classes))
                label = pa.array(index)
            return pa.table({"id": id_array, "label": label, "timestamp": stamps})

    def wrap(
        self,
        predict_fn: Callable[..., Any],
        sample: float = 1.0,
        *,
        id_fn: Callable[..., Any] | None = None,
        proba_fn: Callable[..., Any] | None = None,
        seed: int | None = 0,
        flush_s: float = 1.0,
        max_rows: int = 100_000,
        clock: Callable[[], Any] | None = None,
    ) -> WrappedPredict:
        """A drop-in replacement of ``predict_fn`` that logs a sample of its calls.

        Every call is timed with `time.perf_counter`; a ``sample`` fraction of calls
        (Bernoulli per call, seeded) is logged with ``latency_ms`` = the call's
        duration, ``batch_size`` = its output length and features = its first
        argument. A logging failure only warns: the prediction is always returned.

        A call's rows are validated in the calling thread, then written by a
        background thread in one transaction per ``flush_s`` seconds (or once
        ``max_rows`` wait), so a fast model does not pay a durable write per call.
        ``wrapped.flush()``, `Monitor.metrics` and `Monitor.close` write what is
        pending; ``flush_s=0`` writes every call synchronously before it returns.

        Args:
            predict_fn: the function to wrap, e.g. ``model.predict``.
            sample: fraction of calls to log, in [0, 1].
            id_fn: called with the call's arguments, returns one id per row; default
                random uuid4 hex ids (see ``wrapped.last_ids``).
            proba_fn: e.g. ``model.predict_proba``; called on logged calls with the
                same arguments, its output logged as scores (not timed).
            seed: seed of the sampling generator.
            flush_s: the longest a logged call waits before it is written; 0 writes
                in the call itself.
            max_rows: pending rows that trigger a write before ``flush_s``.
            clock: called at each logged call for its rows' timestamp (a datetime, naive =
                UTC); default the time of the call. A simulation or a replay of past
                traffic passes its own clock.

        Example:
            >>> import os, tempfile
            >>> mon = Monitor("m", os.path.join(tempfile.mkdtemp(), "w.duckdb"), resources=False)
            >>> predict = mon.wrap(lambda X: [x[0] > 0 for x in X])
            >>> predict([[1.0], [-2.0]])
            [True, False]
            >>> len(predict.last_ids)
            2
            >>> mon.close()
        """
        if not 0.0 <= sample <= 1.0:
            raise InputError("sample", f"is {sample!r}", "give a fraction in [0, 1]")
        if not flush_s >= 0:
            raise InputError("flush_s", f"is {flush_s!r}", "give seconds >= 0")
        if max_rows < 1:
            raise InputError("max_rows", f"is {max_rows!r}", "give a row count >= 1")
        self._check_open()
        writer = None
        if flush_s > 0:
            writer = BatchWriter(
                functools.partial(self.store.append_predictions, self.model),
                flush_s=flush_s,
                max_rows=max_rows,
            )
            self._writers.append(writer)
        return WrappedPredict(self, predict_fn, sample, id_fn, proba_fn, seed, writer, clock)

    # ------------------------------------------------------------------ metrics

    def _scan_columns(self, record: ModelRecord) -> list[str]:
        columns = ["timestamp", "prediction", "latency_ms", "batch_size"]
        if record.task == "binary":
            columns.append("score")
        elif record.task == "multiclass":
            columns += [f"score_{k}" for k in range(len(record.classes))]
        return columns

    def _begin_read(
        self, window: Any, since: Any, until: Any
    ) -> tuple[int, datetime | None, datetime | None]:
        """Parse a read's window and range, then write what is pending."""
        window_s = parse_window(window)
        lo, hi = to_utc(since, "since"), to_utc(until, "until")
        if lo is not None and hi is not None and hi <= lo:
            raise InputError("until", f"({hi}) is not after since ({lo})", "give until > since")
        self._check_open()
        self.flush()
        return window_s, lo, hi

    def _accumulate(
        self, window: Any, since: Any, until: Any
    ) -> tuple[int, list[tuple[int, Any]], datetime | None, datetime | None]:
        """Scan once and build the accumulator of every window holding rows."""
        window_s, lo, hi = self._begin_read(window, since, until)
        record = self._refresh_record()
        if record is None:
            return window_s, [], lo, hi
        return window_s, self._scan_windows(window_s, lo, hi, record), lo, hi

    def _scan_windows(
        self, window_s: int, lo: datetime | None, hi: datetime | None, record: ModelRecord
    ) -> list[tuple[int, Any]]:
        """The accumulator of every window holding rows in ``[lo, hi)``, from one scan
        (resources included); no validation, no flush."""
        from tunelens.monitor._states import WindowAccumulator

        # Marks first, then the scan: a write landing in between makes the stored mark
        # older than the state, so `summary` recomputes that window (never the reverse).
        marks = {
            int(start.timestamp()) * 1_000_000: mark
            for start, mark in self.store.window_marks(
                self.model, window_s, since=lo, until=hi
            ).items()
        }
        table = self.store.scan(self.model, since=lo, until=hi, columns=self._scan_columns(record))
        n_classes = len(record.classes)
        ts = _column(table, "timestamp").cast(pa.int64()).to_numpy()
        starts, bounds = window_slices(ts, window_s)
        prediction = _numpy(table, "prediction")
        label_col = _column(table, "label")
        labelled = pc.is_valid(label_col).to_numpy(zero_copy_only=False)
        label = pc.fill_null(label_col, 0).to_numpy(zero_copy_only=False)
        latency = _numpy(table, "latency_ms", float_=True)
        batch = _numpy(table, "batch_size", float_=True)
        batch = np.where(np.isnan(batch), 1.0, batch)
        scores: npt.NDArray[np.float64] | None = None
        if record.task == "binary":
            scores = _numpy(table, "score", float_=True)
        elif record.task == "multiclass":
            scores = (
                np.column_stack(
                    [_numpy(table, f"score_{k}", float_=True) for k in range(n_classes)]
                )
                if n_classes
                else None
            )
        if scores is not None and np.isnan(scores).all():
            scores = None
        if record.task != "regression":
            _check_class_indices(prediction, label, labelled, n_classes)
        out: list[tuple[int, Any]] = []
        for i, start in enumerate(starts.tolist()):
            a, b = int(bounds[i]), int(bounds[i + 1])
            acc = WindowAccumulator(record.task, n_classes, window_s)
            acc.mark = marks.get(start)
            acc.update(
                prediction[a:b],
                label[a:b],
                labelled[a:b],
                None if scores is None else scores[a:b],
                latency[a:b],
                batch[a:b],
            )
            out.append((start, acc))
        self._add_resources(out, window_s, lo, hi)
        return out

    def _add_resources(
        self,
        windows: list[tuple[int, Any]],
        window_s: int,
        lo: datetime | None,
        hi: datetime | None,
    ) -> None:
        if not windows:
            return
        res = self.store.scan_resources(self.model, since=lo, until=hi)
        if res.num_rows == 0:
            return
        ts = _column(res, "timestamp").cast(pa.int64()).to_numpy()
        starts, bounds = window_slices(ts, window_s)
        where = {start: i for i, start in enumerate(starts.tolist())}
        cpu = _numpy(res, "cpu_percent", float_=True)
        rss = _numpy(res, "rss_bytes", float_=True)
        util = _numpy(res, "gpu_util_percent", float_=True)
        memory = _numpy(res, "gpu_memory_bytes", float_=True)
        for start, acc in windows:
            i = where.get(start)
            if i is None:
                continue
            a, b = int(bounds[i]), int(bounds[i + 1])
            acc.add_resources(cpu[a:b], rss[a:b], util[a:b], memory[a:b])

    def metrics(self, window: Any = "1h", since: Any = None, until: Any = None) -> pd.DataFrame:
        """Metrics per time window, one row per window holding predictions.

        Windows start at multiples of their width since the Unix epoch (UTC). Each
        window's metric states are stored beside its values (windows wholly inside
        ``[since, until)`` and already over), so `summary` can merge them later.

        Args:
            window: ``"30s"``, ``"5min"``, ``"15m"``, ``"1h"``, ``"6h"``, ``"1d"``
                (also ``"1H"``), a timedelta or seconds.
            since: inclusive start (naive = UTC); default: the first prediction.
            until: exclusive end; default: no end.

        Returns:
            A DataFrame indexed by ``window_start`` (UTC) with ``rows``,
            ``labelled_rows``, the task's quality metrics (NaN without labels),
            latency quantiles, ``throughput`` (rows/s), ``flops_per_s``,
            ``cpu_percent``, ``rss_bytes``, ``gpu_util_percent``, ``gpu_memory_bytes``.

        Raises:
            InputError: a window that is not one of the accepted forms.
        """
        from tunelens.monitor._states import metric_columns

        window_s, windows, lo, hi = self._accumulate(window, since, until)
        record = self._record
        task = record.task if record is not None else (self._task or "binary")
        flops = _flops(record)
        columns = metric_columns(task)
        rows = [acc.values(flops) for _, acc in windows]
        index = pd.DatetimeIndex(
            pd.to_datetime(np.array([s for s, _ in windows], dtype=np.int64), unit="us", utc=True),
            name="window_start",
        )
        frame = pd.DataFrame(rows, index=index, columns=columns, dtype=np.float64)
        frame["rows"] = frame["rows"].astype(np.int64)
        frame["labelled_rows"] = frame["labelled_rows"].astype(np.int64)
        self._store_states(window_s, windows, lo, hi, rows)
        return frame

    def _store_states(
        self,
        window_s: int,
        windows: list[tuple[int, Any]],
        lo: datetime | None,
        hi: datetime | None,
        values: list[dict[str, float]],
    ) -> None:
        width = window_s * 1_000_000
        now_us = time.time_ns() // 1000
        lo_us = None if lo is None else int(lo.timestamp() * 1_000_000)
        hi_us = None if hi is None else int(hi.timestamp() * 1_000_000)
        states = []
        for (start, acc), vals in zip(windows, values, strict=True):
            end = start + width
            if (lo_us is not None and start < lo_us) or (hi_us is not None and end > hi_us):
                continue  # a partial window would poison later merges
            if end > now_us:
                continue  # still open
            states.append(
                WindowState(
                    model=self.model,
                    start=datetime.fromtimestamp(start / 1_000_000, UTC),
                    window_s=window_s,
                    states=acc.to_states(),
                    values={k: (None if v != v else float(v)) for k, v in vals.items()},
                )
            )
        if states:
            self.store.put_window_states(states)

    def merged(self, window_states: Sequence[WindowState]) -> dict[str, float]:
        """Metrics of the union of windows, by merging their stored states exactly.

        Args:
            window_states: states from ``store.get_window_states`` (or `metrics`).

        Returns:
            Metric name -> value, the same keys as a `metrics` row.
        """
        from tunelens.monitor._states import WindowAccumulator

        record = self._refresh_record()
        return self._merge_accumulators(
            [WindowAccumulator.from_states(ws.states) for ws in window_states],
            record,
            _flops(record),
        )

    @staticmethod
    def _merge_accumulators(
        accumulators: Sequence[Any], record: ModelRecord | None, flops: float | None
    ) -> dict[str, float]:
        from tunelens.monitor._states import metric_columns

        total: Any = None
        for acc in accumulators:
            if total is None:
                total = acc
            else:
                total.merge(acc)
        if total is None:
            task = record.task if record is not None else "binary"
            return dict.fromkeys(metric_columns(task), float("nan")) | {
                "rows": 0,
                "labelled_rows": 0,
            }
        out: dict[str, float] = total.values(flops)
        return out | {"rows": int(out["rows"]), "labelled_rows": int(out["labelled_rows"])}

    def summary(
        self, since: Any = None, until: Any = None, *, window: Any = "1h"
    ) -> dict[str, float]:
        """Metrics over ``[since, until)``, merged exactly from windows of width ``window``.

        Reuses the window states that `metrics` stored, so a month re-aggregates from
        720 hourly states without rescanning them. A stored state is used only while it
        is current: the store's `window_marks` (rows and latest label of each window)
        must equal the mark saved with the state. Windows that changed since (late
        labels, new predictions), were never stored (still open, or cut by
        ``since``/``until``), are computed again, one scan per run of adjacent such
        windows (current windows between them are not rescanned), and the complete
        ones are stored again. Windows stored with fewer classes than the model has now
        are widened (the added classes get probability 0) before they are merged.

        Args:
            since: inclusive start (naive = UTC); default: the first prediction.
            until: exclusive end; default: no end.
            window: the width of the windows to merge.

        Returns:
            Metric name -> value, as a `metrics` row; equal to one pass over the range.
        """
        from tunelens.monitor._states import LAYOUT, WindowAccumulator

        window_s, lo, hi = self._begin_read(window, since, until)
        stored = self._stored_record()
        record = self._record
        flops = _flops(record)
        if stored is None:
            return self._merge_accumulators([], record, flops)
        marks = self.store.window_marks(self.model, window_s, since=lo, until=hi)
        current: list[Any] = []
        for ws in self.store.get_window_states(self.model, window_s, since=lo, until=hi):
            acc = WindowAccumulator.from_states(ws.states)
            current_mark = acc.mark is not None and marks.get(ws.start) == acc.mark
            if current_mark and acc.layout == LAYOUT:  # else stale: computed again
                current.append(acc)
                del marks[ws.start]
        width = timedelta(seconds=window_s)
        for first, last in _runs(sorted(marks), width):  # one scan per run of stale windows
            span_lo = first if lo is None else max(first, lo)
            span_hi = last + width if hi is None else min(last + width, hi)
            fresh = self._scan_windows(window_s, span_lo, span_hi, stored)
            self._store_states(
                window_s, fresh, span_lo, span_hi, [acc.values(flops) for _, acc in fresh]
            )
            current += [acc for _, acc in fresh]
        return self._merge_accumulators(current, stored, flops)

    # ------------------------------------------------------------------ lifecycle

    def _stored_record(self) -> ModelRecord | None:
        """The store's record of the model (None when it has none), kept as `record`."""
        with self._lock:
            stored = self.store.get_model(self.model)
            if stored is not None:
                self._record = stored
            return stored

    def _refresh_record(self) -> ModelRecord | None:
        with self._lock:
            self._stored_record()
            return self._record

    def _write_resources(self, table: pa.Table) -> None:
        if self._closed_store():
            raise RuntimeError("the store is closed")
        self.store.append_resources(table)

    def _closed_store(self) -> bool:
        return bool(getattr(self.store, "closed", False))

    def _check_open(self) -> None:
        if self._closed:
            raise InputError("monitor", "is closed", "create a new Monitor")

    def flush(self) -> None:
        """Write the rows that wrapped calls and the resource sampler hold pending."""
        for writer in self._writers:
            writer.flush()
        if self._sampler is not None:
            self._sampler.flush()

    def close(self) -> None:
        """Write pending rows, stop the sampler and writers, and close an owned store."""
        if self._closed:
            return
        self._closed = True
        for writer in self._writers:
            writer.close()
        if self._sampler is not None:
            self._sampler.close(flush=not self._closed_store())
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        task = None if self._record is None else self._record.task
        return f"Monitor({self.model!r}, store={self.store.url!r}, task={task!r})"


def _flops(record: ModelRecord | None) -> float | None:
    return None if record is None else record.flops_per_prediction


def _runs(starts: Sequence[datetime], width: timedelta) -> list[tuple[datetime, datetime]]:
    """``(first, last)`` start of each run of adjacent windows in sorted ``starts``."""
    runs: list[tuple[datetime, datetime]] = []
    for start in starts:
        if runs and start - runs[-1][1] == width:
            runs[-1] = (runs[-1][0], start)
        else:
            runs.append((start, start))
    return runs


def _check_class_indices(
    prediction: npt.NDArray[Any],
    label: npt.NDArray[Any],
    labelled: npt.NDArray[np.bool_],
    n_classes: int,
) -> None:
    """Raise when a labelled row holds a class index the record (read before the scan)
    does not know, e.g. a class a concurrent writer added since: the metric states,
    updated without their own checks, would count it in the wrong cell."""
    for name, values in (("true_idx", label), ("pred_idx", prediction)):
        top = int(np.max(values, where=labelled, initial=-1))
        if top >= n_classes:
            raise ValueError(
                f"`{name}` must hold class indices in 0..{n_classes - 1} "
                f"(n_classes={n_classes}), got {top}"
            )


def _column(table: pa.Table, name: str) -> pa.Array:
    column = table.column(name)
    return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)


def _numpy(table: pa.Table, name: str, *, float_: bool = False) -> npt.NDArray[Any]:
    column = _column(table, name)
    if float_:
        return float_values(column)
    return np.asarray(column.to_numpy(zero_copy_only=False))


class WrappedPredict:
    """A prediction function that logs a sample of its calls to a `Monitor`.

    Attributes:
        last_ids: ids logged for the most recent call (a numpy array of str), or None
            when that call was not sampled; use them to log labels later.
        calls: calls made; ``logged``: calls logged.
    """

    def __init__(
        self,
        monitor: Monitor,
        predict_fn: Callable[..., Any],
        sample: float,
        id_fn: Callable[..., Any] | None,
        proba_fn: Callable[..., Any] | None,
        seed: int | None,
        writer: BatchWriter | None = None,
        clock: Callable[[], Any] | None = None,
    ) -> None:
        self.monitor = monitor
        self._writer = writer
        self._clock = clock
        self.predict_fn = predict_fn
        self.sample = float(sample)
        self.id_fn = id_fn
        self.proba_fn = proba_fn
        self.last_ids: npt.NDArray[np.str_] | None = None
        self.calls = 0
        self.logged = 0
        self._rng = np.random.default_rng(seed)
        self._rng_lock = threading.Lock()
        self._features_ok = True
        self._seeded = proba_fn is None
        functools.update_wrapper(self, predict_fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        output = self.predict_fn(*args, **kwargs)
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        self.calls += 1
        with self._rng_lock:
            chosen = self.sample >= 1.0 or self._rng.random() < self.sample
        if not chosen:
            self.last_ids = None
            return output
        try:
            self._log(args, kwargs, output, elapsed_ms)
            self.logged += 1
        except Exception as exc:  # never break the caller's prediction
            self.last_ids = None
            warnings.warn(f"tunelens: prediction not logged: {exc}", RuntimeWarning, stacklevel=2)
        return output

    def _log(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any, elapsed_ms: float
    ) -> None:
        predictions = np.atleast_1d(np.asarray(output)) if np.ndim(output) == 0 else output
        n = len(predictions)
        generated = self.id_fn is None
        if self.id_fn is not None:
            ids: Any = self.id_fn(*args, **kwargs)
            self.last_ids = np.asarray(ids).astype(str)
        else:
            raw = new_ids(n)
            ids = pa.array(raw).cast(pa.string())
            self.last_ids = raw.astype("U32")
        scores = None if self.proba_fn is None else self.proba_fn(*args, **kwargs)
        if not self._seeded:
            self._seeded = True
            self._seed_classes()
        features = args[0] if args else next(iter(kwargs.values()), None)
        if features is not None and np.ndim(output) == 0 and np.ndim(features) == 1:
            features = np.asarray(features)[None, :]
        if not self._features_ok:
            features = None
        try:
            self._write(ids, features, predictions, scores, elapsed_ms, n, generated)
        except InputError as exc:
            if features is None or not exc.field.startswith("features"):
                raise
            if exc.field == "features":
                # The whole input is not a table (e.g. an image batch): stop trying.
                self._features_ok = False
                message = f"inputs are not tabular features ({exc}); logging without them"
            else:
                # One column does not fit the schema: skip features for this call only.
                message = f"features not logged for this call ({exc})"
            warnings.warn(f"tunelens: {message}", RuntimeWarning, stacklevel=3)
            self._write(ids, None, predictions, scores, elapsed_ms, n, generated)

    def _seed_classes(self) -> None:
        """Seed the monitor's classes from a scikit-learn style ``classes_`` (the
        column order of ``predict_proba``), so that a first call whose predictions
        miss a class still fits its K score columns."""
        for fn in (self.predict_fn, self.proba_fn):
            classes = getattr(getattr(fn, "__self__", None), "classes_", None)
            if classes is not None:
                self.monitor._seed_classes(classes)
                return

    def _write(
        self,
        ids: Any,
        features: Any,
        predictions: Any,
        scores: Any,
        elapsed_ms: float,
        n: int,
        generated: bool,
    ) -> None:
        stamps = None if self._clock is None else [self._clock()] * n
        table = self.monitor._prepare(
            ids, features, predictions, scores, elapsed_ms, stamps, n, generated
        )
        if self._writer is None:
            self.monitor.store.append_predictions(self.monitor.model, table)
        else:
            self._writer.put(table)

    def flush(self) -> int:
        """Write this function's pending logged rows now; returns how many."""
        return 0 if self._writer is None else self._writer.flush()
