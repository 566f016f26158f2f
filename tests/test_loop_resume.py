"""A loop killed during tuning resumes its run from the stored study, keeping finished trials."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from tunelens.loop import Loop
from tunelens.monitor import Monitor
from tunelens.store import open_store

FEATURES = ["x0", "x1", "x2"]
TRIALS = 10
SCRIPT = textwrap.dedent(
    """
    import sys, time, warnings
    import optuna, pandas as pd
    from sklearn.linear_model import LogisticRegression
    from tunelens.loop import Loop
    from tunelens.monitor import Monitor
    from tunelens.store import open_store

    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fit = LogisticRegression.fit

    def slow_fit(self, *args, **kwargs):  # every trial takes a while: room to kill one
        time.sleep(0.4)
        return fit(self, *args, **kwargs)

    LogisticRegression.fit = slow_fit
    storage = optuna.storages.RDBStorage(sys.argv[2], heartbeat_interval=1, grace_period=2)
    mon = Monitor("m", open_store(sys.argv[1]), resources=False)
    loop = Loop(mon, trainer=LogisticRegression(), reference=pd.read_parquet(sys.argv[3]),
                target="y", n_trials=int(sys.argv[4]), storage=storage, policy="auto")
    run = loop.run()
    print("RUN", run.run, run.tune["complete"], run.status, flush=True)
    mon.close()
    mon.store.close()
    """
)


def _frame(rng: np.random.Generator, n: int, w: np.ndarray) -> pd.DataFrame:
    X = rng.normal(size=(n, 3))
    frame = pd.DataFrame(X, columns=FEATURES)
    frame["y"] = (X @ w + 0.3 * rng.normal(size=n) > 0).astype(int)
    return frame


def _complete(url: str) -> dict[int, dict[str, object]]:
    found: dict[int, dict[str, object]] = {}
    for summary in optuna.get_all_study_summaries(storage=url):
        study = optuna.load_study(study_name=summary.study_name, storage=url)
        for t in study.trials:
            if t.state == optuna.trial.TrialState.COMPLETE:
                found[t.number] = t.params
    return found


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_killed_loop_resumes_its_run_without_losing_trials(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    reference = _frame(rng, 1500, np.array([2.0, 0.0, 0.5]))
    recent = _frame(rng, 1200, np.array([0.0, 2.0, 0.5]))
    champion = LogisticRegression().fit(reference[FEATURES], reference["y"])
    store_path = str(tmp_path / "loop.duckdb")
    ref_path = tmp_path / "reference.parquet"
    reference.to_parquet(ref_path)
    mon = Monitor("m", open_store(store_path), resources=False)
    ids = [f"r{i}" for i in range(len(recent))]
    mon.log(ids, recent[FEATURES], champion.predict(recent[FEATURES]))
    mon.log_labels(ids, recent["y"].to_numpy())
    # registers and saves the champion: the processes below load it from the store
    Loop(mon, trainer=LogisticRegression(), champion=champion, reference=reference, target="y")
    mon.close()
    mon.store.close()

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    optuna.create_study(study_name="tables", storage=url)  # tables exist before polling
    script = tmp_path / "loop_run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [sys.executable, str(script), store_path, url, str(ref_path), str(TRIALS)]
    first = subprocess.Popen(args, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.2)
        try:
            if len(_complete(url)) >= 3:
                break
        except Exception:  # "database is locked" while the worker writes: poll again
            continue
    first.send_signal(signal.SIGKILL)  # mid-tuning, no clean-up
    first.wait(10)
    before = _complete(url)
    assert 3 <= len(before) < TRIALS

    with open_store(store_path) as store:
        mon = Monitor("m", store, resources=False)
        loop = Loop(mon, trainer=LogisticRegression(), reference=reference, target="y")
        pending = loop.unfinished()
        assert pending is not None and pending["status"] == "tuning"
        run_id = pending["run"]
        mon.close()

    second = subprocess.run(args, env=env, timeout=300, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-2000:]
    line = next(x for x in second.stdout.splitlines() if x.startswith("RUN"))
    _, resumed, complete, status = line.split()
    assert resumed == run_id and status == "done"  # the same run, finished
    after = _complete(url)
    assert all(after[n] == p for n, p in before.items())  # no finished trial lost or redone
    assert len(after) == int(complete) == TRIALS
    with open_store(store_path) as store:
        mon = Monitor("m", store, resources=False)
        loop = Loop(mon, trainer=LogisticRegression(), reference=reference, target="y")
        runs = loop.runs()
        assert [r["run"] for r in runs] == [run_id] and runs[0]["status"] == "done"
        assert runs[0]["promoted"] and loop.champion_version == runs[0]["challenger"]
        mon.close()
