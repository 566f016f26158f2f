"""The server's alert loop: evaluates the alert rules of `Settings` for every model on a
background thread, every ``alert_interval_s`` seconds (see `tunelens.monitor.alerts`)."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tunelens.server.app import _Service

__all__ = ["AlertLoop"]

log = logging.getLogger("tunelens.alerts")


class AlertLoop:
    """Runs `AlertEngine.evaluate` for each model until stopped."""

    def __init__(self, service: _Service) -> None:
        from tunelens.monitor.alerts import AlertEngine

        self.service = service
        settings = service.settings
        self.engine = AlertEngine(service.store, list(settings.rules), webhook=settings.webhook)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tunelens-alerts", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def evaluate_all(self) -> None:
        """One pass over every model (errors are logged, never raised)."""
        try:
            self.engine.evaluate_all()
        except Exception:
            log.exception("alert evaluation failed")

    def _run(self) -> None:
        while not self._stop.wait(self.service.settings.alert_interval_s):
            self.evaluate_all()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
