"""Resource sampler: psutil readings, a fake NVML, batching, failure handling."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tunelens.monitor import Monitor
from tunelens.monitor._resources import GpuReader, ResourceSampler, load_nvml
from tunelens.store import Store


class FakeNvml:
    """The slice of pynvml the sampler uses: two devices, this process on device 1."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.calls = 0

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802 (pynvml names)
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:  # noqa: N802 (pynvml names)
        return i

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[Any]:  # noqa: N802 (pynvml names)
        return [SimpleNamespace(pid=self.pid, usedGpuMemory=1 << 20)] if handle == 1 else []

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:  # noqa: N802 (pynvml names)
        self.calls += 1
        return SimpleNamespace(gpu=[10, 70][handle], memory=5)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:  # noqa: N802 (pynvml names)
        return SimpleNamespace(used=[1_000, 2_000_000][handle], total=1 << 34)


class FakeProcess:
    def __init__(self) -> None:
        self.cpu = iter([0.0, 25.0, 75.0, 50.0, 50.0, 50.0, 50.0])

    def cpu_percent(self, interval: float | None = None) -> float:
        return next(self.cpu, 50.0)

    def memory_info(self) -> Any:
        return SimpleNamespace(rss=123_456_789)


def test_gpu_reader_uses_the_devices_of_this_process() -> None:
    reader = GpuReader(FakeNvml(os.getpid()))
    assert reader.read() == (70.0, 2_000_000)
    other = GpuReader(FakeNvml(pid=-1))  # not on any device: device 0
    assert other.read() == (10.0, 1_000)


def test_sampler_batches_samples_with_gpu_readings() -> None:
    tables: list[pa.Table] = []
    sampler = ResourceSampler(
        "m", tables.append, interval_s=60, nvml=FakeNvml(os.getpid()), process=FakeProcess()
    )
    assert sampler.has_gpu
    for _ in range(3):
        sampler.sample_now()
    assert tables == []
    assert sampler.flush() == 3
    (table,) = tables
    assert table.column_names == [
        "timestamp",
        "model",
        "cpu_percent",
        "rss_bytes",
        "gpu_util_percent",
        "gpu_memory_bytes",
    ]
    assert table["cpu_percent"].to_pylist() == [25.0, 75.0, 50.0]
    assert table["rss_bytes"].to_pylist() == [123_456_789] * 3
    assert table["gpu_util_percent"].to_pylist() == [70.0] * 3
    assert table["gpu_memory_bytes"].to_pylist() == [2_000_000] * 3
    assert table["timestamp"].type == pa.timestamp("us", tz="UTC")
    stamp = table["timestamp"][0].as_py()
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 5


def test_sampler_without_gpu_writes_nulls() -> None:
    tables: list[pa.Table] = []
    sampler = ResourceSampler("m", tables.append, nvml=False, process=FakeProcess())
    assert not sampler.has_gpu
    sampler.sample_now()
    sampler.flush()
    assert tables[0]["gpu_util_percent"].null_count == 1
    assert tables[0]["gpu_memory_bytes"].null_count == 1


def test_sampler_thread_flushes_in_batches_and_on_close() -> None:
    tables: list[pa.Table] = []
    sampler = ResourceSampler("m", tables.append, interval_s=0.01, flush_every=5, nvml=False)
    sampler.start()
    assert sampler._thread is not None and sampler._thread.daemon
    deadline = time.monotonic() + 10
    while not tables and time.monotonic() < deadline:
        time.sleep(0.01)
    sampler.close()
    assert tables and tables[0].num_rows == 5
    total = sum(t.num_rows for t in tables)
    assert total >= 5
    sampler.close()  # idempotent


def test_failing_sink_warns_once_and_keeps_samples() -> None:
    calls: list[int] = []

    def broken(table: pa.Table) -> None:
        calls.append(table.num_rows)
        raise RuntimeError("store is closed")

    sampler = ResourceSampler("m", broken, nvml=False, process=FakeProcess(), max_buffer=4)
    for _ in range(3):
        sampler.sample_now()
    with pytest.warns(RuntimeWarning, match="store is closed"):
        assert sampler.flush() == 0
    for _ in range(3):
        sampler.sample_now()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sampler.flush() == 0  # no second warning
    assert calls == [3, 4]  # kept, capped at max_buffer


def test_sampler_thread_does_not_keep_the_interpreter_alive() -> None:
    code = (
        "from tunelens.monitor._resources import ResourceSampler\n"
        "s = ResourceSampler('m', lambda t: None, interval_s=0.01, nvml=False)\n"
        "s.start()\n"
        "print('done')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "done"


def test_monitor_metrics_include_resource_samples(store: Store) -> None:
    with Monitor("res", store, resource_interval_s=0.02) as mon:
        assert mon._sampler is not None
        mon._sampler._gpu = GpuReader(FakeNvml(os.getpid()))
        mon.log([1, 2, 3], None, [0, 1, 1], [0.1, 0.9, 0.8], latency_ms=1.0)
        deadline = time.monotonic() + 10
        while len(mon._sampler._buffer) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        table = mon.metrics("1d")
    row = table.iloc[-1]
    assert row["rss_bytes"] > 10_000_000
    assert row["cpu_percent"] >= 0
    assert row["gpu_util_percent"] == 70.0 and row["gpu_memory_bytes"] == 2_000_000
    samples = store.scan_resources("res")
    assert samples.num_rows >= 3  # flushed by metrics() and close()
    assert np.all(np.asarray(samples["rss_bytes"].to_pylist()) > 0)


def test_monitor_close_with_a_closed_store_does_not_raise(store_path: str) -> None:
    mon = Monitor("late", store_path, resource_interval_s=0.01)
    mon.store.close()
    time.sleep(0.05)
    mon.close()


def test_real_nvml_when_a_gpu_is_present() -> None:
    nvml = load_nvml()
    if nvml is None:
        pytest.skip("no NVIDIA GPU / driver here")
    util, memory = GpuReader(nvml).read()
    assert 0.0 <= util <= 100.0
    assert memory > 0
    sampler = ResourceSampler("gpu", lambda table: None, nvml=None)
    assert sampler.has_gpu


def test_real_cuda_memory_of_this_process_is_seen() -> None:
    torch = pytest.importorskip("torch")
    nvml = load_nvml()
    if nvml is None or not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    reader = GpuReader(nvml, refresh_every=1)
    # blocks that earlier tests freed stay in torch's cache and would serve the new one
    torch.cuda.empty_cache()
    _, before = reader.read()
    block = torch.empty(512 * 1024 * 1024, dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    x = torch.randn(4096, 4096, device="cuda")
    for _ in range(20):
        x = x @ x / 4096
    torch.cuda.synchronize()
    _, after = reader.read()
    assert after >= before + 400 * 1024 * 1024  # the 512 MiB block shows up
    del block, x
