"""Time windows: parsing window strings, UTC times, and slicing sorted timestamps.

Windows are aligned to the Unix epoch (a window starts at a multiple of its width), so
the windows of two queries over overlapping ranges coincide and their stored states
can be merged.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from tunelens.errors import InputError

__all__ = ["WINDOW_FORMS", "parse_window", "to_utc", "window_slices"]

WINDOW_FORMS = '"30s", "5min", "15m", "1h", "6h", "1d" (also "1H", "1D", "2w" or a timedelta)'

_UNIT_SECONDS: dict[str, int] = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "t": 60,  # pandas' old alias for minutes
    "h": 3600,
    "hr": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}
_WINDOW_RE = re.compile(r"^\s*(\d+)?\s*([A-Za-z]+)\s*$")


#: the widest window: 100 years (window starts in microseconds stay far inside int64)
MAX_WINDOW_S = 100 * 366 * 86_400


def parse_window(window: str | int | timedelta | pd.Timedelta, field: str = "window") -> int:
    """Width of a window in whole seconds.

    Args:
        window: ``"30s"``, ``"5min"``, ``"15m"``, ``"1h"``, ``"1H"``, ``"1d"``,
            a `datetime.timedelta` or a number of seconds.
        field: the argument name to cite in an error.

    Returns:
        The width in seconds (at least 1).

    Raises:
        InputError: the window is not one of the accepted forms.

    Example:
        >>> parse_window("15m"), parse_window("1H"), parse_window("1d")
        (900, 3600, 86400)
    """
    fix = f"use one of {WINDOW_FORMS}"
    seconds: float
    if isinstance(window, bool):
        raise InputError(field, f"{window!r} is not a window width", fix)
    if isinstance(window, (int, np.integer)):
        seconds = float(window)
    elif isinstance(window, timedelta):  # pd.Timedelta is a timedelta
        seconds = window.total_seconds()
    elif isinstance(window, str):
        match = _WINDOW_RE.match(window)
        if match is None:
            raise InputError(field, f"{window!r} is not a window width", fix)
        count_text, unit = match.groups()
        if unit == "M":
            raise InputError(field, f"{window!r} is ambiguous (month or minute?)", fix)
        factor = _UNIT_SECONDS.get(unit.lower())
        if factor is None:
            raise InputError(field, f"unknown unit {unit!r} in {window!r}", fix)
        count = count_text or "1"
        if len(count) > 12:  # also keeps int() under its 4300-digit limit
            raise InputError(field, f"{window[:40]!r} is too wide", fix)
        seconds = float(int(count) * factor)
    else:
        raise InputError(field, f"{window!r} is not a window width", fix)
    if seconds < 1 or seconds != int(seconds):
        raise InputError(field, f"{window!r} is not a whole number of seconds >= 1", fix)
    if seconds > MAX_WINDOW_S:
        raise InputError(field, f"{window!r} is wider than {MAX_WINDOW_S} seconds", fix)
    return int(seconds)


def to_utc(value: Any, field: str) -> datetime | None:
    """A timezone-aware UTC datetime from a datetime, date, string or pandas Timestamp.

    Naive values are taken as UTC. None stays None.
    """
    if value is None:
        return None
    try:
        if isinstance(value, datetime):
            stamp = pd.Timestamp(value)
        elif isinstance(value, date):
            stamp = pd.Timestamp(datetime(value.year, value.month, value.day))
        else:
            stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise InputError(
            field,
            f"{value!r} is not a time",
            'give a datetime or an ISO string such as "2026-01-31T12:00"',
        ) from exc
    if pd.isna(stamp):
        raise InputError(field, "is NaT", "give a datetime or an ISO string")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    result: datetime = stamp.to_pydatetime()
    return result.astimezone(UTC)


def window_slices(
    ts_us: npt.NDArray[np.int64], window_s: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Window starts and row boundaries of sorted microsecond timestamps.

    Args:
        ts_us: timestamps in microseconds since the epoch, ascending.
        window_s: window width in seconds.

    Returns:
        ``(starts_us, bounds)``: the start (µs) of every window holding rows, and
        ``bounds`` of length ``len(starts_us) + 1`` such that rows
        ``bounds[i]:bounds[i + 1]`` fall in window ``i``.

    Example:
        >>> starts, bounds = window_slices(np.array([0, 1_000_000, 61_000_000]), 60)
        >>> starts.tolist(), bounds.tolist()
        ([0, 60000000], [0, 2, 3])
    """
    width = np.int64(window_s) * np.int64(1_000_000)
    if len(ts_us) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
    first = (ts_us[0] // width) * width
    last = (ts_us[-1] // width) * width
    # Few windows and many rows: searchsorted on the candidate edges is O(W log N).
    n_windows = int((last - first) // width) + 1
    if n_windows <= len(ts_us):
        edges = first + width * np.arange(n_windows + 1, dtype=np.int64)
        bounds_all = np.searchsorted(ts_us, edges, side="left").astype(np.int64)
        counts = np.diff(bounds_all)
        keep = np.flatnonzero(counts > 0)
        starts = edges[keep]
        bounds = np.concatenate([bounds_all[keep], bounds_all[-1:]])
        return starts, bounds
    index = ts_us // width
    change = np.flatnonzero(np.diff(index)) + 1
    lower = np.concatenate([np.zeros(1, dtype=np.int64), change.astype(np.int64)])
    starts = index[lower] * width
    bounds = np.concatenate([lower, np.array([len(ts_us)], dtype=np.int64)])
    return starts.astype(np.int64), bounds
