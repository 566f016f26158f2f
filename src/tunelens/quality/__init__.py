"""Quality analysis of a model and its data (issue 3).

- :func:`analyse` (in :mod:`tunelens.quality.analysis`): the report that joins
  everything below into a :class:`QualityReport` with ranked findings, JSON
  (``tunelens.report/1``) and self-contained HTML;
- `tunelens.quality.drift`: per-column drift tests and the dataset drift share;
- `tunelens.quality.multivariate`: drift of the joint distribution (PCA reconstruction
  error, a domain classifier's AUC);
- `tunelens.quality.intervals`: confidence intervals (Wilson, DeLong, bootstrap);
- `tunelens.quality.estimate`: performance without labels (confidence-based, and a
  model of the error for regression);
- `tunelens.quality.slices`: the feature conditions (bins, categories, pairs) where the
  error rate or loss is significantly worst, with false discoveries controlled;
- :func:`cross_validate` (in :mod:`tunelens.quality.crossval`): per-fold metrics of a
  scikit-learn estimator or a PyTorch model (``TorchClassifier``/``TorchRegressor``),
  with a finding when the folds disagree more than chance explains.
"""

from tunelens.quality.analysis import SCHEMA, MetricComparison, QualityReport, analyse
from tunelens.quality.crossval import (
    CrossValidation,
    TorchClassifier,
    TorchRegressor,
    cross_validate,
)

__all__ = [
    "SCHEMA",
    "CrossValidation",
    "MetricComparison",
    "QualityReport",
    "TorchClassifier",
    "TorchRegressor",
    "analyse",
    "cross_validate",
]
