"""The `tunelens` command (placeholder until the CLI lands)."""

from __future__ import annotations


def main() -> None:
    """Entry point of the `tunelens` console script."""
    raise SystemExit("tunelens: the CLI is not built yet")
