"""Quality analysis of a model and its data (issue 3, in progress).

Building blocks landed so far, each tested against SciPy, scikit-learn or simulation:

- `tunelens.quality.drift`: per-column drift tests and the dataset drift share;
- `tunelens.quality.multivariate`: drift of the joint distribution (PCA reconstruction
  error, a domain classifier's AUC);
- `tunelens.quality.intervals`: confidence intervals (Wilson, DeLong, bootstrap);
- `tunelens.quality.estimate`: performance without labels (confidence-based, and a
  model of the error for regression);
- `tunelens.quality.slices`: the feature conditions (bins, categories, pairs) where the
  error rate or loss is significantly worst, with false discoveries controlled.

`analyse(reference, current, ...)`, the report that joins them, comes next.
"""
