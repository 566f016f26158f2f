"""CUDA code paths: profiling, training diagnostics and tuning on a GPU.

Skipped without a CUDA device (CI and laptops); run on a GPU machine with
``pytest tests/test_cuda.py``. What is checked is what differs on a GPU: timing by CUDA
events, device memory, models and batches moved to the device, seeded runs on the GPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device here", allow_module_level=True)

from torch import nn  # noqa: E402

from tunelens.diagnose.runtime import profile  # noqa: E402
from tunelens.diagnose.training import watch  # noqa: E402
from tunelens.tune import MLP, tune  # noqa: E402


def _cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(64, 128, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, 10),
    )


def test_profile_on_cuda_times_layers_with_events_and_reads_device_memory() -> None:
    model = _cnn()
    p = profile(model, torch.randn(1, 3, 64, 64), batch_sizes=(1, 32), device="cuda", repeats=10)
    assert "cuda" in str(p.machine["device"])
    assert p.machine["peak_flops"] > 1e12  # a data-centre GPU: well over a TFLOP/s
    conv = next(r for r in p.layers if r["name"] == "2")
    assert conv["flops"] == 2 * 64 * 128 * 9 * 64 * 64
    assert conv["total_ms"] > 0
    sweep = {pt["batch_size"]: pt for pt in p.batch_sweep["points"]}
    # batching pays on a GPU: 32 rows cost far less than 32 times one row
    assert sweep[32]["latency_ms"] < 8 * sweep[1]["latency_ms"]
    assert p.totals.get("gpu_max_memory_allocated_bytes", 0) > 0 or any(
        "gpu" in k for k in sweep[32]
    ), (p.totals, sweep[32])
    json.dumps(p.to_dict(), allow_nan=False)
    assert next(model.parameters()).device.type == "cuda"


def test_watch_on_cuda_finds_exploding_gradients() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 1)).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=5.0)  # far too high: the loss explodes
    x = torch.randn(256, 20, device="cuda")
    y = x[:, :1] * 3
    with watch(model, opt, every=1) as w:
        for _ in range(30):
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            w.step(loss)
            opt.step()
    kinds = {f.kind for f in w.findings()}
    assert kinds & {"exploding_gradients", "non_finite", "lr_too_high"}, kinds


def test_tune_trains_and_times_on_the_gpu_by_default() -> None:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    result = tune(MLP(64, 10), data=(X, y), n_trials=3, epochs=4, seed=0)
    assert result.best["value"] > 0.85
    assert next(result.model.parameters()).device.type == "cuda"
    assert result.best["measurements"]["latency_p99_ms"] > 0
    cpu = tune(MLP(64, 10), data=(X, y), n_trials=1, epochs=2, seed=0, device="cpu")
    assert next(cpu.model.parameters()).device.type == "cpu"


def test_the_loop_retunes_a_pytorch_model_on_the_gpu(tmp_path: object) -> None:
    import functools
    from pathlib import Path

    import pandas as pd

    from tunelens.loop import Loop
    from tunelens.monitor import Monitor
    from tunelens.store import open_store
    from tunelens.tune import TorchClassifier

    rng = np.random.default_rng(0)
    features = ["x0", "x1", "x2"]

    def frame(n: int, w: np.ndarray) -> pd.DataFrame:
        X = rng.normal(size=(n, 3))
        out = pd.DataFrame(X, columns=features)
        out["y"] = np.where(X @ w + 0.3 * rng.normal(size=n) > 0, "yes", "no")
        return out

    reference = frame(1500, np.array([2.0, 0.0, 0.5]))
    y = (reference["y"] == "yes").to_numpy().astype(int)
    trained = tune(
        MLP(3, 2, width=32),
        data=(reference[features].to_numpy(np.float32), y),
        n_trials=1,
        epochs=6,
        seed=0,
    ).model
    champion = TorchClassifier(trained, ["no", "yes"])
    recent = frame(1500, np.array([0.0, 2.0, 0.5]))
    mon = Monitor("net", open_store(str(Path(str(tmp_path)) / "g.duckdb")), resources=False)
    ids = [f"r{i}" for i in range(len(recent))]
    mon.log(ids, recent[features], champion.predict(recent[features]))
    mon.log_labels(ids, recent["y"].to_numpy())
    loop = Loop(
        mon,
        trainer=functools.partial(MLP, 3, 2),
        champion=champion,
        reference=reference,
        target="y",
        n_trials=3,
        epochs=6,
        policy="auto",
    )
    run = loop.run()  # trains on the GPU (the default device there), serves on the CPU
    assert run.promoted and run.comparison["difference"] > 0.1
    assert next(run.model.model.parameters()).device.type == "cpu"
    mon.close()
    mon.store.close()
