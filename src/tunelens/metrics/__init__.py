"""Mergeable, serialisable metric states and their functional twins (numpy only).

Every state has ``update(...)``, ``merge(other)``, ``compute() -> dict[str, float]``,
``to_dict()`` / ``from_dict()`` (JSON-safe) and ``copy()``, and holds sufficient
statistics only (sums, counts, bucket counts), so a merge over any partition of the
data equals one pass. The functional twins (``roc_auc_score`` ...) run the same code
and match scikit-learn; undefined values are NaN with an
:class:`UndefinedMetricWarning`.
"""

from tunelens.metrics._api import classification_metrics, state_from_dict
from tunelens.metrics._classification import (
    ClassificationState,
    accuracy_score,
    confusion_matrix,
    error_rate,
    f1_score,
    precision_score,
    recall_score,
)
from tunelens.metrics._probabilistic import (
    CalibrationState,
    ProbabilisticState,
    brier_score_loss,
    calibration_curve,
    expected_calibration_error,
    log_loss,
)
from tunelens.metrics._ranking import (
    BinaryRankingState,
    MulticlassRankingState,
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)
from tunelens.metrics._regression import (
    RegressionState,
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    r2_score,
    root_mean_squared_error,
)
from tunelens.metrics._sketch import QuantileSketch
from tunelens.metrics._validation import UndefinedMetricWarning

__all__ = [
    "BinaryRankingState",
    "CalibrationState",
    "ClassificationState",
    "MulticlassRankingState",
    "ProbabilisticState",
    "QuantileSketch",
    "RegressionState",
    "UndefinedMetricWarning",
    "accuracy_score",
    "average_precision_score",
    "brier_score_loss",
    "calibration_curve",
    "classification_metrics",
    "confusion_matrix",
    "error_rate",
    "expected_calibration_error",
    "f1_score",
    "log_loss",
    "mean_absolute_error",
    "mean_absolute_percentage_error",
    "mean_squared_error",
    "precision_recall_curve",
    "precision_score",
    "r2_score",
    "recall_score",
    "roc_auc_score",
    "roc_curve",
    "root_mean_squared_error",
    "state_from_dict",
]
