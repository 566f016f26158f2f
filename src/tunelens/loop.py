"""The closed loop: from a monitored drop to a checked, recorded, promotable challenger.

`Loop.run` (on demand, or `Loop.on_alert` when an alert fires) takes the monitored model's
recent labelled traffic from its store and

1. **analyses** it against the reference (`tunelens.quality.analyse`): metrics with
   intervals, drift, ranked findings;
2. **localises**: which drifted features the champion leans on (permutation importance on
   the reference, `tunelens.diagnose.sensitivity`), and the champion's measured latency
   against the user's latency constraints;
3. **plans** a tuning job from them: the data (after a significant metric drop, with
   enough recent labelled rows, those rows alone: the reference's relation no longer
   holds; otherwise the reference and the recent rows, the recent ones weighted to count
   as much), the remedies (the findings shape the space) and the user's constraints;
4. **tunes** a challenger (`tunelens.tune.tune`) in an Optuna study kept beside the store,
   so that a run killed mid-tuning resumes from its finished trials;
5. **checks** it against the champion on held-out recent rows neither was trained on, with
   a paired test (`tunelens.tune.compare`), and decides by the policy
   (`tunelens.tune.decide`: ``"manual"`` never promotes by itself; ``"auto"`` promotes a
   challenger that is significantly better and meets every constraint); with
   ``shadow_rows`` the challenger must also win on fresh traffic (`start_shadow`,
   `conclude`);
6. **records** both versions with their lineage and their fitted models, the run (each
   step as it finishes) and the decision in the store (`tunelens.store.VersionRegistry`,
   and the run document under ``put_blob(model, "loop")``); `approve` and `rollback`
   change the champion afterwards.

Trainers are scikit-learn estimators (pipelines included) or PyTorch modules/factories
(trained by tunelens's loop on ``device``; served through `tunelens.tune.TorchClassifier`,
which maps logits back to the logged labels). When the challenger still breaks a latency
or size constraint after tuning, a PyTorch challenger is compressed
(`tunelens.tune.compress`: quantisation, pruning, distillation) within ``max_drop``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from tunelens.errors import InputError
from tunelens.monitor import Monitor, Shadow
from tunelens.store import FEATURE_PREFIX
from tunelens.store.versions import VersionRegistry

__all__ = ["Loop", "LoopRun"]

SCHEMA = "tunelens.loop/1"
#: recent labelled training rows enough to learn from alone after a metric drop
_RECENT_ONLY_ROWS = 500
#: reference rows used to measure what the champion leans on
_SENSITIVITY_ROWS = 2000
#: run states; a run in one of the first three did not finish and is resumed
STATUSES = ("analysing", "tuning", "checking", "shadow", "done")
_UNFINISHED = STATUSES[:3]
_LATENCY = ("latency_p50_ms", "latency_p99_ms")
#: what compress() can be asked to meet
_COMPRESSIBLE = (*_LATENCY, "model_bytes", "flops")


@dataclass
class LoopRun:
    """What one run of the loop found, planned, measured and decided.

    ``status`` is ``"done"``, or ``"shadow"`` while the challenger waits for its shadow
    verdict. ``trigger`` says what started the run (an alert, or ``"manual"``).
    """

    run: str
    started: str
    finished: str | None
    status: str
    since: str | None
    trigger: dict[str, Any]
    rows: dict[str, int]
    findings: list[dict[str, Any]]
    localisation: list[dict[str, Any]]
    plan: dict[str, Any]
    tune: dict[str, Any]
    compress: dict[str, Any]
    comparison: dict[str, Any]
    decision: dict[str, Any]
    champion: str
    challenger: str
    promoted: bool
    seconds: float
    model: Any = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view (schema ``tunelens.loop/1``; the challenger object left out)."""
        out = {k: v for k, v in self.__dict__.items() if k != "model"}
        return {"schema": SCHEMA, **json.loads(json.dumps(out, default=str))}

    def summary(self) -> str:
        """A few plain lines: what started it, what was found, tried and decided."""
        start = self.trigger.get("rule") or "on demand"
        lines = [f"loop run {self.run} ({start}): {self.rows['recent']} recent labelled rows"]
        for f in (self.findings[:2] + self.localisation[:2])[:4]:
            lines.append(f"  {f['kind']} ({f['severity']}): {f['evidence']}")
        lines.append(f"  plan: {self.plan.get('data_rule', '')}")
        lines.append(f"  challenger {self.challenger}: {self.comparison.get('summary', '')}")
        lines.append(f"  decision: {self.decision['action']} ({self.decision['reason']})")
        return "\n".join(lines)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _trigger_of(event: Any) -> dict[str, Any]:
    """The run's trigger record: an `AlertEvent`'s identity and evidence, or manual."""
    if event is None:
        return {"kind": "manual"}
    if isinstance(event, dict):
        return {"kind": "alert", **json.loads(json.dumps(event, default=str))}
    fields = ("id", "rule", "severity", "value", "evidence", "fired_at", "window_start")
    if not all(hasattr(event, f) for f in ("id", "rule", "fired_at")):
        raise InputError("trigger", f"is a {type(event).__name__}", "pass an AlertEvent or None")
    out = {f: getattr(event, f, None) for f in fields}
    out["alert_id"] = out.pop("id")
    return {"kind": "alert", **json.loads(json.dumps(out, default=str))}


def _default_storage(store: Any) -> str | None:
    """Where the loop keeps its Optuna studies: beside a DuckDB file, or in PostgreSQL."""
    path = getattr(store, "path", None)
    if isinstance(path, str) and path and path != ":memory:":
        return f"sqlite:///{path}.optuna.db"
    dsn = getattr(store, "_dsn", None)
    return dsn if isinstance(dsn, str) and dsn else None


class Loop:
    """Analyse, localise, plan, tune and check a challenger for a monitored model.

    Args:
        monitor: the `Monitor` of the live model (its store holds the traffic and labels;
            features must have been logged).
        trainer: an unfitted scikit-learn estimator (or pipeline), or a PyTorch
            ``nn.Module`` (fine-tuned copies) or factory returning one: the challenger is
            tuned from it.
        reference: the data the champion was trained and validated on: a DataFrame with
            the logged feature names and ``target``.
        target: the label column of ``reference``.
        champion: the fitted model now serving; None loads the registry's champion (a
            loop that ran before, or `VersionRegistry.save_model`).
        constraints: `tunelens.tune.Constraint`s every challenger must meet; latency
            constraints are also checked on the champion in the localisation step.
        policy: ``"manual"`` (default) or ``"auto"``.
        champion_version: the serving version's name in the registry when ``champion``
            is given and not yet registered (default ``"1"``).
        n_trials: tuning trials per run.
        holdout: share of the recent labelled rows kept out of training for the check.
        min_recent: fewest recent labelled rows a run needs.
        shadow_rows: when > 0, a challenger that passes the offline check is not promoted
            by `run`: it must also win on fresh traffic served through `start_shadow`,
            judged by `conclude` on at least this many labelled shadow rows.
        storage: the Optuna storage of the runs' studies (URL or storage object);
            ``"auto"`` (default): a SQLite file beside a DuckDB store
            (``<store>.optuna.db``), the store's own database for PostgreSQL, in memory
            otherwise; None keeps studies in memory (a killed run then starts over).
        classes: PyTorch only: the label of each output column (default the sorted labels
            of the reference's target, the order `tune` trains in).
        epochs: PyTorch only: epochs per trial (default `tune`'s).
        device: PyTorch only: where to train (default the GPU when torch sees one).
        max_drop: the accuracy a compressed challenger may lose against the uncompressed
            one (0.01 = one point).
        compress_budget: seconds `compress` may explore.
        clock: the time written into the run and version records (a UTC datetime;
            default now): a simulation or a replay of past traffic passes its own.
        seed: seeds the split and the search.

    Raises:
        InputError: unknown policy, a reference without ``target``, a bad share, no
            champion given or recorded.
    """

    def __init__(
        self,
        monitor: Monitor,
        *,
        trainer: Any,
        reference: pd.DataFrame,
        target: str,
        champion: Any = None,
        constraints: Sequence[Any] = (),
        policy: str = "manual",
        champion_version: str = "1",
        n_trials: int = 20,
        holdout: float = 0.3,
        min_recent: int = 200,
        shadow_rows: int = 0,
        storage: Any = "auto",
        classes: Sequence[Any] | None = None,
        epochs: int | None = None,
        device: str | None = None,
        max_drop: float = 0.01,
        compress_budget: float = 120.0,
        clock: Callable[[], datetime] | None = None,
        seed: int = 0,
    ) -> None:
        from tunelens.tune.champion import POLICIES

        if policy not in POLICIES:
            raise InputError("policy", f"is {policy!r}", f"use one of {list(POLICIES)}")
        if not isinstance(reference, pd.DataFrame) or target not in reference.columns:
            raise InputError(
                "reference", f"needs a DataFrame with the target column {target!r}", ""
            )
        if not 0.05 <= holdout <= 0.9:
            raise InputError("holdout", f"is {holdout!r}", "give a share in [0.05, 0.9]")
        self.torch = _is_torch_trainer(trainer)
        if not self.torch and not (hasattr(trainer, "fit") and hasattr(trainer, "predict")):
            raise InputError(
                "trainer",
                f"is a {type(trainer).__name__}",
                "pass a scikit-learn estimator, or a torch.nn.Module or a factory of one",
            )
        if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
            raise InputError("n_trials", f"is {n_trials!r}", "give a trial count >= 1")
        if isinstance(shadow_rows, bool) or not isinstance(shadow_rows, int) or shadow_rows < 0:
            raise InputError("shadow_rows", f"is {shadow_rows!r}", "give a row count >= 0")
        self.monitor, self.trainer = monitor, trainer
        self.reference, self.target = reference, target
        self.features = [c for c in reference.columns if c != target]
        self.constraints, self.policy = tuple(constraints), policy
        self.n_trials, self.holdout, self.min_recent, self.seed = (
            n_trials,
            holdout,
            min_recent,
            seed,
        )
        self.shadow_rows = shadow_rows
        self.classes = list(classes) if classes is not None else sorted(reference[target].unique())
        self.epochs, self.device = epochs, device
        self.max_drop, self.compress_budget = float(max_drop), float(compress_budget)
        if self.torch:
            from tunelens.tune.predictor import TorchClassifier

            if champion is not None and not hasattr(champion, "predict"):
                champion = TorchClassifier(champion, self.classes)
        self.storage = _default_storage(monitor.store) if storage == "auto" else storage
        self._clock = clock
        self.registry = VersionRegistry(monitor.store, monitor.model, clock=clock)
        known = {v.version: v for v in self.registry.versions()}
        if champion is None:
            current = self.registry.champion()
            if current is None:
                raise InputError(
                    "champion",
                    f"none given and none recorded for model {monitor.model!r}",
                    "pass the serving model as champion=",
                )
            self.champion: Any = self.registry.load_model(current.version)
            self.champion_version = current.version
            return
        if champion_version not in known:
            self.registry.register(champion_version, source="import", note="serving")
        if known.get(champion_version) is None or known[champion_version].artifact is None:
            self.registry.save_model(champion_version, champion)
        current = self.registry.champion()
        if current is None or current.version != champion_version:
            self.registry.promote(champion_version, reason="serving when the loop started")
        self.champion, self.champion_version = champion, champion_version

    def _now(self) -> str:
        return _now() if self._clock is None else self._clock().astimezone(UTC).isoformat()

    # ---- data ---------------------------------------------------------------------------

    def _champion_predict(self, frame: pd.DataFrame) -> Any:
        """The champion's predictions, given a frame if it was fitted with feature names."""
        rows = frame[self.features]
        if hasattr(self.champion, "feature_names_in_"):
            return self.champion.predict(rows)
        return self.champion.predict(rows.to_numpy())

    def _recent(self, since: Any) -> pd.DataFrame:
        self.monitor.flush()
        table = self.monitor.store.scan(self.monitor.model, since=since)
        frame: pd.DataFrame = table.to_pandas()
        if "label" not in frame.columns:
            return frame.iloc[0:0]
        frame = _decode(
            frame[frame["label"].notna()],
            self.monitor.store,
            self.monitor.model,
            like=self.reference[self.target].unique(),
        )
        renamed = {
            c: c[len(FEATURE_PREFIX) :] for c in frame.columns if c.startswith(FEATURE_PREFIX)
        }
        frame = frame.rename(columns=renamed)
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise InputError(
                "monitor", f"logged rows lack the features {missing}", "log features with each row"
            )
        return frame.sort_values("id", kind="stable").reset_index(drop=True)

    # ---- the run ------------------------------------------------------------------------

    def on_alert(self, event: Any, *, since: Any = None) -> LoopRun:
        """Run the loop because ``event`` (an `AlertEvent`) fired.

        The recent window starts at ``since``, by default the start of the window that
        fired it (or everything when the event has none).
        """
        start = since if since is not None else getattr(event, "window_start", None)
        return self.run(start, trigger=event)

    def pending_alert(self, rules: Sequence[str] | None = None) -> Any:
        """The newest firing alert of the model that no run has handled yet, or None.

        Args:
            rules: only alerts of these rule names (default: any rule).

        A scheduler calls this and `on_alert` in turn (``tunelens loop --on-alert`` does):
        each firing starts one run, however often it is asked.
        """
        handled = {r.get("trigger", {}).get("alert_id") for r in self.runs()}
        firing = [
            e
            for e in self.monitor.store.list_alerts(self.monitor.model, state="firing")
            if e.id not in handled and (rules is None or e.rule in rules)
        ]
        return max(firing, key=lambda e: e.fired_at) if firing else None

    def get_run(self, run: str | None = None) -> LoopRun:
        """A recorded run (default the newest) with its challenger's saved model.

        After a crash during the shadow stage, ``loop.start_shadow(loop.get_run())`` goes on
        logging the challenger beside the champion (rows logged before the crash count) and
        ``loop.conclude`` judges it as if nothing had happened.

        Raises:
            InputError: no such run (the message lists the known ones), or one that
                stopped before its challenger was recorded (run `run` to resume it).
        """
        runs = self.runs()
        if run is None:
            found = runs[-1] if runs else None
        else:
            found = next((r for r in runs if r["run"] == run), None)
        if found is None:
            raise InputError(
                "run", f"{run!r} is not recorded", f"use one of {[r['run'] for r in runs]}"
            )
        if found.get("status") in _UNFINISHED or not found.get("challenger"):
            raise InputError(
                "run", f"{found['run']!r} stopped before its check", "call run() to resume it"
            )
        fields = {name for name in LoopRun.__dataclass_fields__ if name != "model"}
        defaults: dict[str, Any] = {"finished": None, "since": None, "seconds": 0.0}
        values = {k: found.get(k, defaults.get(k, {} if k != "status" else "done")) for k in fields}
        return LoopRun(**values, model=self.registry.load_model(str(found["challenger"])))

    def unfinished(self) -> dict[str, Any] | None:
        """The record of a run that stopped before its check (a crash), or None."""
        runs = self.runs()
        return runs[-1] if runs and runs[-1].get("status") in _UNFINISHED else None

    def run(self, since: Any = None, *, trigger: Any = None, resume: bool = True) -> LoopRun:
        """One pass of the loop over the labelled traffic since ``since`` (default: all).

        A run that stopped before its check (the process was killed) is resumed first when
        ``resume``: same rows, same split, the same Optuna study with its finished trials
        kept, only the missing trials run (``since`` and ``trigger`` are the stored ones).

        Raises:
            InputError: fewer than ``min_recent`` labelled rows.
        """
        began = time.perf_counter()
        pending = self.unfinished() if resume else None
        if pending is not None:
            record = dict(pending)
            stored = record.get("since")
            since = None if stored is None else pd.Timestamp(str(stored)).to_pydatetime()
        else:
            record = {
                "schema": SCHEMA,
                "run": uuid.uuid4().hex[:12],
                "started": self._now(),
                "finished": None,
                "status": "analysing",
                "since": None if since is None else str(since),
                "trigger": _trigger_of(trigger),
            }
        run_id = str(record["run"])
        split = self._load_split(run_id)
        recent = self._recent(since)
        if split is not None:
            recent = recent[recent["id"].astype(str).isin(set(split["train"]) | set(split["hold"]))]
        if len(recent) < self.min_recent:
            raise InputError(
                "since",
                f"only {len(recent)} labelled rows since {since!r}",
                f"wait for at least {self.min_recent} labels or widen the range",
            )
        self._save_run(record)

        # 1. analyse
        from tunelens.quality import analyse

        ref = self.reference.copy()
        ref["__prediction"] = self._champion_predict(ref)
        cur = recent[self.features].copy()
        cur[self.target] = recent["label"].to_numpy()
        cur["__prediction"] = recent["prediction"].to_numpy()
        cur.index = recent["id"].astype(str).to_numpy()
        report = analyse(
            ref, cur, target=self.target, prediction="__prediction", estimate=False, slices=False
        )
        findings = [f.to_dict() for f in report.findings]
        # 2. localise
        features = report.drift.features if report.drift is not None else {}
        drifted = [name for name, d in features.items() if d.drifted]
        localisation = self._localise(drifted, cur)
        model_state: list[Any] = []
        if self.torch and any(f["kind"] == "metric_drop" for f in findings):
            model_state = self._training_diagnostics(cur)
            localisation += [f.to_dict() for f in model_state]
        # 3. plan: the split is stored before tuning, so a resumed run tunes the same rows
        if split is None:
            rng = np.random.default_rng(self.seed)
            order = rng.permutation(len(cur))
            n_hold = max(1, round(self.holdout * len(cur)))
            split = {
                "hold": [str(i) for i in cur.index[order[:n_hold]]],
                "train": [str(i) for i in cur.index[order[n_hold:]]],
            }
            self.monitor.store.put_blob(
                self.monitor.model, f"loop-split@{run_id}", json.dumps(split).encode()
            )
        hold, train = cur.loc[split["hold"]], cur.loc[split["train"]]
        dropped = any(f["kind"] == "metric_drop" for f in findings)
        data, plan = self._plan(ref, train, dropped, findings + [f.to_dict() for f in model_state])
        plan["holdout_rows"] = len(hold)
        study = f"tunelens-loop:{self.monitor.model}:{run_id}"
        record.update(
            rows={"recent": len(cur), "reference": len(ref)},
            findings=findings,
            localisation=localisation,
            plan=plan,
            status="tuning",
            tune={"study": study, "storage": _redacted(self.storage)},
        )
        self._save_run(record)
        # 4. tune (in the stored study: a killed run resumes here)
        result = self._tune(data, [*report.findings, *model_state], study)
        if result.model is None:
            errors = [t.get("error") for t in result.trials]
            first = next((e for e in errors if e), "no trial completed")
            raise InputError(
                "trainer", f"no tuning trial produced a model ({first})", "check the trainer"
            )
        challenger, feasible, compressed = self._maybe_compress(result, data, localisation)
        plan["explanation"] = result.explanation
        trials = result.study.trials
        record.update(
            status="checking",
            plan=plan,
            tune={
                **{k: result.to_dict()[k] for k in ("best", "feasible", "blocked_by")},
                "study": study,
                "storage": _redacted(self.storage),
                "trials": len(trials),
                "complete": sum(t.state.name == "COMPLETE" for t in trials),
                "pruned": sum(t.state.name == "PRUNED" for t in trials),
            },
            compress=compressed,
        )
        self._save_run(record)
        # 5. check on held-out recent rows
        from tunelens.tune import compare, decide

        Xh, yh = hold[self.features].to_numpy(), hold[self.target].to_numpy()
        comparison = compare(
            yh, self._champion_predict(hold), challenger.predict(Xh), seed=self.seed
        )
        decision = decide(comparison, policy=self.policy, constraints_met=feasible)
        # 6. record
        version = f"{self.champion_version}.{run_id[:6]}"
        if not any(v.version == version for v in self.registry.versions()):
            self.registry.register(
                version,
                source="tune",
                parent=self.champion_version,
                run=run_id,
                metrics={
                    "holdout_" + comparison.metric: comparison.challenger,
                    "champion_holdout_" + comparison.metric: comparison.champion,
                },
            )
        self.registry.save_model(version, challenger)
        record["tune"]["feasible"] = feasible
        promoted = decision.action == "promote" and self.shadow_rows == 0
        if promoted:
            self.registry.promote(version, reason=decision.reason, decision=decision.to_dict())
        waiting = decision.action == "promote" and self.shadow_rows > 0
        out = LoopRun(
            run=run_id,
            started=str(record["started"]),
            finished=None if waiting else self._now(),
            status="shadow" if waiting else "done",
            since=record.get("since"),
            trigger=dict(record["trigger"]),
            rows=dict(record["rows"]),
            findings=findings,
            localisation=localisation,
            plan=plan,
            tune={**record["tune"], "feasible": feasible},
            compress=dict(record["compress"]),
            comparison={**comparison.to_dict(), "summary": comparison.summary()},
            decision=decision.to_dict(),
            champion=self.champion_version,
            challenger=version,
            promoted=promoted,
            seconds=float(record.get("seconds", 0.0)) + time.perf_counter() - began,
            model=challenger,
        )
        self._save_run(out.to_dict())
        if promoted:
            self.champion, self.champion_version = challenger, version
        return out

    def _load_split(self, run_id: str) -> dict[str, list[str]] | None:
        found = self.monitor.store.get_blob(self.monitor.model, f"loop-split@{run_id}")
        return None if found is None else dict(json.loads(found[0]))

    def _localise(self, drifted: list[str], cur: pd.DataFrame) -> list[dict[str, Any]]:
        """Where the champion breaks: reliance on drifted features; latency vs constraints."""
        from tunelens.diagnose.sensitivity import sensitivity
        from tunelens.findings import Finding, rank

        found: list[Finding] = []
        if drifted:
            ref = self.reference
            if len(ref) > _SENSITIVITY_ROWS:
                ref = ref.sample(_SENSITIVITY_ROWS, random_state=self.seed)
            X: Any = ref[self.features]
            if not hasattr(self.champion, "feature_names_in_"):
                X = X.to_numpy()
            found += sensitivity(
                self.champion if hasattr(self.champion, "get_params") else self.champion.predict,
                X,
                ref[self.target].to_numpy(),
                n_repeats=3,
                seed=self.seed,
                drifted=drifted,
                feature_names=self.features,
                top_rows=1,
            ).findings
            found = [f for f in found if f.kind == "data_drift"]
            if len(drifted) > 1:
                group = self._group_reliance(ref, drifted)
                if group is not None:
                    found.append(group)
        latency = [c for c in self.constraints if getattr(c, "name", None) in _LATENCY]
        if latency:
            from tunelens.tune._sklearn import latency_ms

            rows = cur[self.features]
            X_cur = rows if hasattr(self.champion, "feature_names_in_") else rows.to_numpy()
            p50, p99 = latency_ms(self.champion.predict, X_cur, batch=1)
            measured = {"latency_p50_ms": p50, "latency_p99_ms": p99}
            broken_latency = [c for c in latency if c.signed(measured[c.name]) > 0]
            if broken_latency and self.torch:
                found += self._profile(X_cur, min(c.bound for c in broken_latency))
            for c in latency:
                value = measured[c.name]
                if c.signed(value) > 0:
                    found.append(
                        Finding(
                            "latency_slo",
                            "high",
                            f"model {self.monitor.model} version {self.champion_version}",
                            f"{c.name} is {value:.3f} ms at batch 1, beyond {c}",
                            "compress (quantise, prune, distil) or tune a narrower model",
                        )
                    )
        return [f.to_dict() for f in rank(found)]

    def _training_diagnostics(self, cur: pd.DataFrame) -> list[Any]:
        """The PyTorch champion's state on recent rows, seen through `diagnose.training.watch`.

        A short pass of training steps on a copy (small AdamW steps, every step watched)
        shows what the weights do to the gradients and activations on today's data: dead
        units, vanishing or exploding gradients, non-finite values. Findings about the
        pass's own learning rate or length (lr, plateau, overfitting) are left out: they
        would describe this probe, not the model.
        """
        import copy

        import torch

        from tunelens.diagnose.training import watch

        module = getattr(self.champion, "model", None)
        if not isinstance(module, torch.nn.Module):
            return []
        model = copy.deepcopy(module).train()
        X, y = self._torch_data(cur)
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(X))[: 64 * 30]
        xs, ys = torch.from_numpy(X[order]), torch.from_numpy(y[order])
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        with watch(model, opt, every=1) as w:
            for start in range(0, len(xs), 64):
                xb, yb = xs[start : start + 64], ys[start : start + 64]
                opt.zero_grad()
                out = model(xb)
                if out.ndim == 2 and out.shape[1] > 1:
                    loss = torch.nn.functional.cross_entropy(out, yb)
                else:
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(
                        out.reshape(-1), yb.float()
                    )
                loss.backward()  # type: ignore[no-untyped-call]
                w.step(loss)
                opt.step()
        keep = {"dead_units", "vanishing_gradients", "exploding_gradients", "non_finite"}
        return [f for f in w.findings() if f.kind in keep]

    def _profile(self, rows: Any, slo_ms: float) -> list[Any]:
        """Where a PyTorch champion's time goes, layer by layer (`diagnose.runtime.profile`)."""
        import torch

        from tunelens.diagnose.runtime import profile

        module = getattr(self.champion, "model", None)
        if not isinstance(module, torch.nn.Module):
            return []  # a compressed (ONNX Runtime) champion has no layers to profile
        first = np.asarray(rows[:1], dtype=np.float32)
        found = profile(
            module, torch.from_numpy(first), batch_sizes=(1, 8), repeats=10, slo_ms=slo_ms
        ).findings
        return list(found)

    def _group_reliance(self, ref: pd.DataFrame, drifted: list[str]) -> Any:
        """How much the champion loses when the drifted features are shuffled together.

        Correlated features (a radius, its perimeter and area) each look unimportant alone,
        since the others carry the same signal; shuffled jointly (one row permutation for
        the whole group) they show what the model draws from them.
        """
        from tunelens.findings import Finding

        X = ref[self.features]
        y = ref[self.target].to_numpy()
        base = float(np.mean(np.asarray(self._champion_predict(X)) == y))
        rng = np.random.default_rng(self.seed)
        losses = []
        for _ in range(3):
            shuffled = X.copy()
            order = rng.permutation(len(X))
            shuffled[drifted] = X[drifted].to_numpy()[order]
            losses.append(base - float(np.mean(np.asarray(self._champion_predict(shuffled)) == y)))
        mean, spread = float(np.mean(losses)), float(np.std(losses))
        if mean < 0.01 or mean <= 2 * spread:
            return None
        names = ", ".join(drifted[:6]) + (
            f" and {len(drifted) - 6} more" if len(drifted) > 6 else ""
        )
        return Finding(
            "data_drift",
            "high" if mean >= 0.05 else "medium",
            f"features {names} (together)",
            f"the model leans on the {len(drifted)} drifted features as a group: shuffling "
            f"them together costs {mean:.3f} accuracy on the reference (from {base:.3f}); "
            "alone each looks minor because the others carry the same signal",
            "retrain on recent data: the relation the model learnt from them has moved",
            gain=mean,
        )

    def _maybe_compress(
        self, result: Any, data: pd.DataFrame, localisation: list[dict[str, Any]]
    ) -> tuple[Any, bool, dict[str, Any]]:
        """The challenger to check, whether it meets the constraints, and the record.

        A latency or size constraint the tuned challenger still breaks (or the champion
        broke, per the localisation) sends a PyTorch challenger through `compress`.
        """
        from tunelens.tune.predictor import TorchClassifier

        best = result.best or {}
        measured = best.get("measurements") or {}
        targets = [c for c in self.constraints if getattr(c, "name", None) in _COMPRESSIBLE]
        broken = [c for c in targets if c.name in measured and c.signed(measured[c.name]) > 0]
        slow_champion = any(f["kind"] == "latency_slo" for f in localisation)
        model = TorchClassifier(result.model, self.classes) if self.torch else result.model
        if not broken and not slow_champion:
            why = "no latency or size objective is broken"
            return model, bool(result.feasible), {"applied": False, "why": why}
        if not self.torch:
            return (
                model,
                bool(result.feasible),
                {
                    "applied": False,
                    "why": "compress() works on PyTorch modules; this scikit-learn challenger "
                    "was tuned under the latency constraints instead (each trial's latency "
                    "measured)",
                },
            )
        from tunelens.tune import compress

        X, y = self._torch_data(data)
        out = compress(
            result.model,
            data=(X, y),
            max_drop=self.max_drop,
            constraints=targets,
            time_budget=self.compress_budget,
            seed=self.seed,
        )
        chosen = dict(out.chosen or {})
        record = {
            "applied": bool(out.improved),
            "why": "; ".join(f"{c} broken by {measured.get(c.name)}" for c in broken)
            or "the champion breaks a latency objective",
            "chosen": chosen.get("name"),
            "speedup": chosen.get("speedup"),
            "size_ratio": chosen.get("size_ratio"),
            "drop": chosen.get("drop"),
            "latency_p99_ms": chosen.get("latency_p99_ms"),
            "model_bytes": chosen.get("model_bytes"),
            "feasible": chosen.get("feasible"),
            "why_not": chosen.get("why_not"),
        }
        if not out.improved:
            return model, bool(result.feasible), record
        small = TorchClassifier(
            out.model, self.classes, artefact=out.artefact, suffix=out.artefact_suffix
        )
        metric_ok = all(
            c.signed(measured[c.name]) <= 0
            for c in self.constraints
            if c not in targets and c.name in measured
        )
        return small, bool(chosen.get("feasible")) and metric_ok, record

    def _torch_data(self, data: pd.DataFrame) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """Feature rows as float32 and labels as indices into ``classes``."""
        index = {str(c): i for i, c in enumerate(self.classes)}
        labels = [str(v) for v in data[self.target]]
        unknown = sorted({v for v in labels if v not in index})
        if unknown:
            raise InputError(
                "classes",
                f"lacks the labels {unknown[:5]} seen in the data",
                "pass classes= with every label the model predicts",
            )
        X = data[self.features].to_numpy(dtype=np.float32)
        return X, np.asarray([index[v] for v in labels], dtype=np.int64)

    def _plan(
        self,
        ref: pd.DataFrame,
        train: pd.DataFrame,
        dropped: bool,
        findings: list[dict[str, Any]],
    ) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The tuning data and the plan's record."""
        if dropped and len(train) >= _RECENT_ONLY_ROWS:
            # the labels no longer follow the reference's relation: learn the recent one
            parts, repeat = [train], 1
            rule = (
                f"a significant metric drop and {len(train)} recent labelled rows: the "
                "challenger learns from the recent rows only (the reference's relation "
                "no longer holds)"
            )
        else:
            repeat = max(1, round(len(ref) / max(1, len(train))))
            parts = [ref[[*self.features, self.target]]] + [train] * repeat
            rule = (
                f"the reference and the recent rows, the recent ones repeated {repeat}x to "
                "weigh as much"
                + (
                    f" (fewer than {_RECENT_ONLY_ROWS} recent rows to learn from alone)"
                    if dropped
                    else ""
                )
            )
        plan = {
            "data_rule": rule,
            "reference_rows": len(ref) if len(parts) > 1 else 0,
            "recent_training_rows": len(train),
            "recent_weight": repeat,
            "remedies_from": sorted({f["kind"] for f in findings}),
            "constraints": [str(c) for c in self.constraints],
        }
        return pd.concat(parts), plan

    def _tune(self, data: pd.DataFrame, findings: Sequence[Any], study: str) -> Any:
        from tunelens.tune import tune

        storage = self.storage
        if isinstance(storage, str):
            from tunelens.tune.distributed import open_storage

            storage = open_storage(storage)
        if self.torch:
            X, y = self._torch_data(data)
            extra: dict[str, Any] = {"epochs": self.epochs, "device": self.device}
        else:
            X, y = data[self.features].to_numpy(), data[self.target].to_numpy()
            extra = {}
        return tune(
            self.trainer,
            data=(X, y),
            findings=findings,
            constraints=self.constraints,
            n_trials=None,
            total_trials=self.n_trials,
            storage=storage,
            study_name=study,
            seed=self.seed,
            **extra,
        )

    # ---- shadow traffic ---------------------------------------------------------------------

    def start_shadow(
        self, run: LoopRun, *, max_pending: int = 1000, clock: Callable[[], Any] | None = None
    ) -> Shadow:
        """Serve fresh traffic through the champion while ``run``'s challenger shadows it.

        The challenger is logged as model ``"<model>@<challenger version>"`` in the same
        store, on the same ids; log the labels with ``shadow.log_labels`` and call
        `conclude`. Inputs are the feature rows (a DataFrame with the feature columns, or
        an array in their order). ``clock`` gives the requests' timestamps (default: the
        time of each call), for simulated or replayed traffic.
        """
        if run.model is None:
            raise InputError("run", "holds no challenger model", "pass the LoopRun of run()")
        challenger_model = run.model
        features = self.features

        def rows(X: Any) -> Any:
            return X[features].to_numpy() if isinstance(X, pd.DataFrame) else np.asarray(X)

        def champion_fn(X: Any) -> Any:
            if isinstance(X, pd.DataFrame):
                return self._champion_predict(X)
            return self._champion_predict(pd.DataFrame(np.asarray(X), columns=features))

        shadow_monitor = Monitor(
            f"{self.monitor.model}@{run.challenger}", self.monitor.store, resources=False
        )
        champion_proba = challenger_proba = None
        if hasattr(self.champion, "predict_proba") and hasattr(challenger_model, "predict_proba"):
            champion_model = self.champion

            def champion_proba(X: Any) -> Any:
                frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X, columns=features)
                rows_in = frame[features]
                if hasattr(champion_model, "feature_names_in_"):
                    return champion_model.predict_proba(rows_in)
                return champion_model.predict_proba(rows_in.to_numpy())

            def challenger_proba(X: Any) -> Any:
                return challenger_model.predict_proba(rows(X))

        return Shadow(
            self.monitor,
            shadow_monitor,
            champion_fn,
            lambda X: challenger_model.predict(rows(X)),
            champion_proba=champion_proba,
            challenger_proba=challenger_proba,
            max_pending=max_pending,
            clock=clock,
        )

    def conclude(self, run: LoopRun, shadow: Shadow) -> dict[str, Any]:
        """Judge the challenger on the labelled shadow traffic; promote when the policy allows.

        Compares both models on the rows both logged with a label (joined by id), with the
        same paired test and policy as the offline check (constraints as met offline),
        records the result in the run's document and promotes when the decision says so.

        Returns:
            ``{"comparison": ..., "decision": ..., "promoted": bool}``.

        Raises:
            InputError: fewer than ``shadow_rows`` labelled shadow rows (at least 30).
        """
        from tunelens.tune import compare, decide

        shadow.flush()

        def labelled(model: str) -> pd.DataFrame:
            frame: pd.DataFrame = (
                self.monitor.store.scan(model, columns=["id", "prediction", "label"])
                .to_pandas()
                .dropna(subset=["label"])
            )
            return _decode(
                frame, self.monitor.store, model, like=self.reference[self.target].unique()
            )

        both = labelled(shadow.champion.model).merge(
            labelled(shadow.challenger.model), on="id", suffixes=("_champion", "_challenger")
        )
        need = max(30, self.shadow_rows)
        if len(both) < need:
            raise InputError(
                "shadow",
                f"only {len(both)} labelled rows scored by both models",
                f"serve and label at least {need} requests before concluding",
            )
        comparison = compare(
            both["label_champion"].to_numpy(),
            both["prediction_champion"].to_numpy(),
            both["prediction_challenger"].to_numpy(),
            seed=self.seed,
        )
        decision = decide(
            comparison, policy=self.policy, constraints_met=bool(run.tune.get("feasible"))
        )
        promoted = decision.action == "promote"
        if promoted:
            self.registry.promote(
                run.challenger, reason=f"shadow: {decision.reason}", decision=decision.to_dict()
            )
            self.champion, self.champion_version = run.model, run.challenger
        out = {
            "rows": len(both),
            "comparison": {**comparison.to_dict(), "summary": comparison.summary()},
            "decision": decision.to_dict(),
            "promoted": promoted,
        }
        record = {**run.to_dict(), "status": "done", "finished": self._now(), "promoted": promoted}
        self._save_run({**record, "shadow": json.loads(json.dumps(out, default=str))})
        run.status, run.finished, run.promoted = "done", record["finished"], promoted
        return out

    # ---- after the run -----------------------------------------------------------------

    def approve(self, version: str | None = None, *, reason: str = "approved") -> str:
        """Promote a challenger by hand (the ``"manual"`` policy's approval).

        Args:
            version: the version to promote; default the challenger of the latest run that
                awaits approval.
            reason: recorded with the promotion.

        Returns:
            The promoted version.

        Raises:
            InputError: no run awaits approval, or the version has no saved model.
        """
        if version is None:
            waiting = [
                r
                for r in self.runs()
                if r.get("decision", {}).get("action") == "await_approval" and not r["promoted"]
            ]
            if not waiting:
                raise InputError("version", "no loop run awaits approval", "name the version")
            version = str(waiting[-1]["challenger"])
        model = self.registry.load_model(version)
        self.registry.promote(version, reason=reason)
        self.champion, self.champion_version = model, version
        for record in self.runs():
            if record.get("challenger") == version and not record.get("promoted"):
                self._save_run({**record, "promoted": True, "approved": reason})
        return version

    def rollback(self, *, reason: str) -> str:
        """Serve the previous champion again (its saved model); returns its version.

        Raises:
            InputError: no earlier champion, or its model was not saved.
        """
        target = self.registry.history()
        current = self.registry.champion()
        earlier = [e.version for e in target if current is None or e.version != current.version]
        if not earlier:
            raise InputError("rollback", "there is no earlier champion", "promote a version first")
        model = self.registry.load_model(earlier[-1])  # fails before anything changes
        info = self.registry.rollback(reason=reason)
        self.champion, self.champion_version = model, info.version
        return info.version

    def _save_run(self, record: dict[str, Any]) -> None:
        """Write a run's record into the model's loop document (replacing one of its id)."""
        runs = self.runs()
        at = next((i for i, r in enumerate(runs) if r["run"] == record["run"]), len(runs))
        runs[at : at + 1] = [record]
        doc = {"schema": SCHEMA, "runs": runs}
        self.monitor.store.put_blob(self.monitor.model, "loop", json.dumps(doc).encode())

    def runs(self) -> list[dict[str, Any]]:
        """Every recorded run of this model's loop, oldest first."""
        found = self.monitor.store.get_blob(self.monitor.model, "loop")
        return list(json.loads(found[0])["runs"]) if found else []


def _redacted(storage: Any) -> str | None:
    """A storage for the record: its URL without a password, or its type."""
    if storage is None:
        return None
    if isinstance(storage, str):
        from tunelens.store.postgres import _redact

        return _redact(storage) if "://" in storage and "@" in storage else storage
    return type(storage).__name__


def _is_torch_trainer(trainer: Any) -> bool:
    """A torch module, or a factory of one (a callable that is no estimator)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(trainer, torch.nn.Module):
        return True
    if isinstance(trainer, type):
        return torch is not None and issubclass(trainer, torch.nn.Module)
    return callable(trainer) and not hasattr(trainer, "fit")


def _decode(frame: pd.DataFrame, store: Any, model: str, *, like: Any = ()) -> pd.DataFrame:
    """Class indices (as the store keeps classification rows) back to the logged labels,
    typed like the reference's labels (``like``)."""
    from tunelens.monitor._inputs import decode_classes

    record = store.get_model(model)
    classes = list(getattr(record, "classes", None) or ())
    if not classes or getattr(record, "task", None) == "regression":
        return frame
    return decode_classes(frame, classes, like=like)
