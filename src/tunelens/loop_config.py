"""The TOML config of ``tunelens loop --store S --model M --config loop.toml``.

:func:`load_loop_config` reads and checks the whole file before anything runs: an unknown
table or key, a wrong type, an unknown policy, a trainer that cannot be imported or
refuses its parameters, a missing reference file or target column, a bad constraint
(``constraints[0].op``) each raise :class:`~tunelens.errors.InputError` naming the key
and the accepted values (the CLI prints it as one line and exits with code 2).
:meth:`LoopConfig.loop_kwargs` turns the file into the keyword arguments of
:class:`tunelens.Loop`.

Example (``examples/loop/loop.toml``)::

    [loop]
    trainer = "sklearn.linear_model:LogisticRegression"
    trainer_params = { max_iter = 2000 }
    reference = "reference.parquet"
    target = "diagnosis"
    champion = "model.pkl"
    policy = "manual"
    n_trials = 20

    [[constraints]]
    name = "latency_p99_ms"
    op = "<="
    bound = 20

Keys (only ``[loop]`` and ``[[constraints]]`` are accepted; unknown tables or keys are
errors; relative paths are taken from the config file's folder):

``[loop]``
    ``trainer`` (required) ``"package.module:attribute"`` (a dotted
    ``"package.module.Class"`` works too): a scikit-learn estimator class, or a factory
    returning an unfitted estimator (a ``Pipeline`` is fine: ``tune`` searches its last
    step). The config file's folder is importable, for the user's own factories.
    ``trainer_params`` (table, default empty) keyword arguments of the class or factory;
    for a class they are checked against its ``get_params()`` names.
    ``reference`` (required) a CSV or Parquet file: the rows the champion was trained on,
    with the logged feature names and ``target``.
    ``target`` (required) the label column of ``reference``.
    ``features`` (array of strings, optional) the feature columns of ``reference``
    (default: every column but ``target``); they must be the logged feature names.
    ``champion`` (optional) a pickled fitted model (``.pkl``/``.pickle``, or ``.joblib``)
    serving before the first run; it is registered as version ``"1"``. Later runs load
    the store's champion (the registry's), and the file is not read again. Unpickling runs
    code: name only files you trust.
    ``policy`` ``"manual"`` (default: a better challenger waits for ``--approve``) or
    ``"auto"`` (a significantly better challenger meeting every constraint is promoted).
    ``n_trials`` (integer >= 1, default 20) tuning trials per run.
    ``holdout`` (number in [0.05, 0.9], default 0.3) share of the recent labelled rows kept
    out of training for the champion/challenger check.
    ``min_recent`` (integer >= 1, default 200) fewest recent labelled rows a run needs.
    ``shadow_rows`` (integer >= 0, default 0) when > 0 an offline winner must also win on
    this many labelled shadow rows before it is promoted (Python API: ``Loop.conclude``).
    ``storage`` (string, default ``"auto"``) the Optuna storage of the runs' studies:
    ``"auto"`` (a SQLite file beside a DuckDB store, the store's database for
    PostgreSQL), ``"memory"`` (a killed run then starts over), ``sqlite:///file.db``
    (relative to the config file) or ``postgresql://user@host:5432/db``.
    ``seed`` (integer, default 0) seeds the split and the search.
    ``since`` (ISO-8601 string or TOML date-time, optional) runs use the labelled traffic
    logged from then on (default: all); ``--since`` on the command line wins.

``[[constraints]]`` (repeatable)
    ``name`` a metric (``accuracy``, ``f1``, ``log_loss``, ``r2``, ``mae``, ``mse``,
    ``rmse``) or a measurement (``latency_p50_ms``, ``latency_p99_ms``, ``model_bytes``),
    ``op`` (``"<="`` or ``">="``), ``bound`` (a number). Every challenger must meet them;
    latency constraints are also checked on the champion.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelens.errors import InputError
from tunelens.tune._tune import Constraint
from tunelens.tune.config import (
    CLASSIFICATION_METRICS,
    MEASUREMENTS,
    REGRESSION_METRICS,
    _check_keys,
    _choice,
    _int,
    _names,
    _num,
    _str,
    _type_name,
    import_callable,
    parse_constraint_tables,
    read_toml,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["POLICIES", "LoopConfig", "load_loop_config", "parse_loop_config"]

#: the champion/challenger policies (as `tunelens.tune.decide`)
POLICIES: tuple[str, ...] = ("manual", "auto")
_TOP_KEYS: tuple[str, ...] = ("loop", "constraints")
_LOOP_KEYS: tuple[str, ...] = (
    "trainer",
    "trainer_params",
    "reference",
    "target",
    "features",
    "champion",
    "policy",
    "n_trials",
    "holdout",
    "min_recent",
    "shadow_rows",
    "storage",
    "seed",
    "since",
)
_CONSTRAINT_KEYS: tuple[str, ...] = ("name", "op", "bound")
#: names a constraint may use: the scikit-learn metrics and measurements `tune` records
CONSTRAINT_NAMES: tuple[str, ...] = (
    *CLASSIFICATION_METRICS,
    *REGRESSION_METRICS["sklearn"],
    *MEASUREMENTS["sklearn"],
)
_TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
_TRAINER_EXAMPLE = '"sklearn.linear_model:LogisticRegression"'


@dataclass(frozen=True)
class LoopConfig:
    """A checked loop config: what `tunelens.Loop` is built from.

    Attributes:
        path: the config file.
        trainer: the ``module:attribute`` of the estimator class or factory.
        trainer_params: its keyword arguments.
        reference: the reference table (CSV or Parquet).
        target: its label column.
        features: its feature columns, or None for every column but ``target``.
        champion: a pickled fitted model for the first run, or None.
        policy: ``"manual"`` or ``"auto"``.
        n_trials, holdout, min_recent, shadow_rows, seed: as `tunelens.Loop`.
        storage: ``"auto"``, an Optuna storage URL, or None (in memory).
        since: the start of the traffic runs use, or None (all).
        constraints: every challenger must meet them.
    """

    path: Path
    trainer: str
    trainer_params: dict[str, Any]
    reference: Path
    target: str
    features: tuple[str, ...] | None = None
    champion: Path | None = None
    policy: str = "manual"
    n_trials: int = 20
    holdout: float = 0.3
    min_recent: int = 200
    shadow_rows: int = 0
    storage: str | None = "auto"
    seed: int = 0
    since: datetime | None = None
    constraints: tuple[Constraint, ...] = ()
    _factory: Callable[..., Any] | None = field(default=None, repr=False, compare=False)

    def build_trainer(self) -> Any:
        """A fresh unfitted estimator from ``trainer`` and ``trainer_params``.

        Raises:
            InputError: the class or factory refused the parameters, or did not return a
                scikit-learn estimator.
        """
        factory = self._factory or _import_trainer(self.trainer, self.path.resolve().parent)
        return _call_trainer(factory, self.trainer, self.trainer_params)

    def load_reference(self) -> pd.DataFrame:
        """The reference rows: the feature columns and ``target``.

        Raises:
            InputError: the file cannot be read, or lacks ``target`` or a feature.
        """
        import pandas as pd

        try:
            if self.reference.suffix.lower() == ".csv":
                frame = pd.read_csv(self.reference)
            else:
                frame = pd.read_parquet(self.reference)
        except Exception as exc:
            raise InputError(
                "loop.reference", f"{self.reference} cannot be read: {_flat(exc)}", ""
            ) from None
        frame.columns = [str(c) for c in frame.columns]
        _check_columns(list(frame.columns), self.target, self.features, self.reference)
        if self.features is not None:
            frame = frame[[*self.features, self.target]]
        if frame.empty:
            raise InputError("loop.reference", f"{self.reference} has no rows", "")
        return frame

    def load_champion(self) -> Any:
        """The fitted model of ``champion`` (unpickled), or None when the key is absent.

        Raises:
            InputError: the file cannot be unpickled, or holds no ``predict``.
        """
        if self.champion is None:
            return None
        try:
            if self.champion.suffix.lower() == ".joblib":
                import joblib  # type: ignore[import-untyped]

                model = joblib.load(self.champion)
            else:
                with self.champion.open("rb") as handle:
                    model = pickle.load(handle)
        except Exception as exc:
            raise InputError(
                "loop.champion",
                f"{self.champion} cannot be unpickled: {type(exc).__name__}: {_flat(exc)}",
                "give a model saved with pickle.dump or joblib.dump",
            ) from None
        if not hasattr(model, "predict"):
            raise InputError(
                "loop.champion",
                f"{self.champion} holds a {type(model).__name__}, not a fitted model",
                "pickle the fitted estimator",
            )
        return model

    def loop_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `tunelens.Loop` (trainer and reference built and loaded;
        the champion is left to the caller: the store's, or `load_champion`)."""
        return {
            "trainer": self.build_trainer(),
            "reference": self.load_reference(),
            "target": self.target,
            "constraints": self.constraints,
            "policy": self.policy,
            "n_trials": self.n_trials,
            "holdout": self.holdout,
            "min_recent": self.min_recent,
            "shadow_rows": self.shadow_rows,
            "storage": self.storage,
            "seed": self.seed,
        }


# ---- parsing ---------------------------------------------------------------------------------


def load_loop_config(path: str | Path) -> LoopConfig:
    """Read and check a loop config file (TOML); see the module docstring for the keys.

    Args:
        path: the file.

    Returns:
        The checked :class:`LoopConfig` (the trainer imported and built once, the
        reference's header read; the reference rows and the champion not loaded yet).

    Raises:
        InputError: a missing file, bad TOML, an unknown table or key, a wrong type, an
            unknown policy or constraint, a trainer that cannot be built, a missing
            reference file or column; each names the key and the accepted values.
    """
    path = Path(path)
    return parse_loop_config(read_toml(path), path)


def parse_loop_config(doc: Mapping[str, Any], path: str | Path = "loop.toml") -> LoopConfig:
    """Check an already-parsed loop config (a dict as ``tomllib`` returns it).

    Raises:
        InputError: as :func:`load_loop_config`.
    """
    path = Path(path)
    base = path.resolve().parent
    for key, value in doc.items():
        if key not in _TOP_KEYS:
            kind = "table" if isinstance(value, dict) else "key"
            raise InputError(key, f"unknown top-level {kind}", f"use one of {_names(_TOP_KEYS)}")
    if "loop" not in doc:
        raise InputError("loop", "missing table", "add [loop] with trainer, reference, target")
    table = doc["loop"]
    if not isinstance(table, dict):
        raise InputError("loop", f"must be a table, got a {_type_name(table)}", "write [loop]")
    _check_keys(table, _LOOP_KEYS, "loop")
    for key in ("trainer", "reference", "target"):
        if key not in table:
            raise InputError(f"loop.{key}", "missing", _REQUIRED_FIX[key])

    # everything cheap and local first, so a typo is reported before any import
    target = _str(table, "target", "loop")
    features = _features(table.get("features"))
    policy = _choice(table, "policy", "loop", POLICIES, "manual")
    n_trials = _int(table, "n_trials", "loop", 20, 1)
    holdout = _num(table, "holdout", "loop", 0.3, minimum=0.05)
    if holdout is not None and holdout > 0.9:
        raise InputError("loop.holdout", f"is {holdout:g}", "use a share in [0.05, 0.9]")
    min_recent = _int(table, "min_recent", "loop", 200, 1)
    shadow_rows = _int(table, "shadow_rows", "loop", 0, 0)
    seed = _int(table, "seed", "loop", 0)
    storage = _storage(table, base)
    since = _since(table.get("since"))
    constraints = _constraints(doc.get("constraints", []))
    if not isinstance(table.get("trainer_params", {}), dict):
        raise InputError(
            "loop.trainer_params",
            f"must be a table, got a {_type_name(table['trainer_params'])}",
            "write trainer_params = { max_iter = 2000 }",
        )
    reference = _table_file(_str(table, "reference", "loop"), base, "loop.reference")
    assert target is not None and reference is not None
    _check_columns(_header(reference), target, features, reference)
    champion_spec = _str(table, "champion", "loop")
    champion = None if champion_spec is None else _existing(champion_spec, base, "loop.champion")

    spec = _str(table, "trainer", "loop")
    assert spec is not None
    params = dict(table.get("trainer_params", {}))
    factory = _import_trainer(spec, base)
    _call_trainer(factory, spec, params)  # refused parameters fail now, not mid-run
    assert policy is not None and n_trials is not None and holdout is not None
    assert min_recent is not None and shadow_rows is not None and seed is not None
    return LoopConfig(
        path=path,
        trainer=spec,
        trainer_params=params,
        reference=reference,
        target=target,
        features=features,
        champion=champion,
        policy=policy,
        n_trials=n_trials,
        holdout=holdout,
        min_recent=min_recent,
        shadow_rows=shadow_rows,
        storage=storage,
        seed=seed,
        since=since,
        constraints=constraints,
        _factory=factory,
    )


_REQUIRED_FIX = {
    "trainer": f"give the estimator as trainer = {_TRAINER_EXAMPLE}",
    "reference": 'give the champion\'s training rows as reference = "reference.parquet"',
    "target": 'give the reference\'s label column as target = "label"',
}


def _flat(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _features(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise InputError(
            "loop.features", f"must be a non-empty array of strings, got {value!r}", ""
        )
    for item in value:
        if not isinstance(item, str) or not item:
            raise InputError("loop.features", f"must hold column names, got {item!r}", "")
    if len(set(value)) != len(value):
        raise InputError("loop.features", f"names a column twice: {value}", "list each once")
    return tuple(value)


def _storage(table: Mapping[str, Any], base: Path) -> str | None:
    value = _str(table, "storage", "loop", "auto")
    assert value is not None
    if value == "auto":
        return "auto"
    if value == "memory":
        return None
    from tunelens.tune.distributed import normalize_storage

    if "://" not in value:
        raise InputError(
            "loop.storage",
            f"unknown value {value!r}",
            'use "auto", "memory", sqlite:///file.db or postgresql://user@host:5432/db',
        )
    return normalize_storage(value, base=base, field="loop.storage")


def _since(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, date):
        stamp = datetime.combine(value, time())
    elif isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            raise InputError(
                "loop.since",
                f"expected an ISO-8601 time like 2026-03-06T00:00:00Z, got {value!r}",
                "",
            ) from None
    else:
        raise InputError("loop.since", f"must be a date-time, got a {_type_name(value)}", "")
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def _constraints(raw: Any) -> tuple[Constraint, ...]:
    return parse_constraint_tables(raw, "constraints", CONSTRAINT_NAMES)


def _existing(value: str, base: Path, where: str) -> Path:
    path = Path(value)
    if not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise InputError(where, f"no such file {value!r} (looked for {path})", "")
    return path


def _table_file(value: str | None, base: Path, where: str) -> Path:
    assert value is not None
    path = _existing(value, base, where)
    if path.suffix.lower() not in _TABLE_SUFFIXES:
        raise InputError(
            where, f"{value!r} is neither CSV nor Parquet", "use a .csv or .parquet file"
        )
    return path


def _header(path: Path) -> list[str]:
    """The table's column names, without reading its rows."""
    try:
        if path.suffix.lower() == ".csv":
            import pandas as pd

            return [str(c) for c in pd.read_csv(path, nrows=0).columns]
        import pyarrow.parquet as pq

        return [str(c) for c in pq.read_schema(path).names]
    except Exception as exc:
        raise InputError("loop.reference", f"{path} cannot be read: {_flat(exc)}", "") from None


def _check_columns(
    columns: list[str], target: str, features: tuple[str, ...] | None, path: Path
) -> None:
    if target not in columns:
        raise InputError(
            "loop.target",
            f"{path.name} has no column {target!r}",
            f"use one of {_names(columns)}",
        )
    missing = [c for c in features or () if c not in columns]
    if missing:
        raise InputError(
            "loop.features",
            f"{path.name} has no column {missing[0]!r}",
            f"use any of {_names(columns)}",
        )
    if features is not None and target in features:
        raise InputError("loop.features", f"names the target {target!r}", "leave it out")


def _import_trainer(spec: str, base: Path) -> Callable[..., Any]:
    """The class or factory that ``"module:attribute"`` (or ``"module.Class"``) names."""
    return import_callable(spec, base, "loop.trainer", _TRAINER_EXAMPLE, dotted=True)


def _call_trainer(factory: Callable[..., Any], spec: str, params: Mapping[str, Any]) -> Any:
    """``factory(**params)``, checked: parameter names (for a class) and the result."""
    if isinstance(factory, type) and hasattr(factory, "get_params"):
        try:
            names = sorted(factory().get_params())
        except Exception:  # an estimator with required arguments: let the call below tell
            names = []
        for key in params:
            if names and key not in names:
                raise InputError(
                    f"loop.trainer_params.{key}",
                    f"not a parameter of {factory.__name__}",
                    f"use one of {_names(names)}",
                )
    try:
        estimator = factory(**params)
    except Exception as exc:
        raise InputError(
            "loop.trainer_params", f"{spec} refused them: {type(exc).__name__}: {_flat(exc)}", ""
        ) from None
    if not (hasattr(estimator, "fit") and hasattr(estimator, "predict")):
        raise InputError(
            "loop.trainer",
            f"{spec} gave a {type(estimator).__name__}, not a scikit-learn estimator",
            "name an estimator class or a factory that returns one",
        )
    return estimator
