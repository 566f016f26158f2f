"""Runtime profile of a ``torch.nn.Module``: where the time goes, per layer, and why.

`profile` measures, for one forward pass of inference:

- per module (the whole tree, leaves marked): calls, self and total time (median and
  inter-quartile range over repeats, in ms, and as a share of latency), forward FLOPs
  (`tunelens.diagnose.flops.count_flops`), parameters and their bytes, input and output
  (activation) bytes, arithmetic intensity ``flops / (param + input + output bytes)``,
  achieved FLOP/s against this machine's roofline, and a class: ``compute-bound``,
  ``memory-bound`` or ``overhead-bound``;
- an explicit ``(unattributed)`` row: time spent in parent modules' own code between
  their children (residual adds, reshapes, Python). Leaf self times plus that row add up
  to the forward time measured inside the hooks; `Profile.totals` reports it beside the
  end-to-end time measured without hooks, and the difference, the hook overhead;
- the top operators from ``torch.profiler`` (one profiled run, by self CPU time);
- a batch sweep: latency (median, p90, IQR) and throughput per batch size, the batch
  size past which throughput grows less than 10%, CPU utilisation (psutil) and, on CUDA,
  GPU utilisation and memory (NVML, when available);
- the machine's peaks, from a short matmul and memory-copy benchmark cached per process
  and device;
- `Finding`s ranked by the share of latency they could save.

Roofline classification: with ``t_roof = max(flops / peak_flops, bytes / peak_bandwidth)``
the shortest time the machine allows, a module is *overhead-bound* when it takes more
than 10x ``t_roof`` (achieved FLOP/s below 10% of its roofline bound); otherwise
*compute-bound* when its intensity is at least the machine balance
``peak_flops / peak_bandwidth`` and *memory-bound* below it.

Timing: on CPU, forward pre/post hooks read ``time.perf_counter_ns``; on CUDA they record
``torch.cuda.Event`` pairs, read after one synchronisation per pass. PyTorch is imported
lazily: this module imports without it.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tunelens.diagnose.flops import count_flops, normalise_inputs
from tunelens.findings import Finding, Severity

__all__ = ["Profile", "machine_peaks", "profile"]

#: Overhead-bound when the measured time exceeds this multiple of the roofline time.
OVERHEAD_FACTOR = 10.0
#: The batch sweep "saturates" where the next batch size gains less than this.
KNEE_GAIN = 0.10
UNATTRIBUTED = "(unattributed)"
_DYNAMIC_QUANT_TYPES = ("Linear", "LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell")

_PEAKS: dict[str, dict[str, Any]] = {}


# --------------------------------------------------------------------------- result
@dataclass(frozen=True)
class Profile:
    """What `profile` measured.

    Attributes:
        layers: one row per module (``named_modules`` order, the model itself named
            ``""``), then the ``(unattributed)`` row; times in ms.
        totals: ``flops``, ``macs``, ``params``, ``param_bytes`` (at ``batch_size``),
            ``latency_ms`` per batch size, the end-to-end time without hooks
            (``forward_ms``) and with (``hooked_ms``), ``attributed_ms`` (leaf self
            times plus unattributed), ``hook_overhead_ms`` / ``hook_overhead_share``.
        batch_sweep: ``points`` (one per batch size) and ``saturates_at``.
        operators: top operators of one ``torch.profiler`` run.
        machine: device, peak FLOP/s, peak bandwidth (bytes/s), balance (FLOP/byte).
        findings: ranked by expected saving (share of latency), largest first.
    """

    layers: list[dict[str, Any]]
    totals: dict[str, Any]
    batch_sweep: dict[str, Any]
    operators: list[dict[str, Any]]
    machine: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary (non-finite numbers become ``None``)."""
        out = {
            "layers": self.layers,
            "totals": self.totals,
            "batch_sweep": self.batch_sweep,
            "operators": self.operators,
            "machine": self.machine,
            "findings": [f.to_dict() for f in self.findings],
        }
        safe: dict[str, Any] = _json_safe(out)
        return safe

    def to_json(self, indent: int | None = 2) -> str:
        """`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def leaves(self) -> list[dict[str, Any]]:
        """The leaf-module rows."""
        return [row for row in self.layers if row.get("leaf")]


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.integer):
        return int(value)
    return str(value)


# --------------------------------------------------------------------------- helpers
def _stats(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return {"median": 0.0, "iqr": 0.0, "p90": 0.0}
    q25, q50, q75, q90 = np.percentile(arr, [25, 50, 75, 90])
    return {"median": float(q50), "iqr": float(q75 - q25), "p90": float(q90)}


def _resolve_device(model: Any, device: Any) -> Any:
    import torch

    if device is not None:
        return torch.device(device)
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _to_device(args: tuple[Any, ...], device: Any) -> tuple[Any, ...]:
    import torch

    return tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in args)


def _expand(args: tuple[Any, ...], batch: int) -> tuple[Any, ...]:
    """Inputs with ``batch`` rows: the first row of each tensor repeated along dim 0."""
    import torch

    out = []
    for a in args:
        if isinstance(a, torch.Tensor) and a.dim() >= 1:
            out.append(a[:1].expand(batch, *a.shape[1:]).contiguous())
        else:
            out.append(a)
    return tuple(out)


def _nbytes(value: Any) -> int:
    import torch
    from torch.utils._pytree import tree_leaves

    return int(
        sum(t.numel() * t.element_size() for t in tree_leaves(value) if isinstance(t, torch.Tensor))
    )


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Clock:
    """Timestamps in ms: ``perf_counter_ns`` on CPU, CUDA events on a GPU."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self._origin: Any = None
        # on CPU the hooks call the builtin directly: the cheapest stamp there is
        self.stamp: Callable[[], Any] = self._cuda_stamp if self.cuda else time.perf_counter_ns

    def start(self) -> None:
        import torch

        if self.cuda:
            self._origin = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call, unused-ignore]
            self._origin.record()
        else:
            self._origin = time.perf_counter_ns()

    @staticmethod
    def _cuda_stamp() -> Any:
        import torch

        event = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call, unused-ignore]
        event.record()
        return event

    def ms(self, stamp: Any) -> float:
        """Milliseconds from `start` to ``stamp`` (after a synchronisation on CUDA)."""
        if self.cuda:
            return float(self._origin.elapsed_time(stamp))
        return float(stamp - self._origin) / 1e6


def _time_call(fn: Callable[[], Any], device: Any) -> float:
    """Wall time of one call in ms, device work included."""
    import torch

    if device.type == "cuda":
        start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call, unused-ignore]
        end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call, unused-ignore]
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return float(start.elapsed_time(end))
    t0 = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t0) / 1e6


# --------------------------------------------------------------------------- machine
def machine_peaks(device: Any = None) -> dict[str, Any]:
    """Peak FLOP/s (float32 matmul) and memory bandwidth (tensor copy, bytes read plus
    written per second) of ``device``, measured once per process and device."""
    import torch

    dev = torch.device(device) if device is not None else torch.device("cpu")
    key = str(dev) if dev.type == "cuda" else f"{dev}/threads={torch.get_num_threads()}"
    if key in _PEAKS:
        return dict(_PEAKS[key])
    n = 4096 if dev.type == "cuda" else 1024
    a = torch.randn(n, n, device=dev)
    b = torch.randn(n, n, device=dev)
    reps = 10 if dev.type == "cuda" else 8
    with torch.no_grad():
        torch.mm(a, b)
        best = min(_time_call(lambda: torch.mm(a, b), dev) for _ in range(reps))
        peak_flops = 2.0 * n**3 / (best / 1e3)
        elems = (256 if dev.type == "cuda" else 16) * 1024 * 1024  # 1 GiB / 64 MiB fp32
        src = torch.empty(elems, device=dev).fill_(1.0)
        dst = torch.empty_like(src)
        dst.copy_(src)
        best = min(_time_call(lambda: dst.copy_(src), dev) for _ in range(reps))
        bandwidth = 2.0 * src.numel() * src.element_size() / (best / 1e3)
    name = str(dev)
    if dev.type == "cuda":
        name = f"{dev} ({torch.cuda.get_device_name(dev)})"
    peaks = {
        "device": name,
        "peak_flops": peak_flops,
        "peak_bandwidth": bandwidth,
        "balance": peak_flops / bandwidth,
        "threads": int(torch.get_num_threads()),
        "method": f"float32 {n}x{n} matmul; {elems * 4 >> 20} MiB tensor copy; best of {reps}",
    }
    _PEAKS[key] = peaks
    return dict(peaks)


# --------------------------------------------------------------------------- timing
def _hookable(module: Any) -> bool:
    import torch

    return not isinstance(module, torch.jit.ScriptModule)


class _Hooks:
    """Pre/post forward hooks on every module below the root (index 0), recording
    (index, is_post, stamp); `call` stamps the root from outside. TorchScript modules
    take no hooks: their time stays in their parent's."""

    def __init__(self, modules: list[Any], clock: _Clock) -> None:
        self.modules = modules
        self.clock = clock
        self.events: list[tuple[int, bool, Any]] = []
        self._handles: list[Any] = []

    def attach(self) -> None:
        events = self.events
        stamp = self.clock.stamp
        for i, module in enumerate(self.modules):
            if i == 0 or not _hookable(module):
                continue

            def pre(_m: Any, _a: Any, i: int = i) -> None:
                events.append((i, False, stamp()))

            def post(_m: Any, _a: Any, _o: Any, i: int = i) -> None:
                events.append((i, True, stamp()))

            self._handles.append(module.register_forward_pre_hook(pre))
            self._handles.append(module.register_forward_hook(post))

    def call(self, model: Any, args: tuple[Any, ...]) -> Any:
        """``model(*args)`` with the root's interval stamped around it."""
        self.clock.start()
        self.events.append((0, False, self.clock.stamp()))
        out = model(*args)
        self.events.append((0, True, self.clock.stamp()))
        return out

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def replay(self, n: int) -> tuple[list[float], list[float], list[int]]:
        """Total ms, self ms and calls per module from the recorded events."""
        total = [0.0] * n
        self_ms = [0.0] * n
        calls = [0] * n
        stack: list[list[Any]] = []
        for i, post, st in self.events:
            t = self.clock.ms(st)
            if not post:
                stack.append([i, t, 0.0])
                continue
            while stack and stack[-1][0] != i:  # a child that raised: drop it
                stack.pop()
            if not stack:
                continue
            _, t0, child = stack.pop()
            dt = t - t0
            total[i] += dt
            self_ms[i] += dt - child
            calls[i] += 1
            if stack:
                stack[-1][2] += dt
        self.events.clear()
        return total, self_ms, calls


def _io_bytes(model: Any, modules: list[Any], args: tuple[Any, ...]) -> list[list[int]]:
    """Input and output bytes of each module over one forward pass."""
    sizes = [[0, 0] for _ in modules]
    handles = []
    for i, module in enumerate(modules):
        if i == 0 or not _hookable(module):
            continue

        def post(_m: Any, inputs: Any, output: Any, i: int = i) -> None:
            sizes[i][0] += _nbytes(inputs)
            sizes[i][1] += _nbytes(output)

        handles.append(module.register_forward_hook(post))
    try:
        out = model(*args)
    finally:
        for h in handles:
            h.remove()
    sizes[0] = [_nbytes(args), _nbytes(out)]
    return sizes


def _measure_layers(
    model: Any, args: tuple[Any, ...], device: Any, repeats: int, warmup: int
) -> dict[str, Any]:
    names_modules = list(model.named_modules())
    modules = [m for _, m in names_modules]
    n = len(modules)
    clock = _Clock(device)
    hooks = _Hooks(modules, clock)

    def plain() -> Any:
        return model(*args)

    def hooked() -> Any:
        return hooks.call(model, args)

    for _ in range(max(warmup, 1)):
        plain()
    hooks.attach()
    try:
        for _ in range(max(warmup // 2, 1)):
            hooked()
            _sync(device)
            hooks.replay(n)
    finally:
        hooks.detach()

    plain_ms: list[float] = []
    hooked_ms: list[float] = []
    per_total: list[list[float]] = []
    per_self: list[list[float]] = []
    calls: list[int] = [0] * n
    for _ in range(repeats):  # interleaved, so that drift hits both alike
        plain_ms.append(_time_call(plain, device))
        hooks.attach()
        try:
            hooked_ms.append(_time_call(hooked, device))
        finally:
            hooks.detach()
        total, self_ms, calls = hooks.replay(n)
        per_total.append(total)
        per_self.append(self_ms)
    return {
        "names": [name for name, _ in names_modules],
        "modules": modules,
        "plain_ms": plain_ms,
        "hooked_ms": hooked_ms,
        "total": np.asarray(per_total, dtype=float),
        "self": np.asarray(per_self, dtype=float),
        "calls": calls,
    }


def hook_cost(device: Any) -> tuple[float, float]:
    """Cost of the timing hooks per module call, in ms: the part that falls inside the
    module's own interval and the part outside it (in its parent's self time).

    Measured afresh by each `profile` (so that it sees the same load as the model):
    the whole cost per call is the hooked minus the plain time of a chain of 32 small
    ``nn.Linear``, over 32 calls; the inside part is the interval the hooks measure
    around an ``nn.Identity`` (whose forward costs next to nothing). Zero on CUDA, where
    the events time the device.
    """
    import torch

    if device.type == "cuda":
        return 0.0, 0.0
    k = 32
    results: list[tuple[float, float]] = []
    for chain, x in (
        (torch.nn.Sequential(*[torch.nn.Identity() for _ in range(k)]), torch.zeros(1, 4)),
        (torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(k)]), torch.zeros(1, 4)),
    ):
        modules = list(chain.modules())
        clock = _Clock(device)
        hooks = _Hooks(modules, clock)
        plain: list[float] = []
        hooked: list[float] = []
        inside: list[float] = []

        def run(chain: Any = chain, x: Any = x) -> Any:
            return chain(x)

        with torch.no_grad():
            for _ in range(80):
                plain.append(_time_call(run, device))
                hooks.attach()
                try:
                    clock.start()
                    hooked.append(_time_call(run, device))
                finally:
                    hooks.detach()
                total, _, _ = hooks.replay(len(modules))
                inside.append(sum(total[1:]) / k)
        per_call = (float(np.median(hooked)) - float(np.median(plain))) / k
        results.append((float(np.median(inside)), max(per_call, 0.0)))
    c_in = results[0][0]
    c_all = max(results[0][1], results[1][1])
    cost = (min(c_in, c_all), max(c_all - c_in, 0.0))
    return cost


def _classify(
    flops: float, nbytes: float, time_ms: float, peaks: dict[str, Any]
) -> tuple[str, float, float]:
    """(class, achieved FLOP/s, roofline FLOP/s bound)."""
    if time_ms <= 0:
        return "n/a", 0.0, 0.0
    t_s = time_ms / 1e3
    t_roof = max(flops / peaks["peak_flops"], nbytes / peaks["peak_bandwidth"])
    intensity = flops / nbytes if nbytes > 0 else math.inf
    bound = min(peaks["peak_flops"], intensity * peaks["peak_bandwidth"])
    achieved = flops / t_s
    if t_s > OVERHEAD_FACTOR * t_roof:
        return "overhead-bound", achieved, bound
    if intensity >= peaks["balance"]:
        return "compute-bound", achieved, bound
    return "memory-bound", achieved, bound


# --------------------------------------------------------------------------- sweep
def _cpu_sampler() -> tuple[Callable[[], None], Callable[[], dict[str, float]]]:
    try:
        import psutil  # type: ignore[import-untyped, unused-ignore]
    except ImportError:  # pragma: no cover - psutil is a dependency
        return (lambda: None), (lambda: {})
    proc = psutil.Process()

    def start() -> None:
        psutil.cpu_percent(interval=None)
        proc.cpu_percent(interval=None)

    def stop() -> dict[str, float]:
        return {
            "cpu_percent": float(psutil.cpu_percent(interval=None)),
            "process_cpu_percent": float(proc.cpu_percent(interval=None)),
        }

    return start, stop


def _gpu_sample(device: Any) -> dict[str, float]:
    if device.type != "cuda":
        return {}
    import torch

    out: dict[str, float] = {
        "gpu_max_memory_allocated_bytes": float(torch.cuda.max_memory_allocated(device))
    }
    try:  # NVML is optional at run time (no driver, MIG, containers)
        import pynvml

        pynvml.nvmlInit()
        try:
            index = device.index if device.index is not None else torch.cuda.current_device()
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            util = pynvml.nvmlDeviceGetUtilizationRates(handle)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            out["gpu_util_percent"] = float(util.gpu)
            out["gpu_memory_used_bytes"] = float(mem.used)
            out["gpu_memory_total_bytes"] = float(mem.total)
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        pass
    return out


def _batch_sweep(
    model: Any,
    args: tuple[Any, ...],
    batch_sizes: Sequence[int],
    device: Any,
    repeats: int,
    warmup: int,
) -> dict[str, Any]:
    import torch

    start, stop = _cpu_sampler()
    points = []
    for b in sorted({int(b) for b in batch_sizes}):
        inputs = _expand(args, b)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

        def call(inputs: tuple[Any, ...] = inputs) -> Any:
            return model(*inputs)

        for _ in range(warmup):
            call()
        _sync(device)
        start()
        times = [_time_call(call, device) for _ in range(repeats)]
        cpu = stop()
        st = _stats(times)
        point: dict[str, Any] = {
            "batch_size": b,
            "latency_ms": st["median"],
            "latency_p90_ms": st["p90"],
            "latency_iqr_ms": st["iqr"],
            "throughput_per_s": b / (st["median"] / 1e3) if st["median"] > 0 else 0.0,
            **cpu,
            **_gpu_sample(device),
        }
        points.append(point)
    saturates_at = points[-1]["batch_size"] if points else None
    for here, nxt in itertools.pairwise(points):
        if nxt["throughput_per_s"] < (1 + KNEE_GAIN) * here["throughput_per_s"]:
            saturates_at = here["batch_size"]
            break
    return {"points": points, "saturates_at": saturates_at}


# --------------------------------------------------------------------------- operators
def _operators(model: Any, args: tuple[Any, ...], device: Any, top: int) -> list[dict[str, Any]]:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    try:
        with torch_profile(activities=activities) as prof:
            model(*args)
            _sync(device)
        events = list(prof.key_averages())
    except Exception:  # the profiler is best effort (e.g. another profiler is active)
        return []
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    rows = []
    for e in events[:top]:
        row: dict[str, Any] = {
            "name": e.key,
            "calls": int(e.count),
            "self_cpu_ms": e.self_cpu_time_total / 1e3,
            "cpu_total_ms": e.cpu_time_total / 1e3,
            "self_cpu_share": e.self_cpu_time_total / total,
        }
        device_time = getattr(e, "self_device_time_total", None)
        if device.type == "cuda" and device_time is not None:
            row["self_device_ms"] = float(device_time) / 1e3
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- findings
def _severity(gain: float) -> Severity:
    if gain >= 0.25:
        return "high"
    if gain >= 0.10:
        return "medium"
    return "low"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if x >= 0.01 else f"{100 * x:.1f}%"


def _findings(
    layers: list[dict[str, Any]],
    totals: dict[str, Any],
    sweep: dict[str, Any],
    batch: int,
    slo_ms: float | None,
) -> list[Finding]:
    out: list[Finding] = []
    total_flops = max(float(totals["flops"]), 1.0)
    leaves = [r for r in layers if r.get("leaf")]
    for row in leaves:
        share = row["share"]
        name = row["name"] or "(model)"
        label = f"{name} ({row['type']})"
        flop_share = row["flops"] / total_flops
        if row["bound"] == "overhead-bound" and share >= 0.05:
            excess = 1.0 - min(row["roofline_ms"] / row["self_ms"], 1.0) if row["self_ms"] else 0
            gain = 0.5 * share * excess
            out.append(
                Finding(
                    "overhead_bound",
                    _severity(gain),
                    name,
                    f"{label} takes {_pct(share)} of latency at batch {batch} for "
                    f"{_pct(flop_share)} of the FLOPs: it is overhead-bound "
                    f"({row['self_ms']:.3f} ms against {row['roofline_ms']:.4f} ms at the "
                    "roofline)",
                    "fuse or remove the op; try torch.compile (tune: compile=True)",
                    gain=gain,
                )
            )
        elif row["bound"] == "memory-bound" and share >= 0.10:
            weights = row["param_bytes"] >= 0.5 * max(row["bytes"], 1)
            if weights and row["type"] in _DYNAMIC_QUANT_TYPES:
                gain = 0.5 * share
                evidence = (
                    f"{label} is memory-bound ({row['intensity']:.2g} FLOP/byte, machine "
                    f"balance {totals['balance']:.3g}) and holds {_pct(share)} of latency: "
                    "int8 dynamic quantisation is expected to cut it about 2x"
                )
                action = 'compress(quantize="dynamic-int8")'
            elif weights:
                gain = 0.5 * share
                evidence = (
                    f"{label} is memory-bound on its weights ({row['intensity']:.2g} "
                    f"FLOP/byte) and holds {_pct(share)} of latency: int8 weights are "
                    "expected to cut it about 2x"
                )
                action = 'compress(quantize="static-int8")'
            else:
                gain = 0.3 * share
                evidence = (
                    f"{label} is memory-bound on its activations ({row['intensity']:.2g} "
                    f"FLOP/byte) and holds {_pct(share)} of latency: fusing it with its "
                    "neighbours saves a round trip to memory"
                )
                action = "fuse with neighbours: torch.compile (tune: compile=True)"
            out.append(Finding("memory_bound", _severity(gain), name, evidence, action, gain))
        elif row["bound"] == "compute-bound" and share >= 0.20:
            gain = 0.3 * share
            out.append(
                Finding(
                    "compute_bound",
                    _severity(gain),
                    name,
                    f"{label} is compute-bound ({row['intensity']:.3g} FLOP/byte, "
                    f"{row['achieved_flops_per_s'] / 1e9:.3g} GFLOP/s) and holds "
                    f"{_pct(share)} of latency: fewer FLOPs is the lever",
                    "compress(prune=0.5) (structured pruning), or a smaller width via tune",
                    gain=gain,
                )
            )
    # time between small operators: unattributed plus overhead-bound leaves
    attributed = max(float(totals["attributed_ms"]), 1e-12)
    small = float(totals["unattributed_ms"]) + sum(
        r["self_ms"] for r in leaves if r["bound"] == "overhead-bound"
    )
    small_share = small / attributed
    if small_share >= 0.3:
        gain = 0.5 * small_share
        out.append(
            Finding(
                "overhead_bound",
                _severity(gain),
                "(model)",
                f"{_pct(small_share)} of the time is spent between small operators or in "
                f"overhead-bound ones ({_pct(totals['unattributed_ms'] / attributed)} outside "
                f"any leaf module) at batch {batch}: try torch.compile",
                "try torch.compile (tune: compile=True)",
                gain=gain,
            )
        )
    points = sweep.get("points", [])
    if len(points) >= 2:
        first, best = points[0], max(points, key=lambda p: p["throughput_per_s"])
        if first["throughput_per_s"] > 0 and best["batch_size"] != first["batch_size"]:
            ratio = best["throughput_per_s"] / first["throughput_per_s"]
            if ratio >= 1.5:
                gain = 1.0 - 1.0 / ratio
                out.append(
                    Finding(
                        "batching",
                        _severity(gain),
                        f"batch {first['batch_size']} -> {best['batch_size']}",
                        f"throughput grows {ratio:.1f}x from batch {first['batch_size']} "
                        f"({first['throughput_per_s']:.0f}/s) to {best['batch_size']} "
                        f"({best['throughput_per_s']:.0f}/s); it saturates at batch "
                        f"{sweep.get('saturates_at')}: batch requests",
                        f"batch requests (tune: batch_size={sweep.get('saturates_at')})",
                        gain=gain,
                    )
                )
    if slo_ms is not None and points:
        first = points[0]
        if first["latency_p90_ms"] > slo_ms:
            gain = 1.0 - slo_ms / first["latency_p90_ms"]
            out.append(
                Finding(
                    "latency_slo",
                    "high",
                    f"batch {first['batch_size']}",
                    f"p90 latency {first['latency_p90_ms']:.2f} ms exceeds the "
                    f"{slo_ms:.2f} ms objective",
                    "tune(objective='latency') with the findings above as remedies",
                    gain=gain,
                )
            )
    return sorted(out, key=lambda f: -(f.gain or 0.0))


# --------------------------------------------------------------------------- profile
def profile(
    model: Any,
    example_inputs: Any,
    *,
    batch_sizes: Sequence[int] = (1, 8, 32),
    device: Any = None,
    repeats: int = 20,
    warmup: int = 5,
    batch_size: int | None = None,
    top_operators: int = 15,
    slo_ms: float | None = None,
    num_threads: int | None = None,
) -> Profile:
    """Profile inference of ``model`` on ``example_inputs``.

    Args:
        model: a ``torch.nn.Module``; run in eval mode under ``torch.no_grad()`` and put
            back in its mode afterwards. With ``device`` it is moved there.
        example_inputs: a tensor or tuple of positional arguments; dim 0 is the batch.
            The first row is repeated to build each batch size.
        batch_sizes: the batch sweep.
        device: where to run; default the device of the model's parameters.
        repeats: timed runs per measurement (medians and IQRs over them).
        warmup: untimed runs before measuring.
        batch_size: the batch of the per-layer table; default the smallest swept one.
        top_operators: how many ``torch.profiler`` operators to keep.
        slo_ms: a p90 latency objective at the smallest batch; a ``latency_slo``
            finding when exceeded.
        num_threads: CPU threads for the whole profile (``torch.set_num_threads``),
            restored afterwards; default: leave as set. One thread gives steadier
            numbers on a shared, busy machine.

    Returns:
        `Profile`.
    """
    import torch

    if repeats < 1:
        raise ValueError(f"repeats is {repeats}; give at least 1")
    if not batch_sizes:
        raise ValueError("batch_sizes is empty; give at least one batch size, e.g. (1, 8, 32)")
    dev = _resolve_device(model, device)
    if device is not None:
        model.to(dev)
    args = _to_device(normalise_inputs(example_inputs), dev)
    table_batch = int(batch_size if batch_size is not None else min(batch_sizes))
    table_args = _expand(args, table_batch)
    counted = count_flops(model, table_args)
    modes = [(m, m.training) for m in model.modules()]
    threads_before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    model.eval()
    try:
        peaks = machine_peaks(dev)
        with torch.no_grad():
            names_modules = list(model.named_modules())
            modules = [m for _, m in names_modules]
            io = _io_bytes(model, modules, table_args)
            timing = _measure_layers(model, table_args, dev, repeats, warmup)
            c_in, c_out = hook_cost(dev)
            operators = _operators(model, table_args, dev, top_operators)
            sweep = _batch_sweep(model, args, batch_sizes, dev, repeats, warmup)
    finally:
        for module, mode in modes:
            module.training = mode
        torch.set_num_threads(threads_before)

    names: list[str] = timing["names"]
    total_arr: Any = timing["total"]
    self_arr: Any = timing["self"]
    leaf_mask = np.array([not any(True for _ in m.children()) for m in modules])
    # take the calibrated hook cost out: inside each call's own interval, and outside
    # it (in the parent's self time) for every call but the root's
    calls_arr = np.asarray(timing["calls"], dtype=float)
    removed = calls_arr * c_in
    removed[0] = 0.0  # the root is stamped from outside, without hooks
    removed[1:] += 0.0
    child_calls = calls_arr[1:].sum()
    self_arr = np.maximum(self_arr - removed, 0.0)
    total_arr = np.maximum(total_arr - removed, 0.0)
    raw_unattributed = self_arr[:, ~leaf_mask].sum(axis=1)
    unattributed = np.maximum(raw_unattributed - child_calls * c_out, 0.0)
    attributed = self_arr[:, leaf_mask].sum(axis=1) + unattributed
    plain = _stats(timing["plain_ms"])
    hooked = _stats(timing["hooked_ms"])
    attributed_st = _stats(attributed.tolist())
    unattributed_st = _stats(unattributed.tolist())
    denom = attributed_st["median"] or 1.0

    layers: list[dict[str, Any]] = []
    for i, (name, module) in enumerate(names_modules):
        tot = _stats(total_arr[:, i].tolist())
        slf = _stats(self_arr[:, i].tolist())
        params = sum(p.numel() for p in module.parameters())
        pbytes = sum(p.numel() * p.element_size() for p in module.parameters())
        in_b, out_b = io[i]
        flops = counted.by_module.get(name, 0)
        nbytes = pbytes + in_b + out_b
        bound, achieved, roof = _classify(flops, nbytes, tot["median"], peaks)
        roofline_ms = 1e3 * max(flops / peaks["peak_flops"], nbytes / peaks["peak_bandwidth"])
        layers.append(
            {
                "name": name,
                "type": type(module).__name__,
                "depth": 0 if not name else name.count(".") + 1,
                "leaf": bool(leaf_mask[i]),
                "calls": int(timing["calls"][i]),
                "total_ms": tot["median"],
                "total_ms_iqr": tot["iqr"],
                "self_ms": slf["median"],
                "self_ms_iqr": slf["iqr"],
                "share": slf["median"] / denom,
                "total_share": tot["median"] / denom,
                "flops": int(flops),
                "self_flops": int(counted.self_by_module.get(name, 0)),
                "params": int(params),
                "param_bytes": int(pbytes),
                "input_bytes": int(in_b),
                "output_bytes": int(out_b),
                "bytes": int(nbytes),
                "intensity": flops / nbytes if nbytes else 0.0,
                "achieved_flops_per_s": achieved,
                "roofline_flops_per_s": roof,
                "roofline_ms": roofline_ms,
                "bound": bound,
            }
        )
    layers.append(
        {
            "name": UNATTRIBUTED,
            "type": "unattributed",
            "depth": 0,
            "leaf": False,
            "calls": 0,
            "total_ms": unattributed_st["median"],
            "total_ms_iqr": unattributed_st["iqr"],
            "self_ms": unattributed_st["median"],
            "self_ms_iqr": unattributed_st["iqr"],
            "share": unattributed_st["median"] / denom,
            "total_share": unattributed_st["median"] / denom,
            "flops": 0,
            "self_flops": int(
                sum(
                    counted.self_by_module.get(n, 0)
                    for n, leaf in zip(names, leaf_mask, strict=True)
                    if not leaf
                )
            ),
            "params": 0,
            "param_bytes": 0,
            "input_bytes": 0,
            "output_bytes": 0,
            "bytes": 0,
            "intensity": 0.0,
            "achieved_flops_per_s": 0.0,
            "roofline_flops_per_s": 0.0,
            "roofline_ms": 0.0,
            "bound": "n/a",
        }
    )
    overhead_ms = hooked["median"] - plain["median"]
    totals: dict[str, Any] = {
        "batch_size": table_batch,
        "flops": counted.flops,
        "macs": counted.macs,
        "params": counted.params,
        "param_bytes": int(sum(p.numel() * p.element_size() for p in model.parameters())),
        "uncounted_ops": dict(counted.uncounted),
        "latency_ms": {str(p["batch_size"]): p["latency_ms"] for p in sweep["points"]},
        "forward_ms": plain["median"],
        "forward_ms_iqr": plain["iqr"],
        "hooked_ms": hooked["median"],
        "hooked_ms_iqr": hooked["iqr"],
        "attributed_ms": attributed_st["median"],
        "attributed_ms_iqr": attributed_st["iqr"],
        "unattributed_ms": unattributed_st["median"],
        "attribution_error": (attributed_st["median"] - plain["median"]) / plain["median"]
        if plain["median"] > 0
        else 0.0,
        "hook_overhead_ms": overhead_ms,
        "hook_overhead_share": overhead_ms / plain["median"] if plain["median"] > 0 else 0.0,
        "hook_cost_per_call_ms": {"inside": c_in, "outside": c_out},
        "per_module_timing": all(_hookable(m) for m in modules[1:]),
        "achieved_flops_per_s": counted.flops / (plain["median"] / 1e3)
        if plain["median"] > 0
        else 0.0,
        "balance": peaks["balance"],
        "repeats": repeats,
    }
    findings = _findings(layers, totals, sweep, table_batch, slo_ms)
    return Profile(
        layers=layers,
        totals=totals,
        batch_sweep=sweep,
        operators=operators,
        machine=peaks,
        findings=findings,
    )
