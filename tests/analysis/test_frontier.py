"""kanlib.analysis.frontier and the fits over seeds it uses, on synthetic tables drawn from known laws."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kanlib.analysis.fits import predict_over_seeds, seed_lines_power_law
from kanlib.analysis.frontier import (
    ErrorSurface,
    data_for_target,
    fit_error_surface,
    fit_frontier,
    frontier_points,
    frontier_report,
    held_out_predictions,
)

N = np.array([100, 200, 400, 800, 1600, 3200, 6400], dtype=float)


def law_draw(rng, gamma=3.0, seeds=5, noise=0.3, slope_sd=0.15, n=N):
    """y = exp(2 - gamma_s log N + seed offset + point noise), gamma_s ~ gamma + slope_sd z (seeds differ)."""
    x, y, g = [], [], []
    for seed in range(seeds):
        slope = gamma + rng.normal(0, slope_sd)
        x.append(n)
        y.append(np.exp(2.0 - slope * np.log(n) + rng.normal(0, 0.5) + rng.normal(0, noise, n.size)))
        g.append(np.full(n.size, seed))
    return np.concatenate(x), np.concatenate(y), np.concatenate(g)


def test_the_exponent_interval_over_five_seeds_covers_the_true_exponent_about_95_percent_of_draws():
    rng = np.random.default_rng(0)
    draws = 400
    hits = 0
    for _ in range(draws):
        fit = seed_lines_power_law(*law_draw(rng))
        hits += fit.alpha_low <= 3.0 <= fit.alpha_high
    # binomial sd at 95% over 400 draws: 1.1%; a percentile bootstrap over 5 seeds gives ~85% here
    assert 0.915 <= hits / draws <= 0.985


def test_the_prediction_interval_at_a_held_out_size_covers_the_measured_mean_about_95_percent_of_draws():
    rng = np.random.default_rng(1)
    draws, hits = 400, 0
    for _ in range(draws):
        x, y, g = law_draw(rng)
        fitted = x < 6400
        _, low, high = predict_over_seeds(x[fitted], y[fitted], g[fitted], 6400)
        measured = np.exp(np.log(y[~fitted]).mean())  # the geometric mean over seeds there
        hits += low <= measured <= high
    assert 0.915 <= hits / draws <= 0.985


def surface_results(surface: ErrorSurface, grids, sizes, seeds=5, noise=0.05, rng=None, val_noise=0.0) -> pd.DataFrame:
    """A results table whose test (and validation) RMSE follow ``surface`` with log-normal noise."""
    rng = rng or np.random.default_rng(0)
    rows = []
    for n in sizes:
        for seed in range(seeds):
            for grid in grids:
                value = float(surface(grid, n))
                rows.append(
                    {
                        "function": "f",
                        "family": "kan",
                        "width": "2-1-1",
                        "k": 3,
                        "n_train": n,
                        "seed": seed,
                        "grid_size": grid,
                        "n_params": 3 * (grid + 5),
                        "test_rmse": value * np.exp(rng.normal(0, noise)),
                        "val_rmse": value * np.exp(rng.normal(0, noise + val_noise)),
                        "test_median_rmse": value / 10,
                        "val_median_rmse": value / 10,
                        "learned_target": True,
                    }
                )
    return pd.DataFrame(rows)


SURFACE = ErrorSurface(A=1.0, a=4.0, B=1e-3, b=1.0, rms_log10_residual=0.0, n_cells=0)
GRIDS = [int(g) for g in np.unique(np.round(np.geomspace(3, 2000, 40)))]


def test_the_error_surface_is_recovered_from_a_table_drawn_from_it():
    table = surface_results(SURFACE, GRIDS, N.astype(int), noise=0.0)
    fit = fit_error_surface(table)
    assert fit.a == pytest.approx(4.0, rel=1e-3) and fit.b == pytest.approx(1.0, rel=1e-3)
    assert fit.rms_log10_residual < 1e-6


def test_the_frontier_recovers_delta_and_gamma_of_a_known_surface_and_predicts_a_held_out_size():
    # theory of the surface: G* = (a A / (b B))^(1/(a+b)) N^(b/(a+b)): delta = 0.2, gamma = a delta = 0.8
    table = surface_results(SURFACE, GRIDS, N.astype(int), noise=0.03, rng=np.random.default_rng(2))
    points = frontier_points(table)
    fits = fit_frontier(points).set_index("measure")
    assert fits.loc["mean", "delta_low"] - 0.03 <= 0.2 <= fits.loc["mean", "delta_high"] + 0.03
    assert fits.loc["mean", "gamma_low"] <= 0.8 <= fits.loc["mean", "gamma_high"]
    assert fits.loc["mean", "gamma"] == pytest.approx(0.8, abs=0.03)
    predictions = held_out_predictions(points, table).set_index(["measure", "method"])
    frontier = predictions.loc[("mean", "frontier")]
    assert frontier["held_out_n"] == 6400 and bool(frontier["test_inside"])
    truth = min(SURFACE(g, 6400) for g in GRIDS)
    assert abs(np.log10(predictions.loc[("mean", "surface"), "predicted_test"] / truth)) < 0.02


def test_each_point_is_chosen_on_validation_not_on_test_and_only_among_chains_that_learnt():
    table = surface_results(SURFACE, [5, 10, 20], [100, 200, 400], seeds=2, noise=0.0)
    # seed 0 at N = 100: the test set prefers G = 5, the validation set G = 20
    at = (table["n_train"] == 100) & (table["seed"] == 0)
    table.loc[at & (table["grid_size"] == 5), "test_rmse"] = 1e-9
    table.loc[at & (table["grid_size"] == 20), "val_rmse"] = 1e-9
    table.loc[(table["n_train"] == 200) & (table["seed"] == 1), "learned_target"] = False
    points = frontier_points(table).set_index(["n_train", "seed"])
    assert (
        points.loc[(100, 0), "grid_size"] == 20 and points.loc[(100, 0), "test"] == table.loc[at, "test_rmse"].iloc[2]
    )
    assert bool(points.loc[(100, 0), "at_size_end"])  # the largest grid trained: a lower bound
    assert (200, 1) not in points.index
    with pytest.raises(ValueError, match="validation"):
        frontier_points(table.drop(columns="val_rmse"))


def test_the_data_axis_needs_three_sizes_and_validation_errors():
    three = surface_results(SURFACE, [5, 10, 20], [100, 200, 400], seeds=2, noise=0.0)
    assert not frontier_report(three).points.empty
    assert frontier_report(three[three["n_train"] < 400]).points.empty  # 2 N: no law over N
    assert frontier_report(three.assign(val_rmse=np.nan)).points.empty  # datasets without a validation split


def test_the_data_needed_for_a_target_solves_each_seeds_law():
    rows = [
        {"function": "f", "family": "kan", "measure": "mean", "seed": s, "n_train": n, "test": 10 * n**-2.0}
        for s in range(3)
        for n in (100, 400, 1600)
    ]
    needed = data_for_target(pd.DataFrame(rows), target=1e-7).iloc[0]
    assert needed["n_needed"] == pytest.approx(1e4, rel=1e-9) and bool(needed["extrapolated"])
