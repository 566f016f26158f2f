"""The ``tunelens`` command: parse, call the library, format.

Commands: ``log`` and ``labels`` (bulk ingestion from CSV/Parquet), ``metrics`` (the
windowed metrics as a table or JSON) and ``demo``. Exit codes: 0 on success, 2 on bad
input with one ``error: ...`` line on stderr, 1 on an internal error (set
``TUNELENS_DEBUG=1`` for the traceback).

Example:
    .. code-block:: console

        $ tunelens log --store m.duckdb --model churn preds.parquet \\
            --id id --prediction pred --score proba --timestamp ts --target label
        $ tunelens metrics --store m.duckdb --model churn --window 1d --json
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tunelens import __version__
from tunelens.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from rich.console import Console

    from tunelens.io import Batch, TableFile
    from tunelens.monitor import Monitor
    from tunelens.store import Store

__all__ = ["app", "main", "run"]

DEBUG_ENV = "TUNELENS_DEBUG"
#: Files with more rows than this get a progress bar (when stderr is a terminal).
PROGRESS_MIN_ROWS = 1_000_000
TASKS = ("binary", "multiclass", "regression")

#: Columns shown by ``tunelens metrics`` when present and not all empty, in this order.
TABLE_COLUMNS = (
    "window_start",
    "rows",
    "labelled_rows",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "mae",
    "rmse",
    "r2",
    "latency_p50",
    "latency_p99",
    "throughput",
)

app = typer.Typer(
    name="tunelens",
    help="Keep machine-learning models healthy after training.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


class CliError(Exception):
    """A failure the CLI reports as one line, with its exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"tunelens {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_version
        ),
    ] = False,
) -> None:
    """Keep machine-learning models healthy after training."""


# --------------------------------------------------------------------------- helpers


def stdout_console() -> Console:
    """A rich console on stdout; 200 columns wide when not a terminal."""
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:  # piped or captured: never squeeze a table to 80 columns
        console = Console(highlight=False, soft_wrap=False, width=200)
    return console


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _open_store(url: str, *, must_exist: bool) -> Store:
    """Open the store; reading commands refuse a store file that does not exist."""
    from tunelens.store import open_store

    if must_exist and "://" not in url and not Path(url).exists():
        raise InputError(f"--store {url}", "no such store file", "log predictions into it first")
    return open_store(url)


def _require_model(store: Store, model: str) -> None:
    if store.get_model(model) is None:
        known = ", ".join(record.name for record in store.list_models()) or "none"
        raise InputError(f"--model {model}", "not in this store", f"models in the store: {known}")


@contextmanager
def _progress(table: TableFile, label: str) -> Iterator[Any]:
    """A rich progress bar on stderr for big files; yields ``advance_to(done)``."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    console = _stderr()
    show = table.total_rows > PROGRESS_MIN_ROWS and console.is_terminal
    columns: list[Any] = [TextColumn("{task.description}"), BarColumn()]
    if table.progress_unit == "rows":
        columns.append(MofNCompleteColumn())
    else:
        columns.append(TextColumn("{task.percentage:>3.0f}%"))
    columns.append(TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not show, transient=True) as progress:
        task = progress.add_task(label, total=table.progress_total)

        def advance_to(done: int) -> None:
            progress.update(task, completed=done)

        yield advance_to


def _ids(batch: Batch, id_column: str | None, prefix: str) -> list[str]:
    """The id column as text, or ``PREFIX:ROW`` (1-based data row) when there is none."""
    from tunelens.io import column_to_strings

    if id_column is None:
        start = batch.first_row
        return [f"{prefix}:{start + offset}" for offset in range(batch.table.num_rows)]
    return column_to_strings(batch.table.column(id_column), id_column, batch.first_row)


def _timestamps(batch: Batch, column: str | None) -> pa.Array | None:
    """The timestamp column as timestamp[us, UTC]; text must be ISO-8601."""
    if column is None:
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    values = batch.table.column(column).combine_chunks()
    kind = values.type
    if pa.types.is_timestamp(kind):
        if kind.tz is None:  # naive times are taken as UTC
            values = pc.assume_timezone(values, "UTC")
        # Sub-microsecond digits are dropped, not refused: the store keeps microseconds.
        return pc.cast(values, pa.timestamp("us", tz="UTC"), safe=False)
    if pa.types.is_date(kind):
        return values.cast(pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        utc = pa.timestamp("us", tz="UTC")
        with suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return pc.cast(values, utc)  # ISO-8601 with an offset or Z
        with suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return pc.assume_timezone(pc.cast(values, pa.timestamp("us")), "UTC")  # naive: UTC
        parsed: list[datetime] = []  # mixed forms, or a bad value to report by row
        for offset, text in enumerate(values.to_pylist()):
            try:
                parsed.append(_parse_iso(text))
            except (TypeError, ValueError):
                raise InputError(
                    f"column {column!r} row {batch.first_row + offset}",
                    f"expected an ISO-8601 timestamp, got {text!r}",
                ) from None
        return pa.array(parsed, type=utc)
    raise InputError(f"column {column!r}", f"expected timestamps, got values of type {kind}")


def _parse_iso(text: str) -> datetime:
    stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        return stamp.replace(tzinfo=UTC)
    return stamp.astimezone(UTC)


def _parse_when(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    try:
        return _parse_iso(value)
    except ValueError:
        raise InputError(
            flag, f"expected an ISO-8601 time like 2026-01-31T12:00:00Z, got {value!r}"
        ) from None


def _known(values: Any) -> Any:
    """Mask of the values that hold a label (not null, not NaN)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    known = pc.is_valid(values)
    if pa.types.is_floating(values.type):
        known = pc.and_(known, pc.invert(pc.is_nan(values)))
    return np.asarray(known.to_numpy(zero_copy_only=False), dtype=bool)


def _labels(batch: Batch, column: str) -> tuple[Any, Any]:
    """(mask of rows that have a label, the labels of those rows)."""
    import pyarrow as pa

    values = batch.table.column(column)
    present = _known(values)
    return present, values.filter(pa.array(present))


# --------------------------------------------------------------------------- log


@app.command("log")
def log_command(
    files: Annotated[
        list[Path],
        typer.Argument(
            metavar="PREDICTIONS_FILE...", help="CSV or Parquet files.", show_default=False
        ),
    ],
    store: Annotated[str, typer.Option("--store", help="Store file (DuckDB) or URL.")],
    model: Annotated[str, typer.Option("--model", help="Model name.")],
    prediction: Annotated[str, typer.Option("--prediction", help="Predicted label column.")],
    score: Annotated[
        str | None,
        typer.Option(
            "--score",
            help="Positive-class probability column, or one column per class: p0,p1,p2.",
        ),
    ] = None,
    id_column: Annotated[
        str | None,
        typer.Option(
            "--id",
            help="Prediction id column (labels join on it; default PATH:ROW, the "
            "file's absolute path and 1-based data row).",
        ),
    ] = None,
    timestamp: Annotated[str | None, typer.Option("--timestamp", help="Time column.")] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="True label column; logged as labels.")
    ] = None,
    latency: Annotated[
        str | None, typer.Option("--latency", help="Latency column, in milliseconds.")
    ] = None,
    features: Annotated[
        str | None,
        typer.Option("--features", help="Feature columns a,b,c (default: all other columns)."),
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", help="binary, multiclass or regression.")
    ] = None,
    batch_rows: Annotated[
        int, typer.Option("--batch-rows", help="Rows per batch written.", min=1)
    ] = 100_000,
) -> None:
    """Log predictions (and, with --target, their labels) from CSV or Parquet files."""
    from tunelens.io import open_table, split_names

    if task is not None and task not in TASKS:
        raise InputError("--task", f"expected one of {', '.join(TASKS)}, got {task!r}")
    scores = split_names(score)
    if score is not None and not scores:
        raise InputError("--score", "names no column")
    used = [prediction, *scores]
    used += [name for name in (id_column, timestamp, target, latency) if name is not None]
    if len(set(used)) != len(used):
        raise InputError("columns", f"a column is named by two flags: {', '.join(used)}")

    tables = [open_table(path) for path in files]
    first = tables[0]
    feature_names = (
        split_names(features)
        if features is not None
        else [name for name in first.columns if name not in used]
    )
    for table in tables:
        table.require([prediction], flag="--prediction")
        table.require(scores, flag="--score")
        for name, flag in (
            (id_column, "--id"),
            (timestamp, "--timestamp"),
            (target, "--target"),
            (latency, "--latency"),
        ):
            if name is not None:
                table.require([name], flag=flag)
        table.require(feature_names, flag="--features")

    st = _open_store(store, must_exist=False)
    out = stdout_console()
    accepted = labelled = matched = unlabelled = 0
    try:
        from tunelens.monitor import Monitor

        monitor = Monitor(model, store=st, task=task, resources=False)
        try:
            for table in tables:
                a, lab, m, missing = _log_file(
                    monitor,
                    table,
                    prediction=prediction,
                    scores=scores,
                    id_column=id_column,
                    timestamp=timestamp,
                    target=target,
                    latency=latency,
                    feature_names=feature_names,
                    batch_rows=batch_rows,
                    done=(accepted, labelled),
                )
                accepted += a
                labelled += lab
                matched += m
                unlabelled += missing
        finally:
            monitor.close()
    finally:
        st.close()
    message = f"accepted {accepted:,} rows for model {model!r} into {store}"
    if target is not None:
        message += f"; labels: {labelled:,} accepted, {matched:,} matched"
        if unlabelled:
            message += f"; {unlabelled:,} rows had no {target!r} value (no label logged)"
    out.print(message)


def _log_file(
    monitor: Monitor,
    table: TableFile,
    *,
    prediction: str,
    scores: list[str],
    id_column: str | None,
    timestamp: str | None,
    target: str | None,
    latency: str | None,
    feature_names: list[str],
    batch_rows: int,
    done: tuple[int, int],
) -> tuple[int, int, int, int]:
    """Log one file batch by batch; an error names how many rows were already kept.

    Returns (rows, labels, labels matched, rows without a target)."""
    import numpy as np

    from tunelens.io import column_to_float

    columns = [prediction, *scores, *feature_names]
    columns += [name for name in (id_column, timestamp, target, latency) if name is not None]
    columns = list(dict.fromkeys(columns))
    floats = [*scores, *([latency] if latency else [])]
    accepted = labelled = matched = unlabelled = 0
    batch_first: int | None = None
    with _progress(table, f"logging {table.path.name}") as advance_to:
        try:
            for batch in table.batches(
                columns,
                batch_rows,
                as_text=[name for name in (id_column, timestamp) if name],
                as_float=floats,
            ):
                batch_first = batch.first_row
                ids = _ids(batch, id_column, str(table.path.resolve()))
                positions: Any = None  # rows of the batch behind the call that failed
                score_values: Any = None
                if len(scores) == 1:
                    score_values = column_to_float(
                        batch.table.column(scores[0]), scores[0], batch.first_row
                    )
                elif scores:
                    score_values = np.column_stack(
                        [
                            column_to_float(batch.table.column(name), name, batch.first_row)
                            for name in scores
                        ]
                    )
                latency_values = (
                    column_to_float(batch.table.column(latency), latency, batch.first_row)
                    if latency
                    else None
                )
                columns_in = {
                    "ids": ids,
                    "features": batch.table.select(feature_names),
                    "predictions": batch.table.column(prediction),
                    "scores": score_values,
                    "latency_ms": latency_values,
                    "timestamps": _timestamps(batch, timestamp),
                }
                if target is None:
                    accepted += monitor.log(**columns_in)
                else:
                    # Predictions and labels of a batch are validated together and
                    # written together: a bad target leaves no unlabelled rows behind.
                    target_values = batch.table.column(target)
                    known = _known(target_values)
                    unlabelled += int((~known).sum())
                    positions = np.flatnonzero(known)
                    rows, got, hit = monitor.log_with_labels(labels=target_values, **columns_in)
                    accepted += rows
                    labelled += got
                    matched += hit
                advance_to(batch.done)
        except (InputError, ValueError) as exc:
            total = done[0] + accepted
            note = f"{total:,} rows accepted before this error"
            if target is not None:
                note += f", {done[1] + labelled:,} labels"
            text = str(exc)
            if batch_first is not None:
                text = _file_rows(text, batch_first, positions)
            raise CliError(f"{table.path.name}: {text} ({note})") from exc
    return accepted, labelled, matched, unlabelled


def _file_rows(message: str, first_row: int, positions: Any = None) -> str:
    """Turn the library's ``at index N`` (0-based, in the call) into the file's data row.

    ``positions`` maps the call's rows to rows of the batch where some were left out
    (rows without a label); data rows are 1-based, the CSV header not counted.
    """

    # Only label errors index the rows that hold a label; the rest index the batch.
    mapped = positions is not None and message.startswith("labels")

    def row(match: re.Match[str]) -> str:
        index = int(match.group(1))
        if mapped and index < len(positions):
            index = int(positions[index])
        return f"at row {first_row + index:,}"

    return re.sub(r"at index (\d+)", row, message)


# --------------------------------------------------------------------------- labels


@app.command("labels")
def labels_command(
    file: Annotated[
        Path, typer.Argument(metavar="LABELS_FILE", help="CSV or Parquet file.", show_default=False)
    ],
    store: Annotated[str, typer.Option("--store", help="Store file (DuckDB) or URL.")],
    model: Annotated[str, typer.Option("--model", help="Model name.")],
    id_column: Annotated[str, typer.Option("--id", help="Prediction id column.")],
    label: Annotated[str, typer.Option("--label", help="True label column.")],
    timestamp: Annotated[
        str | None, typer.Option("--timestamp", help="When each label arrived (default: now).")
    ] = None,
    batch_rows: Annotated[
        int, typer.Option("--batch-rows", help="Rows per batch written.", min=1)
    ] = 100_000,
) -> None:
    """Log late labels (joined to predictions by id); prints accepted and matched."""
    from tunelens.io import open_table

    table = open_table(file)
    table.require([id_column], flag="--id")
    table.require([label], flag="--label")
    if timestamp is not None:
        table.require([timestamp], flag="--timestamp")
    import numpy as np

    st = _open_store(store, must_exist=True)
    accepted = matched = skipped = 0
    batch_first: int | None = None
    positions: Any = None
    try:
        _require_model(st, model)
        from tunelens.monitor import Monitor

        monitor = Monitor(model, store=st, resources=False)
        columns = list(dict.fromkeys([id_column, label, *([timestamp] if timestamp else [])]))
        try:
            with _progress(table, f"labels {table.path.name}") as advance_to:
                as_text = [id_column, *([timestamp] if timestamp else [])]
                for batch in table.batches(columns, batch_rows, as_text=as_text):
                    batch_first = batch.first_row
                    ids = _ids(batch, id_column, str(table.path.resolve()))
                    present, labels = _labels(batch, label)
                    skipped += int((~present).sum())
                    positions = np.flatnonzero(present)
                    stamps = _timestamps(batch, timestamp)
                    if not present.all():
                        ids = [ident for ident, ok in zip(ids, present, strict=True) if ok]
                        if stamps is not None:
                            import pyarrow as pa

                            stamps = stamps.filter(pa.array(present))
                    if len(ids):
                        got, hit = monitor.log_labels(ids, labels, timestamps=stamps)
                        accepted += got
                        matched += hit
                    advance_to(batch.done)
        except (InputError, ValueError) as exc:
            text = str(exc)
            if batch_first is not None:
                text = _file_rows(text, batch_first, positions)
            raise CliError(
                f"{table.path.name}: {text} ({accepted:,} labels accepted before this error)"
            ) from exc
        finally:
            monitor.close()
    finally:
        st.close()
    message = f"accepted {accepted:,} labels, matched {matched:,} for model {model!r}"
    if skipped:
        message += f"; {skipped:,} rows had no {label!r} value and were skipped"
    stdout_console().print(message)


# --------------------------------------------------------------------------- metrics


@app.command("metrics")
def metrics_command(
    store: Annotated[str, typer.Option("--store", help="Store file (DuckDB) or URL.")],
    model: Annotated[str, typer.Option("--model", help="Model name.")],
    window: Annotated[str, typer.Option("--window", help="Window width: 15m, 1h, 1d.")] = "1h",
    since: Annotated[str | None, typer.Option("--since", help="ISO-8601 start.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO-8601 end (excluded).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows.")] = False,
    columns: Annotated[
        str | None, typer.Option("--columns", help="Table columns a,b,c (default: the main ones).")
    ] = None,
) -> None:
    """Print the windowed metrics of a model as a table or as JSON."""
    start = _parse_when(since, "--since")
    end = _parse_when(until, "--until")
    st = _open_store(store, must_exist=True)
    try:
        _require_model(st, model)
        from tunelens.monitor import Monitor

        monitor = Monitor(model, store=st, resources=False)
        try:
            frame = monitor.metrics(window=window, since=start, until=end)
        finally:
            monitor.close()
    finally:
        st.close()
    from tunelens.io import split_names

    frame = flat_frame(frame)
    chosen = split_names(columns) or None
    if chosen is not None:
        missing = [name for name in chosen if name not in frame.columns]
        if missing:
            raise InputError(
                f"--columns {missing[0]}",
                "not a metric",
                f"available: {', '.join(map(str, frame.columns))}",
            )
    if as_json:
        if chosen is not None:  # window_start always leads each object
            frame = frame[["window_start", *(c for c in chosen if c != "window_start")]]
        sys.stdout.write(json.dumps(frame_records(frame), allow_nan=False) + "\n")
        return
    stdout_console().print(
        metrics_table(frame, columns=chosen, title=f"{model} — windows of {window}")
    )


def _json_value(value: Any) -> Any:
    import numpy as np
    import pandas as pd

    if value is None:
        return None
    if isinstance(value, pd.Timestamp | datetime):
        stamp = pd.Timestamp(value)
        if pd.isna(stamp):
            return None
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return stamp.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bool | int | str):
        return value
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def flat_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The metrics frame with ``window_start`` as a column (`Monitor.metrics` indexes by it)."""
    if "window_start" not in frame.columns and frame.index.name == "window_start":
        return frame.reset_index()
    return frame


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A metrics DataFrame as JSON-safe row objects: NaN -> None, times ISO-8601 UTC."""
    frame = flat_frame(frame)
    names = [str(name) for name in frame.columns]
    return [
        {name: _json_value(value) for name, value in zip(names, row, strict=True)}
        for row in frame.itertuples(index=False, name=None)
    ]


def _cell(name: str, value: Any) -> str:
    record = _json_value(value)
    if record is None:
        return "-"
    if name.startswith("window") and isinstance(record, str):
        return record.replace("T", " ")[:16]
    if isinstance(record, bool):
        return str(record)
    if isinstance(record, int):
        return f"{record:,}"
    if isinstance(record, float):
        if name.endswith("rows") or name.endswith("bytes"):
            return f"{record:,.0f}"
        if abs(record) >= 1000:
            return f"{record:,.0f}"
        if name.startswith("latency"):
            return f"{record:.3f}" if abs(record) < 1 else f"{record:.2f}"
        return f"{record:.4f}" if abs(record) < 10 else f"{record:.2f}"
    return str(record)


def metrics_table(
    frame: pd.DataFrame, *, columns: Sequence[str] | None = None, title: str | None = None
) -> Any:
    """A rich Table of windowed metrics (the main columns that hold any value)."""
    from rich.table import Table

    frame = flat_frame(frame)

    if columns is None:
        columns = [
            name
            for name in TABLE_COLUMNS
            if name in frame.columns and (name == "window_start" or frame[name].notna().any())
        ]
    table = Table(title=title, show_lines=False)
    for name in columns:
        header = name.replace("_", " ")
        if name.startswith("latency"):
            header += " ms"
        table.add_column(header, justify="left" if name == "window_start" else "right")
    for row in frame[list(columns)].itertuples(index=False, name=None):
        table.add_row(*[_cell(name, value) for name, value in zip(columns, row, strict=True)])
    return table


# --------------------------------------------------------------------------- report


@app.command("report")
def report_command(
    reference: Annotated[
        Path, typer.Option("--reference", help="Reference table (CSV or Parquet) with labels.")
    ],
    current: Annotated[Path, typer.Option("--current", help="Current table (CSV or Parquet).")],
    target: Annotated[str, typer.Option("--target", help="True label column.")],
    prediction: Annotated[str, typer.Option("--prediction", help="Predicted label/value column.")],
    score: Annotated[
        str | None,
        typer.Option("--score", help="Positive-class score column, or one per class: p0,p1,p2."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="HTML report path (default report.html).")
    ] = None,
    json_path: Annotated[
        str | None, typer.Option("--json", help="Write the JSON report here ('-': stdout).")
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", help="binary, multiclass or regression (inferred).")
    ] = None,
    positive: Annotated[
        str | None, typer.Option("--positive", help="Positive class (default: the larger).")
    ] = None,
    features: Annotated[
        str | None, typer.Option("--features", help="Feature columns a,b,c (default: the rest).")
    ] = None,
    exclude: Annotated[
        str | None, typer.Option("--exclude", help="Columns that are not features: id,ts.")
    ] = None,
    threshold: Annotated[
        float, typer.Option("--threshold", help="Decision threshold the predictions follow.")
    ] = 0.5,
    no_current_labels: Annotated[
        bool,
        typer.Option("--no-current-labels", help="The current table has no labels yet."),
    ] = False,
    drift_options: Annotated[
        Path | None,
        typer.Option(
            "--drift-options",
            help='JSON file of per-column drift overrides: {"x3": {"method": "psi", '
            '"threshold": 0.2}}.',
        ),
    ] = None,
    large_n: Annotated[
        int, typer.Option("--large-n", help="Sample size at which drift uses distances.")
    ] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every random step.")] = 0,
) -> None:
    """Analyse a model's quality on CURRENT against REFERENCE; write HTML and/or JSON.

    Both files are written only once the whole analysis has succeeded, each through a
    temporary file and a rename, so a failure leaves nothing half-written.
    """
    from tunelens.io import split_names
    from tunelens.quality import analyse

    if task is not None and task not in ("binary", "multiclass", "regression"):
        raise InputError("--task", f"expected binary, multiclass or regression, got {task!r}")
    overrides = _drift_overrides(drift_options)
    html_path = out if out is not None or json_path is not None else Path("report.html")
    console = _stderr() if json_path == "-" else stdout_console()
    with console.status("analysing", spinner="dots"):
        report = analyse(
            str(reference),
            str(current),
            target=target,
            prediction=prediction,
            score=split_names(score) or None,
            task=task,  # type: ignore[arg-type]
            positive=positive,
            features=split_names(features) or None,
            exclude=split_names(exclude),
            threshold=threshold,
            current_labels=not no_current_labels,
            drift_options=overrides,
            large_n=large_n,
            seed=seed,
        )
        doc = report.to_dict()
        text = json.dumps(doc, indent=2, allow_nan=False)
        page = None
        if html_path is not None:
            from tunelens.report.html import render_html

            page = render_html(doc)
    written = _write_outputs(text, json_path, html_path, None if page is None else lambda: page)
    _print_report_summary(console, doc, written)


def _drift_overrides(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"--drift-options {path}", "no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"--drift-options {path}", f"is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(
            f"--drift-options {path}",
            "expected a JSON object of column -> overrides",
            'e.g. {"x3": {"method": "psi", "threshold": 0.2}}',
        )
    return data


def _print_report_summary(console: Console, doc: dict[str, Any], written: list[str]) -> None:
    from rich.table import Table

    rows = doc["rows"]
    console.print(
        f"[bold]{doc['task']}[/bold] model: {rows['reference']:,} reference rows, "
        f"{rows['current']:,} current rows"
    )
    table = Table(title="metrics", show_edge=False)
    for name in ("metric", "reference", "current", "change"):
        table.add_column(name, justify="left" if name == "metric" else "right")
    ref, cur = doc["metrics"]["reference"], doc["metrics"].get("current", {})
    for name, value in ref.items():
        comp = doc["comparison"].get(name)
        change = ""
        if comp and comp["delta"] is not None:
            change = f"{comp['delta']:+.3f}"
            if comp["significant"]:
                change += " (worse)" if comp["worse"] else " (better)"
        table.add_row(name, _cell(name, value), _cell(name, cur.get(name)), change)
    console.print(table)
    drift = doc["drift"]
    if drift["features"]:
        drifted = [name for name, d in drift["features"].items() if d["drifted"]]
        console.print(
            f"drift: {len(drifted)} of {len(drift['features'])} features"
            + (
                f" ({', '.join(drifted[:8])}{', ...' if len(drifted) > 8 else ''})"
                if drifted
                else ""
            )
        )
    colours = {"high": "red", "medium": "yellow", "low": "cyan"}
    for f in doc["findings"]:
        colour = colours.get(f["severity"], "white")
        console.print(
            f"[{colour}]{f['severity']}[/{colour}] {f['kind']} [bold]{f['where']}[/bold]: "
            f"{f['evidence']}. [dim]{f['action']}[/dim]",
            markup=True,
            highlight=False,
        )
    if not doc["findings"]:
        console.print("no findings")
    for path in written:
        console.print(f"wrote {path}")


# --------------------------------------------------------------------------- profile


@app.command("profile")
def profile_command(
    model: Annotated[
        str,
        typer.Argument(
            help="TorchScript (.pt) or exported-program (.pt2) file, or module:factory."
        ),
    ],
    input_shape: Annotated[
        str, typer.Option("--input-shape", help="Input shape at batch 1, e.g. 1,3,224,224.")
    ],
    batch_sizes: Annotated[
        str, typer.Option("--batch-sizes", help="Batch sizes of the sweep.")
    ] = "1,8,32",
    json_path: Annotated[
        str | None, typer.Option("--json", help="Write the profile JSON here ('-': stdout).")
    ] = None,
    html_path: Annotated[
        Path | None, typer.Option("--html", help="Write an HTML page of the profile here.")
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="cpu or cuda (default: cuda if available).")
    ] = None,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed repeats per batch size.")] = 20,
) -> None:
    """Where a PyTorch model's time, FLOPs and memory go, layer by layer, with findings."""
    from tunelens.diagnose._load import check_input, load_model, parse_shape

    shape = parse_shape(input_shape)
    sizes = [int(b) for b in parse_shape(batch_sizes, "--batch-sizes")]
    if repeats < 1:
        raise InputError("--repeats", f"is {repeats}", "give at least 1")
    module = load_model(model)
    example = check_input(module, shape)
    from tunelens.diagnose.runtime import profile

    console = _stderr() if json_path == "-" else stdout_console()
    with console.status("profiling", spinner="dots"):
        result = profile(module, example, batch_sizes=tuple(sizes), device=device, repeats=repeats)
    doc = result.to_dict()

    def page() -> str:
        from tunelens.report.profile_html import render_profile_html

        return render_profile_html(doc)

    text = json.dumps(doc, indent=2, allow_nan=False)
    written = _write_outputs(text, json_path, html_path, page)
    _print_profile(console, doc, written)


def _print_profile(console: Console, doc: dict[str, Any], written: list[str]) -> None:
    from rich.table import Table

    totals = doc.get("totals", {})
    flops = totals.get("flops")
    params = totals.get("params")
    console.print(
        f"[bold]{_si(flops)}FLOPs[/bold] per sample ({_si(totals.get('macs'))}MACs), "
        f"{params:,} parameters"
        if isinstance(params, int)
        else f"{_si(flops)}FLOPs"
    )
    layers = sorted(
        (r for r in doc.get("layers", []) if isinstance(r, dict)),
        key=lambda r: -(r.get("self_ms") or 0.0),
    )[:12]
    if layers:
        table = Table(title="slowest layers (batch 1)", show_edge=False)
        for name in ("layer", "type", "self ms", "share", "FLOPs", "class"):
            table.add_column(
                name, justify="left" if name in ("layer", "type", "class") else "right"
            )
        for r in layers:
            share = r.get("self_share")
            table.add_row(
                str(r.get("name", "")),
                str(r.get("type", "")),
                f"{r.get('self_ms', 0.0):.3f}",
                "" if share is None else f"{share:.1%}",
                _si(r.get("flops")),
                str(r.get("bound", "")),
            )
        console.print(table)
    for f in doc.get("findings", []):
        console.print(
            f"{f['severity']} {f['kind']} [bold]{f['where']}[/bold]: {f['evidence']}. "
            f"[dim]{f['action']}[/dim]",
            highlight=False,
        )
    for path in written:
        console.print(f"wrote {path}")


def _si(value: Any) -> str:
    if not isinstance(value, int | float):
        return "? "
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f} "


# --------------------------------------------------------------------------- tune


@contextmanager
def _trial_progress(total: int, enabled: bool) -> Iterator[Any]:
    """A rich progress bar on stderr: trials done / total and the best value so far.

    Yields ``update(done, best)``; shown only when stderr is a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = _stderr()
    columns: list[Any] = [
        TextColumn("tuning"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("best {task.fields[best]}"),
        TimeElapsedColumn(),
    ]
    show = enabled and console.is_terminal
    with Progress(*columns, console=console, disable=not show, transient=True) as progress:
        task = progress.add_task("tuning", total=total, best="-")

        def update(done: int, best: float | None) -> None:
            progress.update(task, completed=done, best="-" if best is None else f"{best:.6g}")

        yield update


def _storage_option(storage: str | None, config_storage: str | None) -> str | None:
    from tunelens.tune.distributed import normalize_storage

    if storage is not None:
        return normalize_storage(storage, base=Path.cwd(), field="--storage")
    return config_storage


@app.command("tune")
def tune_command(
    config: Annotated[
        Path, typer.Argument(help="The TOML config (keys in docs/cli.md).", show_default=False)
    ],
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Optuna storage: sqlite:///study.db or postgresql://user@host:5432/db "
            "(default: the config's study.storage, else in memory).",
        ),
    ] = None,
    study: Annotated[
        str | None, typer.Option("--study", help="Study name (default: the config's).")
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", help="Worker processes on one shared study.", min=1)
    ] = 1,
    n_trials: Annotated[
        int | None,
        typer.Option("--n-trials", help="Trials in all (default: the config's).", min=1),
    ] = None,
    json_path: Annotated[
        str | None, typer.Option("--json", help="Write the result JSON here ('-': stdout).")
    ] = None,
    html_path: Annotated[
        Path | None, typer.Option("--html", help="Write an HTML page of the study here.")
    ] = None,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker",
            help="Run as one worker of a shared study (needs --storage): stop when the "
            "study holds n_trials trials.",
        ),
    ] = False,
    worker_index: Annotated[
        int, typer.Option("--worker-index", hidden=True, help="Offsets the seed.", min=0)
    ] = 0,
) -> None:
    """Tune a model described by a TOML config: Optuna search under measured constraints.

    JSON and HTML are written only after the study succeeded, each through a temporary
    file and a rename.
    """
    import optuna

    from tunelens.tune.config import load_config
    from tunelens.tune.distributed import is_shared, redact, run_workers, trial_lock

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the summary says what matters
    cfg = load_config(config)
    url = _storage_option(storage, cfg.study.storage)
    name = study or cfg.study.name
    total = n_trials if n_trials is not None else cfg.study.n_trials
    if (workers > 1 or worker) and not is_shared(url):
        flag = "--worker" if worker else f"--workers {workers}"
        raise InputError(
            flag,
            "needs a shared storage",
            "give --storage sqlite:///study.db or postgresql://user@host:5432/db "
            "(or study.storage in the config)",
        )
    dataset = cfg.load_data()  # every input error surfaces here, before any trial runs
    model = cfg.build_model(dataset)
    console = _stderr() if json_path == "-" else stdout_console()

    if worker:
        ran = [0]

        def count(event: dict[str, Any]) -> None:
            ran[0] += 1

        with trial_lock(url, name) as lock:
            result = _call_tune(
                cfg.to_tune_kwargs(
                    dataset, model=model, storage=url, study_name=name, seed_offset=worker_index
                ),
                n_trials=None,
                total_trials=total,
                trial_lock=lock,
                progress=count,
                refit=False,
            )
        console.print(
            f"worker {worker_index}: ran {ran[0]} trials; study {name!r} holds "
            f"{len(result.trials)} of {total}",
            highlight=False,
            markup=False,
        )
        _write_tune_outputs(result, json_path, html_path, console)
        return

    if workers > 1:
        assert url is not None
        with _trial_progress(total, True) as update:
            outcome = run_workers(
                config,
                storage=url,
                workers=workers,
                study_name=name,
                n_trials=total,
                on_progress=lambda done, _total, best: update(done, best),
            )
        if not outcome.ok:
            raise CliError(outcome.summary(), code=1)
        console.print(
            outcome.summary().splitlines()[0] + f" [{redact(storage or url)}]",
            highlight=False,
            markup=False,
        )
        # collect: the study is full, so this runs no trial and builds the result
        result = _call_tune(
            cfg.to_tune_kwargs(dataset, model=model, storage=url, study_name=name),
            n_trials=None,
            total_trials=total,
            refit=False,
        )
    else:
        # with a storage, a study that already holds trials is topped up to n_trials
        budget = {"n_trials": None, "total_trials": total} if url else {"n_trials": total}
        with _trial_progress(total, True) as update:
            result = _call_tune(
                cfg.to_tune_kwargs(dataset, model=model, storage=url, study_name=name),
                progress=lambda event: update(int(event["done"]), event.get("best")),
                refit=False,
                **budget,
            )
    _write_tune_outputs(result, json_path, html_path, console)
    if result.best is None:
        errors = [t["error"] for t in result.trials if t.get("error")]
        first = f"; the first trial failed with {errors[0]}" if errors else ""
        raise CliError(f"tune: no trial completed{first}", code=1)


def _call_tune(kwargs: dict[str, Any], **extra: Any) -> Any:
    from tunelens.tune.config import call_tune

    return call_tune({**kwargs, **extra})  # extra may set n_trials=None (total_trials rules)


def _write_outputs(
    text: str, json_path: str | None, html_path: Path | None, html: Callable[[], str] | None
) -> list[str]:
    """Write the JSON ``text`` (to stdout for ``-``) and the HTML page, the files together
    and atomically; returns the paths written."""
    from tunelens._atomic import write_files

    pending: list[tuple[Path, bytes]] = []
    if json_path is not None and json_path != "-":
        pending.append((Path(json_path), text.encode("utf-8")))
    if html_path is not None and html is not None:
        pending.append((html_path, html().encode("utf-8")))
    write_files(pending)
    if json_path == "-":
        sys.stdout.write(text + "\n")
    return [str(path) for path, _ in pending]


def _write_tune_outputs(
    result: Any, json_path: str | None, html_path: Path | None, console: Console
) -> None:
    doc = result.to_dict()

    def page() -> str:
        from tunelens.report.tune_html import render_tune_html

        return render_tune_html(doc, result.study)

    text = json.dumps(doc, indent=2, allow_nan=False)
    written = _write_outputs(text, json_path, html_path, page)
    console.print(result.summary(), highlight=False, markup=False)
    for path in written:
        console.print(f"wrote {path}", highlight=False)


# --------------------------------------------------------------------------- compress


def _parse_constraint(text: str) -> Any:
    """``"latency_p50_ms<=5"`` -> ``Constraint("latency_p50_ms", "<=", 5.0)``."""
    from tunelens.tune import Constraint

    match = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=)\s*([-+0-9.eE]+)\s*", text)
    if match is None:
        raise InputError(
            f"--constraint {text}",
            "not NAME<=BOUND or NAME>=BOUND",
            "e.g. --constraint 'latency_p50_ms<=5'",
        )
    try:
        bound = float(match.group(3))
    except ValueError:
        raise InputError(f"--constraint {text}", "the bound is not a number", "") from None
    return Constraint(match.group(1), match.group(2), bound)


@app.command("compress")
def compress_command(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="A tune config: train its model with the study's best (or default) "
            "params, then compress it.",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="A trained model: module:factory (returns the trained nn.Module) or an "
            "exported program (.pt2, dynamic batch); TorchScript cannot be compressed.",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="digits, iris, wine, breast_cancer, diabetes, or a CSV/Parquet file "
            "(with --target).",
        ),
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="Label column of a --data file.")
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option("--metric", help="accuracy (classification) or mse/mae (regression)."),
    ] = None,
    max_drop: Annotated[
        float | None,
        typer.Option("--max-drop", help="Largest metric drop allowed (absolute; default 0.01)."),
    ] = None,
    constraint: Annotated[
        list[str] | None,
        typer.Option("--constraint", help="NAME<=BOUND or NAME>=BOUND; repeatable."),
    ] = None,
    time_budget: Annotated[
        float | None, typer.Option("--time-budget", help="Seconds to spend exploring.")
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option(
            "--methods",
            help="prune,unstructured,quantize_dynamic,quantize_static,distill (default: all).",
        ),
    ] = None,
    storage: Annotated[
        str | None, typer.Option("--storage", help="With --config: the study's storage.")
    ] = None,
    study: Annotated[
        str | None, typer.Option("--study", help="With --config: the study name.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Save the chosen model in this folder.")
    ] = None,
    json_path: Annotated[
        str | None, typer.Option("--json", help="Write the result JSON here ('-': stdout).")
    ] = None,
    html_path: Annotated[
        Path | None, typer.Option("--html", help="Write an HTML page of the candidates here.")
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed", help="Seed of the splits and training (default: the config's, or 0)."
        ),
    ] = None,
    latency_batch: Annotated[
        int | None,
        typer.Option(
            "--latency-batch", help="Rows per timed call (default: the config's, or 1).", min=1
        ),
    ] = None,
) -> None:
    """Compress a PyTorch model (prune, quantise, distil) within a metric drop."""
    from tunelens.io import split_names
    from tunelens.tune.config import COMPRESS_METHODS, load_config

    if (config is None) == (model is None):
        raise InputError("compress", "give --config or --model (not both)", "")
    constraints = [_parse_constraint(c) for c in constraint or []]
    chosen_methods = tuple(split_names(methods)) if methods is not None else None
    for m in chosen_methods or ():
        if m not in COMPRESS_METHODS:
            raise InputError("--methods", f"unknown method {m!r}", f"use any of {COMPRESS_METHODS}")
    if max_drop is not None and not (math.isfinite(max_drop) and max_drop >= 0):
        raise InputError("--max-drop", f"is {max_drop}", "give a number >= 0")
    if time_budget is not None and not time_budget > 0:
        raise InputError("--time-budget", f"is {time_budget}", "give seconds > 0")
    console = _stderr() if json_path == "-" else stdout_console()
    if config is not None:
        if data is not None or target is not None:
            raise InputError("--data", "comes from the config with --config", "drop --data")
        cfg = load_config(config)
        if not cfg.model.is_torch:
            raise InputError(
                "model.kind",
                f"compress needs a PyTorch model, not {cfg.model.kind!r}",
                "use kind = mlp, cnn or factory",
            )
        dataset = cfg.load_data()
        settings = cfg.compress
        url = _storage_option(storage, cfg.study.storage)
        with console.status("training the model to compress", spinner="dots"):
            trained, where = _train_for_compress(cfg, dataset, url, study or cfg.study.name)
        console.print(f"trained the model with {where}", highlight=False)
        max_drop = settings.max_drop if max_drop is None else max_drop
        constraints = list(settings.constraints) + constraints
        chosen_methods = chosen_methods if chosen_methods is not None else settings.methods
        time_budget = settings.time_budget if time_budget is None else time_budget
        metric = metric or next(
            (m for m in cfg.objective.metrics if m in ("accuracy", "mse", "mae")),
            "accuracy" if dataset.task == "classification" else "mse",
        )
        seed = seed if seed is not None else (cfg.study.seed or 0)
        latency_batch = latency_batch if latency_batch is not None else settings.latency_batch
        xy = _split_loaders(dataset)
    else:
        from tunelens.diagnose._load import expected_input, load_model
        from tunelens.tune.config import check_data_spec, load_dataset

        if data is None:
            raise InputError("--data", "missing", "give a dataset name or a CSV/Parquet file")
        check_data_spec(data)
        trained = load_model(str(model))
        import torch

        if isinstance(trained, torch.jit.ScriptModule):
            raise InputError(
                f"--model {model}",
                "a TorchScript model cannot be pruned, quantised or copied",
                "give module:factory returning the trained torch.nn.Module",
            )
        image = (expected_input(trained) or "").endswith("H, W)")
        seed = 0 if seed is None else seed
        latency_batch = 1 if latency_batch is None else latency_batch
        dataset = load_dataset(data, target=target, image=image, seed=seed)
        metric = metric or ("accuracy" if dataset.task == "classification" else "mse")
        xy = dataset.all_rows()
    from tunelens.tune import compress

    with console.status("compressing", spinner="dots"):
        result = compress(
            trained,
            data=xy,
            metric=metric,
            max_drop=0.01 if max_drop is None else max_drop,
            constraints=tuple(constraints),
            time_budget=time_budget,
            methods=chosen_methods,
            seed=seed,
            latency_batch=latency_batch,
        )
    doc = result.to_dict()

    def page() -> str:
        from tunelens.report.tune_html import render_compress_html

        return render_compress_html(doc)

    text = json.dumps(doc, indent=2, allow_nan=False)
    written = _write_outputs(text, json_path, html_path, page)
    if out is not None:
        result.save(out)
        written.append(str(out))
    console.print(result.summary(), highlight=False, markup=False)
    for path in written:
        console.print(f"wrote {path}", highlight=False)


def _train_for_compress(cfg: Any, dataset: Any, url: str | None, name: str) -> tuple[Any, str]:
    """Train the config's model with tune's recommended trial of the stored study (the best
    feasible one, by priority when there are several objectives, else the closest), or with
    the known-good defaults when no study holds a complete trial; returns the model and
    where its params came from."""
    import optuna

    from tunelens.tune.torch_train import torch_task

    if url is not None:
        from tunelens.tune.distributed import open_storage

        storage = open_storage(url)
        found: optuna.Study | None = None
        with suppress(KeyError):
            found = optuna.load_study(study_name=name, storage=storage)
        done = (
            [t for t in found.get_trials(deepcopy=False) if t.state != optuna.trial.TrialState.FAIL]
            if found is not None
            else []
        )
        if any(t.state == optuna.trial.TrialState.COMPLETE for t in done):
            # the study is full at its own size: tune runs no trial, recommends and refits
            result = _call_tune(
                cfg.to_tune_kwargs(dataset, storage=url, study_name=name),
                n_trials=None,
                total_trials=len(done),
            )
            if result.model is not None and result.best is not None:
                feasible = "" if result.feasible else ", the closest: no trial met every constraint"
                return result.model, (
                    f"the params of trial #{result.best['number']} of study {name!r}{feasible}"
                )
    task = torch_task(
        cfg.build_model(dataset),
        data=dataset.as_tuple(),
        space=cfg.space,
        metric=next(
            (
                m
                for m in cfg.objective.metrics
                if m in ("accuracy", "f1", "log_loss", "mse", "mae", "r2")
            ),
            None,
        ),
        seed=cfg.study.seed,
        epochs=cfg.study.epochs,
    )
    return task.fit_best(dict(task.default_params)), "the default params"


def _split_loaders(dataset: Any) -> tuple[Any, Any]:
    """The config's own training and validation rows as DataLoaders, so that compress
    fine-tunes on the training rows and measures the drop on rows the model never saw."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    def loader(X: Any, y: Any, shuffle: bool) -> Any:
        target = torch.as_tensor(y)
        target = target.long() if dataset.task == "classification" else target.float()
        rows = TensorDataset(torch.as_tensor(X, dtype=torch.float32), target)
        return DataLoader(rows, batch_size=64, shuffle=shuffle)

    return loader(dataset.X_train, dataset.y_train, True), loader(
        dataset.X_val, dataset.y_val, False
    )


# --------------------------------------------------------------------------- serve


@app.command("serve")
def serve_command(
    store: Annotated[
        str, typer.Option("--store", help="DuckDB file or postgresql:// URL.")
    ] = "tunelens.duckdb",
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    rules: Annotated[Path | None, typer.Option("--rules", help="Alert rules (TOML file).")] = None,
    webhook: Annotated[
        str | None, typer.Option("--webhook", help="URL that alerts are POSTed to.")
    ] = None,
    protect_reads: Annotated[
        bool, typer.Option("--protect-reads", help="Reads need the token too.")
    ] = False,
    max_body_mb: Annotated[
        float, typer.Option("--max-body-mb", help="Largest request body (MiB).")
    ] = 32.0,
    metrics_window: Annotated[
        str, typer.Option("--metrics-window", help="Window of the /metrics gauges.")
    ] = "1h",
    alert_interval: Annotated[
        float, typer.Option("--alert-interval", help="Seconds between alert evaluations.")
    ] = 60.0,
    duckdb_memory: Annotated[
        str,
        typer.Option("--duckdb-memory", help="DuckDB buffer-pool limit (keeps memory flat)."),
    ] = "64MB",
) -> None:
    """Run the monitoring service: HTTP ingestion, dashboard at /, Prometheus at /metrics.

    With TUNELENS_TOKEN set, writes need `Authorization: Bearer <token>`.
    """
    try:
        import uvicorn

        from tunelens.server import Settings, create_app
    except ImportError as exc:
        raise InputError(
            "serve",
            f"needs the server extra ({exc.name} is missing)",
            "pip install 'tunelens[server]'",
        ) from None
    from tunelens.monitor._windows import parse_window

    parse_window(metrics_window, "--metrics-window")
    if max_body_mb <= 0:
        raise InputError("--max-body-mb", f"is {max_body_mb}", "give a positive size")
    loaded: list[Any] = []
    if rules is not None:
        from tunelens.monitor.alerts import load_rules

        if not rules.exists():
            raise InputError(f"--rules {rules}", "no such file")
        loaded = list(load_rules(rules))
    settings = Settings(
        protect_reads=protect_reads,
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        metrics_window=metrics_window,
        rules=loaded,
        webhook=webhook,
        alert_interval_s=alert_interval,
    )
    from tunelens.store import DuckDBStore

    opened: Store | str = store
    if not store.lower().startswith(("postgresql://", "postgres://")):
        path = store[len("duckdb://") :] if store.lower().startswith("duckdb://") else store
        opened = DuckDBStore(path, memory_limit=duckdb_memory)
    application = create_app(opened, settings)
    try:
        uvicorn.run(application, host=host, port=port, log_level="info", access_log=False)
    finally:
        if not isinstance(opened, str):
            opened.close()


# --------------------------------------------------------------------------- demo


@app.command("demo")
def demo_command(
    out: Annotated[
        Path, typer.Option("--out", help="Where the demo writes its store and report.")
    ] = Path("tunelens-demo"),
    days: Annotated[int, typer.Option("--days", help="Simulated days (at least 4).")] = 10,
    cases: Annotated[
        int, typer.Option("--cases", help="Requests per simulated day (at least 500).")
    ] = 6_500,
    trials: Annotated[int, typer.Option("--trials", help="The loop's tuning trials.")] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the simulation.")] = 20260302,
) -> None:
    """The closed loop on shipped data: serve, drift, alert, report, tune, shadow, promote.

    Ends with a summary (drop, cause, fix, recovery, time); leaves store and report in --out.
    """
    from tunelens.demo import run as run_demo

    run_demo(
        out,
        console=stdout_console(),
        days=days,
        cases_per_day=cases,
        n_trials=trials,
        seed=seed,
    )


# --------------------------------------------------------------------------- loop


@app.command("loop")
def loop_command(
    store: Annotated[str, typer.Option("--store", help="Store file (DuckDB) or URL.")],
    model: Annotated[str, typer.Option("--model", help="Model name.")],
    version: Annotated[
        str | None,
        typer.Argument(
            help="With --approve: the version to promote (default: the challenger of the "
            "latest run awaiting approval).",
            metavar="VERSION",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="The loop's TOML config (keys in docs/cli.md); not needed by --status."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="ISO-8601 start of the traffic used (default: the config's)."),
    ] = None,
    on_alert: Annotated[
        bool,
        typer.Option("--on-alert", help="Run only when the model has a firing alert (the newest)."),
    ] = False,
    approve: Annotated[
        bool,
        typer.Option("--approve", help="Promote VERSION, or the challenger awaiting approval."),
    ] = False,
    rollback: Annotated[
        bool, typer.Option("--rollback", help="Serve the previous champion again.")
    ] = False,
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Why (recorded with --approve or --rollback)."),
    ] = None,
    status: Annotated[
        bool, typer.Option("--status", help="Print the versions and runs; run nothing.")
    ] = False,
    json_path: Annotated[
        str | None, typer.Option("--json", help="Write the result JSON here ('-': stdout).")
    ] = None,
) -> None:
    """Close the loop: analyse the labelled traffic, tune a challenger, check it, decide.

    Resumes a stopped run first. --approve, --rollback, --status act on the records.
    """
    actions = [
        flag
        for flag, on in (
            ("--on-alert", on_alert),
            ("--approve", approve),
            ("--rollback", rollback),
            ("--status", status),
        )
        if on
    ]
    if len(actions) > 1:
        raise InputError(" ".join(actions), "are separate actions", "give one at a time")
    if version is not None and not approve:
        raise InputError(
            f"VERSION {version}", "is only read with --approve", "write --approve VERSION"
        )
    if reason is not None and not (approve or rollback):
        raise InputError("--reason", "is only recorded with --approve or --rollback", "drop it")
    if since is not None and (approve or rollback or status):
        raise InputError("--since", f"is not used with {actions[0]}", "drop it")
    start = _parse_when(since, "--since")
    cfg = None
    if config is not None:
        from tunelens.loop_config import load_loop_config

        cfg = load_loop_config(config)  # the whole file is checked before the store opens
    elif not status:
        raise InputError("--config", "missing", "give the loop's TOML config (see docs/cli.md)")
    console = _loop_console(to_stderr=json_path == "-")
    st = _open_store(store, must_exist=True)
    try:
        _require_model(st, model)
        if status:
            doc = _loop_status(st, model)
            _print_loop_status(console, doc)
            _write_loop_json(doc, json_path, console)
            return
        assert cfg is not None
        event = None
        if on_alert:
            firing = st.list_alerts(model, state="firing")
            if not firing:
                console.print(f"no alert fires for model {model}: nothing to run", markup=False)
                return
            event = firing[0]
        from tunelens.monitor import Monitor

        monitor = Monitor(model, store=st, resources=False)
        try:
            loop = _build_loop(cfg, monitor, console)
            if approve or rollback:
                before = loop.champion_version
                if approve:
                    why = reason or "approved from the command line"
                    now = loop.approve(version, reason=why)
                else:
                    why = reason or "rolled back from the command line"
                    now = loop.rollback(reason=why)
                action = "approve" if approve else "rollback"
                verb = "promoted" if approve else "rolled back to"
                console.print(
                    f"{verb} version {now}: champion of {model} is now {now} (was {before})",
                    markup=False,
                )
                doc = {"action": action, "version": now, "previous": before, "reason": why}
                _write_loop_json(doc, json_path, console)
                return
            result = _run_loop(loop, cfg, console, event, start)
        finally:
            monitor.close()
    finally:
        st.close()
    _write_loop_json(result.to_dict(), json_path, console)


def _loop_console(*, to_stderr: bool) -> Console:
    """stdout's console, or stderr's (when JSON goes to stdout), wide when not a terminal."""
    if not to_stderr:
        return stdout_console()
    from rich.console import Console

    console = Console(stderr=True, highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console = Console(stderr=True, highlight=False, soft_wrap=False, width=200)
    return console


def _build_loop(cfg: Any, monitor: Monitor, console: Console) -> Any:
    """A `Loop` from the config; the champion is the store's, else the config's file."""
    from tunelens.loop import Loop
    from tunelens.store.versions import VersionRegistry

    kwargs = cfg.loop_kwargs()
    champion = None
    if VersionRegistry(monitor.store, monitor.model).champion() is None:
        champion = cfg.load_champion()
        if champion is None:
            raise InputError(
                "loop.champion",
                f"no champion is recorded for model {monitor.model!r} and the config names none",
                'add champion = "model.pkl" (the serving model, pickled) under [loop]',
            )
    loop = Loop(monitor, champion=champion, **kwargs)
    if champion is not None:
        console.print(
            f"registered {cfg.champion.name} as version {loop.champion_version}, the champion",
            markup=False,
        )
    return loop


def _run_loop(loop: Any, cfg: Any, console: Console, event: Any, start: datetime | None) -> Any:
    """Run (or resume) the loop, printing each step's outcome as it is recorded."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the steps say what matters
    pending = loop.unfinished()
    if pending is not None:
        console.print(
            f"resuming run {pending['run']} (stopped while {pending.get('status', '?')}, "
            f"started {pending.get('started', '?')}): its rows, split, trigger and finished "
            "trials are kept",
            markup=False,
        )
    elif event is not None:
        console.print(
            f"alert {event.rule} ({event.severity}) fired at {event.fired_at.isoformat()}: "
            f"{event.evidence}",
            markup=False,
        )
    known = {str(r.get("run")) for r in loop.runs()} - (
        set() if pending is None else {str(pending["run"])}
    )
    with _LoopWatch(loop, known, console) as watch:
        if event is not None:
            result = loop.on_alert(event, since=start)
        else:
            result = loop.run(start if start is not None else cfg.since)
    record = result.to_dict()
    watch.show(record)  # the steps the watcher had not seen yet
    console.print(_loop_outcome(record, loop.monitor.model), markup=False)
    return result


def _loop_outcome(record: dict[str, Any], model: str) -> str:
    """One line: what the run did to the champion and what to do next."""
    champion, challenger = record.get("champion"), record.get("challenger")
    action = (record.get("decision") or {}).get("action")
    took = f" ({float(record.get('seconds') or 0.0):.1f} s)"
    if record.get("promoted"):
        return f"promoted: version {challenger} now serves {model} (was {champion}){took}"
    if record.get("status") == "shadow":
        return (
            f"challenger {challenger} passed the offline check; it must also win on shadow "
            f"traffic (Loop.start_shadow, Loop.conclude) before it is promoted{took}"
        )
    if action == "await_approval":
        return (
            f"challenger {challenger} awaits approval: rerun with --approve {challenger} "
            f"(champion {champion} keeps serving){took}"
        )
    return f"champion {champion} keeps serving {model}{took}"


class _LoopWatch:
    """Polls the store's run record while the loop runs and prints each finished step.

    The loop records a run after each step (``status`` analysing -> tuning -> checking ->
    done); the watcher prints the findings, localisation and plan once tuning starts, the
    tuning result once checking starts. A spinner on stderr (terminals only) shows the step.
    """

    POLL_S = 0.5

    def __init__(self, loop: Any, known: set[str], console: Console) -> None:
        import threading

        self.loop, self.known, self.console = loop, known, console
        self.printed: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="tunelens-loop-watch", daemon=True)
        self._status: Any = None

    def __enter__(self) -> _LoopWatch:
        from rich.status import Status

        err = _stderr()
        if err.is_terminal:
            self._status = Status("analysing the recent traffic", console=err)
            self._status.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self._status is not None:
            self._status.stop()

    def _watch(self) -> None:
        while not self._stop.wait(self.POLL_S):
            try:
                runs = self.loop.runs()
            except Exception:  # a read racing the loop's write: try again
                continue
            mine = [r for r in runs if str(r.get("run")) not in self.known]
            if mine:
                self.show(mine[-1])

    def show(self, record: dict[str, Any]) -> None:
        """Print the sections of ``record`` that are complete and not printed yet."""
        state = record.get("status")
        if self._status is not None and state:
            self._status.update(f"{state} ({record.get('run')})")
        for section in _LOOP_SECTIONS:
            if section in self.printed or not _section_ready(record, section):
                continue
            self.printed.add(section)
            _print_loop_section(self.console, record, section)


#: the run's steps in the order they finish
_LOOP_SECTIONS = ("header", "findings", "localisation", "plan", "tune", "comparison", "decision")


def _section_ready(record: dict[str, Any], section: str) -> bool:
    state = record.get("status")
    if section == "header":
        return "rows" in record
    if section in ("findings", "localisation", "plan"):
        return state != "analysing" and section in record
    if section == "tune":
        return state not in ("analysing", "tuning") and "feasible" in (record.get("tune") or {})
    return section in record and state in ("shadow", "done")


def _print_loop_section(console: Console, record: dict[str, Any], section: str) -> None:
    from rich.markup import escape

    value = record.get(section)
    if section == "header":
        trigger = record.get("trigger") or {}
        rows = record.get("rows") or {}
        start = f"alert {trigger['rule']}" if trigger.get("rule") else "on demand"
        console.print(
            f"[bold]loop run {escape(str(record.get('run')))}[/] ({escape(start)}): "
            f"{rows.get('recent', '?')} recent labelled rows, "
            f"{rows.get('reference', '?')} reference rows"
        )
    elif section in ("findings", "localisation"):
        items = list(value or [])
        title = "findings" if section == "findings" else "where the model breaks"
        if not items:
            none = "nothing significant" if section == "findings" else "no feature or latency"
            console.print(f"[bold]{title}[/]: {none}")
            return
        console.print(f"[bold]{title}[/]:")
        for f in items[:6]:
            console.print(
                f"  [{_SEVERITY_STYLE.get(str(f.get('severity')), 'default')}]"
                f"{escape(str(f.get('severity')))}[/] {escape(str(f.get('kind')))} "
                f"({escape(str(f.get('where')))}): {escape(str(f.get('evidence')))}"
            )
        if len(items) > 6:
            console.print(f"  ... and {len(items) - 6} more")
    elif section == "plan":
        plan = dict(value or {})
        console.print(f"[bold]plan[/]: {escape(str(plan.get('data_rule', '')))}")
        if plan.get("remedies_from"):
            console.print(f"  remedies from: {escape(', '.join(map(str, plan['remedies_from'])))}")
        if plan.get("constraints"):
            console.print(f"  constraints: {escape(', '.join(map(str, plan['constraints'])))}")
    elif section == "tune":
        tune = dict(value or {})
        best = tune.get("best") or {}
        trials = tune.get("trials")
        done = f"{trials} trials" if trials is not None else "tuned"
        if tune.get("complete") is not None:
            done += f" ({tune['complete']} complete)"
        score = best.get("value") if isinstance(best, dict) else None
        line = f"[bold]tune[/]: {done}"
        if score is not None:
            line += f", best validation value {float(score):.4g}"
        line += ", meets every constraint" if tune.get("feasible") else ", NOT feasible"
        console.print(line)
        for v in tune.get("blocked_by") or []:
            console.print(f"  blocked by {escape(str(v.get('constraint', v)))}")
        note = record.get("compress") or {}
        slow = any(f.get("kind") == "latency_slo" for f in record.get("localisation") or [])
        if note.get("why") and slow:
            console.print(f"  compress: {escape(str(note['why']))}")
    elif section == "comparison":
        comparison = dict(value or {})
        summary = comparison.get("summary") or comparison.get("verdict", "")
        console.print(
            f"[bold]check[/] (challenger {escape(str(record.get('challenger')))} vs champion "
            f"{escape(str(record.get('champion')))} on held-out recent rows): "
            f"{escape(str(summary))}"
        )
    elif section == "decision":
        decision = dict(value or {})
        action = str(decision.get("action", "?"))
        style = {"promote": "green", "await_approval": "yellow"}.get(action, "default")
        console.print(
            f"[bold]decision[/]: [{style}]{escape(action)}[/] "
            f"({escape(str(decision.get('reason', '')))})"
        )


_SEVERITY_STYLE = {"high": "red", "medium": "yellow", "low": "default"}


def _loop_status(store: Store, model: str) -> dict[str, Any]:
    """The model's versions (champion marked) and loop runs (newest first), as recorded."""
    from tunelens.store.versions import VersionRegistry

    registry = VersionRegistry(store, model).to_dict()
    found = store.get_blob(model, "loop")
    runs = list(json.loads(found[0]).get("runs") or []) if found else []
    return {
        "model": model,
        "champion": registry.get("champion"),
        "versions": list(registry.get("versions") or []),
        "events": list(registry.get("events") or []),
        "runs": runs[::-1],
    }


def _when(text: Any) -> str:
    return "-" if not text else str(text).replace("T", " ")[:19]


def _print_loop_status(console: Console, doc: dict[str, Any]) -> None:
    from rich.table import Table

    champion = doc.get("champion")
    versions = doc.get("versions") or []
    n_runs = len(doc.get("runs") or [])
    console.print(
        f"{doc['model']}: champion {champion or 'none recorded'}, {len(versions)} "
        f"version{'' if len(versions) == 1 else 's'}, "
        f"{n_runs} loop run{'' if n_runs == 1 else 's'}",
        markup=False,
    )
    table = Table(title="versions", title_justify="left")
    for name in ("", "version", "created", "source", "parent", "run", "metrics"):
        table.add_column(name)
    for v in versions:
        metrics = _version_metrics(dict(v.get("metrics") or {}))
        table.add_row(
            "*" if v.get("version") == champion else "",
            str(v.get("version")),
            _when(v.get("created")),
            str(v.get("source") or "-"),
            str(v.get("parent") or "-"),
            str(v.get("run") or "-"),
            metrics or "-",
        )
    if versions:
        console.print(table)
    runs = Table(title="runs (newest first)", title_justify="left")
    for name in ("started", "run", "trigger", "status", "decision", "challenger", "promoted"):
        runs.add_column(name)
    for r in doc.get("runs") or []:
        trigger = r.get("trigger") or {}
        runs.add_row(
            _when(r.get("started")),
            str(r.get("run")),
            str(trigger.get("rule") or trigger.get("kind") or "manual"),
            str(r.get("status") or "-"),
            str((r.get("decision") or {}).get("action") or "-"),
            str(r.get("challenger") or "-"),
            "yes" if r.get("promoted") else "no",
        )
    if doc.get("runs"):
        console.print(runs)
    else:
        console.print("no loop run recorded", markup=False)


def _version_metrics(metrics: dict[str, Any]) -> str:
    """``holdout_accuracy 0.95 (champion 0.60)``: a version's measured metrics, short."""

    def num(x: Any) -> str:
        return "-" if x is None else f"{float(x):.4g}"

    parts = []
    for name, value in metrics.items():
        if name.startswith("champion_") and name[len("champion_") :] in metrics:
            continue
        text = f"{name} {num(value)}"
        if f"champion_{name}" in metrics:
            text += f" (champion {num(metrics[f'champion_{name}'])})"
        parts.append(text)
    return ", ".join(parts) or "-"


def _json_clean(value: Any) -> Any:
    """NaN and infinities become null; everything else is already JSON."""
    if isinstance(value, dict):
        return {str(k): _json_clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_loop_json(doc: dict[str, Any], json_path: str | None, console: Console) -> None:
    if json_path is None:
        return
    text = json.dumps(_json_clean(doc), indent=2, allow_nan=False, default=str)
    if json_path == "-":
        sys.stdout.write(text + "\n")
        return
    from tunelens._atomic import write_files

    write_files([(Path(json_path), (text + "\n").encode("utf-8"))])
    console.print(f"wrote {json_path}", markup=False, highlight=False)


# --------------------------------------------------------------------------- entry


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    from typer._click.exceptions import ClickException

    command = typer.main.get_command(app)
    debug = bool(os.environ.get(DEBUG_ENV))
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:  # a bare `tunelens` is a request for help, not an error
        args = ["--help"]
    try:
        result = command.main(
            args=args,
            prog_name="tunelens",
            standalone_mode=False,
        )
    except CliError as exc:
        sys.stderr.write(f"error: {_one_line(exc.message)}\n")
        return exc.code
    except ClickException as exc:
        sys.stderr.write(f"error: {_one_line(exc.format_message())}\n")
        return exc.exit_code
    except (InputError, ValueError, FileNotFoundError) as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"error: {_one_line(str(exc)) or type(exc).__name__}\n")
        return 2
    except typer.Abort:
        sys.stderr.write("error: aborted\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write(
            f"error: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
            f"(rerun with {DEBUG_ENV}=1 for a traceback)\n"
        )
        return 1
    return result if isinstance(result, int) else 0


def main() -> None:
    """Entry point of the ``tunelens`` console script."""
    sys.exit(run())


if __name__ == "__main__":
    main()
