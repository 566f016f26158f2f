"""Monitoring: log live predictions and late labels, read metrics over time windows.

`Monitor` is the library API: `Monitor.log` writes predictions (numpy, pandas, pyarrow
or lists) to a store, `Monitor.log_labels` joins true labels by id, `Monitor.wrap`
times and samples a prediction function, and `Monitor.metrics` computes every metric
of the task per time window from one scan, storing each window's mergeable states so
that `Monitor.summary` re-aggregates any longer range exactly.

Example:
    >>> import os, tempfile
    >>> from tunelens.monitor import Monitor
    >>> with Monitor("m", os.path.join(tempfile.mkdtemp(), "s.duckdb"), resources=False) as mon:
    ...     mon.log(["a", "b"], None, [1.5, 2.0], latency_ms=[3.0, 5.0])
    2
"""

from __future__ import annotations

from tunelens.monitor._monitor import Monitor, WrappedPredict
from tunelens.monitor._resources import ResourceSampler
from tunelens.monitor._windows import parse_window
from tunelens.monitor.shadow import Shadow

__all__ = ["Monitor", "ResourceSampler", "Shadow", "WrappedPredict", "parse_window"]
