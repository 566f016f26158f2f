"""`tunelens profile`: models from module:factory or TorchScript, JSON/HTML out, exit 2 on a
wrong input shape with the shape the model expects."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from tests.cli.conftest import Invoke

torch = pytest.importorskip("torch")

MODULE = textwrap.dedent(
    """
    import torch
    from torch import nn

    def make():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(16, 10),
        )
    """
)


@pytest.fixture
def factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "tl_profile_models.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("tl_profile_models", None)
    return "tl_profile_models:make"


def test_profile_writes_json_and_html(cli: Invoke, factory: str, tmp_path: Path) -> None:
    out, page = tmp_path / "p.json", tmp_path / "p.html"
    result = cli(
        "profile",
        factory,
        "--input-shape",
        "1,3,32,32",
        "--batch-sizes",
        "1,4",
        "--repeats",
        "3",
        "--json",
        out,
        "--html",
        page,
    )
    assert result.code == 0, result.err
    doc = json.loads(out.read_text())
    assert {"layers", "totals", "batch_sweep", "findings"} <= set(doc)
    totals = doc["totals"]
    conv1 = 2 * 3 * 8 * 9 * 32 * 32  # multiply-adds x 2, bias not counted
    assert totals["flops"] >= conv1 and totals["macs"] * 2 == pytest.approx(totals["flops"])
    assert totals["params"] == sum(
        p.numel() for p in __import__("tl_profile_models").make().parameters()
    )
    assert "<table>" in page.read_text() and "http" not in page.read_text().split("</style>")[1]
    assert f"wrote {out}" in result.out


def test_torchscript_file(cli: Invoke, factory: str, tmp_path: Path) -> None:
    import tl_profile_models

    path = tmp_path / "m.pt"
    torch.jit.script(tl_profile_models.make()).save(str(path))
    result = cli(
        "profile",
        path,
        "--input-shape",
        "1,3,16,16",
        "--batch-sizes",
        "1,2",
        "--repeats",
        "2",
        "--json",
        "-",
    )
    assert result.code == 0, result.err
    assert json.loads(result.out)["totals"]["params"] > 0


def test_wrong_shape_says_what_the_model_expects(cli: Invoke, factory: str) -> None:
    result = cli("profile", factory, "--input-shape", "1,4,32,32", "--repeats", "2")
    assert result.code == 2
    assert result.err.startswith("error: --input-shape: 1,4,32,32 is refused")
    assert "expects (N, 3, H, W)" in result.err and result.err.count("\n") == 1


@pytest.mark.parametrize(
    ("spec", "shape", "needle"),
    [
        ("nosuchmodule:make", "1,3", "cannot import"),
        ("tl_profile_models:nothing", "1,3", "no attribute"),
        ("missing.pt", "1,3", "no such file"),
        ("tl_profile_models", "1,3", "module:factory"),
        ("tl_profile_models:make", "1,x,3", "--input-shape"),
    ],
)
def test_bad_model_or_shape_exit_2(
    cli: Invoke, factory: str, spec: str, shape: str, needle: str
) -> None:
    result = cli("profile", spec, "--input-shape", shape)
    assert result.code == 2 and needle in result.err, result.err


def test_exported_program_file(cli: Invoke, factory: str, tmp_path: Path) -> None:
    import tl_profile_models

    path = tmp_path / "m.pt2"
    exported = torch.export.export(tl_profile_models.make(), (torch.randn(1, 3, 16, 16),))
    torch.export.save(exported, str(path))
    result = cli(
        "profile",
        path,
        "--input-shape",
        "1,3,16,16",
        "--batch-sizes",
        "1",
        "--repeats",
        "2",
        "--json",
        "-",
    )
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["totals"]["params"] == sum(p.numel() for p in tl_profile_models.make().parameters())
