"""Training diagnostics: watch a PyTorch training loop and say what is going wrong.

Use it around the user's own loop::

    with tunelens.diagnose.training.watch(model, optimizer, every=10) as w:
        for x, y in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            w.step(loss, val_loss=None)      # after backward(); before or after optimizer.step()
    for finding in w.findings():
        print(finding.kind, finding.where, finding.step, finding.action)

What is recorded, and when:

* every step: the loss, the learning rate (``optimizer.param_groups[0]["lr"]``) and the
  optional validation loss and metric; a float of the loss is taken each step (one host
  sync on an accelerator).
* every ``every`` steps (a *sampled* step, step 0 included): per layer (each module that
  owns parameters directly) the gradient norm, the weight norm and the update-to-weight
  ratio ``||w_after - w_before|| / ||w_before||`` of one optimizer step; per activation
  module (ReLU, GELU, Sigmoid, ...) and per Linear/Conv output the mean, standard
  deviation and share of exact zeros, and for ReLU-like modules the share of *dead* units
  (units that are zero for every example of the batch).

Forward hooks are attached only for the forward pass of a sampled step, and a copy of the
weights is taken only just before a sampled step, so the cost of the other steps is one
Python call and one ``float(loss)``. Call ``w.step(loss)`` after ``loss.backward()`` and
before the next ``zero_grad()``; it may come before or after ``optimizer.step()`` (the
weight copy is taken at the end of the ``step`` call before a sampled one, so exactly one
optimizer step lies between the copy and the comparison either way). Forward passes
under ``torch.no_grad()`` or in ``eval()`` mode (a validation pass) are not recorded.

Detection rules (thresholds are module constants, tuned on injected faults in a small
MLP on scikit-learn's digits and on healthy runs, see ``tests/diagnose/test_training.py``):

* ``non_finite``: the loss, or a gradient on a sampled step, is NaN or Inf; the step is
  the first where it is seen. It is the root cause unless the loss was diverging or the
  initialisation was abnormal beforehand; everything after it is ignored by the other rules.
* ``exploding_gradients`` from the initialisation: a weight's init gain
  ``std(W) * sqrt(fan_in)`` is above `INIT_GAIN_HIGH` (PyTorch's default is about 0.58,
  Kaiming about 1.4); remedy: change the initialisation.
* ``lr_too_high``: with a sane initialisation, the median update-to-weight ratio over
  layers is above `UPDATE_RATIO_HIGH` on a sampled step, or the (smoothed) loss rises
  above `DIVERGENCE_FACTOR` times its starting value (divergence), or it becomes
  non-finite after rising; remedy: lower the rate by a stated factor, clip at a stated norm.
* ``exploding_gradients`` (otherwise): the total gradient norm on a sampled step exceeds
  `GRAD_GROWTH` times its early median; reported as a consequence when the rate is too high.
* ``vanishing_gradients``: the relative gradient (grad norm / weight norm) of the first
  layer is below `VANISH_RATIO` times that of the last layer on most sampled steps.
* ``dead_units``: a ReLU-like module has at least `DEAD_SHARE` of its units dead on most
  sampled steps; the layer named is the parameter-owning module just before it.
* ``lr_too_low``: even the fastest-moving layer's update-to-weight ratio stays below
  `UPDATE_RATIO_LOW` (a healthy ratio is around 1e-3); remedy: raise the rate by a stated
  factor.
* ``overfitting``: the (smoothed) validation loss rose more than `OVERFIT_RISE` above its
  minimum while the training loss kept falling; remedy: stop early at the step of the
  minimum, add dropout or weight decay.
* ``plateau``: over the last quarter of the run the training loss improved by less than
  `PLATEAU_IMPROVEMENT` and is still above half of its starting value; never high severity.

`Watch.findings` ranks root causes first (an abnormal init or a too-high rate before the
exploding gradients and NaNs they cause; a too-low rate or vanishing gradients before the
plateau they cause), then by severity and step.

TensorBoard: when ``logdir`` is set and the ``tensorboard`` package is importable, the
scalars (and histograms of the weights on sampled steps) are written with
``torch.utils.tensorboard.SummaryWriter``; otherwise a warning says they are skipped.
Store: when ``store`` is given, the history and findings are saved at exit as a JSON
document (``store.put_blob(run, "training", ...)``).

PyTorch Lightning: ``TunelensCallback`` (this module's attribute, built lazily and only
when ``lightning`` or ``pytorch_lightning`` is importable) watches ``trainer.model``.
"""

from __future__ import annotations

import importlib
import json
import math
import warnings
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from tunelens.findings import SEVERITIES, Finding

__all__ = [
    "DEAD_SHARE",
    "DIVERGENCE_FACTOR",
    "GRAD_GROWTH",
    "HEALTHY_RATIO",
    "INIT_GAIN_HIGH",
    "OVERFIT_GAP",
    "OVERFIT_RISE",
    "PLATEAU_IMPROVEMENT",
    "UPDATE_RATIO_HIGH",
    "UPDATE_RATIO_LOW",
    "VANISH_RATIO",
    "Watch",
    "watch",
]

#: init gain ``std(W) * sqrt(fan_in)`` above which the initialisation is abnormal.
INIT_GAIN_HIGH = 8.0
#: median update-to-weight ratio over layers above which the rate is too high.
UPDATE_RATIO_HIGH = 0.05
#: the largest per-layer update-to-weight ratio below which the rate is too low.
UPDATE_RATIO_LOW = 1e-4
#: the update-to-weight ratio a healthy run has; rate changes are sized to reach it.
HEALTHY_RATIO = 3e-3
#: smoothed loss above this multiple of its start means divergence.
DIVERGENCE_FACTOR = 1.5
#: total gradient norm above this multiple of its early median means explosion.
GRAD_GROWTH = 50.0
#: first-layer relative gradient below this share of the last layer's means vanishing.
VANISH_RATIO = 1e-2
#: share of a ReLU layer's units dead (zero for the whole batch) that flags it.
DEAD_SHARE = 0.5
#: validation loss this far (relative) above its minimum means overfitting.
OVERFIT_RISE = 0.1
#: validation minus training loss above this share of the starting loss means overfitting.
OVERFIT_GAP = 0.15
#: relative improvement of the training loss over the last quarter below which it plateaus.
PLATEAU_IMPROVEMENT = 0.01

_ACTIVATIONS = frozenset(
    {
        "ReLU",
        "ReLU6",
        "LeakyReLU",
        "PReLU",
        "RReLU",
        "GELU",
        "SiLU",
        "Mish",
        "ELU",
        "CELU",
        "SELU",
        "Sigmoid",
        "Tanh",
        "Softplus",
        "Hardswish",
        "Hardsigmoid",
        "Hardtanh",
    }
)
_RELU_LIKE = frozenset({"ReLU", "ReLU6"})
_LAYERS = frozenset(
    {"Linear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "Bilinear"}
)


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _median(values: Iterable[float]) -> float:
    vals = sorted(v for v in values if math.isfinite(v))
    if not vals:
        return float("nan")
    n = len(vals)
    return vals[n // 2] if n % 2 else 0.5 * (vals[n // 2 - 1] + vals[n // 2])


def _smooth(values: list[float], width: int) -> list[float]:
    out: list[float] = []
    for i in range(len(values)):
        window = values[max(0, i - width + 1) : i + 1]
        out.append(sum(window) / len(window))
    return out


def _power_of_ten(x: float, lo: float = 10.0, hi: float = 1e4) -> float:
    if not math.isfinite(x) or x <= 0:
        return lo
    return float(min(hi, max(lo, 10.0 ** round(math.log10(x)))))


def _fmt(x: float) -> str:
    return f"{x:.3g}"


class Watch:
    """Records one training run; made by `watch`. See the module docstring."""

    def __init__(
        self,
        model: Any,
        optimizer: Any = None,
        *,
        every: int = 10,
        logdir: str | None = None,
        store: Any = None,
        run: str | None = None,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self.model = model
        self.optimizer = optimizer
        self.every = int(every)
        self.logdir = logdir
        self.store = store
        self.run = run or type(model).__name__
        self._t = 0
        self._rows: list[dict[str, float | None]] = []
        self.samples: list[dict[str, Any]] = []
        self._hooks: list[Any] = []
        self._acts: dict[str, list[Any]] = {}
        self._snapshot: dict[str, list[Any]] | None = None
        self._writer: Any = None
        self._active = False
        self.init_gain: dict[str, float] = {}
        # parameter-owning layers in registration order; activation modules with the
        # layer they follow
        self._layers: list[tuple[str, Any, list[Any]]] = []
        self._act_modules: list[tuple[str, Any, str]] = []
        self._out_modules: list[tuple[str, Any]] = []
        last_layer = ""
        for name, module in model.named_modules():
            params = [p for p in module.parameters(recurse=False) if p.requires_grad]
            cls = type(module).__name__
            if params:
                self._layers.append((name, module, params))
                last_layer = name
            if cls in _ACTIVATIONS:
                self._act_modules.append((name, module, last_layer))
            elif cls in _LAYERS:
                self._out_modules.append((name, module))

    # -- context manager ------------------------------------------------------------

    def __enter__(self) -> Watch:
        self._active = True
        self._measure_init()
        if self.logdir is not None:
            self._open_writer()
        self._prepare_sample()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Remove hooks, close the TensorBoard writer and save to the store."""
        if not self._active:
            return
        self._active = False
        self._remove_hooks()
        self._snapshot = None
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
        if self.store is not None:
            doc = {
                "history": self.history_dict(),
                "findings": [f.to_dict() for f in self.findings()],
            }
            self.store.put_blob(self.run, "training", json.dumps(doc, default=str).encode())

    # -- recording ------------------------------------------------------------------

    def _measure_init(self) -> None:
        for name, module, _ in self._layers:
            weight = getattr(module, "weight", None)
            if weight is None or weight.dim() < 2:
                continue
            fan_in = weight[0].numel()
            w = weight.detach().float()
            self.init_gain[name] = float(w.std()) * math.sqrt(fan_in)

    def _open_writer(self) -> None:
        try:
            importlib.import_module("tensorboard")
            SummaryWriter = importlib.import_module("torch.utils.tensorboard").SummaryWriter
        except ImportError:
            warnings.warn(
                "tunelens.watch: logdir is set but the 'tensorboard' package is not installed; "
                "TensorBoard event files are skipped (pip install tensorboard)",
                stacklevel=3,
            )
            return
        self._writer = SummaryWriter(log_dir=self.logdir)

    def _sampled(self, t: int) -> bool:
        return t % self.every == 0

    def _prepare_sample(self) -> None:
        """Before the forward pass of a sampled step: hooks on, weights copied."""
        self._snapshot = {
            name: [p.detach().clone() for p in params] for name, _, params in self._layers
        }
        self._acts = {}
        for name, module, _ in self._act_modules:
            relu = type(module).__name__ in _RELU_LIKE
            self._hooks.append(module.register_forward_hook(self._act_hook(name, relu)))
        for name, module in self._out_modules:
            self._hooks.append(module.register_forward_hook(self._act_hook(name, False)))

    def _act_hook(self, name: str, relu: bool) -> Any:
        import torch

        def hook(module: Any, inputs: Any, output: Any) -> None:
            if not module.training or not torch.is_grad_enabled():
                return
            if not isinstance(output, torch.Tensor) or not output.is_floating_point():
                return
            out = output.detach()
            stats = [out.mean(), out.std() if out.numel() > 1 else out.new_zeros(())]
            stats.append((out == 0).float().mean())
            if relu and out.dim() >= 2:
                per_unit = out.transpose(0, 1).reshape(out.shape[1], -1)
                stats.append((per_unit.abs().amax(dim=1) == 0).float().mean())
            self._acts[name] = stats

        return hook

    def _remove_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def _lr(self) -> float | None:
        if self.optimizer is None:
            return None
        try:
            return float(self.optimizer.param_groups[0]["lr"])
        except (AttributeError, IndexError, KeyError, TypeError, ValueError):
            return None

    def step(self, loss: Any, val_loss: Any = None, val_metric: Any = None) -> None:
        """Record one training step: call after ``loss.backward()`` (see module doc)."""
        t = self._t
        row: dict[str, float | None] = {
            "step": float(t),
            "loss": float(loss.detach()) if hasattr(loss, "detach") else float(loss),
            "lr": self._lr(),
            "val_loss": None if val_loss is None else float(val_loss),
            "val_metric": None if val_metric is None else float(val_metric),
        }
        self._rows.append(row)
        if self._active and self._sampled(t):
            self._record_sample(t, row)
        self._t = t + 1
        if self._active and self._sampled(self._t):
            self._prepare_sample()
        if self._writer is not None:
            for key in ("loss", "lr", "val_loss", "val_metric"):
                value = row[key]
                if value is not None:
                    self._writer.add_scalar(f"train/{key}", value, t)

    def _record_sample(self, t: int, row: dict[str, float | None]) -> None:
        import torch

        self._remove_hooks()
        names: list[str] = []
        values: list[Any] = []
        zero = torch.zeros(())
        for name, _, params in self._layers:
            grads = [p.grad.detach().float().norm() for p in params if p.grad is not None]
            g = torch.stack(grads).norm() if grads else zero
            w = torch.stack([p.detach().float().norm() for p in params]).norm()
            snap = self._snapshot.get(name) if self._snapshot is not None else None
            if snap is not None:
                diffs = [(p.detach() - s).float().norm() for p, s in zip(params, snap, strict=True)]
                before = torch.stack([s.float().norm() for s in snap]).norm()
                u = torch.stack(diffs).norm() / before.clamp_min(1e-12)
            else:
                u = torch.full((), float("nan"))
            names += [f"grad_norm/{name}", f"weight_norm/{name}", f"update_ratio/{name}"]
            values += [g.cpu(), w.cpu(), u.cpu()]
        for name, stats in self._acts.items():
            keys = ["act_mean", "act_std", "act_zero", "dead_share"][: len(stats)]
            names += [f"{k}/{name}" for k in keys]
            values += [s.cpu() for s in stats]
        numbers = torch.stack(values).tolist() if values else []
        sample: dict[str, Any] = {"step": t, "loss": row["loss"]}
        sample.update(zip(names, numbers, strict=True))
        self.samples.append(sample)
        self._snapshot = None
        self._acts = {}
        if self._writer is not None:
            for key, value in sample.items():
                if key not in ("step", "loss") and _finite(value):
                    self._writer.add_scalar(key, value, t)
            for name, _, params in self._layers:
                for i, p in enumerate(params):
                    self._writer.add_histogram(f"weights/{name}/{i}", p.detach().cpu(), t)

    # -- results --------------------------------------------------------------------

    def history_dict(self) -> dict[str, list[float | None]]:
        """Per-step scalars (one entry per `step` call); sampled columns are None between."""
        by_step = {s["step"]: s for s in self.samples}
        keys: list[str] = ["step", "loss", "lr", "val_loss", "val_metric"]
        extra: list[str] = []
        for s in self.samples:
            for k in s:
                if k not in keys and k not in extra:
                    extra.append(k)
        out: dict[str, list[float | None]] = {k: [] for k in keys + extra}
        for row in self._rows:
            sample = by_step.get(int(row["step"] or 0), {})
            for k in keys:
                out[k].append(row[k])
            for k in extra:
                out[k].append(sample.get(k))
        return out

    @property
    def history(self) -> Any:
        """Per-step scalars as a pandas DataFrame (NaN where not sampled)."""
        import pandas as pd

        df = pd.DataFrame(self.history_dict())
        if not df.empty:
            df["step"] = df["step"].astype(int)
        return df

    def findings(self) -> list[Finding]:
        """Ranked findings: root causes first, then by severity and step."""
        return _diagnose(self)


# -- detection -------------------------------------------------------------------------


def _layer_series(samples: list[dict[str, Any]], prefix: str, layer: str) -> list[float]:
    return [float(s.get(f"{prefix}/{layer}", float("nan"))) for s in samples]


def _diagnose(w: Watch) -> list[Finding]:
    rows = w._rows
    if not rows:
        return []
    found: list[tuple[int, Finding]] = []  # (priority, finding)
    losses = [float(r["loss"]) if r["loss"] is not None else float("nan") for r in rows]
    layer_names = [name for name, _, _ in w._layers]
    weight_layers = [n for n in layer_names if n in w.init_gain]

    # -- non-finite --------------------------------------------------------------------
    first_nf: int | None = None
    nf_what = ""
    for i, v in enumerate(losses):
        if not math.isfinite(v):
            first_nf, nf_what = i, "loss"
            break
    for s in w.samples:
        if first_nf is not None and s["step"] >= first_nf:
            break
        bad = [
            k.split("/", 1)[1]
            for k, v in s.items()
            if k.startswith("grad_norm/") and not math.isfinite(v)
        ]
        if bad:
            first_nf, nf_what = s["step"], f"gradients of {', '.join(bad[:3])}"
            break
    end = first_nf if first_nf is not None else len(rows)
    clean = losses[:end]
    samples = [s for s in w.samples if s["step"] < end]

    # -- initialisation ------------------------------------------------------------------
    bad_init = {n: g for n, g in w.init_gain.items() if g > INIT_GAIN_HIGH}
    early_grad = _median(
        math.sqrt(sum(v * v for k, v in s.items() if k.startswith("grad_norm/")))
        for s in samples[:3]
    )
    if bad_init:
        names = sorted(bad_init, key=lambda n: -bad_init[n])
        worst = names[0]
        found.append(
            (
                0,
                Finding(
                    "exploding_gradients",
                    "high",
                    ", ".join(names[:4]) + (" ..." if len(names) > 4 else ""),
                    f"initial weight gain std*sqrt(fan_in) = {_fmt(bad_init[worst])} in "
                    f"{worst} (default init is about 0.6-1.4); total gradient norm at the "
                    f"start {_fmt(early_grad)}, starting loss {_fmt(losses[0])}",
                    "change the initialisation: use the framework default or Kaiming/Xavier "
                    f"init (scale the weights of {worst} down by about "
                    f"{_fmt(_power_of_ten(bad_init[worst]))}x)",
                    step=0,
                ),
            )
        )

    # -- learning rate too high ------------------------------------------------------------
    lr_high_step: int | None = None
    lr_high_evidence = ""
    ratio_med: list[tuple[int, float]] = []
    for s in samples:
        r = _median(s.get(f"update_ratio/{n}", float("nan")) for n in layer_names)
        if math.isfinite(r):
            ratio_med.append((s["step"], r))
    high = [(st, r) for st, r in ratio_med if r > UPDATE_RATIO_HIGH]
    start_loss = _median(clean[:3]) if clean else float("nan")
    smooth = _smooth(clean, 5)
    diverge_at = next(
        (i for i, v in enumerate(smooth) if i > 0 and v > DIVERGENCE_FACTOR * start_loss), None
    )
    if high:
        lr_high_step = high[0][0]
        worst_ratio = max(r for _, r in high)
        lr_high_evidence = (
            f"median update/weight ratio {_fmt(worst_ratio)} per step (healthy is about 1e-3)"
        )
    if diverge_at is not None and math.isfinite(start_loss):
        lr_high_step = diverge_at if lr_high_step is None else min(lr_high_step, diverge_at)
        lr_high_evidence += ("; " if lr_high_evidence else "") + (
            f"loss rose from {_fmt(start_loss)} to {_fmt(max(clean))} (divergence)"
        )
    if first_nf is not None and nf_what == "loss" and first_nf > 0:
        before = clean[max(0, first_nf - 5) :]
        if before and max(before) > DIVERGENCE_FACTOR * start_loss:
            lr_high_step = first_nf if lr_high_step is None else lr_high_step
    if lr_high_step is not None and not bad_init:
        ratio_now = max((r for _, r in high), default=float("nan"))
        factor = _power_of_ten(ratio_now / HEALTHY_RATIO) if math.isfinite(ratio_now) else 10.0
        lr = rows[lr_high_step]["lr"]
        target = f" (to about {_fmt(lr / factor)})" if lr else ""
        clip = 2.0 * early_grad if math.isfinite(early_grad) and early_grad > 0 else 1.0
        nf_note = f"; loss became non-finite at step {first_nf}" if first_nf is not None else ""
        found.append(
            (
                0,
                Finding(
                    "lr_too_high",
                    "high",
                    "optimizer",
                    lr_high_evidence + nf_note,
                    f"lower the learning rate by about {_fmt(factor)}x{target}; "
                    f"clip gradients at norm {_fmt(clip)}",
                    step=lr_high_step,
                ),
            )
        )
    lr_high = lr_high_step is not None and not bad_init

    # -- exploding gradients (not from init) ---------------------------------------------------
    if not bad_init and math.isfinite(early_grad) and early_grad > 0:
        for s in samples:
            total = math.sqrt(sum(v * v for k, v in s.items() if k.startswith("grad_norm/")))
            if total > GRAD_GROWTH * early_grad:
                layer = max(layer_names, key=lambda n: float(s.get(f"grad_norm/{n}", 0.0) or 0.0))
                because = " (a consequence of the learning rate being too high)" if lr_high else ""
                found.append(
                    (
                        2 if lr_high else 0,
                        Finding(
                            "exploding_gradients",
                            "medium" if lr_high else "high",
                            layer,
                            f"total gradient norm {_fmt(total)} at step {s['step']}, "
                            f"{_fmt(total / early_grad)}x its early median {_fmt(early_grad)}"
                            + because,
                            f"clip gradients at norm {_fmt(2 * early_grad)}"
                            + ("; lower the learning rate" if lr_high else ""),
                            step=s["step"],
                        ),
                    )
                )
                break

    # -- non-finite ------------------------------------------------------------------------
    if first_nf is not None:
        consequence = lr_high or bool(bad_init)
        found.append(
            (
                2 if consequence else 0,
                Finding(
                    "non_finite",
                    "medium" if consequence else "high",
                    nf_what if nf_what != "loss" else "loss",
                    f"{nf_what} became NaN/Inf at step {first_nf} after "
                    + (
                        "the loss diverged"
                        if consequence
                        else f"a finite loss of {_fmt(clean[-1]) if clean else 'n/a'}"
                    ),
                    (
                        "fix the cause above (learning rate / initialisation)"
                        if consequence
                        else f"check the input batch of step {first_nf} for NaN/Inf "
                        "(skip or sanitise non-finite batches, e.g. torch.nan_to_num); "
                        "torch.autograd.set_detect_anomaly(True) finds the operation"
                    ),
                    step=first_nf,
                ),
            )
        )

    # -- vanishing gradients -------------------------------------------------------------------
    vanishing = False
    if len(weight_layers) >= 3 and samples:
        first, last = weight_layers[0], weight_layers[-1]
        ratios: list[tuple[int, float]] = []
        for s in samples:
            g1, w1 = s.get(f"grad_norm/{first}"), s.get(f"weight_norm/{first}")
            g2, w2 = s.get(f"grad_norm/{last}"), s.get(f"weight_norm/{last}")
            if g1 is None or g2 is None or not w1 or not w2 or not g2:
                continue
            ratios.append((s["step"], (g1 / w1) / (g2 / w2)))
        low = [(st, r) for st, r in ratios if r < VANISH_RATIO]
        if ratios and len(low) > len(ratios) / 2 and not bad_init:
            vanishing = True
            med = _median(r for _, r in ratios)
            found.append(
                (
                    1,
                    Finding(
                        "vanishing_gradients",
                        "high" if med < VANISH_RATIO / 10 else "medium",
                        first,
                        f"relative gradient (grad/weight norm) of the first layer {first} is "
                        f"{_fmt(med)}x that of the last layer {last} (median over "
                        f"{len(ratios)} sampled steps) across {len(weight_layers)} layers",
                        "change the activation (ReLU/GELU instead of sigmoid/tanh) or the "
                        "initialisation (Kaiming), add normalisation or residual connections",
                        step=low[0][0],
                    ),
                )
            )

    # -- dead units -------------------------------------------------------------------------
    for name, module, layer in w._act_modules:
        if type(module).__name__ not in _RELU_LIKE:
            continue
        series = [(s["step"], s.get(f"dead_share/{name}")) for s in samples]
        series_f = [(st, float(v)) for st, v in series if v is not None]
        if not series_f:
            continue
        flagged = [(st, v) for st, v in series_f if v >= DEAD_SHARE]
        if len(flagged) <= len(series_f) / 2:
            continue
        med = _median(v for _, v in series_f)
        where = f"{layer} (activation {name})" if layer else name
        found.append(
            (
                1,
                Finding(
                    "dead_units",
                    "high" if med >= 0.9 else "medium",
                    where,
                    f"{_fmt(100 * med)}% of the units after {name} are zero for every example "
                    f"(median over {len(series_f)} sampled steps)",
                    f"change the initialisation of {layer or name} (zero or small positive "
                    "bias, Kaiming init), lower the learning rate, or use LeakyReLU/GELU",
                    step=flagged[0][0],
                ),
            )
        )

    # -- learning rate too low ----------------------------------------------------------------
    lr_low = False
    fastest = []
    for s in samples:
        vals = [s.get(f"update_ratio/{n}", float("nan")) for n in layer_names]
        vals = [v for v in vals if math.isfinite(v) and v > 0]
        if vals:
            fastest.append((s["step"], max(vals)))
    if fastest and not lr_high and not bad_init:
        med = _median(v for _, v in fastest)
        if med < UPDATE_RATIO_LOW:
            lr_low = True
            factor = _power_of_ten(HEALTHY_RATIO / med)
            lr = rows[0]["lr"]
            target = f" (to about {_fmt(lr * factor)})" if lr else ""
            found.append(
                (
                    1,
                    Finding(
                        "lr_too_low",
                        "high" if med < UPDATE_RATIO_LOW / 10 else "medium",
                        "optimizer",
                        f"the largest per-layer update/weight ratio is {_fmt(med)} per step "
                        "(median over sampled steps; healthy is about 1e-3)",
                        f"raise the learning rate by about {_fmt(factor)}x{target}",
                        step=fastest[0][0],
                    ),
                )
            )

    # -- overfitting -------------------------------------------------------------------------
    val = [
        (int(r["step"] or 0), float(r["val_loss"]))
        for r in rows[:end]
        if r["val_loss"] is not None and math.isfinite(float(r["val_loss"]))
    ]
    if len(val) >= 5 and clean:
        vs = _smooth([v for _, v in val], 3)
        train_s = _smooth(clean, 20)
        m = min(range(len(vs)), key=lambda i: vs[i])
        best_step, best = val[m][0], vs[m]
        tail = vs[-3:]
        rising = (
            m < len(vs) - 3
            and best > 0
            and min(tail) > best * (1 + OVERFIT_RISE)
            and train_s[-1] < train_s[min(best_step, len(train_s) - 1)]
        )
        scale = abs(start_loss) if math.isfinite(start_loss) and start_loss != 0 else 1.0
        gaps = [
            (st, v - train_s[min(st, len(train_s) - 1)]) for (st, _), v in zip(val, vs, strict=True)
        ]
        wide = [st for st, g in gaps[-3:] if g > OVERFIT_GAP * scale]
        gap_now = gaps[-1][1]
        if rising or len(wide) == 3:
            began = best_step
            if not rising:
                began = next(st for st, g in gaps if g > OVERFIT_GAP * scale)
            rise = vs[-1] / best - 1 if best > 0 else 0.0
            stop = (
                f"stop early at step {best_step} (lowest validation loss)"
                if m < len(vs) - 3
                else "stop early once the validation loss stops falling"
            )
            found.append(
                (
                    1,
                    Finding(
                        "overfitting",
                        "high" if rise > 1.0 or gap_now > 3 * OVERFIT_GAP * scale else "medium",
                        "validation loss",
                        f"validation loss {_fmt(vs[-1])} is {_fmt(gap_now)} above the training "
                        f"loss {_fmt(train_s[-1])} and {_fmt(100 * rise)}% above its minimum "
                        f"{_fmt(best)} at step {best_step}, while the training loss kept falling",
                        f"{stop}; add dropout or weight decay, or more training data",
                        step=began,
                    ),
                )
            )

    # -- plateau ---------------------------------------------------------------------------
    n = len(clean)
    if n >= 40:
        q = max(10, n // 4)
        recent = sum(clean[-q:]) / q
        earlier = sum(clean[-2 * q : -q]) / q
        first_q = sum(clean[:q]) / q
        stalled = earlier > 0 and (earlier - recent) / earlier < PLATEAU_IMPROVEMENT
        if stalled and recent > 0.5 * first_q:
            explained = lr_low or vanishing
            found.append(
                (
                    3,
                    Finding(
                        "plateau",
                        "low" if explained else "medium",
                        "training loss",
                        f"training loss {_fmt(earlier)} -> {_fmt(recent)} over the last "
                        f"{q} steps, still {_fmt(100 * recent / first_q)}% of its start"
                        + (" (explained by the finding above)" if explained else ""),
                        "fix the finding above"
                        if explained
                        else "raise the learning rate or use a warm restart / schedule; "
                        "check that the labels and inputs carry signal",
                        step=n - 2 * q,
                    ),
                )
            )

    # -- root causes: demote what a too-high rate, a bad init or a dead layer explains ------
    dead_layer = any(f.kind == "dead_units" and f.severity == "high" for _, f in found)
    ranked: list[tuple[int, Finding]] = []
    for prio, f in found:
        cause = ""
        if (lr_high or bad_init) and f.kind in ("dead_units", "vanishing_gradients", "plateau"):
            cause = "the learning rate being too high" if lr_high else "the initialisation"
        elif dead_layer and f.kind == "vanishing_gradients":
            cause = "the dead layer"
        if cause:
            f = Finding(
                f.kind,
                "low" if f.kind == "plateau" else "medium",
                f.where,
                f.evidence.replace(" (explained by the finding above)", "")
                + f" (a consequence of {cause})",
                f.action,
                f.gain,
                f.step,
            )
            prio = 2
        ranked.append((prio, f))
    found = ranked

    order = {s: i for i, s in enumerate(SEVERITIES)}
    found.sort(key=lambda pf: (pf[0], order[pf[1].severity], pf[1].step or 0))
    return [f for _, f in found]


def watch(
    model: Any,
    optimizer: Any = None,
    *,
    every: int = 10,
    logdir: str | None = None,
    store: Any = None,
    run: str | None = None,
) -> Watch:
    """Watch a training loop; use as ``with watch(model, opt) as w: ... w.step(loss)``.

    Args:
        model: a ``torch.nn.Module``.
        optimizer: its optimizer (for the learning rate); optional.
        every: sample gradients, updates and activations every this many steps.
        logdir: write TensorBoard event files here (needs the ``tensorboard`` package).
        store: a `tunelens.store.Store`; the history and findings are saved at exit.
        run: the name used in the store (default: the model's class name).
    """
    return Watch(model, optimizer, every=every, logdir=logdir, store=store, run=run)


def _make_callback() -> type:
    pl: Any
    try:
        pl = importlib.import_module("lightning.pytorch")
    except ImportError:
        try:
            pl = importlib.import_module("pytorch_lightning")
        except ImportError as exc:
            raise ImportError(
                "TunelensCallback needs 'lightning' or 'pytorch_lightning'; install one"
            ) from exc

    class TunelensCallback(pl.Callback):  # type: ignore[misc]
        """Lightning callback: watches ``trainer.model``; ``.watch.findings()`` after fit."""

        def __init__(self, every: int = 10, logdir: str | None = None, store: Any = None):
            super().__init__()
            self.every, self.logdir, self.store = every, logdir, store
            self.watch: Watch | None = None

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            opts = trainer.optimizers
            self.watch = Watch(
                pl_module,
                opts[0] if opts else None,
                every=self.every,
                logdir=self.logdir,
                store=self.store,
            ).__enter__()

        def on_train_batch_end(
            self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
        ) -> None:
            if self.watch is None:
                return
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            if loss is not None:
                self.watch.step(loss)

        def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            if self.watch is not None and self.watch._rows:
                val = trainer.callback_metrics.get("val_loss")
                if val is not None:
                    self.watch._rows[-1]["val_loss"] = float(val)

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            if self.watch is not None:
                self.watch.close()

    return TunelensCallback


def __getattr__(name: str) -> Any:
    if name == "TunelensCallback":
        return _make_callback()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
