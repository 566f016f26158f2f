"""A background writer that batches the prediction rows of wrapped calls.

A durable write costs a transaction (a WAL sync: milliseconds), far more than a fast
model's prediction. `Monitor.wrap` therefore validates each call's rows in the calling
thread and hands the finished table to this writer, which appends everything pending in
one transaction every ``flush_s`` seconds, or sooner once ``max_rows`` are waiting.
"""

from __future__ import annotations

import atexit
import threading
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import pyarrow as pa

__all__ = ["BatchWriter"]

_LIVE: weakref.WeakSet[BatchWriter] = weakref.WeakSet()
_ATEXIT_LOCK = threading.Lock()
_atexit_registered = False


def _flush_live_writers() -> None:
    for writer in list(_LIVE):
        writer.close()


class BatchWriter:
    """Appends queued tables through ``write`` on a daemon thread.

    Args:
        write: appends one table durably (``store.append_predictions`` of a model).
        flush_s: the longest a queued row waits before it is written.
        max_rows: queued rows that trigger a write before ``flush_s`` has passed.

    Rows still queued are written by `flush`, `close`, and at interpreter exit.
    A failing write warns once per failure and drops those rows; it never raises in
    the thread that predicts.
    """

    def __init__(self, write: Callable[[pa.Table], Any], *, flush_s: float, max_rows: int) -> None:
        self._write = write
        self._flush_s = flush_s
        self._max_rows = max_rows
        self._tables: list[pa.Table] = []
        self._rows = 0
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.written_rows = 0
        self.dropped_rows = 0
        global _atexit_registered
        with _ATEXIT_LOCK:
            if not _atexit_registered:
                atexit.register(_flush_live_writers)
                _atexit_registered = True
        _LIVE.add(self)

    @property
    def pending_rows(self) -> int:
        """Rows queued and not yet written."""
        with self._cond:
            return self._rows

    def put(self, table: pa.Table) -> None:
        """Queue one call's rows."""
        with self._cond:
            if self._closed:
                raise RuntimeError("the monitor is closed")
            self._tables.append(table)
            self._rows += table.num_rows
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="tunelens-batch-writer", daemon=True
                )
                self._thread.start()
            if self._rows >= self._max_rows:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._closed and self._rows < self._max_rows:
                    self._cond.wait(self._flush_s)
                stop = self._closed
            self.flush()
            if stop:
                return

    def flush(self) -> int:
        """Write every queued row now (one transaction); returns the rows written."""
        with self._write_lock:
            with self._cond:
                tables, self._tables, self._rows = self._tables, [], 0
            if not tables:
                return 0
            rows = int(sum(t.num_rows for t in tables))
            try:
                table = (
                    tables[0]
                    if len(tables) == 1
                    else pa.concat_tables(tables, promote_options="permissive")
                )
                self._write(table)
            except Exception as exc:
                self.dropped_rows += rows
                warnings.warn(
                    f"tunelens: {rows} logged prediction rows could not be written: {exc}",
                    RuntimeWarning,
                    stacklevel=2,
                )
                return 0
            self.written_rows += rows
            return rows

    def close(self) -> None:
        """Write what is queued and stop the thread. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            self._cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30.0)
        self.flush()
        _LIVE.discard(self)
