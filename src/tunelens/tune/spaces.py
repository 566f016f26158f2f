"""Search spaces: a small :class:`Dist` description and default spaces for common estimators.

A space is a ``dict[str, Dist]`` mapping an estimator parameter name to the distribution
Optuna samples it from. Default spaces are assembled from named building blocks so they
can be reused and overridden piecewise::

    space = {**default_space(RandomForestClassifier()), "n_estimators": Dist.integer(10, 50)}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna

from tunelens.errors import InputError

__all__ = [
    "Dist",
    "default_space",
    "sklearn_auto_space",
    "supported_estimators",
    "validate_space",
]

Choice = None | bool | int | float | str
Kind = Literal["float", "int", "categorical"]
_KINDS: tuple[str, ...] = ("float", "int", "categorical")


@dataclass(frozen=True)
class Dist:
    """One searchable parameter: ``float``/``int`` range (optionally log) or categorical choices.

    Prefer the constructors :meth:`Dist.real`, :meth:`Dist.integer`, :meth:`Dist.choice`.
    """

    kind: Kind
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Choice, ...] = field(default_factory=tuple)

    @classmethod
    def real(cls, low: float, high: float, *, log: bool = False) -> Dist:
        return cls("float", low, high, log)

    @classmethod
    def integer(cls, low: int, high: int, *, log: bool = False) -> Dist:
        return cls("int", low, high, log)

    @classmethod
    def choice(cls, *choices: Choice) -> Dist:
        return cls("categorical", choices=tuple(choices))

    def validate(self, name: str) -> None:
        """Raise :class:`InputError` naming ``space[name]`` when the description is unusable."""
        where = f"space[{name!r}]"
        if self.kind not in _KINDS:
            raise InputError(where, f"unknown kind {self.kind!r}", f"use one of {list(_KINDS)}")
        if self.kind == "categorical":
            if not self.choices:
                raise InputError(where, "categorical with no choices", "give at least one choice")
            return
        if self.low is None or self.high is None:
            raise InputError(where, "range needs low and high", "set both low and high")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise InputError(where, "range bounds must be finite", "use finite low and high")
        if self.low > self.high:
            raise InputError(
                where,
                f"inverted range: low={self.low} > high={self.high}",
                "swap low and high so that low <= high",
            )
        if self.log and self.low <= 0:
            raise InputError(where, f"log range needs low > 0, got {self.low}", "use low > 0")

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        """Sample this parameter through Optuna's ``suggest_*`` API."""
        if self.kind == "categorical":
            return trial.suggest_categorical(name, list(self.choices))
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high), log=self.log)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "categorical":
            return {"kind": self.kind, "choices": list(self.choices)}
        return {"kind": self.kind, "low": self.low, "high": self.high, "log": self.log}


# ---- building blocks -------------------------------------------------------------------------

#: inverse regularisation strength (LogisticRegression, SVC)
INVERSE_REGULARIZATION = Dist.real(1e-3, 1e3, log=True)
#: regularisation strength (Ridge, Lasso)
REGULARIZATION_ALPHA = Dist.real(1e-4, 1e3, log=True)
#: RBF kernel width (SVC)
KERNEL_GAMMA = Dist.real(1e-4, 1e1, log=True)
#: number of trees in a forest
N_TREES = Dist.integer(20, 300, log=True)
#: tree depth, ``None`` meaning unlimited
TREE_DEPTH = Dist.choice(None, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20)
#: leaf size
MIN_SAMPLES_LEAF = Dist.integer(1, 20, log=True)
#: features considered per split (1.0 = all)
MAX_FEATURES = Dist.choice("sqrt", "log2", 1.0)
#: boosting step size
LEARNING_RATE = Dist.real(0.01, 0.3, log=True)
#: boosting tree depth
BOOSTING_DEPTH = Dist.integer(2, 8)
#: leaves per boosting tree
MAX_LEAF_NODES = Dist.integer(8, 128, log=True)
#: L2 penalty on leaf values (HistGradientBoosting)
L2_LEAF = Dist.real(1e-6, 10.0, log=True)
#: row subsampling (GradientBoosting)
SUBSAMPLE = Dist.real(0.5, 1.0)

FOREST: dict[str, Dist] = {
    "n_estimators": N_TREES,
    "max_depth": TREE_DEPTH,
    "min_samples_leaf": MIN_SAMPLES_LEAF,
    "max_features": MAX_FEATURES,
}
GRADIENT_BOOSTING: dict[str, Dist] = {
    "learning_rate": LEARNING_RATE,
    "max_depth": BOOSTING_DEPTH,
    "min_samples_leaf": MIN_SAMPLES_LEAF,
    "subsample": SUBSAMPLE,
}
HIST_GRADIENT_BOOSTING: dict[str, Dist] = {
    "learning_rate": LEARNING_RATE,
    "max_leaf_nodes": MAX_LEAF_NODES,
    "min_samples_leaf": MIN_SAMPLES_LEAF,
    "l2_regularization": L2_LEAF,
}

_DEFAULTS: dict[str, dict[str, Dist]] = {
    "LogisticRegression": {"C": INVERSE_REGULARIZATION},
    "RandomForestClassifier": FOREST,
    "RandomForestRegressor": FOREST,
    "ExtraTreesClassifier": FOREST,
    "ExtraTreesRegressor": FOREST,
    "GradientBoostingClassifier": GRADIENT_BOOSTING,
    "GradientBoostingRegressor": GRADIENT_BOOSTING,
    "HistGradientBoostingClassifier": HIST_GRADIENT_BOOSTING,
    "HistGradientBoostingRegressor": HIST_GRADIENT_BOOSTING,
    "Ridge": {"alpha": REGULARIZATION_ALPHA},
    "RidgeClassifier": {"alpha": REGULARIZATION_ALPHA},
    "Lasso": {"alpha": REGULARIZATION_ALPHA},
    "SVC": {"C": INVERSE_REGULARIZATION, "gamma": KERNEL_GAMMA},
    "SVR": {"C": INVERSE_REGULARIZATION, "gamma": KERNEL_GAMMA},
}


def supported_estimators() -> list[str]:
    """Class names that have a default space."""
    return sorted(_DEFAULTS)


def default_space(estimator: Any) -> dict[str, Dist]:
    """The default space for ``estimator`` (an instance or class), looked up by class name.

    Raises:
        InputError: no default space exists for this estimator; pass ``space=`` explicitly.
    """
    cls = estimator if isinstance(estimator, type) else type(estimator)
    for klass in cls.__mro__:
        if klass.__name__ in _DEFAULTS:
            return dict(_DEFAULTS[klass.__name__])
    raise InputError(
        "space",
        f"no default search space for {cls.__name__}",
        f"pass space={{name: Dist...}} or use one of {supported_estimators()}",
    )


def validate_space(
    space: Mapping[str, Any], params: Sequence[str] | None = None
) -> dict[str, Dist]:
    """Check a user-given space; ``params`` (the estimator's parameter names) if known."""
    if not isinstance(space, Mapping) or not space:
        raise InputError("space", "must be 'auto' or a non-empty dict of name -> Dist", "")
    out: dict[str, Dist] = {}
    for name, dist in space.items():
        if not isinstance(dist, Dist):
            raise InputError(
                f"space[{name!r}]",
                f"expected a Dist, got {type(dist).__name__}",
                "use Dist.real(low, high), Dist.integer(low, high) or Dist.choice(...)",
            )
        dist.validate(str(name))
        if params is not None and name not in params:
            raise InputError(
                f"space[{name!r}]",
                "not a parameter of the estimator",
                f"use one of {sorted(params)}",
            )
        out[str(name)] = dist
    return out


def _kinds(findings: Sequence[Any]) -> set[str]:
    out = set()
    for f in findings:
        kind = f.get("kind") if isinstance(f, Mapping) else getattr(f, "kind", None)
        if isinstance(kind, str):
            out.add(kind)
    return out


#: stronger regularisation for an estimator that overfits: name -> (parameter, Dist, why)
_OVERFIT: dict[str, dict[str, tuple[Dist, str]]] = {
    "forest": {
        "min_samples_leaf": (Dist.integer(5, 50, log=True), "larger leaves (5-50)"),
        "max_depth": (Dist.choice(3, 4, 5, 6, 8, 10), "shallower trees (3-10)"),
    },
    "gradient_boosting": {
        "learning_rate": (Dist.real(0.005, 0.1, log=True), "a smaller step (0.005-0.1)"),
        "subsample": (Dist.real(0.4, 0.8), "row subsampling (0.4-0.8)"),
        "min_samples_leaf": (Dist.integer(5, 50, log=True), "larger leaves (5-50)"),
    },
    "hist_gradient_boosting": {
        "learning_rate": (Dist.real(0.005, 0.1, log=True), "a smaller step (0.005-0.1)"),
        "l2_regularization": (Dist.real(1e-2, 100.0, log=True), "a stronger L2 penalty"),
        "min_samples_leaf": (Dist.integer(10, 100, log=True), "larger leaves (10-100)"),
    },
    "linear": {
        "C": (Dist.real(1e-4, 1.0, log=True), "a stronger penalty (C 1e-4-1)"),
        "alpha": (Dist.real(1e-2, 1e3, log=True), "a stronger penalty (alpha 1e-2-1e3)"),
    },
}


def _family(space: Mapping[str, Dist], name: str) -> str | None:
    if "HistGradientBoosting" in name:
        return "hist_gradient_boosting"
    if "GradientBoosting" in name:
        return "gradient_boosting"
    if "Forest" in name or "ExtraTrees" in name:
        return "forest"
    if "C" in space or "alpha" in space:
        return "linear"
    return None


def sklearn_auto_space(
    estimator: Any, findings: Sequence[Any] = ()
) -> tuple[dict[str, Dist], list[str]]:
    """The default space of ``estimator`` adjusted by ``findings``, and why, one sentence each.

    An ``overfitting`` finding moves the ranges towards stronger regularisation (larger
    leaves and shallower trees for forests; a smaller step, subsampling or an L2 penalty for
    boosting; a stronger penalty for linear models). Other kinds do not apply to
    scikit-learn estimators and are said to be ignored. A ``Pipeline`` gets the space of
    its last step, its names prefixed ``<step>__`` as the pipeline's parameters are.
    """
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list) and steps and hasattr(estimator, "_final_estimator"):
        # a Pipeline: its last step's space, addressed through the pipeline's parameters
        step, final = steps[-1]
        inner, inner_why = sklearn_auto_space(final, findings)
        why = [f"pipeline: the space of its last step {step!r}", *inner_why]
        return {f"{step}__{k}": v for k, v in inner.items()}, why
    space = default_space(estimator)
    name = type(estimator).__name__
    why = [f"default space for {name}: {', '.join(space)}"]
    kinds = _kinds(findings)
    if "overfitting" in kinds:
        fam = _family(space, name)
        changed = []
        for param, (dist, what) in _OVERFIT.get(fam or "", {}).items():
            if (param in space or fam == "gradient_boosting") and param in estimator.get_params():
                space[param] = dist
                changed.append(what)
        if changed:
            why.append("overfitting finding: " + ", ".join(changed))
        else:
            why.append(f"overfitting finding: no regularisation range known for {name}")
    ignored = sorted(kinds - {"overfitting"})
    if ignored:
        why.append(f"findings {ignored} do not change a scikit-learn space; ignored")
    return space, why
