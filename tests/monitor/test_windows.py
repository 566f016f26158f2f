"""Window parsing, UTC conversion and window slicing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunelens.errors import InputError
from tunelens.monitor._windows import parse_window, to_utc, window_slices


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5min", 300),
        ("15m", 900),
        ("1h", 3600),
        ("6h", 21600),
        ("1d", 86400),
        ("1H", 3600),
        ("1D", 86400),
        ("15T", 900),
        ("h", 3600),
        (" 2 hours ", 7200),
        ("1w", 604800),
        (timedelta(minutes=10), 600),
        (120, 120),
    ],
)
def test_parse_window_accepts_the_documented_forms(text: object, seconds: int) -> None:
    assert parse_window(text) == seconds  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "1M", "1x", "h1", "0s", "-1h", "1.5h", 0, True, 1.5, None])
def test_parse_window_rejects_bad_forms_naming_the_accepted_ones(bad: object) -> None:
    with pytest.raises(InputError) as info:
        parse_window(bad)  # type: ignore[arg-type]
    assert info.value.field == "window"
    assert "5min" in str(info.value)


def test_to_utc_takes_naive_as_utc_and_converts_aware() -> None:
    naive = datetime(2026, 1, 2, 3, 4, 5)
    assert to_utc(naive, "since") == naive.replace(tzinfo=UTC)
    plus2 = datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert to_utc(plus2, "since") == naive.replace(tzinfo=UTC)
    assert to_utc("2026-01-02T03:04:05", "since") == naive.replace(tzinfo=UTC)
    assert to_utc(None, "since") is None
    with pytest.raises(InputError, match="since"):
        to_utc("not a time", "since")


def _brute(ts: np.ndarray, window_s: int) -> tuple[list[int], list[list[int]]]:
    width = window_s * 1_000_000
    groups: dict[int, list[int]] = {}
    for i, t in enumerate(ts.tolist()):
        groups.setdefault((t // width) * width, []).append(i)
    return sorted(groups), [groups[k] for k in sorted(groups)]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(-(10**13), 10**13), max_size=60),
    st.sampled_from([1, 30, 60, 3600, 86400]),
)
def test_window_slices_match_a_brute_force_grouping(values: list[int], window_s: int) -> None:
    ts = np.sort(np.array(values, dtype=np.int64))
    starts, bounds = window_slices(ts, window_s)
    want_starts, want_rows = _brute(ts, window_s)
    assert starts.tolist() == want_starts
    assert len(bounds) == len(starts) + 1
    got_rows = [list(range(bounds[i], bounds[i + 1])) for i in range(len(starts))]
    assert got_rows == want_rows


def test_window_slices_dense_path_equals_sparse_path() -> None:
    rng = np.random.default_rng(1)
    ts = np.sort(rng.integers(0, 86_400_000_000, 10_000)).astype(np.int64)
    starts, bounds = window_slices(ts, 3600)  # 24 windows << rows: searchsorted path
    assert len(starts) == 24
    assert starts[0] == 0 and np.all(np.diff(starts) == 3_600_000_000)
    assert bounds[-1] == len(ts)
    sparse_starts, sparse_bounds = window_slices(ts[:10], 1)  # windows >> rows
    want, _ = _brute(ts[:10], 1)
    assert sparse_starts.tolist() == want
    assert sparse_bounds[-1] == 10
