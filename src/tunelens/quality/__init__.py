"""Quality analysis of a model and its data (issue 3, in progress).

Building blocks landed so far, each tested against SciPy:

- `tunelens.quality.drift`: per-column drift tests and the dataset drift share;
- `tunelens.quality.intervals`: confidence intervals (Wilson, DeLong, bootstrap).

`analyse(reference, current, ...)`, the report that joins them, comes next.
"""
