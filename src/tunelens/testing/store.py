"""The `Store` contract: tests every backend must pass.

A backend's test module provides one fixture, ``make_store``, and subclasses
`StoreContract`; pytest then runs every test below against that backend::

    import pytest
    from tunelens.store import DuckDBStore
    from tunelens.testing.store import StoreContract

    @pytest.fixture
    def make_store(tmp_path):
        opened = []

        def make(name="default"):
            store = DuckDBStore(tmp_path / f"{name}.duckdb")
            opened.append(store)
            return store

        yield make
        for store in opened:
            store.close()

    class TestDuckDBStore(StoreContract):
        pass

``make_store(name="default")`` opens the storage called ``name`` for the running test:
empty the first time, and the same data when opened again after a ``close()``. The
fixture closes whatever is still open when the test ends.

Modelled on Optuna's ``optuna/testing/pytest_storages.py``.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunelens.errors import InputError
from tunelens.store._base import AlertEvent, ModelRecord, Store, WindowState

__all__ = ["AWKWARD_NAMES", "T0", "MakeStore", "StoreContract", "labels", "predictions"]

#: A fixed instant the tests count from.
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
UTC_US = pa.timestamp("us", "UTC")

#: Model names that must be stored verbatim and kept apart.
AWKWARD_NAMES = (
    'quote"double',
    "quote'single",
    "slash/back\\slash",
    "x'); DROP TABLE models; --",
    'predictions_1"; DELETE FROM models; --',
    "ünïcödé ☃ 模型",
    " spaced  name ",
    "Case",
    "case",
    "%_wildcards_%",
)


class MakeStore(Protocol):
    """The ``make_store`` fixture: opens the named storage of the running test."""

    def __call__(self, name: str = "default") -> Store: ...


def predictions(
    n: int,
    *,
    start: datetime = T0,
    step: timedelta = timedelta(seconds=1),
    prefix: str = "p",
    task: str = "binary",
    features: dict[str, Any] | None = None,
) -> pa.Table:
    """A canonical prediction table of ``n`` rows, one per ``step`` from ``start``.

    Args:
        n: rows.
        start: timestamp of the first row.
        step: time between rows.
        prefix: ids are ``f"{prefix}{i}"``.
        task: ``"binary"`` (adds ``score``), ``"multiclass"`` (3 classes) or
            ``"regression"``.
        features: extra columns (``"f:<name>"`` -> values), added as given.
    """
    i = np.arange(n)
    start_us = int(start.timestamp() * 1_000_000)
    step_us = int(step / timedelta(microseconds=1))
    columns: dict[str, Any] = {
        "id": pa.array([f"{prefix}{k}" for k in range(n)], pa.string()),
        "timestamp": pa.array(start_us + i * step_us, pa.int64()).cast(UTC_US),
        "version": pa.array(["1"] * n, pa.string()),
    }
    if task == "regression":
        columns["prediction"] = pa.array(i * 0.5, pa.float64())
    elif task == "multiclass":
        columns["prediction"] = pa.array(i % 3, pa.int32())
        for k in range(3):
            columns[f"score_{k}"] = pa.array(np.full(n, 1 / 3), pa.float64())
    else:
        columns["prediction"] = pa.array(i % 2, pa.int32())
        columns["score"] = pa.array((i % 10) / 10, pa.float64())
    columns["latency_ms"] = pa.array(np.full(n, 2.5), pa.float64())
    columns["batch_size"] = pa.array(np.ones(n, np.int32), pa.int32())
    columns.update(features or {})
    return pa.table(columns)


def labels(ids: list[str], values: list[Any], label_type: pa.DataType | None = None) -> pa.Table:
    """A canonical label table (without ``timestamp``: the store stamps arrival)."""
    return pa.table(
        {"id": pa.array(ids, pa.string()), "label": pa.array(values, label_type or pa.int32())}
    )


def _binary(store: Store, name: str = "m", **features: str) -> ModelRecord:
    return store.put_model(
        ModelRecord(name, "binary", classes=("no", "yes"), features=dict(features))  # type: ignore[arg-type]
    )


class StoreContract:
    """Tests every `Store` backend passes. Subclass it beside a ``make_store`` fixture."""

    # ------------------------------------------------------------------ models

    def test_empty_store(self, make_store: MakeStore) -> None:
        store = make_store()
        assert isinstance(store, Store)
        assert store.list_models() == []
        assert store.get_model("nope") is None
        assert isinstance(store.url, str) and store.url

    def test_model_round_trip(self, make_store: MakeStore) -> None:
        store = make_store()
        record = ModelRecord(
            "churn",
            "multiclass",
            version="7",
            classes=("a", 2, 3.5, True, None),
            features={"age": "float", "n": "int", "ok": "bool", "city": "string", "t": "timestamp"},
            flops_per_prediction=1.5e9,
        )
        stored = store.put_model(record)
        assert stored.created_at is not None and stored.created_at.utcoffset() == timedelta(0)
        assert stored.evolve(created_at=None) == record
        got = store.get_model("churn")
        assert got == stored
        assert list(got.features) == ["age", "n", "ok", "city", "t"]

    def test_put_model_updates_and_keeps_created_at(self, make_store: MakeStore) -> None:
        store = make_store()
        first = store.put_model(ModelRecord("m", "binary", classes=(0, 1), features={"a": "int"}))
        second = store.put_model(
            ModelRecord(
                "m", "binary", version="2", features={"b": "string"}, flops_per_prediction=3.0
            )
        )
        assert second.created_at == first.created_at
        assert second.version == "2"
        assert second.classes == (0, 1)  # empty classes keep the stored ones
        assert second.features == {"a": "int", "b": "string"}  # features only grow
        assert second.flops_per_prediction == 3.0
        assert store.get_model("m") == second

    def test_added_feature_is_null_in_old_rows(self, make_store: MakeStore) -> None:
        store = make_store()
        _binary(store, a="float")
        store.append_predictions("m", predictions(2, features={"f:a": [1.0, 2.0]}))
        _binary(store, b="string")
        store.append_predictions(
            "m", predictions(1, start=T0 + timedelta(hours=1), prefix="q", features={"f:b": ["x"]})
        )
        out = store.scan("m")
        assert out.column("f:a").to_pylist() == [1.0, 2.0, None]
        assert out.column("f:b").to_pylist() == [None, None, "x"]

    def test_feature_type_change_is_refused(self, make_store: MakeStore) -> None:
        store = make_store()
        _binary(store, age="float")
        with pytest.raises(InputError, match="age"):
            _binary(store, age="string")
        assert store.get_model("m").features == {"age": "float"}  # type: ignore[union-attr]

    def test_task_change_and_class_reorder_are_refused(self, make_store: MakeStore) -> None:
        store = make_store()
        store.put_model(ModelRecord("m", "multiclass", classes=("a", "b")))
        with pytest.raises(InputError, match="regression"):
            store.put_model(ModelRecord("m", "regression"))
        with pytest.raises(InputError, match="classes"):
            store.put_model(ModelRecord("m", "multiclass", classes=("b", "a")))
        grown = store.put_model(ModelRecord("m", "multiclass", classes=("a", "b", "c")))
        assert grown.classes == ("a", "b", "c")

    def test_bad_records_are_refused(self, make_store: MakeStore) -> None:
        store = make_store()
        with pytest.raises(InputError, match="task"):
            store.put_model(ModelRecord("m", "ranking"))  # type: ignore[arg-type]
        with pytest.raises(InputError, match="feature 'x'"):
            store.put_model(ModelRecord("m", "binary", features={"x": "complex"}))  # type: ignore[dict-item]
        with pytest.raises(InputError):
            store.put_model(ModelRecord("", "binary"))
        assert store.list_models() == []

    def test_list_models_by_name(self, make_store: MakeStore) -> None:
        store = make_store()
        for name in ["b", "a", "C", "ä", "a2"]:
            store.put_model(ModelRecord(name, "regression"))
        assert [m.name for m in store.list_models()] == sorted(["b", "a", "C", "ä", "a2"])

    @pytest.mark.parametrize("name", AWKWARD_NAMES)
    def test_awkward_model_names_are_verbatim(self, make_store: MakeStore, name: str) -> None:
        store = make_store()
        store.put_model(ModelRecord("plain", "binary"))
        stored = store.put_model(ModelRecord(name, "binary", features={name: "string"}))
        assert stored.name == name
        assert store.get_model(name) == stored
        table = predictions(3, features={"f:" + name: ["a", None, "c"]})
        assert store.append_predictions(name, table) == 3
        assert store.append_labels(name, labels(["p0"], [1])) == (1, 1)
        out = store.scan(name)
        assert out.column("f:" + name).to_pylist() == ["a", None, "c"]
        assert out.column("label").to_pylist() == [1, None, None]
        assert store.count(name) == (3, 1)
        assert store.count("plain") == (0, 0)
        assert sorted(m.name for m in store.list_models()) == sorted(["plain", name])
        store.put_window_states([WindowState(name, T0, 60, {"s": {"n": 1}}, {"v": 1.0})])
        assert len(store.get_window_states(name, 60)) == 1

    @settings(
        max_examples=20,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(
        st.text(
            st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
            min_size=1,
            max_size=30,
        )
    )
    def test_any_name_round_trips(self, make_store: MakeStore, name: str) -> None:
        self._names = getattr(self, "_names", 0) + 1
        store = make_store(f"names{self._names}")
        stored = store.put_model(ModelRecord(name, "binary", features={name: "float"}))
        assert store.get_model(name) == stored
        store.append_predictions(name, predictions(1, features={"f:" + name: [0.5]}))
        assert store.scan(name).column("f:" + name).to_pylist() == [0.5]
        assert [m.name for m in store.list_models()] == [name]
        store.close()

    def test_nul_or_surrogate_in_a_name_is_refused(self, make_store: MakeStore) -> None:
        store = make_store()
        with pytest.raises(InputError):
            store.put_model(ModelRecord("a\x00b", "binary"))
        with pytest.raises(InputError):
            store.put_model(ModelRecord("lone \ud800 surrogate", "binary"))
        with pytest.raises(InputError, match="feature"):
            store.put_model(ModelRecord("m", "binary", features={"a\x00": "int"}))

    def test_names_differing_in_case_are_distinct(self, make_store: MakeStore) -> None:
        store = make_store()
        store.put_model(ModelRecord("Case", "binary", features={"Age": "int", "age": "string"}))
        store.put_model(ModelRecord("case", "regression"))
        assert store.get_model("Case").task == "binary"  # type: ignore[union-attr]
        assert store.get_model("case").task == "regression"  # type: ignore[union-attr]
        store.append_predictions("Case", predictions(1, features={"f:Age": [3], "f:age": ["x"]}))
        out = store.scan("Case")
        assert out.column("f:Age").to_pylist() == [3]
        assert out.column("f:age").to_pylist() == ["x"]
        assert store.count("case") == (0, 0)

    # ------------------------------------------------------------------ predictions

    @pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
    def test_every_column_type_round_trips(self, make_store: MakeStore, task: str) -> None:
        store = make_store()
        classes = {"binary": (0, 1), "multiclass": ("a", "b", "c"), "regression": ()}[task]
        store.put_model(
            ModelRecord(
                "m",
                task,  # type: ignore[arg-type]
                classes=classes,
                features={"x": "float", "n": "int", "b": "bool", "s": "string", "t": "timestamp"},
            )
        )
        t = T0 + timedelta(microseconds=123_457)
        table = predictions(
            4,
            task=task,
            features={
                "f:x": pa.array([1.5, None, float("inf"), -0.0], pa.float64()),
                "f:n": pa.array([1, None, -(2**62), 2**62], pa.int64()),
                "f:b": pa.array([True, False, None, True], pa.bool_()),
                "f:s": pa.array(["", None, "é\n\"'", "x" * 1000], pa.string()),
                "f:t": pa.array([t, None, t, t], UTC_US),
            },
        )
        nullable = [c for c in table.column_names if c.startswith("score") or c == "latency_ms"]
        for column in nullable:
            index = table.column_names.index(column)
            values = table.column(column).to_pylist()
            values[1] = None
            table = table.set_column(index, column, pa.array(values, pa.float64()))
        assert store.append_predictions("m", table) == 4
        out = store.scan("m")
        assert out.column_names == [*table.column_names, "label"]
        assert out.select(table.column_names).equals(table)
        assert out.schema.field("label").type == table.schema.field("prediction").type
        assert out.column("label").null_count == 4

    def test_timestamps_are_utc_microseconds(self, make_store: MakeStore) -> None:
        store = make_store()
        _binary(store, t="timestamp")
        paris = timezone(timedelta(hours=2))
        when = datetime(2024, 5, 1, 14, 0, 0, 7, tzinfo=paris)  # 12:00:00.000007 UTC
        table = predictions(1, features={"f:t": pa.array([when], pa.timestamp("us", "+02:00"))})
        table = table.set_column(1, "timestamp", pa.array([when], pa.timestamp("us", "+02:00")))
        store.append_predictions("m", table)
        naive = predictions(1, prefix="n").set_column(
            1, "timestamp", pa.array([datetime(2024, 5, 1, 12, 0, 0, 8)], pa.timestamp("us"))
        )
        store.append_predictions("m", naive)  # a timestamp without a zone is UTC
        nanos = predictions(1, prefix="ns").set_column(
            1, "timestamp", pa.array([int(T0.timestamp()) * 10**9 + 9_999], pa.timestamp("ns"))
        )
        store.append_predictions("m", nanos)  # kept to the microsecond
        out = store.scan("m")
        assert out.schema.field("timestamp").type == UTC_US
        assert out.schema.field("f:t").type == UTC_US
        got = out.column("timestamp").to_pylist()
        assert got == [T0 + timedelta(microseconds=us) for us in (7, 8, 9)]
        assert out.column("f:t").to_pylist()[0] == T0 + timedelta(microseconds=7)

    def test_scan_orders_by_timestamp_then_ingest_order(self, make_store: MakeStore) -> None:
        store = make_store()
        _binary(store)
        late = predictions(3, start=T0 + timedelta(hours=1), prefix="late")
        tied = predictions(3, step=timedelta(0), prefix="tie")
        store.append_predictions("m", late)
        store.append_predictions("m", tied)
        store.append_predictions("m", predictions(2, step=timedelta(0), prefix="tie2-"))
        ids = store.scan("m", columns=["id"]).column("id").to_pylist()
        assert ids == ["tie0", "tie1", "tie2", "tie2-0", "tie2-1", "late0", "late1", "late2"]

    def test_since_until_are_half_open(self, make_store: MakeStore) -> None:
        store = make_store()
        _binary(store)
        store.append_predictions("m", predictions(10))  # T0 + 0s .. T0 + 9s
        store.append_labels("m", labels(["p3", "p4", "p9"], [1, 0, 1]))

        def ids(**bounds: Any) -> list[str]:
            out = store.scan("m", columns=["id"], **bounds)
            return [str(v) for v in out.column("id").to_pylist()]

        assert ids(since=T0 + timedelta(seconds=3), until=T0 + timedelta(seconds=5)) == [
            "p3",
            "p4",
        ]
        assert ids(since=T0 + timedelta(seconds=8)) == ["p8", "p9"]
        assert ids(until=T0 + timedelta(seconds=1)) == ["p0"]
        assert ids(since=T0 + timedelta(seconds=5), until=T0 + timedelta(seconds=5)) == []
        window = store.scan("m", since=T0 + timedelta(seconds=3), until=T0 + timedelta(seconds=5))
        assert window.column("label").to_pylist() == [1, 0]
        # an aware bound in another zone means the same instant
        east = timezone(timedelta(hours=5))
        assert ids(since=(T0 + timedelta(seconds=9)).astimezone(east)) == ["p9"]

    def test_scan_columns(self, make_store: MakeStore) -> None:
        store = make_store()
        _binary(store, a="float")
        store.append_predictions("m", predictions(2, features={"f:a": [1.0, 2.0]}))
        out = store.scan("m", columns=["f:a", "id"])
        assert out.column_names == ["f:a", "id", "label"]
        assert store.scan("m", columns=[]).column_names == ["label"]
        with pytest.raises(InputError, match="nope"):
            store.scan("m", columns=["nope"])

    def test_scan_of_model_without_rows(self, make_store: MakeStore) -> None:
        store = make_store()
        _binary(store, a="int")
        out = store.scan("m")
        assert out.num_rows == 0
        assert out.schema.field("f:a").type == pa.int64()
        assert out.schema.field("timestamp").type == UTC_US
        assert store.count("m") == (0, 0)

    def test_optional_columns_are_filled(self, make_store: MakeStore) -> None:
        store = make_store()
        store.put_model(ModelRecord("m", "binary", version="v3", features={"a": "float"}))
        table = predictions(2).select(["id", "timestamp", "prediction"])
        assert store.append_predictions("m", table) == 2
        out = store.scan("m")
        assert out.column("version").to_pylist() == ["v3", "v3"]
        assert out.column("score").null_count == 2
        assert out.column("f:a").null_count == 2

    def test_lossless_casts_are_accepted(self, make_store: MakeStore) -> None:
        store = make_store()
        _binary(store, a="float")
        table = predictions(2, features={"f:a": pa.array([1, 2], pa.int16())})
        table = table.set_column(3, "prediction", pa.array([0, 1], pa.int64()))
        assert store.append_predictions("m", table) == 2
        out = store.scan("m")
        assert out.schema.field("prediction").type == pa.int32()
        assert out.column("f:a").to_pylist() == [1.0, 2.0]

    def test_unknown_model_is_refused(self, make_store: MakeStore) -> None:
        store = make_store()
        for call in (
            lambda: store.append_predictions("ghost", predictions(1)),
            lambda: store.append_labels("ghost", labels(["a"], [1])),
            lambda: store.scan("ghost"),
            lambda: store.count("ghost"),
        ):
            with pytest.raises(InputError, match="ghost") as info:
                call()
            assert "put_model" in str(info.value)

    @pytest.mark.parametrize(
        ("change", "column", "expected"),
        [
            (lambda t: t.drop_columns(["id"]), "id", "string"),
            (lambda t: t.drop_columns(["timestamp"]), "timestamp", "timestamp"),
            (lambda t: t.drop_columns(["prediction"]), "prediction", "int32"),
            (
                lambda t: t.set_column(4, "score", pa.array(["x"] * 3, pa.string())),
                "score",
                "double",
            ),
            (
                lambda t: t.set_column(1, "timestamp", pa.array([1, 2, 3], pa.int64())),
                "timestamp",
                "timestamp",
            ),
            (
                lambda t: t.set_column(3, "prediction", pa.array([0.5, 1, 0], pa.float64())),
                "prediction",
                "int32",
            ),
            (lambda t: t.append_column("f:unknown", pa.array([1.0] * 3)), "f:unknown", "put_model"),
            (lambda t: t.append_column("extra", pa.array([1.0] * 3)), "extra", "canonical"),
            (lambda t: t.append_column("score_1", pa.array([1.0] * 3)), "score_1", "score"),
            (
                lambda t: t.set_column(0, "id", pa.array(["a", None, "c"], pa.string())),
                "id",
                "null",
            ),
        ],
    )
    def test_bad_prediction_tables_write_nothing(
        self, make_store: MakeStore, change: Any, column: str, expected: str
    ) -> None:
        store = make_store()
        _binary(store)
        store.append_predictions("m", predictions(2, prefix="ok"))
        with pytest.raises(InputError, match=f"'{column}'") as info:
            store.append_predictions("m", change(predictions(3)))
        assert expected in str(info.value)
        assert store.count("m") == (2, 0)

    def test_wrong_feature_type_writes_nothing(self, make_store: MakeStore) -> None:
        store = make_store()
        _binary(store, a="float", s="string")
        bad = predictions(3, features={"f:a": [1.0, 2.0, 3.0], "f:s": [1, 2, 3]})
        with pytest.raises(InputError, match="f:s"):
            store.append_predictions("m", bad)
        assert store.count("m") == (0, 0)

    def test_empty_append(self, make_store: MakeStore) -> None:
        store = make_store()
        _binary(store)
        assert store.append_predictions("m", predictions(0)) == 0
        assert store.append_labels("m", labels([], [])) == (0, 0)
        assert store.count("m") == (0, 0)

    # ------------------------------------------------------------------ labels

    def test_labels_join_and_match(self, make_store: MakeStore) -> None:
        store = make_store()
        _binary(store)
        store.append_predictions("m", predictions(4))
        assert store.append_labels("m", labels(["p0", "p2", "zz"], [1, 0, 1])) == (3, 2)
        out = store.scan("m")
        assert out.column("label").to_pylist() == [1, None, 0, None]
        assert store.count("m") == (4, 3)

    def test_labels_before_predictions(self, make_store: MakeStore) -> None:
        store = make_store()
        _binary(store)
        assert store.append_labels("m", labels(["p1", "p3"], [1, 1])) == (2, 0)
        store.append_predictions("m", predictions(4))
        assert store.scan("m").column("label").to_pylist() == [None, 1, None, 1]

    def test_latest_label_wins(self, make_store: MakeStore) -> None:
        store = make_store()
        _binary(store)
        store.append_predictions("m", predictions(3))
        store.append_labels("m", labels(["p0", "p1"], [1, 1]))
        store.append_labels("m", labels(["p0"], [0]))
        store.append_labels("m", labels(["p2", "p2", "p2"], [0, 1, 0]))  # last in a batch wins
        # arrival order wins, not the label's own timestamp
        stamped = labels(["p1"], [0]).append_column(
            "timestamp", pa.array([T0 - timedelta(days=1)], UTC_US)
        )
        store.append_labels("m", stamped)
        assert store.scan("m").column("label").to_pylist() == [0, 0, 0]
        window = store.scan("m", since=T0, until=T0 + timedelta(seconds=2))
        assert window.column("label").to_pylist() == [0, 0]
        assert store.count("m") == (3, 7)

    def test_window_marks_change_with_every_write_of_their_window(
        self, make_store: MakeStore
    ) -> None:
        store = make_store()
        _binary(store)
        minute = timedelta(minutes=1)
        store.append_predictions("m", predictions(6, step=timedelta(seconds=20)))  # 2 minutes
        first = store.window_marks("m", 60)
        w0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
        assert first == {w0: (3, -1), w0 + minute: (3, -1)}
        store.append_labels("m", labels(["p4"], [1]))  # p4 is in the second minute
        second = store.window_marks("m", 60)
        assert second[w0] == first[w0]
        assert second[w0 + minute][0] == 3 and second[w0 + minute][1] > -1
        store.append_labels("m", labels(["p4"], [0]))  # a relabel moves the mark again
        third = store.window_marks("m", 60)
        assert third[w0 + minute][1] > second[w0 + minute][1]
        store.append_predictions("m", predictions(1, prefix="q"))  # lands in the first minute
        assert store.window_marks("m", 60)[w0] == (4, -1)
        assert store.window_marks("m", 60, since=w0 + minute) == {w0 + minute: third[w0 + minute]}
        assert store.window_marks("m", 3600) == {w0: (7, third[w0 + minute][1])}
        seqs = store.scan("m", columns=["id", "label_seq"]).column("label_seq").to_pylist()
        assert max(s for s in seqs if s is not None) == third[w0 + minute][1]

    def test_first_label_batch_with_duplicate_ids(self, make_store: MakeStore) -> None:
        store = make_store()
        _binary(store)
        store.append_predictions("m", predictions(2))
        assert store.append_labels("m", labels(["p1", "p1", "p0"], [1, 0, 1])) == (3, 3)
        assert store.scan("m").column("label").to_pylist() == [1, 0]
        window = store.scan("m", since=T0 + timedelta(seconds=1))
        assert window.column("label").to_pylist() == [0]

    def test_early_label_reaches_an_id_logged_twice(self, make_store: MakeStore) -> None:
        store = make_store()
        _binary(store)
        assert store.append_labels("m", labels(["p1", "p1"], [0, 1])) == (2, 0)
        store.append_predictions("m", predictions(2))
        store.append_predictions("m", predictions(2, start=T0 + timedelta(seconds=5)))
        assert store.scan("m").column("label").to_pylist() == [None, 1, None, 1]
        assert store.append_labels("m", labels(["p1"], [0])) == (1, 1)
        assert store.scan("m").column("label").to_pylist() == [None, 0, None, 0]

    def test_id_logged_again_after_its_label(self, make_store: MakeStore) -> None:
        store = make_store()
        _binary(store)
        store.append_predictions("m", predictions(2))
        assert store.append_labels("m", labels(["p0", "p1"], [1, 0])) == (2, 2)
        store.append_labels("m", labels(["p0"], [0]))
        later = T0 + timedelta(seconds=10)
        store.append_predictions("m", predictions(1, start=later))  # p0 again
        assert store.scan("m").column("label").to_pylist() == [0, 0, 0]
        assert store.scan("m", since=later).column("label").to_pylist() == [0]
        # the same again, with a label append (not a scan) coming first
        store.append_predictions("m", predictions(2, start=later + timedelta(seconds=1)))
        assert store.append_labels("m", labels(["zz"], [1])) == (1, 0)
        assert store.scan("m", columns=["id"]).column("label").to_pylist() == [0, 0, 0, 0, 0]

    def test_pending_label_applied_by_a_later_append(self, make_store: MakeStore) -> None:
        store = make_store()
        _binary(store)
        store.append_predictions("m", predictions(2))
        assert store.append_labels("m", labels(["p1", "q0", "q1"], [1, 1, 0])) == (3, 1)
        store.append_predictions("m", predictions(1, prefix="x"))  # no pending id
        store.append_labels("m", labels(["q1"], [1]))  # relabelled while waiting
        store.append_predictions("m", predictions(2, prefix="q", start=T0 + timedelta(hours=1)))
        out = store.scan("m", columns=["id"])
        assert out.column("id").to_pylist() == ["p0", "x0", "p1", "q0", "q1"]
        assert out.column("label").to_pylist() == [None, None, 1, 1, 1]
        assert store.count("m") == (5, 4)
        assert store.append_labels("m", labels(["q0"], [0])) == (1, 1)
        assert store.scan("m", since=T0 + timedelta(hours=1))["label"].to_pylist() == [0, 1]

    def test_labels_survive_reopening(self, make_store: MakeStore) -> None:
        store = make_store()
        _binary(store)
        store.append_labels("m", labels(["p2", "p0"], [1, 1]))
        store.append_predictions("m", predictions(2))
        store.append_labels("m", labels(["p0"], [0]))
        store.append_predictions("m", predictions(1, start=T0 + timedelta(seconds=9)))
        store.close()
        store = make_store()
        store.append_predictions("m", predictions(3, prefix="p", start=T0 + timedelta(hours=1)))
        got = store.scan("m", columns=["id"])
        assert got["id"].to_pylist() == ["p0", "p1", "p0", "p0", "p1", "p2"]
        assert got["label"].to_pylist() == [0, None, 0, 0, None, 1]

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(
        st.lists(
            st.one_of(
                st.tuples(
                    st.just("predictions"),
                    st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(0, 5)), max_size=6),
                ),
                st.tuples(
                    st.just("labels"),
                    st.lists(st.tuples(st.sampled_from("abcdefg"), st.integers(0, 1)), max_size=6),
                ),
            ),
            max_size=8,
        ),
        st.integers(0, 6),
        st.integers(0, 6),
    )
    def test_scan_matches_an_oracle(
        self, make_store: MakeStore, ops: list[tuple[str, list[tuple[str, int]]]], lo: int, hi: int
    ) -> None:
        """Random interleavings of predictions and labels against a plain-Python model."""
        self._examples = getattr(self, "_examples", 0) + 1
        store = make_store(f"oracle{self._examples}")
        _binary(store)
        stored: list[tuple[int, int, str]] = []  # (second, ingest order, id)
        latest: dict[str, int] = {}
        for kind, rows in ops:
            ids = [r[0] for r in rows]
            if kind == "predictions":
                seconds = [r[1] for r in rows]
                table = pa.table(
                    {
                        "id": pa.array(ids, pa.string()),
                        "timestamp": pa.array([T0 + timedelta(seconds=x) for x in seconds], UTC_US),
                        "prediction": pa.array([0] * len(rows), pa.int32()),
                    }
                )
                assert store.append_predictions("m", table) == len(rows)
                stored += [(x, len(stored) + k, i) for k, (i, x) in enumerate(rows)]
            else:
                known = {i for _, _, i in stored}
                expected = (len(rows), sum(i in known for i in ids))
                assert store.append_labels("m", labels(ids, [r[1] for r in rows])) == expected
                latest.update(dict(rows))
        order = sorted(stored)
        out = store.scan("m", columns=["id"])
        assert out.column("id").to_pylist() == [i for _, _, i in order]
        assert out.column("label").to_pylist() == [latest.get(i) for _, _, i in order]
        since, until = T0 + timedelta(seconds=lo), T0 + timedelta(seconds=hi)
        window = store.scan("m", since=since, until=until, columns=["id"])
        inside = [(i, latest.get(i)) for x, _, i in order if lo <= x < hi]
        got = zip(window["id"].to_pylist(), window["label"].to_pylist(), strict=True)
        assert list(got) == inside
        assert store.count("m") == (len(stored), sum(len(r) for k, r in ops if k == "labels"))

    def test_regression_labels(self, make_store: MakeStore) -> None:
        store = make_store()
        store.put_model(ModelRecord("r", "regression"))
        store.append_predictions("r", predictions(2, task="regression"))
        assert store.append_labels("r", labels(["p1"], [2.25], pa.float64())) == (1, 1)
        out = store.scan("r")
        assert out.schema.field("label").type == pa.float64()
        assert out.column("label").to_pylist() == [None, 2.25]

    def test_bad_labels_write_nothing(self, make_store: MakeStore) -> None:
        store = make_store()
        _binary(store)
        with pytest.raises(InputError, match="'label'"):
            store.append_labels("m", pa.table({"id": ["a"]}))
        with pytest.raises(InputError, match="'label'"):
            store.append_labels("m", labels(["a", "b"], [1, None]))
        with pytest.raises(InputError, match="'label'"):
            store.append_labels("m", pa.table({"id": ["a"], "label": ["yes"]}))
        with pytest.raises(InputError, match="'other'"):
            store.append_labels("m", labels(["a"], [1]).append_column("other", pa.array([1])))
        assert store.count("m") == (0, 0)

    # ------------------------------------------------------------------ resources

    def test_resources_round_trip(self, make_store: MakeStore) -> None:
        store = make_store()
        rows = pa.table(
            {
                "timestamp": pa.array([T0 + timedelta(seconds=s) for s in (2, 0, 1)], UTC_US),
                "model": ["m", "m", "other"],
                "cpu_percent": [50.0, 12.5, 1.0],
                "rss_bytes": pa.array([2**40, 1024, 1], pa.int64()),
                "gpu_util_percent": pa.array([None, 30.0, None], pa.float64()),
                "gpu_memory_bytes": pa.array([None, 2**33, None], pa.int64()),
            }
        )
        assert store.append_resources(rows) == 3
        out = store.scan_resources("m")
        assert out.column_names == rows.column_names
        assert out.column("cpu_percent").to_pylist() == [12.5, 50.0]
        assert out.column("gpu_memory_bytes").to_pylist() == [2**33, None]
        assert out.schema.field("timestamp").type == UTC_US
        assert store.scan_resources("m", since=T0 + timedelta(seconds=1)).num_rows == 1
        assert store.scan_resources("m", until=T0 + timedelta(seconds=2)).num_rows == 1
        assert store.scan_resources("nobody").num_rows == 0
        with pytest.raises(InputError, match="timestamp"):
            store.append_resources(rows.drop_columns(["timestamp"]))

    def test_writes_from_two_threads(self, make_store: MakeStore) -> None:
        store = make_store()
        _binary(store)
        errors: list[BaseException] = []

        def sample() -> None:
            try:
                for k in range(30):
                    store.append_resources(
                        pa.table(
                            {
                                "timestamp": pa.array([T0 + timedelta(seconds=k)], UTC_US),
                                "model": ["m"],
                                "cpu_percent": [1.0],
                            }
                        )
                    )
            except BaseException as err:  # pragma: no cover - reported below
                errors.append(err)

        thread = threading.Thread(target=sample)
        thread.start()
        for k in range(30):
            store.append_predictions("m", predictions(5, prefix=f"b{k}-"))
            store.scan("m", columns=["id"])
        thread.join()
        assert errors == []
        assert store.count("m") == (150, 0)
        assert store.scan_resources("m").num_rows == 30

    # ------------------------------------------------------------------ windows

    def test_window_states_insert_or_replace(self, make_store: MakeStore) -> None:
        store = make_store()
        _binary(store)
        _binary(store, "other")
        states = [
            WindowState(
                "m", T0 + timedelta(minutes=k), 60, {"confusion": {"tp": k}}, {"acc": k / 10}
            )
            for k in range(5)
        ]
        store.put_window_states(states)
        store.put_window_states([WindowState("m", T0, 3600, {"x": {}}, {"acc": None})])
        store.put_window_states([WindowState("other", T0, 60, {}, {})])
        replaced = WindowState(
            "m", T0 + timedelta(minutes=2), 60, {"confusion": {"tp": 99}}, {"acc": 0.99}
        )
        store.put_window_states([replaced])
        got = store.get_window_states("m", 60)
        assert [w.start for w in got] == [T0 + timedelta(minutes=k) for k in range(5)]
        assert got[2].states == {"confusion": {"tp": 99}} and got[2].values == {"acc": 0.99}
        assert got[0].states == {"confusion": {"tp": 0}} and got[0].values == {"acc": 0.0}
        assert all(w.model == "m" and w.window_s == 60 for w in got)
        assert all(w.computed_at is not None for w in got)
        hour = store.get_window_states("m", 3600)
        assert len(hour) == 1 and hour[0].values == {"acc": None}
        ranged = store.get_window_states(
            "m", 60, since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3)
        )
        assert [w.start for w in ranged] == [T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]
        assert store.get_window_states("m", 5) == []
        assert len(store.get_window_states("other", 60)) == 1

    def test_window_states_last_in_a_call_wins_and_nan_survives(
        self, make_store: MakeStore
    ) -> None:
        store = make_store()
        _binary(store)
        store.put_window_states(
            [
                WindowState("m", T0, 60, {"s": 1}, {"v": 1.0}),
                WindowState("m", T0, 60, {"s": 2}, {"v": float("nan")}),
            ]
        )
        (got,) = store.get_window_states("m", 60)
        assert got.states == {"s": 2}
        store.put_window_states(
            [WindowState("m", T0, 60, {"s": {"bins": np.arange(3), "n": np.int64(4)}}, {})]
        )
        (again,) = store.get_window_states("m", 60)
        assert again.states == {"s": {"bins": [0, 1, 2], "n": 4}}
        with pytest.raises(InputError, match="JSON"):
            store.put_window_states([WindowState("m", T0, 60, {"s": object()}, {})])
        value = got.values["v"]
        assert value is not None and value != value  # NaN round-trips

    def test_window_states_of_unknown_model(self, make_store: MakeStore) -> None:
        store = make_store()
        with pytest.raises(InputError, match="ghost"):
            store.put_window_states([WindowState("ghost", T0, 60, {}, {})])

    # ------------------------------------------------------------------ lifecycle

    # ---------------------------------------------------------------- alerts

    def test_alerts_upsert_by_id_and_list_newest_first(self, make_store: MakeStore) -> None:
        store = make_store()
        first = AlertEvent(
            id="a1",
            model=AWKWARD_NAMES[3],
            rule="accuracy < 0.9",
            state="firing",
            fired_at=T0,
            severity="high",
            value=0.81,
            window_start=T0 - timedelta(hours=1),
            evidence="accuracy 0.810 < 0.90",
        )
        later = AlertEvent(
            id="a2", model="other", rule="p99", state="firing", fired_at=T0 + timedelta(hours=2)
        )
        store.put_alert(first)
        store.put_alert(later)
        assert [a.id for a in store.list_alerts()] == ["a2", "a1"]
        assert store.list_alerts(AWKWARD_NAMES[3]) == [first]
        resolved = AlertEvent(
            **{**first.__dict__, "state": "resolved", "resolved_at": T0 + timedelta(hours=1)}
        )
        store.put_alert(resolved)
        assert store.list_alerts(AWKWARD_NAMES[3]) == [resolved]
        assert [a.id for a in store.list_alerts(state="firing")] == ["a2"]
        assert [a.id for a in store.list_alerts(since=T0 + timedelta(minutes=1))] == ["a2"]
        assert [a.id for a in store.list_alerts(limit=1)] == ["a2"]
        assert store.list_alerts("nobody") == []
        got = store.list_alerts(AWKWARD_NAMES[3])[0]
        assert got.fired_at.tzinfo is not None and got.value == 0.81

    def test_alerts_survive_reopening_and_bad_events_are_refused(
        self, make_store: MakeStore
    ) -> None:
        store = make_store()
        event = AlertEvent(id="x", model="m", rule="r", state="firing", fired_at=T0)
        store.put_alert(event)
        with pytest.raises(InputError, match="state"):
            store.put_alert(AlertEvent(id="y", model="m", rule="r", state="odd", fired_at=T0))  # type: ignore[arg-type]
        with pytest.raises(InputError, match="id"):
            store.put_alert(AlertEvent(id="", model="m", rule="r", state="firing", fired_at=T0))
        store.close()
        assert make_store().list_alerts() == [event]

    # ---------------------------------------------------------------- documents

    def test_blobs_replace_by_model_and_kind(self, make_store: MakeStore) -> None:
        store = make_store()
        assert store.get_blob(AWKWARD_NAMES[3], "reference") is None
        when = store.put_blob(AWKWARD_NAMES[3], "reference", b"\x00PAR1 bytes")
        got = store.get_blob(AWKWARD_NAMES[3], "reference")
        assert got is not None and got[0] == b"\x00PAR1 bytes" and got[1].tzinfo is not None
        assert abs((got[1] - when).total_seconds()) < 1e-3
        store.put_blob(AWKWARD_NAMES[3], "report", b'{"schema": "tunelens.report/1"}')
        store.put_blob(AWKWARD_NAMES[3], "reference", b"second")
        assert store.get_blob(AWKWARD_NAMES[3], "reference")[0] == b"second"  # type: ignore[index]
        assert store.get_blob(AWKWARD_NAMES[4], "reference") is None
        with pytest.raises(InputError, match="kind"):
            store.put_blob("m", "", b"x")
        store.close()
        reopened = make_store()
        assert reopened.get_blob(AWKWARD_NAMES[3], "report")[0].startswith(b"{")  # type: ignore[index]

    def test_data_survives_reopening(self, make_store: MakeStore) -> None:
        store = make_store("shared")
        _binary(store, a="float")
        store.append_predictions("m", predictions(3, features={"f:a": [1.0, 2.0, 3.0]}))
        store.append_labels("m", labels(["p1"], [1]))
        store.put_window_states([WindowState("m", T0, 60, {"s": 1}, {"v": 1.0})])
        before = store.scan("m")
        store.close()
        again = make_store("shared")
        assert again.scan("m").equals(before)
        assert again.count("m") == (3, 1)
        assert len(again.get_window_states("m", 60)) == 1
        assert again.append_predictions("m", predictions(1, prefix="z")) == 1

    def test_close_is_idempotent_and_context_manager_closes(self, make_store: MakeStore) -> None:
        store = make_store()
        store.close()
        store.close()
        with pytest.raises(InputError):
            store.list_models()
        other = make_store("ctx")
        with other as entered:
            assert entered is other
            _binary(entered)
        with pytest.raises(InputError):
            other.get_model("m")
        other.close()
