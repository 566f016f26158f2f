"""Batch reading of CSV and Parquet files (`tunelens.io`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tunelens.errors import InputError
from tunelens.io import column_to_float, column_to_strings, open_table, split_names


def _write_csv(path: Path, rows: int, bad_row: int | None = None) -> Path:
    lines = ["id,score,x,when"]
    for i in range(rows):
        score = "abc" if i + 1 == bad_row else f"{(i % 100) / 100}"
        lines.append(f"{i},{score},{i * 2},2026-01-01T00:{(i // 60) % 60:02d}:{i % 60:02d}Z")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_split_names() -> None:
    assert split_names(" p0, p1,,p2 ") == ["p0", "p1", "p2"]
    assert split_names(None) == []


def test_csv_batches_cover_every_row_in_order(tmp_path: Path) -> None:
    table = open_table(_write_csv(tmp_path / "a.csv", 2_500))
    assert table.format == "csv"
    assert table.columns == ["id", "score", "x", "when"]
    batches = list(table.batches(["id", "score"], batch_rows=1_000, as_text=["id"]))
    assert [b.table.num_rows for b in batches] == [1_000, 1_000, 500]
    assert [b.first_row for b in batches] == [1, 1_001, 2_001]
    assert batches[-1].done == table.progress_total
    ids = [i for b in batches for i in column_to_strings(b.table.column("id"), "id", b.first_row)]
    assert ids == [str(i) for i in range(2_500)]


def test_parquet_batches_and_exact_row_count(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"id": np.arange(3_000), "score": np.linspace(0, 1, 3_000)}), path)
    table = open_table(path)
    assert table.format == "parquet" and table.rows_exact and table.total_rows == 3_000
    batches = list(table.batches(["score"], batch_rows=1_000))
    assert [b.first_row for b in batches] == [1, 1_001, 2_001]
    assert batches[-1].done == 3_000
    values = np.concatenate(
        [column_to_float(b.table.column("score"), "score", b.first_row) for b in batches]
    )
    np.testing.assert_allclose(values, np.linspace(0, 1, 3_000))


def test_missing_column_names_it_and_lists_available(tmp_path: Path) -> None:
    table = open_table(_write_csv(tmp_path / "a.csv", 10))
    with pytest.raises(InputError, match=r"'proba'.*--score.*available columns: id, score, x"):
        table.require(["proba"], flag="--score")


def test_text_in_score_column_names_row(tmp_path: Path) -> None:
    table = open_table(_write_csv(tmp_path / "a.csv", 50, bad_row=7))
    [batch] = list(table.batches(["score"], as_float=["score"]))
    with pytest.raises(InputError, match=r"column 'score' row 7: expected a number, got 'abc'"):
        column_to_float(batch.table.column("score"), "score", batch.first_row)


def test_late_bad_value_keeps_earlier_batches(tmp_path: Path) -> None:
    # A value that does not fit the type inferred from the first CSV block: every row
    # of the blocks before it is still yielded, then the error names column and value.
    path = _write_csv(tmp_path / "big.csv", 400_000, bad_row=390_000)
    table = open_table(path)
    seen = 0
    with pytest.raises(InputError, match=r"column 'score' at or after row .*'abc'"):
        for batch in table.batches(["id", "score"], batch_rows=50_000):
            seen += batch.table.num_rows
    assert 100_000 <= seen < 390_000


def test_numeric_columns_read_as_text_report_the_exact_row(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "big.csv", 400_000, bad_row=390_000)
    table = open_table(path)
    seen = 0
    with pytest.raises(InputError, match=r"column 'score' row 390000: .*'abc'"):
        for batch in table.batches(["score"], batch_rows=50_000, as_float=["score"]):
            column_to_float(batch.table.column("score"), "score", batch.first_row)
            seen += batch.table.num_rows
    assert seen == 350_000


@pytest.mark.parametrize("content", [b"", b"a,b\n"])
def test_empty_files_are_input_errors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"empty|no data rows"):
        open_table(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        open_table(tmp_path / "nope.parquet")
