"""The family comparison (kanlib.analysis.families) on synthetic results with known exponents."""

import numpy as np
import pandas as pd
import pytest

from kanlib.analysis.families import compare_families, family_points, lower_envelope, params_to_reach

KAN_GRIDS = [3, 5, 10, 20, 50, 100]
MLP_WIDTHS = ["2-5-1", "2-10-1", "2-20-1", "2-5-5-1", "2-10-10-1", "2-20-20-1", "2-40-40-1"]


def _mlp_params(width: str) -> int:
    sizes = [int(s) for s in width.split("-")]
    return sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))


def synthetic_results(seeds=(0,), noise=0.05, kan_alpha=4.0, mlp_alpha=1.0, rng=0) -> pd.DataFrame:
    """RMSE = C P^-alpha with log-normal noise per seed; train RMSE = test / 2 (no interpolation)."""
    generator = np.random.default_rng(rng)
    rows = []
    for seed in seeds:
        for grid in KAN_GRIDS:
            n_params = 2 * (grid + 3 + 2) + (grid + 3 + 2)
            test = 10.0 * n_params**-kan_alpha * np.exp(noise * generator.standard_normal())
            rows.append(
                dict(
                    function="f",
                    family="kan",
                    width="2-1-1",
                    activation=None,
                    k=3,
                    n_train=1000,
                    seed=seed,
                    grid_size=grid,
                    n_params=n_params,
                    test_rmse=test,
                    train_rmse=test / 2,
                )
            )
        for width in MLP_WIDTHS:
            n_params = _mlp_params(width)
            test = 0.5 * n_params**-mlp_alpha * np.exp(noise * generator.standard_normal())
            rows.append(
                dict(
                    function="f",
                    family="mlp",
                    width=width,
                    activation="silu",
                    k=np.nan,
                    n_train=1000,
                    seed=seed,
                    grid_size=np.nan,
                    n_params=n_params,
                    test_rmse=test,
                    train_rmse=test / 2,
                )
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seeds", [(0,), tuple(range(10))])
def test_known_exponents_are_recovered_inside_their_intervals(seeds):
    comparison, _ = compare_families(synthetic_results(seeds=seeds))
    by_family = comparison.set_index("family")
    for family, alpha in (("kan", 4.0), ("mlp", 1.0)):
        row = by_family.loc[family]
        assert row["alpha_low"] <= alpha <= row["alpha_high"], row.to_dict()
        assert abs(row["alpha"] - alpha) < 0.3
        assert row["ci_method"] == ("seed-lines-t" if len(seeds) > 1 else "ols-t")
    # reference lines: KAN k+1 = 4, MLP (k+1)/d = 2 on two inputs
    assert by_family.loc["kan", "theory_alpha"] == 4.0
    assert by_family.loc["mlp", "theory_alpha"] == 2.0


def test_lower_envelope_drops_dominated_points_and_says_by_which():
    # P:    10   20    20    40    80    160
    # RMSE: 1.0  0.5   0.7   0.6   0.2   0.3
    on, reasons = lower_envelope([10, 20, 20, 40, 80, 160], [1.0, 0.5, 0.7, 0.6, 0.2, 0.3])
    assert on.tolist() == [True, True, False, False, True, False]
    assert reasons[2] == "dominated by P=20 (test RMSE 0.5)"
    assert reasons[3] == "dominated by P=20 (test RMSE 0.5)"
    assert reasons[5] == "dominated by P=80 (test RMSE 0.2)"
    assert reasons[0] == reasons[1] == reasons[4] == ""


def test_mlp_fit_uses_the_envelope_only():
    results = synthetic_results(noise=0.0)
    # a deep MLP that is worse than a smaller one: dominated, left out of the fit
    results.loc[(results["family"] == "mlp") & (results["width"] == "2-40-40-1"), "test_rmse"] = 0.5
    results.loc[(results["family"] == "mlp") & (results["width"] == "2-40-40-1"), "train_rmse"] = 0.25
    comparison, points = compare_families(results)
    mlp = comparison[comparison["family"] == "mlp"].iloc[0]
    assert mlp["alpha"] == pytest.approx(1.0, abs=1e-9)  # the exact law from the other points
    assert "MLP [2,40,40,1] silu" in mlp["points_excluded"] and "dominated by" in mlp["points_excluded"]
    assert "[2,40,40,1]" not in mlp["points_used"]
    deep = points[(points["family"] == "mlp") & (points["width"] == "2-40-40-1")].iloc[0]
    assert not deep["used"] and not deep["on_envelope"]


def test_interpolating_mlp_is_excluded_with_its_ratio():
    results = synthetic_results(noise=0.0)
    big = (results["family"] == "mlp") & (results["width"] == "2-40-40-1")
    results.loc[big, "train_rmse"] = results.loc[big, "test_rmse"] / 100
    points = family_points(results)
    row = points[(points["family"] == "mlp") & (points["width"] == "2-40-40-1")].iloc[0]
    assert not row["eligible"]
    assert row["reason"].startswith("interpolating: test/train RMSE ratio 100 > 10")


def test_kan_points_past_the_chain_threshold_are_not_eligible():
    results = synthetic_results(noise=0.0)
    past = (results["family"] == "kan") & (results["grid_size"] == 100)
    results.loc[past, "test_rmse"] = 1.0  # test RMSE rises again: past the interpolation threshold
    comparison, points = compare_families(results)
    row = points[(points["family"] == "kan") & (points["grid_size"] == 100)].iloc[0]
    assert not row["eligible"] and "interpolation threshold" in row["reason"]
    kan = comparison[comparison["family"] == "kan"].iloc[0]
    assert kan["alpha"] == pytest.approx(4.0, abs=1e-9)
    assert "G=100" in kan["points_excluded"]


def test_parameters_to_reach_an_rmse():
    points = pd.DataFrame({"n_params": [10, 20, 40, 80], "test_rmse": [1e-2, 1e-3, 2e-4, 5e-5]})
    assert params_to_reach(points, 1e-3) == 20
    assert params_to_reach(points, 1e-4) == 80
    assert np.isnan(params_to_reach(points, 1e-5))
    comparison, _ = compare_families(synthetic_results(noise=0.0), target_rmse=1e-4)
    by_family = comparison.set_index("family")
    # every family reaches the common level (the worst family's best RMSE)
    common = max(by_family["best_test_rmse"])
    assert (by_family["common_rmse"] == common).all()
    assert by_family["params_at_common"].notna().all()
    # KAN reaches 1e-4 at its smallest model (P = 24: 10 * 24^-4 = 3e-5); the MLP (0.5/P) would need
    # P >= 5000 and its largest has 1801
    assert by_family.loc["kan", "params_at_target"] == 24
    assert np.isnan(by_family.loc["mlp", "params_at_target"])


def test_interval_coverage_over_draws():
    """The intervals hold both true exponents in most draws: >= 15 of 20 (nominal 0.95^2 ~ 0.9 for
    both at once). Measured: 17/20 with one seed (OLS, Student t), 18/20 with 5 and with 10 seeds
    (Student t over the seeds' own exponents; a percentile bootstrap over 5 seeds covered 12/20)."""
    for seeds in ((0,), (0, 1, 2, 3, 4)):
        inside = 0
        for draw in range(20):
            comparison, _ = compare_families(synthetic_results(seeds=seeds, rng=draw))
            rows = comparison.set_index("family")
            inside += all(
                rows.loc[f, "alpha_low"] <= a <= rows.loc[f, "alpha_high"] for f, a in (("kan", 4.0), ("mlp", 1.0))
            )
        assert inside >= 15, seeds
