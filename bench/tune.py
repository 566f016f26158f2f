"""``tunelens.tune`` with its defaults against plain Optuna TPE: best metric and compute.

Run ``.venv/bin/python bench/tune.py`` (``--quick`` for a smoke run of a minute or two).
Three tasks that run on a CPU, on datasets shipped with scikit-learn:

* ``mlp``: ``tunelens.tune.models.MLP`` on ``load_digits`` (64 features, 10 classes);
* ``cnn``: ``tunelens.tune.models.SmallCNN`` on ``load_digits`` as 1x8x8 images;
* ``gb``: scikit-learn's ``HistGradientBoostingClassifier`` on ``load_digits``.

For each task and seed, both sides search the same space over the same training code,
with the same validation split and the same trial budget:

* **tunelens**: ``tunelens.tune.tune(model, data=..., seed=s, n_trials=N)`` with its
  defaults (listed below), TPE seeded with ``s``;
* **plain**: ``optuna.create_study(direction="maximize",
  sampler=TPESampler(seed=s), pruner=NopPruner())`` (no pruning; Optuna's default
  ``MedianPruner`` would otherwise prune) optimising the same objective: for PyTorch,
  ``tunelens.tune.torch_train.torch_task(...).objective``, the loop ``tune`` itself runs,
  so every trial trains its full epochs; for gradient boosting, a clone of the estimator
  with the sampled parameters fitted once.

Compute is training epochs (PyTorch, ``trial.user_attrs["tunelens.epochs"]``, pruned
trials included) or boosting iterations built (``tunelens.iterations`` on the tunelens
side, ``model.n_iter_`` on the plain side). *Compute to target* is the cumulative compute
of the trials in the order they ran, up to and including the first trial whose value
reaches the task's target (``inf`` if none does). Each task's target is printed; it was
chosen so that plain TPE reaches it in most seeds within the budget.

Acceptance (per task), paired by seed (a seed fixes both sides' data split and sampler
seed): on the median seed, tunelens reaches the target with at most half the compute of
plain TPE (the median over seeds of the ratio tunelens / plain of compute to target is
<= 0.5), and its final best metric is no worse (the median over seeds of the difference
tunelens - plain of the best metric is >= -``--tolerance``, default 0). The unpaired
medians are printed too. The script prints PASS/FAIL per task and exits 1 on any FAIL.

What tunelens's defaults do that the plain side does not: successive-halving pruning
whose first rung is a quarter of the epochs or boosting stages (reduction factor 3),
TPE with a fifth of the budget (5 to 10) as random start-up trials instead of 10,
trial 0 at the model's own (scikit-learn) or a known-good (PyTorch: AdamW 3e-3 with a
one-cycle schedule) configuration, and, in the PyTorch loop, early stopping after
``max(3, epochs // 4)`` epochs without improvement (the best epoch is kept). The plain
side's PyTorch objective trains every epoch (``torch_task(..., early_stopping=False)``),
as an objective written for plain Optuna does.

Threads: torch uses 1 intra-op thread (``torch.set_num_threads(1)``) and scikit-learn's
OpenMP 1 thread (``OMP_NUM_THREADS=1``), so that runs on a small shared machine stay
comparable; ``--jobs`` runs seeds in parallel processes.

The CNN task searches the default PyTorch space with ``width`` narrowed to [8, 64] and
``depth`` to [1, 3] (on both sides): the auto space's [16, 512] x [1, 4] holds
configurations of tens of millions of parameters that take minutes per trial on a CPU.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

EPOCHS_ATTR = "tunelens.epochs"
ITERATIONS_ATTR = "tunelens.iterations"


@dataclass(frozen=True)
class TaskSpec:
    """One benchmark task."""

    name: str
    description: str
    target: float
    n_trials: int
    quick_trials: int
    epochs: int | None  # PyTorch epochs per trial; None for gradient boosting
    quick_epochs: int | None
    unit: str  # what one unit of compute is


TASKS: dict[str, TaskSpec] = {
    "mlp": TaskSpec(
        "mlp",
        "MLP on load_digits (1437 train / 360 validation rows), accuracy",
        target=0.975,
        n_trials=20,
        quick_trials=8,
        epochs=20,
        quick_epochs=8,
        unit="epochs",
    ),
    "cnn": TaskSpec(
        "cnn",
        "SmallCNN on load_digits as 1x8x8 images (1437 / 360 rows), accuracy",
        target=0.985,
        n_trials=16,
        quick_trials=6,
        epochs=12,
        quick_epochs=4,
        unit="epochs",
    ),
    "gb": TaskSpec(
        "gb",
        "HistGradientBoostingClassifier (max_iter 100) on load_digits (1347 / 450 rows), accuracy",
        target=0.965,
        n_trials=30,
        quick_trials=10,
        epochs=None,
        quick_epochs=None,
        unit="iterations",
    ),
}


@dataclass
class Side:
    """One search: per trial, in the order they ran."""

    values: list[float | None] = field(default_factory=list)  # None: pruned or failed
    compute: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def best(self) -> float:
        done = [v for v in self.values if v is not None and math.isfinite(v)]
        return max(done) if done else -math.inf

    @property
    def total(self) -> float:
        return float(sum(self.compute))

    def to_target(self, target: float) -> float:
        """Cumulative compute up to and including the first trial reaching ``target``."""
        spent = 0.0
        for value, c in zip(self.values, self.compute, strict=True):
            spent += c
            if value is not None and value >= target:
                return spent
        return math.inf


# ----------------------------------------------------------------------------- data


def _digits(seed: int, images: bool, test_size: float) -> tuple[Any, Any, Any, Any]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype("float32")
    if images:
        X = X.reshape(-1, 1, 8, 8)
    X_tr, X_va, y_tr, y_va = train_test_split(
        X, y, test_size=test_size, random_state=seed, stratify=y
    )
    return X_tr, y_tr, X_va, y_va


# ----------------------------------------------------------------------------- sides


def _torch_model(task: str) -> tuple[Callable[..., Any], tuple[Any, ...] | None]:
    """(factory, space override or None) for a PyTorch task."""
    from tunelens.tune import Dist
    from tunelens.tune.models import MLP, SmallCNN

    if task == "mlp":
        return functools.partial(MLP, 64, 10), None
    narrowed = (("width", Dist.integer(8, 64, log=True)), ("depth", Dist.integer(1, 3)))
    return functools.partial(SmallCNN, 1, 10, image_size=8), narrowed


def _torch_space(factory: Callable[..., Any], data: Any, narrowed: tuple[Any, ...] | None) -> Any:
    """The space both sides search: tune's auto space, optionally narrowed."""
    if narrowed is None:
        return "auto"
    from tunelens.tune.torch_train import torch_task

    auto = dict(torch_task(factory, data=data, seed=0, epochs=1).space)
    auto.pop("early_stopping_patience", None)
    auto.update(dict(narrowed))
    return auto


def _side_from_study(study: Any, attr: str) -> Side:
    import optuna

    side = Side()
    for t in study.trials:
        complete = t.state == optuna.trial.TrialState.COMPLETE
        side.values.append(float(t.value) if complete and t.value is not None else None)
        side.compute.append(float(t.user_attrs.get(attr, 0)))
    return side


#: pruners for the tunelens side: ``default`` is tune's own (ASHA); the others are
#: experiments to inform that default, and are labelled as such in the output
PRUNERS: tuple[str, ...] = ("default", "warm", "hyperband")
_GB_REPORTS = 7  # the staged gradient boosting objective reports 7 of its 8 stages


def _pruner(name: str, resource: int) -> Any:
    """The tunelens side's pruner; ``resource`` is the last step a trial reports."""
    import optuna

    if name == "default":
        return "asha"
    if name == "warm":  # ASHA whose first rung is a quarter of the way in
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, resource // 4))
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=resource, reduction_factor=3)


def run_tunelens(
    spec: TaskSpec, seed: int, n_trials: int, epochs: int | None, pruner: str = "default"
) -> Side:
    """``tunelens.tune`` with its defaults (``pruner`` aside) on task ``spec``."""
    from tunelens.tune import tune

    t0 = time.perf_counter()
    if spec.name == "gb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        data = _digits(seed, images=False, test_size=0.25)
        res = tune(
            HistGradientBoostingClassifier(random_state=seed),
            data=data,
            seed=seed,
            n_trials=n_trials,
            pruner=_pruner(pruner, _GB_REPORTS),
        )
        side = _side_from_study(res.study, ITERATIONS_ATTR)
    else:
        factory, narrowed = _torch_model(spec.name)
        data = _digits(seed, images=spec.name == "cnn", test_size=0.2)
        space = _torch_space(factory, data, narrowed)
        res = tune(
            factory,
            data=data,
            space=space,
            seed=seed,
            n_trials=n_trials,
            epochs=epochs,
            pruner=_pruner(pruner, int(epochs or 20)),
        )
        side = _side_from_study(res.study, EPOCHS_ATTR)
    side.seconds = time.perf_counter() - t0
    return side


def _plain_study(seed: int) -> Any:
    import optuna

    return optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.NopPruner(),
    )


def run_plain(spec: TaskSpec, seed: int, n_trials: int, epochs: int | None) -> Side:
    """Plain Optuna TPE, no pruning, same space and training code."""
    t0 = time.perf_counter()
    study = _plain_study(seed)
    if spec.name == "gb":
        from sklearn.base import clone
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.metrics import accuracy_score

        from tunelens.tune import default_space

        X_tr, y_tr, X_va, y_va = _digits(seed, images=False, test_size=0.25)
        base = HistGradientBoostingClassifier(random_state=seed)
        space = default_space(base)

        def objective(trial: Any) -> float:
            params = {name: dist.suggest(trial, name) for name, dist in space.items()}
            model = clone(base).set_params(**params)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(X_tr, y_tr)
            trial.set_user_attr(ITERATIONS_ATTR, int(model.n_iter_))
            return float(accuracy_score(y_va, model.predict(X_va)))

        study.optimize(objective, n_trials=n_trials)
        side = _side_from_study(study, ITERATIONS_ATTR)
    else:
        from tunelens.tune.torch_train import torch_task

        factory, narrowed = _torch_model(spec.name)
        data = _digits(seed, images=spec.name == "cnn", test_size=0.2)
        space = _torch_space(factory, data, narrowed)
        # a plain objective trains every epoch: no early stopping, searched or default
        task = torch_task(
            factory, data=data, space=space, seed=seed, epochs=epochs, early_stopping=False
        )
        if "early_stopping_patience" in task.space:
            space = {k: v for k, v in task.space.items() if k != "early_stopping_patience"}
            task = torch_task(
                factory, data=data, space=space, seed=seed, epochs=epochs, early_stopping=False
            )
        study.optimize(task.objective, n_trials=n_trials)
        side = _side_from_study(study, EPOCHS_ATTR)
    side.seconds = time.perf_counter() - t0
    return side


@dataclass(frozen=True)
class Job:
    task: str
    seed: int
    n_trials: int
    epochs: int | None
    pruner: str = "default"
    plain: Side | None = None  # reused from an earlier run's --json


def _one(job: Job) -> tuple[str, int, Side, Side]:
    """Both sides of one (task, seed); runs in a worker process with ``--jobs``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - the gb task needs no torch
        pass
    spec = TASKS[job.task]
    tl = run_tunelens(spec, job.seed, job.n_trials, job.epochs, job.pruner)
    plain = job.plain or run_plain(spec, job.seed, job.n_trials, job.epochs)
    return job.task, job.seed, tl, plain


# ----------------------------------------------------------------------------- report


def _fmt(x: float, digits: int = 4) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}g}" if not float(x).is_integer() else f"{int(x):,}"


def _ratio(a: float, b: float) -> float:
    if math.isinf(a) and math.isinf(b):
        return math.nan
    if math.isinf(b):
        return 0.0
    if math.isinf(a):
        return math.inf
    return a / b if b else math.nan


def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else math.nan


@dataclass
class Verdict:
    task: str
    target: float
    median_best_tunelens: float
    median_best_plain: float
    median_to_target_tunelens: float
    median_to_target_plain: float
    compute_ratio: float
    reached_tunelens: int
    reached_plain: int
    seeds: int
    passed: bool
    why: str
    best_difference: float = math.nan


def verdict(spec: TaskSpec, rows: list[tuple[int, Side, Side]], tolerance: float) -> Verdict:
    """Paired over seeds (both sides of a seed share its data split and sampler seed).

    The median seed's compute ratio is the median of the per-seed ratios
    tunelens / plain of compute to target (a seed where neither reaches the target counts
    as a failure for tunelens); its best-metric difference is the median of the per-seed
    differences tunelens - plain. The unpaired medians are printed beside them.
    """
    tl_best = [tl.best for _, tl, _ in rows]
    pl_best = [pl.best for _, _, pl in rows]
    tl_tt = [tl.to_target(spec.target) for _, tl, _ in rows]
    pl_tt = [pl.to_target(spec.target) for _, _, pl in rows]
    ratios = [_ratio(a, b) for a, b in zip(tl_tt, pl_tt, strict=True)]
    ratio = _median([math.inf if math.isnan(r) else r for r in ratios])
    diff = _median([a - b for a, b in zip(tl_best, pl_best, strict=True)])
    reasons = []
    ok_compute = ratio <= 0.5
    if not ok_compute:
        reasons.append(f"median per-seed compute ratio {_fmt(ratio, 3)} > 0.5")
    ok_best = diff >= -tolerance - 1e-12
    if not ok_best:
        reasons.append(f"median per-seed best difference {diff:+.4f} < -{tolerance:g}")
    return Verdict(
        spec.name,
        spec.target,
        _median(tl_best),
        _median(pl_best),
        _median(tl_tt),
        _median(pl_tt),
        ratio,
        sum(math.isfinite(x) for x in tl_tt),
        sum(math.isfinite(x) for x in pl_tt),
        len(rows),
        ok_compute and ok_best,
        "; ".join(reasons) or "ok",
        diff,
    )


def print_task(spec: TaskSpec, rows: list[tuple[int, Side, Side]], v: Verdict, unit: str) -> None:
    print(f"\n## {spec.name}: {spec.description}")
    print(f"target: validation accuracy >= {spec.target}; compute in {unit}")
    head = (
        f"{'seed':>4}  {'best tl':>8}  {'best plain':>10}  {'to target tl':>12}  "
        f"{'to target plain':>15}  {'ratio':>6}  {'total tl':>9}  {'total plain':>11}  "
        f"{'pruned tl':>9}  {'s tl':>6}  {'s plain':>7}"
    )
    print(head)
    print("-" * len(head))
    for seed, tl, pl in rows:
        a, b = tl.to_target(spec.target), pl.to_target(spec.target)
        pruned = sum(1 for x in tl.values if x is None)
        print(
            f"{seed:>4}  {tl.best:>8.4f}  {pl.best:>10.4f}  {_fmt(a):>12}  {_fmt(b):>15}  "
            f"{_fmt(_ratio(a, b), 3):>6}  {_fmt(tl.total):>9}  {_fmt(pl.total):>11}  "
            f"{pruned:>9}  {tl.seconds:>6.1f}  {pl.seconds:>7.1f}"
        )
    print(
        f"median seed (paired): compute ratio {_fmt(v.compute_ratio, 3)} (needs <= 0.5), "
        f"best difference tl - plain {v.best_difference:+.4f} (needs >= 0); "
        f"target reached in {v.reached_tunelens}/{v.seeds} (tl) and "
        f"{v.reached_plain}/{v.seeds} (plain) seeds"
    )
    print(
        f"unpaired medians: best tl {v.median_best_tunelens:.4f} vs plain "
        f"{v.median_best_plain:.4f}; compute to target tl {_fmt(v.median_to_target_tunelens)} "
        f"vs plain {_fmt(v.median_to_target_plain)}"
    )
    print(f"{spec.name}: {'PASS' if v.passed else 'FAIL'}" + ("" if v.passed else f" ({v.why})"))


def _versions() -> str:
    out = []
    for pkg in ("tunelens", "optuna", "torch", "scikit-learn", "numpy"):
        try:
            out.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            out.append(f"{pkg} -")
    return ", ".join(out)


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _setup() -> None:
    """Run before torch or scikit-learn is imported (they are imported lazily)."""
    # run as a script, this file's folder comes first on sys.path, where bench/profile.py
    # would shadow the standard library's ``profile`` (imported by cProfile, hence by torch)
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # read when OpenMP loads


def main(argv: Sequence[str] | None = None) -> int:
    _setup()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--tasks", default="mlp,cnn,gb", help="comma list of mlp, cnn, gb")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma list of seeds")
    parser.add_argument("--trials", type=int, default=None, help="trial budget (per task)")
    parser.add_argument("--epochs", type=int, default=None, help="PyTorch epochs per trial")
    parser.add_argument("--quick", action="store_true", help="few trials and epochs: smoke run")
    parser.add_argument("--jobs", type=int, default=1, help="(task, seed) pairs in parallel")
    parser.add_argument("--tolerance", type=float, default=0.0, help="best-metric tolerance")
    parser.add_argument("--json", default=None, help="write every trial and verdict here")
    parser.add_argument(
        "--pruner",
        choices=PRUNERS,
        default="default",
        help="tunelens side's pruner: default = tune's own (ASHA); others are experiments",
    )
    parser.add_argument(
        "--reuse-plain",
        default=None,
        metavar="JSON",
        help="take the plain side from an earlier --json run (same trials and epochs)",
    )
    args = parser.parse_args(argv)

    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        parser.error(f"--tasks: unknown {unknown}; use some of {list(TASKS)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error("--seeds: a comma list of integers, e.g. 0,1,2,3,4")
    if not seeds:
        parser.error("--seeds: give at least one seed")
    if args.trials is not None and args.trials < 1:
        parser.error("--trials: must be >= 1")

    print("# tunelens.tune (defaults) vs plain Optuna TPE (no pruning)")
    print(f"date {datetime.now(UTC):%Y-%m-%d %H:%M UTC}; {_cpu()}; {os.cpu_count()} CPUs visible")
    print(f"{_versions()}; python {platform.python_version()}")
    print("threads: torch 1 (set_num_threads), OpenMP 1; jobs", args.jobs)
    print(f"seeds {seeds}" + ("; QUICK run (fewer trials and epochs)" if args.quick else ""))

    reused: dict[tuple[str, int], Side] = {}
    if args.reuse_plain:
        with open(args.reuse_plain, encoding="utf-8") as fh:
            for run in json.load(fh)["runs"]:
                reused[(run["task"], int(run["seed"]))] = Side(**run["plain"])
        print(f"plain side reused from {args.reuse_plain}")
    if args.pruner != "default":
        print(f"tunelens side: pruner {args.pruner!r} (an experiment, NOT tune's default)")
    jobs: list[Job] = []
    for name in names:
        spec = TASKS[name]
        n = args.trials or (spec.quick_trials if args.quick else spec.n_trials)
        epochs = spec.quick_epochs if args.quick else spec.epochs
        if args.epochs is not None and spec.epochs is not None:
            epochs = args.epochs
        print(f"{name}: {n} trials per side" + (f", {epochs} epochs per trial" if epochs else ""))
        for s in seeds:
            plain = reused.get((name, s))
            if args.reuse_plain and (plain is None or len(plain.values) != n):
                parser.error(f"--reuse-plain: no {name} seed {s} run with {n} trials there")
            jobs.append(Job(name, s, n, epochs, args.pruner, plain))

    t0 = time.perf_counter()
    results: list[tuple[str, int, Side, Side]]
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(_one, jobs))
    else:
        results = []
        for job in jobs:
            results.append(_one(job))
            print(
                f"  done {job.task} seed {job.seed} ({time.perf_counter() - t0:.0f} s)", flush=True
            )

    verdicts = []
    for name in names:
        spec = TASKS[name]
        rows = sorted(((s, tl, pl) for n, s, tl, pl in results if n == name), key=lambda r: r[0])
        v = verdict(spec, rows, args.tolerance)
        verdicts.append(v)
        print_task(spec, rows, v, spec.unit)
    print(f"\ntotal wall time {time.perf_counter() - t0:.0f} s")
    failed = [v.task for v in verdicts if not v.passed]
    print("OVERALL: " + ("PASS" if not failed else f"FAIL ({', '.join(failed)})"))
    if args.json:
        payload = {
            "config": {
                "pruner": args.pruner,
                "seeds": seeds,
                "jobs": [{"task": j.task, "trials": j.n_trials, "epochs": j.epochs} for j in jobs],
                "targets": {n: TASKS[n].target for n in names},
            },
            "verdicts": [asdict(v) for v in verdicts],
            "runs": [
                {"task": n, "seed": s, "tunelens": asdict(tl), "plain": asdict(pl)}
                for n, s, tl, pl in results
            ],
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=1, default=str)
    return 1 if failed else 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
