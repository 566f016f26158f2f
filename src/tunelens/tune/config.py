"""The TOML config of ``tunelens tune CONFIG.toml`` and ``tunelens compress --config``.

:func:`load_config` reads and checks the whole file before anything is trained: every
error names the key (``space.lr``, ``objective.metric``, ``constraints[1].op``) and the
accepted values, and is raised as :class:`~tunelens.errors.InputError` (the CLI prints
it as one line and exits with code 2). :meth:`TuneConfig.load_data` and
:meth:`TuneConfig.build_model` turn the file into the arguments of
:func:`tunelens.tune.tune`; :meth:`TuneConfig.run` does all three and tunes.

Example (``examples/tune/digits_mlp.toml``)::

    [study]
    name = "digits-mlp"
    n_trials = 8
    epochs = 5

    [objective]
    metric = "accuracy"

    [model]
    kind = "mlp"

    [data]
    dataset = "digits"

    [space]
    lr = {low = 1e-4, high = 3e-2, log = true}
    width = {low = 32, high = 256, log = true}
    dropout = [0.0, 0.1, 0.3]

Keys (every table is optional except ``[model]`` and ``[data]``; unknown tables or keys
are errors):

``space = "auto"`` (top level, before any table)
    Let :func:`tunelens.tune.tune` choose the space (the remedies' auto space for PyTorch
    models, the estimator's default space for scikit-learn). Same as leaving ``[space]`` out.

``[study]``
    ``name`` (string; default: the config file's stem) the Optuna study name.
    ``storage`` (string; default: in memory) ``sqlite:///file.db`` (a relative path is
    taken from the config file's folder) or ``postgresql://user@host:5432/db`` (sent to
    SQLAlchemy as ``postgresql+psycopg://``). Plain Optuna RDB storage: optuna-dashboard
    reads it. ``--storage`` on the command line wins.
    ``n_trials`` (integer >= 1, default 20) trials in all; with ``--workers`` they are shared.
    ``timeout`` (seconds > 0) stop starting trials after this long.
    ``seed`` (integer, default 0) seeds the sampler, the data split and the training.
    ``pruner`` (``"asha"`` default, ``"median"``, ``"none"``).
    ``epochs`` (integer >= 1; PyTorch models only) the most epochs a trial trains.

``[objective]``
    ``metric`` a name or a list of names (a list is a multi-objective search, e.g.
    ``["accuracy", "latency_p99_ms"]``). Classification: ``accuracy``, ``f1``,
    ``log_loss``; regression: ``mse``, ``mae``, ``r2`` (and ``rmse`` for scikit-learn);
    measurements: ``latency_p50_ms``, ``latency_p99_ms``, ``model_bytes`` (and ``flops``,
    ``peak_memory_bytes`` for PyTorch models). Default: accuracy (classification), r2
    (scikit-learn regression) or mse (PyTorch regression).
    ``direction`` (optional) ``"maximize"``/``"minimize"`` or one per metric; by default
    each metric's own direction (accuracy, f1, r2 up; the rest down).
    ``priority`` (optional list of metric names) lexicographic order used to pick the
    recommended trial on the Pareto front of a multi-objective search.

``[model]``
    ``kind`` ``"mlp"`` | ``"cnn"`` | ``"sklearn"`` | ``"factory"``.
    ``mlp`` (:func:`tunelens.tune.models.MLP`) and ``cnn``
    (:func:`tunelens.tune.models.SmallCNN`): fixed ``width``, ``depth``, ``dropout``,
    ``init``; the input and output sizes come from the data. A key fixed here may not
    also be searched in ``[space]``.
    ``sklearn``: ``estimator`` a scikit-learn class path (only ``sklearn.*``), e.g.
    ``"sklearn.ensemble.HistGradientBoostingClassifier"``, and ``params`` a table of fixed
    constructor arguments.
    ``factory``: ``factory = "package.module:function"`` returning a ``torch.nn.Module``
    (the config file's folder is importable), ``args`` a table of fixed keyword arguments;
    searched architecture remedies (``width``, ``depth``, ``dropout``, ``init``) are
    passed to it when it accepts them.

``[data]``
    ``dataset`` one of ``digits``, ``iris``, ``wine``, ``breast_cancer`` (classification),
    ``diabetes`` (regression): bundled with scikit-learn, no network. ``digits`` is fed to
    ``cnn`` models as 1x8x8 images.
    Or ``train`` (a CSV or Parquet file, relative to the config file) with ``target`` (the
    label column), optional ``validation`` (a second file; otherwise a seeded, stratified
    split of ``train``), ``features`` (columns; default all but the target, all numeric),
    ``task`` (``"classification"``/``"regression"``; default: a float target is
    regression, anything else classification) and ``image_shape = [C, H, W]`` (needed by
    ``cnn`` with file data: each row is reshaped to it).
    ``validation_fraction`` (default 0.2) share of ``train`` held out for validation.
    ``standardize`` (default true for PyTorch models, false for scikit-learn) centre and
    scale features with the training split's mean and standard deviation (images: one
    scalar mean and std).

``[space]`` (a table: one key per searched parameter)
    PyTorch models (``mlp``, ``cnn``, ``factory``): the remedy names of
    :data:`tunelens.tune.remedies.REMEDY_NAMES` (``lr``, ``lr_schedule``,
    ``weight_decay``, ``dropout``, ``width``, ``depth`` ...); scikit-learn: the
    estimator's parameter names. Each value is ``{low = ..., high = ..., log = true}``
    (a range; integer for integer remedies or when both bounds are integers; force with
    ``type = "int"`` or ``"float"``), ``[a, b, c]`` or ``{choices = [a, b, c]}`` (a
    categorical choice), or a single value (fixed).

``[[constraints]]`` (repeatable)
    ``name`` (a metric or measurement name as in ``objective.metric``), ``op``
    (``"<="`` or ``">="``), ``bound`` (a number), e.g. ``latency_p99_ms <= 5``.

``[compress]`` (used by ``tunelens compress --config``)
    ``max_drop`` (default 0.01, absolute in metric units), ``methods`` (subset of
    ``prune``, ``unstructured``, ``quantize_dynamic``, ``quantize_static``, ``distill``;
    default all), ``time_budget`` (seconds), ``latency_batch`` (default 1),
    ``constraints`` (a list of ``{name, op, bound}`` tables over ``latency_p50_ms``,
    ``latency_p99_ms``, ``model_bytes``, ``flops`` or the metric).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tunelens.errors import InputError
from tunelens.tune._compress import METHODS
from tunelens.tune._tune import Constraint
from tunelens.tune.spaces import Dist

if TYPE_CHECKING:
    from tunelens.tune._tune import TuneResult

__all__ = [
    "DATASETS",
    "MODEL_KINDS",
    "CompressConfig",
    "DataConfig",
    "Dataset",
    "ModelConfig",
    "ObjectiveConfig",
    "StudyConfig",
    "TuneConfig",
    "call_tune",
    "check_data_spec",
    "load_config",
    "load_dataset",
    "parse_config",
]

#: bundled scikit-learn datasets -> task
DATASETS: dict[str, str] = {
    "digits": "classification",
    "iris": "classification",
    "wine": "classification",
    "breast_cancer": "classification",
    "diabetes": "regression",
}
MODEL_KINDS: tuple[str, ...] = ("mlp", "cnn", "sklearn", "factory")
TORCH_KINDS: tuple[str, ...] = ("mlp", "cnn", "factory")
PRUNERS: tuple[str, ...] = ("asha", "median", "none")
DIRECTIONS: tuple[str, ...] = ("maximize", "minimize")
OPS: tuple[str, ...] = ("<=", ">=")
#: compress()'s methods (one list: the config accepts exactly what compress() does)
COMPRESS_METHODS: tuple[str, ...] = METHODS
INITS: tuple[str, ...] = ("default", "kaiming", "xavier", "orthogonal")
CLASSIFICATION_METRICS: tuple[str, ...] = ("accuracy", "f1", "log_loss")
REGRESSION_METRICS: dict[str, tuple[str, ...]] = {
    "torch": ("mse", "mae", "r2"),
    "sklearn": ("r2", "mae", "mse", "rmse"),
}
MEASUREMENTS: dict[str, tuple[str, ...]] = {
    "torch": ("latency_p50_ms", "latency_p99_ms", "model_bytes", "flops", "peak_memory_bytes"),
    "sklearn": ("latency_p50_ms", "latency_p99_ms", "model_bytes"),
}
HIGHER_IS_BETTER: frozenset[str] = frozenset({"accuracy", "f1", "r2"})

_TOP_KEYS: tuple[str, ...] = (
    "space",
    "study",
    "objective",
    "model",
    "data",
    "constraints",
    "compress",
)
_STUDY_KEYS = ("name", "storage", "n_trials", "timeout", "seed", "pruner", "epochs")
_OBJECTIVE_KEYS = ("metric", "direction", "priority")
_ARCH_KEYS = ("width", "depth", "dropout", "init")
_MODEL_KEYS: dict[str, tuple[str, ...]] = {
    "mlp": ("kind", *_ARCH_KEYS),
    "cnn": ("kind", *_ARCH_KEYS),
    "sklearn": ("kind", "estimator", "params"),
    "factory": ("kind", "factory", "args"),
}
_DATA_KEYS = (
    "dataset",
    "train",
    "validation",
    "target",
    "features",
    "task",
    "image_shape",
    "validation_fraction",
    "standardize",
)
_CONSTRAINT_KEYS = ("name", "op", "bound")
_COMPRESS_KEYS = ("max_drop", "methods", "time_budget", "latency_batch", "constraints")
_RANGE_KEYS = ("low", "high", "log", "type", "choices")


# ---- small typed readers ---------------------------------------------------------------------


def _names(values: Sequence[str]) -> str:
    return ", ".join(str(v) for v in values)


def _type_name(value: Any) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "table",
    }.get(type(value), type(value).__name__)


def _table(doc: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise InputError(where, f"must be a table, got a {_type_name(value)}", f"write [{where}]")
    return value


def _check_keys(table: Mapping[str, Any], accepted: Sequence[str], where: str) -> None:
    for key in table:
        if key not in accepted:
            raise InputError(f"{where}.{key}", "unknown key", f"use one of {_names(accepted)}")


def _str(table: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str | None:
    value = table.get(key, default)
    if value is not None and not isinstance(value, str):
        raise InputError(f"{where}.{key}", f"must be a string, got a {_type_name(value)}", "")
    if isinstance(value, str) and not value:
        raise InputError(f"{where}.{key}", "must not be empty", "")
    return value


def _choice(
    table: Mapping[str, Any], key: str, where: str, accepted: Sequence[str], default: str | None
) -> str | None:
    value = _str(table, key, where, default)
    if value is not None and value not in accepted:
        raise InputError(
            f"{where}.{key}", f"unknown value {value!r}", f"use one of {_names(accepted)}"
        )
    return value


def _int(
    table: Mapping[str, Any], key: str, where: str, default: int | None, minimum: int | None = None
) -> int | None:
    value = table.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where}.{key}", f"must be an integer, got a {_type_name(value)}", "")
    if minimum is not None and value < minimum:
        raise InputError(f"{where}.{key}", f"is {value}", f"use an integer >= {minimum}")
    return value


def _num(
    table: Mapping[str, Any],
    key: str,
    where: str,
    default: float | None,
    *,
    positive: bool = False,
    minimum: float | None = None,
    below: float | None = None,
) -> float | None:
    value = table.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{where}.{key}", f"must be a number, got a {_type_name(value)}", "")
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{where}.{key}", f"is {value}", "use a finite number")
    if positive and value <= 0:
        raise InputError(f"{where}.{key}", f"is {value:g}", "use a number > 0")
    if minimum is not None and value < minimum:
        raise InputError(f"{where}.{key}", f"is {value:g}", f"use a number >= {minimum:g}")
    if below is not None and value >= below:
        raise InputError(f"{where}.{key}", f"is {value:g}", f"use a number < {below:g}")
    return value


def _bool(table: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = table.get(key)
    if value is not None and not isinstance(value, bool):
        raise InputError(f"{where}.{key}", f"must be true or false, got a {_type_name(value)}", "")
    return value


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    """A string or a non-empty array of strings."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise InputError(
            where, f"must be a string or a non-empty array of strings, got {value!r}", ""
        )
    for item in items:
        if not isinstance(item, str) or not item:
            raise InputError(where, f"must hold strings, got {item!r}", "")
    if len(set(items)) != len(items):
        raise InputError(where, f"names a value twice: {items}", "list each once")
    return tuple(items)


# ---- the sections ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyConfig:
    """``[study]``: see the module docstring."""

    name: str
    storage: str | None = None
    n_trials: int = 20
    timeout: float | None = None
    seed: int | None = 0
    pruner: str = "asha"
    epochs: int | None = None


@dataclass(frozen=True)
class ObjectiveConfig:
    """``[objective]``: ``metrics`` empty means the default metric of the model and task."""

    metrics: tuple[str, ...] = ()
    directions: tuple[str, ...] | None = None
    priority: tuple[str, ...] | None = None

    @property
    def metric(self) -> str | tuple[str, ...] | None:
        """What :func:`tunelens.tune.tune` takes as ``metric``."""
        if not self.metrics:
            return None
        return self.metrics[0] if len(self.metrics) == 1 else self.metrics

    @property
    def direction(self) -> str | tuple[str, ...] | None:
        """What :func:`tunelens.tune.tune` takes as ``direction``."""
        if self.directions is None:
            return None
        return self.directions[0] if len(self.directions) == 1 else self.directions


@dataclass(frozen=True)
class ModelConfig:
    """``[model]``: ``spec`` is the estimator class path or the factory's import path."""

    kind: str
    args: Mapping[str, Any] = field(default_factory=dict)
    spec: str | None = None

    @property
    def is_torch(self) -> bool:
        """Whether the model is a PyTorch model (trained by tunelens' loop)."""
        return self.kind in TORCH_KINDS

    @property
    def family(self) -> str:
        """``"torch"`` or ``"sklearn"``: which metric and measurement names apply."""
        return "torch" if self.is_torch else "sklearn"


@dataclass(frozen=True)
class DataConfig:
    """``[data]``: a bundled ``dataset`` or a ``train`` file with a ``target`` column."""

    dataset: str | None = None
    train: Path | None = None
    validation: Path | None = None
    target: str | None = None
    features: tuple[str, ...] | None = None
    task: str | None = None
    image_shape: tuple[int, int, int] | None = None
    validation_fraction: float = 0.2
    standardize: bool | None = None


@dataclass(frozen=True)
class CompressConfig:
    """``[compress]``: arguments of :func:`tunelens.tune.compress`."""

    max_drop: float = 0.01
    methods: tuple[str, ...] | None = None
    time_budget: float | None = None
    latency_batch: int = 1
    constraints: tuple[Constraint, ...] = ()


@dataclass(frozen=True)
class Dataset:
    """Loaded data, split into training and validation parts.

    Attributes:
        X_train, y_train, X_val, y_val: numpy arrays (float32 features and int64 labels or
            float targets for PyTorch models; float64 features for scikit-learn).
        task: ``"classification"`` or ``"regression"``.
        classes: the label values of a classification task (the labels are their indices).
        feature_names: the feature columns.
        image_shape: ``(C, H, W)`` when the features are images.
    """

    X_train: Any
    y_train: Any
    X_val: Any
    y_val: Any
    task: str
    classes: tuple[Any, ...] = ()
    feature_names: tuple[str, ...] = ()
    image_shape: tuple[int, int, int] | None = None

    @property
    def n_features(self) -> int:
        """Features per row (flattened for images)."""
        return int(np.prod(self.X_train.shape[1:]))

    @property
    def n_outputs(self) -> int:
        """Classes of a classification task, 1 for regression."""
        return len(self.classes) if self.task == "classification" else 1

    def as_tuple(self) -> tuple[Any, Any, Any, Any]:
        """``(X_train, y_train, X_val, y_val)``: the ``data=`` of :func:`tunelens.tune.tune`."""
        return self.X_train, self.y_train, self.X_val, self.y_val

    def all_rows(self) -> tuple[Any, Any]:
        """Training and validation rows together, ``(X, y)``."""
        return (
            np.concatenate([self.X_train, self.X_val]),
            np.concatenate([self.y_train, self.y_val]),
        )


@dataclass(frozen=True)
class TuneConfig:
    """A checked config file. Build it with :func:`load_config`.

    Attributes:
        path: the file it came from (relative paths in it are taken from its folder).
        space: ``"auto"`` or the parsed ``[space]`` (name -> :class:`~tunelens.tune.Dist`).
    """

    path: Path
    study: StudyConfig
    objective: ObjectiveConfig
    model: ModelConfig
    data: DataConfig
    space: str | dict[str, Dist] = "auto"
    constraints: tuple[Constraint, ...] = ()
    compress: CompressConfig = field(default_factory=CompressConfig)

    # ---- data ------------------------------------------------------------------------------

    def load_data(self) -> Dataset:
        """Read the data, split it and prepare it for the model kind.

        Raises:
            InputError: a missing file or column, non-numeric features, a metric that does
                not fit the task, image data that does not fit ``image_shape``.
        """
        return _load_data(self)

    # ---- model -----------------------------------------------------------------------------

    def build_model(self, dataset: Dataset) -> Any:
        """The model entry of :func:`tunelens.tune.tune` for this config.

        ``mlp``/``cnn``/``factory``: a factory (a ``functools.partial``) returning a fresh
        ``torch.nn.Module``; ``sklearn``: an unfitted estimator.

        Raises:
            InputError: PyTorch is missing, the factory cannot be imported, the estimator
                refuses its params.
        """
        return _build_model(self, dataset)

    # ---- tune ------------------------------------------------------------------------------

    def to_tune_kwargs(
        self,
        dataset: Dataset,
        *,
        model: Any = None,
        storage: str | Any | None = None,
        study_name: str | None = None,
        n_trials: int | None = None,
        seed_offset: int = 0,
    ) -> dict[str, Any]:
        """Keyword arguments of :func:`tunelens.tune.tune` (``None`` values left out).

        Args:
            dataset: from :meth:`load_data`.
            model: from :meth:`build_model` (built here when ``None``).
            storage: overrides ``study.storage`` (a URL or an Optuna storage object).
            study_name: overrides ``study.name``.
            n_trials: overrides ``study.n_trials``.
            seed_offset: added to ``study.seed`` (each distributed worker samples differently).

        Returns:
            A dict whose ``objective_or_model`` key holds the model entry.
        """
        from tunelens.tune.distributed import open_storage

        storage_value = storage if storage is not None else self.study.storage
        if isinstance(storage_value, str):
            storage_value = open_storage(storage_value)
        seed = None if self.study.seed is None else self.study.seed + seed_offset
        kwargs: dict[str, Any] = {
            "objective_or_model": model if model is not None else self.build_model(dataset),
            "data": dataset.as_tuple(),
            "space": self.space,
            "metric": self.objective.metric,
            "direction": self.objective.direction,
            "priority": self.objective.priority,
            "constraints": self.constraints,
            "n_trials": n_trials if n_trials is not None else self.study.n_trials,
            "timeout": self.study.timeout,
            "storage": storage_value,
            "study_name": study_name or self.study.name,
            "pruner": self.study.pruner,
            "seed": seed,
            "epochs": self.study.epochs,
        }
        return {k: v for k, v in kwargs.items() if v is not None and v != ()}

    def run(
        self,
        *,
        storage: str | None = None,
        study_name: str | None = None,
        n_trials: int | None = None,
        total_trials: int | None = None,
        trial_lock: Callable[[], AbstractContextManager[Any]] | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None,
        seed_offset: int = 0,
    ) -> TuneResult:
        """Load the data, build the model and run :func:`tunelens.tune.tune`.

        Args:
            storage, study_name, n_trials, seed_offset: see :meth:`to_tune_kwargs`.
            total_trials: stop when the study holds this many trials (shared studies).
            trial_lock: see :func:`tunelens.tune.distributed.trial_lock`.
            progress: called after every finished trial (see :func:`tunelens.tune.tune`).

        Returns:
            The :class:`~tunelens.tune.TuneResult`.

        Raises:
            InputError: anything wrong in the config or the data (before any trial runs).
        """
        dataset = self.load_data()
        kwargs = self.to_tune_kwargs(
            dataset,
            storage=storage,
            study_name=study_name,
            n_trials=n_trials,
            seed_offset=seed_offset,
        )
        if total_trials is not None:
            kwargs["total_trials"] = total_trials
        if trial_lock is not None:
            kwargs["trial_lock"] = trial_lock
        if progress is not None:
            kwargs["progress"] = progress
        return call_tune(kwargs)


def call_tune(kwargs: Mapping[str, Any]) -> TuneResult:
    """Call :func:`tunelens.tune.tune` with ``kwargs``; refuse ones it does not take.

    Raises:
        InputError: a config feature (e.g. a list of metrics) that this tunelens' ``tune``
            does not support.
    """
    from tunelens.tune import tune

    accepted = inspect.signature(tune).parameters
    args = dict(kwargs)
    entry = args.pop("objective_or_model")
    for key in args:
        if key not in accepted:
            raise InputError(key, "not supported by this version of tunelens.tune()", "")
    return tune(entry, **args)


# ---- parsing ---------------------------------------------------------------------------------


def load_config(path: str | Path) -> TuneConfig:
    """Read and check a tune config file (TOML).

    Args:
        path: the file.

    Returns:
        The checked :class:`TuneConfig` (data not loaded yet: see :meth:`TuneConfig.load_data`).

    Raises:
        InputError: a missing file, bad TOML, an unknown table or key, a wrong type, an
            unknown remedy, metric, dataset or estimator, an inverted range; each names the
            key and the accepted values.
    """
    path = Path(path)
    return parse_config(read_toml(path), path)


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML document at ``path``.

    Raises:
        InputError: a missing file, unreadable or invalid TOML (naming the file).
    """
    if not path.is_file():
        raise InputError(str(path), "no such config file", "give the path of a .toml file")
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(str(path), f"not valid TOML: {exc}", "fix the syntax there") from None
    except OSError as exc:
        raise InputError(str(path), f"cannot be read: {exc.strerror}", "") from None


def parse_config(doc: Mapping[str, Any], path: str | Path = "tune.toml") -> TuneConfig:
    """Check an already-parsed config (a dict as ``tomllib`` returns it); see :func:`load_config`.

    Raises:
        InputError: as :func:`load_config`.
    """
    path = Path(path)
    base = path.resolve().parent
    for key, value in doc.items():
        if key not in _TOP_KEYS:
            kind = "table" if isinstance(value, dict) else "key"
            raise InputError(key, f"unknown top-level {kind}", f"use one of {_names(_TOP_KEYS)}")
    if "model" not in doc:
        raise InputError(
            "model", "missing table", f"add [model] with kind = one of {_names(MODEL_KINDS)}"
        )
    if "data" not in doc:
        raise InputError("data", "missing table", "add [data] with dataset = ... or train = ...")
    model = _parse_model(_table(doc, "model", "model"), base)
    study = _parse_study(_table(doc, "study", "study"), path, model)
    objective = _parse_objective(_table(doc, "objective", "objective"), model)
    data = _parse_data(_table(doc, "data", "data"), base, model)
    space = _parse_space(doc.get("space", "auto"), model)
    constraints = _parse_constraints(doc.get("constraints", []), "constraints", model, objective)
    compress = _parse_compress(_table(doc, "compress", "compress"), model)
    return TuneConfig(
        path=path,
        study=study,
        objective=objective,
        model=model,
        data=data,
        space=space,
        constraints=constraints,
        compress=compress,
    )


def _parse_study(table: Mapping[str, Any], path: Path, model: ModelConfig) -> StudyConfig:
    _check_keys(table, _STUDY_KEYS, "study")
    name = _str(table, "name", "study", path.stem) or path.stem
    storage = _str(table, "storage", "study")
    if storage is not None:
        from tunelens.tune.distributed import normalize_storage

        storage = normalize_storage(storage, base=path.resolve().parent, field="study.storage")
    epochs = _int(table, "epochs", "study", None, 1)
    if epochs is not None and not model.is_torch:
        raise InputError(
            "study.epochs",
            f"only for PyTorch models, not model.kind = {model.kind!r}",
            f"remove it, or use model.kind = one of {_names(TORCH_KINDS)}",
        )
    return StudyConfig(
        name=name,
        storage=storage,
        n_trials=_int(table, "n_trials", "study", 20, 1) or 20,
        timeout=_num(table, "timeout", "study", None, positive=True),
        seed=_int(table, "seed", "study", 0),
        pruner=_choice(table, "pruner", "study", PRUNERS, "asha") or "asha",
        epochs=epochs,
    )


def _known_names(model: ModelConfig) -> tuple[str, ...]:
    family = model.family
    return (
        *CLASSIFICATION_METRICS,
        *REGRESSION_METRICS[family],
        *MEASUREMENTS[family],
    )


def _parse_objective(table: Mapping[str, Any], model: ModelConfig) -> ObjectiveConfig:
    _check_keys(table, _OBJECTIVE_KEYS, "objective")
    known = _known_names(model)
    metrics: tuple[str, ...] = ()
    if "metric" in table:
        metrics = _str_list(table["metric"], "objective.metric")
        for m in metrics:
            if m not in known:
                raise InputError(
                    "objective.metric", f"unknown metric {m!r}", f"use one of {_names(known)}"
                )
    directions: tuple[str, ...] | None = None
    if "direction" in table:
        raw = table["direction"]
        directions = (raw,) if isinstance(raw, str) else _str_list(raw, "objective.direction")
        for d in directions:
            if d not in DIRECTIONS:
                raise InputError(
                    "objective.direction",
                    f"unknown value {d!r}",
                    f"use one of {_names(DIRECTIONS)}",
                )
        count = len(metrics) or 1
        if len(directions) != count:
            raise InputError(
                "objective.direction",
                f"gives {len(directions)} directions for {count} metric(s)",
                "give one direction per metric",
            )
        for m, d in zip(metrics, directions, strict=False):
            natural = "maximize" if m in HIGHER_IS_BETTER else "minimize"
            better = "higher" if natural == "maximize" else "lower"
            if d != natural:
                raise InputError(
                    "objective.direction",
                    f"{d!r} does not fit {m} (better when {better})",
                    f"use {natural!r} or leave direction out",
                )
    priority: tuple[str, ...] | None = None
    if "priority" in table:
        priority = _str_list(table["priority"], "objective.priority")
        if len(metrics) < 2:
            raise InputError(
                "objective.priority",
                "only used with several metrics",
                'set objective.metric = ["accuracy", "latency_p99_ms"] or drop priority',
            )
        for p in priority:
            if p not in metrics:
                raise InputError(
                    "objective.priority",
                    f"{p!r} is not an objective",
                    f"use names of objective.metric: {_names(metrics)}",
                )
    return ObjectiveConfig(metrics=metrics, directions=directions, priority=priority)


def _parse_model(table: Mapping[str, Any], base: Path) -> ModelConfig:
    kind = table.get("kind")
    if kind is None:
        raise InputError("model.kind", "missing", f"use one of {_names(MODEL_KINDS)}")
    kind = _choice(table, "kind", "model", MODEL_KINDS, None)
    assert kind is not None
    _check_keys(table, _MODEL_KEYS[kind], "model")
    if kind in ("mlp", "cnn"):
        args: dict[str, Any] = {}
        for key in ("width", "depth"):
            value = _int(table, key, "model", None, 1 if key == "width" else 0)
            if value is not None:
                args[key] = value
        dropout = _num(table, "dropout", "model", None, minimum=0.0, below=1.0)
        if dropout is not None:
            args["dropout"] = dropout
        init = _choice(table, "init", "model", INITS, None)
        if init is not None:
            args["init"] = init
        return ModelConfig(kind=kind, args=args)
    if kind == "sklearn":
        spec = _str(table, "estimator", "model")
        if spec is None:
            raise InputError(
                "model.estimator",
                "missing",
                'name a scikit-learn class, e.g. "sklearn.ensemble.HistGradientBoostingClassifier"',
            )
        params = _table(table, "params", "model.params")
        _sklearn_class(spec)  # import and check now, before any data is read
        _make_estimator(spec, params)
        return ModelConfig(kind=kind, args=dict(params), spec=spec)
    spec = _str(table, "factory", "model")
    if spec is None:
        raise InputError("model.factory", "missing", 'give "package.module:function"')
    args = _table(table, "args", "model.args")
    _import_factory(spec, base)
    return ModelConfig(kind=kind, args=dict(args), spec=spec)


def _sklearn_class(spec: str) -> type:
    example = "sklearn.ensemble.HistGradientBoostingClassifier"
    if not spec.startswith("sklearn.") or "." not in spec[len("sklearn.") :]:
        raise InputError(
            "model.estimator",
            f"{spec!r} is not a scikit-learn class path (only sklearn.* classes are loaded)",
            f"give e.g. {example!r}",
        )
    module_name, _, cls_name = spec.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise InputError(
            "model.estimator", f"no module {module_name!r}", f"give e.g. {example!r}"
        ) from None
    cls = getattr(module, cls_name, None)
    if not isinstance(cls, type) or not (hasattr(cls, "fit") and hasattr(cls, "predict")):
        raise InputError(
            "model.estimator",
            f"{module_name} has no estimator class {cls_name!r}",
            f"give e.g. {example!r}",
        )
    return cls


def _make_estimator(spec: str, params: Mapping[str, Any]) -> Any:
    cls = _sklearn_class(spec)
    try:
        names = sorted(cls().get_params())
    except Exception:  # an estimator with required arguments: let the call below tell
        names = []
    for key in params:
        if names and key not in names:
            raise InputError(
                f"model.params.{key}",
                f"not a parameter of {cls.__name__}",
                f"use one of {_names(names)}",
            )
    try:
        return cls(**params)
    except TypeError as exc:
        raise InputError("model.params", f"{cls.__name__} refused them: {exc}", "") from None


def _import_factory(spec: str, base: Path) -> Callable[..., Any]:
    return import_callable(spec, base, "model.factory", '"package.module:function"')


def import_callable(
    spec: str, base: Path, where: str, example: str, *, dotted: bool = False
) -> Callable[..., Any]:
    """The callable ``"module:attribute"`` names (``"module.attribute"`` too when ``dotted``),
    importable from the config's folder ``base``.

    Raises:
        InputError: naming ``where``: a bad spec, a failed import, a missing attribute,
            something not callable.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep and dotted:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise InputError(where, f"is {spec!r}", f"give e.g. {example}")
    if str(base) not in sys.path:  # the config's folder holds the user's code
        sys.path.insert(0, str(base))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise InputError(
            where,
            f"cannot import {module_name!r}: {' '.join(str(exc).split())}",
            f"give e.g. {example}",
        ) from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise InputError(
                where, f"{module_name!r} has no attribute {attr!r}", f"give e.g. {example}"
            )
        target = getattr(target, part)
    if not callable(target):
        raise InputError(where, f"{spec!r} is not callable", "name a class or a function")
    return target  # type: ignore[no-any-return]


def _parse_data(table: Mapping[str, Any], base: Path, model: ModelConfig) -> DataConfig:
    _check_keys(table, _DATA_KEYS, "data")
    dataset = _choice(table, "dataset", "data", tuple(DATASETS), None)
    train = _str(table, "train", "data")
    if (dataset is None) == (train is None):
        raise InputError(
            "data",
            "give either dataset or train"
            if dataset is None
            else "give dataset or train, not both",
            f"dataset = one of {_names(list(DATASETS))}, or train = a CSV/Parquet file with target",
        )
    target = _str(table, "target", "data")
    validation = _str(table, "validation", "data")
    features: tuple[str, ...] | None = None
    if "features" in table:
        features = _str_list(table["features"], "data.features")
    task = _choice(table, "task", "data", ("classification", "regression"), None)
    image_shape: tuple[int, int, int] | None = None
    if "image_shape" in table:
        raw = table["image_shape"]
        if (
            not isinstance(raw, list)
            or len(raw) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in raw)
        ):
            raise InputError("data.image_shape", f"is {raw!r}", "give [C, H, W], e.g. [1, 8, 8]")
        image_shape = (raw[0], raw[1], raw[2])
    if dataset is not None:
        for key in ("target", "validation", "features", "task", "image_shape"):
            if key in table:
                raise InputError(
                    f"data.{key}", "only used with data.train", "remove it, or use train = FILE"
                )
    else:
        if target is None:
            raise InputError("data.target", "missing", "name the label column of data.train")
    train_path = _data_file(train, base, "data.train")
    validation_path = _data_file(validation, base, "data.validation")
    if model.kind == "cnn" and dataset is not None and dataset != "digits":
        raise InputError(
            "data.dataset",
            f"{dataset!r} is not an image dataset; model.kind = 'cnn' needs images",
            "use dataset = 'digits', or model.kind = 'mlp'",
        )
    if model.kind == "cnn" and dataset is None and image_shape is None:
        raise InputError("data.image_shape", "missing: cnn needs images", "give [C, H, W]")
    if image_shape is not None and model.kind != "cnn":
        raise InputError("data.image_shape", "only used with model.kind = 'cnn'", "remove it")
    fraction = _num(table, "validation_fraction", "data", 0.2, positive=True, below=1.0)
    return DataConfig(
        dataset=dataset,
        train=train_path,
        validation=validation_path,
        target=target,
        features=features,
        task=task,
        image_shape=image_shape,
        validation_fraction=0.2 if fraction is None else fraction,
        standardize=_bool(table, "standardize", "data"),
    )


def _data_file(value: str | None, base: Path, where: str) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise InputError(
            where, f"no such file {value!r} (looked for {path})", "give a CSV or Parquet file"
        )
    if path.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise InputError(
            where, f"{value!r} is neither CSV nor Parquet", "use a .csv or .parquet file"
        )
    return path


def _remedies() -> Any:
    from tunelens.tune import remedies

    return remedies


def _parse_space(raw: Any, model: ModelConfig) -> str | dict[str, Dist]:
    if isinstance(raw, str):
        if raw != "auto":
            raise InputError(
                "space", f"unknown value {raw!r}", 'use space = "auto" or a [space] table'
            )
        return "auto"
    if not isinstance(raw, dict):
        raise InputError("space", f'must be "auto" or a table, got a {_type_name(raw)}', "")
    if not raw:
        return "auto"
    defaults: dict[str, Any]
    if model.is_torch:
        rem = _remedies()
        names: tuple[str, ...] = tuple(rem.REMEDY_NAMES)
        what = "remedy"
        defaults = {n: rem.REMEDIES[n].default for n in names}
    else:
        estimator = _make_estimator(model.spec or "", model.args)
        params = estimator.get_params()
        names = tuple(sorted(params))
        what = "parameter of the estimator"
        defaults = dict(params)
    space: dict[str, Dist] = {}
    for name, value in raw.items():
        where = f"space.{name}"
        if name not in names:
            raise InputError(where, f"unknown {what}", f"use one of {_names(names)}")
        if name in model.args:
            raise InputError(
                where,
                f"also fixed in [model] ({name} = {model.args[name]!r})",
                "search it or fix it, not both",
            )
        space[name] = _parse_dist(value, where, defaults[name], model.is_torch)
    return space


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _parse_dist(value: Any, where: str, default: Any, torch_remedy: bool) -> Dist:
    base: Dist | None = default if torch_remedy else None
    if isinstance(value, list) or (isinstance(value, dict) and "choices" in value):
        if isinstance(value, dict):
            _check_keys(value, ("choices",), where)
            value = value["choices"]
            if not isinstance(value, list):
                raise InputError(f"{where}.choices", "must be an array", "write choices = [a, b]")
        if not value:
            raise InputError(where, "no choices", "give at least one value")
        for v in value:
            if not _scalar(v) or isinstance(v, list | dict):
                raise InputError(where, f"choice {v!r} is not a single value", "")
        _check_choices(value, where, base)
        return Dist.choice(*value)
    if isinstance(value, dict):
        _check_keys(value, _RANGE_KEYS, where)
        if "low" not in value or "high" not in value:
            raise InputError(where, "a range needs low and high", "write {low = 1e-4, high = 1e-2}")
        low, high = value["low"], value["high"]
        for key, v in (("low", low), ("high", high)):
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise InputError(f"{where}.{key}", f"must be a finite number, got {v!r}", "")
        log = value.get("log", False)
        if not isinstance(log, bool):
            raise InputError(f"{where}.log", f"must be true or false, got {log!r}", "")
        kind = value.get("type")
        if kind is not None and kind not in ("int", "float"):
            raise InputError(f"{where}.type", f"unknown value {kind!r}", "use one of int, float")
        if base is not None and base.kind == "categorical":
            raise InputError(
                where,
                "is categorical, not a range",
                f"give a list of choices among {_names([str(c) for c in base.choices])}",
            )
        if kind is None:
            if base is not None:
                kind = base.kind
            else:
                both_int = isinstance(low, int) and isinstance(high, int)
                kind = "int" if both_int and not isinstance(default, float) else "float"
        if kind == "int" and not (isinstance(low, int) and isinstance(high, int)):
            raise InputError(
                where,
                f"integer range needs whole numbers, got low={low}, high={high}",
                "e.g. {low = 1, high = 4}",
            )
        if low > high:
            raise InputError(
                where, f"inverted range low={low:g} > high={high:g}", "swap low and high"
            )
        if log and low <= 0:
            raise InputError(
                where, f"log range needs low > 0, got low={low:g}", "use low > 0 or log = false"
            )
        dist = (
            Dist.integer(int(low), int(high), log=log)
            if kind == "int"
            else Dist.real(float(low), float(high), log=log)
        )
        return dist
    if _scalar(value):
        _check_choices([value], where, base)
        return Dist.choice(value)
    raise InputError(
        where,
        f"must be a range table, a list of choices or a value, got a {_type_name(value)}",
        "write {low = 1e-4, high = 1e-2, log = true} or [a, b, c]",
    )


def _check_choices(values: list[Any], where: str, base: Dist | None) -> None:
    """String-valued remedies (``lr_schedule``, ``init``) accept only their own choices."""
    if base is None or base.kind != "categorical":
        return
    known = list(base.choices)
    if not all(isinstance(c, str) for c in known):
        return
    for v in values:
        if v not in known:
            raise InputError(
                where, f"unknown choice {v!r}", f"use any of {_names([str(c) for c in known])}"
            )


def _parse_constraints(
    raw: Any, where: str, model: ModelConfig, objective: ObjectiveConfig | None
) -> tuple[Constraint, ...]:
    return parse_constraint_tables(raw, where, _known_names(model))


def parse_constraint_tables(raw: Any, where: str, known: Sequence[str]) -> tuple[Constraint, ...]:
    """``[[constraints]]`` tables (``name``, ``op``, ``bound``) as `Constraint`s.

    Raises:
        InputError: naming ``<where>[i].<key>`` and the accepted values.
    """
    if not isinstance(raw, list):
        raise InputError(
            where, f"must be an array of tables, got a {_type_name(raw)}", "write [[constraints]]"
        )
    out: list[Constraint] = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise InputError(
                at, f"must be a table, got a {_type_name(item)}", "give name, op, bound"
            )
        _check_keys(item, _CONSTRAINT_KEYS, at)
        for key in _CONSTRAINT_KEYS:
            if key not in item:
                raise InputError(f"{at}.{key}", "missing", "give name, op and bound")
        name = _str(item, "name", at)
        if name not in known:
            raise InputError(
                f"{at}.name", f"unknown measurement {name!r}", f"use one of {_names(known)}"
            )
        op = _choice(item, "op", at, OPS, None)
        bound = _num(item, "bound", at, None)
        assert name is not None and op is not None and bound is not None
        out.append(Constraint(name, op, bound))
    return tuple(out)


def _parse_compress(table: Mapping[str, Any], model: ModelConfig) -> CompressConfig:
    _check_keys(table, _COMPRESS_KEYS, "compress")
    methods: tuple[str, ...] | None = None
    if "methods" in table:
        methods = _str_list(table["methods"], "compress.methods")
        for m in methods:
            if m not in COMPRESS_METHODS:
                raise InputError(
                    "compress.methods",
                    f"unknown method {m!r}",
                    f"use any of {_names(COMPRESS_METHODS)}",
                )
    max_drop = _num(table, "max_drop", "compress", 0.01, minimum=0.0)
    return CompressConfig(
        max_drop=0.01 if max_drop is None else max_drop,
        methods=methods,
        time_budget=_num(table, "time_budget", "compress", None, positive=True),
        latency_batch=_int(table, "latency_batch", "compress", 1, 1) or 1,
        constraints=_parse_constraints(
            table.get("constraints", []), "compress.constraints", model, None
        ),
    )


# ---- data loading ----------------------------------------------------------------------------


def _bundled(name: str) -> tuple[Any, Any, tuple[str, ...]]:
    from sklearn import datasets

    loader = getattr(datasets, f"load_{name}")
    bunch = loader()
    names = tuple(str(n) for n in getattr(bunch, "feature_names", ())) or tuple(
        f"x{i}" for i in range(bunch.data.shape[1])
    )
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target), names


def _read_table(path: Path) -> Any:
    import pandas as pd

    try:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except Exception as exc:
        raise InputError(str(path), f"cannot be read: {' '.join(str(exc).split())}", "") from None


def _frame_xy(frame: Any, cfg: DataConfig, where: str) -> tuple[Any, Any, tuple[str, ...]]:
    import pandas as pd

    columns = [str(c) for c in frame.columns]
    target = cfg.target
    assert target is not None
    if target not in columns:
        raise InputError(
            "data.target", f"no column {target!r} in {where}", f"columns: {_names(columns)}"
        )
    features = (
        list(cfg.features) if cfg.features is not None else [c for c in columns if c != target]
    )
    for name in features:
        if name not in columns:
            raise InputError(
                "data.features", f"no column {name!r} in {where}", f"columns: {_names(columns)}"
            )
        column = frame[name]
        if not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
            raise InputError(
                "data.features",
                f"column {name!r} is not numeric ({column.dtype})",
                "encode it as numbers, or leave it out with data.features = [...]",
            )
    if not features:
        raise InputError("data.features", "no feature columns", "the file holds only the target")
    X = frame[features].to_numpy(dtype=np.float64)
    return X, frame[target].to_numpy(), tuple(features)


def _detect_task(y: Any, cfg: DataConfig) -> str:
    if cfg.task is not None:
        return cfg.task
    if cfg.dataset is not None:
        return DATASETS[cfg.dataset]
    return "regression" if np.asarray(y).dtype.kind == "f" else "classification"


def _check_task_names(config: TuneConfig, task: str) -> None:
    family = config.model.family
    allowed = (
        CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS[family]
    ) + MEASUREMENTS[family]
    for m in config.objective.metrics:
        if m not in allowed:
            raise InputError(
                "objective.metric",
                f"{m!r} does not fit a {task} task",
                f"use one of {_names(allowed)}",
            )
    for i, c in enumerate(config.constraints):
        if c.name not in allowed:
            raise InputError(
                f"constraints[{i}].name",
                f"{c.name!r} does not fit a {task} task",
                f"use one of {_names(allowed)}",
            )


def _load_data(config: TuneConfig) -> Dataset:
    from sklearn.model_selection import train_test_split

    cfg = config.data
    seed = 0 if config.study.seed is None else config.study.seed
    image_shape = cfg.image_shape
    if cfg.dataset is not None:
        X, y, names = _bundled(cfg.dataset)
        if cfg.dataset == "digits" and config.model.kind == "cnn":
            image_shape = (1, 8, 8)
        X_val = y_val = None
    else:
        assert cfg.train is not None
        X, y, names = _frame_xy(_read_table(cfg.train), cfg, "data.train")
        X_val = y_val = None
        if cfg.validation is not None:
            X_val, y_val, _ = _frame_xy(_read_table(cfg.validation), cfg, "data.validation")
    task = _detect_task(y, cfg)
    _check_task_names(config, task)
    classes: tuple[Any, ...] = ()
    if task == "classification":
        labels = y if y_val is None else np.concatenate([y, y_val])
        uniq = np.unique(np.asarray(labels).astype(str) if labels.dtype.kind == "O" else labels)
        if len(uniq) < 2:
            raise InputError(
                "data.target", f"holds {len(uniq)} class", "a classifier needs 2 or more"
            )
        classes = tuple(v.item() if hasattr(v, "item") else v for v in uniq)
        y = np.searchsorted(uniq, np.asarray(y).astype(str) if y.dtype.kind == "O" else y)
        if y_val is not None:
            y_val = np.searchsorted(
                uniq, np.asarray(y_val).astype(str) if y_val.dtype.kind == "O" else y_val
            )
    else:
        try:
            y = np.asarray(y, dtype=np.float64)
            y_val = None if y_val is None else np.asarray(y_val, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(
                "data.target", "is not numeric", "a regression target must be numbers"
            ) from None
    if X_val is None:
        stratify = y if task == "classification" else None
        try:
            X_tr, X_va, y_tr, y_va = train_test_split(
                X, y, test_size=cfg.validation_fraction, random_state=seed, stratify=stratify
            )
        except ValueError:  # a class too small to stratify
            X_tr, X_va, y_tr, y_va = train_test_split(
                X, y, test_size=cfg.validation_fraction, random_state=seed
            )
    else:
        X_tr, y_tr, X_va, y_va = X, y, X_val, y_val
    torch_model = config.model.is_torch
    if torch_model and (np.isnan(X_tr).any() or np.isnan(X_va).any()):
        raise InputError("data", "features hold missing values (NaN)", "fill them in first")
    standardize = cfg.standardize if cfg.standardize is not None else torch_model
    if standardize:
        mean: Any
        std: Any
        if image_shape is not None:
            mean, std = float(X_tr.mean()), float(X_tr.std()) or 1.0
        else:
            mean, std = X_tr.mean(axis=0), X_tr.std(axis=0)
            std = np.where(std > 0, std, 1.0)
        X_tr, X_va = (X_tr - mean) / std, (X_va - mean) / std
    if image_shape is not None:
        size = int(np.prod(image_shape))
        if X_tr.shape[1] != size:
            raise InputError(
                "data.image_shape",
                f"{list(image_shape)} holds {size} values but rows have {X_tr.shape[1]} features",
                "give the shape of one image, [C, H, W]",
            )
        X_tr = X_tr.reshape(-1, *image_shape)
        X_va = X_va.reshape(-1, *image_shape)
    if torch_model:
        X_tr, X_va = X_tr.astype(np.float32), X_va.astype(np.float32)
        if task == "classification":
            y_tr, y_va = y_tr.astype(np.int64), y_va.astype(np.int64)
        else:
            y_tr, y_va = y_tr.astype(np.float32), y_va.astype(np.float32)
    return Dataset(
        X_train=X_tr,
        y_train=y_tr,
        X_val=X_va,
        y_val=y_va,
        task=task,
        classes=classes,
        feature_names=names,
        image_shape=image_shape,
    )


# ---- model building --------------------------------------------------------------------------


def _build_model(config: TuneConfig, dataset: Dataset) -> Any:
    model = config.model
    if model.kind == "sklearn":
        from sklearn.base import is_classifier

        estimator = _make_estimator(model.spec or "", model.args)
        if is_classifier(estimator) != (dataset.task == "classification"):
            want = "a classifier" if dataset.task == "classification" else "a regressor"
            raise InputError(
                "model.estimator",
                f"{type(estimator).__name__} does not fit a {dataset.task} task",
                f"use {want}",
            )
        return estimator
    try:
        import torch  # noqa: F401
    except ImportError:
        raise InputError(
            "model.kind", f"{model.kind!r} needs PyTorch", "pip install 'tunelens[torch]'"
        ) from None
    if model.kind == "factory":
        fn = _import_factory(model.spec or "", config.path.resolve().parent)
        return functools.partial(fn, **model.args)
    from tunelens.tune import models

    if model.kind == "mlp":
        return functools.partial(models.MLP, dataset.n_features, dataset.n_outputs, **model.args)
    shape = dataset.image_shape
    assert shape is not None
    return functools.partial(
        models.SmallCNN, shape[0], dataset.n_outputs, image_size=shape[1], **model.args
    )


def load_dataset(
    data: str,
    *,
    target: str | None = None,
    image: bool = False,
    seed: int = 0,
    standardize: bool = False,
    validation_fraction: float = 0.2,
) -> Dataset:
    """Data for ``tunelens compress --model``: a bundled dataset name or a table file.

    Features are passed as they are (no standardisation unless asked), because a trained
    model expects its own preprocessing; ``image=True`` reshapes ``digits`` to 1x8x8.

    Args:
        data: ``digits``, ``iris``, ``wine``, ``breast_cancer``, ``diabetes`` or a CSV/Parquet
            path (relative to the working directory).
        target: the label column of a file.
        image: the model takes images (N, C, H, W).
        seed: seed of the validation split.
        standardize: centre and scale the features.
        validation_fraction: share of the rows held out.

    Returns:
        The :class:`Dataset`.

    Raises:
        InputError: naming ``--data`` or ``--target``.
    """
    table: dict[str, Any] = {"standardize": standardize, "validation_fraction": validation_fraction}
    check_data_spec(data)
    if data in DATASETS:
        table["dataset"] = data
    else:
        table["train"] = str(Path(data).resolve())
        table["target"] = target
        if target is None:
            raise InputError("--target", "missing", f"name the label column of {data}")
    doc = {"study": {"seed": seed}, "model": {"kind": "cnn" if image else "mlp"}, "data": table}
    flags = {"data.train": "--data", "data.dataset": "--data", "data.target": "--target"}
    try:
        return parse_config(doc, Path.cwd() / "compress.toml").load_data()
    except InputError as exc:
        raise InputError(flags.get(exc.field, exc.field), exc.problem, exc.fix) from None


def check_data_spec(data: str) -> None:
    """Raise unless ``data`` is a bundled dataset name or an existing file.

    Raises:
        InputError: naming ``--data`` and the accepted values.
    """
    if data not in DATASETS and not Path(data).is_file():
        raise InputError(
            "--data",
            f"{data!r} is neither a bundled dataset nor a file",
            f"use one of {_names(list(DATASETS))}, or a CSV/Parquet path",
        )
