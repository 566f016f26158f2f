"""The `Finding` record that every capability of tunelens returns.

A finding says what is wrong, how sure we are, where, what it costs and what to do.
It is the shared vocabulary that lets monitoring, analysis, localisation and tuning
hand work to one another. This module imports nothing else from tunelens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["KINDS", "SEVERITIES", "Finding", "Severity", "rank"]

Severity = Literal["high", "medium", "low"]
SEVERITIES: tuple[Severity, ...] = ("high", "medium", "low")

#: Kinds used across the package; add here rather than inventing synonyms.
KINDS: frozenset[str] = frozenset(
    {
        "metric_drop",
        "data_drift",
        "prediction_drift",
        "weak_slice",
        "calibration",
        "label_errors",
        "exploding_gradients",
        "vanishing_gradients",
        "dead_units",
        "lr_too_high",
        "lr_too_low",
        "overfitting",
        "plateau",
        "non_finite",
        "compute_bound",
        "memory_bound",
        "overhead_bound",
        "batching",
        "latency_slo",
    }
)


@dataclass(frozen=True, slots=True)
class Finding:
    """One ranked statement about a model, its data or its training.

    Args:
        kind: one of `KINDS`, e.g. ``"metric_drop"``.
        severity: ``"high"``, ``"medium"`` or ``"low"``.
        where: the column, slice, layer, window or step it concerns.
        evidence: the numbers behind it, in plain words.
        action: the remedy, named so that ``tune`` or ``compress`` can apply it.
        gain: the expected improvement, where one can be estimated.
        step: the training step where it began, for training findings.

    Example:
        >>> f = Finding("metric_drop", "high", "window 2026-01-02T00:00Z",
        ...             "accuracy 0.91 -> 0.78", "retrain on recent data")
        >>> f.to_dict()["severity"]
        'high'
    """

    kind: str
    severity: Severity
    where: str
    evidence: str
    action: str
    gain: float | None = None
    step: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"Finding.kind {self.kind!r} is not a known kind; use one of {sorted(KINDS)} "
                "or add it to tunelens.findings.KINDS"
            )
        if self.severity not in SEVERITIES:
            raise ValueError(
                f"Finding.severity {self.severity!r} must be one of 'high', 'medium', 'low'"
            )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this finding (keys as in DESIGN.md)."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "severity": self.severity,
            "where": self.where,
            "evidence": self.evidence,
            "action": self.action,
        }
        if self.gain is not None:
            out["gain"] = self.gain
        if self.step is not None:
            out["step"] = self.step
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        """Rebuild a finding from `to_dict` output."""
        return cls(
            kind=data["kind"],
            severity=data["severity"],
            where=data["where"],
            evidence=data["evidence"],
            action=data["action"],
            gain=data.get("gain"),
            step=data.get("step"),
        )


def rank(findings: list[Finding]) -> list[Finding]:
    """Order findings by severity, then by expected gain (largest first)."""
    order = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(findings, key=lambda f: (order[f.severity], -(f.gain or 0.0)))
