"""Contract suites shipped with tunelens, reusable by third-party backends.

- `tunelens.testing.store`: the `Store` contract, run against every backend.
- `tunelens.testing.metrics`: every metric beside its scikit-learn or SciPy oracle.
"""
