"""The demo: the whole closed loop on a real classifier in simulated production.

What ``tunelens demo`` / ``make demo`` does, printing each step as it happens on a
simulated clock that advances six hours at a time:

1. **Train.** A logistic regression (on standardised measurements) learns the Wisconsin
   breast-cancer biopsies that ship with scikit-learn (569 cases, 30 measurements of cell
   nuclei; no download); it is version ``"1"`` in the store's registry, with its 5-fold
   cross-validated accuracy.
2. **Serve.** 10 days of a screening service: 6,500 biopsies a day, mostly in working
   hours, in small request batches. The simulated population is the 569 cases: each
   request is one of them measured again with 3% noise, so the first model and the
   challenger are judged alike, on the population both learnt from (the accuracies are
   those of that population, a little above the cross-validated estimate). The model
   scores every request and its measured call time is logged as latency, through
   `tunelens.monitor.Monitor.log` with the features. Pathology results (the labels)
   arrive 2 hours to 6 days later (median about 30 hours; 8% never) through
   `Monitor.log_labels`.
3. **Drift.** On day 5 the lab's image-segmentation software is updated and traces
   nucleus outlines 30% wider: every radius and perimeter measurement grows by 30%, every
   area by 69%. Benign cases start to look malignant and accuracy falls.
4. **Alert.** An `tunelens.monitor.alerts.AlertEngine` rule (accuracy more than 5% below
   the first two days, over 12-hour windows with at least 300 labelled rows) is evaluated
   at every step of the clock; it fires once enough late labels of the drifted traffic
   have arrived.
5. **Report.** `tunelens.quality.analyse` compares the labelled traffic since the
   alert's window with the rule's baseline days; the HTML report is written and its top
   findings printed: the drifted features are the cause.
6. **Loop.** Once 1,000 labelled rows since the alert's window are in, `Loop.on_alert`
   (policy ``"auto"``, a latency constraint) analyses, localises, plans, tunes a
   challenger and checks it against the champion on held-out recent rows. A logistic
   regression meets the latency objective, so nothing is compressed.
7. **Shadow.** Requests go through `Loop.start_shadow`'s `tunelens.monitor.Shadow` (on
   the simulated clock): the champion answers, the challenger scores the same requests,
   until 1,000 of them are labelled; `Loop.conclude` judges it on that fresh traffic and
   promotes it.
8. **Recovery.** The new champion serves the remaining days; accuracy on the labelled
   traffic after the promotion is compared with the accuracy before and during the
   drift: ``recovery = (after - during) / (before - during)``.
9. **Summary**: the drop, the cause found, the fix, the recovery and the time taken;
   where the store and the report are (``tunelens serve --store ...`` opens the store).

Deterministic: everything is drawn from one seeded generator (latencies are measured,
so they vary from run to run; the shadow's request ids are random).

Example:
    >>> from tunelens.demo import run
    >>> result = run("/tmp/tunelens-demo", quiet=True)  # doctest: +SKIP
    >>> result.recovery >= 0.8  # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tunelens.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from tunelens.findings import Finding
    from tunelens.loop import Loop, LoopRun
    from tunelens.monitor import Monitor, Shadow
    from tunelens.monitor.alerts import AlertEngine
    from tunelens.quality import QualityReport
    from tunelens.store import AlertEvent

__all__ = ["DEMO_MODEL", "DemoResult", "run"]

DEMO_MODEL = "biopsy-screening"
DEMO_STORE = "tunelens-demo.duckdb"
DEMO_REPORT = "tunelens-demo-report.html"
CLASSES = ("benign", "malignant")  # the positive class is the larger label, "malignant"
TARGET = "diagnosis"
DAYS = 10
CASES_PER_DAY = 6_500
START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
SEGMENTATION_SCALE = 1.3
LABEL_LOSS = 0.08
SEED = 20260302
#: the simulated clock's step: labels arrive, alerts are evaluated, the loop acts
STEP_S = 6 * 3600
#: the alert rule: accuracy more than ALERT_DROP below the first BASELINE_DAYS days
ALERT_WINDOW_H = 12
ALERT_DROP = 0.05
ALERT_MIN_ROWS = 300
BASELINE_DAYS = 2
#: labelled rows since the alert's window the loop waits for (so it learns from them alone)
LOOP_ROWS = 1_000
SHADOW_ROWS = 1_000
N_TRIALS = 20
#: the latency objective every challenger must meet (one-row predict, p99)
LATENCY_P99_MS = 20.0


def _estimator() -> Any:
    """The demo's model: standardised measurements into a logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2_000))


@dataclass(frozen=True)
class DemoResult:
    """What the demo did.

    Attributes:
        store_path: the DuckDB file holding predictions, labels, metrics, alerts, the
            versions and the loop's run (``tunelens serve --store`` opens it).
        model: the model's name in the store.
        predictions: prediction rows logged for the model (the champion's answers).
        labels: label rows logged.
        matched: labelled prediction rows in the store.
        drift_start: when the segmentation update took effect.
        metrics: the daily windowed metrics read back through `Monitor.metrics`.
        accuracy_before: accuracy on the labelled traffic before the drift.
        accuracy_drifted: accuracy on the labelled traffic from the drift to the
            promotion (the old champion's answers; to the end when nothing was promoted).
        accuracy_recovered: accuracy on the labelled traffic after the promotion (NaN
            when nothing was promoted).
        recovery: ``(recovered - drifted) / (before - drifted)``: the share of the
            accuracy lost to the drift that the loop won back (NaN without a promotion).
        alert: the alert that triggered the loop, as stored (None if none fired).
        drifted_features: the features the report found drifted, strongest first.
        report_path: the HTML quality report (None if no alert fired).
        loop_run: the loop run's id (None if the loop did not run).
        challenger: the version the loop trained (None if it did not run).
        promoted: the version promoted in shadow mode, or None.
        promoted_at: when (simulated) it took over, or None.
        champion: the version serving at the end.
        seconds: wall time of the whole demo.
    """

    store_path: Path
    model: str
    predictions: int
    labels: int
    matched: int
    drift_start: datetime
    metrics: pd.DataFrame
    accuracy_before: float
    accuracy_drifted: float
    accuracy_recovered: float
    recovery: float
    alert: AlertEvent | None
    drifted_features: tuple[str, ...]
    report_path: Path | None
    loop_run: str | None
    challenger: str | None
    promoted: str | None
    promoted_at: datetime | None
    champion: str
    seconds: float


def _feature_names(raw: list[str]) -> list[str]:
    return [name.replace(" ", "_") for name in raw]


def _train() -> tuple[Any, pd.DataFrame, list[str]]:
    """Fit the model on the 569 biopsies; returns it, its training rows and the names.

    The rows hold the 30 measurements and ``TARGET``, "benign" or "malignant".
    """
    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    names = _feature_names(list(data.feature_names))
    reference = pd.DataFrame(data.data, columns=names)
    # sklearn codes malignant as 0
    reference[TARGET] = np.where(data.target == 0, CLASSES[1], CLASSES[0])
    model = _estimator()
    model.fit(data.data, reference[TARGET].to_numpy())
    return model, reference, names


def _cv_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    """5-fold cross-validated accuracy of the demo's estimator (recorded with version 1)."""
    from sklearn.model_selection import cross_val_score

    scores = cross_val_score(_estimator(), x, y, cv=5)
    return float(np.mean(scores))


def _day_times(rng: np.random.Generator, day: int, n: int) -> np.ndarray:
    """Sorted request times in a day (seconds from START): mostly 07:00-19:00."""
    busy = rng.random(n) < 0.85
    seconds = np.where(busy, rng.uniform(7 * 3600, 19 * 3600, n), rng.uniform(0, 24 * 3600, n))
    return np.sort(day * 86_400 + seconds)


def _segmentation_update(x: np.ndarray, names: list[str]) -> np.ndarray:
    """Outlines traced 30% wider: radius and perimeter x1.3, area x1.69."""
    out = x.copy()
    for column, name in enumerate(names):
        if "radius" in name or "perimeter" in name:
            out[:, column] *= SEGMENTATION_SCALE
        elif "area" in name:
            out[:, column] *= SEGMENTATION_SCALE**2
    return out


def _serve(
    model: Any, x: np.ndarray, bounds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Score ``x`` in the request batches ``bounds`` delimits, timing each call.

    Returns predicted classes, malignant probabilities, per-row
    latency (ms) and per-row request batch size.
    """
    n = len(x)
    proba = np.empty(n)
    latency = np.empty(n)
    batch = np.empty(n, dtype=np.int32)
    positive = list(model.classes_).index(CLASSES[1])
    for lo, hi in itertools.pairwise(bounds):
        started = time.perf_counter()
        proba[lo:hi] = model.predict_proba(x[lo:hi])[:, positive]
        latency[lo:hi] = (time.perf_counter() - started) * 1e3
        batch[lo:hi] = hi - lo
    predicted = np.where(proba >= 0.5, CLASSES[1], CLASSES[0])
    return predicted, proba, latency, batch


def _batch_bounds(rng: np.random.Generator, n: int, cuts: np.ndarray) -> np.ndarray:
    """Request batches of 1-32 rows (geometric, mean about 6), also cut at ``cuts``."""
    sizes = np.minimum(rng.geometric(1 / 6, size=n), 32)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return np.union1d(bounds[bounds < n], np.append(cuts, n)).astype(np.int64)


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna's per-trial INFO lines would drown the story: warnings only, then restore."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def _silent_logger() -> logging.Logger:
    """The alert engine's logger: the demo prints the firings itself."""
    log = logging.getLogger("tunelens.demo.alerts")
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    log.propagate = False
    return log


def _fmt(at: datetime) -> str:
    return f"{at:%a %d %b %H:%M}"


def _num(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _p(value: Any) -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "n/a"
    return f"{value:.1e}" if value < 1e-3 else f"{value:.3f}"


class _Story:
    """The simulation's state and its steps; `run` drives it over the days."""

    def __init__(
        self,
        console: Console,
        out: Path,
        *,
        days: int,
        cases_per_day: int,
        seed: int,
        n_trials: int,
        shadow_rows: int,
        loop_rows: int,
    ) -> None:
        from tunelens.monitor import Monitor
        from tunelens.monitor.alerts import AlertEngine, DropRule
        from tunelens.store.versions import VersionRegistry

        self.console, self.out = console, out
        self.days, self.cases_per_day, self.seed = days, cases_per_day, seed
        self.n_trials, self.shadow_rows, self.loop_rows = n_trials, shadow_rows, loop_rows
        self.rng = np.random.default_rng(seed)
        self.drift_day = max(BASELINE_DAYS, days * 2 // 5)
        self.drift_start = START + timedelta(days=self.drift_day)
        self.store_path = out / DEMO_STORE
        for suffix in ("", ".wal", ".optuna.db"):  # the store, its log, the loop's studies
            self.store_path.with_name(self.store_path.name + suffix).unlink(missing_ok=True)

        model, self.reference, self.names = _train()
        self.cases = self.reference[self.names].to_numpy()
        self.truth = self.reference[TARGET].to_numpy()
        self.model: Any = model
        self.monitor: Monitor = Monitor(
            DEMO_MODEL, store=self.store_path, task="binary", classes=CLASSES, resources=False
        )
        self.now = START  # the simulated clock: timestamps of requests, versions and runs
        registry = VersionRegistry(self.monitor.store, DEMO_MODEL, clock=lambda: self.now)
        self.cv_accuracy = _cv_accuracy(self.cases, self.truth)
        registry.register(
            "1",
            source="train",
            metrics={"cv_accuracy": self.cv_accuracy},
            note=f"trained on {len(self.reference)} biopsies",
        )
        registry.save_model("1", model)
        registry.promote("1", reason="the first model; serving from day 1")
        self.registry = registry
        self.rule = DropRule(
            name="accuracy-drop",
            metric="accuracy",
            drop=ALERT_DROP,
            baseline="first",
            baseline_windows=BASELINE_DAYS * 24 // ALERT_WINDOW_H,
            window=f"{ALERT_WINDOW_H}h",
            min_rows=ALERT_MIN_ROWS,
        )
        self.engine: AlertEngine = AlertEngine(
            self.monitor.store, [self.rule], log=_silent_logger()
        )
        self.version = "1"
        # labels not yet logged: arrival seconds, id, label, champion's prediction, shadowed
        self.pending: dict[str, list[np.ndarray]] = {k: [] for k in ("at", "id", "y", "p", "s")}
        self.logged = self.labelled = 0
        self.day_served = self.day_labels = self.day_hits = 0
        self.alert: AlertEvent | None = None
        self.report_path: Path | None = None
        self.drifted: tuple[str, ...] = ()
        self.loop: Loop | None = None
        self.loop_run: LoopRun | None = None
        self.waiting_said = False
        self.shadow: Shadow | None = None
        self.shadow_result: dict[str, Any] | None = None
        self.promoted_at: datetime | None = None

    # ------------------------------------------------------------------ the clock

    def play(self) -> None:
        self.console.print(
            f"[bold]tunelens demo[/]: a logistic regression screens breast-cancer biopsies "
            f"({len(self.names)} measurements of cell nuclei); {self.days} simulated days x "
            f"{self.cases_per_day:,} cases, pathology labels arriving late"
        )
        self.console.print(
            f"[bold]1. train[/]  version 1 learnt the {len(self.reference)} biopsies "
            f"(5-fold cross-validated accuracy {self.cv_accuracy:.3f}); each simulated "
            "request is one of them, measured again with 3% noise"
        )
        self.console.print(
            f"[bold]2. serve[/]  through tunelens.monitor.Monitor (features, scores, measured "
            f"latency); alert rule: {self.rule.metric} more than {ALERT_DROP:.0%} below the "
            f"first {BASELINE_DAYS} days over {ALERT_WINDOW_H} h windows with >= "
            f"{ALERT_MIN_ROWS} labelled rows, evaluated every {STEP_S // 3600} h"
        )
        for day in range(self.days):
            self._day(day)

    def _day(self, day: int) -> None:
        n, rng = self.cases_per_day, self.rng
        if day == self.drift_day:
            self.console.print(
                f"[bold red]{_fmt(self.drift_start)}  drift starts[/]: the lab's segmentation "
                f"update traces nuclei {SEGMENTATION_SCALE - 1:.0%} wider (radius and "
                f"perimeter x{SEGMENTATION_SCALE:g}, area x{SEGMENTATION_SCALE**2:.2f}); "
                "nobody tells the model's owners"
            )
        picks = rng.integers(0, len(self.cases), n)
        x = self.cases[picks] * (1 + rng.normal(0, 0.03, (n, len(self.names))))
        if day >= self.drift_day:
            x = _segmentation_update(x, self.names)
        truth = self.truth[picks]
        at = _day_times(rng, day, n)
        # Pathology: median about a day and a half, from 2 hours to 6 days; some never.
        delay = np.clip(rng.lognormal(np.log(30 * 3600), 0.6, n), 7200, 6 * 86_400)
        keep = rng.random(n) >= LABEL_LOSS
        ids = np.array([f"d{day}-{i:05d}" for i in range(n)])
        edges = day * 86_400 + np.arange(0, 86_400 + 1, STEP_S)
        cuts = np.searchsorted(at, edges)
        bounds = _batch_bounds(rng, n, cuts)
        self.day_served = self.day_labels = self.day_hits = 0
        for lo, hi, now_s in zip(cuts[:-1], cuts[1:], edges[1:], strict=True):
            inside = bounds[(bounds >= lo) & (bounds <= hi)] - lo
            rows = slice(int(lo), int(hi))
            self._serve_step(
                x[rows], truth[rows], at[rows], delay[rows], keep[rows], ids[rows], inside
            )
            self._release_labels(float(now_s))
            self._advance(START + timedelta(seconds=float(now_s)))
        agree = self.day_hits / self.day_labels if self.day_labels else float("nan")
        who = f"version {self.version}"
        if self.shadow is not None and self.shadow_result is None:
            who += " (challenger in shadow)"
        self.console.print(
            f"  day {day + 1} {START + timedelta(days=day):%a %d %b}: {who} served "
            f"{self.day_served:,} requests; {self.day_labels:,} pathology results came in, "
            f"{_num(agree)} of them agreeing with the served answer"
        )

    def _serve_step(
        self,
        x: np.ndarray,
        truth: np.ndarray,
        at: np.ndarray,
        delay: np.ndarray,
        keep: np.ndarray,
        ids: np.ndarray,
        bounds: np.ndarray,
    ) -> None:
        import pandas as pd

        if not len(x):
            return
        stamps = pd.to_datetime(START) + pd.to_timedelta(at, unit="s")
        features = pd.DataFrame(x, columns=self.names)
        shadowing = self.shadow is not None and self.shadow_result is None
        if shadowing:
            # Each request goes through the shadow: the champion answers (logged with its
            # measured latency), the challenger scores the same rows on a background
            # thread under the same ids; both stamped with the simulated clock.
            assert self.shadow is not None
            predicted = np.empty(len(x), dtype=object)
            served_ids = np.empty(len(x), dtype=object)
            for lo, hi in itertools.pairwise(bounds):
                self.now = START + timedelta(seconds=float(at[lo]))
                predicted[lo:hi] = self.shadow(features.iloc[lo:hi])
                served_ids[lo:hi] = self.shadow.last_ids
            ids = served_ids.astype(str)
            self.logged += len(x)
        else:
            predicted, proba, latency, sizes = _serve(self.model, x, bounds)
            self.logged += self.monitor.log(
                ids,
                features,
                predicted,
                scores=proba,
                latency_ms=latency,
                timestamps=stamps,
                batch_size=sizes,
            )
        self.day_served += len(x)
        self.pending["at"].append((at + delay)[keep])
        self.pending["id"].append(ids[keep])
        self.pending["y"].append(truth[keep])
        self.pending["p"].append(predicted[keep].astype(str))
        self.pending["s"].append(np.full(int(keep.sum()), shadowing))

    def _release_labels(self, now_s: float) -> None:
        import pandas as pd

        arrays = {k: np.concatenate(v) for k, v in self.pending.items()}
        due = arrays["at"] < now_s
        self.pending = {k: [v[~due]] for k, v in arrays.items()}
        if not due.any():
            return
        order = np.argsort(arrays["at"][due], kind="stable")
        got = {k: v[due][order] for k, v in arrays.items()}
        stamps = pd.to_datetime(START) + pd.to_timedelta(got["at"], unit="s")
        shadowed = got["s"].astype(bool)
        if (~shadowed).any():
            n, _ = self.monitor.log_labels(
                got["id"][~shadowed], got["y"][~shadowed], timestamps=stamps[~shadowed]
            )
            self.labelled += n
        if shadowed.any():
            assert self.shadow is not None
            self.shadow.log_labels(
                got["id"][shadowed], got["y"][shadowed], timestamps=stamps[shadowed]
            )
            self.labelled += int(shadowed.sum())
        self.day_labels += len(order)
        self.day_hits += int((got["y"] == got["p"]).sum())

    def _advance(self, now: datetime) -> None:
        """One tick of the clock: alerts, then whatever the loop can do now."""
        self.now = now
        if self.shadow is not None:
            self.shadow.flush()  # every request up to now is in the store
        for event in self.engine.evaluate(DEMO_MODEL, now=now):
            if event.state == "firing":
                self.console.print(
                    f"[bold red]{_fmt(now)}  3. alert FIRING[/] {event.rule} "
                    f"({event.severity}): {_e(event.evidence)}"
                )
                if self.alert is None:
                    self.alert = event
                    self._report(now, event)
            else:
                self.console.print(
                    f"[bold green]{_fmt(now)}  alert resolved[/] {event.rule}: "
                    f"{_e(event.evidence.rpartition('resolved: ')[2])}"
                )
        if self.alert is not None and self.loop_run is None:
            self._run_loop(now, self.alert)
        elif self.shadow is not None and self.shadow_result is None:
            self._conclude(now)

    # ------------------------------------------------------------------ the steps

    def _labelled(self, since: datetime, until: datetime) -> pd.DataFrame:
        """The labelled rows of ``[since, until)`` as a table for `analyse`."""
        from tunelens.store import FEATURE_PREFIX

        self.monitor.flush()
        frame: pd.DataFrame = self.monitor.store.scan(
            DEMO_MODEL, since=since, until=until
        ).to_pandas()
        frame = frame[frame["label"].notna()]
        out = frame[[FEATURE_PREFIX + name for name in self.names]].copy()
        out.columns = list(self.names)
        names = np.asarray(CLASSES)  # the store keeps class indices
        out[TARGET] = names[frame["label"].to_numpy().astype(np.int64)]
        out["prediction"] = names[frame["prediction"].to_numpy().astype(np.int64)]
        out["score"] = frame["score"].to_numpy()
        return out.reset_index(drop=True)

    def _report(self, now: datetime, alert: AlertEvent) -> None:
        from tunelens.quality import analyse

        base_end = START + timedelta(days=BASELINE_DAYS)
        reference = self._labelled(START, base_end)
        since = _since(alert, now)
        current = self._labelled(since, now)
        report = analyse(reference, current, target=TARGET, prediction="prediction", score="score")
        self.report_path = report.to_html(self.out / DEMO_REPORT)
        # the dashboard of `tunelens serve` shows drift against this reference and the report
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = io.BytesIO()
        table = pa.Table.from_pandas(
            reference.rename(columns={TARGET: "label"}), preserve_index=False
        )
        pq.write_table(table, sink)
        self.monitor.store.put_blob(DEMO_MODEL, "reference", sink.getvalue())
        self.monitor.store.put_blob(DEMO_MODEL, "report", report.to_json(indent=None).encode())
        self.drifted = _drifted(report)
        self.console.print(
            f"[bold]{_fmt(now)}  4. report[/]: the {len(current):,} labelled rows since "
            f"{_fmt(since)} against the {len(reference):,} of the first "
            f"{BASELINE_DAYS} days -> {_e(str(self.report_path))}"
        )
        for finding in _top_kinds(report.findings, 5):
            self.console.print(
                f"    {finding.severity}: {finding.kind} ({_clip(finding.where, 60)}): "
                f"{_clip(finding.evidence, 150)}"
            )
        if self.drifted:
            self.console.print(f"    cause: {_cause(self.drifted, len(self.names))}")

    def _run_loop(self, now: datetime, alert: AlertEvent) -> None:
        from tunelens.loop import Loop
        from tunelens.tune import Constraint

        if self.loop is None:
            self.loop = Loop(
                self.monitor,
                trainer=_estimator(),
                champion=self.model,
                reference=self.reference,
                target=TARGET,
                constraints=[Constraint("latency_p99_ms", "<=", LATENCY_P99_MS)],
                policy="auto",
                n_trials=self.n_trials,
                min_recent=self.loop_rows,
                shadow_rows=self.shadow_rows,
                seed=self.seed % 2**31,
                clock=lambda: self.now,  # versions and runs on the simulated time axis
            )
        try:
            with _quiet_optuna():
                run = self.loop.on_alert(alert)  # the rows since the alert's window
        except InputError as exc:
            if exc.field != "since":
                raise
            if not self.waiting_said:
                self.waiting_said = True
                self.console.print(
                    f"{_fmt(now)}  5. loop: waiting for {self.loop_rows:,} labelled rows since "
                    f"{_fmt(_since(alert, now))} (so far "
                    f"{exc.problem.partition(' since')[0]})"
                )
            return
        self.loop_run = run
        self._print_run(now, run)
        if run.decision.get("action") != "promote":
            self.console.print(f"    the loop keeps version {self.version}")
            return
        self.shadow = self.loop.start_shadow(run, clock=lambda: self.now)
        self.console.print(
            f"[bold]{_fmt(now)}  6. shadow[/]: version {self.version} keeps answering; "
            f"challenger {run.challenger} scores the same requests (logged as "
            f"{self.shadow.challenger.model!r}) until {self.shadow_rows:,} of them are labelled"
        )

    def _print_run(self, now: datetime, run: LoopRun) -> None:
        plan, tune, comparison = run.plan, run.tune, run.comparison
        self.console.print(
            f"[bold]{_fmt(now)}  5. loop[/] run {run.run}: {run.rows['recent']:,} recent "
            f"labelled rows, {len(run.findings)} findings "
            f"({', '.join(plan.get('remedies_from', []))})"
        )
        for finding in run.localisation[:3]:
            evidence = _clip(finding.get("evidence", ""), 150)
            self.console.print(f"    localised ({finding.get('severity')}): {evidence}")
        self.console.print(f"    plan: {_e(str(plan.get('data_rule', '')))}")
        best = tune.get("best") or {}
        params = best.get("params", {}) if isinstance(best, dict) else {}
        latency = _measured(best, "latency_p99_ms")
        trials = tune.get("trials", self.n_trials)
        self.console.print(
            f"    tune: {trials} trials of {_describe(self.loop.trainer) if self.loop else ''}"
            f" (study {tune.get('study', '')}) -> {_params(params)}"
        )
        met = bool(tune.get("feasible"))
        broken = [f for f in run.localisation if f.get("kind") == "latency_slo"]
        self.console.print(
            f"    latency objective latency_p99_ms <= {LATENCY_P99_MS:g}: "
            + (
                f"met (challenger p99 {_num(latency, 2)} ms at batch 1): no compression needed"
                if met and not broken
                else _e(
                    f"broken ({tune.get('blocked_by') or broken[0].get('evidence')}): "
                    f"{(run.compress or {}).get('why', 'compression would be next')}"
                )
            )
        )
        self.console.print(
            f"    check on {comparison.get('n', 0):,} held-out recent rows: "
            f"{_e(str(comparison.get('summary', '')))}"
        )
        decision = run.decision
        self.console.print(
            f"    decision ({decision.get('policy', 'auto')}): {decision.get('action')} - "
            f"{_e(str(decision.get('reason', '')))}"
        )

    def _conclude(self, now: datetime) -> None:
        assert self.loop is not None and self.loop_run is not None and self.shadow is not None
        try:
            result = self.loop.conclude(self.loop_run, self.shadow)
        except InputError as exc:
            if exc.field != "shadow":
                raise
            return
        self.shadow_result = result
        comparison = result["comparison"]
        self.console.print(
            f"[bold]{_fmt(now)}  7. shadow verdict[/] on {result['rows']:,} labelled requests "
            f"both answered: {_e(str(comparison.get('summary', '')))}"
        )
        if result["promoted"]:
            self.version = self.loop.champion_version
            self.model = self.loop.champion
            self.promoted_at = now
            self.console.print(
                f"[bold green]{_fmt(now)}  8. promoted[/]: version {self.version} is the "
                f"champion ({_e(str(result['decision'].get('reason', '')))}); it serves from now on"
            )
        else:
            self.console.print(
                f"    not promoted ({result['decision'].get('action')}): version "
                f"{self.version} keeps serving"
            )

    # ------------------------------------------------------------------ the end

    def close(self) -> None:
        if self.shadow is not None:
            self.shadow.close()
            self.shadow.challenger.close()
        self.monitor.close()


def _describe(estimator: Any) -> str:
    """``StandardScaler + LogisticRegression`` for a pipeline, the class name otherwise."""
    steps = getattr(estimator, "steps", None)
    if steps:
        return " + ".join(type(step).__name__ for _, step in steps)
    return type(estimator).__name__


def _top_kinds(findings: Sequence[Finding], n: int) -> list[Finding]:
    """The highest-ranked finding of each kind, in rank order, at most ``n``."""
    seen: set[str] = set()
    out = []
    for finding in findings:
        if finding.kind not in seen:
            seen.add(finding.kind)
            out.append(finding)
    return out[:n]


def _since(alert: AlertEvent, now: datetime) -> datetime:
    """Where the alert's evidence starts: the window it judged (a rule without one: now)."""
    return alert.window_start if alert.window_start is not None else now


def _drifted(report: QualityReport) -> tuple[str, ...]:
    """The drifted features of a report, strongest first."""
    if report.drift is None:
        return ()
    found = [(name, d.statistic) for name, d in report.drift.features.items() if d.drifted]
    return tuple(name for name, _ in sorted(found, key=lambda item: -item[1]))


def _is_size(name: str) -> bool:
    return any(word in name for word in ("radius", "perimeter", "area"))


def _cause(drifted: Sequence[str], total: int) -> str:
    """The drifted measurements, strongest first, and how many lead are size measurements."""
    lead = next((i for i, name in enumerate(drifted) if not _is_size(name)), len(drifted))
    text = f"{len(drifted)} of {total} measurements drifted (strongest first): {', '.join(drifted)}"
    if lead == len(drifted):
        return text + "; all of them radius, perimeter or area: the outlines' size"
    if lead:
        return text + f"; the {lead} strongest are radius, perimeter or area: the outlines' size"
    return text


def _e(text: str) -> str:
    """``text`` with rich markup escaped (evidence holds brackets)."""
    from rich.markup import escape

    return escape(text)


def _clip(text: str, width: int) -> str:
    """One line of at most ``width`` characters, markup escaped."""
    text = " ".join(str(text).split())
    return _e(text if len(text) <= width else text[: width - 3] + "...")


def _measured(best: Any, name: str) -> float:
    if not isinstance(best, dict):
        return float("nan")
    for key in ("measurements", "user_attrs", "values"):
        block = best.get(key)
        if isinstance(block, dict) and isinstance(block.get(name), int | float):
            return float(block[name])
    value = best.get(name)
    return float(value) if isinstance(value, int | float) else float("nan")


def _params(params: dict[str, Any]) -> str:
    if not params:
        return "the default configuration"
    return ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def _accuracy(monitor: Monitor, since: datetime, until: datetime) -> tuple[float, int]:
    """Accuracy and labelled rows of the traffic in ``[since, until)``."""
    if until <= since:
        return float("nan"), 0
    merged = monitor.summary(since=since, until=until, window="1h")
    value = merged.get("accuracy")
    n = int(merged.get("labelled_rows", 0) or 0)
    return (float(value) if value is not None and n else float("nan")), n


def run(
    out_dir: str | Path = "tunelens-demo",
    *,
    console: Console | None = None,
    quiet: bool = False,
    days: int = DAYS,
    cases_per_day: int = CASES_PER_DAY,
    seed: int = SEED,
    n_trials: int = N_TRIALS,
    shadow_rows: int | None = None,
    loop_rows: int | None = None,
) -> DemoResult:
    """Run the demo into ``out_dir`` (created); files from an earlier run are replaced.

    Args:
        out_dir: folder for the store file and the HTML report.
        console: where to print (default: a new rich console on stdout).
        quiet: print nothing.
        days: simulated days (the drift starts on day ``max(2, days * 2 // 5)``, 0-based).
        cases_per_day: requests per simulated day.
        seed: the random seed.
        n_trials: the loop's tuning trials.
        shadow_rows: labelled shadow requests the loop's verdict needs; default 1,000, or
            a fifth of a day's requests when that is fewer.
        loop_rows: labelled rows since the alert's window the loop waits for; default
            1,000, or a fifth of a day's requests when that is fewer but at least 800 (with
            70% of them for training, the loop learns from the recent rows alone).

    Returns:
        A `DemoResult` with the numbers read back from the store.

    Raises:
        InputError: fewer than 4 days, or fewer than 500 cases a day.
    """
    from rich.console import Console

    from tunelens.cli import flat_frame, stdout_console
    from tunelens.monitor import Monitor

    if isinstance(days, bool) or not isinstance(days, int) or days < 4:
        raise InputError("days", f"is {days!r}", "give at least 4 days")
    if isinstance(cases_per_day, bool) or not isinstance(cases_per_day, int) or cases_per_day < 500:
        raise InputError("cases_per_day", f"is {cases_per_day!r}", "give at least 500")
    if shadow_rows is None:
        shadow_rows = min(SHADOW_ROWS, cases_per_day // 5)
    if loop_rows is None:
        loop_rows = min(LOOP_ROWS, max(800, cases_per_day // 5))
    began = time.perf_counter()
    if console is None:
        console = stdout_console()
    if quiet:
        console = Console(quiet=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_REPORT).unlink(missing_ok=True)

    story = _Story(
        console,
        out,
        days=days,
        cases_per_day=cases_per_day,
        seed=seed,
        n_trials=n_trials,
        shadow_rows=shadow_rows,
        loop_rows=loop_rows,
    )
    try:
        story.play()
        end = START + timedelta(days=days)
        monitor = story.monitor
        frame = flat_frame(monitor.metrics(window="1d", since=START, until=end))
        before, n_before = _accuracy(monitor, START, story.drift_start)
        switch = story.promoted_at or end
        drifted, n_drifted = _accuracy(monitor, story.drift_start, switch)
        recovered, n_recovered = (
            _accuracy(monitor, story.promoted_at, end)
            if story.promoted_at is not None
            else (float("nan"), 0)
        )
        matched = int(frame["labelled_rows"].sum())
    finally:
        story.close()
    lost = before - drifted
    recovery = (recovered - drifted) / lost if lost > 0 else float("nan")
    alert = story.alert
    if alert is not None:  # as stored (a later resolution updates the same event)
        with Monitor(DEMO_MODEL, store=story.store_path, resources=False) as reader:
            stored = {a.id: a for a in reader.store.list_alerts(DEMO_MODEL)}
            alert = stored.get(alert.id, alert)
    result = DemoResult(
        store_path=story.store_path.resolve(),
        model=DEMO_MODEL,
        predictions=story.logged,
        labels=story.labelled,
        matched=matched,
        drift_start=story.drift_start,
        metrics=frame,
        accuracy_before=before,
        accuracy_drifted=drifted,
        accuracy_recovered=recovered,
        recovery=recovery,
        alert=alert,
        drifted_features=story.drifted,
        report_path=story.report_path.resolve() if story.report_path else None,
        loop_run=story.loop_run.run if story.loop_run else None,
        challenger=story.loop_run.challenger if story.loop_run else None,
        promoted=story.version if story.promoted_at else None,
        promoted_at=story.promoted_at,
        champion=story.version,
        seconds=time.perf_counter() - began,
    )
    _print(console, result, story, (n_before, n_drifted, n_recovered))
    return result


def _print(
    console: Console, result: DemoResult, story: _Story, counts: tuple[int, int, int]
) -> None:
    from rich.panel import Panel
    from rich.table import Table

    from tunelens.cli import metrics_table

    columns = [
        "window_start",
        "rows",
        "labelled_rows",
        "accuracy",
        "f1",
        "roc_auc",
        "log_loss",
        "latency_p99",
    ]
    shown = [name for name in columns if name in result.metrics.columns]
    title = (
        f"daily metrics of {result.model} (segmentation update from {result.drift_start:%a %d %b})"
    )
    console.print(metrics_table(result.metrics, columns=shown, title=title))

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    drop = result.accuracy_before - result.accuracy_drifted
    n_before, n_drifted, n_recovered = counts
    table.add_row(
        "drop",
        f"accuracy {_num(result.accuracy_before)} before the drift ({n_before:,} labelled "
        f"requests) -> {_num(result.accuracy_drifted)} during it ({n_drifted:,}): "
        f"[bold red]-{_num(drop)}[/]",
    )
    if result.alert is not None:
        detected = result.alert.fired_at - result.drift_start
        table.add_row(
            "detected",
            f"alert {result.alert.rule} fired {_fmt(result.alert.fired_at)}, "
            f"{_hours(detected)} after the drift began (labels arrive late)",
        )
    else:
        table.add_row("detected", "no alert fired")
    run = story.loop_run
    if result.drifted_features:
        cause = _cause(result.drifted_features, len(story.names))
        group = [
            f
            for f in (run.localisation if run is not None else [])
            if str(f.get("where", "")).endswith("(together)")
        ]
        if group and group[0].get("gain") is not None:
            cause += (
                f"; the model leans on them (shuffled together they cost "
                f"{float(group[0]['gain']):.3f} accuracy)"
            )
        table.add_row("cause", cause)
    if run is not None:
        best = run.tune.get("best") or {}
        params = best.get("params", {}) if isinstance(best, dict) else {}
        comparison = run.comparison
        fix = (
            f"loop run {run.run}: {_e(str(run.plan.get('data_rule', '')))}; "
            f"tuned {_params(params)}; "
            f"offline {comparison.get('metric', 'accuracy')} "
            f"{_num(comparison.get('champion', float('nan')))} -> "
            f"{_num(comparison.get('challenger', float('nan')))} "
            f"(p={_p(comparison.get('p_value'))}, {comparison.get('n', 0):,} rows)"
        )
        if story.shadow_result is not None:
            shadow = story.shadow_result["comparison"]
            fix += (
                f"; in shadow {_num(shadow.get('champion', float('nan')))} -> "
                f"{_num(shadow.get('challenger', float('nan')))} "
                f"(p={_p(shadow.get('p_value'))}, {story.shadow_result['rows']:,} rows)"
            )
        table.add_row("fix", fix)
    else:
        table.add_row("fix", "the loop did not run")
    if result.promoted is not None and result.promoted_at is not None:
        table.add_row(
            "recovery",
            f"version {result.promoted} promoted {_fmt(result.promoted_at)}, "
            f"{_hours(result.promoted_at - result.drift_start)} after the drift began; "
            "accuracy after "
            f"the promotion {_num(result.accuracy_recovered)} ({n_recovered:,} labelled "
            f"requests): [bold green]{result.recovery:.0%}[/] of the accuracy lost to the "
            "drift recovered",
        )
    elif story.shadow is not None and story.shadow_result is None and run is not None:
        table.add_row(
            "recovery",
            f"none yet: challenger {run.challenger} was still in shadow when the simulation "
            f"ended (its verdict needs {story.shadow_rows:,} labelled shadow requests); "
            "simulate more days (--days)",
        )
    else:
        table.add_row("recovery", "nothing was promoted: no recovery")
    table.add_row(
        "time",
        f"{result.seconds:.1f} s wall time for {story.days} simulated days "
        f"({result.predictions:,} requests, {result.labels:,} late labels)",
    )
    table.add_row("store", _e(str(result.store_path)))
    if result.report_path is not None:
        table.add_row("report", _e(str(result.report_path)))
    table.add_row("next", _e(f"tunelens serve --store {result.store_path}"))
    console.print(Panel(table, title="tunelens demo: summary", expand=False))


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f} h"
