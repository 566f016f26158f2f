"""End-to-end check of the monitor on an NVIDIA GPU: resource sampling through NVML.

Serves a PyTorch MLP on CUDA through ``Monitor.wrap`` for a few seconds while the
resource sampler runs, then reads the windowed metrics back and checks that GPU
utilisation and memory were recorded and that achieved FLOP/s is filled in. Needs a
CUDA device, torch and nvidia-ml-py; exits 0 with a note where there is none.

    python bench/gpu_monitor.py [--seconds 6]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument(
        "--device", default="cuda", help="cuda (the check) or cpu (a dry run of the flow)"
    )
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("skip: torch is not installed")
        return 0
    on_gpu = args.device == "cuda"
    if on_gpu and not torch.cuda.is_available():
        print("skip: no CUDA device")
        return 0
    import numpy as np

    from tunelens.monitor import Monitor
    from tunelens.monitor._resources import load_nvml

    if on_gpu and load_nvml() is None:
        print("FAIL: CUDA is available but NVML could not be initialised")
        return 1
    device = torch.device(args.device)
    width, batch = 4096, 256
    model = (
        torch.nn.Sequential(
            torch.nn.Linear(64, width),
            torch.nn.ReLU(),
            torch.nn.Linear(width, width),
            torch.nn.ReLU(),
            torch.nn.Linear(width, 2),
        )
        .to(device)
        .eval()
    )
    # forward FLOPs of one row: 2 per multiply-add of each Linear
    flops = 2.0 * (64 * width + width * width + width * 2)

    def predict_proba(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = model(torch.from_numpy(x).to(device)).softmax(dim=1)
        return out.cpu().numpy()

    def predict(x: np.ndarray) -> np.ndarray:
        return predict_proba(x).argmax(axis=1)

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "gpu.duckdb"
        with Monitor(
            "gpu-mlp",
            store,
            task="binary",
            classes=[0, 1],
            flops_per_prediction=flops,
            resource_interval_s=0.25,
        ) as monitor:
            served = monitor.wrap(predict, sample=1.0)
            began = time.perf_counter()
            calls = 0
            while time.perf_counter() - began < args.seconds:
                served(rng.normal(size=(batch, 64)).astype(np.float32))
                calls += 1
            if on_gpu:
                torch.cuda.synchronize()
            frame = monitor.metrics(window="1d")
        name = torch.cuda.get_device_name(0) if on_gpu else "cpu"
        print(f"device: {name}; {calls} calls of {batch} rows")
        columns = [
            "rows",
            "latency_p50",
            "latency_p99",
            "throughput",
            "flops_per_s",
            "cpu_percent",
            "rss_bytes",
            "gpu_util_percent",
            "gpu_memory_bytes",
        ]
        print(frame[columns].to_string())
        row = frame.iloc[-1]
        problems = []
        if on_gpu and not row["gpu_util_percent"] > 0:
            problems.append(f"gpu_util_percent is {row['gpu_util_percent']}")
        if on_gpu and not row["gpu_memory_bytes"] > 100 * 2**20:
            problems.append(f"gpu_memory_bytes is {row['gpu_memory_bytes']}")
        if not (math.isfinite(row["flops_per_s"]) and row["flops_per_s"] > 1e9):
            problems.append(f"flops_per_s is {row['flops_per_s']}")
        if int(row["rows"]) != calls * batch:
            problems.append(f"rows {row['rows']} != {calls * batch} served")
    if problems:
        print("FAIL: " + "; ".join(problems))
        return 1
    recorded = "GPU utilisation, GPU memory and achieved FLOP/s" if on_gpu else "FLOP/s"
    print(f"ok: {recorded} recorded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
