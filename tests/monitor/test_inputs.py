"""Coercion of numpy / pandas / arrow / list inputs to canonical arrow columns."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tunelens.errors import InputError
from tunelens.monitor._inputs import (
    TIMESTAMP,
    check_no_duplicates,
    coerce_batch_size,
    coerce_features,
    coerce_ids,
    coerce_latency,
    coerce_scores,
    coerce_timestamps,
    map_to_classes,
    new_ids,
    to_arrow_1d,
)


@pytest.mark.parametrize(
    "ids",
    [
        [1, 2, 3],
        np.array([1, 2, 3]),
        np.array([1, 2, 3], dtype=np.uint16),
        pd.Series([1, 2, 3]),
        pa.array([1, 2, 3]),
        pa.chunked_array([[1], [2, 3]]),
        np.array([1.0, 2.0, 3.0]),
        ["1", "2", "3"],
        np.array(["1", "2", "3"]),
        pd.Series(["1", "2", "3"], dtype="string"),
        pd.Series(["1", "2", "3"], dtype="category"),
    ],
)
def test_ids_of_every_kind_become_the_same_strings(ids: object) -> None:
    out = coerce_ids(ids, 3)
    assert out.type == pa.string()
    assert out.to_pylist() == ["1", "2", "3"]


def test_missing_ids_name_the_first_row() -> None:
    with pytest.raises(InputError, match=r"ids: no id at index 1"):
        coerce_ids(["a", None, "c"], 3)
    with pytest.raises(InputError, match=r"ids: no id \(NaN\) at index 2"):
        coerce_ids(np.array([1.0, 2.0, np.nan]), 3)
    with pytest.raises(InputError, match=r"ids: has 2 rows, predictions has 3"):
        coerce_ids([1, 2], 3)
    with pytest.raises(InputError, match="scalar"):
        coerce_ids("abc", 3)


def test_duplicate_ids_name_the_first_repeat() -> None:
    check_no_duplicates(pa.array(["a", "b", "c"]))
    with pytest.raises(InputError) as info:
        check_no_duplicates(pa.array(["a", "b", "c", "b", "a"]))
    assert info.value.field == "ids"
    assert "id 'b' at index 3 repeats" in str(info.value)


def test_new_ids_are_unique_uuid4_hex() -> None:
    ids = new_ids(1000).astype("U32")
    assert len(set(ids.tolist())) == 1000
    pattern = re.compile(r"^[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}$")
    assert all(pattern.match(i) for i in ids[:50])


def test_scores_are_checked_for_range_and_row_sums() -> None:
    assert coerce_scores(None, 3) is None
    np.testing.assert_array_equal(coerce_scores([0.1, 0.5, 1.0], 3), [0.1, 0.5, 1.0])
    two = coerce_scores(pd.DataFrame({"a": [0.2, 0.6], "b": [0.8, 0.4]}), 2)
    assert two is not None and two.shape == (2, 2)
    assert coerce_scores(np.array([[0.3], [0.4]]), 2).shape == (2,)  # type: ignore[union-attr]
    with pytest.raises(InputError, match=r"scores: 1\.2 at index 1 is outside \[0, 1\]"):
        coerce_scores([0.5, 1.2, 0.1], 3)
    with pytest.raises(InputError, match=r"scores: nan at index 2"):
        coerce_scores([0.5, 0.2, np.nan], 3)
    with pytest.raises(InputError, match=r"scores: the row at index 1 sums to 0\.9, not 1"):
        coerce_scores([[0.5, 0.5], [0.5, 0.4]], 2)
    coerce_scores([[0.5, 0.5 + 5e-7]], 1)  # within the 1e-6 tolerance
    with pytest.raises(InputError, match=r"scores: has 2 rows"):
        coerce_scores([0.1, 0.2], 3)


def test_timestamps_default_to_now_and_naive_means_utc() -> None:
    before = datetime.now(UTC)
    now = coerce_timestamps(None, 4)
    after = datetime.now(UTC)
    assert now.type == TIMESTAMP and len(now) == 4
    assert before - timedelta(microseconds=1) <= now[0].as_py() <= after
    naive = [datetime(2026, 1, 1, 12, 0), datetime(2026, 1, 1, 13, 0)]
    want = [d.replace(tzinfo=UTC) for d in naive]
    tz2 = timezone(timedelta(hours=2))
    for value in (
        naive,
        np.array(naive, dtype="datetime64[us]"),
        pd.Series(naive),
        pd.Series(pd.to_datetime(naive)).dt.tz_localize("UTC").dt.tz_convert(tz2),
        pd.Series([d.replace(tzinfo=UTC).astimezone(tz2) for d in naive]),
        ["2026-01-01T12:00:00", "2026-01-01T13:00:00"],
        ["2026-01-01T14:00:00+02:00", "2026-01-01T15:00:00+02:00"],
        pa.array(naive, pa.timestamp("ns")),
        np.array([d.replace(tzinfo=UTC).timestamp() for d in naive]),
    ):
        got = coerce_timestamps(value, 2)
        assert got.type == TIMESTAMP
        assert got.to_pylist() == want, value
    one = coerce_timestamps(datetime(2026, 1, 1), 3)
    assert one.to_pylist() == [datetime(2026, 1, 1, tzinfo=UTC)] * 3
    with pytest.raises(InputError, match="timestamps: no time at index 1"):
        coerce_timestamps([datetime(2026, 1, 1), None], 2)


def test_latency_and_batch_size() -> None:
    assert coerce_latency(None, 2).null_count == 2
    assert coerce_latency(3.5, 2).to_pylist() == [3.5, 3.5]
    assert coerce_latency([1.0, np.nan], 2).to_pylist() == [1.0, None]
    with pytest.raises(InputError, match=r"latency_ms: negative \(-1\.0\) at index 1"):
        coerce_latency([1.0, -1.0], 2)
    # an infinite latency would break every later metrics() of its window
    with pytest.raises(InputError, match="latency_ms: infinite at index 1"):
        coerce_latency([1.0, np.inf], 2)
    with pytest.raises(InputError, match="latency_ms: is infinite"):
        coerce_latency(float("inf"), 2)
    assert coerce_batch_size(None, 3, 3).to_pylist() == [3, 3, 3]
    assert coerce_batch_size(8, 2, 1).type == pa.int32()
    with pytest.raises(InputError, match="batch_size"):
        coerce_batch_size([1, 0], 2, 1)


def test_encoded_and_wide_strings_are_plain_strings_in_features_and_labels() -> None:
    """Every column passes `to_arrow_1d`, which decodes dictionaries and narrows
    large_string/string_view, so later steps only ever see ``string``."""
    columns = {
        "dict": pa.array(["a", "b"]).dictionary_encode(),
        "dict_large": pa.array(["a", "b"], pa.large_string()).dictionary_encode(),
        "large": pa.array(["a", "b"], pa.large_string()),
        "view": pa.array(["a", "b"], pa.string_view()),
        "chunked": pa.chunked_array(
            [pa.array(["a"], pa.large_string()), pa.array(["b"], pa.large_string())]
        ),
        "pandas": pd.Series(["a", "b"], dtype="string[pyarrow]"),
    }
    for features in (columns, pa.table({k: v for k, v in columns.items() if k != "pandas"})):
        cols, schema = coerce_features(features, 2, {})
        assert set(schema.values()) == {"string"}
        assert {c.type for c in cols.values()} == {pa.string()}
        assert {tuple(c.to_pylist()) for c in cols.values()} == {("a", "b")}
    for values in columns.values():
        labels = to_arrow_1d(values, "labels")
        assert labels.type == pa.string()
        idx, classes = map_to_classes(labels, ("b",), "labels")
        assert idx.tolist() == [1, 0] and classes == ("b", "a")


def test_features_from_every_container() -> None:
    frame = pd.DataFrame(
        {
            "x": np.array([1.5, 2.5], dtype=np.float32),
            "k": [1, 2],
            "b": [True, False],
            "s": pd.Series(["a", "b"], dtype="category"),
            "t": pd.to_datetime(["2026-01-01", "2026-01-02"]),
        }
    )
    cols, schema = coerce_features(frame, 2, {})
    assert schema == {"x": "float", "k": "int", "b": "bool", "s": "string", "t": "timestamp"}
    assert cols["x"].type == pa.float64() and cols["s"].to_pylist() == ["a", "b"]
    assert cols["t"].type == TIMESTAMP
    same, _ = coerce_features(pa.Table.from_pandas(frame, preserve_index=False), 2, {})
    assert {k: v.to_pylist() for k, v in same.items()} == {
        k: v.to_pylist() for k, v in cols.items()
    }
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    cols, schema = coerce_features(arr, 2, {})
    assert list(schema) == ["f0", "f1", "f2"]
    assert cols["f2"].to_pylist() == [2.0, 5.0]
    cols, schema = coerce_features([[1, 2], [3, 4]], 2, {})
    assert cols["f1"].to_pylist() == [2, 4] and schema["f1"] == "int"
    cols, _ = coerce_features({"a": [1.0, 2.0]}, 2, {})
    assert cols["a"].to_pylist() == [1.0, 2.0]
    cols, _ = coerce_features([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}], 2, {})
    assert cols["b"].to_pylist() == ["x", "y"]
    assert coerce_features(None, 2, {}) == ({}, {})


def test_features_follow_the_known_schema() -> None:
    cols, schema = coerce_features({"a": [1, 2]}, 2, {"a": "float", "z": "string"})
    assert cols["a"].type == pa.float64()
    assert cols["z"].null_count == 2 and cols["z"].type == pa.string()
    assert schema == {"a": "float", "z": "string"}
    with pytest.raises(InputError, match=r"features\['a'\]: is string but .* float"):
        coerce_features({"a": ["x", "y"]}, 2, {"a": "float"})
    with pytest.raises(InputError, match=r"features\['a'\]: has 1 rows"):
        coerce_features({"a": [1.0]}, 2, {})
    with pytest.raises(InputError, match="features: has shape"):
        coerce_features(np.zeros((2, 2, 2)), 2, {})


def test_map_to_classes_appends_new_classes_sorted() -> None:
    idx, classes = map_to_classes(pa.array(["b", "a", "b"]), (), "predictions")
    assert classes == ("a", "b") and idx.tolist() == [1, 0, 1]
    idx, classes = map_to_classes(pa.array(["c", "a", "0"]), classes, "labels")
    assert classes == ("a", "b", "0", "c") and idx.tolist() == [3, 0, 2]
    idx, classes = map_to_classes(pa.array([1.0, 0.0]), (0, 1), "predictions")
    assert idx.tolist() == [1, 0] and classes == (0, 1)
    with pytest.raises(InputError, match="predictions: NaN at index 1"):
        map_to_classes(pa.array([1.0, np.nan]), (0, 1), "predictions")
    with pytest.raises(InputError, match="labels: missing at index 0"):
        map_to_classes(pa.array([None, 1]), (0, 1), "labels")


def test_to_arrow_1d_accepts_column_vectors_and_rejects_matrices() -> None:
    assert to_arrow_1d(np.array([[1], [2]]), "p").to_pylist() == [1, 2]
    with pytest.raises(InputError, match=r"predictions: has shape \(2, 2\)"):
        to_arrow_1d(np.zeros((2, 2)), "predictions")


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame({"a": [1.5, np.nan, -2.0], "b": [0.0, 1e300, np.inf]}),
        pd.DataFrame({"a": [1, 2, 3], "b": [4, 5, 6]}, dtype="int64"),
        pd.DataFrame({"a": [True, False, True], "b": [False, False, True]}),
        pd.DataFrame({"a": np.array([1, 2, 3], dtype=np.uint8), "b": [7, 8, 9]}),  # mixed
        pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", None]}),  # strings: slow path
        pd.DataFrame({"a": pd.array([1, None, 3], dtype="Int64")}),  # extension dtype
        pd.DataFrame({"a": [1.0, 2.0, 3.0]}, index=[10, 20, 30]),  # the index is not a column
    ],
)
def test_the_numeric_frame_fast_path_matches_from_pandas(frame: pd.DataFrame) -> None:
    known: dict[str, str] = {}
    fast, fast_schema = coerce_features(frame, len(frame), known)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    slow, slow_schema = coerce_features(table, len(frame), known)
    assert fast_schema == slow_schema
    assert list(fast) == list(slow) == [str(c) for c in frame.columns]
    for name in fast:
        assert fast[name].equals(slow[name]), (name, fast[name], slow[name])
    assert fast["a"].null_count == int(frame["a"].isna().sum())  # NaN is missing, as
    # from_pandas makes it
