"""Shadow mode: the champion answers every request; the challenger scores the same inputs.

`Shadow` wraps two prediction functions, each logged by its own `Monitor` (two model
names, usually in one store: ``"churn"`` and ``"churn@challenger"``). A call runs the
champion, logs it and returns its answer; the challenger is run on the same inputs on a
background thread and logged under the same ids, so that late labels
(`Shadow.log_labels`) join both and the two models can be compared on exactly the same
traffic. The challenger never changes an answer, never raises into the caller and never
adds its latency to a request: its failures are counted, and when it falls behind by more
than ``max_pending`` calls the extra calls are skipped and counted.

Example:
    >>> import os, tempfile
    >>> from tunelens.monitor import Monitor
    >>> from tunelens.store import open_store
    >>> store = open_store(os.path.join(tempfile.mkdtemp(), "s.duckdb"))
    >>> champ = Monitor("m", store, resources=False)
    >>> chall = Monitor("m@challenger", store, resources=False)
    >>> shadow = Shadow(champ, chall, lambda X: [x[0] > 0 for x in X],
    ...                 lambda X: [x[0] > 1 for x in X])
    >>> shadow([[0.5], [2.0]])
    [True, True]
    >>> shadow.flush(); shadow.requests
    1
    >>> champ.close(); chall.close(); store.close()
"""

from __future__ import annotations

import threading
import uuid
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from tunelens.errors import InputError
from tunelens.monitor._monitor import Monitor

__all__ = ["Shadow"]


class Shadow:
    """Serve the champion, shadow the challenger on the same requests.

    Args:
        champion: the `Monitor` of the model whose answers are returned.
        challenger: the `Monitor` of the candidate (another model name).
        champion_fn: the champion's predict function (first argument: the rows).
        challenger_fn: the challenger's predict function, same arguments.
        champion_proba: the champion's ``predict_proba``, logged as scores (optional).
        challenger_proba: the challenger's ``predict_proba`` (optional).
        id_fn: called with a call's arguments, returns one id per row; default random
            uuid4 hex ids (``shadow.last_ids``). Labels join both models by these ids.
        flush_s: how long logged rows may wait before they are written (see
            `Monitor.wrap`).
        max_pending: challenger calls allowed to wait; beyond it a call is skipped for
            the challenger (counted in ``skipped``), never delayed for the caller.
        clock: read once per request for both sides' timestamp (default: the time of
            each side's call); a simulation or a replay passes its own.

    Attributes:
        requests: calls answered.
        challenger_errors: challenger calls that raised (their rows are not logged).
        skipped: challenger calls skipped because it fell behind.
        last_ids: ids of the most recent call.

    Raises:
        InputError: the two monitors name the same model, or ``max_pending`` < 1.
    """

    def __init__(
        self,
        champion: Monitor,
        challenger: Monitor,
        champion_fn: Callable[..., Any],
        challenger_fn: Callable[..., Any],
        *,
        champion_proba: Callable[..., Any] | None = None,
        challenger_proba: Callable[..., Any] | None = None,
        id_fn: Callable[..., Any] | None = None,
        flush_s: float = 1.0,
        max_pending: int = 1000,
        clock: Callable[[], Any] | None = None,
    ) -> None:
        if champion.model == challenger.model:
            raise InputError(
                "challenger",
                f"logs to the champion's model name {champion.model!r}",
                f"give it its own name, e.g. Monitor({champion.model + '@challenger'!r}, ...)",
            )
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise InputError("max_pending", f"is {max_pending!r}", "give a count >= 1")
        self.champion, self.challenger = champion, challenger
        self._id_fn = id_fn
        self._local = threading.local()
        self._challenger_ids: Sequence[str] = ()
        self._clock = clock
        self._challenger_stamp: Any = None
        self._champ = champion.wrap(
            champion_fn,
            id_fn=self._current_ids,
            proba_fn=champion_proba,
            flush_s=flush_s,
            clock=None if clock is None else (lambda: self._local.stamp),
        )
        self._chall = challenger.wrap(
            challenger_fn,
            id_fn=lambda *a, **k: self._challenger_ids,
            proba_fn=challenger_proba,
            flush_s=flush_s,
            clock=None if clock is None else (lambda: self._challenger_stamp),
        )
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tunelens-shadow")
        self._pending: set[Future[None]] = set()
        self._guard = threading.Lock()
        self._max_pending = max_pending
        self.requests = 0
        self.challenger_errors = 0
        self.skipped = 0
        self.last_ids: list[str] = []

    def _current_ids(self, *args: Any, **kwargs: Any) -> Sequence[str]:
        return list(self._local.ids)

    def _ids(self, *args: Any, **kwargs: Any) -> list[str]:
        if self._id_fn is not None:
            return [str(i) for i in self._id_fn(*args, **kwargs)]
        rows = args[0] if args else next(iter(kwargs.values()), ())
        return [uuid.uuid4().hex for _ in range(len(rows))]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The champion's answer; the challenger is queued on the same inputs and ids."""
        ids = self._ids(*args, **kwargs)
        self._local.ids = ids
        stamp = None if self._clock is None else self._clock()
        self._local.stamp = stamp
        answer = self._champ(*args, **kwargs)
        with self._guard:
            self.requests += 1
            self.last_ids = ids
            if len(self._pending) >= self._max_pending:
                self.skipped += 1
                return answer
            future = self._pool.submit(self._shadow_call, ids, stamp, args, kwargs)
            self._pending.add(future)
        future.add_done_callback(self._done)
        return answer

    def _shadow_call(
        self, ids: list[str], stamp: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self._challenger_ids, self._challenger_stamp = ids, stamp
        try:
            self._chall(*args, **kwargs)  # a raising predict logs nothing
        except Exception as exc:  # a challenger failure never reaches the caller
            with self._guard:
                self.challenger_errors += 1
            warnings.warn(f"shadow: the challenger raised {exc!r}", RuntimeWarning, stacklevel=1)

    def _done(self, future: Future[None]) -> None:
        with self._guard:
            self._pending.discard(future)

    def log_labels(self, ids: Any, labels: Any, timestamps: Any = None) -> None:
        """Log late labels for both models (joined to each by id)."""
        self.flush()
        self.champion.log_labels(ids, labels, timestamps)
        self.challenger.log_labels(ids, labels, timestamps)

    def flush(self) -> None:
        """Wait for the queued challenger calls, then write what both sides hold."""
        with self._guard:
            pending = list(self._pending)
        for future in pending:
            future.result()
        self._champ.flush()
        self._chall.flush()

    def close(self) -> None:
        """Flush and stop the background thread (the monitors stay open)."""
        self.flush()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Shadow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
