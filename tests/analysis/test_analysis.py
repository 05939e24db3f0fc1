"""Tests for kanlib.analysis.fits and kanlib.analysis.reference against known truth."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kanlib.analysis.fits import (
    data_scaling_table,
    drop_nonfinite_points,
    find_interpolation_threshold,
    fit_power_law,
    fit_scaling_laws,
    geometric_mean,
    rmse_pivot,
    seed_lines_power_law,
    summarize_over_seeds,
)
from kanlib.analysis.reference import (
    SEED_GRID_SIZES,
    SEED_TEST_RMSE,
    SEED_TRAIN_RMSE,
    SEED_TRAIN_SIZES,
    seed_reference_frame,
)

GRID_SIZES = np.array([5.0, 10.0, 20.0, 50.0, 100.0])


def noisy_power_law(
    x: np.ndarray, alpha: float, prefactor: float, sigma_log: float, rng: np.random.Generator
) -> np.ndarray:
    """``prefactor * x**-alpha`` times log-normal noise with log-space std ``sigma_log``."""
    return prefactor * x ** (-alpha) * rng.lognormal(mean=0.0, sigma=sigma_log, size=x.shape)


def results_table(
    test_rmse: dict[int, dict[int, float]],
    train_rmse: dict[int, dict[int, float]] | None = None,
    seed: int = 0,
    k: int = 3,
) -> pd.DataFrame:
    """Results table in the workflow's format from ``{N: {G: rmse}}`` dicts."""
    rows = []
    for n_train, by_grid in test_rmse.items():
        for grid_size, test_value in by_grid.items():
            train_value = train_rmse[n_train][grid_size] if train_rmse else test_value * 0.9
            rows.append(
                {
                    "function": "exp_sin",
                    "width": "2-1-1",
                    "k": k,
                    "n_train": n_train,
                    "seed": seed,
                    "grid_size": grid_size,
                    "n_params": 3 * (grid_size + k),
                    "steps": 50,
                    "optimizer": "lbfgs",
                    "train_rmse": train_value,
                    "test_rmse": test_value,
                    "wall_time_s": 1.0,
                    "device": "cpu",
                    "mlflow_run_id": f"run-{n_train}-{grid_size}-{seed}",
                }
            )
    return pd.DataFrame(rows)


def seed_results() -> pd.DataFrame:
    return results_table(SEED_TEST_RMSE, SEED_TRAIN_RMSE)


# --------------------------------------------------------------------------
# reference
# --------------------------------------------------------------------------


def test_seed_reference_frame_matches_constants():
    frame = seed_reference_frame()
    assert list(frame.columns) == ["n_train", "grid_size", "train_rmse", "test_rmse"]
    assert len(frame) == len(SEED_TRAIN_SIZES) * len(SEED_GRID_SIZES) == 20
    for row in frame.itertuples(index=False):
        assert row.test_rmse == SEED_TEST_RMSE[row.n_train][row.grid_size]
        assert row.train_rmse == SEED_TRAIN_RMSE[row.n_train][row.grid_size]
    # each published table covers exactly the seed's sizes and grids, with an RMSE (finite, positive) in every cell
    for table in (SEED_TEST_RMSE, SEED_TRAIN_RMSE):
        assert list(table) == list(SEED_TRAIN_SIZES)
        assert all(list(row) == list(SEED_GRID_SIZES) for row in table.values())
    assert ((frame[["train_rmse", "test_rmse"]] > 0) & np.isfinite(frame[["train_rmse", "test_rmse"]])).all().all()


# --------------------------------------------------------------------------
# fit_power_law
# --------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [4.0, 3.0, 0.5])
def test_zero_noise_recovers_exponent_exactly(alpha):
    y = 2.5 * GRID_SIZES ** (-alpha)
    fit = fit_power_law(GRID_SIZES, y)
    assert fit.alpha == pytest.approx(alpha, abs=1e-10)
    assert fit.prefactor == pytest.approx(2.5, rel=1e-10)
    assert fit.r_squared == pytest.approx(1.0, abs=1e-12)
    assert fit.alpha_high - fit.alpha_low < 1e-10
    assert fit.n_points == 5
    assert fit.x_used == (5.0, 10.0, 20.0, 50.0, 100.0)
    assert fit.ci_method == "ols-t"
    np.testing.assert_allclose(fit.predict(GRID_SIZES), y, rtol=1e-10)


def test_matches_the_closed_form_of_least_squares():
    rng = np.random.default_rng(7)
    x = np.geomspace(3, 300, 9)
    y = noisy_power_law(x, alpha=3.0, prefactor=0.4, sigma_log=0.3, rng=rng)
    fit = fit_power_law(x, y)
    # the textbook formulas: slope Sxy/Sxx, its standard error sqrt(SSres / (n-2) / Sxx), R² = 1 - SSres/SStot
    u, v = np.log10(x), np.log10(y)
    du, dv = u - u.mean(), v - v.mean()
    slope = (du @ dv) / (du @ du)
    residuals = dv - slope * du
    stderr = np.sqrt((residuals @ residuals) / (u.size - 2) / (du @ du))
    assert fit.alpha == pytest.approx(-slope, rel=1e-12)
    assert fit.alpha_stderr == pytest.approx(stderr, rel=1e-10)
    assert math.log10(fit.prefactor) == pytest.approx(v.mean() - slope * u.mean(), rel=1e-12)
    assert fit.r_squared == pytest.approx(1 - (residuals @ residuals) / (dv @ dv), rel=1e-10)
    # Interval is the Student-t interval with n - 2 = 7 degrees of freedom.
    half_width = stats.t.ppf(0.975, df=7) * stderr
    assert fit.alpha_low == pytest.approx(-slope - half_width, rel=1e-10)
    assert fit.alpha_high == pytest.approx(-slope + half_width, rel=1e-10)


@pytest.mark.parametrize("alpha", [4.0, 3.0])
def test_true_exponent_inside_interval(alpha):
    rng = np.random.default_rng(123)
    y = noisy_power_law(GRID_SIZES, alpha=alpha, prefactor=1.0, sigma_log=0.2, rng=rng)
    fit = fit_power_law(GRID_SIZES, y)
    assert fit.alpha_low < alpha < fit.alpha_high
    assert fit.alpha_low < fit.alpha < fit.alpha_high


def test_interval_coverage_is_about_nominal():
    rng = np.random.default_rng(2024)
    true_alpha = 4.0
    trials = 200
    covered = 0
    for _ in range(trials):
        y = noisy_power_law(GRID_SIZES, alpha=true_alpha, prefactor=3.0, sigma_log=0.25, rng=rng)
        fit = fit_power_law(GRID_SIZES, y, confidence=0.95)
        covered += fit.alpha_low <= true_alpha <= fit.alpha_high
    coverage = covered / trials
    assert 0.88 <= coverage <= 0.99, coverage


def test_higher_confidence_gives_wider_interval():
    rng = np.random.default_rng(5)
    y = noisy_power_law(GRID_SIZES, alpha=4.0, prefactor=1.0, sigma_log=0.2, rng=rng)
    narrow = fit_power_law(GRID_SIZES, y, confidence=0.5)
    wide = fit_power_law(GRID_SIZES, y, confidence=0.99)
    assert narrow.alpha == wide.alpha
    assert wide.alpha_high - wide.alpha_low > narrow.alpha_high - narrow.alpha_low > 0


def test_two_points_fit_exactly_with_nan_interval():
    fit = fit_power_law([10.0, 20.0], [1e-3, 1e-3 / 16])
    assert fit.alpha == pytest.approx(4.0, abs=1e-12)
    assert math.isnan(fit.alpha_low) and math.isnan(fit.alpha_high) and math.isnan(fit.alpha_stderr)
    assert fit.r_squared == pytest.approx(1.0)
    low, high = fit.band([10.0, 20.0])
    assert np.isnan(low).all() and np.isnan(high).all()


def test_all_equal_y_gives_zero_exponent_with_zero_width_interval():
    fit = fit_power_law(GRID_SIZES, np.full(5, 0.01))
    assert fit.alpha == 0.0
    assert fit.alpha_low == 0.0 and fit.alpha_high == 0.0
    assert math.isnan(fit.r_squared)
    assert fit.prefactor == pytest.approx(0.01)


def test_band_pivots_at_centroid_and_brackets_line():
    rng = np.random.default_rng(11)
    y = noisy_power_law(GRID_SIZES, alpha=4.0, prefactor=1.0, sigma_log=0.3, rng=rng)
    fit = fit_power_law(GRID_SIZES, y)
    x_grid = np.geomspace(5, 100, 30)
    low, high = fit.band(x_grid)
    line = fit.predict(x_grid)
    assert np.all(low <= line * (1 + 1e-12)) and np.all(line <= high * (1 + 1e-12))
    center = 10.0**fit.log10_x_center
    low_c, high_c = fit.band(center)
    assert low_c == pytest.approx(high_c, rel=1e-12)
    assert fit.predict(center) == pytest.approx(10.0**fit.log10_y_center, rel=1e-12)


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        ([5.0], [1e-3], "at least 2 points, got 1"),
        ([], [], "at least 2 points, got 0"),
        ([10.0, 10.0, 10.0], [1e-3, 2e-3, 3e-3], "all x values are equal"),
        ([5.0, 10.0, 20.0], [1e-3, np.nan, 1e-5], r"y contains non-finite values \(NaN/inf\) at positions \[1\]"),
        ([5.0, np.inf, 20.0], [1e-3, 1e-4, 1e-5], r"x contains non-finite values"),
        ([5.0, 10.0, 20.0], [1e-3, 0.0, -1e-5], r"y must be strictly positive .* positions \[1, 2\]"),
        ([5.0, 10.0], [1e-3], "same length"),
    ],
)
def test_degenerate_input_raises_clear_error(x, y, message):
    with pytest.raises(ValueError, match=message):
        fit_power_law(x, y)


def test_nan_error_points_to_the_drop_helper():
    with pytest.raises(ValueError, match="drop_nonfinite_points"):
        fit_power_law([5.0, 10.0, 20.0], [1e-3, np.nan, 1e-5])


def test_one_point_message_explains_two_point_behaviour():
    with pytest.raises(ValueError, match="with exactly 2 points the line is fitted exactly"):
        fit_power_law([5.0], [1.0])


def test_bad_confidence_raises():
    with pytest.raises(ValueError, match="confidence must be in"):
        fit_power_law(GRID_SIZES, GRID_SIZES**-4.0, confidence=95)


def test_drop_nonfinite_points_reports_and_enables_fit():
    x = np.array([5.0, 10.0, 20.0, 50.0, 100.0])
    y = 2.0 * x**-4.0
    y[3] = np.nan
    y[4] = 0.0
    seeds = np.array([0, 0, 0, 1, 1])
    cleaned = drop_nonfinite_points(x, y, groups=seeds)
    assert cleaned.kept_mask.tolist() == [True, True, True, False, False]
    assert cleaned.dropped == ("index 3: x=50, y=nan", "index 4: x=100, y=0")
    assert cleaned.groups.tolist() == [0, 0, 0]
    fit = fit_power_law(cleaned.x, cleaned.y)
    assert fit.alpha == pytest.approx(4.0, abs=1e-10)


# --------------------------------------------------------------------------
# seed_lines_power_law (intervals over seeds; coverage: tests/analysis/test_frontier.py)
# --------------------------------------------------------------------------


def multi_seed_points(alpha: float, n_seeds: int, rng: np.random.Generator, seed_spread: float = 0.1):
    """Per-seed points: each seed has its own exponent jitter and point noise."""
    xs, ys, groups = [], [], []
    for seed in range(n_seeds):
        seed_alpha = alpha + rng.normal(0.0, seed_spread)
        xs.append(GRID_SIZES)
        ys.append(noisy_power_law(GRID_SIZES, seed_alpha, prefactor=1.0, sigma_log=0.05, rng=rng))
        groups.append(np.full(GRID_SIZES.size, seed))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(groups)


def test_seed_lines_interval_is_the_t_interval_of_the_seeds_own_exponents():
    rng = np.random.default_rng(99)
    x, y, groups = multi_seed_points(alpha=4.0, n_seeds=8, rng=rng)
    fit = seed_lines_power_law(x, y, groups)
    slopes = np.array([-stats.linregress(np.log10(x[groups == g]), np.log10(y[groups == g])).slope for g in range(8)])
    half = stats.t.ppf(0.975, 7) * slopes.std(ddof=1) / np.sqrt(8)
    assert fit.ci_method == "seed-lines-t" and fit.n_points == 40
    assert fit.alpha == pytest.approx(slopes.mean(), rel=1e-12)
    assert (fit.alpha_low, fit.alpha_high) == pytest.approx((slopes.mean() - half, slopes.mean() + half), rel=1e-12)
    assert fit.alpha_low < 4.0 < fit.alpha_high


def test_seed_lines_point_estimate_equals_fit_to_geometric_means_when_every_seed_has_every_x():
    rng = np.random.default_rng(3)
    x, y, groups = multi_seed_points(alpha=3.0, n_seeds=4, rng=rng)
    fit = seed_lines_power_law(x, y, groups)
    geometric_means = [geometric_mean(y[x == g]) for g in GRID_SIZES]
    assert fit.alpha == pytest.approx(fit_power_law(GRID_SIZES, geometric_means).alpha, rel=1e-12)
    assert fit.predict(GRID_SIZES) == pytest.approx(fit_power_law(GRID_SIZES, geometric_means).predict(GRID_SIZES))


def test_seed_lines_of_identical_seeds_have_zero_width_and_more_spread_widens():
    y = 0.7 * GRID_SIZES**-4.0
    fit = seed_lines_power_law(np.tile(GRID_SIZES, 3), np.tile(y, 3), np.repeat([0, 1, 2], 5))
    assert fit.alpha_low == pytest.approx(4.0, abs=1e-10) and fit.alpha_high == pytest.approx(4.0, abs=1e-10)
    narrow = seed_lines_power_law(*multi_seed_points(4.0, 6, np.random.default_rng(8), seed_spread=0.02))
    wide = seed_lines_power_law(*multi_seed_points(4.0, 6, np.random.default_rng(8), seed_spread=0.5))
    assert wide.alpha_high - wide.alpha_low > narrow.alpha_high - narrow.alpha_low


def test_seed_lines_need_two_seeds_with_two_x_each():
    with pytest.raises(ValueError, match="at least 2 seeds with 2 distinct x each; got 1"):
        seed_lines_power_law(GRID_SIZES, GRID_SIZES**-4.0, np.zeros(5))


# --------------------------------------------------------------------------
# find_interpolation_threshold
# --------------------------------------------------------------------------


def u_shaped_test_rmse() -> np.ndarray:
    """G^-4 down to G=20, then rising (overfitting past the threshold)."""
    falling = 1.0 * GRID_SIZES[:3] ** -4.0
    return np.concatenate([falling, [falling[-1] * 30, falling[-1] * 3000]])


def test_threshold_at_minimum_of_u_shaped_curve():
    grid = GRID_SIZES
    threshold = find_interpolation_threshold(grid, u_shaped_test_rmse(), n_params=3 * (grid + 3), n_train=100)
    assert threshold.threshold_grid == 20
    assert threshold.threshold_index == 2
    assert threshold.used_mask.tolist() == [True, True, True, False, False]
    assert threshold.used_grid_sizes.tolist() == [5.0, 10.0, 20.0]
    assert threshold.excluded == (
        (50, "beyond test-RMSE minimum at G=20"),
        (100, "beyond test-RMSE minimum at G=20"),
    )
    assert threshold.threshold_params_per_sample == pytest.approx(69 / 100)


def test_threshold_handles_unsorted_input():
    order = np.array([3, 0, 4, 2, 1])
    threshold = find_interpolation_threshold(GRID_SIZES[order], u_shaped_test_rmse()[order])
    assert threshold.grid_sizes.tolist() == GRID_SIZES.tolist()
    assert threshold.threshold_grid == 20
    assert threshold.used_mask.tolist() == [True, True, True, False, False]


def test_monotone_curve_has_no_threshold():
    threshold = find_interpolation_threshold(
        GRID_SIZES, 2.0 * GRID_SIZES**-4.0, train_rmse=1.8 * GRID_SIZES**-4.0, n_params=GRID_SIZES, n_train=10
    )
    assert threshold.threshold_grid is None
    assert threshold.threshold_index is None
    assert threshold.threshold_params_per_sample is None
    assert threshold.used_mask.all()
    assert threshold.excluded == ()


def test_test_train_divergence_is_flagged():
    test = 1e-2 * GRID_SIZES**-1.0  # still falling everywhere
    train = test / 2.0
    train[3] = test[3] / 95.0
    threshold = find_interpolation_threshold(GRID_SIZES, test, train_rmse=train)
    assert threshold.threshold_grid is None
    assert threshold.used_mask.tolist() == [True, True, True, False, True]
    assert threshold.excluded == ((50, "test/train ratio 95 > 10"),)


def test_divergence_factor_is_configurable():
    test = 1e-2 * GRID_SIZES**-1.0
    train = test / 5.0
    assert find_interpolation_threshold(GRID_SIZES, test, train_rmse=train).used_mask.all()
    strict = find_interpolation_threshold(GRID_SIZES, test, train_rmse=train, divergence_factor=4.0)
    assert not strict.used_mask.any()
    assert strict.excluded[0] == (5, "test/train ratio 5 > 4")


def test_both_reasons_are_reported_together():
    test = u_shaped_test_rmse()
    train = test / 2.0
    train[4] = test[4] / 1000.0
    threshold = find_interpolation_threshold(GRID_SIZES, test, train_rmse=train)
    assert threshold.excluded[-1] == (100, "beyond test-RMSE minimum at G=20 and test/train ratio 1e+03 > 10")


def test_threshold_rejects_nan_and_duplicates():
    with pytest.raises(ValueError, match="test_rmse contains non-finite values"):
        find_interpolation_threshold(GRID_SIZES, [1.0, np.nan, 0.1, 0.01, 0.001])
    with pytest.raises(ValueError, match="grid_sizes must be distinct"):
        find_interpolation_threshold([5, 5, 10], [1.0, 0.9, 0.1])


def test_threshold_on_seed_reference_table():
    expected = {100: 20, 300: 50, 1000: None, 3000: None}
    for n_train, grid_threshold in expected.items():
        test = [SEED_TEST_RMSE[n_train][g] for g in SEED_GRID_SIZES]
        train = [SEED_TRAIN_RMSE[n_train][g] for g in SEED_GRID_SIZES]
        threshold = find_interpolation_threshold(SEED_GRID_SIZES, test, train_rmse=train)
        assert threshold.threshold_grid == grid_threshold, n_train
    # N=100 at G=20 already interpolates: test/train = 3.07e-4 / 7.01e-6 = 43.8.
    n100 = find_interpolation_threshold(
        SEED_GRID_SIZES,
        [SEED_TEST_RMSE[100][g] for g in SEED_GRID_SIZES],
        train_rmse=[SEED_TRAIN_RMSE[100][g] for g in SEED_GRID_SIZES],
    )
    assert n100.used_grid_sizes.tolist() == [5, 10]
    assert n100.excluded[0] == (20, "test/train ratio 43.8 > 10")


# --------------------------------------------------------------------------
# fit_scaling_laws
# --------------------------------------------------------------------------


def synthetic_sweep(seeds=(0,), alpha: float = 4.0, sigma_log: float = 0.0, rng_seed: int = 0) -> pd.DataFrame:
    """Sweep with exact G^-alpha below a threshold that moves with N.

    Threshold G* = N / 5 (so N=100 turns up after G=20); beyond it test RMSE
    rises tenfold per level while train RMSE keeps falling.
    """
    rng = np.random.default_rng(rng_seed)
    frames = []
    for seed in seeds:
        test, train = {}, {}
        for n_train in (100, 300, 1000, 3000):
            test[n_train], train[n_train] = {}, {}
            previous = None
            for grid_size in (5, 10, 20, 50, 100):
                noise = float(rng.lognormal(0.0, sigma_log)) if sigma_log else 1.0
                if grid_size <= n_train / 5:
                    value = 0.5 * grid_size**-alpha * noise
                else:
                    value = previous * 10.0
                test[n_train][grid_size] = value
                train[n_train][grid_size] = 0.5 * grid_size**-alpha * noise * 0.9
                previous = value
        frames.append(results_table(test, train, seed=seed))
    return pd.concat(frames, ignore_index=True)


def test_fit_scaling_laws_single_seed_recovers_theory():
    fits = fit_scaling_laws(synthetic_sweep())
    assert fits["n_train"].tolist() == [100, 300, 1000, 3000]
    assert (fits["ci_method"] == "ols-t").all()
    assert (fits["theory_alpha"] == 4.0).all()
    assert (fits["x"] == "grid_size").all() and (fits["metric"] == "test_rmse").all()
    np.testing.assert_allclose(fits["alpha"], 4.0, atol=1e-10)
    by_n = fits.set_index("n_train")
    assert by_n.loc[100, "points_used"] == "5,10,20"
    assert by_n.loc[100, "threshold_grid"] == 20
    assert by_n.loc[100, "threshold_params_per_sample"] == pytest.approx(3 * 23 / 100)
    assert by_n.loc[100, "points_excluded"] == (
        "50: beyond test-RMSE minimum at G=20 and test/train ratio 434 > 10; "
        "100: beyond test-RMSE minimum at G=20 and test/train ratio 6.94e+04 > 10"
    )
    assert by_n.loc[300, "points_used"] == "5,10,20,50"
    assert by_n.loc[3000, "points_used"] == "5,10,20,50,100"
    assert math.isnan(by_n.loc[3000, "threshold_grid"])
    assert by_n.loc[3000, "points_excluded"] == ""
    assert (fits["note"] == "").all()
    assert by_n.loc[3000, "x_pivot"] == pytest.approx(geometric_mean(GRID_SIZES))


def test_fit_scaling_laws_several_seeds_uses_the_seeds_own_exponents():
    fits = fit_scaling_laws(synthetic_sweep(seeds=(0, 1, 2, 3, 4, 5), sigma_log=0.1))
    assert (fits["ci_method"] == "seed-lines-t").all()
    assert (fits["n_seeds"] == 6).all()
    assert fits.set_index("n_train").loc[3000, "n_points"] == 30
    assert ((fits["alpha_low"] < 4.0) & (4.0 < fits["alpha_high"])).all(), fits[["alpha_low", "alpha_high"]]


def test_fit_scaling_laws_in_parameters_matches_grid_when_proportional():
    results = synthetic_sweep().assign(n_params=lambda frame: 7 * frame["grid_size"])
    by_grid = fit_scaling_laws(results, x="grid_size")
    by_params = fit_scaling_laws(results, x="n_params")
    np.testing.assert_allclose(by_params["alpha"], by_grid["alpha"], rtol=1e-12)
    assert (by_params["x"] == "n_params").all()
    assert by_params["points_used"].tolist() == by_grid["points_used"].tolist()


def test_fit_scaling_laws_train_metric_uses_same_points():
    fits = fit_scaling_laws(synthetic_sweep(), metric="train_rmse")
    assert (fits["metric"] == "train_rmse").all()
    assert fits.set_index("n_train").loc[100, "points_used"] == "5,10,20"
    np.testing.assert_allclose(fits["alpha"], 4.0, atol=1e-10)


def test_failed_job_row_is_dropped_and_reported():
    results = synthetic_sweep()
    failed = (results["n_train"] == 3000) & (results["grid_size"] == 50)
    results.loc[failed, "test_rmse"] = np.nan
    fits = fit_scaling_laws(results).set_index("n_train")
    assert fits.loc[3000, "note"] == "dropped unusable rows: G=50 seed=0 (test_rmse=nan)"
    assert fits.loc[3000, "points_used"] == "5,10,20,100"
    assert fits.loc[3000, "alpha"] == pytest.approx(4.0, abs=1e-10)


def test_group_with_too_few_points_gets_nan_and_note():
    results = synthetic_sweep()
    broken = (results["n_train"] == 300) & (results["grid_size"] != 5)
    results.loc[broken, "test_rmse"] = np.nan
    n100 = (results["n_train"] == 1000) & (results["grid_size"] > 10)
    results.loc[n100, "test_rmse"] = np.nan
    fits = fit_scaling_laws(results).set_index("n_train")
    assert math.isnan(fits.loc[300, "alpha"])
    assert "only 1 usable point(s); a power-law fit needs at least 2" in fits.loc[300, "note"]
    assert fits.loc[300, "n_points"] == 0
    # Two points left: exact fit, no interval, said in the note.
    assert fits.loc[1000, "alpha"] == pytest.approx(4.0, abs=1e-10)
    assert math.isnan(fits.loc[1000, "alpha_low"])
    assert "2 points: exact fit, no confidence interval" in fits.loc[1000, "note"]
    # Other groups unaffected.
    assert fits.loc[3000, "alpha"] == pytest.approx(4.0, abs=1e-10)


def test_group_with_all_jobs_failed_gets_note():
    results = synthetic_sweep()
    results.loc[results["n_train"] == 100, "test_rmse"] = np.nan
    fits = fit_scaling_laws(results).set_index("n_train")
    assert math.isnan(fits.loc[100, "alpha"])
    assert fits.loc[100, "note"].endswith("no usable rows")


def test_fit_scaling_laws_on_seed_reference():
    fits = fit_scaling_laws(seed_results()).set_index("n_train")
    assert fits.loc[100, "threshold_grid"] == 20
    assert fits.loc[300, "threshold_grid"] == 50
    assert fits.loc[3000, "alpha_low"] < 4.0 < fits.loc[3000, "alpha_high"]
    assert fits.loc[3000, "alpha"] == pytest.approx(4.08, abs=0.01)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"x": "steps"}, "x must be one of"), ({"metric": "loss"}, "metric must be one of")],
)
def test_fit_scaling_laws_rejects_bad_choices(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_scaling_laws(synthetic_sweep(), **kwargs)


def test_fit_scaling_laws_reports_missing_columns():
    with pytest.raises(ValueError, match=r"missing columns \['seed'\]"):
        fit_scaling_laws(synthetic_sweep().drop(columns="seed"))


# --------------------------------------------------------------------------
# pivots and data scaling
# --------------------------------------------------------------------------


def test_rmse_pivot_reproduces_seed_table():
    pivot = rmse_pivot(seed_results(), "test_rmse")
    assert pivot.index.tolist() == list(SEED_TRAIN_SIZES)
    assert pivot.columns.tolist() == list(SEED_GRID_SIZES)
    for n_train in SEED_TRAIN_SIZES:
        for grid_size in SEED_GRID_SIZES:
            assert pivot.loc[n_train, grid_size] == pytest.approx(SEED_TEST_RMSE[n_train][grid_size], rel=1e-12)


def test_rmse_pivot_geometric_mean_over_seeds_ignores_failed():
    first = results_table({100: {5: 1e-2, 10: 1e-4}}, seed=0)
    second = results_table({100: {5: 1e-4, 10: np.nan}}, seed=1)
    pivot = rmse_pivot(pd.concat([first, second]), "test_rmse")
    assert pivot.loc[100, 5] == pytest.approx(1e-3)
    assert pivot.loc[100, 10] == pytest.approx(1e-4)


def test_rmse_pivot_requires_one_configuration():
    results = pd.concat([seed_results(), seed_results().assign(k=2)])
    with pytest.raises(ValueError, match=r"exactly one \(function, width, k\) configuration"):
        rmse_pivot(results, "test_rmse")


def test_summarize_over_seeds_spread():
    first = results_table({100: {5: 1e-2}}, seed=0)
    second = results_table({100: {5: 1e-4}}, seed=1)
    summary = summarize_over_seeds(pd.concat([first, second]), metrics=["test_rmse"])
    row = summary.iloc[0]
    assert row["test_rmse"] == pytest.approx(1e-3)
    assert row["test_rmse_min"] == 1e-4 and row["test_rmse_max"] == 1e-2
    assert row["test_rmse_gstd"] == pytest.approx(10 ** np.sqrt(2))  # log10 values -2, -4: sample std sqrt(2)
    assert row["test_rmse_n_seeds"] == 2 and row["n_seeds"] == 2


def test_data_scaling_table_on_seed_reference():
    summary = data_scaling_table(seed_results())
    assert summary.pivot.shape == (4, 5)
    per_grid = summary.per_grid.set_index("grid_size")
    assert per_grid.loc[100, "monotone_non_increasing"]
    assert per_grid.loc[100, "ratio_largest_to_smallest_n"] == pytest.approx(3.27e-8 / 1.65)
    # G=5: 7.32e-3, 6.71e-3, 6.44e-3, 6.77e-3 -> rises at N=3000.
    assert not per_grid.loc[5, "monotone_non_increasing"]
    assert per_grid.loc[5, "ratio_largest_to_smallest_n"] == pytest.approx(6.77e-3 / 7.32e-3)
    assert per_grid.loc[5, "n_min"] == 100 and per_grid.loc[5, "n_max"] == 3000
    assert (per_grid["n_points"] == 4).all()


def test_data_scaling_table_monotone_case_and_failed_cells():
    test = {n: {10: 1.0 / n, 20: 2.0 / n} for n in (100, 300, 1000)}
    results = results_table(test)
    results.loc[(results["n_train"] == 1000) & (results["grid_size"] == 20), "test_rmse"] = np.nan
    per_grid = data_scaling_table(results).per_grid.set_index("grid_size")
    assert per_grid.loc[10, "monotone_non_increasing"]
    assert per_grid.loc[10, "ratio_largest_to_smallest_n"] == pytest.approx(0.1)
    assert per_grid.loc[20, "n_max"] == 300
    assert per_grid.loc[20, "n_points"] == 2
