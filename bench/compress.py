"""``tunelens.tune.compress`` on two models a user could have, with the acceptance check.

Run ``.venv/bin/python bench/compress.py`` (a few minutes on 2 cores). For each model it
trains the original here on scikit-learn's digits (8x8 images, 10 classes, 1797 rows,
shipped with scikit-learn: no download), then calls ``compress(max_drop=0.01)`` and prints
every candidate against the original.

* **Data**: a seeded, stratified split: 50 % training, 25 % validation (what ``compress``
  selects on), 25 % test (never seen by ``compress``: the chosen model's drop on it is
  printed too, as a check on selection bias). Pixels scaled to [0, 1].
* **mlp**: ``64-512-512-10``, ReLU, dropout 0.1, Adam 1e-3, 20 epochs, batch 64.
* **cnn**: three conv blocks ``Conv(1->16, 3x3) BN ReLU``, ``Conv(16->32) BN ReLU MaxPool``,
  ``Conv(32->64) BN ReLU MaxPool``, then ``Flatten, Linear(256->64), ReLU, Linear(64->10)``,
  on 1x8x8 inputs, Adam 1e-3, 20 epochs, batch 64.
* ``compress`` gets ``data=(train loader, validation loader)`` and fine-tunes on the
  training rows.

Acceptance, per model: the chosen model is at least 2x faster at batch 1 (p50, timed
in alternating blocks with the original in this process) with an accuracy drop of at most
0.01 on the validation part, and at least 3x smaller (bytes of the saved file against
``torch.save`` of the original module). The script exits 1 if any model fails.

``--json out.json`` writes each model's ``CompressResult.to_dict()``; ``--threads N`` sets
``torch.set_num_threads`` for everything, training and timing alike (default 1: steadier on
a shared machine, where two threads per process oversubscribe the cores and a training step
was measured 30-60x slower; ``0`` leaves torch's setting); ``--models mlp`` runs one.
ONNX Runtime sessions get the same number of intra-op threads as torch.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
# run as a script, this folder comes first on sys.path, and bench/profile.py would shadow
# the standard library's ``profile`` module (imported by torch through cProfile)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from importlib import metadata  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def build(name: str) -> Any:
    import torch
    from torch import nn

    torch.manual_seed(0)
    if name == "mlp":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, 512),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(512, 10),
        )
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 2 * 2, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def data(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = y.astype(np.int64)
    Xtr, Xrest, ytr, yrest = train_test_split(X, y, test_size=0.5, stratify=y, random_state=seed)
    Xva, Xte, yva, yte = train_test_split(
        Xrest, yrest, test_size=0.5, stratify=yrest, random_state=seed
    )
    return {"train": (Xtr, ytr), "val": (Xva, yva), "test": (Xte, yte)}


def train_original(model: Any, Xtr: np.ndarray, ytr: np.ndarray, epochs: int) -> None:
    import torch
    from torch.nn import functional as nnf

    torch.manual_seed(0)
    X, y = torch.from_numpy(Xtr), torch.from_numpy(ytr)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(X))
        for s in range(0, len(X), 64):
            idx = order[s : s + 64]
            loss = nnf.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


def accuracy(fn: Any, X: np.ndarray, y: np.ndarray) -> float:
    import torch

    with torch.inference_mode():
        out = fn(torch.from_numpy(X))
    return float((out.argmax(1).numpy() == y).mean())


def run(
    name: str, parts: dict[str, tuple[np.ndarray, np.ndarray]], args: argparse.Namespace
) -> dict[str, Any]:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from tunelens.tune import compress

    model = build(name)
    t = time.perf_counter()
    train_original(model, *parts["train"], epochs=20)
    train_s = time.perf_counter() - t
    (Xtr, ytr), (Xva, yva), (Xte, yte) = parts["train"], parts["val"], parts["test"]
    train_loader = DataLoader(
        TensorDataset(torch.from_numpy(Xtr), torch.from_numpy(ytr)),
        batch_size=64,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    val_loader = DataLoader(
        TensorDataset(torch.from_numpy(Xva), torch.from_numpy(yva)), batch_size=256
    )
    print(
        f"\n== {name}: trained in {train_s:.1f} s; accuracy train {accuracy(model, Xtr, ytr):.4f}, "
        f"validation {accuracy(model, Xva, yva):.4f}, test {accuracy(model, Xte, yte):.4f}"
    )
    t = time.perf_counter()
    result = compress(
        model, data=(train_loader, val_loader), metric="accuracy", max_drop=0.01, seed=0
    )
    wall = time.perf_counter() - t
    print(result.summary())
    ch = result.chosen or {}
    test_drop = accuracy(model, Xte, yte) - accuracy(result.model, Xte, yte)
    ok = bool(
        result.improved
        and ch.get("speedup", 0) >= 2.0
        and ch.get("drop", 1) <= 0.01
        and ch.get("size_ratio", 0) >= 3.0
    )
    print(
        f"{name}: compress took {wall:.1f} s; chosen {ch.get('name')}: "
        f"speedup {ch.get('speedup', 0):.2f}x "
        f"(>= 2), size {ch.get('size_ratio', 0):.2f}x smaller (>= 3), validation drop "
        f"{ch.get('drop', float('nan')):.4f} (<= 0.01); test drop {test_drop:.4f} (not part of the "
        f"acceptance) -> {'PASS' if ok else 'FAIL'}"
    )
    return {
        "model": name,
        "ok": ok,
        "compress_s": wall,
        "test_drop": test_drop,
        "result": result.to_dict(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch.set_num_threads (default 1); 0 leaves it"
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC | CPU {_cpu()} | usable cores "
        f"{len(os.sched_getaffinity(0))} | torch threads {torch.get_num_threads()} | load average "
        f"{os.getloadavg()[0]:.2f}\nPython {platform.python_version()}, torch {torch.__version__}, "
        f"onnxruntime {_version('onnxruntime')}, onnx {_version('onnx')}, "
        f"scikit-learn {_version('scikit-learn')}, tunelens {_version('tunelens')}"
    )
    parts = data()
    out = [run(name, parts, args) for name in args.models.split(",")]
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    failed = [r["model"] for r in out if not r["ok"]]
    print("\nacceptance:", "PASS" if not failed else f"FAIL ({', '.join(failed)})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
