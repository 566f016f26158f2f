"""Input handling shared by the quality modules."""

from __future__ import annotations

from typing import Any

import pandas as pd

from tunelens.errors import InputError

__all__ = ["as_frame"]


def as_frame(data: Any, name: str) -> pd.DataFrame:
    """``data`` as a pandas DataFrame: a DataFrame, anything with ``to_pandas()``
    (pyarrow tables) or what ``pandas.DataFrame()`` accepts; else `InputError` naming it."""
    if isinstance(data, pd.DataFrame):
        return data
    from tunelens.io import ParquetColumns

    if isinstance(data, ParquetColumns):
        # read column by column on demand; it answers what the analyses ask of a frame
        return data  # type: ignore[return-value]
    if hasattr(data, "to_pandas"):
        converted = data.to_pandas()
        if isinstance(converted, pd.DataFrame):
            return converted
    try:
        return pd.DataFrame(data)
    except (ValueError, TypeError) as exc:
        raise InputError(name, f"cannot be read as a table ({exc})") from exc
