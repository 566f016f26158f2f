"""Calibration binning equals scikit-learn's on values that sit exactly on bin edges."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import calibration_curve as sk_calibration_curve

from tunelens.metrics import calibration_curve
from tunelens.metrics._probabilistic import _uniform_bin


@pytest.mark.parametrize("n_bins", [1, 2, 3, 5, 7, 10, 13, 100])
def test_uniform_bin_equals_searchsorted_on_edges(n_bins: int) -> None:
    rng = np.random.default_rng(n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    p = np.clip(
        np.concatenate(
            [
                rng.random(10_000),
                edges,
                np.nextafter(edges, 2.0),
                np.nextafter(edges, -1.0),
                np.round(rng.random(5_000), 2),
            ]
        ),
        0.0,
        1.0,
    )
    np.testing.assert_array_equal(_uniform_bin(p, edges), np.searchsorted(edges[1:-1], p))


def test_curve_with_scores_on_edges_equals_sklearn() -> None:
    rng = np.random.default_rng(7)
    p = np.round(rng.random(3_000), 1)  # every score on an edge of 10 bins
    y = (rng.random(3_000) < p).astype(int)
    ours = calibration_curve(y, p, n_bins=10)
    theirs = sk_calibration_curve(y, p, n_bins=10)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=0, atol=1e-12)
