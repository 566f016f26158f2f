"""Hyper-parameter search and compression under measured constraints, on top of Optuna.

:func:`tune` takes an objective ``f(trial)``, a scikit-learn estimator or a PyTorch model
(or factory) with data; it searches the remedies of :mod:`tunelens.tune.remedies`, measures
constraints (latency, size, FLOPs, memory, a metric floor) on every trial, marks infeasible
trials through Optuna's constraint mechanism and recommends the best feasible trial (from
the Pareto front, by stated priority, when there are several objectives), or, when none is
feasible, the closest one with what blocked it. :func:`compress` prunes, quantises and
distils a trained PyTorch model and keeps the fastest candidate within the accuracy bar.

:func:`compare` checks a challenger against the champion on the same rows with a paired
test and :func:`decide` applies the promotion policy (the closed loop's check).

PyTorch is optional: ``compress``, ``MLP``, ``SmallCNN`` and ``torch_task`` load it only
when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunelens.tune._tune import (
    BUILTIN_MEASUREMENTS,
    PRIORITY_TOLERANCE,
    SCHEMA,
    Constraint,
    TuneResult,
    measure,
    tune,
)
from tunelens.tune.remedies import REMEDIES, REMEDY_NAMES, Remedy, auto_space, describe
from tunelens.tune.spaces import Dist, default_space, sklearn_auto_space, supported_estimators

if TYPE_CHECKING:
    from tunelens.tune._compress import METHODS, CompressResult, compress, load_compressed
    from tunelens.tune.champion import Comparison, Decision, compare, decide
    from tunelens.tune.models import MLP, SmallCNN
    from tunelens.tune.torch_train import TorchTask, torch_task

__all__ = [
    "BUILTIN_MEASUREMENTS",
    "METHODS",
    "MLP",
    "PRIORITY_TOLERANCE",
    "REMEDIES",
    "REMEDY_NAMES",
    "SCHEMA",
    "Comparison",
    "CompressResult",
    "Constraint",
    "Decision",
    "Dist",
    "Remedy",
    "SmallCNN",
    "TorchClassifier",
    "TorchTask",
    "TuneResult",
    "auto_space",
    "compare",
    "compress",
    "decide",
    "default_space",
    "describe",
    "load_compressed",
    "measure",
    "sklearn_auto_space",
    "supported_estimators",
    "torch_task",
    "tune",
]

_LAZY = {
    "compare": "tunelens.tune.champion",
    "decide": "tunelens.tune.champion",
    "Comparison": "tunelens.tune.champion",
    "Decision": "tunelens.tune.champion",
    "compress": "tunelens.tune._compress",
    "CompressResult": "tunelens.tune._compress",
    "load_compressed": "tunelens.tune._compress",
    "METHODS": "tunelens.tune._compress",
    "MLP": "tunelens.tune.models",
    "SmallCNN": "tunelens.tune.models",
    "TorchClassifier": "tunelens.tune.predictor",
    "torch_task": "tunelens.tune.torch_train",
    "TorchTask": "tunelens.tune.torch_train",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tunelens.tune' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
