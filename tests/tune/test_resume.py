"""A tuning process killed mid-study resumes from the stored study without losing trials."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest

SCRIPT = textwrap.dedent(
    """
    import sys, time, warnings
    import optuna
    from tunelens.tune import tune

    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(sys.argv[1], heartbeat_interval=1, grace_period=2)

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        for step in range(1, 6):
            time.sleep(0.05)
            trial.report(x * step, step)
        return x

    tune(objective, storage=storage, study_name="resume", total_trials=int(sys.argv[2]),
         n_trials=None, pruner="none", seed=int(sys.argv[3]))
    """
)


def _finished(url: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name="resume", storage=url)
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_killed_tuning_resumes_from_the_stored_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    # the tables and the study exist before any process polls them (creating the tables
    # from two processes at once races in SQLite)
    optuna.create_study(study_name="resume", storage=url, direction="maximize")
    first = subprocess.Popen([sys.executable, str(script), url, "12", "0"], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            if len(_finished(url)) >= 4:
                break
        except Exception:  # e.g. "database is locked" while the worker writes: poll again
            continue
    first.send_signal(signal.SIGKILL)  # mid-trial, without any clean-up
    first.wait(10)
    before = {t.number: t.params for t in _finished(url)}
    assert 4 <= len(before) < 12

    second = subprocess.run(
        [sys.executable, str(script), url, "12", "1"], env=env, timeout=120, check=False
    )
    assert second.returncode == 0
    study = optuna.load_study(study_name="resume", storage=url)
    complete = {t.number: t.params for t in study.trials if t.state.name == "COMPLETE"}
    # every trial finished before the kill is still there, unchanged
    assert all(complete[n] == p for n, p in before.items())
    # the trial the kill interrupted is failed (its heartbeat went stale), not left running,
    # and the study was topped up to 12 trials that did not fail
    states = [t.state.name for t in study.trials]
    assert "RUNNING" not in states
    assert len(complete) == 12
    assert states.count("FAIL") <= 1
    assert len({t.number for t in study.trials}) == len(study.trials)
