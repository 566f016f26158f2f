"""The monitoring service (``tunelens serve``): HTTP ingestion, queries, the dashboard,
Prometheus ``/metrics`` and alerts. Needs the ``server`` extra
(``pip install 'tunelens[server]'``).

Example:
    >>> from fastapi.testclient import TestClient  # doctest: +SKIP
    >>> from tunelens.server import create_app  # doctest: +SKIP
    >>> client = TestClient(create_app("monitor.duckdb"))  # doctest: +SKIP
"""

from tunelens.server.app import Settings, create_app

__all__ = ["Settings", "create_app"]
