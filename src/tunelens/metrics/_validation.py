"""Shared validation, warnings and (de)serialisation helpers for metric states."""

from __future__ import annotations

import base64
import warnings
import zlib
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

FORMAT_VERSION = 1

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for the data seen (one class, empty input, zero division).

    The metric value is then NaN; the warning says why.
    """


def warn_undefined(message: str) -> None:
    """Emit an :class:`UndefinedMetricWarning` pointing at the caller's caller."""
    warnings.warn(message, UndefinedMetricWarning, stacklevel=3)


def as_1d(x: ArrayLike, name: str) -> NDArray[Any]:
    """Return ``x`` as a 1-D array or raise ValueError naming ``name``."""
    arr = np.asarray(x)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D (n_samples,), got shape {arr.shape}")
    return arr


def check_same_length(**arrays: NDArray[Any] | None) -> int:
    """Check that every non-None array has the same first dimension; return it."""
    n: int | None = None
    first = ""
    for name, arr in arrays.items():
        if arr is None:
            continue
        if n is None:
            n, first = int(arr.shape[0]), name
        elif int(arr.shape[0]) != n:
            raise ValueError(
                f"`{name}` has {arr.shape[0]} rows but `{first}` has {n}: "
                "expected the same number of samples"
            )
    return 0 if n is None else n


def as_float(x: ArrayLike, name: str, *, ndim: int | None = 1, validate: bool = True) -> FloatArray:
    """Return ``x`` as float64, checking it is numeric and finite (unless not ``validate``)."""
    arr = np.asarray(x)
    if ndim == 1:
        arr = as_1d(arr, name)
    elif ndim is not None and arr.ndim != ndim:
        raise ValueError(f"`{name}` must be {ndim}-D, got shape {arr.shape}")
    if not validate:
        return np.asarray(arr, dtype=np.float64)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"`{name}` must be numeric, got dtype {arr.dtype}")
    out = np.asarray(arr, dtype=np.float64)
    # The sum is a cheap screen; recheck elementwise to avoid overflow false alarms.
    if out.size and not np.isfinite(out.sum()) and not np.all(np.isfinite(out)):
        raise ValueError(f"`{name}` must be finite, got NaN or infinity")
    return out


def check_weights(
    sample_weight: ArrayLike | None, n: int, *, validate: bool = True
) -> FloatArray | None:
    """Validate ``sample_weight``: 1-D, length ``n``, finite and non-negative.

    With ``validate=False`` only convert it to a 1-D float64 array.
    """
    if sample_weight is None:
        return None
    w = as_float(sample_weight, "sample_weight", validate=validate)
    if not validate:
        return w
    if w.shape[0] != n:
        raise ValueError(
            f"`sample_weight` has {w.shape[0]} rows but the data has {n}: "
            "expected one weight per sample"
        )
    if w.size and w.min() < 0:
        raise ValueError("`sample_weight` must be non-negative, got a negative weight")
    return w


def check_labels(y: ArrayLike, name: str, *, validate: bool = True) -> NDArray[Any]:
    """Return class labels as a 1-D array; reject NaN and None (unless not ``validate``)."""
    arr = as_1d(y, name)
    if not validate:
        return arr
    if arr.dtype.kind == "f":
        if arr.size and np.isnan(arr).any():
            raise ValueError(f"`{name}` contains NaN: expected class labels")
    elif arr.dtype.kind == "O":
        if any(v is None or (isinstance(v, float) and v != v) for v in arr.tolist()):
            raise ValueError(f"`{name}` contains None or NaN: expected class labels")
    elif arr.dtype.kind not in "biuUS":
        raise ValueError(f"`{name}` must hold class labels (ints or strings), got {arr.dtype}")
    return arr


def binary_targets(
    y_true: ArrayLike, name: str = "y_true", *, validate: bool = True
) -> NDArray[np.bool_]:
    """Return ``y_true`` (bool or 0/1) as a bool array (unchecked if not ``validate``)."""
    arr = as_1d(y_true, name)
    if arr.dtype == np.bool_:
        return arr
    if not validate:
        return arr.astype(np.bool_)
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            raise ValueError(f"`{name}` must hold 0/1 or bool values")
        return arr.astype(np.bool_)
    if arr.dtype.kind == "f":
        if arr.size and not np.all((arr == 0) | (arr == 1)):
            raise ValueError(f"`{name}` must hold 0/1 or bool values (no NaN)")
        return arr.astype(np.bool_)
    raise ValueError(f"`{name}` must hold 0/1 or bool values, got dtype {arr.dtype}")


def class_indices(
    y: ArrayLike, n_classes: int, name: str = "y_true", *, validate: bool = True
) -> IntArray:
    """Return integer class indices in ``[0, n_classes)`` (unchecked if not ``validate``)."""
    arr = as_1d(y, name)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.intp)
    if not validate:
        return arr.astype(np.intp, copy=False)
    if arr.dtype.kind == "f":
        if arr.size and not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
            raise ValueError(f"`{name}` must hold integer class indices 0..{n_classes - 1}")
        arr = arr.astype(np.intp)
    if arr.dtype.kind not in "iu":
        raise ValueError(
            f"`{name}` must hold integer class indices 0..{n_classes - 1}, got {arr.dtype}"
        )
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise ValueError(f"`{name}` must hold class indices in 0..{n_classes - 1}")
    return arr.astype(np.intp, copy=False)


# Arrays over this many raw bytes are deflated (zlib level 1) into ``zdata``: a
# window's ROC histogram is thousands of mostly-empty bins, a few hundred bytes deflated
# instead of ~90 kB. 768 bytes are 1024 base64 characters, the monitor's former cut-off.
_DEFLATE_OVER = 768


def encode_array(a: NDArray[Any]) -> dict[str, Any]:
    """Encode an array as JSON-safe base64 of its little-endian bytes.

    Up to 768 bytes the bytes are under ``data``; larger arrays are deflated (zlib
    level 1) first and stored under ``zdata``.
    """
    arr = np.ascontiguousarray(a)
    le = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    raw = le.tobytes()
    out: dict[str, Any] = {"dtype": le.dtype.str, "shape": list(arr.shape)}
    if len(raw) > _DEFLATE_OVER:
        out["zdata"] = base64.b64encode(zlib.compress(raw, 1)).decode("ascii")
    else:
        out["data"] = base64.b64encode(raw).decode("ascii")
    return out


def decode_array(d: dict[str, Any]) -> NDArray[Any]:
    """Inverse of :func:`encode_array`; reads plain ``data`` or deflated ``zdata``."""
    if "zdata" in d:
        raw = zlib.decompress(base64.b64decode(d["zdata"]))
    else:
        raw = base64.b64decode(d["data"])
    arr = np.frombuffer(raw, dtype=np.dtype(d["dtype"])).reshape(d["shape"])
    return arr.astype(arr.dtype.newbyteorder("="), copy=True)


def check_header(d: dict[str, Any], type_name: str) -> None:
    """Check the ``type`` and ``version`` keys of a serialised state."""
    if d.get("type") != type_name:
        raise ValueError(f"expected a serialised {type_name}, got type={d.get('type')!r}")
    if int(d.get("version", -1)) != FORMAT_VERSION:
        raise ValueError(
            f"unsupported {type_name} format version {d.get('version')!r}; "
            f"expected {FORMAT_VERSION}"
        )


def safe_div(num: float, den: float) -> float:
    """``num / den`` or NaN when ``den`` is zero."""
    return float(num / den) if den != 0 else float("nan")
