"""tunelens' quality report against Evidently and NannyML on the same data.

One synthetic data set per size: 25 features (x0..x19 numeric, c0..c4 categorical with 4
to 12 levels), a binary target drawn from a logistic model of x0, x1, x2, x5, c0 and c1,
the model's score (the true probability, so calibrated) and its prediction (score >= 0.5).
The current set has a covariate shift in five known columns (x0 and x1 mean shifts, x5
scale change, x10 mean shift, c0 frequencies reversed) while P(y | x) is unchanged, so the
score stays calibrated and a label-free estimate of accuracy and ROC AUC is well posed.

Both sets are written once per size as Parquet; each tool then runs in a fresh process
(tunelens in this project's .venv, the peers in bench/.peers-venv, made on first use
because Evidently 0.7 does not import with pandas 3), reads the same files and does its
work:

- tunelens: `tunelens.quality.analyse(...)`, then `to_html` and `to_json`;
- Evidently: `Report([ClassificationPreset(), DataDriftPreset()])`, run, `save_html`,
  `json()`;
- NannyML: CBPE (roc_auc, accuracy, f1, precision, recall), UnivariateDriftCalculator
  (defaults) and DataReconstructionDriftCalculator, fitted on reference and run on
  current, one chunk per set.

Times: `work` is measured inside the child from the loaded frames to the written report;
imports and the Parquet load are printed apart and not in the ratio. Peak memory is the
child's VmHWM at its end (whole process: imports and data included; `ru_maxrss` is not used
where the child reports it, because on Linux it carries the spawning parent's RSS across
exec, which is also why the data are made in a child of their own) and, as a check, the
peak summed RSS of the child's process tree polled every 50 ms. Ratios are peer / tunelens.

    .venv/bin/python bench/report.py                         # 1e5 and 1e6 rows, all tools
    .venv/bin/python bench/report.py --rows 100000 --only nannyml --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS_DIR = HERE / "peers"
PEERS_VENV = HERE / ".peers-venv"
PEERS_REQUIREMENTS = ["evidently==0.7.*", "pandas<3", "nannyml", "pyarrow"]
TUNELENS_PYTHON = ROOT / ".venv" / "bin" / "python"
TOOLS = ("tunelens", "evidently", "nannyml")
SCRIPTS = {tool: PEERS_DIR / f"{tool}_run.py" for tool in TOOLS}
CHILD_TIMEOUT_S = 30 * 60
SEED = 20240603

NUMERICAL = [f"x{i}" for i in range(20)]
CATEGORICAL = [f"c{i}" for i in range(5)]
LEVELS = [4, 6, 8, 10, 12]
TARGET, PREDICTION, SCORE = "y", "pred", "score"
DRIFTED = ["x0", "x1", "x5", "x10", "c0"]
TELEMETRY_OFF = {
    "DO_NOT_TRACK": "1",  # evidently/telemetry.py
    "ITERATIVE_DO_NOT_TRACK": "1",  # iterative_telemetry, which Evidently uses
    "EVIDENTLY_DISABLE_TELEMETRY": "1",
    "NML_DISABLE_USAGE_LOGGING": "1",  # nannyml/usage_logging.py
}


# --------------------------------------------------------------------------- data


def _category_probs(rng: Any, k: int) -> Any:
    p = rng.uniform(0.5, 2.0, size=k)
    return p / p.sum()


def generate(n: int, seed: int = SEED) -> tuple[Any, Any]:
    """The reference and current frames (pandas) with `n` rows each."""
    import numpy as np
    import pandas as pd

    design = np.random.default_rng(seed)
    probs = [_category_probs(design, k) for k in LEVELS]
    c0_effect = np.linspace(-0.8, 0.8, LEVELS[0])
    c1_effect = np.linspace(-0.3, 0.3, LEVELS[1])
    names = [np.array([f"{chr(97 + j)}{i}" for i in range(k)]) for j, k in enumerate(LEVELS)]

    def one(rng: Any, shifted: bool) -> Any:
        x = rng.standard_normal((n, len(NUMERICAL)))
        # some correlation, so the multivariate check has structure to learn
        x[:, 3] = 0.6 * x[:, 2] + 0.8 * x[:, 3]
        x[:, 12] = 0.7 * x[:, 11] + 0.71414 * x[:, 12]
        x[:, 15] = np.exp(0.5 * x[:, 15])  # one skewed column
        codes = []
        for j, k in enumerate(LEVELS):
            p = probs[j]
            if shifted and j == 0:
                p = p[::-1]
            codes.append(rng.choice(k, size=n, p=p))
        if shifted:
            x[:, 0] += 0.5
            x[:, 1] -= 0.5
            x[:, 5] *= 1.5
            x[:, 10] += 0.3
        logit = (
            -0.3
            + 1.0 * x[:, 0]
            - 0.8 * x[:, 1]
            + 0.6 * x[:, 2]
            + 0.7 * x[:, 5]
            + c0_effect[codes[0]]
            + c1_effect[codes[1]]
        )
        p = 1.0 / (1.0 + np.exp(-logit))
        y = (rng.random(n) < p).astype(np.int64)
        frame = pd.DataFrame({name: x[:, i] for i, name in enumerate(NUMERICAL)})
        for j, name in enumerate(CATEGORICAL):
            frame[name] = names[j][codes[j]].astype(object)
        frame[TARGET] = y
        frame[PREDICTION] = (p >= 0.5).astype(np.int64)
        frame[SCORE] = p
        return frame

    reference = one(np.random.default_rng([seed, n, 0]), shifted=False)
    current = one(np.random.default_rng([seed, n, 1]), shifted=True)
    return reference, current


def _write_data_here(n: int, folder: Path) -> None:
    """Write both sets as Parquet and the current set's real metrics as JSON."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    reference, current = generate(n)
    reference.to_parquet(folder / "reference.parquet", index=False)
    current.to_parquet(folder / "current.parquet", index=False)
    realised = {
        "accuracy": float(accuracy_score(current[TARGET], current[PREDICTION])),
        "roc_auc": float(roc_auc_score(current[TARGET], current[SCORE])),
        "reference_accuracy": float(accuracy_score(reference[TARGET], reference[PREDICTION])),
        "reference_roc_auc": float(roc_auc_score(reference[TARGET], reference[SCORE])),
        "current_positive_rate": float(current[TARGET].mean()),
    }
    (folder / "realised.json").write_text(json.dumps(realised))


def write_data(n: int, folder: Path) -> tuple[Path, Path, dict[str, float]]:
    """Write the data in a child process; return the paths and the real metrics.

    A child, so that this process stays small: a process spawned by a large parent
    inherits the parent's peak RSS in its `ru_maxrss`.
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), f"--_write-data={n}", str(folder)]
    subprocess.run(cmd, check=True)
    realised = json.loads((folder / "realised.json").read_text())
    return folder / "reference.parquet", folder / "current.parquet", realised


# --------------------------------------------------------------------------- peers venv


def peers_python() -> Path:
    """bench/.peers-venv's python, creating the venv on first use (needs PyPI)."""
    python = PEERS_VENV / "bin" / "python"
    marker = PEERS_VENV / ".installed"
    wanted = "\n".join(PEERS_REQUIREMENTS)
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    base = os.environ.get("PEERS_PYTHON") or shutil.which("python3") or "python3"
    print(f"# making {PEERS_VENV} with {base} and {' '.join(PEERS_REQUIREMENTS)}", flush=True)
    subprocess.run([base, "-m", "venv", str(PEERS_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *PEERS_REQUIREMENTS], check=True)
    marker.write_text(wanted)
    return python


# --------------------------------------------------------------------------- children


def run_child(
    tool: str, ref: Path, cur: Path, outdir: Path, timeout: float, from_paths: bool = False
) -> dict[str, Any]:
    """Run one tool's child in a fresh process; return its result with wall and memory."""
    import psutil

    python = TUNELENS_PYTHON if tool == "tunelens" else peers_python()
    result_path = outdir / f"{tool}.result.json"
    log_path = outdir / f"{tool}.log"
    result_path.unlink(missing_ok=True)
    cmd = [
        str(python),
        str(SCRIPTS[tool]),
        f"--reference={ref}",
        f"--current={cur}",
        f"--result={result_path}",
        f"--outdir={outdir}",
        f"--numerical={','.join(NUMERICAL)}",
        f"--categorical={','.join(CATEGORICAL)}",
        f"--target={TARGET}",
        f"--prediction={PREDICTION}",
        f"--score={SCORE}",
    ]
    if from_paths:
        cmd.append("--from-paths")
    env = {**os.environ, **TELEMETRY_OFF, "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=outdir)
    ps = psutil.Process(proc.pid)
    tree_peak = 0
    timed_out = False
    status = rusage = None
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            break
        try:
            procs = [ps, *ps.children(recursive=True)]
            tree_peak = max(tree_peak, sum(_rss(p) for p in procs))
        except psutil.Error:
            pass
        if time.perf_counter() - t0 > timeout:
            timed_out = True
            for p in [*ps.children(recursive=True), ps]:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            _, status, rusage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    res: dict[str, Any] = {"tool": tool, "ok": False}
    if result_path.exists():
        res = json.loads(result_path.read_text())
    res["process_wall_s"] = wall
    # the child's own VmHWM at its end; else (failed, timed out) ru_maxrss, KiB on Linux
    res["ru_maxrss_mib"] = rusage.ru_maxrss / 1024
    res["peak_rss_mib"] = res.get("vm_hwm_mib") or res["ru_maxrss_mib"]
    res["tree_peak_rss_mib"] = tree_peak / 2**20
    if res.get("rss_after_load_mib") is not None:
        # what the work added on top of the loaded data (a lower bound: the load's own
        # transient peak may hide part of it)
        res["work_rss_mib"] = res["peak_rss_mib"] - res["rss_after_load_mib"]
    res["returncode"] = proc.returncode
    # CPU seconds of the whole child (imports and load included): less sensitive than wall
    # time to other work on the machine
    res["process_cpu_s"] = rusage.ru_utime + rusage.ru_stime
    res["loadavg_after"] = os.getloadavg()
    if timed_out:
        res["ok"] = False
        res["error"] = f"timeout after {timeout:.0f} s"
    elif not res.get("ok") and "error" not in res:
        tail = log_path.read_text()[-2000:]
        res["error"] = f"exit {proc.returncode}; log tail: {tail}"
    return res


def _rss(p: Any) -> int:
    try:
        return int(p.memory_info().rss)
    except Exception:
        return 0


# --------------------------------------------------------------------------- output


def machine() -> dict[str, Any]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory": mem,
        "platform": platform.platform(),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _fmt(v: Any, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def print_size(n: int, realised: dict[str, float], results: dict[str, dict[str, Any]]) -> None:
    print(f"\n## {n:,} rows per set (reference and current), 25 features\n")
    base = results.get("tunelens")
    ok_base = base is not None and base.get("ok")
    print(
        "| tool | work s | import s | load s | process CPU s | peak RSS MiB | tree peak MiB "
        "| RSS after load MiB | work RSS MiB | time ratio | memory ratio | work memory ratio "
        "| status |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for tool, r in results.items():
        t_ratio = m_ratio = w_ratio = None
        if ok_base and r.get("ok") and tool != "tunelens":
            t_ratio = r["work_s"] / base["work_s"]
            m_ratio = r["peak_rss_mib"] / base["peak_rss_mib"]
            if r.get("work_rss_mib") and base.get("work_rss_mib"):
                w_ratio = r["work_rss_mib"] / base["work_rss_mib"]
            r["ratios"] = {"work_s": t_ratio, "peak_rss": m_ratio, "work_rss": w_ratio}
        status = "ok" if r.get("ok") else f"FAILED: {str(r.get('error', '?')).splitlines()[0]}"
        print(
            f"| {tool} | {_fmt(r.get('work_s'))} | {_fmt(r.get('import_s'))} "
            f"| {_fmt(r.get('load_s'))} | {_fmt(r.get('process_cpu_s'), '.1f')} "
            f"| {_fmt(r.get('peak_rss_mib'), '.0f')} "
            f"| {_fmt(r.get('tree_peak_rss_mib'), '.0f')} "
            f"| {_fmt(r.get('rss_after_load_mib'), '.0f')} "
            f"| {_fmt(r.get('work_rss_mib'), '.0f')} | {_fmt(t_ratio, '.1f')} "
            f"| {_fmt(m_ratio, '.1f')} | {_fmt(w_ratio, '.1f')} | {status[:160]} |"
        )
    print(
        f"\nrealised on current: accuracy {realised['accuracy']:.4f}, "
        f"roc_auc {realised['roc_auc']:.4f} (reference: accuracy "
        f"{realised['reference_accuracy']:.4f}, roc_auc {realised['reference_roc_auc']:.4f})\n"
    )
    print("| tool | est. accuracy | abs error | est. roc_auc | abs error |")
    print("|---|---:|---:|---:|---:|")
    for tool in ("tunelens", "nannyml"):
        r = results.get(tool)
        if not r or not r.get("ok"):
            continue
        est = r.get("estimate") or {}
        acc, auc = est.get("accuracy"), est.get("roc_auc")
        r["estimate_error"] = {
            "accuracy": None if acc is None else abs(acc - realised["accuracy"]),
            "roc_auc": None if auc is None else abs(auc - realised["roc_auc"]),
        }
        e = r["estimate_error"]
        print(
            f"| {tool} | {_fmt(acc, '.4f')} | {_fmt(e['accuracy'], '.4f')} "
            f"| {_fmt(auc, '.4f')} | {_fmt(e['roc_auc'], '.4f')} |"
        )
    print()
    for tool, r in results.items():
        steps = r.get("steps") or r.get("timings")
        if r.get("ok") and steps:
            parts = ", ".join(
                f"{k} {v:.2f}" for k, v in steps.items() if isinstance(v, (int, float))
            )
            print(f"- {tool} steps (s): {parts}")
    print(f"\ndrifted columns injected: {', '.join(DRIFTED)}")
    for tool, r in results.items():
        if r.get("ok") and "univariate_drifted" in r:
            print(f"- {tool} flags: {', '.join(r['univariate_drifted']) or '(none)'}")
        if r.get("ok") and r.get("multivariate"):
            print(f"- {tool} multivariate: {r['multivariate']}")
    for tool, r in results.items():
        for w, count in (r.get("warnings") or {}).items():
            print(f"- {tool} warning (x{count}): {w}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="100000,1000000", help="comma-separated sizes")
    ap.add_argument("--only", default=",".join(TOOLS), help="comma-separated: " + "|".join(TOOLS))
    ap.add_argument("--json", help="write every result to this JSON file")
    ap.add_argument("--timeout", type=float, default=CHILD_TIMEOUT_S, help="per child, seconds")
    ap.add_argument("--keep", help="keep the data and the tools' reports in this folder")
    ap.add_argument(
        "--tunelens-frames",
        action="store_true",
        help="give analyse() pandas frames loaded before the work, as the peers get, instead "
        "of the Parquet paths (the default: its own column-by-column reader, timed as work)",
    )
    ap.add_argument("--_write-data", type=int, help=argparse.SUPPRESS)
    args, rest = ap.parse_known_args(argv)
    if args._write_data:
        _write_data_here(args._write_data, Path(rest[0]))
        return 0
    if rest:
        ap.error(f"unrecognised arguments: {' '.join(rest)}")
    sizes = [int(float(s)) for s in args.rows.split(",") if s]
    tools = [t.strip() for t in args.only.split(",") if t.strip()]
    for t in tools:
        if t not in TOOLS:
            ap.error(f"unknown tool {t!r}; one of {', '.join(TOOLS)}")
    if any(t != "tunelens" for t in tools):
        peers_python()

    info = machine()
    print("# tunelens quality report vs Evidently and NannyML")
    print(f"date {info['date']}; {info['cpu']}; {info['cores']} cores")
    print(f"({info['usable_cores']} usable); {info['memory']}; {info['platform']}")
    print("(run on an otherwise idle machine: times are wall-clock, and the load average")
    print(" before each child is printed)")
    out: dict[str, Any] = {"machine": info, "sizes": {}}
    versions: dict[str, dict[str, str]] = {}
    keep = Path(args.keep) if args.keep else None
    with tempfile.TemporaryDirectory(prefix="tunelens-bench-") as tmp:
        for n in sizes:
            folder = (keep or Path(tmp)) / f"rows-{n}"
            folder.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            ref, cur, realised = write_data(n, folder)
            print(f"\n# data {n:,} rows: written in {time.perf_counter() - t0:.1f} s to {folder}")
            results: dict[str, dict[str, Any]] = {}
            for tool in tools:
                load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
                print(f"# running {tool} on {n:,} rows (load average {load}) ...", flush=True)
                from_paths = not args.tunelens_frames and tool == "tunelens"
                r = run_child(tool, ref, cur, folder, args.timeout, from_paths)
                results[tool] = r
                if r.get("versions"):
                    versions[tool] = r["versions"]
                print(
                    f"#   {'ok' if r.get('ok') else 'FAILED'}: work {_fmt(r.get('work_s'))} s, "
                    f"process {r['process_wall_s']:.1f} s, peak RSS {r['peak_rss_mib']:.0f} MiB",
                    flush=True,
                )
                if not r.get("ok"):
                    print(f"#   {r.get('error')}\n{r.get('traceback', '')}", flush=True)
            print_size(n, realised, results)
            out["sizes"][str(n)] = {"realised": realised, "results": results}
    print("\n## versions\n")
    for tool, v in versions.items():
        print(f"- {tool} child: " + ", ".join(f"{k} {val}" for k, val in sorted(v.items())))
    out["versions"] = versions
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
