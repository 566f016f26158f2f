"""The profiler's own overhead, and tunelens' FLOP totals beside other counters.

Run ``.venv/bin/python bench/profile.py`` (about a minute or two on a small CPU machine).
For each model defined here (PyTorch only; no torchvision) it prints:

1. forward FLOPs, all in FLOPs with a multiply-add counted as **2**:
   ``tunelens.diagnose.count_flops``; ``torch.utils.flop_counter.FlopCounterMode`` raw
   (default settings, without tunelens' additions); fvcore's ``FlopCountAnalysis``
   (which counts one multiply-add as one "flop": printed x2) and DeepSpeed's
   ``get_model_profile`` (its MACs x2, and its own "flops" figure beside them). fvcore and
   DeepSpeed run in a subprocess of a separate interpreter (``--peer-python``, default
   ``/tmp/fc/bin/python`` when it exists) that imports this same file for the models;
2. the overhead of ``tunelens.diagnose.profile``: the median plain inference time (no
   hooks), the median time with tunelens' timing hooks attached and the hook overhead the
   profile itself reports, and the wall time of the whole ``profile()`` call (FLOP
   count, machine peaks, interleaved plain/hooked repeats, hook calibration, one
   ``torch.profiler`` run, batch sweep), each as a ratio to plain inference.

``--json out.json`` writes everything, the peers' unsupported-operator lists included.
This file must not import tunelens (or anything outside the standard library and torch)
at module level: the peers' interpreter imports it for the model definitions.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
# run as a script, this file's folder comes first on sys.path, and this file's name would
# shadow the standard library's ``profile`` module (imported by cProfile)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from importlib import metadata  # noqa: E402
from typing import Any  # noqa: E402

DEFAULT_PEER_PYTHON = "/tmp/fc/bin/python"
MODEL_NAMES = ("resnet18", "vgg11", "mlp", "transformer_layer", "bert2", "mixer")


# ----------------------------------------------------------------------------- models
def build_model(name: str) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """``(model, example_inputs, description)`` for ``name``; seeded, eval mode."""
    import torch
    from torch import nn

    torch.manual_seed(0)

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x: Any) -> Any:
            idt = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + idt)

    class ResNet18(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            layers, cin = [], 64
            for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
                layers.append(
                    nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1))
                )
                cin = cout
            self.layer1, self.layer2, self.layer3, self.layer4 = layers
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, 1000)

        def forward(self, x: Any) -> Any:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    class VGG11(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            feats: list[nn.Module] = []
            cin = 3
            for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"):
                if v == "M":
                    feats.append(nn.MaxPool2d(2, 2))
                else:
                    feats += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                    cin = int(v)
            self.features = nn.Sequential(*feats)
            self.avgpool = nn.AdaptiveAvgPool2d(7)
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096),
                nn.ReLU(True),
                nn.Dropout(),
                nn.Linear(4096, 4096),
                nn.ReLU(True),
                nn.Dropout(),
                nn.Linear(4096, 1000),
            )

        def forward(self, x: Any) -> Any:
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    class MixerBlock(nn.Module):
        def __init__(self, tokens: int, dim: int) -> None:
            super().__init__()
            self.norm1 = nn.LayerNorm(dim)
            self.token_mlp = nn.Sequential(
                nn.Linear(tokens, 256), nn.GELU(), nn.Linear(256, tokens)
            )
            self.norm2 = nn.LayerNorm(dim)
            self.channel_mlp = nn.Sequential(nn.Linear(dim, 2048), nn.GELU(), nn.Linear(2048, dim))

        def forward(self, x: Any) -> Any:
            x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
            return x + self.channel_mlp(self.norm2(x))

    class Mixer(nn.Module):
        def __init__(self, depth: int = 4, dim: int = 512) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, dim, 16, 16)
            self.blocks = nn.Sequential(*[MixerBlock(196, dim) for _ in range(depth)])
            self.norm = nn.LayerNorm(dim)
            self.head = nn.Linear(dim, 1000)

        def forward(self, x: Any) -> Any:
            x = self.stem(x).flatten(2).transpose(1, 2)
            return self.head(self.norm(self.blocks(x)).mean(dim=1))

    model: Any
    if name == "resnet18":
        model, inputs = ResNet18(), (torch.randn(1, 3, 224, 224),)
        desc = "ResNet-18, 1x3x224x224"
    elif name == "vgg11":
        model, inputs = VGG11(), (torch.randn(1, 3, 224, 224),)
        desc = "VGG-11, 1x3x224x224"
    elif name == "mlp":
        model = nn.Sequential(
            nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)
        )
        inputs = (torch.randn(32, 784),)
        desc = "MLP 784-1024-1024-10, batch 32"
    elif name == "transformer_layer":
        model = nn.TransformerEncoderLayer(512, 8, 2048, dropout=0.1, batch_first=True)
        inputs = (torch.randn(1, 128, 512),)
        desc = "nn.TransformerEncoderLayer d=512, 8 heads, ffn 2048, 1x128 tokens"
    elif name == "bert2":
        layer = nn.TransformerEncoderLayer(
            768, 12, 3072, dropout=0.1, activation="gelu", batch_first=True
        )
        model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        inputs = (torch.randn(1, 128, 768),)
        desc = "BERT-base-like encoder, 2 layers d=768, 12 heads, ffn 3072, 1x128 tokens"
    elif name == "mixer":
        model, inputs = Mixer(), (torch.randn(1, 3, 224, 224),)
        desc = "MLP-Mixer, patch 16 (196 tokens), 4 blocks d=512, 1x3x224x224"
    else:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    return model, inputs, {"description": desc, "params": params}


@contextlib.contextmanager
def fastpath(enabled: bool) -> Iterator[None]:
    """``torch.backends.mha`` fast path on or off inside the block."""
    import torch

    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        yield
        return
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(enabled)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


# ----------------------------------------------------------------------------- counters
def flop_counter_mode(model: Any, inputs: tuple[Any, ...]) -> dict[str, Any]:
    """``FlopCounterMode`` total, raw, in eval mode under ``no_grad``: with the default
    settings and with the MHA fast path off."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    out: dict[str, Any] = {}
    for key, fast in (("default", True), ("fastpath_off", False)):
        with fastpath(fast), torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*inputs)
        out[key] = int(counter.get_total_flops())
    return out


def _peer_fvcore(model: Any, inputs: tuple[Any, ...], fast: bool) -> dict[str, Any]:
    import torch
    from fvcore.nn import FlopCountAnalysis  # type: ignore[import-not-found]

    with fastpath(fast), torch.no_grad():
        analysis = FlopCountAnalysis(model, inputs)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        macs = int(analysis.total())
        unsupported = {str(k): int(v) for k, v in analysis.unsupported_ops().items()}
    return {"macs": macs, "flops": 2 * macs, "unsupported": unsupported}


def _peer_deepspeed(model: Any, inputs: tuple[Any, ...], fast: bool) -> dict[str, Any]:
    import torch
    from deepspeed.profiling.flops_profiler import get_model_profile  # type: ignore[import-not-found]

    with fastpath(fast), torch.no_grad():
        flops, macs, _params = get_model_profile(
            model,
            args=list(inputs),
            print_profile=False,
            detailed=False,
            warm_up=1,
            as_string=False,
        )
    return {"macs": int(macs), "flops_2x_macs": 2 * int(macs), "own_flops": int(flops)}


def peer_worker(tool: str, names: list[str]) -> dict[str, Any]:
    """Run one peer counter on the named models (inside the peers' interpreter)."""
    import torch

    fn: Callable[[Any, tuple[Any, ...], bool], dict[str, Any]]
    fn = _peer_fvcore if tool == "fvcore" else _peer_deepspeed
    dist = "fvcore" if tool == "fvcore" else "deepspeed"
    result: dict[str, Any] = {
        "tool": tool,
        "version": metadata.version(dist),
        "torch": torch.__version__,
        "models": {},
    }
    for name in names:
        model, inputs, _ = build_model(name)
        row: dict[str, Any] = {}
        for key, fast in (("default", True), ("fastpath_off", False)):
            try:
                row[key] = fn(model, inputs, fast)
            except Exception as exc:  # reported, not fatal
                row[key] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        result["models"][name] = row
    return result


def run_peer(python: str, tool: str, names: list[str], timeout: float) -> dict[str, Any]:
    """``peer_worker`` in a subprocess of ``python``; ``{"error": ...}`` when it fails."""
    if not python or not Path(python).exists():
        return {"error": f"not installable here (no peers interpreter at {python!r})"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "peer.json"
        cmd = [python, str(Path(__file__).resolve()), "--peer-worker", tool]
        cmd += ["--models", ",".join(names), "--json", str(out)]
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"error": f"exit {proc.returncode}: {' | '.join(tail)}"[:400]}
        loaded: dict[str, Any] = json.loads(out.read_text())
        return loaded


# ----------------------------------------------------------------------------- overhead
def plain_times_ms(model: Any, inputs: tuple[Any, ...], repeats: int, warmup: int) -> list[float]:
    """Times in ms of ``model(*inputs)`` under ``no_grad``, no hooks."""
    import torch

    with torch.no_grad():
        for _ in range(warmup):
            model(*inputs)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(*inputs)
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def measure_model(name: str, repeats: int, warmup: int, threads: int | None) -> dict[str, Any]:
    """tunelens' count, FlopCounterMode's, and the overhead of ``profile`` on one model."""
    import torch

    from tunelens.diagnose.flops import count_flops
    from tunelens.diagnose.runtime import profile

    model, inputs, info = build_model(name)
    t0 = time.perf_counter()
    counted = count_flops(model, inputs)
    count_s = time.perf_counter() - t0
    fcm = flop_counter_mode(model, inputs)

    batch = int(inputs[0].shape[0])
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        # plain runs before and after the profile, pooled: drift on a shared machine
        plain_before = plain_times_ms(model, inputs, repeats, warmup)
        t0 = time.perf_counter()
        prof = profile(
            model, inputs, batch_sizes=(batch,), repeats=repeats, warmup=warmup, num_threads=threads
        )
        wall_s = time.perf_counter() - t0
        plain_after = plain_times_ms(model, inputs, repeats, warmup)
    finally:
        torch.set_num_threads(before)
    plain = statistics.median(plain_before + plain_after)
    tot = prof.totals
    n_modules = sum(1 for _ in model.modules())
    return {
        **info,
        "batch": batch,
        "modules": n_modules,
        "tunelens": {
            "flops": counted.flops,
            "macs": counted.macs,
            "params": counted.params,
            "uncounted": counted.uncounted,
            "count_seconds": count_s,
        },
        "flop_counter_mode": fcm,
        "overhead": {
            "plain_ms": plain,
            "plain_ms_before": statistics.median(plain_before),
            "plain_ms_after": statistics.median(plain_after),
            "profile_forward_ms": tot["forward_ms"],
            "profile_hooked_ms": tot["hooked_ms"],
            "hook_overhead_ms": tot["hook_overhead_ms"],
            "hook_overhead_share": tot["hook_overhead_share"],
            "attributed_ms": tot["attributed_ms"],
            "attribution_error": tot["attribution_error"],
            "hook_cost_per_call_ms": tot["hook_cost_per_call_ms"],
            "profile_wall_s": wall_s,
            "hooked_over_plain": tot["hooked_ms"] / plain if plain else None,
            "hooked_over_forward": tot["hooked_ms"] / tot["forward_ms"]
            if tot["forward_ms"]
            else None,
            "wall_over_plain": wall_s * 1e3 / plain if plain else None,
            "repeats": repeats,
            "warmup": warmup,
        },
    }


# ----------------------------------------------------------------------------- report
def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for dist in ("tunelens", "torch", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "n/a"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "python": platform.python_version(),
        **versions,
    }


def _g(flops: Any) -> str:
    return f"{flops / 1e9:.4g}" if isinstance(flops, int | float) else "n/a"


def _peer_cell(peer: dict[str, Any], name: str, key: str) -> str:
    if "error" in peer:
        return "n/a"
    row = peer["models"].get(name, {})
    cells = []
    for mode in ("default", "fastpath_off"):
        r = row.get(mode, {})
        cells.append(_g(r.get(key)) if "error" not in r else "err")
    return cells[0] if cells[0] == cells[1] else f"{cells[0]} / {cells[1]}"


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "# tunelens profiler: FLOP totals and overhead",
        "",
        f"{m['date']}; {m['cpu']}, {m['cores']} usable cores; Python {m['python']}, "
        f"torch {m['torch']}, tunelens {m['tunelens']}.",
        "",
        "## Forward FLOPs (GFLOPs; one multiply-add = 2 FLOPs in every column)",
        "",
        "Eval mode, `no_grad`. `a / b`: default settings / MHA fast path off (shown only "
        "where they differ). fvcore: `FlopCountAnalysis.total()` x 2; DeepSpeed: "
        "`get_model_profile` MACs x 2, and its own `flops` (which adds element-wise work).",
        "",
        "| model | params (M) | tunelens | FlopCounterMode raw | fvcore (2x) | "
        "DeepSpeed (2x MACs) | DeepSpeed own flops |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    fv, ds = result["peers"]["fvcore"], result["peers"]["deepspeed"]
    for name, r in result["models"].items():
        f = r["flop_counter_mode"]
        fcm = _g(f["default"])
        if f["default"] != f["fastpath_off"]:
            fcm += f" / {_g(f['fastpath_off'])}"
        lines.append(
            f"| {name} | {r['params'] / 1e6:.2f} | {_g(r['tunelens']['flops'])} | {fcm} | "
            f"{_peer_cell(fv, name, 'flops')} | {_peer_cell(ds, name, 'flops_2x_macs')} | "
            f"{_peer_cell(ds, name, 'own_flops')} |"
        )
    lines.append("")
    for tool, peer in (("fvcore", fv), ("DeepSpeed", ds)):
        if "error" in peer:
            lines.append(f"- {tool}: {peer['error']}")
        else:
            lines.append(f"- {tool} {peer['version']} (torch {peer['torch']}), separate venv")
    lines += [
        "",
        "## Overhead of `tunelens.diagnose.profile` against plain inference",
        "",
        f"Medians; {result['config']['repeats']} repeats, torch threads "
        f"{result['config']['threads'] or 'as set'}. plain = `model(*x)` under `no_grad`, no "
        "hooks, timed by this script just before and just after the profile (pooled); "
        "forward / hooked = the profile's own `forward_ms` / `hooked_ms` (interleaved runs "
        "without and with the hooks); hook overhead = the profile's `hook_overhead_ms` "
        "(hooked - forward) and its share of forward; wall = the whole `profile()` call "
        "(FLOP count, machine peaks, timing, hook calibration, one `torch.profiler` run, "
        "batch sweep of the one batch size; the machine-peak benchmark, cached per process, "
        f"ran once beforehand: {result['config']['machine_peaks_seconds']:.2f} s).",
        "",
        "| model | modules | plain ms | profile forward ms | hooked ms | hooked / plain | "
        "hooked / forward | hook overhead (profile) | profile() wall s | wall / plain |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in result["models"].items():
        o = r["overhead"]
        lines.append(
            f"| {name} | {r['modules']} | {o['plain_ms']:.3f} | {o['profile_forward_ms']:.3f} | "
            f"{o['profile_hooked_ms']:.3f} | {o['hooked_over_plain']:.3f}x | "
            f"{o['hooked_over_forward']:.3f}x | "
            f"{o['hook_overhead_ms']:.3f} ms ({100 * o['hook_overhead_share']:.1f}%) | "
            f"{o['profile_wall_s']:.2f} | {o['wall_over_plain']:.0f}x |"
        )
    lines.append("")
    for name, r in result["models"].items():
        lines.append(f"- {name}: {r['description']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODEL_NAMES))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: leave as set)")
    parser.add_argument(
        "--peer-python",
        default=os.environ.get("TUNELENS_PEER_PYTHON", DEFAULT_PEER_PYTHON),
        help="interpreter with fvcore and deepspeed installed ('' to skip)",
    )
    parser.add_argument("--peer-timeout", type=float, default=600.0)
    parser.add_argument("--json", default=None, help="write all results here")
    parser.add_argument("--peer-worker", choices=("fvcore", "deepspeed"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    args.threads = args.threads or None

    if args.peer_worker:
        res = peer_worker(args.peer_worker, names)
        Path(args.json).write_text(json.dumps(res, indent=2))
        return 0

    result: dict[str, Any] = {
        "machine": _machine(),
        "config": {"repeats": args.repeats, "warmup": args.warmup, "threads": args.threads},
        "models": {},
        "peers": {},
    }
    # the machine-peak benchmark runs once per process (cached): time it apart, so that
    # the first model's profile() wall time is not charged with it
    import torch

    from tunelens.diagnose.runtime import machine_peaks

    before = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    machine_peaks(torch.device("cpu"))
    result["config"]["machine_peaks_seconds"] = time.perf_counter() - t0
    torch.set_num_threads(before)
    for name in names:
        print(f"... {name}", file=sys.stderr, flush=True)
        result["models"][name] = measure_model(name, args.repeats, args.warmup, args.threads)
    for tool in ("fvcore", "deepspeed"):
        print(f"... {tool}", file=sys.stderr, flush=True)
        result["peers"][tool] = run_peer(args.peer_python, tool, names, args.peer_timeout)
    print(render(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
