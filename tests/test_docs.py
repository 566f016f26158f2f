"""The docs name every public function and every CLI command, and the README's quick start runs."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tunelens
import tunelens.diagnose
import tunelens.metrics
import tunelens.monitor
import tunelens.monitor.alerts
import tunelens.quality
import tunelens.report
import tunelens.server
import tunelens.store
import tunelens.tune
from tunelens.cli import app
from tunelens.monitor import Monitor

ROOT = Path(__file__).resolve().parents[1]
API = (ROOT / "docs" / "api.md").read_text()
CLI = (ROOT / "docs" / "cli.md").read_text()
README = (ROOT / "README.md").read_text()


def _public_names() -> list[str]:
    names: set[str] = set()
    modules = (
        tunelens,
        tunelens.metrics,
        tunelens.store,
        tunelens.quality,
        tunelens.report,
        tunelens.server,
        tunelens.monitor.alerts,
        tunelens.diagnose,
        tunelens.tune,
    )
    for module in modules:
        names.update(n for n in module.__all__ if not n.startswith("_"))
    names.update(
        name
        for name, member in inspect.getmembers(Monitor)
        if not name.startswith("_") and callable(member)
    )
    return sorted(names)


@pytest.mark.parametrize("name", _public_names())
def test_public_name_is_documented(name: str) -> None:
    assert re.search(rf"\b{re.escape(name)}\b", API), f"{name} is missing from docs/api.md"


def _commands() -> list[str]:
    return sorted(c.name or c.callback.__name__ for c in app.registered_commands if c.callback)


def test_cli_has_the_contract_commands() -> None:
    assert {"demo", "log", "labels", "metrics", "report", "serve"} <= set(_commands())


@pytest.mark.parametrize("command", _commands())
def test_cli_command_is_documented(command: str) -> None:
    assert f"tunelens {command}" in CLI, f"`tunelens {command}` is missing from docs/cli.md"
    assert f"tunelens {command}" in README, f"`tunelens {command}` is missing from README.md"


def test_readme_starts_with_the_two_commands() -> None:
    head = README.split("\n## ", 1)[0]
    assert head.index("make demo") < head.index("make test")


def test_readme_quick_start_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "README has no python example"
    _report_inputs(tmp_path)
    for i, code in enumerate(blocks):
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"README example {i} failed:\n{done.stderr}"


def _report_inputs(folder: Path) -> None:
    """The two tables the README's report example reads."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    for name, shift in (("reference", 0.0), ("current", 0.7)):
        x = rng.normal(size=(3000, 3))
        x[:, 0] += shift
        p = 1 / (1 + np.exp(-(x[:, 0] - x[:, 1])))
        frame = pd.DataFrame(x, columns=["tenure", "spend", "visits"])
        frame["plan"] = rng.choice(["basic", "plus", "pro"], 3000)
        frame["label"] = (rng.random(3000) < p).astype(int)
        frame["proba"] = p
        frame["pred"] = (p >= 0.5).astype(int)
        frame.to_parquet(folder / f"{name}.parquet")
