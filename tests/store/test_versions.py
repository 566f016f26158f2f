"""VersionRegistry: versions with lineage, promotions and rollbacks, kept in the store."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunelens.errors import InputError
from tunelens.store import Store, open_store
from tunelens.store.versions import VersionRegistry

PG_URL = os.environ.get("TUNELENS_TEST_POSTGRES", "")


@pytest.fixture(params=["duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "duckdb":
        opened = open_store(str(tmp_path / "v.duckdb"))
        yield opened
        opened.close()
        return
    if not PG_URL:
        pytest.skip("set TUNELENS_TEST_POSTGRES=postgresql://user@host:5432/db to run it")
    psycopg = pytest.importorskip("psycopg")
    from psycopg import sql

    from tunelens.store.postgres import PostgresStore

    schema = f"tl_test_{uuid.uuid4().hex[:12]}"
    opened = PostgresStore(PG_URL, schema=schema)
    yield opened
    opened.close()
    with psycopg.connect(PG_URL, autocommit=True) as con:
        con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_register_promote_rollback_and_lineage(store: Store) -> None:
    reg = VersionRegistry(store, "churn")
    assert reg.champion() is None and reg.versions() == []
    reg.register("1", source="train", metrics={"accuracy": 0.91, "roc_auc": float("nan")})
    reg.promote("1", reason="first model")
    reg.register("2", parent="1", source="tune", run="loop-1", metrics={"accuracy": 0.93})
    reg.register("2c", parent="2", source="compress", note="int8")
    decision = {"action": "promote", "p_value": 0.001}
    assert reg.promote("2c", reason="better and faster", decision=decision).version == "2c"
    assert [v.version for v in reg.lineage("2c")] == ["2c", "2", "1"]
    assert reg.get("1").metrics == {"accuracy": 0.91, "roc_auc": None}
    back = reg.rollback(reason="latency regression in production")
    assert back.version == "1" and reg.champion().version == "1"  # type: ignore[union-attr]
    events = reg.history()
    assert [(e.action, e.version, e.previous) for e in events] == [
        ("promote", "1", None),
        ("promote", "2c", "1"),
        ("rollback", "1", "2c"),
    ]
    assert events[1].decision == decision
    doc = reg.to_dict()
    json.dumps(doc)
    assert doc["schema"] == "tunelens.versions/1" and doc["champion"] == "1"


def test_the_record_survives_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "v.duckdb")
    first = open_store(path)
    VersionRegistry(first, "m").register("a")
    VersionRegistry(first, "m").promote("a", reason="r")
    first.close()
    again = open_store(path)
    try:
        reg = VersionRegistry(again, "m")
        assert reg.champion().version == "a"  # type: ignore[union-attr]
        assert VersionRegistry(again, "other").versions() == []  # per model
    finally:
        again.close()


def test_bad_input_names_the_field(store: Store) -> None:
    reg = VersionRegistry(store, "m")
    reg.register("1")
    cases = [
        (lambda: reg.register("1"), "version"),
        (lambda: reg.register(""), "version"),
        (lambda: reg.register("2", source="magic"), "source"),
        (lambda: reg.register("2", parent="9"), "parent"),
        (lambda: reg.register("2", metrics={"accuracy": "high"}), "metrics['accuracy']"),
        (lambda: reg.promote("9", reason="x"), "version"),
        (lambda: reg.rollback(reason="x"), "rollback"),
        (lambda: reg.lineage("9"), "version"),
    ]
    for call, field in cases:
        with pytest.raises(InputError) as err:
            call()
        assert err.value.field == field
    reg.promote("1", reason="x")
    with pytest.raises(InputError, match="already the champion"):
        reg.promote("1", reason="again")
    assert [v.version for v in reg.versions()] == ["1"]  # nothing half-written
