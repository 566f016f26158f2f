"""Coercion of user inputs (numpy, pandas, pyarrow, lists) to canonical arrow columns.

Everything here is vectorised: a million rows are converted by pyarrow and numpy
kernels, never by a Python loop over rows. Every check names the argument, the first
offending row and what was expected, and raises `InputError` before anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tunelens.errors import InputError

__all__ = [
    "TIMESTAMP",
    "check_no_duplicates",
    "check_score_columns",
    "coerce_batch_size",
    "coerce_classes",
    "coerce_features",
    "coerce_ids",
    "coerce_latency",
    "coerce_scores",
    "coerce_timestamps",
    "float_values",
    "map_to_classes",
    "new_ids",
    "regression_values",
    "to_arrow_1d",
]

TIMESTAMP = pa.timestamp("us", tz="UTC")
SCORE_TOLERANCE = 1e-6
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _first(mask: npt.NDArray[np.bool_]) -> int:
    return int(np.flatnonzero(mask)[0])


def _from_sequence(values: list[Any] | tuple[Any, ...]) -> pa.Array | None:
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return None
    if pa.types.is_nested(array.type):
        return None
    return array


def to_arrow_1d(values: Any, field: str) -> pa.Array:
    """One column as a (non-chunked) arrow array; dictionaries are decoded."""
    if values is None:
        raise InputError(field, "is missing", "give one value per row")
    if isinstance(values, pa.ChunkedArray):
        array = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    elif isinstance(values, pa.Array):
        array = values
    elif isinstance(values, (pd.Series, pd.Index)):
        array = pa.Array.from_pandas(values)
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
    elif isinstance(values, (pd.DataFrame, pa.Table)):
        if values.shape[1] != 1:
            raise InputError(field, f"has {values.shape[1]} columns", "give one column")
        return to_arrow_1d(
            values.iloc[:, 0] if isinstance(values, pd.DataFrame) else values.column(0), field
        )
    else:
        if isinstance(values, (str, bytes)) or np.ndim(values) == 0:
            raise InputError(field, f"is a scalar ({values!r})", "give one value per row")
        array = _from_sequence(values) if isinstance(values, (list, tuple)) else None
        if array is None:
            arr = np.asarray(values)
            if arr.ndim == 2 and arr.shape[1] == 1:
                arr = arr[:, 0]
            if arr.ndim != 1:
                raise InputError(field, f"has shape {arr.shape}", "give a 1-D array")
            try:
                array = pa.array(arr)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise InputError(
                    field, f"cannot be converted ({exc})", "give numbers or strings"
                ) from exc
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_large_string(array.type) or pa.types.is_string_view(array.type):
        array = array.cast(pa.string())
    return array


def _check_length(array: pa.Array | npt.NDArray[Any], n: int, field: str) -> None:
    if len(array) != n:
        raise InputError(
            field, f"has {len(array)} rows, predictions has {n}", "give one value per prediction"
        )


def _valid(array: pa.Array) -> npt.NDArray[np.bool_]:
    return np.asarray(pc.is_valid(array).to_numpy(zero_copy_only=False), dtype=bool)


def _first_null(array: pa.Array) -> int:
    return _first(~_valid(array))


def float_values(array: pa.Array) -> npt.NDArray[np.float64]:
    """A numeric array's values as float64, NaN where null (numpy converts, so an
    integer beyond 2**53 rounds instead of raising as an arrow cast would)."""
    values = np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.float64)
    if array.null_count:
        values = np.where(_valid(array), values, np.nan)
    return values


def regression_values(values: pa.Array, field: str) -> pa.Array:
    """Regression predictions or labels as float64: numbers, none missing, all finite."""
    if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
        raise InputError(field, f"has type {values.type}", "give numbers for a regression model")
    if values.null_count:
        raise InputError(
            field, f"missing at index {_first_null(values)}", "give a value for every row"
        )
    out = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
    bad = ~np.isfinite(out)
    if bad.any():
        row = _first(bad)
        raise InputError(field, f"{out[row]} at index {row}", "give finite numbers")
    return pa.array(out)


def coerce_classes(classes: Any, field: str = "classes") -> tuple[Any, ...]:
    """Class labels as a tuple of Python values of one arrow type, each once."""
    try:
        out = tuple(pa.array(list(classes)).to_pylist())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
        raise InputError(field, f"cannot be read ({exc})", "give labels of one type") from exc
    if len(set(out)) != len(out):
        raise InputError(field, "has duplicates", "give each class once")
    return out


def coerce_ids(ids: Any, n: int | None, field: str = "ids", *, unique: bool = False) -> pa.Array:
    """Ids as a string array (ints are cast by arrow), with no nulls.

    Args:
        ids: the ids.
        n: rows expected (None: any).
        field: the argument name to cite in an error.
        unique: also check that no id repeats (cheaply on integers, before the cast).
    """
    array = to_arrow_1d(ids, field)
    if n is not None:
        _check_length(array, n, field)
    if array.null_count:
        raise InputError(field, f"no id at index {_first_null(array)}", "give every row an id")
    if pa.types.is_floating(array.type):
        values = array.to_numpy(zero_copy_only=False)
        nan = np.isnan(values)
        if nan.any():
            raise InputError(field, f"no id (NaN) at index {_first(nan)}", "give every row an id")
        bad = values != np.round(values)
        if bad.any():
            row = _first(bad)
            raise InputError(
                field, f"{float(values[row])} at index {row}", "give ids as ints or strings"
            )
        array = array.cast(pa.int64())
    if unique and pa.types.is_integer(array.type):
        _check_unique_ints(array.to_numpy(zero_copy_only=False), array, field)
        unique = False
    if not pa.types.is_string(array.type):
        try:
            array = array.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InputError(
                field, f"of type {array.type} cannot be ids", "give ints or strings"
            ) from exc
    if unique:
        check_no_duplicates(array, field)
    return array


def _check_unique_ints(values: npt.NDArray[Any], array: pa.Array, field: str) -> None:
    if len(values) < 2:
        return
    steps = np.diff(values)
    if (steps > 0).all() or (steps < 0).all():  # the common case: a running counter
        return
    ordered = np.sort(values)
    if (np.diff(ordered) != 0).all():
        return
    _raise_duplicate(array, field)


def _raise_duplicate(array: pa.Array, field: str) -> None:
    dup = pd.Series(array.to_numpy(zero_copy_only=False)).duplicated().to_numpy()
    row = _first(dup)
    raise InputError(
        field,
        f"id {str(array[row].as_py())!r} at index {row} repeats an earlier id of the batch",
        "give each prediction a unique id",
    )


def check_no_duplicates(ids: pa.Array, field: str = "ids") -> None:
    """Raise when an id occurs twice in the batch, naming the first repeat."""
    if len(ids) < 2 or len(pc.unique(ids)) == len(ids):
        return
    _raise_duplicate(ids, field)


def new_ids(n: int) -> npt.NDArray[np.bytes_]:
    """``n`` random uuid4 hex strings (32 characters), built without a Python loop."""
    raw = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    chars = np.empty((n, 32), dtype=np.uint8)
    chars[:, 0::2] = _HEX[raw >> 4]
    chars[:, 1::2] = _HEX[raw & 0x0F]
    return chars.view("S32").reshape(n)


def _broadcast_time(value: Any, n: int, field: str) -> pa.Array:
    stamp = pd.Timestamp(value)
    if pd.isna(stamp):
        raise InputError(field, "is NaT", "give a time")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    micros = stamp.value // 1000
    return pa.array(np.full(n, micros, dtype=np.int64)).cast(TIMESTAMP)


#: Numeric timestamps are epoch seconds within these years; anything else (epoch
#: milliseconds or nanoseconds, say) is refused rather than guessed at.
EPOCH_SECONDS_RANGE = (0.0, float(datetime(2200, 1, 1, tzinfo=UTC).timestamp()))


def _epoch_seconds_to_us(array: pa.Array, field: str) -> npt.NDArray[np.int64]:
    """Epoch seconds (numbers) as int64 microseconds; NaN and implausible values raise."""
    seconds = float_values(array)
    nan = np.isnan(seconds)
    if nan.any():
        raise InputError(field, f"NaN at index {_first(nan)}", "give a time for every row")
    lo, hi = EPOCH_SECONDS_RANGE
    bad = ~((seconds >= lo) & (seconds < hi))
    if bad.any():
        row = _first(bad)
        value = array[row].as_py()
        raise InputError(
            field,
            f"{value!r} at index {row} is not a time from 1970 to 2200 in epoch seconds",
            "give numbers as seconds since 1970-01-01 UTC (not milliseconds), "
            "or datetimes or ISO-8601 strings",
        )
    micros: npt.NDArray[np.int64] = np.round(seconds * 1e6).astype(np.int64)
    return micros


def _times_to_utc_us(array: pa.Array) -> pa.Array:
    """A date or timestamp array as timestamp("us", "UTC") (naive values are UTC)."""
    out = pc.cast(array, pa.timestamp("us"), safe=False) if pa.types.is_date(array.type) else array
    out = pc.cast(out, pa.timestamp("us", tz=out.type.tz), safe=False)
    return out.cast(TIMESTAMP)


def coerce_timestamps(timestamps: Any, n: int, field: str = "timestamps") -> pa.Array:
    """Timestamps as timestamp("us", "UTC"); None means now; naive values are UTC.

    Numbers are seconds since the epoch (1970-01-01 UTC); a number outside the years
    1970-2200 (epoch milliseconds, say) raises `InputError` rather than being guessed.
    """
    if timestamps is None:
        return _broadcast_time(datetime.now(UTC), n, field)
    if isinstance(timestamps, (int, float, np.integer, np.floating)) and not isinstance(
        timestamps, bool
    ):
        us = _epoch_seconds_to_us(pa.array([float(timestamps)]), field)
        return pa.array(np.full(n, us[0], dtype=np.int64)).cast(TIMESTAMP)
    if isinstance(timestamps, (datetime, date, str, pd.Timestamp, np.datetime64)):
        try:
            return _broadcast_time(timestamps, n, field)
        except ValueError as exc:
            raise InputError(field, f"{timestamps!r} is not a time", "give a datetime") from exc
    array: pa.Array
    if isinstance(timestamps, (pa.Array, pa.ChunkedArray, pd.Series, pd.Index, np.ndarray)):
        array = to_arrow_1d(timestamps, field)
    else:
        array = to_arrow_1d(
            list(timestamps) if not isinstance(timestamps, list) else timestamps, field
        )
    _check_length(array, n, field)
    if pa.types.is_timestamp(array.type) or pa.types.is_date(array.type):
        out = _times_to_utc_us(array)
    elif pa.types.is_integer(array.type) or pa.types.is_floating(array.type):
        out = pa.array(_epoch_seconds_to_us(array, field)).cast(TIMESTAMP)
    else:
        try:
            index = pd.to_datetime(array.to_pandas(), utc=True)
        except (ValueError, TypeError) as exc:
            raise InputError(
                field, f"cannot be read as times ({exc})", "give datetimes or ISO strings"
            ) from exc
        out = pc.cast(pa.Array.from_pandas(index), TIMESTAMP, safe=False)
    if out.null_count:
        raise InputError(
            field, f"no time at index {_first_null(out)}", "give a time for every row or none"
        )
    return out


def coerce_latency(latency_ms: Any, n: int, field: str = "latency_ms") -> pa.Array:
    """Latency in ms as float64; None gives nulls, NaN becomes null, inf is refused."""
    if latency_ms is None:
        return pa.nulls(n, pa.float64())
    if np.ndim(latency_ms) == 0 and not isinstance(latency_ms, (pa.Array, pa.ChunkedArray)):
        try:
            value = float(latency_ms)
        except (TypeError, ValueError) as exc:
            raise InputError(field, f"{latency_ms!r} is not a number", "give milliseconds") from exc
        if value < 0:
            raise InputError(field, f"is negative ({value})", "give milliseconds >= 0")
        if np.isinf(value):
            raise InputError(field, "is infinite", "give a finite number of milliseconds")
        if np.isnan(value):
            return pa.nulls(n, pa.float64())
        return pa.array(np.full(n, value, dtype=np.float64))
    array = to_arrow_1d(latency_ms, field)
    _check_length(array, n, field)
    try:
        values = array.cast(pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(
            field, f"of type {array.type} is not numeric", "give milliseconds"
        ) from exc
    nan = np.isnan(values)
    negative = values < 0
    if negative.any():
        row = _first(negative)
        raise InputError(
            field, f"negative ({values[row]}) at index {row}", "give milliseconds >= 0"
        )
    infinite = np.isinf(values)
    if infinite.any():
        raise InputError(
            field,
            f"infinite at index {_first(infinite)}",
            "give a finite number of milliseconds (or NaN/None when unknown)",
        )
    return pa.array(values, mask=nan if nan.any() else None)


def coerce_batch_size(batch_size: Any, n: int, per_row_default: int) -> pa.Array:
    """Batch sizes as int32; None gives ``per_row_default`` for every row."""
    if batch_size is None:
        return pa.array(np.full(n, per_row_default, dtype=np.int32))
    if np.ndim(batch_size) == 0 and not isinstance(batch_size, (pa.Array, pa.ChunkedArray)):
        value = int(batch_size)
        if value < 1:
            raise InputError("batch_size", f"is {value}", "give a batch size >= 1")
        return pa.array(np.full(n, value, dtype=np.int32))
    array = to_arrow_1d(batch_size, "batch_size")
    _check_length(array, n, "batch_size")
    values = array.to_numpy(zero_copy_only=False)
    bad = ~(values >= 1)
    if bad.any():
        raise InputError(
            "batch_size", f"{values[_first(bad)]} at index {_first(bad)}", "give batch sizes >= 1"
        )
    return pa.array(values.astype(np.int32))


def _to_2d_float(values: Any, field: str) -> npt.NDArray[np.float64]:
    try:
        if isinstance(values, pa.Table):
            arr = np.column_stack([c.to_numpy() for c in values.columns]).astype(np.float64)
        elif isinstance(values, (pa.Array, pa.ChunkedArray)):
            arr = values.to_numpy(zero_copy_only=False).astype(np.float64)
        elif isinstance(values, (pd.DataFrame, pd.Series)):
            arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(field, f"is not numeric ({exc})", "give probabilities in [0, 1]") from exc
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim not in (1, 2):
        raise InputError(field, f"has shape {arr.shape}", "give a 1-D or (rows, classes) array")
    return arr


def coerce_scores(
    scores: Any, n: int, field: str = "scores", *, check_sums: bool = True
) -> npt.NDArray[np.float64] | None:
    """Scores as float64, 1-D or (n, K), in [0, 1]; 2-D rows must sum to 1.

    Args:
        scores: the scores, or None.
        n: rows expected.
        field: the argument name to cite in an error.
        check_sums: check the row sums of a 2-D array here; a caller that knows the
            model's classes passes False and calls `check_score_columns` instead, so
            that a wrong column count is reported before a wrong sum.
    """
    if scores is None:
        return None
    arr = _to_2d_float(scores, field)
    _check_length(arr, n, field)
    outside: npt.NDArray[np.bool_] = ~((arr >= 0.0) & (arr <= 1.0))
    if arr.ndim == 2:
        outside = np.asarray(outside.any(axis=1))
    if outside.any():
        row = _first(outside)
        raise InputError(
            field,
            f"{arr[row].tolist()!r} at index {row} is outside [0, 1]",
            "give probabilities in [0, 1]",
        )
    if arr.ndim == 2:
        if arr.shape[1] < 2:
            raise InputError(field, f"has {arr.shape[1]} columns", "give one column per class")
        if check_sums:
            check_score_columns(arr, None, field)
    return arr


def check_score_columns(
    arr: npt.NDArray[np.float64], classes: Sequence[Any] | None, field: str = "scores"
) -> None:
    """Check a 2-D score matrix against the model's classes, then its row sums.

    With ``K`` known classes, ``k`` columns are accepted for ``2 <= k <= K``: they are
    the first ``k`` classes in order (a model that does not know the later classes
    gives them probability 0), so the ``k`` given columns must sum to 1 in every row.
    """
    k = arr.shape[1]
    known = None if classes is None else list(classes)
    if known is not None and k > len(known):
        raise InputError(
            field,
            f"has {k} columns but {len(known)} classes are known ({known[:6]!r})",
            "pass classes= to Monitor, in the column order of the scores",
        )
    off = np.abs(arr.sum(axis=1) - 1.0) > SCORE_TOLERANCE
    if off.any():
        row = _first(off)
        problem = f"the row at index {row} sums to {arr[row].sum():.9g}, not 1"
        if known is not None and k < len(known):
            problem += (
                f" ({k} columns given, the model has {len(known)} classes {known[:6]!r}; "
                f"expected {len(known)} columns, or fewer only for a model that does not "
                "know the later classes)"
            )
        raise InputError(
            field,
            problem,
            "give class probabilities that sum to 1 in every row (e.g. predict_proba output)",
        )


def decode_classes(frame: pd.DataFrame, classes: Sequence[Any], *, like: Any = ()) -> pd.DataFrame:
    """The inverse of `map_to_classes` on a scanned frame: the ``prediction`` and ``label``
    class indices (as the store keeps classification rows) back to the class labels.

    A class that reads like one of ``like`` (e.g. a reference's integer 1 for the stored
    "1") takes that value and type. Returns a copy; missing values stay None.
    """
    typed = {str(v): v for v in like}
    lookup = np.asarray([typed.get(str(c), c) for c in classes], dtype=object)
    out = frame.copy()
    for column in ("prediction", "label"):
        if column in out.columns:
            codes = out[column].to_numpy()
            known = pd.notna(codes)
            values = np.full(len(codes), None, dtype=object)
            values[known] = lookup[codes[known].astype(np.int64)]
            out[column] = pd.Series(values, index=out.index).infer_objects()
    return out


def map_to_classes(
    values: pa.Array, classes: Sequence[Any], field: str
) -> tuple[npt.NDArray[np.int32], tuple[Any, ...]]:
    """Class indices of ``values`` into ``classes``, extending the classes with new ones.

    New labels are appended in sorted order so the indices of known classes never move.

    Returns:
        ``(indices, classes)`` where ``classes`` may be longer than the input.
    """
    if values.null_count:
        raise InputError(
            field, f"missing at index {_first_null(values)}", "give a label for every row"
        )
    if pa.types.is_floating(values.type):
        nan = np.isnan(values.to_numpy(zero_copy_only=False))
        if nan.any():
            raise InputError(
                field, f"NaN at index {_first(nan)}", "give a class label for every row"
            )
    known = tuple(classes)
    if known:
        value_set = pa.array(list(known))
        if value_set.type != values.type:
            values = _cast_to_classes(values, value_set, known, field)
        index = pc.index_in(values, value_set=value_set)
        missing = index.null_count
    else:
        index = None
        missing = len(values)
    if missing:
        unseen = values if index is None else pc.filter(values, pc.is_null(index))
        fresh = pc.unique(unseen)
        try:
            fresh_values = pc.take(fresh, pc.sort_indices(fresh)).to_pylist()
        except pa.ArrowNotImplementedError:
            fresh_values = fresh.to_pylist()
        known = known + tuple(fresh_values)
        value_set = pa.array(list(known), type=values.type)
        index = pc.index_in(values, value_set=value_set)
    assert index is not None
    return index.to_numpy(zero_copy_only=False).astype(np.int32, copy=False), known


def _kind(t: pa.DataType) -> str:
    # Values come through `to_arrow_1d` (no large_string or string_view) and classes
    # through ``pa.array`` of Python values (the same).
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_string(t):
        return "str"
    return str(t)


def _cast_to_classes(
    values: pa.Array, value_set: pa.Array, known: tuple[Any, ...], field: str
) -> pa.Array:
    """``values`` cast to the type of the model's classes, or `InputError` naming the
    first value that is not of that type (numbers convert only without loss)."""
    want, have = _kind(value_set.type), _kind(values.type)
    bad: npt.NDArray[np.bool_] | None = None
    if want == have or (want == "float" and have == "int"):
        try:
            return values.cast(value_set.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            bad = None
    elif want == "int" and have in ("float", "bool"):
        numbers = values.to_numpy(zero_copy_only=False).astype(np.float64)
        bad = (numbers != np.round(numbers)) | (np.abs(numbers) >= 2.0**63)
        if not bad.any():
            return pa.array(numbers.astype(np.int64)).cast(value_set.type)
    elif want == "bool" and have in ("int", "float"):
        numbers = values.to_numpy(zero_copy_only=False).astype(np.float64)
        bad = (numbers != 0) & (numbers != 1)
        if not bad.any():
            return pa.array(numbers == 1)
    elif {want, have} == {"int", "str"}:
        # "1" for class 1 (or 1 for class "1"): accepted only when every value is a
        # known class, so a new class is never made of a converted value.
        try:
            converted = values.cast(value_set.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            converted = None
            numbers = pd.to_numeric(values.to_pandas(), errors="coerce").to_numpy(np.float64)
            bad = np.isnan(numbers) | (numbers != np.round(numbers))
            if want == "int" and not bad.any():  # "1.0" for class 1
                converted = pa.array(numbers.astype(np.int64)).cast(value_set.type)
        if converted is not None:
            known_mask = pc.is_in(converted, value_set=value_set).to_numpy(zero_copy_only=False)
            if known_mask.all():
                return converted
            bad = ~np.asarray(known_mask, dtype=bool)
    row = 0 if bad is None or not bad.any() else _first(bad)
    value = values[row].as_py()
    raise InputError(
        field,
        f"{value!r} ({type(value).__name__}) at index {row} is not of the model's class "
        f"type {type(known[0]).__name__}; classes are {list(known)[:10]!r}",
        f"give {field} of the same type as the model's classes",
    )


_FEATURE_TYPES = ("float", "int", "bool", "string", "timestamp")


def _normalise_feature(array: pa.Array, name: str) -> tuple[pa.Array, str]:
    """A feature column (from `to_arrow_1d`: no dictionary, large_string or
    string_view) in its canonical type."""
    field = f"features[{name!r}]"
    kind = array.type
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return array.cast(pa.float64()), "float"
    if pa.types.is_integer(kind):
        try:
            return array.cast(pa.int64()), "int"
        except pa.ArrowInvalid:
            return array.cast(pa.float64()), "float"
    if pa.types.is_boolean(kind):
        return array, "bool"
    if pa.types.is_string(kind):
        return array, "string"
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return _times_to_utc_us(array), "timestamp"
    if pa.types.is_null(kind):
        return array.cast(pa.float64()), "float"
    raise InputError(field, f"has type {kind}", "give numbers, booleans, strings or times")


def _numeric_frame_columns(frame: pd.DataFrame) -> dict[str, pa.Array] | None:
    """The columns of a DataFrame whose columns share one numpy numeric dtype, or None.

    The common case of a live model's features (a small all-float frame per call) costs
    ~50 us here instead of ~5 ms through ``pa.Table.from_pandas`` (30 columns, 4 rows: its
    per-column pandas metadata dominates). Same values: NaN becomes null as from_pandas
    makes it.
    """
    dtypes = frame.dtypes.unique()
    if len(dtypes) != 1 or not frame.columns.is_unique:
        return None
    dtype = dtypes[0]
    if not isinstance(dtype, np.dtype) or dtype.kind not in "fiub":
        return None
    cols = np.ascontiguousarray(frame.to_numpy().T)
    return {str(name): pa.array(cols[j], from_pandas=True) for j, name in enumerate(frame.columns)}


def _feature_columns(features: Any, n: int) -> dict[str, pa.Array]:
    if isinstance(features, pd.DataFrame):
        fast = _numeric_frame_columns(features)
        if fast is not None:
            return fast
        table = pa.Table.from_pandas(features, preserve_index=False)
        return {
            str(name): to_arrow_1d(col, f"features[{name!r}]")
            for name, col in zip(features.columns, table.columns, strict=True)
        }
    if isinstance(features, (pa.Table, pa.RecordBatch)):
        return {
            str(name): to_arrow_1d(col, f"features[{name!r}]")
            for name, col in zip(features.column_names, features.columns, strict=True)
        }
    if isinstance(features, Mapping):
        return {
            str(name): to_arrow_1d(col, f"features[{name!r}]") for name, col in features.items()
        }
    if isinstance(features, (pd.Series, pa.Array, pa.ChunkedArray)):
        name = getattr(features, "name", None) or "f0"
        return {str(name): to_arrow_1d(features, "features")}
    if isinstance(features, list) and features and isinstance(features[0], Mapping):
        return _feature_columns(pd.DataFrame.from_records(features), n)
    try:
        arr = np.asarray(features)
    except (TypeError, ValueError) as exc:
        raise InputError(
            "features",
            f"cannot be read ({exc})",
            "give a DataFrame, arrow Table, dict or 2-D array",
        ) from exc
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise InputError(
            "features",
            f"has shape {arr.shape}",
            "give a DataFrame, arrow Table, dict of columns or 2-D array",
        )
    # One transpose copy makes every column contiguous, so arrow wraps it without copying.
    cols = np.ascontiguousarray(arr.T)
    return {f"f{j}": to_arrow_1d(cols[j], f"features[{j}]") for j in range(cols.shape[0])}


def coerce_features(
    features: Any, n: int, known: Mapping[str, str]
) -> tuple[dict[str, pa.Array], dict[str, str]]:
    """Feature columns (bare names) normalised to the canonical types.

    Args:
        features: DataFrame, arrow Table, dict of columns, 2-D array (names f0..), or None.
        n: rows expected.
        known: the model's feature schema (name -> type); values of a known feature are
            cast to its type where that is lossless (int -> float, bool -> int); a missing
            known feature becomes a null column.

    Returns:
        ``(columns, schema)``: name -> arrow array, and the schema of this batch merged
        onto ``known`` (new names appended).
    """
    raw = {} if features is None else _feature_columns(features, n)
    columns: dict[str, pa.Array] = {}
    schema: dict[str, str] = dict(known)
    for name, array in raw.items():
        _check_length(array, n, f"features[{name!r}]")
        out, kind = _normalise_feature(array, name)
        want = known.get(name)
        if want is not None and want != kind:
            if want == "float" and kind in ("int", "bool"):
                out, kind = out.cast(pa.float64()), "float"
            elif want == "int" and kind == "bool":
                out, kind = out.cast(pa.int64()), "int"
            elif want == "int" and kind == "float":
                out, kind = _whole_floats_to_int(out, name), "int"
            elif kind == "float" and out.null_count == len(out) and want in _FEATURE_TYPES:
                out, kind = pa.nulls(n, _ARROW[want]), want
            else:
                raise InputError(
                    f"features[{name!r}]",
                    f"is {kind} but the model's feature schema has it as {want}",
                    f"give {want} values for this feature",
                )
        columns[name] = out
        schema.setdefault(name, kind)
    for name, kind in known.items():
        if name not in columns:
            columns[name] = pa.nulls(n, _ARROW[kind])
    return columns, schema


def _whole_floats_to_int(array: pa.Array, name: str) -> pa.Array:
    """Floats of an int feature (pandas makes an int column with NaN float) as int64:
    NaN and nulls become null; a value that is not a whole number raises."""
    values = float_values(array)
    missing = np.isnan(values)
    ok = missing | ((values == np.round(values)) & (np.abs(values) < 2.0**63))
    if not ok.all():
        row = _first(~ok)
        raise InputError(
            f"features[{name!r}]",
            f"{float(values[row])!r} at index {row} is not a whole number, but the model's "
            "feature schema has it as int",
            "give int values for this feature (NaN or None for a missing one)",
        )
    ints = np.where(missing, 0, values).astype(np.int64)
    return pa.array(ints, mask=missing if missing.any() else None)


_ARROW: dict[str, pa.DataType] = {
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "timestamp": TIMESTAMP,
}
