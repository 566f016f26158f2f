"""Reading CSV and Parquet tables in batches, with column validation.

Files are streamed, never loaded whole: Parquet through ``pyarrow.parquet`` row-group
batches, CSV through ``pyarrow.csv.open_csv``. Every problem a user can fix (a missing
column, text in a numeric column, an empty file) is raised as `tunelens.errors.InputError`
naming the column, the row and what was expected; rows of earlier batches have already
been handed out by then, so a caller that logs batch by batch keeps them.

Example:
    >>> from tunelens.io import open_table
    >>> table = open_table("predictions.parquet")  # doctest: +SKIP
    >>> table.require(["id", "score"], flag="--score")  # doctest: +SKIP
    >>> for batch in table.batches(["id", "score"]):  # doctest: +SKIP
    ...     print(batch.first_row, batch.table.num_rows)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tunelens.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "Batch",
    "ParquetColumns",
    "TableFile",
    "column_to_float",
    "column_to_strings",
    "open_table",
    "read_table",
    "split_names",
]

DEFAULT_BATCH_ROWS = 100_000
# CSV blocks: large enough that type inference sees many rows, small enough to stream.
_CSV_BLOCK_BYTES = 8 << 20
_CSV_COLUMN_RE = re.compile(r"In CSV column #(\d+):\s*(?:Row #(\d+):\s*)?(.*)", re.DOTALL)
_PARQUET_SUFFIXES = {".parquet", ".pq", ".parq"}
_CSV_SUFFIXES = {".csv", ".txt"}
# Data formats we do not read: named, so that a .json file is not parsed as a CSV.
_UNSUPPORTED_SUFFIXES = {
    ".tsv",
    ".json",
    ".jsonl",
    ".ndjson",
    ".xlsx",
    ".xls",
    ".feather",
    ".arrow",
    ".ipc",
    ".avro",
    ".orc",
    ".duckdb",
    ".db",
    ".sqlite",
    ".pkl",
    ".pickle",
    ".npy",
    ".npz",
}

Format = Literal["csv", "parquet"]


def split_names(value: str | None) -> list[str]:
    """Split a comma-separated flag value (``"p0, p1,p2"``) into names; empty parts dropped."""
    if value is None:
        return []
    return [part.strip() for part in value.split(",") if part.strip()]


@dataclass(frozen=True)
class Batch:
    """One batch of a table file.

    Attributes:
        table: the rows, only the columns asked for.
        first_row: 1-based number of the batch's first data row in the file (the CSV
            header does not count), for error messages.
        done: progress after this batch, in `TableFile.progress_unit` units.
    """

    table: pa.Table
    first_row: int
    done: int


class TableFile:
    """A CSV or Parquet file opened for batch reading; see `open_table`.

    Attributes:
        path: the file.
        format: ``"csv"`` or ``"parquet"``.
        schema: column names and types (for CSV, as inferred from the first block).
        total_rows: exact rows for Parquet, an estimate for CSV (from the first block).
        total_bytes: the file's size.
    """

    def __init__(self, path: Path, fmt: Format, schema: pa.Schema, total_rows: int) -> None:
        self.path = path
        self.format: Format = fmt
        self.schema = schema
        self.total_rows = total_rows
        self.total_bytes = path.stat().st_size

    @property
    def columns(self) -> list[str]:
        """Column names in file order."""
        return list(self.schema.names)

    @property
    def rows_exact(self) -> bool:
        """Whether `total_rows` is exact (Parquet metadata) rather than estimated."""
        return self.format == "parquet"

    @property
    def progress_unit(self) -> Literal["rows", "bytes"]:
        """What `Batch.done` counts: rows for Parquet, bytes for CSV."""
        return "rows" if self.format == "parquet" else "bytes"

    @property
    def progress_total(self) -> int:
        """The value `Batch.done` reaches at the end of the file."""
        return self.total_rows if self.format == "parquet" else self.total_bytes

    def require(self, names: Iterable[str], *, flag: str) -> None:
        """Raise `InputError` naming the first of ``names`` that is not a column.

        Args:
            names: columns that must exist.
            flag: the option that named them (``"--score"``), quoted in the message.
        """
        available = self.columns
        for name in names:
            if name not in available:
                shown = ", ".join(available[:40]) + (", ..." if len(available) > 40 else "")
                raise InputError(
                    f"{self.path.name}: column {name!r} (from {flag})",
                    "not found",
                    f"available columns: {shown}",
                )

    def batches(
        self,
        columns: Sequence[str],
        batch_rows: int = DEFAULT_BATCH_ROWS,
        *,
        as_text: Sequence[str] = (),
        as_float: Sequence[str] = (),
    ) -> Iterator[Batch]:
        """Yield the file's rows in batches of about ``batch_rows``.

        CSV columns are read with the types inferred from the first block; a later value
        that does not fit raises `InputError` naming the column and value, after every
        complete row before it has been yielded.

        Args:
            columns: the columns to read (validate them first with `require`).
            batch_rows: rows per batch (the last one may be smaller).
            as_text: CSV columns to read as text whatever the first block looked like
                (ids: ``007`` stays ``007``).
            as_float: numeric CSV columns (scores, latencies): read as text, for
                `column_to_float` to convert and to report a bad value with its exact row.
        """
        if batch_rows < 1:
            raise InputError("batch_rows", f"must be at least 1, got {batch_rows}")
        if self.format == "parquet":
            yield from self._parquet_batches(list(columns), batch_rows)
        else:
            yield from self._csv_batches(list(columns), batch_rows, set(as_text), set(as_float))

    def _parquet_batches(self, columns: list[str], batch_rows: int) -> Iterator[Batch]:
        import pyarrow.parquet as pq

        row = 1
        with pq.ParquetFile(self.path) as handle:
            for record_batch in handle.iter_batches(batch_size=batch_rows, columns=columns):
                table = pa.Table.from_batches([record_batch])
                yield Batch(table, row, row - 1 + table.num_rows)
                row += table.num_rows

    def _csv_batches(
        self, columns: list[str], batch_rows: int, as_text: set[str], as_float: set[str]
    ) -> Iterator[Batch]:
        import pyarrow.csv as csv

        types: dict[str, pa.DataType] = {}
        for name in columns:
            kind = self.schema.field(name).type
            if name in as_float or name in as_text:
                # Read as text and convert per batch: a bad value is then reported with
                # its exact row instead of failing the whole CSV block.
                types[name] = pa.string()
                continue
            # A column empty in the first block is inferred as null; read it as text so a
            # later value is kept, and let the caller convert it.
            types[name] = pa.string() if pa.types.is_null(kind) else kind
        bytes_per_row = self.total_bytes / max(self.total_rows, 1)
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        row = 1
        reader = csv.open_csv(
            self.path,
            read_options=csv.ReadOptions(block_size=_CSV_BLOCK_BYTES),
            convert_options=csv.ConvertOptions(
                column_types=types, include_columns=columns, strings_can_be_null=True
            ),
        )

        def flush() -> Batch:
            nonlocal pending, pending_rows, row
            table = pa.Table.from_batches(pending, schema=reader.schema)
            first = row
            row += table.num_rows
            pending, pending_rows = [], 0
            done = min(self.total_bytes, round((row - 1) * bytes_per_row))
            return Batch(table, first, done)

        while True:
            try:
                record_batch = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                if pending:
                    yield flush()
                raise self._csv_error(exc, row + pending_rows) from None
            if record_batch.num_rows == 0:
                continue
            pending.append(record_batch)
            pending_rows += record_batch.num_rows
            while pending_rows >= batch_rows:
                whole = pa.Table.from_batches(pending, schema=reader.schema)
                rest = whole.slice(batch_rows)
                pending, pending_rows = whole.slice(0, batch_rows).to_batches(), batch_rows
                batch = flush()
                pending, pending_rows = rest.to_batches(), rest.num_rows
                yield batch
        if pending_rows:
            batch = flush()
            yield Batch(batch.table, batch.first_row, self.total_bytes)

    def _csv_error(self, exc: pa.ArrowInvalid, block_first_row: int) -> InputError:
        """Turn pyarrow's CSV conversion error into one that names column and value."""
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable CSV"
        match = _CSV_COLUMN_RE.match(text)
        if match is None:
            return InputError(self.path.name, f"cannot read CSV: {text}")
        index = int(match.group(1))
        name = self.columns[index] if index < len(self.columns) else f"#{index}"
        where = f"{self.path.name}: column {name!r}"
        if match.group(2) is not None:
            where += f" row {int(match.group(2))}"
        else:
            where += f" at or after row {block_first_row}"
        expected = self.schema.field(name).type if name in self.columns else "?"
        detail = match.group(3).strip()
        return InputError(
            where,
            f"{detail} (expected {expected}, as inferred from the first rows)",
            "fix the value, or convert the file to Parquet with explicit types",
        )


def open_table(path: str | Path) -> TableFile:
    """Open a CSV or Parquet file for batch reading.

    The format comes from the suffix (``.parquet``/``.pq``, ``.csv``); an unknown
    suffix is sniffed from the Parquet magic bytes.

    Args:
        path: the file.

    Returns:
        A `TableFile`: its columns are known, no rows read beyond the first CSV block.

    Raises:
        InputError: the file does not exist, is empty, or cannot be parsed.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(str(path), "no such file")
    if path.is_dir():
        raise InputError(str(path), "is a directory, expected a CSV or Parquet file")
    if path.stat().st_size == 0:
        raise InputError(str(path), "file is empty", "expected a header row and data rows")
    fmt = _detect_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            with pq.ParquetFile(path) as handle:
                schema = handle.schema_arrow
                rows = handle.metadata.num_rows
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(str(path), f"cannot read Parquet: {_first_line(exc)}") from None
        table = TableFile(path, "parquet", schema, rows)
    else:
        table = _open_csv(path)
    if table.total_rows == 0:
        raise InputError(str(path), "has no data rows", "expected at least one row")
    names = table.columns
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(
            str(path),
            f"column {repeated[0]!r} appears {names.count(repeated[0])} times in the header",
            "give every column a distinct name",
        )
    return table


def read_table(path: str | Path) -> pa.Table:
    """Read a whole CSV or Parquet file into memory (for analyses that need every row).

    The same checks as `open_table` (missing, empty, unparseable files, repeated
    column names, no data rows) raise `InputError` naming the file; in a CSV an
    empty cell is missing, and a parse error names the column and row.

    Args:
        path: the file.

    Returns:
        A ``pyarrow.Table``.
    """
    table = open_table(path)
    if table.format == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(table.path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(str(path), f"cannot read Parquet: {_first_line(exc)}") from None
    import pyarrow.csv as csv

    try:
        return csv.read_csv(
            table.path,
            read_options=csv.ReadOptions(block_size=_CSV_BLOCK_BYTES),
            convert_options=csv.ConvertOptions(strings_can_be_null=True),
        )
    except pa.ArrowInvalid as exc:
        raise InputError(str(path), f"cannot read CSV: {_first_line(exc)}") from None


class ParquetColumns:
    """A Parquet file as a read-only table whose columns are read when asked for.

    It answers ``columns``, ``len()``, ``table[name]`` (a pandas Series) and
    ``table[[a, b]]`` (a DataFrame), so analyses that go column by column (drift,
    slices, the multivariate check) hold one column of a large file at a time instead
    of the whole table: the peak memory of a report on two million-row files is then
    set by the work, not by the data. Each access decodes the column again (a few
    milliseconds for a million numbers); text columns arrive as pandas categoricals.
    Safe to read from several threads.

    Args:
        path: the Parquet file (checked as by `open_table`).
    """

    def __init__(self, path: str | Path) -> None:
        import threading

        import pandas as pd
        import pyarrow.parquet as pq

        table = open_table(path)
        if table.format != "parquet":
            raise InputError(str(path), "is not a Parquet file")
        self.path = table.path
        self.schema = table.schema
        self._rows = table.total_rows
        self._text = [
            f.name
            for f in table.schema
            if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
        ]
        self._file = pq.ParquetFile(self.path, read_dictionary=self._text)
        self._lock = threading.Lock()
        self.columns = pd.Index(table.columns)
        self.attrs: dict[str, object] = {}

    def __len__(self) -> int:
        return self._rows

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def arrow_type(self, name: str) -> pa.DataType:
        """The column's Arrow type, without reading it."""
        return self.schema.field(name).type

    def _read(self, names: list[str]) -> pa.Table:
        try:
            with self._lock:
                return self._file.read(columns=names, use_threads=False)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(str(self.path), f"cannot read Parquet: {_first_line(exc)}") from None

    @overload
    def __getitem__(self, key: str) -> pd.Series: ...

    @overload
    def __getitem__(self, key: list[str]) -> pd.DataFrame: ...

    def __getitem__(self, key: str | list[str]) -> pd.Series | pd.DataFrame:
        """One column as a pandas Series, or several as a DataFrame."""

        if isinstance(key, str):
            if key not in self.columns:
                raise KeyError(key)
            column = self._read([key]).column(0)
            series: pd.Series = column.to_pandas()
            series.name = key
            return series
        names = [str(k) for k in key]
        missing = [k for k in names if k not in self.columns]
        if missing:
            raise KeyError(missing[0])
        frame: pd.DataFrame = self._read(names).to_pandas(split_blocks=True, self_destruct=True)
        return frame


def _open_csv(path: Path) -> TableFile:
    import pyarrow.csv as csv

    try:
        reader = csv.open_csv(
            path,
            read_options=csv.ReadOptions(block_size=_CSV_BLOCK_BYTES),
            # An empty cell is missing, not the empty string (a label "" is no label).
            convert_options=csv.ConvertOptions(strings_can_be_null=True),
        )
        schema = reader.schema
        first_rows = 0
        first = None
        try:
            first = reader.read_next_batch()
            first_rows = first.num_rows
        except StopIteration:
            pass
        reader.close()
    except pa.ArrowInvalid as exc:
        message = _first_line(exc)
        if "Empty CSV file" in message:
            raise InputError(str(path), "file is empty", "expected a header row") from None
        raise InputError(str(path), f"cannot read CSV: {message}") from None
    size = path.stat().st_size
    if first_rows == 0:
        estimate = 0
    elif first is not None and first.nbytes > 0 and size > _CSV_BLOCK_BYTES:
        # Estimate total rows from the share of the file the first block covered.
        estimate = max(first_rows, round(first_rows * size / _CSV_BLOCK_BYTES))
    else:
        estimate = first_rows
    return TableFile(path, "csv", schema, estimate)


def _detect_format(path: Path) -> Format:
    suffix = path.suffix.lower()
    if suffix in _UNSUPPORTED_SUFFIXES:
        raise InputError(
            str(path),
            f"{suffix} files are not read",
            "give a CSV (.csv) or Parquet (.parquet) file",
        )
    if suffix in _PARQUET_SUFFIXES:
        return "parquet"
    if suffix in _CSV_SUFFIXES:
        return "csv"
    with path.open("rb") as handle:
        magic = handle.read(4)
    return "parquet" if magic == b"PAR1" else "csv"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def column_to_float(column: pa.ChunkedArray | pa.Array, name: str, first_row: int) -> np.ndarray:
    """A column as float64 numpy (nulls become NaN), or `InputError` naming the bad row.

    Args:
        column: the column of one batch.
        name: its name, for the message.
        first_row: the file row number of the batch's first row.
    """
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        casted = pc.cast(column, pa.float64())
        return np.asarray(casted.to_numpy(zero_copy_only=False), dtype=np.float64)
    if pa.types.is_null(kind):
        return np.full(len(column), np.nan)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            casted = pc.cast(column, pa.float64())
            return np.asarray(casted.to_numpy(zero_copy_only=False), dtype=np.float64)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # find the first bad value below
        values = column.to_pylist()
        out = np.empty(len(values), dtype=np.float64)
        for offset, value in enumerate(values):
            if value is None or value == "":
                out[offset] = np.nan
                continue
            try:
                out[offset] = float(value)
            except ValueError:
                raise InputError(
                    f"column {name!r} row {first_row + offset}",
                    f"expected a number, got {value!r}",
                ) from None
        return out
    raise InputError(f"column {name!r}", f"expected numbers, got values of type {kind}")


def column_to_strings(column: pa.ChunkedArray | pa.Array, name: str, first_row: int) -> list[str]:
    """A column of ids as Python strings; a null id raises `InputError` naming the row.

    Integer ids become their decimal text, so a CSV id ``"17"`` and a Parquet id ``17``
    join.
    """
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = pc.cast(column, pa.string())
    if column.null_count:
        mask = np.asarray(pc.is_null(column).to_numpy(zero_copy_only=False))
        offset = int(np.flatnonzero(mask)[0])
        raise InputError(f"column {name!r} row {first_row + offset}", "id is empty")
    values: list[str] = column.to_pylist()
    return values
