"""A preset's results under two spline-end conventions, side by side (config key spline_ends).

    python benchmarks/spline_ends_presets.py results/seed results/seed_input_range

Reads each sweep folder's results.csv and report/exponents.csv (the first folder is the reference,
pykan's convention). Prints, per (function, width, N): over the grid levels both conventions trained
(chains that learnt their target), the geometric mean over seeds of the train and test RMSE, the ratio
other / reference per level, summarised as the largest train ratio, the number of levels whose train
RMSE rose by more than 10%, and the test-RMSE ratio's geometric mean over the levels where test points
outside the training range carried most of the reference's test MSE (median share > 0.5) and over the
others; then both conventions' exponents in G (mean-, median- and interior-based) and thresholds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from kanlib.analysis.fits import chain_rows, learnt_rows

KEYS = ["function", "width", "n_train", "grid_size"]
ERRORS = ["train_rmse", "test_rmse", "test_median_rmse", "test_interior_rmse"]


def levels(folder: Path) -> pd.DataFrame:
    results = learnt_rows(chain_rows(pd.read_csv(folder / "results.csv", dtype={"width": str})))
    cells = results.groupby(KEYS)[ERRORS].agg(lambda v: stats.gmean(v[v > 0]) if (v > 0).any() else np.nan)
    cells["outside_share"] = results.groupby(KEYS)["test_outside_mse_share"].median()
    return cells


def main(reference: Path, other: Path) -> None:
    ours, theirs = levels(reference), levels(other)
    both = ours.add_suffix("_ref").join(theirs.add_suffix("_alt"), how="inner")
    print(f"reference: {reference}; other: {other}\n")
    columns = ["function", "width", "N", "levels", "max train ratio", "levels train > 1.1x"]
    columns += ["test ratio, outside-carried levels", "test ratio, others", "interior ratio"]
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (function, width, n), group in both.groupby(level=[0, 1, 2]):
        train = group["train_rmse_alt"] / group["train_rmse_ref"]
        test = group["test_rmse_alt"] / group["test_rmse_ref"]
        interior = group["test_interior_rmse_alt"] / group["test_interior_rmse_ref"]
        carried = group["outside_share_ref"] > 0.5

        def gm(values):
            values = values[np.isfinite(values) & (values > 0)]
            return f"{stats.gmean(values):.2f} ({len(values)})" if len(values) else "-"

        print(
            f"| {function} | {width} | {n} | {len(group)} | {train.max():.2f} | {(train > 1.1).sum()} | "
            f"{gm(test[carried])} | {gm(test[~carried])} | {gm(interior)} |"
        )
    print()
    exponents = []
    for label, folder in (("reference", reference), ("other", other)):
        table = pd.read_csv(folder / "report/exponents.csv", dtype={"width": str})
        table = table[table["x"] == "grid_size"]
        exponents.append(
            table.set_index(["function", "width", "n_train", "metric"])[
                ["alpha", "alpha_low", "alpha_high", "threshold_grid"]
            ].add_suffix(f"_{label}")
        )
    table = exponents[0].join(exponents[1], how="outer")
    print("| function | width | N | metric | α reference [CI] | α other [CI] | threshold G reference | other |")
    print("|---|---|---|---|---|---|---|---|")
    for (function, width, n, metric), row in table.iterrows():

        def alpha(label):
            return f"{row[f'alpha_{label}']:.2f} [{row[f'alpha_low_{label}']:.2f}, {row[f'alpha_high_{label}']:.2f}]"

        print(
            f"| {function} | {width} | {n} | {metric} | {alpha('reference')} | {alpha('other')} | "
            f"{row['threshold_grid_reference']} | {row['threshold_grid_other']} |"
        )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
