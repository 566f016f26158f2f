"""Distributed tuning: workers on one study create exactly n_trials trials between them
(SQLite file and PostgreSQL), the trial lock really excludes, a dying worker is reported.

The PostgreSQL tests need ``TUNELENS_TEST_POSTGRES`` (e.g.
``postgresql://root@127.0.0.1:5432/test``); each keeps Optuna's tables in a fresh schema
(``search_path`` set through the URL's ``options``) that is dropped afterwards, so nothing
is left in ``public``.
"""

from __future__ import annotations

import os
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from tunelens.errors import InputError
from tunelens.tune.distributed import (
    TrialLock,
    is_shared,
    normalize_storage,
    redact,
    run_workers,
    trial_lock,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

PG_URL = os.environ.get("TUNELENS_TEST_POSTGRES", "")
needs_pg = pytest.mark.skipif(
    not PG_URL,
    reason="set TUNELENS_TEST_POSTGRES=postgresql://user@host:5432/db to run the PostgreSQL tests",
)

FAST = """
[study]
name = "{name}"
n_trials = {n}
seed = 0
[model]
kind = "sklearn"
estimator = "sklearn.linear_model.LogisticRegression"
params = {{max_iter = 200}}
[data]
dataset = "iris"
[space]
C = {{low = 0.01, high = 100.0, log = true}}
"""


def _config(tmp_path: Path, n: int, name: str | None = None) -> tuple[Path, str]:
    name = name or f"tl-{uuid.uuid4().hex[:10]}"
    path = tmp_path / "fast.toml"
    path.write_text(FAST.format(name=name, n=n))
    return path, name


# ---- storage URLs ----------------------------------------------------------------------------


def test_storage_urls(tmp_path: Path) -> None:
    assert normalize_storage("postgresql://u@h:5432/d") == "postgresql+psycopg://u@h:5432/d"
    assert normalize_storage("postgres://u@h/d?x=1") == "postgresql+psycopg://u@h/d?x=1"
    assert normalize_storage("sqlite:///a.db", base=tmp_path) == f"sqlite:///{tmp_path}/a.db"
    assert normalize_storage("sqlite:////abs/a.db", base=tmp_path) == "sqlite:////abs/a.db"
    with pytest.raises(InputError, match="unsupported storage"):
        normalize_storage("redis://localhost")
    assert redact("postgresql://me:secret@h/d") == "postgresql://me:***@h/d"
    assert redact("postgresql://me@h/d") == "postgresql://me@h/d"
    assert is_shared("sqlite:///x.db") and is_shared("postgresql://h/d")
    assert not is_shared("sqlite:///:memory:") and not is_shared(None)


# ---- the lock --------------------------------------------------------------------------------


def _exclusion(make: object, hold_s: float = 0.4) -> tuple[float, float]:
    """Thread A holds the lock for ``hold_s``; returns (A's release time, B's acquire time)."""
    assert callable(make)
    first, second = make(), make()
    held = threading.Event()
    times: dict[str, float] = {}

    def a() -> None:
        with first():
            held.set()
            time.sleep(hold_s)
            times["released"] = time.monotonic()

    def b() -> None:
        held.wait(5)
        with second():
            times["acquired"] = time.monotonic()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    first.close()
    second.close()
    return times["released"], times["acquired"]


def test_file_lock_excludes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    released, acquired = _exclusion(lambda: trial_lock(url, "study-a"))
    assert acquired >= released
    lock = trial_lock(url, "study-a")
    assert lock.kind == "file"
    # another study has its own lock: never blocked by study-a
    other = trial_lock(url, "study-b")
    with lock(), other():
        pass


def test_memory_storage_has_no_lock() -> None:
    lock = trial_lock(None, "x")
    assert lock.kind == "none"
    with lock(), lock():  # re-entrant because it is nothing
        pass


@needs_pg
def test_postgres_advisory_lock_excludes() -> None:
    psycopg = pytest.importorskip("psycopg")
    name = f"tl-{uuid.uuid4().hex[:10]}"
    released, acquired = _exclusion(lambda: trial_lock(PG_URL, name))
    assert acquired >= released
    lock = TrialLock(PG_URL, name)
    with psycopg.connect(PG_URL, autocommit=True) as other:
        with lock():
            held = other.execute("SELECT pg_try_advisory_lock(%s)", (lock.key,)).fetchone()
            assert held == (False,)
        free = other.execute("SELECT pg_try_advisory_lock(%s)", (lock.key,)).fetchone()
        assert free == (True,)
        other.execute("SELECT pg_advisory_unlock(%s)", (lock.key,))
    lock.close()


# ---- workers ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_three_workers_on_sqlite_make_exactly_twelve_trials(tmp_path: Path) -> None:
    config, name = _config(tmp_path, 12)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    seen: list[int] = []
    result = run_workers(
        config, storage=url, workers=3, on_progress=lambda done, total, best: seen.append(done)
    )
    assert result.exit_codes == [0, 0, 0], result.summary()
    assert result.ok
    assert result.states == {"COMPLETE": 12}
    assert sorted(result.numbers) == list(range(12)) and result.duplicates == []
    assert seen[-1] == 12
    study = optuna.load_study(study_name=name, storage=url)
    assert len(study.trials) == 12
    # the workers were seeded differently: TPE's random start-up samples differ
    assert len({round(t.params["C"], 12) for t in study.trials}) == 12


@pytest.fixture
def pg_storage() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    from psycopg import sql

    schema = f"tl_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as con:
        con.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as con:
            con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@needs_pg
@pytest.mark.slow
def test_two_workers_on_postgres_make_exactly_n_trials(tmp_path: Path, pg_storage: str) -> None:
    from tunelens.tune.distributed import open_storage

    config, name = _config(tmp_path, 8)
    result = run_workers(config, storage=pg_storage, workers=2)
    assert result.exit_codes == [0, 0], result.summary()
    assert result.states == {"COMPLETE": 8}
    assert sorted(result.numbers) == list(range(8)) and result.duplicates == []
    storage = open_storage(pg_storage)
    assert len(optuna.load_study(study_name=name, storage=storage).trials) == 8
    optuna.delete_study(study_name=name, storage=storage)
    assert name not in [s.study_name for s in optuna.get_all_study_summaries(storage)]


DYING = textwrap.dedent(
    """
    import os

    if os.environ.get("TL_TEST_WORKER_DIES"):
        os._exit(3)


    def make(**kwargs):
        raise RuntimeError("never called in this test")
    """
)


def test_a_dying_worker_is_reported(tmp_path: Path) -> None:
    (tmp_path / "tl_dying_models.py").write_text(DYING)
    config = tmp_path / "dying.toml"
    config.write_text(
        '[study]\nn_trials = 4\n[model]\nkind = "factory"\nfactory = "tl_dying_models:make"\n'
        '[data]\ndataset = "iris"\n'
    )
    env = {**os.environ, "TL_TEST_WORKER_DIES": "1"}
    result = run_workers(
        config, storage=f"sqlite:///{tmp_path / 's.db'}", workers=2, env=env, poll_s=0.1
    )
    assert result.exit_codes == [3, 3]
    assert not result.ok and result.finished == 0
    text = result.summary()
    assert "worker 0 exited with code 3" in text and "worker 1 exited with code 3" in text
    assert result.to_dict()["exit_codes"] == [3, 3]


def test_workers_need_shared_storage(tmp_path: Path) -> None:
    config, _ = _config(tmp_path, 2)
    with pytest.raises(InputError) as info:
        run_workers(config, storage="sqlite:///:memory:", workers=2)
    assert info.value.field == "--storage" and "postgresql://" in str(info.value)
    with pytest.raises(InputError, match="--workers"):
        run_workers(config, storage=f"sqlite:///{tmp_path / 's.db'}", workers=0)
