"""Shared fixtures of the monitor tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tunelens.store import Store, open_store


@pytest.fixture
def store_path(tmp_path: Path) -> str:
    return str(tmp_path / "monitor.duckdb")


@pytest.fixture
def store(store_path: str) -> Iterator[Store]:
    opened = open_store(store_path)
    yield opened
    opened.close()
