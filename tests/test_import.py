"""``import tunelens`` stays fast and light; ``tunelens.metrics`` needs numpy only."""

from __future__ import annotations

import json
import subprocess
import sys
import time

HEAVY = ("torch", "plotly", "fastapi")


def _modules_after(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _top_level(modules: set[str]) -> set[str]:
    return {name.partition(".")[0] for name in modules}


def test_import_tunelens_is_fast() -> None:
    # Best of five whole `python -c "import tunelens"` runs, interpreter start-up included.
    times = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import tunelens"], check=True, timeout=120)
        times.append(time.perf_counter() - started)
    assert min(times) < 0.5, f"python -c 'import tunelens' took {min(times):.3f} s"


def test_import_tunelens_pulls_in_no_heavy_module() -> None:
    loaded = _top_level(_modules_after("import tunelens"))
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_import_metrics_needs_numpy_only() -> None:
    loaded = _top_level(_modules_after("import tunelens.metrics"))
    for heavy in (*HEAVY, "pandas", "duckdb", "sklearn"):
        assert heavy not in loaded, f"import tunelens.metrics imported {heavy}"


def test_import_cli_is_light() -> None:
    # `tunelens --help` must not pay for pandas, duckdb or scikit-learn.
    loaded = _top_level(_modules_after("import tunelens.cli"))
    for heavy in (*HEAVY, "pandas", "duckdb", "sklearn"):
        assert heavy not in loaded, f"import tunelens.cli imported {heavy}"
