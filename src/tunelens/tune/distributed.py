"""Distributed tuning: N worker processes on one Optuna study in shared RDB storage.

Each worker is ``python -m tunelens.cli tune CONFIG --storage URL --worker`` and runs
:func:`tunelens.tune.tune` on the same study with ``total_trials`` = the config's
``n_trials`` and a :func:`trial_lock` held around "count the study's trials, then ask for
a new one", so the workers create exactly ``n_trials`` trials between them. The storage is
plain Optuna RDB storage (SQLite file or PostgreSQL), so optuna-dashboard reads it.

Example:
    .. code-block:: python

        from tunelens.tune.distributed import run_workers

        result = run_workers("tune.toml", storage="postgresql://me@db:5432/studies", workers=4)
        print(result.summary())
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelens.errors import InputError

__all__ = [
    "TrialLock",
    "WorkersResult",
    "is_shared",
    "normalize_storage",
    "open_storage",
    "redact",
    "run_workers",
    "trial_lock",
]

_SCHEMES = ("sqlite:///", "postgresql://", "postgres://", "postgresql+psycopg://")
_FINISHED = ("COMPLETE", "PRUNED", "FAIL")


def normalize_storage(url: str, *, base: Path | None = None, field: str = "--storage") -> str:
    """The SQLAlchemy URL Optuna needs for a user's storage URL.

    ``postgresql://`` and ``postgres://`` become ``postgresql+psycopg://`` (psycopg 3);
    ``sqlite:///relative.db`` is taken from ``base`` when given.

    Args:
        url: ``sqlite:///file.db``, ``sqlite:///:memory:`` or ``postgresql://user@host/db``.
        base: folder of relative SQLite paths (the config file's).
        field: the key or flag named in errors.

    Returns:
        The URL for :class:`optuna.storages.RDBStorage`.

    Raises:
        InputError: another scheme.
    """
    text = url.strip()
    lower = text.lower()
    if lower.startswith("postgres://"):
        return "postgresql+psycopg://" + text[len("postgres://") :]
    if lower.startswith("postgresql://"):
        return "postgresql+psycopg://" + text[len("postgresql://") :]
    if lower.startswith("postgresql+psycopg://"):
        return text
    if lower.startswith("sqlite:///"):
        path = text[len("sqlite:///") :]
        if not path:
            raise InputError(field, f"no file in {url!r}", "write sqlite:///study.db")
        if path != ":memory:" and base is not None and not Path(path).is_absolute():
            return "sqlite:///" + str((base / path).resolve())
        return text
    raise InputError(
        field,
        f"unsupported storage {redact(url)!r}",
        "use sqlite:///file.db or postgresql://user@host:5432/db",
    )


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    if ":" in creds:
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def is_shared(url: str | None) -> bool:
    """Whether several processes can share this storage (a SQLite file or PostgreSQL)."""
    if url is None:
        return False
    normal = normalize_storage(url)
    return not normal.endswith(":memory:")


#: running trials beat this often (seconds); one silent for GRACE_S is failed and replaced
HEARTBEAT_S = 10
GRACE_S = 60


def open_storage(url: str) -> Any:
    """An :class:`optuna.storages.RDBStorage` for ``url`` (tables created when missing).

    Trials beat every ``HEARTBEAT_S`` seconds; a trial whose worker died (no beat for
    ``GRACE_S``) is marked failed by the next worker that starts a trial, and a new trial
    takes its place in the budget.

    SQLite gets a 60 s busy timeout so that concurrent workers wait rather than fail.

    Raises:
        InputError: an unsupported URL, or a database that cannot be reached.
    """
    import optuna

    normal = normalize_storage(url)
    engine_kwargs: dict[str, Any]
    if normal.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                normal,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
            )
    except ImportError as exc:
        raise InputError(
            "--storage",
            f"needs a database driver ({exc.name} is missing)",
            "pip install 'tunelens[server]'",
        ) from None
    except Exception as exc:
        detail = " ".join(str(exc).split())[:300]
        raise InputError(
            "--storage",
            f"cannot open {redact(url)!r}: {type(exc).__name__}: {detail}",
            "check the URL and that the database is running",
        ) from None


def _lock_key(study_name: str) -> int:
    digest = hashlib.sha256(f"tunelens.tune:{study_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class TrialLock:
    """A zero-argument callable returning a context manager that holds the study's lock.

    PostgreSQL: a session-level ``pg_advisory_lock`` on a 64-bit key hashed from the study
    name, through one psycopg connection opened on first use. SQLite file: an exclusive
    ``fcntl`` lock on ``FILE.tunelens-<hash>.lock`` beside the database. In-memory: no lock.
    Call :meth:`close` (or use it as a context manager) to release the connection.
    """

    def __init__(self, storage_url: str | None, study_name: str) -> None:
        self.study_name = study_name
        self.key = _lock_key(study_name)
        self.kind = "none"
        self._dsn: str | None = None
        self._path: Path | None = None
        self._conn: Any = None
        if storage_url is None:
            return
        normal = normalize_storage(storage_url)
        if normal.startswith("postgresql+psycopg://"):
            self.kind = "postgresql"
            self._dsn = "postgresql://" + normal[len("postgresql+psycopg://") :]
        elif normal.startswith("sqlite:///") and not normal.endswith(":memory:"):
            self.kind = "file"
            db = Path(normal[len("sqlite:///") :])
            self._path = db.with_name(f"{db.name}.tunelens-{self.key & 0xFFFFFFFF:08x}.lock")

    def __call__(self) -> contextlib.AbstractContextManager[None]:
        return self._hold()

    @contextlib.contextmanager
    def _hold(self) -> Iterator[None]:
        if self.kind == "postgresql":
            conn = self._connection()
            conn.execute("SELECT pg_advisory_lock(%s)", (self.key,))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        elif self.kind == "file":
            assert self._path is not None
            with self._path.open("a") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        else:
            yield

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            import psycopg

            assert self._dsn is not None
            self._conn = psycopg.connect(self._dsn, autocommit=True)
        return self._conn

    def close(self) -> None:
        """Close the PostgreSQL connection (which releases any lock it still holds)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> TrialLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def trial_lock(storage_url: str | None, study_name: str) -> TrialLock:
    """The lock that ``tune(..., trial_lock=...)`` holds while it counts and asks for a trial.

    Args:
        storage_url: the study's storage URL (``None`` or ``sqlite:///:memory:``: no lock).
        study_name: the shared study; workers of other studies are not blocked.

    Returns:
        A :class:`TrialLock` (call it for a context manager; close it when done).
    """
    return TrialLock(storage_url, study_name)


@dataclass
class WorkersResult:
    """What :func:`run_workers` saw.

    Attributes:
        study_name: the shared study.
        storage: the storage URL (password redacted).
        requested: ``n_trials`` in all.
        states: trials of the study by state (``COMPLETE``, ``PRUNED``, ``FAIL``, ``RUNNING``...).
        numbers: trial numbers in the study, in order.
        exit_codes: one per worker.
        errors: the last stderr line of each worker that failed.
        seconds: wall time.
    """

    study_name: str
    storage: str
    requested: int
    workers: int
    states: dict[str, int] = field(default_factory=dict)
    numbers: list[int] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def finished(self) -> int:
        """Trials that finished (complete, pruned or failed)."""
        return sum(self.states.get(s, 0) for s in _FINISHED)

    @property
    def duplicates(self) -> list[int]:
        """Trial numbers held by more than one trial (always empty with a sane storage)."""
        seen: set[int] = set()
        dup = [n for n in self.numbers if n in seen or seen.add(n)]  # type: ignore[func-returns-value]
        return sorted(set(dup))

    @property
    def ok(self) -> bool:
        """Every worker exited 0 and the study holds the requested trials, all finished."""
        return (
            all(code == 0 for code in self.exit_codes)
            and not self.duplicates
            and (self.finished >= self.requested)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view."""
        return {
            "study_name": self.study_name,
            "storage": self.storage,
            "requested": self.requested,
            "workers": self.workers,
            "finished": self.finished,
            "states": dict(self.states),
            "duplicates": self.duplicates,
            "exit_codes": list(self.exit_codes),
            "errors": list(self.errors),
            "seconds": self.seconds,
        }

    def summary(self) -> str:
        """One or a few lines of text."""
        states = ", ".join(f"{v} {k.lower()}" for k, v in sorted(self.states.items()))
        lines = [
            f"{self.workers} workers finished {self.finished} of {self.requested} trials on "
            f"study {self.study_name!r} in {self.seconds:.1f} s ({states or 'no trials'})"
        ]
        for i, code in enumerate(self.exit_codes):
            if code != 0:
                lines.append(f"worker {i} exited with code {code}")
        lines.extend(f"  {e}" for e in self.errors if e)
        if self.duplicates:
            lines.append(f"duplicate trial numbers: {self.duplicates}")
        return "\n".join(lines)


def _count(storage: Any, study_name: str) -> tuple[dict[str, int], list[int], float | None]:
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # no worker has created it yet
        return {}, [], None
    trials = study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    best = None
    if len(study.directions) == 1:
        with contextlib.suppress(ValueError):
            best = study.best_value
    return states, [t.number for t in trials], best


def worker_command(
    config_path: str | Path,
    *,
    storage: str,
    study_name: str,
    n_trials: int,
    index: int,
) -> list[str]:
    """The command line of worker ``index``."""
    return [
        sys.executable,
        "-m",
        "tunelens.cli",
        "tune",
        str(config_path),
        "--storage",
        storage,
        "--study",
        study_name,
        "--n-trials",
        str(n_trials),
        "--worker",
        "--worker-index",
        str(index),
    ]


def run_workers(
    config_path: str | Path,
    *,
    storage: str,
    workers: int,
    study_name: str | None = None,
    n_trials: int | None = None,
    on_progress: Callable[[int, int, float | None], None] | None = None,
    poll_s: float = 0.5,
    env: dict[str, str] | None = None,
) -> WorkersResult:
    """Run ``workers`` processes on one study until it holds ``n_trials`` trials.

    The config is checked here first (an error is raised before any process starts) and
    the storage's tables are created once, so the workers do not race to create them.

    Args:
        config_path: the TOML config (see :mod:`tunelens.tune.config`).
        storage: a shared storage URL (SQLite file or PostgreSQL).
        workers: processes to start (>= 1).
        study_name: default the config's ``study.name``.
        n_trials: trials in all; default the config's ``study.n_trials``.
        on_progress: called while waiting with (finished trials, requested, best value).
        poll_s: seconds between progress polls.
        env: environment of the workers (default: this process's).

    Returns:
        A :class:`WorkersResult`; ``ok`` is false when a worker died or trials are missing.

    Raises:
        InputError: a bad config, ``workers`` < 1, a storage that is not shared.
    """
    from tunelens.tune.config import load_config

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError("--workers", f"is {workers!r}", "give an integer >= 1")
    config = load_config(config_path)
    if not is_shared(storage):
        raise InputError(
            "--storage",
            "workers need a shared storage",
            "give sqlite:///file.db or postgresql://user@host:5432/db",
        )
    name = study_name or config.study.name
    total = n_trials if n_trials is not None else config.study.n_trials
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise InputError("--n-trials", f"is {total!r}", "give an integer >= 1")
    store = open_storage(storage)  # creates the tables once, before the workers start
    started = time.perf_counter()
    logs: list[Any] = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(workers):
            log = tempfile.TemporaryFile()  # noqa: SIM115 (closed below)
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    worker_command(
                        config_path, storage=storage, study_name=name, n_trials=total, index=index
                    ),
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    env=env if env is not None else dict(os.environ),
                )
            )
        while any(p.poll() is None for p in procs):
            if on_progress is not None:
                states, _, best = _count(store, name)
                on_progress(sum(states.get(s, 0) for s in _FINISHED), total, best)
            time.sleep(poll_s)
    finally:
        for p in procs:  # an interrupt must not leave workers behind
            if p.poll() is None:
                p.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(10)
    codes = [int(p.returncode) for p in procs]
    errors: list[str] = []
    for i, (code, log) in enumerate(zip(codes, logs, strict=True)):
        if code != 0:
            log.seek(0)
            lines = [ln for ln in log.read().decode("utf-8", "replace").splitlines() if ln.strip()]
            errors.append(f"worker {i}: {lines[-1] if lines else 'no output'}")
        log.close()
    states, numbers, best = _count(store, name)
    result = WorkersResult(
        study_name=name,
        storage=redact(storage),
        requested=total,
        workers=workers,
        states=states,
        numbers=numbers,
        exit_codes=codes,
        errors=errors,
        seconds=time.perf_counter() - started,
    )
    if on_progress is not None:
        on_progress(result.finished, total, best)
    return result
