"""`PostgresStore`: the shared `Store` contract plus what only a shared server does.

Needs a PostgreSQL server: set ``TUNELENS_TEST_POSTGRES`` to its URL (CI uses
``postgresql://root@127.0.0.1:5432/test``); without it every test here is skipped.
Each test keeps its tables in fresh schemas of that database (``tl_test_<random>_<k>``,
one per storage name) and drops them afterwards, so runs repeat and may overlap.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tunelens.errors import InputError
from tunelens.store import ModelRecord, Store, WindowState, open_store
from tunelens.testing.store import T0, MakeStore, StoreContract, labels, predictions

PG_URL = os.environ.get("TUNELENS_TEST_POSTGRES", "")
pytestmark = pytest.mark.skipif(
    not PG_URL,
    reason="set TUNELENS_TEST_POSTGRES=postgresql://user@host:5432/db to run the PostgreSQL tests",
)

if PG_URL:
    psycopg = pytest.importorskip("psycopg")
    from psycopg import sql

    from tunelens.store.postgres import SCHEMA_VERSION, PostgresStore, _redact


class _Schemas:
    """Fresh schema names for one test, dropped when it ends."""

    def __init__(self) -> None:
        self.prefix = f"tl_test_{uuid.uuid4().hex[:12]}"
        self.names: dict[str, str] = {}

    def __call__(self, name: str = "default") -> str:
        return self.names.setdefault(name, f"{self.prefix}_{len(self.names)}")

    def drop(self) -> None:
        if not self.names:
            return
        with psycopg.connect(PG_URL, autocommit=True) as con:
            for schema in self.names.values():
                con.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )


@pytest.fixture
def schemas() -> Iterator[_Schemas]:
    made = _Schemas()
    yield made
    made.drop()


@pytest.fixture
def make_store(schemas: _Schemas) -> Iterator[MakeStore]:
    opened: list[Store] = []

    def make(name: str = "default") -> Store:
        store = PostgresStore(PG_URL, schema=schemas(name))
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


class TestPostgresStoreContract(StoreContract):
    """Every contract test, each in schemas of its own."""


# --------------------------------------------------------------------- sharing


def test_two_connections_see_each_others_rows(schemas: _Schemas) -> None:
    """Two stores (two connections, as two processes would) write and read concurrently."""
    schema = schemas()
    first, second = PostgresStore(PG_URL, schema=schema), PostgresStore(PG_URL, schema=schema)
    try:
        first.put_model(ModelRecord("m", "binary", classes=(0, 1)))
        assert second.get_model("m") is not None
        second.put_model(ModelRecord("m", "binary", features={"x": "float"}))
        assert first.get_model("m").features == {"x": "float"}  # type: ignore[union-attr]
        errors: list[BaseException] = []
        rounds, batch = 20, 50

        def write_predictions() -> None:
            try:
                for k in range(rounds):
                    first.append_predictions("m", predictions(batch, prefix=f"b{k}-"))
                    first.scan("m", columns=["id"])
            except BaseException as err:  # pragma: no cover - reported below
                errors.append(err)

        def write_labels() -> None:  # before, during and after their predictions
            try:
                for k in range(rounds):
                    ids = [f"b{j}-{i}" for j in (k - 1, k, k + 1) for i in range(0, batch, 3)]
                    second.append_labels("m", labels(ids, [(i + k) % 2 for i in range(len(ids))]))
                    second.scan("m", columns=["id"])
            except BaseException as err:  # pragma: no cover - reported below
                errors.append(err)

        threads = [
            threading.Thread(target=write_predictions),
            threading.Thread(target=write_labels),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert first.count("m") == second.count("m")
        assert first.count("m")[0] == rounds * batch
        one, two = first.scan("m"), second.scan("m")
        assert one.equals(two)
        # every row carries the latest label of its id in the labels log
        with psycopg.connect(PG_URL) as con:
            con.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            latest = dict(
                con.execute(
                    "SELECT DISTINCT ON (id) id, label FROM labels_1 ORDER BY id, seq DESC"
                ).fetchall()
            )
        ids = one["id"].to_pylist()
        assert one["label"].to_pylist() == [latest.get(i) for i in ids]
        assert one["label"].null_count < one.num_rows
    finally:
        first.close()
        second.close()


def test_stores_opening_a_fresh_schema_at_once(schemas: _Schemas) -> None:
    """Schema creation under the advisory lock: no CREATE TABLE race."""
    schema = schemas()
    stores: list[Any] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            stores.append(PostgresStore(PG_URL, schema=schema))
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        stores[0].put_model(ModelRecord("m", "regression"))
        assert all(s.get_model("m") is not None for s in stores)
        with psycopg.connect(PG_URL) as con:
            version = con.execute(
                sql.SQL("SELECT value FROM {}.tunelens_meta").format(sql.Identifier(schema))
            ).fetchall()
        assert version == [(str(SCHEMA_VERSION),)]
    finally:
        for store in stores:
            store.close()


def test_registering_one_model_from_two_connections_at_once(schemas: _Schemas) -> None:
    schema = schemas()
    stores = [PostgresStore(PG_URL, schema=schema) for _ in range(4)]
    errors: list[BaseException] = []

    def register(k: int) -> None:
        try:
            stores[k].put_model(ModelRecord("m", "binary", features={f"x{k}": "float"}))
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=register, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        record = stores[0].get_model("m")
        assert record is not None and sorted(record.features) == ["x0", "x1", "x2", "x3"]
        assert len(stores[0].list_models()) == 1
    finally:
        for store in stores:
            store.close()


def test_sql_in_a_model_name_round_trips(make_store: MakeStore) -> None:
    store = make_store()
    name = "x'; DROP TABLE models; --\"/\\"
    store.put_model(ModelRecord(name, "binary", features={name: "string"}))
    store.append_predictions(name, predictions(2, features={"f:" + name: ["a'b", '"; --']}))
    assert store.append_labels(name, labels(["p1"], [1])) == (1, 1)
    out = store.scan(name)
    assert out["f:" + name].to_pylist() == ["a'b", '"; --']
    assert out["label"].to_pylist() == [None, 1]
    assert [m.name for m in store.list_models()] == [name]
    store.put_window_states([WindowState(name, T0, 60, {"s": name}, {"v": 1.0})])
    assert store.get_window_states(name, 60)[0].states == {"s": name}


def test_alerts_round_trip(make_store: MakeStore) -> None:
    from tunelens.store import AlertEvent

    store = make_store()
    first = AlertEvent("a1", "m", "accuracy", "firing", T0, value=0.5, evidence="acc 0.5")
    store.put_alert(first)
    store.put_alert(AlertEvent("a2", "other", "drift", "firing", T0 + timedelta(hours=1)))
    assert [a.id for a in store.list_alerts()] == ["a2", "a1"]
    assert store.list_alerts("m") == [first]
    resolved = first.__class__(**{**first.__dict__, "state": "resolved", "resolved_at": T0})
    store.put_alert(resolved)
    assert store.list_alerts("m", state="resolved") == [resolved]
    assert store.list_alerts(state="firing")[0].id == "a2"
    assert [a.id for a in store.list_alerts(since=T0 + timedelta(minutes=1))] == ["a2"]
    assert len(store.list_alerts(limit=1)) == 1


# --------------------------------------------------------------------- open_store, URLs


def test_open_store_gives_a_postgres_store(schemas: _Schemas) -> None:
    """The schema can come with the URL: ``?options=-csearch_path%3D<schema>``."""
    schema = schemas()
    url = PG_URL + ("&" if "?" in PG_URL else "?") + f"options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_URL, autocommit=True) as con:
        con.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    with open_store(url) as store:
        assert isinstance(store, PostgresStore)
        assert store.url == _redact(url) and store.schema == schema
        store.put_model(ModelRecord("m", "regression"))
    with PostgresStore(PG_URL, schema=schema) as again:
        assert [m.name for m in again.list_models()] == ["m"]


def test_a_search_path_without_a_schema_is_refused(schemas: _Schemas) -> None:
    url = PG_URL + ("&" if "?" in PG_URL else "?") + f"options=-csearch_path%3D{schemas()}"
    with pytest.raises(InputError, match="schema"):
        open_store(url)


def test_url_hides_the_password() -> None:
    assert _redact("postgresql://u:s3cret@h:5432/db") == "postgresql://u@h:5432/db"
    assert _redact("postgresql://h/db?password=s3cret&sslmode=require") == (
        "postgresql://h/db?sslmode=require"
    )
    assert _redact("postgresql://u@h/db") == "postgresql://u@h/db"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://root@127.0.0.1:1/test",  # nothing listens there
        "postgresql://root:pw@127.0.0.1:5432/test?sslmode=nonsense",  # a bad option
        "postgresql://[::1/test",  # not a URL
    ],
)
def test_bad_url_or_unreachable_server_is_one_clear_line(url: str) -> None:
    start = time.monotonic()
    with pytest.raises(InputError) as info:
        open_store(url)
    message = str(info.value)
    assert message.startswith("store: ") and "\n" not in message
    assert "pw" not in message
    assert info.value.__cause__ is None or not isinstance(info.value.__cause__, psycopg.Error)
    assert time.monotonic() - start < 15


def test_a_newer_schema_is_refused(schemas: _Schemas) -> None:
    schema = schemas()
    PostgresStore(PG_URL, schema=schema).close()
    with psycopg.connect(PG_URL, autocommit=True) as con:
        con.execute(
            sql.SQL("UPDATE {}.tunelens_meta SET value = %s").format(sql.Identifier(schema)),
            [str(SCHEMA_VERSION + 1)],
        )
    with pytest.raises(InputError, match="newer tunelens"):
        PostgresStore(PG_URL, schema=schema)


# --------------------------------------------------------------------- speed


def test_speed_smoke(make_store: MakeStore) -> None:
    """1e5 rows with 20 features: a floor far below the real rate, to catch a row loop."""
    n = 100_000
    store = make_store()
    store.put_model(
        ModelRecord("m", "binary", features={f"x{k}": "float" for k in range(20)})  # type: ignore[misc]
    )
    rng = np.random.default_rng(0)
    table = predictions(n, features={f"f:x{k}": rng.random(n) for k in range(20)})
    start = time.perf_counter()
    store.append_predictions("m", table)
    append_s = time.perf_counter() - start
    start = time.perf_counter()
    store.append_labels("m", table.select(["id"]).append_column("label", table["prediction"]))
    labels_s = time.perf_counter() - start
    start = time.perf_counter()
    out = store.scan("m")
    scan_s = time.perf_counter() - start
    assert out.num_rows == n and out.column("label").null_count == 0
    assert out.select(table.column_names).equals(table)
    assert append_s < 5.0, f"append of {n} rows took {append_s:.2f} s"
    assert labels_s < 5.0, f"labels for {n} rows took {labels_s:.2f} s"
    assert scan_s < 5.0, f"scan of {n} rows took {scan_s:.2f} s"
    assert pa.types.is_timestamp(out.schema.field("timestamp").type)
