"""The `Store` protocol: the few methods every backend implements.

Data crosses this boundary as pyarrow tables in one canonical layout, so a backend
never guesses types and the monitor never writes SQL. The contract suite in
`tunelens.testing.store` runs against every backend.

Canonical prediction table (what `append_predictions` takes), one row per prediction:

=================  ==========================  ===========================================
column             arrow type                  meaning
=================  ==========================  ===========================================
``id``             string, not null            the caller's prediction id (labels join on it)
``timestamp``      timestamp("us", "UTC")      when the prediction was made
``version``        string                      the model version that made it
``prediction``     int32 | float64             class *index* into ``ModelRecord.classes``
                                               (classification) or the value (regression)
``score``          float64, nullable           binary: probability of ``classes[1]``
``score_<k>``      float64, nullable           multiclass: probability of ``classes[k]``
``latency_ms``     float64, nullable           latency of the call that produced the row
``batch_size``     int32                       rows in that call (1 for single predictions)
``f:<name>``       float64 | int64 | bool |    one column per feature of the model's
                   string | timestamp          ``features`` schema
=================  ==========================  ===========================================

Canonical label table (what `append_labels` takes): ``id`` (string), ``label``
(int32 class index, or float64 for regression), ``timestamp`` (timestamp("us", "UTC"),
when the label arrived).

`scan` returns the prediction columns asked for plus ``label`` (null where no label has
arrived; the latest label wins when an id was labelled twice), ordered by ``timestamp``.
Asked for by name, ``label_seq`` (int64, nullable) is the labels-log position of that
label: the monotone counter behind `Store.window_marks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Protocol, runtime_checkable

import pyarrow as pa

__all__ = [
    "FEATURE_PREFIX",
    "AlertEvent",
    "FeatureType",
    "ModelRecord",
    "Store",
    "Task",
    "WindowState",
]

Task = Literal["binary", "multiclass", "regression"]
FeatureType = Literal["float", "int", "bool", "string", "timestamp"]
FEATURE_PREFIX = "f:"


@dataclass(frozen=True)
class ModelRecord:
    """What the store knows of a model.

    Attributes:
        name: the model's name (any string; stored verbatim, never interpreted).
        task: ``"binary"``, ``"multiclass"`` or ``"regression"``.
        version: the current version.
        classes: class labels in index order (JSON scalars); empty for regression.
            For binary tasks ``classes[1]`` is the positive class.
        features: feature name -> logical type, in column order.
        flops_per_prediction: forward FLOPs of one prediction, when known; turns
            throughput into achieved FLOP/s.
        created_at: when the model was first registered (UTC).
    """

    name: str
    task: Task
    version: str = "1"
    classes: tuple[Any, ...] = ()
    features: dict[str, FeatureType] = field(default_factory=dict)
    flops_per_prediction: float | None = None
    created_at: datetime | None = None

    def evolve(self, **changes: Any) -> ModelRecord:
        """A copy with some fields changed."""
        return replace(self, **changes)


@dataclass(frozen=True)
class WindowState:
    """Metric states of one time window, stored beside their values.

    ``states`` maps a state name (``"confusion"``, ``"ranking"``, ``"latency"`` …) to the
    JSON-safe dict of a metric state (``state.to_dict()``); ``values`` maps a metric name
    to its computed value. Merging the states of adjacent windows re-aggregates exactly.
    """

    model: str
    start: datetime
    window_s: int
    states: dict[str, Any]
    values: dict[str, float | None]
    computed_at: datetime | None = None


AlertState = Literal["firing", "resolved"]


@dataclass(frozen=True)
class AlertEvent:
    """One firing of an alert rule, from the moment it fired until it resolved.

    Attributes:
        id: unique id of the firing (a UUID string); `Store.put_alert` upserts by it.
        model: the model's name.
        rule: the rule's name.
        state: ``"firing"`` while the condition holds, ``"resolved"`` once it cleared.
        fired_at: when it fired (UTC).
        resolved_at: when it resolved (UTC), None while firing.
        severity: ``"high"``, ``"medium"`` or ``"low"``.
        value: the metric value that fired it, when there is one.
        window_start: start of the window that fired it, when there is one (UTC).
        evidence: the numbers behind it, in plain words.
        notified: whether the webhook (if any) has acknowledged it.
    """

    id: str
    model: str
    rule: str
    state: AlertState
    fired_at: datetime
    resolved_at: datetime | None = None
    severity: str = "high"
    value: float | None = None
    window_start: datetime | None = None
    evidence: str = ""
    notified: bool = False


@runtime_checkable
class Store(Protocol):
    """Where tunelens keeps models, predictions, labels, resource samples and window states.

    A method that has returned is durable: its rows survive the process being killed.
    Backends: `tunelens.store.DuckDBStore` (one file, the embedded default) and, later,
    ``PostgresStore``. Open one from a path or URL with `tunelens.store.open_store`.
    """

    url: str

    def put_model(self, record: ModelRecord) -> ModelRecord:
        """Create the model, or update its record (new classes, features, version).

        Features may be added; changing an existing feature's type raises `InputError`.
        Returns the stored record (with ``created_at`` set).
        """
        ...

    def get_model(self, name: str) -> ModelRecord | None:
        """The model's record, or None when unknown."""
        ...

    def list_models(self) -> list[ModelRecord]:
        """Every model, by name."""
        ...

    def append_predictions(self, model: str, rows: pa.Table) -> int:
        """Append canonical prediction rows; returns the count once durable."""
        ...

    def append_labels(self, model: str, rows: pa.Table) -> tuple[int, int]:
        """Append canonical label rows; returns (accepted, matched to a prediction)."""
        ...

    def scan(
        self,
        model: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Predictions in ``[since, until)`` joined with their labels, by timestamp."""
        ...

    def window_marks(
        self,
        model: str,
        window_s: int,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[datetime, tuple[int, int]]:
        """``{window start: (prediction rows, highest label seq applied)}`` per window of
        ``window_s`` seconds (epoch-aligned) holding predictions in ``[since, until)``.

        A mark changes with every prediction, label or relabel of its window; ``scan``
        returns a ``label_seq`` column when asked, so a reader can tell whether what it
        computed from a scan is still current.
        """
        ...

    def count(self, model: str) -> tuple[int, int]:
        """(prediction rows, label rows) stored for the model."""
        ...

    def append_resources(self, rows: pa.Table) -> int:
        """Append resource samples: ``timestamp``, ``model`` (string), ``cpu_percent``,
        ``rss_bytes`` (int64), ``gpu_util_percent``, ``gpu_memory_bytes`` (nullable)."""
        ...

    def scan_resources(
        self, model: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> pa.Table:
        """Resource samples of the model in ``[since, until)``, by timestamp."""
        ...

    def put_window_states(self, states: Sequence[WindowState]) -> None:
        """Insert or replace window states (keyed by model, window_s, start)."""
        ...

    def get_window_states(
        self,
        model: str,
        window_s: int,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[WindowState]:
        """Stored window states of that width whose start is in ``[since, until)``."""
        ...

    def put_alert(self, event: AlertEvent) -> None:
        """Insert the alert firing, or replace the stored one with the same ``id``."""
        ...

    def list_alerts(
        self,
        model: str | None = None,
        *,
        state: AlertState | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[AlertEvent]:
        """Alert firings (of one model, or all), newest ``fired_at`` first; ``since``
        keeps those fired at or after it, ``state`` those in that state."""
        ...

    def put_blob(self, model: str, kind: str, data: bytes) -> datetime:
        """Store (or replace) the model's document of that kind: its reference table
        (``"reference"``, Parquet bytes), its latest quality report (``"report"``, JSON).
        Returns when it was stored (UTC)."""
        ...

    def get_blob(self, model: str, kind: str) -> tuple[bytes, datetime] | None:
        """The model's document of that kind and when it was stored, or None."""
        ...

    def close(self) -> None:
        """Release the file or connection. Idempotent."""
        ...

    def __enter__(self) -> Store:
        """The store itself, so that ``with open_store(...) as store:`` closes it."""
        ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        ...
