"""Least-squares spline fits against scipy and numpy references."""

import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline

from kanlib.bspline import dense_basis, extend_grid, uniform_grid
from kanlib.lstsq import fit_spline_coefficients

F64 = torch.float64


def knots_on(lower, upper, grid_size, k):
    return extend_grid(uniform_grid(torch.tensor([lower], dtype=F64), torch.tensor([upper], dtype=F64), grid_size), k)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_recovers_a_spline_exactly(k):
    rng = np.random.default_rng(k)
    knots = knots_on(-1.0, 1.0, 12, k)
    coef = rng.normal(size=knots.shape[1] - k - 1)
    x = rng.uniform(-1, 1, 400)
    y = BSpline(knots[0].numpy(), coef, k)(x)
    fitted = fit_spline_coefficients(torch.tensor(x)[:, None], torch.tensor(y)[:, None, None], knots, k)
    np.testing.assert_allclose(fitted[0, 0].numpy(), coef, rtol=1e-8, atol=1e-8)


def test_matches_numpy_lstsq_on_noisy_data():
    rng = np.random.default_rng(0)
    k = 3
    knots = knots_on(-1.0, 1.0, 8, k)
    x = rng.uniform(-1, 1, (300, 2))
    y = np.stack([np.sin(3 * x[:, 0]), np.cos(2 * x[:, 0])], axis=1)[:, None, :] + rng.normal(0, 0.1, (300, 2, 2))
    knots2 = knots.expand(2, -1)
    fitted = fit_spline_coefficients(torch.tensor(x), torch.tensor(y), knots2, k)  # (in, out, n)
    design = dense_basis(torch.tensor(x), knots2, k).numpy()  # (B, in, n)
    for i in range(2):
        reference = np.linalg.lstsq(design[:, i, :], y[:, i, :], rcond=None)[0]  # (n, out)
        np.testing.assert_allclose(fitted[i].numpy().T, reference, rtol=1e-7, atol=1e-9)


def test_rank_deficient_problem_gives_the_minimum_norm_fit():
    """More coefficients than samples and empty intervals: finite, and the fitted values
    equal those of numpy's minimum-norm least squares."""
    rng = np.random.default_rng(1)
    k = 3
    knots = knots_on(-1.0, 1.0, 50, k)
    x = rng.uniform(-1, 0, 20)  # right half empty, 20 samples for 53 coefficients
    y = np.exp(x)
    fitted = fit_spline_coefficients(torch.tensor(x)[:, None], torch.tensor(y)[:, None, None], knots, k)
    assert torch.isfinite(fitted).all()
    design = dense_basis(torch.tensor(x)[:, None], knots, k)[:, 0, :].numpy()
    reference = np.linalg.lstsq(design, y, rcond=None)[0]
    np.testing.assert_allclose(design @ fitted[0, 0].numpy(), design @ reference, atol=1e-8)
    assert np.linalg.norm(fitted[0, 0].numpy()) <= 1.01 * np.linalg.norm(reference)


def test_fine_grid_and_the_fallback_match_numpy_minimum_norm_least_squares():
    """A grid of 500 intervals, samples that leave a gap of empty intervals: the banded solve gives
    numpy's fitted values; without the ridge the banded Cholesky fails on the empty intervals and the
    fallback gives numpy's minimum-norm coefficients."""
    rng = np.random.default_rng(2)
    k = 3
    knots = knots_on(-1.0, 1.0, 500, k)
    x = np.concatenate([rng.uniform(-1, -0.2, 3000), rng.uniform(0.3, 1, 3000)])
    y = np.sin(4 * x) + rng.normal(0, 0.01, x.size)
    design = dense_basis(torch.tensor(x)[:, None], knots, k)[:, 0, :].numpy()
    reference = np.linalg.lstsq(design, y, rcond=None)[0]
    fitted = fit_spline_coefficients(torch.tensor(x)[:, None], torch.tensor(y)[:, None, None], knots, k)
    np.testing.assert_allclose(design @ fitted[0, 0].numpy(), design @ reference, atol=1e-10)
    exact = fit_spline_coefficients(torch.tensor(x)[:, None], torch.tensor(y)[:, None, None], knots, k, ridge=0.0)
    np.testing.assert_allclose(exact[0, 0].numpy(), reference, atol=1e-8)
