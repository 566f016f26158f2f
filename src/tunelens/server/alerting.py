"""The server's alert loop: evaluates the alert rules of `Settings` for every model on a
background thread, every ``alert_interval_s`` seconds (see `tunelens.monitor.alerts`)."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
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
        self.engine = AlertEngine(
            service.store,
            list(settings.rules),
            webhook=settings.webhook,
            drift_share=self._drift_share,
            reference=self._reference_metrics,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tunelens-alerts", daemon=True)

    def _drift_share(self, model: str, since: datetime, until: datetime) -> float | None:
        """Share of drifted features in ``[since, until)`` against the registered
        reference (None without one): what drift rules watch."""
        from tunelens.server.quality import drift_document

        record = self.service.store.get_model(model)
        if record is None:
            return None
        share = drift_document(self.service.store, record, since, until)["share_drifted"]
        return None if share is None else float(share)

    def _reference_metrics(self, model: str) -> dict[str, float] | None:
        """The metrics of the registered reference table (its label, prediction and score
        columns): the baseline of drop rules with ``baseline = "reference"``."""
        from tunelens.server.quality import reference_metrics

        record = self.service.store.get_model(model)
        if record is None:
            return None
        return reference_metrics(self.service.store, record)

    def start(self) -> None:
        self._thread.start()

    def evaluate_all(self, now: datetime | None = None) -> None:
        """One pass over every model (errors are logged, never raised); ``now`` defaults
        to the clock."""
        try:
            self.engine.evaluate_all(now)
        except Exception:
            log.exception("alert evaluation failed")

    def _run(self) -> None:
        while not self._stop.wait(self.service.settings.alert_interval_s):
            self.evaluate_all()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
