"""tunelens: keep machine-learning models healthy after they are trained.

Public names are imported lazily, so ``import tunelens`` stays fast and pulls in
neither torch, plotly nor fastapi.

Example:
    >>> import tunelens
    >>> tunelens.__version__
    '0.1.0'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "Finding": "tunelens.findings",
    "InputError": "tunelens.errors",
    "Loop": "tunelens.loop",
    "Monitor": "tunelens.monitor",
    "ModelRecord": "tunelens.store",
    "Store": "tunelens.store",
    "DuckDBStore": "tunelens.store",
    "open_store": "tunelens.store",
    "profile": "tunelens.diagnose.runtime",
    "watch": "tunelens.diagnose.training",
    "sensitivity": "tunelens.diagnose.sensitivity",
}

__all__ = [
    "DuckDBStore",
    "Finding",
    "InputError",
    "Loop",
    "ModelRecord",
    "Monitor",
    "Store",
    "__version__",
    "open_store",
    "profile",
    "sensitivity",
    "watch",
]

if TYPE_CHECKING:
    from tunelens.diagnose.runtime import profile
    from tunelens.diagnose.sensitivity import sensitivity
    from tunelens.diagnose.training import watch
    from tunelens.errors import InputError
    from tunelens.findings import Finding
    from tunelens.loop import Loop
    from tunelens.monitor import Monitor
    from tunelens.store import DuckDBStore, ModelRecord, Store, open_store


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tunelens' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
