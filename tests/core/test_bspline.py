"""B-spline basis against scipy.interpolate.BSpline (an independent reference)."""

import numpy as np
import pytest
import torch
from scipy.interpolate import BSpline

from kanlib.bspline import dense_basis, evaluate_spline, extend_grid, is_uniform, local_basis, uniform_grid


def scipy_basis(x: np.ndarray, knots: np.ndarray, k: int) -> np.ndarray:
    """(n_samples, n_basis) from scipy: each B_i on its own support, zero outside."""
    n = len(knots) - k - 1
    columns = []
    for i in range(n):
        element = BSpline.basis_element(knots[i : i + k + 2], extrapolate=False)
        values = np.nan_to_num(element(x))
        # basis_element is closed at its right end; kanlib's intervals are half-open
        values[x >= knots[i + k + 1]] = 0.0
        columns.append(values)
    return np.stack(columns, axis=1)


def random_knots(rng, grid_size, k):
    interior = np.sort(rng.uniform(-1, 1, grid_size - 1))
    grid = np.concatenate([[-1.0], interior, [1.0]])
    return extend_grid(torch.tensor(grid)[None, :], k)[0].numpy()


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("uniform", [True, False])
def test_basis_matches_scipy(k, uniform):
    rng = np.random.default_rng(k)
    grid_size = 7
    if uniform:
        knots = extend_grid(
            uniform_grid(
                torch.tensor([-1.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64), grid_size
            ),
            k,
        )[0].numpy()
    else:
        knots = random_knots(rng, grid_size, k)
    # samples over the whole extended range and beyond it
    x = np.concatenate([rng.uniform(knots[0] - 0.5, knots[-1] + 0.5, 400), knots[:-1]])
    ours = dense_basis(torch.tensor(x)[:, None], torch.tensor(knots)[None, :], k)[:, 0, :].numpy()
    reference = scipy_basis(x, knots, k)
    assert ours.shape == reference.shape == (len(x), grid_size + k)
    np.testing.assert_allclose(ours, reference, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fine_grids_away_from_zero_take_the_uniform_path_and_match_scipy(dtype):
    """A hidden layer's grid of G ~ 1000 on [2.1, 5.15] is uniform to rounding: the closed-form path
    applies and gives scipy's basis; moving one knot by 1e-4 of a spacing makes it non-uniform."""
    k, grid_size = 3, 1066
    knots = extend_grid(uniform_grid(torch.tensor([2.1], dtype=dtype), torch.tensor([5.15], dtype=dtype), grid_size), k)
    assert is_uniform(knots)
    rng = np.random.default_rng(1)
    x = rng.uniform(2.1, 5.15, 500)
    fast = dense_basis(torch.tensor(x, dtype=dtype)[:, None], knots, k)[:, 0, :].double().numpy()
    reference = scipy_basis(x, knots[0].double().numpy(), k)
    # rounding of x / h on this grid: ~eps * 5.15 / (3.05 / 1066) of an interval
    np.testing.assert_allclose(fast, reference, atol=16 * torch.finfo(dtype).eps * 5.15 / (3.05 / grid_size))
    moved = knots.clone()
    moved[0, 500] += 1e-4 * (3.05 / grid_size) if dtype == torch.float64 else 1e-1 * (3.05 / grid_size)
    assert not is_uniform(moved)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_uniform_and_general_paths_agree(k):
    rng = np.random.default_rng(0)
    knots = extend_grid(
        uniform_grid(torch.tensor([-2.0, 0.0], dtype=torch.float64), torch.tensor([1.0, 3.0], dtype=torch.float64), 11),
        k,
    )
    assert is_uniform(knots)
    x = torch.tensor(rng.uniform(-3, 4, (300, 2)))
    fast = local_basis(x, knots, k, uniform=True, derivatives=True)
    general = local_basis(x, knots, k, uniform=False, derivatives=True)
    assert torch.equal(fast.index, general.index)
    # outside the knots the values multiply zero coefficients, so only inside samples matter
    inside = ((x >= knots[:, 0]) & (x < knots[:, -1])).T.unsqueeze(0).expand_as(fast.values)
    torch.testing.assert_close(fast.values[inside], general.values[inside], atol=1e-12, rtol=0)
    torch.testing.assert_close(fast.derivatives[inside], general.derivatives[inside], atol=1e-10, rtol=0)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_partition_of_unity_inside_grid(k):
    knots = torch.tensor(random_knots(np.random.default_rng(1), 9, k))[None, :]
    x = torch.linspace(-1, 1, 1001, dtype=torch.float64)[:, None]
    total = dense_basis(x, knots, k).sum(-1)
    torch.testing.assert_close(total, torch.ones_like(total), atol=1e-13, rtol=0)


@pytest.mark.parametrize("uniform", [True, False])
def test_spline_values_and_derivatives_match_scipy(uniform):
    k = 3
    rng = np.random.default_rng(2)
    if uniform:
        knots = extend_grid(
            uniform_grid(torch.tensor([-1.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64), 10), k
        )[0].numpy()
    else:
        knots = random_knots(rng, 10, k)
    coef = rng.normal(size=len(knots) - k - 1)
    x = rng.uniform(-1, 1, 500)
    spline = BSpline(knots, coef, k)
    ours = evaluate_spline(
        torch.tensor(x)[:, None], torch.tensor(knots)[None, :], torch.tensor(coef)[None, None, :], k
    )[:, 0, 0].numpy()
    np.testing.assert_allclose(ours, spline(x), atol=1e-12)
    basis = local_basis(torch.tensor(x)[:, None], torch.tensor(knots)[None, :], k, derivatives=True)
    padded = np.pad(coef, k + 1)
    window = basis.index[0].numpy()[:, None] + np.arange(k + 1)
    derivative = (basis.derivatives[:, 0, :].numpy().T * padded[window]).sum(1)
    np.testing.assert_allclose(derivative, spline.derivative()(x), atol=1e-9)


def test_zero_outside_knots_and_nan_safe():
    k = 3
    knots = extend_grid(
        uniform_grid(torch.tensor([-1.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64), 5), k
    )
    x = torch.tensor([[-50.0], [knots[0, 0] - 1e-9], [knots[0, -1]], [10.0], [float("nan")]], dtype=torch.float64)
    assert torch.all(dense_basis(x, knots, k) == 0)


def test_cost_per_sample_does_not_depend_on_grid_size():
    """Locality: the evaluated basis always has k+1 entries per sample, whatever G."""
    x = torch.rand(50, 2, dtype=torch.float64)
    for grid_size in (5, 1000):
        knots = extend_grid(
            uniform_grid(torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64), grid_size), 3
        )
        assert local_basis(x, knots, 3).values.shape == (4, 2, 50)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_floor_is_torch_floor_bit_for_bit(dtype):
    """The basis's numpy floor (no parallel region) equals torch.floor, signs of zero included."""
    from kanlib.bspline import _floor

    s = torch.cat(
        [
            torch.tensor([-1.0, -0.5, -1e-17, -0.0, 0.0, 1e-300, 0.999999999, 1.0, 104.0, 2.5]),
            torch.randn(5000, dtype=torch.float64) * 60,
        ]
    ).to(dtype)[None, :]
    ours, reference = _floor(s), torch.floor(s)
    assert ours.dtype == reference.dtype and torch.equal(ours, reference)
    assert torch.equal(torch.signbit(ours), torch.signbit(reference))
