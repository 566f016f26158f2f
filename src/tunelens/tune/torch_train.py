"""The PyTorch training loop behind ``tune(model, data=...)``: remedies become training.

:func:`torch_task` prepares data and a model (an ``nn.Module`` instance, fine-tuned from
its weights, or a factory called with sampled ``width``/``depth``/``dropout``/``init``) and
returns a :class:`TorchTask` whose ``objective(trial)`` samples every remedy of the space,
trains, reports each epoch's validation metric to Optuna (pruning), stops early, records
measurements (latency, size, FLOPs, memory) and returns the best-epoch validation metric.

Every sampled value is applied where it acts and logged in a :class:`RunLog`
(``task.last_log``); the private hooks ``task._on_step``, ``task._on_batch`` and
``task._on_epoch`` let tests watch the real optimizer and batches.

This module imports torch; ``tune`` imports it only on the PyTorch path.
"""

from __future__ import annotations

import copy
import inspect
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the usual alias
from torch.utils.data import DataLoader, TensorDataset

from tunelens.errors import InputError
from tunelens.tune.models import INIT_SCHEMES, apply_init
from tunelens.tune.remedies import REMEDIES, REMEDY_NAMES, ModelInfo, applies, auto_space
from tunelens.tune.spaces import Dist, validate_space

__all__ = [
    "BASELINE",
    "CLASSIFICATION_METRICS",
    "REGRESSION_METRICS",
    "RunLog",
    "TorchTask",
    "torch_task",
]

#: metric name -> higher is better, per task
CLASSIFICATION_METRICS: dict[str, bool] = {"accuracy": True, "f1": True, "log_loss": False}
REGRESSION_METRICS: dict[str, bool] = {"mse": False, "mae": False, "r2": True}
_SCHEDULES: tuple[str, ...] = ("constant", "step", "cosine", "onecycle")
_ARCH_KEYS: tuple[str, ...] = ("width", "depth", "dropout", "init")
_LATENCY_WARMUP = 5
_LATENCY_CALLS = 50
_EVAL_CHUNK = 1024
_STD_BATCHES = 20

#: values used for remedies that are not in the space ("off" or PyTorch's usual default)
BASELINE: dict[str, Any] = {
    "lr": 1e-3,
    "lr_schedule": "constant",
    "warmup_fraction": 0.0,
    "weight_decay": 0.0,
    "dropout": None,  # leave the model's own
    "grad_clip_norm": None,  # off
    "grad_accumulation": 1,
    "batch_size": 64,
    "noise_std": 0.0,
    "mixup_alpha": 0.0,
    "image_augment": 0.0,
    "init": "default",
    "width": None,  # the factory's default
    "depth": None,
    "freeze_layers": 0,
    "early_stopping_patience": None,  # off
}

#: a known-sensible starting point (``default_params`` keeps the keys of the space)
#: A short budget (tens of epochs) wants a one-cycle schedule (Smith & Topin 2018): with
#: AdamW at 1e-3 and cosine decay a 2x128 MLP reaches 0.95-0.967 on digits in 20 epochs,
#: one-cycle at 3e-3 0.975-0.983 (5 seeds); the warm-up fraction is one-cycle's rise.
_SENSIBLE: dict[str, Any] = {
    "lr": 3e-3,
    "lr_schedule": "onecycle",
    "warmup_fraction": 0.25,
    "weight_decay": 1e-4,
    "dropout": 0.1,
    "grad_clip_norm": 1.0,
    "grad_accumulation": 1,
    "batch_size": 64,
    "noise_std": 0.05,
    "mixup_alpha": 0.0,
    "image_augment": 0.5,
    "init": "default",
    "width": 128,
    "depth": 2,
    "freeze_layers": 0,
    "early_stopping_patience": 5,
}


@dataclass
class RunLog:
    """What one training run did, with the values it really used.

    Attributes:
        params: the remedy values of the run (sampled ones and :data:`BASELINE` fill-ins).
        batch_size: the training DataLoader's batch size.
        batches_per_epoch: training batches per epoch.
        optimizer_steps: optimizer steps taken.
        lrs: learning rate of param group 0 at each optimizer step.
        val_history: validation metric after each epoch.
        epochs_run: epochs trained (also when stopped early or pruned).
        best_epoch: 1-based epoch of the best validation metric.
        best_value: that metric.
        stopped: ``"completed"``, ``"early_stopping"``, ``"pruned"`` or ``"diverged"``.
        frozen: names of the parameters frozen by ``freeze_layers``.
        model: the trained model (best-epoch weights, eval mode).
    """

    params: dict[str, Any]
    batch_size: int | None = None
    batches_per_epoch: int = 0
    optimizer_steps: int = 0
    lrs: list[float] = field(default_factory=list)
    val_history: list[float] = field(default_factory=list)
    epochs_run: int = 0
    best_epoch: int = 0
    best_value: float = math.nan
    stopped: str = "completed"
    frozen: list[str] = field(default_factory=list)
    model: nn.Module | None = None


@dataclass
class _Data:
    train: DataLoader[Any] | None
    X_tr: torch.Tensor | None
    y_tr: torch.Tensor | None
    val: DataLoader[Any] | None
    X_va: torch.Tensor | None
    y_va: torch.Tensor | None
    classification: bool
    n_classes: int
    image: bool
    feature_std: torch.Tensor | None
    latency_x: torch.Tensor

    @property
    def fixed_batches(self) -> bool:
        return self.train is not None


# ---- data ------------------------------------------------------------------------------------


def _as_tensor(a: Any, field_name: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu()
    try:
        arr = np.asarray(a)
    except Exception as e:  # pragma: no cover - exotic containers
        raise InputError(field_name, f"cannot be read as an array ({e})", "") from e
    if arr.dtype == object:
        raise InputError(field_name, "has a non-numeric dtype", "pass numeric arrays")
    return torch.from_numpy(np.ascontiguousarray(arr))


def _is_integer(t: torch.Tensor) -> bool:
    return not t.is_floating_point() and not t.is_complex()


def _split(
    X: torch.Tensor, y: torch.Tensor, classification: bool, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(X.shape[0])
    strat = y.numpy() if classification else None
    try:
        tr, va = train_test_split(idx, test_size=0.2, random_state=seed, stratify=strat)
    except ValueError:  # a class too small to stratify
        tr, va = train_test_split(idx, test_size=0.2, random_state=seed)
    tr_t, va_t = torch.from_numpy(np.sort(tr)), torch.from_numpy(np.sort(va))
    return X[tr_t], y[tr_t], X[va_t], y[va_t]


def _prepare(data: Any, seed: int) -> _Data:
    if not isinstance(data, tuple | list) or len(data) not in (2, 4):
        raise InputError(
            "data",
            "must be (X, y), (X_train, y_train, X_val, y_val) or (train_loader, val_loader)",
            "pass a 2- or 4-tuple",
        )
    if len(data) == 2 and isinstance(data[0], DataLoader):
        return _prepare_loaders(data[0], data[1])
    if len(data) == 2:
        X, y = _as_tensor(data[0], "data[0]"), _as_tensor(data[1], "data[1]")
        if X.shape[0] != y.shape[0]:
            raise InputError("data", f"X has {X.shape[0]} rows but y has {y.shape[0]}", "")
        classification = _is_integer(y)
        X_tr, y_tr, X_va, y_va = _split(X, y, classification, seed)
    else:
        X_tr, y_tr, X_va, y_va = (_as_tensor(a, f"data[{i}]") for i, a in enumerate(data))
        for a, b, nm in ((X_tr, y_tr, "train"), (X_va, y_va, "validation")):
            if a.shape[0] != b.shape[0]:
                raise InputError("data", f"{nm} X has {a.shape[0]} rows but y {b.shape[0]}", "")
        classification = _is_integer(y_tr)
    if X_tr.ndim not in (2, 4):
        raise InputError(
            "data",
            f"X must be 2-D (rows, features) or 4-D images (N, C, H, W), got {X_tr.ndim}-D",
            "reshape X",
        )
    if X_tr.shape[0] == 0 or X_va.shape[0] == 0:
        raise InputError("data", "the training or validation split is empty", "pass more rows")
    X_tr, X_va = X_tr.float(), X_va.float()
    n_classes = 0
    if classification:
        y_tr, y_va = y_tr.long(), y_va.long()  # also bool and unsigned labels
        classes = torch.unique(torch.cat([y_tr.reshape(-1), y_va.reshape(-1)]))
        n_classes = int(classes.numel())
        y_tr = torch.searchsorted(classes, y_tr.reshape(-1).contiguous())
        y_va = torch.searchsorted(classes, y_va.reshape(-1).contiguous())
    else:
        y_tr, y_va = y_tr.float(), y_va.float()
    image = X_tr.ndim == 4
    std = None if image else X_tr.std(dim=0).clamp_min(1e-12)
    return _Data(None, X_tr, y_tr, None, X_va, y_va, classification, n_classes, image, std, X_va)


def _prepare_loaders(train: DataLoader[Any], val: Any) -> _Data:
    if not isinstance(val, DataLoader):
        raise InputError("data[1]", "must be a DataLoader when data[0] is one", "")
    try:
        len(train)
    except TypeError as e:
        raise InputError(
            "data[0]",
            "the training DataLoader has no length (an iterable-style dataset)",
            "use a map-style dataset so the schedule knows the steps per epoch",
        ) from e
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    for k, (xb, yb) in enumerate(train):
        xs.append(torch.as_tensor(xb).float())
        ys.append(torch.as_tensor(yb))
        if k + 1 >= _STD_BATCHES:
            break
    if not xs:
        raise InputError("data[0]", "the training DataLoader yields no batches", "")
    X0, y0 = torch.cat(xs), torch.cat(ys)
    classification = _is_integer(y0)
    n_classes = 0
    if classification:
        labels = [y0.reshape(-1)] + [torch.as_tensor(b[1]).reshape(-1) for b in val]
        n_classes = int(torch.cat(labels).max()) + 1
    image = X0.ndim == 4
    std = None if image else X0.std(dim=0).clamp_min(1e-12)
    vx = next(iter(val))[0]
    return _Data(
        train, None, None, val, None, None, classification, n_classes, image, std,
        torch.as_tensor(vx).float(),
    )  # fmt: skip


# ---- model -----------------------------------------------------------------------------------


def _param_children(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leading parameterised child layers: descend through single-child wrappers."""
    prefix, mod = "", model
    while True:
        kids = [(n, c) for n, c in mod.named_children() if any(True for _ in c.parameters())]
        if len(kids) == 1 and any(True for _ in kids[0][1].children()):
            prefix, mod = prefix + kids[0][0] + ".", kids[0][1]
            continue
        return [(prefix + n, c) for n, c in kids]


def _factory_params(factory: Callable[..., Any]) -> frozenset[str]:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return frozenset()
    names = {
        n for n, p in sig.parameters.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }
    return frozenset(names & set(_ARCH_KEYS))


def _model_info(model: Any, data: _Data) -> ModelInfo:
    kind: Any = "image" if data.image else "tabular"
    if isinstance(model, nn.Module):
        has_dropout = any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules())
        n = max(0, len(_param_children(model)) - 1)
        return ModelInfo(
            has_dropout=has_dropout,
            freezable_layers=n,
            pretrained=True,
            input_kind=kind,
            fixed_batches=data.fixed_batches,
            classification=data.classification,
        )
    arch = _factory_params(model)
    return ModelInfo(
        has_dropout="dropout" in arch,
        arch_params=arch,
        input_kind=kind,
        fixed_batches=data.fixed_batches,
        classification=data.classification,
    )


def _check_space(space: Mapping[str, Dist], info: ModelInfo, is_instance: bool) -> dict[str, Dist]:
    out = validate_space(space)
    for name, d in out.items():
        where = f"space[{name!r}]"
        if name not in REMEDIES:
            raise InputError(where, "not a remedy", f"use one of {REMEDY_NAMES}")
        if name == "batch_size" and info.fixed_batches:
            raise InputError(
                where,
                "cannot be searched when data are DataLoaders (their batch size is fixed)",
                "pass (X, y) arrays instead, or drop batch_size from the space",
            )
        if not applies(name, info):
            if name in ("width", "depth", "dropout") and is_instance:
                why = "the model is an instance without that option"
                fix = f"pass a factory taking {name}= (e.g. functools.partial(MLP, n_in, n_out))"
            elif name in ("width", "depth", "dropout"):
                why = f"the factory takes no {name}= keyword"
                fix = f"add a {name}= parameter to the factory or drop it from the space"
            elif name == "freeze_layers":
                why = "needs a model instance with at least two parameterised child layers"
                fix = "pass a pretrained nn.Module instance or drop freeze_layers"
            else:
                why = f"applies to {REMEDIES[name].needs} inputs only"
                fix = "drop it from the space"
            raise InputError(where, why, fix)
        if name == "freeze_layers" and (
            d.kind != "int"
            or d.low is None
            or d.high is None
            or d.low < 0
            or d.high > info.freezable_layers
        ):
            raise InputError(
                where,
                f"must be an integer range within [0, {info.freezable_layers}]",
                f"use Dist.integer(0, {info.freezable_layers})",
            )
        if name in ("lr_schedule", "init"):
            allowed = _SCHEDULES if name == "lr_schedule" else INIT_SCHEMES
            bad = [c for c in d.choices if c not in allowed] if d.kind == "categorical" else [d]
            if bad:
                raise InputError(where, f"unknown choices {bad}", f"use Dist.choice of {allowed}")
        lo, hi = _LIMITS.get(name, (-math.inf, math.inf))
        if d.kind != "categorical" and d.low is not None and d.high is not None:
            if d.low < lo or d.high > hi:
                raise InputError(where, f"range must lie within [{lo}, {hi}]", "")
        elif d.kind == "categorical" and name not in ("lr_schedule", "init"):
            numeric = all(
                c is not None and not isinstance(c, bool | str) and lo <= float(c) <= hi
                for c in d.choices
                if not (c is None and name in _NONE_OK)
            )
            if not numeric:
                raise InputError(
                    where,
                    f"choices {list(d.choices)} must be numbers within [{lo}, {hi}]",
                    "give numeric choices",
                )
        if d.kind == "categorical" and name in ("batch_size", "grad_accumulation"):  # noqa: SIM102
            if any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in d.choices):
                raise InputError(where, "choices must be positive integers", "")
    return out


_LIMITS: dict[str, tuple[float, float]] = {
    "lr": (0.0, math.inf),
    "warmup_fraction": (0.0, 0.99),
    "weight_decay": (0.0, math.inf),
    "dropout": (0.0, 0.99),
    "grad_clip_norm": (1e-12, math.inf),
    "grad_accumulation": (1, math.inf),
    "batch_size": (1, math.inf),
    "noise_std": (0.0, math.inf),
    "mixup_alpha": (0.0, math.inf),
    "image_augment": (0.0, 1.0),
    "width": (1, math.inf),
    "depth": (1, math.inf),
    "early_stopping_patience": (1, math.inf),
}
#: remedies whose categorical choices may include None ("off" or the model's own value)
_NONE_OK = frozenset({"grad_clip_norm", "early_stopping_patience", "dropout", "width", "depth"})


def _clamp(value: Any, d: Dist) -> Any:
    if d.kind == "categorical":
        return value if value in d.choices else d.choices[0]
    assert d.low is not None and d.high is not None
    v = min(max(float(value), d.low), d.high)
    return round(v) if d.kind == "int" else v


# ---- augmentation ----------------------------------------------------------------------------


def _augment_images(
    x: torch.Tensor, s: float, g: torch.Generator, info: dict[str, Any]
) -> torch.Tensor:
    n, _, h, w = x.shape
    dev = x.device
    flips = torch.rand(n, generator=g) < 0.5 * s
    x = torch.where(flips.to(dev)[:, None, None, None], x.flip(-1), x)
    info["flipped"] = flips
    pad = round(4 * s)
    info["pad"] = pad
    if pad > 0:
        xp = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
        ox = torch.randint(0, 2 * pad + 1, (n,), generator=g)
        rows = (oy[:, None] + torch.arange(h)).to(dev)
        cols = (ox[:, None] + torch.arange(w)).to(dev)
        ar = torch.arange(n, device=dev)[:, None, None]
        x = xp[ar, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
        info["offsets"] = torch.stack([oy, ox], 1) - pad
    max_deg = 15.0 * s
    if max_deg > 0:
        ang = (torch.rand(n, generator=g) * 2 - 1) * max_deg
        info["angles"] = ang
        rad = ang * math.pi / 180
        cos, sin = torch.cos(rad), torch.sin(rad)
        zero = torch.zeros_like(cos)
        theta = torch.stack(
            [torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1
        )
        grid = F.affine_grid(theta.to(dev, x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    return x


# ---- the run ---------------------------------------------------------------------------------


def _trial_seed(seed: int, number: int) -> int:
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def _lr_lambda(total: int, warmup: int, schedule: str) -> Callable[[int], float]:
    def f(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        t = (s - warmup) / max(1, total - warmup)
        if schedule == "step":
            return 0.01 if t >= 0.75 else 0.1 if t >= 0.5 else 1.0
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
        return 1.0

    return f


def _rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` rows of ``x``, repeating them when ``x`` has fewer."""
    reps = math.ceil(n / x.shape[0])
    return (x.repeat(reps, *([1] * (x.ndim - 1))) if reps > 1 else x)[:n]


def _model_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def _activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    total = 0

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        nonlocal total
        outs = out if isinstance(out, tuple | list) else (out,)
        total += sum(o.numel() * o.element_size() for o in outs if isinstance(o, torch.Tensor))

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total


def _latency_ms(model: nn.Module, x: torch.Tensor, device: torch.device) -> tuple[float, float]:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times = []
    with torch.inference_mode():
        for k in range(_LATENCY_WARMUP + _LATENCY_CALLS):
            sync()
            t0 = time.perf_counter()
            model(x)
            sync()
            if k >= _LATENCY_WARMUP:
                times.append((time.perf_counter() - t0) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


@dataclass
class TorchTask:
    """A prepared PyTorch tuning task; ``objective`` is what Optuna optimises.

    Attributes:
        space: the remedy search space.
        explanation: one sentence per decision that built the space.
        higher_is_better: direction of ``metric``.
        metric: validation metric name.
        default_params: a sensible first configuration restricted (and clamped) to the
            space, to enqueue as trial 0.
        info: what the model supports.
        last_log: the :class:`RunLog` of the latest run.
    """

    space: dict[str, Dist]
    explanation: list[str]
    higher_is_better: bool
    metric: str
    default_params: dict[str, Any]
    info: ModelInfo
    seed: int
    epochs: int
    latency_batch: int
    model: Any
    data: _Data
    device: torch.device
    #: patience used when ``early_stopping_patience`` is not searched (None: off)
    default_patience: int | None = None
    last_log: RunLog | None = None
    _on_step: Callable[[dict[str, Any]], None] | None = None
    _on_batch: Callable[[dict[str, Any]], None] | None = None
    _on_epoch: Callable[[int, float], float | None] | None = None

    # ---- public ------------------------------------------------------------------------------

    def objective(self, trial: optuna.Trial) -> float:
        """Sample every remedy, train, report epochs (pruning), measure; best-epoch metric.

        Measurements (through :func:`tunelens.tune.measure`, on the best-epoch model in eval
        mode, ``latency_batch`` validation rows): ``latency_p50_ms`` and ``latency_p99_ms``
        (5 warm-up then 50 timed calls under ``torch.inference_mode``), ``model_bytes``
        (parameters and buffers), ``flops`` (:func:`tunelens.diagnose.flops.count_flops`)
        and ``peak_memory_bytes``, an *estimate*: parameter and buffer bytes plus the
        output bytes of every leaf module in one forward pass (an upper bound on the live
        activations at inference; not measured from the allocator); pruned trials get
        no measurements. User attributes:
        ``tunelens.epochs`` (epochs trained, also when pruned or stopped early) and
        ``tunelens.stopped`` (completed, early_stopping, pruned, diverged).

        Args:
            trial: the Optuna trial (a ``FixedTrial`` works too).

        Returns:
            the best epoch's validation metric (NaN-free: a run that diverged before any
            finite value returns the worst value, -inf or inf).

        Raises:
            optuna.TrialPruned: the pruner stopped the trial (``tunelens.epochs`` is set).
        """
        params = {name: dist.suggest(trial, name) for name, dist in self.space.items()}
        log = self.run(params, number=trial.number, trial=trial)
        model = log.model
        assert model is not None
        x = _rows(self.data.latency_x, self.latency_batch).to(self.device)
        p50, p99 = _latency_ms(model, x, self.device)
        from tunelens.diagnose.flops import count_flops
        from tunelens.tune._tune import measure

        measure(trial, "latency_p50_ms", p50)
        measure(trial, "latency_p99_ms", p99)
        size = _model_bytes(model)
        measure(trial, "model_bytes", size)
        measure(trial, "flops", count_flops(model, x).flops)
        measure(trial, "peak_memory_bytes", size + _activation_bytes(model, x))
        return log.best_value

    def fit_best(self, params: Mapping[str, Any], *, number: int = 0) -> nn.Module:
        """Re-train with ``params`` (seeded as trial ``number``) and return the model.

        The run is the same as that trial's (same seeds), so passing the best trial's
        params and number reproduces its weights. The model holds the best-epoch weights
        and is in eval mode.

        Raises:
            InputError: a key of ``params`` is not in the space.
        """
        unknown = sorted(set(params) - set(self.space))
        if unknown:
            raise InputError("params", f"not in the space: {unknown}", f"use {list(self.space)}")
        model = self.run(dict(params), number=number).model
        assert model is not None
        return model

    # ---- the loop ----------------------------------------------------------------------------

    def run(
        self, params: Mapping[str, Any], *, number: int = 0, trial: optuna.Trial | None = None
    ) -> RunLog:
        """Train once with ``params`` (missing remedies take :data:`BASELINE`).

        Args:
            params: remedy values.
            number: seeds the run together with the task's seed.
            trial: reports epochs and may prune; records ``tunelens.epochs``.

        Returns:
            the :class:`RunLog` (also kept as ``last_log``).
        """
        full = {**BASELINE, "early_stopping_patience": self.default_patience, **params}
        log = RunLog(params=full)
        self.last_log = log
        s = _trial_seed(self.seed, number)
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(s)
            try:
                gen = torch.Generator().manual_seed(s)
                self._train(full, log, gen, np.random.default_rng(s), trial)
            finally:
                if trial is not None:
                    trial.set_user_attr("tunelens.epochs", log.epochs_run)
                    trial.set_user_attr("tunelens.stopped", log.stopped)
        return log

    def _build(self, p: dict[str, Any], log: RunLog) -> tuple[nn.Module, list[nn.Module]]:
        if isinstance(self.model, nn.Module):
            model = copy.deepcopy(self.model)
        else:
            kw = {k: p[k] for k in self.info.arch_params if p.get(k) is not None}
            model = self.model(**kw)
            if not isinstance(model, nn.Module):
                raise InputError(
                    "model",
                    f"the factory returned {type(model).__name__}, not an nn.Module",
                    "return an nn.Module",
                )
        model.to(self.device)
        if p["dropout"] is not None and "dropout" not in self.info.arch_params:
            for m in model.modules():
                if isinstance(m, nn.modules.dropout._DropoutNd):
                    m.p = float(p["dropout"])
        k = int(p["freeze_layers"])
        frozen_mods: list[nn.Module] = []
        if k > 0:
            for name, child in _param_children(model)[:k]:
                frozen_mods.append(child)
                for pn, prm in child.named_parameters():
                    prm.requires_grad_(False)
                    log.frozen.append(f"{name}.{pn}")
        if p["init"] != "default" and "init" not in self.info.arch_params:
            apply_init(model, str(p["init"]))  # skips frozen layers
        return model, frozen_mods

    def _batches(
        self, p: dict[str, Any], g: torch.Generator, log: RunLog
    ) -> Callable[[], Iterable[Any]]:
        if self.data.train is not None:
            loader = self.data.train
        else:
            assert self.data.X_tr is not None and self.data.y_tr is not None
            loader = DataLoader(
                TensorDataset(self.data.X_tr, self.data.y_tr),
                batch_size=int(p["batch_size"]),
                shuffle=True,
                generator=g,
            )
        log.batch_size = loader.batch_size
        log.batches_per_epoch = len(loader)
        return lambda: loader

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.data.classification:
            return F.cross_entropy(out, y)
        if out.ndim == 2 and out.shape[1] == 1 and y.ndim == 1:
            out = out[:, 0]
        return F.mse_loss(out, y)

    def _train(
        self,
        p: dict[str, Any],
        log: RunLog,
        g: torch.Generator,
        rng: np.random.Generator,
        trial: optuna.Trial | None,
    ) -> None:
        model, frozen = self._build(p, log)
        _check_output(model, self.data, self.device)
        batches = self._batches(p, g, log)
        n_batches = log.batches_per_epoch
        accum = max(1, int(p["grad_accumulation"]))
        steps_per_epoch = math.ceil(n_batches / accum)
        total = max(1, steps_per_epoch * self.epochs)
        lr, wd = float(p["lr"]), float(p["weight_decay"])
        trainable = [q for q in model.parameters() if q.requires_grad]
        if not trainable:
            raise InputError("freeze_layers", "freezes every parameter", "freeze fewer layers")
        opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=wd)
        warmup = round(float(p["warmup_fraction"]) * total)
        sched: torch.optim.lr_scheduler.LRScheduler
        if p["lr_schedule"] == "onecycle" and total >= 4:
            # OneCycleLR's own warm-up phase is the warm-up (0.3 of the steps when none is set)
            pct = min(total - 2, max(warmup, 2)) / total if warmup else 0.3
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=lr, total_steps=total, pct_start=pct
            )
        else:
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, _lr_lambda(total, warmup, str(p["lr_schedule"]))
            )
        clip = p["grad_clip_norm"]
        patience = p["early_stopping_patience"]
        noise, alpha, aug = (
            float(p["noise_std"]),
            float(p["mixup_alpha"]),
            float(p["image_augment"]),
        )
        sign = 1.0 if self.higher_is_better else -1.0
        best_state: dict[str, torch.Tensor] | None = None
        best = -math.inf
        dev = self.device

        for epoch in range(1, self.epochs + 1):
            model.train()
            for m in frozen:
                m.eval()  # frozen layers keep their batch-norm statistics too
            opt.zero_grad(set_to_none=True)
            diverged = False
            for i, (xb, yb) in enumerate(batches()):
                raw = xb.float().to(dev)
                yb = yb.to(dev)
                yb = yb.long().reshape(-1) if self.data.classification else yb.float()
                x = raw
                info: dict[str, Any] = {"epoch": epoch, "batch": i, "raw": raw}
                if noise > 0 and self.data.feature_std is not None and raw.ndim == 2:
                    eps = torch.randn(raw.shape, generator=g).to(dev)
                    x = x + eps * noise * self.data.feature_std.to(dev)
                if aug > 0 and raw.ndim == 4:
                    x = _augment_images(x, aug, g, info)
                lam = 1.0
                perm: torch.Tensor | None = None
                if alpha > 0:
                    lam = float(rng.beta(alpha, alpha))
                    perm = torch.randperm(x.shape[0], generator=g).to(dev)
                    x = lam * x + (1.0 - lam) * x[perm]
                info.update(x=x, y=yb, lam=lam, perm=perm)
                if self._on_batch is not None:
                    self._on_batch(info)
                out = model(x)
                if perm is not None and self.data.classification:
                    loss = lam * self._loss(out, yb) + (1 - lam) * self._loss(out, yb[perm])
                elif perm is not None:
                    loss = self._loss(out, lam * yb + (1 - lam) * yb[perm])
                else:
                    loss = self._loss(out, yb)
                if not torch.isfinite(loss):
                    diverged = True
                    break
                group_start = (i // accum) * accum
                in_group = min(accum, n_batches - group_start)
                (loss / in_group).backward()  # type: ignore[no-untyped-call]
                if (i + 1) % accum == 0 or i + 1 == n_batches:
                    self._step(model, opt, sched, clip, log, in_group, trainable)
            value = self._evaluate(model)
            if self._on_epoch is not None:
                override = self._on_epoch(epoch, value)
                if override is not None:
                    value = float(override)
            log.val_history.append(value)
            log.epochs_run = epoch
            score = sign * value if math.isfinite(value) else -math.inf
            if best_state is None or score > best:
                best, log.best_epoch, log.best_value = score, epoch, value
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if trial is not None:
                trial.report(value, epoch)
            if diverged:
                log.stopped = "diverged"
                break
            if patience is not None and epoch - log.best_epoch >= int(patience):
                log.stopped = "early_stopping"
                break
            # a trial that trained every epoch is complete: never pruned after the last one
            if trial is not None and epoch < self.epochs and trial.should_prune():
                log.stopped = "pruned"
                raise optuna.TrialPruned(f"pruned at epoch {epoch} ({self.metric}={value:.6g})")
        assert best_state is not None
        model.load_state_dict(best_state)
        model.eval()
        log.model = model
        if not math.isfinite(log.best_value):
            log.best_value = -math.inf if self.higher_is_better else math.inf

    def _step(
        self,
        model: nn.Module,
        opt: torch.optim.Optimizer,
        sched: torch.optim.lr_scheduler.LRScheduler,
        clip: float | None,
        log: RunLog,
        in_group: int,
        trainable: Sequence[torch.Tensor],
    ) -> None:
        before = after = math.nan
        if clip is not None:
            before = float(torch.nn.utils.clip_grad_norm_(trainable, float(clip)))
        if self._on_step is not None:
            grads = [q.grad.detach().norm() for q in trainable if q.grad is not None]
            after = float(torch.linalg.vector_norm(torch.stack(grads))) if grads else 0.0
        group = opt.param_groups[0]
        log.lrs.append(float(group["lr"]))
        if self._on_step is not None:
            self._on_step(
                {
                    "step": log.optimizer_steps,
                    "lr": float(group["lr"]),
                    "weight_decay": float(group["weight_decay"]),
                    "grad_norm_before_clip": before,
                    "grad_norm": after,
                    "batches": in_group,
                    "model": model,
                }
            )
        opt.step()
        opt.zero_grad(set_to_none=True)
        log.optimizer_steps += 1
        if log.optimizer_steps < _total_steps(sched):
            sched.step()

    def _val_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.data.val is not None:
            for xb, yb in self.data.val:
                yield torch.as_tensor(xb).float(), torch.as_tensor(yb)
            return
        assert self.data.X_va is not None and self.data.y_va is not None
        for k in range(0, self.data.X_va.shape[0], _EVAL_CHUNK):
            yield self.data.X_va[k : k + _EVAL_CHUNK], self.data.y_va[k : k + _EVAL_CHUNK]

    def _evaluate(self, model: nn.Module) -> float:
        model.eval()
        outs, ys = [], []
        with torch.inference_mode():
            for xb, yb in self._val_batches():
                outs.append(model(xb.to(self.device)).float().cpu())
                ys.append(yb.cpu())
        out, y = torch.cat(outs), torch.cat(ys)
        return _metric(self.metric, out, y, self.data.n_classes)


def _total_steps(sched: torch.optim.lr_scheduler.LRScheduler) -> int:
    return int(getattr(sched, "total_steps", 1 << 62))


def _metric(name: str, out: torch.Tensor, y: torch.Tensor, n_classes: int) -> float:
    import warnings

    from tunelens.metrics import (
        accuracy_score,
        f1_score,
        log_loss,
        mean_absolute_error,
        mean_squared_error,
        r2_score,
    )

    if not bool(torch.isfinite(out).all()):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name in CLASSIFICATION_METRICS:
            yt = y.long().reshape(-1).numpy()
            if name == "log_loss":
                proba = torch.softmax(out.double(), dim=1).numpy()
                return float(log_loss(yt, proba, labels=np.arange(n_classes)))
            pred = out.argmax(dim=1).numpy()
            if name == "accuracy":
                return float(accuracy_score(yt, pred))
            return float(
                f1_score(yt, pred, average="macro", labels=np.arange(n_classes), zero_division=0)
            )
        if out.ndim == 2 and out.shape[1] == 1 and y.ndim == 1:
            out = out[:, 0]
        yt_r, pr = y.double().numpy(), out.double().numpy()
        fn = {"mse": mean_squared_error, "mae": mean_absolute_error, "r2": r2_score}[name]
        return float(fn(yt_r, pr))


def _check_model_output(model: Any, data: _Data, device: torch.device) -> None:
    """Fail early, naming the model, when its outputs do not fit the data."""
    if isinstance(model, nn.Module):
        probe = copy.deepcopy(model)
    else:
        try:
            probe = model()
        except Exception:
            return
        if not isinstance(probe, nn.Module):
            raise InputError(
                "model",
                f"the factory returned {type(probe).__name__}, not an nn.Module",
                "return an nn.Module",
            )
    _check_output(probe.to(device), data, device)


def _check_output(model: nn.Module, data: _Data, device: torch.device) -> None:
    x = data.latency_x[:2].to(device)
    model.eval()
    try:
        with torch.inference_mode():
            out = model(x)
    except RuntimeError as e:
        raise InputError(
            "model",
            f"a forward pass on validation rows of shape {tuple(x.shape)} failed ({e})",
            "make the model's input layer match the data",
        ) from e
    if not isinstance(out, torch.Tensor):
        raise InputError("model", f"forward returned {type(out).__name__}", "return a tensor")
    if data.classification and (out.ndim != 2 or out.shape[1] != data.n_classes):
        raise InputError(
            "model",
            f"outputs shape {tuple(out.shape)} but the data have {data.n_classes} classes",
            f"make the model output (batch, {data.n_classes}) logits",
        )


# ---- entry -----------------------------------------------------------------------------------


def torch_task(
    model: nn.Module | Callable[..., nn.Module],
    *,
    data: Any,
    space: str | Mapping[str, Dist] = "auto",
    metric: str | None = None,
    seed: int | None = 0,
    epochs: int | None = None,
    findings: Sequence[Any] = (),
    device: str | torch.device = "cpu",
    latency_batch: int = 1,
    early_stopping: bool = True,
) -> TorchTask:
    """Prepare a PyTorch tuning task: data split, model support, remedy space, metric.

    Args:
        model: an ``nn.Module`` instance (each trial trains a deep copy of it, keeping its
            weights: fine-tuning) or a factory returning one; a factory receives the
            sampled ``width``, ``depth``, ``dropout``, ``init`` when its signature has them
            (fix other arguments with ``functools.partial``).
        data: ``(X, y)`` (a seeded, stratified 20% validation split), ``(X_train, y_train,
            X_val, y_val)`` or ``(train_loader, val_loader)``. Integer ``y`` means
            classification (labels are mapped to 0..K-1 in sorted order), float
            ``y`` regression; 4-D ``X`` means images.
        space: ``"auto"`` (:func:`tunelens.tune.remedies.auto_space` from the model and
            ``findings``) or ``{remedy: Dist}``.
        metric: classification ``"accuracy"`` (default), ``"f1"`` (macro), ``"log_loss"``;
            regression ``"mse"`` (default), ``"mae"``, ``"r2"``.
        seed: seeds the split and, with the trial number, every trial (``None``: 0).
        epochs: epochs per trial (``None``: 20).
        findings: findings that shape the auto space.
        device: where to train (``"cpu"``, ``"cuda"``...).
        latency_batch: rows per call when timing latency and counting FLOPs.
        early_stopping: when ``early_stopping_patience`` is not in the space, stop a trial
            whose validation metric has not improved for ``max(3, epochs // 4)`` epochs
            (the best epoch's weights and value are kept); ``False`` trains every epoch.

    Returns:
        a :class:`TorchTask`.

    Raises:
        InputError: bad data, unknown metric, unknown or inapplicable remedy in ``space``,
            ``batch_size`` with DataLoaders, a model that is neither a module nor callable.

    Example:
        >>> import functools, numpy as np
        >>> from tunelens.tune.models import MLP
        >>> X, y = np.random.rand(100, 4).astype("float32"), np.arange(100) % 2
        >>> task = torch_task(functools.partial(MLP, 4, 2), data=(X, y), epochs=1)
        >>> sorted(task.space)[:3]
        ['batch_size', 'depth', 'dropout']
    """
    if not isinstance(model, nn.Module) and not callable(model):
        raise InputError(
            "model",
            f"expected an nn.Module or a factory, got {type(model).__name__}",
            "pass a module instance or functools.partial(MLP, n_in, n_out)",
        )
    if epochs is None:
        epochs = 20
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InputError("epochs", f"must be a positive integer, got {epochs!r}", "")
    if isinstance(latency_batch, bool) or not isinstance(latency_batch, int) or latency_batch < 1:
        raise InputError("latency_batch", f"must be a positive integer, got {latency_batch!r}", "")
    seed = 0 if seed is None else int(seed)
    dev = torch.device(device)
    prepared = _prepare(data, seed)
    metrics = CLASSIFICATION_METRICS if prepared.classification else REGRESSION_METRICS
    metric_name = metric if metric is not None else next(iter(metrics))
    if metric_name not in metrics:
        task_kind = "classification" if prepared.classification else "regression"
        raise InputError(
            "metric", f"unknown {task_kind} metric {metric_name!r}", f"use one of {list(metrics)}"
        )
    info = _model_info(model, prepared)
    if isinstance(space, str):
        if space != "auto":
            raise InputError("space", f"unknown value {space!r}", "use 'auto' or a dict")
        chosen, why = auto_space(info, findings)
    else:
        chosen = _check_space(space, info, isinstance(model, nn.Module))
        why = [f"space given explicitly: {', '.join(chosen)}"]
    _check_model_output(model, prepared, dev)
    patience = max(3, epochs // 4) if early_stopping else None
    if patience is not None and "early_stopping_patience" not in chosen:
        why.append(
            f"every trial stops after {patience} epochs without improvement and keeps its "
            "best epoch (early_stopping=False trains every epoch)"
        )
    defaults = {k: _clamp(v, chosen[k]) for k, v in _SENSIBLE.items() if k in chosen}
    if "freeze_layers" in defaults:
        defaults["freeze_layers"] = _clamp(0, chosen["freeze_layers"])
    return TorchTask(
        space=chosen,
        explanation=why,
        higher_is_better=metrics[metric_name],
        metric=metric_name,
        default_params=defaults,
        info=info,
        seed=seed,
        epochs=epochs,
        latency_batch=latency_batch,
        model=model,
        data=prepared,
        device=dev,
        default_patience=patience,
    )
