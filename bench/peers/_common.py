"""Shared plumbing for the benchmark children (run inside bench/.peers-venv or .venv).

Each child is started by `bench/report.py` with the same arguments, loads the same two
Parquet files, does its tool's work, and writes one JSON result file. Times are taken
inside the child: `import_s` (the tool's imports), `load_s` (reading the Parquet files)
and `work_s` (everything from the in-memory frames to the written report), and reports its
own peak RSS (VmHWM) after the load and at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any

# Telemetry off before any tool is imported (variable names as read by the packages:
# evidently/telemetry.py reads DO_NOT_TRACK, iterative_telemetry reads
# ITERATIVE_DO_NOT_TRACK, nannyml/usage_logging.py reads NML_DISABLE_USAGE_LOGGING).
for _name in (
    "DO_NOT_TRACK",
    "ITERATIVE_DO_NOT_TRACK",
    "EVIDENTLY_DISABLE_TELEMETRY",
    "NML_DISABLE_USAGE_LOGGING",
):
    os.environ.setdefault(_name, "1")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--reference", required=True)
    p.add_argument("--current", required=True)
    p.add_argument("--result", required=True, help="JSON file to write the result to")
    p.add_argument("--outdir", required=True, help="folder for the tool's report files")
    p.add_argument("--numerical", required=True, help="comma-separated")
    p.add_argument("--categorical", required=True, help="comma-separated")
    p.add_argument("--target", required=True)
    p.add_argument("--prediction", required=True)
    p.add_argument("--score", required=True)
    p.add_argument(
        "--from-paths",
        action="store_true",
        help="hand the tool the Parquet paths (its own loader, timed in work) instead of frames",
    )
    args = p.parse_args()
    args.numerical = [c for c in args.numerical.split(",") if c]
    args.categorical = [c for c in args.categorical.split(",") if c]
    return args


def versions_of(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions (those present)."""
    from importlib import metadata

    out = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def vm_hwm_mib() -> float | None:
    """This process's peak RSS so far (VmHWM), in MiB.

    Not `ru_maxrss`: on Linux that carries the RSS of the parent that spawned the process
    across exec, so a child of a large parent would report the parent's size.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _step(steps: dict[str, float], name: str, t0: float) -> float:
    """Record the time since `t0` under `name`; return now."""
    now = time.perf_counter()
    steps[name] = now - t0
    return now


PEER_PACKAGES = ("numpy", "pandas", "pyarrow", "scipy", "scikit-learn")


def run_child(
    tool: str,
    do_imports: Callable[[], dict[str, str]],
    work: Callable[[argparse.Namespace, Any, Any], dict[str, Any]],
) -> None:
    """Time imports, load and work; write the result (or the error) as JSON."""
    args = parse_args()
    result: dict[str, Any] = {"tool": tool, "ok": False, "pid": os.getpid()}
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            t0 = time.perf_counter()
            versions = do_imports()
            import pandas as pd

            result["import_s"] = time.perf_counter() - t0
            versions.setdefault("pandas", pd.__version__)
            versions["python"] = sys.version.split()[0]
            result["versions"] = versions

            t0 = time.perf_counter()
            if args.from_paths:
                reference, current = args.reference, args.current
            else:
                reference = pd.read_parquet(args.reference)
                current = pd.read_parquet(args.current)
            result["load_s"] = time.perf_counter() - t0
            result["from_paths"] = bool(args.from_paths)
            # peak RSS so far (KiB on Linux): interpreter, imports and the two frames
            result["rss_after_load_mib"] = vm_hwm_mib()

            t0 = time.perf_counter()
            extra = work(args, reference, current)
            result["work_s"] = time.perf_counter() - t0
            result.update(extra)
            result["vm_hwm_mib"] = vm_hwm_mib()
            result["ok"] = True
    except BaseException as exc:  # report any failure to the parent, then exit non-zero
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
    seen: dict[str, int] = {}
    for w in caught:
        key = f"{w.category.__name__}: {str(w.message).splitlines()[0][:200]}"
        seen[key] = seen.get(key, 0) + 1
    result["warnings"] = seen
    with open(args.result, "w") as fh:
        json.dump(result, fh, indent=1, default=str)
    sys.exit(0 if result["ok"] else 1)
