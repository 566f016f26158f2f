"""A mergeable quantile sketch (DDSketch-style log buckets) for latencies."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tunelens.metrics._validation import (
    FORMAT_VERSION,
    as_float,
    check_header,
    decode_array,
    encode_array,
    warn_undefined,
)


class QuantileSketch:
    """Quantiles of non-negative values within a relative error, in bounded memory.

    Positive values go to logarithmic buckets ``(gamma**(i-1), gamma**i]`` with
    ``gamma = (1 + a) / (1 - a)``; a bucket is reported as ``2 gamma**i / (gamma + 1)``,
    which is within relative error ``a = relative_accuracy`` of every value in it.
    Zeros are counted apart. The quantile definition is numpy's
    ``method="inverted_cdf"`` (the smallest value whose empirical CDF reaches q), so
    ``|quantile(q) - exact| <= a * exact``. At most ``max_buckets`` buckets are kept:
    beyond that the lowest buckets are collapsed (only the lowest quantiles lose
    accuracy; with the default 2048 buckets at 1% the range covered is ~1e17).

    Example:
        >>> s = QuantileSketch(relative_accuracy=0.01)
        >>> s.update([1.0, 2.0, 3.0, 4.0, 100.0])
        >>> abs(s.quantile(0.5) - 3.0) <= 0.03
        True
    """

    def __init__(self, relative_accuracy: float = 0.01, *, max_buckets: int = 2048) -> None:
        a = float(relative_accuracy)
        if not 0.0 < a < 1.0:
            raise ValueError(f"`relative_accuracy` must be in (0, 1), got {relative_accuracy!r}")
        if int(max_buckets) < 2:
            raise ValueError(f"`max_buckets` must be at least 2, got {max_buckets!r}")
        self.relative_accuracy = a
        self.max_buckets = int(max_buckets)
        self._gamma = (1.0 + a) / (1.0 - a)
        self._log_gamma = math.log(self._gamma)
        self._offset = 0
        self._counts: NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._zeros = 0
        self._sum = 0.0

    @property
    def count(self) -> int:
        """Number of values added."""
        return int(self._counts.sum()) + self._zeros

    @property
    def sum(self) -> float:
        """Sum of the values added."""
        return self._sum

    def update(self, values: ArrayLike, *, validate: bool = True) -> None:
        """Add non-negative, finite values.

        ``validate=False`` skips the boundary checks (finiteness, non-negative), for
        callers that validated the data already (the monitor validates at log time);
        on valid data the result is the same.
        """
        v = as_float(np.ravel(np.asarray(values)), "values", validate=validate)
        if v.size == 0:
            return
        if validate and float(v.min()) < 0:
            raise ValueError("`values` must be non-negative (latencies, sizes)")
        pos = v[v > 0]
        self._zeros += int(v.shape[0] - pos.shape[0])
        self._sum += float(v.sum())
        if pos.size:
            idx = np.ceil(np.log(pos) / self._log_gamma).astype(np.int64)
            lo = int(idx.min())
            counts = np.bincount(idx - lo)
            self._add_buckets(lo, counts.astype(np.int64))

    def _add_buckets(self, offset: int, counts: NDArray[np.int64]) -> None:
        if counts.size == 0:
            return
        if self._counts.size == 0:
            self._offset, self._counts = offset, counts.copy()
        else:
            lo = min(self._offset, offset)
            hi = max(self._offset + self._counts.size, offset + counts.size)
            new = np.zeros(hi - lo, dtype=np.int64)
            new[self._offset - lo : self._offset - lo + self._counts.size] += self._counts
            new[offset - lo : offset - lo + counts.size] += counts
            self._offset, self._counts = lo, new
        excess = self._counts.size - self.max_buckets
        if excess > 0:
            # collapse the lowest buckets into the lowest kept one
            folded = self._counts[: excess + 1].sum()
            self._counts = self._counts[excess:].copy()
            self._counts[0] = folded
            self._offset += excess

    def merge(self, other: QuantileSketch) -> None:
        """Add another sketch; both must have the same relative accuracy."""
        if not isinstance(other, QuantileSketch) or other.relative_accuracy != (
            self.relative_accuracy
        ):
            raise ValueError("can only merge a QuantileSketch with the same relative_accuracy")
        self._zeros += other._zeros
        self._sum += other._sum
        self._add_buckets(other._offset, other._counts)

    def quantile(self, q: float) -> float:
        """Estimate of the ``q`` quantile (numpy ``inverted_cdf``); NaN when empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"`q` must be in [0, 1], got {q!r}")
        n = self.count
        if n == 0:
            warn_undefined("quantile of an empty sketch is undefined; returning NaN")
            return float("nan")
        rank = max(math.ceil(n * q) - 1, 0)
        if rank < self._zeros:
            return 0.0
        cum = np.cumsum(self._counts)
        i = int(np.searchsorted(cum, rank - self._zeros, side="right"))
        return float(2.0 * self._gamma ** (i + self._offset) / (self._gamma + 1.0))

    def compute(self) -> dict[str, float]:
        """``{"count", "sum", "p50", "p90", "p99", "p999"}``."""
        out = {"count": float(self.count), "sum": self._sum}
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)):
            out[name] = self.quantile(q) if self.count else float("nan")
        if not self.count:
            warn_undefined("quantiles of an empty sketch are undefined; NaN")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; restore with :meth:`from_dict`."""
        return {
            "type": "QuantileSketch",
            "version": FORMAT_VERSION,
            "relative_accuracy": self.relative_accuracy,
            "max_buckets": self.max_buckets,
            "offset": self._offset,
            "counts": encode_array(self._counts),
            "zeros": self._zeros,
            "sum": self._sum,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantileSketch:
        """Rebuild a sketch from :meth:`to_dict` output."""
        check_header(d, "QuantileSketch")
        s = cls(float(d["relative_accuracy"]), max_buckets=int(d["max_buckets"]))
        s._offset = int(d["offset"])
        s._counts = decode_array(d["counts"]).astype(np.int64)
        s._zeros = int(d["zeros"])
        s._sum = float(d["sum"])
        return s

    def copy(self) -> QuantileSketch:
        """An independent copy."""
        return QuantileSketch.from_dict(self.to_dict())
