"""``compress()``: accuracy-aware compression of a PyTorch model under measured constraints.

Every candidate is built, fine-tuned where it changes weights, and measured for real on
the validation part (metric), on this CPU (latency at ``latency_batch``, p50 and p99) and
as the bytes of the file it would be saved as. The chosen model is the fastest candidate
(p50) that keeps the metric within ``max_drop`` of the original and meets every
constraint; candidates within ``TIE_TOLERANCE`` (10 %) of the fastest p50 count as tied
(batch-1 timings of a few microseconds differ by more than that from run to run), and the
smallest of them wins (then the smallest drop). A candidate must beat the original: one
slower than it beyond that tolerance, or neither faster nor smaller, does not qualify. When
none qualifies, the original is kept and each candidate says why it was not chosen.

Candidates, in the order they are explored (``methods`` picks among them):

* ``export``: the original, unchanged, run by ONNX Runtime (what the runtime alone gives).
* ``quantize_dynamic`` / ``quantize_static``: int8 post-training quantisation, through
  ONNX Runtime (dynamic: MatMul/Gemm weights; static: QDQ, per-channel weights, activations
  calibrated on up to 8 training batches) and, for dynamic, through torch's x86/fbgemm
  kernels (``torch.ao.quantization.quantize_dynamic``, deprecated in torch 2.13 but
  measured for comparison). Layers whose lone quantisation costs more than
  ``SENSITIVITY_SHARE * max_drop`` stay in float.
* ``prune``: structured pruning (units and channels removed, a smaller module with the
  same class and ``forward``), at 25, 50, 75 and 87.5 % of each prunable layer's units,
  lowest importance first (L2 norm in times L2 norm out), each fine-tuned; the ratios stop
  at the first that misses the bar. The most pruned one that holds is then exported to
  ONNX Runtime and quantised (prune, then quantise).
* ``distill``: a student with the pruned architecture at 50, 75 and 87.5 %, re-initialised
  and trained on the teacher's soft targets (temperature 4) plus the hard labels, then
  exported and quantised like the pruned model.
* ``unstructured``: magnitude pruning of 50, 75 and 90 % of each Linear/Conv weight,
  fine-tuned with the mask held; saved as a bit mask plus the non-zero values (float32,
  and int8 per row for the sparsest that holds). Its size shrinks, its speed does not
  (dense kernels).

Importing this module does not import torch; :func:`compress` does. Reach it as
``tunelens.tune.compress``.
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelens.errors import InputError
from tunelens.tune._tune import Constraint, _check_constraints, _json_safe

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "METHODS",
    "SENSITIVITY_SHARE",
    "TIE_TOLERANCE",
    "CompressResult",
    "compress",
    "load_compressed",
]

SCHEMA = "tunelens.compress/1"
#: the methods ``compress`` knows; ``export`` is the runtime change alone
METHODS: tuple[str, ...] = (
    "prune",
    "unstructured",
    "quantize_dynamic",
    "quantize_static",
    "distill",
    "export",
)
_METRICS: tuple[str, ...] = ("accuracy", "mse", "mae")
_MEASURED: tuple[str, ...] = (
    "latency_p50_ms",
    "latency_p99_ms",
    "model_bytes",
    "flops",
    "speedup",
    "size_ratio",
)
#: a layer stays in float when quantising it alone costs more than this share of max_drop
SENSITIVITY_SHARE = 0.5
_PRUNE_RATIOS: tuple[float, ...] = (0.25, 0.5, 0.75, 0.875)
_DISTILL_RATIOS: tuple[float, ...] = (0.5, 0.75, 0.875)
#: p50 latencies within this share of the fastest feasible one count as a tie (smaller wins)
TIE_TOLERANCE = 0.10
_SPARSITIES: tuple[float, ...] = (0.5, 0.75, 0.9)
_FINETUNE_LR = 5e-4
_DISTILL_LR = 2e-3


@dataclass
class CompressResult:
    """Outcome of :func:`compress`.

    Attributes:
        model: the chosen model, callable on a float tensor batch, in eval mode. An
            ``nn.Module`` for torch candidates; an ``OnnxModel`` (``__call__(x) ->
            tensor``, ``save(path)`` writing the ``.onnx`` file, ``onnx_bytes``,
            ``session``) for ONNX Runtime candidates; the original module when nothing
            qualified.
        chosen: the chosen candidate's record; when nothing qualified, the original's
            record (``name="original"``) with ``why_not`` saying what it misses, if
            anything.
        improved: whether a candidate was chosen over the original.
        baseline: the original's measurements (metric, latency, bytes, flops).
        candidates: one record per candidate: ``name``, ``method``, ``settings``,
            ``runtime``, ``metric``, ``drop`` (worse is positive, in metric units),
            ``latency_p50_ms``, ``latency_p99_ms``, ``model_bytes``, ``flops``, ``speedup``
            (the original's p50 / this p50, timed in alternating blocks), ``size_ratio``
            (original bytes / these bytes), ``feasible``, ``why_not``, ``build_s``.
        notes: what was skipped and why (missing packages, unprunable layers, time).
        settings: the call's settings (metric, max_drop, constraints, threads, split).
    """

    model: Any
    chosen: dict[str, Any] | None
    improved: bool
    baseline: dict[str, Any]
    candidates: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    artefact: bytes = b""
    artefact_suffix: str = ".pt"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict, ``schema = "tunelens.compress/1"``."""
        return {
            "schema": SCHEMA,
            "metric": self.settings.get("metric"),
            "max_drop": self.settings.get("max_drop"),
            "constraints": _json_safe(self.settings.get("constraints", [])),
            "settings": _json_safe(self.settings),
            "baseline": _json_safe(self.baseline),
            "chosen": _json_safe(self.chosen),
            "improved": self.improved,
            "candidates": _json_safe(self.candidates),
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        """A plain-text table of every candidate against the original, and the choice."""
        metric = self.settings.get("metric", "metric")
        head = (
            f"{'candidate':<34} {'runtime':<11} {metric:>9} {'drop':>8} {'p50 ms':>8} "
            f"{'p99 ms':>8} {'bytes':>10} {'speedup':>8} {'smaller':>8}  ok  why not"
        )
        b = self.baseline
        lines = [
            head,
            f"{'original':<34} {b['runtime']:<11} {b['metric']:>9.4f} {0:>8.4f} "
            f"{b['latency_p50_ms']:>8.4f} {b['latency_p99_ms']:>8.4f} {b['model_bytes']:>10d} "
            f"{1:>7.2f}x {1:>7.2f}x",
        ]
        for c in self.candidates:
            if c.get("metric") is None:
                lines.append(
                    f"{c['name']:<34} {c['runtime']:<11} {'-':>9} {'':>53}  no  {c['why_not']}"
                )
                continue
            lines.append(
                f"{c['name']:<34} {c['runtime']:<11} {c['metric']:>9.4f} {c['drop']:>8.4f} "
                f"{c['latency_p50_ms']:>8.4f} {c['latency_p99_ms']:>8.4f} {c['model_bytes']:>10d} "
                f"{c['speedup']:>7.2f}x {c['size_ratio']:>7.2f}x  "
                f"{'yes' if c['feasible'] else 'no ':<3} {c['why_not']}"
            )
        if self.improved and self.chosen is not None:
            ch = self.chosen
            lines.append(
                f"chosen: {ch['name']} ({ch['runtime']}): {ch['speedup']:.2f}x faster at p50, "
                f"{ch['size_ratio']:.2f}x smaller, {metric} {ch['metric']:.4f} "
                f"(drop {ch['drop']:.4f})"
            )
        else:
            why = (self.chosen or {}).get("why_not") or ""
            lines.append(
                "chosen: the original (no candidate kept the metric within max_drop and met "
                "every constraint)" + (f"; the original itself misses: {why}" if why else "")
            )
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    def save(self, path: str | os.PathLike[str]) -> list[Path]:
        """Write the chosen model and the report into directory ``path``.

        Files: ``model.onnx`` (ONNX Runtime candidates; load with
        ``onnxruntime.InferenceSession``), ``model.pt`` (torch modules, ``torch.save`` of the
        whole module; load with ``torch.load(..., weights_only=False)``) or
        ``model.packed.pt`` (unstructured candidates; load with :func:`load_compressed`),
        and ``compress.json`` (:meth:`to_dict`).

        Returns:
            The paths written.
        """
        import json

        from tunelens._atomic import write_files

        folder = Path(path)
        files = [
            (folder / f"model{self.artefact_suffix}", self.artefact),
            (folder / "compress.json", json.dumps(self.to_dict(), indent=2).encode()),
        ]
        write_files(files)
        return [p for p, _ in files]


def load_compressed(path: str | os.PathLike[str]) -> Any:
    """Load a model written by :meth:`CompressResult.save` (``.pt``, ``.packed.pt``, ``.onnx``).

    Returns:
        An ``nn.Module`` in eval mode, or an ``OnnxModel`` for ``.onnx`` files.
    """
    import torch

    p = Path(path)
    data = p.read_bytes()
    if p.suffix == ".onnx":
        from tunelens.tune._compress_ort import OnnxModel

        return OnnxModel(data, torch.get_num_threads())
    if p.name.endswith(".packed.pt"):
        from tunelens.tune._compress_prune import load_packed

        return load_packed(data).eval()
    import io

    return torch.load(io.BytesIO(data), weights_only=False).eval()


# ---- validation ---------------------------------------------------------------------------


def _check_args(
    model: Any,
    metric: str,
    max_drop: float,
    constraints: Sequence[Constraint],
    time_budget: float | None,
    methods: Sequence[str] | None,
    seed: int,
    latency_batch: int,
    finetune_epochs: int | None,
) -> tuple[tuple[Constraint, ...], tuple[str, ...]]:
    from torch import nn

    if not isinstance(model, nn.Module):
        raise InputError(
            "model",
            f"expected a torch.nn.Module, got {type(model).__name__}",
            "pass the trained module",
        )
    import torch

    if isinstance(model, torch.jit.ScriptModule):
        raise InputError(
            "model",
            "is a TorchScript module, which cannot be pruned, quantised or copied",
            "pass the Python nn.Module (or an exported program's .module())",
        )
    devices = {str(t.device) for t in [*model.parameters(), *model.buffers()]}
    if devices - {"cpu"}:
        raise InputError(
            "model",
            f"has tensors on {sorted(devices - {'cpu'})}",
            "compress measures CPU latency: pass model.cpu()",
        )
    if metric not in _METRICS:
        raise InputError("metric", f"unknown metric {metric!r}", f"use one of {list(_METRICS)}")
    if (
        isinstance(max_drop, bool)
        or not isinstance(max_drop, int | float)
        or not math.isfinite(max_drop)
    ):
        raise InputError(
            "max_drop", f"must be a finite number, got {max_drop!r}", "e.g. max_drop=0.01"
        )
    if max_drop < 0:
        raise InputError(
            "max_drop",
            f"must be >= 0, got {max_drop}",
            "give the largest acceptable drop in metric units, e.g. 0.01",
        )
    out = _check_constraints(constraints, (*_MEASURED, metric))
    if time_budget is not None and (
        isinstance(time_budget, bool)
        or not isinstance(time_budget, int | float)
        or not time_budget > 0
    ):
        raise InputError(
            "time_budget",
            f"must be None or seconds > 0, got {time_budget!r}",
            "e.g. time_budget=120",
        )
    if methods is None:
        chosen_methods = METHODS
    else:
        if isinstance(methods, str):
            methods = (methods,)
        chosen_methods = tuple(methods)
        if not chosen_methods:
            raise InputError(
                "methods", "is empty", f"use None (all) or a subset of {list(METHODS)}"
            )
        for m in chosen_methods:
            if m not in METHODS:
                raise InputError(
                    "methods", f"unknown method {m!r}", f"use a subset of {list(METHODS)}"
                )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError("seed", f"must be an int, got {seed!r}", "")
    if isinstance(latency_batch, bool) or not isinstance(latency_batch, int) or latency_batch < 1:
        raise InputError(
            "latency_batch", f"must be an int >= 1, got {latency_batch!r}", "e.g. latency_batch=1"
        )
    if finetune_epochs is not None and (
        isinstance(finetune_epochs, bool)
        or not isinstance(finetune_epochs, int)
        or finetune_epochs < 0
    ):
        raise InputError(
            "finetune_epochs", f"must be None or an int >= 0, got {finetune_epochs!r}", ""
        )
    return tuple(out), chosen_methods


# ---- the search ---------------------------------------------------------------------------


class _Search:
    """State of one ``compress`` call: data, the original, the candidates built so far."""

    def __init__(
        self,
        model: nn.Module,
        data: Any,
        metric: str,
        max_drop: float,
        constraints: tuple[Constraint, ...],
        methods: tuple[str, ...],
        deadline: float,
        seed: int,
        latency_batch: int,
        finetune_epochs: int | None,
    ) -> None:
        import torch

        from tunelens.tune import _compress_core as core

        self.core = core
        self.metric = metric
        self.higher = metric == "accuracy"
        self.max_drop = float(max_drop)
        self.constraints = constraints
        self.methods = methods
        self.deadline = deadline
        self.seed = seed
        self.threads = torch.get_num_threads()
        self.data = core.make_data(data, metric, seed, latency_batch)
        self.original = model
        self.teacher = copy.deepcopy(model).eval()
        try:
            with torch.inference_mode():
                out = self.teacher(self.data.x_val[:2])
        except Exception as exc:
            raise InputError(
                "data",
                f"the model fails on inputs of shape {tuple(self.data.x_val[:2].shape)} "
                f"({type(exc).__name__}: {exc})",
                "pass X shaped as the model's input, (n, ...)",
            ) from exc
        if not isinstance(out, torch.Tensor):
            raise InputError(
                "model", "must return one tensor", "wrap the model so forward returns a tensor"
            )
        if (
            metric != "accuracy"
            and out.reshape(len(out), -1).shape[1]
            != self.data.y_val.reshape(len(self.data.y_val), -1).shape[1]
        ):
            raise InputError(
                "data[1] (y)",
                f"model outputs {tuple(out.shape[1:])} per row but y has "
                f"{tuple(self.data.y_val.shape[1:])}",
                "pass y shaped like the model's output",
            )
        if metric == "accuracy" and out.dim() == 2 and out.shape[1] > 1:
            y = self.data.y_val
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= out.shape[1]):
                raise InputError(
                    "data[1] (y)",
                    f"labels run from {int(y.min())} to {int(y.max())} but the model has "
                    f"{out.shape[1]} outputs",
                    f"use class indices 0..{out.shape[1] - 1}",
                )
        n_train = max(self.data.n_train, 1)
        self.epochs = (
            finetune_epochs
            if finetune_epochs is not None
            else int(min(40, max(10, 12000 // n_train)))
        )
        self.notes: list[str] = []
        self.candidates: list[dict[str, Any]] = []
        self.objects: dict[str, tuple[Any, bytes, str]] = {}
        self.base_fn = self.teacher
        self.baseline = self._measure_baseline()
        self.timed_out = False

    # -- measurement --

    def _measure_baseline(self) -> dict[str, Any]:
        core = self.core
        value = core.evaluate(self.teacher, self.data, self.metric)
        times = core.latency(self.teacher, self.data.example, seconds=0.5)
        size = len(core.torch_bytes(self.original))
        return {
            "name": "original",
            "method": "none",
            "settings": {},
            "runtime": "torch",
            "metric": value,
            "drop": 0.0,
            "latency_p50_ms": core.percentile_ms(times, 0.5),
            "latency_p99_ms": core.percentile_ms(times, 0.99),
            "model_bytes": size,
            "flops": self._flops(self.teacher),
            "speedup": 1.0,
            "size_ratio": 1.0,
        }

    def _flops(self, module: Any) -> int | None:
        try:
            from tunelens.diagnose.flops import count_flops

            return int(count_flops(module, (self.data.example,)).flops)
        except Exception:
            return None

    def drop(self, value: float) -> float:
        base = float(self.baseline["metric"])
        return base - value if self.higher else value - base

    def metric_ok(self, value: float) -> bool:
        if self.drop(value) > self.max_drop + 1e-12:
            return False
        return all(c.signed(value) <= 0 for c in self.constraints if c.name == self.metric)

    def _why_not(self, rec: dict[str, Any]) -> str:
        reasons = []
        if rec["drop"] > self.max_drop + 1e-12:
            reasons.append(
                f"{self.metric} drop {rec['drop']:.4f} > max_drop {self.max_drop:g} "
                f"({rec['metric']:.4f} vs {self.baseline['metric']:.4f})"
            )
        for c in self.constraints:
            value = rec["metric"] if c.name == self.metric else rec.get(c.name)
            if value is None:
                reasons.append(f"{c} cannot be checked ({c.name} not measured)")
            elif c.signed(float(value)) > 0:
                reasons.append(f"{c} not met ({c.name} = {float(value):.6g})")
        speedup, size_ratio = rec.get("speedup"), rec.get("size_ratio")
        if speedup is not None and size_ratio is not None:
            if speedup < 1 / (1 + TIE_TOLERANCE):
                reasons.append(f"slower than the original ({speedup:.2f}x)")
            elif speedup <= 1 and size_ratio <= 1:
                reasons.append(
                    f"neither faster ({speedup:.2f}x) nor smaller ({size_ratio:.2f}x) "
                    "than the original"
                )
        return "; ".join(reasons)

    def time_left(self) -> bool:
        if time.monotonic() > self.deadline:
            self.timed_out = True
            return False
        return True

    def record(
        self,
        name: str,
        method: str,
        settings: dict[str, Any],
        runtime: str,
        fn: Any,
        artefact: bytes,
        suffix: str,
        flops_of: Any,
        started: float,
        *,
        value: float | None = None,
    ) -> dict[str, Any]:
        """Measure ``fn`` (metric, paired latency, bytes) and append its record."""
        core = self.core
        if value is None:
            value = core.evaluate(fn, self.data, self.metric)
        times, base = core.latency_paired(fn, self.base_fn, self.data.example)
        p50 = core.percentile_ms(times, 0.5)
        rec: dict[str, Any] = {
            "name": name,
            "method": method,
            "settings": settings,
            "runtime": runtime,
            "metric": value,
            "drop": self.drop(value),
            "latency_p50_ms": p50,
            "latency_p99_ms": core.percentile_ms(times, 0.99),
            "model_bytes": len(artefact),
            "flops": self._flops(flops_of) if flops_of is not None else None,
            "speedup": core.percentile_ms(base, 0.5) / p50 if p50 > 0 else None,
            "size_ratio": self.baseline["model_bytes"] / max(1, len(artefact)),
            "build_s": round(time.monotonic() - started, 3),
        }
        rec["why_not"] = self._why_not(rec)
        rec["feasible"] = rec["why_not"] == ""
        self.candidates.append(rec)
        self.objects[name] = (fn, artefact, suffix)
        return rec

    def failed(
        self, name: str, method: str, settings: dict[str, Any], runtime: str, why: str
    ) -> None:
        self.candidates.append(
            {
                "name": name,
                "method": method,
                "settings": settings,
                "runtime": runtime,
                "metric": None,
                "drop": None,
                "latency_p50_ms": None,
                "latency_p99_ms": None,
                "model_bytes": None,
                "flops": None,
                "speedup": None,
                "size_ratio": None,
                "feasible": False,
                "why_not": why,
                "build_s": None,
            }
        )

    # -- candidates --

    def torch_module(
        self, name: str, method: str, settings: dict[str, Any], module: nn.Module, started: float
    ) -> dict[str, Any]:
        module.eval()
        return self.record(
            name,
            method,
            settings,
            "torch",
            module,
            self.core.torch_bytes(module),
            ".pt",
            module,
            started,
        )

    def deploy(
        self, tag: str, method_prefix: str | None, settings: dict[str, Any], module: nn.Module
    ) -> None:
        """ONNX Runtime float, dynamic int8, static int8 and torch dynamic int8 of ``module``."""
        from tunelens.tune import _compress_ort as ortp

        missing = ortp.available()
        quant = [m for m in ("quantize_dynamic", "quantize_static") if m in self.methods]
        float_wanted = method_prefix is not None or "export" in self.methods
        if missing is None and (float_wanted or quant):
            if not self.time_left():
                return
            started = time.monotonic()
            name = f"{tag}@onnxruntime"
            method = method_prefix or "export"
            try:
                onnx_bytes = ortp.export_onnx(module, self.data.example)
                fn = ortp.OnnxModel(onnx_bytes, self.threads)
            except Exception as exc:
                self.failed(name, method, settings, "onnxruntime", f"failed: {str(exc)[:300]}")
                onnx_bytes = b""
            else:
                if float_wanted:
                    self.record(
                        name,
                        method,
                        {**settings},
                        "onnxruntime",
                        fn,
                        onnx_bytes,
                        ".onnx",
                        module,
                        started,
                    )
            if onnx_bytes:
                for qm in quant:
                    if self.time_left():
                        static = qm == "quantize_static"
                        self._ort_quant(tag, method_prefix, settings, module, onnx_bytes, static)
        elif missing is not None and (quant or "export" in self.methods):
            note = f"ONNX Runtime candidates skipped: {missing}"
            if note not in self.notes:
                self.notes.append(note)
        if "quantize_dynamic" in self.methods and self.time_left():
            self._torch_dynamic(tag, method_prefix, settings, module)

    def _ort_quant(
        self,
        tag: str,
        prefix: str | None,
        settings: dict[str, Any],
        module: nn.Module,
        onnx_bytes: bytes,
        static: bool,
    ) -> None:
        from tunelens.tune import _compress_ort as ortp

        started = time.monotonic()
        kind = "static" if static else "dynamic"
        method = f"{prefix}+quantize_{kind}" if prefix else f"quantize_{kind}"
        name = f"{tag}+int8-{kind}@onnxruntime"
        try:
            calib = self.data.calibration
            float_value = self.core.evaluate(
                ortp.OnnxModel(onnx_bytes, self.threads), self.data, self.metric
            )
            nodes = ortp.quantizable_nodes(onnx_bytes)
            if not static:
                import onnx

                graph = onnx.load_from_string(onnx_bytes).graph
                kinds = {n.name: n.op_type for n in graph.node}
                nodes = [n for n in nodes if kinds[n] in ("MatMul", "Gemm")]
            if not nodes:
                self.failed(
                    name,
                    method,
                    settings,
                    "onnxruntime",
                    "no MatMul/Gemm layers to quantise dynamically",
                )
                return
            sens: dict[str, float] = {}
            for node in nodes:
                if not self.time_left():
                    return
                q = ortp.quantize_onnx(onnx_bytes, static=static, calibration=calib, only=[node])
                v = self.core.evaluate(ortp.OnnxModel(q, self.threads), self.data, self.metric)
                sens[node] = (float_value - v) if self.higher else (v - float_value)
            limit = SENSITIVITY_SHARE * self.max_drop
            keep_float = [n for n, d in sens.items() if d > limit]
            if len(keep_float) == len(nodes):
                self.failed(
                    name,
                    method,
                    settings,
                    "onnxruntime",
                    f"every layer is sensitive (drop > {limit:g} when quantised alone): "
                    + _fmt(sens),
                )
                return
            q = ortp.quantize_onnx(onnx_bytes, static=static, calibration=calib, exclude=keep_float)
            fn = ortp.OnnxModel(q, self.threads)
        except Exception as exc:
            self.failed(
                name,
                method,
                settings,
                "onnxruntime",
                f"failed: {type(exc).__name__}: {str(exc)[:300]}",
            )
            return
        s = {**settings, "quantize": kind, "kept_float": keep_float, "sensitivity": sens}
        self.record(name, method, s, "onnxruntime", fn, q, ".onnx", module, started)

    def _torch_dynamic(
        self, tag: str, prefix: str | None, settings: dict[str, Any], module: nn.Module
    ) -> None:
        import torch
        from torch import nn

        started = time.monotonic()
        method = f"{prefix}+quantize_dynamic" if prefix else "quantize_dynamic"
        name = f"{tag}+int8-dynamic@torch"
        linears = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            return
        previous = torch.backends.quantized.engine
        # fbgemm's packed weights run at batch 1 in microseconds; the default x86 engine
        # (oneDNN for small batches) was measured 1000x slower here with 2 threads
        engine = "fbgemm" if "fbgemm" in torch.backends.quantized.supported_engines else previous
        torch.backends.quantized.engine = engine
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from torch.ao.quantization import quantize_dynamic

                float_value = self.core.evaluate(module, self.data, self.metric)
                sens: dict[str, float] = {}
                for layer in linears:
                    if not self.time_left():
                        return
                    q = quantize_dynamic(copy.deepcopy(module), {layer}, dtype=torch.qint8)  # type: ignore[no-untyped-call]
                    v = self.core.evaluate(q, self.data, self.metric)
                    sens[layer] = (float_value - v) if self.higher else (v - float_value)
                limit = SENSITIVITY_SHARE * self.max_drop
                keep_float = [n for n, d in sens.items() if d > limit]
                chosen = {n for n in linears if n not in keep_float}
                if not chosen:
                    self.failed(
                        name, method, settings, "torch", f"every Linear is sensitive: {_fmt(sens)}"
                    )
                    return
                q = quantize_dynamic(  # type: ignore[no-untyped-call]
                    copy.deepcopy(module), chosen, dtype=torch.qint8
                ).eval()
                artefact = self.core.torch_bytes(q)
        except Exception as exc:
            self.failed(
                name, method, settings, "torch", f"failed: {type(exc).__name__}: {str(exc)[:300]}"
            )
            return
        finally:
            torch.backends.quantized.engine = previous
        s = {
            **settings,
            "quantize": "dynamic",
            "engine": engine,
            "kept_float": keep_float,
            "sensitivity": sens,
        }
        self.record(name, method, s, "torch", q, artefact, ".pt", module, started)

    def structured(
        self, groups: list[Any], ratios: Sequence[float], distill: bool
    ) -> list[tuple[float, nn.Module]]:
        """Pruned (or distilled) modules per ratio that hold the metric, most reduced first."""
        from tunelens.tune._compress_prune import prune_structured

        held: list[tuple[float, nn.Module]] = []
        method = "distill" if distill else "prune"
        for ratio in ratios:
            if not self.time_left():
                break
            started = time.monotonic()
            name = f"{method}-{ratio:.2%}".replace(".00%", "%")
            settings = {"ratio": ratio, "layers": [g.producer for g in groups]}
            small = prune_structured(self.teacher, groups, ratio)
            if distill:
                _reinit(small, self.seed)
                epochs = max(2 * self.epochs, 10)
                settings.update(epochs=epochs, lr=_DISTILL_LR, temperature=4.0, alpha=0.7)
                done = self.core.train(
                    small,
                    self.data,
                    self.metric,
                    epochs=epochs,
                    lr=_DISTILL_LR,
                    deadline=self.deadline,
                    teacher=self.teacher,
                )
            else:
                settings.update(epochs=self.epochs, lr=_FINETUNE_LR, importance="l2_in*l2_out")
                done = self.core.train(
                    small,
                    self.data,
                    self.metric,
                    epochs=self.epochs,
                    lr=_FINETUNE_LR,
                    deadline=self.deadline,
                )
            if not done:
                self.timed_out = True
                break
            rec = self.torch_module(name, method, settings, small, started)
            if not self.metric_ok(rec["metric"]):
                break
            held.insert(0, (ratio, small))
        return held

    def unstructured(self) -> None:
        from tunelens.tune._compress_prune import (
            apply_masks,
            load_packed,
            magnitude_masks,
            pack_model,
        )

        best: tuple[float, Any] | None = None
        for sparsity in _SPARSITIES:
            if not self.time_left():
                return
            started = time.monotonic()
            sparse = copy.deepcopy(self.teacher)
            masks = magnitude_masks(sparse, sparsity)
            if not masks:
                self.notes.append("unstructured: no Linear/Conv weights to prune")
                return
            apply_masks(sparse, masks)
            done = self.core.train(
                sparse,
                self.data,
                self.metric,
                epochs=self.epochs,
                lr=_FINETUNE_LR,
                deadline=self.deadline,
                after_step=lambda s=sparse, m=masks: apply_masks(s, m),  # type: ignore[misc]
            )
            if not done:
                self.timed_out = True
                return
            packed = pack_model(sparse, "float32")
            module = load_packed(packed).eval()
            settings = {
                "sparsity": sparsity,
                "values": "float32",
                "epochs": self.epochs,
                "storage": "bitmask+values",
            }
            rec = self.record(
                f"unstructured-{sparsity:.0%}",
                "unstructured",
                settings,
                "torch",
                module,
                packed,
                ".packed.pt",
                module,
                started,
            )
            if not self.metric_ok(rec["metric"]):
                break
            best = (sparsity, sparse)
        if best is not None and self.time_left():
            started = time.monotonic()
            packed = pack_model(best[1], "int8")
            module = load_packed(packed).eval()
            settings = {"sparsity": best[0], "values": "int8 per row", "storage": "bitmask+values"}
            self.record(
                f"unstructured-{best[0]:.0%}+int8",
                "unstructured",
                settings,
                "torch",
                module,
                packed,
                ".packed.pt",
                module,
                started,
            )


def _fmt(sens: dict[str, float]) -> str:
    return ", ".join(f"{k}: {v:.4f}" for k, v in sens.items())


def _reinit(module: nn.Module, seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    for m in module.modules():
        reset: Callable[[], None] | None = getattr(m, "reset_parameters", None)
        if reset is not None and m is not module:
            reset()
    for m in module.modules():
        reset_stats: Callable[[], None] | None = getattr(m, "reset_running_stats", None)
        if reset_stats is not None:
            reset_stats()


def compress(
    model: nn.Module,
    *,
    data: Any,
    metric: str = "accuracy",
    max_drop: float = 0.01,
    constraints: Sequence[Constraint] = (),
    time_budget: float | None = None,
    methods: Sequence[str] | None = None,
    seed: int = 0,
    latency_batch: int = 1,
    finetune_epochs: int | None = None,
) -> CompressResult:
    """Compress a trained PyTorch model as far as the metric and the constraints allow.

    Args:
        model: the trained ``torch.nn.Module`` (not modified).
        data: ``(X, y)`` arrays or tensors, split with a seeded 80/20 split (stratified by
            class for accuracy) into fine-tuning and validation rows; or a pair of
            DataLoaders ``(train, validation)`` yielding ``(x, y)`` batches, used as they
            are. Pass data the original was not trained on for the validation part, or the
            drop is measured on rows the model has memorised.
        metric: ``"accuracy"`` (classification; outputs are logits, one column per class,
            or one column thresholded at 0), ``"mse"`` or ``"mae"`` (regression).
        max_drop: the largest acceptable loss in metric units (0.01 = one accuracy point,
            or an MSE/MAE increase of 0.01), >= 0.
        constraints: ``Constraint`` over ``latency_p50_ms``, ``latency_p99_ms``,
            ``model_bytes``, ``flops``, ``speedup``, ``size_ratio`` or the metric.
        time_budget: seconds; when spent, exploring stops and the best candidate found so
            far is returned. The original is always measured first.
        methods: a subset of ``METHODS`` (``prune``, ``unstructured``,
            ``quantize_dynamic``, ``quantize_static``, ``distill``, ``export``); ``None``
            tries all that apply.
        seed: seeds the split, fine-tuning order and student initialisation.
        latency_batch: rows per call when timing (batch-1 latency by default).
        finetune_epochs: epochs of fine-tuning after pruning (distillation trains 2x as
            long, at least 10); ``None`` picks ``clip(12000 / training rows, 10, 40)``.

    Returns:
        :class:`CompressResult`; ``result.model`` is the original when nothing qualified.

    Raises:
        InputError: bad ``model``, ``data``, ``metric``, ``max_drop``, ``constraints``,
            ``time_budget``, ``methods``, ``seed``, ``latency_batch`` or
            ``finetune_epochs`` (the message names the field and the accepted values).

    Example:
        >>> result = compress(model, data=(X, y), max_drop=0.01)  # doctest: +SKIP
        >>> print(result.summary())  # doctest: +SKIP
    """
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised without torch only
        raise InputError(
            "model", "compress needs PyTorch", "pip install 'tunelens[torch]'"
        ) from exc
    cons, chosen_methods = _check_args(
        model,
        metric,
        max_drop,
        constraints,
        time_budget,
        methods,
        seed,
        latency_batch,
        finetune_epochs,
    )
    t0 = time.monotonic()
    deadline = t0 + float(time_budget) if time_budget is not None else math.inf
    was_training = model.training
    rng_state = torch.get_rng_state()
    try:
        torch.manual_seed(seed)
        search = _Search(
            model,
            data,
            metric,
            max_drop,
            cons,
            chosen_methods,
            deadline,
            seed,
            latency_batch,
            finetune_epochs,
        )
        _explore(search)
    finally:
        model.train(was_training)
        torch.set_rng_state(rng_state)
    return _finish(search, model, cons, chosen_methods, time_budget, t0)


def _explore(s: _Search) -> None:
    from tunelens.tune._compress_prune import find_groups

    # runtime and quantisation of the original first: cheap, and often most of the win
    s.deploy("original", None, {}, s.teacher)
    groups: list[Any] = []
    if any(m in s.methods for m in ("prune", "distill")):
        groups, why = find_groups(s.teacher, s.data.example)
        if not groups:
            s.notes.append(
                "structured pruning / distillation skipped: no prunable layer ("
                + "; ".join(why)
                + ")"
            )
        elif why:
            s.notes.append("layers kept at full width: " + "; ".join(why))
    if "prune" in s.methods and groups and s.time_left():
        held = s.structured(groups, _PRUNE_RATIOS, distill=False)
        # prune, then quantise: the most pruned model that holds, then the next if its
        # quantised variants all miss the bar
        for ratio, small in held[:2]:
            before = len(s.candidates)
            tag = f"prune-{ratio:.2%}".replace(".00%", "%")
            s.deploy(tag, "prune", {"ratio": ratio, "base": tag}, small)
            if any(c["feasible"] for c in s.candidates[before:]):
                break
    if "distill" in s.methods and groups and s.time_left():
        held = s.structured(groups, _DISTILL_RATIOS, distill=True)
        if held:
            ratio, small = held[0]
            tag = f"distill-{ratio:.2%}".replace(".00%", "%")
            s.deploy(tag, "distill", {"ratio": ratio, "base": tag}, small)
    if "unstructured" in s.methods and s.time_left():
        s.unstructured()
    if s.timed_out:
        s.notes.append(
            "time_budget spent: exploration stopped early; later candidates were not built"
        )


def _finish(
    s: _Search,
    model: nn.Module,
    cons: tuple[Constraint, ...],
    methods: tuple[str, ...],
    time_budget: float | None,
    t0: float,
) -> CompressResult:
    import torch

    feasible = [c for c in s.candidates if c["feasible"]]
    settings = {
        "metric": s.metric,
        "max_drop": s.max_drop,
        "constraints": [{"name": c.name, "op": c.op, "bound": c.bound} for c in cons],
        "methods": list(methods),
        "time_budget": time_budget,
        "seed": s.seed,
        "latency_batch": int(s.data.example.shape[0]),
        "threads": s.threads,
        "finetune_epochs": s.epochs,
        "data": s.data.split,
        "sensitivity_share": SENSITIVITY_SHARE,
        "tie_tolerance": TIE_TOLERANCE,
        "torch": torch.__version__,
        "elapsed_s": round(time.monotonic() - t0, 2),
    }
    if feasible:
        fastest = min(c["latency_p50_ms"] for c in feasible)
        tied = [c for c in feasible if c["latency_p50_ms"] <= fastest * (1 + TIE_TOLERANCE)]
        best = min(tied, key=lambda c: (c["model_bytes"], c["drop"], c["latency_p50_ms"]))
        fn, artefact, suffix = s.objects[best["name"]]
        return CompressResult(
            fn, best, True, s.baseline, s.candidates, s.notes, settings, artefact, suffix
        )
    chosen = dict(s.baseline)
    chosen["why_not"] = s._why_not(chosen)
    chosen["feasible"] = chosen["why_not"] == ""
    if not s.candidates:
        s.notes.append("no candidate was built")
    return CompressResult(
        model,
        chosen,
        False,
        s.baseline,
        s.candidates,
        s.notes,
        settings,
        s.core.torch_bytes(model),
        ".pt",
    )
