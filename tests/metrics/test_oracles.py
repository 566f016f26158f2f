"""Every metric of tunelens.metrics against its scikit-learn oracle (registry-driven)."""

from __future__ import annotations

import doctest
import importlib
import zlib

import numpy as np
import pytest

from tunelens.testing.metrics import (
    METRIC_CASES,
    MetricCase,
    check_case,
    make_data,
    public_metric_functions,
    registered_names,
)

SETTINGS = [
    (task, weights, strings)
    for task in ("binary", "multiclass", "regression")
    for weights in (None, "int", "float")
    for strings in (False, True)
    if not (task == "regression" and strings)
]


def _applicable(case: MetricCase) -> list[tuple[str, str | None, bool]]:
    return [
        s
        for s in SETTINGS
        if s[0] in case.tasks
        and (s[1] is None or case.weighted)
        and (not s[2] or case.string_labels)
    ]


PARAMS = [
    pytest.param(
        case, setting, id=f"{case.id}-{setting[0]}-w{setting[1]}-{'str' if setting[2] else 'int'}"
    )
    for case in METRIC_CASES
    for setting in _applicable(case)
]


# Values only: some cases are undefined on purpose (a class absent from y_true), and both
# libraries warn there; tests/metrics/test_sklearn_defaults.py checks the warnings.
@pytest.mark.filterwarnings("ignore::tunelens.metrics.UndefinedMetricWarning")
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
@pytest.mark.filterwarnings("ignore:No positive class found in y_true")
@pytest.mark.parametrize(("case", "setting"), PARAMS)
def test_metric_equals_oracle(case: MetricCase, setting: tuple[str, str | None, bool]) -> None:
    task, weights, strings = setting
    seed = zlib.crc32(f"{case.id}-{setting}".encode())
    rng = np.random.default_rng(seed)
    for trial in range(3):
        data = make_data(
            rng,
            task,  # type: ignore[arg-type]
            n=int(rng.integers(30, 250)),
            n_classes=3 + trial,
            weights=weights,  # type: ignore[arg-type]
            string_labels=strings,
        )
        check_case(case, data)


def test_every_public_metric_is_registered() -> None:
    missing = public_metric_functions() - registered_names()
    assert not missing, f"public metrics without an oracle in the registry: {sorted(missing)}"


def test_every_registered_name_is_public() -> None:
    import tunelens.metrics as tm

    assert registered_names() <= set(tm.__all__)


@pytest.mark.parametrize(
    "module",
    ["_api", "_classification", "_probabilistic", "_ranking", "_regression", "_sketch"],
)
def test_docstring_examples(module: str) -> None:
    mod = importlib.import_module(f"tunelens.metrics.{module}")
    result = doctest.testmod(mod)
    assert result.failed == 0
    assert result.attempted > 0
