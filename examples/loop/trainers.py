"""The example's trainer: a factory returning an unfitted scikit-learn estimator.

``loop.toml`` names it as ``trainer = "trainers:scaled_logistic"`` (the config file's
folder is importable). A ``Pipeline`` is tuned through its last step's parameters.
"""

from __future__ import annotations

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler


def scaled_logistic(C: float = 1.0, max_iter: int = 2000) -> Pipeline:
    """Standardise the measurements, then a logistic regression."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
