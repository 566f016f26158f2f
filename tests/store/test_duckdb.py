"""`DuckDBStore`: the shared `Store` contract plus what only a DuckDB file does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from tunelens.errors import InputError, StoreLockedError
from tunelens.store import DuckDBStore, ModelRecord, Store, open_store
from tunelens.store.duckdb import MIGRATIONS, SCHEMA_VERSION, _migrate
from tunelens.testing.store import T0, MakeStore, StoreContract, labels, predictions


@pytest.fixture
def make_store(tmp_path: Path) -> Iterator[MakeStore]:
    opened: list[Store] = []

    def make(name: str = "default") -> Store:
        store = DuckDBStore(tmp_path / f"{name}.duckdb")
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


class TestDuckDBStoreContract(StoreContract):
    """Every contract test, against a file in tmp_path."""


def test_in_memory_store_passes_a_smoke_test() -> None:
    with DuckDBStore(":memory:") as store:
        store.put_model(ModelRecord("m", "binary"))
        assert store.append_predictions("m", predictions(3)) == 3
        assert store.count("m") == (3, 0)
        assert store.url == "duckdb:///:memory:"


def test_two_stores_on_one_file_in_one_process_share_it(tmp_path: Path) -> None:
    path = tmp_path / "shared.duckdb"
    with DuckDBStore(path) as first, DuckDBStore(path) as second:
        first.put_model(ModelRecord("m", "binary"))
        first.append_predictions("m", predictions(3))
        assert second.count("m") == (3, 0)
        first.close()
        assert second.append_predictions("m", predictions(1, prefix="z")) == 1
    with DuckDBStore(path) as again:
        assert again.count("m") == (4, 0)


# --------------------------------------------------------------------- open_store


def test_open_store_dispatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.duckdb"
    with open_store(path) as store:
        assert isinstance(store, DuckDBStore)
        assert store.url == f"duckdb://{path}"
        assert open_store(store) is store
    with open_store(f"duckdb://{path}") as store:
        assert isinstance(store, DuckDBStore) and store.path == str(path)
    with open_store(str(path)) as store:
        assert store.url == f"duckdb://{path}"

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TUNELENS_STORE", raising=False)
    with open_store(None) as store:
        assert isinstance(store, DuckDBStore)
        assert store.path == str(tmp_path / "tunelens.duckdb")
    monkeypatch.setenv("TUNELENS_STORE", str(tmp_path / "env.duckdb"))
    with open_store() as store:
        assert isinstance(store, DuckDBStore)
        assert store.path == str(tmp_path / "env.duckdb")


@pytest.mark.skipif(
    not os.environ.get("TUNELENS_TEST_POSTGRES"),
    reason="set TUNELENS_TEST_POSTGRES=postgresql://user@host:5432/db to run the PostgreSQL tests",
)
@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_postgresql_urls_open_a_postgres_store(scheme: str) -> None:
    import uuid

    import psycopg
    from psycopg import sql

    from tunelens.store.postgres import PostgresStore

    base = os.environ["TUNELENS_TEST_POSTGRES"]
    schema = f"tl_test_{uuid.uuid4().hex[:12]}"  # a schema of its own, dropped after
    url = scheme + base[base.index("://") :]
    url += ("&" if "?" in url else "?") + f"options=-csearch_path%3D{schema}"
    with psycopg.connect(base, autocommit=True) as con:
        con.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            with open_store(url) as store:
                assert isinstance(store, PostgresStore) and isinstance(store, Store)
                assert store.schema == schema and store.list_models() == []
        finally:
            con.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("preds.csv", b"id,pred\n1,0\n"),
        ("preds.parquet", b"PAR1" + bytes(40)),
        ("preds.json", b'[{"id": 1}]'),
        ("notes.duckdb", b"just some text, not a database"),
    ],
)
def test_an_existing_file_that_is_not_a_store_is_refused(
    tmp_path: Path, name: str, content: bytes
) -> None:
    # DuckDB would open these as an in-memory database: writes would vanish.
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match="not a DuckDB store"):
        open_store(path)
    assert path.read_bytes() == content


def test_a_new_file_with_any_name_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    with open_store(path) as store:
        store.put_model(ModelRecord("m", "binary", classes=(0, 1)))
    with open_store(path) as store:
        assert store.get_model("m") is not None


def test_unknown_scheme_and_type() -> None:
    with pytest.raises(InputError, match="scheme"):
        open_store("mysql://h/db")
    with pytest.raises(InputError, match="int"):
        open_store(3)  # type: ignore[arg-type]


def test_missing_folder_and_foreign_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        DuckDBStore(tmp_path / "no" / "such" / "x.duckdb")
    junk = tmp_path / "junk.duckdb"
    junk.write_text("this is not a database\n" * 100)
    with pytest.raises(InputError, match=r"junk\.duckdb"):
        DuckDBStore(junk)


# --------------------------------------------------------------------- migrations


def test_version_0_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "v0.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE someone_elses (x INTEGER)")  # a DuckDB file, not ours yet
    con.close()
    with DuckDBStore(path) as store:
        store.put_model(ModelRecord("m", "binary"))
    con = duckdb.connect(str(path))
    version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    con.close()
    assert version == [(str(SCHEMA_VERSION),)]


def test_older_file_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "v1.duckdb"
    con = duckdb.connect(str(path))
    assert _migrate(con, target=1) == 0
    con.execute(
        "INSERT INTO models VALUES (1, 'old', 'regression', '1', '[]', '[]', NULL, "
        "TIMESTAMP '2024-01-01 00:00:00', TIMESTAMP '2024-01-01 00:00:00')"
    )
    con.execute(
        'CREATE TABLE predictions_1 (seq BIGINT NOT NULL, id VARCHAR NOT NULL, "timestamp" '
        "TIMESTAMP NOT NULL, version VARCHAR, prediction DOUBLE, latency_ms DOUBLE, "
        "batch_size INTEGER)"
    )
    con.execute(
        "CREATE TABLE labels_1 (seq BIGINT NOT NULL, id VARCHAR NOT NULL, label DOUBLE NOT "
        'NULL, "timestamp" TIMESTAMP NOT NULL)'
    )
    con.close()
    assert len(MIGRATIONS) >= 2
    with DuckDBStore(path) as store:
        record = store.get_model("old")
        assert record is not None and record.task == "regression"
        assert store.append_predictions("old", predictions(2, task="regression")) == 2
        store.append_resources(
            pa.table({"timestamp": predictions(1).column("timestamp"), "model": ["old"]})
        )
        assert store.scan_resources("old").num_rows == 1


def test_version_3_file_gets_labels_on_its_prediction_rows(tmp_path: Path) -> None:
    """A file in the layout before the labels were materialised (labels joined at read)."""
    path = tmp_path / "v3.duckdb"
    con = duckdb.connect(str(path))
    assert _migrate(con, target=3) == 0
    for model_id, name, task, target in (
        (1, "b", "binary", "INTEGER"),
        (2, "r", "regression", "DOUBLE"),
    ):
        con.execute(
            "INSERT INTO models VALUES (?, ?, ?, '1', '[]', '[[\"x\", \"float\"]]', NULL, "
            "TIMESTAMP '2024-01-01 00:00:00', TIMESTAMP '2024-01-01 00:00:00', true)",
            [model_id, name, task],
        )
        con.execute(
            f"CREATE TABLE predictions_{model_id} (seq BIGINT NOT NULL, id VARCHAR NOT NULL, "
            f'"timestamp" TIMESTAMP NOT NULL, version VARCHAR, prediction {target}, '
            + ("score DOUBLE, " if task == "binary" else "")
            + "latency_ms DOUBLE, batch_size INTEGER, f_0 DOUBLE)"
        )
        con.execute(
            f"CREATE TABLE labels_{model_id} (seq BIGINT NOT NULL, id VARCHAR NOT NULL, "
            f'label {target} NOT NULL, "timestamp" TIMESTAMP NOT NULL)'
        )
    # b: a0 logged twice and relabelled; a1 unlabelled; a2 labelled before it exists
    con.execute(
        'INSERT INTO predictions_1 (seq, id, "timestamp", prediction) VALUES '
        "(0, 'a0', TIMESTAMP '2024-05-01 12:00:00', 1), "
        "(1, 'a1', TIMESTAMP '2024-05-01 12:00:01', 0), "
        "(2, 'a0', TIMESTAMP '2024-05-01 12:00:02', 1)"
    )
    con.execute(
        "INSERT INTO labels_1 VALUES (0, 'a0', 1, TIMESTAMP '2024-05-01 13:00:00'), "
        "(1, 'a2', 0, TIMESTAMP '2024-05-01 13:00:00'), "
        "(2, 'a0', 0, TIMESTAMP '2024-05-01 13:00:00'), "
        "(3, 'a2', 1, TIMESTAMP '2024-05-01 13:00:00')"
    )
    con.execute(
        'INSERT INTO predictions_2 (seq, id, "timestamp", prediction) VALUES '
        "(0, 'r0', TIMESTAMP '2024-05-01 12:00:00', 1.5)"
    )
    con.execute("INSERT INTO labels_2 VALUES (0, 'r0', 2.5, TIMESTAMP '2024-05-01 13:00:00')")
    con.close()
    with DuckDBStore(path) as store:
        out = store.scan("b", columns=["id"])
        assert out["id"].to_pylist() == ["a0", "a1", "a0"]
        assert out["label"].to_pylist() == [0, None, 0]
        assert store.count("b") == (3, 4)
        assert store.scan("r")["label"].to_pylist() == [2.5]
        later = predictions(2, prefix="a", start=T0 + timedelta(hours=1))  # a0 again, a1
        store.append_predictions("b", later.append_column("f:x", pa.array([1.0, 2.0])))
        assert store.append_labels("b", labels(["a1"], [1])) == (1, 1)
        store.append_predictions("b", predictions(3, prefix="a", start=T0 + timedelta(hours=2)))
        out = store.scan("b", columns=["id", "f:x"])
        assert out["id"].to_pylist() == ["a0", "a1", "a0", "a0", "a1", "a0", "a1", "a2"]
        assert out["label"].to_pylist() == [0, 1, 0, 0, 1, 0, 1, 1]
        assert out["f:x"].to_pylist() == [None, None, None, 1.0, 2.0, None, None, None]
    con = duckdb.connect(str(path))
    assert con.execute("SELECT count(*) FROM pending_1").fetchall() == [(0,)]
    version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    con.close()
    assert version == [(str(SCHEMA_VERSION),)] and SCHEMA_VERSION >= 4


def test_newer_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    DuckDBStore(path).close()
    con = duckdb.connect(str(path))
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    con.close()
    with pytest.raises(InputError, match="newer tunelens") as info:
        DuckDBStore(path)
    assert "upgrade" in str(info.value)


# --------------------------------------------------------------------- processes

_CHILD = textwrap.dedent(
    """
    import sys
    from tunelens.store import DuckDBStore, ModelRecord
    from tunelens.testing.store import labels, predictions

    store = DuckDBStore(sys.argv[1])
    store.put_model(ModelRecord("m", "binary"))
    mode, batch = sys.argv[2], int(sys.argv[3])
    print("ready", flush=True)
    total = 0
    k = 0
    while mode == "append":
        total += store.append_predictions("m", predictions(batch, prefix=f"b{k}-"))
        k += 1
        print(total, flush=True)
    while mode == "labels":  # labels before, after and again; ids logged twice
        ids = [f"b{k + 1}-{i}" for i in range(0, batch, 3)] + [f"b{k}-{i}" for i in range(batch)]
        ids += [f"b{max(k - 1, 0)}-{i}" for i in range(0, batch, 2)]
        store.append_labels("m", labels(ids, [(i + k) % 2 for i in range(len(ids))]))
        total += store.append_predictions("m", predictions(batch, prefix=f"b{k % 5}-"))
        k += 1
        print(total, flush=True)
    sys.stdin.read()  # mode "hold": keep the file open until the parent is done
    """
)


def _child(path: Path, mode: str, batch: int = 0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), mode, str(batch)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_second_process_gets_store_locked_error(tmp_path: Path) -> None:
    path = tmp_path / "locked.duckdb"
    child = _child(path, "hold")
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError) as info:
            DuckDBStore(path)
        message = str(info.value)
        assert "another process" in message
        assert "tunelens serve" in message and "PostgreSQL" in message
        assert isinstance(info.value, InputError)
    finally:
        child.communicate(input="", timeout=30)
    with DuckDBStore(path) as store:  # free again once the writer is gone
        assert store.get_model("m") is not None


@pytest.mark.slow
@pytest.mark.parametrize(
    ("batch", "run_s"),
    [(257, 0.6), (20_011, 2.0)],  # small commits; big ones that pass the WAL checkpoint size
)
def test_sigkill_mid_append_loses_no_returned_write(
    tmp_path: Path, batch: int, run_s: float
) -> None:
    path = tmp_path / "killed.duckdb"
    child = _child(path, "append", batch)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    last = 0
    deadline = time.monotonic() + run_s
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        last = int(line)  # this append had returned: it must survive
    os.kill(child.pid, signal.SIGKILL)  # the child is inside its next append
    child.wait(timeout=30)
    child.stdout.close()
    assert child.stdin is not None
    child.stdin.close()
    assert last >= batch
    with DuckDBStore(path) as store:
        count, _ = store.count("m")
        assert count >= last
        assert count % batch == 0  # never part of a batch
        ids = store.scan("m", columns=["id"]).column("id")
        assert len(set(ids.to_pylist())) == count


@pytest.mark.slow
def test_sigkill_mid_label_append_keeps_labels_consistent(tmp_path: Path) -> None:
    """After a kill, every row carries the latest label of its id in the labels log."""
    path = tmp_path / "killed-labels.duckdb"
    child = _child(path, "labels", 3001)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and child.stdout.readline():
        pass
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    child.stdout.close()
    assert child.stdin is not None
    child.stdin.close()
    with DuckDBStore(path) as store:
        out = store.scan("m", columns=["id"])
        count, label_rows = store.count("m")
        assert out.num_rows == count > 0 and label_rows > 0
    con = duckdb.connect(str(path))
    expected = con.execute(
        "SELECT p.id, l.label FROM predictions_1 p LEFT JOIN (SELECT id, "
        "arg_max(label, seq) AS label FROM labels_1 GROUP BY id) l ON p.id = l.id "
        'ORDER BY p."timestamp", p.seq'
    ).fetchall()
    con.close()
    assert list(zip(out["id"].to_pylist(), out["label"].to_pylist(), strict=True)) == expected


# --------------------------------------------------------------------- speed


def test_speed_smoke(tmp_path: Path) -> None:
    """1e5 rows with 20 features: a floor far below the real rate, to catch a row loop."""
    n = 100_000
    features = {f"x{k}": "float" for k in range(20)}
    with DuckDBStore(tmp_path / "speed.duckdb") as store:
        store.put_model(ModelRecord("m", "binary", features=features))  # type: ignore[arg-type]
        import numpy as np

        rng = np.random.default_rng(0)
        table = predictions(n, features={f"f:x{k}": rng.random(n) for k in range(20)})
        start = time.perf_counter()
        store.append_predictions("m", table)
        append_s = time.perf_counter() - start
        store.append_labels("m", table.select(["id"]).append_column("label", table["prediction"]))
        start = time.perf_counter()
        out = store.scan("m")
        scan_s = time.perf_counter() - start
        assert out.num_rows == n and out.column("label").null_count == 0
        assert append_s < 2.0, f"append of {n} rows took {append_s:.2f} s"
        assert scan_s < 2.0, f"scan of {n} rows took {scan_s:.2f} s"


def test_duckdb_memory_url_opens_an_in_memory_store() -> None:
    from tunelens.store import open_store

    for url in ("duckdb:///:memory:", "duckdb://:memory:", "duckdb://"):
        store = open_store(url)
        assert store.path == ":memory:"  # type: ignore[attr-defined]
        store.close()


def test_memory_limit_is_checked(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="memory_limit"):
        DuckDBStore(tmp_path / "m.duckdb", memory_limit="lots")
    with DuckDBStore(tmp_path / "m.duckdb", memory_limit="64MB") as store:
        value = store._con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]  # type: ignore[union-attr]
        assert value.startswith("61") or "MiB" in value or "MB" in value
