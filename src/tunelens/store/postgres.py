"""`PostgresStore`: the store for teams, one PostgreSQL database shared by many processes.

Open it with ``open_store("postgresql://user@host:5432/db")`` (or ``--store`` on the
command line); several ``tunelens serve`` processes, the CLI and notebooks may use the
same database at once. Needs psycopg 3 (the ``server`` extra), imported only here.

Layout (schema version `SCHEMA_VERSION`, kept in ``tunelens_meta``), in the first
schema of the connection's ``search_path`` (``public`` by default; pass ``schema=`` to
use, and create, another one):

- ``tunelens_meta(key, value)``: ``schema_version``.
- ``models(id, name, task, version, classes, features, flops_per_prediction,
  created_at, updated_at, predictions, labels)``: one row per model. ``id`` comes from
  an identity sequence (``INSERT ... ON CONFLICT (name) DO NOTHING``, so two processes
  registering one model at once agree on it) and names the model's own tables; ``name``
  and every feature name and class label only ever reach SQL as parameters.
  ``predictions`` and ``labels`` count the model's rows: the next ``seq`` of each log.
- ``predictions_<id>``: ``seq`` (ingest order, primary key), the canonical columns,
  ``label`` and ``label_seq`` (the latest label of the row's id, materialised, and its
  ``seq`` in the labels log; null while none has arrived) and one column ``f_<k>`` per
  feature (``k`` is its position in ``models.features``). Indexed on ``id`` (the label
  join) and on ``("timestamp", seq)`` (window scans).
- ``labels_<id>(seq, id, label, timestamp)``: every label as it arrived, indexed on
  ``(id, seq)``: the latest label of an id is one index probe away, so there is no
  separate table of labels waiting for their prediction.
- ``resources``, ``window_states`` (keyed by model id, width and start; states and
  values as JSON text, so NaN survives) and ``alerts`` (keyed by the firing's id).

Writers of one model serialise on its ``models`` row (``SELECT ... FOR NO KEY UPDATE``
at the start of each append): ``seq`` then follows commit order, and a label and a
prediction of the same id written at the same moment by two processes always meet.
Readers take no locks. Nothing another process can change is cached in memory: each
call reads the model's row (one index lookup).

Bulk data moves as CSV through ``COPY``: `append_predictions` writes the arrow table
with pyarrow's CSV writer straight into ``COPY predictions_<id> FROM STDIN``, and `scan`
reads ``COPY (SELECT ...) TO STDOUT`` back with pyarrow's CSV reader, typed from the
model's schema (quoted empty strings stay strings, unquoted empty fields are nulls).

Timestamps are stored as UTC ``timestamp`` (microseconds, no zone) and come back as
``timestamp("us", "UTC")``, whatever the session's time zone.

Durability: every method is one transaction, committed before it returns. Schema
creation and migration run under a transaction-level advisory lock, so processes that
start together do not race on ``CREATE TABLE``.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, cast, get_args
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from tunelens.errors import InputError
from tunelens.store._base import AlertEvent, AlertState, ModelRecord, WindowState
from tunelens.store.duckdb import (
    _NAIVE_US,
    _UTC_US,
    _as_table,
    _aware,
    _check_blob,
    _check_record,
    _coerce,
    _json_default,
    _merge,
    _Model,
    _now,
    _require_no_nulls,
    _unknown_column,
    _utc,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

__all__ = ["SCHEMA_VERSION", "PostgresStore"]

_SQL_OF_FEATURE: Final[dict[str, str]] = {
    "float": "double precision",
    "int": "bigint",
    "bool": "boolean",
    "string": "text",
    "timestamp": "timestamp",
}
#: First key of every advisory lock tunelens takes (``'tl'``); the second is per schema.
_LOCK_SPACE: Final = 0x746C
_ALERT_STATES: Final = frozenset(get_args(AlertState))
_CSV_WRITE: Final = pacsv.WriteOptions(include_header=False)

Cursor = Any  # psycopg.Cursor[tuple[Any, ...]], imported lazily


def _target_sql(task: str) -> str:
    return "double precision" if task == "regression" else "integer"


# --------------------------------------------------------------------------- schema


def _migrate_1(cur: Cursor) -> None:
    """Version 1: the whole layout described in the module docstring."""
    cur.execute(
        "CREATE TABLE IF NOT EXISTS tunelens_meta (key text PRIMARY KEY, value text NOT NULL)"
    )
    cur.execute(
        """CREATE TABLE IF NOT EXISTS models (
            id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name text NOT NULL UNIQUE,
            task text NOT NULL,
            version text NOT NULL,
            classes text NOT NULL,
            features text NOT NULL,
            flops_per_prediction double precision,
            created_at timestamp NOT NULL,
            updated_at timestamp NOT NULL,
            predictions bigint NOT NULL DEFAULT 0,
            labels bigint NOT NULL DEFAULT 0)"""
    )
    cur.execute(
        """CREATE TABLE IF NOT EXISTS resources (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            "timestamp" timestamp NOT NULL,
            model text NOT NULL,
            cpu_percent double precision,
            rss_bytes bigint,
            gpu_util_percent double precision,
            gpu_memory_bytes bigint)"""
    )
    cur.execute(
        'CREATE INDEX IF NOT EXISTS resources_model_time ON resources (model, "timestamp", seq)'
    )
    cur.execute(
        """CREATE TABLE IF NOT EXISTS window_states (
            model_id integer NOT NULL,
            window_s integer NOT NULL,
            start timestamp NOT NULL,
            states text NOT NULL,
            "values" text NOT NULL,
            computed_at timestamp,
            PRIMARY KEY (model_id, window_s, start))"""
    )
    cur.execute(
        """CREATE TABLE IF NOT EXISTS alerts (
            id text PRIMARY KEY,
            model text NOT NULL,
            rule text NOT NULL,
            state text NOT NULL,
            fired_at timestamp NOT NULL,
            resolved_at timestamp,
            severity text NOT NULL,
            value double precision,
            window_start timestamp,
            evidence text NOT NULL,
            notified boolean NOT NULL)"""
    )
    cur.execute("CREATE INDEX IF NOT EXISTS alerts_fired ON alerts (fired_at)")
    cur.execute("CREATE INDEX IF NOT EXISTS alerts_model_fired ON alerts (model, fired_at)")


def _migrate_2(cur: Cursor) -> None:
    """Version 2: ``blobs``, one document per (model, kind): reference tables, reports."""
    cur.execute(
        """CREATE TABLE IF NOT EXISTS blobs (
            model text NOT NULL,
            kind text NOT NULL,
            created_at timestamp NOT NULL,
            data bytea NOT NULL,
            PRIMARY KEY (model, kind))"""
    )


#: Migration ``i`` takes a database from schema version ``i`` to ``i + 1``, inside the
#: one transaction that holds the schema's advisory lock. Append only.
MIGRATIONS: Final[tuple[Callable[[Cursor], None], ...]] = (_migrate_1, _migrate_2)
SCHEMA_VERSION: Final = len(MIGRATIONS)


# --------------------------------------------------------------------------- helpers


def _redact(url: str) -> str:
    """The URL without its password (in the user part or as a ``password=`` parameter)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}@{hosts}" if user else hosts
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, v) for k, v in pairs if k.lower() != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _one_line(err: BaseException) -> str:
    """A psycopg message (often several indented lines) as one line."""
    text = " ".join(part.strip() for part in str(err).splitlines() if part.strip())
    return text or type(err).__name__


def _csv_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, _CSV_WRITE)
    return sink.getvalue()


def _read_csv(data: bytes, types: list[pa.DataType]) -> list[pa.ChunkedArray]:
    """Columns of a ``COPY ... TO STDOUT (FORMAT csv)`` result, typed as given."""
    names = [f"c{k}" for k in range(len(types))]
    if not data or not types:
        return [pa.chunked_array([], t) for t in types]
    read_types = {n: (_NAIVE_US if t == _UTC_US else t) for n, t in zip(names, types, strict=True)}
    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=names, block_size=1 << 24),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=read_types,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        ),
    )
    return list(table.columns)


def _build(columns: list[pa.ChunkedArray], names: list[str], types: list[pa.DataType]) -> pa.Table:
    arrays = []
    for column, arrow_type in zip(columns, types, strict=True):
        if column.type != arrow_type:
            column = column.cast(arrow_type)
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=pa.schema(list(zip(names, types, strict=True))))


@dataclass(frozen=True)
class _Row:
    """A model's row: the layout (`_Model`) and the sizes of its two logs."""

    model: _Model
    predictions: int
    labels: int


def _ident(name: str) -> sql.Identifier:
    from psycopg import sql

    return sql.Identifier(name)


# --------------------------------------------------------------------------- store


class PostgresStore:
    """Models, predictions, labels and window states in a PostgreSQL database.

    One connection per object, guarded by a lock, serves every thread of the process;
    any number of processes may open the same database. Every method is one
    transaction, committed before it returns.

    Args:
        url: a libpq URL, ``postgresql://user[:password]@host[:port]/dbname[?...]``.
        schema: the PostgreSQL schema to keep the tables in, created when missing
            (default: the first schema of the ``search_path``, usually ``public``).
            Tests use a fresh schema each to stay apart on one database.

    Attributes:
        url: the URL without its password.
        schema: the schema in use.

    Raises:
        InputError: the URL is malformed, the server cannot be reached or refuses the
            login, or the database was written by a newer tunelens.

    Example:
        >>> store = PostgresStore("postgresql://root@127.0.0.1:5432/test")  # doctest: +SKIP
        >>> store.url  # doctest: +SKIP
        'postgresql://root@127.0.0.1:5432/test'
    """

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        if not isinstance(url, str):
            raise InputError("store", f"the URL is a {type(url).__name__}, expected a str")
        try:
            self.url = _redact(url)
        except ValueError as err:
            raise InputError("store", f"{url!r} is not a valid URL: {err}") from None
        if schema is not None and (not isinstance(schema, str) or not schema or "\x00" in schema):
            raise InputError("schema", f"is {schema!r}", "give a non-empty schema name")
        self._dsn = url
        self._wanted_schema = schema
        self._lock = threading.RLock()
        self._con: psycopg.Connection[Any] | None = None
        self._con = self._connect()
        try:
            self._migrate()
        except BaseException:
            self._con.close()
            self._con = None
            raise

    # ----------------------------------------------------------------- plumbing

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            import psycopg
            from psycopg import conninfo, sql
        except ImportError as err:  # pragma: no cover - the server extra is missing
            raise InputError(
                "store",
                "PostgreSQL needs psycopg 3",
                "pip install 'tunelens[server]'",
            ) from err
        try:
            params = conninfo.conninfo_to_dict(self._dsn)
        except psycopg.Error as err:
            raise InputError(
                "store", f"{self.url} is not a valid PostgreSQL URL: {_one_line(err)}"
            ) from None
        extra: dict[str, Any] = {}
        if "connect_timeout" not in params:
            extra["connect_timeout"] = 10
        if "application_name" not in params:
            extra["application_name"] = "tunelens"
        try:
            con = psycopg.connect(self._dsn, autocommit=False, **extra)
        except psycopg.Error as err:
            raise InputError(
                "store",
                f"cannot connect to {self.url}: {_one_line(err)}",
                "check the host, port, database and user, and that the server is running",
            ) from None
        try:
            with con.cursor() as cur:
                cur.execute("SET DateStyle = 'ISO, YMD'")
                cur.execute("SET TimeZone = 'UTC'")
                cur.execute("SET extra_float_digits = 1")
                cur.execute("SET client_encoding = 'UTF8'")
                if self._wanted_schema is not None:
                    cur.execute(
                        sql.SQL("SET search_path TO {}").format(sql.Identifier(self._wanted_schema))
                    )
            con.commit()
        except psycopg.Error as err:
            con.close()
            raise InputError("store", f"cannot set up {self.url}: {_one_line(err)}") from None
        return con

    def _migrate(self) -> None:
        from psycopg import sql

        with self._transaction() as cur:
            cur.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(coalesce(%s, current_schema(), '')))",
                [_LOCK_SPACE, self._wanted_schema],
            )
            if self._wanted_schema is not None:
                cur.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                        sql.Identifier(self._wanted_schema)
                    )
                )
            cur.execute("SELECT current_schema()")
            current = cur.fetchone()[0]
            if current is None:
                raise InputError(
                    "store",
                    f"{self.url} has no schema to keep tunelens' tables in (search_path)",
                    "pass schema=..., or create the schema the search_path names",
                )
            self.schema: str = current
            cur.execute(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() "
                "AND table_name = 'tunelens_meta'"
            )
            start = 0
            if cur.fetchone() is not None:
                cur.execute("SELECT value FROM tunelens_meta WHERE key = 'schema_version'")
                row = cur.fetchone()
                start = int(row[0]) if row is not None else 0
            if start > SCHEMA_VERSION:
                raise InputError(
                    "store",
                    f"{self.url} was written by a newer tunelens (store schema version "
                    f"{start}; this tunelens reads up to {SCHEMA_VERSION})",
                    "upgrade tunelens (pip install -U tunelens) to open it",
                )
            for version in range(start, SCHEMA_VERSION):
                MIGRATIONS[version](cur)
                cur.execute(
                    "INSERT INTO tunelens_meta VALUES ('schema_version', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [str(version + 1)],
                )

    def __repr__(self) -> str:
        return f"PostgresStore({self.url!r})"

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection. Idempotent."""
        with self._lock:
            if self._con is not None:
                con, self._con = self._con, None
                con.close()

    @property
    def closed(self) -> bool:
        """Whether `close` has been called."""
        return self._con is None

    @contextmanager
    def _transaction(self) -> Iterator[Cursor]:
        """A cursor in one transaction under the lock: committed on exit, else rolled back.

        A connection that broke (server restart) is replaced before the next call.
        """
        import psycopg

        with self._lock:
            if self._con is None:
                raise InputError("store", f"{self.url} is closed", "open it again")
            if self._con.broken:
                self._con.close()
                self._con = self._connect()
            con = self._con
            try:
                with con.cursor() as cur:
                    yield cur
            except BaseException:
                if not con.closed:
                    with suppress(psycopg.Error):  # the connection is gone
                        con.rollback()
                raise
            con.commit()

    def _row(self, cur: Cursor, name: str, *, lock: bool = False) -> _Row | None:
        """The model's row; ``lock`` holds it (and so the model's logs) until commit."""
        if not isinstance(name, str):
            raise InputError("model", f"is a {type(name).__name__}, expected a str")
        cur.execute(
            "SELECT id, name, task, version, classes, features, flops_per_prediction, "
            "created_at, predictions, labels FROM models WHERE name = %s"
            + (" FOR NO KEY UPDATE" if lock else ""),
            [name],
        )
        row = cur.fetchone()
        if row is None:
            return None
        record = ModelRecord(
            name=row[1],
            task=row[2],
            version=row[3],
            classes=tuple(json.loads(row[4])),
            features={n: t for n, t in json.loads(row[5])},
            flops_per_prediction=row[6],
            created_at=_aware(row[7]),
        )
        return _Row(_Model(int(row[0]), record), int(row[8]), int(row[9]))

    def _known(self, cur: Cursor, name: str, *, lock: bool = False) -> _Row:
        row = self._row(cur, name, lock=lock)
        if row is None:
            raise InputError(
                f"model {name!r}",
                "is not registered in this store",
                "register it first with store.put_model(ModelRecord(name, task, ...))",
            )
        return row

    @staticmethod
    def _copy_in(cur: Cursor, table: str, names: list[str], rows: pa.Table) -> None:
        """``COPY table (names) FROM STDIN`` of an arrow table, as CSV."""
        import psycopg
        from psycopg import sql

        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
            _ident(table), sql.SQL(", ").join(_ident(n) for n in names)
        )
        data = _csv_bytes(rows)
        try:
            with cur.copy(statement) as copy:
                copy.write(data)
        except psycopg.DataError as err:
            raise InputError("rows", f"were refused by PostgreSQL: {_one_line(err)}") from None

    @staticmethod
    def _copy_out(cur: Cursor, query: sql.Composable, params: Sequence[Any]) -> bytes:
        """The result of ``COPY (query) TO STDOUT`` as CSV bytes."""
        from psycopg import sql

        statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(query)
        chunks: list[bytes] = []
        with cur.copy(statement, params or None) as copy:
            while data := copy.read():
                chunks.append(bytes(data))
        return b"".join(chunks)

    # ----------------------------------------------------------------- models

    def put_model(self, record: ModelRecord) -> ModelRecord:
        """Create the model, or update its record (see `tunelens.store.DuckDBStore.put_model`).

        Features and classes only grow; the task cannot change.

        Raises:
            InputError: a feature changes type, the task changes, classes are reordered.
        """
        from psycopg import sql

        _check_record(record)
        with self._transaction() as cur:
            old = self._row(cur, record.name, lock=True)
            now = _now()
            if old is None:
                stored = record.evolve(
                    classes=tuple(record.classes),
                    features=dict(record.features),
                    flops_per_prediction=(
                        None
                        if record.flops_per_prediction is None
                        else float(record.flops_per_prediction)
                    ),
                    created_at=now.replace(tzinfo=UTC),
                )
                if stored.task == "binary" and len(stored.classes) > 2:
                    raise InputError(
                        "classes", f"a binary model has 2 classes, got {len(stored.classes)}"
                    )
                cur.execute(
                    "INSERT INTO models (name, task, version, classes, features, "
                    "flops_per_prediction, created_at, updated_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (name) DO NOTHING RETURNING id",
                    [
                        record.name,
                        record.task,
                        record.version,
                        json.dumps(list(stored.classes)),
                        json.dumps(list(stored.features.items())),
                        stored.flops_per_prediction,
                        now,
                        now,
                    ],
                )
                inserted = cur.fetchone()
                if inserted is not None:
                    self._create_tables(cur, _Model(int(inserted[0]), stored))
                    return stored
                # Another process registered it meanwhile: update its record instead.
                old = self._known(cur, record.name, lock=True)
            merged = _merge(old.model.record, record)
            new = _Model(old.model.id, merged)
            table = _ident(new.predictions)
            for score in new.score_columns()[len(old.model.score_columns()) :]:
                cur.execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN {} double precision").format(
                        table, _ident(score)
                    )
                )
            features = list(enumerate(merged.features.values()))
            for k, kind in features[len(old.model.record.features) :]:
                cur.execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                        table, _ident(f"f_{k}"), sql.SQL(_SQL_OF_FEATURE[kind])
                    )
                )
            cur.execute(
                "UPDATE models SET version = %s, classes = %s, features = %s, "
                "flops_per_prediction = %s, updated_at = %s WHERE id = %s",
                [
                    merged.version,
                    json.dumps(list(merged.classes)),
                    json.dumps(list(merged.features.items())),
                    merged.flops_per_prediction,
                    now,
                    new.id,
                ],
            )
            return merged

    @staticmethod
    def _create_tables(cur: Cursor, m: _Model) -> None:
        from psycopg import sql

        target = sql.SQL(_target_sql(m.record.task))
        double = sql.SQL("double precision")
        columns: list[sql.Composable] = [
            sql.SQL("seq bigint PRIMARY KEY"),
            sql.SQL("id text NOT NULL"),
            sql.SQL('"timestamp" timestamp NOT NULL'),
            sql.SQL("version text"),
            sql.SQL("prediction {}").format(target),
            *(sql.SQL("{} {}").format(_ident(s), double) for s in m.score_columns()),
            sql.SQL("latency_ms double precision"),
            sql.SQL("batch_size integer"),
            sql.SQL("label {}").format(target),
            sql.SQL("label_seq bigint"),
            *(
                sql.SQL("{} {}").format(_ident(f"f_{k}"), sql.SQL(_SQL_OF_FEATURE[kind]))
                for k, kind in enumerate(m.record.features.values())
            ),
        ]
        p, lab = _ident(m.predictions), _ident(m.labels)
        cur.execute(sql.SQL("CREATE TABLE {} ({})").format(p, sql.SQL(", ").join(columns)))
        cur.execute(sql.SQL("CREATE INDEX {} ON {} (id)").format(_ident(f"{m.predictions}_id"), p))
        cur.execute(
            sql.SQL('CREATE INDEX {} ON {} ("timestamp", seq)').format(
                _ident(f"{m.predictions}_time"), p
            )
        )
        cur.execute(
            sql.SQL(
                "CREATE TABLE {} (seq bigint PRIMARY KEY, id text NOT NULL, label {} NOT NULL, "
                '"timestamp" timestamp NOT NULL)'
            ).format(lab, target)
        )
        cur.execute(
            sql.SQL("CREATE INDEX {} ON {} (id, seq)").format(_ident(f"{m.labels}_id"), lab)
        )

    def get_model(self, name: str) -> ModelRecord | None:
        """The model's record, or None when unknown."""
        with self._transaction() as cur:
            row = self._row(cur, name)
        return None if row is None else row.model.record

    def list_models(self) -> list[ModelRecord]:
        """Every model, sorted by name (code point order)."""
        with self._transaction() as cur:
            cur.execute("SELECT name FROM models")
            names = sorted(r[0] for r in cur.fetchall())
            return [self._known(cur, n).model.record for n in names]

    # ----------------------------------------------------------------- predictions

    def append_predictions(self, model: str, rows: pa.Table) -> int:
        """Append canonical prediction rows (see `tunelens.store._base`).

        The same columns, casts and checks as `tunelens.store.DuckDBStore.append_predictions`;
        all rows or none are written. A row whose id already has a label takes it.

        Returns:
            The number of rows written, once they are committed.
        """
        from psycopg import sql

        table = _as_table(rows, "rows")
        with self._transaction() as cur:
            row = self._known(cur, model, lock=True)
            m = row.model
            schema = m.prediction_schema()
            known = {public for public, _, _ in schema}
            for name in table.column_names:
                if name not in known:
                    raise _unknown_column(name, m)
            if len(set(table.column_names)) != len(table.column_names):
                raise InputError("rows", "has duplicate column names", "name each column once")
            n = int(table.num_rows)
            base = row.predictions
            names: list[str] = ["seq"]
            arrays: list[pa.ChunkedArray | pa.Array] = [
                pa.array(np.arange(base, base + n, dtype=np.int64))
            ]
            for public, physical, arrow_type in schema:
                if public in table.column_names:
                    column = _coerce(table.column(public), public, arrow_type)
                    if public in ("id", "timestamp", "prediction"):
                        _require_no_nulls(column, public)
                elif public in ("id", "timestamp", "prediction"):
                    raise InputError(
                        f"column {public!r}",
                        f"is missing (expected {arrow_type})",
                        "add it to the table",
                    )
                elif public == "version":
                    column = pa.chunked_array([pa.repeat(m.record.version, n)], pa.string())
                else:
                    continue  # left out of the COPY: null
                names.append(physical)
                arrays.append(column.cast(_NAIVE_US) if arrow_type == _UTC_US else column)
            if n == 0:
                return 0
            self._copy_in(cur, m.predictions, names, pa.Table.from_arrays(arrays, names=names))
            cur.execute("UPDATE models SET predictions = %s WHERE id = %s", [base + n, m.id])
            if row.labels:
                # Ids labelled before (or logged again after their label): the latest
                # label in the log, one index probe per new row.
                p, lab = _ident(m.predictions), _ident(m.labels)
                cur.execute(
                    sql.SQL(
                        "UPDATE {p} SET label = l.label, label_seq = l.seq FROM ("
                        "SELECT DISTINCT ON (x.id) x.id, x.label, x.seq FROM {lab} x "
                        "WHERE x.id IN (SELECT id FROM {p} WHERE seq >= %s) "
                        "ORDER BY x.id, x.seq DESC) l WHERE {p}.seq >= %s AND {p}.id = l.id"
                    ).format(p=p, lab=lab),
                    [base, base],
                )
        return n

    def append_labels(self, model: str, rows: pa.Table) -> tuple[int, int]:
        """Append canonical label rows: ``id``, ``label`` and, optionally, ``timestamp``.

        Labels may arrive before their predictions, and an id may be labelled again
        (the latest label wins). A missing ``timestamp`` is taken as now.

        Returns:
            ``(accepted, matched)``: rows written, and how many of them have an id with
            a stored prediction.
        """
        from psycopg import sql

        table = _as_table(rows, "rows")
        with self._transaction() as cur:
            row = self._known(cur, model, lock=True)
            m = row.model
            allowed = {"id": pa.string(), "label": m.target_type, "timestamp": _UTC_US}
            for name in table.column_names:
                if name not in allowed:
                    raise InputError(
                        f"column {name!r}",
                        "is not a label column",
                        "give only id, label and timestamp",
                    )
            n = int(table.num_rows)
            columns: dict[str, pa.ChunkedArray] = {}
            for name, arrow_type in allowed.items():
                if name in table.column_names:
                    columns[name] = _coerce(table.column(name), name, arrow_type)
                    _require_no_nulls(columns[name], name)
                elif name == "timestamp":
                    columns[name] = pa.chunked_array([pa.repeat(_now(), n)], _NAIVE_US)
                else:
                    raise InputError(
                        f"column {name!r}", f"is missing (expected {arrow_type})", "add it"
                    )
            if n == 0:
                return 0, 0
            base = row.labels
            batch = pa.Table.from_arrays(
                [
                    pa.array(np.arange(base, base + n, dtype=np.int64)),
                    columns["id"],
                    columns["label"],
                    columns["timestamp"].cast(_NAIVE_US),
                ],
                names=["seq", "id", "label", "timestamp"],
            )
            self._copy_in(cur, m.labels, ["seq", "id", "label", "timestamp"], batch)
            cur.execute("UPDATE models SET labels = %s WHERE id = %s", [base + n, m.id])
            # The batch's latest label per id reaches every row of that id.
            cur.execute(
                sql.SQL(
                    "WITH b AS (SELECT DISTINCT ON (id) id, label, seq, "
                    "count(*) OVER (PARTITION BY id) AS n FROM {lab} WHERE seq >= %s "
                    "ORDER BY id, seq DESC), "
                    "u AS (UPDATE {p} SET label = b.label, label_seq = b.seq FROM b "
                    "WHERE {p}.id = b.id RETURNING {p}.id) "
                    "SELECT coalesce(sum(n), 0) FROM b WHERE id IN (SELECT id FROM u)"
                ).format(p=_ident(m.predictions), lab=_ident(m.labels)),
                [base],
            )
            matched = int(cur.fetchone()[0])
        return n, matched

    def scan(
        self,
        model: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Predictions with ``since <= timestamp < until``, with their latest labels.

        Args:
            model: a registered model's name.
            since: inclusive lower bound (a naive datetime is taken as UTC).
            until: exclusive upper bound.
            columns: prediction columns to return (default: all); ``label`` is always
                added last; ``label_seq`` on request.

        Returns:
            A table in the canonical layout plus ``label``, ordered by timestamp then
            ingest order.
        """
        from psycopg import sql

        lo, hi = _utc(since, "since"), _utc(until, "until")
        with self._transaction() as cur:
            m = self._known(cur, model).model
            schema = m.prediction_schema()
            if columns is None:
                chosen = schema
            else:
                if isinstance(columns, str):
                    raise InputError("columns", "is a str", "give a list of column names")
                by_name = {public: (public, physical, t) for public, physical, t in schema}
                chosen = []
                for name in dict.fromkeys(columns):
                    if name == "label":
                        continue
                    if name == "label_seq":
                        chosen.append(("label_seq", "label_seq", pa.int64()))
                        continue
                    if name not in by_name:
                        raise _unknown_column(name, m)
                    chosen.append(by_name[name])
            where, params = _bounds(lo, hi)
            select = sql.SQL(", ").join(
                [*(_ident(physical) for _, physical, _ in chosen), _ident("label")]
            )
            query = sql.SQL('SELECT {} FROM {} {} ORDER BY "timestamp", seq').format(
                select, _ident(m.predictions), where
            )
            data = self._copy_out(cur, query, params)
        names = [public for public, _, _ in chosen] + ["label"]
        types = [t for _, _, t in chosen] + [m.target_type]
        return _build(_read_csv(data, types), names, types)

    def window_marks(
        self,
        model: str,
        window_s: int,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[datetime, tuple[int, int]]:
        """``{window start: (prediction rows, latest label seq or -1)}`` per epoch-aligned
        window of ``window_s`` seconds holding predictions in ``[since, until)``."""
        from psycopg import sql

        if int(window_s) < 1:
            raise InputError("window_s", f"is {window_s!r}", "give whole seconds >= 1")
        lo, hi = _utc(since, "since"), _utc(until, "until")
        with self._transaction() as cur:
            m = self._known(cur, model).model
            where, params = _bounds(lo, hi)
            cur.execute(
                sql.SQL(
                    'SELECT floor(extract(epoch FROM "timestamp") / %s)::bigint AS w, count(*), '
                    "coalesce(max(label_seq), -1) FROM {} {} GROUP BY w"
                ).format(_ident(m.predictions), where),
                [int(window_s), *params],
            )
            rows = cur.fetchall()
        return {
            datetime.fromtimestamp(int(w) * int(window_s), tz=UTC): (int(k), int(seq))
            for w, k, seq in rows
        }

    def count(self, model: str) -> tuple[int, int]:
        """(prediction rows, label rows) stored for the model."""
        with self._transaction() as cur:
            row = self._known(cur, model)
        return row.predictions, row.labels

    # ----------------------------------------------------------------- resources

    _RESOURCE_COLUMNS: Final = (
        ("timestamp", _UTC_US),
        ("model", pa.string()),
        ("cpu_percent", pa.float64()),
        ("rss_bytes", pa.int64()),
        ("gpu_util_percent", pa.float64()),
        ("gpu_memory_bytes", pa.int64()),
    )

    def append_resources(self, rows: pa.Table) -> int:
        """Append resource samples (``timestamp`` and ``model`` required; the model need
        not be registered). Returns the number of rows written, once committed."""
        table = _as_table(rows, "rows")
        allowed = dict(self._RESOURCE_COLUMNS)
        for name in table.column_names:
            if name not in allowed:
                raise InputError(
                    f"column {name!r}",
                    "is not a resource column",
                    f"give only {', '.join(allowed)}",
                )
        names: list[str] = []
        arrays: list[pa.ChunkedArray] = []
        for name, arrow_type in self._RESOURCE_COLUMNS:
            if name in table.column_names:
                column = _coerce(table.column(name), name, arrow_type)
            elif name in ("timestamp", "model"):
                raise InputError(f"column {name!r}", f"is missing (expected {arrow_type})")
            else:
                continue
            if name in ("timestamp", "model"):
                _require_no_nulls(column, name)
            names.append(name)
            arrays.append(column.cast(_NAIVE_US) if arrow_type == _UTC_US else column)
        n = int(table.num_rows)
        if n == 0:
            return 0
        with self._transaction() as cur:
            self._copy_in(cur, "resources", names, pa.Table.from_arrays(arrays, names=names))
        return n

    def scan_resources(
        self, model: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> pa.Table:
        """Resource samples of the model with ``since <= timestamp < until``, by time."""
        from psycopg import sql

        lo, hi = _utc(since, "since"), _utc(until, "until")
        if not isinstance(model, str):
            raise InputError("model", f"is a {type(model).__name__}, expected a str")
        names = [name for name, _ in self._RESOURCE_COLUMNS]
        types = [t for _, t in self._RESOURCE_COLUMNS]
        where, params = _bounds(lo, hi, extra="model = %s")
        with self._transaction() as cur:
            cur.execute(
                sql.SQL('SELECT {} FROM resources {} ORDER BY "timestamp", seq').format(
                    sql.SQL(", ").join(_ident(c) for c in names), where
                ),
                [*params, model],
            )
            rows = cur.fetchall()
        arrays = [
            pa.chunked_array(
                [pa.array([r[k] for r in rows], _NAIVE_US if t == _UTC_US else t)],
            )
            for k, t in enumerate(types)
        ]
        return _build(arrays, names, types)

    # ----------------------------------------------------------------- windows

    def put_window_states(self, states: Sequence[WindowState]) -> None:
        """Insert or replace window states, keyed by (model, window_s, start).

        Within one call, the last state of a key wins. ``computed_at`` defaults to now.
        """
        if isinstance(states, WindowState):
            states = [states]
        if not states:
            return
        rows: dict[tuple[str, int, datetime], WindowState] = {}
        for s in states:
            if not isinstance(s, WindowState):
                raise InputError("states", f"holds a {type(s).__name__}, expected WindowState")
            if not isinstance(s.window_s, int) or s.window_s <= 0:
                raise InputError("window_s", f"is {s.window_s!r}", "give a positive int")
            start = cast(datetime, _utc(s.start, "start"))
            rows[(s.model, s.window_s, start)] = s
        now = _now()
        try:
            encoded = {
                key: (
                    json.dumps(s.states, default=_json_default),
                    json.dumps(s.values, default=_json_default),
                    _utc(s.computed_at, "computed_at") or now,
                )
                for key, s in rows.items()
            }
        except (TypeError, ValueError) as err:
            raise InputError("states", f"do not serialise to JSON: {err}") from err
        with self._transaction() as cur:
            ids = {name: self._known(cur, name).model.id for name in {key[0] for key in rows}}
            cur.executemany(
                'INSERT INTO window_states (model_id, window_s, start, states, "values", '
                "computed_at) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (model_id, window_s, start) DO UPDATE SET "
                'states = excluded.states, "values" = excluded."values", '
                "computed_at = excluded.computed_at",
                [
                    (ids[model], window_s, start, *encoded[(model, window_s, start)])
                    for model, window_s, start in rows
                ],
            )

    def get_window_states(
        self,
        model: str,
        window_s: int,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[WindowState]:
        """Stored window states of that width whose start is in ``[since, until)``, by start."""
        from psycopg import sql

        lo, hi = _utc(since, "since"), _utc(until, "until")
        with self._transaction() as cur:
            m = self._known(cur, model).model
            where, params = _bounds(lo, hi, column="start", extra="model_id = %s AND window_s = %s")
            cur.execute(
                sql.SQL(
                    'SELECT start, states, "values", computed_at FROM window_states {} '
                    "ORDER BY start"
                ).format(where),
                [*params, m.id, window_s],
            )
            result = cur.fetchall()
        return [
            WindowState(
                model=model,
                start=cast(datetime, _aware(start)),
                window_s=window_s,
                states=json.loads(states),
                values=json.loads(values),
                computed_at=_aware(computed_at),
            )
            for start, states, values, computed_at in result
        ]

    # ----------------------------------------------------------------- alerts

    def put_blob(self, model: str, kind: str, data: bytes) -> datetime:
        """Store (or replace) the model's document of that kind; returns when (UTC)."""
        _check_blob(model, kind, data)
        now = datetime.now(UTC).replace(tzinfo=None)
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO blobs (model, kind, created_at, data) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (model, kind) DO UPDATE SET created_at = excluded.created_at, "
                "data = excluded.data",
                [model, kind, now, bytes(data)],
            )
        return now.replace(tzinfo=UTC)

    def get_blob(self, model: str, kind: str) -> tuple[bytes, datetime] | None:
        """The model's document of that kind and when it was stored, or None."""
        _check_blob(model, kind, b"")
        with self._transaction() as cur:
            cur.execute(
                "SELECT data, created_at FROM blobs WHERE model = %s AND kind = %s",
                [model, kind],
            )
            row = cur.fetchone()
        if row is None:
            return None
        return bytes(row[0]), row[1].replace(tzinfo=UTC)

    def put_alert(self, event: AlertEvent) -> None:
        """Insert the alert firing, or replace the stored one with the same ``id``."""
        if not isinstance(event, AlertEvent):
            raise InputError("event", f"is a {type(event).__name__}, expected an AlertEvent")
        for name in ("id", "model", "rule", "severity", "evidence"):
            value = getattr(event, name)
            if not isinstance(value, str) or "\x00" in value:
                raise InputError(f"event.{name}", f"is {value!r}", "give a string without NUL")
        if not event.id:
            raise InputError("event.id", "is empty", "give every firing a unique id")
        if event.state not in _ALERT_STATES:
            raise InputError(
                "event.state",
                f"is {event.state!r}",
                f"use one of {', '.join(sorted(_ALERT_STATES))}",
            )
        fired_at = _utc(event.fired_at, "fired_at")
        if fired_at is None:
            raise InputError("fired_at", "is None", "give when the alert fired")
        value = None if event.value is None else float(event.value)
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO alerts (id, model, rule, state, fired_at, resolved_at, severity, "
                "value, window_start, evidence, notified) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (id) DO UPDATE SET model = excluded.model, rule = excluded.rule, "
                "state = excluded.state, fired_at = excluded.fired_at, "
                "resolved_at = excluded.resolved_at, severity = excluded.severity, "
                "value = excluded.value, window_start = excluded.window_start, "
                "evidence = excluded.evidence, notified = excluded.notified",
                [
                    event.id,
                    event.model,
                    event.rule,
                    event.state,
                    fired_at,
                    _utc(event.resolved_at, "resolved_at"),
                    event.severity,
                    value,
                    _utc(event.window_start, "window_start"),
                    event.evidence,
                    bool(event.notified),
                ],
            )

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
        from psycopg import sql

        clauses: list[sql.Composable] = []
        params: list[Any] = []
        if model is not None:
            if not isinstance(model, str):
                raise InputError("model", f"is a {type(model).__name__}, expected a str")
            clauses.append(sql.SQL("model = %s"))
            params.append(model)
        if state is not None:
            if state not in _ALERT_STATES:
                raise InputError(
                    "state", f"is {state!r}", f"use one of {', '.join(sorted(_ALERT_STATES))}"
                )
            clauses.append(sql.SQL("state = %s"))
            params.append(state)
        lo = _utc(since, "since")
        if lo is not None:
            clauses.append(sql.SQL("fired_at >= %s"))
            params.append(lo)
        tail = sql.SQL("")
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int):
                raise InputError("limit", f"is {limit!r}", "give a positive integer or None")
            tail = sql.SQL(" LIMIT %s")
            params.append(max(limit, 0))
        where = sql.SQL("WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
        with self._transaction() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT id, model, rule, state, fired_at, resolved_at, severity, value, "
                    "window_start, evidence, notified FROM alerts {} "
                    "ORDER BY fired_at DESC, id{}"
                ).format(where, tail),
                params,
            )
            rows = cur.fetchall()
        return [
            AlertEvent(
                id=r[0],
                model=r[1],
                rule=r[2],
                state=r[3],
                fired_at=cast(datetime, _aware(r[4])),
                resolved_at=_aware(r[5]),
                severity=r[6],
                value=r[7],
                window_start=_aware(r[8]),
                evidence=r[9],
                notified=bool(r[10]),
            )
            for r in rows
        ]


def _bounds(
    lo: datetime | None, hi: datetime | None, *, column: str = "timestamp", extra: str = ""
) -> tuple[sql.Composable, list[Any]]:
    """A ``WHERE`` clause for ``lo <= column < hi`` (and ``extra``), with its parameters."""
    from psycopg import sql

    clauses: list[sql.Composable] = []
    params: list[Any] = []
    if lo is not None:
        clauses.append(sql.SQL("{} >= %s").format(_ident(column)))
        params.append(lo)
    if hi is not None:
        clauses.append(sql.SQL("{} < %s").format(_ident(column)))
        params.append(hi)
    if extra:
        clauses.append(sql.SQL(extra))  # a fixed string of ours, never user input
    if not clauses:
        return sql.SQL(""), params
    return sql.SQL("WHERE ") + sql.SQL(" AND ").join(clauses), params
