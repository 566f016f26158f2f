"""The closed loop, first increment: from a monitored drop to a checked challenger.

`Loop.run` takes the monitored model's recent labelled traffic from its store and

1. **analyses** it against the reference (`tunelens.quality.analyse`): metrics with
   intervals, drift, weak slices, ranked findings;
2. **plans** a tuning job from them: the data (after a significant metric drop, with
   enough recent labelled rows, those rows alone: the reference's relation no longer
   holds; otherwise the reference and the recent rows, the recent ones weighted to count
   as much), the remedies (the findings shape the space, e.g. stronger regularisation on
   overfitting) and the user's constraints;
3. **tunes** a challenger (`tunelens.tune.tune`) on that data;
4. **checks** it against the champion on held-out recent rows neither was trained on, with
   a paired test (`tunelens.tune.compare`), and decides by the policy
   (`tunelens.tune.decide`: ``"manual"`` never promotes by itself; ``"auto"`` promotes a
   challenger that is significantly better and meets every constraint);
5. **records** both versions with their lineage, the run and the decision in the store
   (`tunelens.store.VersionRegistry`, and the run document under
   ``put_blob(model, "loop")``).

This increment covers scikit-learn estimators, with an optional shadow stage
(`Loop.start_shadow` / `Loop.conclude`, on `tunelens.monitor.Shadow`);
the localisation step, compression, alert triggers and the CLI are the next ones.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
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


@dataclass
class LoopRun:
    """What one run of the loop found, planned, measured and decided."""

    run: str
    started: str
    rows: dict[str, int]
    findings: list[dict[str, Any]]
    plan: dict[str, Any]
    tune: dict[str, Any]
    comparison: dict[str, Any]
    decision: dict[str, Any]
    champion: str
    challenger: str
    promoted: bool
    model: Any = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view (schema ``tunelens.loop/1``; the challenger object left out)."""
        out = {k: v for k, v in self.__dict__.items() if k != "model"}
        return {"schema": SCHEMA, **json.loads(json.dumps(out, default=str))}

    def summary(self) -> str:
        """A few plain lines: what was found, what was tried, what was decided."""
        lines = [f"loop run {self.run}: {self.rows['recent']} recent labelled rows"]
        for f in self.findings[:3]:
            lines.append(f"  finding ({f['severity']}): {f['evidence']}")
        lines.append(f"  challenger {self.challenger}: {self.comparison.get('summary', '')}")
        lines.append(f"  decision: {self.decision['action']} ({self.decision['reason']})")
        return "\n".join(lines)


class Loop:
    """Analyse, plan, tune and check a challenger for a monitored scikit-learn model.

    Args:
        monitor: the `Monitor` of the live model (its store holds the traffic and labels;
            features must have been logged).
        trainer: an unfitted scikit-learn estimator: the challenger is tuned from it.
        champion: the fitted model now serving.
        reference: the data the champion was trained and validated on: a DataFrame with
            the logged feature names and ``target``.
        target: the label column of ``reference``.
        constraints: `tunelens.tune.Constraint`s every challenger must meet.
        policy: ``"manual"`` (default) or ``"auto"``.
        champion_version: the serving version's name in the registry (default ``"1"``).
        n_trials: tuning trials per run.
        holdout: share of the recent labelled rows kept out of training for the check.
        min_recent: fewest recent labelled rows a run needs.
        shadow_rows: when > 0, a challenger that passes the offline check is not promoted
            by `run`: it must also win on fresh traffic served through `start_shadow`,
            judged by `conclude` on at least this many labelled shadow rows.
        seed: seeds the split and the search.

    Raises:
        InputError: unknown policy, a reference without ``target``, a bad share.
    """

    def __init__(
        self,
        monitor: Monitor,
        *,
        trainer: Any,
        champion: Any,
        reference: pd.DataFrame,
        target: str,
        constraints: Sequence[Any] = (),
        policy: str = "manual",
        champion_version: str = "1",
        n_trials: int = 20,
        holdout: float = 0.3,
        min_recent: int = 200,
        shadow_rows: int = 0,
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
        if not (hasattr(trainer, "fit") and hasattr(trainer, "predict")):
            raise InputError("trainer", "is not a scikit-learn estimator", "pass an estimator")
        self.monitor, self.trainer, self.champion = monitor, trainer, champion
        self.reference, self.target = reference, target
        self.features = [c for c in reference.columns if c != target]
        self.constraints, self.policy = tuple(constraints), policy
        self.n_trials, self.holdout, self.min_recent, self.seed = (
            n_trials,
            holdout,
            min_recent,
            seed,
        )
        if isinstance(shadow_rows, bool) or not isinstance(shadow_rows, int) or shadow_rows < 0:
            raise InputError("shadow_rows", f"is {shadow_rows!r}", "give a row count >= 0")
        self.shadow_rows = shadow_rows
        self.registry = VersionRegistry(monitor.store, monitor.model)
        if not any(v.version == champion_version for v in self.registry.versions()):
            self.registry.register(champion_version, source="import", note="serving")
            self.registry.promote(champion_version, reason="serving when the loop started")
        self.champion_version = champion_version

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
        frame = frame[frame["label"].notna()]
        renamed = {
            c: c[len(FEATURE_PREFIX) :] for c in frame.columns if c.startswith(FEATURE_PREFIX)
        }
        frame = frame.rename(columns=renamed)
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise InputError(
                "monitor", f"logged rows lack the features {missing}", "log features with each row"
            )
        return frame

    def run(self, since: Any = None) -> LoopRun:
        """One pass of the loop over the labelled traffic since ``since`` (default: all).

        Raises:
            InputError: fewer than ``min_recent`` labelled rows.
        """
        from tunelens.quality import analyse
        from tunelens.tune import compare, decide, tune

        run_id = uuid.uuid4().hex[:12]
        started = datetime.now(UTC).isoformat()
        recent = self._recent(since)
        if len(recent) < self.min_recent:
            raise InputError(
                "since",
                f"only {len(recent)} labelled rows since {since!r}",
                f"wait for at least {self.min_recent} labels or widen the range",
            )
        # 1. analyse
        ref = self.reference.copy()
        ref["__prediction"] = self._champion_predict(ref)
        cur = recent[self.features].copy()
        cur[self.target] = recent["label"].to_numpy()
        cur["__prediction"] = recent["prediction"].to_numpy()
        report = analyse(
            ref, cur, target=self.target, prediction="__prediction", estimate=False, slices=False
        )
        findings = [f.to_dict() for f in report.findings]
        # 2. plan: hold out recent rows for the check; weight the rest against the reference
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(recent))
        n_hold = max(1, round(self.holdout * len(recent)))
        hold, train = cur.iloc[order[:n_hold]], cur.iloc[order[n_hold:]]
        dropped = any(f["kind"] == "metric_drop" for f in findings)
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
        data = pd.concat(parts)
        X, y = data[self.features].to_numpy(), data[self.target].to_numpy()
        plan = {
            "data_rule": rule,
            "reference_rows": len(ref) if len(parts) > 1 else 0,
            "recent_training_rows": len(train),
            "recent_weight": repeat,
            "holdout_rows": n_hold,
            "remedies_from": sorted({f["kind"] for f in findings}),
            "constraints": [str(c) for c in self.constraints],
        }
        # 3. tune
        result = tune(
            self.trainer,
            data=(X, y),
            findings=report.findings,
            constraints=self.constraints,
            n_trials=self.n_trials,
            seed=self.seed,
        )
        challenger = result.model
        # 4. check on held-out recent rows
        Xh, yh = hold[self.features].to_numpy(), hold[self.target].to_numpy()
        comparison = compare(
            yh, self._champion_predict(hold), challenger.predict(Xh), seed=self.seed
        )
        decision = decide(comparison, policy=self.policy, constraints_met=result.feasible)
        # 5. record
        version = f"{self.champion_version}.{run_id[:6]}"
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
        promoted = decision.action == "promote" and self.shadow_rows == 0
        if promoted:
            self.registry.promote(version, reason=decision.reason, decision=decision.to_dict())
        out = LoopRun(
            run=run_id,
            started=started,
            rows={"recent": len(recent), "reference": len(ref)},
            findings=findings,
            plan={**plan, "explanation": result.explanation},
            tune={k: result.to_dict()[k] for k in ("best", "feasible", "blocked_by")},
            comparison={**comparison.to_dict(), "summary": comparison.summary()},
            decision=decision.to_dict(),
            champion=self.champion_version,
            challenger=version,
            promoted=promoted,
            model=challenger,
        )
        self._save_run(out.to_dict())
        if promoted:
            self.champion, self.champion_version = challenger, version
        return out

    # ---- shadow traffic ---------------------------------------------------------------------

    def start_shadow(self, run: LoopRun, *, max_pending: int = 1000) -> Shadow:
        """Serve fresh traffic through the champion while ``run``'s challenger shadows it.

        The challenger is logged as model ``"<model>@<challenger version>"`` in the same
        store, on the same ids; log the labels with ``shadow.log_labels`` and call
        `conclude`. Inputs are the feature rows (a DataFrame with the feature columns, or
        an array in their order).
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
        return Shadow(
            self.monitor,
            shadow_monitor,
            champion_fn,
            lambda X: challenger_model.predict(rows(X)),
            max_pending=max_pending,
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
            return frame

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
        self._save_run({**run.to_dict(), "shadow": json.loads(json.dumps(out, default=str))})
        return out

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
