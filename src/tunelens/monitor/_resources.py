"""Resource sampler: process CPU and memory, and NVIDIA GPU use, on a daemon thread.

Samples are buffered and handed to a sink (the store's ``append_resources``) in
batches, so a sample costs a few microseconds and no write. The thread is a daemon (it
never keeps the interpreter alive) and a failing sink (a closed store) is reported
once as a warning, never raised.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["GpuReader", "ResourceSampler", "load_nvml"]

RESOURCE_TIMESTAMP = pa.timestamp("us", tz="UTC")


def load_nvml() -> Any | None:
    """The initialised ``pynvml`` module, or None when there is no NVIDIA driver/GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() < 1:
            return None
        return pynvml
    except Exception:  # no library, no driver, no device: all mean "no GPU"
        return None


class GpuReader:
    """Reads utilisation and memory of the GPUs this process uses (else device 0).

    Args:
        nvml: an initialised ``pynvml``-like module (``nvmlDeviceGetCount``,
            ``nvmlDeviceGetHandleByIndex``, ``nvmlDeviceGetComputeRunningProcesses``,
            ``nvmlDeviceGetUtilizationRates``, ``nvmlDeviceGetMemoryInfo``); tests pass
            a fake.
        pid: the process whose devices to find (default: this one).
        refresh_every: re-detect the devices in use every this many reads (a process
            may start using a GPU after the sampler started).
    """

    def __init__(self, nvml: Any, *, pid: int | None = None, refresh_every: int = 10) -> None:
        self._nvml = nvml
        self._pid = os.getpid() if pid is None else pid
        self._refresh_every = max(1, refresh_every)
        self._reads = 0
        self._handles: list[Any] = []

    def _detect(self) -> list[Any]:
        count = int(self._nvml.nvmlDeviceGetCount())
        handles = [self._nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        mine = []
        for handle in handles:
            try:
                procs = self._nvml.nvmlDeviceGetComputeRunningProcesses(handle)
            except Exception:  # not supported on some devices / drivers
                procs = []
            if any(getattr(p, "pid", None) == self._pid for p in procs):
                mine.append(handle)
        return mine or handles[:1]

    def read(self) -> tuple[float, int]:
        """``(utilisation %, memory bytes)``: mean utilisation and summed used memory."""
        if self._reads % self._refresh_every == 0 or not self._handles:
            self._handles = self._detect()
        self._reads += 1
        utils = [float(self._nvml.nvmlDeviceGetUtilizationRates(h).gpu) for h in self._handles]
        memory = sum(int(self._nvml.nvmlDeviceGetMemoryInfo(h).used) for h in self._handles)
        return float(np.mean(utils)) if utils else float("nan"), memory


class ResourceSampler:
    """Samples CPU %, RSS and GPU use every ``interval_s`` on a daemon thread.

    Args:
        model: the model name written with every sample.
        sink: takes an arrow table of samples (``timestamp``, ``model``,
            ``cpu_percent``, ``rss_bytes``, ``gpu_util_percent``, ``gpu_memory_bytes``);
            normally ``store.append_resources``.
        interval_s: seconds between samples.
        flush_every: samples buffered before the sink is called.
        nvml: an initialised NVML module, ``None`` to look for one, ``False`` for none.
        process: a ``psutil.Process``-like object (default: this process).
        max_buffer: samples kept while the sink fails; older ones are dropped.

    Example:
        >>> got = []
        >>> sampler = ResourceSampler("m", got.append, interval_s=0.01, nvml=False)
        >>> sampler.start(); sampler.sample_now(); sampler.close()
        >>> got[-1].num_rows >= 1
        True
    """

    def __init__(
        self,
        model: str,
        sink: Callable[[pa.Table], Any],
        *,
        interval_s: float = 1.0,
        flush_every: int = 30,
        nvml: Any = None,
        process: Any = None,
        max_buffer: int = 10_000,
    ) -> None:
        if process is None:
            import psutil  # type: ignore[import-untyped, unused-ignore]

            process = psutil.Process()
        self.model = model
        self.interval_s = float(interval_s)
        self._sink = sink
        self._flush_every = max(1, int(flush_every))
        self._max_buffer = max_buffer
        self._process = process
        module = load_nvml() if nvml is None else (nvml or None)
        self._gpu = GpuReader(module) if module is not None else None
        self._buffer: list[tuple[int, float, int, float | None, int | None]] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False
        with contextlib.suppress(Exception):
            self._process.cpu_percent(None)  # the first call only sets the baseline

    @property
    def has_gpu(self) -> bool:
        """Whether GPU readings are taken."""
        return self._gpu is not None

    def start(self) -> None:
        """Start the sampling thread (once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"tunelens-resources-{self.model}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample_now()
            if len(self._buffer) >= self._flush_every:
                self.flush()

    def sample_now(self) -> None:
        """Take one sample into the buffer."""
        try:
            cpu = float(self._process.cpu_percent(None))
            rss = int(self._process.memory_info().rss)
        except Exception:  # the process table can be briefly unreadable
            cpu, rss = float("nan"), 0
        util: float | None = None
        memory: int | None = None
        if self._gpu is not None:
            try:
                util, memory = self._gpu.read()
            except Exception:  # a GPU reset or driver hiccup: skip the GPU part
                util, memory = None, None
        now_us = time.time_ns() // 1000
        with self._lock:
            self._buffer.append((now_us, cpu, rss, util, memory))
            if len(self._buffer) > self._max_buffer:
                del self._buffer[: len(self._buffer) - self._max_buffer]

    def flush(self) -> int:
        """Hand the buffered samples to the sink; returns how many were written."""
        with self._flush_lock:
            with self._lock:
                rows, self._buffer = self._buffer, []
            if not rows:
                return 0
            table = _table(self.model, rows)
            try:
                self._sink(table)
            except Exception as exc:  # a closed store must not kill the thread
                with self._lock:
                    self._buffer = rows + self._buffer
                    del self._buffer[: max(0, len(self._buffer) - self._max_buffer)]
                if not self._warned:
                    self._warned = True
                    warnings.warn(
                        f"tunelens: resource samples not written ({exc}); will retry",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                return 0
            return len(rows)

    def close(self, *, flush: bool = True) -> None:
        """Stop the thread and flush what is buffered. Idempotent."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(5.0, 2 * self.interval_s))
        if flush:
            self.flush()


def _table(model: str, rows: list[tuple[int, float, int, float | None, int | None]]) -> pa.Table:
    stamps, cpu, rss, util, memory = zip(*rows, strict=True)
    return pa.table(
        {
            "timestamp": pa.array(np.asarray(stamps, dtype=np.int64)).cast(RESOURCE_TIMESTAMP),
            "model": pa.array([model] * len(rows), pa.string()),
            "cpu_percent": pa.array(np.asarray(cpu, dtype=np.float64)),
            "rss_bytes": pa.array(np.asarray(rss, dtype=np.int64)),
            "gpu_util_percent": pa.array(list(util), pa.float64()),
            "gpu_memory_bytes": pa.array(list(memory), pa.int64()),
        }
    )
