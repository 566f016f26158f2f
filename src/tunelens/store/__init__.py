"""Where tunelens keeps models, predictions, labels and window states.

`open_store` turns a path or URL into a `Store`; `DuckDBStore` is the embedded default
(one file). The canonical arrow layouts are described in `tunelens.store._base`.

Example:
    >>> import tempfile, os
    >>> from tunelens.store import ModelRecord, open_store
    >>> path = os.path.join(tempfile.mkdtemp(), "t.duckdb")
    >>> with open_store(path) as store:
    ...     store.put_model(ModelRecord("churn", "binary", classes=(0, 1))).task
    'binary'
"""

from __future__ import annotations

import os

from tunelens.errors import InputError
from tunelens.store._base import (
    FEATURE_PREFIX,
    AlertEvent,
    FeatureType,
    ModelRecord,
    Store,
    Task,
    WindowState,
)
from tunelens.store.duckdb import DuckDBStore
from tunelens.store.versions import VersionEvent, VersionInfo, VersionRegistry

__all__ = [
    "FEATURE_PREFIX",
    "AlertEvent",
    "DuckDBStore",
    "FeatureType",
    "ModelRecord",
    "Store",
    "Task",
    "VersionEvent",
    "VersionInfo",
    "VersionRegistry",
    "WindowState",
    "open_store",
]

#: Environment variable naming the store when none is given.
STORE_ENV = "TUNELENS_STORE"
#: The store used when neither an argument nor ``TUNELENS_STORE`` names one.
DEFAULT_STORE = "tunelens.duckdb"


def open_store(target: str | os.PathLike[str] | Store | None = None) -> Store:
    """Open the store a path, URL or object names.

    Args:
        target: a `Store` (returned as is); a file path or ``duckdb:///path`` (a
            `DuckDBStore`); ``postgresql://...`` (a ``PostgresStore``, with the
            ``server`` extra installed); or None for
            ``$TUNELENS_STORE``, else ``tunelens.duckdb`` in the working directory.

    Returns:
        The open store; close it (or use it as a context manager) when done.

    Raises:
        InputError: an unknown URL scheme or a file that cannot be opened.
        StoreLockedError: another process is writing the DuckDB file.

    Example:
        >>> import tempfile, os
        >>> store = open_store("duckdb://" + os.path.join(tempfile.mkdtemp(), "s.duckdb"))
        >>> store.url.startswith("duckdb:///")
        True
        >>> store.close()
    """
    if target is None:
        target = os.environ.get(STORE_ENV) or DEFAULT_STORE
    if not isinstance(target, str | os.PathLike):
        if isinstance(target, Store):
            return target
        raise InputError(
            "store",
            f"is a {type(target).__name__}",
            "give a path, a URL (duckdb:///path, postgresql://...) or a Store",
        )
    text = os.fspath(target)
    scheme, sep, rest = text.partition("://")
    if not sep or (len(scheme) == 1 and scheme.isalpha()):  # a plain path (or C:\\...)
        return DuckDBStore(text)
    scheme = scheme.lower()
    if scheme == "duckdb":
        if rest in ("", ":memory:", "/:memory:"):  # duckdb:///:memory: is in memory too
            return DuckDBStore(":memory:")
        return DuckDBStore(rest)
    if scheme in ("postgresql", "postgres"):
        from tunelens.store.postgres import PostgresStore

        return PostgresStore(text)
    raise InputError(
        "store",
        f"has an unknown scheme {scheme!r} in {text!r}",
        "give a file path, duckdb:///path or postgresql://...",
    )
