"""The monitoring service: `create_app(store, settings)` builds the FastAPI application.

Routes (DESIGN.md, "HTTP"):

- ``POST /api/v1/models/{model}/predictions``: ``{"records": [{"id", "timestamp"?,
  "features"?, "prediction", "score"? | "scores"?, "latency_ms"?}]}``, or a columnar body
  (``Content-Type: application/vnd.apache.arrow.stream`` or
  ``application/vnd.apache.parquet``) with the columns ``id``, ``prediction``,
  optionally ``timestamp``, ``score`` or ``score_0..score_K``, ``latency_ms``, and the
  features as the remaining columns. Answers ``202 {"accepted": n}`` once the rows are
  durable (the store's write has committed).
- ``POST /api/v1/models/{model}/labels``: ``{"records": [{"id", "label", "timestamp"?}]}``
  or a columnar body -> ``202 {"accepted": n, "matched": m}``; 404 for an unknown model.
- ``GET /api/v1/models``, ``GET /api/v1/models/{model}/metrics?window=1h&since=&until=``,
  ``GET /api/v1/models/{model}/alerts``.
- ``GET /api/v1/models/{model}/versions`` (the version registry, ``tunelens.versions/1``)
  and ``GET /api/v1/models/{model}/loop`` (the closed loop's runs, ``tunelens.loop/1``).
- ``GET /`` the dashboard, ``GET /metrics`` Prometheus, ``GET /healthz``, ``/docs``.

Errors are ``{"error": str, "detail": ...}``: 400 for a body that cannot be read, 401
without the token (when ``TUNELENS_TOKEN`` or ``Settings.token`` is set, for writes; for
reads too with ``protect_reads``), 404 unknown model, 413 body over
``Settings.max_body_bytes``, 415 unknown content type, 422 invalid fields (the message
names the field, e.g. ``records[3].prediction``).

The app holds no module-level state: everything lives on ``app.state`` (the store, one
`Monitor` per model, the Prometheus registry), so several apps can share a process
(tests) and several processes can share a PostgreSQL store.
"""

from __future__ import annotations

import functools
import hmac
import io
import json
import math
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import pyarrow as pa
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tunelens.errors import InputError
from tunelens.monitor import Monitor
from tunelens.store import Store, open_store

__all__ = ["Settings", "create_app"]

TOKEN_ENV = "TUNELENS_TOKEN"
ARROW_TYPES = ("application/vnd.apache.arrow.stream", "application/vnd.apache.arrow.file")
PARQUET_TYPES = ("application/vnd.apache.parquet", "application/x-parquet")
_STATIC = Path(__file__).parent / "static"
_LOOP_SCHEMA = "tunelens.loop/1"
_RESERVED = {"id", "timestamp", "prediction", "score", "latency_ms", "label", "batch_size"}


@dataclass
class Settings:
    """How the server runs.

    Attributes:
        token: bearer token required for writes; None reads ``TUNELENS_TOKEN`` (unset:
            no authentication).
        protect_reads: require the token for reads too.
        max_body_bytes: larger request bodies get 413.
        metrics_window: the window of the gauges on ``/metrics``.
        rules: alert rules (see `tunelens.monitor.alerts`), evaluated every
            ``alert_interval_s`` seconds when not empty.
        webhook: URL that alert firings and resolutions are POSTed to.
        alert_interval_s: seconds between alert evaluations.
    """

    token: str | None = None
    protect_reads: bool = False
    max_body_bytes: int = 32 * 1024 * 1024
    metrics_window: str = "1h"
    rules: list[Any] = field(default_factory=list)
    webhook: str | None = None
    alert_interval_s: float = 60.0

    def resolved_token(self) -> str | None:
        token = self.token if self.token is not None else os.environ.get(TOKEN_ENV)
        return token or None


# ---------------------------------------------------------------- request bodies


# JSON integers exact in float64 (larger ids go as strings); epoch seconds and ISO times
# inside pandas' range
SafeInt = Annotated[int, Field(ge=-(2**53), le=2**53)]
EpochSeconds = Annotated[float, Field(ge=-9_000_000_000.0, le=9_000_000_000.0)]
Time = Annotated[datetime, AfterValidator(lambda t: _in_pandas_range(t))]


def _in_pandas_range(t: datetime) -> datetime:
    if not 1678 <= t.year <= 2261:
        raise ValueError("must be between the years 1678 and 2261")
    return t


def _not_a_number(value: Any) -> Any:
    """Query times are ISO-8601 only, as the schema says (pydantic would read "0.5" as epoch)."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        raise ValueError("give an ISO-8601 time such as 2026-01-31T12:00:00Z")
    return value


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
QueryTime = Annotated[Time, BeforeValidator(_not_a_number)]


class PredictionRecord(BaseModel):
    """One prediction."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str | SafeInt = Field(description="the prediction's id; labels join on it")
    prediction: bool | SafeInt | float | str = Field(
        description="the predicted class label, or the predicted value for regression"
    )
    timestamp: Time | EpochSeconds | None = Field(
        default=None, description="ISO-8601 time or epoch seconds; default: now"
    )
    features: dict[str, bool | SafeInt | float | str | None] | None = None
    score: float | None = Field(
        default=None, ge=0.0, le=1.0, description="binary: probability of the positive class"
    )
    scores: list[float] | None = Field(
        default=None, description="multiclass: probabilities in class order"
    )
    latency_ms: float | None = Field(default=None, ge=0.0)


class PredictionBatch(BaseModel):
    """A batch of predictions of one model."""

    model_config = ConfigDict(extra="forbid")

    records: list[PredictionRecord] = Field(min_length=1)


class LabelRecord(BaseModel):
    """One late label."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str | SafeInt
    label: bool | SafeInt | float | str
    timestamp: Time | EpochSeconds | None = None


class LabelBatch(BaseModel):
    """A batch of labels of one model."""

    model_config = ConfigDict(extra="forbid")

    records: list[LabelRecord] = Field(min_length=1)


class RulesBody(BaseModel):
    """Alert rules: objects with ``name``, ``kind`` and that kind's fields."""

    rules: list[dict[str, Any]]


class Accepted(BaseModel):
    accepted: int


class AcceptedLabels(BaseModel):
    accepted: int
    matched: int


class ErrorBody(BaseModel):
    error: str
    detail: Any = None


_PREDICTIONS = TypeAdapter(PredictionBatch)
_LABELS = TypeAdapter(LabelBatch)


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if part == "body":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def _validation_message(errors: list[Any]) -> str:
    first = errors[0]
    path = _field_path(tuple(first.get("loc", ())))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{path}: {first.get('msg', 'invalid')}{more}"


def _clean_errors(errors: list[Any]) -> list[dict[str, Any]]:
    out = []
    for e in errors[:20]:
        out.append(
            {
                "field": _field_path(tuple(e.get("loc", ()))),
                "message": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
        )
    return out


def _error(status: int, message: str, detail: Any = None) -> JSONResponse:
    return JSONResponse({"error": message, "detail": detail}, status_code=status)


# ---------------------------------------------------------------- body size limit


class _BodyLimit:
    """413 for bodies over ``limit`` bytes, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    size = 0
                if size > self.limit:
                    await _send_413(send, self.limit)
                    return
        # Read the whole body here, counting, before the app sees any of it: an exception
        # raised from inside `receive` would reach Starlette's ServerErrorMiddleware
        # (wrapped in an ExceptionGroup by BaseHTTPMiddleware's task group) and become a
        # 500 before this middleware could answer 413.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await _send_413(send, self.limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: wait for the disconnect

        await self.app(scope, replay, send)


async def _send_413(send: Send, limit: int) -> None:
    body = json.dumps(
        {"error": f"request body over {limit} bytes", "detail": {"max_body_bytes": limit}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------- group commit


class _GroupWriter:
    """Appends the prediction batches of concurrent requests in one transaction.

    The first request to arrive while no append is running leads: it appends every
    batch queued so far (its own included) in one `Store.append_predictions` call, then
    the batches that queued meanwhile, until the queue is empty; the others wait for
    their batch's result. One commit for several requests is several times cheaper than
    one each, and every request still returns only once its own rows are durable. If a
    grouped append fails, the batches are appended one by one so that each request gets
    its own outcome.
    """

    def __init__(self, store: Store, model: str) -> None:
        self.store = store
        self.model = model
        self._lock = threading.Lock()
        self._queue: list[tuple[pa.Table, Future[int]]] = []
        self._leading = False

    def write(self, table: pa.Table) -> int:
        done: Future[int] = Future()
        with self._lock:
            self._queue.append((table, done))
            lead = not self._leading
            if lead:
                self._leading = True
        if lead:
            self._drain()
        return done.result()

    def _drain(self) -> None:
        while True:
            with self._lock:
                batch, self._queue = self._queue, []
                if not batch:
                    self._leading = False
                    return
            self._append(batch)

    def _append(self, batch: list[tuple[pa.Table, Future[int]]]) -> None:
        if len(batch) > 1:
            try:
                merged = pa.concat_tables([t for t, _ in batch], promote_options="default")
                self.store.append_predictions(self.model, merged)
            except Exception:
                pass  # fall back to one append per request, each with its own outcome
            else:
                for table, done in batch:
                    done.set_result(table.num_rows)
                return
        for table, done in batch:
            try:
                done.set_result(self.store.append_predictions(self.model, table))
            except BaseException as exc:
                done.set_exception(exc)


# ---------------------------------------------------------------- state


class _Service:
    """What the routes share: the store, a monitor per model, counters."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._monitors: dict[str, Monitor] = {}
        self._lock = threading.Lock()
        self.model_locks: dict[str, threading.Lock] = {}
        self.writers: dict[str, _GroupWriter] = {}
        self.alerts: Any = None

    def monitor(self, model: str, *, create: bool) -> Monitor:
        with self._lock:
            found = self._monitors.get(model)
            if found is not None:
                return found
            if not create and self.store.get_model(model) is None:
                raise HTTPException(404, f"model {model!r} is not in the store")
            monitor = Monitor(model, store=self.store, resources=False)
            self._monitors[model] = monitor
            self.model_locks[model] = threading.Lock()
            return monitor

    def writer(self, model: str) -> _GroupWriter:
        with self._lock:
            found = self.writers.get(model)
            if found is None:
                found = self.writers[model] = _GroupWriter(self.store, model)
            return found

    def lock(self, model: str) -> threading.Lock:
        with self._lock:
            return self.model_locks.setdefault(model, threading.Lock())

    def start_alerts(self) -> None:
        """Start the alert loop when there are rules (idempotent)."""
        with self._lock:
            if self.alerts is None and self.settings.rules:
                from tunelens.server.alerting import AlertLoop

                self.alerts = AlertLoop(self)
                self.alerts.start()

    def stop_alerts(self) -> None:
        with self._lock:
            loop, self.alerts = self.alerts, None
        if loop is not None:
            loop.stop()

    def restart_alerts(self) -> None:
        self.stop_alerts()
        self.start_alerts()

    def close(self) -> None:
        self.stop_alerts()
        with self._lock:
            for monitor in self._monitors.values():
                monitor.close()
            self._monitors.clear()


# ---------------------------------------------------------------- conversions


def _read_columnar(body: bytes, content_type: str) -> pa.Table:
    try:
        if content_type in ARROW_TYPES:
            if content_type.endswith("file"):
                return pa.ipc.open_file(pa.BufferReader(body)).read_all()
            return pa.ipc.open_stream(pa.BufferReader(body)).read_all()
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(body))
    except (pa.ArrowInvalid, OSError) as exc:
        kind = "Arrow IPC stream" if content_type in ARROW_TYPES else "Parquet file"
        raise HTTPException(400, f"body is not a readable {kind}: {exc}") from None


def _prediction_columns(table: pa.Table) -> dict[str, Any]:
    names = table.column_names
    for required in ("id", "prediction"):
        if required not in names:
            raise InputError(required, "no such column in the body", "send id and prediction")
    score_k = sorted(
        (n for n in names if n.startswith("score_") and n[6:].isdigit()), key=lambda n: int(n[6:])
    )
    scores: Any = None
    if "score" in names:
        scores = table.column("score").to_numpy(zero_copy_only=False)
    elif score_k:
        scores = np.column_stack(
            [table.column(n).to_numpy(zero_copy_only=False).astype(np.float64) for n in score_k]
        )
    feature_names = [n for n in names if n not in _RESERVED and n not in score_k]
    return {
        "ids": table.column("id"),
        "predictions": table.column("prediction"),
        "scores": scores,
        "latency_ms": table.column("latency_ms") if "latency_ms" in names else None,
        "timestamps": table.column("timestamp") if "timestamp" in names else None,
        "features": table.select(feature_names) if feature_names else None,
    }


def _json_prediction_columns(batch: PredictionBatch) -> dict[str, Any]:
    records = batch.records
    n = len(records)
    ids = [r.id for r in records]
    if len({type(i) for i in ids}) > 1:
        ids = [str(i) for i in ids]
    predictions = [r.prediction for r in records]
    has_score = [r.score is not None for r in records]
    has_scores = [r.scores is not None for r in records]
    scores: Any = None
    if any(has_score) and any(has_scores):
        raise InputError("records", "mix score and scores", "send one form for the whole batch")
    if any(has_score):
        if not all(has_score):
            i = has_score.index(False)
            raise InputError(f"records[{i}].score", "is missing while other records have one")
        scores = np.array([r.score for r in records], dtype=np.float64)
    elif any(has_scores):
        if not all(has_scores):
            i = has_scores.index(False)
            raise InputError(f"records[{i}].scores", "is missing while other records have them")
        widths = {len(r.scores or ()) for r in records}
        if len(widths) != 1:
            raise InputError("records[*].scores", "have different lengths", "one per class")
        scores = np.array([r.scores for r in records], dtype=np.float64)
    latency: Any = None
    if any(r.latency_ms is not None for r in records):
        latency = np.array(
            [math.nan if r.latency_ms is None else r.latency_ms for r in records], np.float64
        )
    timestamps: Any = None
    if any(r.timestamp is not None for r in records):
        now = datetime.now(UTC)
        timestamps = [
            now
            if r.timestamp is None
            else datetime.fromtimestamp(r.timestamp, UTC)
            if isinstance(r.timestamp, int | float)
            else r.timestamp
            for r in records
        ]
    features: Any = None
    if any(r.features for r in records):
        rows = [r.features or {} for r in records]
        try:
            features = pa.Table.from_pylist(rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types in a column
            features = pd.DataFrame.from_records(rows, nrows=n)
    return {
        "ids": ids,
        "predictions": predictions,
        "scores": scores,
        "latency_ms": latency,
        "timestamps": timestamps,
        "features": features,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime | pd.Timestamp):
        return value.isoformat()
    return value


# ---------------------------------------------------------------- the app


def create_app(store: Store | str | os.PathLike[str], settings: Settings | None = None) -> FastAPI:
    """Build the monitoring service around a store.

    Args:
        store: an open `Store`, or a path or URL for `tunelens.store.open_store` (then
            the app owns it and closes it at shutdown).
        settings: `Settings`; default settings when None.

    Returns:
        The FastAPI application (serve it with uvicorn, or test it with
        ``fastapi.testclient.TestClient``).
    """
    settings = settings or Settings()
    owns_store = not isinstance(store, Store)
    opened = open_store(store)
    service = _Service(opened, settings)
    token = settings.resolved_token()
    from tunelens.server.prometheus import Telemetry

    telemetry = Telemetry(service)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        service.start_alerts()
        try:
            yield
        finally:
            service.close()
            if owns_store:
                opened.close()

    app = FastAPI(
        title="tunelens",
        summary="Model monitoring: predictions, late labels, windowed metrics, alerts.",
        version=_version(),
        lifespan=lifespan,
        responses={
            401: {"model": ErrorBody, "description": "missing or wrong bearer token"},
            413: {"model": ErrorBody, "description": "body too large"},
        },
    )
    app.state.service = service
    app.state.telemetry = telemetry

    def authorise(request: Request, *, write: bool) -> None:
        if token is None or (not write and not settings.protect_reads):
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        )
        if not ok:
            raise HTTPException(401, "missing or wrong bearer token")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = _error(exc.status_code, str(exc.detail))
        if exc.status_code == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        return _error(422, _validation_message(errors), _clean_errors(errors))

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError) -> JSONResponse:
        return _error(422, str(exc), {"field": exc.field})

    @app.middleware("http")
    async def count_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        telemetry.observe(request.method, path, response.status_code, started)
        return response

    async def body_of(request: Request) -> tuple[bytes, str]:
        content_type = request.headers.get("content-type", "application/json")
        kind = content_type.split(";")[0].strip().lower()
        body = await request.body()
        if not body:
            raise HTTPException(400, "empty body: send a JSON object or a columnar table")
        return body, kind

    def validated(adapter: TypeAdapter[Any], body: bytes) -> Any:
        try:
            return adapter.validate_json(body)
        except ValidationError as exc:
            errors = exc.errors()
            if errors and errors[0].get("type") == "json_invalid":
                raise HTTPException(400, f"body is not valid JSON: {errors[0]['msg']}") from None
            raise RequestValidationError(errors) from None

    prediction_body = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/PredictionBatch"}},
                ARROW_TYPES[0]: {"schema": {"type": "string", "format": "binary"}},
                PARQUET_TYPES[0]: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    }
    label_body = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/LabelBatch"}},
                ARROW_TYPES[0]: {"schema": {"type": "string", "format": "binary"}},
                PARQUET_TYPES[0]: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    }

    @app.post(
        "/api/v1/models/{model:path}/predictions",
        status_code=202,
        response_model=Accepted,
        openapi_extra=prediction_body,
        responses={
            400: {"model": ErrorBody},
            415: {"model": ErrorBody},
            422: {"model": ErrorBody},
        },
        tags=["ingest"],
    )
    async def post_predictions(model: str, request: Request) -> Accepted:
        """Log predictions; answers once they are durable."""
        authorise(request, write=True)
        body, kind = await body_of(request)
        return await run_in_threadpool(ingest_predictions, model, body, kind)

    def ingest_predictions(model: str, body: bytes, kind: str) -> Accepted:
        _check_model_name(model)
        if kind in ARROW_TYPES + PARQUET_TYPES:
            columns = _prediction_columns(_read_columnar(body, kind))
        elif kind in ("application/json", ""):
            columns = _json_prediction_columns(validated(_PREDICTIONS, body))
        else:
            raise HTTPException(415, f"unsupported content type {kind!r}")
        monitor = service.monitor(model, create=True)
        with service.lock(model):  # validation may register classes or features
            table = monitor._prepare(
                columns["ids"],
                columns["features"],
                columns["predictions"],
                columns["scores"],
                columns["latency_ms"],
                columns["timestamps"],
                None,
                False,
            )
        written = service.writer(model).write(table)
        telemetry.rows(model, "predictions", written)
        return Accepted(accepted=written)

    @app.post(
        "/api/v1/models/{model:path}/labels",
        status_code=202,
        response_model=AcceptedLabels,
        openapi_extra=label_body,
        responses={
            400: {"model": ErrorBody},
            404: {"model": ErrorBody},
            415: {"model": ErrorBody},
            422: {"model": ErrorBody},
        },
        tags=["ingest"],
    )
    async def post_labels(model: str, request: Request) -> AcceptedLabels:
        """Log late labels, joined to predictions by id."""
        authorise(request, write=True)
        body, kind = await body_of(request)
        return await run_in_threadpool(ingest_labels, model, body, kind)

    def ingest_labels(model: str, body: bytes, kind: str) -> AcceptedLabels:
        monitor = service.monitor(model, create=False)
        if kind in ARROW_TYPES + PARQUET_TYPES:
            table = _read_columnar(body, kind)
            for required in ("id", "label"):
                if required not in table.column_names:
                    raise InputError(required, "no such column in the body", "send id and label")
            ids: Any = table.column("id")
            labels: Any = table.column("label")
            stamps: Any = table.column("timestamp") if "timestamp" in table.column_names else None
        elif kind in ("application/json", ""):
            batch: LabelBatch = validated(_LABELS, body)
            ids = [r.id for r in batch.records]
            if len({type(i) for i in ids}) > 1:
                ids = [str(i) for i in ids]
            labels = [r.label for r in batch.records]
            stamps = None
            if any(r.timestamp is not None for r in batch.records):
                now = datetime.now(UTC)
                stamps = [
                    now
                    if r.timestamp is None
                    else datetime.fromtimestamp(r.timestamp, UTC)
                    if isinstance(r.timestamp, int | float)
                    else r.timestamp
                    for r in batch.records
                ]
        else:
            raise HTTPException(415, f"unsupported content type {kind!r}")
        with service.lock(model):
            accepted, matched = monitor.log_labels(ids, labels, stamps)
        telemetry.rows(model, "labels", accepted)
        return AcceptedLabels(accepted=accepted, matched=matched)

    @app.get("/api/v1/models", tags=["read"])
    def list_models(request: Request) -> dict[str, Any]:
        """Every model with its task, version, classes, features and row counts."""
        authorise(request, write=False)
        out = []
        for record in service.store.list_models():
            predictions, labels = service.store.count(record.name)
            out.append(
                {
                    "name": record.name,
                    "task": record.task,
                    "version": record.version,
                    "classes": _jsonable(list(record.classes)),
                    "features": dict(record.features),
                    "predictions": predictions,
                    "labels": labels,
                    "created_at": _jsonable(record.created_at),
                }
            )
        return {"models": out}

    @app.get(
        "/api/v1/models/{model:path}/metrics",
        tags=["read"],
        responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    )
    def get_metrics(
        model: str,
        request: Request,
        window: str = "1h",
        since: QueryTime | None = None,
        until: QueryTime | None = None,
    ) -> dict[str, Any]:
        """The windowed metrics: one object per window holding predictions."""
        authorise(request, write=False)
        monitor = service.monitor(model, create=False)
        frame = monitor.metrics(window=window, since=since, until=until)
        return {"model": model, "window": window, "windows": _records(frame)}

    @app.get(
        "/api/v1/models/{model:path}/alerts",
        tags=["read"],
        responses={404: {"model": ErrorBody}},
    )
    def get_alerts(model: str, request: Request, limit: int = 100) -> dict[str, Any]:
        """The model's alert firings, newest first."""
        authorise(request, write=False)
        if service.store.get_model(model) is None:
            raise HTTPException(404, f"model {model!r} is not in the store")
        limit = max(1, min(int(limit), 10_000))
        events = service.store.list_alerts(model, limit=limit)
        return {"model": model, "alerts": [_jsonable(e.__dict__) for e in events]}

    # ------------------------------------------------------------ versions and the loop

    @app.get(
        "/api/v1/models/{model:path}/versions",
        tags=["read"],
        responses={404: {"model": ErrorBody}},
    )
    def get_versions(model: str, request: Request) -> dict[str, Any]:
        """The model's versions with their lineage, promotions and rollbacks, and the
        champion (``tunelens.versions/1``); no versions and no events when none is
        recorded."""
        authorise(request, write=False)
        if service.store.get_model(model) is None:
            raise HTTPException(404, f"model {model!r} is not in the store")
        from tunelens.store.versions import VersionRegistry

        doc: dict[str, Any] = _jsonable(VersionRegistry(service.store, model).to_dict())
        return doc

    @app.get(
        "/api/v1/models/{model:path}/loop",
        tags=["read"],
        responses={404: {"model": ErrorBody}},
    )
    def get_loop(model: str, request: Request) -> dict[str, Any]:
        """The closed loop's runs of the model, oldest first (``tunelens.loop/1``): the
        trigger, findings, plan, challenger's check and decision of each; an empty list
        when the loop never ran."""
        authorise(request, write=False)
        if service.store.get_model(model) is None:
            raise HTTPException(404, f"model {model!r} is not in the store")
        found = service.store.get_blob(model, "loop")
        runs: list[Any] = []
        if found is not None:
            stored = json.loads(found[0])
            listed = stored.get("runs") if isinstance(stored, dict) else None
            runs = [r for r in listed or [] if isinstance(r, dict)]
        return {"schema": _LOOP_SCHEMA, "model": model, "runs": _jsonable(runs)}

    # ------------------------------------------------------------ reference, drift, report

    columnar_body = {
        "requestBody": {
            "required": True,
            "content": {
                PARQUET_TYPES[0]: {"schema": {"type": "string", "format": "binary"}},
                ARROW_TYPES[0]: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    }

    @app.put(
        "/api/v1/models/{model:path}/reference",
        status_code=201,
        openapi_extra=columnar_body,
        responses={
            400: {"model": ErrorBody},
            404: {"model": ErrorBody},
            415: {"model": ErrorBody},
            422: {"model": ErrorBody},
        },
        tags=["reference"],
    )
    async def put_reference(model: str, request: Request) -> dict[str, Any]:
        """Register the model's reference data (Parquet or Arrow IPC): its feature columns,
        and ``label``, ``prediction`` and ``score`` (or ``score_<k>``) for quality reports.
        Drift is measured against it."""
        authorise(request, write=True)
        body, kind = await body_of(request)
        return await run_in_threadpool(store_reference, model, body, kind)

    def store_reference(model: str, body: bytes, kind: str) -> dict[str, Any]:
        if service.store.get_model(model) is None:
            raise HTTPException(404, f"model {model!r} is not in the store")
        if kind not in ARROW_TYPES + PARQUET_TYPES:
            raise HTTPException(415, f"send the reference as Parquet or Arrow IPC, not {kind!r}")
        table = _read_columnar(body, kind)
        if table.num_rows == 0:
            raise InputError("reference", "has no rows", "send at least one row")
        import pyarrow.parquet as pq

        sink = io.BytesIO()
        pq.write_table(table, sink)
        when = service.store.put_blob(model, "reference", sink.getvalue())
        return {
            "model": model,
            "rows": table.num_rows,
            "columns": table.column_names,
            "registered_at": when.isoformat(),
        }

    @app.get(
        "/api/v1/models/{model:path}/drift",
        tags=["read"],
        responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    )
    def get_drift(
        model: str,
        request: Request,
        since: QueryTime | None = None,
        until: QueryTime | None = None,
    ) -> dict[str, Any]:
        """Drift of every feature (and of the score) in ``[since, until)`` against the
        model's reference; ``reference`` is null until one is registered."""
        authorise(request, write=False)
        record = service.store.get_model(model)
        if record is None:
            raise HTTPException(404, f"model {model!r} is not in the store")
        from tunelens.server.quality import drift_document

        return drift_document(service.store, record, since, until)

    @app.get(
        "/api/v1/models/{model:path}/report", tags=["read"], responses={404: {"model": ErrorBody}}
    )
    def get_report(model: str, request: Request) -> dict[str, Any]:
        """The latest quality report (``tunelens.report/1``), or null."""
        authorise(request, write=False)
        if service.store.get_model(model) is None:
            raise HTTPException(404, f"model {model!r} is not in the store")
        found = service.store.get_blob(model, "report")
        if found is None:
            return {"model": model, "created_at": None, "report": None}
        return {"model": model, "created_at": found[1].isoformat(), "report": json.loads(found[0])}

    @app.post(
        "/api/v1/models/{model:path}/report",
        status_code=201,
        tags=["reference"],
        responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    )
    def post_report(
        model: str,
        request: Request,
        since: QueryTime | None = None,
        until: QueryTime | None = None,
    ) -> dict[str, Any]:
        """Run the quality analysis of ``[since, until)`` (labelled rows) against the
        reference, store it as the latest report and return it."""
        authorise(request, write=True)
        record = service.store.get_model(model)
        if record is None:
            raise HTTPException(404, f"model {model!r} is not in the store")
        from tunelens.server.quality import report_document

        doc = report_document(service.store, record, since, until)
        when = service.store.put_blob(model, "report", json.dumps(doc).encode())
        return {"model": model, "created_at": when.isoformat(), "report": doc}

    # ------------------------------------------------------------ alert rules

    @app.get("/api/v1/rules", tags=["alerts"])
    def get_rules(request: Request) -> dict[str, Any]:
        """The alert rules in force."""
        authorise(request, write=False)
        return {"rules": [rule.to_dict() for rule in service.settings.rules]}

    @app.put(
        "/api/v1/rules",
        tags=["alerts"],
        responses={400: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    )
    def put_rules(request: Request, payload: RulesBody) -> dict[str, Any]:
        """Replace the alert rules (same fields as the TOML file's ``[[rule]]`` tables)."""
        authorise(request, write=True)
        from tunelens.monitor.alerts import rules_from_dicts

        rules = rules_from_dicts(payload.rules)
        service.settings.rules = list(rules)
        service.restart_alerts()
        return {"rules": [rule.to_dict() for rule in rules]}

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, Any]:
        """Liveness: the store answers."""
        service.store.list_models()
        return {"status": "ok", "store": service.store.url}

    @app.get("/metrics", tags=["service"], response_class=Response)
    def prometheus(request: Request) -> Response:
        """Prometheus text exposition: window metrics per model and version, requests."""
        authorise(request, write=False)
        data, content_type = telemetry.exposition()
        return Response(content=data, media_type=content_type)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard() -> Response:
        index = _STATIC / "index.html"
        if not index.exists():
            return HTMLResponse("<h1>tunelens</h1><p>The dashboard is not installed.</p>")
        return FileResponse(index, media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name == "plotly.min.js":
            return Response(_plotly_js(), media_type="application/javascript")
        path = (_STATIC / name).resolve()
        if path.parent != _STATIC.resolve() or not path.is_file():
            raise HTTPException(404, f"no static file {name!r}")
        media = {
            ".js": "application/javascript",
            ".css": "text/css",
            ".html": "text/html",
            ".png": "image/png",
        }.get(path.suffix, "application/octet-stream")
        return FileResponse(path, media_type=media)

    def openapi() -> dict[str, Any]:
        """FastAPI's schema plus the JSON bodies the ingestion routes parse themselves."""
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for body_model in (PredictionBatch, LabelBatch):
            generated = body_model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, definition in generated.pop("$defs", {}).items():
                components[name] = definition
            components[body_model.__name__] = generated
        error_ref = {"$ref": "#/components/schemas/ErrorBody"}
        components.setdefault("ErrorBody", ErrorBody.model_json_schema())
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                unprocessable = operation.get("responses", {}).get("422")
                if unprocessable is not None:  # FastAPI's default: HTTPValidationError
                    unprocessable["content"] = {"application/json": {"schema": error_ref}}
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return _BodyLimit(app, settings.max_body_bytes)  # type: ignore[return-value]


def _check_model_name(model: str) -> None:
    if not model or len(model) > 512:
        raise InputError("model", "must be 1 to 512 characters")
    if any(ord(c) < 32 for c in model):
        raise InputError("model", "holds control characters")


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    flat = frame.reset_index()
    out: list[dict[str, Any]] = []
    for row in flat.to_dict(orient="records"):
        out.append({str(k): _jsonable(v) for k, v in row.items()})
    return out


def _version() -> str:
    from tunelens import __version__

    return __version__


@functools.cache
def _plotly_js() -> bytes:
    import plotly.offline  # type: ignore[import-untyped]

    source: str = plotly.offline.get_plotlyjs()
    return source.encode("utf-8")
