"""kanlib.workflow.paper on synthetic sweep tables with known answers (the preset miniatures in
tests/workflow/test_presets.py run it on real sweep outputs)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kanlib.workflow.paper import STAIR_STEPS, fig3_1_numbers, staircase_table
from kanlib.workflow.paper import fig2_3_numbers as _fig2_3_numbers  # noqa: F401  (imported: the CLI's API)

GRIDS = [3, 5, 10, 20, 50]


def synthetic_history(rate_before: float, rate_after: float) -> pd.DataFrame:
    """One chain: each level's log10 train RMSE falls rate_after per step for STAIR_STEPS steps, then
    rate_before per step for the rest (20 steps a level)."""
    rows, value, step = [], 0.0, 0
    for grid in GRIDS:
        for level_step in range(20):
            value -= rate_after if level_step < STAIR_STEPS else rate_before
            rows.append(
                {"width": "2-1-1", "seed": 0, "grid_size": grid, "cumulative_step": step, "train_rmse": 10**value}
            )
            step += 1
    return pd.DataFrame(rows)


def test_a_staircase_counts_every_extension_and_a_smooth_curve_none():
    stairs = staircase_table(synthetic_history(rate_before=0.001, rate_after=0.1))
    assert "| [2,1,1] | 0 | 4 of 4 |" in stairs[2]
    smooth = staircase_table(synthetic_history(rate_before=0.05, rate_after=0.05))
    assert "| [2,1,1] | 0 | 0 of 4 |" in smooth[2]


def test_fig3_1_table_compares_with_4_and_4_over_d_and_counts_kan_wins(tmp_path):
    (tmp_path / "report").mkdir()
    families = pd.DataFrame(
        {
            "function": ["xy", "xy"],
            "family": ["kan", "mlp"],
            "alpha": [3.5, 1.0],
            "alpha_low": [3.0, 0.5],
            "alpha_high": [4.0, 1.5],
            "best_test_rmse": [1e-5, 1e-4],
            "best_n_params": [150, 5000],
            "params_at_target": [60, np.nan],
            "n_points": [4, 5],
        }
    )
    families.to_csv(tmp_path / "report" / "families.csv", index=False)
    # KAN beats the MLPs below its size at P=48 and 90, loses at P=150 (an MLP of 100 has 1e-6)
    # By the median (a few far test points left out) the KAN's errors are 100x lower: it wins at P=150 too.
    rows = [("kan", "2-2-1", g, p, r, r / 100) for g, p, r in ((3, 48, 1e-3), (10, 90, 1e-4), (20, 150, 1e-5))]
    rows += [("mlp", "2-5-1", None, 21, 1e-2, 1e-2), ("mlp", "2-20-1", None, 81, 5e-3, 5e-3)]
    rows += [("mlp", "2-25-1", None, 100, 1e-6, 1e-6)]
    results = pd.DataFrame(
        [
            {
                "function": "xy",
                "family": f,
                "width": w,
                "grid_size": g,
                "n_params": p,
                "test_rmse": r,
                "test_median_rmse": m,
                "train_rmse": 1e-9 if g == 20 else r / 2,  # G=20 fits its training points: past the threshold
                "seed": s,
                "n_train": 1000,
                "k": 3,
                "activation": None if f == "kan" else "silu",
            }
            for f, w, g, p, r, m in rows
            for s in (0, 1)
        ]
    )
    results.to_csv(tmp_path / "results.csv", index=False)
    lines = fig3_1_numbers(tmp_path)
    kan = next(line for line in lines if line.startswith("| xy | 2 | kan |"))
    assert "3.50 [3.00, 4.00]" in kan and "| -0.50 | +1.50 |" in kan and "| 60 |" in kan
    mlp = next(line for line in lines if line.startswith("| xy | 2 | mlp |"))
    assert "| never |" in mlp
    # below the threshold (G=3, 10): both beat the MLPs by either measure
    assert "| xy | 2 | 3 | 10 (P=150) | 3 | 0.1 (P=150) | 2 | 2 | 2 |" in lines
    # by the median: the KAN's levels below the threshold fall 10x per level; the MLP envelope is P=21, 81, 100
    median_kan = [line for line in lines if line.startswith("| xy | 2 | kan |")][1]
    alpha = -np.polyfit(np.log([48, 90]), np.log([1e-5, 1e-6]), 1)[0]
    assert f"| {alpha:.2f} [" in median_kan and "| 1.0e-07 (150) |" in median_kan, median_kan
    median_mlp = [line for line in lines if line.startswith("| xy | 2 | mlp |")][1]
    alpha = -np.polyfit(np.log([21, 81, 100]), np.log([1e-2, 5e-3, 1e-6]), 1)[0]
    assert f"| {alpha:.2f} [" in median_mlp and "| 100 |" in median_mlp, median_mlp
