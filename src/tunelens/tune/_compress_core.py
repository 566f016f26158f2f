"""Data, training, evaluation and measurement for ``compress`` (imports torch)."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as nnf

from tunelens.errors import InputError

__all__ = [
    "Data",
    "evaluate",
    "latency_paired",
    "make_data",
    "torch_bytes",
    "train",
]

Fn = Callable[[torch.Tensor], torch.Tensor]
_BATCH = 64
_EVAL_BATCH = 512


@dataclass
class Data:
    """The fine-tuning part, the validation part, the latency input and calibration batches.

    Attributes:
        epoch: ``epoch(i)`` yields ``(x, y)`` training batches for epoch ``i``.
        n_train: training rows (``-1`` when a loader does not say).
        x_val: validation inputs, one tensor.
        y_val: validation targets.
        example: ``latency_batch`` rows of validation input, for latency and export.
        calibration: up to 8 training batches as float32 arrays (static quantisation).
        split: how the data were split, in words.
    """

    epoch: Callable[[int], Iterator[tuple[torch.Tensor, torch.Tensor]]]
    n_train: int
    x_val: torch.Tensor
    y_val: torch.Tensor
    example: torch.Tensor
    calibration: list[np.ndarray]
    split: str


def _as_tensor(a: Any, field: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu()
    try:
        arr = np.asarray(a)
    except Exception as exc:
        raise InputError(
            field, f"cannot read as an array ({exc})", "pass NumPy arrays or tensors"
        ) from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(field, f"must be numeric, got dtype {arr.dtype}", "pass numeric arrays")
    return torch.from_numpy(np.ascontiguousarray(arr))


def _targets(y: torch.Tensor, metric: str, field: str) -> torch.Tensor:
    if metric == "accuracy":
        if y.dim() != 1:
            raise InputError(
                field,
                f"class labels must be 1-D, got shape {tuple(y.shape)}",
                "pass y with shape (n,)",
            )
        if y.is_floating_point() and not torch.all(y == y.round()):
            raise InputError(
                field, "accuracy needs integer class labels", 'use metric="mse" for regression'
            )
        return y.long()
    return y.float()


def _is_loader(obj: Any) -> bool:
    return isinstance(obj, torch.utils.data.DataLoader) or (
        hasattr(obj, "__iter__") and not isinstance(obj, np.ndarray | torch.Tensor | list | tuple)
    )


def make_data(
    data: Any, metric: str, seed: int, latency_batch: int, *, val_share: float = 0.2
) -> Data:
    """Validate ``data`` and split it.

    ``(X, y)`` arrays: a seeded split, ``val_share`` of the rows for validation (stratified by
    class for accuracy), the rest for fine-tuning in shuffled batches of 64. ``(train,
    validation)`` loaders: used as they are; the validation loader is read once into memory.

    Raises:
        InputError: ``data`` is not such a pair, or shapes and types do not fit.
    """
    if not isinstance(data, tuple | list) or len(data) != 2:
        raise InputError(
            "data",
            f"expected a pair (X, y) or (train_loader, val_loader), got {type(data).__name__}",
            "pass data=(X, y) with X of shape (n, ...) and y of shape (n,)",
        )
    first, second = data
    if _is_loader(first) and _is_loader(second):
        return _from_loaders(first, second, metric, latency_batch)
    X = _as_tensor(first, "data[0] (X)").float()
    y = _targets(_as_tensor(second, "data[1] (y)"), metric, "data[1] (y)")
    if X.dim() < 2:
        raise InputError(
            "data[0] (X)", f"needs shape (n, features...), got {tuple(X.shape)}", "add a batch axis"
        )
    if len(X) != len(y):
        raise InputError(
            "data",
            f"X has {len(X)} rows but y has {len(y)}",
            "pass X and y with the same number of rows",
        )
    if len(X) < 10:
        raise InputError(
            "data", f"only {len(X)} rows", "pass at least 10 rows (fine-tuning + validation)"
        )
    if not torch.isfinite(X).all():
        raise InputError(
            "data[0] (X)", "contains NaN or infinite values", "clean or impute X first"
        )
    gen = np.random.default_rng(seed)
    n = len(X)
    if metric == "accuracy":
        val_idx: list[int] = []
        labels = y.numpy()
        for c in np.unique(labels):
            idx = np.flatnonzero(labels == c)
            gen.shuffle(idx)
            val_idx.extend(idx[: round(len(idx) * val_share)].tolist())
        val = np.array(sorted(val_idx), dtype=np.int64)
    else:
        val = np.sort(gen.permutation(n)[: max(1, round(n * val_share))])
    mask = np.ones(n, dtype=bool)
    mask[val] = False
    tr = np.flatnonzero(mask)
    if len(tr) < 2 or len(val) < 1:
        raise InputError("data", "too few rows to split", "pass more rows")
    Xt, yt = X[torch.from_numpy(tr)], y[torch.from_numpy(tr)]
    Xv, yv = X[torch.from_numpy(val)], y[torch.from_numpy(val)]

    def epoch(i: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(seed * 1000 + i)
        order = torch.randperm(len(Xt), generator=g)
        for s in range(0, len(order), _BATCH):
            idx = order[s : s + _BATCH]
            if len(idx) >= 2:
                yield Xt[idx], yt[idx]

    calib = [
        Xt[s : s + _BATCH].numpy().astype(np.float32)
        for s in range(0, min(len(Xt), 8 * _BATCH), _BATCH)
    ]
    split = (
        f"seeded split (seed={seed}): {len(val)} rows ({val_share:.0%}"
        f"{', stratified by class' if metric == 'accuracy' else ''}) for validation, "
        f"{len(tr)} for fine-tuning"
    )
    return Data(epoch, len(tr), Xv, yv, _example(Xv, latency_batch), calib, split)


def _example(x_val: torch.Tensor, latency_batch: int) -> torch.Tensor:
    reps = math.ceil(latency_batch / len(x_val))
    return x_val.repeat(reps, *([1] * (x_val.dim() - 1)))[:latency_batch].contiguous()


def _batch_xy(batch: Any, field: str) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(batch, dict):
        raise InputError(field, "yields dicts", "yield (x, y) pairs")
    if not isinstance(batch, tuple | list) or len(batch) != 2:
        raise InputError(field, f"must yield (x, y) pairs, got {type(batch).__name__}", "")
    return _as_tensor(batch[0], field).float(), _as_tensor(batch[1], field)


def _from_loaders(train: Any, val: Any, metric: str, latency_batch: int) -> Data:
    xs, ys = [], []
    for batch in val:
        x, y = _batch_xy(batch, "data[1] (validation loader)")
        xs.append(x)
        ys.append(y)
    if not xs:
        raise InputError("data[1] (validation loader)", "is empty", "give it at least one batch")
    Xv = torch.cat(xs)
    yv = _targets(torch.cat(ys), metric, "data[1] (validation loader)")
    if len(Xv) != len(yv):
        raise InputError("data[1] (validation loader)", "x and y batches differ in length", "")
    calib: list[np.ndarray] = []
    n_train = 0
    for batch in train:
        x, y = _batch_xy(batch, "data[0] (training loader)")
        n_train += len(x)
        if len(calib) < 8:
            calib.append(x.numpy().astype(np.float32))
    if n_train == 0:
        raise InputError("data[0] (training loader)", "is empty", "give it at least one batch")

    def epoch(i: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in train:
            x, y = _batch_xy(batch, "data[0] (training loader)")
            if len(x) >= 2:
                yield x, _targets(y, metric, "data[0] (training loader)")

    split = f"loaders as given: {n_train} training rows, {len(Xv)} validation rows"
    return Data(epoch, n_train, Xv, yv, _example(Xv, latency_batch), calib, split)


def outputs(fn: Fn, x: torch.Tensor) -> torch.Tensor:
    """``fn`` over ``x`` in batches of 512, under ``torch.inference_mode``."""
    outs = []
    with torch.inference_mode():
        for s in range(0, len(x), _EVAL_BATCH):
            out = fn(x[s : s + _EVAL_BATCH])
            if isinstance(out, tuple | list):
                out = out[0]
            outs.append(out.float())
    return torch.cat(outs)


def score(out: torch.Tensor, y: torch.Tensor, metric: str) -> float:
    """The metric of outputs ``out`` against targets ``y``."""
    if metric == "accuracy":
        if out.dim() == 2 and out.shape[1] > 1:
            pred = out.argmax(1)
        else:
            pred = (out.reshape(-1) > 0).long()
        return float((pred == y).float().mean())
    diff = out.reshape(y.shape) - y
    return float((diff**2).mean()) if metric == "mse" else float(diff.abs().mean())


def evaluate(fn: Fn, data: Data, metric: str) -> float:
    """The metric of ``fn`` on the validation part."""
    return score(outputs(fn, data.x_val), data.y_val, metric)


def _task_loss(out: torch.Tensor, y: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "accuracy":
        if out.dim() == 2 and out.shape[1] > 1:
            return nnf.cross_entropy(out, y)
        return nnf.binary_cross_entropy_with_logits(out.reshape(-1), y.float())
    if metric == "mse":
        return nnf.mse_loss(out.reshape(y.shape), y)
    return nnf.l1_loss(out.reshape(y.shape), y)


def train(
    model: nn.Module,
    data: Data,
    metric: str,
    *,
    epochs: int,
    lr: float,
    deadline: float,
    after_step: Callable[[], None] | None = None,
    teacher: nn.Module | None = None,
    temperature: float = 4.0,
    alpha: float = 0.7,
) -> bool:
    """Train ``model`` in place (Adam); with a teacher, knowledge distillation.

    Distillation loss: ``alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) +
    (1 - alpha) * task loss`` for classification; for regression the soft target is the
    teacher's output under the task loss.

    Returns:
        ``False`` when the deadline (``time.monotonic()``) cut training short.
    """
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    try:
        for ep in range(epochs):
            for xb, yb in data.epoch(ep):
                if time.monotonic() > deadline:
                    return False
                out = model(xb)
                loss = _task_loss(out, yb, metric)
                if teacher is not None:
                    with torch.no_grad():
                        soft = teacher(xb)
                    if metric == "accuracy" and out.dim() == 2 and out.shape[1] > 1:
                        kd = nnf.kl_div(
                            nnf.log_softmax(out / temperature, 1),
                            nnf.softmax(soft / temperature, 1),
                            reduction="batchmean",
                        ) * (temperature**2)
                    elif metric == "accuracy":
                        kd = nnf.binary_cross_entropy_with_logits(out, torch.sigmoid(soft))
                    else:
                        kd = _task_loss(out, soft.reshape(yb.shape).float(), metric)
                    loss = alpha * kd + (1 - alpha) * loss
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                if after_step is not None:
                    after_step()
    finally:
        model.eval()
    return True


def torch_bytes(obj: Any) -> bytes:
    """``torch.save(obj)`` as bytes (the whole module, pickled)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _time_block(fn: Fn, x: torch.Tensor, n: int, out: list[float]) -> None:
    clock = time.perf_counter
    for _ in range(n):
        t = clock()
        fn(x)
        out.append(clock() - t)


def latency(fn: Fn, x: torch.Tensor, *, seconds: float = 0.3) -> list[float]:
    """Per-call seconds of ``fn(x)`` under ``torch.inference_mode`` after a warm-up."""
    times: list[float] = []
    with torch.inference_mode():
        warm: list[float] = []
        _time_block(fn, x, 20, warm)
        block = max(5, min(200, int(0.02 / max(float(np.median(warm)), 1e-7))))
        start = time.perf_counter()
        while len(times) < 100 or (time.perf_counter() - start < seconds and len(times) < 20000):
            _time_block(fn, x, block, times)
    return times


def latency_paired(
    fn: Fn, base: Fn, x: torch.Tensor, *, seconds: float = 0.4
) -> tuple[list[float], list[float]]:
    """Per-call seconds of ``fn`` and ``base``, timed in alternating blocks.

    Alternating blocks put both under the same machine load, so their ratio is steadier than
    either time on a busy machine.
    """
    a: list[float] = []
    b: list[float] = []
    with torch.inference_mode():
        warm: list[float] = []
        _time_block(fn, x, 20, warm)
        _time_block(base, x, 20, warm)
        block = max(5, min(100, int(0.01 / max(float(np.median(warm)), 1e-7))))
        start = time.perf_counter()
        while len(a) < 100 or (time.perf_counter() - start < seconds and len(a) < 20000):
            _time_block(fn, x, block, a)
            _time_block(base, x, block, b)
    return a, b


def percentile_ms(times: list[float], q: float) -> float:
    """The ``q``-quantile of ``times`` (seconds), in milliseconds."""
    return float(np.quantile(np.asarray(times), q) * 1e3)
