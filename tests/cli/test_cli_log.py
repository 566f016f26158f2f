"""``tunelens log`` and ``tunelens labels``: bulk ingestion and its errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tunelens import __version__
from tunelens.store import open_store

Invoke = Callable[..., Any]
LOG = ("--model", "m", "--prediction", "pred", "--score", "proba", "--id", "req")


def _counts(store: Path, model: str = "m") -> tuple[int, int]:
    with open_store(store) as st:
        return st.count(model)


def test_version(cli: Invoke) -> None:
    result = cli("--version")
    assert result.code == 0
    assert result.out.strip() == f"tunelens {__version__}"


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_log_with_target_logs_predictions_and_labels(
    cli: Invoke, tmp_path: Path, kind: str, csv_file: Path, parquet_file: Path
) -> None:
    source = csv_file if kind == "csv" else parquet_file
    store = tmp_path / "s.duckdb"
    result = cli(
        "log", "--store", store, *LOG, source, "--timestamp", "ts", "--target", "label",
        "--latency", "ms", "--batch-rows", "250",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "accepted 600 rows" in result.out
    assert "600 accepted, 600 matched" in result.out
    assert _counts(store) == (600, 600)
    with open_store(store) as st:
        record = st.get_model("m")
        assert record is not None
        assert record.task == "binary"
        assert set(record.features) == {"age", "income"}  # every column no flag named


def test_log_features_flag_and_several_files(
    cli: Invoke, tmp_path: Path, frame: pd.DataFrame
) -> None:
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    frame.iloc[:300].to_parquet(first, index=False)
    frame.iloc[300:].to_parquet(second, index=False)
    store = tmp_path / "s.duckdb"
    result = cli("log", "--store", store, *LOG, first, second, "--features", "age")
    assert result.code == 0, result.err
    assert _counts(store) == (600, 0)
    with open_store(store) as st:
        record = st.get_model("m")
        assert record is not None and list(record.features) == ["age"]


def test_labels_command_reports_accepted_and_matched(
    cli: Invoke, tmp_path: Path, parquet_file: Path, frame: pd.DataFrame
) -> None:
    store = tmp_path / "s.duckdb"
    assert cli("log", "--store", store, *LOG, parquet_file).code == 0
    labels = pd.DataFrame(
        {"req": [*frame["req"][:100], "unknown-1"], "y": [*frame["label"][:100], 1]}
    )
    path = tmp_path / "labels.csv"
    labels.to_csv(path, index=False)
    result = cli("labels", "--store", store, "--model", "m", path, "--id", "req", "--label", "y")
    assert result.code == 0, result.err
    assert "accepted 101 labels, matched 100" in result.out


# ---------------------------------------------------------------- bad input: exit 2, one line


def _one_error_line(result: object) -> str:
    err = result.err  # type: ignore[attr-defined]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_missing_column_names_it_and_lists_available(
    cli: Invoke, tmp_path: Path, csv_file: Path
) -> None:
    result = cli("log", "--store", tmp_path / "s.duckdb", *LOG[:-4], "--score", "p1", csv_file)
    assert result.code == 2
    line = _one_error_line(result)
    assert "'p1'" in line and "--score" in line and "available columns: req, ts, pred" in line
    assert not (tmp_path / "s.duckdb").exists() or _counts(tmp_path / "s.duckdb") == (0, 0)


def test_text_in_score_column_names_row_and_keeps_earlier_batches(
    cli: Invoke, tmp_path: Path, frame: pd.DataFrame
) -> None:
    bad = frame.copy()
    bad["proba"] = bad["proba"].map(lambda v: f"{v:.6f}").astype(object)
    bad.loc[450, "proba"] = "high"
    path = tmp_path / "bad.parquet"
    bad.to_parquet(path, index=False)
    store = tmp_path / "s.duckdb"
    result = cli("log", "--store", store, *LOG, path, "--batch-rows", "200")
    assert result.code == 2
    line = _one_error_line(result)
    assert "column 'proba' row 451" in line and "'high'" in line
    assert "400 rows accepted before this error" in line
    assert _counts(store) == (400, 0)


def test_text_in_score_column_of_csv(cli: Invoke, tmp_path: Path, csv_file: Path) -> None:
    lines = csv_file.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[5].split(",")
    row[header.index("proba")] = "n/a?"
    lines[5] = ",".join(row)
    csv_file.write_text("\n".join(lines) + "\n")
    result = cli("log", "--store", tmp_path / "s.duckdb", *LOG, csv_file)
    assert result.code == 2
    line = _one_error_line(result)
    assert "proba" in line and "n/a?" in line


@pytest.mark.parametrize("content", ["", "req,pred,proba\n"])
def test_empty_file(cli: Invoke, tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(content)
    result = cli("log", "--store", tmp_path / "s.duckdb", *LOG, path)
    assert result.code == 2
    line = _one_error_line(result)
    assert "empty.csv" in line and ("empty" in line or "no data rows" in line)


def test_nonexistent_file(cli: Invoke, tmp_path: Path) -> None:
    result = cli("log", "--store", tmp_path / "s.duckdb", *LOG, tmp_path / "nope.csv")
    assert result.code == 2
    assert "nope.csv: no such file" in _one_error_line(result)


def test_bad_task_and_missing_option(cli: Invoke, tmp_path: Path, csv_file: Path) -> None:
    result = cli("log", "--store", tmp_path / "s.duckdb", *LOG, csv_file, "--task", "ranking")
    assert result.code == 2
    assert "--task" in _one_error_line(result)
    result = cli("log", "--store", tmp_path / "s.duckdb", "--model", "m", csv_file)
    assert result.code == 2
    assert "--prediction" in _one_error_line(result)


def test_labels_for_unknown_store_or_model(cli: Invoke, tmp_path: Path, csv_file: Path) -> None:
    args = ("--id", "req", "--label", "label")
    result = cli("labels", "--store", tmp_path / "none.duckdb", "--model", "m", csv_file, *args)
    assert result.code == 2
    assert "no such store file" in _one_error_line(result)
    store = tmp_path / "s.duckdb"
    assert cli("log", "--store", store, *LOG, csv_file).code == 0
    result = cli("labels", "--store", store, "--model", "other", csv_file, *args)
    assert result.code == 2
    line = _one_error_line(result)
    assert "other" in line and "models in the store: m" in line


def test_internal_error_is_exit_1_with_hint(
    cli: Invoke, tmp_path: Path, csv_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tunelens.monitor

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(tunelens.monitor.Monitor, "log", boom)
    result = cli("log", "--store", tmp_path / "s.duckdb", *LOG, csv_file)
    assert result.code == 1
    line = _one_error_line(result)
    assert "disk on fire" in line and "TUNELENS_DEBUG=1" in line


def test_progress_bar_path(
    cli: Invoke, tmp_path: Path, parquet_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Force the bar on (as for a >1M-row file on a terminal): logging is unchanged.
    from rich.console import Console

    import tunelens.cli

    monkeypatch.setattr(tunelens.cli, "PROGRESS_MIN_ROWS", 0)
    monkeypatch.setattr(tunelens.cli, "_stderr", lambda: Console(stderr=True, force_terminal=True))
    store = tmp_path / "s.duckdb"
    result = cli("log", "--store", store, *LOG, parquet_file, "--batch-rows", "100")
    assert result.code == 0, result.err
    assert _counts(store) == (600, 0)


def test_multiclass_scores_and_partial_targets(cli: Invoke, tmp_path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(1)
    n = 300
    proba = rng.dirichlet([1.0, 1.0, 1.0], n)
    classes = np.array(["cat", "dog", "owl"])
    frame = pd.DataFrame(
        {
            "id": np.arange(n),
            "pred": classes[proba.argmax(1)],
            "p_cat": proba[:, 0],
            "p_dog": proba[:, 1],
            "p_owl": proba[:, 2],
            "truth": pd.Series(classes[rng.integers(0, 3, n)]).where(np.arange(n) % 3 != 0),
            "weight_kg": rng.normal(5, 1, n),
        }
    )
    path = tmp_path / "animals.csv"
    frame.to_csv(path, index=False)
    store = tmp_path / "s.duckdb"
    result = cli(
        "log", "--store", store, "--model", "zoo", path, "--prediction", "pred",
        "--score", "p_cat,p_dog,p_owl", "--id", "id", "--target", "truth",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "accepted 300 rows" in result.out and "200 accepted, 200 matched" in result.out
    with open_store(store) as st:
        record = st.get_model("zoo")
        assert record is not None and record.task == "multiclass"
        assert tuple(record.classes) == ("cat", "dog", "owl")
        assert list(record.features) == ["weight_kg"]


def test_regression_task(cli: Invoke, tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": range(50), "y_hat": [i * 0.5 for i in range(50)], "x": range(50)})
    path = tmp_path / "reg.parquet"
    frame.to_parquet(path, index=False)
    store = tmp_path / "s.duckdb"
    result = cli(
        "log", "--store", store, "--model", "r", path, "--prediction", "y_hat", "--id", "id",
        "--task", "regression", "--target", "y_hat",
    )  # fmt: skip
    assert result.code == 2  # one column named by two flags
    assert "two flags" in _one_error_line(result)
    result = cli(
        "log", "--store", store, "--model", "r", path, "--prediction", "y_hat", "--id", "id",
        "--task", "regression",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert _counts(store, "r") == (50, 0)


def test_bad_timestamp_names_row(cli: Invoke, tmp_path: Path, frame: pd.DataFrame) -> None:
    out = frame.copy()
    out["ts"] = out["ts"].dt.strftime("%Y-%m-%d %H:%M:%S").astype(object)  # naive: UTC
    out.loc[10, "ts"] = "last tuesday"
    path = tmp_path / "ts.csv"
    out.to_csv(path, index=False)
    store = tmp_path / "s.duckdb"
    result = cli("log", "--store", store, *LOG, path, "--timestamp", "ts")
    assert result.code == 2
    line = _one_error_line(result)
    assert "column 'ts' row 11" in line and "'last tuesday'" in line and "ISO-8601" in line
    out.loc[10, "ts"] = out.loc[9, "ts"]
    out.to_csv(path, index=False)
    assert cli("log", "--store", store, *LOG, path, "--timestamp", "ts").code == 0
    with open_store(store) as st:
        first = st.scan("m", columns=["timestamp"]).column("timestamp")[0].as_py()
    assert first.isoformat() == frame["ts"].min().floor("s").isoformat()


def test_default_ids_of_same_named_files_do_not_collide(
    cli: Invoke, tmp_path: Path, frame: pd.DataFrame
) -> None:
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    frame.iloc[:100].to_parquet(tmp_path / "d1" / "preds.parquet", index=False)
    frame.iloc[100:200].to_parquet(tmp_path / "d2" / "preds.parquet", index=False)
    store = tmp_path / "s.duckdb"
    for folder in ("d1", "d2"):
        result = cli(
            "log", "--store", store, "--model", "m", "--prediction", "pred",
            "--score", "proba", tmp_path / folder / "preds.parquet",
        )  # fmt: skip
        assert result.code == 0, result.err
    with open_store(store) as st:
        ids = st.scan("m", columns=["id"])["id"].to_pylist()
    assert len(ids) == 200 and len(set(ids)) == 200
    first = str((tmp_path / "d1" / "preds.parquet").resolve())
    assert f"{first}:1" in ids  # PATH:ROW, rows counted from 1


def test_duplicated_header_and_unsupported_format_exit_2(cli: Invoke, tmp_path: Path) -> None:
    doubled = tmp_path / "d.csv"
    doubled.write_text("id,pred,x,x\n1,0,1,2\n")
    result = cli("log", "--store", tmp_path / "s.duckdb", "--model", "d", doubled,
                 "--id", "id", "--prediction", "pred")  # fmt: skip
    assert result.code == 2
    assert "'x' appears 2 times" in _one_error_line(result)
    as_json = tmp_path / "p.json"
    as_json.write_text('[{"id": 1, "pred": 0}]')
    result = cli("log", "--store", tmp_path / "s.duckdb", "--model", "d", as_json,
                 "--id", "id", "--prediction", "pred")  # fmt: skip
    assert result.code == 2
    assert ".json files are not read" in _one_error_line(result)


def test_rows_without_a_target_are_counted_not_hidden(
    cli: Invoke, tmp_path: Path, frame: pd.DataFrame
) -> None:
    frame = frame.copy()
    frame["label"] = frame["label"].astype("float64")
    frame.loc[[3, 7], "label"] = float("nan")
    source = tmp_path / "p.parquet"
    frame.to_parquet(source, index=False)
    store = tmp_path / "s.duckdb"
    result = cli("log", "--store", store, *LOG, source, "--target", "label")
    assert result.code == 0, result.err
    assert "2 rows had no 'label' value" in result.out
    assert _counts(store) == (600, 598)


def test_a_store_path_that_is_a_data_file_is_refused(cli: Invoke, csv_file: Path) -> None:
    before = csv_file.read_bytes()
    result = cli("log", "--store", csv_file, *LOG, csv_file)
    assert result.code == 2
    assert "not a DuckDB store" in _one_error_line(result)
    assert csv_file.read_bytes() == before


def test_errors_name_the_file_row(cli: Invoke, tmp_path: Path, frame: pd.DataFrame) -> None:
    frame = frame.copy()
    frame["pred"] = frame["pred"].astype("float64")
    frame.loc[250, "pred"] = float("nan")  # data row 251 of the file, in the third batch
    source = tmp_path / "p.csv"
    frame.drop(columns=["ts"]).to_csv(source, index=False)
    store = tmp_path / "s.duckdb"
    result = cli("log", "--store", store, *LOG, source, "--batch-rows", "100")
    assert result.code == 2
    line = _one_error_line(result)
    assert "at row 251" in line and "index" not in line
    assert "200 rows accepted before this error" in line
    assert _counts(store) == (200, 0)


def test_a_bad_target_writes_nothing_of_its_batch(
    cli: Invoke, tmp_path: Path, frame: pd.DataFrame
) -> None:
    frame = frame.copy()
    frame["label"] = frame["label"].astype(str)
    frame.loc[199, "label"] = "x"  # data row 200, in the fourth batch of 64
    source = tmp_path / "p.csv"
    frame.drop(columns=["ts"]).to_csv(source, index=False)
    store = tmp_path / "s.duckdb"
    result = cli("log", "--store", store, *LOG, source, "--target", "label", "--batch-rows", "64")
    assert result.code == 2
    line = _one_error_line(result)
    assert "'x'" in line and "at row 200" in line
    assert "192 rows accepted before this error, 192 labels" in line
    assert _counts(store) == (192, 192)  # whole batches only: no unlabelled rows left


def test_metrics_json_keeps_only_the_asked_columns(
    cli: Invoke, tmp_path: Path, csv_file: Path
) -> None:
    store = tmp_path / "s.duckdb"
    assert cli("log", "--store", store, *LOG, csv_file, "--target", "label").code == 0
    result = cli(
        "metrics", "--store", store, "--model", "m", "--json", "--columns", "rows,accuracy"
    )
    assert result.code == 0, result.err
    rows = json.loads(result.out)
    assert rows and all(list(row) == ["window_start", "rows", "accuracy"] for row in rows)
    bad = cli("metrics", "--store", store, "--model", "m", "--json", "--columns", "nope")
    assert bad.code == 2
    assert "--columns nope" in _one_error_line(bad)
