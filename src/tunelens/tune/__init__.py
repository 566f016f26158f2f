"""Hyper-parameter search under measured constraints, on top of Optuna.

:func:`tune` takes either an objective ``f(trial) -> float`` or a scikit-learn estimator
with data, measures constraints (latency, size, a metric floor) on every trial, marks
infeasible trials through Optuna's constraint mechanism, and recommends the best feasible
trial, or, when none is feasible, the closest one with what blocked it.
"""

from tunelens.tune._tune import BUILTIN_MEASUREMENTS, Constraint, TuneResult, measure, tune
from tunelens.tune.spaces import Dist, default_space, supported_estimators

__all__ = [
    "BUILTIN_MEASUREMENTS",
    "Constraint",
    "Dist",
    "TuneResult",
    "default_space",
    "measure",
    "supported_estimators",
    "tune",
]
